// Symbolic shapes: each dim is a known size, a named symbol ("batch"), or unknown.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/types.h"

namespace kiln {

/// One dim: value >= 0 when known; otherwise `name` (may be empty = anonymous unknown).
struct Dim {
  int64_t value = -1;
  std::string name;

  Dim() = default;
  Dim(int64_t v) : value(v) {}  // NOLINT(google-explicit-constructor)
  static Dim symbol(std::string n) {
    Dim d;
    d.name = std::move(n);
    return d;
  }
  static Dim unknown() { return Dim(); }
  bool known() const { return value >= 0; }
  bool operator==(const Dim& o) const {
    return known() ? value == o.value : (!o.known() && !name.empty() && name == o.name);
  }
  bool operator!=(const Dim& o) const { return !(*this == o); }
  std::string to_string() const { return known() ? std::to_string(value) : (name.empty() ? "?" : name); }
};

using Shape = std::vector<Dim>;

/// Shape from concrete dims (-1 becomes unknown).
inline Shape shape_from_dims(const Dims& d) {
  Shape s;
  s.reserve(d.size());
  for (int64_t x : d) s.push_back(x >= 0 ? Dim(x) : Dim::unknown());
  return s;
}

/// Concrete dims (-1 for dims that are not known).
inline Dims shape_to_dims(const Shape& s) {
  Dims d;
  d.reserve(s.size());
  for (const Dim& x : s) d.push_back(x.known() ? x.value : -1);
  return d;
}

/// True when every dim is known.
inline bool shape_is_concrete(const Shape& s) {
  for (const Dim& d : s)
    if (!d.known()) return false;
  return true;
}

/// "[batch,3,224,224]".
inline std::string shape_to_string(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ",";
    r += s[i].to_string();
  }
  return r + "]";
}

/// Product of dims when all known, else -1.
inline int64_t shape_volume(const Shape& s) {
  int64_t v = 1;
  for (const Dim& d : s) {
    if (!d.known()) return -1;
    v *= d.value;
  }
  return v;
}

/// Numpy-style broadcast of two dims; nullopt when they are known and incompatible.
inline std::optional<Dim> broadcast_dim(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) {
    if (a.value == b.value) return a;
    if (a.value == 1) return b;
    if (b.value == 1) return a;
    return std::nullopt;
  }
  if (a.known() && a.value == 1) return b;
  if (b.known() && b.value == 1) return a;
  if (a == b) return a;
  if (a.known()) return a;  // the unknown side must be 1 or equal at run time
  if (b.known()) return b;
  return Dim::unknown();
}

/// Multiplies dims symbolically (unknown unless both known).
inline Dim dim_mul(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) return Dim(a.value * b.value);
  if (a.known() && a.value == 1) return b;
  if (b.known() && b.value == 1) return a;
  return Dim::unknown();
}

/// Adds dims symbolically.
inline Dim dim_add(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) return Dim(a.value + b.value);
  if (a.known() && a.value == 0) return b;
  if (b.known() && b.value == 0) return a;
  return Dim::unknown();
}

}  // namespace kiln
