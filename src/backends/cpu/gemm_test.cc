#include "backends/cpu/gemm.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu/thread_pool.h"

namespace kiln::cpu {
namespace {

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// C = alpha*op(A)*op(B) + beta*C in double, the independent check.
void naive(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const std::vector<float>& a, int64_t lda,
           const std::vector<float>& b, int64_t ldb, float beta, std::vector<float>& c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += double(ta ? a[p * lda + i] : a[i * lda + p]) * double(tb ? b[j * ldb + p] : b[p * ldb + j]);
      float& o = c[i * ldc + j];
      o = static_cast<float>(alpha * s + (beta == 0.f ? 0.0 : double(beta) * o));
    }
}

TEST(CpuThreadPool, CoversEveryIndexOnce) {
  for (int64_t n : {1, 2, 7, 100, 12345}) {
    std::vector<std::atomic<int>> hits(n);
    parallel_for(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(CpuThreadPool, NestedLoopsRunInline) {
  std::atomic<int64_t> sum{0};
  parallel_for(8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_for(10, [&](int64_t b2, int64_t e2) { sum.fetch_add(e2 - b2); });
  });
  EXPECT_EQ(sum.load(), 80);
}

TEST(CpuThreadPool, SmallPoolWorks) {
  ThreadPool pool(3);
  std::vector<int> v(1000, 0);
  pool.parallel_for(1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) v[i] = static_cast<int>(i);
  });
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(v[i], i);
}

struct GemmCase {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
};

TEST(CpuGemm, MatchesNaiveOnOddShapes) {
  std::mt19937 rng(7);
  std::vector<GemmCase> cases = {
      {false, false, 1, 1, 1, 1.f, 0.f},     {false, false, 3, 5, 7, 1.f, 0.f},
      {false, false, 37, 53, 29, 1.f, 0.f},  {true, false, 64, 65, 300, 0.5f, 0.f},
      {false, true, 13, 100, 257, 1.f, 1.f}, {true, true, 130, 33, 70, -2.f, 0.25f},
      {false, false, 200, 300, 520, 1.f, 0.f}, {false, false, 1, 500, 64, 1.f, 0.f},
      {false, true, 500, 1, 64, 1.f, 0.f},   {false, false, 25, 4100, 17, 1.f, 0.5f},
  };
  for (const auto& g : cases) {
    int64_t lda = (g.ta ? g.m : g.k) + 3, ldb = (g.tb ? g.k : g.n) + 1, ldc = g.n + 2;
    auto a = random_vec((g.ta ? g.k : g.m) * lda, rng);
    auto b = random_vec((g.tb ? g.n : g.k) * ldb, rng);
    auto c = random_vec(g.m * ldc, rng);
    if (g.beta == 0.f)  // beta 0 must not read C: poison it
      for (auto& x : c) x = std::nanf("");
    auto expect = c;
    naive(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, expect, ldc);
    sgemm(g.ta, g.tb, g.m, g.n, g.k, g.alpha, a.data(), lda, b.data(), ldb, g.beta, c.data(), ldc);
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) {
        float x = c[i * ldc + j], y = expect[i * ldc + j];
        ASSERT_NEAR(x, y, 1e-4 * std::sqrt(double(g.k)) + 1e-4 * std::fabs(y))
            << "m=" << g.m << " n=" << g.n << " k=" << g.k << " ta=" << g.ta << " tb=" << g.tb << " at " << i
            << "," << j << " kernel " << sgemm_kernel_name();
      }
    // Padding between rows of C must be untouched.
    if (g.beta == 0.f)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = g.n; j < ldc; ++j) {
          ASSERT_TRUE(std::isnan(c[i * ldc + j]));
        }
  }
}

TEST(CpuGemm, EveryMicroKernelThisCpuRuns) {
  std::mt19937 rng(11);
  const int64_t m = 45, n = 70, k = 300;
  auto a = random_vec(m * k, rng), b = random_vec(k * n, rng);
  std::vector<float> want(m * n, 0.f);
  naive(false, true, m, n, k, 1.5f, a, k, b, k, 0.f, want, n);
  int ran = 0;
  for (const char* name : {"avx512", "avx2", "generic"}) {
    std::vector<float> c(m * n, std::nanf(""));
    if (!sgemm_with_kernel(name, false, true, m, n, k, 1.5f, a.data(), k, b.data(), k, 0.f, c.data(), n)) continue;
    ++ran;
    for (int64_t i = 0; i < m * n; ++i) ASSERT_NEAR(c[i], want[i], 1e-3) << name << " at " << i;
  }
  EXPECT_GE(ran, 1);  // the portable kernel always runs
  EXPECT_FALSE(sgemm_with_kernel("no-such-kernel", false, false, 1, 1, 1, 1.f, a.data(), 1, b.data(), 1, 0.f,
                                 want.data(), 1));
}

TEST(CpuGemm, SingleThreadEqualsMultiThread) {
  std::mt19937 rng(3);
  int64_t m = 150, n = 170, k = 300;
  auto a = random_vec(m * k, rng), b = random_vec(k * n, rng);
  std::vector<float> c1(m * n), c2(m * n);
  sgemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c1.data(), n, 1);
  sgemm(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c2.data(), n, 0);
  EXPECT_EQ(c1, c2);  // the same tiles in the same order: bit-identical
}

}  // namespace
}  // namespace kiln::cpu
