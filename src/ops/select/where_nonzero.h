// kiln WhereNonzero's condition dtypes (any integer or bool, read as != 0), shared by the
// op (where.cc), its CUDA kernel (select_cuda.cu) and the pass that makes it
// (passes/fuse_where_cast.cc).
#pragma once

#include "ops/unary/eltwise.h"

namespace kiln::ops {

inline constexpr uint32_t kNonzeroCondTypes = kTypesInt | kTypesBool;

inline bool nonzero_condition_dtype(DataType t) { return (type_set_of(t) & kNonzeroCondTypes) != 0; }

}  // namespace kiln::ops
