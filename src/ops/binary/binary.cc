// Broadcasting arithmetic: Add, Sub, Mul, Div, Mod, Pow, PRelu, BitShift.
#include "ops/binary/binary.h"

#include "ops/binary/div_mod.h"

#include <cmath>

namespace kiln::ops {
namespace {

struct Add {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    return wrap_add(a, b);
  }
};

struct Sub {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    return wrap_sub(a, b);
  }
};

struct Mul {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    return wrap_mul(a, b);
  }
};

// Div and Mod's scalar rules live in div_mod.h, shared with the CUDA kernels.
struct Div {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    return div_rule(a, b);
  }
};

struct Mod {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  bool fmod;
  explicit Mod(const ir::Attributes& a) : fmod(a.get_int("fmod", 0) != 0) {}
  static Status validate(const InferContext& ctx) {
    int64_t f = ctx.attrs().get_int("fmod", 0);
    if (f != 0 && f != 1) return ctx.error("fmod must be 0 or 1, got " + std::to_string(f));
    return Status();
  }
  template <class C>
  C operator()(C a, C b) const {
    return mod_rule(a, b, fmod);
  }
};

// Opset 16 added integer slopes; slope broadcasts against X.
struct PRelu {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C x, C slope) const {
    return x < C(0) ? wrap_mul(slope, x) : x;
  }
};

// Shifts by a negative amount or by >= the bit width give 0 (or -1 for a right
// shift of a negative signed value), as the ONNX reference does.
struct BitShift {
  static constexpr uint32_t kTypes = kTypesInt;
  static constexpr bool kBoolOut = false;
  bool left;
  explicit BitShift(const ir::Attributes& a) : left(a.get_string("direction", "") == "LEFT") {}
  static Status validate(const InferContext& ctx) {
    std::string d = ctx.attrs().get_string("direction", "");
    if (d != "LEFT" && d != "RIGHT") return ctx.error("direction must be \"LEFT\" or \"RIGHT\", got \"" + d + "\"");
    return Status();
  }
  template <class C>
  C operator()(C a, C b) const {
    constexpr int kWidth = static_cast<int>(sizeof(C) * 8);
    bool in_range = b < static_cast<C>(kWidth);
    if constexpr (std::is_signed_v<C>) in_range = in_range && b >= 0;
    if (left) return in_range ? static_cast<C>(static_cast<wrap_t<C>>(a) << b) : C(0);
    if (in_range) return static_cast<C>(a >> b);
    if constexpr (std::is_signed_v<C>) return a < 0 ? C(-1) : C(0);
    return C(0);
  }
};

// Pow: the exponent may have another dtype than the base (opset 12+). It is read
// as double; integer ** integer stays exact, every other mix computes in double.
template <typename T>
T int_pow(T base, int64_t e) {
  if (e < 0) {
    if (base == 1) return 1;
    if constexpr (std::is_signed_v<T>)
      if (base == -1) return (e & 1) ? T(-1) : T(1);
    return 0;
  }
  T r = 1;
  while (e) {
    if (e & 1) r = wrap_mul(r, base);
    base = wrap_mul(base, base);
    e >>= 1;
  }
  return r;
}

Status infer_pow(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("expects 2 inputs");
  KILN_RETURN_IF_ERROR(check_legacy_broadcast(ctx));
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, kTypesNumeric));
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 1, kTypesNumeric));
  std::optional<Shape> shape;
  KILN_RETURN_IF_ERROR(infer_broadcast_shape(ctx, {0, 1}, shape));
  ctx.set_output(0, ctx.input_dtype(0), std::move(shape));
  return Status();
}

template <bool kFast>
Status pow_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Tensor& y = ctx.output(0);
  KILN_RETURN_IF_ERROR(check_broadcast_to(ctx, {&a, &b}, y));
  if (y.dtype() != a.dtype()) return ctx.error("output dtype does not match the base", ErrorCode::kInternal);
  if (!(type_set_of(b.dtype()) & kTypesNumeric)) return ctx.error("the exponent must be numeric");
  const bool int_exponent = (type_set_of(b.dtype()) & kTypesInt) != 0;
  Tensor e = Tensor::empty(DataType::kFloat64, b.dims());
  for (int64_t i = 0; i < b.numel(); ++i) e.data_as<double>()[i] = b.get_as_double(i);
  KILN_DISPATCH_NUMERIC(a.dtype(), T, {
    auto f = [int_exponent](T x, double p) -> T {
      if constexpr (kIsInt<T>) {
        if (int_exponent) return int_pow(x, convert_value<int64_t>(p));
      }
      return convert_value<T>(std::pow(static_cast<double>(static_cast<compute_t<T>>(x)), p));
    };
    if constexpr (kFast)
      binary_fast_loop<T, double, T>(a, e, y, f);
    else
      binary_ref_loop<T, double, T>(a, e, y, f);
  });
  return Status();
}

}  // namespace

void register_arith_ops(OpRegistry& r) {
  r.add(binary_op_def<Add>("Add"));
  r.add(binary_op_def<Sub>("Sub"));
  r.add(binary_op_def<Mul>("Mul"));
  r.add(binary_op_def<Div>("Div"));
  r.add(binary_op_def<Mod>("Mod"));
  r.add(binary_op_def<PRelu>("PRelu"));
  r.add(binary_op_def<BitShift>("BitShift"));
  r.add({.name = "Pow",
         .infer = infer_pow,
         .ref = pow_kernel<false>,
         .fast = {{kEltwiseKernel, pow_kernel<true>, nullptr}}});
}

void register_binary_ops(OpRegistry& r) {
  register_arith_ops(r);
  register_logical_ops(r);
  register_variadic_ops(r);
}

}  // namespace kiln::ops
