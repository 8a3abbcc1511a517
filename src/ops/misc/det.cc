// Det: determinant of each square matrix in the trailing two dims.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "ops/common.h"

namespace kiln::ops {
namespace {

bool float_type(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

Status infer_det(InferContext& ctx) {
  DataType dt = ctx.input_dtype(0);
  if (!float_type(dt)) return ctx.unsupported(std::string("dtype ") + dtype_name(dt) + " is not supported");
  const Shape* x = ctx.input_shape(0);
  if (!x) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  if (x->size() < 2) return ctx.error("input must have rank >= 2");
  const Dim& a = (*x)[x->size() - 2];
  const Dim& b = x->back();
  if (a.known() && b.known() && a.value != b.value)
    return ctx.error("matrices must be square, got " + shape_to_string(*x));
  ctx.set_output(0, dt, Shape(x->begin(), x->end() - 2));
  return Status();
}

// LU decomposition with partial pivoting, in double.
double determinant(std::vector<double>& a, int64_t n) {
  double det = 1;
  for (int64_t k = 0; k < n; ++k) {
    int64_t piv = k;
    for (int64_t i = k + 1; i < n; ++i)
      if (std::fabs(a[i * n + k]) > std::fabs(a[piv * n + k])) piv = i;
    if (a[piv * n + k] == 0) return 0.0;
    if (piv != k) {
      for (int64_t j = 0; j < n; ++j) std::swap(a[k * n + j], a[piv * n + j]);
      det = -det;
    }
    double d = a[k * n + k];
    det *= d;
    for (int64_t i = k + 1; i < n; ++i) {
      double f = a[i * n + k] / d;
      for (int64_t j = k + 1; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
    }
  }
  return det;
}

Status ref_det(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() < 2 || x.dim(-1 + x.rank()) != x.dim(x.rank() - 2)) return ctx.error("matrices must be square");
  int64_t n = x.dim(x.rank() - 1);
  std::vector<double> a(static_cast<size_t>(n * n));
  for (int64_t m = 0; m < y.numel(); ++m) {
    for (int64_t i = 0; i < n * n; ++i) a[i] = x.get_as_double(m * n * n + i);
    y.set_from_double(m, determinant(a, n));
  }
  return Status();
}

}  // namespace

void register_det_ops(OpRegistry& r) { r.add({.name = "Det", .infer = infer_det, .ref = ref_det, .min_opset = 11}); }

}  // namespace kiln::ops
