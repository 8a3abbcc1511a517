// Resize kernels: nearest is a gather; linear and cubic are separable filters
// applied one axis at a time in double precision (as the ONNX reference does).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/thread_pool.h"
#include "base/dispatch.h"
#include "ops/common.h"
#include "ops/resize/resize_plan.h"

namespace kiln::ops::resize {
namespace {

/// Maps output coordinate `o` to a (fractional) input coordinate.
double source_coord(const Spec& spec, const AxisPlan& p, int64_t o) {
  double in = static_cast<double>(p.in), s = p.scale, x = static_cast<double>(o);
  // The reference uses the unrounded output length (scale * in) here, not `out`.
  double out_f = s * in;
  switch (spec.coord) {
    case CoordMode::kAlignCorners:
      return out_f == 1.0 ? 0.0 : x * (in - 1) / (out_f - 1);
    case CoordMode::kAsymmetric:
      return x / s;
    case CoordMode::kTfCropAndResize: {
      double span = (p.roi_end - p.roi_start) * (in - 1);
      double v = out_f == 1.0 ? span / 2 : x * span / (out_f - 1);
      return v + p.roi_start * (in - 1);
    }
    case CoordMode::kPytorchHalfPixel:
      return out_f == 1.0 ? -0.5 : (x + 0.5) / s - 0.5;
    case CoordMode::kHalfPixel:
      return (x + 0.5) / s - 0.5;
    case CoordMode::kHalfPixelSymmetric: {
      double adjustment = static_cast<double>(p.out) / out_f;
      double offset = in / 2 * (1 - adjustment);
      return offset + (x + 0.5) / s - 0.5;
    }
    case CoordMode::kTfHalfPixelForNn:
      return (x + 0.5) / s;
  }
  return x;
}

bool extrapolated(const Spec& spec, const AxisPlan& p, double x) {
  return spec.coord == CoordMode::kTfCropAndResize && (x < 0 || x > static_cast<double>(p.in - 1));
}

/// Keeps huge coordinates (from extreme roi/scales) in a range where integer
/// conversion is defined; every tap there clamps to the same edge anyway.
double tame(double x, int64_t in, int64_t taps) {
  double lo = -static_cast<double>(taps + 2), hi = static_cast<double>(in + taps + 2);
  if (std::isnan(x)) return lo;
  return std::clamp(x, lo, hi);
}

/// Nearest source index along one axis, before clamping (kExtrap = outside crop).
constexpr int64_t kExtrap = std::numeric_limits<int64_t>::min();

int64_t nearest_index(const Spec& spec, const AxisPlan& p, int64_t o) {
  double x = source_coord(spec, p, o);
  if (extrapolated(spec, p, x)) return kExtrap;
  x = tame(x, p.in, 2);
  double f = std::floor(x), frac = x - f;
  int64_t i;
  if (frac == 0) {
    i = static_cast<int64_t>(f);
  } else {
    switch (spec.nearest) {
      case NearestMode::kRoundPreferFloor:
        i = static_cast<int64_t>(frac <= 0.5 ? f : f + 1);
        break;
      case NearestMode::kRoundPreferCeil:
        i = static_cast<int64_t>(frac < 0.5 ? f : f + 1);
        break;
      case NearestMode::kFloor:
        i = static_cast<int64_t>(f);
        break;
      case NearestMode::kCeil:
        i = static_cast<int64_t>(f + 1);
        break;
      case NearestMode::kSimple:
        i = static_cast<int64_t>(p.scale < 1.0 ? std::ceil(x) : std::trunc(x));
        break;
    }
  }
  return i;
}

template <typename T>
T saturate(double v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    double hi = std::is_same_v<T, float>  ? std::numeric_limits<float>::max()
                : std::is_same_v<T, Half> ? 65504.0
                                          : 3.3895313892515355e38;
    if (!std::isnan(v)) v = std::clamp(v, -hi, hi);
    return T(static_cast<float>(v));
  } else {
    if (std::isnan(v)) return T(0);
    v = std::nearbyint(v);  // round half to even, like numpy's round
    v = std::clamp(v, static_cast<double>(std::numeric_limits<T>::lowest()),
                   static_cast<double>(std::numeric_limits<T>::max()));
    return static_cast<T>(v);
  }
}

template <typename T>
double as_double(T v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return static_cast<float>(v);
  else
    return static_cast<double>(v);
}

Status run_nearest(const Spec& spec, const Plan& plan, const Tensor& x, Tensor& y) {
  size_t r = plan.dims.size();
  auto in_strides = strides_of(x.dims());
  // Per output dim: the input offset contribution of each output index (or a sentinel).
  constexpr int64_t kZero = kExtrap + 1;  // outside with exclude_outside: contributes 0
  std::vector<std::vector<int64_t>> offs(r);
  for (size_t d = 0; d < r; ++d) {
    const AxisPlan& p = plan.dims[d];
    offs[d].resize(static_cast<size_t>(p.out));
    for (int64_t o = 0; o < p.out; ++o) {
      int64_t i = p.resized ? nearest_index(spec, p, o) : o;
      if (i != kExtrap && spec.exclude_outside && (i < 0 || i >= p.in))
        i = kZero;
      else if (i != kExtrap)
        i = std::clamp<int64_t>(i, 0, p.in - 1) * in_strides[d];
      offs[d][o] = i;
    }
  }
  int64_t total = y.numel();
  if (total == 0) return Status();
  if (r == 0) {
    std::memcpy(y.data(), x.data(), x.nbytes());
    return Status();
  }
  KILN_DISPATCH_ALL(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    T extrap_v = static_cast<T>(saturate<std::conditional_t<std::is_same_v<T, bool>, double, T>>(spec.extrapolation));
    T zero_v = static_cast<T>(saturate<std::conditional_t<std::is_same_v<T, bool>, double, T>>(0.0));
    // Walk output rows (all dims but the last); the last dim's offsets come from a table.
    size_t last = r - 1;
    int64_t row_len = plan.dims[last].out;
    const std::vector<int64_t>& col = offs[last];
    std::vector<int64_t> idx(r, 0);
    for (int64_t e = 0; e < total; e += row_len) {
      int64_t base = 0;
      int special = 0;  // 1: extrapolate, 2: zero
      for (size_t d = 0; d < last; ++d) {
        int64_t v = offs[d][idx[d]];
        if (v == kExtrap)
          special = 1;
        else if (v == kZero)
          special = special ? special : 2;
        else
          base += v;
      }
      T* row = yp + e;
      for (int64_t j = 0; j < row_len; ++j) {
        int64_t v = col[j];
        int s = special ? special : v == kExtrap ? 1 : v == kZero ? 2 : 0;
        row[j] = s == 1 ? extrap_v : s == 2 ? zero_v : xp[base + v];
      }
      for (size_t d = last; d-- > 0;) {
        if (++idx[d] < plan.dims[d].out) break;
        idx[d] = 0;
      }
    }
  });
  return Status();
}

