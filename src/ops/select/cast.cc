// Cast (to the dtype of attribute `to`) and CastLike (to the dtype of input 1).
// Float -> integer truncates toward zero (saturating out of range, NaN -> 0);
// anything -> bool is "!= 0". The narrow types follow the ONNX reference: float8
// and float4 round to nearest even (base/float8.h), 4-/2-bit integers truncate and
// wrap (base/subbyte.h).
#include <cstring>

#include "base/float8.h"
#include "base/subbyte.h"
#include "ops/unary/eltwise.h"

namespace kiln::ops {
namespace {

// ONNX TensorProto codes kiln cannot compute with, for clear messages.
std::string onnx_type_name(int64_t code) {
  switch (code) {
    case 8: return "string";
    case 14: return "complex64";
    case 15: return "complex128";
    case 27: return "float6e2m3";
    case 28: return "float6e3m2";
    default: return "type code " + std::to_string(code);
  }
}

bool castable(DataType t) { return type_set_of(t) != 0 || dtype_is_narrow(t); }

/// `saturate` (opset 19) applies to float8 targets; `round_mode` (opset 24) to float8e8m0.
struct CastOptions {
  bool saturate = true;
  E8M0Rounding round = E8M0Rounding::kUp;
};

Result<CastOptions> cast_options(const ir::Node& node) {
  CastOptions o;
  if (node.opset >= 19) o.saturate = node.attrs.get_int("saturate", 1) != 0;
  if (node.opset >= 24) {
    std::string m = node.attrs.get_string("round_mode", "up");
    if (m == "up")
      o.round = E8M0Rounding::kUp;
    else if (m == "down")
      o.round = E8M0Rounding::kDown;
    else if (m == "nearest")
      o.round = E8M0Rounding::kNearest;
    else
      return Status(ErrorCode::kInvalidModel,
                    "node " + node.describe() + ": round_mode must be up, down or nearest, got '" + m + "'");
  }
  return o;
}

Status check_castable(const InferContext& ctx, int64_t code, const char* what) {
  if (castable(static_cast<DataType>(code))) return Status();
  return ctx.unsupported(std::string(what) + " dtype " + onnx_type_name(code) + " is not supported by Cast");
}

Status infer_cast_to(InferContext& ctx, DataType to) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  DataType from = ctx.input_dtype(0);
  if (from != DataType::kUndefined) KILN_RETURN_IF_ERROR(check_castable(ctx, static_cast<int64_t>(from), "source"));
  KILN_RETURN_IF_ERROR(check_castable(ctx, static_cast<int64_t>(to), "target"));
  KILN_RETURN_IF_ERROR(cast_options(ctx.node()).status());
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

/// Casts when either side is a narrow type, one element at a time through double
/// (exact for every narrow value), or through int64 from integers into 4-/2-bit
/// integers so that wide values wrap exactly.
Status cast_narrow(const Tensor& x, Tensor& y, const CastOptions& o) {
  const int64_t n = x.numel();
  const DataType to = y.dtype();
  uint8_t* out = static_cast<uint8_t*>(y.data());
  if (const MiniFloatFormat* f = minifloat_format(to)) {
    // float4e2m1 has no inf or NaN to overflow to: it always saturates.
    bool sat = o.saturate || to == DataType::kFloat4E2M1;
    for (int64_t i = 0; i < n; ++i) out[i] = double_to_minifloat(x.get_as_double(i), *f, sat);
  } else if (to == DataType::kFloat8E8M0) {
    // The reference converts to float32 first.
    for (int64_t i = 0; i < n; ++i)
      out[i] = float_to_float8e8m0(static_cast<float>(x.get_as_double(i)), o.saturate, o.round);
  } else if (dtype_bits(to) < 8) {
    const int bits = static_cast<int>(dtype_bits(to));
    const bool is_signed = to == DataType::kInt4 || to == DataType::kInt2;
    const bool from_int = !dtype_is_float(x.dtype());
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = from_int ? wrap_to_bits(x.get_as_int64(i), bits, is_signed)
                           : double_to_bits_int(x.get_as_double(i), bits, is_signed);
      out[i] = static_cast<uint8_t>(v);
    }
  } else {
    KILN_DISPATCH_ALL(to, To, {
      To* yp = y.data_as<To>();
      for (int64_t i = 0; i < n; ++i) yp[i] = convert_value<To>(x.get_as_double(i));
    });
  }
  return Status();
}

Status cast_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.numel() != y.numel()) return ctx.error("output size does not match the input", ErrorCode::kInternal);
  if (x.dtype() == y.dtype()) {
    if (x.nbytes()) std::memcpy(y.data(), x.data(), x.nbytes());
    return Status();
  }
  if (dtype_is_narrow(x.dtype()) || dtype_is_narrow(y.dtype())) {
    KILN_ASSIGN_OR_RETURN(CastOptions o, cast_options(ctx.node()));
    return cast_narrow(x, y, o);
  }
  KILN_DISPATCH_ALL(x.dtype(), From,
                    { KILN_DISPATCH_ALL(y.dtype(), To, cast_loop(x.data_as<From>(), y.data_as<To>(), x.numel())); });
  return Status();
}

}  // namespace

void register_cast_ops(OpRegistry& r) {
  // Opset 19 added `saturate` (float8 targets), opset 24 `round_mode` (float8e8m0).
  r.add({.name = "Cast", .infer = infer_cast, .ref = cast_kernel});
  r.add({.name = "CastLike", .infer = infer_cast_like, .ref = cast_kernel});
}

}  // namespace kiln::ops
