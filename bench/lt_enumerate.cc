// Does cuBLASLt have a faster configuration than its heuristic offers? For each GEMM given on
// the command line (kiln's row-major Y[m, n] = X[m, k] W[k, n], fp16 in and out, fp32
// accumulate, with kiln's epilogues), this times the heuristic's candidates (what `kiln build`
// times) and every configuration `cublasLtMatmulAlgoGetIds` + `cublasLtMatmulAlgoCheck`
// accept (algorithm x tile x stages x cluster shape x CTA swizzle x custom option; split-K off:
// these are large-M problems; each timed once, the 16 fastest again as the heuristic's are:
// median of 5 samples of 3 runs), and prints the best of each with its ratio.
//
//   nvcc -O2 -std=c++17 -o lt_enumerate bench/lt_enumerate.cc -lcublasLt -lcudart
//   ./lt_enumerate 16384x768x768:resid 16384x3072x768:gelu 50432x768x3072:resid
//
// An epilogue after the colon: none, bias, gelu (bias + tanh GELU), resid (bias + C = Y, beta 1).
// Session 20 wrote it to settle whether an exhaustive search (TensorRT's) would beat the
// heuristic's top 8 on BERT bs128 / ViT bs256; not part of the build.
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lt_probe.h"

namespace {

struct Problem {
  long m = 0, n = 0, k = 0;
  std::string epi = "none";
};

constexpr size_t kWorkspace = size_t(64) << 20;

// The median of `rounds` samples of `reps` back-to-back runs (ms a run); -1 where it fails.
float time_algo(cublasLtHandle_t lt, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                cublasLtMatrixLayout_t lc, const cublasLtMatmulAlgo_t& algo, const void* a, const void* b, void* c,
                float beta, void* ws, cudaStream_t s, cudaEvent_t e0, cudaEvent_t e1, int rounds = 5, int reps = 3) {
  const float alpha = 1.f;
  auto run = [&] { return cublasLtMatmul(lt, op, &alpha, a, la, b, lb, &beta, c, lc, c, lc, &algo, ws, kWorkspace, s); };
  if (run() != CUBLAS_STATUS_SUCCESS) return -1.f;
  std::vector<float> t;
  for (int r = 0; r < rounds; ++r) {
    cudaEventRecord(e0, s);
    for (int i = 0; i < reps; ++i) run();
    cudaEventRecord(e1, s);
    if (cudaEventSynchronize(e1) != cudaSuccess) return -1.f;
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms / reps);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

std::string describe(const cublasLtMatmulAlgo_t& algo) {
  int id = 0;
  uint32_t tile = 0, stages = 0, swz = 0, custom = 0;
  uint16_t cluster = 0;
  size_t w = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &custom, sizeof custom, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof cluster, &w);
  char buf[128];
  std::snprintf(buf, sizeof buf, "algo %d tile %u stages %u cluster %u swizzle %u custom %u", id, tile, stages,
                unsigned(cluster), swz, custom);
  return buf;
}

void probe(cublasLtHandle_t lt, const Problem& p, cudaStream_t s) {
  // cuBLASLt column-major: D^T[n, m] = W^T[n, k] X^T[k, m].
  void *a = nullptr, *b = nullptr, *c = nullptr, *bias = nullptr, *ws = nullptr;
  CK(cudaMalloc(&a, size_t(p.n) * p.k * 2));
  CK(cudaMalloc(&b, size_t(p.k) * p.m * 2));
  CK(cudaMalloc(&c, size_t(p.n) * p.m * 2));
  CK(cudaMalloc(&bias, size_t(p.n) * 2));
  CK(cudaMalloc(&ws, kWorkspace));
  {  // small random-ish values (not zeros: the tensor cores' power depends on the data)
    std::vector<__half> h(std::max({size_t(p.n) * p.k, size_t(p.k) * p.m, size_t(p.n) * p.m}));
    unsigned x = 12345;
    for (auto& v : h) {
      x = x * 1664525u + 1013904223u;
      v = __float2half((int(x >> 9) % 2001 - 1000) * 1e-4f);
    }
    CK(cudaMemcpy(a, h.data(), size_t(p.n) * p.k * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(b, h.data(), size_t(p.k) * p.m * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(c, h.data(), size_t(p.n) * p.m * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(bias, h.data(), size_t(p.n) * 2, cudaMemcpyHostToDevice));
  }
  cublasLtMatmulDesc_t op;
  CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t nn = CUBLAS_OP_N;
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &nn, sizeof nn));
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nn, sizeof nn));
  float beta = 0.f;
  if (p.epi != "none") {
    cublasLtEpilogue_t epi = p.epi == "gelu" ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (p.epi == "resid") beta = 1.f;
  }
  const LtProblem lp(p.m, p.n, p.k, kWorkspace);
  const cublasLtMatrixLayout_t la = lp.la, lb = lp.lb, lc = lp.lc;
  const cublasLtMatmulPreference_t pref = lp.pref;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  const double gflop = 2.0 * p.m * p.n * p.k * 1e-9;

