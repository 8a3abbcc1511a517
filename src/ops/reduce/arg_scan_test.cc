// Tests for ArgMax/ArgMin, CumSum/CumProd and TopK.
#include <algorithm>
#include <numeric>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor scalar_i32(int32_t v) { return Tensor::from_vector(DataType::kInt32, {}, std::vector<double>{double(v)}); }
Tensor k_tensor(int64_t k) { return Tensor::from_vector(DataType::kInt64, {1}, std::vector<double>{double(k)}); }

// Coordinates helper: element (o, j, i) of x viewed as [outer, n, inner].
struct View3 {
  int64_t outer = 1, n = 1, inner = 1;
  View3(const Dims& d, int64_t axis) {
    for (int64_t i = 0; i < (int64_t)d.size(); ++i) {
      if (i < axis)
        outer *= d[i];
      else if (i == axis)
        n = d[i];
      else
        inner *= d[i];
    }
  }
  int64_t at(int64_t o, int64_t j, int64_t i) const { return (o * n + j) * inner + i; }
};

TEST(ArgMax, MatchesNaiveWithTiesAndLastIndex) {
  for (const char* op : {"ArgMax", "ArgMin"}) {
    for (int64_t axis : {0, 1, -1}) {
      for (int last : {0, 1}) {
        for (int keep : {0, 1}) {
          OpCase c(op, 13);
          c.attr("axis", ir::Attribute::from_int(axis)).attr("keepdims", ir::Attribute::from_int(keep));
          c.attr("select_last_index", ir::Attribute::from_int(last));
          c.input(DataType::kInt32, {3, 5, 4}, -2, 2);  // small range: many ties
          auto out = c.run();
          ASSERT_TRUE(out.ok()) << out.status().to_string();
          const Tensor& x = *c.inputs()[0];
          int64_t a = axis < 0 ? axis + 3 : axis;
          View3 v(x.dims(), a);
          Dims want_dims = x.dims();
          if (keep)
            want_dims[a] = 1;
          else
            want_dims.erase(want_dims.begin() + a);
          ASSERT_EQ((*out)[0].dims(), want_dims);
          bool is_max = std::string(op) == "ArgMax";
          for (int64_t o = 0; o < v.outer; ++o)
            for (int64_t i = 0; i < v.inner; ++i) {
              double best = x.get_as_double(v.at(o, 0, i));
              for (int64_t j = 1; j < v.n; ++j) {
                double e = x.get_as_double(v.at(o, j, i));
                best = is_max ? std::max(best, e) : std::min(best, e);
              }
              int64_t got = (*out)[0].data_as<int64_t>()[o * v.inner + i];
              EXPECT_EQ(x.get_as_double(v.at(o, got, i)), best);
              for (int64_t j = 0; j < v.n; ++j)
                if (x.get_as_double(v.at(o, j, i)) == best) {
                  if (last)
                    EXPECT_LE(j, got);
                  else
                    EXPECT_GE(j, got);
                }
            }
        }
      }
    }
  }
}

TEST(ArgMax, ErrorsAndSymbolicShape) {
  OpCase c("ArgMax", 13);
  c.attr("axis", ir::Attribute::from_int(2));
  c.input(DataType::kFloat32, {2, 3});
  EXPECT_FALSE(c.run().ok());
  OpCase e("ArgMin", 13);
  e.input(Tensor::empty(DataType::kFloat32, {0, 3}));
  EXPECT_FALSE(e.run().ok());
  OpCase s("ArgMax", 13);
  s.attr("axis", ir::Attribute::from_int(-1)).attr("keepdims", ir::Attribute::from_int(0));
  s.input(DataType::kFloat32, {2, 3});
  ops::TensorType x{DataType::kFloat32, Shape{Dim::symbol("N"), Dim(7)}};
  auto r = ops::infer_node(s.node(), {x}, {nullptr});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].dtype, DataType::kInt64);
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[N]");
}

