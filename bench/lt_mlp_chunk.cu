// Does running a transformer MLP in row chunks, so its hidden activation stays in L2, save time at the
// power cap?
//
// ViT-B/16 bs256 runs at H100's 700 W cap (~1,450 MHz), where time follows the energy an inference
// takes (session 28). Its MLP writes the hidden activation H = GELU(x W1 + b1), 50432 x 3072 fp16 =
// 310 MB a layer, to DRAM and reads it back for fc2: ~7.4 GB an inference. Run fc1 and fc2 a chunk of
// rows at a time into one reused scratch H (4,096 rows: 25 MB) and H's writes and reads hit L2; the
// price is more, smaller GEMMs (tails, launch gaps).
//
// For each chunk count this captures `layers` MLPs (own weights per layer, the residual stream
// ping-ponged: y = x + GELU(x W1 + b1) W2 + b2, fc2's residual as cuBLASLt's C with beta 1) into one
// CUDA graph, with the heuristic's first configuration for each GEMM shape. It replays the graphs in
// turns (1, C2, C3, ..., then backwards), each for `seconds` after a warm-up of the same length, and
// prints ms a layer and, where NVML gives it, mJ a layer (total-energy counter) and the mean power.
// Outputs are compared between the chunked and unchunked graph.
//
// Session 29, H100, 12 layers of ViT-B/16 bs256's MLP (50432 x 768 -> 3072 -> 768), 3 s a turn:
// 1 chunk 0.871 ms and 607 mJ a layer; 4 chunks 0.901 / 642; 8: 0.928 / 639; 12: 0.937 / 663; 16: 0.960 /
// 674 (no workspace: 1 chunk 0.864 / 599, 12: 0.910 / 644). Slower and costlier in energy at every count:
// the smaller GEMMs lose more than the ~620 MB of DRAM traffic a layer saves. Not part of the build.
//
//   nvcc -O2 -std=c++17 -arch=sm_90 -o lt_mlp_chunk bench/lt_mlp_chunk.cu -lcublasLt -lcudart -ldl
//   ./lt_mlp_chunk [--m 50432] [--k 768] [--n 3072] [--layers 12] [--seconds 3] [--ws BYTES] 1 8 12 16
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lt_probe.h"
#include "probe_check.h"
#include "sustained.cuh"

namespace {

struct Gemm {
  LtProblem p;  // row-major (m x k)(k x n) = m x n
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatmulAlgo_t algo{};
  // Bias along n, GELU or not; the heuristic's first configuration within `ws` bytes of workspace.
  Gemm(cublasLtHandle_t lt, long m, long n, long k, bool gelu, size_t ws) : p(m, n, k, ws) {
    CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasLtEpilogue_t ep = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, p.la, p.lb, p.lc, p.lc, p.pref, 1, &res, &found));
    if (!found) {
      std::fprintf(stderr, "no configuration for %ldx%ldx%ld\n", m, n, k);
      std::exit(1);
    }
    algo = res.algo;
  }
  // D = A B + bias (+ beta C), bias set per call.
  void run(cublasLtHandle_t lt, const void* w, const void* x, const void* bias, const void* c, float beta, void* d,
           void* ws, size_t ws_bytes, cudaStream_t s) {
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const float one = 1.f;
    CK(cublasLtMatmul(lt, op, &one, w, p.la, x, p.lb, &beta, c ? c : d, p.lc, d, p.lc, &algo, ws, ws_bytes, s));
  }
};

