#include <limits>

#include "ops/reshape/movement_test_util.h"

namespace kiln::test {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(ConcatOps, ConcatMatchesCoordinates) {
  for (int64_t axis : {0, 1, 2, -1}) {
    OpCase c("Concat", 13);
    c.attr("axis", ir::Attribute::from_int(axis));
    std::vector<Dims> dims = {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}};
    int64_t a = axis < 0 ? axis + 3 : axis;
    for (size_t i = 0; i < dims.size(); ++i) dims[i][static_cast<size_t>(a)] = static_cast<int64_t>(i) + 1;
    for (auto& d : dims) c.input(DataType::kFloat32, d);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    Dims od = dims[0];
    od[static_cast<size_t>(a)] = 6;
    Tensor want = expected_by_coords(DataType::kFloat32, od, [&](std::vector<int64_t> o) {
      size_t k = 0;
      while (o[static_cast<size_t>(a)] >= dims[k][static_cast<size_t>(a)])
        o[static_cast<size_t>(a)] -= dims[k++][static_cast<size_t>(a)];
      return at(*c.inputs()[k], o);
    });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  }
}

TEST(ConcatOps, ConcatHandlesEmptyInputsAndErrors) {
  OpCase c("Concat", 13);
  c.attr("axis", ir::Attribute::from_int(0)).input(DataType::kInt64, {0, 3}).input(DataType::kInt64, {2, 3});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], *c.inputs()[1], 0, 0));

  OpCase rank("Concat", 13);
  rank.attr("axis", ir::Attribute::from_int(0)).input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {2, 3, 1});
  EXPECT_TRUE(fails_naming_node(rank.run()));
  OpCase dim("Concat", 13);
  dim.attr("axis", ir::Attribute::from_int(0)).input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {2, 4});
  EXPECT_TRUE(fails_naming_node(dim.run()));
  OpCase ax("Concat", 13);
  ax.attr("axis", ir::Attribute::from_int(2)).input(DataType::kFloat32, {2, 3});
  EXPECT_TRUE(fails_naming_node(ax.run()));
  OpCase noax("Concat", 13);
  noax.input(DataType::kFloat32, {2, 3});
  EXPECT_TRUE(fails_naming_node(noax.run()));
}

TEST(ConcatOps, ConcatInfersSymbolicDims) {
  OpCase c("Concat", 13);
  c.attr("axis", ir::Attribute::from_int(1)).input(DataType::kFloat32, {1, 3}).input(DataType::kFloat32, {1, 5});
  auto r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 3}), tt(DataType::kFloat32, {Dim::unknown(), 5})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,8]");
  r = infer(c, {tt(DataType::kFloat32, {2, sym("n")}), tt(DataType::kFloat32, {2, 5})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[2,?]");
}

// Checks Split's outputs are consecutive column ranges of the given widths.
void expect_column_split(const std::vector<Tensor>& out, const Tensor& x, const std::vector<int64_t>& widths) {
  ASSERT_EQ(out.size(), widths.size());
  int64_t start = 0;
  for (size_t i = 0; i < widths.size(); ++i) {
    Tensor w = expected_by_coords(x.dtype(), {x.dim(0), widths[i]}, [&](const std::vector<int64_t>& o) {
      return at(x, {o[0], o[1] + start});
    });
    EXPECT_TRUE(tensors_close(out[i], w, 0, 0)) << "output " << i;
    start += widths[i];
  }
}

TEST(ConcatOps, SplitEqualAndVariable) {
  OpCase eq("Split", 13);
  eq.attr("axis", ir::Attribute::from_int(-1)).outputs(3).input(DataType::kFloat32, {2, 6});
  auto out = eq.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_column_split(*out, *eq.inputs()[0], {2, 2, 2});

  OpCase var("Split", 13);
  var.attr("axis", ir::Attribute::from_int(1))
      .outputs(3)
      .input(DataType::kInt32, {2, 6}, -50, 50)
      .input(ints({1, 0, 5}));
  out = var.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_column_split(*out, *var.inputs()[0], {1, 0, 5});

  OpCase attr("Split", 11);  // before opset 13 `split` is an attribute
  attr.attr("axis", ir::Attribute::from_int(1)).attr("split", ir::Attribute::from_ints({4, 2})).outputs(2);
  attr.input(DataType::kFloat16, {2, 6});
  out = attr.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_column_split(*out, *attr.inputs()[0], {4, 2});
}

TEST(ConcatOps, SplitNumOutputsMakesTheLastChunkSmaller) {
  OpCase c("Split", 18);
  c.attr("axis", ir::Attribute::from_int(1)).attr("num_outputs", ir::Attribute::from_int(4)).outputs(4);
  c.input(DataType::kFloat32, {2, 7});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  expect_column_split(*out, *c.inputs()[0], {2, 2, 2, 1});
}

TEST(ConcatOps, SplitRejectsBadSizes) {
  OpCase sum("Split", 13);
  sum.outputs(2).input(DataType::kFloat32, {6}).input(ints({2, 3}));
  EXPECT_TRUE(fails_naming_node(sum.run()));
  OpCase neg("Split", 13);
  neg.outputs(2).input(DataType::kFloat32, {6}).input(ints({8, -2}));
  EXPECT_TRUE(fails_naming_node(neg.run()));
  OpCase count("Split", 13);
  count.outputs(3).input(DataType::kFloat32, {6}).input(ints({3, 3}));
  EXPECT_TRUE(fails_naming_node(count.run()));
  OpCase uneven("Split", 13);
  uneven.outputs(4).input(DataType::kFloat32, {6});
  EXPECT_TRUE(fails_naming_node(uneven.run()));
  OpCase both("Split", 18);
  both.attr("num_outputs", ir::Attribute::from_int(2)).outputs(2).input(DataType::kFloat32, {6}).input(ints({3, 3}));
  EXPECT_TRUE(fails_naming_node(both.run()));
}

TEST(ConcatOps, SplitInfersSymbolicDims) {
  OpCase c("Split", 13);
  c.attr("axis", ir::Attribute::from_int(1)).outputs(2).input(DataType::kFloat32, {1, 6});
  auto r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 6})});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[batch,3]");
  r = infer(c, {tt(DataType::kFloat32, {2, sym("n")})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[1]), "[2,?]");
}

