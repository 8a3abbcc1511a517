// GridSample: samples X at the normalized positions given by `grid` with
// nearest, (bi/tri)linear or cubic interpolation and zeros/border/reflection padding.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops {
namespace {

enum class GsMode { kNearest, kLinear, kCubic };
enum class GsPad { kZeros, kBorder, kReflection };

struct GsSpec {
  GsMode mode = GsMode::kLinear;
  GsPad pad = GsPad::kZeros;
  bool align = false;
};

Result<GsSpec> parse_gs(const ir::Node& node) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  GsSpec s;
  // Opset 20 renamed bilinear/bicubic to linear/cubic; accept both spellings.
  std::string mode = node.attrs.get_string("mode", node.opset >= 20 ? "linear" : "bilinear");
  if (mode == "bilinear" || mode == "linear")
    s.mode = GsMode::kLinear;
  else if (mode == "nearest")
    s.mode = GsMode::kNearest;
  else if (mode == "bicubic" || mode == "cubic")
    s.mode = GsMode::kCubic;
  else
    return err("unsupported mode '" + mode + "'");
  std::string pad = node.attrs.get_string("padding_mode", "zeros");
  if (pad == "zeros")
    s.pad = GsPad::kZeros;
  else if (pad == "border")
    s.pad = GsPad::kBorder;
  else if (pad == "reflection")
    s.pad = GsPad::kReflection;
  else
    return err("unsupported padding_mode '" + pad + "'");
  s.align = node.attrs.get_int("align_corners", 0) != 0;
  return s;
}

