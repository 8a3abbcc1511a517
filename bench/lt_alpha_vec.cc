// Can cuBLASLt carry a LayerNorm folded into the GEMM after it, with a per-token alpha vector?
//
// LN(x) W + b = rstd (x W~) + b', with W~ = (I - 11^T/K) diag(gamma) W (columns centred: the mean drops out)
// and b' = beta W + b. The per-token scale rstd is an alpha vector if the tokens are the rows of cuBLASLt's
// column-major D (CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO scales D's rows), which makes D
// feature-major: D'[m tokens x n] column-major. The per-feature b' cannot be a bias there (a bias runs along D's
// rows too), so it rides in K: x_aug = [x, std, 0..] and W_aug = [W~; b'; 0..], and rstd (x_aug W_aug) =
// rstd (x W~) + b'. A GELU epilogue still applies after the scale. The MLP's fc1 could take that output as it
// is (fc2 reads it transposed); the LayerNorm pass would shrink to a statistics pass that writes std into the
// spare column (ViT-B/16 bs256: ~77 MB less written per LayerNorm). That column has to be there already: the
// GEMMs writing the residual stream would write it with a row stride of k + 8, and its readers read it so (a
// padded-row tensor kiln's IR does not have yet); copying x into x_aug would save nothing.
//
// For each m x n x k[:gelu], this asks the heuristic for the folded GEMM, times it against kiln's plain GEMM on
// the normalized input (row-major Y = LN(x) W + b as column-major D^T = W^T X^T, bias or GELU+bias epilogue),
// and compares their outputs (rows with means up to +-4 and spreads from 0.5 to 3, like a residual stream).
//
//   nvcc -O2 -std=c++17 -o lt_alpha_vec bench/lt_alpha_vec.cc -lcublasLt -lcudart
//   ./lt_alpha_vec 50432x3072x768:gelu 50432x2304x768
//
// Session 29, H100: the heuristic returns no configuration in this pointer mode (setting the mode
// succeeds) at 50432x3072x768:gelu, 50432x2304x768, 16384x3072x768:gelu and 16384x2304x768, with or
// without the GELU; the plain GEMMs ran 0.411 / 0.279 / 0.134 / 0.095 ms. The fold cannot ride on
// cuBLASLt this way (bench/ln_fold_model.py: the attention can carry it instead). Not part of the build.
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "lt_probe.h"

