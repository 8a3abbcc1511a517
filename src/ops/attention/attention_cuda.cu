// CUDA kernels for kiln FusedAttention. fp16/bf16 with head size 64 or 128 and
// 16-byte aligned rows run the register-resident kernel in flash_mma_cuda.cu;
// everything else runs the general kernel below.
//
// General kernel: flash attention (online softmax over key
// tiles; the [Sq, Sk] scores never leave shared memory). Operands are read and
// the output written through the strides the node's views resolve to
// (fused_attention.h), so head split/merge transposes cost nothing.
//
// One block = NW warps = 16*NW query rows of one (batch, head); each warp owns 16
// rows. Per 64-key tile: S = Q K^T (tensor cores via WMMA for fp16/bf16 with head
// dims a multiple of 16, fp32 FMA otherwise), online softmax in fp32, O += P V.
// O accumulates in fp32 in shared memory.
#include <mma.h>

#include <cstdlib>
#include <type_traits>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "ops/attention/attention_cuda.cuh"
#include "ops/attention/fused_attention.h"

namespace kiln::ops {

namespace {

using attn::axo;
using attn::block_origin;
using attn::BlockOrigin;
using attn::vec_ok;
using cuda::from_f;
using cuda::launch_status;
using cuda::stream_of;
using cuda::to_f;

constexpr int kBN = 64;  // keys per tile

struct VecFlags {
  bool q = false, k = false, v = false;
};

struct SmemPlan {
  size_t q, k, v, p, s, o, stats, total;
};

__host__ __device__ inline size_t round128(size_t x) { return (x + 127) / 128 * 128; }

template <class TS>
__host__ __device__ inline SmemPlan plan_smem(int bm, int d, int dv, int pad) {
  SmemPlan s{};
  size_t off = 0;
  s.q = off, off += round128(size_t(bm) * (d + pad) * sizeof(TS));
  s.k = off, off += round128(size_t(kBN) * (d + pad) * sizeof(TS));
  s.v = off, off += round128(size_t(kBN) * (dv + pad) * sizeof(TS));
  s.p = off, off += round128(size_t(bm) * (kBN + pad) * sizeof(TS));
  s.s = off, off += round128(size_t(bm) * (kBN + 4) * sizeof(float));
  s.o = off, off += round128(size_t(bm) * (dv + 4) * sizeof(float));
  s.stats = off, off += round128(size_t(bm) * 3 * sizeof(float));
  s.total = off;
  return s;
}

// Loads rows [r0, r0 + rows) x cols of an operand into shared memory (rows past
// rmax are zero). `vec`: the d axis is contiguous and every row start 16-byte
// aligned, so each thread moves 16 bytes per load; all loads are independent.
template <class T, class TS>
__device__ __forceinline__ void load_tile(TS* dst, int ld, const T* __restrict__ src, long long base,
                                          const attn::AxisMap& row_axis, long long d_stride, long long r0,
                                          long long rmax, int rows, int cols, bool vec, int tid, int nthreads) {
  constexpr int V = 16 / sizeof(T);
  if (vec) {
    const int chunks = cols / V;
#pragma unroll 4
    for (int i = tid; i < rows * chunks; i += nthreads) {
      const int r = i / chunks, c = (i - r * chunks) * V;
      const long long gi = r0 + r;
      TS* d = dst + r * ld + c;
      uint4 raw = make_uint4(0, 0, 0, 0);
      if (gi < rmax) raw = *reinterpret_cast<const uint4*>(src + base + axo(row_axis, gi) + c);
      if constexpr (std::is_same<T, TS>::value) {
        *reinterpret_cast<uint4*>(d) = raw;
      } else {
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < V; ++j) d[j] = from_f<TS>(to_f(e[j]));
      }
    }
    return;
  }
#pragma unroll 4
  for (int i = tid; i < rows * cols; i += nthreads) {
    const int r = i / cols, c = i - r * cols;
    const long long gi = r0 + r;
    dst[r * ld + c] = from_f<TS>(gi < rmax ? to_f(src[base + axo(row_axis, gi) + c * d_stride]) : 0.f);
  }
}

template <class T, bool kTC, int NW>
__global__ void __launch_bounds__(NW * 32)
    flash_attention(attn::FusedAttentionGeometry g, VecFlags vec, const T* __restrict__ q, const T* __restrict__ k,
                    const T* __restrict__ v, const T* __restrict__ mask, T* __restrict__ o) {
  using TS = typename std::conditional<kTC, T, float>::type;
  constexpr int BM = 16 * NW;
  constexpr int kPad = kTC ? 8 : 4;
  const int D = static_cast<int>(g.D), Dv = static_cast<int>(g.Dv);
  const int ldq = D + kPad, ldk = D + kPad, ldv = Dv + kPad, ldp = kBN + kPad, lds = kBN + 4, ldo = Dv + 4;
  extern __shared__ __align__(128) unsigned char smem[];
  const SmemPlan sp = plan_smem<TS>(BM, D, Dv, kPad);
  TS* Qs = reinterpret_cast<TS*>(smem + sp.q);
  TS* Ks = reinterpret_cast<TS*>(smem + sp.k);
  TS* Vs = reinterpret_cast<TS*>(smem + sp.v);
  TS* Ps = reinterpret_cast<TS*>(smem + sp.p);
  float* Sf = reinterpret_cast<float*>(smem + sp.s);
  float* Of = reinterpret_cast<float*>(smem + sp.o);
  float* row_m = reinterpret_cast<float*>(smem + sp.stats);
  float* row_l = row_m + BM;
  float* row_a = row_l + BM;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const BlockOrigin at = block_origin(g, BM);
  const long long b = at.b, h = at.h, q0 = at.q0, qbase = at.q, kbase = at.k, vbase = at.v, obase = at.o;
  const long long qd = g.q.ax[3].inner_s, kd = g.k.ax[3].inner_s, vd = g.v.ax[3].inner_s, od = g.o.ax[3].inner_s;

  // Q tile (rows past Sq are zero), row statistics and the O accumulator.
  load_tile<T, TS>(Qs, ldq, q, qbase, g.q.ax[2], qd, q0, g.Sq, BM, D, vec.q, tid, NW * 32);
  const int R0 = warp * 16;
  if (lane < 16) {
    row_m[R0 + lane] = -INFINITY;
    row_l[R0 + lane] = 0.f;
  }
  float* Sw = Sf + R0 * lds;
  float* Ow = Of + R0 * ldo;
  for (int i = lane; i < 16 * Dv; i += 32) Ow[(i / Dv) * ldo + i % Dv] = 0.f;

  const int tiles = static_cast<int>((g.Sk + kBN - 1) / kBN);
  for (int t = 0; t < tiles; ++t) {
    const long long k0 = static_cast<long long>(t) * kBN;
    __syncthreads();  // every warp is done with the previous K/V tile
    load_tile<T, TS>(Ks, ldk, k, kbase, g.k.ax[2], kd, k0, g.Sk, kBN, D, vec.k, tid, NW * 32);
    load_tile<T, TS>(Vs, ldv, v, vbase, g.v.ax[2], vd, k0, g.Sk, kBN, Dv, vec.v, tid, NW * 32);
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
    if constexpr (kTC) {
      using namespace nvcuda;
      for (int j = 0; j < kBN / 16; ++j) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::fill_fragment(acc, 0.f);
        for (int kk = 0; kk < D / 16; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
          wmma::load_matrix_sync(fa, Qs + R0 * ldq + kk * 16, ldq);
          wmma::load_matrix_sync(fb, Ks + j * 16 * ldk + kk * 16, ldk);
          wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(Sw + j * 16, acc, lds, wmma::mem_row_major);
      }
    } else {
      for (int i = lane; i < 16 * kBN; i += 32) {
        const int r = i / kBN, c = i % kBN;
        const TS* qr = Qs + (R0 + r) * ldq;
        const TS* kr = Ks + c * ldk;
        float acc = 0.f;
        for (int d = 0; d < D; ++d) acc += to_f(qr[d]) * to_f(kr[d]);
        Sw[r * lds + c] = acc;
      }
    }
    __syncwarp();

    // Online softmax: two lanes per row, 32 keys each, held in registers; the mask
    // loads of a lane are independent, so they are all in flight at once.
    {
      const int r = lane >> 1, half = lane & 1;
      const int R = R0 + r;
      const long long qi = q0 + R;
      const float* srow = Sw + r * lds + half * 32;
      TS* prow = Ps + R * ldp + half * 32;
      const long long kb0 = k0 + half * 32;
      const bool masked = g.has_mask && qi < g.Sq;
      const long long mrow = masked ? b * g.mask_stride[0] + h * g.mask_stride[1] + qi * g.mask_stride[2] : 0;
      float x[32];
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const long long kj = kb0 + j;
        const bool in = kj < g.Sk;
        const float m = masked && in ? to_f(mask[mrow + kj * g.mask_stride[3]]) : 0.f;
        x[j] = in ? srow[j] * g.scale + m : -INFINITY;
      }
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < 32; ++j) mx = fmaxf(mx, x[j]);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_old = row_m[R];
      const float m_new = fmaxf(m_old, mx);
      const float ref = m_new == -INFINITY ? 0.f : m_new;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const TS p = from_f<TS>(kTC ? __expf(x[j] - ref) : expf(x[j] - ref));
        prow[j] = p;
        sum += to_f(p);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float alpha = kTC ? __expf(m_old - ref) : expf(m_old - ref);
      __syncwarp();
      if (half == 0) {
        row_m[R] = m_new;
        row_l[R] = row_l[R] * alpha + sum;
        row_a[R] = alpha;
      }
    }
    __syncwarp();

