// Tests for NonMaxSuppression, GridSample, RoiAlign and Det.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor scalar(DataType t, double v) { return Tensor::from_vector(t, {1}, std::vector<double>{v}); }

// ---------------------------------------------------------------- NonMaxSuppression

double iou(const double* a, const double* b) {
  double ay0 = std::min(a[0], a[2]), ay1 = std::max(a[0], a[2]), ax0 = std::min(a[1], a[3]), ax1 = std::max(a[1], a[3]);
  double by0 = std::min(b[0], b[2]), by1 = std::max(b[0], b[2]), bx0 = std::min(b[1], b[3]), bx1 = std::max(b[1], b[3]);
  double iw = std::max(0.0, std::min(ax1, bx1) - std::max(ax0, bx0));
  double ih = std::max(0.0, std::min(ay1, by1) - std::max(ay0, by0));
  double inter = iw * ih;
  double uni = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter;
  return uni > 0 ? inter / uni : 0;
}

TEST(NonMaxSuppression, MatchesGreedySelection) {
  const int64_t B = 2, C = 3, N = 20, K = 4;
  const double iou_thr = 0.3, score_thr = 0.2;
  OpCase c("NonMaxSuppression", 11);
  c.input(DataType::kFloat32, {B, N, 4}, 0, 3).input(DataType::kFloat32, {B, C, N}, 0, 1);
  c.input(Tensor::from_vector(DataType::kInt64, {1}, std::vector<double>{K}));
  c.input(scalar(DataType::kFloat32, iou_thr)).input(scalar(DataType::kFloat32, score_thr));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& boxes = *c.inputs()[0];
  const Tensor& scores = *c.inputs()[1];
  std::vector<int64_t> want;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t cl = 0; cl < C; ++cl) {
      std::vector<int64_t> ord(N);
      std::iota(ord.begin(), ord.end(), 0);
      auto sc = [&](int64_t i) { return scores.get_as_double((b * C + cl) * N + i); };
      std::stable_sort(ord.begin(), ord.end(), [&](int64_t p, int64_t q) { return sc(p) > sc(q); });
      std::vector<int64_t> kept;
      for (int64_t i : ord) {
        if (sc(i) <= score_thr || (int64_t)kept.size() == K) continue;
        double bi[4], bk[4];
        for (int q = 0; q < 4; ++q) bi[q] = boxes.get_as_double((b * N + i) * 4 + q);
        bool ok = true;
        for (int64_t k : kept) {
          for (int q = 0; q < 4; ++q) bk[q] = boxes.get_as_double((b * N + k) * 4 + q);
          if (iou(bi, bk) > iou_thr) ok = false;
        }
        if (ok) kept.push_back(i), want.insert(want.end(), {b, cl, i});
      }
    }
  const Tensor& y = (*out)[0];
  ASSERT_EQ(y.dims(), (Dims{(int64_t)want.size() / 3, 3}));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(y.data_as<int64_t>()[i], want[i]) << i;
}

