// GELU fusion: the erf and tanh GELU subgraphs that PyTorch exports become one Gelu (opset 20).
//   y = Mul(Mul(x, Add(Erf(Div(x, 1.4142135)), 1)), 0.5)    becomes   y = Gelu(x)
//   y = Mul(Mul(x, 0.5), Add(Tanh(Mul(0.7978846, Add(x, Mul(0.044715, Pow(x, 3))))), 1))
//                                                            becomes   y = Gelu(x, approximate="tanh")
// Accepted variants: Mul(x, 0.70710678) for the Div; Mul(x, x*x) or Mul(x*x, x) for Pow(x, 3);
// the 0.5 applied to x, to (1 + erf) or to the product; either operand order of Add/Mul;
// constants as scalars or one-element tensors within 1e-5 (relative) of the exact value.
// Every intermediate must be read by one node only and must not be a graph output.
#include <cmath>
#include <set>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// Gelu is an opset-20 op; the node carries its own opset, the graph's import is left alone.
constexpr int kGeluOpset = 20;

// An ONNX-domain `op` node with `arity` inputs (all present) and one output.
bool is(const ir::Node* n, const char* op, size_t arity = 2) {
  if (!n || n->op_type != op || !n->domain.empty() || n->inputs.size() != arity) return false;
  for (const ir::Value* v : n->inputs)
    if (!v) return false;
  return n->outputs.size() == 1 && n->outputs[0];
}

// The one node reading `v`, if `v` is internal and read exactly once.
ir::Node* sole_consumer(const ir::Graph& g, const ir::Value* v) {
  if (!v || g.is_output(v)) return nullptr;
  auto c = g.consumers(v);
  return c.size() == 1 ? c[0] : nullptr;
}

// The other input of a two-input node, given one of them.
ir::Value* other_input(const ir::Node* n, const ir::Value* v) {
  if (n->inputs[0] == v) return n->inputs[1];
  if (n->inputs[1] == v) return n->inputs[0];
  return nullptr;
}

// A one-element constant of x's dtype whose value is `exact` (within 1e-5 relative, or
// `exact` rounded to that dtype) and that does not broadcast x to a higher rank.
bool is_const(const ir::Value* c, const ir::Value* x, double exact) {
  if (!c || !c->initializer || c->initializer->numel() != 1 || c->dtype != x->dtype) return false;
  const int64_t rank = c->initializer->rank();
  if (rank > 0 && (!x->shape || rank > static_cast<int64_t>(x->shape->size()))) return false;
  const double v = c->initializer->get_as_double(0);
  if (std::fabs(v - exact) <= 1e-5 * std::fabs(exact)) return true;
  Tensor rounded = Tensor::empty(c->dtype, {});
  rounded.set_from_double(0, exact);
  return v == rounded.get_as_double(0);
}

// Mul(x, c) or Mul(c, x) with c == `exact`: returns x.
ir::Value* mul_by_const(const ir::Node* n, double exact) {
  if (!is(n, "Mul")) return nullptr;
  for (int i = 0; i < 2; ++i) {
    ir::Value* x = n->inputs[i];
    if (!x->is_constant() && is_const(n->inputs[1 - i], x, exact)) return x;
  }
  return nullptr;
}

// The chain after the erf/tanh node's output `e`: 0.5 * x * (1 + e) in its three
// groupings. Returns the node producing y, and appends the nodes it absorbs.
ir::Node* match_tail(const ir::Graph& g, ir::Value* x, ir::Value* e, std::vector<ir::Node*>& absorbed) {
  ir::Node* add = sole_consumer(g, e);
  if (!is(add, "Add") || !is_const(other_input(add, e), x, 1.0)) return nullptr;
  ir::Value* p = add->outputs[0];  // 1 + e
  ir::Node* m1 = sole_consumer(g, p);
  if (!is(m1, "Mul")) return nullptr;
  ir::Value* o = other_input(m1, p);
  if (!o || o == p) return nullptr;
  ir::Node* last = nullptr;
  if (o == x) {  // (x * p) * 0.5
    ir::Node* m2 = sole_consumer(g, m1->outputs[0]);
    if (m2 && mul_by_const(m2, 0.5) == m1->outputs[0]) last = m2;
    if (last) absorbed.push_back(m1);
  } else if (is_const(o, x, 0.5)) {  // x * (p * 0.5)
    ir::Node* m2 = sole_consumer(g, m1->outputs[0]);
    if (is(m2, "Mul") && other_input(m2, m1->outputs[0]) == x) last = m2;
    if (last) absorbed.push_back(m1);
  } else if (o->producer && mul_by_const(o->producer, 0.5) == x && sole_consumer(g, o) == m1) {  // (x * 0.5) * p
    last = m1;
    absorbed.push_back(o->producer);
  }
  if (!last) return nullptr;
  absorbed.push_back(add);
  return last;
}

