// ConvTranspose: the gradient of Conv w.r.t. its input — every input pixel
// scatters kernel-weighted copies into the (strided, dilated) output.
#include <type_traits>

#include "base/dispatch.h"
#include "ops/conv/conv_internal.h"

namespace kiln::ops::conv {

Dims ConvTransposeShape::out_dims() const {
  Dims d{n, m};
  d.insert(d.end(), out.begin(), out.end());
  return d;
}

namespace {

// Python-style floor division: the ONNX reference splits negative total padding this way.
int64_t floor_div2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

struct TransposeAttrs {
  window::WindowAttrs w;
  std::vector<int64_t> output_padding;
  std::vector<int64_t> output_shape;  ///< spatial only; empty when not given
};

std::string read_transpose_attrs(const ir::Attributes& attrs, int64_t spatial, const std::vector<int64_t>& kernel,
                                 TransposeAttrs& t) {
  std::string err = window::read_window_attrs(attrs, spatial, &kernel, t.w);
  if (!err.empty()) return err;
  t.output_padding = attrs.get_ints("output_padding", std::vector<int64_t>(spatial, 0));
  if (static_cast<int64_t>(t.output_padding.size()) != spatial)
    return "output_padding must have one entry per spatial dim";
  for (int64_t p : t.output_padding)
    if (p < 0) return "output_padding must be >= 0";
  t.output_shape = attrs.get_ints("output_shape");
  if (!t.output_shape.empty()) {
    // Exporters write either the spatial sizes or the full [N, C, spatial...] shape.
    if (static_cast<int64_t>(t.output_shape.size()) == spatial + 2)
      t.output_shape.erase(t.output_shape.begin(), t.output_shape.begin() + 2);
    if (static_cast<int64_t>(t.output_shape.size()) != spatial)
      return "output_shape must have one entry per spatial dim";
    for (int64_t o : t.output_shape)
      if (o < 0) return "output_shape entries must be >= 0";
  }
  return "";
}

// Output size and leading pad of dim i for input size `in`.
void transpose_dim(const TransposeAttrs& t, int64_t i, int64_t in, int64_t& out, int64_t& pad_begin) {
  const window::WindowAttrs& w = t.w;
  const int64_t ext = window::window_extent(w, i), s = w.strides[i];
  const int64_t full = s * (in - 1) + t.output_padding[i] + ext;
  const bool upper = w.auto_pad == window::AutoPad::kSameUpper;
  if (!t.output_shape.empty() || upper || w.auto_pad == window::AutoPad::kSameLower) {
    out = !t.output_shape.empty() ? t.output_shape[i] : in * s;
    int64_t total = full - out;
    pad_begin = upper ? floor_div2(total) : total - floor_div2(total);
  } else if (w.auto_pad == window::AutoPad::kValid) {
    out = full;
    pad_begin = 0;
  } else {
    pad_begin = w.pads[i];
    out = full - w.pads[i] - w.pads[i + w.spatial];
  }
}

template <typename T>
void conv_transpose_typed(const ConvTransposeShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t sp = s.attrs.spatial, cg = s.c / s.group, mg = s.m / s.group;
  const auto out_strides = strides_of(s.out);
  Dims kdims(s.attrs.kernel.begin(), s.attrs.kernel.end());
  std::vector<double> acc(static_cast<size_t>(s.out_count));
  std::vector<int64_t> ic(sp), kc(sp);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t m = 0; m < s.m; ++m) {
      const int64_t g = m / mg, mo = m % mg;
      std::fill(acc.begin(), acc.end(), b ? static_cast<double>(b[m]) : 0.0);
      for (int64_t c = 0; c < cg; ++c) {
        const int64_t ci = g * cg + c;
        const T* xp = x + (n * s.c + ci) * s.in_count;
        const T* wp = w + (ci * mg + mo) * s.k_count;
        for (int64_t i = 0; i < s.in_count; ++i) {
          int64_t rem = i;
          for (int64_t d = sp - 1; d >= 0; --d) {
            ic[d] = rem % s.in[d];
            rem /= s.in[d];
          }
          const double xv = static_cast<double>(xp[i]);
          for (int64_t k = 0; k < s.k_count; ++k) {
            int64_t krem = k, off = 0;
            bool inside = true;
            for (int64_t d = sp - 1; d >= 0; --d) {
              kc[d] = krem % kdims[d];
              krem /= kdims[d];
            }
            for (int64_t d = 0; d < sp && inside; ++d) {
              int64_t pos = ic[d] * s.attrs.strides[d] - s.pad_begin[d] + kc[d] * s.attrs.dilations[d];
              inside = pos >= 0 && pos < s.out[d];
              off += pos * out_strides[d];
            }
            if (inside) acc[off] += xv * static_cast<double>(wp[k]);
          }
        }
      }
      T* yp = y + (n * s.m + m) * s.out_count;
      for (int64_t o = 0; o < s.out_count; ++o) {
        if constexpr (std::is_same_v<T, double>) yp[o] = acc[o];
        else yp[o] = static_cast<T>(static_cast<float>(acc[o]));
      }
    }
}

}  // namespace

