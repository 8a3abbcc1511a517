// Can GEMMs that fold a pre-norm block's LayerNorms away beat LayerNorm + cuBLASLt at ViT-B/16 bs256's
// shapes? (issue 6, session 30)
//
// LN(h) W + b = rstd (h W') - rstd mu s + b' with W' = diag(gamma) W, s = column sums of W' and
// b' = beta W + b (docs/hopper-kernels.md, "LayerNorm folded into the next GEMM"). cuBLASLt cannot
// scale an FP16 GEMM's rows (sessions 26 and 29); CUTLASS's epilogue visitor trees can: column
// vectors (rstd, -mu rstd, one a row) and row vectors (s, b', one a column) around the accumulator.
// The row statistics come from the GEMM that writes h (the residual add's): its epilogue also sums h
// and h^2 a row (atomics over the column tiles), and a small kernel turns the sums into rstd and
// -mu rstd (zeroing the sums for the next use).
//
// Two chains of one ViT layer's GEMMs (attention left out: its output is an input here), each captured
// as a CUDA graph of `layers` repeats and replayed in turns forward then backward for `seconds` each
// after a warm-up, NVML's energy counter around each turn (the GPU at its 700 W cap):
//   lt    kiln today: proj + residual -> LayerNorm -> fc1 + GELU -> fc2 + residual -> LayerNorm -> QKV,
//         each GEMM cuBLASLt's fastest of the heuristic's configurations with each tile of kiln's
//         lt_config.h (as kiln's builder offers them), the LayerNorm one warp a row
//   fold  proj + residual + row sums (CUTLASS) -> stats -> fc1 folded + GELU (CUTLASS) -> fc2 + residual
//         + row sums (CUTLASS) -> stats -> QKV folded (CUTLASS), each CUTLASS GEMM the fastest of the
//         configurations below
// and the LayerNorm alone, to compare with kiln's (47-49 us at the cap, session 29). The outputs of
// the two chains (x' and the QKV projection) are compared.
//
// Not part of the build. CUTLASS's headers come from PyPI's nvidia-cutlass (4.2), unpacked:
//   pip download nvidia-cutlass==4.2.0.0 --no-deps -d /tmp/c && unzip -q -o /tmp/c/*.whl -d build/cutlass
//   C=build/cutlass/cutlass_library/source; nvcc -O3 -DNDEBUG -std=c++17 -arch=sm_90a --expt-relaxed-constexpr \
//     -I $C/include -I $C/tools/util/include -o cutlass_fold_probe bench/cutlass_fold_probe.cu -lcublasLt -lcuda -ldl
//   ./cutlass_fold_probe [--m 50432] [--layers 12] [--seconds 2]
// -DNDEBUG matters: without it CUTLASS's device asserts are calls inside the main loop and ptxas
// serializes every wgmma (warning C7510), which cost 5-12% (session 30's first run).
#include <cublasLt.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../src/ops/matmul/lt_config.h"
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/util/packed_stride.hpp"
#include "lt_probe.h"
#include "probe_check.h"
#include "sustained.cuh"

namespace probe {
using namespace cute;

// ---- LayerNorm and the statistics kernel (H = 768: one warp a row, 24 halves a lane) ----
constexpr int kH = 768, kPer = kH / 32;
constexpr float kEps = 1e-6f;

__global__ void layer_norm(const __half* __restrict__ x, const float* __restrict__ gamma,
                           const float* __restrict__ beta, __half* __restrict__ y, long m) {
  const long r = blockIdx.x * long(blockDim.x / 32) + threadIdx.x / 32;
  if (r >= m) return;
  const int lane = threadIdx.x % 32;
  uint4 u[kPer / 8];
#pragma unroll
  for (int c = 0; c < kPer / 8; ++c) u[c] = __ldcs(reinterpret_cast<const uint4*>(x + r * kH) + c * 32 + lane);
  float v[kPer];
#pragma unroll
  for (int c = 0; c < kPer / 8; ++c) {
    const __half2* h = reinterpret_cast<const __half2*>(&u[c]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __half22float2(h[j]);
      v[c * 8 + 2 * j] = f.x, v[c * 8 + 2 * j + 1] = f.y;
    }
  }
  float s = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) s += v[i];
#pragma unroll
  for (int o = 16; o; o /= 2) s += __shfl_xor_sync(~0u, s, o);
  const float mu = s / kH;
  float q = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) q += (v[i] - mu) * (v[i] - mu);