// Erf(x / sqrt(2)) or Erf(x * (1 / sqrt(2))): returns x.
ir::Value* match_erf_input(const ir::Graph& g, ir::Node* erf, std::vector<ir::Node*>& absorbed) {
  ir::Value* t = erf->inputs[0];
  ir::Node* n = t ? t->producer : nullptr;
  if (!n || sole_consumer(g, t) != erf) return nullptr;
  ir::Value* x = nullptr;
  if (is(n, "Div") && !n->inputs[0]->is_constant() && is_const(n->inputs[1], n->inputs[0], M_SQRT2))
    x = n->inputs[0];
  else
    x = mul_by_const(n, M_SQRT1_2);
  if (x) absorbed.push_back(n);
  return x;
}

// x^3 as Pow(x, 3), Mul(x, Mul(x, x)) or Mul(Mul(x, x), x), read only by `reader`.
bool is_cube(const ir::Graph& g, ir::Value* c, ir::Value* x, const ir::Node* reader, std::vector<ir::Node*>& absorbed) {
  ir::Node* n = c ? c->producer : nullptr;
  if (!n || sole_consumer(g, c) != reader) return false;
  if (is(n, "Pow") && n->inputs[0] == x) {
    const ir::Value* e = n->inputs[1];
    if (!e->initializer || e->initializer->numel() != 1 || e->initializer->get_as_double(0) != 3.0) return false;
    if (e->initializer->rank() > 0 && (!x->shape || e->initializer->rank() > static_cast<int64_t>(x->shape->size())))
      return false;
    absorbed.push_back(n);
    return true;
  }
  if (!is(n, "Mul")) return false;
  ir::Value* sq = other_input(n, x);
  ir::Node* s = sq && sq != x ? sq->producer : nullptr;
  if (!is(s, "Mul") || s->inputs[0] != x || s->inputs[1] != x || sole_consumer(g, sq) != n) return false;
  absorbed.push_back(n);
  absorbed.push_back(s);
  return true;
}

// Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)): returns x.
ir::Value* match_tanh_input(const ir::Graph& g, ir::Node* tanh, std::vector<ir::Node*>& absorbed) {
  ir::Value* u = tanh->inputs[0];
  ir::Node* scale = u ? u->producer : nullptr;
  if (!scale || sole_consumer(g, u) != tanh) return nullptr;
  ir::Value* v = mul_by_const(scale, 0.7978845608028654);  // sqrt(2 / pi)
  ir::Node* add = v ? v->producer : nullptr;
  if (!is(add, "Add") || sole_consumer(g, v) != scale) return nullptr;
  for (int i = 0; i < 2; ++i) {
    ir::Value* x = add->inputs[i];
    ir::Value* w = add->inputs[1 - i];
    ir::Node* wn = w->producer;
    if (x == w || x->is_constant() || !wn || sole_consumer(g, w) != add) continue;
    ir::Value* cube = mul_by_const(wn, 0.044715);
    std::vector<ir::Node*> cube_nodes;
    if (!cube || !is_cube(g, cube, x, wn, cube_nodes)) continue;
    absorbed.insert(absorbed.end(), {scale, add, wn});
    absorbed.insert(absorbed.end(), cube_nodes.begin(), cube_nodes.end());
    return x;
  }
  return nullptr;
}

bool gelu_dtype(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16 || t == DataType::kFloat64;
}

}  // namespace

Status fuse_gelu(ir::Graph& g, PassContext& ctx) {
  std::vector<ir::Node*> cores;  // the Erf and Tanh nodes
  for (auto& n : g.nodes())
    if (is(n.get(), "Erf", 1) || is(n.get(), "Tanh", 1)) cores.push_back(n.get());
  std::set<const ir::Node*> removed;
  int fused_erf = 0, fused_tanh = 0;
  for (ir::Node* core : cores) {
    const bool tanh = core->op_type == "Tanh";
    std::vector<ir::Node*> absorbed = {core};
    ir::Value* x = tanh ? match_tanh_input(g, core, absorbed) : match_erf_input(g, core, absorbed);
    if (!x || !gelu_dtype(x->dtype)) continue;
    ir::Node* last = match_tail(g, x, core->outputs[0], absorbed);
    if (!last) continue;
    ir::Value* y = last->outputs[0];
    // Elementwise with one-element constants: y has x's shape (compared by rank: unknown dims never compare equal).
    if (y->dtype != x->dtype || (y->shape && x->shape && y->shape->size() != x->shape->size())) continue;
    // The node writing y becomes the Gelu: it already sits after x in topological order.
    const int opset = std::max(kGeluOpset, last->opset);
    std::vector<const ir::Node*> originals(absorbed.rbegin(), absorbed.rend());
    originals.push_back(last);
    const std::vector<std::string> from = fused_names(originals);
    last->op_type = "Gelu";
    last->domain.clear();
    last->opset = opset;
    last->inputs = {x};
    last->attrs = ir::Attributes();
    if (tanh) last->attrs.set("approximate", ir::Attribute::from_string("tanh"));
    set_fused_names(*last, from);
    for (ir::Node* a : absorbed) {
      a->inputs.clear();  // so later matches do not count them as readers
      removed.insert(a);
    }
    ++(tanh ? fused_tanh : fused_erf);
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  ctx.stats["fused_gelu"] += fused_erf;
  ctx.stats["fused_gelu_tanh"] += fused_tanh;
  return Status();
}

}  // namespace kiln::passes
