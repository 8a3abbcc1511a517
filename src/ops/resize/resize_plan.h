// Resize/Upsample parameters shared by inference and the kernel: the parsed
// attributes and, per dim, the output size, scale and crop region.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/op.h"

namespace kiln::ops::resize {

enum class Mode { kNearest, kLinear, kCubic };
enum class CoordMode {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
  kTfCropAndResize,
  kTfHalfPixelForNn,  // opset 11 only
};
// kSimple is the pre-opset-11 rule (floor when upsampling, ceil when downsampling).
enum class NearestMode { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };
enum class AspectPolicy { kStretch, kNotLarger, kNotSmaller };

/// The node's attributes, with opset-dependent defaults applied.
struct Spec {
  Mode mode = Mode::kNearest;
  CoordMode coord = CoordMode::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0.0;
  bool antialias = false;
  AspectPolicy policy = AspectPolicy::kStretch;
  std::vector<int64_t> axes;  ///< raw `axes` attribute (empty = all dims)
};

Result<Spec> parse_spec(const ir::Node& node);

/// Where the node's scales / sizes / roi inputs sit (-1 = not an input at this opset).
struct InputSlots {
  int roi = -1, scales = -1, sizes = -1;
};
InputSlots input_slots(const ir::Node& node);

/// One dim of the resize. `in`/`out` are -1 when unknown.
struct AxisPlan {
  int64_t in = -1;
  int64_t out = -1;
  double scale = 1.0;  ///< the scale the coordinate transform uses
  double roi_start = 0.0, roi_end = 1.0;
  bool resized = false;  ///< false: this dim is copied unchanged
};

/// Values of the scales / sizes / roi inputs (nullopt = absent or empty).
struct PlanInputs {
  std::optional<std::vector<double>> scales;
  std::optional<std::vector<int64_t>> sizes;
  std::vector<double> roi;
};

/// Per-dim plans plus the order in which the resized axes are processed.
struct Plan {
  std::vector<AxisPlan> dims;
  std::vector<int64_t> axes;
};

/// Computes each dim's plan. `in_dims` may hold -1 for unknown dims.
Result<Plan> make_plan(const ir::Node& node, const Spec& spec, const Dims& in_dims, const PlanInputs& inputs);

/// Reads the scales/sizes/roi tensors (any may be null), validating dtypes.
Result<PlanInputs> read_plan_inputs(const ir::Node& node, const Tensor* roi, const Tensor* scales, const Tensor* sizes);

/// Runs the resize of `x` into the preallocated `y` (dims from the plan).
Status run_resize(const ir::Node& node, const Spec& spec, const Plan& plan, const Tensor& x, Tensor& y);

/// True when the float32 bilinear fast path covers this resize (only the last two dims change).
bool bilinear_f32_applies(const Spec& spec, const Plan& plan, const Tensor& x);

/// The float32 bilinear fast path, spread over `threads` threads.
Status run_bilinear_f32(const Spec& spec, const Plan& plan, const Tensor& x, Tensor& y, int threads);

}  // namespace kiln::ops::resize