TEST(ConcatOps, TileMatchesModulo) {
  for (DataType dt : {DataType::kFloat32, DataType::kInt16, DataType::kBool}) {
    OpCase c("Tile", 13);
    c.input(dt, {2, 3, 4}, -7, 7).input(ints({3, 1, 2}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& x = *c.inputs()[0];
    Tensor want = expected_by_coords(dt, {6, 3, 8}, [&](const std::vector<int64_t>& o) {
      return at(x, {o[0] % 2, o[1] % 3, o[2] % 4});
    });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  }
  OpCase z("Tile", 13);
  z.input(DataType::kFloat32, {2, 3}).input(ints({0, 2}));
  auto out = z.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].dims(), (Dims{0, 6}));
  for (auto reps : std::vector<std::vector<int64_t>>{{1}, {1, -1}, {1 << 20, 1 << 20}}) {
    OpCase bad("Tile", 13);
    bad.input(DataType::kFloat32, {2, 3}).input(ints(reps));
    EXPECT_TRUE(fails_naming_node(bad.run()));
  }
  OpCase s("Tile", 13);
  s.input(DataType::kFloat32, {2, 3}).input(ints({1, 2}));
  Tensor reps = ints({1, 2});
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), 3}), tt(DataType::kInt64, {2})}, {nullptr, &reps});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,6]");
}

