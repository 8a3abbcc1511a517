// The bottleneck chain on Hopper (conv_chain_cuda.h, tactic kFused). One persistent CTA an SM
// walks tiles of 64 pixels. Shared memory: every weight resident (W1 | W2 as 256-row blocks of
// 64 channels, W3 as four blocks of m2 rows x 64 of y's channels), a 4-stage ring of h / x
// boxes (64 pixels x 64 channels), two y tiles (64 pixels x 256 channels as four 64-channel
// sub-tiles) and one h2 tile, all in TMA's 128-byte swizzle, which is also wgmma's K-major
// layout. A producer warp loads the weights once, then per tile the h / x boxes into the ring
// and z into the free y tile. Two consumer warp groups (256 threads):
//   1. y's GEMM: group g takes channels [128 g, +128) as two wgmma m64n64k16 over K = c1 + c2;
//   2. y = act(acc + b1 + b2 + z) written in place over z in the y tile; one thread stores the
//      tile by TMA (rows past the tensor's end are clipped);
//   3. h2's GEMM from that tile (A = y's four sub-tiles, B = W3): group g takes h2's channels
//      [m2 / 2 g, +m2 / 2) as m64n32k16 or m64n64k16 over K = 256;
//   4. h2 = act3(acc + b3) into the h2 tile, stored by TMA.
// The y tile is released to the producer once both groups' second GEMM and its TMA store have
// read it; with two y tiles the next tile's z arrives while this one computes.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "backends/cuda/hopper.cuh"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/conv/conv_chain_cuda.h"

