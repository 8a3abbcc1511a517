// LayerNormalization (opset 17; optional Mean / InvStdDev), RMSNormalization
// (opset 23), com.microsoft SkipLayerNormalization, kiln GatherSkipLayerNormalization
// (its input rows gathered from a table: an embedding lookup and its LayerNorm as one
// node, fuse_gather_layernorm.cc) and kiln ConcatSkipLayerNormalization (its input rows
// from two tensors concatenated on axis 1, fuse_concat_layernorm.cc): each row of the trailing dims from `axis` is
// standardized, then scaled (and shifted).
#include <cstring>

#include "backends/cpu/thread_pool.h"
#include "base/dispatch.h"
#include "ops/gather/gather_family.h"
#include "ops/norm/norm_internal.h"
#include "ops/norm/norm_util.h"

namespace kiln::ops::norm {

namespace {

struct RowNorm {
  int64_t rows = 0, cols = 0;
  double eps = 1e-5;
  bool rms = false;  // RMSNormalization: no centering
  RowParam scale, bias;
};

// Normalizes rows [r0, r1); mean / inv_std (per row, may be null) are written as doubles.
template <typename T>
void row_norm(const RowNorm& a, const T* x, T* y, double* mean, double* inv_std, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * a.cols;
    double mu = 0, var = 0;
    if (!a.rms) {
      for (int64_t j = 0; j < a.cols; ++j) mu += static_cast<double>(xr[j]);
      mu /= static_cast<double>(a.cols);
    }
    for (int64_t j = 0; j < a.cols; ++j) {
      double d = static_cast<double>(xr[j]) - mu;
      var += d * d;
    }
    var /= static_cast<double>(a.cols);
    const double inv = 1.0 / std::sqrt(var + a.eps);
    for (int64_t j = 0; j < a.cols; ++j) {
      double v = (static_cast<double>(xr[j]) - mu) * inv * a.scale.at(r, j);
      if (a.bias.present()) v += a.bias.at(r, j);
      store(y, r * a.cols + j, v);
    }
    if (mean) mean[r] = mu;
    if (inv_std) inv_std[r] = inv;
  }
}

DataType stash_dtype(int64_t stash) {
  switch (stash) {
    case 1:
      return DataType::kFloat32;
    case 10:
      return DataType::kFloat16;
    case 11:
      return DataType::kFloat64;
    case 16:
      return DataType::kBFloat16;
    default:
      return DataType::kUndefined;
  }
}

// Shared inference: Y like X; outputs 1, 2 (when `stats`) are X's leading dims with ones.
Status infer_axis_norm(InferContext& ctx, int64_t default_axis, bool stats, const std::vector<size_t>& params) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs X and Scale");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t))
    return ctx.unsupported(ctx.node().op_type + " on " + dtype_name(t));
  DataType u = stash_dtype(ctx.attrs().get_int("stash_type", 1));
  if (u == DataType::kUndefined) return ctx.error("stash_type must be a float type code");
  const Shape* x = ctx.input_shape(0);
  if (!x) {
    for (size_t i = 0; i < ctx.num_outputs(); ++i) ctx.set_output(i, i == 0 ? t : u, std::nullopt);
    return Status();
  }
  const int64_t rank = static_cast<int64_t>(x->size());
  auto axis = normalize_axis(ctx.attrs().get_int("axis", default_axis), rank);
  if (!axis)
    return ctx.error("axis " + std::to_string(ctx.attrs().get_int("axis", default_axis)) +
                     " is out of range for rank " + std::to_string(rank));
  for (size_t p : params)
    if (ctx.has_input(p) && ctx.input_shape(p) && !broadcasts_to(*ctx.input_shape(p), *x))
      return ctx.error("input " + std::to_string(p) + " " + shape_to_string(*ctx.input_shape(p)) +
                       " does not broadcast to X " + shape_to_string(*x));
  ctx.set_output(0, t, *x);
  if (stats) {
    Shape s(x->begin(), x->begin() + *axis);
    s.resize(x->size(), Dim(1));
    for (size_t i = 1; i < ctx.num_outputs() && i < 3; ++i) ctx.set_output(i, u, s);
  }
  return Status();
}

Status check_param(const KernelContext& ctx, size_t i, const Tensor& x) {
  if (!ctx.has_input(i)) return Status();
  if (!broadcasts_to(ctx.input(i).dims(), x.dims()))
    return ctx.error("input " + std::to_string(i) + " " + dims_to_string(ctx.input(i).dims()) +
                     " does not broadcast to X " + dims_to_string(x.dims()));
  return Status();
}

