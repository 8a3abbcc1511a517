// Device helpers shared by the FusedAttention CUDA kernels (attention_cuda.cu,
// flash_mma_cuda.cu): strided offsets along a logical axis and the check that an
// operand can be moved in 16-byte pieces.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/attention/fused_attention.h"

namespace kiln::ops::attn {

// Offset of index i along a logical axis (no division for single-atom axes).
__device__ __forceinline__ long long axo(const AxisMap& a, long long i) {
  if (i < a.inner_n) return i * a.inner_s;
  return (i / a.inner_n) * a.outer_s + (i % a.inner_n) * a.inner_s;
}

// Where head h of batch b of an operand starts. FLAT: every operand's batch and head
// axes are one stride each (the host checked), so no axo branches and the parameter
// loads issue together.
template <bool FLAT = false>
__device__ __forceinline__ long long head_base(const OperandMap& m, long long b, long long h) {
  if constexpr (FLAT) {
    return m.offset + b * m.ax[0].inner_s + h * m.ax[1].inner_s;
  } else {
    return m.offset + axo(m.ax[0], b) + axo(m.ax[1], h);
  }
}

// Where this block's (batch, head) = (blockIdx.z, blockIdx.y) starts in each operand,
// and its first query row (blockIdx.x blocks of `rows` rows).
struct BlockOrigin {
  long long b, h, q0, q, k, v, o;
};
template <bool FLAT = false>
__device__ __forceinline__ BlockOrigin block_origin(const FusedAttentionGeometry& g, int rows) {
  BlockOrigin r;
  r.b = blockIdx.z;
  r.h = blockIdx.y;
  r.q0 = static_cast<long long>(blockIdx.x) * rows;
  r.q = head_base<FLAT>(g.q, r.b, r.h);
  r.k = head_base<FLAT>(g.k, r.b, r.h);
  r.v = head_base<FLAT>(g.v, r.b, r.h);
  r.o = head_base<FLAT>(g.o, r.b, r.h);
  return r;
}

// 16-byte loads: d contiguous, every row start (offset + b/h/s strides) and the
// head size a multiple of 16 bytes.
template <class T>
bool vec_ok(const OperandMap& m, const void* data, int64_t d) {
  const int64_t V = 16 / static_cast<int64_t>(sizeof(T));
  if (m.ax[3].inner_s != 1 || d % V || m.offset % V || reinterpret_cast<uintptr_t>(data) % 16) return false;
  for (int a = 0; a < 3; ++a)
    if (m.ax[a].outer_s % V || m.ax[a].inner_s % V) return false;
  return true;
}

/// Register-resident flash attention (mma.sync m16n8k16, cp.async double
/// buffering) for fp16/bf16 with D == Dv in {64, 128} and 16-byte aligned rows.
/// Returns false, launching nothing, when the geometry is outside that.
Result<bool> flash_attention_mma(KernelContext& ctx, const FusedAttentionGeometry& g);

/// cuDNN's fused attention engines for `g`, best first by cuDNN's ranking: empty where
/// cuDNN offers none or the graph cannot express `g` (a mask, another head size or
/// dtype, operands not plain strided, rows not 16-byte aligned; KILN_ATTENTION_CUDNN=0).
std::vector<int64_t> cudnn_sdpa_candidates(KernelContext& ctx, const FusedAttentionGeometry& g);

/// Runs engine `tactic` (one of cudnn_sdpa_candidates(g)); false, launching nothing,
/// when it cannot run here (not offered, refused by cuDNN, or not finalized before a
/// stream capture): the caller launches its own kernel instead.
Result<bool> cudnn_sdpa_run(KernelContext& ctx, const FusedAttentionGeometry& g, int64_t tactic);

}  // namespace kiln::ops::attn
