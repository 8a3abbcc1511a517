// Residual + LayerNorm fusion: an Add feeding a last-axis LayerNormalization becomes one
// com.microsoft SkipLayerNormalization, which reads each row once.
//   s = Add(a, b); y = LayerNormalization(s, gamma, beta)   becomes   y = SkipLayerNormalization(a, b, gamma, beta)
//   ... and when s has other readers (pre-norm residual stream), SkipLayerNormalization's
//   fourth output (input + skip) writes s:   y, _, _, s = SkipLayerNormalization(a, b, gamma, beta)
// a must have the sum's shape and b broadcast to it (same shape, or a [hidden] bias); gamma and
// beta are constants of `hidden` elements; LayerNorm's Mean / InvStdDev outputs must be unused.
// A constant skip whose input adds another constant takes that one too (BERT's embeddings:
// word + token-type, then + position, where token type and position fold to constants):
//   t = Add(x, c1); y = SkipLayerNormalization(t, c2, ...)    becomes    y = SkipLayerNormalization(x, c1 + c2, ...)
// when t has no other reader, x has t's shape and c1 + c2 still broadcasts to it (one kernel fewer).
#include <set>

#include "ops/op.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is(const ir::Node* n, const char* op) { return n && n->op_type == op && n->domain.empty(); }

bool norm_dtype(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

// A constant of `hidden` elements along the last axis, of dtype `t`, not above rank `rank`.
bool row_param(const ir::Value* v, int64_t hidden, DataType t, size_t rank) {
  if (!v || !v->initializer || v->dtype != t) return false;
  const Tensor& w = *v->initializer;
  return w.numel() == hidden && w.rank() >= 1 && w.dims().back() == hidden && static_cast<size_t>(w.rank()) <= rank;
}

// Same rank and dims, where two unknown dims count as equal: a residual sum's
// operands through Reshape-derived dims are unknown on both sides. (A broadcast
// hidden there would change the fused node's output shape and fail at run time,
// never give a silently wrong answer.)
bool same_shape(const ir::Value* a, const ir::Value* b) {
  if (!a->shape || !b->shape || a->shape->size() != b->shape->size()) return false;
  for (size_t i = 0; i < a->shape->size(); ++i) {
    const Dim &x = (*a->shape)[i], &y = (*b->shape)[i];
    if (!(x == y) && (x.known() || y.known())) return false;
  }
  return true;
}

// SkipLayerNormalization(Add(x, c1), c2) -> SkipLayerNormalization(x, c1 + c2), for the nodes
// this pass made (input, skip, gamma[, beta]); returns how many.
int fold_constant_skips(ir::Graph& g) {
  std::set<const ir::Node*> removed;
  for (auto& n : g.nodes()) {
    ir::Node* sln = n.get();
    if (sln->op_type != "SkipLayerNormalization" || sln->domain != "com.microsoft" || sln->inputs.size() > 4) continue;
    ir::Value* t = sln->input(0);
    ir::Value* c2 = sln->input(1);
    if (!t || !c2 || !c2->initializer || !is(t->producer, "Add") || only_reader(g, t) != sln) continue;
    ir::Node* add = t->producer;
    if (add->inputs.size() != 2 || !add->inputs[0] || !add->inputs[1] || removed.count(add)) continue;
    const int k = add->inputs[1]->initializer ? 1 : add->inputs[0]->initializer ? 0 : -1;
    if (k < 0) continue;
    ir::Value* c1 = add->inputs[static_cast<size_t>(k)];
    ir::Value* x = add->inputs[static_cast<size_t>(1 - k)];
    if (x->initializer || c1->dtype != t->dtype || c2->dtype != t->dtype || x->dtype != t->dtype || !same_shape(x, t))
      continue;
    std::vector<Tensor> sum;
    ir::Node probe;  // c1 + c2 with the Add's own broadcasting, never added to the graph
    probe.op_type = "Add";
    probe.opset = 14;
    probe.inputs = {c1, c2};
    probe.outputs = {t};
    if (!ops::run_node(probe, {c1->initializer.get(), c2->initializer.get()}, sum).ok() || sum.size() != 1) continue;
    // The folded skip must still broadcast to the input (it had t's shape before).
    const Dims& sd = sum[0].dims();
    if (!t->shape || sd.size() > t->shape->size()) continue;
    bool fits = true;
    for (size_t i = 0; i < sd.size(); ++i) {
      const Dim& d = (*t->shape)[t->shape->size() - sd.size() + i];
      fits = fits && (sd[i] == 1 || (d.known() && d.value == sd[i]));
    }
    if (!fits) continue;
    std::vector<std::string> from = fused_names({add, sln});
    sln->inputs[0] = x;
    sln->inputs[1] = g.add_constant(c1->name + "_plus_" + c2->name, std::move(sum[0]));
    set_fused_names(*sln, std::move(from));
    add->inputs.clear();
    removed.insert(add);
  }
  if (removed.empty()) return 0;
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  return static_cast<int>(removed.size());
}

}  // namespace

