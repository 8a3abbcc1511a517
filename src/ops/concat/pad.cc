// Pad: grows each axis (or crops it, for negative pads); the new border holds a
// constant, or reflects, repeats the edge of, or wraps around the input.
#include "ops/concat/concat_family.h"
#include "ops/concat/pad_spec.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {

namespace movement {

Result<PadMode> pad_mode(const ir::Node& n) {
  std::string m = n.attrs.get_string("mode", "constant");
  if (m == "constant") return PadMode::kConstant;
  if (m == "reflect") return PadMode::kReflect;
  if (m == "edge") return PadMode::kEdge;
  if (m == "wrap") return PadMode::kWrap;
  return node_error(n, "unknown pad mode '" + m + "'");
}

// Opset 2 renamed the `paddings` attribute to `pads`; opset 11 moved pads and
// the constant value to inputs; opset 18 added the axes input.
Result<std::optional<PadSpec>> pad_spec(const ir::Node& n, size_t rank, const Tensor* pads_value, bool has_axes,
                                        const Tensor* axes_value) {
  PadSpec p;
  KILN_ASSIGN_OR_RETURN(p.mode, pad_mode(n));
  std::vector<int64_t> pads;
  if (n.opset < 11) {
    const char* name = n.opset < 2 ? "paddings" : "pads";
    if (!n.attrs.has(name)) return node_error(n, std::string("missing the ") + name + " attribute");
    pads = n.attrs.get_ints(name);
  } else {
    if (!pads_value) return std::optional<PadSpec>();
    pads = pads_value->to_int64_vector();
  }
  std::vector<int64_t> axes;
  if (n.opset >= 18 && has_axes) {
    if (!axes_value) return std::optional<PadSpec>();
    KILN_ASSIGN_OR_RETURN(axes, normalize_axes(n, axes_value->to_int64_vector(), static_cast<int64_t>(rank)));
  } else {
    for (size_t i = 0; i < rank; ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (pads.size() != 2 * axes.size())
    return node_error(n, "pads " + ints_to_string(pads) + " must hold a begin and an end for each of " +
                             std::to_string(axes.size()) + " axes");
  p.begin.assign(rank, 0);
  p.end.assign(rank, 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t b = pads[i], e = pads[axes.size() + i];
    if (b < -kMaxTensorElements || b > kMaxTensorElements || e < -kMaxTensorElements || e > kMaxTensorElements)
      return node_error(n, "pads " + ints_to_string(pads) + " are out of range");
    p.begin[static_cast<size_t>(axes[i])] = b;
    p.end[static_cast<size_t>(axes[i])] = e;
  }
  return std::optional<PadSpec>(p);
}

Result<Shape> padded_shape(const ir::Node& n, const Shape& in, const PadSpec& p) {
  Shape out;
  for (size_t d = 0; d < in.size(); ++d) {
    int64_t grow = p.begin[d] + p.end[d];
    if (!in[d].known()) {
      out.push_back(grow == 0 ? in[d] : Dim::unknown());
      continue;
    }
    int64_t v;
    if (__builtin_add_overflow(in[d].value, grow, &v)) v = std::numeric_limits<int64_t>::max();
    if (v < 0) return node_error(n, "pads crop axis " + std::to_string(d) + " below zero");
    if (in[d].value == 0 && v > 0 && p.mode != PadMode::kConstant)
      return node_error(n, "cannot pad the empty axis " + std::to_string(d) + " except in constant mode");
    out.push_back(Dim(v));
  }
  return out;
}

Result<PadFill> pad_fill(const ir::Node& n, DataType dtype, const Tensor* constant) {
  PadFill f;
  f.value = Tensor::zeros(dtype, {});
  if (n.opset < 11) {
    f.value.set_from_double(0, n.attrs.get_float("value", 0.f));
  } else if (constant && constant->numel() > 0) {
    if (constant->dtype() != dtype)
      return node_error(n, "constant_value must have the input's dtype", ErrorCode::kInvalidArgument);
    f.from_input = true;
  }
  return f;
}

}  // namespace movement

namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Status infer_pad(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  if (ctx.opset() >= 11) {
    if (!ctx.has_input(1)) return ctx.error("missing the pads input");
    if (!dtype_may_be(ctx.input_dtype(1), DataType::kInt64)) return ctx.error("pads input must be int64");
    if (ctx.has_input(2) && !dtypes_compatible(ctx.input_dtype(2), dt))
      return ctx.error("constant_value must have the input's dtype");
    if (ctx.has_input(3) && !may_be_index_dtype(ctx.input_dtype(3)))
      return ctx.error("axes input must be int32 or int64");
  }
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(auto spec, pad_spec(ctx.node(), in->size(), ctx.value(1), ctx.has_input(3), ctx.value(3)));
  if (!spec) {
    ctx.set_output(0, dt, unknown_dims_like(in));
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(Shape out, padded_shape(ctx.node(), *in, *spec));
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_pad(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const Tensor* pads = ctx.has_input(1) ? &ctx.input(1) : nullptr;
  const Tensor* axes = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  KILN_ASSIGN_OR_RETURN(auto spec, pad_spec(ctx.node(), x.dims().size(), pads, axes != nullptr, axes));
  if (!spec) return ctx.error("pads are unknown", ErrorCode::kInternal);
  KILN_ASSIGN_OR_RETURN(Shape out, padded_shape(ctx.node(), shape_from_dims(x.dims()), *spec));
  if (shape_to_dims(out) != y.dims()) return ctx.error("output dims do not match the pads", ErrorCode::kInternal);
  KILN_ASSIGN_OR_RETURN(PadFill fill, pad_fill(ctx.node(), x.dtype(), ctx.has_input(2) ? &ctx.input(2) : nullptr));
  if (fill.from_input) std::memcpy(fill.value.data(), ctx.input(2).data(), dtype_size(x.dtype()));
  std::vector<std::vector<int64_t>> maps(y.dims().size());
  for (size_t d = 0; d < maps.size(); ++d)
    for (int64_t o = 0; o < y.dims()[d]; ++o)
      maps[d].push_back(pad_source_index(o - spec->begin[d], x.dims()[d], spec->mode));
  return remap_tensor(x, y, maps, fill.value.data());
}

}  // namespace

void movement::add_pad_ops(OpRegistry& r) {
  r.add({.name = "Pad", .infer = infer_pad, .ref = ref_pad, .value_inputs = {1, 3}});
}

}  // namespace kiln::ops
