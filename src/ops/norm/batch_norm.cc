// BatchNormalization (inference, and opset 14+ training_mode), InstanceNormalization
// and GroupNormalization (opset 18: per-group scale/bias; opset 21: per-channel).
#include "backends/cpu/thread_pool.h"
#include "base/dispatch.h"
#include "ops/norm/norm_internal.h"
#include "ops/norm/norm_util.h"

namespace kiln::ops::norm {

namespace {

// X viewed as [N, C, inner].
struct Nci {
  int64_t n = 0, c = 0, inner = 1;
};

Nci nci_of(const Dims& x) {
  Nci v;
  v.n = x[0];
  v.c = x.size() > 1 ? x[1] : 1;
  for (size_t i = 2; i < x.size(); ++i) v.inner *= x[i];
  return v;
}

// A per-channel parameter, or (BatchNormalization before opset 9, spatial = 0) per-activation.
Result<std::vector<double>> channel_param(const KernelContext& ctx, size_t i, const Nci& v, const char* name) {
  const Tensor& t = ctx.input(i);
  if (t.numel() != v.c && t.numel() != v.c * v.inner)
    return ctx.error(std::string(name) + " " + dims_to_string(t.dims()) + " must have C = " + std::to_string(v.c) +
                     " elements");
  return as_doubles(t);
}

double param_at(const std::vector<double>& p, const Nci& v, int64_t c, int64_t i) {
  return static_cast<int64_t>(p.size()) == v.c ? p[c] : p[c * v.inner + i];
}

// ---------------------------------------------------------------- BatchNormalization

Status infer_batch_norm(InferContext& ctx) {
  for (size_t i = 0; i < 5; ++i)
    if (!ctx.has_input(i)) return ctx.error("needs inputs X, scale, B, mean and var");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t))
    return ctx.unsupported(std::string("BatchNormalization on ") + dtype_name(t));
  const Shape* x = ctx.input_shape(0);
  if (x && x->size() < 2) return ctx.error("X must have rank >= 2 ([N, C, ...]), got " + shape_to_string(*x));
  Dim c = x ? (*x)[1] : Dim::unknown();
  for (size_t i = 1; i < 5; ++i) {
    const Shape* p = ctx.input_shape(i);
    if (p && p->size() == 1 && (*p)[0].known() && c.known() && (*p)[0].value != c.value)
      return ctx.error("input " + std::to_string(i) + " " + shape_to_string(*p) + " must have C = " +
                       c.to_string() + " elements");
  }
  bool training = ctx.attrs().get_int("training_mode", 0) != 0;
  if (ctx.opset() < 14 && (ctx.has_output(1) || ctx.has_output(2) || ctx.has_output(3) || ctx.has_output(4)))
    return ctx.unsupported("training outputs of BatchNormalization before opset 14 are not supported");
  ctx.set_output(0, t, x ? std::optional<Shape>(*x) : std::nullopt);
  if (training) {
    for (size_t i = 1; i < 3 && i < ctx.num_outputs(); ++i) ctx.set_output(i, ctx.input_dtype(3), Shape{c});
  } else if (ctx.has_output(1) || ctx.has_output(2)) {
    return ctx.error("running_mean / running_var outputs need training_mode = 1");
  }
  return Status();
}

template <typename T>
void batch_norm_planes(const Nci& v, const T* x, T* y, const std::vector<double>& scale,
                       const std::vector<double>& bias, const std::vector<double>& mean,
                       const std::vector<double>& var, double eps, int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t c = p % v.c;
    for (int64_t i = 0; i < v.inner; ++i) {
      const int64_t e = p * v.inner + i;
      double r = param_at(scale, v, c, i) * (static_cast<double>(x[e]) - param_at(mean, v, c, i)) /
                     std::sqrt(param_at(var, v, c, i) + eps) +
                 param_at(bias, v, c, i);
      store(y, e, r);
    }
  }
}

