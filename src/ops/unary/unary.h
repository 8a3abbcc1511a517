// Pointwise unary ops are small functors over the compute type; these templates
// turn one into an op's inference function and kernel loop.
#pragma once

#include <string>

#include "ops/unary/eltwise.h"

namespace kiln::ops {

void register_unary_math_ops(OpRegistry& r);
void register_activation_ops(OpRegistry& r);
void register_unary_misc_ops(OpRegistry& r);

/// Builds the functor from the node's attributes (or default-constructs it).
template <class Op>
Op make_unary_op(const ir::Attributes& attrs) {
  if constexpr (std::is_constructible_v<Op, const ir::Attributes&>) return Op(attrs);
  else return Op{};
}

/// Inference for a pointwise op: output has input 0's dtype and shape. Runs
/// Op::validate(ctx) first when the op defines it (attribute checks).
template <class Op>
Status infer_unary(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, Op::kTypes));
  if constexpr (requires { Op::validate(ctx); }) KILN_RETURN_IF_ERROR(Op::validate(ctx));
  ctx.set_output(0, ctx.input_dtype(0), ctx.input(0).shape);
  return Status();
}

/// y[i] = op(x[i]), computed in compute_t<T> and stored back as T.
template <class Op, typename T>
void map_unary(const Op& op, const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = T(op(static_cast<compute_t<T>>(x[i])));
}

/// Guards a kernel against an output that does not match its input's size.
inline Status check_same_size(const KernelContext& ctx, const Tensor& x, const Tensor& y) {
  if (x.numel() != y.numel())
    return ctx.error(
        "output dims " + dims_to_string(y.dims()) + " do not match the input dims " + dims_to_string(x.dims()),
        ErrorCode::kInternal);
  return Status();
}

template <class Op>
Status unary_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_RETURN_IF_ERROR(check_same_size(ctx, x, y));
  if (y.dtype() != x.dtype()) return ctx.error("output dtype does not match the input", ErrorCode::kInternal);
  const Op op = make_unary_op<Op>(ctx.attrs());
  KILN_DISPATCH_ALL(x.dtype(), T, {
    if constexpr (type_in_set<T>(Op::kTypes)) {
      map_unary(op, x.data_as<T>(), y.data_as<T>(), x.numel());
    } else {
      return ctx.error(std::string("dtype ") + dtype_name(x.dtype()) + " is not supported", ErrorCode::kUnsupported);
    }
  });
  return Status();
}

/// The OpDef of a functor-defined pointwise op.
template <class Op>
OpDef unary_op_def(const char* name, const char* domain = "") {
  OpDef d;
  d.name = name;
  d.domain = domain;
  d.infer = infer_unary<Op>;
  d.ref = unary_kernel<Op>;
  return d;
}

/// -x with two's-complement wrap for integers (no overflow UB on the minimum).
template <typename C>
C negate(C x) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(wrap_t<C>(0) - static_cast<wrap_t<C>>(x));
  else return -x;
}

}  // namespace kiln::ops
