// The cuBLASLt probes' problem (lt_enumerate.cc, lt_outer_vec.cc): kiln's row-major
// (m x k)(k x n) = m x n as cuBLASLt's column-major (n x k)(k x m) = n x m in fp16, and a
// heuristic preference capped at `workspace` bytes; destroyed with the object.
#pragma once

#include <cublasLt.h>

#include <cstdint>

#include "probe_check.h"

struct LtProblem {
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  LtProblem(int64_t m, int64_t n, int64_t k, size_t workspace) {
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