Status fuse_skip_layernorm(ir::Graph& g, PassContext& ctx) {
  std::vector<ir::Node*> norms;
  for (auto& n : g.nodes())
    if (is(n.get(), "LayerNormalization")) norms.push_back(n.get());
  std::set<const ir::Node*> removed;
  int fused = 0, with_sum = 0;
  for (ir::Node* ln : norms) {
    ir::Value* sum = ln->input(0);
    ir::Node* add = sum ? sum->producer : nullptr;
    if (!is(add, "Add") || add->inputs.size() != 2 || !add->inputs[0] || !add->inputs[1]) continue;
    if (ln->outputs.empty() || !ln->outputs[0] || !unread(g, ln->outputs.size() > 1 ? ln->outputs[1] : nullptr) ||
        !unread(g, ln->outputs.size() > 2 ? ln->outputs[2] : nullptr))
      continue;
    if (!sum->shape || sum->shape->empty() || !norm_dtype(sum->dtype)) continue;
    const Shape& s = *sum->shape;
    const int64_t rank = static_cast<int64_t>(s.size());
    const int64_t axis = ln->attrs.get_int("axis", -1);
    // SkipLayerNormalization normalizes the last axis only, with float statistics.
    if (axis != -1 && axis != rank - 1) continue;
    if (ln->attrs.get_int("stash_type", 1) != 1) continue;
    const int64_t hidden = s.back().value;
    if (!s.back().known() || hidden == 0) continue;
    if (!row_param(ln->input(1), hidden, sum->dtype, s.size())) continue;
    if (ln->input(2) && !row_param(ln->input(2), hidden, sum->dtype, s.size())) continue;
    // The full-shape operand is SkipLayerNormalization's input; the other broadcasts to it.
    ir::Value* a = add->inputs[0];
    ir::Value* b = add->inputs[1];
    if (a->dtype != sum->dtype || b->dtype != sum->dtype) continue;
    if (!same_shape(a, sum)) std::swap(a, b);
    if (!same_shape(a, sum) || !b->shape) continue;
    // Other readers of the sum (or the sum being a graph output) take output 3.
    const bool keep_sum = g.is_output(sum) || g.consumers(sum).size() > 1;
    ir::Value* y = ln->outputs[0];
    const float epsilon = ln->attrs.get_float("epsilon", 1e-5f);  // SkipLayerNormalization's default is 1e-12
    const std::vector<std::string> from = fused_names({add, ln});
    // The Add becomes the fused node: it precedes every reader of the sum and of y.
    add->op_type = "SkipLayerNormalization";
    add->domain = "com.microsoft";
    add->opset = 1;
    add->name = ln->name;
    add->inputs = {a, b, ln->input(1)};
    if (ln->input(2)) add->inputs.push_back(ln->input(2));
    add->outputs = keep_sum ? std::vector<ir::Value*>{y, nullptr, nullptr, sum} : std::vector<ir::Value*>{y};
    add->attrs = ir::Attributes();
    add->attrs.set("epsilon", ir::Attribute::from_float(epsilon));
    set_fused_names(*add, from);
    y->producer = add;
    if (!keep_sum) sum->producer = nullptr;
    ln->inputs.clear();
    removed.insert(ln);
    ++fused;
    with_sum += keep_sum;
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  g.opset_imports.emplace("com.microsoft", 1);
  ctx.stats["fused_skip_layernorm"] += fused;
  if (with_sum) ctx.stats["fused_skip_layernorm_with_sum"] += with_sum;
  if (const int folded = fold_constant_skips(g)) ctx.stats["skip_constants_folded"] += folded;
  return Status();
}

}  // namespace kiln::passes
