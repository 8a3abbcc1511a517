// Helpers shared by the data-movement op families (reshape, concat, gather,
// generate): size limits, validated index reads, element-size dispatch. They live
// in their own namespace so they cannot collide with other families' helpers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops::movement {

/// Largest tensor (in elements) a shape read from data may request: a hostile
/// model must get an error, not an unbounded allocation.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 34;

/// An error naming the node (kInvalidModel unless told otherwise).
inline Status node_error(const ir::Node& n, const std::string& msg, ErrorCode code = ErrorCode::kInvalidModel) {
  return Status(code, "node " + n.describe() + ": " + msg);
}

/// "[1,2,3]" for messages.
inline std::string ints_to_string(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(v[i]);
  }
  return s + "]";
}

/// Checks that dims are non-negative and that the product of the non-zero dims
/// stays within kMaxTensorElements (so strides cannot overflow either).
inline Status check_dims(const ir::Node& n, const Dims& d) {
  int64_t v = 1;
  for (int64_t x : d) {
    if (x < 0) return node_error(n, "negative dim in output shape " + ints_to_string(d));
    if (x > 1 && v > kMaxTensorElements / x)
      return node_error(n, "output shape " + ints_to_string(d) + " exceeds the limit of 2^34 elements");
    if (x > 1) v *= x;
  }
  return Status();
}

/// check_dims over the known dims of a symbolic shape.
inline Status check_shape(const ir::Node& n, const Shape& s) {
  Dims d;
  for (const Dim& x : s) d.push_back(x.known() ? x.value : 1);
  return check_dims(n, d);
}

/// True for the dtypes ONNX allows for index and shape tensors.
inline bool is_index_dtype(DataType t) { return t == DataType::kInt32 || t == DataType::kInt64; }

// Inference checks accept kUndefined: at build time a dtype can be unknown (an
// If output, say); at run time every dtype is known, so the check still bites.

/// True when t is `want` or not known yet.
inline bool dtype_may_be(DataType t, DataType want) { return t == DataType::kUndefined || t == want; }
/// True when t is an index dtype or not known yet.
inline bool may_be_index_dtype(DataType t) { return t == DataType::kUndefined || is_index_dtype(t); }
/// True when kiln can compute with t, or t is not known yet.
inline bool dtype_may_be_supported(DataType t) { return t == DataType::kUndefined || dtype_is_supported(t); }
/// True when a and b are equal or either is not known yet.
inline bool dtypes_compatible(DataType a, DataType b) {
  return a == DataType::kUndefined || b == DataType::kUndefined || a == b;
}

/// Element i of an index tensor as int64, or nullopt when the value is not a
/// finite integer that fits (NaN, inf or huge float indices of e.g. OneHot).
inline std::optional<int64_t> read_index(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DataType::kInt64:
      return t.data_as<int64_t>()[i];
    case DataType::kInt32:
      return t.data_as<int32_t>()[i];
    case DataType::kUInt64: {
      uint64_t v = t.data_as<uint64_t>()[i];
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(v);
    }
    default: {
      double v = t.get_as_double(i);
      if (!std::isfinite(v) || std::fabs(v) > 9.0e18) return std::nullopt;
      return static_cast<int64_t>(v);
    }
  }
}

/// All elements of an index tensor; an error names the node when one is not a valid integer.
inline Result<std::vector<int64_t>> read_indices(const ir::Node& n, const Tensor& t, const std::string& what) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    auto x = read_index(t, i);
    if (!x) return node_error(n, what + " holds a value that is not a valid integer");
    v[static_cast<size_t>(i)] = *x;
  }
  return v;
}

/// Calls f with an unsigned integer tag type of the given element size, so
/// data-movement kernels copy whole elements without a per-dtype switch.
template <typename F>
Status with_element_size(size_t esize, F&& f) {
  switch (esize) {
    case 1:
      f(uint8_t{});
      return Status();
    case 2:
      f(uint16_t{});
      return Status();
    case 4:
      f(uint32_t{});
      return Status();
    case 8:
      f(uint64_t{});
      return Status();
    default:
      return Status(ErrorCode::kUnsupported, "element size " + std::to_string(esize) + " is not supported");
  }
}

