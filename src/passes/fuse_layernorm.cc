// LayerNorm fusion: the decomposed last-axis LayerNorm that exporters write below opset 17
// becomes one LayerNormalization.
//   m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2)); n = Div(d, Sqrt(Add(v, eps)))
//   y = Add(Mul(n, gamma), beta)        becomes   y = LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)
// Also Mul(d, d) for the square, Mul(d, Reciprocal(Sqrt(.))) or Mul(d, Pow(., -0.5)) for the
// division, and without gamma (scale of ones) or beta. See match_norm for the conditions.
#include <set>

#include "passes/fusion_util.h"
#include "passes/norm_match.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {
constexpr int kLayerNormOpset = 17;
}  // namespace

Status fuse_layernorm(ir::Graph& g, PassContext& ctx) {
  std::vector<ir::Node*> means;
  for (auto& n : g.nodes())
    if (n->op_type == "ReduceMean" && n->domain.empty()) means.push_back(n.get());
  std::set<const ir::Node*> removed;
  int fused = 0;
  for (ir::Node* r : means) {
    if (removed.count(r)) continue;
    NormMatch m;
    if (!match_norm(g, r, /*centered=*/true, m)) continue;
    ir::Value* scale = row_vector(g, m.scale, m.x);
    ir::Value* bias = m.bias ? row_vector(g, m.bias, m.x) : nullptr;
    if (!scale || (m.bias && !bias)) continue;
    ir::Node* ln = m.last;
    const std::vector<std::string> from = fused_names(std::vector<const ir::Node*>(m.nodes.begin(), m.nodes.end()));
    // The last node becomes the LayerNormalization: it already sits after x.
    ln->op_type = "LayerNormalization";
    ln->domain.clear();
    ln->opset = std::max(kLayerNormOpset, ln->opset);
    ln->inputs = {m.x, scale};
    if (bias) ln->inputs.push_back(bias);
    ln->attrs = ir::Attributes();
    ln->attrs.set("axis", ir::Attribute::from_int(-1));
    ln->attrs.set("epsilon", ir::Attribute::from_float(static_cast<float>(m.epsilon)));
    set_fused_names(*ln, from);
    for (ir::Node* n : m.nodes)
      if (n != ln) {
        n->inputs.clear();  // so later matches do not count them as readers
        removed.insert(n);
      }
    ++fused;
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) != 0; });
  g.prune_values();
  ctx.stats["fused_layernorm"] += fused;
  return Status();
}

}  // namespace kiln::passes
