// AffineGrid (opset 20): for theta [N,2,3] (2-D) or [N,3,4] (3-D) and an output size
// [N,C,H,W] / [N,C,D,H,W], the sampling grid theta @ (x, y[, z], 1) in [-1, 1] coordinates.
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/spatial/spatial_ops.h"

namespace kiln::ops {
namespace {

Status infer_affine_grid(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* th, require_shape(ctx, 0));
  if (!dtype_is_float(ctx.input_dtype(0))) return ctx.unsupported("AffineGrid needs a floating-point theta");
  if (th->size() != 3) return ctx.error("theta must have rank 3 ([N, 2, 3] or [N, 3, 4])");
  auto size = input_ints(ctx, 1);
  const Shape* ss = ctx.input_shape(1);
  std::optional<int64_t> len;
  if (size) len = static_cast<int64_t>(size->size());
  else if (ss && ss->size() == 1 && (*ss)[0].known()) len = (*ss)[0].value;
  if (len && *len != 4 && *len != 5) return ctx.error("size must have 4 ([N,C,H,W]) or 5 ([N,C,D,H,W]) values");
  if (!len) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status();
  }
  int64_t sd = *len - 2;  // spatial dims
  const Dim &r = (*th)[1], &c = (*th)[2];
  if ((r.known() && r.value != sd) || (c.known() && c.value != sd + 1))
    return ctx.error("theta must be [N, " + std::to_string(sd) + ", " + std::to_string(sd + 1) + "] for a " +
                     std::to_string(*len) + "-value size");
  Shape out{(*th)[0]};
  if (size) {
    if ((*th)[0].known() && (*th)[0].value != (*size)[0]) return ctx.error("size[0] must equal theta's batch");
    for (int64_t i = 2; i < *len; ++i) {
      if ((*size)[i] <= 0) return ctx.error("spatial sizes must be positive");
      out.push_back(Dim((*size)[i]));
    }
  } else {
    for (int64_t i = 2; i < *len; ++i) out.push_back(Dim::unknown());
  }
  out.push_back(Dim(sd));
  ctx.set_output(0, ctx.input_dtype(0), out);
  return Status();
}

// Normalised coordinate of pixel i of n: pixel centres (align_corners=0) or the
// corner pixels at exactly -1 and 1 (align_corners=1).
double grid_coord(int64_t i, int64_t n, bool align) {
  if (align) return n == 1 ? 0.0 : -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n - 1);
  return -1.0 + (2.0 * static_cast<double>(i) + 1.0) / static_cast<double>(n);
}

Status ref_affine_grid(KernelContext& ctx) {
  const Tensor& th = ctx.input(0);
  Tensor& y = ctx.output(0);
  bool align = ctx.attrs().get_int("align_corners", 0) != 0;
  auto size = ctx.input(1).to_int64_vector();
  int64_t sd = static_cast<int64_t>(size.size()) - 2;
  int64_t n = th.dim(0);
  int64_t d = sd == 3 ? size[2] : 1, h = size[sd == 3 ? 3 : 2], w = size[sd == 3 ? 4 : 3];
  int64_t o = 0;
  for (int64_t b = 0; b < n; ++b) {
    int64_t tb = b * sd * (sd + 1);
    for (int64_t k = 0; k < d; ++k)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          // Homogeneous point in (x, y[, z], 1) order: x runs along W.
          double p[4] = {grid_coord(j, w, align), grid_coord(i, h, align), 0, 1};
          if (sd == 3) p[2] = grid_coord(k, d, align);
          else p[2] = 1;
          for (int64_t r = 0; r < sd; ++r) {
            double s = 0;
            for (int64_t c = 0; c <= sd; ++c) s += th.get_as_double(tb + r * (sd + 1) + c) * p[c];
            y.set_from_double(o++, s);
          }
        }
  }
  return Status();
}

}  // namespace

void add_affine_grid_op(OpRegistry& r) {
  r.add({.name = "AffineGrid", .infer = infer_affine_grid, .ref = ref_affine_grid, .value_inputs = {1},
         .min_opset = 20});
}

}  // namespace kiln::ops
