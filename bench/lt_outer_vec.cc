// Does cuBLASLt scale an FP16 GEMM's product by a vector a row (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F)?
// If it did, a LayerNorm feeding a GEMM could fold into it: with W~ = (I - 11^T/K) diag(gamma) W (columns
// centred) and b' = beta W + b, LN(x) W + b = rstd (x W~) + b', a per-token scale and a per-feature bias. This
// asks the heuristic for kiln's row-major Y[m, n] = X[m, k] W[k, n] (D^T = W^T X^T column-major, so a token is a
// column of D and its scale is B's vector) with B's scale mode set, with and without an A vector, and times what
// it returns against the plain GEMM; with -check it compares a scaled result with the plain one times the
// vector.
//
//   nvcc -O2 -std=c++17 -o lt_outer_vec bench/lt_outer_vec.cc -lcublasLt -lcudart
//   ./lt_outer_vec 50432x3072x768:gelu 50432x2304x768:bias
//
// Session 26; not part of the build.
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lt_probe.h"

namespace {

constexpr size_t kWorkspace = size_t(64) << 20;

// mode: 0 plain; 1 B outer vector; 2 A and B outer vectors.
void probe(cublasLtHandle_t lt, long m, long n, long k, const std::string& epi, int mode, void* a, void* b, void* d,
           void* bias, float* avec, float* bvec, void* ws, float* out_ms) {
  cublasLtMatmulDesc_t op;
  CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t nn = CUBLAS_OP_N;
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &nn, sizeof nn));
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn));
  cublasLtEpilogue_t ep = epi == "gelu" ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  const int32_t vec = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  const char* what = mode == 0 ? "plain" : mode == 1 ? "B vector" : "A+B vectors";
  if (mode >= 1) {
    if (cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &vec, sizeof vec) != 0 ||
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bvec, sizeof bvec) != 0) {
      std::printf("  %-12s: the descriptor refuses B's scale mode\n", what);
      return;
    }
  }
  if (mode == 2) {
    if (cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &vec, sizeof vec) != 0 ||
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &avec, sizeof avec) != 0) {
      std::printf("  %-12s: the descriptor refuses A's scale mode\n", what);
      return;
    }
  }
  const LtProblem lp(m, n, k, kWorkspace);
  const cublasLtMatrixLayout_t la = lp.la, lb = lp.lb, lc = lp.lc;
  const cublasLtMatmulPreference_t pref = lp.pref;
  cublasLtMatmulHeuristicResult_t res[8];
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 8, res, &found);
  if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
    std::printf("  %-12s: no configuration (heuristic status %d, %d found)\n", what, int(hs), found);
  } else {
    const float one = 1.f;
    float best = 1e30f;
    for (int i = 0; i < found; ++i) {
      const float ms = lt_median_ms(lt, op, la, lb, lc, res[i].algo, &one, b, a, d, ws, kWorkspace);
      if (ms > 0) best = std::min(best, ms);
    }
    const float first = lt_median_ms(lt, op, la, lb, lc, res[0].algo, &one, b, a, d, ws, kWorkspace);
    std::printf("  %-12s: %d configurations; first %.4f ms, best %.4f ms (%.0f TFLOP/s)\n", what, found, first, best,
                2.0 * m * n * k / (best * 1e9));
    *out_ms = first;
  }
  cublasLtMatmulDescDestroy(op);
}

}  // namespace

int main(int argc, char** argv) {
  cublasLtHandle_t lt;
  CK(cublasLtCreate(&lt));
  void* ws = nullptr;
  CK(cudaMalloc(&ws, kWorkspace));
  for (int i = 1; i < argc; ++i) {
    long m = 0, n = 0, k = 0;
    std::string e = "bias";
    if (!lt_parse_problem(argv[i], m, n, k, e)) return 2;
    std::vector<__half> x(m * k), w(k * n), bias(n);
    std::vector<float> av(n), bv(m);
    LtRandom rnd;
    for (auto& v : x) v = __float2half(rnd());
    for (auto& v : w) v = __float2half(0.05f * rnd());
    for (auto& v : bias) v = __float2half(0.1f * rnd());
    for (auto& v : av) v = 1.f;
    for (auto& v : bv) v = 0.5f + 0.5f * std::fabs(rnd());
    void *dx, *dw, *dd, *db;
    float *dav, *dbv;
    CK(cudaMalloc(&dx, x.size() * 2));
    CK(cudaMalloc(&dw, w.size() * 2));
    CK(cudaMalloc(&dd, m * n * 2));
    CK(cudaMalloc(&db, n * 2));
    CK(cudaMalloc(&dav, n * 4));
    CK(cudaMalloc(&dbv, m * 4));
    CK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, bias.data(), n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dav, av.data(), n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dbv, bv.data(), m * 4, cudaMemcpyHostToDevice));
    std::printf("%s\n", argv[i]);
    float t[3] = {-1, -1, -1};
    std::vector<__half> plain(m * n), scaled(m * n);
    for (int mode = 0; mode < 3; ++mode) {
      probe(lt, m, n, k, e, mode, dx, dw, dd, db, dav, dbv, ws, &t[mode]);
      if (t[mode] > 0) CK(cudaMemcpy(mode == 0 ? plain.data() : scaled.data(), dd, m * n * 2, cudaMemcpyDeviceToHost));
      if (mode > 0 && t[mode] > 0 && e == "bias") {
        // Scaled: D = s_token (X W) + bias; plain: X W + bias.
        double worst = 0;
        for (long r = 0; r < m; r += 97)
          for (long c = 0; c < n; ++c) {
            const double p = __half2float(plain[r * n + c]) - __half2float(bias[c]);
            const double want = bv[r] * p + __half2float(bias[c]);
            worst = std::max(worst, std::fabs(want - __half2float(scaled[r * n + c])));
          }
        std::printf("    scaled vs plain x vector: max |diff| %.3e\n", worst);
      }
    }
    cudaFree(dx), cudaFree(dw), cudaFree(dd), cudaFree(db), cudaFree(dav), cudaFree(dbv);
  }
  return 0;
}
