#include "ops/reshape/movement_test_util.h"

namespace kiln::test {
namespace {

TEST(GenerateOps, ConstantAttributes) {
  Tensor v = tensor_of(DataType::kFloat16, {2, 2}, {1, -2, 3.5, 4});
  OpCase t("Constant", 13);
  t.attr("value", ir::Attribute::from_tensor(v));
  auto out = t.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], v, 0, 0));

  OpCase f("Constant", 13);
  f.attr("value_floats", ir::Attribute::from_floats({1.5f, -2.f}));
  out = f.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(tensors_close((*out)[0], tensor_of(DataType::kFloat32, {2}, {1.5, -2}), 0, 0));

  OpCase i("Constant", 13);
  i.attr("value_int", ir::Attribute::from_int(-7));
  out = i.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(tensors_close((*out)[0], scalar(DataType::kInt64, -7), 0, 0));

  OpCase is("Constant", 13);
  is.attr("value_ints", ir::Attribute::from_ints({}));
  out = is.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].dims(), (Dims{0}));

  OpCase s("Constant", 13);
  s.attr("value_string", ir::Attribute::from_string("x"));
  auto r = s.run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnsupported);
  OpCase two("Constant", 13);
  two.attr("value_int", ir::Attribute::from_int(1)).attr("value_float", ir::Attribute::from_float(1));
  EXPECT_TRUE(fails_naming_node(two.run()));
  OpCase none("Constant", 13);
  EXPECT_TRUE(fails_naming_node(none.run()));
}

TEST(GenerateOps, ConstantOfShapeFillsAndChecksSizes) {
  OpCase c("ConstantOfShape", 20);
  c.attr("value", ir::Attribute::from_tensor(tensor_of(DataType::kInt32, {1}, {-4}))).input(ints({2, 3}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], tensor_of(DataType::kInt32, {2, 3}, {-4, -4, -4, -4, -4, -4}), 0, 0));

  OpCase d("ConstantOfShape", 20);  // default: float32 zeros; an empty shape gives a scalar
  d.input(ints({}));
  out = d.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], scalar(DataType::kFloat32, 0), 0, 0));

  for (auto s : std::vector<std::vector<int64_t>>{{2, -1}, {1 << 20, 1 << 20}}) {
    OpCase bad("ConstantOfShape", 20);
    bad.input(ints(s));
    EXPECT_TRUE(fails_naming_node(bad.run()));
  }
  OpCase sy("ConstantOfShape", 20);
  sy.input(ints({2, 3}));
  auto r = infer(sy, {tt(DataType::kInt64, {3})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[?,?,?]");
}

TEST(GenerateOps, RangeMatchesLoop) {
  struct Case {
    DataType dt;
    double start, limit, delta;
  };
  std::vector<Case> cases = {{DataType::kFloat32, 1, 5, 2},   {DataType::kInt32, 10, 6, -3},
                             {DataType::kInt64, -5, 5, 3},    {DataType::kFloat64, 0.5, -2, -0.75},
                             {DataType::kFloat16, 1, 5, 0.5}, {DataType::kBFloat16, 1, 5, 2},
                             {DataType::kInt16, 3, 3, 1},     {DataType::kInt64, 0, -3, 1}};
  for (const Case& k : cases) {
    OpCase c("Range", 11);
    c.input(scalar(k.dt, k.start)).input(scalar(k.dt, k.limit)).input(scalar(k.dt, k.delta));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    std::vector<double> want;
    for (double v = k.start; k.delta > 0 ? v < k.limit : v > k.limit; v += k.delta) want.push_back(v);
    EXPECT_TRUE(tensors_close((*out)[0], tensor_of(k.dt, {static_cast<int64_t>(want.size())}, want), 1e-6, 0));
  }
  OpCase extreme("Range", 11);  // a full int64 span must not overflow while counting
  extreme.input(scalar(DataType::kInt64, -9.2e18))
      .input(scalar(DataType::kInt64, 9.2e18))
      .input(scalar(DataType::kInt64, 4.6e18));
  auto out = extreme.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].numel(), 4);
  for (double delta : {0.0, 1e-9}) {
    OpCase bad("Range", 11);
    bad.input(scalar(DataType::kFloat32, 0))
        .input(scalar(DataType::kFloat32, 1e3))
        .input(scalar(DataType::kFloat32, delta));
    EXPECT_TRUE(fails_naming_node(bad.run())) << delta;
  }
}