#pragma unroll
  for (int o = 16; o; o /= 2) q += __shfl_xor_sync(~0u, q, o);
  const float rstd = rsqrtf(q / kH + kEps);
#pragma unroll
  for (int c = 0; c < kPer / 8; ++c) {
    const int k0 = (c * 32 + lane) * 8;
    const float4 g0 = __ldg(reinterpret_cast<const float4*>(gamma + k0)),
                 g1 = __ldg(reinterpret_cast<const float4*>(gamma + k0 + 4));
    const float4 b0 = __ldg(reinterpret_cast<const float4*>(beta + k0)),
                 b1 = __ldg(reinterpret_cast<const float4*>(beta + k0 + 4));
    const float g[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
    const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
    uint4 o;
    __half2* h = reinterpret_cast<__half2*>(&o);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      h[j] = __floats2half2_rn((v[c * 8 + 2 * j] - mu) * rstd * g[2 * j] + b[2 * j],
                               (v[c * 8 + 2 * j + 1] - mu) * rstd * g[2 * j + 1] + b[2 * j + 1]);
    reinterpret_cast<uint4*>(y + r * kH)[c * 32 + lane] = o;
  }
}

// Row sums of h and h^2 (the producer GEMM's atomics) -> rstd and -mu rstd; the sums zeroed for the next use.
__global__ void finish_stats(float* __restrict__ sum, float* __restrict__ sumsq, float* __restrict__ rstd,
                             float* __restrict__ nmr, long m) {
  for (long r = blockIdx.x * long(blockDim.x) + threadIdx.x; r < m; r += long(gridDim.x) * blockDim.x) {
    const float mu = sum[r] / kH, var = fmaxf(sumsq[r] / kH - mu * mu, 0.f), rs = rsqrtf(var + kEps);
    rstd[r] = rs, nmr[r] = -mu * rs;
    sum[r] = 0.f, sumsq[r] = 0.f;
  }
}

// ---- CUTLASS GEMMs: D (m x n, row-major) = epilogue(A (m x k, row-major) Wt^T), Wt n x k row-major ----
namespace fu = cutlass::epilogue::fusion;
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;

template <class T>
struct Square {
  CUTLASS_HOST_DEVICE T operator()(T const& x) const { return cutlass::multiplies<T>{}(x, x); }
};
template <class T>
using Identity = cutlass::epilogue::thread::Identity<T>;
template <class T>
using Gelu = cutlass::epilogue::thread::GELU_taylor<T>;

enum class Epi { kFold, kFoldGelu, kResidualStats };

template <class Tile>
struct Evts {
  using ColVec = fu::Sm90ColBroadcast<0, Tile, float, float, Stride<_1, _0, int64_t>>;
  using RowVec = fu::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>>;
  using Fma = fu::Sm90Compute<cutlass::homogeneous_multiply_add, float, float, kRound>;
  // act(rstd * acc + (nmr * s + b'))
  template <template <class> class Act>
  using Fold = fu::Sm90EVT<fu::Sm90Compute<Act, cutlass::half_t, float, kRound>,
                           fu::Sm90EVT<Fma, ColVec, fu::Sm90AccFetch, fu::Sm90EVT<Fma, ColVec, RowVec, RowVec>>>;
  // Z = acc + bias + C; D = Z; row sums of Z and Z^2 (atomics)
  using RowSum = fu::Sm90ColReduction<cutlass::plus, cutlass::plus, cutlass::atomic_add, 0, Tile, float, float, kRound>;
  using Z = fu::Sm90EVT<fu::Sm90Compute<cutlass::plus, float, float, kRound>, fu::Sm90SrcFetch<cutlass::half_t>,
                        fu::Sm90EVT<fu::Sm90Compute<cutlass::plus, float, float, kRound>, fu::Sm90AccFetch, RowVec>>;
  using Out = fu::Sm90EVT<fu::Sm90Compute<Identity, cutlass::half_t, float, kRound>,
                          fu::Sm90EVT<RowSum, fu::Sm90SplitTreeFetch>>;
  using Aux = fu::Sm90EVT<RowSum, fu::Sm90EVT<fu::Sm90Compute<Square, float, float, kRound>, fu::Sm90SplitTreeFetch>>;
  using Stats = fu::Sm90SplitTreeVisitor<Z, Out, Aux>;
};

