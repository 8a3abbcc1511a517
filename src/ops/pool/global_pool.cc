// GlobalAveragePool, GlobalMaxPool, GlobalLpPool: one value per (N, C) plane,
// output [N, C, 1, ...].
#include <cmath>
#include <limits>
#include <type_traits>

#include "backends/cpu/thread_pool.h"
#include "base/dispatch.h"
#include "ops/pool/pool_internal.h"

namespace kiln::ops::pool {

namespace {

Status infer_global(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("needs input X");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t))
    return ctx.unsupported(ctx.node().op_type + " on " + dtype_name(t));
  const Shape* x = ctx.input_shape(0);
  if (!x) {
    ctx.set_output(0, t, std::nullopt);
    return Status();
  }
  if (x->size() < 3) return ctx.error("X must have rank >= 3 ([N, C, spatial...]), got " + shape_to_string(*x));
  Shape out{(*x)[0], (*x)[1]};
  out.resize(x->size(), Dim(1));
  ctx.set_output(0, t, out);
  return Status();
}

template <typename T>
void global_planes(PoolKind kind, int64_t p, const T* x, T* y, int64_t count, int64_t p0, int64_t p1) {
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * count;
    double acc = kind == PoolKind::kMax ? -std::numeric_limits<double>::infinity() : 0.0;
    for (int64_t i = 0; i < count; ++i) {
      const double v = static_cast<double>(xp[i]);
      if (kind == PoolKind::kMax) acc = std::isnan(v) || v > acc ? v : acc;
      else if (kind == PoolKind::kAverage) acc += v;
      else acc += std::pow(std::fabs(v), static_cast<double>(p));
    }
    if (kind == PoolKind::kAverage) acc = count ? acc / static_cast<double>(count) : std::nan("");
    else if (kind == PoolKind::kLp) acc = std::pow(acc, 1.0 / static_cast<double>(p));
    if constexpr (std::is_same_v<T, double>) y[plane] = acc;
    else y[plane] = static_cast<T>(static_cast<float>(acc));
  }
}

Status run_global(KernelContext& ctx, PoolKind kind, bool parallel) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 3) return ctx.error("X must have rank >= 3");
  const int64_t planes = x.dim(0) * x.dim(1);
  const int64_t count = planes ? x.numel() / planes : 0;
  const int64_t p = ctx.attrs().get_int("p", 2);
  if (kind == PoolKind::kLp && p < 1) return ctx.error("p must be >= 1");
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    if (parallel)
      cpu::parallel_for(planes, [&](int64_t a, int64_t b) { global_planes<T>(kind, p, xp, yp, count, a, b); },
                        ctx.num_threads());
    else
      global_planes<T>(kind, p, xp, yp, count, 0, planes);
  });
  return Status();
}

Status ref_gavg(KernelContext& ctx) { return run_global(ctx, PoolKind::kAverage, false); }
Status ref_gmax(KernelContext& ctx) { return run_global(ctx, PoolKind::kMax, false); }
Status ref_glp(KernelContext& ctx) { return run_global(ctx, PoolKind::kLp, false); }
Status par_gavg(KernelContext& ctx) { return run_global(ctx, PoolKind::kAverage, true); }
Status par_gmax(KernelContext& ctx) { return run_global(ctx, PoolKind::kMax, true); }

bool applies_f32(const ir::Node&, const std::vector<TensorType>& inputs) {
  return !inputs.empty() && inputs[0].dtype == DataType::kFloat32;
}

}  // namespace

void register_global_pool_ops(OpRegistry& r) {
  r.add({.name = "GlobalAveragePool", .infer = infer_global, .ref = ref_gavg,
         .fast = {{"cpu.parallel", par_gavg, applies_f32}}});
  r.add({.name = "GlobalMaxPool", .infer = infer_global, .ref = ref_gmax,
         .fast = {{"cpu.parallel", par_gmax, applies_f32}}});
  r.add({.name = "GlobalLpPool", .infer = infer_global, .ref = ref_glp});
}

}  // namespace kiln::ops::pool
