// LpNormalization (x / ||x||_p along an axis), MeanVarianceNormalization
// ((x - E[x]) / (sqrt(Var[x]) + 1e-9) over `axes`) and LRN (cross-channel
// local response normalization).
#include <set>

#include "base/dispatch.h"
#include "ops/norm/norm_internal.h"
#include "ops/norm/norm_util.h"

namespace kiln::ops::norm {

namespace {

Status infer_float_same(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("needs input X");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(ctx.node().op_type + " on " + dtype_name(t));
  ctx.set_output(0, t, ctx.input(0).shape);
  return Status();
}

// ---------------------------------------------------------------- LpNormalization

Status infer_lp_norm(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_float_same(ctx));
  int64_t p = ctx.attrs().get_int("p", 2);
  if (p != 1 && p != 2) return ctx.error("p must be 1 or 2, got " + std::to_string(p));
  if (const Shape* x = ctx.input_shape(0)) {
    if (!normalize_axis(ctx.attrs().get_int("axis", -1), static_cast<int64_t>(x->size())))
      return ctx.error("axis is out of range for rank " + std::to_string(x->size()));
  }
  return Status();
}

Status ref_lp_norm(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  auto axis = normalize_axis(ctx.attrs().get_int("axis", -1), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  const int64_t p = ctx.attrs().get_int("p", 2);
  if (p != 1 && p != 2) return ctx.error("p must be 1 or 2");
  const int64_t len = x.dim(*axis);
  const int64_t inner = dims_volume(Dims(x.dims().begin() + *axis + 1, x.dims().end()));
  const int64_t outer = len * inner != 0 ? x.numel() / (len * inner) : 0;
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t base = o * len * inner + i;
        double s = 0;
        for (int64_t k = 0; k < len; ++k) {
          double v = static_cast<double>(xp[base + k * inner]);
          s += p == 1 ? std::fabs(v) : v * v;
        }
        const double norm = p == 1 ? s : std::sqrt(s);
        // A zero vector stays zero instead of becoming 0/0.
        for (int64_t k = 0; k < len; ++k)
          store(yp, base + k * inner, norm == 0 ? 0.0 : static_cast<double>(xp[base + k * inner]) / norm);
      }
  });
  return Status();
}

// ---------------------------------------------------------------- MeanVarianceNormalization

Result<std::vector<bool>> mvn_axes(const ir::Attributes& attrs, int64_t rank) {
  std::vector<bool> reduced(static_cast<size_t>(rank), false);
  for (int64_t a : attrs.get_ints("axes", {0, 2, 3})) {
    auto n = normalize_axis(a, rank);
    if (!n) return Status(ErrorCode::kInvalidArgument, "axis " + std::to_string(a) + " is out of range for rank " +
                                                           std::to_string(rank));
    reduced[*n] = true;
  }
  return reduced;
}

Status infer_mvn(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_float_same(ctx));
  if (const Shape* x = ctx.input_shape(0)) {
    auto r = mvn_axes(ctx.attrs(), static_cast<int64_t>(x->size()));
    if (!r.ok()) return ctx.error(r.status().message());
  }
  return Status();
}

Status ref_mvn(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  auto reduced = mvn_axes(ctx.attrs(), x.rank());
  if (!reduced.ok()) return ctx.error(reduced.status().message());
  Dims kept = x.dims();
  for (int64_t d = 0; d < x.rank(); ++d)
    if ((*reduced)[d]) kept[d] = 1;
  const int64_t groups = dims_volume(kept);
  const double count = groups ? static_cast<double>(x.numel()) / static_cast<double>(groups) : 0.0;
  std::vector<double> sum(groups, 0.0), sq(groups, 0.0);
  auto ks = broadcast_strides(kept, x.dims());
  if (x.numel() == 0) return Status();
  {
    MultiIndex it(x.dims(), {ks});
    for (int64_t i = 0; i < x.numel(); ++i, it.next()) {
      double v = x.get_as_double(i);
      sum[it.offset(0)] += v;
      sq[it.offset(0)] += v * v;
    }
  }
  Tensor& y = ctx.output(0);
  MultiIndex it(x.dims(), {ks});
  for (int64_t i = 0; i < x.numel(); ++i, it.next()) {
    const int64_t g = it.offset(0);
    const double mean = sum[g] / count;
    // The ONNX function body: Var = E[x^2] - E[x]^2, then divide by sqrt(Var) + 1e-9.
    const double var = std::max(0.0, sq[g] / count - mean * mean);
    y.set_from_double(i, (x.get_as_double(i) - mean) / (std::sqrt(var) + 1e-9));
  }
  return Status();
}

// ---------------------------------------------------------------- LRN

Status infer_lrn(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_float_same(ctx));
  if (!ctx.attrs().has("size")) return ctx.error("size is required");
  if (ctx.attrs().get_int("size", 1) < 1) return ctx.error("size must be >= 1");
  if (const Shape* x = ctx.input_shape(0))
    if (x->size() < 2) return ctx.error("X must have rank >= 2 ([N, C, ...])");
  return Status();
}

Status ref_lrn(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) return ctx.error("X must have rank >= 2");
  const int64_t size = ctx.attrs().get_int("size", 1);
  if (size < 1) return ctx.error("size must be >= 1");
  const double alpha = ctx.attrs().get_float("alpha", 1e-4f), beta = ctx.attrs().get_float("beta", 0.75f);
  const double bias = ctx.attrs().get_float("bias", 1.0f);
  const int64_t n = x.dim(0), c = x.dim(1);
  const int64_t inner = dims_volume(Dims(x.dims().begin() + 2, x.dims().end()));
  // The window covers channels [c - floor((size-1)/2), c + ceil((size-1)/2)].
  const int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    for (int64_t b = 0; b < n; ++b)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t i = 0; i < inner; ++i) {
          double s = 0;
          for (int64_t k = std::max<int64_t>(0, ch - lo); k <= std::min(c - 1, ch + hi); ++k) {
            double v = static_cast<double>(xp[(b * c + k) * inner + i]);
            s += v * v;
          }
          const int64_t e = (b * c + ch) * inner + i;
          store(yp, e, static_cast<double>(xp[e]) / std::pow(bias + alpha / static_cast<double>(size) * s, beta));
        }
  });
  return Status();
}

}  // namespace

void register_other_norm_ops(OpRegistry& r) {
  r.add({.name = "LpNormalization", .infer = infer_lp_norm, .ref = ref_lp_norm});
  r.add({.name = "MeanVarianceNormalization", .infer = infer_mvn, .ref = ref_mvn});
  r.add({.name = "LRN", .infer = infer_lrn, .ref = ref_lrn});
}

}  // namespace kiln::ops::norm