struct Vecs {  // kFold*: rstd, nmr (rows), s, b' (columns); kResidualStats: C, bias, sum, sumsq
  const float *rstd = nullptr, *nmr = nullptr, *s = nullptr, *b = nullptr;
  const __half* c = nullptr;
  float *sum = nullptr, *sumsq = nullptr;
  static Vecs fold(const float* rstd, const float* nmr, const float* s, const float* b) {
    Vecs v;
    v.rstd = rstd, v.nmr = nmr, v.s = s, v.b = b;
    return v;
  }
  static Vecs residual_stats(const float* bias, const __half* c, float* sum, float* sumsq) {
    Vecs v;
    v.b = bias, v.c = c, v.sum = sum, v.sumsq = sumsq;
    return v;
  }
};

template <class Tile, class Cluster, class MainSched, class EpiSched, Epi E>
struct Ct {
  using El = cutlass::half_t;
  using Ev = Evts<Tile>;
  using Evt =
      std::conditional_t<E == Epi::kFold, typename Ev::template Fold<Identity>,
                         std::conditional_t<E == Epi::kFoldGelu, typename Ev::template Fold<Gelu>, typename Ev::Stats>>;
  using ElC = std::conditional_t<E == Epi::kResidualStats, El, void>;
  using EpiOp = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, ElC, cutlass::layout::RowMajor, 8, El,
      cutlass::layout::RowMajor, 8, EpiSched, Evt>::CollectiveOp;
  using Main = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, El, cutlass::layout::RowMajor, 8, El,
      cutlass::layout::ColumnMajor, 8, float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename EpiOp::SharedStorage))>,
      MainSched>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Main, EpiOp>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  Gemm gemm;
  void* workspace = nullptr;

  bool init(long m, long n, long k, const __half* a, const __half* wt, __half* d, const Vecs& v) {
    const int M = int(m), N = int(n), K = int(k);
    auto sa = cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, make_shape(M, K, 1));
    auto sb = cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, make_shape(N, K, 1));
    auto sc = cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, make_shape(M, N, 1));
    auto sd = cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, make_shape(M, N, 1));
    cutlass::KernelHardwareInfo hw;
    hw.device_id = 0;
    hw.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(0);
    const El* c = reinterpret_cast<const El*>(v.c);
    typename Gemm::Arguments args{cutlass::gemm::GemmUniversalMode::kGemm,
                                  {M, N, K, 1},
                                  {reinterpret_cast<const El*>(a), sa, reinterpret_cast<const El*>(wt), sb},
                                  {{}, c, sc, reinterpret_cast<El*>(d), sd},
                                  hw};
    if constexpr (E == Epi::kResidualStats) {
      // {Z, Aux, Out}: Z = {{}, {acc, bias, plus}, plus}; Aux = {{split, square}, sumsq}; Out = {{split, sum}, id}
      args.epilogue.thread = {{{}, {{}, {v.b}, {}}, {}}, {{{}, {}}, {v.sumsq}}, {{{}, {v.sum}}, {}}};
    } else {
      args.epilogue.thread = {{{v.rstd}, {}, {{v.nmr}, {v.s}, {v.b}, {}}, {}}, {}};
    }
    if (gemm.can_implement(args) != cutlass::Status::kSuccess) return false;
    const size_t ws = Gemm::get_workspace_size(args);
    if (ws) CK(cudaMalloc(&workspace, ws));
    return gemm.initialize(args, workspace) == cutlass::Status::kSuccess;
  }
  void run(cudaStream_t s) { CK(int(gemm.run(s))); }
};

