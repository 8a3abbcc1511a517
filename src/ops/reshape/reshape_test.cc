#include "backends/cuda/device.h"
#include "ops/reshape/movement_test_util.h"

namespace kiln::test {
namespace {

// Reshape-like ops keep the bytes; check dims and that every element is unchanged.
void expect_same_bytes(const Tensor& y, const Tensor& x, const Dims& dims) {
  ASSERT_EQ(y.dims(), dims);
  ASSERT_EQ(y.numel(), x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(y.get_as_double(i), x.get_as_double(i)) << i;
}

TEST(ShapeOps, ReshapeCopiesZeroAndInfersMinusOne) {
  for (DataType dt : {DataType::kFloat32, DataType::kInt8, DataType::kBool, DataType::kBFloat16}) {
    OpCase c("Reshape", 13);
    c.input(dt, {2, 3, 4}, -5, 5).input(ints({2, 0, -1, 2}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    expect_same_bytes((*out)[0], *c.inputs()[0], {2, 3, 2, 2});
  }
}

TEST(ShapeOps, ReshapeAllowZeroKeepsZeroDims) {
  OpCase c("Reshape", 14);
  c.attr("allowzero", ir::Attribute::from_int(1));
  c.input(DataType::kFloat32, {0, 3, 4}).input(ints({3, 4, 0}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{3, 4, 0}));
}

TEST(ShapeOps, ReshapeOpset1TakesTheShapeAttribute) {
  OpCase c("Reshape", 4);
  c.attr("shape", ir::Attribute::from_ints({-1, 6}));
  c.input(DataType::kFloat32, {2, 3, 4});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_same_bytes((*out)[0], *c.inputs()[0], {4, 6});
}

TEST(ShapeOps, ReshapeRejectsBadShapes) {
  std::vector<std::vector<int64_t>> bad = {{-1, -1, 2},     {5, 5},           {2, -2, 6},
                                           {2, 3, 4, 0, 0}, {0, -1, 0, 1, 7}, {-1, 0, 5}};
  for (auto& s : bad) {
    OpCase c("Reshape", 13);
    c.input(DataType::kFloat32, {2, 3, 4}).input(ints(s));
    EXPECT_TRUE(fails_naming_node(c.run()));
  }
  OpCase z("Reshape", 14);  // allowzero with both 0 and -1
  z.attr("allowzero", ir::Attribute::from_int(1));
  z.input(DataType::kFloat32, {0, 4}).input(ints({0, -1}));
  EXPECT_TRUE(fails_naming_node(z.run()));
}

TEST(ShapeOps, ReshapeInfersSymbolicDims) {
  OpCase c("Reshape", 13);
  c.input(DataType::kFloat32, {1, 3, 4}).input(ints({0, -1}));
  Tensor shape = ints({0, -1});
  auto r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 3, 4}), tt(DataType::kInt64, {2})}, {nullptr, &shape});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[batch,12]");

  Tensor shape2 = ints({-1, 3, 4});
  r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 12}), tt(DataType::kInt64, {3})}, {nullptr, &shape2});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[batch,3,4]");

  Tensor shape3 = ints({-1, 5});  // not resolvable with a symbol left over
  r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 12}), tt(DataType::kInt64, {2})}, {nullptr, &shape3});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[?,5]");

  // Unknown shape value: the rank comes from the shape input's length.
  r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 12}), tt(DataType::kInt64, {3})});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[?,?,?]");
}

TEST(ShapeOps, FlattenMatchesProducts) {
  for (int64_t axis : {0, 1, 2, 3, 4, -1, -4}) {
    OpCase c("Flatten", 13);
    c.attr("axis", ir::Attribute::from_int(axis));
    c.input(DataType::kFloat16, {2, 3, 4, 5});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    int64_t a = axis < 0 ? axis + 4 : axis;
    Dims d = {2, 3, 4, 5};
    int64_t left = 1;
    for (int64_t i = 0; i < a; ++i) left *= d[static_cast<size_t>(i)];
    expect_same_bytes((*out)[0], *c.inputs()[0], {left, 120 / left});
  }
  OpCase bad("Flatten", 13);
  bad.attr("axis", ir::Attribute::from_int(5)).input(DataType::kFloat32, {2, 3, 4, 5});
  EXPECT_TRUE(fails_naming_node(bad.run()));

  OpCase s("Flatten", 13);
  s.input(DataType::kFloat32, {1, 3, 4});
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), 3, 4})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,12]");
}

