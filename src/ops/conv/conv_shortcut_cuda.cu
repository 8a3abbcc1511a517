// kiln's 1x1 conv + projection shortcut as one GEMM (conv_shortcut_cuda.h).
#include "ops/conv/conv_shortcut_cuda.h"

#include <cstdint>
#include <string>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "backends/cuda/tactic_sink.h"
#include "ops/conv/conv_act.cuh"
#include "ops/conv/conv_graph_cuda.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"

namespace kiln::ops::conv_shortcut {
namespace {

constexpr int kBN = 128, kBK = 64, kStages = 3;
constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kRowBytes = kBK * 2;        // a staged row: 64 channels, 8 chunks of 16 bytes
constexpr int kOutRowBytes = kBN * 2;     // a staged output row (epilogue)
constexpr int kBBytes = kBN * kRowBytes;  // B of one stage

// A CTA tile is BM pixels (128 or 64: the two tactics) x 128 output channels.
template <int BM>
struct Tile {
  static constexpr int kABytes = BM * kRowBytes;
  static constexpr int kStageBytes = kABytes + kBBytes;  // A then B
  static constexpr size_t kSmem = size_t(kStages) * kStageBytes + kBN * sizeof(float);
  static constexpr int kWm = BM / 32, kWn = kWarps / kWm;  // warps along pixels, channels (32 pixels a warp)
  static constexpr int kWarpN = kBN / kWn;                 // a warp's channels: 64 or 32
  static constexpr int kNt = kWarpN / 8;                   // its n8 tiles
  static constexpr int kArows = BM / 32;                   // A rows a thread loads a stage
  static_assert(BM * kOutRowBytes <= kStages * kStageBytes, "the output tile reuses the stages");
};

struct Geom {
  int64_t pixels;  // n * oh * ow
  int ohw, ow, h2, w2, s;
  int c1, c2, m;
  int kt1, kt;  // k steps of h, of h and x together
  int nb;       // 128-channel blocks of the output
};

// 16-byte chunk `c` of staged row `r` lives at chunk c ^ (r % 8): ldmatrix's eight row
// addresses (eight consecutive rows, one chunk column) fall in eight distinct bank groups.
__device__ __forceinline__ uint32_t swz(int r, int c) { return uint32_t(r * kRowBytes + ((c ^ (r & 7)) << 4)); }

// Stage `kt` of the reduction: 64 channels of h (kt < kt1) or of x, for the tile's BM pixels
// (A) and 128 output channels (B). Thread t copies chunk t % 8 of rows t / 8 + 32 q.
template <class T, int BM>
__device__ __forceinline__ void load_stage(uint32_t sa, const T* (&hrow)[BM / 32], const T* (&xrow)[BM / 32],
                                           const bool (&ok)[BM / 32], const T* __restrict__ w1,
                                           const T* __restrict__ w2, const Geom& g, int n0, int kt, int tid) {
  const bool main = kt < g.kt1;
  const int k0 = (main ? kt : kt - g.kt1) * kBK, ch = tid & 7;
  const int ldw = main ? g.c1 : g.c2;
  const T* wb = (main ? w1 : w2) + static_cast<size_t>(n0) * ldw + k0 + ch * 8;
#pragma unroll
  for (int q = 0; q < BM / 32; ++q) {
    const int r = (tid >> 3) + 32 * q;
    cuda::cp_async16(sa + swz(r, ch), (main ? hrow[q] : xrow[q]) + k0 + ch * 8, ok[q]);
  }
#pragma unroll
  for (int q = 0; q < kBN / 32; ++q) {
    const int r = (tid >> 3) + 32 * q;
    cuda::cp_async16(sa + Tile<BM>::kABytes + swz(r, ch), wb + static_cast<size_t>(r) * ldw, true);
  }
}

// A CTA computes output pixels [BM mb, +BM) x channels [128 nb, +128) (blockIdx.x = mb * nb
// + nb: CTAs sharing a pixel block run together and read it from L2). Warps BM / 32 (pixels) x
// the rest (channels), a warp 32 pixels x 64 (BM 128) or 32 (BM 64) channels: two m16 tiles by
// kNt n8 tiles. The k steps run through a 3-stage cp.async pipeline; bias and activation in
// registers, the tile leaves as 16-byte vectors through the freed stages.
// (Session 23: a persistent variant with a 4-stage, 32-channel pipeline running on into the
// next tile ran ResNet-50 bs256's two fused convs in 341 / 370 us against this kernel's 332 /
// 300: ncu showed it issue-bound, 49% of issue slots, on address arithmetic.)
template <class T, bool RELU, int BM>
__global__ void __launch_bounds__(kThreads, BM == 128 ? 2 : 3)
    shortcut_gemm_kernel(const T* __restrict__ h, const T* __restrict__ w1, const T* __restrict__ b1,
                         const T* __restrict__ x, const T* __restrict__ w2, const T* __restrict__ b2, T* __restrict__ y,
                         Geom g) {
  using C = Tile<BM>;
  extern __shared__ __align__(128) unsigned char smem[];
  float* sbias = reinterpret_cast<float*>(smem + kStages * C::kStageBytes);
  const uint32_t sbase = cuda::smem_addr(smem);
  const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
  const int64_t mb = blockIdx.x / g.nb;
  const int nbk = static_cast<int>(blockIdx.x - mb * g.nb), n0 = nbk * kBN;
  const int64_t m0 = mb * BM;

  // This thread's A rows: pixel m0 + r in h, its sample in x (rows past the end read h / x, zero-filled).
  const T* hrow[C::kArows];
  const T* xrow[C::kArows];
  bool ok[C::kArows];
#pragma unroll
  for (int q = 0; q < C::kArows; ++q) {
    const int64_t p = m0 + (tid >> 3) + 32 * q;
    ok[q] = p < g.pixels;
    const int64_t pp = ok[q] ? p : 0;
    const int64_t img = pp / g.ohw;
    const int rem = static_cast<int>(pp - img * g.ohw), oy = rem / g.ow, ox = rem - oy * g.ow;
    hrow[q] = h + pp * g.c1;
    xrow[q] = x + ((img * g.h2 + int64_t(oy) * g.s) * g.w2 + int64_t(ox) * g.s) * g.c2;
  }
  if (tid < kBN) {
    float v = 0.f;
    if (b1) v += cuda::to_f(b1[n0 + tid]);
    if (b2) v += cuda::to_f(b2[n0 + tid]);
    sbias[tid] = v;
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < g.kt) load_stage<T, BM>(sbase + s * C::kStageBytes, hrow, xrow, ok, w1, w2, g, n0, s, tid);
    cuda::cp_commit();
  }

