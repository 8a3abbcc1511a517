// Register-resident flash attention for FusedAttention (FlashAttention-2's
// schedule): fp16/bf16, head size D == Dv in {64, 128}, rows 16-byte aligned;
// fp32 with D == Dv == 64 where TF32 is allowed (below).
//
// One block = NW warps = 16*NW query rows of one (batch, head). Q tiles and
// double-buffered 64-key K/V tiles arrive in shared memory by cp.async; each
// warp keeps its 16 rows' Q fragments, scores S, probabilities P and output
// accumulator O in registers (mma.sync m16n8k16, fp32 accumulation):
//   S = Q K^T  (ldmatrix of K rows gives the col-major B fragments directly)
//   online softmax on S's accumulator layout (row max/sum over the 4-lane quad)
//   O = O * alpha + P V  (P's accumulator layout is the A fragment; V by ldmatrix.trans)
// Shared rows are padded by 16 bytes, so ldmatrix's 8 row addresses hit 8
// different bank groups.
//
// Small grids (BERT at batch 1: 12 heads x 8 row groups = 96 warps on 132 SMs,
// each walking all keys alone: 21.7 us under ncu, IPC 0.18) split the keys too:
// a block of KW warps shares its 16 query rows, warp w takes key tiles w, w + KW,
// ... of BN = 32 keys with its own shared buffers, and the warps merge their
// (row max, row sum, O) through shared memory at the end, as flash-decoding does
// across blocks. KILN_ATTENTION_KEY_SPLIT=0 turns it off.
//
// fp32 operands (FP32 engines, where TF32 is allowed) run on bf16 tensor cores as
// "3xBF16": each value x is split into hi = bf16(x) and lo = bf16(x - hi), both
// tiles kept in shared memory, and a product a*b becomes ah*bh + ah*bl + al*bh
// (the al*bl term is below 2^-16 relative): ~16 mantissa bits, more than TF32's 10,
// at three MMAs per step. K/V tiles arrive raw (fp32) by cp.async into a staging
// buffer while the previous tile computes, and are split shared-to-shared before
// their own step (one split buffer, one raw buffer: the same overlap as the
// double-buffered 2-byte path). Q is scaled by the softmax scale and split once, on the
// way in; the score accumulators start from the additive mask.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/attention/attention_cuda.cuh"
#include "ops/attention/flash_mma_tiles.cuh"
#include "ops/attention/flash_wgmma.h"

