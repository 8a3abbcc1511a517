// Reshape, Flatten, Squeeze, Unsqueeze: new dims over the same bytes.

#include "ops/reshape/data_movement.h"
#include "ops/reshape/reshape_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Opset 5 moved `shape` from an attribute to input 1; opset 14 added allowzero.
Status infer_reshape(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  const ir::Node& n = ctx.node();
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  std::vector<int64_t> target;
  if (ctx.opset() < 5) {
    if (!ctx.attrs().has("shape")) return ctx.error("missing the shape attribute");
    target = ctx.attrs().get_ints("shape");
  } else {
    if (!ctx.has_input(1)) return ctx.error("missing the shape input");
    if (!dtype_may_be(ctx.input_dtype(1), DataType::kInt64)) return ctx.error("shape input must be int64");
    const Shape* ss = ctx.input_shape(1);
    if (ss && ss->size() != 1) return ctx.error("shape input must be 1-D");
    const Tensor* v = ctx.value(1);
    if (!v) {
      auto len = input_length(ctx, 1);
      if (len)
        ctx.set_output(0, dt, Shape(static_cast<size_t>(*len), Dim::unknown()));
      else
        ctx.set_output(0, dt, std::nullopt);
      return Status();
    }
    target = v->to_int64_vector();
  }
  bool allowzero = ctx.opset() >= 14 && ctx.attrs().get_int("allowzero", 0) != 0;
  Shape out;
  std::optional<size_t> neg;
  bool has_zero = false;
  for (size_t i = 0; i < target.size(); ++i) {
    int64_t v = target[i];
    if (v == -1) {
      if (neg) return ctx.error("shape " + ints_to_string(target) + " has more than one -1");
      neg = i;
      out.push_back(Dim::unknown());
    } else if (v < -1) {
      return ctx.error("shape " + ints_to_string(target) + " has an invalid negative dim");
    } else if (v == 0 && !allowzero) {
      if (in && i >= in->size())
        return ctx.error("shape " + ints_to_string(target) + " copies dim " + std::to_string(i) +
                         " (0) but the input has rank " + std::to_string(in->size()));
      out.push_back(in ? (*in)[i] : Dim::unknown());
    } else {
      if (v == 0) has_zero = true;
      out.push_back(Dim(v));
    }
  }
  if (allowzero && has_zero && neg) return ctx.error("allowzero shape cannot hold both 0 and -1");
  KILN_RETURN_IF_ERROR(check_shape(n, out));  // bounds the products below
  if (in) {
    int64_t in_vol = sat_volume(*in);
    if (neg) {
      Shape rest = out;
      rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(*neg));
      int64_t rest_vol = sat_volume(rest);
      if (in_vol >= 0 && rest_vol >= 0) {
        if (rest_vol == 0 || in_vol % rest_vol != 0)
          return ctx.error("cannot reshape " + shape_to_string(*in) + " to " + ints_to_string(target));
        out[*neg] = Dim(in_vol / rest_vol);
      } else {
        out[*neg] = infer_reshape_dim(*in, out, *neg);
      }
    } else {
      int64_t out_vol = sat_volume(out);
      if (in_vol >= 0 && out_vol >= 0 && in_vol != out_vol)
        return ctx.error("cannot reshape " + shape_to_string(*in) + " to " + shape_to_string(out));
    }
  }
  KILN_RETURN_IF_ERROR(check_shape(n, out));
  ctx.set_output(0, dt, out);
  return Status();
}

// Opset 11 allowed a negative axis.
Status infer_flatten(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, Shape{Dim::unknown(), Dim::unknown()});
    return Status();
  }
  int64_t r = static_cast<int64_t>(in->size());
  int64_t axis = ctx.attrs().get_int("axis", 1);
  if (axis < -r || axis > r)
    return ctx.error("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
  if (axis < 0) axis += r;
  auto a = static_cast<size_t>(axis);
  ctx.set_output(0, dt, Shape{shape_product(*in, 0, a), shape_product(*in, a, in->size())});
  return Status();
}