namespace kiln::ops::conv_chain {
namespace {

using namespace cuda::hopper;

constexpr int kBM = 64, kM = 256, kStages = 4, kMaxM2 = 128, kMaxK = 192;
constexpr int kConsumers = 256, kThreads = kConsumers + 32;
constexpr int kSubBytes = kBM * 128;          // 8 KB: 64 pixels x 64 channels, swizzled
constexpr int kABytes = kSubBytes;            // a ring stage
constexpr int kYBytes = kM / 64 * kSubBytes;  // 32 KB: a y tile
constexpr int kWBlock = kM * 128;             // 32 KB: W1 / W2's 256 rows x 64 channels
constexpr int kWeightBytes = kMaxK * kM * 2;  // 96 KB: (c1 + c2 + m2) x 256 x 2 at most
constexpr int kBiasFloats = kM + kMaxM2;
constexpr int kBars = 2 * kStages + 5;  // full, empty (ring); zfull, yempty (y tiles); weights
constexpr int kSmem =
    1024 + kWeightBytes + kStages * kABytes + 2 * kYBytes + kMaxM2 / 64 * kSubBytes + kBiasFloats * 4 + kBars * 8;

struct Geom {
  int pixels, tiles;
  int kb1, kba;  // 64-channel k blocks of h, of h and x
  int has_z, relu, relu3;
};

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// d (=, +=) A x B at n = N for the second GEMM: m64n32k16 or m64n64k16.
template <class T, int N>
struct Gemm2;
template <class T>
struct Gemm2<T, 32> {
  __device__ __forceinline__ static void ss(float (&d)[16], uint64_t a, uint64_t b) { WgmmaN32<T, 0>::ss(d, a, b, 1); }
};
template <class T>
struct Gemm2<T, 64> {
  __device__ __forceinline__ static void ss(float (&d)[32], uint64_t a, uint64_t b) { WgmmaN64<T, 0>::ss(d, a, b, 1); }
};

// Byte offset of (row r, channel col) in a tile of 64-channel swizzled sub-tiles of 64 rows.
__device__ __forceinline__ int swz(int r, int col) {
  return (col >> 6) * kSubBytes + r * 128 + ((((col & 63) >> 3) ^ (r & 7)) << 4) + (col & 7) * 2;
}
#endif

template <class T, int M2>
__global__ void __launch_bounds__(kThreads, 1)
    chain_hopper_kernel(const __grid_constant__ CUtensorMap map_h, const __grid_constant__ CUtensorMap map_x,
                        const __grid_constant__ CUtensorMap map_z, const __grid_constant__ CUtensorMap map_y,
                        const __grid_constant__ CUtensorMap map_h2, const __grid_constant__ CUtensorMap map_w1,
                        const __grid_constant__ CUtensorMap map_w2, const __grid_constant__ CUtensorMap map_w3,
                        const T* __restrict__ b1, const T* __restrict__ b2, const T* __restrict__ b3, Geom g) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kN3 = M2 / 2;  // h2's channels a warp group
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = cuda::smem_addr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // swizzle atoms on 1 KB
  unsigned char* const gbase = smem_raw + (base - raw);
  const uint32_t sw3 = base + g.kba * kWBlock;  // W3's four blocks of M2 rows after W1 | W2
  const uint32_t ring = base + kWeightBytes;
  const uint32_t ytiles = ring + kStages * kABytes;
  const uint32_t htile = ytiles + 2 * kYBytes;
  const uint32_t bias_addr = htile + kMaxM2 / 64 * kSubBytes;
  const uint32_t bars = bias_addr + kBiasFloats * 4;
  float* sbias = reinterpret_cast<float*>(gbase + (bias_addr - base));
  float* sbias3 = sbias + kM;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (kStages + s); };
  auto zfull = [&](int b) { return bars + 8u * (2 * kStages + b); };
  auto yempty = [&](int b) { return bars + 8u * (2 * kStages + 2 + b); };
  const uint32_t wbar = bars + 8u * (2 * kStages + 4);
  const int tid = threadIdx.x;
  const int grid = static_cast<int>(gridDim.x), first = static_cast<int>(blockIdx.x);
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 8);  // one arrival a consumer warp (wgmma.wait_group waits for the warp's own)
    }
    for (int b = 0; b < 2; ++b) {
      mbar_init(zfull(b), 1);
      mbar_init(yempty(b), 1);
    }
    mbar_init(wbar, 1);
    mbar_fence_init();
  }
  for (int c = tid; c < kM; c += kThreads) sbias[c] = (b1 ? cuda::to_f(b1[c]) : 0.f) + (b2 ? cuda::to_f(b2[c]) : 0.f);
  for (int c = tid; c < M2; c += kThreads) sbias3[c] = b3 ? cuda::to_f(b3[c]) : 0.f;
  __syncthreads();

  if (tid >= kConsumers) {  // the producer warp: one thread issues every load
    if (tid == kConsumers) {
      mbar_expect_tx(wbar, g.kba * kWBlock + 4 * M2 * 128);
      for (int kb = 0; kb < g.kba; ++kb)
        tma_load_2d(base + kb * kWBlock, kb < g.kb1 ? &map_w1 : &map_w2, wbar, (kb < g.kb1 ? kb : kb - g.kb1) * 64, 0);
      for (int q = 0; q < 4; ++q) tma_load_2d(sw3 + q * M2 * 128, &map_w3, wbar, q * 64, 0);
      int i = 0, j = 0;
      for (int t = first; t < g.tiles; t += grid, ++j) {
        const int p0 = t * kBM;
        for (int kb = 0; kb < g.kba; ++kb, ++i) {
          const int s = i % kStages;
          mbar_wait(empty(s), ((i / kStages) & 1) ^ 1);
          mbar_expect_tx(full(s), kABytes);
          if (kb < g.kb1)
            tma_load_2d(ring + s * kABytes, &map_h, full(s), kb * 64, p0);
          else
            tma_load_2d(ring + s * kABytes, &map_x, full(s), (kb - g.kb1) * 64, p0);
        }
        const int yb = j & 1;
        mbar_wait(yempty(yb), ((j >> 1) & 1) ^ 1);
        if (g.has_z) {
          mbar_expect_tx(zfull(yb), kYBytes);
          for (int q = 0; q < 4; ++q) tma_load_2d(ytiles + yb * kYBytes + q * kSubBytes, &map_z, zfull(yb), q * 64, p0);
        } else {
          mbar_arrive(zfull(yb));
        }
      }
    }
    return;
  }

  // Consumer warp group wg; warp w of it holds rows 16 w + lane / 4 (+8) of the tile's 64.
  const int wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
  const int rl = warp * 16 + lane / 4;
  mbar_wait(wbar, 0);
  int i = 0, j = 0;
  for (int t = first; t < g.tiles; t += grid, ++j) {
    const int p0 = t * kBM;
    // 1. y's GEMM: channels [128 wg, +128) as two n64 halves.
    float acc[2][32];
#pragma unroll
    for (int hn = 0; hn < 2; ++hn)
#pragma unroll
      for (int e = 0; e < 32; ++e) acc[hn][e] = 0.f;
    for (int kb = 0; kb < g.kba; ++kb, ++i) {
      const int s = i % kStages;
      mbar_wait(full(s), (i / kStages) & 1);
      const uint32_t a = ring + s * kABytes, b = base + kb * kWBlock + wg * (kWBlock / 2);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const uint64_t da = desc(a + kk * 32u, 16u, 1024u);
#pragma unroll
        for (int hn = 0; hn < 2; ++hn) WgmmaN64<T, 0>::ss(acc[hn], da, desc(b + hn * 8192u + kk * 32u, 16u, 1024u), 1);
      }
      wgmma_commit();
      wgmma_wait<0>();
      if (lane == 0) mbar_arrive(empty(s));  // this warp's MMAs reading stage s are done
    }
    // 2. y = act(acc + b + z) over z in the y tile, then one TMA store of it.
    const int yb = j & 1;
    const uint32_t ytile = ytiles + yb * kYBytes;
    unsigned char* const yg = gbase + (ytile - base);
    mbar_wait(zfull(yb), (j >> 1) & 1);