bool float_type(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

Status infer_grid_sample(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(parse_gs(ctx.node()).status());
  DataType dt = ctx.input_dtype(0);
  if (!float_type(dt)) return ctx.unsupported(std::string("input dtype ") + dtype_name(dt) + " is not supported");
  if (!float_type(ctx.input_dtype(1))) return ctx.error("grid must be a float tensor");
  const Shape* x = ctx.input_shape(0);
  const Shape* g = ctx.input_shape(1);
  if (!x || !g) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  if (x->size() < 3 || g->size() != x->size()) return ctx.error("X and grid must have the same rank >= 3");
  if (ctx.opset() < 20 && x->size() != 4) return ctx.error("GridSample before opset 20 takes 4-D input only");
  const Dim& last = g->back();
  if (last.known() && last.value != static_cast<int64_t>(x->size()) - 2)
    return ctx.error("grid's last dim must be " + std::to_string(x->size() - 2));
  Shape out{(*x)[0], (*x)[1]};
  for (size_t i = 1; i + 1 < g->size(); ++i) out.push_back((*g)[i]);
  ctx.set_output(0, dt, out);
  return Status();
}

/// Reflects x into [lo, hi] by bouncing off the borders (periodic, no integer overflow).
float reflect(float x, float lo, float hi) {
  float rng = hi - lo;
  if (rng <= 0) return lo;
  if (x >= lo && x <= hi) return x;
  float dx = x < lo ? lo - x : x - hi;
  float rem = std::fmod(dx, 2 * rng);
  bool even = rem < rng;
  float r = even ? rem : rem - rng;
  if (x < lo) return even ? lo + r : hi - r;
  return even ? hi - r : lo + r;
}

void cubic_coeffs(float t, float c[4]) {
  const float a = -0.75f;
  float t1 = t + 1, t0 = 1 - t, t2 = 2 - t;
  c[0] = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a;
  c[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
  c[2] = ((a + 2) * t0 - (a + 3)) * t0 * t0 + 1;
  c[3] = ((a * t2 - 5 * a) * t2 + 8 * a) * t2 - 4 * a;
}

Status ref_grid_sample(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(GsSpec spec, parse_gs(ctx.node()));
  const Tensor& x = ctx.input(0);
  const Tensor& grid = ctx.input(1);
  Tensor& y = ctx.output(0);
  size_t r = static_cast<size_t>(x.rank() - 2);
  if (grid.dim(0) != x.dim(0)) return ctx.error("grid batch differs from X batch");
  if (grid.dims().back() != static_cast<int64_t>(r)) return ctx.error("grid's last dim does not match X's rank");
  int64_t N = x.dim(0), C = x.dim(1);
  Dims sp(x.dims().begin() + 2, x.dims().end());
  auto xs = strides_of(x.dims());
  for (int64_t d : sp)
    if (d == 0 && y.numel() > 0) return ctx.error("cannot sample from an input with an empty spatial dim");
  int64_t points = 1;
  for (size_t i = 1; i + 1 < grid.dims().size(); ++i) points *= grid.dim(static_cast<int64_t>(i));
  // Per dim taps: source index (before padding) and weight.
  int taps = spec.mode == GsMode::kNearest ? 1 : spec.mode == GsMode::kLinear ? 2 : 4;
  std::vector<std::vector<int64_t>> tap_idx(r, std::vector<int64_t>(taps));
  std::vector<std::vector<float>> tap_w(r, std::vector<float>(taps));
  int64_t combos = 1;
  for (size_t d = 0; d < r; ++d) combos *= taps;
  std::vector<int64_t> comb_off(combos);
  std::vector<double> comb_w(combos);
  std::vector<bool> comb_zero(combos);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t p = 0; p < points; ++p) {
      for (size_t d = 0; d < r; ++d) {
        float len = static_cast<float>(sp[d]);
        // Grid components run innermost dim first (x, y, z).
        float g = static_cast<float>(grid.get_as_double((n * points + p) * static_cast<int64_t>(r) + (r - 1 - d)));
        float v = spec.align ? (g + 1) / 2.0f * (len - 1) : ((g + 1) * len - 1) / 2.0f;
        float lo = spec.align ? 0.f : -0.5f, hi = spec.align ? len - 1 : len - 0.5f;
        if (std::isnan(v)) v = lo - 16;
        if (spec.mode == GsMode::kNearest) v = std::nearbyint(v);
        if (v < lo || v > hi) {
          if (spec.pad == GsPad::kBorder)
            v = std::clamp(v, 0.f, len - 1);
          else if (spec.pad == GsPad::kReflection)
            v = reflect(v, lo, hi);
        }
        v = std::clamp(v, -len - 8, 2 * len + 8);  // far enough out that every tap pads
        if (spec.mode == GsMode::kNearest) {
          tap_idx[d][0] = static_cast<int64_t>(v);
          tap_w[d][0] = 1.f;
          continue;
        }
        float f = std::floor(v);
        int64_t i0 = static_cast<int64_t>(f);
        float t = v - f;
        if (spec.mode == GsMode::kLinear) {
          tap_idx[d] = {i0, i0 + 1};
          tap_w[d] = {1 - t, t};
        } else {
          float c[4];
          cubic_coeffs(t, c);
          tap_idx[d] = {i0 - 1, i0, i0 + 1, i0 + 2};
          tap_w[d] = {c[0], c[1], c[2], c[3]};
        }
      }
      // Combine the per-dim taps into input offsets, applying the padding rule to indices.
      for (int64_t k = 0; k < combos; ++k) {
        int64_t rem = k, off = 0;
        double w = 1;
        bool zero = false;
        for (size_t d = r; d-- > 0;) {
          int t = static_cast<int>(rem % taps);
          rem /= taps;
          int64_t i = tap_idx[d][t];
          if (i < 0 || i >= sp[d]) {
            if (spec.pad == GsPad::kZeros)
              zero = true;
            else if (spec.pad == GsPad::kBorder)
              i = std::clamp<int64_t>(i, 0, sp[d] - 1);
            else {
              float lo = spec.align ? 0.f : -0.5f, hi = spec.align ? sp[d] - 1.f : sp[d] - 0.5f;
              i = std::clamp<int64_t>(static_cast<int64_t>(reflect(static_cast<float>(i), lo, hi)), 0, sp[d] - 1);
            }
          }
          off += i * xs[2 + d];
          w *= tap_w[d][t];
        }
        comb_off[k] = off, comb_w[k] = w, comb_zero[k] = zero;
      }
      for (int64_t c = 0; c < C; ++c) {
        int64_t base = n * xs[0] + c * xs[1];
        double acc = 0;
        for (int64_t k = 0; k < combos; ++k)
          if (!comb_zero[k]) acc += comb_w[k] * x.get_as_double(base + comb_off[k]);
        y.set_from_double((n * C + c) * points + p, acc);
      }
    }
  }
  return Status();
}

}  // namespace

void register_grid_sample_ops(OpRegistry& r) {
  r.add({.name = "GridSample", .infer = infer_grid_sample, .ref = ref_grid_sample, .min_opset = 16});
}

}  // namespace kiln::ops