  // The heuristic's candidates.
  cublasLtMatmulHeuristicResult_t res[32];
  int found = 0;
  CK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 32, res, &found));
  float h_best = 1e30f, h_first = -1.f;
  std::string h_what;
  for (int i = 0; i < found; ++i) {
    const float ms = time_algo(lt, op, la, lb, lc, res[i].algo, a, b, c, beta, ws, s, e0, e1);
    if (i == 0) h_first = ms;
    if (ms > 0 && ms < h_best) h_best = ms, h_what = describe(res[i].algo);
  }

  // Every configuration the library accepts.
  int ids[256], nids = 0;
  CK(cublasLtMatmulAlgoGetIds(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16F, CUDA_R_16F, CUDA_R_16F, CUDA_R_16F, 256,
                              ids, &nids));
  float e_best = 1e30f;
  std::string e_what;
  int tried = 0;
  std::vector<std::pair<float, cublasLtMatmulAlgo_t>> screened;
  for (int ai = 0; ai < nids; ++ai) {
    cublasLtMatmulAlgo_t algo;
    if (cublasLtMatmulAlgoInit(lt, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16F, CUDA_R_16F, CUDA_R_16F, CUDA_R_16F,
                               ids[ai], &algo) != CUBLAS_STATUS_SUCCESS)
      continue;
    size_t w = 0;
    std::vector<uint32_t> tiles(1, CUBLASLT_MATMUL_TILE_UNDEFINED), stages(1, CUBLASLT_MATMUL_STAGES_UNDEFINED);
    if (cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_TILE_IDS, nullptr, 0, &w) == 0 && w) {
      tiles.resize(w / 4);
      cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_TILE_IDS, tiles.data(), w, &w);
    }
    if (cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_STAGES_IDS, nullptr, 0, &w) == 0 && w) {
      stages.resize(w / 4);
      cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_STAGES_IDS, stages.data(), w, &w);
    }
    int32_t swz_ok = 0, custom_max = 0;
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT, &swz_ok, sizeof swz_ok, &w);
    cublasLtMatmulAlgoCapGetAttribute(&algo, CUBLASLT_ALGO_CAP_CUSTOM_OPTION_MAX, &custom_max, sizeof custom_max, &w);
    for (uint32_t tile : tiles)
      for (uint32_t st : stages)
        for (uint16_t cl : {uint16_t(0), uint16_t(2), uint16_t(3), uint16_t(5), uint16_t(6)})
          for (uint32_t swz = 0; swz <= uint32_t(swz_ok ? 1 : 0); ++swz)
            for (uint32_t cu = 0; cu <= uint32_t(std::min(custom_max, 3)); ++cu) {
              cublasLtMatmulAlgo_t g = algo;
              cublasLtMatmulAlgoConfigSetAttribute(&g, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile);
              cublasLtMatmulAlgoConfigSetAttribute(&g, CUBLASLT_ALGO_CONFIG_STAGES_ID, &st, sizeof st);
              cublasLtMatmulAlgoConfigSetAttribute(&g, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cl, sizeof cl);
              cublasLtMatmulAlgoConfigSetAttribute(&g, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swz, sizeof swz);
              cublasLtMatmulAlgoConfigSetAttribute(&g, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &cu, sizeof cu);
              cublasLtMatmulHeuristicResult_t chk{};
              if (cublasLtMatmulAlgoCheck(lt, op, la, lb, lc, lc, &g, &chk) != CUBLAS_STATUS_SUCCESS) continue;
              if (chk.workspaceSize > kWorkspace) continue;
              ++tried;
              const float ms = time_algo(lt, op, la, lb, lc, g, a, b, c, beta, ws, s, e0, e1, 1, 1);  // screen
              if (ms > 0) screened.push_back({ms, g});
            }
  }
  // The 16 fastest in the screen, timed as the heuristic's were.
  std::sort(screened.begin(), screened.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (size_t i = 0; i < std::min<size_t>(16, screened.size()); ++i) {
    const float ms = time_algo(lt, op, la, lb, lc, screened[i].second, a, b, c, beta, ws, s, e0, e1);
    if (ms > 0 && ms < e_best) e_best = ms, e_what = describe(screened[i].second);
  }
  // LT_SUSTAINED=N: the heuristic's first 8 and the 4 best enumerated again under sustained load (the
  // GPU at its power cap, as a batch-256 engine runs): N rounds, each candidate N x 50 launches back to
  // back a sample, the candidates interleaved; each one's median.
  if (const char* sv = std::getenv("LT_SUSTAINED")) {
    const int rounds = std::max(1, std::atoi(sv));
    std::vector<std::pair<std::string, cublasLtMatmulAlgo_t>> cands;
    for (int i = 0; i < std::min(found, 8); ++i) cands.push_back({"heuristic " + std::to_string(i), res[i].algo});
    for (size_t i = 0; i < std::min<size_t>(4, screened.size()); ++i)
      cands.push_back({"enumerated " + std::to_string(i), screened[i].second});
    std::vector<std::vector<float>> t(cands.size());
    for (int r = 0; r < rounds; ++r)
      for (size_t ci = 0; ci < cands.size(); ++ci) {
        const float ms = time_algo(lt, op, la, lb, lc, cands[ci].second, a, b, c, beta, ws, s, e0, e1, 1, 50);
        if (ms > 0) t[ci].push_back(ms);
      }
    for (size_t ci = 0; ci < cands.size(); ++ci) {
      if (t[ci].empty()) continue;
      std::sort(t[ci].begin(), t[ci].end());
      std::printf("  sustained %-13s %.4f ms  (%s)\n", cands[ci].first.c_str(), t[ci][t[ci].size() / 2],
                  describe(cands[ci].second).c_str());
    }
  }
  std::printf("%ldx%ldx%ld %-5s | heuristic: first %.4f, best of %d %.4f ms (%.0f TFLOP/s; %s) | enumerated: %d, "
              "best %.4f ms (%.0f TFLOP/s; %s) | best enumerated / best heuristic %.3f\n",
              p.m, p.n, p.k, p.epi.c_str(), h_first, found, h_best, gflop / h_best, h_what.c_str(), tried, e_best,
              gflop / e_best, e_what.c_str(), e_best / h_best);
  std::fflush(stdout);
  cublasLtMatmulDescDestroy(op);
  cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(bias), cudaFree(ws);
}

}  // namespace

int main(int argc, char** argv) {
  cublasLtHandle_t lt;
  CK(cublasLtCreate(&lt));
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  for (int i = 1; i < argc; ++i) {
    Problem p;
    if (!lt_parse_problem(argv[i], p.m, p.n, p.k, p.epi)) {
      std::fprintf(stderr, "bad problem %s (want MxNxK[:none|bias|gelu|resid])\n", argv[i]);
      return 2;
    }
    probe(lt, p, s);
  }
  return 0;
}
