// GEMMs that fold a pre-norm block's LayerNorm away (CUTLASS's Hopper kernels; norm_gemm_sm90a.cu).
//
// A pre-norm transformer block (ViT, GPT, LLaMA) writes LN(h) only for the next GEMM to read. With
// W' = W diag(gamma) (W as [n, k]: each output's weights along k), s[c] = sum_k W'[c, k] and
// b'[c] = sum_k W[c, k] beta[k] + b[c]:
//   LN(h) W^T + b = rstd (h W'^T) + (-mu rstd) s + b'        (mu, rstd: h's row mean and 1/std)
// so the GEMM reads h itself and applies the row's statistics in its epilogue, and the GEMM that
// wrote h (the residual add's) sums h and h^2 a row in its own epilogue; nothing reads h for them.
// At ViT-B/16 bs256 on the H100, at its power cap, a layer's GEMMs run 1.301 ms this way against
// 1.382 for cuBLASLt + two LayerNorms (bench/RESULTS.md, session 30; bench/cutlass_fold_probe.cu),
// though each of these GEMMs loses to cuBLASLt in one-launch samples at boost clocks.
//
// The kernels of the ops MatMulBiasRowStats and NormMatMulBias (norm_fold.cc, norm_fold_cuda.cu),
// which the pass fold_layernorm_matmul makes. FP16, sm_90a only (the caller checks the device); built where CMake found
// CUTLASS's headers (cmake/cutlass.cmake), else every call returns cudaErrorNotSupported.
#pragma once

#include <cstdint>

namespace kiln::ops::matmul::norm_gemm {

/// CUTLASS configurations: 128 x 128 x 64 tiles, ping-pong consumer warp groups, a cluster of
/// two CTAs along m (0) or along n (1).
inline constexpr int kConfigs = 2;

/// True where kiln was built with CUTLASS's kernels.
bool built();
/// True where they run: built, and the current device is an sm_90 GPU.
bool runs_here();

/// What the kernels take: positive sizes, n and k multiples of 8 (16-byte rows for TMA); the
/// buffers must be 16-byte aligned (the caller's arena is).
inline bool takes(int64_t m, int64_t n, int64_t k) {
  return m > 0 && n > 0 && k > 0 && n % 8 == 0 && k % 8 == 0 && m < (int64_t{1} << 31) && n < (int64_t{1} << 31) &&
         k < (int64_t{1} << 31);
}

/// The residual GEMM with row sums, all row-major:
///   Z[m, n] = X[m, k] W[n, k]^T + bias[n] + C[m, n];  D = fp16(Z);
///   sums[r] += sum_c Z[r, c];  sumsq[r] += sum_c Z[r, c]^2   (fp32, atomics: the caller zeroes them).
/// X, W, C, D fp16; bias fp32 (may be null); C may be null (no residual).
struct ResidualSums {
  int64_t m = 0, n = 0, k = 0;
  const void* x = nullptr;
  const void* w = nullptr;
  const float* bias = nullptr;
  const void* c = nullptr;
  void* d = nullptr;
  float* sums = nullptr;
  float* sumsq = nullptr;
};
/// Enqueues p on `stream` (a cudaStream_t); returns the cudaError_t, 0 on success.
int residual_sums(const ResidualSums& p, int config, void* stream);

/// Row statistics of n-column rows from residual_sums' sums: rstd = 1 / sqrt(var + eps) with var =
/// sumsq / n - mean^2 (at least 0), nmr = -mean * rstd; sums and sumsq are zeroed for their next use.
int finish_stats(int64_t m, int64_t n, float eps, float* sums, float* sumsq, float* rstd, float* nmr, void* stream);

/// The folded GEMM: D[r, c] = act(rstd[r] (X W'^T)[r, c] + nmr[r] s[c] + b[c]), act none or the tanh
/// GELU (0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))), cuBLASLt's). X, W' [n, k], D fp16; the
/// vectors fp32.
struct Folded {
  int64_t m = 0, n = 0, k = 0;
  const void* x = nullptr;
  const void* w = nullptr;
  const float* rstd = nullptr;
  const float* nmr = nullptr;
  const float* s = nullptr;
  const float* b = nullptr;
  void* d = nullptr;
  bool gelu = false;
};
int folded(const Folded& p, int config, void* stream);

}  // namespace kiln::ops::matmul::norm_gemm
