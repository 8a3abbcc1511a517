// kiln's Hopper attention for short sequences (flash_wgmma.h).
//
// CTA = WG warp groups (128 threads each) over 64 * WG query rows of one (batch, head) =
// (blockIdx.z, blockIdx.y), the last batch first with `reverse` (cuda::reverse_grids);
// thread 0 issues every TMA load at the start: the warp groups' Q boxes (64 rows x 64 d,
// 8 KB each) on one mbarrier, then K and V chunk c (64 keys x 64 d each; 32 keys in variant
// 2) on mbarriers of their own, so chunk 0's scores start while later chunks land.
// All of K and V stay resident (Sk <= 256: 32 KB each at most); no stage is reused, so
// every barrier completes once (parity 0).
//
// Layouts (the Hopper GEMM's, gemm_hopper_sm90a.cu, which passed its GPU test):
//   Q (wgmma A, K-major) and K (wgmma B, K-major: S = Q K^T reads K's rows as B's
//   columns): 64 rows of 128 bytes, 128-byte swizzle; descriptor SBO = 1024 B (8 rows),
//   +32 B a k16 step.
//   V (wgmma B, MN-major, "transpose" bit): 64 key rows of 128 bytes; SBO = 1024 B (8
//   keys), LBO = 8 KB (next 64 d, unused at D = 64), +2048 B a k16 step.
// Accumulators (m64n64, fp32): warp w of a group holds rows 16w + lane/4 (+8), columns
// 8j + 2 (lane % 4) (+1) of n8 block j as d[4j .. 4j+3]; the k16 slice kk of P as wgmma's
// register A fragment is {d[8kk..8kk+1], d[8kk+2..+3], d[8kk+4..+5], d[8kk+6..+7]} packed.
//
// Softmax in log2 units: x = s * scale * log2(e) + mask * log2(e); a finite mask below
// -1e30 counts as -1e30 (a dtype's lowest value times log2(e) would overflow fp32 to -inf
// and turn a fully masked row, which softmax spreads evenly, into an empty one).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "backends/cuda/hopper.cuh"
#include "backends/cuda/kernel_util.cuh"
#include "ops/attention/flash_mma_tiles.cuh"  // ex2, kLog2e (and attention_cuda.cuh)
#include "ops/attention/flash_wgmma.h"

namespace kiln::ops::attn::wgmma {
namespace {

using namespace cuda::hopper;

constexpr int kRows = 64, kD = 64;
constexpr int kMaxKeys = 256;               // Sk <= 256
constexpr int kMaxChunks = kMaxKeys / 32;   // barrier slots: chunks of 32 keys at the least
constexpr uint32_t kTile = kRows * kD * 2;  // one Q box: 8 KB
// A K or V chunk of KC keys (64, or 32: variant 2): KC rows of 128 bytes.
constexpr uint32_t chunk_bytes(int kc) { return static_cast<uint32_t>(kc) * kD * 2; }

// 1 KB alignment slack, Q boxes, K and V chunks, barriers, the mask row (MASK == 1, log2 units).
constexpr int smem_bytes(int wg, int chunks, int kc) {
  return 1024 + wg * int(kTile) + 2 * chunks * int(chunk_bytes(kc)) + (1 + 2 * kMaxChunks) * 8 + kMaxKeys * 4;
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

template <class T>
struct Mma;

// ss<N>: d (=, += when acc) A (K-major, desc a) x B (K-major, desc b), m64 nN k16 (N keys:
// 64 a full chunk, hopper.cuh's WgmmaN64; 16 / 32 for a short last one). rs: d += A
// (registers) x B (MN-major, desc b), m64 n64 k16.
#define KILN_WGMMA_ATTN(TYPE, CTYPE)                                                                                  \
  template <int N>                                                                                                    \
  __device__ __forceinline__ static std::enable_if_t<N == 16> ss(float(&d)[8], uint64_t a, uint64_t b, int acc) {     \
    asm volatile(                                                                                                     \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"                                                                  \
        "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPE "." TYPE                                                   \
        " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, 0;\n}\n"                                              \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])              \
        : "l"(a), "l"(b), "r"(acc));                                                                                  \
  }                                                                                                                   \
  template <int N>                                                                                                    \
  __device__ __forceinline__ static std::enable_if_t<N == 32> ss(float(&d)[16], uint64_t a, uint64_t b, int acc) {    \
    asm volatile(                                                                                                     \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                                                  \
        "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE                                                   \
        " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, p, 1, 1, 0, 0;\n}\n"      \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
          "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])                    \
        : "l"(a), "l"(b), "r"(acc));                                                                                  \
  }                                                                                                                   \
  template <int N>                                                                                                    \
  __device__ __forceinline__ static std::enable_if_t<N == 64> ss(float(&d)[32], uint64_t a, uint64_t b, int acc) {    \
    WgmmaN64<CTYPE, 0>::ss(d, a, b, acc);                                                                             \
  }                                                                                                                   \
  __device__ __forceinline__ static void rs(float(&d)[32], const uint32_t(&a)[4], uint64_t b) {                       \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                                          \
                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, "  \
                 "%21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"   \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),    \
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),           \
                   "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),         \
                   "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),         \
                   "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                                              \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));                                               \
  }
