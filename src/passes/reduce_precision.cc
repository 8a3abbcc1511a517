// Reduced precision for CUDA engines (--fp16 / --bf16): float32 activations and
// weights of nodes that compute well in 16 bits become float16 (or bfloat16);
// the engine's inputs and outputs stay float32 through Cast nodes, and nodes that
// must stay float32 (shape arithmetic, Pow, cumulative sums, random, control
// flow, ...) get Casts around them.
//   x:f32 -> Conv(W:f32) -> Relu -> y:f32
// becomes
//   x:f32 -> Cast(f16) -> Conv(W:f16) -> Relu -> y_half:f16 -> Cast(f32) -> y:f32
#include <set>
#include <unordered_map>

#include "base/half.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// Ops whose CUDA kernels compute in 16 bits with fp32 accumulation.
const std::set<std::string>& half_ops() {
  static const std::set<std::string> ops = {"Conv",
                                            "FusedConv",
                                            "ConvTranspose",
                                            "MatMul",
                                            "MatMulBias",
                                            "Gemm",
                                            "FusedMatMul",
                                            "Add",
                                            "Sub",
                                            "Mul",
                                            "Div",
                                            "Max",
                                            "Min",
                                            "Sum",
                                            "Mean",
                                            "Relu",
                                            "LeakyRelu",
                                            "PRelu",
                                            "Sigmoid",
                                            "Tanh",
                                            "Gelu",
                                            "FastGelu",
                                            "BiasGelu",
                                            "Erf",
                                            "Sqrt",
                                            "Reciprocal",
                                            "Neg",
                                            "Abs",
                                            "Clip",
                                            "HardSwish",
                                            "Swish",
                                            "FusedAttention",
                                            "FusedElementwise",
                                            "HardSigmoid",
                                            "Softplus",
                                            "Mish",
                                            "Elu",
                                            "Selu",
                                            "Celu",
                                            "Softmax",
                                            "LogSoftmax",
                                            "LayerNormalization",
                                            "RMSNormalization",
                                            "SkipLayerNormalization",
                                            "GatherSkipLayerNormalization",  // kiln
                                            "ConcatSkipLayerNormalization",  // kiln
                                            "SimplifiedLayerNormalization",
                                            "BatchNormalization",
                                            "InstanceNormalization",
                                            "GroupNormalization",
                                            "MaxPool",
                                            "AveragePool",
                                            "GlobalAveragePool",
                                            "GlobalMaxPool",
                                            "Resize",
                                            "Upsample",
                                            "Concat",
                                            "Split",
                                            "Slice",
                                            "Reshape",
                                            "Flatten",
                                            "Squeeze",
                                            "Unsqueeze",
                                            "Transpose",
                                            "Expand",
                                            "Tile",
                                            "Pad",
                                            "Gather",
                                            "GatherElements",
                                            "Where",
                                            "WhereNonzero",  // kiln
                                            "Identity",
                                            "Dropout",
                                            "DepthToSpace",
                                            "SpaceToDepth",
                                            "SpaceToDepthNhwc",  // kiln
                                            "ReduceMean",
                                            "ReduceMax",
                                            "ReduceMin",
                                            "Equal",
                                            "Less",
                                            "Greater",
                                            "LessOrEqual",
                                            "GreaterOrEqual",
                                            "Exp",
                                            "Log",
                                            "Floor",
                                            "Ceil"};
  return ops;
}

// Float inputs that keep float32 (ONNX types them independently of the data).
bool keeps_float32(const ir::Node& n, size_t i) {
  if (n.op_type == "Resize") return i == 1 || i == 2;
  if (n.op_type == "Upsample") return i == 1;
  if (n.op_type == "FusedAttention") return i >= 4;    // reshape shapes and scale factors
  if (n.op_type == "SpaceToDepthNhwc") return i == 0;  // converts as it gathers (its `to`): no Cast before it
  return false;
}

void narrow(const float* src, BFloat16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = BFloat16(src[i]);
}

Tensor convert_tensor(const Tensor& t, DataType to) {
  Tensor out = Tensor::empty(to, t.dims());
  if (t.dtype() == DataType::kFloat32) {  // the weights: a tight loop (per-element getters cost ~1 s on BERT-base)
    if (to == DataType::kFloat16)
      floats_to_halves(t.data_as<float>(), &out.data_as<Half>()->bits, t.numel());
    else
      narrow(t.data_as<float>(), out.data_as<BFloat16>(), t.numel());
    return out;
  }
  std::vector<float> v = t.to_float_vector();
  for (size_t i = 0; i < v.size(); ++i) {
    if (to == DataType::kFloat16)
      out.data_as<Half>()[i] = Half(v[i]);
    else
      out.data_as<BFloat16>()[i] = BFloat16(v[i]);
  }
  return out;
}

}  // namespace

