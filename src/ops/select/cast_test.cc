// Cast to and from the narrow types (float8, float4e2m1, float8e8m0, int4/uint4/int2/uint2).
// The float oracle is a brute-force search over the decoded codes, independent of
// the encoder in base/float8.h.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "base/float8.h"
#include "harness/op_harness.h"

namespace kiln::test {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

const DataType kNarrowFloats[] = {DataType::kFloat8E4M3FN, DataType::kFloat8E4M3FNUZ, DataType::kFloat8E5M2,
                                  DataType::kFloat8E5M2FNUZ, DataType::kFloat4E2M1};

/// The code nearest to x among the finite codes (ties: the even code), for |x| <= max.
uint8_t nearest_code(double x, const MiniFloatFormat& f) {
  int best = -1;
  double best_err = 0;
  for (uint32_t c = 0; c < (1u << f.bits); ++c) {
    double v = minifloat_to_double(c, f);
    if (!std::isfinite(v)) continue;
    double err = std::fabs(v - x);
    bool better = best < 0 || err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1);
    // Of the two zeros keep the one with x's sign.
    if (err == best_err && v == 0 && std::signbit(v) == std::signbit(x)) better = true;
    if (better) {
      best = static_cast<int>(c);
      best_err = err;
    }
  }
  return static_cast<uint8_t>(best);
}

Tensor vec(DataType t, const std::vector<double>& v) {
  return Tensor::from_vector(t, {static_cast<int64_t>(v.size())}, v);
}

Result<Tensor> run_cast(const Tensor& x, DataType to, int opset = 25,
                        std::vector<std::pair<std::string, ir::Attribute>> attrs = {}) {
  OpCase c("Cast", opset);
  c.attr("to", ir::Attribute::from_int(static_cast<int64_t>(to)));
  for (auto& [k, a] : attrs) c.attr(k, a);
  c.input(x);
  KILN_ASSIGN_OR_RETURN(auto out, c.run());
  return out[0];
}

TEST(CastNarrow, FloatToNarrowFloatRoundsToNearestEven) {
  std::mt19937 rng(7);
  for (DataType to : kNarrowFloats) {
    const MiniFloatFormat& f = *minifloat_format(to);
    double max = minifloat_to_double(f.max_mag(), f);
    for (DataType from : {DataType::kFloat32, DataType::kFloat16, DataType::kFloat64}) {
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
      // Log-uniform magnitudes across the whole range, subnormals included.
      std::uniform_real_distribution<double> lg(-(f.bias + f.man_bits + 2), std::log2(max));
      std::vector<double> v;
      for (int i = 0; i < 300; ++i) v.push_back((rng() & 1 ? -1 : 1) * std::exp2(lg(rng)));
      Tensor x = vec(from, v);
      auto y = run_cast(x, to);
      ASSERT_TRUE(y.ok()) << y.status().to_string();
      ASSERT_EQ(y->dtype(), to);
      for (int64_t i = 0; i < x.numel(); ++i) {
        double xv = x.get_as_double(i);
        uint8_t want =
            std::fabs(xv) > max ? static_cast<uint8_t>((xv < 0 ? f.sign_bit() : 0) | f.max_mag()) : nearest_code(xv, f);
        if (f.special == MiniFloatFormat::kFnuz && minifloat_to_double(want, f) == 0) want = 0;
        ASSERT_EQ(y->data_as<uint8_t>()[i], want) << "x = " << xv;
      }
    }
  }
}

TEST(CastNarrow, NarrowFloatToFloatIsExact) {
  for (DataType from : kNarrowFloats) {
    const MiniFloatFormat& f = *minifloat_format(from);
    const int64_t n = int64_t{1} << f.bits;
    Tensor x = Tensor::empty(from, {n});
    for (int64_t c = 0; c < n; ++c) x.data_as<uint8_t>()[c] = static_cast<uint8_t>(c);
    for (DataType to : {DataType::kFloat32, DataType::kFloat16, DataType::kBFloat16, DataType::kFloat64}) {
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
      auto y = run_cast(x, to);
      ASSERT_TRUE(y.ok()) << y.status().to_string();
      for (int64_t c = 0; c < n; ++c) {
        double want = minifloat_to_double(static_cast<uint32_t>(c), f);
        double got = y->get_as_double(c);
        if (std::isnan(want))
          EXPECT_TRUE(std::isnan(got)) << c;
        else
          EXPECT_EQ(got, want) << c;
      }
    }
  }
}

TEST(CastNarrow, SaturateAttribute) {
  Tensor x = vec(DataType::kFloat32, {1e6, -kInf, kNaN, 500});
  auto sat = run_cast(x, DataType::kFloat8E4M3FN, 19);
  auto nosat = run_cast(x, DataType::kFloat8E4M3FN, 19, {{"saturate", ir::Attribute::from_int(0)}});
  ASSERT_TRUE(sat.ok() && nosat.ok());
  const uint8_t want_sat[] = {0x7e, 0xfe, 0x7f, 0x7e};
  const uint8_t want_nosat[] = {0x7f, 0xff, 0x7f, 0x7f};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(sat->data_as<uint8_t>()[i], want_sat[i]) << i;
    EXPECT_EQ(nosat->data_as<uint8_t>()[i], want_nosat[i]) << i;
  }
  auto e5 = run_cast(x, DataType::kFloat8E5M2, 19, {{"saturate", ir::Attribute::from_int(0)}});
  ASSERT_TRUE(e5.ok());
  EXPECT_EQ(e5->data_as<uint8_t>()[0], 0x7c);  // overflow -> inf
  EXPECT_EQ(e5->data_as<uint8_t>()[1], 0xfc);
}