TEST(NonMaxSuppression, CenterFormatAndDefaults) {
  // Same boxes in corner and center form select the same indices.
  std::vector<double> corners = {0, 0,  1, 1,  0, 0.1,  1, 1.1,  0, -0.1, 1, 0.9,
                                 0, 10, 1, 11, 0, 10.1, 1, 11.1, 0, 100,  1, 101};
  std::vector<double> centers;
  for (size_t i = 0; i < corners.size(); i += 4) {
    double y0 = corners[i], x0 = corners[i + 1], y1 = corners[i + 2], x1 = corners[i + 3];
    centers.insert(centers.end(), {(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0});
  }
  std::vector<double> sc = {0.9, 0.75, 0.6, 0.95, 0.5, 0.3};
  Tensor s = Tensor::from_vector(DataType::kFloat32, {1, 1, 6}, sc);
  Tensor k = Tensor::from_vector(DataType::kInt64, {1}, std::vector<double>{3});
  std::vector<int64_t> results[2];
  for (int center : {0, 1}) {
    OpCase c("NonMaxSuppression", 11);
    c.attr("center_point_box", ir::Attribute::from_int(center));
    c.input(Tensor::from_vector(DataType::kFloat32, {1, 6, 4}, center ? centers : corners)).input(s).input(k);
    c.input(scalar(DataType::kFloat32, 0.5));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    for (int64_t i = 0; i < (*out)[0].numel(); ++i) results[center].push_back((*out)[0].data_as<int64_t>()[i]);
  }
  EXPECT_EQ(results[0], (std::vector<int64_t>{0, 0, 3, 0, 0, 0, 0, 0, 5}));
  EXPECT_EQ(results[0], results[1]);
  // Without max_output_boxes_per_class nothing is selected.
  OpCase none("NonMaxSuppression", 11);
  none.input(Tensor::from_vector(DataType::kFloat32, {1, 6, 4}, corners)).input(s);
  auto no = none.run();
  ASSERT_TRUE(no.ok());
  EXPECT_EQ((*no)[0].dims(), (Dims{0, 3}));
  OpCase bad("NonMaxSuppression", 11);
  bad.input(DataType::kFloat32, {1, 6, 4}).input(DataType::kFloat32, {1, 1, 5}).input(k);
  EXPECT_FALSE(bad.run().ok());
  OpCase thr("NonMaxSuppression", 11);
  thr.input(DataType::kFloat32, {1, 6, 4}).input(s).input(k).input(scalar(DataType::kFloat32, 1.5));
  EXPECT_FALSE(thr.run().ok());
}

// ---------------------------------------------------------------- GridSample

/// Grid whose sample points land exactly on the input pixels.
Tensor identity_grid(int64_t n, int64_t h, int64_t w, bool align) {
  Tensor g = Tensor::empty(DataType::kFloat32, {n, h, w, 2});
  auto norm = [&](int64_t i, int64_t len) {
    return align ? (len == 1 ? 0.0 : 2.0 * i / (len - 1) - 1) : (2.0 * i + 1) / len - 1;
  };
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        g.set_from_double(((b * h + i) * w + j) * 2 + 0, norm(j, w));
        g.set_from_double(((b * h + i) * w + j) * 2 + 1, norm(i, h));
      }
  return g;
}

TEST(GridSample, IdentityGridReproducesInput) {
  for (const char* mode : {"bilinear", "nearest", "bicubic"})
    for (int align : {0, 1}) {
      OpCase c("GridSample", 16);
      c.attr("mode", ir::Attribute::from_string(mode)).attr("align_corners", ir::Attribute::from_int(align));
      c.input(DataType::kFloat32, {2, 3, 4, 5}).input(identity_grid(2, 4, 5, align));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      EXPECT_TRUE(tensors_close((*out)[0], *c.inputs()[0], 1e-5, 1e-5)) << mode << " align " << align;
    }
}

TEST(GridSample, BilinearMidpointsAndPadding) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {1, 1, 1, 3}, std::vector<double>{1, 2, 4});
  // align_corners=1: g=-0.5 -> x=0.5 (midpoint), g=3 -> x=4 (outside by 2 pixels).
  Tensor g = Tensor::from_vector(DataType::kFloat32, {1, 1, 2, 2}, std::vector<double>{-0.5, 0, 3, 0});
  struct P {
    const char* pad;
    double mid, far;
  };
  for (P p : {P{"zeros", 1.5, 0}, P{"border", 1.5, 4}, P{"reflection", 1.5, 1}}) {
    OpCase c("GridSample", 20);
    c.attr("mode", ir::Attribute::from_string("linear")).attr("align_corners", ir::Attribute::from_int(1));
    c.attr("padding_mode", ir::Attribute::from_string(p.pad));
    c.input(x).input(g);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_NEAR((*out)[0].get_as_double(0), p.mid, 1e-6) << p.pad;
    EXPECT_NEAR((*out)[0].get_as_double(1), p.far, 1e-6) << p.pad;
  }
}