TEST(ConcatOps, ExpandBroadcasts) {
  OpCase c("Expand", 13);
  c.input(DataType::kFloat64, {3, 1}).input(ints({2, 1, 6}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kFloat64, {2, 3, 6}, [&](const std::vector<int64_t>& o) {
    return at(x, {o[1], 0});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  OpCase shrink("Expand", 13);  // 1s in the shape keep the input's dims
  shrink.input(DataType::kFloat32, {2, 3}).input(ints({1, 1}));
  out = shrink.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(tensors_close((*out)[0], *shrink.inputs()[0], 0, 0));
  for (auto s : std::vector<std::vector<int64_t>>{{4, 3}, {2, -1}, {1 << 30, 1 << 30, 3}}) {
    OpCase bad("Expand", 13);
    bad.input(DataType::kFloat32, {2, 3}).input(ints(s));
    EXPECT_TRUE(fails_naming_node(bad.run()));
  }
  OpCase sy("Expand", 13);
  sy.input(DataType::kFloat32, {2, 1}).input(ints({1, 4}));
  Tensor shape = ints({1, 4});
  auto r = infer(sy, {tt(DataType::kFloat32, {sym("batch"), 1}), tt(DataType::kInt64, {2})}, {nullptr, &shape});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,4]");
}

// numpy.pad semantics, computed by repeated reflection rather than a period formula.
int64_t naive_pad_source(int64_t i, int64_t n, const std::string& mode) {
  if (i >= 0 && i < n) return i;
  if (mode == "constant") return -1;
  if (mode == "edge") return i < 0 ? 0 : n - 1;
  if (mode == "wrap") {
    while (i < 0) i += n;
    return i % n;
  }
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

TEST(ConcatOps, PadModesMatchNumpySemantics) {
  std::vector<int64_t> pads = {1, 0, 7, 2, 3, 5};  // begins then ends over 3 dims; larger than the dims
  for (std::string mode : {"constant", "reflect", "edge", "wrap"}) {
    for (DataType dt : {DataType::kFloat32, DataType::kInt64, DataType::kFloat16}) {
      OpCase c("Pad", 18);
      c.attr("mode", ir::Attribute::from_string(mode));
      c.input(dt, {2, 3, 4}, -9, 9).input(ints(pads)).input(scalar(dt, 2.5));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << mode << ": " << out.status().to_string();
      const Tensor& x = *c.inputs()[0];
      Dims in = {2, 3, 4};
      Dims od = {2 + 1 + 2, 3 + 0 + 3, 4 + 7 + 5};
      double fill = scalar(dt, 2.5).get_as_double(0);
      Tensor want = expected_by_coords(dt, od, [&](const std::vector<int64_t>& o) {
        std::vector<int64_t> i(3);
        for (size_t d = 0; d < 3; ++d) {
          i[d] = naive_pad_source(o[d] - pads[d], in[d], mode);
          if (i[d] < 0) return fill;
        }
        return at(x, i);
      });
      EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << mode;
    }
  }
}

TEST(ConcatOps, PadCropsAxesAndOldOpsets) {
  // Axes [2, 0]: axis 2 crops one at the front; axis 0 grows two at the front and crops two at the back.
  OpCase c("Pad", 18);
  c.input(DataType::kFloat32, {3, 4, 5}).input(ints({-1, 2, 0, -2})).no_input().input(ints({-1, 0}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kFloat32, {3, 4, 4}, [&](const std::vector<int64_t>& o) {
    return o[0] < 2 ? 0.0 : at(x, {o[0] - 2, o[1], o[2] + 1});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));

  OpCase old("Pad", 2);
  old.attr("pads", ir::Attribute::from_ints({1, 0, 0, 1})).attr("value", ir::Attribute::from_float(7.f));
  old.input(DataType::kFloat32, {2, 2});
  out = old.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& y = *old.inputs()[0];
  Tensor w2 = expected_by_coords(DataType::kFloat32, {3, 3}, [&](const std::vector<int64_t>& o) {
    return o[0] >= 1 && o[1] < 2 ? at(y, {o[0] - 1, o[1]}) : 7.0;
  });
  EXPECT_TRUE(tensors_close((*out)[0], w2, 0, 0));

  for (auto p : std::vector<std::vector<int64_t>>{{1, 1}, {-3, 0, 0, 0}, {int64_t{1} << 40, 0, 0, 0}}) {
    OpCase bad("Pad", 13);
    bad.input(DataType::kFloat32, {2, 2}).input(ints(p));
    EXPECT_TRUE(fails_naming_node(bad.run()));
  }
  OpCase empty("Pad", 13);  // reflect cannot extend an empty axis
  empty.attr("mode", ir::Attribute::from_string("reflect")).input(DataType::kFloat32, {0, 2}).input(ints({1, 0, 0, 0}));
  EXPECT_TRUE(fails_naming_node(empty.run()));

  OpCase s("Pad", 13);
  s.input(DataType::kFloat32, {2, 2}).input(ints({0, 1, 0, 1}));
  Tensor pads = ints({0, 1, 0, 1});
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), 2}), tt(DataType::kInt64, {4})}, {nullptr, &pads});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,4]");
}

