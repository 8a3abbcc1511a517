// RoiAlign: pools each region of interest to a fixed output_height x output_width
// grid by averaging (or taking the max of) bilinearly interpolated samples.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops {
namespace {

bool float_type(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

struct RoiSpec {
  bool max_mode = false;
  bool half_pixel = true;
  int64_t out_h = 1, out_w = 1, sampling_ratio = 0;
  double spatial_scale = 1.0;
};

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

struct Sample {
  int64_t pos[4];
  double w[4];
};

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
  double offset = spec.half_pixel ? 0.5 : 0.0;
  std::vector<Sample> samples;
  for (int64_t n = 0; n < R; ++n) {
    int64_t b = bidx.get_as_int64(n);
    if (b < 0 || b >= N)
      return ctx.error("batch index " + std::to_string(b) + " is out of range [0, " + std::to_string(N) + ")");
    double rs_w = rois.get_as_double(n * 4 + 0) * spec.spatial_scale - offset;
    double rs_h = rois.get_as_double(n * 4 + 1) * spec.spatial_scale - offset;
    double re_w = rois.get_as_double(n * 4 + 2) * spec.spatial_scale - offset;
    double re_h = rois.get_as_double(n * 4 + 3) * spec.spatial_scale - offset;
    double roi_w = re_w - rs_w, roi_h = re_h - rs_h;
    if (!spec.half_pixel) {  // malformed ROIs are forced to 1x1
      roi_w = std::max(roi_w, 1.0);
      roi_h = std::max(roi_h, 1.0);
    }
    if (!std::isfinite(roi_w) || !std::isfinite(roi_h)) return ctx.error("roi " + std::to_string(n) + " is not finite");
    double bin_h = roi_h / ph_n, bin_w = roi_w / pw_n;
    double gh_d = spec.sampling_ratio > 0 ? spec.sampling_ratio : std::ceil(roi_h / ph_n);
    double gw_d = spec.sampling_ratio > 0 ? spec.sampling_ratio : std::ceil(roi_w / pw_n);
    if (gh_d * gw_d > double(1 << 20)) return ctx.error("roi " + std::to_string(n) + " needs too many samples per bin");
    int64_t gh = std::max<int64_t>(static_cast<int64_t>(gh_d), 0),
            gw = std::max<int64_t>(static_cast<int64_t>(gw_d), 0);
    int64_t count = std::max<int64_t>(gh * gw, 1);
    // Sample positions and bilinear weights, shared by every channel.
    samples.clear();
    for (int64_t ph = 0; ph < ph_n; ++ph)
      for (int64_t pw = 0; pw < pw_n; ++pw)
        for (int64_t iy = 0; iy < gh; ++iy) {
          double yy = rs_h + ph * bin_h + (iy + 0.5) * bin_h / static_cast<double>(gh);
          for (int64_t ix = 0; ix < gw; ++ix) {
            double xx = rs_w + pw * bin_w + (ix + 0.5) * bin_w / static_cast<double>(gw);
            Sample s{{0, 0, 0, 0}, {0, 0, 0, 0}};
            if (!(yy < -1.0 || yy > H || xx < -1.0 || xx > W) && H > 0 && W > 0) {
              double yv = std::max(yy, 0.0), xv = std::max(xx, 0.0);
              int64_t y_lo = static_cast<int64_t>(yv), x_lo = static_cast<int64_t>(xv), y_hi, x_hi;
              if (y_lo >= H - 1)
                y_hi = y_lo = H - 1, yv = static_cast<double>(y_lo);
              else
                y_hi = y_lo + 1;
              if (x_lo >= W - 1)
                x_hi = x_lo = W - 1, xv = static_cast<double>(x_lo);
              else
                x_hi = x_lo + 1;
              double ly = yv - y_lo, lx = xv - x_lo, hy = 1 - ly, hx = 1 - lx;
              s = {{y_lo * W + x_lo, y_lo * W + x_hi, y_hi * W + x_lo, y_hi * W + x_hi},
                   {hy * hx, hy * lx, ly * hx, ly * lx}};
            }
            samples.push_back(s);
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
            const Sample& s = samples[si];
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
