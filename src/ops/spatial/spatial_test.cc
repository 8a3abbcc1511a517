#include <cmath>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor ints(std::vector<int64_t> v) { return Tensor::from_vector(DataType::kInt64, {int64_t(v.size())}, v); }

TEST(SpatialCol2Im, MatchesScatterOfIndependentIm2colIndexing) {
  // image 5x6, block 2x3, stride (2,1), pads (1,0,0,1), dilation (1,2)
  OpCase c("Col2Im", 18);
  c.attr("strides", ir::Attribute::from_ints({2, 1}))
      .attr("pads", ir::Attribute::from_ints({1, 0, 0, 1}))
      .attr("dilations", ir::Attribute::from_ints({1, 2}));
  int64_t bh = (5 + 1 - 2) / 2 + 1, bw = (6 + 1 - 5) / 1 + 1;  // 3 x 3 blocks
  c.input(DataType::kFloat64, {2, 3 * 6, bh * bw}).input(ints({5, 6})).input(ints({2, 3}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 3, 5, 6}));
  std::vector<double> want(2 * 3 * 30, 0.0);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t ky = 0; ky < 2; ++ky)
        for (int64_t kx = 0; kx < 3; ++kx)
          for (int64_t by = 0; by < bh; ++by)
            for (int64_t bx = 0; bx < bw; ++bx) {
              int64_t iy = by * 2 - 1 + ky, ix = bx + kx * 2;
              if (iy < 0 || iy >= 5 || ix < 0 || ix >= 6) continue;
              want[((n * 3 + ch) * 5 + iy) * 6 + ix] +=
                  x.get_as_double(((n * 18 + ch * 6 + ky * 3 + kx) * bh + by) * bw + bx);
            }
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR((*out)[0].get_as_double(int64_t(i)), want[i], 1e-12);

  OpCase bad("Col2Im", 18);
  bad.input(DataType::kFloat32, {1, 6, 7}).input(ints({5, 6})).input(ints({2, 3}));
  EXPECT_FALSE(bad.run().ok());
}

TEST(SpatialAffineGrid, IdentityThetaGivesBaseGrid) {
  for (int align : {0, 1}) {
    std::vector<float> th = {1, 0, 0, 0, 1, 0};
    OpCase c("AffineGrid", 20);
    c.attr("align_corners", ir::Attribute::from_int(align));
    c.input(Tensor::from_vector(DataType::kFloat32, {1, 2, 3}, th)).input(ints({1, 3, 4, 5}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    ASSERT_EQ((*out)[0].dims(), (Dims{1, 4, 5, 2}));
    for (int h = 0; h < 4; ++h)
      for (int w = 0; w < 5; ++w) {
        double x = align ? -1 + 2.0 * w / 4 : (2.0 * w + 1) / 5 - 1;
        double y = align ? -1 + 2.0 * h / 3 : (2.0 * h + 1) / 4 - 1;
        EXPECT_NEAR((*out)[0].get_as_double((h * 5 + w) * 2), x, 1e-6);
        EXPECT_NEAR((*out)[0].get_as_double((h * 5 + w) * 2 + 1), y, 1e-6);
      }
  }
}

TEST(SpatialAffineGrid, Random3dIsLinearInTheta) {
  OpCase c("AffineGrid", 20);
  c.input(DataType::kFloat64, {2, 3, 4}).input(ints({2, 1, 2, 3, 4}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& th = *c.inputs()[0];
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 2, 3, 4, 3}));
  // Last point (d=1,h=2,w=3) with align_corners=0: (x,y,z) = (0.75, 2/3, 0.5).
  double p[4] = {0.75, 2.0 / 3, 0.5, 1};
  for (int b = 0; b < 2; ++b)
    for (int r = 0; r < 3; ++r) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += th.get_as_double((b * 3 + r) * 4 + k) * p[k];
      EXPECT_NEAR((*out)[0].get_as_double((b * 24 + 23) * 3 + r), s, 1e-12);
    }
  OpCase bad("AffineGrid", 20);
  bad.input(DataType::kFloat32, {1, 2, 3}).input(ints({1, 1, 2, 3, 4}));
  EXPECT_FALSE(bad.run().ok());
}

TEST(SpatialDeformConv, ZeroOffsetEqualsPlainConvolution) {
  // With zero offsets and unit mask DeformConv is an ordinary grouped convolution.
  OpCase c("DeformConv", 19);
  c.attr("kernel_shape", ir::Attribute::from_ints({2, 3})).attr("pads", ir::Attribute::from_ints({1, 0, 0, 1}));
  c.attr("group", ir::Attribute::from_int(2)).attr("offset_group", ir::Attribute::from_int(2));
  int64_t oh = 5 + 1 - 2 + 1, ow = 6 + 1 - 3 + 1;
  c.input(DataType::kFloat64, {1, 4, 5, 6}).input(DataType::kFloat64, {2, 2, 2, 3})
      .input(Tensor::zeros(DataType::kFloat64, {1, 2 * 6 * 2, oh, ow})).input(DataType::kFloat64, {2});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor &x = *c.inputs()[0], &w = *c.inputs()[1], &b = *c.inputs()[3];
  ASSERT_EQ((*out)[0].dims(), (Dims{1, 2, oh, ow}));
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < oh; ++i)
      for (int j = 0; j < ow; ++j) {
        double s = b.get_as_double(o);
        for (int ci = 0; ci < 2; ++ci)
          for (int ky = 0; ky < 2; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              int y = i - 1 + ky, xx = j + kx;
              if (y < 0 || y >= 5 || xx >= 6) continue;
              s += w.get_as_double(((o * 2 + ci) * 2 + ky) * 3 + kx) * x.get_as_double(((o * 2 + ci) * 5 + y) * 6 + xx);
            }
        EXPECT_NEAR((*out)[0].get_as_double((o * oh + i) * ow + j), s, 1e-9);
      }
}

TEST(SpatialDeformConv, HalfPixelOffsetInterpolates) {
  // A 1x1 kernel shifted by +0.5 in x samples the mean of two neighbours.
  OpCase c("DeformConv", 22);
  std::vector<double> off(2 * 3 * 3, 0.0);
  for (int k = 0; k < 9; ++k) off[9 + k] = 0.5;
  c.input(DataType::kFloat64, {1, 1, 3, 3}).input(Tensor::from_vector(DataType::kFloat64, {1, 1, 1, 1}, std::vector<double>{1}))
      .input(Tensor::from_vector(DataType::kFloat64, {1, 2, 3, 3}, off));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double right = j + 1 < 3 ? x.get_as_double(i * 3 + j + 1) : 0.0;
      EXPECT_NEAR((*out)[0].get_as_double(i * 3 + j), 0.5 * (x.get_as_double(i * 3 + j) + right), 1e-12);
    }
  OpCase bad("DeformConv", 22);
  bad.input(DataType::kFloat32, {1, 1, 3, 3}).input(DataType::kFloat32, {1, 1, 1, 1}).input(DataType::kFloat32, {1, 3, 3, 3});
  EXPECT_FALSE(bad.run().ok());
}

}  // namespace
}  // namespace kiln::test