    // O = O * alpha + P V.
    for (int i = lane; i < 16 * Dv; i += 32) Ow[(i / Dv) * ldo + i % Dv] *= row_a[R0 + i / Dv];
    __syncwarp();
    if constexpr (kTC) {
      using namespace nvcuda;
      for (int j = 0; j < Dv / 16; ++j) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
        wmma::load_matrix_sync(acc, Ow + j * 16, ldo, wmma::mem_row_major);
        for (int kk = 0; kk < kBN / 16; ++kk) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
          wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> fb;
          wmma::load_matrix_sync(fa, Ps + R0 * ldp + kk * 16, ldp);
          wmma::load_matrix_sync(fb, Vs + kk * 16 * ldv + j * 16, ldv);
          wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(Ow + j * 16, acc, ldo, wmma::mem_row_major);
      }
    } else {
      for (int i = lane; i < 16 * Dv; i += 32) {
        const int r = i / Dv, c = i % Dv;
        const TS* pr = Ps + (R0 + r) * ldp;
        float acc = Ow[r * ldo + c];
        for (int kk = 0; kk < kBN; ++kk) acc += to_f(pr[kk]) * to_f(Vs[kk * ldv + c]);
        Ow[r * ldo + c] = acc;
      }
    }
    __syncwarp();
  }

  for (int i = lane; i < 16 * Dv; i += 32) {
    const int r = i / Dv, c = i % Dv;
    const long long qi = q0 + R0 + r;
    if (qi >= g.Sq) continue;
    const float l = row_l[R0 + r];
    const float y = l > 0.f ? Ow[r * ldo + c] / l : (g.zero_masked_rows ? 0.f : NAN);
    o[obase + axo(g.o.ax[2], qi) + c * od] = from_f<T>(y);
  }
}