Status run_batch_norm(KernelContext& ctx, bool parallel) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) return ctx.error("X must have rank >= 2");
  const Nci v = nci_of(x.dims());
  auto scale = channel_param(ctx, 1, v, "scale");
  auto bias = channel_param(ctx, 2, v, "B");
  auto mean = channel_param(ctx, 3, v, "mean");
  auto var = channel_param(ctx, 4, v, "var");
  for (auto* r : {&scale, &bias, &mean, &var})
    if (!r->ok()) return r->status();
  const double eps = ctx.attrs().get_float("epsilon", 1e-5f);
  const bool training = ctx.attrs().get_int("training_mode", 0) != 0;
  if (training) {
    // Normalize with this batch's statistics; blend them into the running ones.
    if (mean->size() != static_cast<size_t>(v.c)) return ctx.error("training mode needs per-channel mean and var");
    const double momentum = ctx.attrs().get_float("momentum", 0.9f);
    std::vector<double> bm(v.c, 0.0), bv(v.c, 0.0);
    const double count = static_cast<double>(v.n * v.inner);
    for (int64_t p = 0; p < v.n * v.c; ++p)
      for (int64_t i = 0; i < v.inner; ++i) bm[p % v.c] += x.get_as_double(p * v.inner + i);
    for (auto& m : bm) m = count > 0 ? m / count : 0.0;
    for (int64_t p = 0; p < v.n * v.c; ++p)
      for (int64_t i = 0; i < v.inner; ++i) {
        double d = x.get_as_double(p * v.inner + i) - bm[p % v.c];
        bv[p % v.c] += d * d;
      }
    for (auto& s : bv) s = count > 0 ? s / count : 0.0;
    for (int64_t c = 0; c < v.c; ++c) {
      if (ctx.has_output(1)) ctx.output(1).set_from_double(c, (*mean)[c] * momentum + bm[c] * (1 - momentum));
      if (ctx.has_output(2)) ctx.output(2).set_from_double(c, (*var)[c] * momentum + bv[c] * (1 - momentum));
    }
    *mean = bm;
    *var = bv;
  }
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    auto body = [&](int64_t p0, int64_t p1) {
      batch_norm_planes<T>(v, xp, yp, *scale, *bias, *mean, *var, eps, p0, p1);
    };
    if (parallel) cpu::parallel_for(v.n * v.c, body, ctx.num_threads());
    else body(0, v.n * v.c);
  });
  return Status();
}

Status ref_batch_norm(KernelContext& ctx) { return run_batch_norm(ctx, false); }
Status par_batch_norm(KernelContext& ctx) { return run_batch_norm(ctx, true); }

// ---------------------------------------------------------------- Instance / Group

// Normalizes each (n, group) block of `cpg` channels; scale/bias per channel.
template <typename T>
void group_norm_blocks(const Nci& v, int64_t groups, const T* x, T* y, const std::vector<double>& scale,
                       const std::vector<double>& bias, double eps, int64_t b0, int64_t b1) {
  const int64_t cpg = v.c / groups, size = cpg * v.inner;
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t base = b * size;
    double mu = 0, var = 0;
    for (int64_t i = 0; i < size; ++i) mu += static_cast<double>(x[base + i]);
    mu = size ? mu / static_cast<double>(size) : 0.0;
    for (int64_t i = 0; i < size; ++i) {
      double d = static_cast<double>(x[base + i]) - mu;
      var += d * d;
    }
    var = size ? var / static_cast<double>(size) : 0.0;
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < size; ++i) {
      const int64_t c = (b % groups) * cpg + i / v.inner;
      store(y, base + i, (static_cast<double>(x[base + i]) - mu) * inv * scale[c] + bias[c]);
    }
  }
}

