#include <cmath>
#include <functional>
#include <limits>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor ints(const std::vector<int64_t>& v) { return Tensor::from_vector(DataType::kInt64, {(int64_t)v.size()}, v); }

/// Independent reduction: for each output cell (keepdims layout), folds every input
/// element whose kept coordinates match, using `fold` over the collected values.
Tensor naive_reduce(const Tensor& x, const std::vector<int64_t>& axes, bool keepdims,
                    const std::function<double(const std::vector<double>&)>& fold, DataType out_dt) {
  int64_t r = x.rank();
  std::vector<bool> red(r, axes.empty());
  for (int64_t a : axes) red[a < 0 ? a + r : a] = true;
  Dims kd, od;
  for (int64_t i = 0; i < r; ++i) {
    kd.push_back(red[i] ? 1 : x.dim(i));
    if (!red[i] || keepdims) od.push_back(red[i] ? 1 : x.dim(i));
  }
  Tensor y = Tensor::empty(out_dt, od);
  std::vector<std::vector<double>> groups(dims_volume(kd));
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rem = i, o = 0, mul = 1;
    std::vector<int64_t> idx(r);
    for (int64_t d = r - 1; d >= 0; --d) idx[d] = rem % x.dim(d), rem /= x.dim(d);
    for (int64_t d = r - 1; d >= 0; --d) {
      if (!red[d]) o += idx[d] * mul;
      mul *= kd[d];
    }
    groups[o].push_back(x.get_as_double(i));
  }
  for (size_t g = 0; g < groups.size(); ++g) y.set_from_double(g, fold(groups[g]));
  return y;
}

double fsum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

struct Kind {
  const char* op;
  std::function<double(const std::vector<double>&)> fold;
};

std::vector<Kind> kinds() {
  return {
      {"ReduceSum", fsum},
      {"ReduceMean", [](auto& v) { return fsum(v) / v.size(); }},
      {"ReduceMax",
       [](auto& v) {
         double m = -INFINITY;
         for (double x : v) m = std::max(m, x);
         return m;
       }},
      {"ReduceMin",
       [](auto& v) {
         double m = INFINITY;
         for (double x : v) m = std::min(m, x);
         return m;
       }},
      {"ReduceProd",
       [](auto& v) {
         double p = 1;
         for (double x : v) p *= x;
         return p;
       }},
      {"ReduceL1",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += std::fabs(x);
         return s;
       }},
      {"ReduceL2",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += x * x;
         return std::sqrt(s);
       }},
      {"ReduceLogSum", [](auto& v) { return std::log(fsum(v)); }},
      {"ReduceLogSumExp",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += std::exp(x);
         return std::log(s);
       }},
      {"ReduceSumSquare",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += x * x;
         return s;
       }},
  };
}

TEST(Reduce, EveryKindMatchesNaiveOverAxesAndKeepdims) {
  std::vector<std::vector<int64_t>> axis_sets = {{1}, {0, 2}, {-1}, {}};
  for (const Kind& k : kinds()) {
    for (auto& axes : axis_sets) {
      for (int keep : {0, 1}) {
        OpCase c(k.op, 18);
        c.attr("keepdims", ir::Attribute::from_int(keep));
        // Positive inputs keep ReduceLogSum defined.
        c.input(DataType::kFloat32, {2, 3, 4}, 0.1, 2.0);
        if (!axes.empty()) c.input(ints(axes));
        auto out = c.run();
        ASSERT_TRUE(out.ok()) << k.op << ": " << out.status().to_string();
        Tensor want = naive_reduce(*c.inputs()[0], axes, keep, k.fold, DataType::kFloat32);
        EXPECT_TRUE(tensors_close((*out)[0], want, 1e-5, 1e-5)) << k.op << " keepdims " << keep;
      }
    }
  }
}

