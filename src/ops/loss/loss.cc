// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (opsets 12/13):
// loss[n,d...] = -weight[t] * logp[n, t, d...] with t = target[n, d...],
// reduced by "none", "sum" or "mean" (the weighted mean over non-ignored elements).
#include <cmath>

#include "ops/common.h"

namespace kiln::ops {
namespace {

bool is_float(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

Status infer_loss(InferContext& ctx) {
  DataType t = ctx.input_dtype(0);
  if (!is_float(t)) return ctx.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported");
  DataType tt = ctx.input_dtype(1);
  if (tt != DataType::kInt32 && tt != DataType::kInt64) return ctx.error("target must be int32 or int64");
  if (ctx.has_input(2) && ctx.input_dtype(2) != t) return ctx.error("weight must have the input's dtype");
  std::string red = ctx.attrs().get_string("reduction", "mean");
  if (red != "none" && red != "sum" && red != "mean") return ctx.error("reduction must be none, sum or mean");
  const Shape* x = ctx.input_shape(0);
  const Shape* tg = ctx.input_shape(1);
  if (x && x->size() < 2) return ctx.error("input must have rank >= 2 [N, C, d1, ...]");
  if (x && tg && tg->size() + 1 != x->size()) return ctx.error("target must have rank input_rank - 1");
  if (red == "none") {
    std::optional<Shape> s;
    if (tg) s = *tg;
    else if (x) {
      Shape o{(*x)[0]};
      o.insert(o.end(), x->begin() + 2, x->end());
      s = o;
    }
    ctx.set_output(0, t, s);
  } else {
    ctx.set_output(0, t, Shape{});
  }
  if (ctx.num_outputs() > 1) ctx.set_output(1, t, ctx.input(0).shape);
  return Status();
}

// Shared by both ops: `logp` is [N, C, D] (log-probabilities or raw NLL input).
Status compute_loss(KernelContext& ctx, const std::vector<double>& logp, int64_t N, int64_t C, int64_t D) {
  const Tensor& T = ctx.input(1);
  auto target = T.to_int64_vector();
  std::vector<double> weight;
  if (ctx.has_input(2)) {
    const Tensor& W = ctx.input(2);
    if (W.dims() != Dims{C}) return ctx.error("weight must be [C]");
    for (int64_t i = 0; i < C; ++i) weight.push_back(W.get_as_double(i));
  }
  const bool has_ii = ctx.attrs().has("ignore_index");
  const int64_t ii = ctx.attrs().get_int("ignore_index", 0);
  const std::string red = ctx.attrs().get_string("reduction", "mean");
  std::vector<double> loss(static_cast<size_t>(N * D));
  double sum = 0, wsum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      int64_t t = target[n * D + d];
      double l = 0, w = 0;
      if (!(has_ii && t == ii)) {
        if (t < 0 || t >= C) return ctx.error("target value " + std::to_string(t) + " is outside [0, " + std::to_string(C) + ")");
        w = weight.empty() ? 1.0 : weight[t];
        l = -logp[(n * C + t) * D + d] * w;
      }
      loss[n * D + d] = l;
      sum += l;
      wsum += w;
    }
  Tensor& Y = ctx.output(0);
  if (red == "none") {
    for (size_t i = 0; i < loss.size(); ++i) Y.set_from_double(static_cast<int64_t>(i), loss[i]);
  } else if (red == "sum") {
    Y.set_from_double(0, sum);
  } else {
    Y.set_from_double(0, sum / wsum);
  }
  return Status();
}

Status check_shapes(KernelContext& ctx, int64_t& N, int64_t& C, int64_t& D) {
  const Tensor& X = ctx.input(0);
  const Tensor& T = ctx.input(1);
  if (X.rank() < 2) return ctx.error("input must have rank >= 2");
  N = X.dim(0), C = X.dim(1), D = 1;
  Dims expect{N};
  for (int64_t i = 2; i < X.rank(); ++i) D *= X.dim(i), expect.push_back(X.dim(i));
  if (T.dims() != expect) return ctx.error("target shape " + dims_to_string(T.dims()) + " does not match input " +
                                           dims_to_string(X.dims()));
  return Status();
}

Status ref_nll(KernelContext& ctx) {
  int64_t N, C, D;
  if (Status s = check_shapes(ctx, N, C, D); !s.ok()) return s;
  const Tensor& X = ctx.input(0);
  std::vector<double> x(static_cast<size_t>(X.numel()));
  for (int64_t i = 0; i < X.numel(); ++i) x[i] = X.get_as_double(i);
  return compute_loss(ctx, x, N, C, D);
}

Status ref_sce(KernelContext& ctx) {
  int64_t N, C, D;
  if (Status s = check_shapes(ctx, N, C, D); !s.ok()) return s;
  const Tensor& X = ctx.input(0);
  std::vector<double> lp(static_cast<size_t>(X.numel()));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      double mx = -INFINITY, s = 0;
      for (int64_t c = 0; c < C; ++c) mx = std::max(mx, X.get_as_double((n * C + c) * D + d));
      for (int64_t c = 0; c < C; ++c) s += std::exp(X.get_as_double((n * C + c) * D + d) - mx);
      for (int64_t c = 0; c < C; ++c) lp[(n * C + c) * D + d] = X.get_as_double((n * C + c) * D + d) - mx - std::log(s);
    }
  if (ctx.has_output(1))
    for (size_t i = 0; i < lp.size(); ++i) ctx.output(1).set_from_double(static_cast<int64_t>(i), lp[i]);
  return compute_loss(ctx, lp, N, C, D);
}

}  // namespace

void register_loss_ops(OpRegistry& r) {
  r.add({.name = "NegativeLogLikelihoodLoss", .infer = infer_loss, .ref = ref_nll, .min_opset = 12});
  r.add({.name = "SoftmaxCrossEntropyLoss", .infer = infer_loss, .ref = ref_sce, .min_opset = 12});
}

}  // namespace kiln::ops
