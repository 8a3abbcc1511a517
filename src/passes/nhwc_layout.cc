// Channels-last (NHWC) layout for the convolutional parts of FP16/BF16 CUDA
// engines: cuDNN's tensor-core convolutions read and write NHWC, and an NCHW
// convolution pays for transposes inside cuDNN. Convs, pools, elementwise ops,
// Concat and Split on channels join an NHWC region; Transposes sit only at its edges.
//   x -> Conv -> Relu -> MaxPool -> Conv -> GlobalAveragePool
// becomes
//   x -> Transpose(0,2,3,1) -> Conv[nhwc] -> Relu -> MaxPool[nhwc] -> Conv[nhwc] -> GlobalAveragePool[nhwc] ->
//   Transpose(0,3,1,2)   (of the pooled [N,1,1,C] only)
// kiln FusedElementwise joins like a binary op. Conv weights are stored [M, kH, kW, C/group];
// global pools join too (their NHWC kernel reduces over H*W per channel group, so
// only the pooled [N,1,1,C] leaves the region);
// a conv with C % 8 != 0 input channels (group 1) reads its input zero-padded by a Pad
// on C, with zero weight channels to match (tensor-core kernels need C % 8 == 0),
// unless it is a small stem that reads its NCHW input directly (kiln.nchw_input, see
// reads_nchw_input): x -> Conv[nhwc, nchw_input] -> ... with no Transpose or Pad before it;
// per-channel constants [1,C,1,1] become [1,1,1,C]; a Shape of an NHWC value becomes
// Shape + Gather(0,3,1,2).
#include <cstring>
#include <set>
#include <unordered_map>

#include "base/env.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

const std::set<std::string>& unary_ops() {
  static const std::set<std::string> ops = {
      "Relu",     "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Swish", "Elu",      "Selu",
      "Softplus", "Mish",    "Erf",  "Neg",       "Abs",  "Exp",         "Sqrt",      "Gelu",  "Identity", "Cast"};
  return ops;
}
const std::set<std::string>& binary_ops() {
  static const std::set<std::string> ops = {"Add", "Sub", "Mul", "Div", "Max", "Min"};
  return ops;
}

bool rank4(const ir::Value* v) { return v && v->shape && v->shape->size() == 4; }

// Scalars broadcast alike in both layouts; a rank-1 [W] constant would broadcast
// over W, not C, so only rank >= 2 constants can be permuted.
bool constant_permutable(const Tensor& t) { return t.numel() == 1 || t.rank() > 1; }

// A constant broadcasting against an NCHW rank-4 tensor, permuted for NHWC; null if it cannot be.
std::shared_ptr<Tensor> permuted_constant(const Tensor& t) {
  if (!constant_permutable(t)) return nullptr;
  if (t.numel() == 1) return std::make_shared<Tensor>(t);
  Dims d = t.dims();
  while (d.size() < 4) d.insert(d.begin(), 1);
  Tensor full = t.reshaped(d);
  return std::make_shared<Tensor>(ops::tensor_nchw_to_nhwc(full));
}

// Channels a conv's input is zero-padded to in NHWC: cuDNN's tensor-core kernels
// need C % 8 == 0 for 16-bit data, and a 3-channel stem conv (ResNet, YOLO) falls
// to a slow kernel otherwise (ResNet-50 bs256 conv1: 3.3 ms of 12). 0: no padding.
int64_t padded_channels(const ir::Node& conv) {
  const ir::Value* w = conv.input(1);
  if (conv.attrs.get_int("group", 1) != 1 || !w || !w->initializer || w->initializer->rank() != 4) return 0;
  const int64_t c = w->initializer->dim(1);
  return c % 8 == 0 ? 0 : (c + 7) / 8 * 8;
}

// An NHWC conv weight [M, kH, kW, C] zero-extended to [M, kH, kW, cp].
Tensor pad_last_axis(const Tensor& w, int64_t cp) {
  const int64_t c = w.dims().back(), rows = w.numel() / c;
  Dims d = w.dims();
  d.back() = cp;
  Tensor t = Tensor::zeros(w.dtype(), d);
  const size_t es = dtype_size(w.dtype());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(static_cast<char*>(t.data()) + r * cp * es, static_cast<const char*>(w.data()) + r * c * es, c * es);
  return t;
}

