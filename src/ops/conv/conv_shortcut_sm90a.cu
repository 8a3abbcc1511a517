// The conv + shortcut GEMM on Hopper (conv_shortcut_cuda.h, variant 2). TMA loads (128-byte
// swizzle) of 64 channels of h or x for a tile's pixels and 64 channels x 128 output channels of
// w1 or w2 into a 4-stage ring guarded by mbarriers; one producer warp issues them and runs on
// into the next tile while two consumer warp groups (64 pixel rows each) run wgmma m64n64k16
// (A and B K-major) and write their outputs through a staging tile as 16-byte vectors.
// Persistent: one CTA an SM walks the tiles, so the next tile's loads overlap this one's
// epilogue. Stride-1 shortcuts take 128 consecutive pixels a tile (h and x both [pixels,
// channels]); strided ones whole output rows of one image, x's samples a 4-D box (pix_tile).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "backends/cuda/hopper.cuh"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/mma.cuh"
#include "ops/conv/conv_shortcut_cuda.h"

namespace kiln::ops::conv_shortcut {
namespace {

using namespace cuda::hopper;

constexpr int kBM = 128, kBN = 128, kBK = 64, kStages = 4;
constexpr int kConsumers = 256, kThreads = kConsumers + 32;
constexpr int kABytes = kBM * kBK * 2, kBBytes = kBN * kBK * 2, kStageBytes = kABytes + kBBytes;  // 16 + 16 KB
constexpr int kOutBytes = kBM * kBN * 2;  // the output tile, staged for 16-byte stores
constexpr int kMaxM = 2048;               // the biases' sum in shared memory, fp32
constexpr int kSmem = 1024 + kStages * kStageBytes + kOutBytes + kMaxM * 4 + 2 * kStages * 8;  // 1 KB: alignment
// Variant 3 (RES): each CTA keeps one 128-channel column block of [W1 | W2] resident (K <= 384:
// 96 KB) and walks the pixel tiles of that block, so only A streams through the ring. Variant 2
// reads B again for every tile: at ResNet-50 bs256 layer2 (K 384, 112-pixel tiles) 98 KB of B
// and 86 KB of A a tile, ~4.8 TB/s out of L2 at 202 us (ncu, session 24 run 3).
constexpr int kMaxResKb = 6;
constexpr int kSmemRes = 1024 + kMaxResKb * kBBytes + kStages * kABytes + kOutBytes + kMaxM * 4 + (2 * kStages + 1) * 8;

struct HGeom {
  int pixels, c1, m;
  int kb1, kb;  // 64-channel k blocks of h, of h and x
  int nb, tiles;
  // Pixel tiles. Stride 1: 128 consecutive pixels (strided = 0). Stride > 1: `rows` whole output
  // rows of one image, bm = rows * ow <= 128 pixels (x's box is 4-D: channels, ox, oy, image
  // with the stride in its global strides), per_img tiles an image.
  int strided, ow, oh, rows, bm, per_img;
};

// Tile mt's first pixel, its image and first output row (strided), and how many of its bm
// rows are pixels.
struct PixTile {
  int p0, img, oy0, valid;
};
__device__ __forceinline__ PixTile pix_tile(const HGeom& g, int mt) {
  PixTile t;
  if (!g.strided) {
    t.p0 = mt * kBM, t.img = 0, t.oy0 = 0;
    t.valid = min(kBM, g.pixels - t.p0);
  } else {
    t.img = mt / g.per_img;
    t.oy0 = (mt - t.img * g.per_img) * g.rows;
    t.p0 = (t.img * g.oh + t.oy0) * g.ow;
    t.valid = min(g.bm, (g.oh - t.oy0) * g.ow);
  }
  return t;
}

// Tile t: the pixels of pixel tile t / nb (pix_tile) x output channels [128 (t % nb), +128). The k
// blocks of this CTA's tiles form one sequence; block i uses stage i % kStages at phase (i / kStages) % 2.
template <class T, bool RELU, bool RES>
__global__ void __launch_bounds__(kThreads, 1)
    shortcut_hopper_kernel(const __grid_constant__ CUtensorMap map_h, const __grid_constant__ CUtensorMap map_x,
                           const __grid_constant__ CUtensorMap map_w1, const __grid_constant__ CUtensorMap map_w2,
                           const T* __restrict__ b1, const T* __restrict__ b2, T* __restrict__ y, HGeom g) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t base = (cuda::smem_addr(smem_raw) + 1023u) & ~1023u;  // swizzle atoms on 1 KB
  // RES: the resident B blocks first, then the ring of A stages.
  const uint32_t bres = base, ring = RES ? base + kMaxResKb * kBBytes : base;
  constexpr int kStride = RES ? kABytes : kStageBytes;  // a ring stage
  const uint32_t sout = ring + kStages * kStride, sbias_addr = sout + kOutBytes;
  const uint32_t bars = sbias_addr + kMaxM * 4;
  unsigned char* out_tile = smem_raw + (sout - cuda::smem_addr(smem_raw));
  float* sbias = reinterpret_cast<float*>(smem_raw + (sbias_addr - cuda::smem_addr(smem_raw)));
  auto full = [&](int s) { return bars + 8u * s; };
  auto empty = [&](int s) { return bars + 8u * (kStages + s); };
  const uint32_t wbar = bars + 8u * (2 * kStages);  // RES: the resident B
  const int tid = threadIdx.x;
  // RES: CTA b takes column block b % nb and every (grid / nb)-th pixel tile from b / nb; the
  // tiles t of the loops below are then pixel tiles. Otherwise t = pixel tile x nb + column block.
  const int grid = RES ? static_cast<int>(gridDim.x) / g.nb : static_cast<int>(gridDim.x);
  const int first = RES ? static_cast<int>(blockIdx.x) / g.nb : static_cast<int>(blockIdx.x);
  const int res_n0 = RES ? static_cast<int>(blockIdx.x) % g.nb * kBN : 0;
  const int tiles = RES ? g.tiles / g.nb : g.tiles;
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(full(s), 1);
      mbar_init(empty(s), 8);  // one arrival a consumer warp (wgmma.wait_group waits for the warp's own)
    }
    if (RES) mbar_init(wbar, 1);
    mbar_fence_init();
  }
  for (int c = tid; c < g.m; c += kThreads) sbias[c] = (b1 ? cuda::to_f(b1[c]) : 0.f) + (b2 ? cuda::to_f(b2[c]) : 0.f);
  __syncthreads();

  if (tid >= kConsumers) {  // the producer warp: one thread issues every load
    if (tid == kConsumers) {
      if (RES) {
        mbar_expect_tx(wbar, g.kb * kBBytes);
        for (int kb = 0; kb < g.kb; ++kb)
          tma_load_2d(bres + kb * kBBytes, kb < g.kb1 ? &map_w1 : &map_w2, wbar, (kb < g.kb1 ? kb : kb - g.kb1) * kBK,
                      res_n0);
      }
      int i = 0;
      const uint32_t tx = g.bm * kBK * 2 + (RES ? 0 : kBBytes);  // a stage's bytes: the A box (bm rows) and B
      for (int t = first; t < tiles; t += grid) {
        const PixTile pt = pix_tile(g, RES ? t : t / g.nb);
        const int n0 = RES ? res_n0 : (t % g.nb) * kBN;
        for (int kb = 0; kb < g.kb; ++kb, ++i) {
          const int s = i % kStages;
          mbar_wait(empty(s), ((i / kStages) & 1) ^ 1);
          mbar_expect_tx(full(s), tx);
          const uint32_t a = ring + s * kStride, b = a + kABytes;
          if (kb < g.kb1) {
            tma_load_2d(a, &map_h, full(s), kb * kBK, pt.p0);
            if (!RES) tma_load_2d(b, &map_w1, full(s), kb * kBK, n0);
          } else {
            if (g.strided)
              tma_load_4d(a, &map_x, full(s), (kb - g.kb1) * kBK, 0, pt.oy0, pt.img);
            else
              tma_load_2d(a, &map_x, full(s), (kb - g.kb1) * kBK, pt.p0);
            if (!RES) tma_load_2d(b, &map_w2, full(s), (kb - g.kb1) * kBK, n0);
          }
        }
      }
    }
    return;
  }

  // Consumer warp group wg: tile rows 64 wg .. + 63 (A rows 8 KB in), all 128 channels as two n64 halves.
  const int wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
  int i = 0;
  if (RES) mbar_wait(wbar, 0);
  for (int t = first; t < tiles; t += grid) {
    const PixTile pt = pix_tile(g, RES ? t : t / g.nb);
    const int n0 = RES ? res_n0 : (t % g.nb) * kBN;
    float acc[2][32];
#pragma unroll
    for (int hn = 0; hn < 2; ++hn)
#pragma unroll
      for (int e = 0; e < 32; ++e) acc[hn][e] = 0.f;
    for (int kb = 0; kb < g.kb; ++kb, ++i) {
      const int s = i % kStages;
      mbar_wait(full(s), (i / kStages) & 1);
      const uint32_t a = ring + s * kStride + wg * (kABytes / 2),
                     b = RES ? bres + kb * kBBytes : ring + s * kStageBytes + kABytes;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        const uint64_t da = desc(a + kk * 32u, 16u, 1024u);
#pragma unroll
        for (int hn = 0; hn < 2; ++hn) WgmmaN64<T, 0>::ss(acc[hn], da, desc(b + hn * 8192u + kk * 32u, 16u, 1024u), 1);
      }
      wgmma_commit();
      wgmma_wait<0>();
      if (lane == 0) mbar_arrive(empty(s));  // this warp's MMAs reading stage s are done
    }
    // Epilogue: rows 16 warp + lane / 4 (+8) of the group's 64, columns 64 hn + 8 j + 2 (lane % 4),
    // staged in the group's half of the output tile (row r's 16-byte chunk c at c ^ (r % 8) of its
    // 256 bytes), then written as 16-byte vectors; named barrier 1 + wg syncs the group alone.
    unsigned char* st = out_tile + wg * (kOutBytes / 2);
    const int rl = warp * 16 + lane / 4;