  const int wm = warp % C::kWm, wn = warp / C::kWm;
  // ldmatrix rows: A row wm * 32 + mi * 16 + lane % 16, chunk 2 kk + lane / 16; B (n x k) row
  // wn * kWarpN + jj * 16 + lane % 8 + 8 (lane / 16), chunk 2 kk + (lane / 8) % 2.
  const int a_row = wm * 32 + (lane & 15), a_hi = lane >> 4;
  const int b_row = wn * C::kWarpN + (lane & 7) + ((lane >> 4) << 3), b_hi = (lane >> 3) & 1;
  float acc[2][C::kNt][4];
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int j = 0; j < C::kNt; ++j) acc[mi][j][0] = acc[mi][j][1] = acc[mi][j][2] = acc[mi][j][3] = 0.f;

  for (int kt = 0; kt < g.kt; ++kt) {
    cuda::cp_wait<kStages - 2>();
    __syncthreads();  // stage kt landed for every thread; stage kt - 1 is free to refill
    const int pre = kt + kStages - 1;
    if (pre < g.kt)
      load_stage<T, BM>(sbase + (pre % kStages) * C::kStageBytes, hrow, xrow, ok, w1, w2, g, n0, pre, tid);
    cuda::cp_commit();
    const uint32_t sa = sbase + (kt % kStages) * C::kStageBytes, sb = sa + C::kABytes;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      unsigned af[2][4], bf[C::kNt / 2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) cuda::ldsm_x4(af[mi], sa + swz(a_row + mi * 16, 2 * kk + a_hi));
#pragma unroll
      for (int jj = 0; jj < C::kNt / 2; ++jj) cuda::ldsm_x4(bf[jj], sb + swz(b_row + jj * 16, 2 * kk + b_hi));
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int j = 0; j < C::kNt; ++j)
          cuda::mma16816<T>(acc[mi][j], af[mi], bf[j / 2][(j & 1) * 2], bf[j / 2][(j & 1) * 2 + 1]);
    }
  }
  cuda::cp_wait<0>();
  __syncthreads();  // every warp is done with the stages: they become the output tile

  // Epilogue: the thread holds rows wm * 32 + 16 mi + gr (+8), channels wn * kWarpN + 8 j + 2 tq
  // (+1). Output row r's chunk c is staged at c ^ (r % 8) of its 256 bytes.
  const int gr = lane >> 2, tq = lane & 3;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int r = wm * 32 + mi * 16 + gr + 8 * hh;
#pragma unroll
      for (int j = 0; j < C::kNt; ++j) {
        const int col = wn * C::kWarpN + 8 * j + 2 * tq;
        float v0 = acc[mi][j][2 * hh] + sbias[col], v1 = acc[mi][j][2 * hh + 1] + sbias[col + 1];
        if (RELU) v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
        const int c = col >> 3;
        *reinterpret_cast<unsigned*>(smem + r * kOutRowBytes + ((c ^ (r & 7)) << 4) + tq * 4) = cuda::pack2<T>(v0, v1);
      }
    }
  __syncthreads();