template <>
struct Mma<__half> {
  KILN_WGMMA_ATTN("f16", __half)
};
template <>
struct Mma<__nv_bfloat16> {
  KILN_WGMMA_ATTN("bf16", __nv_bfloat16)
};
#undef KILN_WGMMA_ATTN

// A mask value in log2 units (see the file comment).
__device__ __forceinline__ float to_log2(float m) { return m == -INFINITY ? m : fmaxf(m, -1e30f) * kLog2e; }

// The mask at `key` in log2 units (see the file comment); -inf past Sk.
template <class T>
__device__ __forceinline__ float mask_log2(const T* __restrict__ row, long long key, long long sk, long long stride) {
  return key >= sk ? -INFINITY : to_log2(cuda::to_f(__ldg(row + key * stride)));
}

// One chunk of NK keys (k0 ..) for a warp group's 64 rows: S = Q K^T, the online softmax
// (keys past Sk at -inf), O = O * alpha + P V. The chunk's K has landed; V's barrier is vbar.
// TAIL: the chunk reaches past Sk (only then do unmasked scores need the key check). first:
// O is still zero (no rescale).
//
// Without a mask the row maxima are taken over the raw scores (the scale is positive) and
// each probability is one FFMA and one EX2, 2^(s mult - ref), as the mma.sync kernel does; a
// row whose |ref| reaches 2^20 (where the FFMA's unrounded product would differ from the
// rounded one ref came from by more than 1/32) takes x = s mult first, the whole warp with it.
// O is rescaled only where some row's maximum moved (a warp vote). (Session 16 measured this
// against the first version, which took every score to log2 units first, checked keys in every
// chunk and always rescaled O: a tie at BERT bs32, 0.5% faster at bs128, 3.5% at ViT bs256; a
// pipelined form, S of chunk c + 1 enqueued before chunk c's softmax, was 3-80% slower: both
// dropped.)
template <class T, int MASK, int NK, bool TAIL>
__device__ __forceinline__ void attend_chunk(float (&oacc)[32], float (&row_m)[2], float (&row_l)[2], uint32_t qtile,
                                             uint32_t ktile, uint32_t vtile, uint32_t vbar, long long k0,
                                             const FusedAttentionGeometry& g, float mult, const float* mlog,
                                             const T* const (&mrow)[2], int tq, bool first) {
  float s[NK / 2];
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kD / 16; ++kk)
    Mma<T>::template ss<NK>(s, desc(qtile + kk * 32u, 16u, 1024u), desc(ktile + kk * 32u, 16u, 1024u), kk);
  wgmma_commit();
  wgmma_wait<0>();

  // MASK != 0: scores to log2 units with the mask (-inf past Sk from the mask loads).
  // MASK == 0: raw scores, keys past Sk to -inf in the last chunk.