TEST(GenerateOps, DepthToSpaceAndBackAreInverses) {
  for (std::string mode : {"DCR", "CRD"}) {
    OpCase d2s("DepthToSpace", 13);
    d2s.attr("blocksize", ir::Attribute::from_int(2)).attr("mode", ir::Attribute::from_string(mode));
    d2s.input(DataType::kFloat32, {2, 8, 2, 3});
    auto out = d2s.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& x = *d2s.inputs()[0];
    // The spec's formulas, element by element.
    Tensor want = expected_by_coords(DataType::kFloat32, {2, 2, 4, 6}, [&](const std::vector<int64_t>& o) {
      int64_t by = o[2] % 2, bx = o[3] % 2;
      int64_t ch = mode == "DCR" ? (by * 2 + bx) * 2 + o[1] : o[1] * 4 + by * 2 + bx;
      return at(x, {o[0], ch, o[2] / 2, o[3] / 2});
    });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << mode;

    OpCase s2d("SpaceToDepth", 13);
    s2d.attr("blocksize", ir::Attribute::from_int(2)).attr("mode", ir::Attribute::from_string(mode));
    s2d.input((*out)[0]);
    auto back = s2d.run();
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_TRUE(tensors_close((*back)[0], x, 0, 0)) << mode;
  }
  OpCase bad("DepthToSpace", 13);
  bad.attr("blocksize", ir::Attribute::from_int(3)).input(DataType::kFloat32, {1, 8, 2, 2});
  EXPECT_TRUE(fails_naming_node(bad.run()));
  OpCase s("SpaceToDepth", 13);
  s.attr("blocksize", ir::Attribute::from_int(2)).input(DataType::kFloat32, {1, 2, 4, 4});
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), 2, 4, 4})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,8,2,2]");
}

TEST(GenerateOps, CenterCropPadCropsAndPadsAroundTheCenter) {
  OpCase c("CenterCropPad", 18);
  c.attr("axes", ir::Attribute::from_ints({0, -1})).input(DataType::kFloat32, {5, 3, 2}).input(ints({2, 5}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  // Axis 0: 5 -> 2 starts at (5 - 2) / 2 = 1. Axis 2: 2 -> 5 puts the input at (5 - 2) / 2 = 1.
  Tensor want = expected_by_coords(DataType::kFloat32, {2, 3, 5}, [&](const std::vector<int64_t>& o) {
    int64_t k = o[2] - 1;
    return k >= 0 && k < 2 ? at(x, {o[0] + 1, o[1], k}) : 0.0;
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  OpCase bad("CenterCropPad", 18);
  bad.input(DataType::kFloat32, {5, 3}).input(ints({2}));
  EXPECT_TRUE(fails_naming_node(bad.run()));
}

// The CUDA kernels (when a GPU is present) must match the reference.
TEST(GenerateOps, CudaKernelsMatchReference) {
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64, DataType::kBool}) {
    OpCase c("ConstantOfShape", 20);
    c.attr("value", ir::Attribute::from_tensor(scalar(dt, 1)));
    c.input(ints({3, 7, 5}));
    EXPECT_GE(c.expect_all_kernels_match(0, 0), 0);
  }
  OpCase d("ConstantOfShape", 20);  // default float32 zeros
  d.input(ints({1000, 3}));
  EXPECT_GE(d.expect_all_kernels_match(0, 0), 0);
  struct Case {
    DataType dt;
    double start, limit, delta;
  };
  for (const Case& k : std::vector<Case>{{DataType::kFloat32, 1, 500, 0.7},
                                         {DataType::kInt32, 10, -600, -3},
                                         {DataType::kInt64, -5, 5000, 3},
                                         {DataType::kFloat64, 0.5, -2, -0.75},
                                         {DataType::kFloat16, 1, 5, 0.5},
                                         {DataType::kInt16, 3, 3, 1}}) {
    OpCase r("Range", 11);
    r.input(scalar(k.dt, k.start)).input(scalar(k.dt, k.limit)).input(scalar(k.dt, k.delta));
    EXPECT_GE(r.expect_all_kernels_match(1e-6, 1e-6), 0);
  }
  for (std::string mode : {"DCR", "CRD"}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64}) {
      OpCase d2s("DepthToSpace", 13);
      d2s.attr("blocksize", ir::Attribute::from_int(3)).attr("mode", ir::Attribute::from_string(mode));
      d2s.input(dt, {2, 18, 5, 7}, -9, 9);
      EXPECT_GE(d2s.expect_all_kernels_match(0, 0), 0) << mode;
      OpCase s2d("SpaceToDepth", 13);
      s2d.attr("blocksize", ir::Attribute::from_int(2)).input(dt, {2, 3, 10, 14}, -9, 9);
      if (mode == "CRD") s2d.attr("mode", ir::Attribute::from_string(mode));
      EXPECT_GE(s2d.expect_all_kernels_match(0, 0), 0) << mode;
    }
  }
}

