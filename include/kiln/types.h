// Data types, dims and the host tensor that carries weights and I/O data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

/// Element types. Values equal ONNX TensorProto.DataType codes so files map 1:1.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,  ///< recognised so errors can name it; not computable
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
  // The narrow types below are stored one element per byte in kiln memory (see
  // dtype_size); Cast, QuantizeLinear/DequantizeLinear and the data-movement ops
  // handle them, arithmetic kernels do not.
  kFloat8E4M3FN = 17,    ///< float8 1-4-3, bias 7, no inf, NaN = S.1111.111
  kFloat8E4M3FNUZ = 18,  ///< float8 1-4-3, bias 8, no inf or -0, NaN = 0x80
  kFloat8E5M2 = 19,      ///< float8 1-5-2, bias 15, IEEE-like (inf and NaN)
  kFloat8E5M2FNUZ = 20,  ///< float8 1-5-2, bias 16, no inf or -0, NaN = 0x80
  kUInt4 = 21,           ///< one value 0..15 per byte (packed two per byte in ONNX files)
  kInt4 = 22,            ///< one value -8..7 per byte, sign-extended (packed in ONNX files)
  kFloat4E2M1 = 23,      ///< the 4-bit code in the low nibble of a byte (packed in ONNX files)
  kFloat8E8M0 = 24,      ///< exponent-only scale 2^(e-127), 0xFF = NaN
  kUInt2 = 25,           ///< one value 0..3 per byte (packed four per byte in ONNX files)
  kInt2 = 26,            ///< one value -2..1 per byte, sign-extended (packed in ONNX files)
};

/// Bytes per element in kiln memory (0 for kUndefined/kString). The sub-byte types
/// (int4, uint4, float4e2m1, int2, uint2) take one byte each: kiln unpacks them
/// when it reads ONNX data and packs them only where a file format demands it.
size_t dtype_size(DataType t);
/// Bits per element in ONNX's packed storage: 4 or 2 for the sub-byte types,
/// 8 * dtype_size otherwise.
size_t dtype_bits(DataType t);
/// Lower-case name, e.g. "float32", "int64".
const char* dtype_name(DataType t);
/// Parses a name such as "float32", "fp16", "int8"; kUndefined if unknown.
DataType dtype_from_name(const std::string& name);
/// True for the floating-point types (float8, float4 and e8m0 included).
bool dtype_is_float(DataType t);
/// True for the float8/float4/e8m0 and 4-/2-bit integer types, which kiln stores,
/// moves and converts but has no arithmetic kernels for.
bool dtype_is_narrow(DataType t);
/// True when kiln can hold this type in a tensor (every type but undefined and string).
bool dtype_is_supported(DataType t);

/// A list of dimension sizes; -1 marks a dynamic (unknown) dim.
using Dims = std::vector<int64_t>;
/// "1x3x224x224" (dynamic dims print as "-1").
std::string dims_to_string(const Dims& d);
/// Product of dims (1 for a scalar); -1 if any dim is dynamic.
int64_t dims_volume(const Dims& d);

/// A dense, row-major host tensor. Copies share the buffer (like a handle);
/// use clone() for a deep copy.
class Tensor {
 public:
  Tensor() = default;
  /// Allocates an uninitialised tensor (64-byte aligned).
  static Tensor empty(DataType dtype, Dims dims);
  /// Allocates a zero-filled tensor.
  static Tensor zeros(DataType dtype, Dims dims);
  /// Wraps caller-owned memory; the caller keeps it alive.
  static Tensor view(DataType dtype, Dims dims, void* data);
  /// Wraps memory kept alive by `owner`.
  static Tensor view(DataType dtype, Dims dims, void* data, std::shared_ptr<void> owner);
  /// Copies `bytes` into a new tensor; sizes must match.
  static Result<Tensor> from_bytes(DataType dtype, Dims dims, const void* bytes, size_t size);
  /// A rank-1 or scalar tensor from values.
  template <typename T>
  static Tensor from_vector(DataType dtype, Dims dims, const std::vector<T>& values);

  DataType dtype() const { return dtype_; }
  const Dims& dims() const { return dims_; }
  int64_t rank() const { return static_cast<int64_t>(dims_.size()); }
  int64_t dim(int64_t i) const { return dims_[static_cast<size_t>(i)]; }
  /// Number of elements.
  int64_t numel() const;
  /// Number of bytes of data.
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  /// True when no buffer is attached.
  bool is_null() const { return data_ == nullptr && dtype_ == DataType::kUndefined; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* data_as() { return static_cast<T*>(data_); }
  template <typename T>
  const T* data_as() const { return static_cast<const T*>(data_); }
  /// Deep copy into a new buffer.
  Tensor clone() const;
  /// Same buffer, new dims of equal volume.
  Tensor reshaped(Dims dims) const;
  /// Element i converted to double (any numeric dtype).
  double get_as_double(int64_t i) const;
  /// Element i converted to int64 (any numeric dtype).
  int64_t get_as_int64(int64_t i) const;
  /// Writes a double into element i, converting to the dtype.
  void set_from_double(int64_t i, double v);
  /// All elements as int64 (for shape-like tensors).
  std::vector<int64_t> to_int64_vector() const;
  /// All elements as float.
  std::vector<float> to_float_vector() const;

 private:
  DataType dtype_ = DataType::kUndefined;
  Dims dims_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

template <typename T>
Tensor Tensor::from_vector(DataType dtype, Dims dims, const std::vector<T>& values) {
  Tensor t = Tensor::empty(dtype, std::move(dims));
  for (size_t i = 0; i < values.size() && static_cast<int64_t>(i) < t.numel(); ++i)
    t.set_from_double(static_cast<int64_t>(i), static_cast<double>(values[i]));
  return t;
}

}  // namespace kiln
