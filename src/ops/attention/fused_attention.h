// FusedAttention (domain "kiln"): O = softmax(Q K^T * scale + mask) V over
// logical [B, H, S, D] operands that are strided views of the node's inputs
// (attn_view.h), written through the output's view. Made by the fuse_attention
// pass; run by the CPU reference and the CUDA flash-attention kernel, which share
// the host-side resolution below.
//
// Inputs: 0 Q, 1 K, 2 V (base tensors), 3 additive mask (optional, broadcast to
// [B, H, Sq, Sk]), 4.. shape tensors of the views' Reshape steps.
// Attributes: scale (float; times/divided by the scalar inputs that scale_inputs
// lists as (slot, divide) pairs), q_view/k_view/v_view (programs giving the logical
// operands), o_view (program from the logical output to the node's output),
// zero_masked_rows (1: a row whose scores are all -inf gives 0, as the exporters'
// IsNaN->Where guard does; 0: NaN, as plain Softmax does).
#pragma once

#include <cstdlib>
#include <string>

#include "ops/attention/attn_view.h"
#include "ops/op.h"

namespace kiln::ops::attn {

/// Offset of index i along one logical axis: (i / inner_n) * outer_s + (i % inner_n) * inner_s.
struct AxisMap {
  int64_t inner_n = int64_t{1} << 62;
  int64_t outer_s = 0;
  int64_t inner_s = 0;
};

struct OperandMap {
  int64_t offset = 0;
  AxisMap ax[4];  ///< b, h, s, d
};

struct FusedAttentionGeometry {
  int64_t B = 0, H = 0, Sq = 0, Sk = 0, D = 0, Dv = 0;
  OperandMap q, k, v, o;
  bool has_mask = false;
  int64_t mask_stride[4] = {0, 0, 0, 0};  ///< b, h, query, key (0 = broadcast)
  float scale = 1.f;
  bool zero_masked_rows = false;
};

inline constexpr int kFirstShapeInput = 4;

/// Tactic IDs of cuDNN's fused attention engines on CUDA (sdpa_cudnn_cuda.cu): at or above
/// this (the register-resident kernel's are small).
inline constexpr int64_t kCudnnSdpaTacticBase = int64_t(1) << 48;
inline bool is_cudnn_sdpa_tactic(int64_t id) { return id >= kCudnnSdpaTacticBase; }

/// Tactic IDs of the Hopper kernel (flash_wgmma.h) on CUDA: kHopperTacticBase + 0 / 1 for one
/// / two warp groups a CTA, + 2 for two with 32-key chunks (wgmma::Variant; IDs of their own:
/// the register-resident kernel's small IDs mean different tiles at different dtypes). (+ 2
/// was session 19's persistent variant until session 20 removed it; an engine of then naming
/// it runs variant 2, the same attention.)
inline constexpr int64_t kHopperTacticBase = int64_t(1) << 40, kHopperTactics = 3;
inline bool is_hopper_tactic(int64_t id) { return id >= kHopperTacticBase && id < kHopperTacticBase + kHopperTactics; }

/// The Hopper kernel's variants the builder offers, as digits of wgmma::Variant: "012" unless
/// KILN_ATTENTION_WGMMA_VARIANTS says otherwise (an A/B switch: "01" leaves variant 2 out).
inline std::string hopper_variants_offered() {
  const char* v = std::getenv("KILN_ATTENTION_WGMMA_VARIANTS");
  return v && *v ? std::string(v) : std::string("012");
}

/// Resolves the node's views against the run's input dims and shape values.
Result<FusedAttentionGeometry> resolve_fused_attention(KernelContext& ctx);

/// Logical [B,H,S,D] dims of operand `which` (0 q, 1 k, 2 v) at inference time
/// (dims -1 when unknown; symbolic dims keep their names through `names`).
Status infer_fused_attention(InferContext& ctx);

}  // namespace kiln::ops::attn