TEST(CastNarrow, E8M0RoundModes) {
  Tensor x = vec(DataType::kFloat32, {0.124, 1.1, 2.0, 0.75, 3.0});
  struct Mode {
    const char* name;
    std::vector<uint8_t> want;
  };
  for (const Mode& m : {Mode{"up", {124, 128, 128, 127, 129}}, Mode{"down", {123, 127, 128, 126, 128}},
                        Mode{"nearest", {124, 127, 128, 127, 129}}}) {
    auto y = run_cast(x, DataType::kFloat8E8M0, 24, {{"round_mode", ir::Attribute::from_string(m.name)}});
    ASSERT_TRUE(y.ok()) << y.status().to_string();
    for (size_t i = 0; i < m.want.size(); ++i) EXPECT_EQ(y->data_as<uint8_t>()[i], m.want[i]) << m.name << " " << i;
  }
  auto bad = run_cast(x, DataType::kFloat8E8M0, 24, {{"round_mode", ir::Attribute::from_string("sideways")}});
  EXPECT_FALSE(bad.ok());
  auto back =
      run_cast(Tensor::from_vector(DataType::kFloat8E8M0, {2}, std::vector<double>{0.25, 1024}), DataType::kFloat16);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->get_as_double(0), 0.25);
  EXPECT_EQ(back->get_as_double(1), 1024);
}

TEST(CastNarrow, FloatToSubByteIntegersTruncateAndWrap) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-40, 40);
  std::vector<double> v;
  for (int i = 0; i < 200; ++i) v.push_back(u(rng));
  v.push_back(kNaN);
  struct Target {
    DataType t;
    int bits;
    bool is_signed;
  };
  for (Target tg : {Target{DataType::kInt4, 4, true}, Target{DataType::kUInt4, 4, false},
                    Target{DataType::kInt2, 2, true}, Target{DataType::kUInt2, 2, false}}) {
    for (DataType from : {DataType::kFloat32, DataType::kFloat16}) {
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(tg.t));
      Tensor x = vec(from, v);
      auto y = run_cast(x, tg.t);
      ASSERT_TRUE(y.ok()) << y.status().to_string();
      const int64_t m = int64_t{1} << tg.bits;
      for (int64_t i = 0; i < x.numel(); ++i) {
        double xv = x.get_as_double(i);
        int64_t t = std::isnan(xv) ? 0 : static_cast<int64_t>(std::trunc(xv));
        int64_t w = ((t % m) + m) % m;
        if (tg.is_signed && w >= m / 2) w -= m;
        EXPECT_EQ(y->get_as_int64(i), w) << "x = " << xv;
      }
    }
  }
}

TEST(CastNarrow, SubByteIntegersWidenAndNarrow) {
  Tensor i4 = Tensor::from_vector(DataType::kInt4, {4}, std::vector<double>{-8, -1, 0, 7});
  auto y = run_cast(i4, DataType::kInt8);
  ASSERT_TRUE(y.ok());
  const int8_t want[] = {-8, -1, 0, 7};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y->data_as<int8_t>()[i], want[i]);
  // int32 -> uint2 wraps exactly, also beyond 2^53.
  Tensor big = Tensor::empty(DataType::kInt64, {3});
  big.data_as<int64_t>()[0] = (int64_t{1} << 60) + 3;
  big.data_as<int64_t>()[1] = -1;
  big.data_as<int64_t>()[2] = 6;
  auto u2 = run_cast(big, DataType::kUInt2);
  ASSERT_TRUE(u2.ok());
  EXPECT_EQ(u2->get_as_int64(0), 3);
  EXPECT_EQ(u2->get_as_int64(1), 3);
  EXPECT_EQ(u2->get_as_int64(2), 2);
  // int4 -> float8 and float4 -> int8 go through the exact value.
  auto f8 = run_cast(i4, DataType::kFloat8E5M2);
  ASSERT_TRUE(f8.ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f8->get_as_double(i), want[i]);
  Tensor f4 = Tensor::from_vector(DataType::kFloat4E2M1, {3}, std::vector<double>{-6, 1.5, 3});
  auto i8 = run_cast(f4, DataType::kInt8);
  ASSERT_TRUE(i8.ok());
  EXPECT_EQ(i8->get_as_int64(0), -6);
  EXPECT_EQ(i8->get_as_int64(1), 1);
  EXPECT_EQ(i8->get_as_int64(2), 3);
}

TEST(CastNarrow, CastLikeUsesTheNarrowTarget) {
  OpCase c("CastLike", 25);
  c.input(vec(DataType::kFloat32, {0.3, -7.9, 100}));
  c.input(Tensor::empty(DataType::kFloat4E2M1, {0}));
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dtype(), DataType::kFloat4E2M1);
  EXPECT_EQ((*out)[0].get_as_double(0), 0.5);
  EXPECT_EQ((*out)[0].get_as_double(1), -6);
  EXPECT_EQ((*out)[0].get_as_double(2), 6);
}

}  // namespace
}  // namespace kiln::test