TEST(ShapeOps, SqueezeAttributeAndInput) {
  OpCase a("Squeeze", 11);
  a.attr("axes", ir::Attribute::from_ints({0, -2})).input(DataType::kInt32, {1, 3, 1, 5});
  auto out = a.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_same_bytes((*out)[0], *a.inputs()[0], {3, 5});

  OpCase b("Squeeze", 13);
  b.input(DataType::kInt32, {1, 3, 1, 5}).input(ints({2}));
  out = b.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_same_bytes((*out)[0], *b.inputs()[0], {1, 3, 5});

  OpCase all("Squeeze", 13);
  all.input(DataType::kInt32, {1, 3, 1, 5});
  out = all.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{3, 5}));

  OpCase bad("Squeeze", 13);
  bad.input(DataType::kInt32, {1, 3, 1, 5}).input(ints({1}));
  EXPECT_TRUE(fails_naming_node(bad.run()));
  OpCase dup("Squeeze", 13);
  dup.input(DataType::kInt32, {1, 3, 1, 5}).input(ints({0, -4}));
  EXPECT_TRUE(fails_naming_node(dup.run()));
}

TEST(ShapeOps, SqueezeInfersSymbolicDims) {
  OpCase c("Squeeze", 13);
  c.input(DataType::kFloat32, {1, 1, 4}).input(ints({1}));
  Tensor axes = ints({1});
  auto r =
      infer(c, {tt(DataType::kFloat32, {sym("batch"), 1, sym("seq")}), tt(DataType::kInt64, {1})}, {nullptr, &axes});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[batch,seq]");
  OpCase n("Squeeze", 13);
  n.input(DataType::kFloat32, {1, 1, 4});
  r = infer(n, {tt(DataType::kFloat32, {sym("batch"), 1, 4})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "unranked");  // batch might be 1
}

TEST(ShapeOps, UnsqueezeAttributeAndInput) {
  OpCase a("Unsqueeze", 11);
  a.attr("axes", ir::Attribute::from_ints({0, -1})).input(DataType::kFloat32, {3, 4});
  auto out = a.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_same_bytes((*out)[0], *a.inputs()[0], {1, 3, 4, 1});

  OpCase b("Unsqueeze", 13);
  b.input(DataType::kFloat32, {3, 4, 5}).input(ints({5, 4, 2}));
  out = b.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_same_bytes((*out)[0], *b.inputs()[0], {3, 4, 1, 5, 1, 1});

  for (auto axes : std::vector<std::vector<int64_t>>{{0, 0}, {4}, {-5}}) {
    OpCase bad("Unsqueeze", 13);
    bad.input(DataType::kFloat32, {3, 4}).input(ints(axes));
    EXPECT_TRUE(fails_naming_node(bad.run()));
  }
  OpCase missing("Unsqueeze", 13);
  missing.input(DataType::kFloat32, {3, 4});
  EXPECT_TRUE(fails_naming_node(missing.run()));

  OpCase s("Unsqueeze", 13);
  s.input(DataType::kFloat32, {3, 4}).input(ints({1}));
  Tensor axes = ints({1});
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), sym("seq")}), tt(DataType::kInt64, {1})}, {nullptr, &axes});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,1,seq]");
}