#pragma unroll
  for (int j = 0; j < NK / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const long long key = k0 + 8 * j + 2 * tq + e;
      if constexpr (MASK == 0) {
        if (TAIL && key >= g.Sk) s[4 * j + e] = s[4 * j + 2 + e] = -INFINITY;
      } else {
        float m0, m1;
        if constexpr (MASK == 1) {
          m0 = m1 = mlog[key];  // -inf past Sk
        } else {
          m0 = mask_log2(mrow[0], key, g.Sk, g.mask_stride[3]);
          m1 = mask_log2(mrow[1], key, g.Sk, g.mask_stride[3]);
        }
        s[4 * j + e] = fmaf(s[4 * j + e], mult, m0);
        s[4 * j + 2 + e] = fmaf(s[4 * j + 2 + e], mult, m1);
      }
    }
  }
  // Online softmax over the quad's columns of each row (maxima in log2 units).
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < NK / 8; ++j) {
    mx[0] = fmaxf(mx[0], fmaxf(s[4 * j], s[4 * j + 1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[4 * j + 2], s[4 * j + 3]));
  }
  float ref[2], alpha[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    if constexpr (MASK == 0) mx[r] *= mult;  // (-inf stays -inf: mult > 0)
    const float m_new = fmaxf(row_m[r], mx[r]);
    ref[r] = m_new == -INFINITY ? 0.f : m_new;  // no finite score so far: p = 0
    alpha[r] = ex2(row_m[r] - ref[r]);
    row_m[r] = m_new;
  }
  // p = 2^(x - ref): x = s for MASK != 0 (already in log2 units); MASK == 0 one FFMA on the
  // raw score, unless a row's ref is huge.
  float rm = 1.f;
  if constexpr (MASK == 0) {
    rm = mult;
    if (__any_sync(0xffffffffu, fabsf(ref[0]) >= 1048576.f || fabsf(ref[1]) >= 1048576.f)) {
#pragma unroll
      for (int i = 0; i < NK / 2; ++i) s[i] *= mult;
      rm = 1.f;
    }
  }
  float sum[2] = {0.f, 0.f};
  uint32_t pa[NK / 16][4];
#pragma unroll
  for (int j = 0; j < NK / 8; ++j) {
    const float p0 = ex2(fmaf(s[4 * j], rm, -ref[0])), p1 = ex2(fmaf(s[4 * j + 1], rm, -ref[0]));
    const float p2 = ex2(fmaf(s[4 * j + 2], rm, -ref[1])), p3 = ex2(fmaf(s[4 * j + 3], rm, -ref[1]));
    sum[0] += p0 + p1;
    sum[1] += p2 + p3;
    pa[j / 2][(j & 1) * 2] = cuda::pack2<T>(p0, p1);
    pa[j / 2][(j & 1) * 2 + 1] = cuda::pack2<T>(p2, p3);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) row_l[r] = row_l[r] * alpha[r] + sum[r];
  if (!first && __any_sync(0xffffffffu, alpha[0] != 1.f || alpha[1] != 1.f)) {
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      oacc[4 * j] *= alpha[0], oacc[4 * j + 1] *= alpha[0];
      oacc[4 * j + 2] *= alpha[1], oacc[4 * j + 3] *= alpha[1];
    }
  }

  mbar_wait(vbar, 0);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < NK / 16; ++kk) Mma<T>::rs(oacc, pa[kk], desc(vtile + kk * 2048u, 8192u, 1024u));
  wgmma_commit();
  wgmma_wait<0>();
}

// The barrier block at `bars` (after the tiles): Q's, then K chunk c's, then V chunk c's, then
// (MASK == 1) the mask row as log2 floats.
__device__ __forceinline__ uint32_t bar_k(uint32_t bars, int c) { return bars + 8u * (1 + c); }
__device__ __forceinline__ uint32_t bar_v(uint32_t bars, int c) { return bars + 8u * (1 + kMaxChunks + c); }
__device__ __forceinline__ float* mask_row(unsigned char* smem_raw, uint32_t bars) {
  return reinterpret_cast<float*>(smem_raw + (bars + 8u * (1 + 2 * kMaxChunks) - cuda::smem_addr(smem_raw)));
}

// Thread 0, at a CTA's start: the tensor maps prefetched, the barriers initialized.
__device__ __forceinline__ void set_up(const CUtensorMap* q, const CUtensorMap* k, const CUtensorMap* v, uint32_t bars,
                                       int nch) {
  for (const CUtensorMap* m : {q, k, v})
    asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(m)) : "memory");
  mbar_init(bars, 1);
  for (int c = 0; c < nch; ++c) mbar_init(bar_k(bars, c), 1), mbar_init(bar_v(bars, c), 1);
  mbar_fence_init();
}

