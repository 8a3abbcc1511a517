#include <cmath>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor floats(const std::vector<double>& v) { return Tensor::from_vector(DataType::kFloat32, {(int64_t)v.size()}, v); }
Tensor ints(const std::vector<int64_t>& v) { return Tensor::from_vector(DataType::kInt64, {(int64_t)v.size()}, v); }
ir::Attribute str(const char* s) { return ir::Attribute::from_string(s); }

double at4(const Tensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  const Dims& s = t.dims();
  return t.get_as_double(((a * s[1] + b) * s[2] + c) * s[3] + d);
}

TEST(Resize, NearestIntegerUpsampleRepeats) {
  // Upsample-9, Resize-10 and Resize-13 (asymmetric) all repeat pixels for integer scales.
  for (auto [op, opset] : {std::pair{"Upsample", 9}, std::pair{"Resize", 10}, std::pair{"Resize", 13}}) {
    OpCase c(op, opset);
    c.input(DataType::kFloat32, {1, 2, 3, 4});
    if (opset >= 11) {
      c.attr("coordinate_transformation_mode", str("asymmetric")).attr("nearest_mode", str("floor")).no_input();
    }
    c.input(floats({1, 1, 2, 3}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << op << opset << ": " << out.status().to_string();
    const Tensor& x = *c.inputs()[0];
    const Tensor& y = (*out)[0];
    ASSERT_EQ(y.dims(), (Dims{1, 2, 6, 12}));
    for (int64_t ch = 0; ch < 2; ++ch)
      for (int64_t i = 0; i < 6; ++i)
        for (int64_t j = 0; j < 12; ++j) ASSERT_EQ(at4(y, 0, ch, i, j), at4(x, 0, ch, i / 2, j / 3));
  }
}

TEST(Resize, Upsample7ScalesAttributeAndLinear) {
  OpCase c("Upsample", 7);
  c.attr("scales", ir::Attribute::from_floats({1, 1, 2, 2})).attr("mode", str("linear"));
  c.input(DataType::kFloat32, {1, 1, 2, 3});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dims(), (Dims{1, 1, 4, 6}));
  // Asymmetric coordinates: output (i, j) samples input (i / 2, j / 2), clamped at the edge.
  const Tensor& x = *c.inputs()[0];
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 6; ++j) {
      double sy = std::min(i / 2.0, 1.0), sx = std::min(j / 2.0, 2.0);
      int64_t y0 = (int64_t)sy, x0 = (int64_t)sx, y1 = std::min<int64_t>(y0 + 1, 1), x1 = std::min<int64_t>(x0 + 1, 2);
      double fy = sy - y0, fx = sx - x0;
      double v = (1 - fy) * ((1 - fx) * at4(x, 0, 0, y0, x0) + fx * at4(x, 0, 0, y0, x1)) +
                 fy * ((1 - fx) * at4(x, 0, 0, y1, x0) + fx * at4(x, 0, 0, y1, x1));
      EXPECT_NEAR(at4((*out)[0], 0, 0, i, j), v, 1e-6) << i << "," << j;
    }
}

