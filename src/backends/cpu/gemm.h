// kiln's own float32 GEMM: packed, cache-blocked, SIMD micro-kernels (AVX-512 /
// AVX2+FMA chosen at run time, portable fallback), spread over the CPU thread pool.
#pragma once

#include <cstdint>

namespace kiln::cpu {

/// C[m x n] = alpha * op(A) * op(B) + beta * C, row-major with leading dims lda/ldb/ldc.
/// op(A) is m x k (A is stored k x m when trans_a); op(B) is k x n (stored n x k when trans_b).
/// beta == 0 means C is only written, never read. max_threads 0 = the whole pool.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int max_threads = 0);

/// Name of the micro-kernel sgemm uses on this CPU: "avx512", "avx2" or "generic".
const char* sgemm_kernel_name();

/// sgemm with a named micro-kernel, so tests reach every one this CPU can run;
/// false (nothing computed) when the CPU lacks it.
bool sgemm_with_kernel(const char* kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                       int max_threads = 0);

}  // namespace kiln::cpu
