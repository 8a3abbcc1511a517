// Type dispatch: KILN_DISPATCH_*(dtype, T, body) runs body with T bound to the C++ type.
#pragma once

#include <cstdint>

#include "base/half.h"
#include "kiln/types.h"

namespace kiln {

template <DataType D>
struct CppType;
template <> struct CppType<DataType::kFloat32> { using type = float; };
template <> struct CppType<DataType::kFloat64> { using type = double; };
template <> struct CppType<DataType::kFloat16> { using type = Half; };
template <> struct CppType<DataType::kBFloat16> { using type = BFloat16; };
template <> struct CppType<DataType::kInt8> { using type = int8_t; };
template <> struct CppType<DataType::kUInt8> { using type = uint8_t; };
template <> struct CppType<DataType::kInt16> { using type = int16_t; };
template <> struct CppType<DataType::kUInt16> { using type = uint16_t; };
template <> struct CppType<DataType::kInt32> { using type = int32_t; };
template <> struct CppType<DataType::kUInt32> { using type = uint32_t; };
template <> struct CppType<DataType::kInt64> { using type = int64_t; };
template <> struct CppType<DataType::kUInt64> { using type = uint64_t; };
template <> struct CppType<DataType::kBool> { using type = bool; };

/// Maps a C++ element type back to its DataType.
template <typename T> constexpr DataType dtype_of();
template <> constexpr DataType dtype_of<float>() { return DataType::kFloat32; }
template <> constexpr DataType dtype_of<double>() { return DataType::kFloat64; }
template <> constexpr DataType dtype_of<Half>() { return DataType::kFloat16; }
template <> constexpr DataType dtype_of<BFloat16>() { return DataType::kBFloat16; }
template <> constexpr DataType dtype_of<int8_t>() { return DataType::kInt8; }
template <> constexpr DataType dtype_of<uint8_t>() { return DataType::kUInt8; }
template <> constexpr DataType dtype_of<int16_t>() { return DataType::kInt16; }
template <> constexpr DataType dtype_of<uint16_t>() { return DataType::kUInt16; }
template <> constexpr DataType dtype_of<int32_t>() { return DataType::kInt32; }
template <> constexpr DataType dtype_of<uint32_t>() { return DataType::kUInt32; }
template <> constexpr DataType dtype_of<int64_t>() { return DataType::kInt64; }
template <> constexpr DataType dtype_of<uint64_t>() { return DataType::kUInt64; }
template <> constexpr DataType dtype_of<bool>() { return DataType::kBool; }

}  // namespace kiln

#define KILN_DTYPE_CASE_(D, T, ...)          \
  case ::kiln::DataType::D: {                \
    using T = typename ::kiln::CppType<::kiln::DataType::D>::type; \
    __VA_ARGS__;                             \
    break;                                   \
  }

/// Floating types: float32, float64, float16, bfloat16.
#define KILN_DISPATCH_FLOAT(dtype, T, ...)               \
  switch (dtype) {                                       \
    KILN_DTYPE_CASE_(kFloat32, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kFloat64, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kFloat16, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kBFloat16, T, __VA_ARGS__)          \
    default:                                             \
      return ::kiln::Status(::kiln::ErrorCode::kUnsupported, \
                            std::string("dtype ") + ::kiln::dtype_name(dtype) + " is not supported here"); \
  }

/// Integer types (signed and unsigned, not bool).
#define KILN_DISPATCH_INT(dtype, T, ...)                 \
  switch (dtype) {                                       \
    KILN_DTYPE_CASE_(kInt8, T, __VA_ARGS__)              \
    KILN_DTYPE_CASE_(kUInt8, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kInt16, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt16, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kInt32, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt32, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kInt64, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt64, T, __VA_ARGS__)            \
    default:                                             \
      return ::kiln::Status(::kiln::ErrorCode::kUnsupported, \
                            std::string("dtype ") + ::kiln::dtype_name(dtype) + " is not supported here"); \
  }

/// Every numeric type (floats and integers, not bool).
#define KILN_DISPATCH_NUMERIC(dtype, T, ...)             \
  switch (dtype) {                                       \
    KILN_DTYPE_CASE_(kFloat32, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kFloat64, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kFloat16, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kBFloat16, T, __VA_ARGS__)          \
    KILN_DTYPE_CASE_(kInt8, T, __VA_ARGS__)              \
    KILN_DTYPE_CASE_(kUInt8, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kInt16, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt16, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kInt32, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt32, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kInt64, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt64, T, __VA_ARGS__)            \
    default:                                             \
      return ::kiln::Status(::kiln::ErrorCode::kUnsupported, \
                            std::string("dtype ") + ::kiln::dtype_name(dtype) + " is not supported here"); \
  }

/// Every type kiln computes with, bool included (for data movement ops).
#define KILN_DISPATCH_ALL(dtype, T, ...)                 \
  switch (dtype) {                                       \
    KILN_DTYPE_CASE_(kFloat32, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kFloat64, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kFloat16, T, __VA_ARGS__)           \
    KILN_DTYPE_CASE_(kBFloat16, T, __VA_ARGS__)          \
    KILN_DTYPE_CASE_(kInt8, T, __VA_ARGS__)              \
    KILN_DTYPE_CASE_(kUInt8, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kInt16, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt16, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kInt32, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt32, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kInt64, T, __VA_ARGS__)             \
    KILN_DTYPE_CASE_(kUInt64, T, __VA_ARGS__)            \
    KILN_DTYPE_CASE_(kBool, T, __VA_ARGS__)              \
    default:                                             \
      return ::kiln::Status(::kiln::ErrorCode::kUnsupported, \
                            std::string("dtype ") + ::kiln::dtype_name(dtype) + " is not supported here"); \
  }