// MASK == 1: the keys key0, key0 + step, ... of a (batch, head)'s mask row, raw (N loads issued
// at once, in flight until store_mask), then stored in log2 units (-inf past Sk) for all nch chunks.
template <class T, int N>
__device__ __forceinline__ void load_mask(const T* __restrict__ mask, const FusedAttentionGeometry& g, int b, int h,
                                          int key0, int step, T (&m)[N]) {
  const T* mb = mask + b * g.mask_stride[0] + h * g.mask_stride[1];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int key = key0 + step * k;
    m[k] = key < g.Sk ? __ldg(mb + key * g.mask_stride[3]) : cuda::from_f<T>(0.f);
  }
}
template <class T, int N>
__device__ __forceinline__ void store_mask(float* mlog, const FusedAttentionGeometry& g, int nch, int kc, int key0,
                                           int step, const T (&m)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const int key = key0 + step * k;
    if (key < nch * kc) mlog[key] = key >= g.Sk ? -INFINITY : to_log2(cuda::to_f(m[k]));
  }
}

// Every key chunk of one 64-row block: full chunks of KC keys; a last one of <= 16 or <= 32
// live keys runs as n16 / n32 (ViT's 197 tokens: 5 keys in the fourth chunk of 64). K chunk
// c's barrier is bar_k(bars, c), V's bar_v(bars, c).
template <class T, int MASK, int KC>
__device__ __forceinline__ void attend_all(float (&oacc)[32], float (&row_m)[2], float (&row_l)[2], uint32_t qtile,
                                           uint32_t ks, uint32_t vs, uint32_t bars, int nch,
                                           const FusedAttentionGeometry& g, float mult, const float* mlog,
                                           const T* const (&mrow)[2], int tq) {
  for (int ch = 0; ch < nch; ++ch) {
    const long long k0 = static_cast<long long>(ch) * KC, live = g.Sk - k0;
    const uint32_t kt = ks + ch * chunk_bytes(KC), vt = vs + ch * chunk_bytes(KC), vbar = bar_v(bars, ch);
    const bool first = ch == 0;
    mbar_wait(bar_k(bars, ch), 0);
    if (live >= KC)
      attend_chunk<T, MASK, KC, false>(oacc, row_m, row_l, qtile, kt, vt, vbar, k0, g, mult, mlog, mrow, tq, first);
    else if (KC == 64 && live > 32)
      attend_chunk<T, MASK, 64, true>(oacc, row_m, row_l, qtile, kt, vt, vbar, k0, g, mult, mlog, mrow, tq, first);
    else if (live > 16)
      attend_chunk<T, MASK, 32, true>(oacc, row_m, row_l, qtile, kt, vt, vbar, k0, g, mult, mlog, mrow, tq, first);
    else
      attend_chunk<T, MASK, 16, true>(oacc, row_m, row_l, qtile, kt, vt, vbar, k0, g, mult, mlog, mrow, tq, first);
  }
}

// O / l for the thread's two rows (row0, row0 + 8) below Sq of (b, h).
template <class T>
__device__ __forceinline__ void store_rows(const float (&oacc)[32], const float (&row_l)[2],
                                           const FusedAttentionGeometry& g, T* __restrict__ o, bool o_pairs, int b,
                                           int h, long long row0, int tq) {
  const long long od = g.o.ax[3].inner_s;
  const long long obase = head_base(g.o, b, h);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_l[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const long long qi = row0 + 8 * r;
    if (qi >= g.Sq) continue;
    const bool dead = !(l > 0.f);
    const float inv = dead ? 0.f : 1.f / l;
    const float fill = g.zero_masked_rows ? 0.f : NAN;
    T* orow = o + obase + axo(g.o.ax[2], qi);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = 8 * j + 2 * tq;
      const float v0 = dead ? fill : oacc[4 * j + 2 * r] * inv, v1 = dead ? fill : oacc[4 * j + 2 * r + 1] * inv;
      if (o_pairs) {
        *reinterpret_cast<unsigned*>(orow + c) = cuda::pack2<T>(v0, v1);
      } else {
        orow[c * od] = cuda::from_f<T>(v0);
        orow[(c + 1) * od] = cuda::from_f<T>(v1);
      }
    }
  }
}

#endif

