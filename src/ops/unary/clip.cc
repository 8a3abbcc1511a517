// Clip (y = min(max(x, lo), hi)), Shrink, and the predicate / bitwise unary ops:
// IsNaN, IsInf, Not, BitwiseNot.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/unary/unary.h"

namespace kiln::ops {
namespace {

// Opset < 11 takes the bounds as float attributes (float types only); from
// opset 11 they are optional scalar inputs, and opset 12 added integer types.
Status infer_clip(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, ctx.opset() < 11 ? kTypesFloat : kTypesNumeric));
  if (ctx.opset() >= 11) {
    KILN_RETURN_IF_ERROR(check_same_dtypes(ctx, 0, 3));
    for (size_t i = 1; i < 3; ++i) {
      if (!ctx.has_input(i)) continue;
      const Shape* s = ctx.input_shape(i);
      int64_t v = s ? shape_volume(*s) : -1;
      if (v >= 0 && v != 1)
        return ctx.error(std::string(i == 1 ? "min" : "max") + " must be a scalar, got shape " + shape_to_string(*s));
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input(0).shape);
  return Status();
}

template <typename T>
void clip_loop(const T* x, T* y, int64_t n, compute_t<T> lo, compute_t<T> hi) {
  using C = compute_t<T>;
  for (int64_t i = 0; i < n; ++i) {
    C v = static_cast<C>(x[i]);
    // Written so NaN passes through: comparisons with NaN are false.
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    y[i] = T(v);
  }
}

Status clip_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_RETURN_IF_ERROR(check_same_size(ctx, x, y));
  KILN_DISPATCH_NUMERIC(x.dtype(), T, {
    using C = compute_t<T>;
    C lo = std::numeric_limits<C>::lowest();
    C hi = std::numeric_limits<C>::max();
    if (ctx.opset() < 11) {
      if constexpr (std::is_floating_point_v<C>) {
        lo = static_cast<C>(ctx.attrs().get_float("min", -std::numeric_limits<float>::infinity()));
        hi = static_cast<C>(ctx.attrs().get_float("max", std::numeric_limits<float>::infinity()));
      }
    } else {
      for (size_t i = 1; i < 3; ++i) {
        if (!ctx.has_input(i)) continue;
        const Tensor& b = ctx.input(i);
        if (b.dtype() != x.dtype() || b.numel() != 1) return ctx.error("min/max must be scalars of the input's dtype");
        (i == 1 ? lo : hi) = static_cast<C>(b.data_as<T>()[0]);
      }
    }
    // min > max gives max everywhere, as in the spec.
    clip_loop(x.data_as<T>(), y.data_as<T>(), x.numel(), lo, hi);
  });
  return Status();
}

struct Shrink {
  static constexpr uint32_t kTypes = kTypesNumeric;
  double lambd, bias;
  explicit Shrink(const ir::Attributes& a) : lambd(a.get_float("lambd", 0.5f)), bias(a.get_float("bias", 0.0f)) {}
  template <class C>
  C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>) {
      if (x < C(-lambd)) return x + C(bias);
      if (x > C(lambd)) return x - C(bias);
      return C(0);
    } else {
      // Integers: the float arithmetic of the spec, truncated back.
      double v = static_cast<double>(x);
      if (v < -lambd) return convert_value<C>(v + bias);
      if (v > lambd) return convert_value<C>(v - bias);
      return C(0);
    }
  }
};

struct BitwiseNot {
  static constexpr uint32_t kTypes = kTypesInt;
  template <class C>
  C operator()(C x) const {
    return static_cast<C>(~x);
  }
};

// Float in, bool out.
Status infer_float_predicate(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, kTypesFloat));
  ctx.set_output(0, DataType::kBool, ctx.input(0).shape);
  return Status();
}

Status isnan_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(check_same_size(ctx, x, ctx.output(0)));
  bool* y = ctx.output(0).data_as<bool>();
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* px = x.data_as<T>();
    for (int64_t i = 0; i < x.numel(); ++i) y[i] = std::isnan(static_cast<compute_t<T>>(px[i]));
  });
  return Status();
}

Status isinf_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(check_same_size(ctx, x, ctx.output(0)));
  bool* y = ctx.output(0).data_as<bool>();
  const bool neg = ctx.attrs().get_int("detect_negative", 1) != 0;
  const bool pos = ctx.attrs().get_int("detect_positive", 1) != 0;
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* px = x.data_as<T>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      auto v = static_cast<compute_t<T>>(px[i]);
      y[i] = std::isinf(v) && (v > 0 ? pos : neg);
    }
  });
  return Status();
}

Status infer_not(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, kTypesBool));
  ctx.set_output(0, DataType::kBool, ctx.input(0).shape);
  return Status();
}

Status not_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_RETURN_IF_ERROR(check_same_size(ctx, x, ctx.output(0)));
  const bool* px = x.data_as<bool>();
  bool* py = ctx.output(0).data_as<bool>();
  for (int64_t i = 0; i < x.numel(); ++i) py[i] = !px[i];
  return Status();
}

}  // namespace

void register_unary_misc_ops(OpRegistry& r) {
  r.add({.name = "Clip", .infer = infer_clip, .ref = clip_kernel});
  r.add(unary_op_def<Shrink>("Shrink"));
  r.add(unary_op_def<BitwiseNot>("BitwiseNot"));
  r.add({.name = "IsNaN", .infer = infer_float_predicate, .ref = isnan_kernel});
  r.add({.name = "IsInf", .infer = infer_float_predicate, .ref = isinf_kernel});
  r.add({.name = "Not", .infer = infer_not, .ref = not_kernel});
}

}  // namespace kiln::ops
