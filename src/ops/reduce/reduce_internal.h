// Pieces of the Reduce* ops shared by the reference and the fast kernels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ops/op.h"

namespace kiln::ops::reduce_detail {

enum class ReduceKind { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

ReduceKind kind_of(const std::string& op);

/// The reduction axes as written in the model (attribute or input 1).
struct AxesSource {
  bool known = true;  ///< false: input 1 is present but its value is not known yet
  std::vector<int64_t> axes;
  bool noop_with_empty_axes = false;
};

Result<AxesSource> axes_source(const ir::Node& node, bool has_axes_input, const Tensor* axes_value);

/// Per-dim flag "is reduced"; sets *noop for a no-op reduction.
Result<std::vector<bool>> reduced_mask(const ir::Node& node, const AxesSource& src, int64_t rank, bool* noop);

Status ref_reduce(KernelContext& ctx);

}  // namespace kiln::ops::reduce_detail