// MASK: 0 none; 1 one row per (batch, head) for every query (mask_stride[2] == 0, BERT's
// [B, 1, 1, Sk]): each thread loads its 16 columns once a chunk for both its rows; 2 a
// row per query.
// KC: keys a K / V chunk (64; 32 for variant 2, whose 80-register build fits 3 CTAs of two
// warp groups an SM where the chunks' shared memory allows, Sk <= 224: ViT-B/16's 197).
// MINB: CTAs an SM the registers allow. 4 / WG (<= 128 registers) everywhere; 5 (<= 96, no
// spills without a per-query mask) for one warp group over at most 128 keys, where shared
// memory fits 5 (44 KB a CTA): BERT bs128's layer, latency-bound at 4 (ncu: 58% of DRAM
// bandwidth, 0.41 issues a cycle a scheduler), went 48.0 -> 45.9 us under ncu (session 19).
template <class T, int WG, int MASK, int MINB, int KC>
__global__ void __launch_bounds__(WG * 128, MINB)
    flash_wgmma_kernel(const __grid_constant__ CUtensorMap map_q, const __grid_constant__ CUtensorMap map_k,
                       const __grid_constant__ CUtensorMap map_v, const __grid_constant__ FusedAttentionGeometry g,
                       const T* __restrict__ mask, T* __restrict__ o, bool o_pairs, int qc_dim, int kc_dim,
                       bool reverse) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t base = (cuda::smem_addr(smem_raw) + 1023u) & ~1023u;  // swizzle atoms on 1 KB
  const int nch = static_cast<int>((g.Sk + KC - 1) / KC);
  const uint32_t qs = base, ks = base + WG * kTile, vs = ks + nch * chunk_bytes(KC), bars = vs + nch * chunk_bytes(KC);
  const int tid = static_cast<int>(threadIdx.x), wg = tid / 128, t = tid % 128;
  const int b = static_cast<int>(reverse ? gridDim.z - 1 - blockIdx.z : blockIdx.z), h = static_cast<int>(blockIdx.y);
  const int q0 = static_cast<int>(blockIdx.x) * kRows * WG;
  // MASK == 1: the (batch, head)'s mask row, its loads issued before the set-up and its
  // barrier, stored in log2 units once the TMA loads are issued.
  constexpr int kMaskPer = kMaxKeys / (WG * 128);
  [[maybe_unused]] T mraw[kMaskPer];
  if constexpr (MASK == 1) load_mask(mask, g, b, h, tid, WG * 128, mraw);
  // Thread 0 sets up the barriers and issues every load before the CTA's barrier, so the loads
  // start without waiting for the other warps to arrive there.
  if (tid == 0) {
    set_up(&map_q, &map_k, &map_v, bars, nch);
    // Coordinates: d, then the (h, s, b) dims in the order the maps were encoded in
    // (launch: by stride); sdim (qc_dim / kc_dim) says which of 1..3 is s, h and b follow in
    // that order (selects, not an indexed array: no local memory on the loads' path).
    auto load = [&](const CUtensorMap* map, uint32_t dst, uint32_t bar, int sdim, int sv) {
      const int c1 = sdim == 1 ? sv : h, c2 = sdim == 1 ? h : sdim == 2 ? sv : b, c3 = sdim == 3 ? sv : b;
      tma_load_4d(dst, map, bar, 0, c1, c2, c3);
    };
    mbar_expect_tx(bars, WG * kTile);
    for (int w = 0; w < WG; ++w) load(&map_q, qs + w * kTile, bars, qc_dim, q0 + w * kRows);
    for (int ch = 0; ch < nch; ++ch) {
      mbar_expect_tx(bar_k(bars, ch), chunk_bytes(KC));
      load(&map_k, ks + ch * chunk_bytes(KC), bar_k(bars, ch), kc_dim, ch * KC);
      mbar_expect_tx(bar_v(bars, ch), chunk_bytes(KC));
      load(&map_v, vs + ch * chunk_bytes(KC), bar_v(bars, ch), kc_dim, ch * KC);
    }
  }
  __syncthreads();  // the barriers are initialized before anyone waits on them
  float* mlog = mask_row(smem_raw, bars);
  if constexpr (MASK == 1) {
    store_mask(mlog, g, nch, KC, tid, WG * 128, mraw);
    __syncthreads();
  }
  if (q0 + wg * kRows >= g.Sq) return;  // a warp group past the last query row (no barrier follows)

  const int warp = t / 32, lane = t % 32, gr = lane / 4, tq = lane % 4;
  const long long row0 = q0 + wg * kRows + warp * 16 + gr;  // this thread's rows: row0, row0 + 8
  const T* mrow[2] = {nullptr, nullptr};
  if constexpr (MASK == 2) {
    const T* mb = mask + b * g.mask_stride[0] + h * g.mask_stride[1];
#pragma unroll
    for (int r = 0; r < 2; ++r) mrow[r] = mb + std::min<long long>(row0 + 8 * r, g.Sq - 1) * g.mask_stride[2];
  }
  const float mult = g.scale * kLog2e;

  float oacc[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) oacc[i] = 0.f;
  float row_m[2] = {-INFINITY, -INFINITY}, row_l[2] = {0.f, 0.f};
  mbar_wait(bars, 0);
  const uint32_t qtile = qs + wg * kTile;

  attend_all<T, MASK, KC>(oacc, row_m, row_l, qtile, ks, vs, bars, nch, g, mult, mlog, mrow, tq);
  store_rows(oacc, row_l, g, o, o_pairs, b, h, row0, tq);
