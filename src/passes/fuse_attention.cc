// Multi-head attention fusion (CUDA engines): the exporters' attention subgraph
// becomes one kiln FusedAttention node (src/ops/attention/fused_attention.h), a
// flash-attention kernel that never writes the [B, H, S, S] scores.
//   q' = view(Q); k' = view(K); v' = view(V)        (Transpose/Reshape/Squeeze/Unsqueeze/Gather/Slice chains)
//   s  = MatMul(q' [* c1], k'^T [* c2]) [* c3 | / c4] [+ mask]
//   p  = Softmax(s, axis=-1) [-> Where(IsNaN(p), 0, p)]
//   o  = MatMul(p, v') [-> Reshape/Transpose chain up to its last Transpose]
// becomes
//   o  = FusedAttention(Q, K, V, mask, <reshape shapes>; scale = c1*c2*c3/c4, views)
// The head split/merge transposes and the packed-QKV slicing become strides the
// kernel reads through (attn_view.h): those copies disappear. Intermediate values
// read by Shape nodes keep their producers, which then only feed shape arithmetic
// and never run (ir::shape_only_nodes).
#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "base/env.h"
#include "ir/shape_only.h"
#include "ops/attention/attn_view.h"
#include "passes/attention_node.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"
#include "runtime/shape_eval.h"

namespace kiln::passes {

namespace {

using ops::attn::encode_step;

bool is(const ir::Node* n, const char* op) { return n && n->op_type == op && n->domain.empty(); }

// The nodes reading v as data (Shape/Size read only its type).
std::vector<ir::Node*> data_readers(const ir::Graph& g, const ir::Value* v) {
  std::vector<ir::Node*> r;
  for (ir::Node* c : g.consumers(v))
    if (!ir::reads_type_only(c)) r.push_back(c);
  return r;
}

// The one node reading v as data, when v is not a graph output.
ir::Node* sole_data_reader(const ir::Graph& g, const ir::Value* v) {
  if (!v || g.is_output(v)) return nullptr;
  auto r = data_readers(g, v);
  return r.size() == 1 ? r[0] : nullptr;
}

// Values computed from shapes and constants only: their values are known on the
// host whenever input dims are (the CUDA executor evaluates them per plan).
class ShapeDerived {
 public:
  bool operator()(const ir::Value* v) {
    if (!v) return false;
    if (v->initializer) return true;
    auto it = memo_.find(v);
    if (it != memo_.end()) return it->second;
    memo_[v] = false;  // cycles cannot happen, but be safe
    const ir::Node* p = v->producer;
    bool ok = false;
    if (p && ir::reads_type_only(p)) {
      ok = true;
    } else if (p && kArith.count(p->op_type) && p->domain.empty()) {
      ok = true;
      for (const ir::Value* in : p->inputs) ok = ok && (!in || (*this)(in));
    }
    memo_[v] = ok;
    return ok;
  }

 private:
  inline static const std::set<std::string> kArith = {
      "Gather",   "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Mul", "Add",   "Sub",  "Div",  "Reshape",
      "Identity", "Equal",     "Where",   "Max",    "Min",   "Abs",  "Neg", "Floor", "Ceil", "Sqrt", "Constant"};
  std::map<const ir::Value*, bool> memo_;
};

// Reads the constant axes of Squeeze/Unsqueeze (attribute before opset 13, input after).
bool axes_of(const ir::Node* n, std::vector<int64_t>& axes) {
  if (n->attrs.has("axes")) {
    axes = n->attrs.get_ints("axes");
    return true;
  }
  return n->input(1) && constant_ints(n->input(1), axes);
}

struct Builder {
  ShapeDerived shape_derived;
  std::vector<ir::Value*> shape_inputs;  // node inputs 4.. (Reshape shapes)

  int64_t slot_of(ir::Value* v) {
    for (size_t i = 0; i < shape_inputs.size(); ++i)
      if (shape_inputs[i] == v) return static_cast<int64_t>(4 + i);
    shape_inputs.push_back(v);
    return static_cast<int64_t>(4 + shape_inputs.size() - 1);
  }