TEST(GridSample, VolumetricAndShapes) {
  // 5-D identity grid (opset 20) with trilinear sampling.
  int64_t D = 2, H = 3, W = 4;
  Tensor g = Tensor::empty(DataType::kFloat32, {1, D, H, W, 3});
  for (int64_t d = 0; d < D; ++d)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        int64_t o = ((d * H + i) * W + j) * 3;
        g.set_from_double(o, 2.0 * j / (W - 1) - 1);
        g.set_from_double(o + 1, 2.0 * i / (H - 1) - 1);
        g.set_from_double(o + 2, 2.0 * d / (D - 1) - 1);
      }
  OpCase c("GridSample", 20);
  c.attr("align_corners", ir::Attribute::from_int(1));
  c.input(DataType::kFloat64, {1, 2, D, H, W}).input(g);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], *c.inputs()[0], 1e-6, 1e-6));

  ops::TensorType xt{DataType::kFloat32, Shape{Dim::symbol("N"), Dim(3), Dim(8), Dim(8)}};
  ops::TensorType gt{DataType::kFloat32, Shape{Dim::symbol("N"), Dim::symbol("h"), Dim(5), Dim(2)}};
  OpCase s("GridSample", 16);
  s.input(DataType::kFloat32, {1, 3, 8, 8}).input(DataType::kFloat32, {1, 2, 5, 2});
  auto r = ops::infer_node(s.node(), {xt, gt}, {nullptr, nullptr});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[N,3,h,5]");
  OpCase bad("GridSample", 16);
  bad.input(DataType::kFloat32, {1, 3, 8, 8}).input(DataType::kFloat32, {1, 2, 5, 3});
  EXPECT_FALSE(bad.run().ok());
}

// ---------------------------------------------------------------- RoiAlign

TEST(RoiAlign, AveragesOfALinearRampAreBinCentres) {
  // f(h, w) = 2h + 3w + 1 is reproduced exactly by bilinear sampling, so each bin's
  // average equals f at the bin centre.
  int64_t H = 10, W = 12, OH = 3, OW = 4;
  Tensor x = Tensor::empty(DataType::kFloat32, {1, 2, H, W});
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) x.set_from_double((c * H + h) * W + w, 2 * h + 3 * w + 1 + 100 * c);
  Tensor rois = Tensor::from_vector(DataType::kFloat32, {2, 4}, std::vector<double>{2, 2, 8, 7, 1.5, 3, 9, 8});
  Tensor idx = Tensor::from_vector(DataType::kInt64, {2}, std::vector<double>{0, 0});
  for (int half : {0, 1}) {
    OpCase c("RoiAlign", 16);
    c.attr("output_height", ir::Attribute::from_int(OH)).attr("output_width", ir::Attribute::from_int(OW));
    c.attr("sampling_ratio", ir::Attribute::from_int(2));
    c.attr("coordinate_transformation_mode", ir::Attribute::from_string(half ? "half_pixel" : "output_half_pixel"));
    c.input(x).input(rois).input(idx);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ASSERT_EQ((*out)[0].dims(), (Dims{2, 2, OH, OW}));
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t c2 = 0; c2 < 2; ++c2)
        for (int64_t ph = 0; ph < OH; ++ph)
          for (int64_t pw = 0; pw < OW; ++pw) {
            double off = half ? 0.5 : 0;
            double x0 = rois.get_as_double(r * 4) - off, y0 = rois.get_as_double(r * 4 + 1) - off;
            double x1 = rois.get_as_double(r * 4 + 2) - off, y1 = rois.get_as_double(r * 4 + 3) - off;
            double cy = y0 + (ph + 0.5) * (y1 - y0) / OH, cx = x0 + (pw + 0.5) * (x1 - x0) / OW;
            EXPECT_NEAR((*out)[0].get_as_double(((r * 2 + c2) * OH + ph) * OW + pw), 2 * cy + 3 * cx + 1 + 100 * c2,
                        1e-4);
          }
  }
}

