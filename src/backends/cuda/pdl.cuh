// Programmatic dependent launch (PDL, compute capability 9.0+): a kernel launched
// with launch_pdl may be scheduled while the kernel before it on the stream is
// still finishing; its blocks start, then wait in pdl_wait() until that kernel has
// completed and its writes are visible. What it saves is the gap between two
// kernels (the launch of the second behind the drain of the first), which at
// batch 1 is a good part of a small kernel's time.
//
//   template <class T> __global__ void my_kernel(const T* x, T* y, int n) {
//     cuda::pdl_wait();  // before touching anything an earlier kernel writes or reads
//     ...
//   }
//   KILN_CUDA_TRY(cuda::launch_pdl(my_kernel<T>, grid, block, 0, stream, x, y, n));
//
// The rule: a kernel launched with launch_pdl calls pdl_wait() before its first
// access to memory another kernel may touch (its inputs, outputs and workspace),
// on every path that accesses memory. Work that touches nothing of the sort
// (index arithmetic, shared memory set-up) may come first. Without the launch
// attribute pdl_wait() returns at once, and on GPUs before Hopper the attribute
// is ignored. KILN_PDL=0 turns the attribute off (launches are then ordinary).
#pragma once

#include <cuda_runtime.h>

#include "base/env.h"

namespace kiln::cuda {

/// Waits until the kernel this one depends on (PDL) has completed; see above.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// True unless KILN_PDL=0.
inline bool pdl_enabled() {
  static const bool on = !env_is("KILN_PDL", "0");
  return on;
}

/// Launches `kernel` like <<<grid, block, smem, stream>>>, allowed to overlap the
/// previous kernel on `stream` (the kernel must call pdl_wait() first; see above).
/// Returns the launch's error (also left for cudaGetLastError, as <<<>>> does).
template <class... Params, class... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = pdl_enabled() ? 1 : 0;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

}  // namespace kiln::cuda
