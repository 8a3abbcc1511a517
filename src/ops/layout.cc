#include "ops/layout.h"

#include <array>
#include <cstring>

#include "ops/conv/conv_internal.h"

namespace kiln::ops {

bool is_nhwc(const ir::Node& node) { return node.attrs.get_int(kNhwcAttr, 0) != 0; }

bool has_nchw_input(const ir::Node& node) { return node.attrs.get_int(kNchwInputAttr, 0) != 0; }

LayoutSlot nhwc_input_slot(const ir::Node& node, size_t i) {
  if (node.op_type == "Conv" || node.op_type == "FusedConv") {
    if (i == 0) return has_nchw_input(node) ? LayoutSlot::kPlain : LayoutSlot::kActivation;
    // FusedConv: 3 = Z; kiln.shortcut_strides' X2 (4) and W2 (5) are stored as X and W are, and
    // kiln.chain_activation's W3 (7) as W is.
    const bool fused = node.op_type == "FusedConv";
    if (i == 3 || (i == 4 && fused)) return LayoutSlot::kActivation;
    if (i == 1 || ((i == 5 || i == 7) && fused)) return LayoutSlot::kWeight;
    return LayoutSlot::kPlain;
  }
  return i == 0 ? LayoutSlot::kActivation : LayoutSlot::kPlain;
}

bool nhwc_output(const ir::Node& node, size_t k) {
  return k == 0 || (k == 1 && node.op_type == "FusedConv" && node.attrs.has(conv::kChainAttr));
}

namespace {
// y = x with axes permuted by perm (rank 4), element by element.
Tensor permute4(const Tensor& x, const std::array<int, 4>& perm) {
  const Dims& d = x.dims();
  Dims od = {d[perm[0]], d[perm[1]], d[perm[2]], d[perm[3]]};
  Tensor y = Tensor::empty(x.dtype(), od);
  const size_t es = dtype_size(x.dtype());
  int64_t in_stride[4] = {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
  int64_t s[4] = {in_stride[perm[0]], in_stride[perm[1]], in_stride[perm[2]], in_stride[perm[3]]};
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  int64_t o = 0;
  for (int64_t a = 0; a < od[0]; ++a)
    for (int64_t b = 0; b < od[1]; ++b)
      for (int64_t c = 0; c < od[2]; ++c)
        for (int64_t e = 0; e < od[3]; ++e, ++o)
          std::memcpy(dst + o * es, src + (a * s[0] + b * s[1] + c * s[2] + e * s[3]) * es, es);
  return y;
}
}  // namespace

Tensor tensor_nhwc_to_nchw(const Tensor& t) { return t.rank() == 4 ? permute4(t, {0, 3, 1, 2}) : t; }
Tensor tensor_nchw_to_nhwc(const Tensor& t) { return t.rank() == 4 ? permute4(t, {0, 2, 3, 1}) : t; }

}  // namespace kiln::ops
