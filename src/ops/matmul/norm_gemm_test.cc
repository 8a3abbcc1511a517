// norm_gemm.h's CUTLASS kernels on the GPU against double-precision references: the residual GEMM's
// output and row sums, the statistics they give, and the folded GEMM against LayerNorm then the
// product (with and without GELU), at ViT-like shapes and at shapes with tails in m, n and k.
#include <cmath>
#include <random>
#include <vector>

#include "backends/cuda/api.h"
#include "backends/cuda/device.h"
#include "harness/op_harness.h"
#include "ops/matmul/norm_gemm.h"

namespace kiln::test {
namespace {

namespace ng = ops::matmul::norm_gemm;

// Why the kernels cannot run here, or "" where they can.
std::string skip_reason() {
  if (gpu_kernels() == 0) return "no CUDA device: the kernels would compare against nothing";
  auto info = cuda::device_info(0);
  if (!info.ok() || info->cc_major != 9 || info->cc_minor != 0) return "the kernels are built for sm_90a only";
  if (!ng::built()) return "kiln was built without CUTLASS's headers (setup.sh unpacks them)";
  return "";
}

// A device copy of host bytes, kept alive by `keep`.
void* upload(const void* host, size_t bytes, std::vector<cuda::DeviceBuffer>& keep) {
  auto d = cuda::device_alloc(bytes, "norm_gemm test");
  EXPECT_TRUE(d.ok());
  if (!d.ok()) return nullptr;
  EXPECT_TRUE(cuda::copy_async(d->get(), host, bytes, cuda::CopyKind::kHostToDevice, nullptr).ok());
  keep.push_back(std::move(*d));
  return keep.back().get();
}
template <class T>
std::vector<T> download(const void* dev, size_t count) {
  std::vector<T> out(count);
  EXPECT_TRUE(cuda::copy_async(out.data(), dev, count * sizeof(T), cuda::CopyKind::kDeviceToHost, nullptr).ok());
  EXPECT_TRUE(cuda::stream_synchronize(nullptr).ok());
  return out;
}
Tensor download_half(const void* dev, int64_t rows, int64_t cols) {
  Tensor t = Tensor::empty(DataType::kFloat16, {rows, cols});
  EXPECT_TRUE(cuda::copy_async(t.data(), dev, t.nbytes(), cuda::CopyKind::kDeviceToHost, nullptr).ok());
  EXPECT_TRUE(cuda::stream_synchronize(nullptr).ok());
  return t;
}

// Largest |got - want| over the largest |want|.
double rel_err(const std::vector<double>& got, const std::vector<double>& want) {
  double worst = 0, big = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(got[i] - want[i])), big = std::max(big, std::fabs(want[i]));
  return worst / big;
}
std::vector<double> values(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = t.get_as_double(i);
  return v;
}

struct Shape3 {
  int64_t m, n, k;
};
const std::vector<Shape3> kShapes = {{256, 768, 768}, {300, 264, 200}, {1, 8, 8}, {515, 1024, 520}};

TEST(NormGemm, ResidualSumsMatchDouble) {
  const std::string why = skip_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  for (const Shape3& s : kShapes)
    for (int config = 0; config < ng::kConfigs; ++config) {
      SCOPED_TRACE(std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) + " config " +
                   std::to_string(config));
      std::mt19937 rng(7 + static_cast<unsigned>(s.m));
      const Tensor x = random_tensor(DataType::kFloat16, {s.m, s.k}, rng);
      const Tensor w = random_tensor(DataType::kFloat16, {s.n, s.k}, rng, -0.1, 0.1);
      const Tensor c = random_tensor(DataType::kFloat16, {s.m, s.n}, rng, 0.0, 2.0);  // a mean a row
      std::vector<float> bias(static_cast<size_t>(s.n));
      std::uniform_real_distribution<float> u(-0.5f, 0.5f);
      for (float& b : bias) b = u(rng);
      std::vector<cuda::DeviceBuffer> keep;
      const std::vector<float> zeros(static_cast<size_t>(s.m), 0.f);
      ng::ResidualSums p;
      p.m = s.m, p.n = s.n, p.k = s.k;
      p.x = upload(x.data(), x.nbytes(), keep), p.w = upload(w.data(), w.nbytes(), keep);
      p.bias = static_cast<const float*>(upload(bias.data(), bias.size() * 4, keep));
      p.c = upload(c.data(), c.nbytes(), keep);
      p.d = upload(c.data(), c.nbytes(), keep);  // overwritten
      p.sums = static_cast<float*>(upload(zeros.data(), zeros.size() * 4, keep));
      p.sumsq = static_cast<float*>(upload(zeros.data(), zeros.size() * 4, keep));
      ASSERT_EQ(ng::residual_sums(p, config, nullptr), 0);
      const Tensor d = download_half(p.d, s.m, s.n);
      const auto sums = download<float>(p.sums, static_cast<size_t>(s.m));
      const auto sumsq = download<float>(p.sumsq, static_cast<size_t>(s.m));

      std::vector<double> want(static_cast<size_t>(s.m * s.n)), want_s(static_cast<size_t>(s.m), 0),
          want_q(static_cast<size_t>(s.m), 0), got_s(sums.begin(), sums.end()), got_q(sumsq.begin(), sumsq.end());
      for (int64_t r = 0; r < s.m; ++r)
        for (int64_t col = 0; col < s.n; ++col) {
          double z = bias[static_cast<size_t>(col)] + c.get_as_double(r * s.n + col);
          for (int64_t kk = 0; kk < s.k; ++kk) z += x.get_as_double(r * s.k + kk) * w.get_as_double(col * s.k + kk);
          want[static_cast<size_t>(r * s.n + col)] = z;
          want_s[static_cast<size_t>(r)] += z, want_q[static_cast<size_t>(r)] += z * z;
        }
      EXPECT_LT(rel_err(values(d), want), 2e-3) << "D";
      EXPECT_LT(rel_err(got_s, want_s), 1e-4) << "row sums";
      EXPECT_LT(rel_err(got_q, want_q), 1e-4) << "row sums of squares";
    }
}

