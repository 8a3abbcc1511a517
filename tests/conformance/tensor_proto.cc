#include "tensor_proto.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "onnx/onnx.pb.h"

namespace kiln::conformance {

namespace {

Status unsupported(const std::string& msg) { return Status(ErrorCode::kUnsupported, msg); }
Status invalid(const std::string& msg) { return Status(ErrorCode::kInvalidModel, msg); }

template <typename Field>
Status check_count(const Field& f, int64_t n, const char* field) {
  if (static_cast<int64_t>(f.size()) != n)
    return invalid(std::string("TensorProto.") + field + " has " + std::to_string(f.size()) + " values, the dims need " +
                   std::to_string(n));
  return Status();
}

}  // namespace

Result<Tensor> tensor_from_proto(const onnx::TensorProto& p) {
  int32_t code = p.data_type();
  DataType dt = static_cast<DataType>(code);
  switch (dt) {
    case DataType::kFloat32: case DataType::kUInt8: case DataType::kInt8: case DataType::kUInt16:
    case DataType::kInt16: case DataType::kInt32: case DataType::kInt64: case DataType::kBool:
    case DataType::kFloat16: case DataType::kFloat64: case DataType::kUInt32: case DataType::kUInt64:
    case DataType::kBFloat16: case DataType::kFloat8E4M3:
      break;
    default: {
      std::string name = onnx::TensorProto_DataType_IsValid(code)
                             ? onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(code))
                             : std::to_string(code);
      return unsupported("tensor element type " + name);
    }
  }
  if (p.data_location() == onnx::TensorProto::EXTERNAL) return unsupported("tensor with external data");
  Dims dims;
  int64_t n = 1;
  for (int64_t d : p.dims()) {
    if (d < 0) return invalid("negative dim in TensorProto");
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / 16 / d) return invalid("TensorProto dims overflow");
    n *= d;
    dims.push_back(d);
  }
  size_t esize = dtype_size(dt);
  if (p.has_raw_data()) {
    const std::string& raw = p.raw_data();
    if (raw.size() != static_cast<size_t>(n) * esize)
      return invalid("TensorProto.raw_data has " + std::to_string(raw.size()) + " bytes, the dims need " +
                     std::to_string(static_cast<size_t>(n) * esize));
    Tensor t = Tensor::empty(dt, dims);
    if (!raw.empty()) std::memcpy(t.data(), raw.data(), raw.size());
    if (dt == DataType::kBool) {
      auto* b = static_cast<uint8_t*>(t.data());
      for (int64_t i = 0; i < n; ++i) b[i] = b[i] ? 1 : 0;
    }
    return t;
  }
  Tensor t = Tensor::empty(dt, dims);
  switch (dt) {
    case DataType::kFloat32:
      KILN_RETURN_IF_ERROR(check_count(p.float_data(), n, "float_data"));
      for (int64_t i = 0; i < n; ++i) t.data_as<float>()[i] = p.float_data(static_cast<int>(i));
      break;
    case DataType::kFloat64:
      KILN_RETURN_IF_ERROR(check_count(p.double_data(), n, "double_data"));
      for (int64_t i = 0; i < n; ++i) t.data_as<double>()[i] = p.double_data(static_cast<int>(i));
      break;
    case DataType::kInt64:
      KILN_RETURN_IF_ERROR(check_count(p.int64_data(), n, "int64_data"));
      for (int64_t i = 0; i < n; ++i) t.data_as<int64_t>()[i] = p.int64_data(static_cast<int>(i));
      break;
    case DataType::kUInt32: case DataType::kUInt64:
      KILN_RETURN_IF_ERROR(check_count(p.uint64_data(), n, "uint64_data"));
      for (int64_t i = 0; i < n; ++i) {
        uint64_t v = p.uint64_data(static_cast<int>(i));
        if (dt == DataType::kUInt32) t.data_as<uint32_t>()[i] = static_cast<uint32_t>(v);
        else t.data_as<uint64_t>()[i] = v;
      }
      break;
    default: {
      // int32_data carries every type of 32 bits or less; 16-bit floats as their bit pattern.
      KILN_RETURN_IF_ERROR(check_count(p.int32_data(), n, "int32_data"));
      for (int64_t i = 0; i < n; ++i) {
        int32_t v = p.int32_data(static_cast<int>(i));
        switch (dt) {
          case DataType::kInt32: t.data_as<int32_t>()[i] = v; break;
          case DataType::kInt16: t.data_as<int16_t>()[i] = static_cast<int16_t>(v); break;
          case DataType::kUInt16: case DataType::kFloat16: case DataType::kBFloat16:
            t.data_as<uint16_t>()[i] = static_cast<uint16_t>(v);
            break;
          case DataType::kInt8: t.data_as<int8_t>()[i] = static_cast<int8_t>(v); break;
          case DataType::kUInt8: case DataType::kFloat8E4M3: t.data_as<uint8_t>()[i] = static_cast<uint8_t>(v); break;
          case DataType::kBool: t.data_as<uint8_t>()[i] = v ? 1 : 0; break;
          default: return unsupported(std::string("tensor element type ") + dtype_name(dt));
        }
      }
    }
  }
  return t;
}

Result<Tensor> read_tensor_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(ErrorCode::kIo, "cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  onnx::TensorProto p;
  if (!p.ParseFromString(ss.str())) return Status(ErrorCode::kInvalidModel, "'" + path + "' is not a TensorProto");
  auto t = tensor_from_proto(p);
  if (!t.ok()) return t.status().with_context(path);
  return t;
}

}  // namespace kiln::conformance
