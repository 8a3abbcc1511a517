// kiln's bottleneck chain: a ResNet block's last 1x1 conv and the next block's first in one
// kernel (FusedConv's kiln.chain_activation, passes/fuse_conv_chain.cc), channels-last:
//   y[p, :]  = act(W1 h[p, :] + b1 (+ W2 x[p, :] + b2) (+ z[p, :]))       M = 256 channels
//   h2[p, :] = act3(W3 y[p, :] + b3)                                       M2 = 64 or 128
// y is written once (the next block reads it back as its residual) and h2 comes from the tile
// of y still in shared memory: the unfused pair read y again (ResNet-50 bs256 layer1: 411 MB at
// each of its three block boundaries, ~0.14 ms each at 3 TB/s).
//
// Two tactics (kChainTactic + v): 0 is the Hopper kernel (conv_chain_sm90a.cu: one persistent CTA
// an SM, a producer warp and two wgmma warp groups). For M = 256 (ResNet-50's layer1) every
// weight stays in shared memory: tiles of 64 pixels, z loaded into one of two y tiles, y written
// in place over it and stored by TMA, the second GEMM from that tile. For wider y (layer2's 512)
// the weights stream from L2: tiles of 128 pixels walk y's channels in chunks of 64 (the chunk's
// W1 rows, W3 columns and z arrive together), h2 accumulating over the chunks. 1 runs the two
// convs one after the other (the conv + shortcut GEMM or a cuBLASLt GEMM, then a cuBLASLt GEMM):
// every GPU, every shape the node takes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "ops/op.h"

namespace kiln::ops::conv_chain {

/// One problem: h [pixels, c1], w1 [256, c1]; x [pixels, c2] and w2 [256, c2] when c2 > 0 (a
/// stride-1 projection shortcut); z [pixels, 256] when has_z; y [pixels, 256]; w3 [m2, 256];
/// h2 [pixels, m2]. Row-major (NHWC activations, OHWI 1x1 weights).
struct Problem {
  int64_t pixels = 0, c1 = 0, c2 = 0, m = 256, m2 = 0;
  bool has_z = false;
};

/// The Hopper kernel's limits: c1 a positive multiple of 64, m2 64 or 128, every tensor under
/// 2^31 elements, and either (resident weights) m 256, c2 0 or a multiple of 64, c1 + c2 + m2 <=
/// 192 ((c1 + c2 + m2) x 256 x 2 bytes stay in shared memory), not both a shortcut and z; or
/// (streamed weights, y in chunks of 64 channels) m a multiple of 64 in [256, 1024], c1 <= 128,
/// no shortcut.
bool applies(const Problem& p);
/// applies() on an sm_90 GPU with a driver that encodes tensor maps.
bool hopper_takes(const Problem& p);

/// Enqueues the Hopper kernel on `stream`; returns the cudaError_t (0 on success). x, w2, b2,
/// z, b1 and b3 may be null where the problem has none.
int launch_hopper(const Problem& p, DataType dtype, const void* h, const void* w1, const void* b1, const void* x,
                  const void* w2, const void* b2, const void* z, void* y, const void* w3, const void* b3, void* h2,
                  bool relu, bool relu3, void* stream);

/// The tactics: kChainTactic (conv_graph_cuda.h) + kFused or + kTwoSteps.
inline constexpr int kFused = 0, kTwoSteps = 1, kVariants = 2;

/// FusedConv with kiln.chain_activation on CUDA: checks the node's tensors (channels-last FP16 /
/// BF16, 1x1 stride-1 convs, ReLU or no activation on each), reports the tactics and runs the
/// node's pick (an engine that names none, or names the Hopper kernel at a shape or on a GPU it
/// does not take, runs the two steps). `shortcut`: kiln.shortcut_strides, if any.
Status run_fused_conv(KernelContext& ctx, const std::optional<std::array<int64_t, 2>>& shortcut, int act_kind,
                      bool relu3, const Tensor* b, const Tensor* z);

}  // namespace kiln::ops::conv_chain