Status run_axis_norm(KernelContext& ctx, bool rms, bool parallel) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  auto axis = normalize_axis(ctx.attrs().get_int("axis", -1), rank);
  if (!axis) return ctx.error("axis is out of range");
  KILN_RETURN_IF_ERROR(check_param(ctx, 1, x));
  if (!rms) KILN_RETURN_IF_ERROR(check_param(ctx, 2, x));
  RowNorm a;
  a.rms = rms;
  a.eps = ctx.attrs().get_float("epsilon", 1e-5f);
  a.cols = dims_volume(Dims(x.dims().begin() + *axis, x.dims().end()));
  a.rows = a.cols ? x.numel() / a.cols : 0;
  a.scale = RowParam(ctx.input(1), x.dims(), *axis);
  if (!rms && ctx.has_input(2)) a.bias = RowParam(ctx.input(2), x.dims(), *axis);
  const bool stats = !rms && (ctx.has_output(1) || ctx.has_output(2));
  std::vector<double> mean(stats ? a.rows : 0), inv(stats ? a.rows : 0);
  double* mp = stats ? mean.data() : nullptr;
  double* ip = stats ? inv.data() : nullptr;
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    if (parallel)
      cpu::parallel_for(
          a.rows, [&](int64_t r0, int64_t r1) { row_norm<T>(a, xp, yp, mp, ip, r0, r1); }, ctx.num_threads());
    else
      row_norm<T>(a, xp, yp, mp, ip, 0, a.rows);
  });
  if (stats) {
    for (int64_t r = 0; r < a.rows; ++r) {
      if (ctx.has_output(1)) ctx.output(1).set_from_double(r, mean[r]);
      if (ctx.has_output(2)) ctx.output(2).set_from_double(r, inv[r]);
    }
  }
  return Status();
}

Status infer_layer_norm(InferContext& ctx) { return infer_axis_norm(ctx, -1, true, {1, 2}); }
Status ref_layer_norm(KernelContext& ctx) { return run_axis_norm(ctx, false, false); }
Status par_layer_norm(KernelContext& ctx) { return run_axis_norm(ctx, false, true); }
Status infer_rms_norm(InferContext& ctx) { return infer_axis_norm(ctx, -1, false, {1}); }
Status ref_rms_norm(KernelContext& ctx) { return run_axis_norm(ctx, true, false); }
Status par_rms_norm(KernelContext& ctx) { return run_axis_norm(ctx, true, true); }

// ---------------------------------------------------------------- SkipLayerNormalization

// SkipLayerNormalization's outputs for an input of dtype t and shape x (null: unknown):
// output, mean, inv_std_var ([..., 1] float32) and input_skip_bias_sum.
void set_skip_norm_outputs(InferContext& ctx, DataType t, const Shape* x) {
  std::optional<Shape> stats;
  if (x) {
    Shape s(x->begin(), x->end() - 1);
    s.push_back(Dim(1));
    stats = s;
  }
  ctx.set_output(0, t, x ? std::optional<Shape>(*x) : std::nullopt);
  if (ctx.num_outputs() > 1) ctx.set_output(1, DataType::kFloat32, stats);
  if (ctx.num_outputs() > 2) ctx.set_output(2, DataType::kFloat32, stats);
  if (ctx.num_outputs() > 3) ctx.set_output(3, t, x ? std::optional<Shape>(*x) : std::nullopt);
}

Status infer_skip_layer_norm(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1) || !ctx.has_input(2)) return ctx.error("needs input, skip and gamma");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(std::string("dtype ") + dtype_name(t));
  const Shape* x = ctx.input_shape(0);
  if (x && x->empty()) return ctx.error("input must have rank >= 1");
  if (x && ctx.input_shape(1) && !broadcasts_to(*ctx.input_shape(1), *x))
    return ctx.error("skip does not broadcast to input");
  set_skip_norm_outputs(ctx, t, x);
  return Status();
}