template <class T, bool kTC, int NW>
Status launch(KernelContext& ctx, const attn::FusedAttentionGeometry& g) {
  using TS = typename std::conditional<kTC, T, float>::type;
  const SmemPlan sp = plan_smem<TS>(16 * NW, static_cast<int>(g.D), static_cast<int>(g.Dv), kTC ? 8 : 4);
  constexpr size_t kMaxSmem = 227 * 1024;  // sm_90 opt-in limit per block
  if (sp.total > kMaxSmem)
    return ctx.error("head sizes " + std::to_string(g.D) + "/" + std::to_string(g.Dv) +
                         " need more shared memory than a block has (at most 128 supported)",
                     ErrorCode::kUnsupported);
  auto* kern = flash_attention<T, kTC, NW>;
  if (sp.total > 48 * 1024) {  // (the most a block may have: one setting for every head size)
    const cudaError_t e = cuda::configure_smem<flash_attention<T, kTC, NW>>(kMaxSmem);
    if (e != cudaSuccess)
      return ctx.error(std::string("cudaFuncSetAttribute: ") + cudaGetErrorString(e), ErrorCode::kInternal);
  }
  dim3 grid(static_cast<unsigned>((g.Sq + 16 * NW - 1) / (16 * NW)), static_cast<unsigned>(g.H),
            static_cast<unsigned>(g.B));
  const T* mask = ctx.has_input(3) ? static_cast<const T*>(ctx.input(3).data()) : nullptr;
  VecFlags vec{vec_ok<T>(g.q, ctx.input(0).data(), g.D), vec_ok<T>(g.k, ctx.input(1).data(), g.D),
               vec_ok<T>(g.v, ctx.input(2).data(), g.Dv)};
  kern<<<grid, NW * 32, sp.total, stream_of(ctx)>>>(
      g, vec, static_cast<const T*>(ctx.input(0).data()), static_cast<const T*>(ctx.input(1).data()),
      static_cast<const T*>(ctx.input(2).data()), mask, static_cast<T*>(ctx.output(0).data()));
  return launch_status(ctx, "flash_attention");
}

