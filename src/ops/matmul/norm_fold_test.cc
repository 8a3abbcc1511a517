// MatMulBiasRowStats and NormMatMulBias (norm_fold.cc): the references against independent
// computations (the residual GEMM and its row statistics in double; the folded GEMM against
// LayerNormalization then MatMulBias, run as kiln's own ops), and every CUDA kernel against the
// references where a GPU is present (CUTLASS's tactics on an H100, cuBLASLt + a pass elsewhere).
#include <algorithm>
#include <cmath>
#include <random>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

using ir::Attribute;

Tensor f32(const std::vector<double>& v, Dims d) {
  Tensor t = Tensor::empty(DataType::kFloat32, std::move(d));
  for (size_t i = 0; i < v.size(); ++i) t.set_from_double(static_cast<int64_t>(i), v[i]);
  return t;
}

// Row statistics [4, rows] of a [rows, n] tensor (rows 2-3 zero), in double.
Tensor stats_of(const Tensor& x, int64_t rows, int64_t n, double eps) {
  std::vector<double> st(static_cast<size_t>(4 * rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0, q = 0;
    for (int64_t c = 0; c < n; ++c) s += x.get_as_double(r * n + c);
    const double mean = s / n;
    for (int64_t c = 0; c < n; ++c) q += std::pow(x.get_as_double(r * n + c) - mean, 2);
    const double rstd = 1 / std::sqrt(q / n + eps);
    st[static_cast<size_t>(r)] = rstd, st[static_cast<size_t>(rows + r)] = -mean * rstd;
  }
  return f32(st, {4, rows});
}

struct RowStatsCase {
  DataType dtype;
  Dims a;  // [..., K]
  int64_t n;
};

TEST(NormFold, RowStatsReferenceMatchesDouble) {
  for (const RowStatsCase& rc :
       {RowStatsCase{DataType::kFloat32, {3, 16, 32}, 48}, RowStatsCase{DataType::kFloat16, {48, 32}, 48},
        RowStatsCase{DataType::kFloat16, {5, 9, 24}, 16}}) {
    SCOPED_TRACE(std::string(dtype_name(rc.dtype)) + " " + dims_to_string(rc.a) + " N " + std::to_string(rc.n));
    const int64_t k = rc.a.back();
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < rc.a.size(); ++i) rows *= rc.a[i];
    Dims yd = rc.a;
    yd.back() = rc.n;
    std::mt19937 rng(5);
    const Tensor a = random_tensor(rc.dtype, rc.a, rng), w = random_tensor(rc.dtype, {rc.n, k}, rng, -0.3, 0.3);
    const Tensor bias = random_tensor(DataType::kFloat32, {rc.n}, rng), res = random_tensor(rc.dtype, yd, rng, 0, 2);
    OpCase c("MatMulBiasRowStats", 1, "kiln");
    c.attr("epsilon", Attribute::from_float(1e-5f)).outputs(2);
    c.input(a).input(w).input(bias).input(res);
    auto got = c.run("ref");
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    Tensor want = Tensor::empty(DataType::kFloat32, {rows, rc.n});
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t col = 0; col < rc.n; ++col) {
        double z = bias.get_as_double(col) + res.get_as_double(r * rc.n + col);
        for (int64_t kk = 0; kk < k; ++kk) z += a.get_as_double(r * k + kk) * w.get_as_double(col * k + kk);
        want.set_from_double(r * rc.n + col, z);
      }
    const double tol = rc.dtype == DataType::kFloat32 ? 1e-5 : 2e-3;
    double worst = 0;
    for (int64_t i = 0; i < rows * rc.n; ++i)
      worst = std::max(worst, std::fabs((*got)[0].get_as_double(i) - want.get_as_double(i)) /
                                  (1 + std::fabs(want.get_as_double(i))));
    EXPECT_LT(worst, tol) << "Y";
    EXPECT_TRUE(tensors_close((*got)[1], stats_of(want, rows, rc.n, 1e-5), 1e-4, 1e-5));
    EXPECT_GE(c.expect_all_kernels_match(rc.dtype == DataType::kFloat32 ? 1e-4 : 1e-2, 1e-2), gpu_kernels());
  }
}

