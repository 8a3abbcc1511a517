// Hopper-native attention for short sequences (flash_wgmma_sm90a.cu): fp16/bf16,
// D == Dv == 64, Sk <= 256, every operand a plain strided [B, H, S, 64] view with rows 16-byte
// aligned. One CTA = 1 or 2 warp groups of 64 query rows of one (batch, head); Q, and all
// of K and V in 64-key (or 32-key) chunks, arrive by TMA (128-byte swizzle, one mbarrier per chunk, rows
// past S as zeros); S = Q K^T runs as wgmma from shared memory, the online softmax on the
// accumulators, and O += P V as wgmma with P from registers (the accumulator layout is
// the A fragment's). A tactic of cuda.flash_attention on sm_90 (flash_mma_cuda.cu).
#pragma once

#include <cuda_runtime.h>

#include "ops/attention/fused_attention.h"

namespace kiln::ops::attn::wgmma {

/// The operands of one launch (device pointers; mask null when none).
struct Args {
  DataType dtype = DataType::kFloat16;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  const void* mask = nullptr;
  void* o = nullptr;
  bool o_pairs = false;  ///< output pairs as one 4-byte store (d contiguous, rows even)
};

/// The kernel's forms (tactic kHopperTacticBase + the value).
enum class Variant {
  kOneWarpGroup = 0,          ///< a CTA of one warp group (64 query rows) a (batch, head) block
  kTwoWarpGroups = 1,         ///< two (128 rows sharing one copy of K and V)
  kTwoWarpGroupsChunk32 = 2,  ///< two, K and V in 32-key chunks, 80 registers: 3 CTAs an SM (Sk <= 224)
};

/// Whether variant `v` takes g on this device: an sm_90 GPU, the driver's tensor-map encoder,
/// the geometry and alignment above, and the variant's own limits.
bool offers(const FusedAttentionGeometry& g, const Args& a, Variant v);

/// Enqueues the attention as variant `v`; returns the cudaError_t (cudaErrorNotSupported,
/// launching nothing, where the kernel does not take g, a tensor map cannot describe an
/// operand or `v` is no variant: the caller runs another kernel).
int launch(const FusedAttentionGeometry& g, const Args& a, Variant v, cudaStream_t stream);

}  // namespace kiln::ops::attn::wgmma
