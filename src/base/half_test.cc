// floats_to_halves (bulk, F16C where the CPU has it) against float_to_half, the
// scalar reference, over magnitudes from subnormal to overflow, ties and specials.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/half.h"

namespace kiln {
namespace {

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(Half, BulkConversionMatchesTheScalarOne) {
  std::vector<float> v;
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) v.push_back(from_bits(bits(rng)));  // every exponent, both signs
  for (float x : {0.f, -0.f, 1.f, -1.f, 65504.f, 65519.99f, 65520.f, -65520.f, 1e-8f, 5.96e-8f, 2.98e-8f, 6.1e-5f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::denorm_min()})
    v.push_back(x);
  // Ties: half-way between adjacent halves, at normal and subnormal magnitudes.
  for (uint32_t h = 1; h < 0x7bff; h += 97) {
    const float a = half_to_float(static_cast<uint16_t>(h)), b = half_to_float(static_cast<uint16_t>(h + 1));
    v.push_back((a + b) / 2);
  }
  v.push_back(std::nanf(""));
  std::vector<uint16_t> bulk(v.size());
  floats_to_halves(v.data(), bulk.data(), static_cast<int64_t>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t want = float_to_half(v[i]);
    if (std::isnan(v[i])) {  // both quiet NaNs; the payload may differ
      EXPECT_EQ(bulk[i] & 0x7e00u, 0x7e00u) << i;
      continue;
    }
    ASSERT_EQ(bulk[i], want) << "value " << v[i] << " (index " << i << ")";
  }
}

}  // namespace
}  // namespace kiln
