// BitCast (opset 26): reinterprets each element's bytes as another dtype of the same size.
#include <cstring>
#include <string>

#include "ops/common.h"

namespace kiln::ops {
namespace {

Status infer_bitcast(InferContext& ctx) {
  const auto* to_attr = ctx.attrs().find("to");
  if (!to_attr) return ctx.error("missing required attribute 'to'");
  auto to = static_cast<DataType>(to_attr->i);
  DataType from = ctx.input_dtype(0);
  if (to == DataType::kString || from == DataType::kString) return ctx.unsupported("BitCast of strings is not supported");
  if (!dtype_is_supported(to) || dtype_size(to) == 0)
    return ctx.unsupported("BitCast to dtype " + std::to_string(static_cast<int>(to)) + " is not supported");
  if (!dtype_is_supported(from) || dtype_size(from) == 0)
    return ctx.unsupported(std::string("BitCast from dtype ") + dtype_name(from) + " is not supported");
  if (dtype_size(to) != dtype_size(from))
    return ctx.error(std::string("BitCast needs types of equal size, got ") + dtype_name(from) + " (" +
                     std::to_string(dtype_size(from) * 8) + " bits) and " + dtype_name(to) + " (" +
                     std::to_string(dtype_size(to) * 8) + " bits)");
  ctx.set_output(0, to, ctx.input(0).shape);
  return Status();
}

Status ref_bitcast(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.nbytes() != y.nbytes()) return ctx.error("output size does not match the input");
  if (!x.nbytes()) return Status();
  if (y.dtype() == DataType::kBool && x.dtype() != DataType::kBool) {
    // A C++ bool byte other than 0/1 is undefined behaviour downstream; keep truthiness.
    const auto* src = static_cast<const uint8_t*>(x.data());
    auto* dst = y.data_as<bool>();
    for (int64_t i = 0; i < x.numel(); ++i) dst[i] = src[i] != 0;
    return Status();
  }
  std::memcpy(y.data(), x.data(), x.nbytes());
  return Status();
}

}  // namespace

void register_bits_ops(OpRegistry& r) {
  r.add({.name = "BitCast", .infer = infer_bitcast, .ref = ref_bitcast, .min_opset = 26});
}

}  // namespace kiln::ops
