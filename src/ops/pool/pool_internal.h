// Shared by the pooling family: validated geometry of a windowed pool.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/conv/window.h"

namespace kiln::ops::pool {

enum class PoolKind { kMax, kAverage, kLp };

/// Concrete geometry of MaxPool / AveragePool / LpPool on one input.
struct PoolSetup {
  PoolKind kind = PoolKind::kMax;
  window::WindowAttrs attrs;
  window::Geometry geo;
  int64_t planes = 0;  ///< N * C
  int64_t in_count = 1, out_count = 1, k_count = 1;
  bool count_include_pad = false;
  int64_t p = 2;               ///< LpPool's exponent
  bool column_major = false;   ///< MaxPool storage_order = 1 (for Indices)
  std::vector<int64_t> kcoords;  ///< kernel coordinates, k_count x spatial
};

/// Reads attributes and computes geometry for input dims `x`; messages omit the node.
Result<PoolSetup> pool_setup(PoolKind kind, const ir::Attributes& attrs, const Dims& x);

/// Output shape inference shared by the windowed pools (outputs 0 and, for MaxPool, 1).
Status infer_pool(InferContext& ctx, PoolKind kind);

/// MaxPool's reference kernel: ctx's node carries MaxPool's attributes, Y is allocated
/// (Indices written where the node has that output). FusedConv's kiln.max_pool pools with it.
Status ref_max(KernelContext& ctx);

}  // namespace kiln::ops::pool
