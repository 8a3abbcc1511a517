// The matcher shared by fuse_layernorm and fuse_rmsnorm: the decomposed normalization
// that exporters write before LayerNormalization (opset 17) / RMSNormalization (opset 23).
#pragma once

#include <vector>

#include "ir/graph.h"
#include "passes/pass.h"

namespace kiln::passes {

/// A matched last-axis normalization, read from its variance ReduceMean outwards.
struct NormMatch {
  ir::Value* x = nullptr;        ///< the normalized tensor
  double epsilon = 0;            ///< the constant added to the variance
  ir::Value* scale = nullptr;    ///< constant gamma / weight, or null
  ir::Value* bias = nullptr;     ///< constant beta (centered only), or null
  ir::Node* last = nullptr;      ///< the node writing the result
  std::vector<ir::Node*> nodes;  ///< every matched node, `last` included
};

/// Matches, from `var_mean` (the ReduceMean of the squares):
///   centered (LayerNorm): d = Sub(x, ReduceMean(x)); ReduceMean(Pow(d, 2) | Mul(d, d))
///   not centered (RMSNorm): ReduceMean(Pow(x, 2) | Mul(x, x))
/// then Add eps -> Sqrt -> Div(d | x, .) or Mul(d | x, Reciprocal(.)) (or Pow(var + eps, -0.5)
/// -> Mul), then optionally Mul by a constant scale and (centered only) Add a constant bias.
/// Both reductions keep dims and reduce the last axis only; eps is a one-element constant;
/// scale and bias broadcast along the last axis only. Every intermediate is read only inside
/// the pattern and is not a graph output.
bool match_norm(const ir::Graph& g, ir::Node* var_mean, bool centered, NormMatch& m);

/// `v` (a matched scale or bias) as a constant of shape [hidden] and x's dtype, or null when
/// it cannot be: a one-element constant is repeated, a [1, .., 1, hidden] one reshaped.
ir::Value* row_vector(ir::Graph& g, ir::Value* v, const ir::Value* x);

/// The rewrite both norm passes share: every match from a ReduceMean becomes one
/// LayerNormalization (centered, opset 17) or RMSNormalization (opset 23) in place
/// of its last node, axis -1, with the matched epsilon; counts "fused_layernorm" /
/// "fused_rmsnorm".
Status fuse_norms(ir::Graph& g, PassContext& ctx, bool centered);

}  // namespace kiln::passes