namespace {

constexpr size_t kWorkspace = size_t(64) << 20;
constexpr long kPad = 8;  // K grows by the std column and padding to keep 16-byte rows

struct Gemm {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulAlgo_t algo{};
  int found = 0;
};

void first_algo(cublasLtHandle_t lt, Gemm& g) {
  cublasLtMatmulPreference_t pref;
  CK(cublasLtMatmulPreferenceCreate(&pref));
  CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace,
                                          sizeof kWorkspace));
  cublasLtMatmulHeuristicResult_t res[4];
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt, g.op, g.la, g.lb, g.ld, g.ld, pref, 4, res, &g.found);
  if (s != CUBLAS_STATUS_SUCCESS) g.found = 0;
  if (g.found) g.algo = res[0].algo;
  cublasLtMatmulPreferenceDestroy(pref);
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
    const bool gelu = e == "gelu";
    const long ka = k + kPad;
    LtRandom rnd;
    std::vector<float> x(m * k), gamma(k), beta(k), w(k * n), b(n), mean(m), rstd(m);
    for (long r = 0; r < m; ++r) {
      const float mu = 4.f * rnd(), sd = 1.75f + 1.25f * rnd();
      for (long c = 0; c < k; ++c) x[r * k + c] = __half2float(__float2half(mu + sd * rnd()));
    }
    for (long c = 0; c < k; ++c) gamma[c] = 1.f + 0.2f * rnd(), beta[c] = 0.1f * rnd();
    for (auto& v : w) v = 0.05f * rnd();
    for (auto& v : b) v = 0.1f * rnd();
    // Host statistics (a statistics kernel's job in an engine) and the reference LN(x) in fp16.
    std::vector<__half> xln(m * k), xaug(m * ka, __float2half(0.f));
    for (long r = 0; r < m; ++r) {
      double s1 = 0, s2 = 0;
      for (long c = 0; c < k; ++c) s1 += x[r * k + c];
      const double mu = s1 / k;
      for (long c = 0; c < k; ++c) s2 += (x[r * k + c] - mu) * (x[r * k + c] - mu);
      const double sd = std::sqrt(s2 / k + 1e-6);
      mean[r] = float(mu), rstd[r] = float(1 / sd);
      for (long c = 0; c < k; ++c) {
        xln[r * k + c] = __float2half(float((x[r * k + c] - mu) / sd * gamma[c] + beta[c]));
        xaug[r * ka + c] = __float2half(x[r * k + c]);
      }
      xaug[r * ka + k] = __float2half(float(sd));
    }
    // kiln's plain GEMM: W row-major [k, n] = column-major n x k; the folded one's W_aug column-major ka x n.
    std::vector<__half> wh(k * n), waug(ka * n, __float2half(0.f)), bh(n);
    for (long c = 0; c < n; ++c) {
      double colsum = 0, bp = b[c];
      for (long r = 0; r < k; ++r) colsum += gamma[r] * w[r * n + c], bp += beta[r] * w[r * n + c];
      for (long r = 0; r < k; ++r) {
        wh[r * n + c] = __float2half(w[r * n + c]);
        waug[c * ka + r] = __float2half(float(gamma[r] * w[r * n + c] - colsum / k));
      }
      waug[c * ka + k] = __float2half(float(bp));
      bh[c] = __float2half(b[c]);
    }
    void *dxln, *dxaug, *dw, *dwaug, *db, *dref, *dfold;
    float* drstd;
    CK(cudaMalloc(&dxln, m * k * 2));
    CK(cudaMalloc(&dxaug, m * ka * 2));
    CK(cudaMalloc(&dw, k * n * 2));
    CK(cudaMalloc(&dwaug, ka * n * 2));
    CK(cudaMalloc(&db, n * 2));
    CK(cudaMalloc(&dref, m * n * 2));
    CK(cudaMalloc(&dfold, m * n * 2));
    CK(cudaMalloc(&drstd, m * 4));
    CK(cudaMemcpy(dxln, xln.data(), m * k * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dxaug, xaug.data(), m * ka * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dw, wh.data(), k * n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dwaug, waug.data(), ka * n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, bh.data(), n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(drstd, rstd.data(), m * 4, cudaMemcpyHostToDevice));
    std::printf("%s\n", argv[i]);

    // Reference: D^T(n x m) = W^T(n x k) X^T(k x m), bias (and GELU) epilogue.
    Gemm ref;
    const LtProblem lp(m, n, k, kWorkspace);
    ref.la = lp.la, ref.lb = lp.lb, ref.ld = lp.lc;
    CK(cublasLtMatmulDescCreate(&ref.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasLtEpilogue_t ep = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    CK(cublasLtMatmulDescSetAttribute(ref.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    CK(cublasLtMatmulDescSetAttribute(ref.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &db, sizeof db));
    first_algo(lt, ref);
    const float one = 1.f;
    const float t_ref =
        ref.found ? lt_median_ms(lt, ref.op, ref.la, ref.lb, ref.ld, ref.algo, &one, dw, dxln, dref, ws, kWorkspace)
                  : -1.f;
    std::printf("  plain GEMM on LN(x): %d configurations, %.4f ms\n", ref.found, t_ref);

    // Folded: D'(m x n) = X_aug(m x ka) W_aug(ka x n), X_aug row-major = column-major ka x m (op T).
    Gemm fold;
    CK(cublasLtMatmulDescCreate(&fold.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t t = CUBLAS_OP_T;
    CK(cublasLtMatmulDescSetAttribute(fold.op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
    const int32_t pm = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
    const cublasStatus_t ps =
        cublasLtMatmulDescSetAttribute(fold.op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof pm);
    cublasLtEpilogue_t fep = gelu ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT;
    CK(cublasLtMatmulDescSetAttribute(fold.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &fep, sizeof fep));
    CK(cublasLtMatrixLayoutCreate(&fold.la, CUDA_R_16F, ka, m, ka));
    CK(cublasLtMatrixLayoutCreate(&fold.lb, CUDA_R_16F, ka, n, ka));
    CK(cublasLtMatrixLayoutCreate(&fold.ld, CUDA_R_16F, m, n, m));
    if (ps == CUBLAS_STATUS_SUCCESS) first_algo(lt, fold);
    if (ps != CUBLAS_STATUS_SUCCESS || !fold.found) {
      std::printf("  folded: no configuration (pointer mode status %d)\n", int(ps));
    } else {
      const float t_fold =
          lt_median_ms(lt, fold.op, fold.la, fold.lb, fold.ld, fold.algo, drstd, dxaug, dwaug, dfold, ws, kWorkspace);
      std::vector<__half> yr(m * n), yf(m * n);
      CK(cudaMemcpy(yr.data(), dref, m * n * 2, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(yf.data(), dfold, m * n * 2, cudaMemcpyDeviceToHost));
      double worst = 0, big = 0;
      for (long r = 0; r < m; r += 61)
        for (long c = 0; c < n; ++c) {
          const double want = __half2float(yr[r * n + c]), got = __half2float(yf[c * m + r]);
          worst = std::max(worst, std::fabs(want - got)), big = std::max(big, std::fabs(want));
        }
      std::printf(
          "  folded (alpha vector, K + %ld): %d configurations, %.4f ms (%.2fx the plain GEMM); "
          "max |diff| %.3e at max |y| %.3g\n",
          kPad, fold.found, t_fold, t_ref > 0 ? t_fold / t_ref : 0.0, worst, big);
    }
    for (Gemm* g : {&fold}) {
      cublasLtMatmulDescDestroy(g->op);
      cublasLtMatrixLayoutDestroy(g->la), cublasLtMatrixLayoutDestroy(g->lb), cublasLtMatrixLayoutDestroy(g->ld);
    }
    cublasLtMatmulDescDestroy(ref.op);
    cudaFree(dxln), cudaFree(dxaug), cudaFree(dw), cudaFree(dwaug), cudaFree(db), cudaFree(dref), cudaFree(dfold);
    cudaFree(drstd);
  }
  return 0;
}
