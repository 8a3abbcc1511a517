// RoiAlign: pools each region of interest to a fixed output_height x output_width
// grid by averaging (or taking the max of) bilinearly interpolated samples.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/misc/roi_align.h"

namespace kiln::ops {

Result<RoiSpec> parse_roi(const ir::Node& node) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  RoiSpec s;
  std::string mode = node.attrs.get_string("mode", "avg");
  if (mode != "avg" && mode != "max") return err("mode must be 'avg' or 'max', got '" + mode + "'");
  s.max_mode = mode == "max";
  // Opset 16 added coordinate_transformation_mode (default half_pixel); opset 10
  // behaves as output_half_pixel.
  std::string ctm =
      node.opset >= 16 ? node.attrs.get_string("coordinate_transformation_mode", "half_pixel") : "output_half_pixel";
  if (ctm != "half_pixel" && ctm != "output_half_pixel")
    return err("unsupported coordinate_transformation_mode '" + ctm + "'");
  s.half_pixel = ctm == "half_pixel";
  s.out_h = node.attrs.get_int("output_height", 1);
  s.out_w = node.attrs.get_int("output_width", 1);
  s.sampling_ratio = node.attrs.get_int("sampling_ratio", 0);
  s.spatial_scale = node.attrs.get_float("spatial_scale", 1.0f);
  if (s.out_h < 1 || s.out_w < 1) return err("output_height and output_width must be >= 1");
  if (s.sampling_ratio < 0) return err("sampling_ratio must be >= 0");
  return s;
}

namespace {

bool float_type(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

Status infer_roi_align(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(RoiSpec spec, parse_roi(ctx.node()));
  DataType dt = ctx.input_dtype(0);
  if (!float_type(dt)) return ctx.unsupported(std::string("dtype ") + dtype_name(dt) + " is not supported");
  if (!float_type(ctx.input_dtype(1))) return ctx.error("rois must be a float tensor");
  if (ctx.input_dtype(2) != DataType::kInt64 && ctx.input_dtype(2) != DataType::kInt32)
    return ctx.error("batch_indices must be int64");
  const Shape* x = ctx.input_shape(0);
  const Shape* rois = ctx.input_shape(1);
  const Shape* bi = ctx.input_shape(2);
  if (x && x->size() != 4) return ctx.error("X must be 4-D");
  if (rois && (rois->size() != 2 || ((*rois)[1].known() && (*rois)[1].value != 4)))
    return ctx.error("rois must have shape [num_rois, 4]");
  if (bi && bi->size() != 1) return ctx.error("batch_indices must be 1-D");
  Dim r = rois ? (*rois)[0] : bi ? (*bi)[0] : Dim::unknown();
  Dim c = x ? (*x)[1] : Dim::unknown();
  ctx.set_output(0, dt, Shape{r, c, Dim(spec.out_h), Dim(spec.out_w)});
  return Status();
}

Status ref_roi_align(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(RoiSpec spec, parse_roi(ctx.node()));
  const Tensor& x = ctx.input(0);
  const Tensor& rois = ctx.input(1);
  const Tensor& bidx = ctx.input(2);
  Tensor& y = ctx.output(0);
  if (x.rank() != 4 || rois.rank() != 2 || rois.dim(1) != 4 || bidx.rank() != 1 || bidx.dim(0) != rois.dim(0))
    return ctx.error("expected X [N,C,H,W], rois [R,4] and batch_indices [R]");
  int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), R = rois.dim(0);
  int64_t ph_n = spec.out_h, pw_n = spec.out_w;
  if (H == 0 || W == 0) {  // nothing to sample: every bin is empty
    for (int64_t i = 0; i < y.numel(); ++i) y.set_from_double(i, 0.0);
    for (int64_t n = 0; n < R; ++n)
      if (bidx.get_as_int64(n) < 0 || bidx.get_as_int64(n) >= N) return ctx.error("batch index is out of range");
    return Status();
  }
  std::vector<RoiSample> samples;
  for (int64_t n = 0; n < R; ++n) {
    int64_t b = bidx.get_as_int64(n);
    if (b < 0 || b >= N)
      return ctx.error("batch index " + std::to_string(b) + " is out of range [0, " + std::to_string(N) + ")");
    const RoiBox box = roi_box(spec, rois.get_as_double(n * 4 + 0), rois.get_as_double(n * 4 + 1),
                               rois.get_as_double(n * 4 + 2), rois.get_as_double(n * 4 + 3));
    if (!box.finite) return ctx.error("roi " + std::to_string(n) + " is not finite");
    if (box.too_many) return ctx.error("roi " + std::to_string(n) + " needs too many samples per bin");
    const double rs_h = box.start_h, rs_w = box.start_w, bin_h = box.bin_h, bin_w = box.bin_w;
    const int64_t gh = box.grid_h, gw = box.grid_w;
    int64_t count = std::max<int64_t>(gh * gw, 1);
    // Sample positions and bilinear weights, shared by every channel.
    samples.clear();
    for (int64_t ph = 0; ph < ph_n; ++ph)
      for (int64_t pw = 0; pw < pw_n; ++pw)
        for (int64_t iy = 0; iy < gh; ++iy) {
          double yy = rs_h + ph * bin_h + (iy + 0.5) * bin_h / static_cast<double>(gh);
          for (int64_t ix = 0; ix < gw; ++ix) {
            double xx = rs_w + pw * bin_w + (ix + 0.5) * bin_w / static_cast<double>(gw);
            samples.push_back(roi_sample(yy, xx, H, W));
          }
        }
    for (int64_t c = 0; c < C; ++c) {
      int64_t base = (b * C + c) * H * W;
      size_t si = 0;
      for (int64_t ph = 0; ph < ph_n; ++ph)
        for (int64_t pw = 0; pw < pw_n; ++pw) {
          double v = 0;
          bool first = true;
          for (int64_t k = 0; k < gh * gw; ++k, ++si) {
            const RoiSample& s = samples[si];
            double p[4];
            for (int q = 0; q < 4; ++q) p[q] = s.w[q] * x.get_as_double(base + s.pos[q]);
            if (spec.max_mode) {
              // Max mode takes the largest weighted corner (as the reference and onnxruntime do).
              double m = std::max(std::max(p[0], p[1]), std::max(p[2], p[3]));
              v = first ? m : std::max(v, m);
              first = false;
            } else {
              v += p[0] + p[1] + p[2] + p[3];
            }
          }
          if (!spec.max_mode) v /= static_cast<double>(count);
          y.set_from_double(((n * C + c) * ph_n + ph) * pw_n + pw, v);
        }
    }
  }
  return Status();
}

}  // namespace

void register_roi_align_ops(OpRegistry& r) {
  r.add({.name = "RoiAlign", .infer = infer_roi_align, .ref = ref_roi_align, .min_opset = 10});
}

}  // namespace kiln::ops