#pragma unroll
    for (int hn = 0; hn < 2; ++hn)
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
        const int col = wg * 128 + hn * 64 + jj * 8 + 2 * (lane % 4);
        const float2 bb = *reinterpret_cast<const float2*>(sbias + col);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          unsigned* const at = reinterpret_cast<unsigned*>(yg + swz(rl + 8 * e, col));
          float v0 = acc[hn][4 * jj + 2 * e] + bb.x, v1 = acc[hn][4 * jj + 2 * e + 1] + bb.y;
          if (g.has_z) {
            const T* zp = reinterpret_cast<const T*>(at);
            v0 += cuda::to_f(zp[0]), v1 += cuda::to_f(zp[1]);
          }
          if (g.relu) v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
          *at = cuda::pack2<T>(v0, v1);
        }
      }
    fence_async_shared();
    asm volatile("bar.sync 1, 256;" ::: "memory");
    if (tid == 0) {
      for (int q = 0; q < 4; ++q) tma_store_2d(&map_y, ytile + q * kSubBytes, q * 64, p0);
      bulk_commit();
    }
    // 3. h2's GEMM from the y tile: channels [kN3 wg, +kN3), K = 256 as four sub-tiles.
    float acc3[kN3 / 2];
#pragma unroll
    for (int e = 0; e < kN3 / 2; ++e) acc3[e] = 0.f;
    wgmma_fence();
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        Gemm2<T, kN3>::ss(acc3, desc(ytile + q * kSubBytes + kk * 32u, 16u, 1024u),
                          desc(sw3 + q * M2 * 128 + wg * kN3 * 128 + kk * 32u, 16u, 1024u));
    wgmma_commit();
    wgmma_wait<0>();
    if (tid == 0) bulk_wait_read<0>();  // y's store (and the last h2 store) no longer read shared memory
    asm volatile("bar.sync 1, 256;" ::: "memory");
    if (tid == 0) mbar_arrive(yempty(yb));
    // 4. h2 = act3(acc + b3) into the h2 tile, one TMA store.
    unsigned char* const hg = gbase + (htile - base);
#pragma unroll
    for (int jj = 0; jj < kN3 / 8; ++jj) {
      const int col = wg * kN3 + jj * 8 + 2 * (lane % 4);
      const float2 bb = *reinterpret_cast<const float2*>(sbias3 + col);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float v0 = acc3[4 * jj + 2 * e] + bb.x, v1 = acc3[4 * jj + 2 * e + 1] + bb.y;
        if (g.relu3) v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
        *reinterpret_cast<unsigned*>(hg + swz(rl + 8 * e, col)) = cuda::pack2<T>(v0, v1);
      }
    }
    fence_async_shared();
    asm volatile("bar.sync 1, 256;" ::: "memory");
    if (tid == 0) {
      for (int q = 0; q < M2 / 64; ++q) tma_store_2d(&map_h2, htile + q * kSubBytes, q * 64, p0);
      bulk_commit();
    }
  }
  if (tid == 0) bulk_wait<0>();  // the last stores complete before the CTA's shared memory goes