// sum = in + skip (+ bias), then LayerNormalization over the last dim; gamma, beta and
// bias are inputs p, p + 1 and p + 2 (beta and bias optional), outputs as
// SkipLayerNormalization's (output, mean, inv_std_var, input_skip_bias_sum).
Status skip_layer_norm_rows(KernelContext& ctx, const Tensor& in, const Tensor& skip, size_t p) {
  if (in.rank() < 1) return ctx.error("input must have rank >= 1");
  const int64_t h = in.dim(in.rank() - 1);
  if (skip.dtype() != in.dtype()) return ctx.error("skip dtype differs from input's");
  if (!broadcasts_to(skip.dims(), in.dims())) return ctx.error("skip does not broadcast to input");
  for (size_t i = p; i <= p + 2; ++i) {
    if (!ctx.has_input(i)) continue;
    if (ctx.input(i).numel() != h)
      return ctx.error("input " + std::to_string(i) + " must have " + std::to_string(h) + " elements");
  }
  Tensor sum = ctx.has_output(3) ? ctx.output(3) : Tensor::empty(in.dtype(), in.dims());
  const std::vector<double> bias = ctx.has_input(p + 2) ? as_doubles(ctx.input(p + 2)) : std::vector<double>();
  auto ss = broadcast_strides(skip.dims(), in.dims());
  if (in.numel() > 0) {
    MultiIndex it(in.dims(), {ss});
    for (int64_t i = 0; i < in.numel(); ++i, it.next()) {
      double v = in.get_as_double(i) + skip.get_as_double(it.offset(0));
      if (!bias.empty()) v += bias[i % h];
      sum.set_from_double(i, v);
    }
  }
  RowNorm a;
  a.eps = ctx.attrs().get_float("epsilon", 1e-12f);
  a.cols = h;
  a.rows = h ? in.numel() / h : 0;
  const int64_t last = in.rank() - 1;
  a.scale = RowParam(ctx.input(p).reshaped({h}), in.dims(), last);
  if (ctx.has_input(p + 1)) a.bias = RowParam(ctx.input(p + 1).reshaped({h}), in.dims(), last);
  std::vector<double> mean(a.rows), inv(a.rows);
  Tensor& y = ctx.output(0);
  KILN_DISPATCH_FLOAT(in.dtype(), T,
                      row_norm<T>(a, sum.data_as<T>(), y.data_as<T>(), mean.data(), inv.data(), 0, a.rows));
  for (int64_t r = 0; r < a.rows; ++r) {
    if (ctx.has_output(1)) ctx.output(1).set_from_double(r, mean[r]);
    if (ctx.has_output(2)) ctx.output(2).set_from_double(r, inv[r]);
  }
  return Status();
}

Status ref_skip_layer_norm(KernelContext& ctx) { return skip_layer_norm_rows(ctx, ctx.input(0), ctx.input(1), 2); }

// ---------------------------------------------------------------- GatherSkipLayerNormalization (kiln)
// y = SkipLayerNormalization(Gather(table, indices, axis = 0), skip, gamma, beta): inputs
// table [V, H], indices (int32 / int64, any shape; negative ones count from the end),
// skip (broadcasts to indices' shape + [H]), gamma [H], beta [H] (optional); attribute
// epsilon (default 1e-12, SkipLayerNormalization's); one output.

Status infer_gather_skip_layer_norm(InferContext& ctx) {
  for (size_t i = 0; i < 4; ++i)
    if (!ctx.has_input(i)) return ctx.error("needs table, indices, skip and gamma");
  const DataType t = ctx.input_dtype(0), it = ctx.input_dtype(1);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(std::string("dtype ") + dtype_name(t));
  if (it != DataType::kUndefined && it != DataType::kInt32 && it != DataType::kInt64)
    return ctx.error(std::string("indices must be int32 or int64, not ") + dtype_name(it));
  const Shape* table = ctx.input_shape(0);
  if (table && table->size() != 2) return ctx.error("table must have rank 2 (rows x hidden)");
  std::optional<Shape> out;
  if (table && ctx.input_shape(1)) {
    Shape s = *ctx.input_shape(1);
    s.push_back((*table)[1]);
    out = s;
  }
  if (out && ctx.input_shape(2) && !broadcasts_to(*ctx.input_shape(2), *out))
    return ctx.error("skip does not broadcast to the gathered rows");
  ctx.set_output(0, t, out);
  return Status();
}

Status ref_gather_skip_layer_norm(KernelContext& ctx) {
  const Tensor& table = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Dims d, gathered_dims(ctx, table, idx));
  KILN_ASSIGN_OR_RETURN(std::vector<int64_t> ids, movement::kernel_indices(ctx, idx));
  Tensor in = Tensor::empty(table.dtype(), d);
  const size_t row_bytes = static_cast<size_t>(table.dim(1)) * dtype_size(table.dtype());
  for (int64_t r = 0; r < idx.numel(); ++r) {
    KILN_ASSIGN_OR_RETURN(int64_t i, movement::checked_index(ctx, ids[static_cast<size_t>(r)], table.dim(0), "table"));
    std::memcpy(static_cast<char*>(in.data()) + static_cast<size_t>(r) * row_bytes,
                static_cast<const char*>(table.data()) + static_cast<size_t>(i) * row_bytes, row_bytes);
  }
  return skip_layer_norm_rows(ctx, in, ctx.input(2), 3);
}