// kiln SpaceToDepthNhwc: the reference against the definition element by element (pads
// on every side, odd sizes, fewer channels than `channels`, FP32 in and FP16/BF16 out), and
// the CUDA kernel against the reference, bit for bit (its 16-byte stores for 4 channels, the
// scalar path for others); bad attributes and odd padded sizes are errors naming them.
TEST(SpaceToDepthNhwc, MatchesDefinitionAndCudaKernel) {
  struct Case {
    Dims x;
    std::vector<int64_t> pads;
    int64_t channels;
    DataType dt, to;
  };
  constexpr DataType kSame = DataType::kUndefined;
  for (const Case& k : {Case{{2, 3, 10, 14}, {4, 4, 2, 2}, 4, DataType::kFloat16, kSame},
                        Case{{3, 1, 9, 7}, {1, 3, 2, 0}, 4, DataType::kFloat32, kSame},
                        Case{{1, 4, 6, 6}, {0, 0, 0, 0}, 4, DataType::kBFloat16, kSame},
                        Case{{2, 3, 5, 8}, {3, 0, 0, 2}, 3, DataType::kFloat16, kSame},
                        Case{{2, 2, 4, 4}, {2, 2, 2, 2}, 5, DataType::kInt64, kSame},
                        Case{{2, 3, 12, 10}, {4, 4, 2, 2}, 4, DataType::kFloat32, DataType::kFloat16},
                        Case{{1, 3, 7, 9}, {1, 1, 0, 2}, 4, DataType::kFloat32, DataType::kBFloat16},
                        Case{{2, 2, 6, 6}, {0, 2, 0, 0}, 3, DataType::kFloat32, DataType::kFloat16}}) {
    SCOPED_TRACE(dims_to_string(k.x) + " channels " + std::to_string(k.channels) + " " + dtype_name(k.dt) +
                 (k.to == kSame ? "" : std::string(" to ") + dtype_name(k.to)));
    OpCase c("SpaceToDepthNhwc", 1, "kiln");
    c.attr("pads", ir::Attribute::from_ints(k.pads)).attr("channels", ir::Attribute::from_int(k.channels));
    if (k.to != kSame) c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(k.to)));
    c.input(k.dt, k.x, -9, 9);
    auto out = c.run("ref");
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& y = (*out)[0];
    const Tensor& x = *c.inputs()[0];
    const int64_t bh = (k.x[2] + k.pads[0] + k.pads[2]) / 2, bw = (k.x[3] + k.pads[1] + k.pads[3]) / 2;
    ASSERT_EQ(y.dims(), (Dims{k.x[0], bh, bw, 4 * k.channels}));
    for (int64_t i = 0; i < y.numel(); ++i) {
      int64_t r = i;
      const int64_t ch = r % k.channels;
      r /= k.channels;
      const int64_t pq = r % 4;
      r /= 4;
      const int64_t j = r % bw, ii = (r / bw) % bh, b = r / bw / bh;
      const int64_t hh = 2 * ii + pq / 2 - k.pads[0], ww = 2 * j + pq % 2 - k.pads[1];
      const bool inside = ch < k.x[1] && hh >= 0 && hh < k.x[2] && ww >= 0 && ww < k.x[3];
      Tensor want = Tensor::zeros(k.to == kSame ? k.dt : k.to, {1});  // the value rounded to the output dtype
      if (inside) want.set_from_double(0, x.get_as_double(((b * k.x[1] + ch) * k.x[2] + hh) * k.x[3] + ww));
      ASSERT_EQ(y.get_as_double(i), want.get_as_double(0)) << "element " << i;
    }
    EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels());
  }
  OpCase odd("SpaceToDepthNhwc", 1, "kiln");
  odd.attr("pads", ir::Attribute::from_ints({1, 0, 1, 0})).attr("channels", ir::Attribute::from_int(4));
  odd.input(DataType::kFloat32, {1, 3, 5, 6});
  auto r = odd.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("height 5 plus its pads is odd"), std::string::npos) << r.status().message();
  OpCase wide("SpaceToDepthNhwc", 1, "kiln");
  wide.attr("channels", ir::Attribute::from_int(2)).input(DataType::kFloat32, {1, 3, 4, 4});
  r = wide.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("more than channels = 2"), std::string::npos) << r.status().message();
  OpCase to_int("SpaceToDepthNhwc", 1, "kiln");
  to_int.attr("channels", ir::Attribute::from_int(4)).attr("to", ir::Attribute::from_int(7));
  to_int.input(DataType::kFloat32, {1, 3, 4, 4});
  r = to_int.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("to must be float32, float16 or bfloat16"), std::string::npos)
      << r.status().message();
}

