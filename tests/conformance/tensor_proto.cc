#include "tensor_proto.h"

#include <fstream>
#include <sstream>

#include "onnx/onnx.pb.h"
#include "onnx/tensor_proto.h"

namespace kiln::conformance {

// The importer's converter (typed fields, raw_data, every supported dtype) reads
// the test data too, so test inputs decode exactly as model initializers do.
Result<Tensor> tensor_from_proto(const onnx::TensorProto& p) {
  return onnx_import::tensor_from_proto(p, /*model_dir=*/"", "test tensor '" + p.name() + "'");
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
