#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <new>

#include "base/dispatch.h"
#include "base/float8.h"
#include "base/subbyte.h"
#include "kiln/kiln.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace kiln {

#if defined(__x86_64__) && defined(__GNUC__)
namespace {
__attribute__((target("avx,f16c"))) void floats_to_halves_f16c(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}
}  // namespace
#endif

void floats_to_halves(const float* src, uint16_t* dst, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (f16c) return floats_to_halves_f16c(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}

const char* version_string() { return "0.1.0"; }

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kInvalidModel: return "invalid model";
    case ErrorCode::kVersionMismatch: return "version mismatch";
    case ErrorCode::kDeviceMismatch: return "device mismatch";
    case ErrorCode::kOutOfRange: return "out of range";
    case ErrorCode::kOutOfMemory: return "out of memory";
    case ErrorCode::kIo: return "i/o error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(error_code_name(code_)) + ": " + message_;
}

Status Status::with_context(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

void Logger::log(Severity severity, const std::string& message) {
  static const char* kTags[] = {"internal error", "error", "warning", "info", "verbose"};
  std::cerr << "[kiln " << kTags[static_cast<int>(severity)] << "] " << message << "\n";
}

Logger& default_logger() {
  static Logger logger(Logger::Severity::kWarning);
  return logger;
}

size_t dtype_size(DataType t) {
  switch (t) {
    case DataType::kFloat32: case DataType::kInt32: case DataType::kUInt32: return 4;
    case DataType::kFloat64: case DataType::kInt64: case DataType::kUInt64: return 8;
    case DataType::kFloat16: case DataType::kBFloat16: case DataType::kInt16: case DataType::kUInt16: return 2;
    case DataType::kInt8: case DataType::kUInt8: case DataType::kBool: return 1;
    default: return dtype_is_narrow(t) ? 1 : 0;
  }
}

size_t dtype_bits(DataType t) {
  switch (t) {
    case DataType::kInt4: case DataType::kUInt4: case DataType::kFloat4E2M1: return 4;
    case DataType::kInt2: case DataType::kUInt2: return 2;
    default: return 8 * dtype_size(t);
  }
}

const char* dtype_name(DataType t) {
  switch (t) {
    case DataType::kFloat32: return "float32";
    case DataType::kUInt8: return "uint8";
    case DataType::kInt8: return "int8";
    case DataType::kUInt16: return "uint16";
    case DataType::kInt16: return "int16";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kString: return "string";
    case DataType::kBool: return "bool";
    case DataType::kFloat16: return "float16";
    case DataType::kFloat64: return "float64";
    case DataType::kUInt32: return "uint32";
    case DataType::kUInt64: return "uint64";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kFloat8E4M3FN: return "float8e4m3fn";
    case DataType::kFloat8E4M3FNUZ: return "float8e4m3fnuz";
    case DataType::kFloat8E5M2: return "float8e5m2";
    case DataType::kFloat8E5M2FNUZ: return "float8e5m2fnuz";
    case DataType::kUInt4: return "uint4";
    case DataType::kInt4: return "int4";
    case DataType::kFloat4E2M1: return "float4e2m1";
    case DataType::kFloat8E8M0: return "float8e8m0";
    case DataType::kUInt2: return "uint2";
    case DataType::kInt2: return "int2";
    case DataType::kUndefined: return "undefined";
  }
  return "unknown";
}

DataType dtype_from_name(const std::string& n) {
  static const std::pair<const char*, DataType> kNames[] = {
      {"float32", DataType::kFloat32}, {"fp32", DataType::kFloat32}, {"float", DataType::kFloat32},
      {"float16", DataType::kFloat16}, {"fp16", DataType::kFloat16}, {"half", DataType::kFloat16},
      {"bfloat16", DataType::kBFloat16}, {"bf16", DataType::kBFloat16},
      {"float64", DataType::kFloat64}, {"double", DataType::kFloat64}, {"fp64", DataType::kFloat64},
      {"int8", DataType::kInt8}, {"uint8", DataType::kUInt8}, {"int16", DataType::kInt16},
      {"uint16", DataType::kUInt16}, {"int32", DataType::kInt32}, {"uint32", DataType::kUInt32},
      {"int64", DataType::kInt64}, {"uint64", DataType::kUInt64}, {"bool", DataType::kBool},
      {"fp8", DataType::kFloat8E4M3FN}, {"float8e4m3", DataType::kFloat8E4M3FN},
      {"float8e4m3fn", DataType::kFloat8E4M3FN}, {"float8e4m3fnuz", DataType::kFloat8E4M3FNUZ},
      {"float8e5m2", DataType::kFloat8E5M2}, {"float8e5m2fnuz", DataType::kFloat8E5M2FNUZ},
      {"float8e8m0", DataType::kFloat8E8M0}, {"float4e2m1", DataType::kFloat4E2M1},
      {"int4", DataType::kInt4}, {"uint4", DataType::kUInt4}, {"int2", DataType::kInt2},
      {"uint2", DataType::kUInt2}};
  for (auto& [name, t] : kNames)
    if (n == name) return t;
  return DataType::kUndefined;
}

bool dtype_is_float(DataType t) {
  switch (t) {
    case DataType::kFloat32: case DataType::kFloat64: case DataType::kFloat16: case DataType::kBFloat16:
    case DataType::kFloat8E4M3FN: case DataType::kFloat8E4M3FNUZ: case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ: case DataType::kFloat4E2M1: case DataType::kFloat8E8M0: return true;
    default: return false;
  }
}

bool dtype_is_narrow(DataType t) {
  return static_cast<int32_t>(t) >= static_cast<int32_t>(DataType::kFloat8E4M3FN) &&
         static_cast<int32_t>(t) <= static_cast<int32_t>(DataType::kInt2);
}

bool dtype_is_supported(DataType t) { return dtype_size(t) > 0; }

std::string dims_to_string(const Dims& d) {
  if (d.empty()) return "scalar";
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) s += "x";
    s += std::to_string(d[i]);
  }
  return s;
}

