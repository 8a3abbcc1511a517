// Constant folding: a node whose inputs are all constants is computed once at build time.
//   c1 -> Transpose -> Mul(c2) -> y    becomes    y = <constant>
// Shape arithmetic that reads only known dims folds too, even when other dims are
// symbolic: Shape(x:[batch,12,S,64]) -> Slice[-1:] is the constant [64] (exporters
// compute attention's 1/sqrt(head_dim) that way).
//   x:[batch,..,64] -> Shape -> Slice(-1) -> Cast -> Sqrt -> y    becomes    y = <constant>
#include <algorithm>
#include <optional>

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
// Shape(x), or Gather/Slice of it with constant indices, when every dim it yields is
// known: the int64 result, else nullopt. A graph input's dims are the pass context's
// (dims every profile pins are known there), not its declared shape's.
std::optional<Tensor> known_shape_part(const ir::Node& n, const PassContext& ctx) {
  auto dims_of = [&ctx](const ir::Node* shape_node) -> std::optional<Tensor> {
    if (!shape_node || shape_node->op_type != "Shape" || !shape_node->domain.empty()) return std::nullopt;
    const ir::Value* x = shape_node->input(0);
    if (!x || !x->shape) return std::nullopt;
    const Shape* shape = &*x->shape;
    if (!x->producer && !x->initializer)
      if (auto it = ctx.input_shapes.find(x->name); it != ctx.input_shapes.end() && it->second.size() == shape->size())
        shape = &it->second;
    Dims d;
    for (const Dim& dim : *shape) d.push_back(dim.known() ? dim.value : -1);
    Tensor t = Tensor::empty(DataType::kInt64, {static_cast<int64_t>(d.size())});
    for (size_t i = 0; i < d.size(); ++i) t.data_as<int64_t>()[i] = d[i];
    // Shape's start/end (opset 15) slice the dims.
    if (shape_node->attrs.has("start") || shape_node->attrs.has("end")) {
      int64_t r = static_cast<int64_t>(d.size());
      int64_t a = shape_node->attrs.get_int("start", 0), b = shape_node->attrs.get_int("end", r);
      if (a < 0) a += r;
      if (b < 0) b += r;
      a = std::clamp<int64_t>(a, 0, r), b = std::clamp<int64_t>(b, 0, r);
      Tensor s = Tensor::empty(DataType::kInt64, {std::max<int64_t>(b - a, 0)});
      for (int64_t i = a; i < b; ++i) s.data_as<int64_t>()[i - a] = d[static_cast<size_t>(i)];
      return s;
    }
    return t;
  };
  auto all_known = [](const Tensor& t) {
    for (int64_t i = 0; i < t.numel(); ++i)
      if (t.data_as<int64_t>()[i] < 0) return false;
    return true;
  };
  if (n.op_type == "Shape" && n.domain.empty()) {
    auto t = dims_of(&n);
    return t && all_known(*t) ? t : std::nullopt;
  }
  if ((n.op_type != "Gather" && n.op_type != "Slice") || !n.domain.empty() || !n.input(0)) return std::nullopt;
  for (size_t i = 1; i < n.inputs.size(); ++i)
    if (n.inputs[i] && !n.inputs[i]->is_constant()) return std::nullopt;
  auto t = dims_of(n.input(0)->producer);
  if (!t) return std::nullopt;
  std::vector<const Tensor*> ins = {&*t};
  for (size_t i = 1; i < n.inputs.size(); ++i) ins.push_back(n.inputs[i] ? n.inputs[i]->initializer.get() : nullptr);
  std::vector<Tensor> outs;
  if (!ops::run_node(n, ins, outs).ok() || outs.size() != 1 || !all_known(outs[0])) return std::nullopt;
  return std::move(outs[0]);
}

}  // namespace

Status fold_constants(ir::Graph& g, PassContext& ctx) {
  int folded = 0;
  std::vector<const ir::Node*> done;
  for (auto& node : g.nodes()) {
    std::vector<Tensor> outs;
    if (auto part = known_shape_part(*node, ctx); part && node->outputs.size() == 1) {
      outs.push_back(std::move(*part));
    } else {
      if (!foldable(*node)) continue;
      std::vector<const Tensor*> ins;
      for (ir::Value* in : node->inputs) ins.push_back(in ? in->initializer.get() : nullptr);
      Status s = ops::run_node(*node, ins, outs);
      if (!s.ok()) return s.with_context("constant folding");
    }
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