// Python slicing, by walking the indices one by one.
std::vector<int64_t> naive_slice(int64_t start, int64_t end, int64_t step, int64_t n) {
  auto fix = [n](int64_t v, bool neg_step) {
    if (v < 0) v = v < -n ? (neg_step ? -1 : 0) : v + n;
    if (v > n) v = neg_step ? n - 1 : n;
    if (neg_step && v == n) v = n - 1;
    return v;
  };
  std::vector<int64_t> r;
  int64_t s = fix(start, step < 0), e = fix(end, step < 0);
  if (start < -n && step < 0) s = -1;
  if (end < -n && step < 0) e = -1;
  for (int64_t i = s; step > 0 ? i < e : i > e; i += step) r.push_back(i);
  return r;
}

TEST(ConcatOps, SliceMatchesPythonSlicing) {
  struct Case {
    int64_t start, end, step;
  };
  std::vector<Case> cases = {{0, 3, 1},      {1, -1, 2},    {-1, kMin, -1}, {kMax, kMin, -2}, {5, 0, -3},
                             {-100, 100, 1}, {100, 200, 1}, {2, 2, 1},      {0, kMax, 7},     {-2, -100, -1}};
  for (const Case& k : cases) {
    OpCase c("Slice", 13);
    c.input(DataType::kFloat32, {4, 9, 2})
        .input(ints({k.start}))
        .input(ints({k.end}))
        .input(ints({1}))
        .input(ints({k.step}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto idx = naive_slice(k.start, k.end, k.step, 9);
    const Tensor& x = *c.inputs()[0];
    Tensor want = expected_by_coords(DataType::kFloat32, {4, static_cast<int64_t>(idx.size()), 2},
                                     [&](const std::vector<int64_t>& o) {
                                       return at(x, {o[0], idx[static_cast<size_t>(o[1])], o[2]});
                                     });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << k.start << ":" << k.end << ":" << k.step;
  }
}

TEST(ConcatOps, SliceSeveralAxesInt32AndOldOpset) {
  OpCase c("Slice", 13);
  Tensor st = tensor_of(DataType::kInt32, {2}, {-1, 1});
  Tensor en = tensor_of(DataType::kInt32, {2}, {0, 3});
  Tensor ax = tensor_of(DataType::kInt32, {2}, {-1, 0});
  Tensor sp = tensor_of(DataType::kInt32, {2}, {-1, 1});
  c.input(DataType::kInt8, {4, 5}, -9, 9).input(st).input(en).input(ax).input(sp);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kInt8, {2, 4}, [&](const std::vector<int64_t>& o) {
    return at(x, {o[0] + 1, 4 - o[1]});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));

  OpCase old("Slice", 9);
  old.attr("starts", ir::Attribute::from_ints({1})).attr("ends", ir::Attribute::from_ints({kMax}));
  old.attr("axes", ir::Attribute::from_ints({1})).input(DataType::kFloat32, {2, 5});
  out = old.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{2, 4}));

  std::vector<std::vector<Tensor>> bad = {{ints({0}), ints({1}), ints({0}), ints({0})},
                                          {ints({0, 0}), ints({1, 1}), ints({1, 1})},
                                          {ints({0}), ints({1, 2})},
                                          {ints({0}), ints({1}), ints({2})}};
  for (auto& in : bad) {
    OpCase b("Slice", 13);
    b.input(DataType::kFloat32, {2, 5});
    for (auto& t : in) b.input(t);
    EXPECT_TRUE(fails_naming_node(b.run()));
  }
}