TEST(Reduce, BlockFastKernelMatchesReference) {
  // Contiguous blocks (last axes, middle axes, all) take the fast path; split axes fall back.
  std::vector<std::vector<int64_t>> axis_sets = {{-1}, {1, 2}, {0}, {}, {1, 3}, {2}};
  for (const Kind& k : kinds()) {
    for (auto& axes : axis_sets) {
      OpCase c(k.op, 18);
      c.input(DataType::kFloat32, {3, 4, 1, 1500}, 0.1, 1.2);  // inner > the 1024 chunk
      if (!axes.empty()) c.input(ints(axes));
      EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-6), 1) << k.op;
    }
  }
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 3}, std::vector<double>{1, NAN, 2, -INFINITY, -INFINITY, 0});
  for (const char* op : {"ReduceMax", "ReduceMin", "ReduceLogSumExp", "ReduceSum"}) {
    for (int64_t axis : {0, 1}) {
      OpCase c(op, 18);
      c.input(x).input(ints({axis}));
      EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), 1) << op;
    }
  }
}

TEST(Reduce, AxesAttributeBeforeOpsetMove) {
  // ReduceSum moved axes to an input at 13, the others at 18.
  for (auto [op, opset] : {std::pair{"ReduceSum", 11}, std::pair{"ReduceMean", 13}, std::pair{"ReduceMax", 17}}) {
    OpCase c(op, opset);
    c.attr("axes", ir::Attribute::from_ints({0, -1})).attr("keepdims", ir::Attribute::from_int(0));
    c.input(DataType::kFloat64, {3, 2, 5});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].dims(), (Dims{2}));
  }
  OpCase c("ReduceSum", 11);
  c.attr("axes", ir::Attribute::from_ints({1}));
  c.input(DataType::kFloat32, {2, 3});
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  Tensor want = naive_reduce(*c.inputs()[0], {1}, true, fsum, DataType::kFloat32);
  EXPECT_TRUE(tensors_close((*out)[0], want, 1e-6, 1e-6));
}

TEST(Reduce, NoopWithEmptyAxesCopiesInput) {
  OpCase c("ReduceSum", 13);
  c.attr("noop_with_empty_axes", ir::Attribute::from_int(1));
  c.input(DataType::kFloat32, {3, 2}).input(Tensor::empty(DataType::kInt64, {0}));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(tensors_close((*out)[0], *c.inputs()[0], 0, 0));
}

TEST(Reduce, EmptySetIdentities) {
  struct E {
    const char* op;
    double v;
  };
  double inf = std::numeric_limits<double>::infinity();
  for (E e : {E{"ReduceSum", 0}, E{"ReduceProd", 1}, E{"ReduceMax", -inf}, E{"ReduceMin", inf},
              E{"ReduceLogSumExp", -inf}, E{"ReduceLogSum", -inf}, E{"ReduceL2", 0}, E{"ReduceSumSquare", 0}}) {
    OpCase c(e.op, 18);
    c.input(Tensor::empty(DataType::kFloat32, {2, 0, 4})).input(ints({1}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << e.op << ": " << out.status().to_string();
    ASSERT_EQ((*out)[0].dims(), (Dims{2, 1, 4}));
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ((*out)[0].get_as_double(i), e.v) << e.op;
  }
  // A zero-sized kept axis gives an empty output.
  OpCase c("ReduceSum", 13);
  c.input(Tensor::empty(DataType::kFloat32, {2, 0, 4})).input(ints({2}));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].dims(), (Dims{2, 0, 1}));
}

