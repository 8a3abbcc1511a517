// Broadcasting binary ops are functors over the compute type; these templates
// turn one into inference, a reference kernel and the fast "cpu.eltwise" kernel.
#pragma once

#include <string>

#include "ops/binary/broadcast.h"

namespace kiln::ops {

void register_arith_ops(OpRegistry& r);
void register_logical_ops(OpRegistry& r);
void register_variadic_ops(OpRegistry& r);

/// Name of the fast elementwise kernels.
inline constexpr const char* kEltwiseKernel = "cpu.eltwise";

/// Output element type of functor Op on inputs of type T: bool for comparisons.
template <class Op, typename T>
using binary_out_t = std::conditional_t<Op::kBoolOut, bool, T>;

template <class Op>
Op make_binary_op(const ir::Attributes& attrs) {
  if constexpr (std::is_constructible_v<Op, const ir::Attributes&>) return Op(attrs);
  else return Op{};
}

/// Both inputs share a dtype in Op::kTypes; output is their broadcast.
template <class Op>
Status infer_binary(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("expects 2 inputs");
  KILN_RETURN_IF_ERROR(check_legacy_broadcast(ctx));
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, Op::kTypes));
  KILN_RETURN_IF_ERROR(check_same_dtypes(ctx, 0, 2));
  if constexpr (requires { Op::validate(ctx); }) KILN_RETURN_IF_ERROR(Op::validate(ctx));
  std::optional<Shape> shape;
  KILN_RETURN_IF_ERROR(infer_broadcast_shape(ctx, {0, 1}, shape));
  ctx.set_output(0, Op::kBoolOut ? DataType::kBool : ctx.input_dtype(0), std::move(shape));
  return Status();
}

template <class Op, bool kFast>
Status binary_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Tensor& y = ctx.output(0);
  if (a.dtype() != b.dtype()) return ctx.error("inputs must share one dtype");
  if (y.dtype() != (Op::kBoolOut ? DataType::kBool : a.dtype()))
    return ctx.error("output dtype does not match the op", ErrorCode::kInternal);
  KILN_RETURN_IF_ERROR(check_broadcast_to(ctx, {&a, &b}, y));
  const Op op = make_binary_op<Op>(ctx.attrs());
  KILN_DISPATCH_ALL(a.dtype(), T, {
    if constexpr (type_in_set<T>(Op::kTypes)) {
      using C = compute_t<T>;
      using O = binary_out_t<Op, T>;
      auto f = [&op](T x, T z) { return O(op(static_cast<C>(x), static_cast<C>(z))); };
      if constexpr (kFast) binary_fast_loop<T, T, O>(a, b, y, f);
      else binary_ref_loop<T, T, O>(a, b, y, f);
    } else {
      return ctx.error(std::string("dtype ") + dtype_name(a.dtype()) + " is not supported", ErrorCode::kUnsupported);
    }
  });
  return Status();
}

template <class Op>
OpDef binary_op_def(const char* name) {
  OpDef d;
  d.name = name;
  d.infer = infer_binary<Op>;
  d.ref = binary_kernel<Op, false>;
  d.fast.push_back({kEltwiseKernel, binary_kernel<Op, true>, nullptr});
  return d;
}

/// Integer + - * with two's-complement wrap-around (no signed overflow UB).
template <typename C>
C wrap_add(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(wrap_t<C>(a) + wrap_t<C>(b));
  else return a + b;
}
template <typename C>
C wrap_sub(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(wrap_t<C>(a) - wrap_t<C>(b));
  else return a - b;
}
template <typename C>
C wrap_mul(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(wrap_t<C>(a) * wrap_t<C>(b));
  else return a * b;
}

}  // namespace kiln::ops
