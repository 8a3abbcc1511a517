// QuantizeLinear / DequantizeLinear with the narrow types: 4- and 2-bit integers
// (opset 21 / 25), float8 (opset 19) and float4e2m1 (opset 23), per tensor, per
// axis and blocked, on random inputs against independent computations.
#include <cmath>

#include "base/float8.h"
#include "harness/op_harness.h"

namespace kiln::test {
namespace {

Tensor vec(DataType t, Dims d, const std::vector<double>& v) { return Tensor::from_vector(t, std::move(d), v); }

double clampd(double v, double lo, double hi) { return std::min(hi, std::max(lo, v)); }

struct IntType {
  DataType t;
  double lo, hi;
};
const IntType kSubByteInts[] = {
    {DataType::kInt4, -8, 7}, {DataType::kUInt4, 0, 15}, {DataType::kInt2, -2, 1}, {DataType::kUInt2, 0, 3}};

TEST(QuantizeNarrow, SubByteIntegersPerAxisWithZeroPoint) {
  for (const IntType& it : kSubByteInts) {
    SCOPED_TRACE(dtype_name(it.t));
    Tensor s = vec(DataType::kFloat32, {3}, {0.5, 1.0, 2.0});
    Tensor z = vec(it.t, {3}, {it.lo + 1, it.hi - 1, it.lo + (it.hi - it.lo) / 2});
    OpCase q("QuantizeLinear", 25);
    q.attr("axis", ir::Attribute::from_int(1));
    q.input(DataType::kFloat32, {2, 3, 5}, -12, 12).input(s).input(z);
    auto out = q.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& y = (*out)[0];
    ASSERT_EQ(y.dtype(), it.t);
    for (int64_t i = 0; i < 30; ++i) {
      int64_t ch = (i / 5) % 3;
      float x = static_cast<float>(q.inputs()[0]->get_as_double(i));
      double want =
          clampd(std::nearbyint(x / static_cast<float>(s.get_as_double(ch))) + z.get_as_double(ch), it.lo, it.hi);
      EXPECT_EQ(y.get_as_double(i), want) << i;
    }
    // And back: (q - zp) * scale.
    OpCase d("DequantizeLinear", 25);
    d.attr("axis", ir::Attribute::from_int(1));
    d.input(y).input(s).input(z);
    auto back = d.run();
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    ASSERT_EQ((*back)[0].dtype(), DataType::kFloat32);
    for (int64_t i = 0; i < 30; ++i) {
      int64_t ch = (i / 5) % 3;
      EXPECT_EQ((*back)[0].get_as_double(i), (y.get_as_double(i) - z.get_as_double(ch)) * s.get_as_double(ch)) << i;
    }
  }
}

TEST(QuantizeNarrow, SubByteIntegersBlockedViaOutputDtype) {
  // 7 columns in blocks of 3 -> 3 blocks (the last one short).
  Tensor s = vec(DataType::kFloat32, {2, 3}, {0.25, 0.5, 1, 2, 4, 8});
  OpCase q("QuantizeLinear", 21);
  q.attr("axis", ir::Attribute::from_int(1)).attr("block_size", ir::Attribute::from_int(3));
  q.attr("output_dtype", ir::Attribute::from_int(static_cast<int64_t>(DataType::kInt4)));
  q.input(DataType::kFloat32, {2, 7}, -20, 20).input(s);
  auto out = q.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dtype(), DataType::kInt4);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t c = 0; c < 7; ++c) {
      float sc = static_cast<float>(s.get_as_double(r * 3 + c / 3));
      float x = static_cast<float>(q.inputs()[0]->get_as_double(r * 7 + c));
      EXPECT_EQ((*out)[0].get_as_double(r * 7 + c), clampd(std::nearbyint(x / sc), -8, 7)) << r << "," << c;
    }
}

TEST(QuantizeNarrow, Float8RoundsAndSaturates) {
  for (DataType t : {DataType::kFloat8E4M3FN, DataType::kFloat8E4M3FNUZ, DataType::kFloat8E5M2,
                     DataType::kFloat8E5M2FNUZ, DataType::kFloat4E2M1}) {
    SCOPED_TRACE(dtype_name(t));
    const MiniFloatFormat& f = *minifloat_format(t);
    double max = minifloat_to_double(f.max_mag(), f);
    Tensor s = vec(DataType::kFloat32, {4}, {0.001, 0.1, 1, 300});
    OpCase q("QuantizeLinear", 25);
    q.attr("axis", ir::Attribute::from_int(0));
    q.input(DataType::kFloat32, {4, 16}, -100, 100).input(s).input(Tensor::zeros(t, {4}));
    auto out = q.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& y = (*out)[0];
    ASSERT_EQ(y.dtype(), t);
    for (int64_t i = 0; i < 64; ++i) {
      float v = static_cast<float>(q.inputs()[0]->get_as_double(i)) / static_cast<float>(s.get_as_double(i / 16));
      double got = y.get_as_double(i);
      if (std::fabs(v) >= max) {
        EXPECT_EQ(got, std::copysign(max, v)) << i;
        continue;
      }
      // The nearest representable value: no other code is strictly closer.
      for (uint32_t c = 0; c < (1u << f.bits); ++c) {
        double w = minifloat_to_double(c, f);
        if (std::isfinite(w)) {
          ASSERT_LE(std::fabs(got - v), std::fabs(w - v)) << i << " code " << c;
        }
      }
    }
    // Dequantize exactly multiplies back.
    OpCase d("DequantizeLinear", 25);
    d.attr("axis", ir::Attribute::from_int(0));
    d.input(y).input(s);
    auto back = d.run();
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    for (int64_t i = 0; i < 64; ++i)
      EXPECT_EQ((*back)[0].get_as_double(i), static_cast<float>(static_cast<float>(y.get_as_double(i)) *
                                                                static_cast<float>(s.get_as_double(i / 16))));
  }
}

TEST(QuantizeNarrow, Float8SaturateOffGivesNanOrInf) {
  Tensor x = vec(DataType::kFloat32, {3}, {1e5, -1e5, 1});
  for (auto [t, big] : {std::pair{DataType::kFloat8E4M3FN, 0x7f}, std::pair{DataType::kFloat8E5M2, 0x7c},
                        std::pair{DataType::kFloat8E4M3FNUZ, 0x80}}) {
    OpCase q("QuantizeLinear", 21);
    q.attr("saturate", ir::Attribute::from_int(0));
    q.input(x).input(vec(DataType::kFloat32, {}, {1})).input(Tensor::zeros(t, {}));
    auto out = q.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].data_as<uint8_t>()[0], big) << dtype_name(t);
    EXPECT_EQ((*out)[0].get_as_double(2), 1.0);
  }
}

TEST(QuantizeNarrow, DequantizeFloat16OutputAndMismatchedZeroPoint) {
  Tensor x = vec(DataType::kFloat8E4M3FN, {3}, {0.5, 448, -104});
  OpCase d("DequantizeLinear", 21);
  d.input(x).input(vec(DataType::kFloat16, {}, {2}));
  auto out = d.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  ASSERT_EQ((*out)[0].dtype(), DataType::kFloat16);
  EXPECT_EQ((*out)[0].get_as_double(1), 896);
  EXPECT_EQ((*out)[0].get_as_double(2), -208);
  OpCase bad("DequantizeLinear", 21);
  bad.input(DataType::kInt4, {3}, -8, 7)
      .input(vec(DataType::kFloat32, {}, {1}))
      .input(Tensor::zeros(DataType::kUInt4, {}));
  EXPECT_FALSE(bad.run().ok());
}

}  // namespace
}  // namespace kiln::test
