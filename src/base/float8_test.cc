// The narrow float and sub-byte integer conversions against the ONNX reference.
// The FNV-1a hashes below were computed with ml_dtypes 0.6 / onnx 1.23 over the same
// inputs (every float16 bit pattern), e.g. for a float8 encode with saturation:
//   h = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
//   onnx.numpy_helper.saturate_cast(h, ml_dtypes.float8_e4m3fn).view(np.uint8)
// and without: h.astype(ml_dtypes.float8_e4m3fn); decodes with NaN written as 0x7fc00000.
#include "base/float8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <vector>

#include "base/half.h"
#include "base/subbyte.h"

namespace kiln {
namespace {

struct Fnv {
  uint64_t v = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) v = (v ^ b[i]) * 0x100000001b3ull;
  }
};

std::vector<float> all_half_values() {
  std::vector<float> v(65536);
  for (uint32_t h = 0; h < 65536; ++h) v[h] = half_to_float(static_cast<uint16_t>(h));
  return v;
}

uint64_t encode_hash(const MiniFloatFormat& f, bool saturate) {
  Fnv h;
  for (float x : all_half_values()) {
    uint8_t c = double_to_minifloat(x, f, saturate);
    h.add(&c, 1);
  }
  return h.v;
}

uint64_t decode_hash(int codes, float (*decode)(uint8_t)) {
  Fnv h;
  for (int c = 0; c < codes; ++c) {
    float f = decode(static_cast<uint8_t>(c));
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if (std::isnan(f)) bits = 0x7fc00000u;
    h.add(&bits, 4);
  }
  return h.v;
}

TEST(Float8, EncodeMatchesReferenceOnEveryHalfValue) {
  EXPECT_EQ(encode_hash(kFormatE4M3FN, true), 0x2d724a8149ff1225ull);
  EXPECT_EQ(encode_hash(kFormatE4M3FN, false), 0xbd571fcbcd351aa5ull);
  EXPECT_EQ(encode_hash(kFormatE4M3FNUZ, true), 0xd67161fa988de225ull);
  EXPECT_EQ(encode_hash(kFormatE4M3FNUZ, false), 0x5baaf26b4d46d9a5ull);
  EXPECT_EQ(encode_hash(kFormatE5M2, true), 0x1e3ecb6c5c7e6f25ull);
  EXPECT_EQ(encode_hash(kFormatE5M2, false), 0xbd846ad273634325ull);
  EXPECT_EQ(encode_hash(kFormatE5M2FNUZ, true), 0xf78bd6e13c6cf725ull);
  EXPECT_EQ(encode_hash(kFormatE5M2FNUZ, false), 0xf336d4e1e12edda5ull);
  EXPECT_EQ(encode_hash(kFormatE2M1, true), 0x93e60c1ef55ccd25ull);
}

TEST(Float8, DecodeMatchesReferenceOnEveryCode) {
  EXPECT_EQ(decode_hash(256, float8e4m3fn_to_float), 0xdad1d9c50f749ca5ull);
  EXPECT_EQ(decode_hash(256, float8e4m3fnuz_to_float), 0xf51851cb11c63018ull);
  EXPECT_EQ(decode_hash(256, float8e5m2_to_float), 0x6c1e56b6fb09c905ull);
  EXPECT_EQ(decode_hash(256, float8e5m2fnuz_to_float), 0x94ae6fc493d49818ull);
  EXPECT_EQ(decode_hash(16, float4e2m1_to_float), 0x2403bb76b85dfea5ull);
  EXPECT_EQ(decode_hash(256, float8e8m0_to_float), 0x6d2c8b41c3f0e5a5ull);
}

TEST(Float8, EveryCodeRoundTrips) {
  for (const MiniFloatFormat* f : {&kFormatE4M3FN, &kFormatE4M3FNUZ, &kFormatE5M2, &kFormatE5M2FNUZ, &kFormatE2M1}) {
    for (uint32_t c = 0; c < (1u << f->bits); ++c) {
      double v = minifloat_to_double(c, *f);
      for (bool sat : {true, false}) {
        uint8_t back = double_to_minifloat(v, *f, sat);
        if (std::isnan(v))
          EXPECT_TRUE(std::isnan(minifloat_to_double(back, *f))) << "code " << c;
        else if (std::isinf(v) && sat)
          EXPECT_EQ(back, (c & f->sign_bit()) | f->max_mag()) << "code " << c;
        else
          EXPECT_EQ(back, c) << "code " << c << " value " << v;
      }
    }
  }
  for (int c = 0; c < 255; ++c)
    EXPECT_EQ(float_to_float8e8m0(float8e8m0_to_float(static_cast<uint8_t>(c)), true, E8M0Rounding::kNearest), c);
}