TEST(ShapeOps, TransposeMatchesCoordinatePermutation) {
  std::vector<int64_t> perm = {2, 0, 3, 1};
  for (DataType dt : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kUInt8, DataType::kBool}) {
    OpCase c("Transpose", 13);
    c.attr("perm", ir::Attribute::from_ints(perm)).input(dt, {2, 3, 4, 5}, -9, 9);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& x = *c.inputs()[0];
    Tensor want = expected_by_coords(dt, {4, 2, 5, 3}, [&](const std::vector<int64_t>& o) {
      std::vector<int64_t> i(4);
      for (size_t j = 0; j < 4; ++j) i[static_cast<size_t>(perm[j])] = o[j];
      return at(x, i);
    });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  }
}

TEST(ShapeOps, TransposeDefaultReversesAndValidatesPerm) {
  OpCase c("Transpose", 13);
  c.input(DataType::kInt64, {2, 3, 4}, -100, 100);
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kInt64, {4, 3, 2}, [&](const std::vector<int64_t>& o) {
    return at(x, {o[2], o[1], o[0]});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  for (auto perm : std::vector<std::vector<int64_t>>{{0, 1}, {0, 0, 1}, {0, 1, 3}, {-1, 0, 1}}) {
    OpCase bad("Transpose", 13);
    bad.attr("perm", ir::Attribute::from_ints(perm)).input(DataType::kFloat32, {2, 3, 4});
    EXPECT_TRUE(fails_naming_node(bad.run()));
  }
  OpCase s("Transpose", 13);
  s.attr("perm", ir::Attribute::from_ints({1, 0, 2})).input(DataType::kFloat32, {2, 3, 4});
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), sym("seq"), 4})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[seq,batch,4]");
}

TEST(ShapeOps, ShapeWithStartEnd) {
  struct Case {
    std::optional<int64_t> start, end;
    std::vector<int64_t> want;
  };
  std::vector<Case> cases = {{{}, {}, {3, 4, 5}}, {1, {}, {4, 5}}, {{}, -1, {3, 4}}, {-10, 10, {3, 4, 5}},
                             {2, 1, {}},          {-1, {}, {5}},   {1, 2, {4}}};
  for (const Case& k : cases) {
    OpCase c("Shape", 15);
    if (k.start) c.attr("start", ir::Attribute::from_int(*k.start));
    if (k.end) c.attr("end", ir::Attribute::from_int(*k.end));
    c.input(DataType::kFloat32, {3, 4, 5});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(tensors_close((*out)[0], ints(k.want), 0, 0));
  }
  OpCase old("Shape", 13);  // start/end did not exist before opset 15
  old.attr("start", ir::Attribute::from_int(1)).input(DataType::kFloat32, {3, 4, 5});
  auto out = old.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].numel(), 3);
}

TEST(ShapeOps, SizeCountsElements) {
  OpCase c("Size", 13);
  c.input(DataType::kFloat32, {3, 4, 5});
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].dims(), Dims{});
  EXPECT_EQ((*out)[0].data_as<int64_t>()[0], 60);
  OpCase e("Size", 13);
  e.input(DataType::kFloat32, {3, 0});
  out = e.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].data_as<int64_t>()[0], 0);
}

// The CUDA kernels (when a GPU is present) must match the reference on every path.
TEST(ShapeOps, CudaCopyOpsMatchReference) {
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64, DataType::kBool}) {
    OpCase r("Reshape", 14);
    r.input(dt, {2, 3, 7, 5}, -9, 9).input(ints({6, -1}));
    EXPECT_GE(r.expect_all_kernels_match(0, 0), 0);
    OpCase f("Flatten", 13);
    f.attr("axis", ir::Attribute::from_int(-2)).input(dt, {1, 3, 7, 5}, -9, 9);
    EXPECT_GE(f.expect_all_kernels_match(0, 0), 0);
    OpCase s("Squeeze", 13);
    s.input(dt, {1, 3, 1, 5}, -9, 9).input(ints({0, -2}));
    EXPECT_GE(s.expect_all_kernels_match(0, 0), 0);
    OpCase u("Unsqueeze", 13);
    u.input(dt, {3, 5}, -9, 9).input(ints({0, -1}));
    EXPECT_GE(u.expect_all_kernels_match(0, 0), 0);
  }
  OpCase e("Reshape", 14);  // empty tensors launch nothing
  e.attr("allowzero", ir::Attribute::from_int(1)).input(DataType::kFloat32, {0, 3}).input(ints({3, 0}));
  EXPECT_GE(e.expect_all_kernels_match(0, 0), 0);
}