Status infer_channel_norm(InferContext& ctx, bool group) {
  if (!ctx.has_input(0) || !ctx.has_input(1) || !ctx.has_input(2)) return ctx.error("needs inputs X, scale and B");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(ctx.node().op_type + " on " + dtype_name(t));
  const Shape* x = ctx.input_shape(0);
  if (x && x->size() < 2) return ctx.error("X must have rank >= 2 ([N, C, ...]), got " + shape_to_string(*x));
  if (group) {
    if (!ctx.attrs().has("num_groups")) return ctx.error("num_groups is required");
    int64_t g = ctx.attrs().get_int("num_groups", 1);
    if (g < 1) return ctx.error("num_groups must be >= 1");
    if (x && (*x)[1].known() && (*x)[1].value % g != 0)
      return ctx.error("channels " + (*x)[1].to_string() + " are not divisible by num_groups " + std::to_string(g));
  } else if (x) {
    for (size_t i = 1; i < 3; ++i) {
      const Shape* p = ctx.input_shape(i);
      if (p && (p->size() != 1 || ((*p)[0].known() && (*x)[1].known() && (*p)[0].value != (*x)[1].value)))
        return ctx.error("input " + std::to_string(i) + " " + shape_to_string(*p) + " must be [C]");
    }
  }
  ctx.set_output(0, t, x ? std::optional<Shape>(*x) : std::nullopt);
  return Status();
}

Status run_channel_norm(KernelContext& ctx, bool group, bool parallel) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) return ctx.error("X must have rank >= 2");
  const Nci v = nci_of(x.dims());
  int64_t groups = v.c;
  if (group) {
    groups = ctx.attrs().get_int("num_groups", 1);
    if (groups < 1 || v.c % groups != 0) return ctx.error("channels are not divisible by num_groups");
  }
  std::vector<double> scale = as_doubles(ctx.input(1)), bias = as_doubles(ctx.input(2));
  // Opset 18 GroupNormalization gives scale/bias per group; opset 21 per channel.
  for (auto* p : {&scale, &bias}) {
    if (static_cast<int64_t>(p->size()) == v.c) continue;
    if (group && static_cast<int64_t>(p->size()) == groups) {
      std::vector<double> per_c(v.c);
      for (int64_t c = 0; c < v.c; ++c) per_c[c] = (*p)[c / (v.c / groups)];
      *p = per_c;
      continue;
    }
    return ctx.error("scale and B must have C = " + std::to_string(v.c) + (group ? " or num_groups" : "") +
                     " elements");
  }
  const double eps = ctx.attrs().get_float("epsilon", 1e-5f);
  Tensor& y = ctx.output(0);
  const int64_t blocks = v.n * groups;
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    auto body = [&](int64_t b0, int64_t b1) { group_norm_blocks<T>(v, groups, xp, yp, scale, bias, eps, b0, b1); };
    if (parallel) cpu::parallel_for(blocks, body, ctx.num_threads());
    else body(0, blocks);
  });
  return Status();
}

Status infer_instance_norm(InferContext& ctx) { return infer_channel_norm(ctx, false); }
Status ref_instance_norm(KernelContext& ctx) { return run_channel_norm(ctx, false, false); }
Status par_instance_norm(KernelContext& ctx) { return run_channel_norm(ctx, false, true); }
Status infer_group_norm(InferContext& ctx) { return infer_channel_norm(ctx, true); }
Status ref_group_norm(KernelContext& ctx) { return run_channel_norm(ctx, true, false); }
Status par_group_norm(KernelContext& ctx) { return run_channel_norm(ctx, true, true); }

bool applies_f32(const ir::Node& node, const std::vector<TensorType>& inputs) {
  return !inputs.empty() && inputs[0].dtype == DataType::kFloat32 && node.attrs.get_int("training_mode", 0) == 0;
}

}  // namespace

void register_batch_norm_ops(OpRegistry& r) {
  r.add({.name = "BatchNormalization", .infer = infer_batch_norm, .ref = ref_batch_norm,
         .fast = {{"cpu.parallel", par_batch_norm, applies_f32}}});
  r.add({.name = "InstanceNormalization", .infer = infer_instance_norm, .ref = ref_instance_norm,
         .fast = {{"cpu.parallel", par_instance_norm, applies_f32}}});
  r.add({.name = "GroupNormalization", .infer = infer_group_norm, .ref = ref_group_norm,
         .fast = {{"cpu.parallel", par_group_norm, applies_f32}}});
}

}  // namespace kiln::ops::norm
