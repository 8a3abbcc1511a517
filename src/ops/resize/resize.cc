// Resize / Upsample: nearest, linear or cubic interpolation of an N-D tensor to
// new sizes (given as scales or sizes), with ONNX's coordinate transforms.
#include <cmath>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/resize/resize_plan.h"

namespace kiln::ops {
namespace resize {
namespace {

constexpr int64_t kMaxElements = int64_t(1) << 34;

Status node_error(const ir::Node& node, const std::string& msg, ErrorCode code = ErrorCode::kInvalidModel) {
  return Status(code, "node " + node.describe() + ": " + msg);
}

bool is_upsample(const ir::Node& node) { return node.op_type == "Upsample"; }

// Resize-10 and Upsample predate coordinate_transformation_mode: they behave as
// "asymmetric" with the legacy nearest rounding.
bool legacy(const ir::Node& node) { return is_upsample(node) || node.opset < 11; }

}  // namespace

Result<Spec> parse_spec(const ir::Node& node) {
  Spec s;
  const ir::Attributes& a = node.attrs;
  std::string mode = a.get_string("mode", "nearest");
  if (mode == "nearest")
    s.mode = Mode::kNearest;
  else if (mode == "linear" || (is_upsample(node) && mode == "bilinear"))
    s.mode = Mode::kLinear;
  else if (mode == "cubic" && !legacy(node))
    s.mode = Mode::kCubic;
  else
    return node_error(node, "unsupported mode '" + mode + "'");
  if (legacy(node)) {
    s.coord = CoordMode::kAsymmetric;
    s.nearest = NearestMode::kSimple;
    return s;
  }
  std::string coord = a.get_string("coordinate_transformation_mode", "half_pixel");
  if (coord == "half_pixel")
    s.coord = CoordMode::kHalfPixel;
  else if (coord == "half_pixel_symmetric")
    s.coord = CoordMode::kHalfPixelSymmetric;
  else if (coord == "pytorch_half_pixel")
    s.coord = CoordMode::kPytorchHalfPixel;
  else if (coord == "align_corners")
    s.coord = CoordMode::kAlignCorners;
  else if (coord == "asymmetric")
    s.coord = CoordMode::kAsymmetric;
  else if (coord == "tf_crop_and_resize")
    s.coord = CoordMode::kTfCropAndResize;
  else if (coord == "tf_half_pixel_for_nn")
    s.coord = CoordMode::kTfHalfPixelForNn;
  else
    return node_error(node, "unsupported coordinate_transformation_mode '" + coord + "'");
  std::string nearest = a.get_string("nearest_mode", "round_prefer_floor");
  if (nearest == "round_prefer_floor")
    s.nearest = NearestMode::kRoundPreferFloor;
  else if (nearest == "round_prefer_ceil")
    s.nearest = NearestMode::kRoundPreferCeil;
  else if (nearest == "floor")
    s.nearest = NearestMode::kFloor;
  else if (nearest == "ceil")
    s.nearest = NearestMode::kCeil;
  else
    return node_error(node, "unsupported nearest_mode '" + nearest + "'");
  s.cubic_a = a.get_float("cubic_coeff_a", -0.75f);
  s.exclude_outside = a.get_int("exclude_outside", 0) != 0;
  s.extrapolation = a.get_float("extrapolation_value", 0.f);
  if (node.opset >= 18) {
    // Antialiasing only changes the linear and cubic filters.
    s.antialias = a.get_int("antialias", 0) != 0 && s.mode != Mode::kNearest;
    s.axes = a.get_ints("axes");
    std::string policy = a.get_string("keep_aspect_ratio_policy", "stretch");
    if (policy == "stretch")
      s.policy = AspectPolicy::kStretch;
    else if (policy == "not_larger")
      s.policy = AspectPolicy::kNotLarger;
    else if (policy == "not_smaller")
      s.policy = AspectPolicy::kNotSmaller;
    else
      return node_error(node, "unsupported keep_aspect_ratio_policy '" + policy + "'");
  }
  return s;
}

InputSlots input_slots(const ir::Node& node) {
  InputSlots s;
  if (is_upsample(node)) {
    if (node.opset >= 9) s.scales = 1;  // Upsample-7 carries scales as an attribute
  } else if (node.opset < 11) {
    s.scales = 1;
  } else {
    s.roi = 1, s.scales = 2, s.sizes = 3;
  }
  return s;
}

Result<PlanInputs> read_plan_inputs(const ir::Node& node, const Tensor* roi, const Tensor* scales,
                                    const Tensor* sizes) {
  PlanInputs p;
  if (is_upsample(node) && node.opset < 9) {
    std::vector<float> f = node.attrs.get_floats("scales");
    p.scales = std::vector<double>(f.begin(), f.end());
  }
  if (scales && scales->numel() > 0) {
    if (!dtype_is_float(scales->dtype()))
      return node_error(node, std::string("scales must be a float tensor, got ") + dtype_name(scales->dtype()));
    if (scales->rank() != 1) return node_error(node, "scales must be a 1-D tensor");
    std::vector<double> v;
    for (int64_t i = 0; i < scales->numel(); ++i) v.push_back(scales->get_as_double(i));
    p.scales = v;
  }
  if (sizes && sizes->numel() > 0) {
    if (sizes->dtype() != DataType::kInt64)
      return node_error(node, std::string("sizes must be an int64 tensor, got ") + dtype_name(sizes->dtype()));
    if (sizes->rank() != 1) return node_error(node, "sizes must be a 1-D tensor");
    p.sizes = sizes->to_int64_vector();
  }
  if (roi && roi->numel() > 0) {
    if (!dtype_is_float(roi->dtype()))
      return node_error(node, std::string("roi must be a float tensor, got ") + dtype_name(roi->dtype()));
    for (int64_t i = 0; i < roi->numel(); ++i) p.roi.push_back(roi->get_as_double(i));
  }
  return p;
}

Result<Plan> make_plan(const ir::Node& node, const Spec& spec, const Dims& in, const PlanInputs& inputs) {
  int64_t r = static_cast<int64_t>(in.size());
  Plan plan;
  plan.dims.resize(in.size());
  for (int64_t d = 0; d < r; ++d) plan.dims[d].in = plan.dims[d].out = in[d];
  if (spec.axes.empty()) {
    for (int64_t d = 0; d < r; ++d) plan.axes.push_back(d);
  } else {
    std::vector<bool> seen(in.size(), false);
    for (int64_t a : spec.axes) {
      auto n = normalize_axis(a, r);
      if (!n) return node_error(node, "axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
      if (seen[*n]) return node_error(node, "axis " + std::to_string(a) + " is repeated");
      seen[*n] = true;
      plan.axes.push_back(*n);
    }
  }
  size_t n = plan.axes.size();
  if (inputs.scales && inputs.sizes) return node_error(node, "only one of scales and sizes may be given");
  if (!inputs.scales && !inputs.sizes) return node_error(node, "one of scales and sizes must be given");
  if (inputs.scales) {
    if (inputs.scales->size() != n)
      return node_error(
          node, "scales has " + std::to_string(inputs.scales->size()) + " values, expected " + std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
      double s = (*inputs.scales)[i];
      if (!(s > 0) || !std::isfinite(s)) return node_error(node, "scales must be positive, got " + std::to_string(s));
      AxisPlan& p = plan.dims[plan.axes[i]];
      p.resized = true;
      p.scale = s;
      if (p.in >= 0) {
        double o = std::floor(static_cast<double>(p.in) * s);
        if (o > static_cast<double>(kMaxElements)) return node_error(node, "scales give an output that is too large");
        p.out = static_cast<int64_t>(o);
      }
    }
  } else {
    const std::vector<int64_t>& sz = *inputs.sizes;
    if (sz.size() != n)
      return node_error(node, "sizes has " + std::to_string(sz.size()) + " values, expected " + std::to_string(n));
    bool all_known = true;
    for (size_t i = 0; i < n; ++i) {
      if (sz[i] < 0) return node_error(node, "sizes must be >= 0, got " + std::to_string(sz[i]));
      if (sz[i] > kMaxElements) return node_error(node, "sizes give an output that is too large");
      int64_t in_d = plan.dims[plan.axes[i]].in;
      if (in_d == 0 && sz[i] > 0) return node_error(node, "cannot resize an empty dim to a non-empty one");
      if (in_d < 0) all_known = false;
    }
    if (spec.policy == AspectPolicy::kStretch) {
      for (size_t i = 0; i < n; ++i) {
        AxisPlan& p = plan.dims[plan.axes[i]];
        p.resized = true;
        p.out = sz[i];
        p.scale = p.in > 0 ? static_cast<double>(sz[i]) / static_cast<double>(p.in) : 1.0;
      }
    } else {
      double s = spec.policy == AspectPolicy::kNotLarger ? INFINITY : 0.0;
      for (size_t i = 0; i < n && all_known; ++i) {
        int64_t in_d = plan.dims[plan.axes[i]].in;
        if (in_d == 0) continue;
        double si = static_cast<double>(sz[i]) / static_cast<double>(in_d);
        s = spec.policy == AspectPolicy::kNotLarger ? std::min(s, si) : std::max(s, si);
      }
      if (!std::isfinite(s) || s <= 0) s = 1.0;
      for (size_t i = 0; i < n; ++i) {
        AxisPlan& p = plan.dims[plan.axes[i]];
        p.resized = true;
        p.scale = s;
        // The kept-aspect size rounds half up.
        p.out = all_known ? static_cast<int64_t>(std::floor(s * static_cast<double>(p.in) + 0.5)) : -1;
        if (p.out > kMaxElements) return node_error(node, "sizes give an output that is too large");
      }
    }
  }
  if (spec.coord == CoordMode::kTfCropAndResize && !inputs.roi.empty()) {
    if (inputs.roi.size() != 2 * n)
      return node_error(node,
                        "roi has " + std::to_string(inputs.roi.size()) + " values, expected " + std::to_string(2 * n));
    for (size_t i = 0; i < n; ++i) {
      plan.dims[plan.axes[i]].roi_start = inputs.roi[i];
      plan.dims[plan.axes[i]].roi_end = inputs.roi[n + i];
    }
  }
  double volume = 1;
  for (const AxisPlan& p : plan.dims) volume *= p.out >= 0 ? static_cast<double>(p.out) : 1.0;
  if (volume > static_cast<double>(kMaxElements))
    return node_error(node, "the output would have more than 2^34 elements");
  return plan;
}

namespace {

Status check_dtype(const InferContext& ctx, const Spec& spec) {
  DataType t = ctx.input_dtype(0);
  if (t == DataType::kString || !dtype_is_supported(t))
    return ctx.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported");
  if (t == DataType::kBool && spec.mode != Mode::kNearest)
    return ctx.unsupported("bool input is only supported in nearest mode");
  return Status();
}

/// True when input `slot` is present with a value we cannot see yet (and not known-empty).
bool value_pending(const InferContext& ctx, int slot) {
  if (slot < 0 || !ctx.has_input(slot) || ctx.value(slot)) return false;
  const Shape* s = ctx.input_shape(slot);
  return !(s && shape_volume(*s) == 0);
}

Status infer_resize(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(Spec spec, parse_spec(ctx.node()));
  KILN_RETURN_IF_ERROR(check_dtype(ctx, spec));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  InputSlots slots = input_slots(ctx.node());
  if (value_pending(ctx, slots.scales) || value_pending(ctx, slots.sizes) ||
      (spec.coord == CoordMode::kTfCropAndResize && value_pending(ctx, slots.roi))) {
    // Sizes are data-dependent for now: dims outside `axes` are kept.
    Shape out = *in;
    int64_t r = static_cast<int64_t>(in->size());
    std::vector<bool> resized(in->size(), spec.axes.empty());
    for (int64_t a : spec.axes)
      if (auto n = normalize_axis(a, r)) resized[*n] = true;
    for (size_t d = 0; d < out.size(); ++d)
      if (resized[d]) out[d] = Dim::unknown();
    ctx.set_output(0, dt, out);
    return Status();
  }
  auto value = [&](int slot) { return slot >= 0 && ctx.has_input(slot) ? ctx.value(slot) : nullptr; };
  KILN_ASSIGN_OR_RETURN(PlanInputs pin,
                        read_plan_inputs(ctx.node(), value(slots.roi), value(slots.scales), value(slots.sizes)));
  KILN_ASSIGN_OR_RETURN(Plan plan, make_plan(ctx.node(), spec, shape_to_dims(*in), pin));
  Shape out;
  for (size_t d = 0; d < in->size(); ++d) {
    const AxisPlan& p = plan.dims[d];
    if (!p.resized || (p.out < 0 && p.scale == 1.0 && !pin.sizes))
      out.push_back((*in)[d]);
    else
      out.push_back(p.out >= 0 ? Dim(p.out) : Dim::unknown());
  }
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_resize(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  KILN_ASSIGN_OR_RETURN(Spec spec, parse_spec(node));
  InputSlots slots = input_slots(node);
  auto input = [&](int slot) { return slot >= 0 && ctx.has_input(slot) ? &ctx.input(slot) : nullptr; };
  KILN_ASSIGN_OR_RETURN(PlanInputs pin,
                        read_plan_inputs(node, input(slots.roi), input(slots.scales), input(slots.sizes)));
  const Tensor& x = ctx.input(0);
  KILN_ASSIGN_OR_RETURN(Plan plan, make_plan(node, spec, x.dims(), pin));
  return run_resize(node, spec, plan, x, ctx.output(0));
}

Status fast_resize(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  KILN_ASSIGN_OR_RETURN(Spec spec, parse_spec(node));
  InputSlots slots = input_slots(node);
  auto input = [&](int slot) { return slot >= 0 && ctx.has_input(slot) ? &ctx.input(slot) : nullptr; };
  KILN_ASSIGN_OR_RETURN(PlanInputs pin,
                        read_plan_inputs(node, input(slots.roi), input(slots.scales), input(slots.sizes)));
  const Tensor& x = ctx.input(0);
  KILN_ASSIGN_OR_RETURN(Plan plan, make_plan(node, spec, x.dims(), pin));
  if (!bilinear_f32_applies(spec, plan, x)) return run_resize(node, spec, plan, x, ctx.output(0));
  return run_bilinear_f32(spec, plan, x, ctx.output(0), ctx.num_threads());
}

}  // namespace
}  // namespace resize

void register_resize_ops(OpRegistry& r) {
  std::vector<FastKernel> fast = {{"cpu.bilinear", resize::fast_resize, nullptr}};
  r.add({.name = "Resize",
         .infer = resize::infer_resize,
         .ref = resize::ref_resize,
         .fast = fast,
         .value_inputs = {1, 2, 3},
         .min_opset = 10});
  r.add({.name = "Upsample",
         .infer = resize::infer_resize,
         .ref = resize::ref_resize,
         .fast = fast,
         .value_inputs = {1},
         .min_opset = 7});
}

}  // namespace kiln::ops
