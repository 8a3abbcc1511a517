// CenterCropPad: crops or zero-pads chosen axes to a target size, keeping the center.
#include "ops/generate/generate_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Result<std::vector<int64_t>> crop_axes(const ir::Node& n, size_t rank) {
  std::vector<int64_t> axes;
  if (n.attrs.has("axes")) return normalize_axes(n, n.attrs.get_ints("axes"), static_cast<int64_t>(rank));
  for (size_t i = 0; i < rank; ++i) axes.push_back(static_cast<int64_t>(i));
  return axes;
}

Result<std::vector<int64_t>> crop_sizes(const ir::Node& n, const Tensor& shape, size_t count) {
  KILN_ASSIGN_OR_RETURN(auto v, read_indices(n, shape, "shape"));
  if (v.size() != count)
    return node_error(n,
                      "shape " + ints_to_string(v) + " must have one entry per axis (" + std::to_string(count) + ")");
  for (int64_t s : v)
    if (s < 0) return node_error(n, "shape " + ints_to_string(v) + " has a negative size");
  return v;
}

Status infer_center_crop_pad(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  if (!may_be_index_dtype(ctx.input_dtype(1))) return ctx.error("shape must be int32 or int64");
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(auto axes, crop_axes(ctx.node(), in->size()));
  Shape out = *in;
  const Tensor* sv = ctx.value(1);
  std::vector<int64_t> sizes;
  if (sv) {
    KILN_ASSIGN_OR_RETURN(sizes, crop_sizes(ctx.node(), *sv, axes.size()));
  }
  for (size_t i = 0; i < axes.size(); ++i) out[static_cast<size_t>(axes[i])] = sv ? Dim(sizes[i]) : Dim::unknown();
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_center_crop_pad(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_ASSIGN_OR_RETURN(auto axes, crop_axes(ctx.node(), x.dims().size()));
  KILN_ASSIGN_OR_RETURN(auto sizes, crop_sizes(ctx.node(), ctx.input(1), axes.size()));
  Dims od = x.dims();
  for (size_t i = 0; i < axes.size(); ++i) od[static_cast<size_t>(axes[i])] = sizes[i];
  Tensor& y = ensure_output(ctx, 0, x.dtype(), od);
  // Output index o reads input o + shift; a crop shifts by +floor(excess/2), a pad by -floor(extra/2).
  std::vector<std::vector<int64_t>> maps(od.size());
  for (size_t d = 0; d < od.size(); ++d) {
    int64_t shift = (x.dims()[d] - od[d]) / 2;
    if (od[d] > x.dims()[d]) shift = -((od[d] - x.dims()[d]) / 2);
    for (int64_t o = 0; o < od[d]; ++o) {
      int64_t i = o + shift;
      maps[d].push_back(i >= 0 && i < x.dims()[d] ? i : -1);
    }
  }
  Tensor zero = Tensor::zeros(x.dtype(), {});
  return remap_tensor(x, y, maps, zero.data());
}

}  // namespace

void movement::add_center_crop_pad_ops(OpRegistry& r) {
  r.add({.name = "CenterCropPad", .infer = infer_center_crop_pad, .ref = ref_center_crop_pad, .value_inputs = {1}});
}

}  // namespace kiln::ops