TEST(ConcatOps, SliceInfersSymbolicDims) {
  OpCase c("Slice", 13);
  c.input(DataType::kFloat32, {2, 5}).input(ints({0, 1})).input(ints({kMax, 3}));
  Tensor s = ints({0, 1}), e = ints({kMax, 3});
  auto r = infer(
      c, {tt(DataType::kFloat32, {sym("batch"), sym("seq")}), tt(DataType::kInt64, {2}), tt(DataType::kInt64, {2})},
      {nullptr, &s, &e});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_str((*r)[0]), "[batch,?]");
  r = infer(c, {tt(DataType::kFloat32, {sym("batch"), 7}), tt(DataType::kInt64, {2}), tt(DataType::kInt64, {2})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[?,?]");
}

// The CUDA kernels (when a GPU is present) must match the reference on every path.
TEST(ConcatOps, CudaConcatAndSplitMatchReference) {
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64, DataType::kUInt8}) {
    for (int64_t axis : {0, 1, -1}) {
      OpCase c("Concat", 13);
      Dims a = {3, 5, 7}, b = a, d = a;
      size_t ax = static_cast<size_t>(axis < 0 ? axis + 3 : axis);
      b[ax] = 2;
      d[ax] = 1;
      c.attr("axis", ir::Attribute::from_int(axis)).input(dt, a, -9, 9).input(dt, b, -9, 9).input(dt, d, -9, 9);
      EXPECT_GE(c.expect_all_kernels_match(0, 0), 0) << axis;
      OpCase s("Split", 13);
      s.attr("axis", ir::Attribute::from_int(axis)).input(dt, {6, 10, 9}, -9, 9).outputs(3);
      s.input(ints(axis == 0 ? std::vector<int64_t>{1, 2, 3} : std::vector<int64_t>{5, 0, axis == 1 ? 5 : 4}));
      EXPECT_GE(s.expect_all_kernels_match(0, 0), 0) << axis;
    }
  }
  OpCase e("Split", 18);
  e.attr("axis", ir::Attribute::from_int(1)).attr("num_outputs", ir::Attribute::from_int(3));
  e.input(DataType::kFloat32, {2, 7, 3}).outputs(3);
  EXPECT_GE(e.expect_all_kernels_match(0, 0), 0);
  OpCase q("Split", 13);  // equal parts
  q.input(DataType::kFloat16, {4, 1000}).attr("axis", ir::Attribute::from_int(-1)).outputs(4);
  EXPECT_GE(q.expect_all_kernels_match(0, 0), 0);
  OpCase big("Concat", 13);
  big.attr("axis", ir::Attribute::from_int(1));
  big.input(DataType::kFloat32, {3, 1000, 333}).input(DataType::kFloat32, {3, 77, 333});
  EXPECT_GE(big.expect_all_kernels_match(0, 0), 0);
}

TEST(ConcatOps, CudaSliceMatchesReference) {
  struct Case {
    std::vector<int64_t> starts, ends, axes, steps;
  };
  std::vector<Case> cases = {
      {{1}, {kMax}, {-1}, {1}},          {{-1}, {kMin}, {0}, {-1}},
      {{5, 0}, {1, 7}, {1, 2}, {-2, 3}}, {{0, 1, 2}, {2, -1, 100}, {0, 1, 2}, {1, 2, 1}},
      {{10}, {-10}, {2}, {-3}},          {{3}, {3}, {1}, {1}},  // empty
  };
  for (const Case& k : cases)
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt32, DataType::kBool}) {
      OpCase c("Slice", 13);
      c.input(dt, {3, 7, 9}, -9, 9).input(ints(k.starts)).input(ints(k.ends)).input(ints(k.axes)).input(ints(k.steps));
      EXPECT_GE(c.expect_all_kernels_match(0, 0), 0);
    }
  OpCase o("Slice", 9);
  o.attr("starts", ir::Attribute::from_ints({1, 0})).attr("ends", ir::Attribute::from_ints({3, -1}));
  o.input(DataType::kFloat32, {4, 5, 6});
  EXPECT_GE(o.expect_all_kernels_match(0, 0), 0);
  OpCase n("Slice", 13);  // no axes / steps inputs
  n.input(DataType::kInt64, {5, 6}, -9, 9).input(ints({1, 2})).input(ints({4, 6}));
  EXPECT_GE(n.expect_all_kernels_match(0, 0), 0);
}