#else
  __trap();  // built for sm_90a only (CMakeLists.txt)
#endif
}

// Operand m's logical [B, H, S, 64] as a 4D tensor map of `rows` x 64 boxes: d innermost, then
// h, s and b ordered by stride (the encoder wants them so); *sdim = where s went (1..3).
bool encode(CUtensorMap* map, DataType t, const void* data, const OperandMap& m, int64_t B, int64_t H, int64_t S,
            int rows, int* sdim) {
  struct Axis {
    int64_t n, stride;
    int which;  // 0 b, 1 h, 2 s
  };
  Axis ax[3] = {{H, m.ax[1].inner_s, 1}, {S, m.ax[2].inner_s, 2}, {B, m.ax[0].inner_s, 0}};
  std::stable_sort(ax, ax + 3, [](const Axis& a, const Axis& b) { return a.stride < b.stride; });
  // (h, b) keep their order around s for the kernel's coordinate helper: h before b.
  int hb[2], r = 0;
  for (int i = 0; i < 3; ++i)
    if (ax[i].which != 2) hb[r++] = ax[i].which;
  if (hb[0] != 1) return false;
  cuuint64_t dims[4] = {kD, 0, 0, 0}, strides[3];
  cuuint32_t box[4] = {kD, 1, 1, 1};
  for (int i = 0; i < 3; ++i) {
    if (ax[i].stride <= 0 || (ax[i].stride * 2) % 16 || ax[i].stride * 2 >= (int64_t{1} << 40)) return false;
    dims[i + 1] = static_cast<cuuint64_t>(ax[i].n);
    strides[i] = static_cast<cuuint64_t>(ax[i].stride * 2);
    if (ax[i].which == 2) *sdim = i + 1, box[i + 1] = static_cast<cuuint32_t>(rows);
  }
  return encode_sw128(map, t, static_cast<const char*>(data) + m.offset * 2, 4, dims, strides, box);
}

// Q, K and V's tensor maps and where s sits in Q's and in K's (V's must match K's).
struct Maps {
  CUtensorMap q, k, v;
  int qd = 0, kd = 0;
};
bool encode_all(const FusedAttentionGeometry& g, const Args& a, int kc, Maps& m) {
  int vd = 0;
  return encode(&m.q, a.dtype, a.q, g.q, g.B, g.H, g.Sq, kRows, &m.qd) &&
         encode(&m.k, a.dtype, a.k, g.k, g.B, g.H, g.Sk, kc, &m.kd) &&
         encode(&m.v, a.dtype, a.v, g.v, g.B, g.H, g.Sk, kc, &vd) && vd == m.kd;
}

template <class T, int WG, int MASK, int MINB, int KC = 64>
cudaError_t launch_kernel(const FusedAttentionGeometry& g, const Args& a, cudaStream_t stream) {
  Maps m;
  if (!encode_all(g, a, KC, m)) return cudaErrorNotSupported;
  const int nch = static_cast<int>((g.Sk + KC - 1) / KC);
  // All the shared memory the SM has: as many CTAs an SM as registers allow.
  constexpr auto kernel = flash_wgmma_kernel<T, WG, MASK, MINB, KC>;
  const cudaError_t set = cuda::configure_smem<kernel>(smem_bytes(WG, kMaxKeys / KC, KC), true);
  if (set != cudaSuccess) return set;
  const dim3 grid(static_cast<unsigned>((g.Sq + kRows * WG - 1) / (kRows * WG)), static_cast<unsigned>(g.H),
                  static_cast<unsigned>(g.B));
  kernel<<<grid, WG * 128, smem_bytes(WG, nch, KC), stream>>>(m.q, m.k, m.v, g, static_cast<const T*>(a.mask),
                                                              static_cast<T*>(a.o), a.o_pairs, m.qd, m.kd,
                                                              cuda::reverse_grids());
  return cudaGetLastError();
}

