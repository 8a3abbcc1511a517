// .npy file reading and writing (NumPy format versions 1.0, 2.0 and 3.0; C order,
// little-endian numeric dtypes and bool).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::cli {

/// Parses an in-memory .npy image; `what` names the source in error messages.
Result<Tensor> npy_parse(const void* data, size_t size, const std::string& what);
/// Reads a .npy file.
Result<Tensor> npy_read(const std::string& path);
/// Serializes a tensor as .npy. bfloat16 and float8 are widened to <f4 (NumPy has no such dtype).
Result<std::vector<uint8_t>> npy_serialize(const Tensor& t);
/// Writes a tensor to a .npy file.
Status npy_write(const std::string& path, const Tensor& t);
/// The NumPy descr ("<f4", "|b1", ...) kiln writes for a dtype; "" if none.
std::string npy_descr(DataType t);

}  // namespace kiln::cli
