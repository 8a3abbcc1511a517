// MatMul residual fusion: the residual Add after a projection joins the GEMM, which
// adds it in cuBLASLt's epilogue (C with beta = 1) while it writes Y, so the sum is
// never written and re-read by a separate pass.
//   z = MatMulBias(x, W, b); s = Add(z, r)                 becomes   s = MatMulBias(x, W, b, r)
//   z = MatMulBias(x, W, b); y = SkipLayerNormalization(z, r, gamma, beta)
//                                                          becomes   s = MatMulBias(x, W, b, r)
//                                                                    y = LayerNormalization(s, gamma, beta)
//   ... and when the SkipLayerNormalization also writes the sum (output 3, a pre-norm
//   residual stream), the GEMM writes that value.
// A transformer block's two residual sums are these: BERT's (post-norm) Add + LayerNorm
// then reads one tensor instead of two; ViT's (pre-norm) reads one and writes one
// instead of reading two and writing two.
// z must be read only by the Add / SkipLayerNormalization and not be a graph output;
// the MatMulBias has no activation (cuBLASLt adds C before it) and no residual yet;
// r has z's shape and dtype (no broadcast: C is read like Y).
#include <algorithm>
#include <set>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

bool is_projection(const ir::Node* n) {
  return n && n->domain == "kiln" && n->op_type == "MatMulBias" && n->inputs.size() == 3 && n->outputs.size() == 1 &&
         n->outputs[0] && n->attrs.get_string("activation", "").empty();
}

// Same rank and dims, where an anonymous unknown dim matches any: with a dynamic batch
// the projection's rows often come through a Reshape of computed dims ([?, ?, 768])
// while the residual is ["batch", 128, 768]. Known sizes must agree, and so must two
// symbols. (Were a broadcast hidden there, the GEMM would refuse the residual's dims
// at run time, never give a wrong answer.)
bool same_shape(const ir::Value* a, const ir::Value* b) {
  if (!a->shape || !b->shape || a->shape->size() != b->shape->size()) return false;
  for (size_t i = 0; i < a->shape->size(); ++i) {
    const Dim &x = (*a->shape)[i], &y = (*b->shape)[i];
    const bool anonymous = (!x.known() && x.name.empty()) || (!y.known() && y.name.empty());
    if (!anonymous && !(x == y)) return false;
  }
  return true;
}

// The projection among `sum`'s first two inputs whose output only `sum` reads, and the
// other operand as its residual; {nullptr, nullptr} when neither qualifies.
std::pair<ir::Node*, ir::Value*> projection_and_residual(const ir::Graph& g, const ir::Node* sum) {
  for (int i = 0; i < 2; ++i) {
    ir::Value* z = sum->input(static_cast<size_t>(i));
    ir::Value* r = sum->input(static_cast<size_t>(1 - i));
    if (!z || !r || z == r || !is_projection(z->producer) || only_reader(g, z) != sum) continue;
    if (r->dtype != z->dtype || !same_shape(r, z)) continue;
    return {z->producer, r};
  }
  return {nullptr, nullptr};
}

}  // namespace

Status fuse_matmul_residual(ir::Graph& g, PassContext& ctx) {
  std::set<const ir::Node*> removed;
  int adds = 0, norms = 0;
  for (auto& n : g.nodes()) {
    ir::Node* sum = n.get();
    const bool add = sum->domain.empty() && sum->op_type == "Add" && sum->inputs.size() == 2 &&
                     sum->outputs.size() == 1 && sum->outputs[0];
    // SkipLayerNormalization(input, skip, gamma[, beta]) without the optional bias input
    // and without the mean / inv-std-dev outputs.
    const bool skip_norm = sum->domain == "com.microsoft" && sum->op_type == "SkipLayerNormalization" &&
                           sum->inputs.size() >= 3 && sum->inputs.size() <= 4 && !sum->outputs.empty() &&
                           sum->outputs[0] && (sum->outputs.size() < 2 || !sum->outputs[1]) &&
                           (sum->outputs.size() < 3 || !sum->outputs[2]);
    if (!add && !skip_norm) continue;
    auto [mm, r] = projection_and_residual(g, sum);
    if (!mm) continue;
    // The GEMM writes the sum: the Add's output, or the SkipLayerNormalization's output 3
    // when it had one (else the norm reads the GEMM's own output).
    ir::Value* z = mm->outputs[0];
    ir::Value* s = add ? sum->outputs[0] : sum->outputs.size() > 3 && sum->outputs[3] ? sum->outputs[3] : z;
    std::vector<std::string> names = fused_names({mm, sum});
    mm->inputs.push_back(r);
    if (s != z) {
      mm->outputs[0] = s;
      s->producer = mm;
    }
    set_fused_names(*mm, names);
    if (add) {
      removed.insert(sum);
      ++adds;
      continue;
    }
    const float epsilon = sum->attrs.get_float("epsilon", 1e-12f);
    sum->op_type = "LayerNormalization";
    sum->domain.clear();
    sum->opset = std::max(17, sum->opset);
    sum->inputs = {s, sum->inputs[2], sum->input(3)};
    if (!sum->inputs.back()) sum->inputs.pop_back();
    sum->outputs.resize(1);
    sum->attrs = ir::Attributes();
    sum->attrs.set("axis", ir::Attribute::from_int(-1));
    sum->attrs.set("epsilon", ir::Attribute::from_float(epsilon));
    set_fused_names(*sum, std::move(names));
    ++norms;
  }
  if (!adds && !norms) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  // The residual may be computed after the projection: the GEMM now waits for it.
  KILN_RETURN_IF_ERROR(g.topo_sort());
  g.prune_values();
  ctx.stats["fused_matmul_residual"] += adds + norms;
  return Status();
}

}  // namespace kiln::passes
