// A pre-norm block's LayerNorm folded into the GEMMs around it (fold_layernorm_matmul makes these;
// norm_gemm.h has the algebra and the measurements):
//
//   MatMulBiasRowStats (kiln)  Y, stats = A W^T + bias + residual, and Y's row statistics
//     inputs   A [..., K], W [N, K] (A's dtype), bias [N] float32, residual [..., N] (A's dtype)
//     outputs  Y [..., N] (A's dtype); stats [4, rows] float32: row 0 rstd = 1 / sqrt(var + epsilon),
//              row 1 -mean * rstd, of each of Y's rows (rows = Y's elements / N, before Y is rounded
//              to its dtype); rows 2-3 are the kernel's scratch, zero after every run
//     attrs    epsilon (float, default 1e-5)
//   NormMatMulBias (kiln)      Y = act(rstd (X W'^T) + nmr s + b')
//     inputs   X [..., K], stats [4, rows] (as above), W' [N, K] (X's dtype), s [N] and b' [N] float32
//     output   Y [..., N] (X's dtype)
//     attrs    activation ("" or "GeluTanh", as MatMulBias)
//
// With W' = W diag(gamma), s its row sums (one per output) and b' = W beta + b, NormMatMulBias(X,
// stats(X)) is MatMulBias(LayerNormalization(X, gamma, beta), W^T, b): X is read once, by the GEMM.
#include <cmath>
#include <string>

#include "base/dispatch.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

namespace {

// Rows and columns of a [..., N] tensor, and the check that `stats` covers its rows.
Status check_stats(KernelContext& ctx, const Tensor& stats, int64_t rows) {
  if (stats.dtype() != DataType::kFloat32 || stats.rank() != 2 || stats.dim(0) != 4 || stats.dim(1) != rows)
    return ctx.error("stats " + dims_to_string(stats.dims()) + " " + dtype_name(stats.dtype()) +
                     " must be float32 [4, " + std::to_string(rows) + "]");
  return Status();
}

// The [..., N] output of A [..., K] with W [N, K]; `what` names W in messages.
Status infer_nk(InferContext& ctx, size_t a_slot, size_t w_slot, const char* what) {
  const Shape* a = ctx.input_shape(a_slot);
  const Shape* w = ctx.input_shape(w_slot);
  if (ctx.input_dtype(w_slot) != ctx.input_dtype(a_slot)) return ctx.error(std::string(what) + " and A dtypes differ");
  if (!dtype_is_float(ctx.input_dtype(a_slot))) return ctx.error("A must be a float tensor");
  if (w && w->size() != 2) return ctx.error(std::string(what) + " must be [N, K]");
  if (a && a->empty()) return ctx.error("A must have at least one dim");
  if (a && w && a->back().known() && (*w)[1].known() && a->back().value != (*w)[1].value)
    return ctx.error("A's last dim " + std::to_string(a->back().value) + " is not " + what + "'s K " +
                     std::to_string((*w)[1].value));
  std::optional<Shape> y;
  if (a) {
    y = *a;
    y->back() = w ? (*w)[0] : Dim::unknown();
  }
  ctx.set_output(0, ctx.input_dtype(a_slot), y);
  return Status();
}

// Rows of Y (all dims but the last multiplied), as a Dim.
Dim rows_of(const std::optional<Shape>& y) {
  if (!y) return Dim::unknown();
  Dim r(1);
  for (size_t i = 0; i + 1 < y->size(); ++i) r = dim_mul(r, (*y)[i]);
  return r;
}

Status check_vector(InferContext& ctx, size_t slot, const char* what, const Shape* w) {
  if (!ctx.has_input(slot)) return ctx.error(std::string("needs ") + what);
  if (ctx.input_dtype(slot) != DataType::kFloat32) return ctx.error(std::string(what) + " must be float32");
  const Shape* v = ctx.input_shape(slot);
  if (v && v->size() != 1) return ctx.error(std::string(what) + " must be 1-D");
  if (v && w && (*v)[0].known() && (*w)[0].known() && (*v)[0].value != (*w)[0].value)
    return ctx.error(std::string(what) + " has " + std::to_string((*v)[0].value) + " elements, N is " +
                     std::to_string((*w)[0].value));
  return Status();
}

Status infer_row_stats(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_nk(ctx, 0, 1, "W"));
  KILN_RETURN_IF_ERROR(check_vector(ctx, 2, "bias", ctx.input_shape(1)));
  if (!ctx.has_input(3)) return ctx.error("needs a residual input");
  if (ctx.input_dtype(3) != ctx.input_dtype(0)) return ctx.error("residual and A dtypes differ");
  if (!(ctx.attrs().get_float("epsilon", 1e-5f) >= 0.f)) return ctx.error("epsilon must be >= 0");
  ctx.set_output(1, DataType::kFloat32, Shape{Dim(4), rows_of(ctx.outputs()[0].shape)});
  return Status();
}