using Coop = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using CoopEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
using Ping = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using PingEpi = cutlass::epilogue::TmaWarpSpecialized;

using Launch = std::function<void(cudaStream_t)>;

// The median of 5 samples of 10 runs, ms a run.
float time_ms(const Launch& f, cudaStream_t s) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0), cudaEventCreate(&e1);
  f(s);
  std::vector<float> t;
  for (int r = 0; r < 5; ++r) {
    CK(cudaEventRecord(e0, s));
    for (int j = 0; j < 10; ++j) f(s);
    CK(cudaEventRecord(e1, s));
    CK(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms / 10);
  }
  cudaEventDestroy(e0), cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[2];
}

// The fastest of CUTLASS's configurations for one GEMM, as a builder would pick. (Statistics
// GEMMs accumulate into sum/sumsq on every timed run: zeroed afterwards by the caller.)
template <Epi E>
Launch pick_cutlass(const char* what, long m, long n, long k, const __half* a, const __half* wt, __half* d,
                    const Vecs& v, cudaStream_t s) {
  std::vector<std::pair<std::string, Launch>> cands;
  auto add = [&](auto* c, const char* name) {
    if (c->init(m, n, k, a, wt, d, v))
      cands.push_back({name, [c](cudaStream_t st) { c->run(st); }});
    else
      std::printf("  %s %s: CUTLASS cannot run it\n", what, name);
  };
  add(new Ct<Shape<_128, _128, _64>, Shape<_1, _2, _1>, Ping, PingEpi, E>(), "128x128 ping-pong 1x2");
  add(new Ct<Shape<_128, _128, _64>, Shape<_2, _1, _1>, Ping, PingEpi, E>(), "128x128 ping-pong 2x1");
  add(new Ct<Shape<_128, _256, _64>, Shape<_2, _1, _1>, Coop, CoopEpi, E>(), "128x256 cooperative 2x1");
  float best = 1e30f;
  Launch pick;
  for (auto& [name, f] : cands) {
    const float ms = time_ms(f, s);
    std::printf("  %s %s: %.4f ms\n", what, name.c_str(), ms);
    if (ms < best) best = ms, pick = f;
  }
  return pick;
}

