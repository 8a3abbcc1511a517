// The 4- and 2-bit types (int4, uint4, float4e2m1, int2, uint2). kiln keeps one
// element per byte in memory: integers as their value (int4/int2 sign-extended to
// int8), float4e2m1 as its 4-bit code. ONNX files pack them, first element in the
// lowest bits; these helpers convert between the two layouts.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace kiln {

/// Bytes that `n` elements of `bits` bits (4 or 2) take when packed.
inline size_t packed_size(int64_t n, int bits) {
  const int64_t per_byte = 8 / bits;  // no multiplication: n may be near the int64 limit
  return static_cast<size_t>(n / per_byte + (n % per_byte != 0 ? 1 : 0));
}

/// Wraps an integer into a `bits`-wide two's-complement field, as a C cast to a
/// narrower integer does; signed results are sign-extended.
inline int64_t wrap_to_bits(int64_t v, int bits, bool is_signed) {
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  uint64_t u = static_cast<uint64_t>(v) & mask;
  if (is_signed && (u >> (bits - 1)) != 0) return static_cast<int64_t>(u) - static_cast<int64_t>(mask + 1);
  return static_cast<int64_t>(u);
}

/// Converts a float to a 4-/2-bit integer as the ONNX reference's Cast does:
/// truncate toward zero (NaN -> 0), then wrap.
inline int64_t double_to_bits_int(double v, int bits, bool is_signed) {
  if (std::isnan(v)) return 0;
  v = std::trunc(v);
  int64_t w = v >= 9.2233720368547758e18    ? INT64_MAX
              : v <= -9.2233720368547758e18 ? INT64_MIN
                                            : static_cast<int64_t>(v);
  return wrap_to_bits(w, bits, is_signed);
}

/// Unpacks `n` elements of `bits` bits from `in` (packed_size(n, bits) bytes) into one byte each.
inline void unpack_sub_byte(const uint8_t* in, int64_t n, int bits, bool sign_extend, uint8_t* out) {
  const int per_byte = 8 / bits;
  for (int64_t i = 0; i < n; ++i) {
    int64_t v = (in[i / per_byte] >> ((i % per_byte) * bits)) & ((1 << bits) - 1);
    if (sign_extend) v = wrap_to_bits(v, bits, true);
    out[i] = static_cast<uint8_t>(v);
  }
}

/// Packs `n` one-per-byte elements into `out` (packed_size(n, bits) bytes; unused high bits are 0).
inline void pack_sub_byte(const uint8_t* in, int64_t n, int bits, uint8_t* out) {
  const int per_byte = 8 / bits;
  for (size_t b = 0; b < packed_size(n, bits); ++b) out[b] = 0;
  for (int64_t i = 0; i < n; ++i)
    out[i / per_byte] |= static_cast<uint8_t>((in[i] & ((1 << bits) - 1)) << ((i % per_byte) * bits));
}

}  // namespace kiln
