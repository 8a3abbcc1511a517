// Identity: Y = X. Also the template for a new op family (see docs/adding-an-op.md).
#include <cstring>

#include "ops/common.h"

namespace kiln::ops {
namespace {

Status infer_identity(InferContext& ctx) { return infer_same_as_input0(ctx); }

Status ref_identity(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.nbytes()) std::memcpy(y.data(), x.data(), x.nbytes());
  return Status();
}

}  // namespace

void register_identity_ops(OpRegistry& r) {
  r.add({.name = "Identity", .infer = infer_identity, .ref = ref_identity});
}

}  // namespace kiln::ops