/// The filter taps of one output position along one axis.
struct Taps {
  int64_t n = 0;               ///< taps per output position
  std::vector<int64_t> index;  ///< [out * n], clamped to the input
  std::vector<double> weight;  ///< [out * n]
  std::vector<char> extrap;    ///< [out]: 1 = extrapolation value
};

double cubic_kernel(double x, double a) {
  x = std::fabs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

Taps make_taps(const Spec& spec, const AxisPlan& p) {
  Taps t;
  // Antialiasing stretches the filter by 1/scale when downsampling.
  double s = spec.antialias ? std::min(p.scale, 1.0) : 1.0;
  int64_t start;
  if (spec.mode == Mode::kLinear)
    start = static_cast<int64_t>(std::floor(-1.0 / s)) + 1;
  else
    start = static_cast<int64_t>(std::floor(-2.0 / s)) + 1;
  t.n = 2 - 2 * start;
  t.index.resize(static_cast<size_t>(p.out * t.n));
  t.weight.resize(t.index.size());
  t.extrap.assign(static_cast<size_t>(p.out), 0);
  for (int64_t o = 0; o < p.out; ++o) {
    double x = source_coord(spec, p, o);
    if (extrapolated(spec, p, x)) t.extrap[o] = 1;
    x = tame(x, p.in, t.n);
    // The left neighbour is preferred: an integral x sits at ratio 1 of the tap before it.
    double f = std::floor(x);
    double base = x == f ? f - 1 : f;
    double ratio = x - base;
    int64_t* idx = &t.index[o * t.n];
    double* w = &t.weight[o * t.n];
    double sum = 0;
    for (int64_t j = 0; j < t.n; ++j) {
      double k = static_cast<double>(start + j);
      if (!spec.antialias && spec.mode == Mode::kCubic) {
        // The ONNX reference's closed form of Keys' kernel at the four taps.
        double a = spec.cubic_a, r1 = ratio + 1, r0 = 1 - ratio, r2 = r0 + 1;
        double c[4] = {((a * r1 - 5 * a) * r1 + 8 * a) * r1 - 4 * a, ((a + 2) * ratio - (a + 3)) * ratio * ratio + 1,
                       ((a + 2) * r0 - (a + 3)) * r0 * r0 + 1, ((a * r2 - 5 * a) * r2 + 8 * a) * r2 - 4 * a};
        w[j] = c[j];
      } else if (spec.mode == Mode::kLinear) {
        w[j] = std::clamp(1.0 - std::fabs((k - ratio) * s), 0.0, 1.0);
      } else {
        w[j] = cubic_kernel(s * (k - ratio), spec.cubic_a);
      }
      sum += w[j];
      idx[j] = static_cast<int64_t>(base) + start + j;
    }
    if (spec.antialias && sum != 0)
      for (int64_t j = 0; j < t.n; ++j) w[j] /= sum;
    if (spec.exclude_outside) {
      double kept = 0;
      for (int64_t j = 0; j < t.n; ++j) {
        if (idx[j] < 0 || idx[j] >= p.in) w[j] = 0;
        kept += w[j];
      }
      if (kept == 0) kept = 1;
      for (int64_t j = 0; j < t.n; ++j) w[j] /= kept;
    }
    for (int64_t j = 0; j < t.n; ++j) idx[j] = std::clamp<int64_t>(idx[j], 0, p.in - 1);
  }
  return t;
}

/// Resizes `src` (dims `d`) along `axis` into a new buffer.
std::vector<double> filter_axis(const std::vector<double>& src, Dims& d, size_t axis, const Taps& t, const AxisPlan& p,
                                double extrapolation) {
  int64_t outer = 1, inner = 1;
  for (size_t i = 0; i < axis; ++i) outer *= d[i];
  for (size_t i = axis + 1; i < d.size(); ++i) inner *= d[i];
  int64_t in_n = d[axis], out_n = p.out;
  std::vector<double> dst(static_cast<size_t>(outer * out_n * inner));
  for (int64_t b = 0; b < outer; ++b) {
    const double* sb = src.data() + b * in_n * inner;
    double* db = dst.data() + b * out_n * inner;
    for (int64_t o = 0; o < out_n; ++o) {
      double* row = db + o * inner;
      if (t.extrap[o]) {
        std::fill(row, row + inner, extrapolation);
        continue;
      }
      std::fill(row, row + inner, 0.0);
      for (int64_t j = 0; j < t.n; ++j) {
        double w = t.weight[o * t.n + j];
        if (w == 0) continue;
        const double* sr = sb + t.index[o * t.n + j] * inner;
        for (int64_t i = 0; i < inner; ++i) row[i] += w * sr[i];
      }
    }
  }
  d[axis] = out_n;
  return dst;
}

bool is_identity(const AxisPlan& p, const Spec& spec) {
  if (!p.resized) return true;
  bool roi_full = spec.coord != CoordMode::kTfCropAndResize ||
                  (std::fabs(p.roi_start) <= 1e-9 && std::fabs(p.roi_end - 1.0) <= 1e-9);
  return std::fabs(p.scale - 1.0) <= 1e-9 && p.out == p.in && roi_full;
}

Status run_filter(const Spec& spec, const Plan& plan, const Tensor& x, Tensor& y) {
  if (y.numel() == 0) return Status();
  KILN_DISPATCH_NUMERIC(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    std::vector<double> buf(static_cast<size_t>(x.numel()));
    for (int64_t i = 0; i < x.numel(); ++i) buf[i] = as_double(xp[i]);
    Dims d = x.dims();
    for (int64_t axis : plan.axes) {
      const AxisPlan& p = plan.dims[axis];
      if (is_identity(p, spec)) continue;
      buf = filter_axis(buf, d, static_cast<size_t>(axis), make_taps(spec, p), p, spec.extrapolation);
    }
    T* yp = y.data_as<T>();
    for (int64_t i = 0; i < y.numel(); ++i) yp[i] = saturate<T>(buf[i]);
  });
  return Status();
}