// Slice's 2-D copy path (one axis cut with step 1, later axes whole) and narrow-row
// Concat/Split slabs (the C2f channel splits and concats of YOLO in NHWC).
TEST(ConcatOps, CudaChannelSlicesAndNarrowConcats) {
  struct Case {
    Dims x;
    std::vector<int64_t> starts, ends, axes, steps;
  };
  const std::vector<Case> cases = {
      {{2, 5, 7, 32}, {0}, {16}, {3}, {1}},         // first half of NHWC channels: 16-byte units (fp16)
      {{2, 5, 7, 32}, {16}, {32}, {-1}, {1}},       // second half, offset rows
      {{2, 5, 7, 24}, {3}, {10}, {3}, {1}},         // odd offset and width: narrow units
      {{2, 6, 5, 5}, {2}, {5}, {1}, {1}},           // NCHW channel range: rows of 25 elements
      {{4, 3, 5}, {1}, {3}, {0}, {1}},              // leading axis: one contiguous run
      {{3, 4, 6}, {0, 1}, {3, 3}, {0, 1}, {1, 1}},  // a whole axis listed too
      {{3, 4, 6}, {kMax}, {kMin}, {2}, {-1}},       // full reversal: same count, not whole
      {{3, 4, 6}, {0, 1}, {2, 3}, {0, 2}, {1, 1}},  // two axes cut: general path
  };
  for (const Case& k : cases)
    for (DataType dt : {DataType::kFloat16, DataType::kFloat32, DataType::kBool, DataType::kInt64}) {
      OpCase c("Slice", 13);
      c.input(dt, k.x, -9, 9).input(ints(k.starts)).input(ints(k.ends)).input(ints(k.axes)).input(ints(k.steps));
      EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(dt) << " " << dims_to_string(k.x);
    }
  for (DataType dt : {DataType::kFloat16, DataType::kFloat32, DataType::kInt8}) {
    OpCase c("Concat", 13);  // one launch for all inputs
    c.attr("axis", ir::Attribute::from_int(-1));
    c.input(dt, {2, 5, 7, 16}, -9, 9).input(dt, {2, 5, 7, 16}, -9, 9).input(dt, {2, 5, 7, 8}, -9, 9);
    EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(dt);
    OpCase odd("Concat", 13);  // an empty input in the middle, odd widths: narrow units
    odd.attr("axis", ir::Attribute::from_int(3));
    odd.input(dt, {3, 2, 5, 3}, -9, 9).input(dt, {3, 2, 5, 0}).input(dt, {3, 2, 5, 5}, -9, 9);
    EXPECT_GE(odd.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(dt);
    OpCase many("Concat", 13);  // more inputs than one launch takes: a copy per input
    many.attr("axis", ir::Attribute::from_int(1));
    for (int k = 0; k < 10; ++k) many.input(dt, {4, k + 1, 6}, -9, 9);
    EXPECT_GE(many.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(dt);
    OpCase one_row("Concat", 13);  // a single output row (axis 0)
    one_row.attr("axis", ir::Attribute::from_int(0));
    one_row.input(dt, {2, 3, 4}, -9, 9).input(dt, {1, 3, 4}, -9, 9);
    EXPECT_GE(one_row.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(dt);
    OpCase sp("Split", 13);
    sp.attr("axis", ir::Attribute::from_int(3)).input(dt, {2, 5, 7, 40}, -9, 9).input(ints({16, 16, 8})).outputs(3);
    EXPECT_GE(sp.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(dt);
  }
}

TEST(ConcatOps, CudaPadExpandTileMatchReference) {
  for (const char* mode : {"constant", "reflect", "edge", "wrap"}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64}) {
      OpCase c("Pad", 13);
      c.attr("mode", ir::Attribute::from_string(mode));
      c.input(dt, {2, 3, 5, 4}, -9, 9).input(ints({0, 1, 2, 3, 1, -1, 3, 2}));
      if (std::string(mode) == "constant") c.input(scalar(dt, 2.5));
      EXPECT_GE(c.expect_all_kernels_match(0, 0), 0) << mode;
    }
    OpCase a("Pad", 18);  // axes input, negative axes
    a.attr("mode", ir::Attribute::from_string(mode));
    a.input(DataType::kFloat32, {3, 4, 5}).input(ints({2, 4, 1, 3})).no_input().input(ints({-1, 0}));
    EXPECT_GE(a.expect_all_kernels_match(0, 0), 0) << mode;
  }
  OpCase old("Pad", 2);
  old.attr("pads", ir::Attribute::from_ints({1, 0, 2, 1})).attr("value", ir::Attribute::from_float(-3.f));
  old.input(DataType::kFloat32, {3, 4});
  EXPECT_GE(old.expect_all_kernels_match(0, 0), 0);
  OpCase nov("Pad", 13);  // no constant_value: zero fill
  nov.input(DataType::kFloat16, {3, 4}).input(ints({1, 1, 1, 1}));
  EXPECT_GE(nov.expect_all_kernels_match(0, 0), 0);
  // The last-axis-only kernel: channel padding 3 -> 8 (nhwc_layout), padding before, a crop.
  for (DataType dt : {DataType::kFloat16, DataType::kFloat32, DataType::kInt64})
    for (std::vector<int64_t> pads :
         {std::vector<int64_t>{0, 0, 0, 0, 0, 0, 0, 5}, {0, 0, 0, 2, 0, 0, 0, 1}, {0, 0, 0, -1, 0, 0, 0, 2}}) {
      OpCase lc("Pad", 13);
      lc.input(dt, {2, 5, 7, 3}, -9, 9).input(ints(pads)).input(scalar(dt, 1.5));
      EXPECT_GE(lc.expect_all_kernels_match(0, 0), test::gpu_kernels()) << dtype_name(dt) << " " << pads[3];
    }

  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt32, DataType::kBool}) {
    OpCase e("Expand", 13);
    e.input(dt, {3, 1, 5}, -9, 9).input(ints({2, 1, 4, 1}));
    EXPECT_GE(e.expect_all_kernels_match(0, 0), 0);
    OpCase t("Tile", 13);
    t.input(dt, {2, 3, 5}, -9, 9).input(ints({2, 1, 3}));
    EXPECT_GE(t.expect_all_kernels_match(0, 0), 0);
  }
  OpCase s("Expand", 13);  // scalar to a big shape
  s.input(DataType::kFloat32, {}).input(ints({3, 1000, 7}));
  EXPECT_GE(s.expect_all_kernels_match(0, 0), 0);
  OpCase z("Tile", 13);  // zero repeats
  z.input(DataType::kFloat32, {2, 3}).input(ints({0, 2}));
  EXPECT_GE(z.expect_all_kernels_match(0, 0), 0);
}