TEST(Reduce, IntegerAndBoolDtypes) {
  // int64 sums and maxima stay exact beyond 2^53.
  Tensor big = Tensor::from_vector(DataType::kInt64, {2, 2}, std::vector<double>{0, 0, 0, 0});
  int64_t* p = big.data_as<int64_t>();
  p[0] = (int64_t(1) << 60) + 1;
  p[1] = 3;
  p[2] = -7;
  p[3] = (int64_t(1) << 60) + 3;
  OpCase c("ReduceMax", 18);
  c.attr("keepdims", ir::Attribute::from_int(0));
  c.input(big).input(ints({1}));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].data_as<int64_t>()[0], (int64_t(1) << 60) + 1);
  EXPECT_EQ((*out)[0].data_as<int64_t>()[1], (int64_t(1) << 60) + 3);

  OpCase s("ReduceSum", 13);
  s.input(DataType::kInt32, {4, 5}, -50, 50).input(ints({0}));
  auto so = s.run();
  ASSERT_TRUE(so.ok());
  EXPECT_TRUE(tensors_close((*so)[0], naive_reduce(*s.inputs()[0], {0}, true, fsum, DataType::kInt32), 0, 0));

  Tensor b = Tensor::from_vector(DataType::kBool, {2, 3}, std::vector<double>{1, 0, 1, 1, 1, 1});
  for (auto [op, r0, r1] : {std::tuple{"ReduceMax", 1.0, 1.0}, std::tuple{"ReduceMin", 0.0, 1.0}}) {
    OpCase bc(op, 20);
    bc.attr("keepdims", ir::Attribute::from_int(0));
    bc.input(b).input(ints({1}));
    auto bo = bc.run();
    ASSERT_TRUE(bo.ok()) << bo.status().to_string();
    EXPECT_EQ((*bo)[0].dtype(), DataType::kBool);
    EXPECT_EQ((*bo)[0].get_as_double(0), r0) << op;
    EXPECT_EQ((*bo)[0].get_as_double(1), r1) << op;
  }
  OpCase bad("ReduceSum", 13);
  bad.input(b).input(ints({1}));
  EXPECT_FALSE(bad.run().ok());
}

TEST(Reduce, Float16MeanAccumulatesWide) {
  OpCase c("ReduceMean", 18);
  c.input(DataType::kFloat16, {3, 64}, -1, 1).input(ints({1}));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  Tensor want = naive_reduce(
      *c.inputs()[0], {1}, true, [](auto& v) { return fsum(v) / v.size(); }, DataType::kFloat16);
  EXPECT_TRUE(tensors_close((*out)[0], want, 1e-3, 1e-3));
}

TEST(Reduce, NanPropagatesThroughMax) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {3}, std::vector<double>{1, NAN, 5});
  OpCase c("ReduceMax", 18);
  c.input(x);
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(std::isnan((*out)[0].get_as_double(0)));
}

TEST(Reduce, SymbolicInference) {
  OpCase c("ReduceSum", 13);
  c.attr("keepdims", ir::Attribute::from_int(0));
  c.input(DataType::kFloat32, {2, 3, 4}).input(ints({1}));
  Tensor axes = ints({1});
  ops::TensorType x{DataType::kFloat32, Shape{Dim::symbol("batch"), Dim(3), Dim::symbol("seq")}};
  ops::TensorType a{DataType::kInt64, Shape{Dim(1)}};
  auto r = ops::infer_node(c.node(), {x, a}, {nullptr, &axes});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE((*r)[0].shape.has_value());
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[batch,seq]");
  // Unknown axes value: rank is still known from the axes length.
  auto u = ops::infer_node(c.node(), {x, a}, {nullptr, nullptr});
  ASSERT_TRUE(u.ok());
  ASSERT_TRUE((*u)[0].shape.has_value());
  EXPECT_EQ((*u)[0].shape->size(), 2u);
  // keepdims=1 with unknown axes keeps the rank.
  c.attr("keepdims", ir::Attribute::from_int(1));
  auto k = ops::infer_node(c.node(), {x, a}, {nullptr, nullptr});
  ASSERT_TRUE(k.ok());
  EXPECT_EQ((*k)[0].shape->size(), 3u);
  // An axes input of shape [0] means "all axes" (or a no-op) even without its value.
  ops::TensorType empty_axes{DataType::kInt64, Shape{Dim(0)}};
  auto all = ops::infer_node(c.node(), {x, empty_axes}, {nullptr, nullptr});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(shape_to_string(*(*all)[0].shape), "[1,1,1]");
  c.attr("noop_with_empty_axes", ir::Attribute::from_int(1));
  auto noop = ops::infer_node(c.node(), {x, empty_axes}, {nullptr, nullptr});
  ASSERT_TRUE(noop.ok());
  EXPECT_EQ(shape_to_string(*(*noop)[0].shape), "[batch,3,seq]");
}