#pragma unroll
    for (int hn = 0; hn < 2; ++hn)
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int col = hn * 64 + j * 8 + 2 * (lane % 4), c = col >> 3;
        const float2 bb = *reinterpret_cast<const float2*>(sbias + n0 + col);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int r = rl + 8 * e;
          float v0 = acc[hn][4 * j + 2 * e] + bb.x, v1 = acc[hn][4 * j + 2 * e + 1] + bb.y;
          if (RELU) v0 = fmaxf(v0, 0.f), v1 = fmaxf(v1, 0.f);
          *reinterpret_cast<unsigned*>(st + r * (kBN * 2) + ((c ^ (r & 7)) << 4) + (lane % 4) * 4) =
              cuda::pack2<T>(v0, v1);
        }
      }
    asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");
    const int tg = tid % 128;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const int idx = tg + 128 * q, r = idx >> 4, c = idx & 15;
      if (wg * 64 + r < pt.valid)  // rows past the tile's pixels hold stale or zero-filled inputs
        *reinterpret_cast<uint4*>(y + static_cast<size_t>(pt.p0 + wg * 64 + r) * g.m + n0 + c * 8) =
            *reinterpret_cast<const uint4*>(st + r * (kBN * 2) + ((c ^ (r & 7)) << 4));
    }
    asm volatile("bar.sync %0, 128;" ::"r"(1 + wg) : "memory");  // the staging half is free for the next tile
  }