TEST(Float8, SpecialValuesFromTheSpec) {
  // Largest finite values and the smallest subnormals.
  EXPECT_EQ(float8e4m3fn_to_float(0x7e), 448.0f);
  EXPECT_EQ(float8e4m3fn_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(float8e4m3fnuz_to_float(0x7f), 240.0f);
  EXPECT_EQ(float8e4m3fnuz_to_float(0x01), std::ldexp(1.0f, -10));
  EXPECT_EQ(float8e5m2_to_float(0x7b), 57344.0f);
  EXPECT_EQ(float8e5m2_to_float(0x01), std::ldexp(1.0f, -16));
  EXPECT_EQ(float8e5m2fnuz_to_float(0x7f), 57344.0f);
  EXPECT_EQ(float8e5m2fnuz_to_float(0x01), std::ldexp(1.0f, -17));
  EXPECT_TRUE(std::isnan(float8e4m3fn_to_float(0x7f)));
  EXPECT_TRUE(std::isnan(float8e4m3fnuz_to_float(0x80)));
  EXPECT_TRUE(std::isinf(float8e5m2_to_float(0xfc)) && float8e5m2_to_float(0xfc) < 0);
  EXPECT_EQ(float8e8m0_to_float(127), 1.0f);
  EXPECT_EQ(float8e8m0_to_float(0), std::ldexp(1.0f, -127));
  const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int c = 0; c < 8; ++c) {
    EXPECT_EQ(float4e2m1_to_float(static_cast<uint8_t>(c)), e2m1[c]);
    EXPECT_EQ(float4e2m1_to_float(static_cast<uint8_t>(c | 8)), -e2m1[c]);
  }

  // Zeros: fnuz formats have no -0.
  EXPECT_EQ(double_to_minifloat(-0.0, kFormatE4M3FN, true), 0x80);
  EXPECT_EQ(double_to_minifloat(-0.0, kFormatE4M3FNUZ, true), 0x00);
  EXPECT_EQ(double_to_minifloat(-1e-7, kFormatE5M2FNUZ, true), 0x00);
  // Infinities and overflow, with and without saturation.
  EXPECT_EQ(double_to_minifloat(INFINITY, kFormatE4M3FN, true), 0x7e);
  EXPECT_EQ(double_to_minifloat(INFINITY, kFormatE4M3FN, false), 0x7f);
  EXPECT_EQ(double_to_minifloat(-1e6, kFormatE5M2, false), 0xfc);
  EXPECT_EQ(double_to_minifloat(-1e6, kFormatE5M2, true), 0xfb);
  EXPECT_EQ(double_to_minifloat(1e6, kFormatE4M3FNUZ, false), 0x80);
  EXPECT_EQ(double_to_minifloat(INFINITY, kFormatE5M2FNUZ, true), 0x7f);
  EXPECT_EQ(double_to_minifloat(9.0, kFormatE2M1, true), 0x7);
  EXPECT_EQ(double_to_minifloat(-INFINITY, kFormatE2M1, true), 0xf);
  // Ties go to the even code: 464 lies between 448 (even) and the NaN pattern.
  EXPECT_EQ(double_to_minifloat(464.0, kFormatE4M3FN, false), 0x7e);
  EXPECT_EQ(double_to_minifloat(465.0, kFormatE4M3FN, false), 0x7f);
  EXPECT_EQ(double_to_minifloat(2.5, kFormatE2M1, true), 0x4);        // 2.5 -> 2
  EXPECT_EQ(double_to_minifloat(5.0, kFormatE2M1, true), 0x6);        // 5 -> 4
  EXPECT_EQ(double_to_minifloat(0.25, kFormatE2M1, true), 0x0);       // 0.25 -> 0
  EXPECT_EQ(double_to_minifloat(1.0625, kFormatE4M3FN, true), 0x38);  // 1 + 2^-4 -> 1
  EXPECT_EQ(double_to_minifloat(1.1875, kFormatE4M3FN, true), 0x3a);  // 1 + 3*2^-4 -> 1.25
  // A float64 just above a tie rounds up (no double rounding through float32).
  EXPECT_EQ(double_to_minifloat(1.0625 + 1e-12, kFormatE4M3FN, true), 0x39);
}

TEST(Float8, E8M0RoundingModes) {
  struct Case {
    float x;
    uint8_t up, down, nearest;
  };
  // From onnx.numpy_helper.to_float8e8m0 (saturating).
  const Case cases[] = {{1.5f * std::ldexp(1.0f, 127), 254, 254, 254},
                        {std::ldexp(1.0f, -127), 1, 0, 0},
                        {1.75f * std::ldexp(1.0f, -126), 2, 1, 2},
                        {1e-45f, 1, 0, 0},
                        {1.5f * std::ldexp(1.0f, -127), 1, 0, 1},
                        {1.5f, 128, 127, 128},
                        {1.25f, 128, 127, 127},
                        {1.75f, 128, 127, 128},
                        {3.0f, 129, 128, 129},
                        {6.0f, 130, 129, 130},
                        {0.75f, 127, 126, 127},
                        {0.0f, 0, 0, 0},
                        {NAN, 255, 255, 255}};
  for (const Case& c : cases) {
    EXPECT_EQ(float_to_float8e8m0(c.x, true, E8M0Rounding::kUp), c.up) << c.x;
    EXPECT_EQ(float_to_float8e8m0(c.x, true, E8M0Rounding::kDown), c.down) << c.x;
    EXPECT_EQ(float_to_float8e8m0(c.x, true, E8M0Rounding::kNearest), c.nearest) << c.x;
  }
  // Without saturation the top exponent rounds up into NaN.
  EXPECT_EQ(float_to_float8e8m0(1.5f * std::ldexp(1.0f, 127), false, E8M0Rounding::kUp), 255);
  EXPECT_EQ(float_to_float8e8m0(INFINITY, true, E8M0Rounding::kUp), 255);
}

