// kiln's 1x1 conv with a bottleneck block's projection shortcut in the same GEMM
// (FusedConv's kiln.shortcut_strides, passes/fuse_conv_shortcut.cc), channels-last:
//   y[p, :] = act(W1 h[p, :] + b1 + W2 x[src(p), :] + b2),  src(p) = pixel (oy * s, ox * s)
// one GEMM over the concatenated reduction [h | x] (K = C1 + C2): the shortcut's output
// (ResNet-50 bs256 layer1: 411 MB, written by one kernel and read by the next) never
// exists. cuDNN and cuBLASLt ran the two halves as 201 + 325 us there against ~210 us of
// bytes for the fused GEMM. Three variants, timed as tactics: 0 and 1 are mma.sync kernels
// (a CTA 128 or 64 pixels x 128 output channels, k steps of 64 channels through a 3-stage
// cp.async pipeline, swizzled 128-byte rows, the tile leaving as 16-byte vectors through shared
// memory); 2 is the Hopper kernel (conv_shortcut_sm90a.cu: TMA into an mbarrier ring, a
// producer warp and two wgmma consumer warp groups, persistent). Session 23, ResNet-50 bs256:
// layer1's block 0.332 ms on variant 0 (ncu: issue-bound, 49% of issue slots, DRAM 52%) and
// 0.225 on variant 2 (218 us under ncu against ~206 of bytes); layer2's 0.298 and 0.208.
// The win is bytes: where the GEMM is compute-bound (ResNet-50's layers 3-4) the pass leaves
// the two convs to cuBLASLt.
#pragma once

#include <array>
#include <cstdint>

#include "ops/op.h"

namespace kiln::ops::conv_shortcut {

/// One problem: h [n, oh, ow, c1], w1 [m, c1], x [n, h2, w2, c2], w2 [m, c2], y [n, oh, ow, m]
/// (NHWC activations, 1x1 OHWI weights); the shortcut samples x every `s` pixels.
struct Problem {
  int64_t n = 0, oh = 0, ow = 0, c1 = 0;
  int64_t h2 = 0, w2 = 0, c2 = 0, s = 1;
  int64_t m = 0;
};

/// True when the kernel takes `p`: c1 and c2 multiples of 64, m a multiple of 128, the
/// shortcut's sampled grid (h2 - 1) / s + 1 x (w2 - 1) / s + 1 equal to oh x ow, at least
/// one pixel, every tensor under 2^31 elements.
bool applies(const Problem& p);

/// FusedConv with kiln.shortcut_strides (passes/fuse_conv_shortcut.cc) on CUDA: checks the node's
/// tensors (channels-last, a 1x1 stride-1 main conv, 1x1 W2, no Z, ReLU or no activation: a
/// conv_act.cuh Act), reports the variants as tactics and runs the node's; the one kernel that
/// runs such a node (the pass fuses only what it takes).
Status run_fused_conv(KernelContext& ctx, const std::array<int64_t, 2>& strides, int act_kind, const Tensor* b,
                      const Tensor* z);

/// The kernel's variants (tactics): 0 takes 128 pixels a CTA, 1 takes 64 (three CTAs an SM),
/// 2 is the Hopper kernel (conv_shortcut_sm90a.cu: TMA + wgmma, persistent, warp-specialized)
/// where hopper_takes, 3 the same with each CTA's 128 output channels of weights resident in
/// shared memory (only pixels stream) where hopper_resident_takes.
inline constexpr int kVariants = 4;

/// Variant 2 takes `p`: what applies() takes with m <= 2048 and, at a stride, output rows of at
/// most 128 pixels (a tile is whole rows), on an sm_90 GPU with a driver that encodes tensor maps.
bool hopper_takes(const Problem& p);
/// Variant 3 takes `p`: what hopper_takes takes with c1 + c2 <= 384 (96 KB of weights a CTA).
bool hopper_resident_takes(const Problem& p);
/// Enqueues variant 2 (3 when `resident`) on `stream`; returns the cudaError_t (0 on success).
int launch_hopper(const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1, const void* x,
                  const void* w2, const void* b2, void* y, bool relu, void* stream, bool resident = false);

/// y = act(w1 h + b1 + w2 x + b2) for fp16 / bf16; b1 and b2 may be null; `relu` or no
/// activation. Pointers 16-byte aligned (biases 2-byte).
Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1,
           const void* x, const void* w2, const void* b2, void* y, bool relu, int variant);

}  // namespace kiln::ops::conv_shortcut
