#include "passes/norm_match.h"

#include <algorithm>
#include <set>

#include "passes/fusion_util.h"

namespace kiln::passes {

namespace {

bool norm_dtype(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

// The last dim of x when known and non-zero.
int64_t hidden_of(const ir::Value* x) {
  if (!x->shape || x->shape->empty() || !x->shape->back().known()) return 0;
  return x->shape->back().value;
}

// A ReduceMean of `in` over its last axis only, keeping dims.
bool last_axis_mean(const ir::Node* n, const ir::Value* in) {
  if (!n || n->op_type != "ReduceMean" || !n->domain.empty() || n->inputs.empty() || n->inputs[0] != in ||
      n->outputs.size() != 1 || !n->outputs[0])
    return false;
  if (n->attrs.get_int("keepdims", 1) != 1 || !in->shape || in->shape->empty()) return false;
  std::vector<int64_t> axes;
  if (n->opset < 18) {
    if (n->inputs.size() != 1) return false;
    axes = n->attrs.get_ints("axes");
  } else if (n->inputs.size() != 2 || !constant_ints(n->inputs[1], axes)) {
    return false;
  }
  const auto rank = static_cast<int64_t>(in->shape->size());
  return axes.size() == 1 && (axes[0] == -1 || axes[0] == rank - 1);
}

// A constant broadcasting along the last axis only (one element, or [1, .., 1, hidden]) of x's dtype.
bool row_constant(const ir::Value* v, const ir::Value* x) {
  if (!v || !v->initializer || v->dtype != x->dtype || !x->shape) return false;
  const Tensor& t = *v->initializer;
  if (t.rank() > static_cast<int64_t>(x->shape->size())) return false;
  if (t.numel() == 1) return true;
  const int64_t h = hidden_of(x);
  if (h == 0 || t.numel() != h || t.dims().back() != h) return false;
  return true;
}

// Pow(v, e) with a one-element constant e == `exponent`, or (for 2) Mul(v, v): returns v.
ir::Value* power_of(const ir::Node* n, double exponent, size_t max_rank) {
  if (is_onnx_op(n, "Mul", 2) && exponent == 2.0 && n->inputs[0] == n->inputs[1]) return n->inputs[0];
  double e = 0;
  if (is_onnx_op(n, "Pow", 2) && scalar_constant(n->inputs[1], max_rank, e) && e == exponent) return n->inputs[0];
  return nullptr;
}

}  // namespace

bool match_norm(const ir::Graph& g, ir::Node* var_mean, bool centered, NormMatch& m) {
  m = NormMatch();
  ir::Value* sq = var_mean->input(0);
  ir::Node* sq_node = sq ? sq->producer : nullptr;
  if (!sq_node || !last_axis_mean(var_mean, sq) || only_reader(g, sq) != var_mean) return false;
  const size_t rank = sq->shape->size();
  ir::Value* d = power_of(sq_node, 2.0, rank);
  if (!d || !norm_dtype(d->dtype)) return false;
  std::vector<ir::Node*> nodes = {sq_node, var_mean};
  ir::Value* x = d;
  if (centered) {
    ir::Node* sub = d->producer;
    if (!is_onnx_op(sub, "Sub", 2) || g.is_output(d) || g.consumers(d).size() != 2) return false;
    x = sub->inputs[0];
    ir::Value* mean = sub->inputs[1];
    if (x == mean || !last_axis_mean(mean->producer, x) || only_reader(g, mean) != sub) return false;
    nodes.insert(nodes.begin(), {mean->producer, sub});
  }
  if (!x->shape || x->shape->size() != rank || x->dtype != d->dtype) return false;

  // var + eps
  ir::Value* var = var_mean->outputs[0];
  ir::Node* add = only_reader(g, var);
  double eps = 0;
  if (!is_onnx_op(add, "Add", 2) || !scalar_constant(other_input(add, var), rank, eps)) return false;
  ir::Value* ve = add->outputs[0];
  nodes.push_back(add);

  // d / sqrt(var + eps), d * reciprocal(sqrt(var + eps)) or d * (var + eps)^-0.5
  ir::Node* root = only_reader(g, ve);
  if (!root) return false;
  ir::Node* norm = nullptr;
  if (is_onnx_op(root, "Sqrt", 1)) {
    nodes.push_back(root);
    ir::Value* s = root->outputs[0];
    ir::Node* next = only_reader(g, s);
    if (is_onnx_op(next, "Div", 2) && next->inputs[0] == d && next->inputs[1] == s) {
      norm = next;
    } else if (is_onnx_op(next, "Reciprocal", 1)) {
      nodes.push_back(next);
      ir::Node* mul = only_reader(g, next->outputs[0]);
      if (is_onnx_op(mul, "Mul", 2) && other_input(mul, next->outputs[0]) == d) norm = mul;
    }
  } else if (power_of(root, -0.5, rank) == ve && root->op_type == "Pow") {
    nodes.push_back(root);
    ir::Node* mul = only_reader(g, root->outputs[0]);
    if (is_onnx_op(mul, "Mul", 2) && other_input(mul, root->outputs[0]) == d) norm = mul;
  }
  if (!norm) return false;
  nodes.push_back(norm);

  ir::Node* last = norm;
  ir::Node* next = only_reader(g, last->outputs[0]);
  if (is_onnx_op(next, "Mul", 2) && row_constant(other_input(next, last->outputs[0]), x)) {
    m.scale = other_input(next, last->outputs[0]);
    last = next;
    nodes.push_back(last);
    next = only_reader(g, last->outputs[0]);
  }
  if (centered && is_onnx_op(next, "Add", 2) && row_constant(other_input(next, last->outputs[0]), x)) {
    m.bias = other_input(next, last->outputs[0]);
    last = next;
    nodes.push_back(last);
  }
  ir::Value* y = last->outputs[0];
  if (y->dtype != x->dtype || (y->shape && y->shape->size() != rank)) return false;
  m.x = x;
  m.epsilon = eps;
  m.last = last;
  m.nodes = std::move(nodes);
  return true;
}

ir::Value* row_vector(ir::Graph& g, ir::Value* v, const ir::Value* x) {
  const int64_t h = hidden_of(x);
  if (h == 0) return nullptr;
  if (!v) {
    std::vector<double> ones(static_cast<size_t>(h), 1.0);
    return g.add_constant("norm_scale", Tensor::from_vector<double>(x->dtype, {h}, ones));
  }
  const Tensor& t = *v->initializer;
  if (t.rank() == 1 && t.numel() == h) return v;
  if (t.numel() == h) return g.add_constant(v->name + "_vector", t.reshaped({h}));
  std::vector<double> same(static_cast<size_t>(h), t.get_as_double(0));
  return g.add_constant(v->name + "_vector", Tensor::from_vector<double>(x->dtype, {h}, same));
}

Status fuse_norms(ir::Graph& g, PassContext& ctx, bool centered) {
  std::vector<ir::Node*> means;
  for (auto& n : g.nodes())
    if (n->op_type == "ReduceMean" && n->domain.empty()) means.push_back(n.get());
  std::set<const ir::Node*> removed;
  int fused = 0;
  for (ir::Node* r : means) {
    if (removed.count(r)) continue;
    NormMatch m;
    if (!match_norm(g, r, centered, m)) continue;
    ir::Value* scale = row_vector(g, m.scale, m.x);
    ir::Value* bias = centered && m.bias ? row_vector(g, m.bias, m.x) : nullptr;
    if (!scale || (centered && m.bias && !bias)) continue;
    ir::Node* norm = m.last;
    const std::vector<std::string> from = fused_names(std::vector<const ir::Node*>(m.nodes.begin(), m.nodes.end()));
    // The last node becomes the normalization: it already sits after x.
    norm->op_type = centered ? "LayerNormalization" : "RMSNormalization";
    norm->domain.clear();
    norm->opset = std::max(centered ? 17 : 23, norm->opset);
    norm->inputs = {m.x, scale};
    if (bias) norm->inputs.push_back(bias);
    norm->attrs = ir::Attributes();
    norm->attrs.set("axis", ir::Attribute::from_int(-1));
    norm->attrs.set("epsilon", ir::Attribute::from_float(static_cast<float>(m.epsilon)));
    set_fused_names(*norm, from);
    for (ir::Node* n : m.nodes)
      if (n != norm) {
        n->inputs.clear();  // so later matches do not count them as readers
        removed.insert(n);
      }
    ++fused;
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  ctx.stats[centered ? "fused_layernorm" : "fused_rmsnorm"] += fused;
  return Status();
}

}  // namespace kiln::passes
