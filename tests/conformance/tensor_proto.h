// onnx.TensorProto -> kiln::Tensor (raw_data and the typed repeated fields).
#pragma once

#include <string>

#include "kiln/status.h"
#include "kiln/types.h"

namespace onnx {
class TensorProto;
}

namespace kiln::conformance {

/// Converts a TensorProto; kUnsupported for string/complex/sub-byte types and external data.
Result<Tensor> tensor_from_proto(const onnx::TensorProto& p);
/// Reads and converts a serialized TensorProto file.
Result<Tensor> read_tensor_file(const std::string& path);

}  // namespace kiln::conformance
