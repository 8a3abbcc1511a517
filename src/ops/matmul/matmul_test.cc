#include <cmath>
#include <random>

#include "backends/cuda/api.h"
#include "backends/cuda/device.h"
#include "backends/cuda/node_runner.h"
#include "harness/op_harness.h"
#include "harness/scoped_env.h"
#include "ops/matmul/gemm_hopper.h"
#include "ops/matmul/gemm_splitk.h"
#include "ops/matmul/lt_config.h"

namespace kiln::test {
namespace {

using ir::Attribute;

// Independent numpy-style matmul for rank-2+ operands of equal rank (batch broadcast by 1s).
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  Dims ad = a.dims(), bd = b.dims();
  size_t r = ad.size();
  int64_t m = ad[r - 2], k = ad[r - 1], n = bd[r - 1];
  Dims out;
  for (size_t i = 0; i + 2 < r; ++i) out.push_back(std::max(ad[i], bd[i]));
  out.push_back(m);
  out.push_back(n);
  Tensor y = Tensor::zeros(DataType::kFloat64, out);
  int64_t batch = 1;
  for (size_t i = 0; i + 2 < r; ++i) batch *= out[i];
  for (int64_t bi = 0; bi < batch; ++bi) {
    // Decompose bi over the batch dims, clamping broadcast dims to 0.
    int64_t rem = bi, ao = 0, bo = 0, as = m * k, bs = k * n;
    for (int64_t d = static_cast<int64_t>(r) - 3; d >= 0; --d) {
      int64_t idx = rem % out[d];
      rem /= out[d];
      ao += (ad[d] == 1 ? 0 : idx) * as;
      bo += (bd[d] == 1 ? 0 : idx) * bs;
      as *= ad[d];
      bs *= bd[d];
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += a.get_as_double(ao + i * k + p) * b.get_as_double(bo + p * n + j);
        y.set_from_double((bi * m + i) * n + j, s);
      }
  }
  return y;
}

::testing::AssertionResult close_to(const Tensor& got, const Tensor& want, double tol) {
  if (got.dims() != want.dims())
    return ::testing::AssertionFailure() << dims_to_string(got.dims()) << " vs " << dims_to_string(want.dims());
  for (int64_t i = 0; i < got.numel(); ++i)
    if (std::fabs(got.get_as_double(i) - want.get_as_double(i)) > tol * (1 + std::fabs(want.get_as_double(i))))
      return ::testing::AssertionFailure()
             << "element " << i << ": " << got.get_as_double(i) << " vs " << want.get_as_double(i);
  return ::testing::AssertionSuccess();
}

TEST(MatMul, HandCheckedSmall) {
  OpCase c("MatMul", 13);
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6}));
  c.input(Tensor::from_vector<float>(DataType::kFloat32, {3, 2}, {7, 8, 9, 10, 11, 12}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(
      tensors_close((*out)[0], Tensor::from_vector<float>(DataType::kFloat32, {2, 2}, {58, 64, 139, 154}), 0, 0));
}

TEST(MatMul, RandomShapesMatchNaiveAndFastKernels) {
  std::vector<std::pair<Dims, Dims>> shapes = {
      {{3, 4}, {4, 5}},       {{2, 3, 4}, {2, 4, 3}},     {{3, 1, 3, 4}, {1, 2, 4, 2}},   {{1, 7, 33}, {1, 33, 17}},
      {{65, 129}, {129, 70}}, {{4, 37, 64}, {1, 64, 50}}, {{2, 3, 20, 8}, {2, 3, 8, 20}}, {{200, 300}, {300, 130}},
  };
  for (auto& [ad, bd] : shapes) {
    OpCase c("MatMul", 13);
    c.input(DataType::kFloat32, ad).input(DataType::kFloat32, bd);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(close_to((*out)[0], naive_matmul(*c.inputs()[0], *c.inputs()[1]), 1e-5)) << dims_to_string(ad);
    EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-4), 1) << dims_to_string(ad);
  }
}