TEST(RoiAlign, MaxModeAndErrors) {
  Tensor x = Tensor::empty(DataType::kFloat32, {1, 1, 4, 4});
  for (int64_t i = 0; i < 16; ++i) x.set_from_double(i, 5.0);
  OpCase c("RoiAlign", 16);
  c.attr("mode", ir::Attribute::from_string("max")).attr("sampling_ratio", ir::Attribute::from_int(1));
  c.attr("coordinate_transformation_mode", ir::Attribute::from_string("output_half_pixel"));
  // One sample at an exact pixel: the max of the weighted corners is the pixel value.
  c.input(x).input(Tensor::from_vector(DataType::kFloat32, {1, 4}, std::vector<double>{0.5, 0.5, 1.5, 1.5}));
  c.input(Tensor::from_vector(DataType::kInt64, {1}, std::vector<double>{0}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_NEAR((*out)[0].get_as_double(0), 5.0, 1e-6);
  OpCase bad("RoiAlign", 16);
  bad.input(x).input(Tensor::from_vector(DataType::kFloat32, {1, 4}, std::vector<double>{0, 0, 1, 1}));
  bad.input(Tensor::from_vector(DataType::kInt64, {1}, std::vector<double>{3}));
  EXPECT_FALSE(bad.run().ok());
}

// ---------------------------------------------------------------- Det

double det3(const Tensor& t, int64_t base) {
  auto a = [&](int i, int j) { return t.get_as_double(base + i * 3 + j); };
  return a(0, 0) * (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1)) - a(0, 1) * (a(1, 0) * a(2, 2) - a(1, 2) * a(2, 0)) +
         a(0, 2) * (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0));
}

TEST(Det, MatchesCofactorExpansion) {
  OpCase c("Det", 11);
  c.input(DataType::kFloat64, {2, 4, 3, 3}, -2, 2);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 4}));
  for (int64_t m = 0; m < 8; ++m) EXPECT_NEAR((*out)[0].get_as_double(m), det3(*c.inputs()[0], m * 9), 1e-12);
  Tensor sing = Tensor::from_vector(DataType::kFloat32, {2, 2}, std::vector<double>{1, 2, 2, 4});
  OpCase s("Det", 11);
  s.input(sing);
  auto so = s.run();
  ASSERT_TRUE(so.ok());
  EXPECT_EQ((*so)[0].get_as_double(0), 0.0);
  OpCase bad("Det", 11);
  bad.input(DataType::kFloat32, {2, 3});
  EXPECT_FALSE(bad.run().ok());
}

// ---------------------------------------------------------------- CUDA kernels vs the reference

const Tol kFloatTols[] = {
    {DataType::kFloat32, 1e-4, 1e-5}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 2e-2, 2e-2}};

// ROIs inside, straddling and outside a 11 x 13 image, plus a degenerate and an inverted one.
Tensor test_rois(DataType dt) {
  return Tensor::from_vector(dt, {6, 4}, std::vector<double>{1,   1,    9,   7,    -3, -2, 6, 5, 8,   6,   16,   14,
                                                             2.5, 3.25, 2.5, 3.25, 7,  8,  3, 2, 0.2, 0.7, 12.6, 10.4});
}

