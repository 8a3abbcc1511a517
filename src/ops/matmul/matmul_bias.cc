// MatMulBias (domain "kiln"): Y = act(MatMul(A, B) + bias) (+ residual), bias of
// shape [N] added along the last axis, act from the `activation` attribute (""
// none, "Relu", "GeluTanh"); the optional fourth input `residual` has Y's shape
// and is added last (only without an activation). fuse_matmul_bias makes it from
// MatMul -> Add, fuse_matmul_activation adds the activation and
// fuse_matmul_residual the residual, so the GPU applies them in cuBLASLt's
// epilogue (the residual as C with beta = 1) instead of more passes over Y.
#include <cmath>
#include <string>

#include "base/dispatch.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul {

namespace {

float gelu_tanh(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.f + std::tanh(u));
}

}  // namespace

Result<BiasActivation> bias_activation(const ir::Attributes& attrs) {
  const std::string a = attrs.get_string("activation", "");
  if (a.empty()) return BiasActivation::kNone;
  if (a == "Relu") return BiasActivation::kRelu;
  if (a == "GeluTanh") return BiasActivation::kGeluTanh;
  return Status(ErrorCode::kInvalidArgument, "unknown activation '" + a + "' (expected Relu or GeluTanh)");
}

Result<const Tensor*> residual_input(KernelContext& ctx, const Tensor& y, BiasActivation act) {
  if (!ctx.has_input(3)) return static_cast<const Tensor*>(nullptr);
  const Tensor& r = ctx.input(3);
  if (r.dims() != y.dims() || r.dtype() != y.dtype())
    return ctx.error("residual " + dims_to_string(r.dims()) + " does not match the output " + dims_to_string(y.dims()));
  if (act != BiasActivation::kNone) return ctx.error("a residual input needs activation \"\"");
  return &r;
}

namespace {

Status infer_matmul_bias(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_matmul(ctx));
  if (auto act = bias_activation(ctx.attrs()); !act.ok()) return ctx.error(act.status().message());
  if (!ctx.has_input(2)) return ctx.error("needs a bias input");
  if (ctx.input_dtype(2) != ctx.input_dtype(0)) return ctx.error("bias and A dtypes differ");
  const Shape* bias = ctx.input_shape(2);
  const auto& y = ctx.outputs()[0].shape;
  if (bias && bias->size() != 1) return ctx.error("bias must be 1-D");
  if (bias && y && !y->empty() && (*bias)[0].known() && y->back().known() && (*bias)[0].value != y->back().value)
    return ctx.error("bias has " + std::to_string((*bias)[0].value) + " elements, the output's last dim is " +
                     std::to_string(y->back().value));
  if (ctx.has_input(3)) {
    if (ctx.attrs().get_string("activation", "") != "") return ctx.error("a residual input needs activation \"\"");
    if (ctx.input_dtype(3) != ctx.input_dtype(0)) return ctx.error("residual and A dtypes differ");
    const Shape* r = ctx.input_shape(3);
    bool same = !r || !y || r->size() == y->size();
    for (size_t i = 0; same && r && y && i < r->size(); ++i)
      same = !(*r)[i].known() || !(*y)[i].known() || (*r)[i].value == (*y)[i].value;
    if (!same)
      return ctx.error("residual " + shape_to_string(*r) + " does not have the output's shape " + shape_to_string(*y));
  }
  return Status();
}

Status add_bias(KernelContext& ctx) {
  const Tensor& b = ctx.input(2);
  Tensor& y = ctx.output(0);
  int64_t n = b.numel(), total = y.numel();
  if (y.rank() == 0 || y.dims().back() != n) return ctx.error("bias does not match the output's last dim");
  KILN_ASSIGN_OR_RETURN(BiasActivation act, bias_activation(ctx.attrs()));
  KILN_ASSIGN_OR_RETURN(const Tensor* r, residual_input(ctx, y, act));
  KILN_DISPATCH_FLOAT(y.dtype(), T, {
    T* yp = y.data_as<T>();
    const T* bp = b.data_as<T>();
    const T* rp = r ? r->data_as<T>() : nullptr;
    for (int64_t i = 0; i < total; ++i) {
      float v = static_cast<float>(yp[i]) + static_cast<float>(bp[i % n]);
      if (act == BiasActivation::kRelu)
        v = v > 0.f ? v : 0.f;
      else if (act == BiasActivation::kGeluTanh)
        v = gelu_tanh(v);
      if (rp) v += static_cast<float>(rp[i]);
      yp[i] = static_cast<T>(v);
    }
  });
  return Status();
}

Status with_matmul(KernelContext& ctx, KernelFn mm) {
  KernelContext sub(ctx.node(), {&ctx.input(0), &ctx.input(1)}, {&ctx.output(0)});
  sub.set_num_threads(ctx.num_threads());
  KILN_RETURN_IF_ERROR(mm(sub));
  return add_bias(ctx);
}

Status ref_matmul_bias(KernelContext& ctx) { return with_matmul(ctx, ref_matmul); }
Status cpu_matmul_bias(KernelContext& ctx) { return with_matmul(ctx, cpu_gemm_matmul); }

}  // namespace

void register_matmul_bias(OpRegistry& r) {
  r.add({.name = "MatMulBias",
         .domain = "kiln",
         .infer = infer_matmul_bias,
         .ref = ref_matmul_bias,
         .fast = {{"cpu.gemm", cpu_matmul_bias, applies_f32}}});
}

}  // namespace kiln::ops::matmul
