// MatMul bias fusion: a bias added along the last axis joins the MatMul, so the
// GPU adds it in cuBLASLt's epilogue.
//   y = MatMul(x, W); z = Add(y, b)     becomes   z = MatMulBias(x, W, b)   (domain kiln)
// b is a constant whose shape is [N] or [1, ..., 1, N] (N = the last dim of y);
// y must be read only by the Add and not be a graph output.
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// The bias as a 1-D constant when `v` broadcasts only along the last axis of a rank-`rank` output with `n` columns.
std::shared_ptr<Tensor> bias_vector(const ir::Value* v, int64_t n) {
  if (!v || !v->initializer) return nullptr;
  const Dims& d = v->initializer->dims();
  if (d.empty() || d.back() != n) return nullptr;
  for (size_t i = 0; i + 1 < d.size(); ++i)
    if (d[i] != 1) return nullptr;
  return std::make_shared<Tensor>(v->initializer->reshaped({n}));
}

}  // namespace

Status fuse_matmul_bias(ir::Graph& g, PassContext& ctx) {
  std::vector<const ir::Node*> removed;
  std::vector<ir::Node*> matmuls;
  for (auto& n : g.nodes())
    if (n->op_type == "MatMul" && n->domain.empty() && n->inputs.size() == 2 && n->outputs.size() == 1 && n->outputs[0])
      matmuls.push_back(n.get());
  int fused = 0;
  for (ir::Node* mm : matmuls) {
    ir::Value* y = mm->outputs[0];
    if (g.is_output(y) || !y->shape || y->shape->empty() || !y->shape->back().known()) continue;
    if (y->dtype != DataType::kFloat32 && y->dtype != DataType::kFloat16 && y->dtype != DataType::kBFloat16) continue;
    auto readers = g.consumers(y);
    if (readers.size() != 1) continue;
    ir::Node* add = readers[0];
    if (add->op_type != "Add" || !add->domain.empty() || add->inputs.size() != 2 || !add->outputs[0]) continue;
    ir::Value* other = add->inputs[0] == y ? add->inputs[1] : add->inputs[0];
    if (other == y) continue;
    int64_t n = y->shape->back().value;
    auto bias = bias_vector(other, n);
    if (!bias || bias->dtype() != y->dtype) continue;
    // A bias of rank <= y's with leading 1s cannot broadcast y itself: the sum keeps y's shape.
    if (other->initializer->rank() > static_cast<int64_t>(y->shape->size())) continue;
    ir::Value* b = other->initializer->dims().size() == 1 ? other : g.add_constant(other->name + "_vector", *bias);
    ir::Value* z = add->outputs[0];
    ir::Node* f = g.add_node("MatMulBias", {mm->inputs[0], mm->inputs[1], b}, {z}, mm->name);
    f->domain = "kiln";
    f->opset = 1;
    z->producer = f;
    record_fusion(*f, {mm, add});
    removed.push_back(mm);
    removed.push_back(add);
    ++fused;
  }
  if (!fused) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  g.opset_imports.emplace("kiln", 1);
  ctx.stats["fused_matmul_bias"] += fused;
  return Status();
}

}  // namespace kiln::passes