// Variant 0 / 1 (WG warp groups, 64-key chunks) and 2 (KC = 32: two warp groups, 3 CTAs an SM).
template <class T, int WG, int MASK, int KC>
cudaError_t launch_typed(const FusedAttentionGeometry& g, const Args& a, cudaStream_t stream) {
  if constexpr (KC == 32) {
    static_assert(WG == 2, "variant 2 is built for two warp groups");
    return launch_kernel<T, WG, MASK, 3, KC>(g, a, stream);
  } else {
    if constexpr (WG == 1 && MASK != 2)
      if (g.Sk <= 128) return launch_kernel<T, WG, MASK, 5>(g, a, stream);
    return launch_kernel<T, WG, MASK, 4 / WG>(g, a, stream);
  }
}

template <class T, int WG, int KC>
cudaError_t launch_mask(const FusedAttentionGeometry& g, const Args& a, cudaStream_t stream) {
  if (!a.mask) return launch_typed<T, WG, 0, KC>(g, a, stream);
  return g.mask_stride[2] == 0 ? launch_typed<T, WG, 1, KC>(g, a, stream) : launch_typed<T, WG, 2, KC>(g, a, stream);
}

// Variant 2's keys at most: its chunks' shared memory still fits 3 CTAs an SM (228 KB, 1 KB
// of it reserved a CTA).
constexpr int kChunk32MaxKeys = 224;
static_assert(3 * (smem_bytes(2, kChunk32MaxKeys / 32, 32) + 1024) <= 228 * 1024, "3 CTAs an SM");

bool plain(const OperandMap& m, const void* data, int64_t B, int64_t H, int64_t S) {
  const int64_t n[3] = {B, H, S};
  for (int i = 0; i < 3; ++i)
    if (m.ax[i].inner_n < n[i]) return false;
  return m.ax[3].inner_s == 1 && (reinterpret_cast<uintptr_t>(data) + m.offset * 2) % 16 == 0;
}

// Whether every variant takes g on this device (an sm_90 GPU, the driver's tensor-map
// encoder, the geometry and alignment of flash_wgmma.h).
bool takes(const FusedAttentionGeometry& g, const Args& a) {
  if (a.dtype != DataType::kFloat16 && a.dtype != DataType::kBFloat16) return false;
  if (g.D != kD || g.Dv != kD || g.Sk < 1 || g.Sk > kMaxKeys || g.Sq < 1 || !(g.scale > 0.f)) return false;
  if (g.B > 65535 || g.H > 65535 || g.Sq > (int64_t{1} << 30)) return false;
  if (!plain(g.q, a.q, g.B, g.H, g.Sq) || !plain(g.k, a.k, g.B, g.H, g.Sk) || !plain(g.v, a.v, g.B, g.H, g.Sk))
    return false;
  if (!tensor_map_encoder()) return false;
  return current_device_is_sm90();  // sm_90a code only
}

}  // namespace

bool offers(const FusedAttentionGeometry& g, const Args& a, Variant v) {
  if (v != Variant::kOneWarpGroup && v != Variant::kTwoWarpGroups && v != Variant::kTwoWarpGroupsChunk32) return false;
  if (v == Variant::kTwoWarpGroupsChunk32 && g.Sk > kChunk32MaxKeys) return false;
  return takes(g, a);
}

int launch(const FusedAttentionGeometry& g, const Args& a, Variant v, cudaStream_t stream) {
  // No variant, or one that does not take g (an engine from another GPU): the caller runs its own kernel.
  if (!offers(g, a, v)) return static_cast<int>(cudaErrorNotSupported);
  const bool half = a.dtype == DataType::kFloat16;
  cudaError_t e;
  if (v == Variant::kOneWarpGroup)
    e = half ? launch_mask<__half, 1, 64>(g, a, stream) : launch_mask<__nv_bfloat16, 1, 64>(g, a, stream);
  else if (v == Variant::kTwoWarpGroups)
    e = half ? launch_mask<__half, 2, 64>(g, a, stream) : launch_mask<__nv_bfloat16, 2, 64>(g, a, stream);
  else
    e = half ? launch_mask<__half, 2, 32>(g, a, stream) : launch_mask<__nv_bfloat16, 2, 32>(g, a, stream);
  return static_cast<int>(e);
}

}  // namespace kiln::ops::attn::wgmma
