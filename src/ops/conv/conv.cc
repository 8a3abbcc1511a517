// Conv: N-D grouped, strided, dilated, padded cross-correlation with optional
// bias. Also registers the rest of the conv family.
#include <type_traits>

#include "base/dispatch.h"
#include "ops/conv/conv_internal.h"

namespace kiln::ops::conv {

Dims ConvShape::out_dims() const {
  Dims d{n, m};
  d.insert(d.end(), geo.out.begin(), geo.out.end());
  return d;
}

Result<ConvShape> conv_shape(const ir::Attributes& attrs, const Dims& x, const Dims& w, const Dims* bias) {
  auto fail = [](const std::string& m) { return Status(ErrorCode::kInvalidArgument, m); };
  if (x.size() < 3) return fail("X must have rank >= 3 ([N, C, spatial...]), got " + dims_to_string(x));
  if (w.size() != x.size())
    return fail("W " + dims_to_string(w) + " must have the same rank as X " + dims_to_string(x));
  ConvShape s;
  s.group = attrs.get_int("group", 1);
  if (s.group < 1) return fail("group must be >= 1");
  s.n = x[0];
  s.c = x[1];
  s.m = w[0];
  if (s.c != w[1] * s.group)
    return fail("X has " + std::to_string(s.c) + " channels but W " + dims_to_string(w) + " with group " +
                std::to_string(s.group) + " expects " + std::to_string(w[1] * s.group));
  if (s.m % s.group != 0)
    return fail("W's output channels (" + std::to_string(s.m) + ") are not divisible by group " +
                std::to_string(s.group));
  if (bias && (bias->size() != 1 || (*bias)[0] != s.m))
    return fail("bias " + dims_to_string(*bias) + " must be [" + std::to_string(s.m) + "]");
  const int64_t spatial = static_cast<int64_t>(x.size()) - 2;
  std::vector<int64_t> kernel(w.begin() + 2, w.end());
  std::string err = window::read_window_attrs(attrs, spatial, &kernel, s.attrs);
  if (!err.empty()) return fail(err);
  err = window::compute_geometry(s.attrs, Dims(x.begin() + 2, x.end()), s.geo);
  if (!err.empty()) return fail(err);
  for (int64_t i = 0; i < spatial; ++i) {
    s.in_count *= s.geo.in[i];
    s.out_count *= s.geo.out[i];
    s.k_count *= s.attrs.kernel[i];
  }
  return s;
}

Status infer_conv_output(InferContext& ctx, DataType out_dtype, bool bias_input) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs X and W");
  const Shape* x = ctx.input_shape(0);
  const Shape* w = ctx.input_shape(1);
  if (x && x->size() < 3) return ctx.error("X must have rank >= 3 ([N, C, spatial...]), got " + shape_to_string(*x));
  if (w && w->size() < 3) return ctx.error("W must have rank >= 3, got " + shape_to_string(*w));
  if (x && w && x->size() != w->size())
    return ctx.error("W " + shape_to_string(*w) + " must have the same rank as X " + shape_to_string(*x));
  if (!x && !w) {
    ctx.set_output(0, out_dtype, std::nullopt);
    return Status();
  }
  const size_t rank = x ? x->size() : w->size();
  const int64_t spatial = static_cast<int64_t>(rank) - 2;
  int64_t group = ctx.attrs().get_int("group", 1);
  if (group < 1) return ctx.error("group must be >= 1");
  if (x && w && (*x)[1].known() && (*w)[1].known() && (*x)[1].value != (*w)[1].value * group)
    return ctx.error("X has " + (*x)[1].to_string() + " channels but W " + shape_to_string(*w) + " with group " +
                     std::to_string(group) + " expects " + std::to_string((*w)[1].value * group));
  if (w && (*w)[0].known() && (*w)[0].value % group != 0)
    return ctx.error("W's output channels are not divisible by group");
  Dim m = w ? (*w)[0] : Dim::unknown();
  if (bias_input && ctx.has_input(2) && ctx.input_shape(2)) {
    const Shape& b = *ctx.input_shape(2);
    if (b.size() != 1 || (b[0].known() && m.known() && b[0].value != m.value))
      return ctx.error("bias " + shape_to_string(b) + " must be [M] with M = " + m.to_string());
  }
  std::vector<int64_t> kernel(spatial, -1);
  if (w)
    for (int64_t i = 0; i < spatial; ++i) kernel[i] = (*w)[i + 2].known() ? (*w)[i + 2].value : -1;
  bool kernel_known = ctx.attrs().has("kernel_shape") ||
                      std::all_of(kernel.begin(), kernel.end(), [](int64_t k) { return k >= 0; });
  Shape out{x ? (*x)[0] : Dim::unknown(), m};
  if (kernel_known) {
    window::WindowAttrs wa;
    std::string err = window::read_window_attrs(ctx.attrs(), spatial, &kernel, wa);
    if (!err.empty()) return ctx.error(err);
    for (int64_t i = 0; i < spatial; ++i) {
      Dim in = x ? (*x)[i + 2] : Dim::unknown();
      if (in.known() && window::output_size(wa, i, in.value) < 0)
        return ctx.error("kernel of extent " + std::to_string(window::window_extent(wa, i)) +
                         " does not fit spatial dim " + std::to_string(i) + " of size " + in.to_string());
      out.push_back(window::output_dim(wa, i, in));
    }
  } else {
    for (int64_t i = 0; i < spatial; ++i) out.push_back(Dim::unknown());
  }
  ctx.set_output(0, out_dtype, out);
  return Status();
}