TEST(CumSum, AllModesMatchNaive) {
  for (const char* op : {"CumSum", "CumProd"}) {
    bool prod = std::string(op) == "CumProd";
    for (int axis : {0, 1, -1}) {
      for (int excl : {0, 1}) {
        for (int rev : {0, 1}) {
          OpCase c(op, 26);
          c.attr("exclusive", ir::Attribute::from_int(excl)).attr("reverse", ir::Attribute::from_int(rev));
          c.input(DataType::kFloat64, {2, 4, 3}, 0.5, 1.5).input(scalar_i32(axis));
          auto out = c.run();
          ASSERT_TRUE(out.ok()) << out.status().to_string();
          const Tensor& x = *c.inputs()[0];
          int64_t a = axis < 0 ? axis + 3 : axis;
          View3 v(x.dims(), a);
          for (int64_t o = 0; o < v.outer; ++o)
            for (int64_t i = 0; i < v.inner; ++i)
              for (int64_t j = 0; j < v.n; ++j) {
                double acc = prod ? 1 : 0;
                for (int64_t t = 0; t < v.n; ++t) {
                  bool in = rev ? (excl ? t > j : t >= j) : (excl ? t < j : t <= j);
                  if (!in) continue;
                  double e = x.get_as_double(v.at(o, t, i));
                  acc = prod ? acc * e : acc + e;
                }
                EXPECT_NEAR((*out)[0].get_as_double(v.at(o, j, i)), acc, 1e-12) << op;
              }
        }
      }
    }
  }
}

TEST(CumSum, IntegerAndErrors) {
  OpCase c("CumSum", 14);
  c.input(DataType::kInt64, {6}, -100, 100).input(scalar_i32(0));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  int64_t acc = 0;
  for (int64_t i = 0; i < 6; ++i) {
    acc += c.inputs()[0]->data_as<int64_t>()[i];
    EXPECT_EQ((*out)[0].data_as<int64_t>()[i], acc);
  }
  OpCase bad("CumSum", 14);
  bad.input(DataType::kFloat32, {2, 3}).input(scalar_i32(2));
  EXPECT_FALSE(bad.run().ok());
  OpCase badt("CumSum", 14);
  badt.input(DataType::kFloat32, {2, 3}).input(Tensor::from_vector(DataType::kFloat32, {}, std::vector<double>{0}));
  EXPECT_FALSE(badt.run().ok());
  OpCase old("CumProd", 14);
  old.input(DataType::kFloat32, {2}).input(scalar_i32(0));
  ops::TensorType x{DataType::kFloat32, Shape{Dim(2)}}, a{DataType::kInt32, Shape{}};
  EXPECT_FALSE(ops::infer_node(old.node(), {x, a}, {nullptr, nullptr}).ok());  // CumProd exists from opset 26
}

TEST(TopK, MatchesStableSort) {
  for (int largest : {0, 1}) {
    for (int64_t axis : {0, 1, -1}) {
      OpCase c("TopK", 11);
      c.attr("axis", ir::Attribute::from_int(axis)).attr("largest", ir::Attribute::from_int(largest));
      c.input(DataType::kInt64, {4, 6, 3}, -3, 3).input(k_tensor(3)).outputs(2);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      const Tensor& x = *c.inputs()[0];
      int64_t a = axis < 0 ? axis + 3 : axis;
      View3 v(x.dims(), a);
      for (int64_t o = 0; o < v.outer; ++o)
        for (int64_t i = 0; i < v.inner; ++i) {
          std::vector<int64_t> ord(v.n);
          std::iota(ord.begin(), ord.end(), 0);
          std::stable_sort(ord.begin(), ord.end(), [&](int64_t p, int64_t q) {
            double xp = x.get_as_double(v.at(o, p, i)), xq = x.get_as_double(v.at(o, q, i));
            return largest ? xp > xq : xp < xq;
          });
          for (int64_t j = 0; j < 3; ++j) {
            int64_t off = (o * 3 + j) * v.inner + i;
            EXPECT_EQ((*out)[1].data_as<int64_t>()[off], ord[j]);
            EXPECT_EQ((*out)[0].get_as_double(off), x.get_as_double(v.at(o, ord[j], i)));
          }
        }
    }
  }
}

