// Variadic broadcasting reductions over inputs: Max, Min, Sum, Mean
// (one or more inputs; y = x0 op x1 op ... folded left to right).
#include <cmath>
#include <cstring>

#include "ops/binary/binary.h"

namespace kiln::ops {
namespace {

// NaN propagates, as numpy's maximum/minimum do.
struct Max {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>)
      if (std::isnan(a) || std::isnan(b)) return a + b;
    return a < b ? b : a;
  }
};

struct Min {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>)
      if (std::isnan(a) || std::isnan(b)) return a + b;
    return b < a ? b : a;
  }
};

struct Sum {
  static constexpr uint32_t kTypes = kTypesNumeric;
  static constexpr bool kBoolOut = false;
  template <class C>
  C operator()(C a, C b) const {
    return wrap_add(a, b);
  }
};

struct Mean : Sum {
  static constexpr uint32_t kTypes = kTypesFloat;
};

template <class Op>
Status infer_variadic(InferContext& ctx) {
  if (ctx.num_inputs() == 0) return ctx.error("expects at least one input");
  std::vector<size_t> all;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is missing");
    all.push_back(i);
  }
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, Op::kTypes));
  KILN_RETURN_IF_ERROR(check_same_dtypes(ctx, 0, ctx.num_inputs()));
  std::optional<Shape> shape;
  KILN_RETURN_IF_ERROR(infer_broadcast_shape(ctx, all, shape));
  ctx.set_output(0, ctx.input_dtype(0), std::move(shape));
  return Status();
}

// y = x0 op x1 op ... left to right, in the compute type: 16-bit floats
// accumulate in a float buffer and round once at the end. From the second step
// the running result (already of the output's dims) is the left operand.
template <class Op, bool kFast, typename T>
void fold_inputs(const std::vector<const Tensor*>& ins, Tensor& y) {
  using A = compute_t<T>;
  const Op op;
  Tensor acc = std::is_same_v<A, T> ? y : Tensor::empty(dtype_of<A>(), y.dims());
  auto first = [&op](T x, T z) { return op(static_cast<A>(x), static_cast<A>(z)); };
  auto next = [&op](A x, T z) { return op(x, static_cast<A>(z)); };
  if constexpr (kFast) binary_fast_loop<T, T, A>(*ins[0], *ins[1], acc, first);
  else binary_ref_loop<T, T, A>(*ins[0], *ins[1], acc, first);
  for (size_t k = 2; k < ins.size(); ++k) {
    if constexpr (kFast) binary_fast_loop<A, T, A>(acc, *ins[k], acc, next);
    else binary_ref_loop<A, T, A>(acc, *ins[k], acc, next);
  }
  A* pa = acc.data_as<A>();
  if constexpr (std::is_same_v<Op, Mean>) {
    const A n = static_cast<A>(ins.size());
    for (int64_t i = 0; i < acc.numel(); ++i) pa[i] /= n;
  }
  if constexpr (!std::is_same_v<A, T>) {
    T* py = y.data_as<T>();
    for (int64_t i = 0; i < y.numel(); ++i) py[i] = T(pa[i]);
  }
}

template <class Op, bool kFast>
Status variadic_kernel(KernelContext& ctx) {
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is missing");
    ins.push_back(&ctx.input(i));
    if (ins.back()->dtype() != ins[0]->dtype()) return ctx.error("inputs must share one dtype");
  }
  if (ins.empty()) return ctx.error("expects at least one input");
  Tensor& y = ctx.output(0);
  if (y.dtype() != ins[0]->dtype()) return ctx.error("output dtype does not match the inputs", ErrorCode::kInternal);
  KILN_RETURN_IF_ERROR(check_broadcast_to(ctx, ins, y));
  if (ins.size() == 1) {
    if (y.nbytes()) std::memcpy(y.data(), ins[0]->data(), y.nbytes());
    return Status();
  }
  KILN_DISPATCH_NUMERIC(ins[0]->dtype(), T, {
    if constexpr (type_in_set<T>(Op::kTypes)) {
      fold_inputs<Op, kFast, T>(ins, y);
    } else {
      return ctx.error(std::string("dtype ") + dtype_name(ins[0]->dtype()) + " is not supported",
                       ErrorCode::kUnsupported);
    }
  });
  return Status();
}

template <class Op>
OpDef variadic_op_def(const char* name) {
  OpDef d;
  d.name = name;
  d.infer = infer_variadic<Op>;
  d.ref = variadic_kernel<Op, false>;
  d.fast.push_back({kEltwiseKernel, variadic_kernel<Op, true>, nullptr});
  return d;
}

}  // namespace

void register_variadic_ops(OpRegistry& r) {
  r.add(variadic_op_def<Max>("Max"));
  r.add(variadic_op_def<Min>("Min"));
  r.add(variadic_op_def<Sum>("Sum"));
  r.add(variadic_op_def<Mean>("Mean"));
}

}  // namespace kiln::ops