TEST(RoiAlign, CudaKernelMatchesReference) {
  struct Mode {
    const char* name;
    int opset;
    const char* mode;
    const char* ctm;  // nullptr: the opset's default
    int64_t sampling_ratio, out_h, out_w;
    float scale;
  };
  const Mode modes[] = {
      {"avg_half_pixel_adaptive_samples", 16, "avg", "half_pixel", 0, 3, 4, 1.f},
      {"avg_output_half_pixel_ratio2", 16, "avg", "output_half_pixel", 2, 5, 3, 1.f},
      {"max_half_pixel_ratio2", 16, "max", "half_pixel", 2, 3, 4, 1.f},
      {"max_output_half_pixel_adaptive_scaled", 16, "max", "output_half_pixel", 0, 7, 7, 0.5f},
      {"avg_opset10_default_output_half_pixel", 10, "avg", nullptr, 1, 2, 2, 1.f},
      {"avg_half_pixel_scale_2", 16, "avg", nullptr, 0, 4, 5, 2.f},
  };
  for (const Mode& m : modes)
    for (const Tol& t : kFloatTols)
      for (DataType roi_dt : {DataType::kFloat32, t.dtype})
        for (DataType idx_dt : {DataType::kInt64, DataType::kInt32}) {
          OpCase c("RoiAlign", m.opset);
          c.attr("mode", ir::Attribute::from_string(m.mode));
          if (m.ctm) c.attr("coordinate_transformation_mode", ir::Attribute::from_string(m.ctm));
          c.attr("sampling_ratio", ir::Attribute::from_int(m.sampling_ratio));
          c.attr("output_height", ir::Attribute::from_int(m.out_h));
          c.attr("output_width", ir::Attribute::from_int(m.out_w));
          c.attr("spatial_scale", ir::Attribute::from_float(m.scale));
          c.input(t.dtype, {2, 3, 11, 13}).input(test_rois(roi_dt));
          c.input(Tensor::from_vector(idx_dt, {6}, std::vector<double>{0, 1, 1, 0, 1, 0}));
          EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
              << m.name << " " << dtype_name(t.dtype) << " rois " << dtype_name(roi_dt);
        }
}

TEST(RoiAlign, CudaKernelEmptyCases) {
  for (Dims x : {Dims{1, 2, 0, 5}, Dims{1, 0, 4, 4}}) {  // no pixels to sample; no channels
    OpCase c("RoiAlign", 16);
    c.input(DataType::kFloat32, x).input(test_rois(DataType::kFloat32));
    c.input(Tensor::from_vector(DataType::kInt64, {6}, std::vector<double>{0, 0, 0, 0, 0, 0}));
    EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-6), gpu_kernels()) << dims_to_string(x);
  }
  OpCase none("RoiAlign", 16);  // zero ROIs
  none.input(DataType::kFloat32, {1, 2, 4, 4}).input(DataType::kFloat32, {0, 4});
  none.input(Tensor::empty(DataType::kInt64, {0}));
  EXPECT_GE(none.expect_all_kernels_match(1e-5, 1e-6), gpu_kernels());
}

TEST(Det, CudaKernelMatchesReference) {
  for (Dims d :
       {Dims{2, 3, 4, 4}, Dims{5, 1, 1}, Dims{3, 7, 7}, Dims{2, 2}, Dims{3, 12, 12}, Dims{0, 3, 3}, Dims{2, 0, 0}})
    for (const Tol& t : kFloatTols) {
      OpCase c("Det", 11);
      c.input(t.dtype, d, -2, 2);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dims_to_string(d) << " " << dtype_name(t.dtype);
    }
  OpCase big("Det", 11);  // the largest size the CUDA kernel takes
  big.input(DataType::kFloat32, {2, 32, 32}, -1, 1);
  EXPECT_GE(big.expect_all_kernels_match(1e-4, 1e-6), gpu_kernels());
  OpCase sing("Det", 11);  // a singular matrix stops the elimination at a zero pivot
  sing.input(Tensor::from_vector(DataType::kFloat32, {3, 3}, std::vector<double>{1, 2, 3, 2, 4, 6, 1, 0, 1}));
  EXPECT_GE(sing.expect_all_kernels_match(1e-5, 1e-6), gpu_kernels());
}

}  // namespace
}  // namespace kiln::test