namespace {

// Spatial coordinates of every flat index of `dims`, row-major.
std::vector<int64_t> coords_of(const Dims& dims) {
  int64_t count = dims_volume(dims), r = static_cast<int64_t>(dims.size());
  std::vector<int64_t> c(static_cast<size_t>(count * r));
  for (int64_t i = 0; i < count; ++i) {
    int64_t rem = i;
    for (int64_t d = r - 1; d >= 0; --d) {
      c[i * r + d] = rem % dims[d];
      rem /= dims[d];
    }
  }
  return c;
}

template <typename T>
void conv_typed(const ConvShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t sp = s.attrs.spatial, cg = s.c / s.group, mg = s.m / s.group;
  const auto oc = coords_of(s.geo.out);
  const auto kc = coords_of(Dims(s.attrs.kernel.begin(), s.attrs.kernel.end()));
  const auto in_strides = strides_of(s.geo.in);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t m = 0; m < s.m; ++m) {
      const int64_t g = m / mg;
      for (int64_t o = 0; o < s.out_count; ++o) {
        double acc = b ? static_cast<double>(b[m]) : 0.0;
        for (int64_t k = 0; k < s.k_count; ++k) {
          // Input offset of this tap, or skip when it falls in the padding.
          int64_t off = 0;
          bool inside = true;
          for (int64_t d = 0; d < sp && inside; ++d) {
            int64_t pos = oc[o * sp + d] * s.attrs.strides[d] - s.geo.pad_begin[d] + kc[k * sp + d] * s.attrs.dilations[d];
            inside = pos >= 0 && pos < s.geo.in[d];
            off += pos * in_strides[d];
          }
          if (!inside) continue;
          for (int64_t c = 0; c < cg; ++c) {
            const T xv = x[(n * s.c + g * cg + c) * s.in_count + off];
            const T wv = w[(m * cg + c) * s.k_count + k];
            acc += static_cast<double>(xv) * static_cast<double>(wv);
          }
        }
        T* out = y + (n * s.m + m) * s.out_count + o;
        if constexpr (std::is_same_v<T, double>) *out = acc;
        else *out = static_cast<T>(static_cast<float>(acc));
      }
    }
}

}  // namespace

Status infer_conv(InferContext& ctx) {
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(std::string("Conv on ") + dtype_name(t));
  if (ctx.input_dtype(1) != DataType::kUndefined && t != DataType::kUndefined && ctx.input_dtype(1) != t)
    return ctx.error("X and W dtypes differ");
  return infer_conv_output(ctx, t, true);
}

Status ref_conv(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor* b = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (w.dtype() != x.dtype() || (b && b->dtype() != x.dtype())) return ctx.error("X, W and B dtypes differ");
  auto s = conv_shape(ctx.attrs(), x.dims(), w.dims(), b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T,
                      conv_typed<T>(*s, x.data_as<T>(), w.data_as<T>(), b ? b->data_as<T>() : nullptr,
                                    y.data_as<T>()));
  return Status();
}

}  // namespace kiln::ops::conv

namespace kiln::ops {

void register_conv_ops(OpRegistry& r) {
  using namespace conv;
  std::vector<FastKernel> fast;
#ifdef KILN_HAVE_DNNL
  fast.push_back({"cpu.onednn", onednn_conv, applies_onednn_conv});
#endif
  fast.push_back({"cpu.im2col_gemm", cpu_im2col_gemm, applies_im2col_gemm});
  r.add({.name = "Conv", .infer = infer_conv, .ref = ref_conv, .fast = fast});
  r.add({.name = "ConvTranspose",
         .infer = infer_conv_transpose,
         .ref = ref_conv_transpose,
         .fast = {{"cpu.gemm_col2im", cpu_gemm_col2im, applies_gemm_col2im}}});
  r.add({.name = "ConvInteger", .infer = infer_conv_integer, .ref = ref_conv_integer, .min_opset = 10});
  register_fused_conv(r);
}

}  // namespace kiln::ops
