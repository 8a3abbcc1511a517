// LayerNorm fusion: the decomposed last-axis LayerNorm that exporters write below opset 17
// becomes one LayerNormalization.
//   m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2)); n = Div(d, Sqrt(Add(v, eps)))
//   y = Add(Mul(n, gamma), beta)        becomes   y = LayerNormalization(x, gamma, beta, axis=-1, epsilon=eps)
// Also Mul(d, d) for the square, Mul(d, Reciprocal(Sqrt(.))) or Mul(d, Pow(., -0.5)) for the
// division, and without gamma (scale of ones) or beta. See match_norm for the conditions.
#include "passes/norm_match.h"
#include "passes/pass.h"

namespace kiln::passes {

Status fuse_layernorm(ir::Graph& g, PassContext& ctx) { return fuse_norms(g, ctx, /*centered=*/true); }

}  // namespace kiln::passes