// Constant padding of the last axis only runs one thread per output chunk of up to
// 16 bytes: 3 -> 8 channels fp16 is one 16-byte store per row, fp32 two; rows whose
// bytes only allow 8-, 4-, 2- or 1-byte chunks, padding before, crops, long rows.
TEST(ConcatOps, CudaPadLastAxisChunks) {
  struct Case {
    DataType dt;
    Dims dims;
    int64_t begin, end;
  };
  const std::vector<Case> cases = {
      {DataType::kFloat16, {2, 5, 7, 3}, 0, 5},     // nhwc_layout's 3 -> 8: 16-byte rows
      {DataType::kFloat32, {2, 5, 7, 3}, 0, 5},     // 32-byte rows: two 16-byte chunks
      {DataType::kBFloat16, {3, 11, 13, 3}, 0, 5},  // 429 rows
      {DataType::kFloat16, {1, 33, 65, 3}, 0, 5},   // more rows than one block
      {DataType::kFloat16, {2, 7, 5, 3}, 0, 1},     // 3 -> 4: 8-byte chunks
      {DataType::kFloat16, {2, 7, 5, 3}, 1, 2},     // 3 -> 6 with a leading pad: 4-byte chunks
      {DataType::kFloat16, {2, 7, 5, 3}, 2, 0},     // 3 -> 5: 2-byte elements
      {DataType::kFloat32, {2, 7, 5, 3}, 3, 2},     // 3 -> 8 padded on both sides
      {DataType::kUInt8, {2, 7, 5, 3}, 0, 13},      // 16 one-byte values per chunk
      {DataType::kInt64, {2, 7, 5, 3}, 0, 5},       // two 8-byte values per chunk
      {DataType::kFloat32, {3, 9, 8}, -2, 2},       // crop the front, pad the back
      {DataType::kFloat16, {3, 9, 8}, 1, -3},       // pad the front, crop the back
      {DataType::kFloat32, {4, 3}, -3, 3},          // everything cropped: all fill
      {DataType::kFloat32, {3, 100}, 10, 20},       // long rows
      {DataType::kFloat16, {37}, 2, 3},             // rank 1: a single row
  };
  for (const Case& k : cases) {
    const size_t r = k.dims.size();
    std::vector<int64_t> pads(2 * r, 0);
    pads[r - 1] = k.begin;
    pads[2 * r - 1] = k.end;
    for (bool with_value : {true, false}) {
      OpCase c("Pad", 13);
      c.input(k.dt, k.dims, -9, 9).input(ints(pads));
      if (with_value) c.input(scalar(k.dt, 2.5));
      EXPECT_GE(c.expect_all_kernels_match(0, 0), test::gpu_kernels())
          << dtype_name(k.dt) << " " << dims_to_string(k.dims) << " " << k.begin << " " << k.end;
    }
  }
}

}  // namespace
}  // namespace kiln::test