TEST(MatMul, VectorOperands) {
  // [K] @ [B, K, N] -> [B, N]; [B, M, K] @ [K] -> [B, M]; [K] @ [K] -> scalar.
  OpCase c1("MatMul", 13);
  c1.input(DataType::kFloat32, {4}).input(DataType::kFloat32, {2, 4, 3});
  auto o1 = c1.run();
  ASSERT_TRUE(o1.ok()) << o1.status().to_string();
  EXPECT_EQ((*o1)[0].dims(), (Dims{2, 3}));
  Tensor a1 = c1.inputs()[0]->reshaped({1, 1, 4});
  EXPECT_TRUE(close_to((*o1)[0], naive_matmul(a1, *c1.inputs()[1]).reshaped({2, 3}), 1e-6));
  EXPECT_GE(c1.expect_all_kernels_match(1e-5, 1e-5), 1);

  OpCase c2("MatMul", 13);
  c2.input(DataType::kFloat32, {1, 2, 4, 3}).input(DataType::kFloat32, {3});
  auto o2 = c2.run();
  ASSERT_TRUE(o2.ok());
  EXPECT_EQ((*o2)[0].dims(), (Dims{1, 2, 4}));
  EXPECT_GE(c2.expect_all_kernels_match(1e-5, 1e-5), 1);

  OpCase c3("MatMul", 13);
  c3.input(DataType::kFloat32, {5}).input(DataType::kFloat32, {5});
  auto o3 = c3.run();
  ASSERT_TRUE(o3.ok());
  EXPECT_EQ((*o3)[0].dims(), Dims{});
  double s = 0;
  for (int i = 0; i < 5; ++i) s += c3.inputs()[0]->get_as_double(i) * c3.inputs()[1]->get_as_double(i);
  EXPECT_NEAR((*o3)[0].get_as_double(0), s, 1e-5);
}

TEST(MatMul, OtherDtypes) {
  for (DataType t : {DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16, DataType::kInt32, DataType::kInt64,
                     DataType::kUInt32}) {
    OpCase c("MatMul", 13);
    c.input(t, {2, 3, 5}, 0, 4).input(t, {5, 4}, 0, 4);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << dtype_name(t) << ": " << out.status().to_string();
    EXPECT_EQ((*out)[0].dtype(), t);
    Tensor a = c.inputs()[0]->reshaped({2, 3, 5});
    Tensor b = c.inputs()[1]->reshaped({1, 5, 4});
    EXPECT_TRUE(close_to((*out)[0], naive_matmul(a, b), t == DataType::kBFloat16 ? 1e-2 : 1e-3)) << dtype_name(t);
  }
}

TEST(MatMul, EmptyDims) {
  OpCase c("MatMul", 13);
  c.input(DataType::kFloat32, {0, 3}).input(DataType::kFloat32, {3, 4});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{0, 4}));
  OpCase z("MatMul", 13);
  z.input(DataType::kFloat32, {2, 0}).input(DataType::kFloat32, {0, 3});
  EXPECT_GE(z.expect_all_kernels_match(0, 0), 1);
  auto zo = z.run("cpu.gemm");
  ASSERT_TRUE(zo.ok());
  for (int i = 0; i < 6; ++i) EXPECT_EQ((*zo)[0].get_as_double(i), 0.0);
}

TEST(MatMul, ErrorsNameTheProblem) {
  OpCase c("MatMul", 13);
  c.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {4, 5});
  auto out = c.run();
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("inner dims"), std::string::npos) << out.status().message();
  OpCase s("MatMul", 13);
  s.input(Tensor::from_vector<float>(DataType::kFloat32, {}, {1})).input(DataType::kFloat32, {1, 2});
  EXPECT_FALSE(s.run().ok());
  OpCase b("MatMul", 13);
  b.input(DataType::kFloat32, {2, 2, 3}).input(DataType::kFloat32, {3, 3, 4});
  EXPECT_FALSE(b.run().ok());
  OpCase d("MatMul", 13);
  d.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat64, {3, 4});
  EXPECT_FALSE(d.run().ok());
}