TEST(Reduce, BadAxesAreErrors) {
  for (auto axes : {std::vector<int64_t>{3}, std::vector<int64_t>{-4}, std::vector<int64_t>{1, -2}}) {
    OpCase c("ReduceMean", 18);
    c.input(DataType::kFloat32, {2, 3, 4}).input(ints(axes));
    auto out = c.run();
    EXPECT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("case_ReduceMean"), std::string::npos) << out.status().message();
  }
  OpCase f("ReduceMean", 18);
  f.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {1});
  EXPECT_FALSE(f.run().ok());
}

// The CUDA kernel (when a GPU is present) must match the reference on the rows
// layout, the cols layout, split axes and split reductions, for each dtype.
TEST(Reduce, CudaKernelMatchesReference) {
  struct Case {
    Dims dims;
    std::vector<int64_t> axes;
  };
  std::vector<Case> cases = {
      {{3, 7, 5}, {-1}},       // rows, warp per row
      {{2, 3, 2000}, {2}},     // rows, block per row
      {{3, 7, 5}, {1}},        // cols [outer, R, inner]
      {{1, 3, 7, 5}, {0, 2}},  // size-1 dim merges away
      {{4, 3, 5, 6}, {1, 3}},  // two reduced groups
      {{3, 7, 5}, {}},         // everything (split rows)
      {{70001}, {0}},          // one long row: split across blocks
      {{9000, 3}, {0}},        // few outputs, long columns: split cols
      {{2, 1, 5}, {1}},        // only a size-1 axis reduced
      {{5, 4, 3, 2, 3, 2}, {0, 2, 4}},
  };
  for (const Kind& k : kinds()) {
    for (const Case& cs : cases) {
      for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16}) {
        for (int64_t keep : {0, 1}) {
          OpCase c(k.op, 18);
          c.attr("keepdims", ir::Attribute::from_int(keep));
          bool prod = std::string(k.op) == "ReduceProd";
          // Positive inputs keep LogSum defined; products near 1 keep ReduceProd finite.
          c.input(dt, cs.dims, prod ? 0.95 : 0.1, prod ? 1.05 : 1.2);
          if (!cs.axes.empty()) c.input(ints(cs.axes));
          double tol = dt == DataType::kFloat32 ? 1e-4 : 2e-2;
          EXPECT_GE(c.expect_all_kernels_match(tol, tol), 1) << k.op << " " << dims_to_string(cs.dims);
        }
      }
    }
  }
  for (const char* op :
       {"ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceMean", "ReduceL1", "ReduceSumSquare"}) {
    for (DataType dt : {DataType::kInt32, DataType::kInt64}) {
      for (const Case& cs : {Case{{3, 7, 5}, {-1}}, Case{{3, 7, 5}, {0}}, Case{{4, 3, 5, 6}, {1, 3}}}) {
        OpCase c(op, 18);
        c.input(dt, cs.dims, -4, 4).input(ints(cs.axes));
        EXPECT_GE(c.expect_all_kernels_match(0, 0), 1) << op;
      }
    }
  }
  OpCase s13("ReduceSum", 13);  // ReduceSum took axes as an input from opset 13
  s13.input(DataType::kFloat16, {6, 33, 5}).input(ints({-2}));
  EXPECT_GE(s13.expect_all_kernels_match(2e-2, 2e-2), 1);
  OpCase attr("ReduceMean", 13);  // attribute axes before opset 18
  attr.attr("axes", ir::Attribute::from_ints({0, -1})).input(DataType::kFloat32, {4, 6, 5});
  EXPECT_GE(attr.expect_all_kernels_match(1e-5, 1e-5), 1);
  OpCase noop("ReduceMax", 18);
  noop.attr("noop_with_empty_axes", ir::Attribute::from_int(1)).input(DataType::kFloat32, {3, 4});
  EXPECT_GE(noop.expect_all_kernels_match(0, 0), 1);
  for (const Kind& k : kinds()) {  // empty reductions give each kind's identity
    OpCase e(k.op, 18);
    e.input(DataType::kFloat32, {3, 0, 2}).input(ints({1}));
    EXPECT_GE(e.expect_all_kernels_match(0, 0), 1) << k.op;
  }
}

}  // namespace
}  // namespace kiln::test