/// Rejects dtypes kiln cannot hold (string, fp8); an unknown dtype passes.
inline Status check_dtype_supported(const ir::Node& n, DataType t, const std::string& what) {
  if (t != DataType::kUndefined && !dtype_is_supported(t))
    return node_error(n, what + " has dtype " + dtype_name(t) + ", which kiln does not support",
                      ErrorCode::kUnsupported);
  return Status();
}

/// Output i with the given dtype and dims: the preallocated one when it matches,
/// else a fresh allocation (outputs whose size infer could not know).
inline Tensor& ensure_output(KernelContext& ctx, size_t i, DataType dtype, const Dims& dims) {
  Tensor& t = ctx.output(i);
  if (t.is_null() || t.dtype() != dtype || t.dims() != dims) return ctx.allocate_output(i, dtype, dims);
  return t;
}

/// Copies input 0 into output 0 byte for byte (reshape-like ops).
inline Status copy_input0_bytes(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.nbytes() != x.nbytes()) return ctx.error("output size does not match the input", ErrorCode::kInternal);
  if (x.nbytes() && y.data() != x.data()) std::memcpy(y.data(), x.data(), x.nbytes());
  return Status();
}

/// Product of dims[begin, end).
inline int64_t dims_product(const Dims& d, size_t begin, size_t end) {
  int64_t v = 1;
  for (size_t i = begin; i < end && i < d.size(); ++i) v *= d[i];
  return v;
}

// Dim arithmetic on declared (possibly hostile) dims saturates at INT64_MAX
// instead of overflowing; check_shape then rejects the result.

/// dim_mul that saturates.
inline Dim sat_mul(const Dim& a, const Dim& b) {
  if (!a.known() || !b.known()) return dim_mul(a, b);
  int64_t r;
  if (__builtin_mul_overflow(a.value, b.value, &r)) r = std::numeric_limits<int64_t>::max();
  return Dim(r);
}

/// dim_add that saturates.
inline Dim sat_add(const Dim& a, const Dim& b) {
  if (!a.known() || !b.known()) return dim_add(a, b);
  int64_t r;
  if (__builtin_add_overflow(a.value, b.value, &r)) r = std::numeric_limits<int64_t>::max();
  return Dim(r);
}

/// Symbolic product of shape[begin, end).
inline Dim shape_product(const Shape& s, size_t begin, size_t end) {
  Dim v(1);
  for (size_t i = begin; i < end && i < s.size(); ++i) v = sat_mul(v, s[i]);
  return v;
}

/// Volume of a shape (-1 if a dim is unknown), saturating.
inline int64_t sat_volume(const Shape& s) {
  Dim v = shape_product(s, 0, s.size());
  for (const Dim& d : s)
    if (!d.known()) return -1;
  return v.value;
}

/// Rank-preserving shape of all-unknown dims, or nullopt when the rank is unknown too.
inline std::optional<Shape> unknown_dims_like(const Shape* s) {
  if (!s) return std::nullopt;
  return Shape(s->size(), Dim::unknown());
}

/// Length of a 1-D input when its shape says so (for ranks inferred from a shape
/// input); nullopt when unknown or too long to be a plausible rank.
inline std::optional<int64_t> input_length(const InferContext& ctx, size_t i) {
  constexpr int64_t kMaxPlausibleRank = 4096;
  const Shape* s = ctx.input_shape(i);
  if (!s) return std::nullopt;
  if (s->empty()) return 1;
  if (s->size() == 1 && (*s)[0].known() && (*s)[0].value <= kMaxPlausibleRank) return (*s)[0].value;
  return std::nullopt;
}

/// Errors unless the first `count` inputs are present (kernels rely on it).
inline Status require_inputs(const InferContext& ctx, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (!ctx.has_input(i)) return ctx.error("required input " + std::to_string(i) + " is missing");
  return Status();
}