TEST(Float8, E8M0MatchesReferenceOnEveryHalfValue) {
  // Every half value, then float32 values near the ends of the exponent range:
  //   onnx.numpy_helper.to_float8e8m0(np.concatenate([h, extra]), saturate, round_mode)
  std::vector<float> xs = all_half_values();
  const float extra[] = {1.5f * std::ldexp(1.0f, 127),
                         3.4028235e38f,
                         std::ldexp(1.0f, 127),
                         std::ldexp(1.0f, -127),
                         1.75f * std::ldexp(1.0f, -126),
                         1e-45f,
                         1.5f * std::ldexp(1.0f, -127),
                         1.5f,
                         1.25f,
                         1.75f,
                         3.0f,
                         6.0f,
                         0.75f};
  xs.insert(xs.end(), std::begin(extra), std::end(extra));
  struct Mode {
    E8M0Rounding mode;
    bool saturate;
    uint64_t hash;
  };
  const Mode modes[] = {
      {E8M0Rounding::kUp, true, 0xe7acca585b2b5810ull},      {E8M0Rounding::kUp, false, 0x54bd167d231b03caull},
      {E8M0Rounding::kDown, true, 0x2a740d929540a180ull},    {E8M0Rounding::kDown, false, 0x2a740d929540a180ull},
      {E8M0Rounding::kNearest, true, 0x5475bff41286dbcdull}, {E8M0Rounding::kNearest, false, 0xfbc1e8b586c51a63ull}};
  for (const Mode& m : modes) {
    Fnv h;
    for (float x : xs) {
      uint8_t c = float_to_float8e8m0(x, m.saturate, m.mode);
      h.add(&c, 1);
    }
    EXPECT_EQ(h.v, m.hash) << static_cast<int>(m.mode) << " saturate " << m.saturate;
  }
}

TEST(SubByte, WrapAndTruncate) {
  EXPECT_EQ(wrap_to_bits(-9, 4, true), 7);
  EXPECT_EQ(wrap_to_bits(8, 4, true), -8);
  EXPECT_EQ(wrap_to_bits(-1, 4, false), 15);
  EXPECT_EQ(wrap_to_bits(2, 2, true), -2);
  EXPECT_EQ(wrap_to_bits(-3, 2, false), 1);
  EXPECT_EQ(double_to_bits_int(2.5, 4, true), 2);
  EXPECT_EQ(double_to_bits_int(-2.5, 4, true), -2);
  EXPECT_EQ(double_to_bits_int(7.9, 4, true), 7);
  EXPECT_EQ(double_to_bits_int(1e6, 4, true), 0);  // 1000000 = 0xF4240
  EXPECT_EQ(double_to_bits_int(NAN, 4, false), 0);
}

TEST(SubByte, PackMatchesOnnxLayout) {
  // test_cast_FLOAT_to_INT4: -9..15 cast to int4, packed low nibble first.
  std::vector<uint8_t> vals;
  for (int v = -9; v <= 15; ++v) vals.push_back(static_cast<uint8_t>(wrap_to_bits(v, 4, true)));
  std::vector<uint8_t> packed(packed_size(25, 4));
  ASSERT_EQ(packed.size(), 13u);
  pack_sub_byte(vals.data(), 25, 4, packed.data());
  const uint8_t want[13] = {135, 169, 203, 237, 15, 33, 67, 101, 135, 169, 203, 237, 15};
  for (int i = 0; i < 13; ++i) EXPECT_EQ(packed[i], want[i]) << i;
  std::vector<uint8_t> back(25);
  unpack_sub_byte(packed.data(), 25, 4, true, back.data());
  EXPECT_EQ(back, vals);

  // test_cast_FLOAT_to_UINT2: -3..3 as uint2 -> {1,2,3,0,1,2,3} -> bytes 57, 57.
  const uint8_t u2[7] = {1, 2, 3, 0, 1, 2, 3};
  uint8_t p2[2];
  ASSERT_EQ(packed_size(7, 2), 2u);
  pack_sub_byte(u2, 7, 2, p2);
  EXPECT_EQ(p2[0], 57);
  EXPECT_EQ(p2[1], 57);
  uint8_t s2[7];
  unpack_sub_byte(p2, 7, 2, true, s2);
  EXPECT_EQ(static_cast<int8_t>(s2[1]), -2);
  EXPECT_EQ(static_cast<int8_t>(s2[3]), 0);
}

}  // namespace
}  // namespace kiln