namespace kiln::ops::attn {

namespace {

using cuda::stream_of;
using cuda::to_f;

constexpr int kBN = 64;  // keys per tile

// Stages of the 16-bit (K, V) tile pipeline: two. (Three, 64 KB a block at D = 64,
// measured no faster on ViT-B/16 bs256, 347 -> 344 us a layer, and leave room for 3
// blocks an SM where two stages leave room for 4.)
template <bool SPLIT>
constexpr int kv_stages() {
  return SPLIT ? 1 : 2;
}

// Mask tiles in shared memory (16-bit; the kernel's MT): none, one row of BN keys, or
// 16 * NW rows of BN keys padded by 8 (so a quad's 8 rows hit 8 bank groups); ST of each.
template <int NW, int BN, int MT, int ST>
constexpr size_t mask_tile_bytes() {
  return MT == 0 ? 0 : MT == 1 ? size_t(ST * BN) * 2 : size_t(ST * 16 * NW) * (BN + 8) * 2;
}

// One key group's buffers, in bytes: Q + 2 x (K, V) tiles of 2-byte elements; for
// split fp32, Q hi + lo, one (K, V) tile as hi + lo and the raw fp32 K and V tiles.
// ALIAS: the raw K tile reuses Q's space once Q is in registers (less shared memory,
// but Q and the first tile load one after the other); otherwise the raw Q rows pass
// through the (K, V) tile's space and load together with the first raw tile.
template <int D, int NW, int BN, bool SPLIT, bool ALIAS, int MT = 0, int ST = 2>
constexpr size_t group_bytes() {
  if constexpr (SPLIT) {
    constexpr size_t q = size_t(2 * 16 * NW) * (D + 8) * 2, raw = size_t(BN) * D * 4;
    constexpr size_t kv = size_t(4 * BN) * (D + 8) * 2;
    static_assert(ALIAS || size_t(16 * NW) * D * 4 <= kv, "the raw Q rows pass through the (K, V) tile space");
    return ALIAS ? (q > raw ? q : raw) + kv + raw : q + kv + 2 * raw;
  }
  return size_t(16 * NW + 2 * ST * BN) * (D + 8) * 2 + mask_tile_bytes<NW, BN, MT, ST>();
}
template <int D, int NW, int KW, int BN, bool SPLIT, bool ALIAS, int MT = 0, int ST = 2>
constexpr size_t smem_bytes() {
  constexpr size_t buffers = KW * group_bytes<D, NW, BN, SPLIT, ALIAS, MT, ST>();
  constexpr size_t merge = KW == 1 ? 0 : size_t(KW) * 16 * (D + 2) * sizeof(float);  // O, max, sum per warp
  return buffers > merge ? buffers : merge;
}

// KW single-warp key groups of one block hold partial results for the same 16
// rows: each its row maxima m, this thread's part of the row sums l and O, all
// relative to its own max. Through shared memory (the tile buffers, no longer read
// once every cp.async has landed): O = sum_w e^(m_w - M) O_w / sum_w e^(m_w - M) l_w.
// Each of the KW * 32 threads then finishes D / (2 KW) adjacent columns of one row: the
// row's weights and 1 / l once, the partial rows as 16-byte shared loads, the output as
// 16-byte stores where d is contiguous. (ncu, BERT-base FP16 bs1, KW = 4: an element a
// thread, with the weights, an IEEE division and a 2-byte store each time, was 688 of a
// warp's 1,653 instructions and 28% of the stall samples.)
template <class T, int D, int KW, bool FLAT>
__device__ __forceinline__ void merge_key_groups(const FusedAttentionGeometry& g, const float (&row_m)[2],
                                                 const float (&row_l)[2], const float (&acc)[D / 8][4], long long q0,
                                                 long long obase, T* __restrict__ o, unsigned char* smem) {
  constexpr int TPR = 2 * KW, CPT = D / TPR;  // threads a row, columns a thread
  static_assert(D % TPR == 0 && CPT % 8 == 0, "whole 16-byte chunks of 2-byte outputs, 32 bytes of fp32 ones");
  const int kw = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int gr = lane / 4, tq = lane % 4;
  cp_wait<0>();
  __syncthreads();
  float* mo = reinterpret_cast<float*>(smem);  // [KW][16][D] partial O
  float* mm = mo + KW * 16 * D;                // [KW][16] maxima
  float* ml = mm + KW * 16;                    // [KW][16] sums
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = row_l[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = gr + 8 * r;
    if (tq == 0) {
      mm[kw * 16 + row] = row_m[r];
      ml[kw * 16 + row] = l;
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i)
      *reinterpret_cast<float2*>(mo + (kw * 16 + row) * D + i * 8 + 2 * tq) =
          make_float2(acc[i][2 * r], acc[i][2 * r + 1]);
  }
  __syncthreads();
  const int row = static_cast<int>(threadIdx.x) / TPR, c0 = (static_cast<int>(threadIdx.x) % TPR) * CPT;
  const long long qi = q0 + row;
  if (qi >= g.Sq) return;
  float m = -INFINITY;
#pragma unroll
  for (int w = 0; w < KW; ++w) m = fmaxf(m, mm[w * 16 + row]);
  const float ref = m == -INFINITY ? 0.f : m;
  float f[KW], l = 0.f;
#pragma unroll
  for (int w = 0; w < KW; ++w) {
    f[w] = softmax_exp<kSplit<T>>(mm[w * 16 + row] - ref);  // maxima in the kernel's units
    l += f[w] * ml[w * 16 + row];
  }
  const bool dead = !(l > 0.f);
  const float inv = dead ? 0.f : __frcp_rn(l), fill = g.zero_masked_rows ? 0.f : NAN;
  float y[CPT];
#pragma unroll
  for (int c = 0; c < CPT; ++c) y[c] = 0.f;
#pragma unroll
  for (int w = 0; w < KW; ++w) {
    const float4* src = reinterpret_cast<const float4*>(mo + (w * 16 + row) * D + c0);
#pragma unroll
    for (int j = 0; j < CPT / 4; ++j) {
      const float4 v = src[j];
      y[4 * j] += f[w] * v.x, y[4 * j + 1] += f[w] * v.y, y[4 * j + 2] += f[w] * v.z, y[4 * j + 3] += f[w] * v.w;
    }
  }
#pragma unroll
  for (int c = 0; c < CPT; ++c) y[c] = dead ? fill : y[c] * inv;
  const long long od = g.o.ax[3].inner_s;
  T* p = o + obase + (FLAT ? qi * g.o.ax[2].inner_s : axo(g.o.ax[2], qi)) + c0 * od;
  if (od == 1 && (reinterpret_cast<uintptr_t>(p) & 15u) == 0) {
#pragma unroll
    for (int j = 0; j < CPT * int(sizeof(T)) / 16; ++j) {
      uint4 u;
      if constexpr (sizeof(T) == 2) {
        u = make_uint4(pack2<T>(y[8 * j], y[8 * j + 1]), pack2<T>(y[8 * j + 2], y[8 * j + 3]),
                       pack2<T>(y[8 * j + 4], y[8 * j + 5]), pack2<T>(y[8 * j + 6], y[8 * j + 7]));
      } else {
        u = make_uint4(__float_as_uint(y[4 * j]), __float_as_uint(y[4 * j + 1]), __float_as_uint(y[4 * j + 2]),
                       __float_as_uint(y[4 * j + 3]));
      }
      reinterpret_cast<uint4*>(p)[j] = u;
    }
  } else {
#pragma unroll
    for (int c = 0; c < CPT; ++c) p[c * od] = cuda::from_f<T>(y[c]);
  }
}

// KW == 1: NW warps own 16 query rows each and walk every key tile together.
// KW > 1 (NW == 1): KW warps share 16 rows, split the key tiles, merge at the end.
// MINB: blocks per SM the registers must allow (split fp32 tactics; 1 = no bound).
// ALIAS: the split fp32 shared-memory layout (group_bytes).
// MT (16-bit): the mask's tile arrives in shared memory by cp.async with the (K, V)
// tile (each key group its own), so no score waits on a global load (ncu, BERT-base FP16 bs128: the mask's
// conversion was 31% of the kernel's stall samples when it read global memory in the
// loop): 1 = one row per (batch, head) broadcast over the queries ([B, 1, 1, Sk]),
// 2 = a row per query ([B, 1, Sq, Sk], what transformers' eager mask now is). Keys
// contiguous, Sk % 8 == 0, rows 16-byte aligned (mask_tiles on the host); else MT = 0
// reads global memory.
template <class T, int D, int NW, int KW, int BN, int MINB, bool ALIAS, int MT, bool LIN>
__global__ void __launch_bounds__(NW* KW * 32, MINB > 1 ? MINB : 0)
    flash_mma_kernel(FusedAttentionGeometry g, bool o_pairs, const T* __restrict__ q, const T* __restrict__ k,
                     const T* __restrict__ v, const T* __restrict__ mask, T* __restrict__ o) {
  static_assert(KW == 1 || NW == 1, "key groups are single warps");
  using C = typename ComputeOf<T>::type;
  constexpr bool SPLIT = kSplit<T>;
  static_assert(MT == 0 || !SPLIT, "mask tiles: 16-bit operands");
  static_assert(!LIN || !SPLIT, "row streams: 16-bit operands");
  static_assert(MT == 0 || LIN, "mask tiles come with row streams");
  constexpr int MLD = MT == 2 ? BN + 8 : BN;  // mask tile row pitch
  constexpr int BM = 16 * NW, LD = D + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  // Key group; 0 in a constant the compiler sees when KW == 1 (a computed 0 cost
  // the 64-row kernel ~40 registers in address arithmetic).
  const int kw = KW == 1 ? 0 : static_cast<int>(threadIdx.x) / (NW * 32);
  constexpr int ST = kv_stages<SPLIT>();
  constexpr int KB = SPLIT ? 1 : ST;  // (K, V) tile buffers of 2-byte elements
  C* Qs = reinterpret_cast<C*>(smem + kw * group_bytes<D, NW, BN, SPLIT, ALIAS, MT, ST>());
  // Split fp32: Q hi, Q lo (ALIAS: or the raw K tile, whichever is larger), then K, V,
  // K lo, V lo, (raw K,) raw V. 16-bit: Q, ST K, ST V (, ST mask tiles).
  constexpr int QSPAN = !SPLIT  ? BM * LD
                        : ALIAS ? (2 * BM * LD * 2 > BN * D * 4 ? 2 * BM * LD : BN * D * 2)
                                : 2 * BM * LD;
  C* Ks = Qs + QSPAN;         // KB buffers of BN x LD
  C* Vs = Ks + KB * BN * LD;  // KB buffers of BN x LD
  C* Ql = Qs + BM * LD;
  C* Kl = Vs + KB * BN * LD;
  C* Vl = Kl + BN * LD;
  T* Ms = reinterpret_cast<T*>(Vs + KB * BN * LD);  // MT: 2 mask tiles
  // ALIAS: the raw K tile takes Q's space, free once Q is in registers.
  float* Kr = ALIAS ? reinterpret_cast<float*>(Qs) : reinterpret_cast<float*>(Vl + BN * LD);
  float* Vr = ALIAS ? reinterpret_cast<float*>(Vl + BN * LD) : Kr + BN * D;
  const int tid = KW == 1 ? static_cast<int>(threadIdx.x) : static_cast<int>(threadIdx.x) % (NW * 32);
  const int warp = tid / 32, lane = tid % 32;
  const int gr = lane / 4, tq = lane % 4;  // fragment row group, thread in quad
  // Key groups with row streams (the small grids of batch 1) take operands whose batch
  // and head axes are one stride each too (flat_axes on the host): their origins are then
  // a few independent multiply-adds, where block_origin's eight axo calls each wait on a
  // parameter load before their branch (ncu, BERT-base FP16 bs1: ~450 of a warp's
  // instructions in the prologue, waiting on the constant cache).
  constexpr bool FLAT = LIN && KW > 1;
  const BlockOrigin at = block_origin<FLAT>(g, BM);
  const long long b = at.b, h = at.h, q0 = at.q0, qbase = at.q, kbase = at.k, vbase = at.v, obase = at.o;
  using Stream = RowStream<T, D, NW * 32>;
  const Stream kst(LIN ? k + kbase : k, LIN ? g.k.ax[2].inner_s : 0, tid);
  const Stream vst(LIN ? v + vbase : v, LIN ? g.v.ax[2].inner_s : 0, tid);
  // MT: this thread's chunk of the mask tile (MT == 2: rows mr + j * MRS; MT == 1: threads
  // below BN / 8 load the one row).
  constexpr int MCH = BN / 8, MRS = NW * 32 / MCH;
  const int mr = tid / MCH, mc = (tid % MCH) * 8;
  const T* mptr = MT == 0   ? nullptr
                  : MT == 1 ? mask + (b * g.mask_stride[0] + h * g.mask_stride[1]) + (tid % MCH) * 8
                            : mask + (b * g.mask_stride[0] + h * g.mask_stride[1]) + (q0 + mr) * g.mask_stride[2] + mc;
  // The (K, V) tile at key k1 into buffer `nb` (0 or 1; split: into the raw buffer).
  auto load_kv = [&](long long k1, int nb) {
    if constexpr (SPLIT) {
      load_rows_raw<D, NW>(Kr, k, kbase, g.k.ax[2], k1, g.Sk, BN, tid);
      load_rows_raw<D, NW>(Vr, v, vbase, g.v.ax[2], k1, g.Sk, BN, tid);
    } else if constexpr (LIN) {
      kst.template load<BN>(Ks + nb * BN * LD, k1, g.Sk, tid);
      vst.template load<BN>(Vs + nb * BN * LD, k1, g.Sk, tid);
      // Sk % 8 == 0: a chunk of 8 keys is all in or all out.
      if constexpr (MT == 1) {
        if (tid < MCH) cp_async16(Ms + nb * BN + mc, k1 + mc < g.Sk ? mptr + k1 : mptr, k1 + mc < g.Sk);
      } else if constexpr (MT == 2) {
        const bool kin = k1 + mc < g.Sk;
#pragma unroll
        for (int j = 0; j < BM / MRS; ++j) {
          const bool ok = kin && q0 + mr + j * MRS < g.Sq;
          cp_async16(Ms + (nb * BM + mr + j * MRS) * MLD + mc, ok ? mptr + j * MRS * g.mask_stride[2] + k1 : mptr, ok);
        }
      }
    } else {
      load_rows<T, D, NW>(Ks + nb * BN * LD, k, kbase, g.k.ax[2], k1, g.Sk, BN, tid);
      load_rows<T, D, NW>(Vs + nb * BN * LD, v, vbase, g.v.ax[2], k1, g.Sk, BN, tid);
    }
  };
  // The threads that share these buffers: the block, or one warp.
  auto group_sync = [] {
    if constexpr (KW == 1) {
      __syncthreads();
    } else {
      __syncwarp();
    }
  };

  const int tiles = static_cast<int>((g.Sk + BN - 1) / BN);
  const int R0 = warp * 16;
  // A warp whose 16 rows are all past Sq (ViT's 197 rows in 64-row blocks) loads and
  // syncs with the block but computes nothing.
  const bool live = q0 + R0 < g.Sq;
  unsigned qf[D / 16][4];
  unsigned qfl[SPLIT ? D / 16 : 1][4];  // lo parts of Q (split fp32)
  auto load_q_fragments = [&] {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      ldsm_x4(qf[kk], Qs + (R0 + lane % 16) * LD + kk * 16 + (lane / 16) * 8);
      if constexpr (SPLIT) ldsm_x4(qfl[kk], Ql + (R0 + lane % 16) * LD + kk * 16 + (lane / 16) * 8);
    }
  };
  if constexpr (SPLIT && ALIAS) {
    // Q split on the way in and taken into registers before the raw K tile reuses its space.
    load_rows_split<D, NW>(Qs, Ql, q, qbase, g.q.ax[2], q0, g.Sq, BM, tid, g.scale);
    group_sync();
    load_q_fragments();
    group_sync();
    load_kv(static_cast<long long>(kw) * BN, 0);
    cp_commit();
  } else if constexpr (SPLIT) {
    // The raw Q rows (through the (K, V) tile space, which the first step's split
    // overwrites) load together with the first raw tile; then Q is split into registers.
    float* qraw = reinterpret_cast<float*>(Ks);
    load_rows_raw<D, NW>(qraw, q, qbase, g.q.ax[2], q0, g.Sq, BM, tid);
    load_kv(static_cast<long long>(kw) * BN, 0);
    cp_commit();
    cp_wait<0>();
    group_sync();
    split_rows<D, NW, true>(Qs, Ql, qraw, BM, tid, g.scale);
    group_sync();
    load_q_fragments();
  } else {
    if constexpr (LIN) {
      Stream(q + qbase, g.q.ax[2].inner_s, tid).template load<BM>(Qs, q0, g.Sq, tid);
    } else {
      load_rows<T, D, NW>(Qs, q, qbase, g.q.ax[2], q0, g.Sq, BM, tid);
    }
    load_kv(static_cast<long long>(kw) * BN, 0);
    cp_commit();
    static_assert(ST == 2, "two stages: the loop's wait and its first fetch assume them");
  }

