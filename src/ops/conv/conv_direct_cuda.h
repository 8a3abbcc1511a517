// kiln's direct convolution for channels-last convs with few input channels (the
// 3-channel stems of YOLO-style models, zero-padded to 4 or 8 channels by the NHWC
// layout pass, or read unpadded straight from the model's NCHW input when the pass marks
// the conv kiln.nchw_input: then no Transpose or Pad kernel runs before it): each thread computes two output pixels for
// a group of 8 or 16 output channels from the group's weights in shared memory, applies bias + residual + activation,
// and the block writes its outputs back as coalesced 16-byte vectors. cuDNN's implicit-GEMM kernels tile the reduction
// (C x kH x kW: 36 for the YOLOv8n stem in FP32) far below their tile depth: YOLOv8n FP32 bs256's stem took 6.4 ms on
// the H100 for 1.7 GB out. Offered as a tactic of the cuda.cudnn conv kernel (cudnn_graph::kDirectTactic); timing
// decides.
#pragma once

#include <cstdint>

#include "ops/op.h"

namespace kiln::ops::conv_direct {

/// One 2-D NHWC problem (filter OHWI), symmetric padding; with nchw_input the input is
/// [n, c, h, w] (the output stays NHWC).
struct Problem {
  int64_t n = 0, h = 0, w = 0, c = 0;  ///< input [n, h, w, c]
  int64_t oh = 0, ow = 0, m = 0;       ///< output [n, oh, ow, m]
  int64_t kh = 0, kw = 0;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  bool nchw_input = false;
};

/// True when the direct kernel takes `p`: C <= 8 (<= 4 with an NCHW input), M % 8 == 0 and
/// M <= 64, the weights of one channel group within 32 KiB of shared memory, under 2^31
/// output pixels (NHWC input: tensors under 2^31 elements).
bool applies(const Problem& p);

/// y = act(conv(x, w) + b + z) in one pass; b and z may be null. `act_kind` is a
/// conv_act.cuh Act, with its parameters `a` and `b_param`.
Status run(KernelContext& ctx, const Problem& p, DataType dtype, const void* x, const void* w, const void* b,
           const void* z, void* y, int act_kind, float a, float b_param);

}  // namespace kiln::ops::conv_direct