int64_t dims_volume(const Dims& d) {
  int64_t v = 1;
  for (int64_t x : d) {
    if (x < 0) return -1;
    v *= x;
  }
  return v;
}

namespace {
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
}  // namespace

Tensor Tensor::empty(DataType dtype, Dims dims) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  size_t bytes = t.nbytes();
  size_t alloc = ((bytes + 63) / 64) * 64;
  if (alloc == 0) alloc = 64;
  void* p = std::aligned_alloc(64, alloc);
  if (!p) throw std::bad_alloc();
  t.owner_ = std::shared_ptr<void>(p, AlignedFree());
  t.data_ = p;
  return t;
}

Tensor Tensor::zeros(DataType dtype, Dims dims) {
  Tensor t = empty(dtype, std::move(dims));
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::view(DataType dtype, Dims dims, void* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.data_ = data;
  return t;
}

Tensor Tensor::view(DataType dtype, Dims dims, void* data, std::shared_ptr<void> owner) {
  Tensor t = view(dtype, std::move(dims), data);
  t.owner_ = std::move(owner);
  return t;
}

Result<Tensor> Tensor::from_bytes(DataType dtype, Dims dims, const void* bytes, size_t size) {
  int64_t vol = dims_volume(dims);
  if (vol < 0) return Status(ErrorCode::kInvalidArgument, "tensor dims " + dims_to_string(dims) + " are not concrete");
  if (static_cast<size_t>(vol) * dtype_size(dtype) != size)
    return Status(ErrorCode::kInvalidArgument,
                  "tensor of " + std::string(dtype_name(dtype)) + " " + dims_to_string(dims) + " needs " +
                      std::to_string(static_cast<size_t>(vol) * dtype_size(dtype)) + " bytes, got " +
                      std::to_string(size));
  Tensor t = empty(dtype, std::move(dims));
  if (size) std::memcpy(t.data_, bytes, size);
  return t;
}

int64_t Tensor::numel() const {
  int64_t v = 1;
  for (int64_t d : dims_) v *= d;
  return v;
}

Tensor Tensor::clone() const {
  Tensor t = empty(dtype_, dims_);
  if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  return t;
}

Tensor Tensor::reshaped(Dims dims) const {
  Tensor t = *this;
  t.dims_ = std::move(dims);
  return t;
}

namespace {
template <typename T>
double to_double(const void* p, int64_t i) {
  return static_cast<double>(static_cast<const T*>(p)[i]);
}
uint8_t byte_at(const void* p, int64_t i) { return static_cast<const uint8_t*>(p)[i]; }
uint8_t& byte(void* p, int64_t i) { return static_cast<uint8_t*>(p)[i]; }
}  // namespace

double Tensor::get_as_double(int64_t i) const {
  switch (dtype_) {
    case DataType::kFloat32: return to_double<float>(data_, i);
    case DataType::kFloat64: return to_double<double>(data_, i);
    case DataType::kFloat16: return half_to_float(static_cast<const uint16_t*>(data_)[i]);
    case DataType::kBFloat16: return bf16_to_float(static_cast<const uint16_t*>(data_)[i]);
    case DataType::kInt8: return to_double<int8_t>(data_, i);
    case DataType::kUInt8: return to_double<uint8_t>(data_, i);
    case DataType::kInt16: return to_double<int16_t>(data_, i);
    case DataType::kUInt16: return to_double<uint16_t>(data_, i);
    case DataType::kInt32: return to_double<int32_t>(data_, i);
    case DataType::kUInt32: return to_double<uint32_t>(data_, i);
    case DataType::kInt64: return to_double<int64_t>(data_, i);
    case DataType::kUInt64: return to_double<uint64_t>(data_, i);
    case DataType::kBool: return static_cast<const bool*>(data_)[i] ? 1.0 : 0.0;
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ:
    case DataType::kFloat4E2M1: return minifloat_to_double(byte_at(data_, i), *minifloat_format(dtype_));
    case DataType::kFloat8E8M0: return float8e8m0_to_float(byte_at(data_, i));
    case DataType::kInt4: case DataType::kInt2: return to_double<int8_t>(data_, i);
    case DataType::kUInt4: case DataType::kUInt2: return to_double<uint8_t>(data_, i);
    default: return 0.0;
  }
}

int64_t Tensor::get_as_int64(int64_t i) const {
  switch (dtype_) {
    case DataType::kInt64: return static_cast<const int64_t*>(data_)[i];
    case DataType::kInt32: return static_cast<const int32_t*>(data_)[i];
    case DataType::kUInt64: return static_cast<int64_t>(static_cast<const uint64_t*>(data_)[i]);
    default: {
      // Converting NaN or an out-of-range float to int64 is undefined: clamp.
      double d = get_as_double(i);
      if (std::isnan(d)) return 0;
      if (d >= 9.2233720368547758e18) return INT64_MAX;
      if (d <= -9.2233720368547758e18) return INT64_MIN;
      return static_cast<int64_t>(d);
    }
  }
}

void Tensor::set_from_double(int64_t i, double v) {
  switch (dtype_) {
    case DataType::kFloat32: static_cast<float*>(data_)[i] = static_cast<float>(v); break;
    case DataType::kFloat64: static_cast<double*>(data_)[i] = v; break;
    case DataType::kFloat16: static_cast<uint16_t*>(data_)[i] = float_to_half(static_cast<float>(v)); break;
    case DataType::kBFloat16: static_cast<uint16_t*>(data_)[i] = float_to_bf16(static_cast<float>(v)); break;
    case DataType::kInt8: static_cast<int8_t*>(data_)[i] = static_cast<int8_t>(v); break;
    case DataType::kUInt8: static_cast<uint8_t*>(data_)[i] = static_cast<uint8_t>(v); break;
    case DataType::kInt16: static_cast<int16_t*>(data_)[i] = static_cast<int16_t>(v); break;
    case DataType::kUInt16: static_cast<uint16_t*>(data_)[i] = static_cast<uint16_t>(v); break;
    case DataType::kInt32: static_cast<int32_t*>(data_)[i] = static_cast<int32_t>(v); break;
    case DataType::kUInt32: static_cast<uint32_t*>(data_)[i] = static_cast<uint32_t>(v); break;
    case DataType::kInt64: static_cast<int64_t*>(data_)[i] = static_cast<int64_t>(v); break;
    case DataType::kUInt64: static_cast<uint64_t*>(data_)[i] = static_cast<uint64_t>(v); break;
    case DataType::kBool: static_cast<bool*>(data_)[i] = v != 0.0; break;
    // The narrow types convert as Cast does by default (saturating, rounding up for e8m0).
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ:
    case DataType::kFloat4E2M1: byte(data_, i) = double_to_minifloat(v, *minifloat_format(dtype_), true); break;
    case DataType::kFloat8E8M0:
      byte(data_, i) = float_to_float8e8m0(static_cast<float>(v), true, E8M0Rounding::kUp);
      break;
    case DataType::kInt4: byte(data_, i) = static_cast<uint8_t>(double_to_bits_int(v, 4, true)); break;
    case DataType::kUInt4: byte(data_, i) = static_cast<uint8_t>(double_to_bits_int(v, 4, false)); break;
    case DataType::kInt2: byte(data_, i) = static_cast<uint8_t>(double_to_bits_int(v, 2, true)); break;
    case DataType::kUInt2: byte(data_, i) = static_cast<uint8_t>(double_to_bits_int(v, 2, false)); break;
    default: break;
  }
}

std::vector<int64_t> Tensor::to_int64_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[static_cast<size_t>(i)] = get_as_int64(i);
  return v;
}

std::vector<float> Tensor::to_float_vector() const {
  std::vector<float> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[static_cast<size_t>(i)] = static_cast<float>(get_as_double(i));
  return v;
}

}  // namespace kiln
