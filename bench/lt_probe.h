// The cuBLASLt probes' problem (lt_enumerate.cc, lt_outer_vec.cc, lt_alpha_vec.cc, lt_mlp_chunk.cu,
// cutlass_fold_probe.cu): kiln's row-major (m x k)(k x n) = m x n as cuBLASLt's column-major
// (n x k)(k x m) = n x m in fp16, and a heuristic preference capped at `workspace` bytes; destroyed
// with the object. `w_nk`: the weights are stored n x k (row-major), cuBLASLt's A as k x n with the
// caller's op setting CUBLASLT_MATMUL_DESC_TRANSA to CUBLAS_OP_T. And the probes'
// argument parsing (lt_parse_problem) and timing of one configuration (lt_median_ms).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "probe_check.h"

struct LtProblem {
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  LtProblem(int64_t m, int64_t n, int64_t k, size_t workspace, bool w_nk = false) {
    if (w_nk)
      CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, k, n, k));
    else
      CK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, n, k, n));
    CK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, k, m, k));
    CK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16F, n, m, n));
    CK(cublasLtMatmulPreferenceCreate(&pref));
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                            sizeof workspace));
  }
  ~LtProblem() {
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
  }
  LtProblem(const LtProblem&) = delete;
  LtProblem& operator=(const LtProblem&) = delete;
};

// D = alpha op(A) op(B) (beta 0, C = D) with `algo` on the default stream: the median of 7 samples
// of 10 back-to-back runs, ms a run; -1 where the call fails. `alpha` is what `op`'s pointer mode
// reads (a host float, or a device vector).
inline float lt_median_ms(cublasLtHandle_t lt, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                          cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t ld, const cublasLtMatmulAlgo_t& algo,
                          const void* alpha, const void* a, const void* b, void* d, void* ws, size_t ws_bytes) {
  const float zero = 0.f;
  auto run = [&] { return cublasLtMatmul(lt, op, alpha, a, la, b, lb, &zero, d, ld, d, ld, &algo, ws, ws_bytes, 0); };
  if (run() != CUBLAS_STATUS_SUCCESS) return -1.f;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  std::vector<float> t;
  for (int r = 0; r < 7; ++r) {
    cudaEventRecord(e0);
    for (int i = 0; i < 10; ++i) run();
    cudaEventRecord(e1);
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms / 10);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[3];
}

// Uniform in [-1, 1): the probes' test data, the same sequence in each (a 32-bit LCG from `seed`).
struct LtRandom {
  unsigned s;
  explicit LtRandom(unsigned seed = 1) : s(seed) {}
  float operator()() { return ((s = s * 1664525u + 1013904223u) >> 8) * (1.f / 16777216.f) * 2.f - 1.f; }
};

// "MxNxK[:EPILOGUE]" -> m, n, k and epi (left as given when the argument names none); false when
// the argument is not of that form.
inline bool lt_parse_problem(const char* arg, long& m, long& n, long& k, std::string& epi) {
  char e[16] = "";
  if (std::sscanf(arg, "%ldx%ldx%ld:%15s", &m, &n, &k, e) < 3) return false;
  if (e[0]) epi = e;
  return true;
}