// Squeeze/Unsqueeze axes: an attribute before opset 13, input 1 from 13.
// `values` is empty when the axes are given but not known yet (build time).
struct AxesArg {
  bool given = false;
  std::optional<std::vector<int64_t>> values;
  std::optional<int64_t> count;  ///< number of axes when only the input's length is known
};

Result<AxesArg> read_axes(const InferContext& ctx) {
  AxesArg a;
  if (ctx.opset() < 13) {
    if (ctx.attrs().has("axes")) {
      a.given = true;
      a.values = ctx.attrs().get_ints("axes");
    }
    return a;
  }
  if (!ctx.has_input(1)) return a;
  a.given = true;
  if (!dtype_may_be(ctx.input_dtype(1), DataType::kInt64)) return ctx.error("axes input must be int64");
  const Shape* s = ctx.input_shape(1);
  if (s && s->size() > 1) return ctx.error("axes input must be 1-D");
  if (const Tensor* v = ctx.value(1))
    a.values = v->to_int64_vector();
  else
    a.count = input_length(ctx, 1);
  return a;
}

Status infer_squeeze(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  KILN_ASSIGN_OR_RETURN(AxesArg axes, read_axes(ctx));
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  int64_t r = static_cast<int64_t>(in->size());
  // An empty axes list means the same as none (as in ONNX Runtime).
  if (axes.values && axes.values->empty()) axes.given = false;
  if (!axes.given) {
    // Without axes every dim of size 1 goes; an unknown dim might be 1, so the rank is unknown.
    Shape out;
    for (const Dim& d : *in) {
      if (!d.known()) {
        ctx.set_output(0, dt, std::nullopt);
        return Status();
      }
      if (d.value != 1) out.push_back(d);
    }
    ctx.set_output(0, dt, out);
    return Status();
  }
  if (!axes.values) {
    if (axes.count && *axes.count <= r)
      ctx.set_output(0, dt, Shape(static_cast<size_t>(r - *axes.count), Dim::unknown()));
    else
      ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(auto norm, normalize_axes(ctx.node(), *axes.values, r));
  Shape out;
  for (int64_t i = 0; i < r; ++i) {
    const Dim& d = (*in)[static_cast<size_t>(i)];
    if (std::find(norm.begin(), norm.end(), i) == norm.end()) {
      out.push_back(d);
    } else if (d.known() && d.value != 1) {
      return ctx.error("cannot squeeze axis " + std::to_string(i) + " of size " + std::to_string(d.value));
    }
  }
  ctx.set_output(0, dt, out);
  return Status();
}

Status infer_unsqueeze(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  KILN_ASSIGN_OR_RETURN(AxesArg axes, read_axes(ctx));
  if (!axes.given) return ctx.error(ctx.opset() < 13 ? "missing the axes attribute" : "missing the axes input");
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  int64_t r = static_cast<int64_t>(in->size());
  if (!axes.values) {
    if (axes.count)
      ctx.set_output(0, dt, Shape(static_cast<size_t>(r + *axes.count), Dim::unknown()));
    else
      ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  int64_t out_rank = r + static_cast<int64_t>(axes.values->size());
  KILN_ASSIGN_OR_RETURN(auto norm, normalize_axes(ctx.node(), *axes.values, out_rank));
  Shape out;
  size_t next = 0;
  for (int64_t i = 0; i < out_rank; ++i) {
    if (std::find(norm.begin(), norm.end(), i) != norm.end())
      out.push_back(Dim(1));
    else
      out.push_back((*in)[next++]);
  }
  ctx.set_output(0, dt, out);
  return Status();
}

}  // namespace

void register_reshape_ops(OpRegistry& r) {
  r.add({.name = "Reshape", .infer = infer_reshape, .ref = copy_input0_bytes, .value_inputs = {1}});
  r.add({.name = "Flatten", .infer = infer_flatten, .ref = copy_input0_bytes});
  r.add({.name = "Squeeze", .infer = infer_squeeze, .ref = copy_input0_bytes, .value_inputs = {1}});
  r.add({.name = "Unsqueeze", .infer = infer_unsqueeze, .ref = copy_input0_bytes, .value_inputs = {1}});
  movement::add_transpose_ops(r);
  movement::add_shape_ops(r);
}

}  // namespace kiln::ops
