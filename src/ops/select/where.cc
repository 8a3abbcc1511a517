// Where: y = condition ? x : y, broadcasting all three inputs; and kiln's
// WhereNonzero, the same with a condition of any integer or bool dtype read as
// "!= 0" (a Where whose condition was a Cast to bool, fuse_where_cast.cc).
#include <cstring>

#include "ops/binary/broadcast.h"
#include "ops/select/where_nonzero.h"

namespace kiln::ops {
namespace {

// Where's and WhereNonzero's inference: they differ in the condition dtypes they take.
Status infer_where_conditioned(InferContext& ctx, uint32_t cond_types) {
  if (!ctx.has_input(0) || !ctx.has_input(1) || !ctx.has_input(2)) return ctx.error("expects 3 inputs");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, cond_types));
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 1, kTypesAll));
  KILN_RETURN_IF_ERROR(check_same_dtypes(ctx, 1, 3));
  std::optional<Shape> shape;
  KILN_RETURN_IF_ERROR(infer_broadcast_shape(ctx, {0, 1, 2}, shape));
  ctx.set_output(0, ctx.input_dtype(1), std::move(shape));
  return Status();
}

Status infer_where(InferContext& ctx) { return infer_where_conditioned(ctx, kTypesBool); }
Status infer_where_nonzero(InferContext& ctx) { return infer_where_conditioned(ctx, kNonzeroCondTypes); }

Status check_where_inputs(const KernelContext& ctx, uint32_t cond_types) {
  const Tensor& c = ctx.input(0);
  if (!(type_set_of(c.dtype()) & cond_types))
    return ctx.error(std::string("condition must be ") + (cond_types == kTypesBool ? "bool" : "an integer or bool") +
                     ", not " + dtype_name(c.dtype()));
  if (ctx.input(1).dtype() != ctx.input(2).dtype()) return ctx.error("X and Y must share one dtype");
  if (dtype_size(ctx.input(1).dtype()) == 0)
    return ctx.error(std::string("dtype ") + dtype_name(ctx.input(1).dtype()) + " is not supported",
                     ErrorCode::kUnsupported);
  return Status();
}

// Where only moves elements, so it works on same-sized unsigned words. The condition is
// read as "!= 0" (a bool's 0/1; WhereNonzero's integers, none of which converts to 0).
template <typename W>
void where_ref_loop(const Tensor& c, const Tensor& x, const Tensor& y, Tensor& out) {
  const W* px = x.data_as<W>();
  const W* py = y.data_as<W>();
  W* po = out.data_as<W>();
  const Dims& od = out.dims();
  MultiIndex it(od,
                {broadcast_strides(c.dims(), od), broadcast_strides(x.dims(), od), broadcast_strides(y.dims(), od)});
  for (int64_t i = 0; i < out.numel(); ++i, it.next())
    po[i] = c.get_as_double(it.offset(0)) != 0 ? px[it.offset(1)] : py[it.offset(2)];
}

// One inner run of the fast loop; each operand's stride is 0 (held) or 1. The
// condition is read as bytes and both values loaded unconditionally so the
// compiler can vectorise the choice as a blend.
template <typename W, bool kC, bool kX, bool kY>
void where_run(const uint8_t* c, const W* x, const W* y, W* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const W a = x[kX ? i : 0], b = y[kY ? i : 0];
    dst[i] = c[kC ? i : 0] ? a : b;
  }
}

template <typename W>
void where_fast_loop(const Tensor& c, const Tensor& x, const Tensor& y, Tensor& out) {
  if (out.numel() == 0) return;
  const BroadcastPlan p = plan_broadcast(out.dims(), {&c.dims(), &x.dims(), &y.dims()});
  // After coalescing, the inner stride of every operand is 0 or 1.
  using Run = void (*)(const uint8_t*, const W*, const W*, W*, int64_t);
  static constexpr Run kRuns[8] = {where_run<W, 0, 0, 0>, where_run<W, 0, 0, 1>, where_run<W, 0, 1, 0>,
                                   where_run<W, 0, 1, 1>, where_run<W, 1, 0, 0>, where_run<W, 1, 0, 1>,
                                   where_run<W, 1, 1, 0>, where_run<W, 1, 1, 1>};
  const Run run = kRuns[(p.inner_strides[0] != 0) * 4 + (p.inner_strides[1] != 0) * 2 + (p.inner_strides[2] != 0)];
  const int64_t n = p.inner;
  MultiIndex it(p.outer, p.outer_strides);
  const uint8_t* pc = c.data_as<uint8_t>();
  const W* px = x.data_as<W>();
  const W* py = y.data_as<W>();
  W* po = out.data_as<W>();
  for (int64_t o = 0, count = p.outer_count(); o < count; ++o, it.next())
    run(pc + it.offset(0), px + it.offset(1), py + it.offset(2), po + o * n, n);
}

// kNonzero: WhereNonzero (any integer condition; the reference loop, which reads it as != 0).
template <bool kFast, bool kNonzero = false>
Status where_kernel(KernelContext& ctx) {
  KILN_RETURN_IF_ERROR(check_where_inputs(ctx, kNonzero ? kNonzeroCondTypes : kTypesBool));
  const Tensor& c = ctx.input(0);
  const Tensor& x = ctx.input(1);
  const Tensor& y = ctx.input(2);
  Tensor& out = ctx.output(0);
  if (out.dtype() != x.dtype()) return ctx.error("output dtype does not match X", ErrorCode::kInternal);
  KILN_RETURN_IF_ERROR(check_broadcast_to(ctx, {&c, &x, &y}, out));
  auto run = [&]<typename W>() {
    if constexpr (kFast)
      where_fast_loop<W>(c, x, y, out);
    else
      where_ref_loop<W>(c, x, y, out);
  };
  switch (dtype_size(x.dtype())) {
    case 1:
      run.template operator()<uint8_t>();
      break;
    case 2:
      run.template operator()<uint16_t>();
      break;
    case 4:
      run.template operator()<uint32_t>();
      break;
    case 8:
      run.template operator()<uint64_t>();
      break;
    default:
      return ctx.error("unexpected element size", ErrorCode::kInternal);
  }
  return Status();
}

}  // namespace

void register_where_op(OpRegistry& r) {
  r.add({.name = "WhereNonzero", .domain = "kiln", .infer = infer_where_nonzero, .ref = where_kernel<false, true>});
  r.add({.name = "Where",
         .infer = infer_where,
         .ref = where_kernel<false>,
         .fast = {{"cpu.eltwise", where_kernel<true>, nullptr}}});
}

}  // namespace kiln::ops