TEST(TopK, KValidationAndInference) {
  OpCase c("TopK", 11);
  c.input(DataType::kFloat32, {2, 4}).input(k_tensor(5)).outputs(2);
  EXPECT_FALSE(c.run().ok());
  OpCase n("TopK", 11);
  n.input(DataType::kFloat32, {2, 4}).input(k_tensor(-1)).outputs(2);
  EXPECT_FALSE(n.run().ok());
  OpCase z("TopK", 11);
  z.input(DataType::kFloat32, {2, 4}).input(k_tensor(0)).outputs(2);
  auto zo = z.run();
  ASSERT_TRUE(zo.ok());
  EXPECT_EQ((*zo)[0].dims(), (Dims{2, 0}));
  OpCase v1("TopK", 1);
  v1.attr("k", ir::Attribute::from_int(2));
  v1.input(DataType::kFloat32, {3, 4}).outputs(2);
  auto o1 = v1.run();
  ASSERT_TRUE(o1.ok()) << o1.status().to_string();
  EXPECT_EQ((*o1)[0].dims(), (Dims{3, 2}));

  Tensor k = k_tensor(2);
  ops::TensorType x{DataType::kFloat32, Shape{Dim::symbol("B"), Dim::symbol("L")}};
  ops::TensorType kt{DataType::kInt64, Shape{Dim(1)}};
  auto r = ops::infer_node(c.node(), {x, kt}, {nullptr, &k});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[B,2]");
  auto u = ops::infer_node(c.node(), {x, kt}, {nullptr, nullptr});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(shape_to_string(*(*u)[1].shape), "[B,?]");
}

// The CUDA kernels (when a GPU is present) must match the reference.
TEST(ArgMax, CudaKernelsMatchReference) {
  for (const char* op : {"ArgMax", "ArgMin"}) {
    for (int64_t last : {0, 1}) {
      for (int64_t axis : {0, 1, -1}) {
        for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt32, DataType::kInt64}) {
          OpCase c(op, 13);
          c.attr("axis", ir::Attribute::from_int(axis)).attr("select_last_index", ir::Attribute::from_int(last));
          c.input(dt, {5, 7, 300}, -3, 3);  // integers tie often
          EXPECT_GE(c.expect_all_kernels_match(0, 0), 0) << op;
        }
      }
    }
  }
  OpCase nan("ArgMax", 13);
  nan.attr("keepdims", ir::Attribute::from_int(0));
  nan.input(Tensor::from_vector(DataType::kFloat32, {2, 4}, std::vector<double>{1, NAN, 2, NAN, 3, 3, -1, 0}));
  EXPECT_GE(nan.expect_all_kernels_match(0, 0), 0);
}

TEST(CumSum, CudaKernelMatchesReference) {
  for (int64_t exclusive : {0, 1}) {
    for (int64_t reverse : {0, 1}) {
      for (int64_t axis : {0, 1, -1}) {
        for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt32, DataType::kInt64}) {
          OpCase c("CumSum", 14);
          c.attr("exclusive", ir::Attribute::from_int(exclusive)).attr("reverse", ir::Attribute::from_int(reverse));
          c.input(dt, {3, 5, 1500}, -3, 3).input(scalar_i32(static_cast<int32_t>(axis)));
          double tol = dt == DataType::kFloat16 ? 5e-2 : 1e-4;
          EXPECT_GE(c.expect_all_kernels_match(tol, tol), 0);
        }
      }
    }
  }
}

TEST(TopK, CudaKernelMatchesReference) {
  for (int64_t largest : {0, 1}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64}) {
      for (int64_t axis : {1, -1}) {
        OpCase c("TopK", 11);  // sorted in shared memory
        c.attr("axis", ir::Attribute::from_int(axis)).attr("largest", ir::Attribute::from_int(largest));
        c.input(dt, {3, 37, 100}, -5, 5).input(k_tensor(7)).outputs(2);
        EXPECT_GE(c.expect_all_kernels_match(0, 0), 0);
      }
      OpCase w("TopK", 11);  // a whole row
      w.attr("largest", ir::Attribute::from_int(largest)).input(dt, {4, 33}, -5, 5).input(k_tensor(33)).outputs(2);
      EXPECT_GE(w.expect_all_kernels_match(0, 0), 0);
      OpCase l("TopK", 11);  // long rows: repeated selection
      l.attr("largest", ir::Attribute::from_int(largest)).input(dt, {3, 5000}, -50, 50).input(k_tensor(20)).outputs(2);
      EXPECT_GE(l.expect_all_kernels_match(0, 0), 0);
    }
  }
  OpCase nan("TopK", 11);
  nan.input(Tensor::from_vector(DataType::kFloat32, {1, 6}, std::vector<double>{1, NAN, 2, NAN, 2, -1}));
  nan.input(k_tensor(4)).outputs(2);
  EXPECT_GE(nan.expect_all_kernels_match(0, 0), 0);
}

}  // namespace
}  // namespace kiln::test