TEST(Gemm, AllAttributesAndBiasShapes) {
  struct G {
    int ta, tb;
    float alpha, beta;
    Dims c;
  };
  for (const G& g : std::vector<G>{{0, 0, 1, 1, {}},
                                   {1, 0, 0.5f, 2, {1, 9}},
                                   {0, 1, 1, 0.25f, {7, 1}},
                                   {1, 1, 0.25f, 0.35f, {7, 9}},
                                   {0, 0, 1, 1, {1}},
                                   {1, 1, 2, 1, {9}}}) {
    const int64_t m = 7, n = 9, k = 11;
    OpCase c("Gemm", 13);
    c.attr("transA", Attribute::from_int(g.ta)).attr("transB", Attribute::from_int(g.tb));
    c.attr("alpha", Attribute::from_float(g.alpha)).attr("beta", Attribute::from_float(g.beta));
    c.input(DataType::kFloat32, g.ta ? Dims{k, m} : Dims{m, k});
    c.input(DataType::kFloat32, g.tb ? Dims{n, k} : Dims{k, n});
    bool has_c = !(g.c.empty() && g.ta == 0 && g.tb == 0 && g.alpha == 1);
    if (has_c) c.input(DataType::kFloat32, g.c);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& a = *c.inputs()[0];
    const Tensor& b = *c.inputs()[1];
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p)
          s += a.get_as_double(g.ta ? p * m + i : i * k + p) * b.get_as_double(g.tb ? j * k + p : p * n + j);
        s *= g.alpha;
        if (has_c) {
          const Tensor& ct = *c.inputs()[2];
          int64_t ci = 0;
          if (ct.rank() == 2)
            ci = (ct.dim(0) == 1 ? 0 : i) * ct.dim(1) + (ct.dim(1) == 1 ? 0 : j);
          else if (ct.rank() == 1)
            ci = ct.dim(0) == 1 ? 0 : j;
          s += g.beta * ct.get_as_double(ci);
        }
        ASSERT_NEAR((*out)[0].get_as_double(i * n + j), s, 1e-5) << i << "," << j;
      }
    EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), 1);
  }
}

TEST(Gemm, LargeMatchesFastKernels) {
  OpCase c("Gemm", 13);
  c.attr("transB", Attribute::from_int(1));
  c.input(DataType::kFloat32, {64, 300}).input(DataType::kFloat32, {257, 300}).input(DataType::kFloat32, {257});
  EXPECT_GE(c.expect_all_kernels_match(1e-4, 1e-4), 1);
}

TEST(Gemm, Errors) {
  OpCase c("Gemm", 13);
  c.input(DataType::kFloat32, {2, 3}).input(DataType::kFloat32, {3, 4}).input(DataType::kFloat32, {3, 4});
  auto out = c.run();
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("broadcast"), std::string::npos);
  OpCase r("Gemm", 13);
  r.input(DataType::kFloat32, {2, 3, 1}).input(DataType::kFloat32, {3, 4});
  EXPECT_FALSE(r.run().ok());
}

TEST(Gemm, IntegerDtypes) {
  OpCase c("Gemm", 13);
  c.input(DataType::kInt64, {3, 4}, -5, 5).input(DataType::kInt64, {4, 2}, -5, 5).input(DataType::kInt64, {2}, -5, 5);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor &a = *c.inputs()[0], &b = *c.inputs()[1], &bias = *c.inputs()[2];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      int64_t s = bias.get_as_int64(j);
      for (int p = 0; p < 4; ++p) s += a.get_as_int64(i * 4 + p) * b.get_as_int64(p * 2 + j);
      EXPECT_EQ((*out)[0].get_as_int64(i * 2 + j), s);
    }
}

TEST(MatMulInteger, ZeroPointsExact) {
  OpCase c("MatMulInteger", 10);
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {4, 3}, {11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0}));
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {3, 2}, {1, 4, 2, 5, 3, 6}));
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {1}, {12}));
  c.input(Tensor::from_vector<int>(DataType::kUInt8, {1}, {0}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  // The ONNX spec example.
  EXPECT_TRUE(tensors_close(
      (*out)[0], Tensor::from_vector<int>(DataType::kInt32, {4, 2}, {-38, -83, -44, -98, -50, -113, -56, -128}), 0, 0));
}

TEST(MatMulInteger, RandomInt8PerColumnZeroPoint) {
  OpCase c("MatMulInteger", 10);
  c.input(DataType::kInt8, {2, 5, 6}, -128, 127).input(DataType::kInt8, {6, 3}, -128, 127);
  c.input(Tensor::from_vector<int>(DataType::kInt8, {}, {-3}));
  c.input(Tensor::from_vector<int>(DataType::kInt8, {3}, {1, -2, 5}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor &a = *c.inputs()[0], &b = *c.inputs()[1];
  int bz[3] = {1, -2, 5};
  for (int bi = 0; bi < 2; ++bi)
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 3; ++j) {
        int64_t s = 0;
        for (int p = 0; p < 6; ++p)
          s += (a.get_as_int64(bi * 30 + i * 6 + p) + 3) * (b.get_as_int64(p * 3 + j) - bz[j]);
        EXPECT_EQ((*out)[0].get_as_int64((bi * 5 + i) * 3 + j), s);
      }
}

TEST(FusedMatMul, AlphaAndTransposes) {
  OpCase c("FusedMatMul", 1, "com.microsoft");
  c.attr("alpha", Attribute::from_float(0.5f))
      .attr("transA", Attribute::from_int(1))
      .attr("transB", Attribute::from_int(1));
  c.input(DataType::kFloat32, {2, 6, 5}).input(DataType::kFloat32, {2, 7, 6});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{2, 5, 7}));
  const Tensor &a = *c.inputs()[0], &b = *c.inputs()[1];
  for (int bi = 0; bi < 2; ++bi)
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 7; ++j) {
        double s = 0;
        for (int p = 0; p < 6; ++p) s += a.get_as_double(bi * 30 + p * 5 + i) * b.get_as_double(bi * 42 + j * 6 + p);
        EXPECT_NEAR((*out)[0].get_as_double((bi * 5 + i) * 7 + j), 0.5 * s, 1e-5);
      }
  EXPECT_GE(c.expect_all_kernels_match(1e-5, 1e-5), 1);
}

