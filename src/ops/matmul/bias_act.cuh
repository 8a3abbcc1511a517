// MatMulBias's activation on the device (matmul_internal.h's BiasActivation), shared by the
// CUDA epilogues that apply it themselves: matmul_cuda.cu's bias pass, the split-K GEMM and
// the Hopper GEMM.
#pragma once

#include <cuda_runtime.h>

#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

__device__ __forceinline__ float bias_activate(float v, BiasActivation act) {
  if (act == BiasActivation::kRelu) return v > 0.f ? v : 0.f;
  if (act == BiasActivation::kGeluTanh)
    return 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
  return v;
}

}  // namespace kiln::ops::matmul
