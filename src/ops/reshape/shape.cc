// Shape (dims as a 1-D int64 tensor, optionally a [start, end) slice) and Size (element count).
#include "ops/reshape/data_movement.h"
#include "ops/reshape/reshape_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Opset 15 added start/end, clamped to [0, rank] after adding rank to negatives.
std::pair<int64_t, int64_t> shape_range(const ir::Node& n, int64_t rank) {
  if (n.opset < 15) return {0, rank};
  auto clamp = [rank](int64_t v) {
    if (v < 0) v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  int64_t start = clamp(n.attrs.get_int("start", 0));
  int64_t end = n.attrs.has("end") ? clamp(n.attrs.get_int("end", rank)) : rank;
  return {start, std::max(start, end)};
}

Status infer_shape(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, DataType::kInt64, Shape{Dim::unknown()});
    return Status();
  }
  auto [start, end] = shape_range(ctx.node(), static_cast<int64_t>(in->size()));
  ctx.set_output(0, DataType::kInt64, Shape{Dim(end - start)});
  return Status();
}

Status ref_shape(KernelContext& ctx) {
  const Dims& d = ctx.input(0).dims();
  auto [start, end] = shape_range(ctx.node(), static_cast<int64_t>(d.size()));
  Tensor& y = ensure_output(ctx, 0, DataType::kInt64, {end - start});
  for (int64_t i = start; i < end; ++i) y.data_as<int64_t>()[i - start] = d[static_cast<size_t>(i)];
  return Status();
}

Status infer_size(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  ctx.set_output(0, DataType::kInt64, Shape{});
  return Status();
}

Status ref_size(KernelContext& ctx) {
  Tensor& y = ensure_output(ctx, 0, DataType::kInt64, {});
  y.data_as<int64_t>()[0] = ctx.input(0).numel();
  return Status();
}

}  // namespace

void movement::add_shape_ops(OpRegistry& r) {
  r.add({.name = "Shape", .infer = infer_shape, .ref = ref_shape});
  r.add({.name = "Size", .infer = infer_size, .ref = ref_size});
}

}  // namespace kiln::ops