__half* alloc_fill(size_t n, unsigned seed, float scale) {
  __half* p = nullptr;
  CK(cudaMalloc(&p, n * 2));
  fill_uniform<<<1024, 256>>>(p, n, seed, scale, 0.f);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  long m = 50432, k = 768, n = 3072;
  int layers = 12;
  double seconds = 3;
  size_t ws = size_t(32) << 20;
  std::vector<int> chunks;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? argv[++i] : "0"; };
    if (!std::strcmp(argv[i], "--m")) m = std::atol(next());
    else if (!std::strcmp(argv[i], "--k")) k = std::atol(next());
    else if (!std::strcmp(argv[i], "--n")) n = std::atol(next());
    else if (!std::strcmp(argv[i], "--layers")) layers = std::atoi(next());
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(next());
    else if (!std::strcmp(argv[i], "--ws")) ws = std::strtoull(next(), nullptr, 10);
    else chunks.push_back(std::atoi(argv[i]));
  }
  if (chunks.empty()) chunks = {1, 8, 12};
  cublasLtHandle_t lt;
  CK(cublasLtCreate(&lt));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  void* wsp = nullptr;
  if (ws) CK(cudaMalloc(&wsp, ws));
  std::vector<__half*> w1(layers), b1(layers), w2(layers), b2(layers);
  for (int l = 0; l < layers; ++l) {
    w1[l] = alloc_fill(k * n, 11 + l, 0.036f), b1[l] = alloc_fill(n, 101 + l, 0.1f);
    w2[l] = alloc_fill(n * k, 211 + l, 0.018f), b2[l] = alloc_fill(k, 311 + l, 0.1f);
  }
  __half* x0 = alloc_fill(m * k, 7, 1.f);
  __half *xa, *xb, *hidden, *ref;
  CK(cudaMalloc(&xa, m * k * 2));
  CK(cudaMalloc(&xb, m * k * 2));
  CK(cudaMalloc(&hidden, m * n * 2));  // the unchunked H; chunks use its first rows
  CK(cudaMalloc(&ref, m * k * 2));
  CK(cudaDeviceSynchronize());

  struct Mode {
    int chunks;
    cudaGraphExec_t exec;
    Turns turns;
  };
  std::vector<Mode> modes;
  std::vector<Gemm*> keep;
  for (int c : chunks) {
    const long rows = (m + c - 1) / c, last = m - rows * (c - 1);
    if (last <= 0) {
      std::fprintf(stderr, "%d chunks of %ld rows overrun %ld rows\n", c, rows, m);
      return 2;
    }
    auto* f1 = new Gemm(lt, rows, n, k, true, ws);
    auto* f2 = new Gemm(lt, rows, k, n, false, ws);
    auto* l1 = new Gemm(lt, last, n, k, true, ws);
    auto* l2 = new Gemm(lt, last, k, n, false, ws);
    keep.insert(keep.end(), {f1, f2, l1, l2});
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CK(cudaMemcpyAsync(xa, x0, m * k * 2, cudaMemcpyDeviceToDevice, s));
    __half *in = xa, *out = xb;
    for (int l = 0; l < layers; ++l) {
      for (int ci = 0; ci < c; ++ci) {
        const long r0 = ci * rows;
        Gemm* g1 = ci + 1 < c ? f1 : l1;
        Gemm* g2 = ci + 1 < c ? f2 : l2;
        g1->run(lt, w1[l], in + r0 * k, b1[l], nullptr, 0.f, hidden, wsp, ws, s);
        g2->run(lt, w2[l], hidden, b2[l], in + r0 * k, 1.f, out + r0 * k, wsp, ws, s);
      }
      std::swap(in, out);
    }
    cudaGraph_t g;
    CK(cudaStreamEndCapture(s, &g));
    Mode md{c, nullptr};
    CK(cudaGraphInstantiate(&md.exec, g, 0));
    cudaGraphDestroy(g);
    // Check against the unchunked graph's output (the first mode's).
    CK(cudaGraphLaunch(md.exec, s));
    CK(cudaStreamSynchronize(s));
    __half* result = layers % 2 ? xb : xa;
    if (modes.empty()) {
      CK(cudaMemcpy(ref, result, m * k * 2, cudaMemcpyDeviceToDevice));
    } else {
      std::vector<__half> a(m * k), b(m * k);
      CK(cudaMemcpy(a.data(), ref, m * k * 2, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(b.data(), result, m * k * 2, cudaMemcpyDeviceToHost));
      double worst = 0, big = 0;
      for (long i = 0; i < m * k; i += 7) {
        const double u = __half2float(a[i]), v = __half2float(b[i]);
        worst = std::max(worst, std::fabs(u - v)), big = std::max(big, std::fabs(u));
      }
      std::printf("%d chunks of %ld rows: max |diff| %.3e against 1 chunk (max |y| %.3g)\n", c, rows, worst, big);
    }
    modes.push_back(md);
  }

  const Energy energy;
  // Turns forward then backward, each after a warm-up of its own, so drift in temperature falls on all.
  std::vector<int> order;
  for (size_t i = 0; i < modes.size(); ++i) order.push_back(int(i));
  for (size_t i = modes.size(); i-- > 0;) order.push_back(int(i));
  for (int i : order) {
    replay_for(modes[i].exec, s, seconds, energy, nullptr);
    replay_for(modes[i].exec, s, seconds, energy, &modes[i].turns);
  }
  std::printf("| chunks | rows | ms a layer | mJ a layer | mean W |\n|---|---|---|---|---|\n");
  for (const Mode& md : modes) {
    const double per = md.turns.runs * layers;
    const double ms = md.turns.ms / per, mj = md.turns.mj / per;
    std::printf("| %d | %ld | %.4f | %.1f | %.0f |\n", md.chunks, (m + md.chunks - 1) / md.chunks, ms,
                mj > 0 ? mj : -1.0, mj > 0 ? mj / ms : -1.0);
  }
  return 0;
}