// ---- Cases for the CUDA kernels (cuda.cublaslt); on a machine without a GPU only the CPU kernels run.

const std::vector<Tol> kFloatTols = {
    {DataType::kFloat32, 1e-4, 1e-4}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 2e-2, 2e-2}};

TEST(MatMul, CudaBatchedBroadcastVectorsAndDtypes) {
  std::vector<std::pair<Dims, Dims>> shapes = {
      {{2, 1, 4, 5}, {3, 5, 6}},     // A's batch broadcast inside: loops over strided runs
      {{3, 5, 6}, {6}},              // 1-D B
      {{5}, {2, 5, 3}},              // 1-D A, B batched
      {{7}, {7}},                    // scalar result
      {{2, 3, 4, 5}, {5, 6}},        // shared B folds into M
      {{4, 5}, {2, 3, 5, 6}},        // shared A: batch stride 0
      {{1, 3, 4, 5}, {2, 1, 5, 6}},  // both broadcast
      {{2, 3, 17, 33}, {2, 3, 33, 9}},
      {{1, 1, 1}, {1, 1, 1}},
      {{65, 129}, {129, 70}},
  };
  for (const Tol& t : kFloatTols)
    for (auto& [ad, bd] : shapes) {
      OpCase c("MatMul", 13);
      c.input(t.dtype, ad).input(t.dtype, bd);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " " << dims_to_string(ad) << " x " << dims_to_string(bd);
    }
}

TEST(Gemm, CudaBiasShapesTransposesAndDtypes) {
  struct G {
    int ta, tb;
    float alpha, beta;
    std::optional<Dims> c;
  };
  const int64_t m = 5, n = 13, k = 19;
  std::vector<G> cases = {
      {0, 0, 1, 1, Dims{n}},       {1, 0, 1, 1, Dims{1, n}}, {0, 1, 0.5f, 1, Dims{m, n}},
      {1, 1, 1, 0.5f, Dims{m, 1}}, {0, 0, 2, 0.25f, Dims{}}, {0, 1, 1, 1, Dims{1}},
      {1, 0, 1, 0.5f, Dims{n}},    {0, 0, 1, 0, Dims{m, n}}, {1, 1, 0.75f, 1, std::nullopt},
  };
  for (const Tol& t : kFloatTols)
    for (const G& g : cases) {
      OpCase c("Gemm", 13);
      c.attr("transA", Attribute::from_int(g.ta)).attr("transB", Attribute::from_int(g.tb));
      c.attr("alpha", Attribute::from_float(g.alpha)).attr("beta", Attribute::from_float(g.beta));
      c.input(t.dtype, g.ta ? Dims{k, m} : Dims{m, k});
      c.input(t.dtype, g.tb ? Dims{n, k} : Dims{k, n});
      if (g.c) c.input(t.dtype, *g.c);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " ta=" << g.ta << " tb=" << g.tb << " C=" << (g.c ? dims_to_string(*g.c) : "none");
    }
}

TEST(Gemm, CudaEmptyInnerDimGivesScaledC) {
  OpCase c("Gemm", 13);
  c.attr("beta", Attribute::from_float(0.5f));
  c.input(DataType::kFloat32, {3, 0}).input(DataType::kFloat32, {0, 4}).input(DataType::kFloat32, {4});
  EXPECT_GE(c.expect_all_kernels_match(1e-6, 1e-6), gpu_kernels());
}