// A stem conv that kiln's direct conv runs straight from its NCHW input (ops::kNchwInputAttr):
// few input channels (<= 4), 8..64 outputs in groups of 8, and little work per output pixel
// (C x kH x kW x M <= 1024 FMAs: the YOLOv8n stem's 432, not ResNet-50's 7x7x64 9408, which
// cuDNN's tensor cores do better from a padded NHWC copy), symmetric explicit padding. It
// saves the input's Transpose and channel Pad kernels and reads 3 channels, not 8
// (YOLOv8n FP32 bs256: 1.56 + 0.83 ms of Pad and Transpose). KILN_CONV_NCHW_INPUT=0 turns it off.
bool reads_nchw_input(const ir::Node& conv) {
  static const bool on = !env_is("KILN_CONV_NCHW_INPUT", "0");
  const ir::Value* w = conv.input(1);
  if (!on || conv.attrs.get_int("group", 1) != 1 || !w || !w->initializer || w->initializer->rank() != 4) return false;
  if (!conv.input(0) || conv.input(0)->initializer) return false;
  const std::string pad_mode = conv.attrs.get_string("auto_pad", "NOTSET");
  if (pad_mode != "NOTSET" && pad_mode != "VALID") return false;
  const std::vector<int64_t> pads = conv.attrs.get_ints("pads");
  if (!pads.empty() && (pads.size() != 4 || pads[0] != pads[2] || pads[1] != pads[3])) return false;
  const Dims& d = w->initializer->dims();  // [M, C, kH, kW]
  const int64_t m = d[0], c = d[1];
  return c >= 1 && c <= 4 && m >= 8 && m <= 64 && m % 8 == 0 && c * d[2] * d[3] * m <= 1024;
}

// Position in NHWC of NCHW axis a (after normalizing negatives for rank 4).
int64_t nhwc_axis(int64_t a) {
  if (a < 0) a += 4;
  static const int64_t pos[4] = {0, 3, 1, 2};
  return a >= 0 && a < 4 ? pos[a] : -1;
}

// A Resize/Upsample whose per-axis inputs are constants of length 4 (permutable).
bool resize_permutable(const ir::Node& n) {
  if (n.attrs.has("axes") || n.attrs.get_int("antialias", 0) != 0) return false;
  for (size_t i = 1; i < n.inputs.size(); ++i) {
    const ir::Value* v = n.inputs[i];
    if (!v) continue;
    if (!v->initializer) return false;
    int64_t len = v->initializer->numel();
    if (len != 0 && len != 4 && !(i == 1 && len == 8)) return false;
  }
  return true;
}

// An ONNX Conv or a com.microsoft FusedConv (what fuse_conv_activation makes of one).
bool conv_node(const ir::Node& n) {
  return (n.domain.empty() && n.op_type == "Conv") || (n.domain == "com.microsoft" && n.op_type == "FusedConv");
}

// Slice with constant axes (or none: the default 0..k-1 becomes explicit).
bool slice_permutable(const ir::Node& n) {
  if (n.opset < 10 || n.inputs.size() < 3) return false;
  for (size_t i = 1; i < n.inputs.size(); ++i)
    if (n.inputs[i] && !n.inputs[i]->initializer) return false;
  return true;
}

}  // namespace

