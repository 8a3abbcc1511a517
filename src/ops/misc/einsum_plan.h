// Einsum's equation parsing and loop plan, shared by the reference (einsum.cc)
// and the CUDA kernel (einsum_cuda.cu).
#pragma once

#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops::einsum {

inline constexpr int kEllipsis = -1;

/// One term of the equation: letter codes 0..51 and at most one kEllipsis.
using Term = std::vector<int>;

struct ParsedEquation {
  std::vector<Term> inputs;
  bool explicit_output = false;
  Term output;
};

/// Parses the `equation` attribute (spaces ignored).
Result<ParsedEquation> parse_equation(const ir::Node& node);

/// The equation resolved against input ranks: every dim gets a label id.
/// Ids 0..51 are letters; 52.. are the (right-aligned) ellipsis dims.
struct Labels {
  std::vector<std::vector<int>> inputs;  ///< per input, per dim: label id
  std::vector<int> output;               ///< per output dim: label id
  int num_ellipsis = 0;
};

/// Assigns label ids to every input dim and the output (implicit output: broadcast
/// dims, then the labels used once, in alphabetical order).
Result<Labels> resolve_labels(const ir::Node& node, const ParsedEquation& p, const std::vector<int64_t>& ranks);

/// The loop nest over concrete input dims: output labels first, then every
/// summed label; per operand, the element stride of each loop (repeated labels
/// add up, giving a diagonal; size-1 dims broadcast with stride 0).
struct Plan {
  Labels labels;
  std::vector<int> order;                     ///< label id of each loop
  Dims loop_dims;                             ///< size of each loop
  std::vector<std::vector<int64_t>> strides;  ///< [operand][loop]
  size_t num_output_loops = 0;                ///< loops [0, this) index the output
};

Result<Plan> make_plan(const ir::Node& node, const std::vector<Dims>& input_dims);

}  // namespace kiln::ops::einsum