// NormMatMulBias(x, stats(x), W diag(gamma), s, b') against MatMulBias(LayerNormalization(x)), both
// as kiln runs them (reference kernels), FP32 and FP16, with and without GELU.
TEST(NormFold, FoldedMatMulEqualsLayerNormThenMatMulBias) {
  const int64_t rows = 48, k = 64, n = 40;
  const double eps = 1e-5;
  for (DataType t : {DataType::kFloat32, DataType::kFloat16})
    for (const char* act : {"", "GeluTanh"}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " activation '" + act + "'");
      std::mt19937 rng(9);
      Tensor x = random_tensor(t, {2, 24, k}, rng, -1.5, 1.5);
      for (int64_t r = 0; r < rows; ++r)  // a mean to remove
        for (int64_t kk = 0; kk < k; ++kk) x.set_from_double(r * k + kk, x.get_as_double(r * k + kk) + 0.02 * r);
      const Tensor gamma = random_tensor(t, {k}, rng, 0.5, 1.5), beta = random_tensor(t, {k}, rng, -0.2, 0.2);
      const Tensor wkn = random_tensor(t, {k, n}, rng, -0.3, 0.3), b = random_tensor(t, {n}, rng, -0.2, 0.2);

      OpCase ln("LayerNormalization", 17);
      ln.attr("axis", Attribute::from_int(-1)).attr("epsilon", Attribute::from_float(static_cast<float>(eps)));
      ln.input(x).input(gamma).input(beta);
      auto y1 = ln.run("ref");
      ASSERT_TRUE(y1.ok()) << y1.status().to_string();
      OpCase mm("MatMulBias", 1, "kiln");
      mm.attr("activation", Attribute::from_string(act));
      mm.input((*y1)[0]).input(wkn).input(b);
      auto want = mm.run("ref");
      ASSERT_TRUE(want.ok()) << want.status().to_string();

      // The fold: W' [n, k] = (W diag(gamma))^T in t, s its rows' sums, b' = W^T beta + b.
      Tensor wf = Tensor::empty(t, {n, k});
      std::vector<double> s(static_cast<size_t>(n)), bp(static_cast<size_t>(n));
      for (int64_t c = 0; c < n; ++c) {
        double sum = 0, bsum = b.get_as_double(c);
        for (int64_t kk = 0; kk < k; ++kk) {
          wf.set_from_double(c * k + kk, wkn.get_as_double(kk * n + c) * gamma.get_as_double(kk));
          sum += wf.get_as_double(c * k + kk), bsum += wkn.get_as_double(kk * n + c) * beta.get_as_double(kk);
        }
        s[static_cast<size_t>(c)] = sum, bp[static_cast<size_t>(c)] = bsum;
      }
      OpCase fold("NormMatMulBias", 1, "kiln");
      fold.attr("activation", Attribute::from_string(act));
      fold.input(x).input(stats_of(x, rows, k, eps)).input(wf).input(f32(s, {n})).input(f32(bp, {n}));
      auto got = fold.run("ref");
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      const double tol = t == DataType::kFloat32 ? 1e-4 : 1e-2;
      EXPECT_TRUE(tensors_close((*got)[0], (*want)[0], tol, tol));
      EXPECT_GE(fold.expect_all_kernels_match(t == DataType::kFloat32 ? 1e-4 : 1e-2, 1e-2), gpu_kernels());
    }
}

TEST(NormFold, BadInputsAreErrorsNamingWhatIsWrong) {
  OpCase c("NormMatMulBias", 1, "kiln");
  c.input(DataType::kFloat32, {8, 16})
      .input(DataType::kFloat32, {4, 7})  // stats for 7 rows, not 8
      .input(DataType::kFloat32, {12, 16})
      .input(DataType::kFloat32, {12})
      .input(DataType::kFloat32, {12});
  auto r = c.run("ref");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("stats"), std::string::npos) << r.status().message();

  OpCase d("MatMulBiasRowStats", 1, "kiln");
  d.outputs(2).input(DataType::kFloat32, {8, 16}).input(DataType::kFloat32, {12, 15});  // K 16 vs 15
  d.input(DataType::kFloat32, {12}).input(DataType::kFloat32, {8, 12});
  auto e = d.run("ref");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("K"), std::string::npos) << e.status().message();
}

}  // namespace
}  // namespace kiln::test