Status nhwc_layout(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  // FP32 engines with TF32 allowed join too: cuDNN's TF32 tensor-core convs want
  // channels-last as FP16's do (ResNet-50 FP32 bs32 on the H100: 5.46 GPU ms NCHW,
  // 2.28 NHWC). KILN_NHWC_FP32=0 keeps them NCHW; without TF32 they stay NCHW.
  const bool fp32_nhwc = !env_is("KILN_NHWC_FP32", "0") && cfg->get_flag(BuilderFlag::kTF32);
  const bool reduced = cfg->get_flag(BuilderFlag::kFP16) || cfg->get_flag(BuilderFlag::kBF16);
  if (!(reduced || fp32_nhwc)) return Status();
  if (!reduced) {
    // ...when the graph has a convolutional part: a lone conv (ViT's patch embedding)
    // gains nothing from channels-last but two transposes, and its TF32 NHWC
    // algorithm took ViT-B/16 FP32 from 8.8e-4 to 1.05e-3 relative error.
    int convs = 0;
    for (auto& n : g.nodes()) convs += conv_node(*n);
    if (convs < 2) return Status();
  }
  // Values a subgraph reads by name keep NCHW (the body cannot know).
  const std::set<std::string> pinned = captured_names(g);
  std::set<ir::Value*> nhwc;                                    // values stored NHWC
  std::unordered_map<ir::Value*, ir::Value*> to_nhwc, to_nchw;  // inserted transposes
  std::unordered_map<ir::Value*, ir::Value*> const_nhwc;        // permuted constants
  auto transpose = [&](ir::Value* v, bool into_nhwc) -> ir::Value* {
    auto& cache = into_nhwc ? to_nhwc : to_nchw;
    auto it = cache.find(v);
    if (it != cache.end()) return it->second;
    ir::Value* out = g.add_unique_value(v->name + (into_nhwc ? "_nhwc" : "_nchw"), v->dtype);
    out->shape = into_nhwc ? ops::nchw_to_nhwc(*v->shape) : ops::nhwc_to_nchw(*v->shape);
    ir::Node* t = g.add_node("Transpose", {v}, {out}, g.unique_name("layout_" + v->name));
    t->opset = 13;
    t->attrs.set("perm", ir::Attribute::from_ints(into_nhwc ? std::vector<int64_t>{0, 2, 3, 1}
                                                            : std::vector<int64_t>{0, 3, 1, 2}));
    out->producer = t;
    if (into_nhwc) {
      out->layout = ir::Layout::kNHWC;
      nhwc.insert(out);
    }
    cache[v] = out;
    return out;
  };
  auto as_nhwc = [&](ir::Value* v) { return nhwc.count(v) ? v : transpose(v, true); };
  // v (NHWC) zero-padded along C to cp channels, once per value.
  std::unordered_map<ir::Value*, ir::Value*> padded_cache;
  auto padded = [&](ir::Value* v, int64_t c, int64_t cp) -> ir::Value* {
    auto it = padded_cache.find(v);
    if (it != padded_cache.end()) return it->second;
    ir::Value* out = g.add_unique_value(v->name + "_c" + std::to_string(cp), v->dtype);
    Shape sh = *v->shape;
    sh[3] = Dim(cp);
    out->shape = sh;
    out->layout = ir::Layout::kNHWC;
    ir::Value* pads = g.add_constant(
        "channel_pads", Tensor::from_vector<int64_t>(DataType::kInt64, {8}, {0, 0, 0, 0, 0, 0, 0, cp - c}));
    ir::Node* p = g.add_node("Pad", {v, pads}, {out}, g.unique_name("pad_channels_" + v->name));
    p->opset = 13;
    out->producer = p;
    padded_cache[v] = out;
    return out;
  };
  auto permuted = [&](ir::Value* c) -> ir::Value* {
    auto it = const_nhwc.find(c);
    if (it != const_nhwc.end()) return it->second;
    auto t = permuted_constant(*c->initializer);
    if (!t) return nullptr;
    ir::Value* v = t->numel() == 1 && t->dims() == c->initializer->dims() ? c : g.add_constant(c->name + "_nhwc", *t);
    const_nhwc[c] = v;
    return v;
  };

  std::vector<ir::Node*> order;
  for (auto& n : g.nodes()) order.push_back(n.get());
  int joined = 0, transposes_before = static_cast<int>(g.nodes().size());
  for (ir::Node* n : order) {
    bool plain_domain = n->domain.empty();
    // kiln FusedElementwise (fuse_elementwise) is a broadcasting elementwise program: layout-agnostic.
    bool fused_elementwise = n->domain == "kiln" && n->op_type == "FusedElementwise";
    const bool is_conv = conv_node(*n);
    bool any_nhwc_in = false;
    for (ir::Value* in : n->inputs) any_nhwc_in = any_nhwc_in || (in && nhwc.count(in));
    bool outputs_ok = !n->outputs.empty() && n->outputs[0];
    for (ir::Value* o : n->outputs) outputs_ok = outputs_ok && (!o || (rank4(o) && !pinned.count(o->name)));
    bool join = false;
    if (is_conv) {
      join = outputs_ok && rank4(n->input(0)) && n->input(1) && n->input(1)->initializer &&
             n->input(1)->initializer->rank() == 4 && !ops::is_nhwc(*n);
      // A FusedConv with kiln.shortcut_strides: its X2 and W2 change layout as X and W do.
      if (n->attrs.has(ops::conv::kShortcutAttr))
        join = join && rank4(n->input(4)) && n->input(5) && n->input(5)->initializer &&
               n->input(5)->initializer->rank() == 4;
      // With kiln.chain_activation (made after this pass; here only if a model carries one) W3 changes
      // layout as W does, and output 1 as output 0.
      if (n->attrs.has(ops::conv::kChainAttr))
        join = join && n->input(7) && n->input(7)->initializer && n->input(7)->initializer->rank() == 4;
    } else if (plain_domain && (n->op_type == "MaxPool" || n->op_type == "AveragePool" ||
                                n->op_type == "GlobalAveragePool" || n->op_type == "GlobalMaxPool")) {
      join = outputs_ok && any_nhwc_in && rank4(n->input(0)) && n->outputs.size() == 1;
    } else if (plain_domain && unary_ops().count(n->op_type)) {
      join = outputs_ok && n->input(0) && nhwc.count(n->input(0));
      for (size_t i = 1; i < n->inputs.size(); ++i) join = join && (!n->inputs[i] || n->inputs[i]->initializer);
    } else if ((plain_domain && binary_ops().count(n->op_type) && n->inputs.size() == 2) || fused_elementwise) {
      // Inputs broadcast together: NHWC ones, permutable constants, and full-size NCHW
      // tensors (which get a Transpose) all broadcast alike in NHWC.
      join = outputs_ok && any_nhwc_in && n->outputs.size() == 1;
      for (ir::Value* in : n->inputs) {
        if (!join || !in) break;
        if (nhwc.count(in)) continue;
        if (in->initializer)
          join = constant_permutable(*in->initializer);
        else
          join = rank4(in) && in->shape == n->outputs[0]->shape;
      }
    } else if (plain_domain && n->op_type == "Resize") {
      join = outputs_ok && any_nhwc_in && nhwc.count(n->input(0)) && resize_permutable(*n);
    } else if (plain_domain && n->op_type == "Slice") {
      join = outputs_ok && any_nhwc_in && nhwc.count(n->input(0)) && slice_permutable(*n);
    } else if (plain_domain && (n->op_type == "Concat" || n->op_type == "Split")) {
      int64_t axis = n->attrs.get_int("axis", n->op_type == "Split" ? 0 : 1);
      join = outputs_ok && any_nhwc_in && (axis == 1 || axis == -3);
      for (ir::Value* in : n->inputs)
        if (n->op_type == "Concat" && in) join = join && rank4(in) && !in->initializer;
    }
    if (!join) {
      // Readers outside the region see NCHW: a Shape gets the NCHW order by a Gather, others a Transpose.
      for (size_t i = 0; i < n->inputs.size(); ++i) {
        ir::Value* in = n->inputs[i];
        if (!in || !nhwc.count(in)) continue;
        if (plain_domain && n->op_type == "Shape" && !n->attrs.has("start") && !n->attrs.has("end")) {
          ir::Value* s = g.add_unique_value(n->outputs[0]->name + "_nhwc", DataType::kInt64);
          s->shape = Shape{4};
          ir::Value* idx =
              g.add_constant("nchw_order", Tensor::from_vector<int64_t>(DataType::kInt64, {4}, {0, 3, 1, 2}));
          ir::Value* out = n->outputs[0];
          n->outputs[0] = s;
          s->producer = n;
          ir::Node* gather = g.add_node("Gather", {s, idx}, {out}, g.unique_name("layout_shape"));
          gather->opset = 13;
          out->producer = gather;
          continue;
        }
        n->inputs[i] = transpose(in, false);
      }
      continue;
    }
    ++joined;
    if (n->op_type == "Resize" || n->op_type == "Slice") {
      // Per-axis constants follow the axes: Resize's roi/scales/sizes are permuted,
      // Slice's axes are renumbered.
      for (size_t i = 1; i < n->inputs.size(); ++i) {
        ir::Value* v = n->inputs[i];
        if (!v || v->initializer->numel() == 0) continue;
        if (n->op_type == "Resize") {
          std::vector<double> a(static_cast<size_t>(v->initializer->numel()));
          for (size_t k = 0; k < a.size(); ++k) a[k] = v->initializer->get_as_double(static_cast<int64_t>(k));
          Tensor t = Tensor::empty(v->initializer->dtype(), v->initializer->dims());
          for (size_t half = 0; half < a.size() / 4; ++half) {
            const size_t o = half * 4;
            const double pv[4] = {a[o + 0], a[o + 2], a[o + 3], a[o + 1]};
            for (size_t k = 0; k < 4; ++k) t.set_from_double(static_cast<int64_t>(o + k), pv[k]);
          }
          n->inputs[i] = g.add_constant(v->name + "_nhwc", t);
        } else if (i == 3) {
          std::vector<int64_t> axes = v->initializer->to_int64_vector();
          for (auto& ax : axes) ax = nhwc_axis(ax);
          n->inputs[i] = g.add_constant(
              v->name + "_nhwc",
              Tensor::from_vector<int64_t>(v->initializer->dtype(), {static_cast<int64_t>(axes.size())}, axes));
        }
      }
      if (n->op_type == "Slice" && !n->input(3)) {
        int64_t k = n->inputs[1]->initializer->numel();
        std::vector<int64_t> axes;
        for (int64_t a = 0; a < k; ++a) axes.push_back(nhwc_axis(a));
        ir::Value* ax = g.add_constant("slice_axes_nhwc", Tensor::from_vector<int64_t>(DataType::kInt64, {k}, axes));
        n->inputs.resize(std::max<size_t>(n->inputs.size(), 4));
        n->inputs[3] = ax;
      }
      n->inputs[0] = as_nhwc(n->inputs[0]);
    }
    const bool nchw_in = is_conv && !nhwc.count(n->input(0)) && reads_nchw_input(*n);
    if (nchw_in) n->attrs.set(ops::kNchwInputAttr, ir::Attribute::from_int(1));
    const int64_t pad_c = is_conv && !nchw_in ? padded_channels(*n) : 0;
    for (size_t i = 0; i < n->inputs.size() && n->op_type != "Resize" && n->op_type != "Slice"; ++i) {
      ir::Value* in = n->inputs[i];
      if (!in) continue;
      if (is_conv) {
        auto slot = ops::nhwc_input_slot(*n, i);  // kPlain for X under kNchwInputAttr
        if (slot == ops::LayoutSlot::kActivation)
          n->inputs[i] = i == 0 && pad_c ? padded(as_nhwc(in), n->input(1)->initializer->dim(1), pad_c) : as_nhwc(in);
        else if (slot == ops::LayoutSlot::kWeight)  // W (1) is padded with X; a shortcut's W2 (5) reads X2
          n->inputs[i] = pad_c && i == 1 ? g.add_constant(in->name + "_nhwc_c" + std::to_string(pad_c),
                                                          pad_last_axis(*permuted(in)->initializer, pad_c))
                                         : permuted(in);
      } else if (n->op_type == "Split" && i > 0) {
        continue;  // split sizes
      } else if (in->initializer) {
        if (n->op_type == "Clip" || unary_ops().count(n->op_type)) continue;  // scalar parameters
        n->inputs[i] = permuted(in);
      } else {
        n->inputs[i] = as_nhwc(in);
      }
    }
    if (is_conv || n->op_type == "MaxPool" || n->op_type == "AveragePool" || n->op_type == "GlobalAveragePool" ||
        n->op_type == "GlobalMaxPool")
      n->attrs.set(ops::kNhwcAttr, ir::Attribute::from_int(1));
    if (n->op_type == "Concat" || n->op_type == "Split") n->attrs.set("axis", ir::Attribute::from_int(3));
    for (auto& o : n->outputs) {
      if (!o) continue;
      if (g.is_output(o)) {
        // The graph output keeps its name and NCHW: the node writes an NHWC copy.
        ir::Value* h = g.add_unique_value(o->name + "_nhwc", o->dtype);
        h->shape = ops::nchw_to_nhwc(*o->shape);
        h->layout = ir::Layout::kNHWC;
        for (ir::Node* c : g.consumers(o))
          for (auto& ci : c->inputs)
            if (ci == o) ci = h;
        ir::Node* t = g.add_node("Transpose", {h}, {o}, g.unique_name("layout_" + o->name));
        t->opset = 13;
        t->attrs.set("perm", ir::Attribute::from_ints({0, 3, 1, 2}));
        o->producer = t;
        h->producer = n;
        nhwc.insert(h);
        o = h;
      } else {
        o->shape = ops::nchw_to_nhwc(*o->shape);
        o->layout = ir::Layout::kNHWC;
        nhwc.insert(o);
      }
    }
  }
  if (!joined) return Status();
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["nhwc_layers"] += joined;
  ctx.stats["nhwc_edge_nodes"] += static_cast<int>(g.nodes().size()) - transposes_before;
  return infer_shapes(g, ctx);
}

}  // namespace kiln::passes