TEST(FusedMatMul, CudaTransposesBroadcastAndDtypes) {
  struct F {
    int ta, tb;
    Dims a, b;
  };
  std::vector<F> cases = {
      {1, 0, {2, 1, 6, 5}, {3, 6, 7}}, {0, 1, {3, 5, 6}, {7, 6}}, {1, 1, {6, 5}, {2, 7, 6}}, {1, 1, {6}, {2, 7, 6}}};
  for (const Tol& t : kFloatTols)
    for (const F& f : cases) {
      OpCase c("FusedMatMul", 1, "com.microsoft");
      c.attr("alpha", Attribute::from_float(0.5f)).attr("transA", Attribute::from_int(f.ta));
      c.attr("transB", Attribute::from_int(f.tb));
      c.input(t.dtype, f.a).input(t.dtype, f.b);
      EXPECT_GE(c.expect_all_kernels_match(t.rtol, t.atol), gpu_kernels())
          << dtype_name(t.dtype) << " " << dims_to_string(f.a) << " x " << dims_to_string(f.b);
    }
}

// A fourth input, the residual, is added after the bias: checked against the naive product
// plus bias plus residual, for the folded ([b, m, k] x [k, n], cuBLASLt's C) and the batched
// (the residual added after the calls) CUDA paths, in float and half; an activation beside a
// residual, or a residual of another shape, is an error naming it.
TEST(MatMulBias, ResidualIsAddedLast) {
  struct Shapes {
    Dims a, b;
    DataType t;
    double tol;
  };
  for (const Shapes& sh : {Shapes{{3, 40, 64}, {64, 48}, DataType::kFloat32, 1e-5},
                           Shapes{{2, 3, 24, 32}, {2, 1, 32, 40}, DataType::kFloat32, 1e-5},
                           Shapes{{5, 64, 96}, {96, 72}, DataType::kFloat16, 2e-3}}) {
    SCOPED_TRACE(dims_to_string(sh.a) + " x " + dims_to_string(sh.b));
    OpCase c("MatMulBias", 1, "kiln");
    c.seed(9);
    Dims y(sh.a.begin(), sh.a.end() - 1);  // A's batch dims are full here
    y.push_back(sh.b.back());
    c.input(sh.t, sh.a).input(sh.t, sh.b).input(sh.t, {sh.b.back()}).input(sh.t, y);
    auto out = c.run("ref");
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const auto& in = c.inputs();
    const int64_t k = sh.a.back();
    Tensor want = naive_matmul(sh.b.size() == 2 ? in[0]->reshaped({1, in[0]->numel() / k, k}) : *in[0],
                               sh.b.size() == 2 ? in[1]->reshaped({1, sh.b[0], sh.b[1]}) : *in[1]);
    const int64_t n = sh.b.back();
    for (int64_t i = 0; i < want.numel(); ++i)
      want.set_from_double(i, want.get_as_double(i) + in[2]->get_as_double(i % n) + in[3]->get_as_double(i));
    EXPECT_TRUE(close_to((*out)[0].reshaped({want.numel()}), want.reshaped({want.numel()}), sh.tol));
    EXPECT_GE(c.expect_all_kernels_match(sh.tol, sh.tol), (sh.t == DataType::kFloat32 ? 1 : 0) + gpu_kernels());
  }
  OpCase act("MatMulBias", 1, "kiln");
  act.input(DataType::kFloat32, {4, 8}).input(DataType::kFloat32, {8, 3}).input(DataType::kFloat32, {3});
  act.input(DataType::kFloat32, {4, 3}).attr("activation", Attribute::from_string("Relu"));
  auto r = act.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("residual"), std::string::npos) << r.status().message();
  OpCase wrong("MatMulBias", 1, "kiln");
  wrong.input(DataType::kFloat32, {4, 8}).input(DataType::kFloat32, {8, 3}).input(DataType::kFloat32, {3});
  wrong.input(DataType::kFloat32, {1, 3});
  r = wrong.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("residual [1,3] does not have the output's shape [4,3]"), std::string::npos)
      << r.status().message();
}

