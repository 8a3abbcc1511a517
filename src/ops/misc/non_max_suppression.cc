// NonMaxSuppression: per batch and class, greedily keeps the highest-scoring
// boxes whose IoU with every kept box is at most iou_threshold.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops {
namespace {

Status infer_nms(InferContext& ctx) {
  for (int i : {0, 1})
    if (!dtype_is_float(ctx.input_dtype(i)) || dtype_is_narrow(ctx.input_dtype(i)))
      return ctx.error("boxes and scores must be float tensors");
  const Shape* b = ctx.input_shape(0);
  const Shape* s = ctx.input_shape(1);
  if (b && (b->size() != 3 || ((*b)[2].known() && (*b)[2].value != 4)))
    return ctx.error("boxes must have shape [batch, boxes, 4], got " + shape_to_string(*b));
  if (s && s->size() != 3) return ctx.error("scores must have shape [batch, classes, boxes]");
  int64_t cpb = ctx.attrs().get_int("center_point_box", 0);
  if (cpb != 0 && cpb != 1) return ctx.error("center_point_box must be 0 or 1");
  // The number of kept boxes depends on the data.
  ctx.set_output(0, DataType::kInt64, Shape{Dim::unknown(), Dim(3)});
  return Status();
}

struct Box {
  float x0, y0, x1, y1;
};

// Follows the ONNX reference (float arithmetic, corners may come in either order).
Box corners(const float* b, bool center) {
  if (center) {
    float hw = b[2] / 2, hh = b[3] / 2;
    return {b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh};
  }
  return {std::min(b[1], b[3]), std::min(b[0], b[2]), std::max(b[1], b[3]), std::max(b[0], b[2])};
}

bool suppresses(const Box& a, const Box& b, float iou_threshold) {
  float ix0 = std::max(a.x0, b.x0), ix1 = std::min(a.x1, b.x1);
  if (ix1 <= ix0) return false;
  float iy0 = std::max(a.y0, b.y0), iy1 = std::min(a.y1, b.y1);
  if (iy1 <= iy0) return false;
  float inter = (ix1 - ix0) * (iy1 - iy0);
  float area_a = (a.x1 - a.x0) * (a.y1 - a.y0), area_b = (b.x1 - b.x0) * (b.y1 - b.y0);
  float uni = area_a + area_b - inter;
  if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_threshold;
}

Status ref_nms(KernelContext& ctx) {
  const Tensor& boxes_t = ctx.input(0);
  const Tensor& scores_t = ctx.input(1);
  if (boxes_t.rank() != 3 || boxes_t.dim(2) != 4) return ctx.error("boxes must have shape [batch, boxes, 4]");
  if (scores_t.rank() != 3) return ctx.error("scores must have shape [batch, classes, boxes]");
  int64_t B = boxes_t.dim(0), N = boxes_t.dim(1), C = scores_t.dim(1);
  if (scores_t.dim(0) != B || scores_t.dim(2) != N)
    return ctx.error("boxes " + dims_to_string(boxes_t.dims()) + " and scores " + dims_to_string(scores_t.dims()) +
                     " disagree");
  auto scalar = [&](int i, const char* what) -> Result<std::optional<double>> {
    if (!ctx.has_input(i) || ctx.input(i).numel() == 0) return std::optional<double>();
    if (ctx.input(i).numel() != 1) return ctx.error(std::string(what) + " must hold one value");
    return std::optional<double>(ctx.input(i).get_as_double(0));
  };
  KILN_ASSIGN_OR_RETURN(auto max_out, scalar(2, "max_output_boxes_per_class"));
  KILN_ASSIGN_OR_RETURN(auto iou, scalar(3, "iou_threshold"));
  KILN_ASSIGN_OR_RETURN(auto score_thr, scalar(4, "score_threshold"));
  int64_t max_per_class = max_out ? std::max<int64_t>(ctx.input(2).get_as_int64(0), 0) : 0;
  float iou_threshold = static_cast<float>(iou.value_or(0.0));
  if (iou_threshold < 0 || iou_threshold > 1) return ctx.error("iou_threshold must be in [0, 1]");
  bool center = ctx.attrs().get_int("center_point_box", 0) != 0;

  std::vector<float> boxes(static_cast<size_t>(boxes_t.numel())), scores(static_cast<size_t>(scores_t.numel()));
  for (int64_t i = 0; i < boxes_t.numel(); ++i) boxes[i] = static_cast<float>(boxes_t.get_as_double(i));
  for (int64_t i = 0; i < scores_t.numel(); ++i) {
    scores[i] = static_cast<float>(scores_t.get_as_double(i));
    if (std::isnan(scores[i])) scores[i] = -std::numeric_limits<float>::infinity();  // keeps the sort well-defined
  }
  float thr = static_cast<float>(score_thr.value_or(0.0));

  std::vector<int64_t> selected;  // triples
  std::vector<int64_t> order;
  std::vector<Box> kept;
  for (int64_t b = 0; b < B && max_per_class > 0; ++b) {
    std::vector<Box> bx(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) bx[i] = corners(&boxes[(b * N + i) * 4], center);
    for (int64_t c = 0; c < C; ++c) {
      const float* sc = &scores[(b * C + c) * N];
      order.clear();
      for (int64_t i = 0; i < N; ++i)
        if (!score_thr || sc[i] > thr) order.push_back(i);
      // Highest score first; equal scores keep the lower box index first.
      std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) { return sc[p] > sc[q]; });
      kept.clear();
      int64_t count = 0;
      for (int64_t i : order) {
        if (count >= max_per_class) break;
        bool keep = true;
        for (const Box& k : kept)
          if (suppresses(bx[i], k, iou_threshold)) {
            keep = false;
            break;
          }
        if (!keep) continue;
        kept.push_back(bx[i]);
        selected.insert(selected.end(), {b, c, i});
        ++count;
      }
    }
  }
  int64_t n = static_cast<int64_t>(selected.size() / 3);
  Tensor& y = ctx.allocate_output(0, DataType::kInt64, {n, 3});
  std::copy(selected.begin(), selected.end(), y.data_as<int64_t>());
  return Status();
}

}  // namespace

void register_non_max_suppression_ops(OpRegistry& r) {
  r.add({.name = "NonMaxSuppression", .infer = infer_nms, .ref = ref_nms, .min_opset = 10});
}

}  // namespace kiln::ops