Result<ConvTransposeShape> conv_transpose_shape(const ir::Attributes& attrs, const Dims& x, const Dims& w,
                                                const Dims* bias) {
  auto fail = [](const std::string& m) { return Status(ErrorCode::kInvalidArgument, m); };
  if (x.size() < 3) return fail("X must have rank >= 3 ([N, C, spatial...]), got " + dims_to_string(x));
  if (w.size() != x.size())
    return fail("W " + dims_to_string(w) + " must have the same rank as X " + dims_to_string(x));
  ConvTransposeShape s;
  s.group = attrs.get_int("group", 1);
  if (s.group < 1) return fail("group must be >= 1");
  s.n = x[0];
  s.c = x[1];
  if (w[0] != s.c)
    return fail("X has " + std::to_string(s.c) + " channels but W " + dims_to_string(w) + " expects " +
                std::to_string(w[0]));
  if (s.c % s.group != 0) return fail("input channels are not divisible by group");
  s.m = w[1] * s.group;
  if (bias && (bias->size() != 1 || (*bias)[0] != s.m))
    return fail("bias " + dims_to_string(*bias) + " must be [" + std::to_string(s.m) + "]");
  const int64_t spatial = static_cast<int64_t>(x.size()) - 2;
  TransposeAttrs t;
  std::string err = read_transpose_attrs(attrs, spatial, std::vector<int64_t>(w.begin() + 2, w.end()), t);
  if (!err.empty()) return fail(err);
  s.attrs = t.w;
  s.in.assign(x.begin() + 2, x.end());
  s.out.resize(spatial);
  s.pad_begin.resize(spatial);
  for (int64_t i = 0; i < spatial; ++i) {
    transpose_dim(t, i, s.in[i], s.out[i], s.pad_begin[i]);
    if (s.out[i] < 0) return fail("spatial dim " + std::to_string(i) + " of the output would be negative");
    s.in_count *= s.in[i];
    s.out_count *= s.out[i];
    s.k_count *= s.attrs.kernel[i];
  }
  return s;
}

Status infer_conv_transpose(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs X and W");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t))
    return ctx.unsupported(std::string("ConvTranspose on ") + dtype_name(t));
  const Shape* x = ctx.input_shape(0);
  const Shape* w = ctx.input_shape(1);
  if (x && x->size() < 3) return ctx.error("X must have rank >= 3, got " + shape_to_string(*x));
  if (w && w->size() < 3) return ctx.error("W must have rank >= 3, got " + shape_to_string(*w));
  if (x && w && x->size() != w->size()) return ctx.error("X and W ranks differ");
  if (!x && !w) {
    ctx.set_output(0, t, std::nullopt);
    return Status();
  }
  const int64_t spatial = static_cast<int64_t>(x ? x->size() : w->size()) - 2;
  int64_t group = ctx.attrs().get_int("group", 1);
  if (group < 1) return ctx.error("group must be >= 1");
  if (x && w && (*x)[1].known() && (*w)[0].known() && (*x)[1].value != (*w)[0].value)
    return ctx.error("X has " + (*x)[1].to_string() + " channels but W " + shape_to_string(*w) + " expects " +
                     (*w)[0].to_string());
  Dim m = w ? dim_mul((*w)[1], Dim(group)) : Dim::unknown();
  std::vector<int64_t> kernel(spatial, -1);
  if (w)
    for (int64_t i = 0; i < spatial; ++i) kernel[i] = (*w)[i + 2].known() ? (*w)[i + 2].value : -1;
  bool kernel_known = ctx.attrs().has("kernel_shape") ||
                      std::all_of(kernel.begin(), kernel.end(), [](int64_t k) { return k >= 0; });
  Shape out{x ? (*x)[0] : Dim::unknown(), m};
  TransposeAttrs ta;
  if (kernel_known) {
    std::string err = read_transpose_attrs(ctx.attrs(), spatial, kernel, ta);
    if (!err.empty()) return ctx.error(err);
  }
  for (int64_t i = 0; i < spatial; ++i) {
    Dim in = x ? (*x)[i + 2] : Dim::unknown();
    if (kernel_known && !ta.output_shape.empty()) {
      out.push_back(Dim(ta.output_shape[i]));
    } else if (kernel_known && in.known()) {
      int64_t o, pb;
      transpose_dim(ta, i, in.value, o, pb);
      if (o < 0) return ctx.error("spatial dim " + std::to_string(i) + " of the output would be negative");
      out.push_back(Dim(o));
    } else {
      out.push_back(Dim::unknown());
    }
  }
  ctx.set_output(0, t, out);
  return Status();
}

Status ref_conv_transpose(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor* b = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (w.dtype() != x.dtype() || (b && b->dtype() != x.dtype())) return ctx.error("X, W and B dtypes differ");
  auto s = conv_transpose_shape(ctx.attrs(), x.dims(), w.dims(), b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T,
                      conv_transpose_typed<T>(*s, x.data_as<T>(), w.data_as<T>(), b ? b->data_as<T>() : nullptr,
                                              y.data_as<T>()));
  return Status();
}

}  // namespace kiln::ops::conv