// kiln's split-K GEMM (gemm_splitk.h), an opt-in tactic of cuda.cublaslt for products of
// few rows: every tactic it offers, fp16 and bf16, against the naive product in double.
// Shapes: BERT-base's four products at batch 1, tails in every dim (m not a multiple of
// the tile, n of 64, k of 64, k below one block), each activation, bias plus residual.
TEST(MatMulBias, CudaSplitKTacticsMatchNaive) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  ScopedEnv opt_in("KILN_SPLITK_GEMM", "1");
  struct P {
    Dims a;
    int64_t n;
    const char* act;
    bool residual;
  };
  const std::vector<P> cases = {
      {{1, 128, 3072}, 768, "", true},           // fc2 + residual
      {{128, 768}, 2304, "", false},             // QKV
      {{1, 128, 768}, 3072, "GeluTanh", false},  // fc1
      {{3, 7, 200}, 72, "Relu", false},          // 21 rows: 32-row tiles; k and n tails
      {{37, 776}, 136, "", true},                // k = 12 blocks + 8
      {{2, 100, 64}, 8, "", false},              // 200 rows: 128-row tiles, one 8-column chunk
      {{1, 8}, 16, "GeluTanh", false},           // k below one block
  };
  for (DataType t : {DataType::kFloat16, DataType::kBFloat16})
    for (const P& pc : cases) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + dims_to_string(pc.a) + " x " + std::to_string(pc.n) + " " +
                   pc.act + (pc.residual ? " + residual" : ""));
      const int64_t k = pc.a.back();
      int64_t m = 1;
      for (size_t i = 0; i + 1 < pc.a.size(); ++i) m *= pc.a[i];
      OpCase c("MatMulBias", 1, "kiln");
      c.seed(11);
      Dims y(pc.a.begin(), pc.a.end() - 1);
      y.push_back(pc.n);
      c.input(t, pc.a).input(t, {k, pc.n}).input(t, {pc.n});
      if (pc.residual) c.input(t, y);
      if (*pc.act) c.attr("activation", Attribute::from_string(pc.act));
      auto ref = c.run("ref");
      ASSERT_TRUE(ref.ok()) << ref.status().to_string();
      const auto& in = c.inputs();
      Tensor want = naive_matmul(in[0]->reshaped({1, m, k}), in[1]->reshaped({1, k, pc.n})).reshaped({m * pc.n});
      for (int64_t i = 0; i < want.numel(); ++i) {
        double v = want.get_as_double(i) + in[2]->get_as_double(i % pc.n);
        if (std::string(pc.act) == "Relu") v = v > 0 ? v : 0;
        if (std::string(pc.act) == "GeluTanh")
          v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        if (pc.residual) v += in[3]->get_as_double(i);
        want.set_from_double(i, v);
      }
      std::vector<const Tensor*> ins;
      for (const auto& x : in) ins.push_back(x ? &*x : nullptr);
      auto io = cuda::upload_node_io(c.node(), ins, *ref);
      ASSERT_TRUE(io.ok()) << io.status().to_string();
      auto ids = cuda::node_tactics_on_device(c.node(), "cuda.cublaslt", **io);
      ASSERT_TRUE(ids.ok()) << ids.status().to_string();
      std::vector<int64_t> own;
      for (int64_t id : *ids)
        if (ops::matmul::splitk::is_tactic(id)) own.push_back(id);
      ASSERT_GE(own.size(), 2u) << "products of at most 256 rows are offered the split-K tactics";
      EXPECT_TRUE(ops::matmul::splitk::is_tactic((*ids)[1])) << "right after cuBLASLt's first choice";
      const double tol = t == DataType::kFloat16 ? 2e-3 : 8e-3;
      for (int64_t id : own) {
        cuda::NodeRunOptions o;
        o.tactic = id;
        auto got = cuda::run_node_on_device(c.node(), "cuda.cublaslt", ins, *ref, o);
        ASSERT_TRUE(got.ok()) << got.status().to_string();
        EXPECT_TRUE(close_to((*got)[0].reshaped({m * pc.n}), want, tol))
            << "tactic " << id - ops::matmul::splitk::kTacticBase;
      }
    }
}

