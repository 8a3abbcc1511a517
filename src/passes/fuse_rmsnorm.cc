// RMSNorm fusion: the decomposed last-axis RMSNorm of LLaMA-style exports becomes one
// RMSNormalization (opset 23).
//   v = ReduceMean(Pow(x, 2)); n = Mul(x, Reciprocal(Sqrt(Add(v, eps)))); y = Mul(weight, n)
//                                       becomes   y = RMSNormalization(x, weight, axis=-1, epsilon=eps)
// Also Mul(x, x) for the square, Div(x, Sqrt(.)) or Mul(x, Pow(., -0.5)) for the division, and
// without a weight (scale of ones). Runs after fuse_layernorm, which takes centered forms first.
#include "passes/norm_match.h"
#include "passes/pass.h"

namespace kiln::passes {

Status fuse_rmsnorm(ir::Graph& g, PassContext& ctx) { return fuse_norms(g, ctx, /*centered=*/false); }

}  // namespace kiln::passes
