// The narrow float formats of ONNX and their conversions to and from float: the four
// float8 variants, float4e2m1 and the exponent-only float8e8m0. Header-only, like half.h.
//
// Results are bit-identical to ml_dtypes, which the ONNX reference implementation
// and the generated node tests use: round to nearest even; with `saturate`, values
// beyond the largest finite value (infinities included, even for the fnuz types)
// become it; without, they become inf (e5m2) or NaN (the others). float4e2m1 has no
// inf or NaN and always saturates; NaN becomes -0 (+0 for a negative NaN), which is
// what ml_dtypes produces although the ONNX float4 page says 6.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kiln/types.h"

namespace kiln {

/// Layout of a small float: one sign bit (the top bit of `bits`), then exponent, then mantissa.
struct MiniFloatFormat {
  enum Special : uint8_t {
    kIeee,  ///< exponent all ones: inf (mantissa 0) or NaN
    kFn,    ///< no inf; exponent and mantissa all ones is NaN
    kFnuz,  ///< no inf and no -0; the code 0x80 is NaN
    kNone,  ///< neither inf nor NaN (float4e2m1)
  };
  int bits;      ///< 8 or 4
  int man_bits;  ///< explicit mantissa bits
  int bias;
  Special special;

  constexpr int exp_bits() const { return bits - 1 - man_bits; }
  constexpr uint32_t sign_bit() const { return 1u << (bits - 1); }
  constexpr uint32_t mag_mask() const { return sign_bit() - 1; }
  /// Magnitude bits of the largest finite value.
  constexpr uint32_t max_mag() const {
    switch (special) {
      case kIeee:
        return (((1u << exp_bits()) - 2) << man_bits) | ((1u << man_bits) - 1);
      case kFn:
        return mag_mask() - 1;
      default:
        return mag_mask();
    }
  }
};

inline constexpr MiniFloatFormat kFormatE4M3FN{8, 3, 7, MiniFloatFormat::kFn};
inline constexpr MiniFloatFormat kFormatE4M3FNUZ{8, 3, 8, MiniFloatFormat::kFnuz};
inline constexpr MiniFloatFormat kFormatE5M2{8, 2, 15, MiniFloatFormat::kIeee};
inline constexpr MiniFloatFormat kFormatE5M2FNUZ{8, 2, 16, MiniFloatFormat::kFnuz};
inline constexpr MiniFloatFormat kFormatE2M1{4, 1, 1, MiniFloatFormat::kNone};

/// The format of a float8 type other than e8m0, or of float4e2m1; nullptr otherwise.
inline const MiniFloatFormat* minifloat_format(DataType t) {
  switch (t) {
    case DataType::kFloat8E4M3FN:
      return &kFormatE4M3FN;
    case DataType::kFloat8E4M3FNUZ:
      return &kFormatE4M3FNUZ;
    case DataType::kFloat8E5M2:
      return &kFormatE5M2;
    case DataType::kFloat8E5M2FNUZ:
      return &kFormatE5M2FNUZ;
    case DataType::kFloat4E2M1:
      return &kFormatE2M1;
    default:
      return nullptr;
  }
}

/// The value of `code` (only its low `f.bits` bits are read).
inline double minifloat_to_double(uint32_t code, const MiniFloatFormat& f) {
  code &= (1u << f.bits) - 1;
  const bool neg = (code & f.sign_bit()) != 0;
  const uint32_t mag = code & f.mag_mask();
  const uint32_t exp_field = mag >> f.man_bits;
  const uint32_t man = mag & ((1u << f.man_bits) - 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (f.special) {
    case MiniFloatFormat::kIeee:
      if (exp_field == (1u << f.exp_bits()) - 1)
        return man ? std::copysign(nan, neg ? -1.0 : 1.0) : (neg ? -INFINITY : INFINITY);
      break;
    case MiniFloatFormat::kFn:
      if (mag == f.mag_mask()) return std::copysign(nan, neg ? -1.0 : 1.0);
      break;
    case MiniFloatFormat::kFnuz:
      if (code == f.sign_bit()) return nan;
      break;
    case MiniFloatFormat::kNone:
      break;
  }
  double v = exp_field == 0 ? std::ldexp(static_cast<double>(man), 1 - f.bias - f.man_bits)
                            : std::ldexp(static_cast<double>((1u << f.man_bits) | man),
                                         static_cast<int>(exp_field) - f.bias - f.man_bits);
  return neg ? -v : v;
}

/// Rounds `x` to the nearest code of format `f` (ties to even). See the file comment
/// for NaN, infinities and overflow.
inline uint8_t double_to_minifloat(double x, const MiniFloatFormat& f, bool saturate) {
  const uint32_t sign = std::signbit(x) ? f.sign_bit() : 0;
  const uint32_t exp_ones = (1u << f.exp_bits()) - 1;
  uint32_t nan_code = 0, inf_code = 0;
  switch (f.special) {
    case MiniFloatFormat::kIeee:
      nan_code = sign | (exp_ones << f.man_bits) | (1u << (f.man_bits - 1));
      inf_code = sign | (exp_ones << f.man_bits);
      break;
    case MiniFloatFormat::kFn:
      nan_code = inf_code = sign | f.mag_mask();
      break;
    case MiniFloatFormat::kFnuz:
      nan_code = inf_code = f.sign_bit();
      break;
    case MiniFloatFormat::kNone:
      nan_code = sign ^ f.sign_bit();
      inf_code = sign | f.max_mag();
      break;
  }
  if (std::isnan(x)) return static_cast<uint8_t>(nan_code);
  const uint32_t overflow = saturate ? sign | f.max_mag() : inf_code;
  const double a = std::fabs(x);
  if (std::isinf(a)) return static_cast<uint8_t>(overflow);
  // Scale so that one unit in the last place of the target is 1, round there, scale back.
  const int emin = 1 - f.bias;
  int e = 0;
  std::frexp(a, &e);
  e = std::max(e - 1, emin);
  const double q = std::nearbyint(std::ldexp(a, f.man_bits - e));
  const double r = std::ldexp(q, e - f.man_bits);
  if (r > minifloat_to_double(f.max_mag(), f)) return static_cast<uint8_t>(overflow);
  if (r == 0) return static_cast<uint8_t>(f.special == MiniFloatFormat::kFnuz ? 0 : sign);
  std::frexp(r, &e);
  e -= 1;
  uint32_t mag;
  if (e < emin)
    mag = static_cast<uint32_t>(q);  // subnormal: q counts units of 2^(emin - man_bits)
  else
    mag = (static_cast<uint32_t>(e + f.bias) << f.man_bits) |
          (static_cast<uint32_t>(std::ldexp(r, f.man_bits - e)) - (1u << f.man_bits));
  return static_cast<uint8_t>(sign | mag);
}

inline float float8e4m3fn_to_float(uint8_t c) { return static_cast<float>(minifloat_to_double(c, kFormatE4M3FN)); }
inline float float8e4m3fnuz_to_float(uint8_t c) { return static_cast<float>(minifloat_to_double(c, kFormatE4M3FNUZ)); }
inline float float8e5m2_to_float(uint8_t c) { return static_cast<float>(minifloat_to_double(c, kFormatE5M2)); }
inline float float8e5m2fnuz_to_float(uint8_t c) { return static_cast<float>(minifloat_to_double(c, kFormatE5M2FNUZ)); }
inline float float4e2m1_to_float(uint8_t c) { return static_cast<float>(minifloat_to_double(c, kFormatE2M1)); }

/// How Cast (opset 24's `round_mode`) rounds a value that is not a power of two to float8e8m0.
enum class E8M0Rounding { kUp, kDown, kNearest };

/// float8e8m0 holds only an exponent: code e means 2^(e - 127), 0xFF is NaN, and
/// there is no zero or sign. Works on float32's bits as the ONNX reference does
/// (the sign is dropped, zero and float32 subnormals have exponent field 0).
inline uint8_t float_to_float8e8m0(float x, bool saturate, E8M0Rounding mode) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint32_t exp = (bits >> 23) & 0xffu;
  if (exp == 0xffu) return 0xff;  // inf and NaN
  bool up = false;
  switch (mode) {
    case E8M0Rounding::kUp:
      up = (bits & 0x7fffffu) != 0;
      break;
    case E8M0Rounding::kDown:
      break;
    case E8M0Rounding::kNearest: {
      // The reference's rule: round up on the guard bit unless the value is exactly
      // half-way with an exponent field of 0.
      const bool guard = bits & 0x400000u, round = bits & 0x200000u, sticky = bits & 0x1fffffu;
      up = guard && (round || sticky || exp > 0);
      break;
    }
  }
  if (up && saturate && exp == 0xfeu) up = false;
  return static_cast<uint8_t>(exp + (up ? 1 : 0));
}

inline float float8e8m0_to_float(uint8_t c) {
  return c == 0xff ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, static_cast<int>(c) - 127);
}

}  // namespace kiln
