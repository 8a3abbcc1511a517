// Dropout at inference: output = data, optional mask = all ones. Training mode
// (opset 12+ input 2 true) is only served when the ratio is 0, where it is the
// same identity; random dropping is unsupported.
#include <cstring>

#include "ops/unary/eltwise.h"

namespace kiln::ops {
namespace {

// Reads the opset >= 12 inputs: nullopt when training mode is off or unknown.
// Otherwise the ratio (0.5 when omitted; -1 when not known yet).
std::optional<double> training_ratio(const Tensor* training, bool has_ratio, const Tensor* ratio) {
  if (!training || training->numel() < 1 || training->get_as_double(0) == 0.0) return std::nullopt;
  if (!has_ratio) return 0.5;
  if (!ratio || ratio->numel() < 1) return -1.0;
  return ratio->get_as_double(0);
}

Status infer_dropout(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, kTypesFloat));
  if (ctx.opset() >= 12 && ctx.has_input(2)) {
    auto r = training_ratio(ctx.value(2), ctx.has_input(1), ctx.value(1));
    // A ratio not known yet (-1) is checked again by the kernel.
    if (r && *r > 0.0) return ctx.unsupported("Dropout in training mode (random dropping) is not supported");
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input(0).shape);
  // Opset 10 changed the mask from the data's dtype to bool.
  if (ctx.num_outputs() > 1)
    ctx.set_output(1, ctx.opset() >= 10 ? DataType::kBool : ctx.input_dtype(0), ctx.input(0).shape);
  return Status();
}

Status dropout_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (ctx.opset() >= 12 && ctx.has_input(2)) {
    auto r = training_ratio(&ctx.input(2), ctx.has_input(1), ctx.has_input(1) ? &ctx.input(1) : nullptr);
    if (r && *r != 0.0)
      return ctx.error("Dropout in training mode (random dropping) is not supported", ErrorCode::kUnsupported);
  }
  Tensor& y = ctx.output(0);
  if (y.numel() != x.numel() || y.dtype() != x.dtype()) return ctx.error("output does not match the input");
  if (x.nbytes() && y.data() != x.data()) std::memcpy(y.data(), x.data(), x.nbytes());
  if (ctx.has_output(1)) {
    Tensor& mask = ctx.output(1);
    if (mask.numel() != x.numel()) return ctx.error("mask does not match the input");
    KILN_DISPATCH_ALL(mask.dtype(), M, {
      M* pm = mask.data_as<M>();
      for (int64_t i = 0; i < mask.numel(); ++i) pm[i] = convert_value<M>(true);
    });
  }
  return Status();
}

}  // namespace

void register_dropout_op(OpRegistry& r) {
  // ratio and training_mode: known values let the build reject training mode early.
  r.add({.name = "Dropout", .infer = infer_dropout, .ref = dropout_kernel, .value_inputs = {1, 2}});
}

}  // namespace kiln::ops
