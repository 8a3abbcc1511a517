#include <cmath>
#include <complex>
#include <numbers>

#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor scalar_i64(int64_t v) { return Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{v}); }

// Naive DFT of a complex row using std::polar (independent of the kernel's twiddle table).
std::vector<std::complex<double>> naive_dft(const std::vector<std::complex<double>>& x, int64_t n, bool inverse) {
  std::vector<std::complex<double>> y(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t j = 0; j < n && j < static_cast<int64_t>(x.size()); ++j)
      y[k] += x[j] * std::polar(1.0, (inverse ? 2 : -2) * std::numbers::pi * double(j) * double(k) / double(n));
    if (inverse) y[k] /= double(n);
  }
  return y;
}

TEST(SignalDft, ComplexAlongAxisMatchesNaive) {
  for (int opset : {17, 20}) {
    OpCase c("DFT", opset);
    c.input(DataType::kFloat64, {2, 7, 3, 2});
    if (opset == 20) c.no_input().input(scalar_i64(1));
    else c.attr("axis", ir::Attribute::from_int(1));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& x = *c.inputs()[0];
    const Tensor& y = (*out)[0];
    ASSERT_EQ(y.dims(), (Dims{2, 7, 3, 2}));
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t q = 0; q < 3; ++q) {
        std::vector<std::complex<double>> row;
        for (int64_t j = 0; j < 7; ++j)
          row.emplace_back(x.get_as_double(((b * 7 + j) * 3 + q) * 2), x.get_as_double(((b * 7 + j) * 3 + q) * 2 + 1));
        auto want = naive_dft(row, 7, false);
        for (int64_t k = 0; k < 7; ++k) {
          EXPECT_NEAR(y.get_as_double(((b * 7 + k) * 3 + q) * 2), want[k].real(), 1e-9);
          EXPECT_NEAR(y.get_as_double(((b * 7 + k) * 3 + q) * 2 + 1), want[k].imag(), 1e-9);
        }
      }
  }
}

TEST(SignalDft, RealOnesidedPaddedAndInverseRoundTrip) {
  OpCase c("DFT", 20);
  c.attr("onesided", ir::Attribute::from_int(1));
  c.input(DataType::kFloat32, {1, 6, 1}).input(scalar_i64(9)).input(scalar_i64(-2));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  ASSERT_EQ((*out)[0].dims(), (Dims{1, 5, 2}));
  std::vector<std::complex<double>> row;
  for (int64_t j = 0; j < 6; ++j) row.emplace_back(x.get_as_double(j), 0.0);
  auto want = naive_dft(row, 9, false);  // zero-padded to 9
  for (int64_t k = 0; k < 5; ++k) {
    EXPECT_NEAR((*out)[0].get_as_double(2 * k), want[k].real(), 1e-5);
    EXPECT_NEAR((*out)[0].get_as_double(2 * k + 1), want[k].imag(), 1e-5);
  }
  // irfft of the one-sided spectrum with dft_length 9 recovers the padded signal.
  OpCase inv("DFT", 20);
  inv.attr("onesided", ir::Attribute::from_int(1)).attr("inverse", ir::Attribute::from_int(1));
  inv.input((*out)[0]).input(scalar_i64(9)).input(scalar_i64(1));
  auto back = inv.run();
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  ASSERT_EQ((*back)[0].dims(), (Dims{1, 9, 1}));
  for (int64_t j = 0; j < 9; ++j) EXPECT_NEAR((*back)[0].get_as_double(j), j < 6 ? x.get_as_double(j) : 0.0, 1e-5);
}

TEST(SignalDft, InverseUndoesForward) {
  OpCase c("DFT", 19);
  c.attr("axis", ir::Attribute::from_int(-2));
  c.input(DataType::kFloat64, {3, 8, 2});
  auto fwd = c.run();
  ASSERT_TRUE(fwd.ok());
  OpCase inv("DFT", 19);
  inv.attr("axis", ir::Attribute::from_int(1)).attr("inverse", ir::Attribute::from_int(1)).input((*fwd)[0]);
  auto back = inv.run();
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(tensors_close((*back)[0], *c.inputs()[0], 1e-9, 1e-9));
}