// ---- cuBLASLt: D^T (n x m col-major) = Wt (k x n col-major)^T A^T (k x m col-major), bias along n ----
struct Lt {
  cublasLtHandle_t lt;
  cublasLtMatmulDesc_t op;
  cublasLtMatmulAlgo_t algo;
  void* ws;
  static constexpr size_t ws_bytes = size_t(32) << 20;
  LtProblem p;  // weights stored n x k: TRANSA
  const __half *a, *wt, *c;
  __half* d;
  float beta;
  Lt(const char* what, long m, long n, long k, bool gelu, const __half* a_, const __half* wt_, const __half* bias,
     const __half* c_, __half* d_, cudaStream_t s)
      : p(m, n, k, ws_bytes, true), a(a_), wt(wt_), c(c_ ? c_ : d_), d(d_), beta(c_ ? 1.f : 0.f) {
    CK(cublasLtCreate(&lt));
    CK(cudaMalloc(&ws, ws_bytes));
    CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t tr = CUBLAS_OP_T;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr));
    cublasLtEpilogue_t ep = gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    cublasLtMatmulHeuristicResult_t res[8];
    int found = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(lt, op, p.la, p.lb, p.lc, p.lc, p.pref, 8, res, &found));
    if (!found) {
      std::fprintf(stderr, "cuBLASLt: no configuration for %s\n", what);
      std::exit(1);
    }
    // Each heuristic configuration as given and with each of kiln's tiles (lt_config.h), timed.
    float best = 1e30f, heur = 1e30f;
    cublasLtMatmulAlgo_t pick = res[0].algo;
    int tried = 0;
    for (int i = 0; i < found; ++i) {
      std::vector<cublasLtMatmulAlgo_t> algos{res[i].algo};
      for (const auto& t : kiln::ops::matmul::lt_config::kTiles) {
        cublasLtMatmulAlgo_t x = res[i].algo;
        cublasLtMatmulHeuristicResult_t chk{};
        if (cublasLtMatmulAlgoConfigSetAttribute(&x, CUBLASLT_ALGO_CONFIG_TILE_ID, &t.id, sizeof t.id) ==
                CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulAlgoCheck(lt, op, p.la, p.lb, p.lc, p.lc, &x, &chk) == CUBLAS_STATUS_SUCCESS &&
            chk.state == CUBLAS_STATUS_SUCCESS && chk.workspaceSize <= ws_bytes)
          algos.push_back(x);
      }
      for (size_t j = 0; j < algos.size(); ++j) {
        algo = algos[j];
        if (!ok(s)) continue;
        ++tried;
        const float ms = time_ms([this](cudaStream_t st) { run(st); }, s);
        if (j == 0) heur = std::min(heur, ms);
        if (ms < best) best = ms, pick = algos[j];
      }
    }
    algo = pick;
    std::printf("  %s cuBLASLt: %.4f ms, best of %d configurations (the heuristic's 8 alone: %.4f)\n", what, best,
                tried, heur);
  }
  bool ok(cudaStream_t s) {
    const float one = 1.f;
    return cublasLtMatmul(lt, op, &one, wt, p.la, a, p.lb, &beta, c, p.lc, d, p.lc, &algo, ws, ws_bytes, s) ==
           CUBLAS_STATUS_SUCCESS;
  }
  void run(cudaStream_t s) { CK(ok(s) ? 0 : 1); }
};

std::vector<float> to_host(const __half* p, size_t n) {
  std::vector<__half> h(n);
  CK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __half2float(h[i]);
  return f;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0, big = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, double(std::fabs(a[i] - b[i]))), big = std::max(big, double(std::fabs(b[i])));
  return worst / big;
}

// A linear layer's weights as Wt (n x k, row-major), its bias, and (for a layer after a LayerNorm
// with gamma, beta) the folded W' = Wt diag(gamma), s = its column sums, b' = Wt beta + bias.
struct Linear {
  long n, k;
  __half *wt = nullptr, *bias_h = nullptr, *wf = nullptr;
  float *bias = nullptr, *s = nullptr, *bf = nullptr;
  Linear(long n_, long k_, unsigned seed, const std::vector<float>* gamma, const std::vector<float>* beta)
      : n(n_), k(k_) {
    std::vector<__half> w(n * k), b(n), f;
    std::vector<float> bias_f(n), s_f, bf_f;
    LtRandom rnd(seed);
    const float scale = 1.7f / std::sqrt(float(k));
    for (auto& x : w) x = __float2half(scale * rnd());
    for (long c = 0; c < n; ++c) b[c] = __float2half(0.1f * rnd()), bias_f[c] = __half2float(b[c]);
    auto up = [](auto*& dst, const auto& v) {
      CK(cudaMalloc(&dst, v.size() * sizeof v[0]));
      CK(cudaMemcpy(dst, v.data(), v.size() * sizeof v[0], cudaMemcpyHostToDevice));
    };
    up(wt, w), up(bias_h, b), up(bias, bias_f);
    if (!gamma) return;
    f.resize(n * k), s_f.resize(n), bf_f.resize(n);
    for (long c = 0; c < n; ++c) {
      double sum = 0, bsum = bias_f[c];
      for (long kk = 0; kk < k; ++kk) {
        const float wv = __half2float(w[c * k + kk]);
        f[c * k + kk] = __float2half(wv * (*gamma)[kk]);
        sum += __half2float(f[c * k + kk]);
        bsum += double((*beta)[kk]) * wv;
      }
      s_f[c] = float(sum), bf_f[c] = float(bsum);
    }
    up(wf, f), up(s, s_f), up(bf, bf_f);
  }
};

}  // namespace probe

