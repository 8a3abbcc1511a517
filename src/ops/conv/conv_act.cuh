// FusedConv's activations on the device: the epilogue kernel (conv_cuda.cu) and the
// direct small-channel conv (conv_direct_cuda.cu) apply them alike.
#pragma once

#include <cuda_runtime.h>

namespace kiln::ops {

enum class Act { kNone, kRelu, kSigmoid, kTanh, kLeakyRelu, kClip, kHardSigmoid, kSilu };

struct ActParams {
  Act kind = Act::kNone;
  float a = 0, b = 0;
};

__device__ __forceinline__ float apply_act(const ActParams& p, float v) {
  switch (p.kind) {
    case Act::kNone:
      return v;
    case Act::kRelu:
      return v > 0.f ? v : 0.f;
    case Act::kSigmoid:
      return 1.f / (1.f + __expf(-v));
    case Act::kTanh:
      return tanhf(v);
    case Act::kLeakyRelu:
      return v >= 0.f ? v : p.a * v;
    case Act::kClip:
      return fminf(fmaxf(v, p.a), p.b);
    case Act::kHardSigmoid:
      return fmaxf(0.f, fminf(1.f, p.a * v + p.b));
    case Act::kSilu:
      return v / (1.f + __expf(-v));
  }
  return v;
}

}  // namespace kiln::ops