TEST(SignalDft, RejectsBadAxisAndLength) {
  OpCase last("DFT", 20);
  last.input(DataType::kFloat32, {2, 4, 1}).no_input().input(scalar_i64(2));
  EXPECT_FALSE(last.run().ok());
  OpCase bad_last("DFT", 20);
  bad_last.input(DataType::kFloat32, {2, 4, 3});
  EXPECT_FALSE(bad_last.run().ok());
  OpCase zero_len("DFT", 20);
  zero_len.input(DataType::kFloat32, {2, 4, 1}).input(scalar_i64(0));
  EXPECT_FALSE(zero_len.run().ok());
}

TEST(SignalStft, MatchesFramedNaiveDft) {
  OpCase c("STFT", 17);
  c.input(DataType::kFloat64, {2, 20, 1}).input(scalar_i64(3)).input(DataType::kFloat64, {6}, 0.1, 1.0);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  const Tensor& w = *c.inputs()[2];
  const Tensor& y = (*out)[0];
  ASSERT_EQ(y.dims(), (Dims{2, 5, 4, 2}));  // frames = 1 + (20-6)/3, bins = 6/2+1
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t f = 0; f < 5; ++f) {
      std::vector<std::complex<double>> frame;
      for (int64_t j = 0; j < 6; ++j) frame.emplace_back(x.get_as_double(b * 20 + f * 3 + j) * w.get_as_double(j), 0);
      auto want = naive_dft(frame, 6, false);
      for (int64_t k = 0; k < 4; ++k) {
        EXPECT_NEAR(y.get_as_double(((b * 5 + f) * 4 + k) * 2), want[k].real(), 1e-9);
        EXPECT_NEAR(y.get_as_double(((b * 5 + f) * 4 + k) * 2 + 1), want[k].imag(), 1e-9);
      }
    }
}

TEST(SignalStft, RejectsFrameLongerThanSignal) {
  OpCase c("STFT", 17);
  c.input(DataType::kFloat32, {1, 4, 1}).input(scalar_i64(1)).no_input().input(scalar_i64(8));
  EXPECT_FALSE(c.run().ok());
}

TEST(SignalWindow, MatchFormulas) {
  struct W { const char* op; double a0, a1, a2; };
  for (W w : {W{"HannWindow", 0.5, 0.5, 0}, W{"HammingWindow", 25.0 / 46, 21.0 / 46, 0},
              W{"BlackmanWindow", 0.42, 0.5, 0.08}})
    for (int periodic : {0, 1}) {
      OpCase c(w.op, 17);
      c.attr("periodic", ir::Attribute::from_int(periodic)).attr("output_datatype", ir::Attribute::from_int(11));
      c.input(Tensor::from_vector(DataType::kInt32, {}, std::vector<int32_t>{11}));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      ASSERT_EQ((*out)[0].dtype(), DataType::kFloat64);
      double n = periodic ? 11 : 10;
      for (int i = 0; i < 11; ++i) {
        double want = w.a0 - w.a1 * std::cos(2 * std::numbers::pi * i / n) + w.a2 * std::cos(4 * std::numbers::pi * i / n);
        EXPECT_NEAR((*out)[0].get_as_double(i), want, 1e-12) << w.op;
      }
      // symmetric windows are symmetric
      if (!periodic) EXPECT_NEAR((*out)[0].get_as_double(1), (*out)[0].get_as_double(9), 1e-12);
    }
  OpCase neg("HannWindow", 17);
  neg.input(Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{-3}));
  EXPECT_FALSE(neg.run().ok());
}

TEST(SignalMel, RowsAreTrianglesWithinRange) {
  OpCase c("MelWeightMatrix", 17);
  c.input(Tensor::from_vector(DataType::kInt32, {}, std::vector<int32_t>{8}))
      .input(Tensor::from_vector(DataType::kInt32, {}, std::vector<int32_t>{64}))
      .input(Tensor::from_vector(DataType::kInt32, {}, std::vector<int32_t>{16000}))
      .input(Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{20.f}))
      .input(Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{8000.f}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& y = (*out)[0];
  ASSERT_EQ(y.dims(), (Dims{33, 8}));
  for (int64_t m = 0; m < 8; ++m) {
    double peak = 0;
    for (int64_t b = 0; b < 33; ++b) {
      double v = y.get_as_double(b * 8 + m);
      EXPECT_GE(v, 0.0);
      EXPECT_LE(v, 1.0);
      peak = std::max(peak, v);
    }
    EXPECT_EQ(peak, 1.0);  // each filter reaches 1 at its centre bin
  }
}

}  // namespace
}  // namespace kiln::test
