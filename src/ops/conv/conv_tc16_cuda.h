// kiln's tensor-core conv over 16 channels-last input channels, stride 1, no padding:
// the space-to-depth form of a ResNet-style 7x7 stride-2 stem (passes/space_to_depth_stem.cc:
// [N, 115, 115, 16] -> 4x4 -> [N, 112, 112, 64] at 224 px), where every cuDNN engine ran
// ResNet-50 bs256's stem in 0.73 ms against a ~0.17 ms floor (its 411 MB of output).
// An implicit GEMM with mma.sync: a CTA of 8 warps keeps the weights in shared memory and
// walks pairs of output rows (persistent); each pair's kh + 1 input rows arrive by cp.async
// while the previous pair computes; a warp takes 16 output pixels of both rows (each weight
// fragment feeds two mma) over every (kernel row, kernel column) position as one k16 step
// (16 channels), then bias, residual and activation in registers, and the rows leave as
// 16-byte vectors through a swizzled staging tile. Offered as a tactic of the cuda.cudnn
// conv kernel (cudnn_graph::kTc16Tactic); timing decides.
#pragma once

#include <cstdint>

#include "ops/conv/conv_direct_cuda.h"
#include "ops/op.h"

namespace kiln::ops::conv_tc16 {

/// One NHWC problem: x [n, h, w, 16], w OHWI [64, kh, kw, 16], y [n, h - kh + 1, w - kw + 1, 64]
/// (the direct conv's description of a 2-D channels-last conv; qualify calls: conv_direct::applies takes
/// it too).
using Problem = conv_direct::Problem;

/// True when the kernel takes `p`: an NHWC input, C == 16, M == 64, 1 <= kh, kw <= 4, stride 1, dilation 1,
/// no padding, an output row of at most 256 pixels, under 2^31 elements in each tensor.
bool applies(const Problem& p);

/// y = act(conv(x, w) + b + z) for fp16 / bf16; b and z may be null. `act_kind` is a
/// conv_act.cuh Act, with its parameters `a` and `b_param`. Pointers 16-byte aligned.
Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
           const void* z, void* y, int act_kind, float a, float b_param);

/// The conv with ResNet's stem max pool fused after it (FusedConv's kiln.max_pool: 3x3,
/// stride 2, pads 1, floor): y [n, (oh - 1) / 2 + 1, (ow - 1) / 2 + 1, 64]; the conv's rows stay
/// in shared memory (ResNet-50 bs256: 411 MB never written, the pool's kernel gone).
/// Takes what applies() takes with output rows of at most 128 pixels.
bool applies_pooled(const Problem& p);
Status run_pooled(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
                  void* y, int act_kind, float a, float b_param);

}  // namespace kiln::ops::conv_tc16
