// Symbolic shapes: each dim is a known size, a named symbol ("batch"), or unknown.
#pragma once

#include <algorithm>
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

/// A symbolic dim as a monomial: coef x the product of named factors (sorted). Its name is the
/// canonical "4*batch" / "batch*seq" spelling, so equal products compare equal as Dims do.
/// A name whose first factor is all digits carries that coefficient ("4*batch").
struct Monomial {
  int64_t coef = 1;
  std::vector<std::string> syms;  ///< sorted

  /// False for an unknown dim without a name.
  static bool of(const Dim& d, Monomial& m) {
    m = Monomial();
    if (d.known()) {
      m.coef = d.value;
      return true;
    }
    if (d.name.empty()) return false;
    size_t b = 0;
    while (b <= d.name.size()) {
      size_t e = d.name.find('*', b);
      if (e == std::string::npos) e = d.name.size();
      const std::string f = d.name.substr(b, e - b);
      const bool digits = !f.empty() && f.size() < 18 && f.find_first_not_of("0123456789") == std::string::npos;
      if (digits && b == 0 && e < d.name.size())
        m.coef = std::stoll(f);
      else
        m.syms.push_back(f);
      b = e + 1;
    }
    std::sort(m.syms.begin(), m.syms.end());
    return true;
  }
  Dim to_dim() const {
    if (syms.empty()) return Dim(coef);
    if (coef == 0) return Dim(0);
    std::string n = coef == 1 ? "" : std::to_string(coef) + "*";
    for (size_t i = 0; i < syms.size(); ++i) n += (i ? "*" : "") + syms[i];
    return Dim::symbol(n);
  }
};

/// Multiplies dims symbolically: 4 x batch is the dim "4*batch"; unknown stays unknown.
inline Dim dim_mul(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) {
    int64_t v = 0;
    return __builtin_mul_overflow(a.value, b.value, &v) ? Dim::unknown() : Dim(v);
  }
  if (a.known() && a.value == 1) return b;
  if (b.known() && b.value == 1) return a;
  Monomial x, y;
  if (!Monomial::of(a, x) || !Monomial::of(b, y)) return Dim::unknown();
  if (x.coef > (int64_t{1} << 40) || y.coef > (int64_t{1} << 20)) return Dim::unknown();
  Monomial r;
  r.coef = x.coef * y.coef;
  r.syms = x.syms;
  r.syms.insert(r.syms.end(), y.syms.begin(), y.syms.end());
  std::sort(r.syms.begin(), r.syms.end());
  return r.to_dim();
}

/// a / b where it divides exactly ("4*batch" / 4 = batch, "batch*seq" / seq = batch), else unknown.
inline Dim dim_div(const Dim& a, const Dim& b) {
  Monomial x, y;
  if (!Monomial::of(a, x) || !Monomial::of(b, y) || y.coef == 0 || x.coef % y.coef != 0) return Dim::unknown();
  for (const std::string& s : y.syms) {
    auto it = std::find(x.syms.begin(), x.syms.end(), s);
    if (it == x.syms.end()) return Dim::unknown();
    x.syms.erase(it);
  }
  x.coef /= y.coef;
  return x.to_dim();
}

/// A Reshape's -1 dim: the input's volume over the target's other dims (`at` is the -1's
/// place in `out`), symbolically ([batch,3,2,16,2,16] -> [-1,768] gives 4*batch); unknown
/// where it is not an exact quotient.
inline Dim infer_reshape_dim(const Shape& in, const Shape& out, size_t at) {
  Dim vol(1), rest(1);
  for (const Dim& d : in) vol = dim_mul(vol, d);
  for (size_t i = 0; i < out.size(); ++i)
    if (i != at) rest = dim_mul(rest, out[i]);
  if (rest.known() && rest.value == 0) return Dim::unknown();
  return dim_div(vol, rest);
}

/// Adds dims symbolically.
inline Dim dim_add(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) return Dim(a.value + b.value);
  if (a.known() && a.value == 0) return b;
  if (b.known() && b.value == 0) return a;
  return Dim::unknown();
}

}  // namespace kiln
