// What a CUDA kernel receives besides its tensors: the stream to enqueue on and
// the per-context library handles and workspace. Plain C++ (no CUDA headers) so
// the core can hold one; kernels cast the handles (see kernel_util.cuh).
#pragma once

#include <cstddef>

namespace kiln::cuda {

class LtWorkspaces;

struct Env {
  int device = 0;
  int cc_major = 0, cc_minor = 0;
  void* stream = nullptr;        ///< cudaStream_t
  void* cublaslt = nullptr;      ///< cublasLtHandle_t
  void* cudnn = nullptr;         ///< cudnnHandle_t (bound to `stream`)
  void* workspace = nullptr;     ///< scratch device memory for one kernel at a time
  size_t workspace_bytes = 0;
  LtWorkspaces* lt = nullptr;    ///< cuBLASLt's own workspaces (api.h); null: it uses `workspace`
  bool allow_tf32 = true;        ///< FP32 matmul/conv may use TF32 tensor cores
};

}  // namespace kiln::cuda
