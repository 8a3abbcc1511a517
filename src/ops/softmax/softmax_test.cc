#include <cmath>

#include "backends/cuda/device.h"
#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

// Softmax over dims [a0, a1) of a row-major tensor, in double: groups are the other dims.
std::vector<double> naive_softmax(const Tensor& x, int64_t a0, int64_t a1, bool log) {
  const Dims& d = x.dims();
  int64_t outer = 1, len = 1, inner = 1;
  for (int64_t i = 0; i < a0; ++i) outer *= d[i];
  for (int64_t i = a0; i < a1; ++i) len *= d[i];
  for (int64_t i = a1; i < static_cast<int64_t>(d.size()); ++i) inner *= d[i];
  std::vector<double> y(x.numel());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t k = 0; k < len; ++k) s += std::exp(x.get_as_double((o * len + k) * inner + i));
      for (int64_t k = 0; k < len; ++k) {
        double v = x.get_as_double((o * len + k) * inner + i);
        y[(o * len + k) * inner + i] = log ? v - std::log(s) : std::exp(v) / s;
      }
    }
  return y;
}

TEST(Softmax, EveryAxisOpset13) {
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    for (int64_t axis = -3; axis < 3; ++axis) {
      OpCase c(op, 13);
      c.attr("axis", Attribute::from_int(axis));
      c.input(DataType::kFloat32, {3, 4, 5}, -4, 4);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      int64_t a = axis < 0 ? axis + 3 : axis;
      auto want = naive_softmax(*c.inputs()[0], a, a + 1, std::string(op) == "LogSoftmax");
      for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR((*out)[0].get_as_double(i), want[i], 1e-5) << op << axis;
      EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-6), 1);
    }
  }
}

TEST(Softmax, OldOpsetsCoerceTo2D) {
  // Opset 11, axis 1: normalize over dims 1 and 2 together.
  OpCase c("Softmax", 11);
  c.input(DataType::kFloat32, {3, 4, 5}, -4, 4);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  auto want = naive_softmax(*c.inputs()[0], 1, 3, false);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR((*out)[0].get_as_double(i), want[i], 1e-6);
  EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-7), 1);
  // Opset 13 default axis is -1 instead.
  OpCase n("Softmax", 13);
  n.input(*c.inputs()[0]);
  auto o13 = n.run();
  ASSERT_TRUE(o13.ok());
  auto w13 = naive_softmax(*c.inputs()[0], 2, 3, false);
  for (size_t i = 0; i < w13.size(); ++i) ASSERT_NEAR((*o13)[0].get_as_double(i), w13[i], 1e-6);
}

TEST(Softmax, LargeNumbersStayFinite) {
  OpCase c("LogSoftmax", 13);
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {2, 4}, {0, 1, 2, 3, 10000, 10001, 10002, 10003}));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR((*out)[0].get_as_double(i), (*out)[0].get_as_double(i + 4), 1e-5);
  EXPECT_NEAR((*out)[0].get_as_double(3), -0.4401897, 1e-5);
  EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), 1);
}

TEST(Softmax, OtherDtypesAndErrors) {
  for (DataType t : {DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16}) {
    OpCase c("Softmax", 13);
    c.input(t, {2, 6});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    auto want = naive_softmax(*c.inputs()[0], 1, 2, false);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR((*out)[0].get_as_double(i), want[i], 1e-2);
  }
  OpCase bad("Softmax", 13);
  bad.attr("axis", Attribute::from_int(2)).input(DataType::kFloat32, {2, 3});
  EXPECT_FALSE(bad.run().ok());
  OpCase it("Softmax", 13);
  it.input(DataType::kInt32, {2, 3});
  EXPECT_FALSE(it.run().ok());
}

TEST(Hardmax, FirstMaximumIsOne) {
  OpCase c("Hardmax", 13);
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {2, 4}, {3, 0, 3, 1, -1, 2, 5, 5}));
  auto out = c.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(tensors_close((*out)[0], Tensor::from_vector<float>(DataType::kFloat32, {2, 4}, {1, 0, 0, 0, 0, 0, 1, 0}), 0, 0));
  OpCase a("Hardmax", 13);
  a.attr("axis", Attribute::from_int(0)).input(DataType::kFloat32, {3, 4, 5});
  auto o = a.run();
  ASSERT_TRUE(o.ok());
  const Tensor& x = *a.inputs()[0];
  for (int64_t i = 0; i < 20; ++i) {
    int64_t best = 0;
    for (int64_t k = 1; k < 3; ++k)
      if (x.get_as_double(k * 20 + i) > x.get_as_double(best * 20 + i)) best = k;
    for (int64_t k = 0; k < 3; ++k) EXPECT_EQ((*o)[0].get_as_double(k * 20 + i), k == best ? 1.0 : 0.0);
  }
}

// ---- Cases for the CUDA kernels (cuda.softmax); on a machine without a GPU only the CPU kernels run.

const std::vector<Tol> kFloatTols = {
    {DataType::kFloat32, 1e-5, 1e-6}, {DataType::kFloat16, 1e-2, 1e-3}, {DataType::kBFloat16, 2e-2, 2e-3}};

TEST(Softmax, CudaAxesRowLengthsOpsetsAndDtypes) {
  struct S {
    int opset;
    Dims x;
    int64_t axis;
  };
  std::vector<S> cases = {
      {13, {3, 5, 7}, 0},    {13, {3, 5, 7}, 1},     {13, {3, 5, 7}, -1},   {13, {2, 3000}, -1},  // block per row
      {13, {5, 1024}, 1},    {13, {4, 1025}, 1},     {13, {1, 37}, -1},     {13, {33, 2, 9}, -2},
      {11, {2, 3, 4, 5}, 1}, {11, {2, 3, 4, 5}, -1}, {11, {2, 3, 4, 5}, 0}, {13, {7}, 0},
  };
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"})
    for (const Tol& t : kFloatTols)
      for (const S& k : cases) {
        OpCase c(op, k.opset);
        c.attr("axis", Attribute::from_int(k.axis));
        c.input(t.dtype, k.x, -4, 4);
        const bool hard = std::string(op) == "Hardmax";
        EXPECT_GE(c.expect_all_kernels_match(hard ? 0 : t.rtol, hard ? 0 : t.atol), gpu_kernels())
            << op << " " << dtype_name(t.dtype) << " opset " << k.opset << " " << dims_to_string(k.x) << " axis "
            << k.axis;
      }
}

TEST(Hardmax, CudaTiesPickTheFirstMaximum) {
  for (DataType t : {DataType::kFloat32, DataType::kFloat16}) {
    // Contiguous rows (warp and block paths) and a strided axis, each with tied maxima.
    for (int64_t len : {int64_t{40}, int64_t{3000}}) {
      std::vector<float> v(static_cast<size_t>(2 * len));
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 7);
      v[5] = 9;
      v[static_cast<size_t>(len) - 3] = 9;
      OpCase c("Hardmax", 13);
      c.input(Tensor::from_vector<float>(t, {2, len}, v));
      EXPECT_GE(c.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(t) << " " << len;
      OpCase a("Hardmax", 13);
      a.attr("axis", Attribute::from_int(0)).input(Tensor::from_vector<float>(t, {len, 2}, v));
      EXPECT_GE(a.expect_all_kernels_match(0, 0), gpu_kernels()) << dtype_name(t) << " axis 0 " << len;
    }
  }
}

}  // namespace
}  // namespace kiln::test