template <class T, bool kTC>
Status launch_nw(KernelContext& ctx, const attn::FusedAttentionGeometry& g) {
  // Fewer 64-row blocks than SMs (batch 1): one-warp blocks of 16 rows give the
  // GPU four times as many blocks to spread.
  const long long blocks64 = ((g.Sq + 63) / 64) * g.H * g.B;
  if (blocks64 < 132) return launch<T, kTC, 1>(ctx, g);
  return launch<T, kTC, 4>(ctx, g);
}

Status fused_attention_cuda(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(attn::FusedAttentionGeometry g, attn::resolve_fused_attention(ctx));
  if (ctx.output(0).numel() == 0) return Status();
  if (g.H > 65535 || g.B > 65535) return ctx.error("batch and head counts above 65535 are not supported on CUDA");
  // KILN_ATTENTION_WMMA=1 keeps the WMMA kernel (to compare, or to work around the other).
  static const bool wmma_only = std::getenv("KILN_ATTENTION_WMMA") != nullptr;
  if (!wmma_only) {
    KILN_ASSIGN_OR_RETURN(bool done, attn::flash_attention_mma(ctx, g));
    if (done) return Status();
  }
  const bool tc = g.D % 16 == 0 && g.Dv % 16 == 0;
  switch (ctx.input(0).dtype()) {
    case DataType::kFloat32:
      return launch_nw<float, false>(ctx, g);
    case DataType::kFloat16:
      return tc ? launch_nw<__half, true>(ctx, g) : launch_nw<__half, false>(ctx, g);
    case DataType::kBFloat16:
      return tc ? launch_nw<__nv_bfloat16, true>(ctx, g) : launch_nw<__nv_bfloat16, false>(ctx, g);
    default:
      return ctx.error(std::string("no CUDA kernel for dtype ") + dtype_name(ctx.input(0).dtype()),
                       ErrorCode::kUnsupported);
  }
}

bool fused_attention_applies(const ir::Node&, const std::vector<TensorType>& in) {
  if (in.size() < 3) return false;
  DataType t = in[0].dtype;
  if (t != DataType::kFloat32 && t != DataType::kFloat16 && t != DataType::kBFloat16) return false;
  for (size_t i = 1; i < 4 && i < in.size(); ++i)
    if (in[i].dtype != DataType::kUndefined && in[i].dtype != t) return false;
  return true;
}

}  // namespace

void register_attention_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("kiln", "FusedAttention",
                          FastKernel{"cuda.flash_attention", fused_attention_cuda, fused_attention_applies,
                                     cuda::collect_tactics<fused_attention_cuda>});
}

}  // namespace kiln::ops