TEST(Resize, LinearAlignCornersMatchesBilinearFormula) {
  OpCase c("Resize", 19);
  c.attr("mode", str("linear")).attr("coordinate_transformation_mode", str("align_corners"));
  c.input(DataType::kFloat32, {1, 1, 3, 5}).no_input().no_input().input(ints({1, 1, 7, 4}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      double sy = i * 2.0 / 6.0, sx = j * 4.0 / 3.0;
      int64_t y0 = std::min<int64_t>((int64_t)std::floor(sy), 1), x0 = std::min<int64_t>((int64_t)std::floor(sx), 3);
      double fy = sy - y0, fx = sx - x0;
      double v = (1 - fy) * ((1 - fx) * at4(x, 0, 0, y0, x0) + fx * at4(x, 0, 0, y0, x0 + 1)) +
                 fy * ((1 - fx) * at4(x, 0, 0, y0 + 1, x0) + fx * at4(x, 0, 0, y0 + 1, x0 + 1));
      EXPECT_NEAR(at4((*out)[0], 0, 0, i, j), v, 1e-5);
    }
}

TEST(Resize, HalfPixelLinearHalvingAveragesPairs) {
  OpCase c("Resize", 13);
  c.attr("mode", str("linear"));
  c.input(DataType::kFloat64, {2, 3, 4, 6})
      .no_input()
      .input(Tensor::from_vector(DataType::kFloat32, {4}, std::vector<double>{1, 1, 0.5, 0.5}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  ASSERT_EQ((*out)[0].dims(), (Dims{2, 3, 2, 3}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          double avg = 0;
          for (int di = 0; di < 2; ++di)
            for (int dj = 0; dj < 2; ++dj) avg += at4(x, n, ch, 2 * i + di, 2 * j + dj) / 4;
          EXPECT_NEAR(at4((*out)[0], n, ch, i, j), avg, 1e-12);
        }
}

TEST(Resize, CubicKeepsConstantsAndHitsSamples) {
  // Any cubic filter (antialiased or not) reproduces a constant image.
  for (int aa : {0, 1}) {
    Tensor x = Tensor::empty(DataType::kFloat32, {1, 1, 5, 5});
    for (int64_t i = 0; i < 25; ++i) x.set_from_double(i, 3.25);
    OpCase c("Resize", 18);
    c.attr("mode", str("cubic")).attr("antialias", ir::Attribute::from_int(aa));
    c.input(x).no_input().input(Tensor::from_vector(DataType::kFloat32, {4}, std::vector<double>{1, 1, 0.6, 1.7}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    for (int64_t i = 0; i < (*out)[0].numel(); ++i) EXPECT_NEAR((*out)[0].get_as_double(i), 3.25, 1e-5);
  }
  // align_corners 4 -> 7 lands every other output on an input sample.
  OpCase c("Resize", 13);
  c.attr("mode", str("cubic")).attr("coordinate_transformation_mode", str("align_corners"));
  c.input(DataType::kFloat32, {1, 1, 1, 4}).no_input().no_input().input(ints({1, 1, 1, 7}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  for (int64_t j = 0; j < 7; j += 2) EXPECT_NEAR(at4((*out)[0], 0, 0, 0, j), at4(*c.inputs()[0], 0, 0, 0, j / 2), 1e-6);
}

TEST(Resize, CropAndResizeExtrapolates) {
  OpCase c("Resize", 13);
  c.attr("mode", str("linear")).attr("coordinate_transformation_mode", str("tf_crop_and_resize"));
  c.attr("extrapolation_value", ir::Attribute::from_float(7.5f));
  // Crop rows [0, 1] and columns [0.5, 1.5]: the right half of the columns falls outside.
  c.input(DataType::kFloat32, {1, 1, 4, 4})
      .input(floats({0, 0, 0, 0.5, 1, 1, 1, 1.5}))
      .no_input()
      .input(ints({1, 1, 4, 5}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 5; ++j) {
      double sx = 0.5 * 3 + j * 3.0 / 4.0;  // source column
      double got = at4((*out)[0], 0, 0, i, j);
      if (sx > 3) {
        EXPECT_EQ(got, 7.5);
      } else {
        int64_t x0 = std::min<int64_t>((int64_t)sx, 2);
        double f = sx - x0;
        EXPECT_NEAR(got, (1 - f) * at4(x, 0, 0, i, x0) + f * at4(x, 0, 0, i, x0 + 1), 1e-5);
      }
    }
}

TEST(Resize, NearestModesRound) {
  // 1-D input [0..4] upsampled 4 -> 10 with asymmetric coordinates: x = o * 0.4.
  Tensor x = Tensor::from_vector(DataType::kInt32, {4}, std::vector<double>{10, 11, 12, 13});
  struct M {
    const char* mode;
    int64_t (*f)(double);
  };
  M modes[] = {{"floor", [](double v) { return (int64_t)std::floor(v); }},
               {"ceil", [](double v) { return (int64_t)std::ceil(v); }},
               {"round_prefer_floor", [](double v) { return (int64_t)std::ceil(v - 0.5); }},
               {"round_prefer_ceil", [](double v) { return (int64_t)std::floor(v + 0.5); }}};
  for (const M& m : modes) {
    OpCase c("Resize", 13);
    c.attr("coordinate_transformation_mode", str("asymmetric")).attr("nearest_mode", str(m.mode));
    c.input(x).no_input().no_input().input(ints({10}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    for (int64_t o = 0; o < 10; ++o) {
      int64_t i = std::clamp<int64_t>(m.f(o / 2.5), 0, 3);
      EXPECT_EQ((*out)[0].get_as_double(o), 10 + i) << m.mode << " o=" << o;
    }
  }
}

TEST(Resize, IntegerLinearRoundsHalfToEvenAndSaturates) {
  Tensor x = Tensor::from_vector(DataType::kUInt8, {1, 2}, std::vector<double>{1, 2});
  OpCase c("Resize", 13);
  c.attr("mode", str("linear")).attr("coordinate_transformation_mode", str("align_corners"));
  c.input(x).no_input().no_input().input(ints({1, 3}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].get_as_double(1), 2);  // 1.5 rounds to even
  Tensor z = Tensor::from_vector(DataType::kUInt8, {1, 4}, std::vector<double>{0, 255, 255, 0});
  OpCase s("Resize", 13);
  s.attr("mode", str("cubic"));
  s.input(z).no_input().no_input().input(ints({1, 9}));
  auto so = s.run();
  ASSERT_TRUE(so.ok());
  for (int64_t i = 0; i < 9; ++i) {
    EXPECT_GE((*so)[0].get_as_double(i), 0);
    EXPECT_LE((*so)[0].get_as_double(i), 255);
  }
}

TEST(Resize, AxesAndAspectPolicy) {
  for (auto [policy, h, w] :
       {std::tuple{"stretch", 7, 8}, std::tuple{"not_larger", 7, 7}, std::tuple{"not_smaller", 8, 8}}) {
    OpCase c("Resize", 18);
    c.attr("axes", ir::Attribute::from_ints({2, 3})).attr("keep_aspect_ratio_policy", str(policy));
    c.input(DataType::kFloat32, {1, 2, 2, 2}).no_input().no_input().input(ints({7, 8}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].dims(), (Dims{1, 2, h, w})) << policy;
  }
}

TEST(Resize, BilinearFastPathMatchesReference) {
  for (const char* coord :
       {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric"}) {
    for (auto sizes :
         {std::vector<int64_t>{2, 3, 11, 7}, std::vector<int64_t>{2, 3, 3, 13}, std::vector<int64_t>{2, 3, 5, 1}}) {
      OpCase c("Resize", 19);
      c.attr("mode", str("linear")).attr("coordinate_transformation_mode", str(coord));
      c.input(DataType::kFloat32, {2, 3, 5, 6}).no_input().no_input().input(ints(sizes));
      EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), 1) << coord;
    }
  }
  OpCase s("Resize", 13);
  s.attr("mode", str("linear"));
  s.input(DataType::kFloat32, {1, 2, 4, 4}).no_input().input(floats({1, 1, 1.7, 0.6}));
  EXPECT_GE(s.expect_all_kernels_match(1e-5, 1e-5), 1);
}

TEST(Resize, SymbolicInference) {
  OpCase c("Resize", 18);
  c.input(DataType::kFloat32, {1, 3, 4, 4}).no_input().input(floats({1, 1, 2, 2}));
  ops::TensorType x{DataType::kFloat32, Shape{Dim::symbol("N"), Dim(3), Dim::symbol("H"), Dim(5)}};
  ops::TensorType f{DataType::kFloat32, Shape{Dim(4)}};
  Tensor scales = floats({1, 1, 2, 2});
  auto r = ops::infer_node(c.node(), {x, {}, f}, {nullptr, nullptr, &scales});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[N,3,?,10]");
  auto u = ops::infer_node(c.node(), {x, {}, f}, {nullptr, nullptr, nullptr});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(shape_to_string(*(*u)[0].shape), "[?,?,?,?]");

  OpCase a("Resize", 18);
  a.attr("axes", ir::Attribute::from_ints({-2, -1}));
  a.input(DataType::kFloat32, {1, 3, 4, 4}).no_input().no_input().input(ints({64, 32}));
  Tensor sizes = ints({64, 32});
  ops::TensorType it{DataType::kInt64, Shape{Dim(2)}};
  auto s = ops::infer_node(a.node(), {x, {}, {}, it}, {nullptr, nullptr, nullptr, &sizes});
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(shape_to_string(*(*s)[0].shape), "[N,3,64,32]");
  auto su = ops::infer_node(a.node(), {x, {}, {}, it}, {nullptr, nullptr, nullptr, nullptr});
  ASSERT_TRUE(su.ok());
  EXPECT_EQ(shape_to_string(*(*su)[0].shape), "[N,3,?,?]");
}

TEST(Resize, InvalidInputsAreErrors) {
  auto run = [](OpCase& c) { return c.run(); };
  OpCase neg("Resize", 13);
  neg.input(DataType::kFloat32, {1, 4}).no_input().input(floats({1, -2}));
  EXPECT_FALSE(run(neg).ok());
  OpCase len("Resize", 13);
  len.input(DataType::kFloat32, {1, 4}).no_input().input(floats({2}));
  EXPECT_FALSE(run(len).ok());
  OpCase both("Resize", 13);
  both.input(DataType::kFloat32, {1, 4}).no_input().input(floats({1, 2})).input(ints({1, 8}));
  EXPECT_FALSE(run(both).ok());
  OpCase none("Resize", 13);
  none.input(DataType::kFloat32, {1, 4});
  EXPECT_FALSE(run(none).ok());
  OpCase huge("Resize", 13);
  huge.input(DataType::kFloat32, {2, 4}).no_input().input(floats({1e6, 1e6}));
  auto h = run(huge);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("case_Resize"), std::string::npos);
  OpCase mode("Resize", 13);
  mode.attr("mode", str("bogus"));
  mode.input(DataType::kFloat32, {1, 4}).no_input().input(floats({1, 2}));
  EXPECT_FALSE(run(mode).ok());
  OpCase axes("Resize", 18);
  axes.attr("axes", ir::Attribute::from_ints({2}));
  axes.input(DataType::kFloat32, {1, 4}).no_input().input(floats({2}));
  EXPECT_FALSE(run(axes).ok());
}

// The CUDA kernel (when a GPU is present) must match the reference for each mode.
TEST(Resize, CudaKernelMatchesReference) {
  for (const char* coord : {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric",
                            "tf_half_pixel_for_nn"}) {
    for (const char* nearest : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}) {
      for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64, DataType::kUInt8}) {
        OpCase c("Resize", 13);
        c.attr("mode", str("nearest")).attr("coordinate_transformation_mode", str(coord));
        c.attr("nearest_mode", str(nearest));
        c.input(dt, {1, 3, 7, 5}, -9, 9).no_input().input(floats({1, 1, 2.3, 0.6}));
        EXPECT_GE(c.expect_all_kernels_match(0, 0), 0) << coord << nearest;
      }
    }
  }
  for (const char* mode : {"linear", "cubic"}) {
    for (const char* coord :
         {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric"}) {
      for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}) {
        for (int64_t excl : {0, 1}) {
          OpCase c("Resize", 19);
          c.attr("mode", str(mode)).attr("coordinate_transformation_mode", str(coord));
          c.attr("exclude_outside", ir::Attribute::from_int(excl));
          c.input(dt, {2, 3, 7, 5}).no_input().no_input().input(ints({2, 3, 12, 3}));
          double tol = dt == DataType::kFloat32 ? 1e-5 : 2e-2;
          EXPECT_GE(c.expect_all_kernels_match(tol, tol), 0) << mode << coord;
        }
      }
    }
  }
  OpCase nd("Resize", 13);  // trilinear over the last three dims
  nd.attr("mode", str("linear"))
      .input(DataType::kFloat32, {1, 2, 3, 4, 5})
      .no_input()
      .input(floats({1, 1, 2, 0.5, 1.5}));
  EXPECT_GE(nd.expect_all_kernels_match(1e-5, 1e-5), 0);
  for (const char* mode : {"nearest", "linear"}) {
    OpCase crop("Resize", 13);
    crop.attr("mode", str(mode)).attr("coordinate_transformation_mode", str("tf_crop_and_resize"));
    crop.attr("extrapolation_value", ir::Attribute::from_float(-7.f));
    crop.input(DataType::kFloat32, {1, 1, 6, 6})
        .input(floats({0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3}))
        .input(floats({1, 1, 1.5, 1.7}));
    EXPECT_GE(crop.expect_all_kernels_match(1e-5, 1e-5), 0) << mode;
  }
  OpCase up("Upsample", 9);
  up.attr("mode", str("nearest")).input(DataType::kFloat16, {1, 2, 3, 4}).input(floats({1, 1, 2, 3}));
  EXPECT_GE(up.expect_all_kernels_match(0, 0), 0);
  OpCase big("Resize", 13);
  big.attr("mode", str("linear")).input(DataType::kFloat16, {1, 3, 67, 45}).no_input().input(floats({1, 1, 2, 2}));
  EXPECT_GE(big.expect_all_kernels_match(2e-2, 2e-2), 0);
}

// Nearest resizes with integer factors take the CUDA fast kernels (copied trailing
// dims as 16-byte runs, or a widened last dim); the rest take the generic kernel.
// Both must gather exactly what the reference gathers.
TEST(Resize, CudaNearestFastPathsMatchReference) {
  struct Shape4 {
    Dims x;
    std::vector<double> scales;
  };
  const std::vector<Shape4> shapes = {
      {{2, 5, 7, 8}, {1, 2, 2, 1}},       // NHWC 2x, 8 channels
      {{1, 4, 3, 64}, {1, 2, 2, 1}},      // NHWC 2x, 64 channels
      {{1, 3, 5, 16}, {1, 3, 3, 1}},      // NHWC 3x
      {{1, 5, 4, 3}, {1, 2, 2, 1}},       // NHWC, 3 channels (narrow runs)
      {{2, 3, 5, 20}, {1, 1, 2, 2}},      // NCHW 2x, W = 20
      {{1, 2, 3, 16}, {1, 1, 2, 2}},      // NCHW 2x, W = 16
      {{1, 2, 5, 7}, {1, 1, 3, 3}},       // NCHW 3x, odd W
      {{1, 2, 4, 8}, {1, 1, 4, 4}},       // NCHW 4x
      {{1, 2, 8, 12}, {1, 1, 0.5, 0.5}},  // integer downsampling
      {{1, 3, 4, 5}, {1, 1, 2, 1}},       // only H: W rows copied
      {{1, 3, 5, 7}, {1, 1, 1.5, 2}},     // non-integer H scale: generic kernel
  };
  for (const char* coord : {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric",
                            "tf_half_pixel_for_nn"})
    for (const char* nearest : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"})
      for (DataType dt :
           {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kUInt8, DataType::kInt64})
        for (size_t i = 0; i < shapes.size(); ++i) {
          OpCase c("Resize", 13);
          c.attr("mode", str("nearest")).attr("coordinate_transformation_mode", str(coord));
          c.attr("nearest_mode", str(nearest));
          c.input(dt, shapes[i].x, -9, 9).no_input().input(floats(shapes[i].scales));
          EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels())
              << coord << " " << nearest << " " << dtype_name(dt) << " shape " << i;
        }
}

TEST(Resize, CudaNearestFastPathSizesAndOpsets) {
  // sizes instead of scales, Upsample-9, a 5-D tensor, and tf_crop_and_resize (extrapolation).
  OpCase sizes("Resize", 19);
  sizes.attr("mode", str("nearest")).attr("coordinate_transformation_mode", str("asymmetric"));
  sizes.attr("nearest_mode", str("floor"));
  sizes.input(DataType::kFloat16, {2, 6, 5, 32}).no_input().no_input().input(ints({2, 12, 10, 32}));
  EXPECT_GE(sizes.expect_all_kernels_match(0, 0), gpu_kernels());
  OpCase up("Upsample", 9);
  up.attr("mode", str("nearest")).input(DataType::kBFloat16, {1, 4, 5, 6}).input(floats({1, 1, 2, 2}));
  EXPECT_GE(up.expect_all_kernels_match(0, 0), gpu_kernels());
  OpCase five("Resize", 13);
  five.attr("mode", str("nearest")).input(DataType::kFloat32, {1, 2, 3, 4, 8}).no_input();
  five.input(floats({1, 1, 2, 2, 1}));
  EXPECT_GE(five.expect_all_kernels_match(0, 0), gpu_kernels());
  OpCase crop("Resize", 13);
  crop.attr("mode", str("nearest")).attr("coordinate_transformation_mode", str("tf_crop_and_resize"));
  crop.attr("extrapolation_value", ir::Attribute::from_float(-7.f));
  crop.input(DataType::kFloat16, {1, 3, 4, 8}).input(floats({0, 0, -0.5, 0, 1, 1, 1.5, 1})).input(floats({1, 1, 2, 2}));
  EXPECT_GE(crop.expect_all_kernels_match(0, 0), gpu_kernels());
}

}  // namespace
}  // namespace kiln::test
