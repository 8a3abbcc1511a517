// Constant folding: a node whose inputs are all constants is computed once at build time.
//   c1 -> Transpose -> Mul(c2) -> y    becomes    y = <constant>
#include "ops/op.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
// Folding must not turn a cheap Expand/ConstantOfShape into huge weights.
constexpr int64_t kMaxFoldedElements = int64_t{1} << 24;

bool foldable(const ir::Node& n) {
  if (n.op_type == "RandomNormal" || n.op_type == "RandomUniform" || n.op_type == "RandomNormalLike" ||
      n.op_type == "RandomUniformLike" || n.op_type == "Multinomial" || n.op_type == "Bernoulli")
    return false;
  for (auto& [k, a] : n.attrs.all())
    if (a.g || !a.graphs.empty()) return false;
  for (ir::Value* in : n.inputs)
    if (in && !in->is_constant()) return false;
  for (ir::Value* o : n.outputs)
    if (o && o->shape && shape_volume(*o->shape) > kMaxFoldedElements) return false;
  return true;
}
}  // namespace

Status fold_constants(ir::Graph& g, PassContext& ctx) {
  int folded = 0;
  std::vector<const ir::Node*> done;
  for (auto& node : g.nodes()) {
    if (!foldable(*node)) continue;
    std::vector<const Tensor*> ins;
    for (ir::Value* in : node->inputs) ins.push_back(in ? in->initializer.get() : nullptr);
    std::vector<Tensor> outs;
    Status s = ops::run_node(*node, ins, outs);
    if (!s.ok()) return s.with_context("constant folding");
    bool too_big = false;
    for (auto& t : outs) too_big = too_big || t.numel() > kMaxFoldedElements;
    if (too_big) continue;
    for (size_t i = 0; i < node->outputs.size(); ++i) {
      ir::Value* o = node->outputs[i];
      if (!o) continue;
      o->initializer = std::make_shared<Tensor>(std::move(outs[i]));
      o->dtype = o->initializer->dtype();
      o->shape = shape_from_dims(o->initializer->dims());
      o->producer = nullptr;
    }
    done.push_back(node.get());
    ++folded;
  }
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(done.begin(), done.end(), &n) != done.end(); });
  g.prune_values();
  ctx.stats["folded_constants"] += folded;
  return Status();
}

}  // namespace kiln::passes