TEST(ShapeOps, CudaTransposeMatchesReference) {
  struct Case {
    Dims dims;
    std::vector<int64_t> perm;
  };
  std::vector<Case> cases = {
      {{37}, {0}},                               // rank 1
      {{33, 65}, {1, 0}},                        // tiled, partial tiles
      {{3, 70, 41}, {0, 2, 1}},                  // batched tiled
      {{2, 3, 7, 5}, {0, 2, 3, 1}},              // NCHW -> NHWC (merges to a tiled swap)
      {{2, 7, 5, 3}, {0, 3, 1, 2}},              // NHWC -> NCHW
      {{2, 3, 4, 5}, {2, 0, 3, 1}},              // general
      {{2, 1, 3, 1, 4}, {4, 1, 0, 3, 2}},        // size-1 dims dropped
      {{2, 3, 2, 5, 3}, {4, 2, 0, 3, 1}},        // rank 5
      {{2, 3, 2, 3, 2, 3}, {5, 0, 4, 1, 3, 2}},  // rank 6
      {{3, 5, 7}, {0, 1, 2}},                    // identity
      {{1, 1030, 3}, {2, 1, 0}},                 // 2-D swap after dropping the 1
      {{2, 16, 33}, {0, 2, 1}},                  // narrow rows (one thread per column)
      {{2, 17, 33}, {0, 2, 1}},                  // just past narrow: tiled
  };
  for (const Case& k : cases) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64, DataType::kUInt8}) {
      OpCase c("Transpose", 13);
      c.attr("perm", ir::Attribute::from_ints(k.perm)).input(dt, k.dims, -100, 100);
      EXPECT_GE(c.expect_all_kernels_match(0, 0), 0) << dims_to_string(k.dims);
    }
  }
  OpCase d("Transpose", 13);  // default perm reverses
  d.input(DataType::kBFloat16, {4, 3, 129});
  EXPECT_GE(d.expect_all_kernels_match(0, 0), 0);
  OpCase big("Transpose", 13);  // more elements than one grid pass of blocks
  big.attr("perm", ir::Attribute::from_ints({1, 0})).input(DataType::kFloat32, {1027, 2051});
  EXPECT_GE(big.expect_all_kernels_match(0, 0), 0);
}

// Perms that keep the innermost axis move whole rows in 16/8/4-byte units when
// the row's bytes allow it, element by element otherwise.
TEST(ShapeOps, TransposeKeepingTheLastAxisMatchesReference) {
  struct Case {
    DataType dt;
    Dims dims;
    std::vector<int64_t> perm;
  };
  for (const Case& k : {Case{DataType::kFloat16, {2, 5, 3, 64}, {0, 2, 1, 3}},  // attention heads, 128-byte rows
                        Case{DataType::kFloat32, {2, 3, 4, 6}, {1, 0, 2, 3}},   // 24-byte rows: 8-byte units
                        Case{DataType::kFloat16, {2, 3, 4, 5}, {2, 0, 1, 3}},   // 10-byte rows: elements
                        Case{DataType::kInt8, {3, 7, 2, 12}, {1, 2, 0, 3}},     // 12-byte rows: 4-byte units
                        Case{DataType::kFloat32, {4, 33, 3, 8}, {2, 1, 0, 3}}}) {
    SCOPED_TRACE(dims_to_string(k.dims));
    OpCase c("Transpose", 13);
    c.attr("perm", ir::Attribute::from_ints(k.perm)).input(k.dt, k.dims, -9, 9);
    EXPECT_GE(c.expect_all_kernels_match(0, 0), cuda::device_count() > 0 ? 1 : 0);
  }
}