// cuBLASLt configurations its heuristic does not list (lt_config.h): for products of at
// least 2048 rows, the heuristic's first configuration with other tiles follows its own
// list (on the H100 with nvjet, several); every one of them, and an ID whose tile the library
// refuses (which runs the heuristic's first), matches the CPU reference: rows, columns and
// depth off every tile (m = 2200, n = 776, k = 328), GELU, bias plus residual, fp16 and bf16.
TEST(MatMulBias, CudaEnumeratedTilesMatchReference) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  namespace ltc = ops::matmul::lt_config;
  auto info = cuda::device_info(0);
  ASSERT_TRUE(info.ok());
  const bool hopper = info->cc_major == 9;
  struct P {
    DataType t;
    Dims a;
    int64_t n;
    const char* act;
    bool residual;
  };
  for (const P& pc : {P{DataType::kFloat16, {2, 1100, 328}, 776, "GeluTanh", false},
                      P{DataType::kBFloat16, {2200, 264}, 520, "", true}}) {
    SCOPED_TRACE(std::string(dtype_name(pc.t)) + " " + dims_to_string(pc.a) + " x " + std::to_string(pc.n));
    const int64_t k = pc.a.back();
    OpCase c("MatMulBias", 1, "kiln");
    c.seed(23);
    Dims y(pc.a.begin(), pc.a.end() - 1);
    y.push_back(pc.n);
    c.input(pc.t, pc.a).input(pc.t, {k, pc.n}).input(pc.t, {pc.n});
    if (pc.residual) c.input(pc.t, y);
    if (*pc.act) c.attr("activation", Attribute::from_string(pc.act));
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    std::vector<const Tensor*> ins;
    for (const auto& x : c.inputs()) ins.push_back(x ? &*x : nullptr);
    auto io = cuda::upload_node_io(c.node(), ins, *ref);
    ASSERT_TRUE(io.ok()) << io.status().to_string();
    auto ids = cuda::node_tactics_on_device(c.node(), "cuda.cublaslt", **io);
    ASSERT_TRUE(ids.ok()) << ids.status().to_string();
    std::vector<int64_t> enumerated;
    bool after_heuristic = true;
    for (size_t i = 0; i < ids->size(); ++i) {
      if (ltc::is_enumerated((*ids)[i]))
        enumerated.push_back((*ids)[i]);
      else if (!enumerated.empty())
        after_heuristic = false;
    }
    EXPECT_TRUE(after_heuristic) << "the enumerated configurations follow the heuristic's";
    if (hopper) {
      EXPECT_GE(enumerated.size(), 3u) << "nvjet takes several tiles";
    }
    // A tile no library has: the heuristic's first runs.
    ltc::Config bogus = enumerated.empty() ? ltc::Config{} : ltc::decode(enumerated[0]);
    bogus.tile = 4000;
    int64_t bogus_id = 0;
    ASSERT_TRUE(ltc::encode(bogus, bogus_id));
    enumerated.push_back(bogus_id);
    const double tol = pc.t == DataType::kFloat16 ? 1e-2 : 3e-2;
    for (int64_t id : enumerated) {
      cuda::NodeRunOptions o;
      o.tactic = id;
      auto got = cuda::run_node_on_device(c.node(), "cuda.cublaslt", ins, *ref, o);
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_TRUE(close_to((*got)[0], (*ref)[0], tol)) << ltc::describe(id);
    }
  }
}

