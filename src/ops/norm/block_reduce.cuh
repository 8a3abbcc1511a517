// Warp- and block-wide reductions for row kernels (norm, softmax, pool): every
// thread of the warp / block gets the result. Blocks must be a multiple of 32 threads.
#pragma once

#include <cuda_runtime.h>

namespace kiln::cuda {

struct SumOp {
  template <class V>
  __device__ __forceinline__ V operator()(V a, V b) const {
    return a + b;
  }
};
struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
/// Max that propagates NaN (fmaxf would drop it).
struct NanMaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const {
    return (a != a || b != b) ? a + b : fmaxf(a, b);
  }
};

template <class V, class Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
  for (int o = 16; o > 0; o /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Block-wide reduction; `scratch` is __shared__ V[32]. Safe to call repeatedly.
template <class V, class Op>
__device__ __forceinline__ V block_reduce(V v, Op op, V* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < warps; ++w) v = op(v, scratch[w]);
  return v;
}

}  // namespace kiln::cuda