#else
  __trap();  // built for sm_90a only (CMakeLists.txt)
#endif
}

// A row-major matrix as TMA boxes of 64 columns x box_rows rows, kept in L2 in 256-byte units.
bool encode_2d(CUtensorMap* map, DataType t, const void* data, int64_t rows, int64_t cols, int box_rows) {
  return encode_matrix_sw128(map, t, data, rows, cols, box_rows, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
}

template <class T, bool RELU, bool RES>
cudaError_t launch_typed(const HGeom& g, const CUtensorMap (&maps)[4], const void* b1, const void* b2, void* y,
                         cudaStream_t stream) {
  constexpr auto kernel = shortcut_hopper_kernel<T, RELU, RES>;
  constexpr int smem = RES ? kSmemRes : kSmem;
  const cudaError_t set = cuda::configure_smem<kernel>(smem);
  if (set != cudaSuccess) return set;
  // RES: a whole number of CTAs a column block (each keeps one block's weights).
  const int ctas = std::min(g.tiles, cuda::sm_count());
  const int grid = RES ? std::max(g.nb, ctas / g.nb * g.nb) : ctas;
  kernel<<<grid, kThreads, smem, stream>>>(maps[0], maps[1], maps[2], maps[3], static_cast<const T*>(b1),
                                           static_cast<const T*>(b2), static_cast<T*>(y), g);
  return cudaGetLastError();
}

}  // namespace