/// lerp that ignores zero-weight taps (so inf/NaN there does not leak in, as in filter_axis).
inline float mix(float w0, float a, float w1, float b) {
  if (w0 == 0) return w1 * b;
  if (w1 == 0) return w0 * a;
  return w0 * a + w1 * b;
}

}  // namespace

bool bilinear_f32_applies(const Spec& spec, const Plan& plan, const Tensor& x) {
  size_t r = plan.dims.size();
  if (x.dtype() != DataType::kFloat32 || spec.mode != Mode::kLinear || spec.antialias || spec.exclude_outside ||
      spec.coord == CoordMode::kTfCropAndResize || r < 2)
    return false;
  for (size_t d = 0; d + 2 < r; ++d)
    if (!is_identity(plan.dims[d], spec)) return false;
  return true;
}

Status run_bilinear_f32(const Spec& spec, const Plan& plan, const Tensor& x, Tensor& y, int threads) {
  size_t r = plan.dims.size();
  const AxisPlan& ph = plan.dims[r - 2];
  const AxisPlan& pw = plan.dims[r - 1];
  if (y.numel() == 0) return Status();
  auto taps_of = [&](const AxisPlan& p) {
    if (!is_identity(p, spec)) return make_taps(spec, p);
    Taps t;  // copy: index o with weights (1, 0)
    t.n = 2;
    for (int64_t o = 0; o < p.out; ++o)
      t.index.insert(t.index.end(), {o, o}), t.weight.insert(t.weight.end(), {1.0, 0.0});
    t.extrap.assign(static_cast<size_t>(p.out), 0);
    return t;
  };
  Taps th = taps_of(ph), tw = taps_of(pw);
  int64_t H = ph.in, W = pw.in, OH = ph.out, OW = pw.out;
  int64_t planes = x.numel() / std::max<int64_t>(H * W, 1);
  const float* xp = x.data_as<float>();
  float* yp = y.data_as<float>();
  std::vector<float> wh(th.weight.begin(), th.weight.end()), ww(tw.weight.begin(), tw.weight.end());
  cpu::parallel_for(
      planes * OH,
      [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
          int64_t plane = row / OH, oh = row % OH;
          const float* a = xp + plane * H * W + th.index[oh * 2] * W;
          const float* b = xp + plane * H * W + th.index[oh * 2 + 1] * W;
          float h0 = wh[oh * 2], h1 = wh[oh * 2 + 1];
          float* out = yp + row * OW;
          // Height first, then width: the order the separable reference uses.
          for (int64_t ow = 0; ow < OW; ++ow) {
            int64_t j0 = tw.index[ow * 2], j1 = tw.index[ow * 2 + 1];
            out[ow] = mix(ww[ow * 2], mix(h0, a[j0], h1, b[j0]), ww[ow * 2 + 1], mix(h0, a[j1], h1, b[j1]));
          }
        }
      },
      threads, std::max<int64_t>(1, 8192 / std::max<int64_t>(OW, 1)));
  return Status();
}

Status run_resize(const ir::Node& node, const Spec& spec, const Plan& plan, const Tensor& x, Tensor& y) {
  for (size_t d = 0; d < plan.dims.size(); ++d)
    if (plan.dims[d].out != y.dim(static_cast<int64_t>(d)))
      return Status(ErrorCode::kInternal, "node " + node.describe() + ": output dims do not match the plan");
  if (spec.mode == Mode::kNearest) return run_nearest(spec, plan, x, y);
  return run_filter(spec, plan, x, y);
}

}  // namespace kiln::ops::resize
