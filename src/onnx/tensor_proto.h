// ONNX TensorProto -> kiln::Tensor: typed fields, raw_data and external data files.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/status.h"
#include "kiln/types.h"
#include "onnx/onnx.pb.h"

namespace kiln::onnx_import {

/// kiln dtype for an ONNX TensorProto.DataType code; `what` names the tensor in errors.
Result<DataType> dtype_from_onnx(int64_t code, const std::string& what);

/// Checked element count of `dims` (each >= 0, product and byte size without overflow).
Result<int64_t> checked_numel(const Dims& dims, DataType dtype, const std::string& what);

/// Unpacks ONNX's packed 4-/2-bit data (dtype_bits(dtype) < 8) into kiln's one
/// element per byte; `packed` holds packed_size(numel, bits) bytes.
Tensor unpack_tensor(DataType dtype, const Dims& dims, const uint8_t* packed);

/// Converts a TensorProto to a host tensor. `what` names it in errors ("initializer 'w'").
/// External data files are resolved under `model_dir` (empty: external data is an error).
Result<Tensor> tensor_from_proto(const onnx::TensorProto& proto, const std::string& model_dir, const std::string& what);

/// Reads the external data of `proto` (data_location == EXTERNAL) into a tensor of
/// `dtype`/`dims`, refusing locations that leave `model_dir`.
Result<Tensor> read_external_data(const onnx::TensorProto& proto, DataType dtype, const Dims& dims,
                                  const std::string& model_dir, const std::string& what);

}  // namespace kiln::onnx_import