// Perms that keep a short innermost row (<= 64 bytes) and move other axes past it stage
// tiles of rows in shared memory (permute_row_tiles): ViT's patchify, partial tiles on both
// tiled axes (35 and 40 rows: 32 + a rest), tiles shrunk to fit 16 KB (64-byte rows), rows of
// one to four units, three batch axes.
TEST(ShapeOps, CudaTransposeOfShortRowsMatchesReference) {
  struct Case {
    DataType dt;
    Dims dims;
    std::vector<int64_t> perm;
  };
  for (const Case& k : {Case{DataType::kFloat16, {2, 3, 5, 16, 7, 16}, {0, 2, 4, 1, 3, 5}},  // patchify, 32-byte rows
                        Case{DataType::kFloat32, {2, 40, 3, 35, 4}, {0, 3, 2, 1, 4}},        // one 16-byte unit
                        Case{DataType::kFloat16, {2, 40, 3, 35, 4}, {0, 3, 2, 1, 4}},        // one 8-byte unit
                        Case{DataType::kInt64, {2, 40, 3, 35, 4}, {0, 3, 2, 1, 4}},          // two 16-byte units
                        Case{DataType::kUInt8, {3, 37, 33, 3}, {2, 0, 1, 3}},                // 3-byte rows: bytes
                        Case{DataType::kFloat16, {3, 33, 34, 32}, {2, 0, 1, 3}},  // 64-byte rows, shrunk tiles
                        Case{DataType::kFloat16, {2, 3, 4, 5}, {2, 0, 1, 3}}}) {  // 10-byte rows: elements
    SCOPED_TRACE(dims_to_string(k.dims));
    OpCase c("Transpose", 13);
    c.attr("perm", ir::Attribute::from_ints(k.perm)).input(k.dt, k.dims, -100, 100);
    EXPECT_GE(c.expect_all_kernels_match(0, 0), cuda::device_count() > 0 ? 1 : 0);
  }
  OpCase big("Transpose", 13);  // ViT-B/16's patchify of 8 images: 5376 tiles
  big.attr("perm", ir::Attribute::from_ints({0, 2, 4, 1, 3, 5})).input(DataType::kFloat16, {8, 3, 14, 16, 14, 16});
  EXPECT_GE(big.expect_all_kernels_match(0, 0), cuda::device_count() > 0 ? 1 : 0);
}

// NCHW -> NHWC with few channels (an image entering a channels-last engine) merges to
// [N, C, H*W] -> [N, H*W, C] and stages pixels in shared memory: odd H*W, tiles that
// straddle images, the last partial tile, C = 3 / 8 / 16 and element sizes 1 to 8.
TEST(ShapeOps, CudaTransposeToChannelsLastFewChannels) {
  const std::vector<Dims> shapes = {{2, 3, 7, 5},   {3, 3, 17, 13}, {2, 3, 45, 47}, {1, 3, 64, 64},
                                    {5, 8, 19, 21}, {1, 8, 33, 31}, {2, 16, 9, 11}, {3, 1, 7, 9}};
  for (const Dims& d : shapes)
    for (DataType dt :
         {DataType::kFloat16, DataType::kFloat32, DataType::kBFloat16, DataType::kUInt8, DataType::kInt64}) {
      OpCase c("Transpose", 13);
      c.attr("perm", ir::Attribute::from_ints({0, 2, 3, 1})).input(dt, d, -100, 100);
      EXPECT_GE(c.expect_all_kernels_match(0, 0), cuda::device_count() > 0 ? 1 : 0)
          << dtype_name(dt) << " " << dims_to_string(d);
    }
  OpCase big("Transpose", 13);  // 32 images of 3 x 130 x 129: many tiles per image
  big.attr("perm", ir::Attribute::from_ints({0, 2, 3, 1})).input(DataType::kFloat16, {32, 3, 130, 129});
  EXPECT_GE(big.expect_all_kernels_match(0, 0), cuda::device_count() > 0 ? 1 : 0);
}

}  // namespace
}  // namespace kiln::test