#else
  __trap();  // built for sm_90a only (CMakeLists.txt)
#endif
}

// The streamed variant (m > 256, no shortcut: ResNet-50's layer2, 128 -> 512 -> 128): its
// weights (2 x 128 KB there) do not fit beside the tiles, so a tile of 128 pixels walks y's
// channels in chunks of 64, each chunk's W1 rows, W3 columns and z arriving together in one of
// three stages (two chunks in flight). Warp group g owns pixel rows [64 g, +64) through both
// GEMMs: y's chunk (m64n64 over K = c1) is written over z's in the stage and stored by TMA, then
// accumulated into h2 (K = the chunk's 64 channels); after the last chunk h2 leaves through the
// h tile it came from (each group writes the rows it read). The h tile (128 pixels x c1) is
// double-buffered so the next tile's arrives during this one's chunks.
constexpr int kBM2 = 128, kChunk = 64, kStages2 = 3, kMaxC1Wide = 128, kMaxMWide = 1024;
constexpr int kHBlock2 = kBM2 * 128;               // 16 KB: 128 pixels x 64 channels of h
constexpr int kW1Chunk = kChunk * kMaxC1Wide * 2;  // 16 KB: W1's 64 rows of the chunk x c1 (c1 / 64 blocks of 8 KB)
constexpr int kW3Chunk = kMaxM2 * kChunk * 2;      // 16 KB: W3's m2 rows x the chunk's 64 channels
constexpr int kZChunk = kBM2 * 128;                // 16 KB: z, then y, 128 pixels x 64 channels
constexpr int kStage2 = kW1Chunk + kW3Chunk + kZChunk;
constexpr int kHTile2 = kMaxC1Wide / 64 * kHBlock2;
constexpr int kBars2 = 2 * kStages2 + 4;  // full, empty (stages); hfull, hempty (h tiles)
constexpr int kSmem2 = 1024 + kStages2 * kStage2 + 2 * kHTile2 + (kMaxMWide + kMaxM2) * 4 + kBars2 * 8;
static_assert(kMaxM2 <= kMaxC1Wide, "h2 leaves through an h tile");

struct Geom2 {
  int pixels, tiles;
  int kb1, chunks;  // 64-channel k blocks of h; 64-channel chunks of y
  int has_z, relu, relu3;
};