// ---------------------------------------------------------------- ConcatSkipLayerNormalization (kiln)
// y = SkipLayerNormalization(Concat(head, rest, axis = 1), skip, gamma, beta, bias): inputs
// head [1 or B, n0, H] (one set, broadcast over the batch, or one a batch: ViT's class
// token), rest [B, n1, H], skip (broadcasts to [B, n0 + n1, H]), gamma [H], beta and bias
// (optional); attribute epsilon (default 1e-12); outputs as SkipLayerNormalization's.

Status infer_concat_skip_layer_norm(InferContext& ctx) {
  for (size_t i = 0; i < 4; ++i)
    if (!ctx.has_input(i)) return ctx.error("needs head, rest, skip and gamma");
  const DataType t = ctx.input_dtype(1);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(std::string("dtype ") + dtype_name(t));
  if (ctx.input_dtype(0) != DataType::kUndefined && t != DataType::kUndefined && ctx.input_dtype(0) != t)
    return ctx.error("head and rest dtypes differ");
  const Shape *head = ctx.input_shape(0), *rest = ctx.input_shape(1);
  if ((head && head->size() != 3) || (rest && rest->size() != 3))
    return ctx.error("head and rest must have rank 3 (batch, rows, hidden)");
  std::optional<Shape> x;
  if (head && rest) {
    const Dim &hb = (*head)[0], &rb = (*rest)[0], &hh = (*head)[2], &rh = (*rest)[2];
    if (hb.known() && rb.known() && hb.value != 1 && hb.value != rb.value)
      return ctx.error("head's batch is neither 1 nor rest's");
    if (hh.known() && rh.known() && hh.value != rh.value) return ctx.error("head and rest hidden sizes differ");
    x = Shape{rb, dim_add((*head)[1], (*rest)[1]), rh.known() ? rh : hh};
  }
  if (x && ctx.input_shape(2) && !broadcasts_to(*ctx.input_shape(2), *x))
    return ctx.error("skip does not broadcast to the concatenated rows");
  set_skip_norm_outputs(ctx, t, x ? &*x : nullptr);
  return Status();
}

Status ref_concat_skip_layer_norm(KernelContext& ctx) {
  const Tensor &head = ctx.input(0), &rest = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Dims d, concat_rows_dims(ctx, head, rest));
  Tensor in = Tensor::empty(rest.dtype(), d);
  const size_t row_bytes = static_cast<size_t>(d[2]) * dtype_size(rest.dtype());
  const int64_t n0 = head.dim(1), n1 = rest.dim(1);
  auto* out = static_cast<char*>(in.data());
  for (int64_t b = 0; b < d[0]; ++b) {
    const auto* h =
        static_cast<const char*>(head.data()) + static_cast<size_t>(head.dim(0) == 1 ? 0 : b * n0) * row_bytes;
    std::memcpy(out + static_cast<size_t>(b * (n0 + n1)) * row_bytes, h, static_cast<size_t>(n0) * row_bytes);
    std::memcpy(out + static_cast<size_t>(b * (n0 + n1) + n0) * row_bytes,
                static_cast<const char*>(rest.data()) + static_cast<size_t>(b * n1) * row_bytes,
                static_cast<size_t>(n1) * row_bytes);
  }
  return skip_layer_norm_rows(ctx, in, ctx.input(2), 3);
}

bool applies_f32(const ir::Node&, const std::vector<TensorType>& inputs) {
  return !inputs.empty() && inputs[0].dtype == DataType::kFloat32;
}

}  // namespace

void register_layer_norm_ops(OpRegistry& r) {
  r.add({.name = "LayerNormalization",
         .infer = infer_layer_norm,
         .ref = ref_layer_norm,
         .fast = {{"cpu.parallel", par_layer_norm, applies_f32}}});
  r.add({.name = "RMSNormalization",
         .infer = infer_rms_norm,
         .ref = ref_rms_norm,
         .fast = {{"cpu.parallel", par_rms_norm, applies_f32}}});
  r.add({.name = "SkipLayerNormalization",
         .domain = "com.microsoft",
         .infer = infer_skip_layer_norm,
         .ref = ref_skip_layer_norm});
  r.add({.name = "GatherSkipLayerNormalization",
         .domain = "kiln",
         .infer = infer_gather_skip_layer_norm,
         .ref = ref_gather_skip_layer_norm});
  r.add({.name = "ConcatSkipLayerNormalization",
         .domain = "kiln",
         .infer = infer_concat_skip_layer_norm,
         .ref = ref_concat_skip_layer_norm});
}

}  // namespace kiln::ops::norm