/// Normalizes axes against rank, rejecting out-of-range and repeated ones.
inline Result<std::vector<int64_t>> normalize_axes(const ir::Node& n, const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<int64_t> out;
  out.reserve(axes.size());
  for (int64_t a : axes) {
    auto na = normalize_axis(a, rank);
    if (!na) return node_error(n, "axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
    if (std::find(out.begin(), out.end(), *na) != out.end())
      return node_error(n, "axis " + std::to_string(a) + " is repeated");
    out.push_back(*na);
  }
  return out;
}

/// dst = src transposed by perm (dst dim j is src dim perm[j]); row-major, whole elements.
template <typename T>
void permute_elements(const T* src, const Dims& in_dims, const std::vector<int64_t>& perm, T* dst) {
  size_t r = perm.size();
  std::vector<int64_t> in_strides = strides_of(in_dims);
  Dims out_dims(r);
  std::vector<int64_t> st(r);
  for (size_t j = 0; j < r; ++j) {
    out_dims[j] = in_dims[static_cast<size_t>(perm[j])];
    st[j] = in_strides[static_cast<size_t>(perm[j])];
  }
  int64_t total = dims_product(out_dims, 0, r);
  if (total == 0) return;
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  int64_t inner = out_dims[r - 1], inner_stride = st[r - 1];
  std::vector<int64_t> idx(r, 0);
  int64_t off = 0;
  for (int64_t o = 0; o < total; o += inner) {
    for (int64_t k = 0; k < inner; ++k) dst[o + k] = src[off + k * inner_stride];
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) {
      auto ud = static_cast<size_t>(d);
      if (++idx[ud] < out_dims[ud]) {
        off += st[ud];
        break;
      }
      off -= st[ud] * (out_dims[ud] - 1);
      idx[ud] = 0;
    }
  }
}

/// y = x transposed by perm, for any dtype (y already has the permuted dims).
inline Status permute_tensor(const Tensor& x, const std::vector<int64_t>& perm, Tensor& y) {
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    permute_elements(x.data_as<T>(), x.dims(), perm, y.data_as<T>());
  });
}

/// dst[o0, o1, ...] = src[maps[0][o0], maps[1][o1], ...], or `fill` where any
/// map entry is -1 (padding). maps[d] has one entry per output index of dim d.
template <typename T>
void remap_elements(const T* src, const Dims& in, T* dst, const Dims& out,
                    const std::vector<std::vector<int64_t>>& maps, T fill) {
  size_t r = out.size();
  int64_t total = dims_product(out, 0, r);
  if (total == 0) return;
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  std::vector<int64_t> in_strides = strides_of(in);
  const std::vector<int64_t>& inner_map = maps[r - 1];
  int64_t inner = out[r - 1];
  std::vector<int64_t> idx(r - 1, 0);
  for (int64_t o = 0; o < total; o += inner) {
    int64_t base = 0;
    bool inside = true;
    for (size_t d = 0; d + 1 < r; ++d) {
      int64_t s = maps[d][static_cast<size_t>(idx[d])];
      if (s < 0) inside = false;
      base += s * in_strides[d];
    }
    for (int64_t k = 0; k < inner; ++k) {
      int64_t s = inner_map[static_cast<size_t>(k)];
      dst[o + k] = inside && s >= 0 ? src[base + s] : fill;
    }
    for (int64_t d = static_cast<int64_t>(r) - 2; d >= 0; --d) {
      auto ud = static_cast<size_t>(d);
      if (++idx[ud] < out[ud]) break;
      idx[ud] = 0;
    }
  }
}

/// remap_elements for any dtype; `fill` points at one element of y's dtype.
inline Status remap_tensor(const Tensor& x, Tensor& y, const std::vector<std::vector<int64_t>>& maps,
                           const void* fill) {
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    T f;
    std::memcpy(&f, fill, sizeof(T));
    remap_elements(x.data_as<T>(), x.dims(), y.data_as<T>(), y.dims(), maps, f);
  });
}

/// First index and element count of start:end:step over a dim of size `dim`
/// (ONNX Slice clamping; shared by the reference and the CUDA kernel).
inline std::pair<int64_t, int64_t> slice_range(int64_t start, int64_t end, int64_t step, int64_t dim) {
  auto resolve = [dim](int64_t v, int64_t lo, int64_t hi) {
    if (v < 0) v += dim;
    return std::clamp(v, lo, hi);
  };
  if (dim == 0) return {0, 0};
  if (step > 0) {
    int64_t s = resolve(start, 0, dim), e = resolve(end, 0, dim);
    return {s, e > s ? (e - s - 1) / step + 1 : 0};
  }
  int64_t s = resolve(start, 0, dim - 1), e = resolve(end, -1, dim - 1);
  int64_t neg_step = step == std::numeric_limits<int64_t>::min() ? std::numeric_limits<int64_t>::max() : -step;
  return {s, s > e ? (s - e - 1) / neg_step + 1 : 0};
}

}  // namespace kiln::ops::movement
