// Cast (to the dtype of attribute `to`) and CastLike (to the dtype of input 1).
// Float -> integer truncates toward zero (saturating out of range, NaN -> 0);
// anything -> bool is "!= 0".
#include <cstring>

#include "ops/unary/eltwise.h"

namespace kiln::ops {
namespace {

// ONNX TensorProto codes kiln cannot compute with, for clear messages.
std::string onnx_type_name(int64_t code) {
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
    default: return "type code " + std::to_string(code);
  }
}

bool castable(DataType t) { return type_set_of(t) != 0; }

Status check_castable(const InferContext& ctx, int64_t code, const char* what) {
  if (castable(static_cast<DataType>(code))) return Status();
  return ctx.unsupported(std::string(what) + " dtype " + onnx_type_name(code) + " is not supported by Cast");
}

Status infer_cast_to(InferContext& ctx, DataType to) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  DataType from = ctx.input_dtype(0);
  if (from != DataType::kUndefined) KILN_RETURN_IF_ERROR(check_castable(ctx, static_cast<int64_t>(from), "source"));
  KILN_RETURN_IF_ERROR(check_castable(ctx, static_cast<int64_t>(to), "target"));
  ctx.set_output(0, to, ctx.input(0).shape);
  return Status();
}

Status infer_cast(InferContext& ctx) {
  const ir::Attribute* to = ctx.attrs().find("to");
  if (!to || to->kind != ir::Attribute::Kind::kInt) return ctx.error("attribute 'to' (int) is required");
  return infer_cast_to(ctx, static_cast<DataType>(to->i));
}

Status infer_cast_like(InferContext& ctx) {
  if (!ctx.has_input(1)) return ctx.error("input 1 (target_type) is required");
  DataType to = ctx.input_dtype(1);
  if (to == DataType::kUndefined) {
    // Not known before run time (e.g. produced by a control-flow op): keep the shape.
    if (!ctx.has_input(0)) return ctx.error("input 0 is required");
    ctx.set_output(0, DataType::kUndefined, ctx.input(0).shape);
    return Status();
  }
  return infer_cast_to(ctx, to);
}

template <typename From, typename To>
void cast_loop(const From* x, To* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = convert_value<To>(x[i]);
}

Status cast_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.numel() != y.numel()) return ctx.error("output size does not match the input", ErrorCode::kInternal);
  if (x.dtype() == y.dtype()) {
    if (x.nbytes()) std::memcpy(y.data(), x.data(), x.nbytes());
    return Status();
  }
  KILN_DISPATCH_ALL(x.dtype(), From,
                    { KILN_DISPATCH_ALL(y.dtype(), To, cast_loop(x.data_as<From>(), y.data_as<To>(), x.numel())); });
  return Status();
}

}  // namespace

void register_cast_ops(OpRegistry& r) {
  // Opset 19 added `saturate`, which only affects float8 targets (unsupported here).
  r.add({.name = "Cast", .infer = infer_cast, .ref = cast_kernel});
  r.add({.name = "CastLike", .infer = infer_cast_like, .ref = cast_kernel});
}

}  // namespace kiln::ops
