// TensorProto decoding: dtype mapping, checked sizes, typed fields and raw_data.
#include "onnx/tensor_proto.h"

#include "base/subbyte.h"

#include <cstring>
#include <limits>

namespace kiln::onnx_import {

namespace {

const char* onnx_dtype_name(int64_t code) {
  switch (code) {
    case 8: return "string";
    case 14: return "complex64";
    case 15: return "complex128";
    case 17: return "float8e4m3fn";
    case 18: return "float8e4m3fnuz";
    case 19: return "float8e5m2";
    case 20: return "float8e5m2fnuz";
    case 21: return "uint4";
    case 22: return "int4";
    case 23: return "float4e2m1";
    case 24: return "float8e8m0";
    case 25: return "uint2";
    case 26: return "int2";
    case 27: return "float6e2m3";
    case 28: return "float6e3m2";
    default: return nullptr;
  }
}

Status invalid(const std::string& what, const std::string& msg) {
  return Status(ErrorCode::kInvalidModel, what + ": " + msg);
}

std::string describe_type(DataType dt, const Dims& dims) {
  return std::string(dtype_name(dt)) + " " + dims_to_string(dims);
}

// Copies `n` elements of a repeated field into the tensor, converting each to the dtype.
template <typename Field, typename Store>
Status copy_typed(const Field& field, int64_t numel, const char* field_name, DataType dt, const Dims& dims,
                  const std::string& what, Tensor& out, Store store) {
  if (static_cast<int64_t>(field.size()) != numel)
    return invalid(what, std::string(field_name) + " holds " + std::to_string(field.size()) +
                             " values but the tensor (" + describe_type(dt, dims) + ") has " + std::to_string(numel) +
                             " elements");
  out = Tensor::empty(dt, dims);
  for (int64_t i = 0; i < numel; ++i) store(out, i, field.Get(static_cast<int>(i)));
  return Status();
}

template <typename T>
void put(Tensor& t, int64_t i, T v) {
  t.data_as<T>()[i] = v;
}

}  // namespace

Tensor unpack_tensor(DataType dt, const Dims& dims, const uint8_t* packed) {
  Tensor t = Tensor::empty(dt, dims);
  bool sign_extend = dt == DataType::kInt4 || dt == DataType::kInt2;
  unpack_sub_byte(packed, t.numel(), static_cast<int>(dtype_bits(dt)), sign_extend, t.data_as<uint8_t>());
  return t;
}

Result<DataType> dtype_from_onnx(int64_t code, const std::string& what) {
  switch (code) {
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 7:
    case 9:
    case 10:
    case 11:
    case 12:
    case 13:
    case 16:
    case 17:
    case 18:
    case 19:
    case 20:
    case 21:
    case 22:
    case 23:
    case 24:
    case 25:
    case 26: return static_cast<DataType>(code);
    case 0: return invalid(what, "has no element type (data_type is UNDEFINED)");
    default: break;
  }
  if (const char* n = onnx_dtype_name(code))
    return Status(ErrorCode::kUnsupported, what + ": element type " + n + " is not supported by kiln");
  return invalid(what, "unknown element type code " + std::to_string(code));
}

Result<int64_t> checked_numel(const Dims& dims, DataType dtype, const std::string& what) {
  int64_t n = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0)
      return invalid(what, "dim " + std::to_string(i) + " is negative (" + std::to_string(dims[i]) + ")");
    if (__builtin_mul_overflow(n, dims[i], &n))
      return invalid(what, "dims " + dims_to_string(dims) + " overflow a 64-bit element count");
  }
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n, static_cast<int64_t>(dtype_size(dtype)), &bytes) ||
      static_cast<uint64_t>(bytes) > std::numeric_limits<size_t>::max() / 2)
    return invalid(what, "dims " + dims_to_string(dims) + " give an impossible byte size");
  return n;
}

