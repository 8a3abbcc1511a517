// Transpose: output dim j is input dim perm[j] (default: dims reversed).
#include "ops/reshape/data_movement.h"
#include "ops/reshape/reshape_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Result<std::vector<int64_t>> transpose_perm(const ir::Node& n, size_t rank) {
  std::vector<int64_t> perm;
  if (const ir::Attribute* a = n.attrs.find("perm")) {
    perm = a->ints;
    if (perm.size() != rank)
      return node_error(n, "perm " + ints_to_string(perm) + " does not match input rank " + std::to_string(rank));
    std::vector<bool> seen(rank, false);
    for (int64_t p : perm) {
      if (p < 0 || p >= static_cast<int64_t>(rank) || seen[static_cast<size_t>(p)])
        return node_error(n, "perm " + ints_to_string(perm) + " is not a permutation");
      seen[static_cast<size_t>(p)] = true;
    }
  } else {
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  }
  return perm;
}

Status infer_transpose(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    const ir::Attribute* a = ctx.attrs().find("perm");
    if (a)
      ctx.set_output(0, dt, Shape(a->ints.size(), Dim::unknown()));
    else
      ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(auto perm, transpose_perm(ctx.node(), in->size()));
  Shape out;
  for (int64_t p : perm) out.push_back((*in)[static_cast<size_t>(p)]);
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_transpose(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_ASSIGN_OR_RETURN(auto perm, transpose_perm(ctx.node(), x.dims().size()));
  return permute_tensor(x, perm, ctx.output(0));
}

}  // namespace

void movement::add_transpose_ops(OpRegistry& r) {
  r.add({.name = "Transpose", .infer = infer_transpose, .ref = ref_transpose});
}

}  // namespace kiln::ops