template <class T, int M2>
__global__ void __launch_bounds__(kThreads, 1)
    chain_streamed_kernel(const __grid_constant__ CUtensorMap map_h, const __grid_constant__ CUtensorMap map_z,
                          const __grid_constant__ CUtensorMap map_y, const __grid_constant__ CUtensorMap map_h2,
                          const __grid_constant__ CUtensorMap map_w1, const __grid_constant__ CUtensorMap map_w3,
                          const T* __restrict__ b1, const T* __restrict__ b3, int m, Geom2 g) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw = cuda::smem_addr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  unsigned char* const gbase = smem_raw + (base - raw);
  const uint32_t htiles = base + kStages2 * kStage2;
  const uint32_t bias_addr = htiles + 2 * kHTile2;
  const uint32_t bars = bias_addr + (kMaxMWide + kMaxM2) * 4;
  float* sbias = reinterpret_cast<float*>(gbase + (bias_addr - base));
  float* sbias3 = sbias + kMaxMWide;
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (kStages2 + s); };
  auto hfull = [&](int b) { return bars + 8u * (2 * kStages2 + b); };
  auto hempty = [&](int b) { return bars + 8u * (2 * kStages2 + 2 + b); };
  const int tid = threadIdx.x;
  const int grid = static_cast<int>(gridDim.x), first = static_cast<int>(blockIdx.x);
  if (tid == 0) {
    for (int s = 0; s < kStages2; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 2);  // each warp group's leader, after a group barrier
    }
    for (int b = 0; b < 2; ++b) {
      mbar_init(hfull(b), 1);
      mbar_init(hempty(b), 2);
    }
    mbar_fence_init();
  }
  for (int c = tid; c < m; c += kThreads) sbias[c] = b1 ? cuda::to_f(b1[c]) : 0.f;
  for (int c = tid; c < M2; c += kThreads) sbias3[c] = b3 ? cuda::to_f(b3[c]) : 0.f;
  __syncthreads();

  if (tid >= kConsumers) {  // the producer warp
    if (tid == kConsumers) {
      const uint32_t tx = g.kb1 * 8192 + M2 * 128 + (g.has_z ? kZChunk : 0);
      int i = 0, j = 0;
      for (int t = first; t < g.tiles; t += grid, ++j) {
        const int p0 = t * kBM2, hb = j & 1;
        mbar_wait(hempty(hb), ((j >> 1) & 1) ^ 1);
        mbar_expect_tx(hfull(hb), g.kb1 * kHBlock2);
        for (int kb = 0; kb < g.kb1; ++kb)
          tma_load_2d(htiles + hb * kHTile2 + kb * kHBlock2, &map_h, hfull(hb), kb * 64, p0);
        for (int c = 0; c < g.chunks; ++c, ++i) {
          const int s = i % kStages2;
          const uint32_t st = base + s * kStage2;
          mbar_wait(empty(s), ((i / kStages2) & 1) ^ 1);
          mbar_expect_tx(full(s), tx);
          for (int kb = 0; kb < g.kb1; ++kb) tma_load_2d(st + kb * 8192, &map_w1, full(s), kb * 64, c * kChunk);
          tma_load_2d(st + kW1Chunk, &map_w3, full(s), c * kChunk, 0);
          if (g.has_z) tma_load_2d(st + kW1Chunk + kW3Chunk, &map_z, full(s), c * kChunk, p0);
        }
      }
    }
    return;
  }

  const int wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
  const int rl = warp * 16 + lane / 4;  // + 8 e: rows of the group's 64
  const bool leader = tid % 128 == 0;
  const int bar_id = 1 + wg;
  float acc1[32], acc2[M2 / 64][32];  // each tile's first products overwrite them (scale-d 0)
  int i = 0, j = 0;
  for (int t = first; t < g.tiles; t += grid, ++j) {
    const int p0 = t * kBM2, hb = j & 1;
    const uint32_t ht = htiles + hb * kHTile2 + wg * 8192;  // this group's 64 rows of each k block
    mbar_wait(hfull(hb), (j >> 1) & 1);
    for (int c = 0; c < g.chunks; ++c, ++i) {
      const int s = i % kStages2;
      const uint32_t st = base + s * kStage2, zs = st + kW1Chunk + kW3Chunk + wg * 8192;
      mbar_wait(full(s), (i / kStages2) & 1);
      wgmma_fence();
      for (int kb = 0; kb < g.kb1; ++kb)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)  // the first product overwrites acc1 (scale-d 0)
          WgmmaN64<T, 0>::ss(acc1, desc(ht + kb * kHBlock2 + kk * 32u, 16u, 1024u),
                             desc(st + kb * 8192 + kk * 32u, 16u, 1024u), (kb | kk) != 0);
      wgmma_commit();
      wgmma_wait<0>();
      // y's chunk: act(acc + b1 + z) over z (this group's rows of the stage), then its TMA store.
      unsigned char* const zg = gbase + (zs - base);
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
        const int col = jj * 8 + 2 * (lane % 4);
        const float2 bb = *reinterpret_cast<const float2*>(sbias + c * kChunk + col);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          unsigned* const at = reinterpret_cast<unsigned*>(zg + swz(rl + 8 * e, col));
          float v0 = acc1[4 * jj + 2 * e] + bb.x, v1 = acc1[4 * jj + 2 * e + 1] + bb.y;
          if (g.has_z) {
            const T* zp = reinterpret_cast<const T*>(at);
            v0 += cuda::to_f(zp[0]), v1 += cuda::to_f(zp[1]);
          }
          if (g.relu) v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
          *at = cuda::pack2<T>(v0, v1);
        }
      }
      fence_async_shared();
      asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
      if (leader) {
        tma_store_2d(&map_y, zs, c * kChunk, p0 + wg * 64);
        bulk_commit();
      }
      // h2 += y's chunk x W3's chunk columns.
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int hn = 0; hn < M2 / 64; ++hn)
          WgmmaN64<T, 0>::ss(acc2[hn], desc(zs + kk * 32u, 16u, 1024u),
                             desc(st + kW1Chunk + hn * 8192 + kk * 32u, 16u, 1024u), (c | kk) != 0);
      wgmma_commit();
      wgmma_wait<0>();
      if (leader) bulk_wait_read<0>();  // y's store (and the last h2 store) no longer read shared memory
      asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
      if (leader) {
        mbar_arrive(empty(s));
        if (c == 0 && j > 0) mbar_arrive(hempty(hb ^ 1));  // the last tile's h tile, its h2 store read
      }
    }
    // h2 = act3(acc2 + b3) into this group's rows of the h tile (its last GEMM read them), then
    // their TMA store; the tile returns to the producer once that store has read it (next tile).
    const uint32_t h2tile = htiles + hb * kHTile2;
    unsigned char* const hg = gbase + (h2tile - base);
