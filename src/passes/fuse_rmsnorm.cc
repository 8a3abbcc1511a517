// RMSNorm fusion: the decomposed last-axis RMSNorm of LLaMA-style exports becomes one
// RMSNormalization (opset 23).
//   v = ReduceMean(Pow(x, 2)); n = Mul(x, Reciprocal(Sqrt(Add(v, eps)))); y = Mul(weight, n)
//                                       becomes   y = RMSNormalization(x, weight, axis=-1, epsilon=eps)
// Also Mul(x, x) for the square, Div(x, Sqrt(.)) or Mul(x, Pow(., -0.5)) for the division, and
// without a weight (scale of ones). Runs after fuse_layernorm, which takes centered forms first.
#include <set>

#include "passes/fusion_util.h"
#include "passes/norm_match.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
constexpr int kRmsNormOpset = 23;
}  // namespace

Status fuse_rmsnorm(ir::Graph& g, PassContext& ctx) {
  std::vector<ir::Node*> means;
  for (auto& n : g.nodes())
    if (n->op_type == "ReduceMean" && n->domain.empty()) means.push_back(n.get());
  std::set<const ir::Node*> removed;
  int fused = 0;
  for (ir::Node* r : means) {
    if (removed.count(r)) continue;
    NormMatch m;
    if (!match_norm(g, r, /*centered=*/false, m)) continue;
    ir::Value* scale = row_vector(g, m.scale, m.x);
    if (!scale) continue;
    ir::Node* rms = m.last;
    const std::vector<std::string> from = fused_names(std::vector<const ir::Node*>(m.nodes.begin(), m.nodes.end()));
    // The last node becomes the RMSNormalization: it already sits after x.
    rms->op_type = "RMSNormalization";
    rms->domain.clear();
    rms->opset = std::max(kRmsNormOpset, rms->opset);
    rms->inputs = {m.x, scale};
    rms->attrs = ir::Attributes();
    rms->attrs.set("axis", ir::Attribute::from_int(-1));
    rms->attrs.set("epsilon", ir::Attribute::from_float(static_cast<float>(m.epsilon)));
    set_fused_names(*rms, from);
    for (ir::Node* n : m.nodes)
      if (n != rms) {
        n->inputs.clear();  // so later matches do not count them as readers
        removed.insert(n);
      }
    ++fused;
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  ctx.stats["fused_rmsnorm"] += fused;
  return Status();
}

}  // namespace kiln::passes