using namespace probe;

int main(int argc, char** argv) {
  long m = 50432;
  int layers = 12;
  double seconds = 2;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? argv[++i] : "0"; };
    if (!std::strcmp(argv[i], "--m"))
      m = std::atol(next());
    else if (!std::strcmp(argv[i], "--layers"))
      layers = std::atoi(next());
    else if (!std::strcmp(argv[i], "--seconds"))
      seconds = std::atof(next());
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  const long H = kH, F = 4 * kH, Q = 3 * kH;
  std::printf("ViT layer chain, %ld tokens, H %ld, %d layers a graph\n", m, H, layers);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  // LayerNorm parameters: gamma around 1, beta small.
  std::vector<float> g1(H), be1(H), g2(H), be2(H);
  {
    LtRandom rnd(3);
    for (long i = 0; i < H; ++i) g1[i] = 1.f + 0.3f * rnd(), be1[i] = 0.1f * rnd();
    for (long i = 0; i < H; ++i) g2[i] = 1.f + 0.3f * rnd(), be2[i] = 0.1f * rnd();
  }
  float *g1d, *be1d, *g2d, *be2d;
  for (auto [p, v] : {std::pair{&g1d, &g1}, {&be1d, &be1}, {&g2d, &g2}, {&be2d, &be2}}) {
    CK(cudaMalloc(p, H * 4));
    CK(cudaMemcpy(*p, v->data(), H * 4, cudaMemcpyHostToDevice));
  }
  // proj and fc2 write the residual stream; fc1 reads LN2(h), QKV reads LN1(x').
  Linear proj(H, H, 11, nullptr, nullptr), fc1(F, H, 12, &g2, &be2), fc2(H, F, 13, nullptr, nullptr),
      qkv(Q, H, 14, &g1, &be1);

  auto buf = [](long n) {
    __half* p;
    CK(cudaMalloc(&p, n * 2));
    return p;
  };
  __half *att = buf(m * H), *x = buf(m * H), *h = buf(m * H), *hn = buf(m * H), *u = buf(m * F), *x2 = buf(m * H),
         *xn = buf(m * H), *qo = buf(m * Q);
  fill_uniform<<<1024, 256>>>(att, m * H, 7, 1.f, 0.f);
  fill_uniform<<<1024, 256>>>(x, m * H, 8, 1.5f, 0.2f);  // a mean to remove
  float *sum, *sumsq, *rstd, *nmr;
  for (float** p : {&sum, &sumsq, &rstd, &nmr}) {
    CK(cudaMalloc(p, m * 4));
    CK(cudaMemset(*p, 0, m * 4));
  }
  CK(cudaDeviceSynchronize());

  const int rows_per_block = 8;
  const unsigned ln_blocks = unsigned((m + rows_per_block - 1) / rows_per_block);
  auto ln = [&](const __half* in, const float* g, const float* b, __half* out, cudaStream_t st) {
    layer_norm<<<ln_blocks, 32 * rows_per_block, 0, st>>>(in, g, b, out, m);
  };
  auto stats = [&](cudaStream_t st) { finish_stats<<<264, 256, 0, st>>>(sum, sumsq, rstd, nmr, m); };

  std::printf("picks (builder-style timing, one launch a sample):\n");
  Lt lt_proj("proj + residual", m, H, H, false, att, proj.wt, proj.bias_h, x, h, s);
  Lt lt_fc1("fc1 + GELU", m, F, H, true, hn, fc1.wt, fc1.bias_h, nullptr, u, s);
  Lt lt_fc2("fc2 + residual", m, H, F, false, u, fc2.wt, fc2.bias_h, h, x2, s);
  Lt lt_qkv("QKV", m, Q, H, false, xn, qkv.wt, qkv.bias_h, nullptr, qo, s);
  const Launch ct_proj = pick_cutlass<Epi::kResidualStats>("proj + residual + row sums", m, H, H, att, proj.wt, h,
                                                           Vecs::residual_stats(proj.bias, x, sum, sumsq), s);
  const Launch ct_fc1 =
      pick_cutlass<Epi::kFoldGelu>("fc1 folded + GELU", m, F, H, h, fc1.wf, u, Vecs::fold(rstd, nmr, fc1.s, fc1.bf), s);
  const Launch ct_fc2 = pick_cutlass<Epi::kResidualStats>("fc2 + residual + row sums", m, H, F, u, fc2.wt, x2,
                                                          Vecs::residual_stats(fc2.bias, h, sum, sumsq), s);
  const Launch ct_qkv =
      pick_cutlass<Epi::kFold>("QKV folded", m, Q, H, x2, qkv.wf, qo, Vecs::fold(rstd, nmr, qkv.s, qkv.bf), s);
  CK(cudaStreamSynchronize(s));
  CK(cudaMemset(sum, 0, m * 4));
  CK(cudaMemset(sumsq, 0, m * 4));
  CK(cudaDeviceSynchronize());

  struct Mode {
    std::string name;
    Launch body;  // one layer
    cudaGraphExec_t exec = nullptr;
    Turns turns;
  };
  std::vector<Mode> modes;
  auto add_mode = [&](const char* name, Launch body) {
    Mode md;
    md.name = name, md.body = std::move(body);
    modes.push_back(std::move(md));
  };
  add_mode("lt: cuBLASLt + 2 LayerNorms", [&](cudaStream_t st) {
    lt_proj.run(st), ln(h, g2d, be2d, hn, st), lt_fc1.run(st), lt_fc2.run(st);
    ln(x2, g1d, be1d, xn, st), lt_qkv.run(st);
  });
  add_mode("fold: CUTLASS, LayerNorms folded",
           [&](cudaStream_t st) { ct_proj(st), stats(st), ct_fc1(st), ct_fc2(st), stats(st), ct_qkv(st); });
  add_mode("2 LayerNorms alone", [&](cudaStream_t st) { ln(h, g2d, be2d, hn, st), ln(x2, g1d, be1d, xn, st); });
  add_mode("lt GEMMs alone", [&](cudaStream_t st) { lt_proj.run(st), lt_fc1.run(st), lt_fc2.run(st), lt_qkv.run(st); });

  // Outputs: each chain once, x' and QKV compared.
  modes[0].body(s);
  CK(cudaStreamSynchronize(s));
  const std::vector<float> ref_x2 = to_host(x2, m * H), ref_q = to_host(qo, m * Q);
  CK(cudaMemsetAsync(x2, 0, m * H * 2, s));
  CK(cudaMemsetAsync(qo, 0, m * Q * 2, s));
  modes[1].body(s);
  CK(cudaStreamSynchronize(s));
  std::printf("fold against lt: x' max rel err %.2e, QKV %.2e\n", rel_err(to_host(x2, m * H), ref_x2),
              rel_err(to_host(qo, m * Q), ref_q));

  for (Mode& md : modes) {
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < layers; ++l) md.body(s);
    cudaGraph_t g;
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&md.exec, g, 0));
    cudaGraphDestroy(g);
  }
  const Energy energy;
  std::vector<int> order;
  for (size_t i = 0; i < modes.size(); ++i) order.push_back(int(i));
  for (size_t i = modes.size(); i-- > 0;) order.push_back(int(i));
  for (int rep = 0; rep < 2; ++rep)
    for (int i : order) {
      replay_for(modes[i].exec, s, seconds / 2, energy, nullptr);
      replay_for(modes[i].exec, s, seconds, energy, &modes[i].turns);
    }
  std::printf("| chain | sustained ms a layer | mJ a layer | mean W |\n|---|---|---|---|\n");
  for (const Mode& md : modes) {
    const double per = md.turns.runs * layers, ms = md.turns.ms / per, mj = md.turns.mj / per;
    std::printf("| %s | %.4f | %.1f | %.0f |\n", md.name.c_str(), ms, mj > 0 ? mj : -1.0, mj > 0 ? mj / ms : -1.0);
  }
  return 0;
}