Result<Tensor> tensor_from_proto(const onnx::TensorProto& p, const std::string& model_dir, const std::string& what) {
  KILN_ASSIGN_OR_RETURN(DataType dt, dtype_from_onnx(p.data_type(), what));
  Dims dims(p.dims().begin(), p.dims().end());
  KILN_ASSIGN_OR_RETURN(int64_t numel, checked_numel(dims, dt, what));
  if (p.has_segment()) return Status(ErrorCode::kUnsupported, what + ": segmented tensors are not supported");
  if (p.data_location() == onnx::TensorProto_DataLocation_EXTERNAL)
    return read_external_data(p, dt, dims, model_dir, what);
  const int bits = static_cast<int>(dtype_bits(dt));
  if (bits < 8) {
    // 4-/2-bit types arrive packed, in raw_data or one byte per int32_data entry.
    const size_t want = packed_size(numel, bits);
    std::string bytes;
    if (p.has_raw_data()) {
      bytes = p.raw_data();
    } else {
      bytes.reserve(static_cast<size_t>(p.int32_data_size()));
      for (int32_t v : p.int32_data()) bytes.push_back(static_cast<char>(v));
    }
    if (bytes.size() != want)
      return invalid(what, std::string(p.has_raw_data() ? "raw_data" : "int32_data") + " has " +
                               std::to_string(bytes.size()) + " bytes but the tensor (" + describe_type(dt, dims) +
                               ") packs into " + std::to_string(want));
    return unpack_tensor(dt, dims, reinterpret_cast<const uint8_t*>(bytes.data()));
  }
  const size_t nbytes = static_cast<size_t>(numel) * dtype_size(dt);
  if (p.has_raw_data()) {
    const std::string& raw = p.raw_data();
    if (raw.size() != nbytes)
      return invalid(what, "raw_data has " + std::to_string(raw.size()) + " bytes but the tensor (" +
                               describe_type(dt, dims) + ") needs " + std::to_string(nbytes));
    // raw_data is little-endian, as is every host kiln runs on.
    Tensor t = Tensor::empty(dt, dims);
    if (nbytes) std::memcpy(t.data(), raw.data(), nbytes);
    return t;
  }
  Tensor t;
  Status s;
  switch (dt) {
    case DataType::kFloat32:
      s = copy_typed(p.float_data(), numel, "float_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, float v) { put(o, i, v); });
      break;
    case DataType::kFloat64:
      s = copy_typed(p.double_data(), numel, "double_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, double v) { put(o, i, v); });
      break;
    case DataType::kInt64:
      s = copy_typed(p.int64_data(), numel, "int64_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int64_t v) { put(o, i, v); });
      break;
    case DataType::kUInt32:
      s = copy_typed(p.uint64_data(), numel, "uint64_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, uint64_t v) { put(o, i, static_cast<uint32_t>(v)); });
      break;
    case DataType::kUInt64:
      s = copy_typed(p.uint64_data(), numel, "uint64_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, uint64_t v) { put(o, i, v); });
      break;
    case DataType::kInt32:
      s = copy_typed(p.int32_data(), numel, "int32_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int32_t v) { put(o, i, v); });
      break;
    // The narrow types travel in int32_data: integers by value, float16/bfloat16/float8 as bit patterns.
    case DataType::kInt16:
      s = copy_typed(p.int32_data(), numel, "int32_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int32_t v) { put(o, i, static_cast<int16_t>(v)); });
      break;
    case DataType::kUInt16:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      s = copy_typed(p.int32_data(), numel, "int32_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int32_t v) { put(o, i, static_cast<uint16_t>(v)); });
      break;
    case DataType::kInt8:
      s = copy_typed(p.int32_data(), numel, "int32_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int32_t v) { put(o, i, static_cast<int8_t>(v)); });
      break;
    case DataType::kUInt8:
    case DataType::kFloat8E4M3FN:
    case DataType::kFloat8E4M3FNUZ:
    case DataType::kFloat8E5M2:
    case DataType::kFloat8E5M2FNUZ:
    case DataType::kFloat8E8M0:
      s = copy_typed(p.int32_data(), numel, "int32_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int32_t v) { put(o, i, static_cast<uint8_t>(v)); });
      break;
    case DataType::kBool:
      s = copy_typed(p.int32_data(), numel, "int32_data", dt, dims, what, t,
                     [](Tensor& o, int64_t i, int32_t v) { put(o, i, static_cast<uint8_t>(v != 0)); });
      break;
    default: return Status(ErrorCode::kUnsupported, what + ": element type " + dtype_name(dt) + " is not supported");
  }
  KILN_RETURN_IF_ERROR(s);
  return t;
}

}  // namespace kiln::onnx_import