// The Hopper GEMM (TMA + wgmma, gemm_hopper.h; not yet a tactic) against the naive product in double, fp16 and bf16,
// both tile widths: BERT-base's batch-1 products (out-projection with residual, QKV, fc1 with GELU, fc2 with residual)
// and tails in every dim (TMA's zero fill past m, n and k; k below one block).
TEST(MatMulBias, CudaHopperGemmMatchesNaive) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the kernel would compare against nothing";
  auto info = cuda::device_info(0);
  ASSERT_TRUE(info.ok());
  if (info->cc_major != 9 || info->cc_minor != 0) GTEST_SKIP() << "the kernel is built for sm_90a only";
  struct P {
    int64_t m, n, k;
    ops::matmul::BiasActivation act;
    bool residual;
  };
  const std::vector<P> cases = {{128, 768, 768, ops::matmul::BiasActivation::kNone, true},
                                {128, 2304, 768, ops::matmul::BiasActivation::kNone, false},
                                {128, 3072, 768, ops::matmul::BiasActivation::kGeluTanh, false},
                                {128, 768, 3072, ops::matmul::BiasActivation::kNone, true},
                                {37, 136, 200, ops::matmul::BiasActivation::kRelu, true},
                                {200, 72, 776, ops::matmul::BiasActivation::kNone, false},
                                {1, 16, 8, ops::matmul::BiasActivation::kNone, false}};
  for (DataType t : {DataType::kFloat16, DataType::kBFloat16})
    for (const P& pc : cases)
      for (int bn : {64, 128}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(pc.m) + "x" + std::to_string(pc.n) + "x" +
                     std::to_string(pc.k) + " bn " + std::to_string(bn));
        std::mt19937 rng(23);
        const Tensor a = random_tensor(t, {pc.m, pc.k}, rng), b = random_tensor(t, {pc.k, pc.n}, rng, -0.1, 0.1);
        const Tensor bias = random_tensor(t, {pc.n}, rng), res = random_tensor(t, {pc.m, pc.n}, rng);
        std::vector<cuda::DeviceBuffer> bufs;
        std::vector<void*> dev;
        for (const Tensor* h : {&a, &b, &bias, &res}) {
          auto d = cuda::device_alloc(h->nbytes(), "test");
          ASSERT_TRUE(d.ok());
          ASSERT_TRUE(cuda::copy_async(d->get(), h->data(), h->nbytes(), cuda::CopyKind::kHostToDevice, nullptr).ok());
          dev.push_back(d->get());
          bufs.push_back(std::move(*d));
        }
        auto y = cuda::device_alloc(static_cast<size_t>(pc.m * pc.n) * 2, "y");
        ASSERT_TRUE(y.ok());
        ops::matmul::hopper::Problem p;
        p.dtype = t;
        p.m = pc.m, p.n = pc.n, p.k = pc.k;
        p.a = dev[0], p.b = dev[1], p.bias = dev[2], p.residual = pc.residual ? dev[3] : nullptr, p.y = y->get();
        p.act = pc.act;
        ASSERT_EQ(ops::matmul::hopper::launch(p, bn, nullptr), 0);
        ASSERT_TRUE(cuda::stream_synchronize(nullptr).ok());
        Tensor got = Tensor::empty(t, {pc.m, pc.n});
        ASSERT_TRUE(cuda::copy_async(got.data(), y->get(), got.nbytes(), cuda::CopyKind::kDeviceToHost, nullptr).ok());
        ASSERT_TRUE(cuda::stream_synchronize(nullptr).ok());
        Tensor want = naive_matmul(a.reshaped({1, pc.m, pc.k}), b.reshaped({1, pc.k, pc.n})).reshaped({pc.m * pc.n});
        for (int64_t i = 0; i < want.numel(); ++i) {
          double v = want.get_as_double(i) + bias.get_as_double(i % pc.n);
          if (pc.act == ops::matmul::BiasActivation::kRelu) v = v > 0 ? v : 0;
          if (pc.act == ops::matmul::BiasActivation::kGeluTanh)
            v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
          if (pc.residual) v += res.get_as_double(i);
          want.set_from_double(i, v);
        }
        EXPECT_TRUE(close_to(got.reshaped({pc.m * pc.n}), want, t == DataType::kFloat16 ? 2e-3 : 8e-3));
      }
}

// kiln.exact_fp32 keeps an FP32 MatMulBias off TF32 where the engine allows TF32
// (patchify_conv's GEMM in FP32 engines); without it the same node runs as TF32.
TEST(MatMulBias, CudaExactFp32AttributeForbidsTf32) {
  if (gpu_kernels() == 0) GTEST_SKIP() << "no CUDA device: the reference runs would compare against nothing";
  for (int exact : {0, 1}) {
    SCOPED_TRACE(exact ? "kiln.exact_fp32 = 1" : "no attribute");
    OpCase c("MatMulBias", 1, "kiln");
    c.seed(4);
    c.input(DataType::kFloat32, {96, 768}).input(DataType::kFloat32, {768, 40}).input(DataType::kFloat32, {40});
    if (exact) c.attr(ops::kExactFp32Attr, Attribute::from_int(1));
    auto ref = c.run("ref");
    ASSERT_TRUE(ref.ok()) << ref.status().to_string();
    std::vector<const Tensor*> ins;
    for (const auto& t : c.inputs()) ins.push_back(t ? &*t : nullptr);
    cuda::NodeRunOptions tf32;
    tf32.allow_tf32 = true;
    auto got = cuda::run_node_on_device(c.node(), "cuda.cublaslt", ins, *ref, tf32);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(tensors_close((*got)[0], (*ref)[0], 1e-5, 1e-5), exact == 1)
        << "TF32 products carry ~1e-3 relative error; exact FP32 ones ~1e-6";
  }
}

}  // namespace
}  // namespace kiln::test