Status infer_norm_matmul(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_nk(ctx, 0, 2, "W'"));
  if (auto act = bias_activation(ctx.attrs()); !act.ok() || *act == BiasActivation::kRelu)
    return ctx.error("activation must be \"\" or \"GeluTanh\"");
  if (ctx.input_dtype(1) != DataType::kFloat32) return ctx.error("stats must be float32");
  if (const Shape* st = ctx.input_shape(1); st && (st->size() != 2 || ((*st)[0].known() && (*st)[0].value != 4)))
    return ctx.error("stats must be [4, rows]");
  KILN_RETURN_IF_ERROR(check_vector(ctx, 3, "s", ctx.input_shape(2)));
  return check_vector(ctx, 4, "b'", ctx.input_shape(2));
}

// Y[r, c] = sum_k A[r, k] W[c, k] in double (the references' product).
template <class T>
double dot_row(const T* a, const T* w, int64_t k) {
  double s = 0;
  for (int64_t i = 0; i < k; ++i) s += static_cast<double>(static_cast<float>(a[i])) * static_cast<float>(w[i]);
  return s;
}

Status ref_row_stats(KernelContext& ctx) {
  const Tensor &a = ctx.input(0), &w = ctx.input(1), &bias = ctx.input(2), &res = ctx.input(3);
  Tensor &y = ctx.output(0), &stats = ctx.output(1);
  const int64_t n = w.dim(0), k = w.dim(1), rows = n ? y.numel() / n : 0;
  if (bias.numel() != n || res.dims() != y.dims()) return ctx.error("bias or residual does not match the output");
  KILN_RETURN_IF_ERROR(check_stats(ctx, stats, rows));
  const double eps = ctx.attrs().get_float("epsilon", 1e-5f);
  float* st = stats.data_as<float>();
  const float* b = bias.data_as<float>();
  KILN_DISPATCH_FLOAT(y.dtype(), T, {
    const T *ap = a.data_as<T>(), *wp = w.data_as<T>(), *rp = res.data_as<T>();
    T* yp = y.data_as<T>();
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0, sq = 0;
      for (int64_t c = 0; c < n; ++c) {
        const double z = dot_row(ap + r * k, wp + c * k, k) + b[c] + static_cast<float>(rp[r * n + c]);
        yp[r * n + c] = static_cast<T>(static_cast<float>(z));
        sum += z, sq += z * z;
      }
      const double mean = sum / n, var = std::max(sq / n - mean * mean, 0.0), rstd = 1.0 / std::sqrt(var + eps);
      st[r] = static_cast<float>(rstd), st[rows + r] = static_cast<float>(-mean * rstd);
      st[2 * rows + r] = 0.f, st[3 * rows + r] = 0.f;
    }
  });
  return Status();
}

Status ref_norm_matmul(KernelContext& ctx) {
  const Tensor &x = ctx.input(0), &stats = ctx.input(1), &w = ctx.input(2), &s = ctx.input(3), &bp = ctx.input(4);
  Tensor& y = ctx.output(0);
  const int64_t n = w.dim(0), k = w.dim(1), rows = n ? y.numel() / n : 0;
  if (s.numel() != n || bp.numel() != n) return ctx.error("s and b' must have N elements");
  KILN_RETURN_IF_ERROR(check_stats(ctx, stats, rows));
  KILN_ASSIGN_OR_RETURN(BiasActivation act, bias_activation(ctx.attrs()));
  const float *st = stats.data_as<float>(), *sv = s.data_as<float>(), *bv = bp.data_as<float>();
  KILN_DISPATCH_FLOAT(y.dtype(), T, {
    const T *xp = x.data_as<T>(), *wp = w.data_as<T>();
    T* yp = y.data_as<T>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) {
        double v = st[r] * dot_row(xp + r * k, wp + c * k, k) + static_cast<double>(st[rows + r]) * sv[c] + bv[c];
        if (act == BiasActivation::kGeluTanh)
          v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        yp[r * n + c] = static_cast<T>(static_cast<float>(v));
      }
  });
  return Status();
}

}  // namespace

void register_norm_fold(OpRegistry& r) {
  r.add({.name = "MatMulBiasRowStats", .domain = "kiln", .infer = infer_row_stats, .ref = ref_row_stats});
  r.add({.name = "NormMatMulBias", .domain = "kiln", .infer = infer_norm_matmul, .ref = ref_norm_matmul});
}

}  // namespace kiln::ops::matmul