// The CUDA rows kernel (channels = 4, outputs of 2-8 byte types) against the reference, bit
// for bit: ResNet-like stems (pads 3, FP32 and FP16 in, FP16 out) with 16-byte row loads
// (W % 4 fp32, W % 8 fp16) and element loads (W = 30), strips of several rows ending in a
// partial one (odd output heights), fewer input channels than 4, pads wider than a row pair,
// and same-dtype moves of 4 and 8 bytes.
TEST(SpaceToDepthNhwc, CudaRowsKernelStemAndOddShapes) {
  struct Case {
    Dims x;
    std::vector<int64_t> pads;
    DataType dt, to;
  };
  constexpr DataType kSame = DataType::kUndefined;
  for (const Case& k : {Case{{2, 3, 30, 30}, {3, 3, 3, 3}, DataType::kFloat32, DataType::kFloat16},
                        Case{{2, 3, 30, 30}, {3, 3, 3, 3}, DataType::kFloat16, kSame},
                        Case{{2, 3, 32, 32}, {3, 3, 3, 3}, DataType::kFloat32, DataType::kFloat16},
                        Case{{2, 3, 32, 32}, {3, 3, 3, 3}, DataType::kFloat16, kSame},
                        Case{{1, 3, 26, 40}, {3, 3, 3, 3}, DataType::kFloat16, kSame},
                        Case{{1, 3, 26, 40}, {3, 3, 3, 3}, DataType::kFloat32, DataType::kBFloat16},
                        Case{{3, 3, 29, 31}, {3, 3, 0, 0}, DataType::kFloat32, DataType::kFloat16},
                        Case{{2, 2, 17, 24}, {5, 0, 0, 2}, DataType::kFloat16, kSame},
                        Case{{2, 1, 8, 16}, {0, 1, 0, 1}, DataType::kBFloat16, kSame},
                        Case{{1, 3, 12, 12}, {3, 3, 1, 1}, DataType::kFloat32, kSame},
                        Case{{2, 3, 6, 10}, {7, 1, 1, 1}, DataType::kInt64, kSame}}) {
    SCOPED_TRACE(dims_to_string(k.x) + " " + dtype_name(k.dt) +
                 (k.to == kSame ? "" : std::string(" to ") + dtype_name(k.to)));
    OpCase c("SpaceToDepthNhwc", 1, "kiln");
    c.attr("pads", ir::Attribute::from_ints(k.pads)).attr("channels", ir::Attribute::from_int(4));
    if (k.to != kSame) c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(k.to)));
    c.input(k.dt, k.x, -9, 9);
    EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels());
  }
}

}  // namespace
}  // namespace kiln::test
