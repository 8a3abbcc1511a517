// ConvInteger: Conv on int8/uint8 data with zero points, exact int32 result.
#include "ops/conv/conv_internal.h"

namespace kiln::ops::conv {

namespace {

bool is_8bit(DataType t) { return t == DataType::kInt8 || t == DataType::kUInt8; }

int32_t read8(const Tensor& t, int64_t i) {
  return t.dtype() == DataType::kInt8 ? t.data_as<int8_t>()[i] : t.data_as<uint8_t>()[i];
}

}  // namespace

Status infer_conv_integer(InferContext& ctx) {
  for (size_t i = 0; i < 2; ++i) {
    DataType t = ctx.input_dtype(i);
    if (t != DataType::kUndefined && !is_8bit(t))
      return ctx.error(std::string("input ") + std::to_string(i) + " must be int8 or uint8, got " + dtype_name(t));
  }
  return infer_conv_output(ctx, DataType::kInt32, false);
}

Status ref_conv_integer(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  if (!is_8bit(x.dtype()) || !is_8bit(w.dtype())) return ctx.error("X and W must be int8 or uint8");
  auto s = conv_shape(ctx.attrs(), x.dims(), w.dims(), nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  int32_t x_zp = 0;
  if (ctx.has_input(2)) {
    const Tensor& z = ctx.input(2);
    if (z.numel() != 1 || z.dtype() != x.dtype()) return ctx.error("x_zero_point must be one value of X's dtype");
    x_zp = read8(z, 0);
  }
  std::vector<int32_t> w_zp(static_cast<size_t>(s->m), 0);
  if (ctx.has_input(3)) {
    const Tensor& z = ctx.input(3);
    if (z.dtype() != w.dtype()) return ctx.error("w_zero_point dtype differs from W's");
    if (z.numel() == 1) std::fill(w_zp.begin(), w_zp.end(), read8(z, 0));
    else if (z.numel() == s->m)
      for (int64_t i = 0; i < s->m; ++i) w_zp[i] = read8(z, i);
    else return ctx.error("w_zero_point must have 1 or M = " + std::to_string(s->m) + " elements");
  }
  const int64_t sp = s->attrs.spatial, cg = s->c / s->group, mg = s->m / s->group;
  const auto in_strides = strides_of(s->geo.in);
  const Dims kdims(s->attrs.kernel.begin(), s->attrs.kernel.end());
  int32_t* y = ctx.output(0).data_as<int32_t>();
  std::vector<int64_t> oc(sp), kc(sp);
  for (int64_t n = 0; n < s->n; ++n)
    for (int64_t m = 0; m < s->m; ++m)
      for (int64_t o = 0; o < s->out_count; ++o) {
        int64_t rem = o;
        for (int64_t d = sp - 1; d >= 0; --d) {
          oc[d] = rem % s->geo.out[d];
          rem /= s->geo.out[d];
        }
        int32_t acc = 0;
        for (int64_t k = 0; k < s->k_count; ++k) {
          int64_t krem = k, off = 0;
          for (int64_t d = sp - 1; d >= 0; --d) {
            kc[d] = krem % kdims[d];
            krem /= kdims[d];
          }
          bool inside = true;
          for (int64_t d = 0; d < sp && inside; ++d) {
            int64_t pos = oc[d] * s->attrs.strides[d] - s->geo.pad_begin[d] + kc[d] * s->attrs.dilations[d];
            inside = pos >= 0 && pos < s->geo.in[d];
            off += pos * in_strides[d];
          }
          // Padding holds the zero point, so it contributes nothing after subtraction.
          if (!inside) continue;
          for (int64_t c = 0; c < cg; ++c) {
            int32_t xv = read8(x, (n * s->c + (m / mg) * cg + c) * s->in_count + off) - x_zp;
            int32_t wv = read8(w, (m * cg + c) * s->k_count + k) - w_zp[m];
            acc += xv * wv;
          }
        }
        y[(n * s->m + m) * s->out_count + o] = acc;
      }
  return Status();
}

}  // namespace kiln::ops::conv