Status reduce_precision(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  DataType half;
  if (cfg->get_flag(BuilderFlag::kFP16))
    half = DataType::kFloat16;
  else if (cfg->get_flag(BuilderFlag::kBF16))
    half = DataType::kBFloat16;
  else
    return Status();
  const char* suffix = half == DataType::kFloat16 ? "_fp16" : "_bf16";

  // Values subgraph bodies read by name: the bodies are not converted (their nodes keep
  // float32), so these stay float32 under their names, like graph outputs.
  const std::set<std::string> captured = captured_names(g);
  // A float32 copy a body may be pointed at must not clash with a name the body defines.
  const std::set<std::string> body_names = captured.empty() ? std::set<std::string>{} : body_value_names(g);
  auto fresh_name = [&](const std::string& hint) {
    std::string name = g.unique_name(hint);
    for (int i = 1; body_names.count(name); ++i) name = g.unique_name(hint + "_" + std::to_string(i));
    return name;
  };

  std::unordered_map<ir::Value*, ir::Value*> to_half, to_float;  // cached conversions
  auto cast = [&](ir::Value* v, DataType dt, std::unordered_map<ir::Value*, ir::Value*>& cache) -> ir::Value* {
    auto it = cache.find(v);
    if (it != cache.end()) return it->second;
    ir::Value* out;
    if (v->initializer) {
      out = g.add_constant(v->name + suffix, convert_tensor(*v->initializer, dt));
    } else {
      out = g.add_value(fresh_name(v->name + (dt == DataType::kFloat32 ? "_fp32" : suffix)), dt).value();
      out->shape = v->shape;
      ir::Node* c = g.add_node("Cast", {v}, {out}, g.unique_name("cast_" + v->name));
      c->attrs.set("to", ir::Attribute::from_int(static_cast<int64_t>(dt)));
      c->opset = 19;
      out->producer = c;
    }
    out->dtype = dt;
    cache[v] = out;
    return out;
  };

  std::set<ir::Value*> made_half;  // activations this pass turned to half
  if (cfg->input_io_dtype() == half)
    for (ir::Value* in : g.inputs)
      if (in->dtype == DataType::kFloat32) {
        in->dtype = half;  // the caller feeds 16-bit data; readers that stay FP32 get a Cast
        made_half.insert(in);
      }
  int converted = 0, casts_before = static_cast<int>(g.nodes().size());
  std::vector<ir::Node*> order;
  for (auto& n : g.nodes()) order.push_back(n.get());
  for (ir::Node* n : order) {
    bool is_half = n->domain.empty() || n->domain == "com.microsoft" || n->domain == "kiln"
                       ? half_ops().count(n->op_type) > 0
                       : false;
    bool has_subgraph = false;
    for (auto& [k, a] : n->attrs.all()) has_subgraph = has_subgraph || a.g || !a.graphs.empty();
    if (has_subgraph) is_half = false;
    if (is_half) {
      for (size_t i = 0; i < n->inputs.size(); ++i) {
        ir::Value* in = n->inputs[i];
        if (!in || keeps_float32(*n, i)) continue;
        if (in->dtype == DataType::kFloat32) n->inputs[i] = cast(in, half, to_half);
      }
      for (ir::Value* o : n->outputs) {
        if (!o || o->dtype != DataType::kFloat32) continue;
        const bool kept = captured.count(o->name) > 0;  // read by name by a body that stays float32
        if (g.is_output(o) && !kept && cfg->output_io_dtype() == half) {
          o->dtype = half;  // the engine's output is 16-bit, as asked
          made_half.insert(o);
        } else if (g.is_output(o) || kept) {
          // The graph output (or captured value) keeps its name and float32: the node writes a half copy.
          ir::Value* h = g.add_unique_value(o->name + suffix, half);
          h->shape = o->shape;
          for (ir::Node* c : g.consumers(o))
            for (auto& ci : c->inputs)
              if (ci == o) ci = h;
          for (auto& no : n->outputs)
            if (no == o) no = h;
          h->producer = n;
          ir::Node* c = g.add_node("Cast", {h}, {o}, g.unique_name("cast_" + o->name));
          c->attrs.set("to", ir::Attribute::from_int(static_cast<int64_t>(DataType::kFloat32)));
          c->opset = 19;
          o->producer = c;
          to_half[o] = h;
          to_float[h] = o;
          made_half.insert(h);
        } else {
          o->dtype = half;
          made_half.insert(o);
        }
      }
      if (n->op_type == "SpaceToDepthNhwc") n->attrs.set("to", ir::Attribute::from_int(static_cast<int64_t>(half)));
      ++converted;
    } else {
      for (size_t i = 0; i < n->inputs.size(); ++i) {
        ir::Value* in = n->inputs[i];
        // Values this pass turned to half (activations of half nodes) go back to float32.
        if (in && made_half.count(in)) n->inputs[i] = cast(in, DataType::kFloat32, to_float);
      }
    }
  }
  // A 16-bit graph input that a body reads by name keeps its name (the engine's binding);
  // the float32 body reads a Cast of it instead, which the topological sort puts first.
  for (ir::Value* in : g.inputs)
    if (made_half.count(in) && captured.count(in->name))
      redirect_captures(g, in->name, *cast(in, DataType::kFloat32, to_float));
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["half_precision_layers"] += converted;
  ctx.stats["precision_casts"] += static_cast<int>(g.nodes().size()) - casts_before;
  return infer_shapes(g, ctx);
}

}  // namespace kiln::passes