#pragma unroll
  for (int i = tid; i < BM * (kOutRowBytes / 16); i += kThreads) {
    const int r = i >> 4, c = i & 15;
    const int64_t p = m0 + r;
    if (p < g.pixels)
      *reinterpret_cast<uint4*>(y + p * g.m + n0 + c * 8) =
          *reinterpret_cast<const uint4*>(smem + r * kOutRowBytes + ((c ^ (r & 7)) << 4));
  }
}

template <class T, bool RELU, int BM>
cudaError_t launch(const Geom& g, const void* h, const void* w1, const void* b1, const void* x, const void* w2,
                   const void* b2, void* y, cudaStream_t s) {
  constexpr auto kernel = shortcut_gemm_kernel<T, RELU, BM>;
  cudaError_t e = cuda::configure_smem<kernel>(Tile<BM>::kSmem, true);
  if (e != cudaSuccess) return e;
  const int64_t tiles = (g.pixels + BM - 1) / BM * g.nb;
  kernel<<<static_cast<unsigned>(tiles), kThreads, Tile<BM>::kSmem, s>>>(
      static_cast<const T*>(h), static_cast<const T*>(w1), static_cast<const T*>(b1), static_cast<const T*>(x),
      static_cast<const T*>(w2), static_cast<const T*>(b2), static_cast<T*>(y), g);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_any(const Geom& g, int variant, bool relu, const void* h, const void* w1, const void* b1,
                       const void* x, const void* w2, const void* b2, void* y, cudaStream_t s) {
  if (variant == 1)
    return relu ? launch<T, true, 64>(g, h, w1, b1, x, w2, b2, y, s)
                : launch<T, false, 64>(g, h, w1, b1, x, w2, b2, y, s);
  return relu ? launch<T, true, 128>(g, h, w1, b1, x, w2, b2, y, s)
              : launch<T, false, 128>(g, h, w1, b1, x, w2, b2, y, s);
}

}  // namespace

bool applies(const Problem& p) {
  constexpr int64_t kLimit = int64_t{1} << 31;
  if (p.n < 1 || p.oh < 1 || p.ow < 1 || p.s < 1 || p.h2 < 1 || p.w2 < 1) return false;
  if (p.c1 < kBK || p.c1 % kBK != 0 || p.c2 < kBK || p.c2 % kBK != 0 || p.m < kBN || p.m % kBN != 0) return false;
  if ((p.h2 - 1) / p.s + 1 != p.oh || (p.w2 - 1) / p.s + 1 != p.ow) return false;
  const int64_t pixels = p.n * p.oh * p.ow;
  return pixels * p.c1 < kLimit && pixels * p.m < kLimit && p.n * p.h2 * p.w2 * p.c2 < kLimit &&
         (pixels + 63) / 64 * (p.m / kBN) < kLimit;
}

Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1,
           const void* x, const void* w2, const void* b2, void* y, bool relu, int variant) {
  if (!applies(p))
    return ctx.error(
        "the conv + shortcut GEMM does not take this problem (input channels multiples of 64, output channels of 128)",
        ErrorCode::kUnsupported);
  if (dtype != DataType::kFloat16 && dtype != DataType::kBFloat16)
    return ctx.error("the conv + shortcut GEMM runs fp16 and bf16 only", ErrorCode::kUnsupported);
  if (variant < 0 || variant >= kVariants || (variant == 2 && !hopper_takes(p)) ||
      (variant == 3 && !hopper_resident_takes(p)))
    return ctx.error("conv + shortcut GEMM: no variant " + std::to_string(variant) + " for this problem",
                     ErrorCode::kInvalidArgument);
  for (const void* q : {h, w1, x, w2, static_cast<const void*>(y)})
    if (!cuda::aligned(q, 16))
      return ctx.error("conv + shortcut GEMM: a tensor is not 16-byte aligned", ErrorCode::kUnsupported);
  const cudaStream_t s = cuda::stream_of(ctx);
  if (variant >= 2) {
    const auto he = static_cast<cudaError_t>(launch_hopper(p, dtype, h, w1, b1, x, w2, b2, y, relu, s, variant == 3));
    if (he != cudaSuccess)
      return ctx.error(std::string("conv + shortcut GEMM (Hopper): ") + cudaGetErrorString(he), ErrorCode::kInternal);
    return Status();
  }
  Geom g{};
  g.pixels = p.n * p.oh * p.ow;
  g.ohw = static_cast<int>(p.oh * p.ow), g.ow = static_cast<int>(p.ow);
  g.h2 = static_cast<int>(p.h2), g.w2 = static_cast<int>(p.w2), g.s = static_cast<int>(p.s);
  g.c1 = static_cast<int>(p.c1), g.c2 = static_cast<int>(p.c2), g.m = static_cast<int>(p.m);
  g.kt1 = g.c1 / kBK, g.kt = (g.c1 + g.c2) / kBK, g.nb = g.m / kBN;
  const cudaError_t e = dtype == DataType::kFloat16
                            ? launch_any<__half>(g, variant, relu, h, w1, b1, x, w2, b2, y, s)
                            : launch_any<__nv_bfloat16>(g, variant, relu, h, w1, b1, x, w2, b2, y, s);
  if (e != cudaSuccess)
    return ctx.error(std::string("conv + shortcut GEMM: ") + cudaGetErrorString(e), ErrorCode::kInternal);
  return Status();
}

