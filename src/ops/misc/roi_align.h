// RoiAlign's attributes, shared by the reference (roi_align.cc) and the CUDA
// kernel (roi_align_cuda.cu).
#pragma once

#include <math.h>

#include <cstdint>

#include "ops/common.h"
#include "ops/host_device.h"

namespace kiln::ops {

struct RoiSpec {
  bool max_mode = false;
  bool half_pixel = true;  ///< coordinate_transformation_mode half_pixel (else output_half_pixel)
  int64_t out_h = 1, out_w = 1, sampling_ratio = 0;
  double spatial_scale = 1.0;
};

/// Reads and validates the node's attributes.
Result<RoiSpec> parse_roi(const ir::Node& node);

/// One ROI's bins: where they start, their size and the samples per bin.
struct RoiBox {
  double start_h = 0, start_w = 0, bin_h = 0, bin_w = 0;
  int64_t grid_h = 0, grid_w = 0;
  bool finite = true;     ///< false: the ROI's size is not finite
  bool too_many = false;  ///< more than 2^20 samples per bin
};

/// The bins of ROI (x1, y1, x2, y2) in input coordinates.
KILN_HOST_DEVICE inline RoiBox roi_box(const RoiSpec& s, double x1, double y1, double x2, double y2) {
  RoiBox b;
  const double offset = s.half_pixel ? 0.5 : 0.0;
  b.start_w = x1 * s.spatial_scale - offset;
  b.start_h = y1 * s.spatial_scale - offset;
  double roi_w = (x2 * s.spatial_scale - offset) - b.start_w, roi_h = (y2 * s.spatial_scale - offset) - b.start_h;
  if (!s.half_pixel) {  // malformed ROIs are forced to 1x1
    roi_w = roi_w < 1.0 ? 1.0 : roi_w;
    roi_h = roi_h < 1.0 ? 1.0 : roi_h;
  }
  b.finite = roi_w - roi_w == 0 && roi_h - roi_h == 0;
  if (!b.finite) return b;
  b.bin_h = roi_h / s.out_h;
  b.bin_w = roi_w / s.out_w;
  const double gh = s.sampling_ratio > 0 ? static_cast<double>(s.sampling_ratio) : ::ceil(roi_h / s.out_h);
  const double gw = s.sampling_ratio > 0 ? static_cast<double>(s.sampling_ratio) : ::ceil(roi_w / s.out_w);
  b.too_many = gh * gw > static_cast<double>(1 << 20);
  if (b.too_many) return b;
  b.grid_h = gh > 0 ? static_cast<int64_t>(gh) : 0;
  b.grid_w = gw > 0 ? static_cast<int64_t>(gw) : 0;
  return b;
}

/// One bilinear sample: four pixel offsets in an H x W plane and their weights.
struct RoiSample {
  int64_t pos[4];
  double w[4];
};

/// The sample at (yy, xx); all weights are 0 outside [-1, H] x [-1, W].
KILN_HOST_DEVICE inline RoiSample roi_sample(double yy, double xx, int64_t H, int64_t W) {
  RoiSample s{{0, 0, 0, 0}, {0, 0, 0, 0}};
  if (yy < -1.0 || yy > H || xx < -1.0 || xx > W || H <= 0 || W <= 0) return s;
  double yv = yy < 0.0 ? 0.0 : yy, xv = xx < 0.0 ? 0.0 : xx;
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
  s = {{y_lo * W + x_lo, y_lo * W + x_hi, y_hi * W + x_lo, y_hi * W + x_hi}, {hy * hx, hy * lx, ly * hx, ly * lx}};
  return s;
}

}  // namespace kiln::ops