  // This thread's two rows (gr, gr + 8 of the warp's 16) and their mask rows (null: no
  // mask, or a row past Sq). A mask broadcast over the queries (BERT's [B, 1, 1, Sk]) gives
  // both rows one mask row, read once; contiguous keys read as pairs. (MT: shared memory.)
  const T* mrow[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const long long qi = q0 + R0 + gr + 8 * r;
    mrow[r] = !MT && g.has_mask && qi < g.Sq
                  ? mask + (b * g.mask_stride[0] + h * g.mask_stride[1] + qi * g.mask_stride[2])
                  : nullptr;
  }
  const bool mask_one_row = mrow[0] == mrow[1];
  const float inv_scale = __fdividef(1.f, g.scale);  // 16-bit: the mask enters the unscaled scores
  const bool mask_pairs = g.mask_stride[3] == 1 && reinterpret_cast<uintptr_t>(mrow[0]) % (2 * sizeof(T)) == 0 &&
                          reinterpret_cast<uintptr_t>(mrow[1]) % (2 * sizeof(T)) == 0;
  // 16-bit scores to log2 units (the launch requires scale > 0, so maxima commute with the
  // multiplier); split fp32 scores came scaled (Q was) and stay in natural units.
  const float mult = SPLIT ? 1.f : g.scale * kLog2e;