TEST(NormGemm, FoldedMatchesLayerNormThenProduct) {
  const std::string why = skip_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  const float eps = 1e-6f;
  for (const Shape3& s : kShapes)
    for (bool gelu : {false, true})
      for (int config = 0; config < ng::kConfigs; ++config) {
        SCOPED_TRACE(std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
                     (gelu ? " GELU" : "") + " config " + std::to_string(config));
        std::mt19937 rng(11 + static_cast<unsigned>(s.n));
        Tensor h = random_tensor(DataType::kFloat16, {s.m, s.k}, rng, -1.5, 1.5);
        std::uniform_real_distribution<double> u(-1.0, 1.0);
        for (int64_t r = 0; r < s.m; ++r) {  // a different mean and scale a row
          const double off = 0.5 * u(rng), scale = 1.0 + 0.5 * u(rng);
          for (int64_t kk = 0; kk < s.k; ++kk)
            h.set_from_double(r * s.k + kk, off + scale * h.get_as_double(r * s.k + kk));
        }
        const Tensor w = random_tensor(DataType::kFloat16, {s.n, s.k}, rng, -0.1, 0.1);
        std::vector<double> gamma(static_cast<size_t>(s.k)), beta(static_cast<size_t>(s.k)),
            b(static_cast<size_t>(s.n));
        for (auto& g : gamma) g = 1.0 + 0.3 * u(rng);
        for (auto& v : beta) v = 0.1 * u(rng);
        for (auto& v : b) v = 0.1 * u(rng);
        // The fold: W' = W diag(gamma) (as stored, fp16), s = its column sums, b' = W beta + b.
        Tensor wf = Tensor::empty(DataType::kFloat16, {s.n, s.k});
        std::vector<float> sv(static_cast<size_t>(s.n)), bv(static_cast<size_t>(s.n));
        for (int64_t col = 0; col < s.n; ++col) {
          double sum = 0, bsum = b[static_cast<size_t>(col)];
          for (int64_t kk = 0; kk < s.k; ++kk) {
            const int64_t i = col * s.k + kk;
            wf.set_from_double(i, w.get_as_double(i) * gamma[static_cast<size_t>(kk)]);
            sum += wf.get_as_double(i), bsum += w.get_as_double(i) * beta[static_cast<size_t>(kk)];
          }
          sv[static_cast<size_t>(col)] = static_cast<float>(sum),
          bv[static_cast<size_t>(col)] = static_cast<float>(bsum);
        }
        // Row sums as residual_sums would leave them, and the reference LayerNorm.
        std::vector<float> sums(static_cast<size_t>(s.m)), sumsq(static_cast<size_t>(s.m));
        std::vector<double> mean(static_cast<size_t>(s.m)), rstd(static_cast<size_t>(s.m));
        for (int64_t r = 0; r < s.m; ++r) {
          double a = 0, q = 0;
          for (int64_t kk = 0; kk < s.k; ++kk) a += h.get_as_double(r * s.k + kk);
          const double mu = a / static_cast<double>(s.k);
          for (int64_t kk = 0; kk < s.k; ++kk) {
            const double v = h.get_as_double(r * s.k + kk);
            q += v * v;
          }
          double var = 0;
          for (int64_t kk = 0; kk < s.k; ++kk) var += std::pow(h.get_as_double(r * s.k + kk) - mu, 2);
          sums[static_cast<size_t>(r)] = static_cast<float>(a), sumsq[static_cast<size_t>(r)] = static_cast<float>(q);
          mean[static_cast<size_t>(r)] = mu, rstd[static_cast<size_t>(r)] = 1.0 / std::sqrt(var / s.k + eps);
        }
        std::vector<cuda::DeviceBuffer> keep;
        float* dsum = static_cast<float*>(upload(sums.data(), sums.size() * 4, keep));
        float* dsq = static_cast<float*>(upload(sumsq.data(), sumsq.size() * 4, keep));
        float* drstd = static_cast<float*>(upload(sums.data(), sums.size() * 4, keep));  // overwritten
        float* dnmr = static_cast<float*>(upload(sums.data(), sums.size() * 4, keep));
        ASSERT_EQ(ng::finish_stats(s.m, s.k, eps, dsum, dsq, drstd, dnmr, nullptr), 0);
        const auto got_rstd = download<float>(drstd, static_cast<size_t>(s.m));
        const auto got_nmr = download<float>(dnmr, static_cast<size_t>(s.m));
        for (float v : download<float>(dsum, static_cast<size_t>(s.m))) ASSERT_EQ(v, 0.f) << "sums not zeroed";
        for (float v : download<float>(dsq, static_cast<size_t>(s.m))) ASSERT_EQ(v, 0.f) << "sums not zeroed";
        std::vector<double> want_rstd(rstd), want_nmr(static_cast<size_t>(s.m));
        for (int64_t r = 0; r < s.m; ++r) want_nmr[static_cast<size_t>(r)] = -mean[r] * rstd[r];
        EXPECT_LT(rel_err({got_rstd.begin(), got_rstd.end()}, want_rstd), 1e-4) << "rstd";
        EXPECT_LT(rel_err({got_nmr.begin(), got_nmr.end()}, want_nmr), 1e-3) << "-mean rstd";

        ng::Folded p;
        p.m = s.m, p.n = s.n, p.k = s.k, p.gelu = gelu;
        p.x = upload(h.data(), h.nbytes(), keep), p.w = upload(wf.data(), wf.nbytes(), keep);
        p.rstd = drstd, p.nmr = dnmr;
        p.s = static_cast<const float*>(upload(sv.data(), sv.size() * 4, keep));
        p.b = static_cast<const float*>(upload(bv.data(), bv.size() * 4, keep));
        std::vector<uint16_t> init(static_cast<size_t>(s.m * s.n), 0);
        p.d = upload(init.data(), init.size() * 2, keep);
        ASSERT_EQ(ng::folded(p, config, nullptr), 0);
        const Tensor d = download_half(p.d, s.m, s.n);
        std::vector<double> want(static_cast<size_t>(s.m * s.n));
        for (int64_t r = 0; r < s.m; ++r)
          for (int64_t col = 0; col < s.n; ++col) {
            double v = b[static_cast<size_t>(col)];
            for (int64_t kk = 0; kk < s.k; ++kk) {
              const double ln = (h.get_as_double(r * s.k + kk) - mean[r]) * rstd[r] * gamma[kk] + beta[kk];
              v += ln * w.get_as_double(col * s.k + kk);
            }
            if (gelu) v = 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
            want[static_cast<size_t>(r * s.n + col)] = v;
          }
        // fp16 output and W' rounded to fp16: a few fp16 ulps of the largest value.
        EXPECT_LT(rel_err(values(d), want), 4e-3);
      }
}

}  // namespace
}  // namespace kiln::test