bool hopper_takes(const Problem& p) {
  // Stride 1: x is [pixels, c2]. Otherwise a tile is whole output rows (ow <= 128) and x's
  // sampled rows a 4-D box whose strides (s c2, s w2 c2, h2 w2 c2 elements) TMA takes below 2^40 bytes.
  const bool rows_ok = p.s == 1 ? p.h2 == p.oh && p.w2 == p.ow : p.ow <= kBM;
  return applies(p) && rows_ok && p.m <= kMaxM && cuda::hopper::current_device_is_sm90() &&
         cuda::hopper::tensor_map_encoder() != nullptr;
}

bool hopper_resident_takes(const Problem& p) { return hopper_takes(p) && p.c1 + p.c2 <= kMaxResKb * kBK; }

int launch_hopper(const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1, const void* x,
                  const void* w2, const void* b2, void* y, bool relu, void* stream, bool resident) {
  if (!(resident ? hopper_resident_takes(p) : hopper_takes(p)) ||
      (dtype != DataType::kFloat16 && dtype != DataType::kBFloat16))
    return static_cast<int>(cudaErrorInvalidValue);
  HGeom g{};
  g.pixels = static_cast<int>(p.n * p.oh * p.ow);
  g.c1 = static_cast<int>(p.c1), g.m = static_cast<int>(p.m);
  g.kb1 = g.c1 / kBK, g.kb = static_cast<int>((p.c1 + p.c2) / kBK), g.nb = g.m / kBN;
  CUtensorMap maps[4];
  bool ok = true;
  if (p.s == 1) {
    g.bm = kBM;
    g.tiles = (g.pixels + kBM - 1) / kBM * g.nb;
    ok = encode_2d(&maps[0], dtype, h, g.pixels, p.c1, kBM) && encode_2d(&maps[1], dtype, x, g.pixels, p.c2, kBM);
  } else {
    g.strided = 1, g.ow = static_cast<int>(p.ow), g.oh = static_cast<int>(p.oh);
    g.rows = static_cast<int>(std::min<int64_t>(p.oh, kBM / p.ow)), g.bm = g.rows * g.ow;
    g.per_img = (g.oh + g.rows - 1) / g.rows;
    g.tiles = static_cast<int>(p.n) * g.per_img * g.nb;
    const cuuint64_t dims[4] = {static_cast<cuuint64_t>(p.c2), static_cast<cuuint64_t>(p.ow),
                                static_cast<cuuint64_t>(p.oh), static_cast<cuuint64_t>(p.n)};
    const cuuint64_t strides[3] = {static_cast<cuuint64_t>(p.s * p.c2 * 2),
                                   static_cast<cuuint64_t>(p.s * p.w2 * p.c2 * 2),
                                   static_cast<cuuint64_t>(p.h2 * p.w2 * p.c2 * 2)};
    const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(g.ow), static_cast<cuuint32_t>(g.rows), 1};
    ok = encode_2d(&maps[0], dtype, h, g.pixels, p.c1, g.bm) &&
         encode_sw128(&maps[1], dtype, x, 4, dims, strides, box, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
  }
  if (!ok || !encode_2d(&maps[2], dtype, w1, p.m, p.c1, kBN) || !encode_2d(&maps[3], dtype, w2, p.m, p.c2, kBN))
    return static_cast<int>(cudaErrorNotSupported);
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t e;
  auto go = [&](auto t, auto res) {
    using T = decltype(t);
    constexpr bool kRes = decltype(res)::value;
    return relu ? launch_typed<T, true, kRes>(g, maps, b1, b2, y, s)
                : launch_typed<T, false, kRes>(g, maps, b1, b2, y, s);
  };
  if (dtype == DataType::kFloat16)
    e = resident ? go(__half(), std::true_type()) : go(__half(), std::false_type());
  else
    e = resident ? go(__nv_bfloat16(), std::true_type()) : go(__nv_bfloat16(), std::false_type());
  return static_cast<int>(e);
}

}  // namespace kiln::ops::conv_shortcut
