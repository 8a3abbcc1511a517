// ai.onnx.ml ops Binarizer and ArrayFeatureExtractor, and the family's registration
// (TreeEnsemble in tree_ensemble.cc, TfIdfVectorizer in tfidf.cc).
#include <cstring>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/ml/ml_ops.h"

namespace kiln::ops {
namespace {

bool binarizer_dtype(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kInt64 || t == DataType::kInt32;
}

Status infer_binarizer(InferContext& ctx) {
  if (!binarizer_dtype(ctx.input_dtype(0)))
    return ctx.unsupported(std::string("Binarizer does not take ") + dtype_name(ctx.input_dtype(0)));
  return infer_same_as_input0(ctx);
}

Status ref_binarizer(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  double th = ctx.attrs().get_float("threshold", 0.f);
  for (int64_t i = 0; i < x.numel(); ++i) y.set_from_double(i, x.get_as_double(i) > th ? 1.0 : 0.0);
  return Status();
}

// Output [..., K] gathers K = numel(indices) entries of X's last axis; a 1-D X gives [1, K].
Status infer_afe(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* x, require_shape(ctx, 0));
  DataType t = ctx.input_dtype(0);
  if (t == DataType::kString) return ctx.unsupported("string tensors are not supported");
  if (ctx.input_dtype(1) != DataType::kInt64) return ctx.error("indices must be int64");
  if (x->empty()) return ctx.error("X must have rank >= 1");
  Dim k = Dim::unknown();
  if (const Shape* ys = ctx.input_shape(1)) k = Dim(shape_volume(*ys));
  Shape out = x->size() == 1 ? Shape{Dim(1)} : Shape(x->begin(), x->end() - 1);
  out.push_back(k);
  ctx.set_output(0, t, out);
  return Status();
}

Status ref_afe(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  Tensor& y = ctx.output(0);
  int64_t n = x.dims().back();
  int64_t rows = 1;
  for (int64_t r = 0; r + 1 < x.rank(); ++r) rows *= x.dim(r);
  int64_t k = idx.numel();
  std::vector<int64_t> ix(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    int64_t v = idx.get_as_int64(i);
    if (v < -n || v >= n)
      return ctx.error("index " + std::to_string(v) + " is out of range for a last dim of " + std::to_string(n));
    ix[i] = v < 0 ? v + n : v;
  }
  size_t es = dtype_size(x.dtype());
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < k; ++i)
      std::memcpy(dst + (r * k + i) * es, src + (r * n + ix[i]) * es, es);
  return Status();
}

}  // namespace

void register_ml_ops(OpRegistry& r) {
  r.add({.name = "Binarizer", .domain = "ai.onnx.ml", .infer = infer_binarizer, .ref = ref_binarizer});
  r.add({.name = "ArrayFeatureExtractor", .domain = "ai.onnx.ml", .infer = infer_afe, .ref = ref_afe});
  add_tree_ensemble_op(r);
  add_tfidf_op(r);
}

}  // namespace kiln::ops