  // One view step for node n (whose input 0 is the viewed tensor); false if n is not a view.
  bool step_of(const ir::Node* n, std::vector<int64_t>& code, bool output_side) {
    if (is(n, "Transpose")) {
      const ir::Value* x = n->input(0);
      std::vector<int64_t> perm = n->attrs.get_ints("perm");
      if (perm.empty()) {
        if (!x->shape) return false;
        for (size_t i = x->shape->size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
      }
      encode_step(code, ops::attn::kTranspose, perm);
      return true;
    }
    if (is(n, "Reshape") && n->input(1) && shape_derived(n->input(1))) {
      encode_step(code, ops::attn::kReshape, {slot_of(n->input(1)), n->attrs.get_int("allowzero", 0)});
      return true;
    }
    std::vector<int64_t> axes;
    if ((is(n, "Squeeze") || is(n, "Unsqueeze")) && axes_of(n, axes)) {
      encode_step(code, is(n, "Squeeze") ? ops::attn::kSqueeze : ops::attn::kUnsqueeze, axes);
      return true;
    }
    if (output_side) return false;
    if (is(n, "Gather") && n->input(1) && n->input(1)->initializer && n->input(1)->initializer->rank() == 0) {
      encode_step(code, ops::attn::kGather, {n->attrs.get_int("axis", 0), n->input(1)->initializer->get_as_int64(0)});
      return true;
    }
    if (is(n, "Slice") && n->opset >= 10) {
      std::vector<int64_t> st, en, ax = {0}, sp = {1};
      if (!constant_ints(n->input(1), st) || !constant_ints(n->input(2), en) || st.size() != 1 || en.size() != 1)
        return false;
      if (n->input(3) && (!constant_ints(n->input(3), ax) || ax.size() != 1)) return false;
      if (n->input(4) && (!constant_ints(n->input(4), sp) || sp.size() != 1 || sp[0] <= 0)) return false;
      encode_step(code, ops::attn::kSlice, {ax[0], st[0], en[0], sp[0]});
      return true;
    }
    return false;
  }

  // Walks v back through view ops to its base; the program maps the base to v.
  ir::Value* trace(ir::Value* v, std::vector<int64_t>& code) {
    std::vector<std::vector<int64_t>> rev;
    while (v->producer) {
      std::vector<int64_t> step;
      if (!step_of(v->producer, step, false)) break;
      rev.push_back(step);
      v = v->producer->input(0);
    }
    for (size_t i = rev.size(); i-- > 0;) code.insert(code.end(), rev[i].begin(), rev[i].end());
    return v;
  }
};

// A one-element value: a constant (folded into `scale`) or shape arithmetic the
// host evaluates per plan (a node input named in `dynamic`: exporters compute
// 1/sqrt(head_dim) from Shape when the batch dim is symbolic).
bool scalar_operand(ir::Value* v, Builder& b, double& scale, bool divide,
                    std::vector<std::pair<ir::Value*, bool>>& dynamic) {
  double c;
  if (scalar_constant(v, 4, c)) {
    if (divide && c == 0) return false;
    scale = divide ? scale / c : scale * c;
    return true;
  }
  if (!v->shape || v->shape->size() > 4 || shape_volume(*v->shape) != 1 || !b.shape_derived(v)) return false;
  dynamic.push_back({v, divide});
  return true;
}

// Peels Mul/Div by scalars off v (reading back).
ir::Value* peel_scale(ir::Value* v, Builder& b, double& scale, std::vector<std::pair<ir::Value*, bool>>& dynamic,
                      std::vector<const ir::Node*>& nodes) {
  while (v->producer) {
    ir::Node* n = v->producer;
    if (is_onnx_op(n, "Mul", 2)) {
      if (scalar_operand(n->inputs[1], b, scale, false, dynamic))
        v = n->inputs[0];
      else if (scalar_operand(n->inputs[0], b, scale, false, dynamic))
        v = n->inputs[1];
      else
        break;
    } else if (is_onnx_op(n, "Div", 2) && scalar_operand(n->inputs[1], b, scale, true, dynamic)) {
      v = n->inputs[0];
    } else {
      break;
    }
    nodes.push_back(n);
  }
  return v;
}

constexpr int64_t kMinQueryTiles = 2 * 132;

// KILN_FUSE_ATTENTION_MIN_TILES=N overrides the small-problem cut-off of head sizes
// other than 64/128 (0: fuse always).
int64_t min_query_tiles() {
  const std::optional<long long> v = env_int("KILN_FUSE_ATTENTION_MIN_TILES");
  return v && *v >= 0 ? *v : kMinQueryTiles;
}

// B*H*ceil(Sq/64) from the score matmul's Q operand ([B,H,Sq,D] or [B*H,Sq,D]);
// -1 when not known.
int64_t query_tiles(const Shape& s) {
  int64_t n = 1;
  for (size_t i = 0; i + 2 < s.size(); ++i) {
    if (!s[i].known()) return -1;
    n *= s[i].value;
  }
  const Dim& sq = s[s.size() - 2];
  return sq.known() ? n * ((sq.value + 63) / 64) : -1;
}

bool float_type(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

}  // namespace

Status fuse_attention(ir::Graph& g, PassContext& ctx) {
  if (!ctx.config || ctx.config->device() != DeviceType::kCUDA) return Status();
  // FP32 engines fuse only where the register kernel takes FP32 (head size 64, run as
  // split bf16: more precise than the TF32 matmuls it replaces, so only where TF32 is
  // allowed); the general kernel's FP32 path has no tensor cores (ViT-B/16 bs32 FP32
  // measured 26 ms fused, eager 8.3 ms) and elsewhere cuBLASLt's matmuls stay.
  const bool fp32_engine = !ctx.config->get_flag(BuilderFlag::kFP16) && !ctx.config->get_flag(BuilderFlag::kBF16);
  if (fp32_engine && !ctx.config->get_flag(BuilderFlag::kTF32)) return Status();
  std::vector<ir::Node*> softmaxes;
  for (auto& n : g.nodes())
    if (is(n.get(), "Softmax")) softmaxes.push_back(n.get());
  if (softmaxes.empty()) return Status();
  std::set<const ir::Node*> replaced;
  int fused = 0, small = 0;
  const Propagation opt = opt_types(g, *ctx.config);
  const int64_t min_tiles = min_query_tiles();
  for (ir::Node* sm : softmaxes) {
    ir::Value* s = sm->input(0);
    if (!s || !s->shape || s->shape->size() < 3 || s->shape->size() > 4 || !float_type(s->dtype)) continue;
    const auto rank = static_cast<int64_t>(s->shape->size());
    int64_t axis = sm->attrs.get_int("axis", sm->opset >= 13 ? -1 : 1);
    if (axis != -1 && axis != rank - 1) continue;
    std::vector<const ir::Node*> chain;  // fused originals, graph order not required

    // Back from the softmax: [+ mask] [* / scale] <- MatMul(q, kT)
    double scale = 1.0;
    Builder b;
    std::vector<std::pair<ir::Value*, bool>> dyn_scale;
    ir::Value* mask = nullptr;
    ir::Value* cur = s;
    if (is_onnx_op(cur->producer, "Add", 2) && sole_data_reader(g, cur) == sm) {
      ir::Node* add = cur->producer;
      for (int side = 0; side < 2 && !mask; ++side) {
        double sc = 1.0;
        std::vector<const ir::Node*> sn;
        std::vector<std::pair<ir::Value*, bool>> sd;
        ir::Value* x = peel_scale(add->inputs[side], b, sc, sd, sn);
        if (is_onnx_op(x->producer, "MatMul", 2)) {
          mask = add->inputs[1 - side];
          cur = add->inputs[side];
        }
      }
      if (!mask || !mask->shape || mask->shape->size() > 4 || mask->dtype != s->dtype) continue;
      chain.push_back(add);
    } else if (sole_data_reader(g, cur) != sm) {
      continue;
    }
    std::vector<const ir::Node*> scale_nodes;
    ir::Value* scores = peel_scale(cur, b, scale, dyn_scale, scale_nodes);
    ir::Node* qk = scores->producer;
    if (!is_onnx_op(qk, "MatMul", 2)) continue;
    auto private_outputs = [&](const std::vector<const ir::Node*>& nodes) {
      return std::all_of(nodes.begin(), nodes.end(),
                         [&](const ir::Node* n) { return sole_data_reader(g, n->outputs[0]); });
    };
    if (!private_outputs(scale_nodes) || !sole_data_reader(g, scores)) continue;
    chain.insert(chain.end(), scale_nodes.begin(), scale_nodes.end());
    chain.push_back(qk);

    // Forward from the softmax: [Where(IsNaN(p), 0, p)] -> MatMul(p, v)
    ir::Value* p = sm->outputs[0];
    bool zero_masked_rows = false;
    ir::Node* pv = nullptr;
    {
      auto readers = data_readers(g, p);
      if (g.is_output(p)) continue;
      if (readers.size() == 1 && is_onnx_op(readers[0], "MatMul", 2) && readers[0]->inputs[0] == p) {
        pv = readers[0];
      } else if (readers.size() == 2) {
        ir::Node* isnan = is(readers[0], "IsNaN") ? readers[0] : is(readers[1], "IsNaN") ? readers[1] : nullptr;
        ir::Node* where = is_onnx_op(readers[0], "Where", 3)   ? readers[0]
                          : is_onnx_op(readers[1], "Where", 3) ? readers[1]
                                                               : nullptr;
        double zero;
        if (!isnan || !where || where->inputs[0] != isnan->outputs[0] || where->inputs[2] != p ||
            !scalar_constant(where->inputs[1], 4, zero) || zero != 0.0 ||
            sole_data_reader(g, isnan->outputs[0]) != where)
          continue;
        ir::Node* mm = sole_data_reader(g, where->outputs[0]);
        if (!is_onnx_op(mm, "MatMul", 2) || mm->inputs[0] != where->outputs[0]) continue;
        pv = mm;
        zero_masked_rows = true;
        chain.push_back(isnan);
        chain.push_back(where);
      } else {
        continue;
      }
    }
    chain.push_back(sm);
    chain.push_back(pv);

    // Operands: rank 4 [B,H,S,D] (or rank 3 [B*H,S,D], viewed with H = 1).
    ir::Value* q = qk->inputs[0];
    ir::Value* kt = qk->inputs[1];
    ir::Value* v = pv->inputs[1];
    std::vector<const ir::Node*> qn, kn;
    q = peel_scale(q, b, scale, dyn_scale, qn);
    kt = peel_scale(kt, b, scale, dyn_scale, kn);
    if (!private_outputs(qn) || !private_outputs(kn)) continue;
    if (!q->shape || !kt->shape || !v->shape || q->shape->size() != static_cast<size_t>(rank) ||
        kt->shape->size() != static_cast<size_t>(rank) || v->shape->size() != static_cast<size_t>(rank))
      continue;
    if (q->dtype != s->dtype || kt->dtype != s->dtype || v->dtype != s->dtype) continue;

    std::vector<int64_t> qv, kv, vv, ov;
    ir::Value* qb = b.trace(q, qv);
    ir::Value* kb = b.trace(kt, kv);
    ir::Value* vb = b.trace(v, vv);
    if (rank == 3) {
      for (auto* code : {&qv, &kv, &vv}) encode_step(*code, ops::attn::kUnsqueeze, {1});
    }
    encode_step(kv, ops::attn::kTranspose, {0, 1, 3, 2});  // k^T -> k
    // Head sizes (the last dims of the Q and V operands): the kernel takes at most 128.
    const Shape* qshape = opt_shape(q, opt);
    const Shape* vshape = opt_shape(v, opt);
    auto head_ok = [](const Shape* sh) {
      return sh && !sh->empty() && sh->back().known() && sh->back().value > 0 && sh->back().value <= 128;
    };
    if (!head_ok(qshape) || !head_ok(vshape)) continue;
    // Small problems (batch 1) on the general kernel: fewer 64-query tiles than two
    // waves of SMs leave it latency-bound, and cuBLASLt's unfused path measured
    // faster on the H100 (BERT-base bs1 0.83 ms unfused vs 1.09 fused). Head sizes
    // 64 and 128 run the register-resident kernel, which wins at every batch
    // (BERT-base bs1 0.81 fused; ViT-B/16 bs1 0.84 fused vs 1.04 unfused).
    const int64_t head = qshape->back().value;
    const bool register_kernel = (head == 64 || head == 128) && vshape->back().value == head;
    if (fp32_engine && !(register_kernel && head == 64 && s->dtype == DataType::kFloat32)) {
      ++ctx.stats["attention_left_unfused_fp32"];
      continue;
    }
    if (const int64_t tiles = query_tiles(*qshape); !register_kernel && tiles >= 0 && tiles < min_tiles) {
      ++small;
      continue;
    }

    // Output: absorb the view chain up to its last Transpose.
    ir::Value* o = pv->outputs[0];
    ir::Value* end = o;
    std::vector<const ir::Node*> out_nodes, absorbed;
    std::vector<int64_t> code;
    if (rank == 3) encode_step(code, ops::attn::kSqueeze, {1});  // logical [B,1,S,D] -> [B,S,D]
    size_t committed = code.size();
    for (ir::Value* c = o;;) {
      ir::Node* r = sole_data_reader(g, c);
      if (!r || r->inputs[0] != c) break;
      if (!b.step_of(r, code, true)) break;
      out_nodes.push_back(r);
      c = r->outputs[0];
      if (is(r, "Transpose")) {
        end = c;
        committed = code.size();
        absorbed = out_nodes;
      }
    }
    code.resize(committed);
    ov = code;

    std::vector<int64_t> scale_inputs;  // (slot, divide) pairs
    for (auto& [val, divide] : dyn_scale) {
      scale_inputs.push_back(b.slot_of(val));
      scale_inputs.push_back(divide ? 1 : 0);
    }
    std::vector<ir::Value*> inputs = {qb, kb, vb, mask};
    inputs.insert(inputs.end(), b.shape_inputs.begin(), b.shape_inputs.end());
    std::string name = pv->name.empty() ? g.unique_name("FusedAttention") : pv->name;
    ir::Node* producer = end->producer;  // pv, or the last absorbed Transpose
    FusedAttentionSpec spec{inputs, scale, qv, kv, vv, ov, scale_inputs, zero_masked_rows};
    ir::Node* f = add_fused_attention(g, spec, end, name + "/fused");
    std::vector<const ir::Node*> originals = chain;
    originals.insert(originals.end(), qn.begin(), qn.end());
    originals.insert(originals.end(), kn.begin(), kn.end());
    originals.insert(originals.end(), absorbed.begin(), absorbed.end());
    record_fusion(*f, originals);
    // The old producer of `end` loses that output; the rest of the chain stays
    // only where Shape nodes read it, and dead-node elimination drops the others.
    for (auto& out : producer->outputs)
      if (out == end) out = nullptr;
    replaced.insert(producer);
    ++fused;
  }
  if (small) ctx.stats["attention_left_unfused_small"] += small;
  if (!fused) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return replaced.count(&n) != 0; });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  KILN_RETURN_IF_ERROR(eliminate_dead_nodes(g, ctx));
  g.prune_values();
  g.opset_imports.emplace("kiln", 1);
  ctx.stats["fused_attention"] += fused;
  return Status();
}

}  // namespace kiln::passes