  float acc[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;
  float row_m[2] = {-INFINITY, -INFINITY}, row_l[2] = {0.f, 0.f};  // row_m in the exponent's units

  for (int t = kw, it = 0; t < tiles; t += KW, ++it) {
    if constexpr (KW == 1) it = t;  // the same count; a visible one keeps registers down
    if constexpr (SPLIT) {
      // Raw tile t has landed, and every thread is past the previous step (its
      // reads of the split tiles): split it, then fetch tile t + KW behind it.
      cp_wait<0>();
      group_sync();
      split_rows<D, NW>(Ks, Kl, Kr, BN, tid);
      split_rows<D, NW>(Vs, Vl, Vr, BN, tid);
      group_sync();
      if (t + KW < tiles) load_kv(static_cast<long long>(t + KW) * BN, 0);
      cp_commit();
    } else {
      // Tile t (and, first, Q) has landed for every thread, and every thread is done with
      // the buffer tile t - KW used: fetch tile t + (ST - 1) KW into it. One barrier a tile
      // (ncu, ViT-B/16 FP16 bs256: the second, after P V, was 15% of the stall samples).
      cp_wait<ST - 2>();
      group_sync();
      const int ahead = t + (ST - 1) * KW;
      if (ahead < tiles) load_kv(static_cast<long long>(ahead) * BN, (it + ST - 1) % ST);
      cp_commit();
    }
    if constexpr (!SPLIT) {
      if (LIN || it == 0) load_q_fragments();  // LIN: again each tile (16 registers free in P V)
    }
    const int buf = SPLIT ? 0 : it % ST;
    const C* Kb = Ks + buf * BN * LD;
    const C* Vb = Vs + buf * BN * LD;
    const C* Kbl = Kl;
    const C* Vbl = Vl;
    const long long k0 = static_cast<long long>(t) * BN;
    // Keys of this tile below Sk: every one but in the last tile of a ragged Sk, where the
    // 8-key column blocks (and 16-key steps of P V) past Sk are skipped.
    const int valid = g.Sk - k0 < BN ? static_cast<int>(g.Sk - k0) : BN;

    if (live) {
      // S = Q K^T: 8 key columns per n-tile; one ldmatrix.x4 covers two k-steps. The
      // accumulators start from the mask, so its loads need no registers of their own and
      // overlap the MMAs: split fp32 (Q came scaled) S = mask + (scale Q) K^T; 16-bit
      // S = mask / scale + Q K^T, scaled below (BERT-base FP16 bs128: 178 us a layer, 183
      // registers, the mask loads 41% excess sectors and the top stall, before).
      float s[BN / 8][4];
#pragma unroll
      for (int n = 0; n < BN / 8; ++n) {
        if (n * 8 >= valid) {  // past Sk
          s[n][0] = s[n][1] = s[n][2] = s[n][3] = -INFINITY;
          continue;
        }
        s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
        const long long kc = k0 + n * 8 + 2 * tq;
        if constexpr (MT == 1) {
          const unsigned u = *reinterpret_cast<const unsigned*>(Ms + buf * BN + n * 8 + 2 * tq);
          const T* mv = reinterpret_cast<const T*>(&u);
          s[n][0] = s[n][2] = mask_start<T>(to_f(mv[0]), inv_scale);
          s[n][1] = s[n][3] = mask_start<T>(to_f(mv[1]), inv_scale);
        } else if constexpr (MT == 2) {
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const unsigned u =
                *reinterpret_cast<const unsigned*>(Ms + (buf * BM + R0 + gr + 8 * r) * MLD + n * 8 + 2 * tq);
            const T* mv = reinterpret_cast<const T*>(&u);
            s[n][2 * r] = mask_start<T>(to_f(mv[0]), inv_scale);
            s[n][2 * r + 1] = mask_start<T>(to_f(mv[1]), inv_scale);
          }
        } else if (g.has_mask) {
          float mk[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
          if (mrow[0]) load_mask_pair<T>(mrow[0], kc, g.Sk, g.mask_stride[3], mask_pairs, mk[0]);
          if (mask_one_row) {
            mk[1][0] = mk[0][0];
            mk[1][1] = mk[0][1];
          } else if (mrow[1]) {
            load_mask_pair<T>(mrow[1], kc, g.Sk, g.mask_stride[3], mask_pairs, mk[1]);
          }
          s[n][0] = mask_start<T>(mk[0][0], inv_scale);
          s[n][1] = mask_start<T>(mk[0][1], inv_scale);
          s[n][2] = mask_start<T>(mk[1][0], inv_scale);
          s[n][3] = mask_start<T>(mk[1][1], inv_scale);
        }
#pragma unroll
        for (int kk = 0; kk < D / 32; ++kk) {
          unsigned bf[4];
          const int off = (n * 8 + lane % 8) * LD + kk * 32 + (lane / 8) * 8;
          ldsm_x4(bf, Kb + off);
          mma16816<C>(s[n], qf[2 * kk], bf[0], bf[1]);
          mma16816<C>(s[n], qf[2 * kk + 1], bf[2], bf[3]);
          if constexpr (SPLIT) {  // + qh kl + ql kh
            unsigned bl[4];
            ldsm_x4(bl, Kbl + off);
            mma16816<C>(s[n], qf[2 * kk], bl[0], bl[1]);
            mma16816<C>(s[n], qf[2 * kk + 1], bl[2], bl[3]);
            mma16816<C>(s[n], qfl[2 * kk], bf[0], bf[1]);
            mma16816<C>(s[n], qfl[2 * kk + 1], bf[2], bf[3]);
          }
        }
        if (!SPLIT && n * 8 + 8 > valid) {  // the block Sk ends in: its keys past Sk to -inf
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (n * 8 + 2 * tq + (e & 1) >= valid) s[n][e] = -INFINITY;
        }
      }

      if (SPLIT && valid < BN) {  // (split fp32 keeps fewer registers this way)
#pragma unroll
        for (int n = 0; n < BN / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (n * 8 + 2 * tq + (e & 1) >= valid) s[n][e] = -INFINITY;
      }
      // Row maxima of the raw scores over the quad, then in the exponent's units.
      // (Four partial maxima and sums a row: chains of 16 dependent FMNMX / FADD were the
      // kernel's top stall, fixed-latency waits, at 3 warps a scheduler.)
      float mxp[2][4];
#pragma unroll
      for (int r = 0; r < 2; ++r) mxp[r][0] = mxp[r][1] = mxp[r][2] = mxp[r][3] = -INFINITY;
#pragma unroll
      for (int n = 0; n < BN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          mxp[e / 2][(n & 1) * 2 + (e & 1)] = fmaxf(mxp[e / 2][(n & 1) * 2 + (e & 1)], s[n][e]);
      float mx[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) mx[r] = fmaxf(fmaxf(mxp[r][0], mxp[r][1]), fmaxf(mxp[r][2], mxp[r][3]));
      float alpha[2], ref[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float m_new = fmaxf(row_m[r], keep_finite(mx[r] * mult, mx[r]));
        ref[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with no finite score so far: p = 0
        alpha[r] = softmax_exp<SPLIT>(row_m[r] - ref[r]);
        row_m[r] = m_new;
      }
      // p = 2^(s mult - ref) as one FFMA: its exact product differs from the rounded one
      // ref came from by under half an ulp of ref, a shift common to the row that softmax
      // does not see while it is small (|ref| < 2^20: at most 1/32). A row of huge scores
      // (a dtype's lowest mask at every key, which softmax spreads evenly) is rounded into
      // log2 units and shifted first, then goes through the same FFMA as (x, 1, 0).
      float rm[2] = {mult, mult}, nref[2] = {-ref[0], -ref[1]};
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        if (fabsf(ref[r]) < 1048576.f) continue;
#pragma unroll
        for (int n = 0; n < BN / 8; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) s[n][2 * r + e] = keep_finite(s[n][2 * r + e] * mult, s[n][2 * r + e]) - ref[r];
        rm[r] = 1.f;
        nref[r] = 0.f;
      }
      float sp[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
      for (int n = 0; n < BN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = softmax_exp<SPLIT>(fmaf(s[n][e], rm[e / 2], nref[e / 2]));  // keys past Sk: 0
          s[n][e] = p;
          sp[e / 2][(n & 1) * 2 + (e & 1)] += p;
        }
      }
      float sum[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) sum[r] = (sp[r][0] + sp[r][1]) + (sp[r][2] + sp[r][3]);
#pragma unroll
      for (int r = 0; r < 2; ++r) row_l[r] = row_l[r] * alpha[r] + sum[r];  // this thread's columns only
#pragma unroll
      for (int i = 0; i < D / 8; ++i) {
        acc[i][0] *= alpha[0];
        acc[i][1] *= alpha[0];
        acc[i][2] *= alpha[1];
        acc[i][3] *= alpha[1];
      }

      // O += P V: P's accumulator tiles 2j, 2j+1 are the A fragment of key step j.
#pragma unroll
      for (int j = 0; j < BN / 16; ++j) {
        if (j * 16 >= valid) continue;
        unsigned pa[4], pal[4];
        if constexpr (SPLIT) {
          split2(s[2 * j][0], s[2 * j][1], pa[0], pal[0]);
          split2(s[2 * j][2], s[2 * j][3], pa[1], pal[1]);
          split2(s[2 * j + 1][0], s[2 * j + 1][1], pa[2], pal[2]);
          split2(s[2 * j + 1][2], s[2 * j + 1][3], pa[3], pal[3]);
        } else {
          pa[0] = pack2<C>(s[2 * j][0], s[2 * j][1]);
          pa[1] = pack2<C>(s[2 * j][2], s[2 * j][3]);
          pa[2] = pack2<C>(s[2 * j + 1][0], s[2 * j + 1][1]);
          pa[3] = pack2<C>(s[2 * j + 1][2], s[2 * j + 1][3]);
        }
#pragma unroll
        for (int dn = 0; dn < D / 16; ++dn) {
          unsigned bf[4];
          const int off = (j * 16 + lane % 8 + ((lane / 8) % 2) * 8) * LD + dn * 16 + (lane / 16) * 8;
          ldsm_x4_t(bf, Vb + off);
          mma16816<C>(acc[2 * dn], pa, bf[0], bf[1]);
          mma16816<C>(acc[2 * dn + 1], pa, bf[2], bf[3]);
          if constexpr (SPLIT) {  // + ph vl + pl vh
            unsigned bl[4];
            ldsm_x4_t(bl, Vbl + off);
            mma16816<C>(acc[2 * dn], pa, bl[0], bl[1]);
            mma16816<C>(acc[2 * dn + 1], pa, bl[2], bl[3]);
            mma16816<C>(acc[2 * dn], pal, bf[0], bf[1]);
            mma16816<C>(acc[2 * dn + 1], pal, bf[2], bf[3]);
          }
        }
      }
    }
  }
  if constexpr (KW > 1) {
    merge_key_groups<T, D, KW, FLAT>(g, row_m, row_l, acc, q0, obase, o, smem);
  } else {
    // Row sums over the quad, then O / l.
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = row_l[r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv[r] = l > 0.f ? __frcp_rn(l) : (g.zero_masked_rows ? 0.f : NAN);
    }
    const long long od = g.o.ax[3].inner_s;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const long long qi = q0 + R0 + gr + 8 * r;
      if (qi >= g.Sq) continue;
      T* orow = o + obase + axo(g.o.ax[2], qi);
      if (o_pairs) {  // one branch, then stores at constant offsets from one address
        T* p = orow + 2 * tq;
#pragma unroll
        for (int i = 0; i < D / 8; ++i) store2<T>(p + i * 8, acc[i][2 * r] * inv[r], acc[i][2 * r + 1] * inv[r]);
      } else {
#pragma unroll
        for (int i = 0; i < D / 8; ++i) {
          const int c = i * 8 + 2 * tq;
          orow[c * od] = cuda::from_f<T>(acc[i][2 * r] * inv[r]);
          orow[(c + 1) * od] = cuda::from_f<T>(acc[i][2 * r + 1] * inv[r]);
        }
      }
    }
  }
}

// Pairs of output elements as one 4-byte store: d contiguous, every row start even.
bool output_pairs(KernelContext& ctx, const FusedAttentionGeometry& g, size_t elem) {
  bool pairs = g.o.ax[3].inner_s == 1 && g.o.offset % 2 == 0 &&
               reinterpret_cast<uintptr_t>(ctx.output(0).data()) % (2 * elem) == 0;
  for (int a = 0; a < 3; ++a) pairs = pairs && g.o.ax[a].outer_s % 2 == 0 && g.o.ax[a].inner_s % 2 == 0;
  return pairs;
}

template <class T, int D, int NW, int KW, int BN, int MINB = 1, bool ALIAS = true, int MT = 0, bool LIN = false>
Status launch(KernelContext& ctx, const FusedAttentionGeometry& g) {
  constexpr size_t smem = smem_bytes<D, NW, KW, BN, kSplit<T>, ALIAS, MT, kv_stages<kSplit<T>>()>();
  auto* kern = flash_mma_kernel<T, D, NW, KW, BN, MINB, ALIAS, MT, LIN>;
  // All the shared memory the SM has (the blocks-per-SM the tiles were sized for).
  const cudaError_t e = cuda::configure_smem<flash_mma_kernel<T, D, NW, KW, BN, MINB, ALIAS, MT, LIN>>(smem, true);
  if (e != cudaSuccess)
    return ctx.error(std::string("cudaFuncSetAttribute: ") + cudaGetErrorString(e), ErrorCode::kInternal);
  const dim3 grid(static_cast<unsigned>((g.Sq + 16 * NW - 1) / (16 * NW)), static_cast<unsigned>(g.H),
                  static_cast<unsigned>(g.B));
  const T* mask = ctx.has_input(3) ? static_cast<const T*>(ctx.input(3).data()) : nullptr;
  kern<<<grid, NW * KW * 32, smem, stream_of(ctx)>>>(
      g, output_pairs(ctx, g, sizeof(T)), static_cast<const T*>(ctx.input(0).data()),
      static_cast<const T*>(ctx.input(1).data()), static_cast<const T*>(ctx.input(2).data()), mask,
      static_cast<T*>(ctx.output(0).data()));
  return cuda::launch_status(ctx, "flash_attention_mma");
}

bool key_split_enabled() {
  static const bool on = !env_is("KILN_ATTENTION_KEY_SPLIT", "0");
  return on;
}

// Every operand's sequence axis is one stride (RowStream; KILN_ATTENTION_ROW_STREAMS=0
// keeps load_rows' general addressing, an A/B switch).
bool linear_rows(const FusedAttentionGeometry& g) {
  static const bool on = !env_is("KILN_ATTENTION_ROW_STREAMS", "0");
  return on && g.q.ax[2].inner_n >= g.Sq && g.k.ax[2].inner_n >= g.Sk && g.v.ax[2].inner_n >= g.Sk;
}

// Every operand's batch and head axes, and the output's sequence axis, are one stride
// each (the key-split kernels' FLAT origins; with linear_rows, every axis is).
bool flat_axes(const FusedAttentionGeometry& g) {
  for (const OperandMap* m : {&g.q, &g.k, &g.v, &g.o})
    if (m->ax[0].inner_n < g.B || m->ax[1].inner_n < g.H) return false;
  return g.o.ax[2].inner_n >= g.Sq;
}

// How the mask can arrive in shared memory (the kernel's MT): 1 = one row per (batch,
// head), 2 = a row per query; 0 = not (no mask, keys not contiguous, Sk % 8 != 0, or a
// row start not 16-byte aligned). KILN_ATTENTION_MASK_TILES=0 keeps reading global
// memory (an A/B switch).
template <class T>
int mask_tiles(KernelContext& ctx, const FusedAttentionGeometry& g) {
  static const bool on = !env_is("KILN_ATTENTION_MASK_TILES", "0");
  constexpr int64_t V = 16 / sizeof(T);
  if (!on || !g.has_mask || g.mask_stride[3] != 1 || g.Sk % 8 || g.mask_stride[0] % V || g.mask_stride[1] % V ||
      reinterpret_cast<uintptr_t>(ctx.input(3).data()) % 16)
    return 0;
  return g.mask_stride[2] == 0 ? 1 : g.mask_stride[2] % V == 0 ? 2 : 0;
}

wgmma::Args hopper_args(KernelContext& ctx, const FusedAttentionGeometry& g) {
  wgmma::Args a;
  a.dtype = ctx.input(0).dtype();
  a.q = ctx.input(0).data();
  a.k = ctx.input(1).data();
  a.v = ctx.input(2).data();
  a.mask = ctx.has_input(3) ? ctx.input(3).data() : nullptr;
  a.o = ctx.output(0).data();
  a.o_pairs = output_pairs(ctx, g, 2);
  return a;
}

// The Hopper kernel's tactics (kHopperTacticBase + wgmma::Variant) appended to ids where it
// takes g, those of hopper_variants_offered(); KILN_ATTENTION_WGMMA=0 leaves them all out (an
// A/B switch).
void add_wgmma_tactics(KernelContext& ctx, const FusedAttentionGeometry& g, std::vector<int64_t>& ids) {
  static const bool on = !env_is("KILN_ATTENTION_WGMMA", "0");
  const std::string offered = hopper_variants_offered();
  if (!on) return;
  const wgmma::Args a = hopper_args(ctx, g);
  for (int64_t i = 0; i < kHopperTactics; ++i)
    if (offered.find(static_cast<char>('0' + i)) != std::string::npos &&
        wgmma::offers(g, a, static_cast<wgmma::Variant>(i)))
      ids.push_back(kHopperTacticBase + i);
}

// A Hopper tactic on the Hopper kernel: true when it launched; false where the tactic is not
// one, or the kernel does not take g (an engine from another GPU): the caller runs its own.
Result<bool> run_wgmma(KernelContext& ctx, const FusedAttentionGeometry& g, int64_t tactic) {
  if (!is_hopper_tactic(tactic)) return false;
  const int e =
      wgmma::launch(g, hopper_args(ctx, g), static_cast<wgmma::Variant>(tactic - kHopperTacticBase), stream_of(ctx));
  if (e == cudaSuccess) return true;
  if (e == cudaErrorNotSupported) return false;
  return ctx.error(std::string("flash_attention_wgmma: ") + cudaGetErrorString(static_cast<cudaError_t>(e)),
                   ErrorCode::kInternal);
}

// Split fp32 at large grids has tactics (timed by the builder; docs/tactics.md):
//   0: 64 query rows x 64-key tiles, registers unbounded (170: 2 blocks per SM)
//   1: 64 x 64, registers bounded for 3 blocks per SM (72 KB of shared memory each)
//   2: 64 x 32, registers bounded for 3 blocks per SM (45 KB each)
//   3: 64 x 64 without the Q/K aliasing (Q and the first tile load together; 88 KB:
//      2 blocks per SM, registers unbounded)
//   4: as 2 without the aliasing (53 KB)
// No tactic attribute: 1.
constexpr int64_t kSplitTactics = 5, kSplitDefault = 1;

template <class T, int D>
Status launch_d(KernelContext& ctx, const FusedAttentionGeometry& g) {
  // Fewer 64-row blocks than SMs (batch 1): one warp per 16 rows, and the keys
  // split over 2 or 4 warps of 32-key tiles when there are enough of them.
  const long long blocks64 = ((g.Sq + 63) / 64) * g.H * g.B;
  if (blocks64 >= 132) {
    if constexpr (kSplit<T>) {
      std::vector<int64_t> ids;
      for (int64_t i = 0; i < kSplitTactics; ++i) ids.push_back(i);
      cuda::report_tactics(ids);
      const int64_t tactic = ctx.attrs().get_int(kTacticAttr, kSplitDefault);
      if (tactic == 0) return launch<T, D, 4, 1, kBN, 1>(ctx, g);
      if (tactic == 2) return launch<T, D, 4, 1, 32, 3>(ctx, g);
      if (tactic == 3) return launch<T, D, 4, 1, kBN, 1, false>(ctx, g);
      if (tactic == 4) return launch<T, D, 4, 1, 32, 3, false>(ctx, g);
      return launch<T, D, 4, 1, kBN, 3>(ctx, g);
    } else {
      // 16-bit, D = 64: 0 = registers unbounded (158: 3 blocks per SM), 1 = bounded for 4
      // blocks per SM, which the shared memory allows. Timing picks. (128-row blocks of 8
      // warps, each (K, V) tile serving twice the rows, measured no faster: ViT-B/16 bs256
      // and BERT-base bs128 timing kept tactics 1 and 0.) (D = 128 takes 87 KB of shared
      // memory a block: 2 per SM either way.) Row streams where every sequence axis is one
      // stride; mask tiles come with them.
      // On sm_90 the Hopper kernel's tactics follow (flash_wgmma.h; Sk <= 256). cuDNN's
      // fused attention engines are tactics too (sdpa_cudnn_cuda.cu), after the own ones.
      if (cuda::collecting_tactics()) {
        std::vector<int64_t> ids{0};
        if (D == 64) ids.push_back(1);
        if (D == 64) add_wgmma_tactics(ctx, g, ids);
        const std::vector<int64_t> dnn = cudnn_sdpa_candidates(ctx, g);
        ids.insert(ids.end(), dnn.begin(), dnn.end());
        cuda::report_tactics(ids);
      }
      const int64_t tactic = ctx.attrs().get_int(kTacticAttr, 0);
      if (is_cudnn_sdpa_tactic(tactic)) {
        KILN_ASSIGN_OR_RETURN(bool ran, cudnn_sdpa_run(ctx, g, tactic));
        if (ran) return Status();
      }
      if (D == 64) {
        KILN_ASSIGN_OR_RETURN(bool ran, run_wgmma(ctx, g, tactic));
        if (ran) return Status();
      }
      const bool lin = linear_rows(g);
      const int mt = lin ? mask_tiles<T>(ctx, g) : 0;
      if constexpr (D == 64) {
        if (tactic == 1) {
          if (!lin) return launch<T, D, 4, 1, kBN, 4>(ctx, g);
          if (mt == 1) return launch<T, D, 4, 1, kBN, 4, true, 1, true>(ctx, g);
          if (mt == 2) return launch<T, D, 4, 1, kBN, 4, true, 2, true>(ctx, g);
          return launch<T, D, 4, 1, kBN, 4, true, 0, true>(ctx, g);
        }
      }
      if (!lin) return launch<T, D, 4, 1, kBN>(ctx, g);
      if (mt == 1) return launch<T, D, 4, 1, kBN, 1, true, 1, true>(ctx, g);
      if (mt == 2) return launch<T, D, 4, 1, kBN, 1, true, 2, true>(ctx, g);
      return launch<T, D, 4, 1, kBN, 1, true, 0, true>(ctx, g);
    }
  }
  const long long tiles32 = (g.Sk + 31) / 32;
  // Head size 128 split spills registers (104-124 bytes): it keeps one warp per block.
  if (D == 128 || !key_split_enabled() || tiles32 < 2) return launch<T, D, 1, 1, kBN>(ctx, g);
  if constexpr (D == 64) {
    if constexpr (!kSplit<T>) {
      // 16-bit key groups: 0 = row streams, and a [B, 1, 1, Sk] mask as row tiles, where the
      // operands allow; 1 = general addressing, the mask from global memory. Timing picks.
      cuda::report_tactics({0, 1});
      const bool lin = ctx.attrs().get_int(kTacticAttr, 0) == 0 && linear_rows(g) && flat_axes(g);
      const bool mt1 = lin && mask_tiles<T>(ctx, g) == 1;
      if (tiles32 < 4) {
        if (!lin) return launch<T, D, 1, 2, 32>(ctx, g);
        return mt1 ? launch<T, D, 1, 2, 32, 1, true, 1, true>(ctx, g)
                   : launch<T, D, 1, 2, 32, 1, true, 0, true>(ctx, g);
      }
      if (!lin) return launch<T, D, 1, 4, 32>(ctx, g);
      return mt1 ? launch<T, D, 1, 4, 32, 1, true, 1, true>(ctx, g) : launch<T, D, 1, 4, 32, 1, true, 0, true>(ctx, g);
    }
    if (tiles32 < 4) return launch<T, D, 1, 2, 32>(ctx, g);
    return launch<T, D, 1, 4, 32>(ctx, g);
  }
  return launch<T, D, 1, 1, kBN>(ctx, g);
}

template <class T>
Status launch_t(KernelContext& ctx, const FusedAttentionGeometry& g) {
  return g.D == 64 ? launch_d<T, 64>(ctx, g) : launch_d<T, 128>(ctx, g);
}

}  // namespace

Result<bool> flash_attention_mma(KernelContext& ctx, const FusedAttentionGeometry& g) {
  const DataType t = ctx.input(0).dtype();
  if (g.D != g.Dv || g.Sk < 1) return false;
  auto aligned = [&](auto tag) {
    using E = decltype(tag);
    return vec_ok<E>(g.q, ctx.input(0).data(), g.D) && vec_ok<E>(g.k, ctx.input(1).data(), g.D) &&
           vec_ok<E>(g.v, ctx.input(2).data(), g.Dv);
  };
  if (t == DataType::kFloat32) {
    // Split bf16 is not FP32 arithmetic: only where the engine allows TF32 (which it
    // beats by 6 mantissa bits), and for the head size that fits its registers.
    const cuda::Env* env = ctx.cuda_env();
    if (!env || !env->allow_tf32 || g.D != 64 || !aligned(float{})) return false;
    KILN_RETURN_IF_ERROR((launch_d<float, 64>(ctx, g)));
    return true;
  }
  if (t != DataType::kFloat16 && t != DataType::kBFloat16) return false;
  if (g.D != 64 && g.D != 128) return false;
  // Scores are scaled after their row maxima; fp16 masks over the scale stay finite.
  if (!(g.scale >= 7.9e-31f)) return false;
  const bool half = t == DataType::kFloat16;
  if (!(half ? aligned(__half{}) : aligned(__nv_bfloat16{}))) return false;
  KILN_RETURN_IF_ERROR(half ? launch_t<__half>(ctx, g) : launch_t<__nv_bfloat16>(ctx, g));
  return true;
}

}  // namespace kiln::ops::attn