Status run_fused_conv(KernelContext& ctx, const std::array<int64_t, 2>& strides, int act_kind, const Tensor* b,
                      const Tensor* z) {
  const auto act = static_cast<Act>(act_kind);
  const std::string what = std::string("FusedConv with ") + conv::kShortcutAttr;
  if (!is_nhwc(ctx.node()) || has_nchw_input(ctx.node()) || z || strides[0] != strides[1] ||
      (act != Act::kRelu && act != Act::kNone) || !ctx.has_input(4) || !ctx.has_input(5))
    return ctx.error(what +
                         " runs on CUDA only channels-last, with X2 and W2, without Z, with ReLU or no activation and "
                         "equal strides (kiln's conv + shortcut GEMM)",
                     ErrorCode::kUnsupported);
  const Tensor& h = ctx.input(0);
  const Tensor& w1 = ctx.input(1);
  const Tensor& x = ctx.input(4);
  const Tensor& w2 = ctx.input(5);
  const Tensor* b2 = ctx.has_input(6) && ctx.input(6).numel() > 0 ? &ctx.input(6) : nullptr;
  const Tensor& y = ctx.output(0);
  // NHWC activations, OHWI weights: the main conv 1x1 with stride 1 and no padding.
  const Dims& hd = h.dims();
  const Dims& xd = x.dims();
  if (hd.size() != 4 || xd.size() != 4 || w1.dims().size() != 4 || w2.dims().size() != 4)
    return ctx.error(what + " needs 4-D X, W, X2 and W2");
  const int64_t m = w1.dims()[0];
  if (w1.dims() != Dims{m, 1, 1, hd[3]} || w2.dims() != Dims{m, 1, 1, xd[3]} || (b && b->numel() != m) ||
      (b2 && b2->numel() != m))
    return ctx.error(what + ": W " + dims_to_string(w1.dims()) + " and W2 " + dims_to_string(w2.dims()) +
                         " must be 1x1 over X's and X2's channels with one output count, biases of that count",
                     ErrorCode::kUnsupported);
  KILN_RETURN_IF_ERROR(conv::check_unit_conv(ctx, hd, w1.dims(), b, what));
  const Dims want{hd[0], hd[1], hd[2], m};
  if (y.dims() != want || xd[0] != hd[0])
    return ctx.error(what + ": Y has dims " + dims_to_string(y.dims()) + " and X2 " + dims_to_string(xd) +
                     " against X " + dims_to_string(hd) + " (Y must be " + dims_to_string(want) + ")");
  Problem p;
  p.n = hd[0], p.oh = hd[1], p.ow = hd[2], p.c1 = hd[3];
  p.h2 = xd[1], p.w2 = xd[2], p.c2 = xd[3], p.s = strides[0], p.m = m;
  if (y.numel() == 0) return Status();
  // The kernel's variants are the candidates; an engine naming none runs variant 0.
  static_assert(kVariants == cudnn_graph::kShortcutVariants, "one count of variants");
  std::vector<int64_t> ids;
  for (int v = 0; v < kVariants; ++v)
    if ((v != 2 || hopper_takes(p)) && (v != 3 || hopper_resident_takes(p)))
      ids.push_back(cudnn_graph::kShortcutTactic + v);
  cuda::report_tactics(ids);
  const int64_t tactic = ctx.attrs().get_int(kTacticAttr, -1);
  int variant = cudnn_graph::is_shortcut_tactic(tactic) ? static_cast<int>(tactic - cudnn_graph::kShortcutTactic) : 0;
  // The engine's pick was timed at the opt shape; a shape of the profile the Hopper kernel does
  // not take (output rows past 128 pixels at a stride) runs variant 0, which takes every problem.
  if ((variant == 2 && !hopper_takes(p)) || (variant == 3 && !hopper_resident_takes(p))) variant = 0;
  return run(ctx, p, h.dtype(), h.data(), w1.data(), b ? b->data() : nullptr, x.data(), w2.data(),
             b2 ? b2->data() : nullptr, ctx.output(0).data(), act == Act::kRelu, variant);
}

}  // namespace kiln::ops::conv_shortcut