#pragma unroll
    for (int hn = 0; hn < M2 / 64; ++hn)
#pragma unroll
      for (int jj = 0; jj < 8; ++jj) {
        const int col = hn * 64 + jj * 8 + 2 * (lane % 4);
        const float2 bb = *reinterpret_cast<const float2*>(sbias3 + col);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float v0 = acc2[hn][4 * jj + 2 * e] + bb.x, v1 = acc2[hn][4 * jj + 2 * e + 1] + bb.y;
          if (g.relu3) v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
          *reinterpret_cast<unsigned*>(hg + hn * kHBlock2 + wg * 8192 + swz(rl + 8 * e, jj * 8 + 2 * (lane % 4))) =
              cuda::pack2<T>(v0, v1);
        }
      }
    fence_async_shared();
    asm volatile("bar.sync %0, 128;" ::"r"(bar_id) : "memory");
    if (leader) {
      for (int hn = 0; hn < M2 / 64; ++hn)
        tma_store_2d(&map_h2, h2tile + hn * kHBlock2 + wg * 8192, hn * 64, p0 + wg * 64);
      bulk_commit();
    }
  }
  if (leader) bulk_wait<0>();
#else
  __trap();  // built for sm_90a only (CMakeLists.txt)
#endif
}

// A row-major matrix as TMA boxes of 64 columns x box_rows rows, kept in L2 in 256-byte units.
bool encode_2d(CUtensorMap* map, DataType t, const void* data, int64_t rows, int64_t cols, int box_rows) {
  return encode_matrix_sw128(map, t, data, rows, cols, box_rows, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
}

template <class T, int M2>
cudaError_t launch_typed(const Geom& g, const CUtensorMap (&maps)[8], const void* b1, const void* b2, const void* b3,
                         cudaStream_t stream) {
  constexpr auto kernel = chain_hopper_kernel<T, M2>;
  const cudaError_t set = cuda::configure_smem<kernel>(kSmem);
  if (set != cudaSuccess) return set;
  kernel<<<std::min(g.tiles, cuda::sm_count()), kThreads, kSmem, stream>>>(
      maps[0], maps[1], maps[2], maps[3], maps[4], maps[5], maps[6], maps[7], static_cast<const T*>(b1),
      static_cast<const T*>(b2), static_cast<const T*>(b3), g);
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_m2(const Geom& g, int64_t m2, const CUtensorMap (&maps)[8], const void* b1, const void* b2,
                      const void* b3, cudaStream_t s) {
  return m2 == 64 ? launch_typed<T, 64>(g, maps, b1, b2, b3, s) : launch_typed<T, 128>(g, maps, b1, b2, b3, s);
}

template <class T, int M2>
cudaError_t launch_streamed_typed(const Geom2& g, int m, const CUtensorMap (&maps)[6], const void* b1, const void* b3,
                                  cudaStream_t stream) {
  constexpr auto kernel = chain_streamed_kernel<T, M2>;
  const cudaError_t set = cuda::configure_smem<kernel>(kSmem2);
  if (set != cudaSuccess) return set;
  kernel<<<std::min(g.tiles, cuda::sm_count()), kThreads, kSmem2, stream>>>(
      maps[0], maps[1], maps[2], maps[3], maps[4], maps[5], static_cast<const T*>(b1), static_cast<const T*>(b3), m, g);
  return cudaGetLastError();
}

cudaError_t launch_streamed(const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1,
                            const void* z, void* y, const void* w3, const void* b3, void* h2, bool relu, bool relu3,
                            cudaStream_t s) {
  Geom2 g{};
  g.pixels = static_cast<int>(p.pixels);
  g.tiles = static_cast<int>((p.pixels + kBM2 - 1) / kBM2);
  g.kb1 = static_cast<int>(p.c1 / 64), g.chunks = static_cast<int>(p.m / kChunk);
  g.has_z = p.has_z, g.relu = relu, g.relu3 = relu3;
  // maps: h, z (boxes of 128 pixels), y, h2 (64: a warp group's rows), w1 (64 rows), w3 (m2 rows).
  CUtensorMap maps[6];
  const bool ok = encode_2d(&maps[0], dtype, h, p.pixels, p.c1, kBM2) &&
                  (p.has_z ? encode_2d(&maps[1], dtype, z, p.pixels, p.m, kBM2) : (maps[1] = maps[0], true)) &&
                  encode_2d(&maps[2], dtype, y, p.pixels, p.m, 64) &&
                  encode_2d(&maps[3], dtype, h2, p.pixels, p.m2, 64) &&
                  encode_2d(&maps[4], dtype, w1, p.m, p.c1, kChunk) && encode_2d(&maps[5], dtype, w3, p.m2, p.m, p.m2);
  if (!ok) return cudaErrorNotSupported;
  const int m = static_cast<int>(p.m);
  if (dtype == DataType::kFloat16)
    return p.m2 == 64 ? launch_streamed_typed<__half, 64>(g, m, maps, b1, b3, s)
                      : launch_streamed_typed<__half, 128>(g, m, maps, b1, b3, s);
  return p.m2 == 64 ? launch_streamed_typed<__nv_bfloat16, 64>(g, m, maps, b1, b3, s)
                    : launch_streamed_typed<__nv_bfloat16, 128>(g, m, maps, b1, b3, s);
}

}  // namespace

bool hopper_takes(const Problem& p) {
  return applies(p) && cuda::hopper::current_device_is_sm90() && cuda::hopper::tensor_map_encoder() != nullptr;
}

int launch_hopper(const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1, const void* x,
                  const void* w2, const void* b2, const void* z, void* y, const void* w3, const void* b3, void* h2,
                  bool relu, bool relu3, void* stream) {
  if (!hopper_takes(p) || (dtype != DataType::kFloat16 && dtype != DataType::kBFloat16) || (p.c2 > 0 && !x) ||
      (p.c2 > 0 && !w2) || (p.has_z && !z))
    return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  if (p.m != kM || p.c1 + p.c2 + p.m2 > kMaxK)
    return static_cast<int>(launch_streamed(p, dtype, h, w1, b1, z, y, w3, b3, h2, relu, relu3, s));
  Geom g{};
  g.pixels = static_cast<int>(p.pixels);
  g.tiles = static_cast<int>((p.pixels + kBM - 1) / kBM);
  g.kb1 = static_cast<int>(p.c1 / 64), g.kba = static_cast<int>((p.c1 + p.c2) / 64);
  g.has_z = p.has_z, g.relu = relu, g.relu3 = relu3;
  // maps: h, x, z, y, h2, w1, w2, w3 (x, z and w2 stand in as h's / w1's where absent: never loaded).
  CUtensorMap maps[8];
  bool ok = encode_2d(&maps[0], dtype, h, p.pixels, p.c1, kBM) && encode_2d(&maps[3], dtype, y, p.pixels, kM, kBM) &&
            encode_2d(&maps[4], dtype, h2, p.pixels, p.m2, kBM) && encode_2d(&maps[5], dtype, w1, kM, p.c1, kM) &&
            encode_2d(&maps[7], dtype, w3, p.m2, kM, p.m2);
  ok = ok &&
       (p.c2 > 0 ? encode_2d(&maps[1], dtype, x, p.pixels, p.c2, kBM) && encode_2d(&maps[6], dtype, w2, kM, p.c2, kM)
                 : (maps[1] = maps[0], maps[6] = maps[5], true));
  ok = ok && (p.has_z ? encode_2d(&maps[2], dtype, z, p.pixels, kM, kBM) : (maps[2] = maps[0], true));
  if (!ok) return static_cast<int>(cudaErrorNotSupported);
  const cudaError_t e = dtype == DataType::kFloat16 ? launch_m2<__half>(g, p.m2, maps, b1, b2, b3, s)
                                                    : launch_m2<__nv_bfloat16>(g, p.m2, maps, b1, b2, b3, s);
  return static_cast<int>(e);
}

}  // namespace kiln::ops::conv_chain
