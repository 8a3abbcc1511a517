// OneHot: a new axis of size depth holding on_value at each index's position and off_value elsewhere.
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Result<int64_t> onehot_depth(const ir::Node& n, const Tensor& depth) {
  if (depth.numel() != 1) return node_error(n, "depth must hold one value");
  auto d = read_index(depth, 0);
  if (!d || *d < 0 || *d > kMaxTensorElements) return node_error(n, "depth is not a valid size");
  return *d;
}

// The new axis goes at `axis` in [-r-1, r] (r = rank of indices).
Result<size_t> onehot_axis(const ir::Node& n, int64_t rank) {
  int64_t axis = n.attrs.get_int("axis", -1);
  auto a = normalize_axis(axis, rank + 1);
  if (!a)
    return node_error(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank + 1));
  return static_cast<size_t>(*a);
}

Status infer_onehot(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 3));
  DataType vt = ctx.input_dtype(2);
  KILN_RETURN_IF_ERROR(check_dtype_supported(ctx.node(), vt, "values"));
  for (size_t i = 0; i < 2; ++i)
    if (ctx.input_dtype(i) == DataType::kBool || !dtype_may_be_supported(ctx.input_dtype(i)))
      return ctx.error("input " + std::to_string(i) + " must be numeric");
  const Shape* idx = ctx.input_shape(0);
  if (!idx) {
    ctx.set_output(0, vt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(size_t axis, onehot_axis(ctx.node(), static_cast<int64_t>(idx->size())));
  Dim depth = Dim::unknown();
  if (const Tensor* d = ctx.value(1)) {
    KILN_ASSIGN_OR_RETURN(int64_t v, onehot_depth(ctx.node(), *d));
    depth = Dim(v);
  }
  Shape out = *idx;
  out.insert(out.begin() + static_cast<std::ptrdiff_t>(axis), depth);
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, vt, out);
  return Status();
}

Status ref_onehot(KernelContext& ctx) {
  const Tensor& it = ctx.input(0);
  const Tensor& values = ctx.input(2);
  KILN_ASSIGN_OR_RETURN(int64_t depth, onehot_depth(ctx.node(), ctx.input(1)));
  KILN_ASSIGN_OR_RETURN(size_t axis, onehot_axis(ctx.node(), it.rank()));
  if (values.numel() != 2) return ctx.error("values must hold [off_value, on_value]");
  Dims od = it.dims();
  od.insert(od.begin() + static_cast<std::ptrdiff_t>(axis), depth);
  Tensor& y = ensure_output(ctx, 0, values.dtype(), od);
  int64_t inner = dims_product(it.dims(), axis, it.dims().size());
  return with_element_size(dtype_size(values.dtype()), [&](auto tag) {
    using T = decltype(tag);
    const T off = values.data_as<T>()[0], on = values.data_as<T>()[1];
    T* dst = y.data_as<T>();
    for (int64_t i = 0; i < y.numel(); ++i) dst[i] = off;
    for (int64_t j = 0; j < it.numel(); ++j) {
      // Negative indices count from depth; anything else outside [0, depth) stays all off.
      auto v = read_index(it, j);
      if (!v) continue;
      int64_t k = *v < 0 ? *v + depth : *v;
      if (k < 0 || k >= depth) continue;
      int64_t outer = j / inner, in = j % inner;
      dst[(outer * depth + k) * inner + in] = on;
    }
  });
}

}  // namespace

void movement::add_onehot_ops(OpRegistry& r) {
  r.add({.name = "OneHot", .infer = infer_onehot, .ref = ref_onehot, .value_inputs = {1}});
}

}  // namespace kiln::ops
