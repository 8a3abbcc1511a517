// kiln's Hopper-native GEMM, Y[m, n] = act(A[m, k] B[k, n] + bias[n]) + residual[m, n] in
// FP16/BF16, row-major, fp32 accumulation: TMA loads (128-byte swizzle) into a 6-stage
// shared-memory ring guarded by mbarriers, a producer warp issuing them and one consumer warp
// group running wgmma.mma_async m64n64k16 (A K-major, B MN-major straight from the row-major
// weights). Correct on the H100 against a naive product (matmul_test.cc), but NOT YET A
// TACTIC of any node: its first version runs one CTA per 64 x BN tile walking all of K, too
// few CTAs at batch-1 shapes (BERT bs1 out-projection 12.9 us under ncu against nvjet's 7.2;
// bench/RESULTS.md, session 13). K split over a cluster and a LayerNorm epilogue (branch
// wip/hopper-splitk) measured slower than nvjet (+ LayerNorm) too (session 14): the main loop
// itself is what to look at next. Compiled for sm_90a only (gemm_hopper_sm90a.cu, its own
// object library in CMakeLists.txt).
#pragma once

#include <cstdint>

#include "ops/matmul/gemm_splitk.h"

namespace kiln::ops::matmul::hopper {

using splitk::Problem;

/// Columns of a CTA tile the kernel instantiates.
inline bool valid_bn(int bn) { return bn == 64 || bn == 128; }

/// What the kernel takes: 16-bit floats, n and k multiples of 8 (TMA's 16-byte strides),
/// 16-byte aligned buffers, no activation other than splitk's.
inline bool takes(const Problem& p) { return splitk::takes(p); }

/// Enqueues p in tiles of 64 x bn on `stream`; returns the cudaError_t (0 on success;
/// cudaErrorNotSupported where the driver has no tensor-map encoder).
int launch(const Problem& p, int bn, void* stream);

}  // namespace kiln::ops::matmul::hopper
