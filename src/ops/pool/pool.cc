// MaxPool (with optional Indices), AveragePool and LpPool over 1-3+ spatial dims:
// strides, dilations, explicit or automatic padding, ceil_mode. Registers the family.
#include <cmath>
#include <limits>
#include <type_traits>

#include "backends/cpu/thread_pool.h"
#include "base/dispatch.h"
#include "ops/pool/pool_internal.h"

namespace kiln::ops::pool {

namespace {

const char* kind_name(PoolKind k) {
  return k == PoolKind::kMax ? "MaxPool" : k == PoolKind::kAverage ? "AveragePool" : "LpPool";
}

}  // namespace

Result<PoolSetup> pool_setup(PoolKind kind, const ir::Attributes& attrs, const Dims& x) {
  auto fail = [](const std::string& m) { return Status(ErrorCode::kInvalidArgument, m); };
  if (x.size() < 3) return fail("X must have rank >= 3 ([N, C, spatial...]), got " + dims_to_string(x));
  PoolSetup s;
  s.kind = kind;
  const int64_t sp = static_cast<int64_t>(x.size()) - 2;
  std::string err = window::read_window_attrs(attrs, sp, nullptr, s.attrs);
  if (!err.empty()) return fail(err);
  err = window::compute_geometry(s.attrs, Dims(x.begin() + 2, x.end()), s.geo);
  if (!err.empty()) return fail(err);
  s.planes = x[0] * x[1];
  for (int64_t d = 0; d < sp; ++d) {
    s.in_count *= s.geo.in[d];
    s.out_count *= s.geo.out[d];
    s.k_count *= s.attrs.kernel[d];
  }
  s.count_include_pad = attrs.get_int("count_include_pad", 0) != 0;
  s.p = attrs.get_int("p", 2);
  if (kind == PoolKind::kLp && s.p < 1) return fail("p must be >= 1");
  int64_t order = attrs.get_int("storage_order", 0);
  if (order != 0 && order != 1) return fail("storage_order must be 0 or 1");
  s.column_major = order == 1;
  s.kcoords.resize(static_cast<size_t>(s.k_count * sp));
  for (int64_t k = 0; k < s.k_count; ++k) {
    int64_t rem = k;
    for (int64_t d = sp - 1; d >= 0; --d) {
      s.kcoords[k * sp + d] = rem % s.attrs.kernel[d];
      rem /= s.attrs.kernel[d];
    }
  }
  return s;
}

Status infer_pool(InferContext& ctx, PoolKind kind) {
  if (!ctx.has_input(0)) return ctx.error("needs input X");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined) {
    bool ok = dtype_is_float(t) || (kind == PoolKind::kMax && (t == DataType::kInt8 || t == DataType::kUInt8));
    if (!ok) return ctx.unsupported(std::string(kind_name(kind)) + " on " + dtype_name(t));
  }
  const Shape* x = ctx.input_shape(0);
  std::optional<Shape> out;
  if (x) {
    if (x->size() < 3) return ctx.error("X must have rank >= 3 ([N, C, spatial...]), got " + shape_to_string(*x));
    const int64_t sp = static_cast<int64_t>(x->size()) - 2;
    window::WindowAttrs wa;
    std::string err = window::read_window_attrs(ctx.attrs(), sp, nullptr, wa);
    if (!err.empty()) return ctx.error(err);
    Shape o{(*x)[0], (*x)[1]};
    for (int64_t d = 0; d < sp; ++d) {
      const Dim& in = (*x)[d + 2];
      if (in.known() && window::output_size(wa, d, in.value) < 0)
        return ctx.error("window of extent " + std::to_string(window::window_extent(wa, d)) +
                         " does not fit spatial dim " + std::to_string(d) + " of size " + in.to_string());
      o.push_back(window::output_dim(wa, d, in));
    }
    out = o;
  }
  ctx.set_output(0, t, out);
  if (kind == PoolKind::kMax && ctx.num_outputs() > 1) ctx.set_output(1, DataType::kInt64, out);
  return Status();
}

namespace {

// Pools planes [p0, p1). `idx` (MaxPool's Indices) may be null.
template <typename T>
void pool_planes(const PoolSetup& s, const T* x, T* y, int64_t* idx, int64_t p0, int64_t p1) {
  const int64_t sp = s.attrs.spatial;
  const auto in_strides = strides_of(s.geo.in);
  std::vector<int64_t> oc(sp, 0), start(sp), limit(sp);
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * s.in_count;
    std::fill(oc.begin(), oc.end(), 0);
    for (int64_t o = 0; o < s.out_count; ++o) {
      // count_include_pad counts taps up to the end of the explicit padding, not
      // the extra room ceil_mode adds.
      int64_t padded_taps = 1;
      for (int64_t d = 0; d < sp; ++d) {
        start[d] = oc[d] * s.attrs.strides[d] - s.geo.pad_begin[d];
        limit[d] = s.geo.in[d] + s.geo.pad_end[d];
        int64_t taps = 0;
        for (int64_t k = 0; k < s.attrs.kernel[d]; ++k)
          if (start[d] + k * s.attrs.dilations[d] < limit[d]) ++taps;
        padded_taps *= taps;
      }
      double acc = 0;
      int64_t valid = 0, best_pos = -1;
      T best{};
      for (int64_t k = 0; k < s.k_count; ++k) {
        int64_t off = 0, col_off = 0, col_stride = 1;
        bool inside = true;
        for (int64_t d = 0; d < sp && inside; ++d) {
          int64_t pos = start[d] + s.kcoords[k * sp + d] * s.attrs.dilations[d];
          inside = pos >= 0 && pos < s.geo.in[d];
          off += pos * in_strides[d];
          col_off += pos * col_stride;
          col_stride *= s.geo.in[d];
        }
        if (!inside) continue;
        const T v = xp[off];
        ++valid;
        if (s.kind == PoolKind::kMax) {
          if constexpr (!std::is_integral_v<T>) {
            if (std::isnan(static_cast<double>(v))) continue;
          }
          if (best_pos < 0 || static_cast<double>(v) > static_cast<double>(best)) {
            best = v;
            best_pos = s.column_major ? col_off : off;
          }
        } else if (s.kind == PoolKind::kAverage) {
          acc += static_cast<double>(v);
        } else {
          acc += std::pow(std::fabs(static_cast<double>(v)), static_cast<double>(s.p));
        }
      }
      T* out = y + plane * s.out_count + o;
      if (s.kind == PoolKind::kMax) {
        if (best_pos < 0) {
          if constexpr (std::is_integral_v<T>) best = std::numeric_limits<T>::lowest();
          else best = static_cast<T>(valid ? std::numeric_limits<float>::quiet_NaN()
                                           : -std::numeric_limits<float>::infinity());
        }
        *out = best;
        if (idx) idx[plane * s.out_count + o] = best_pos < 0 ? -1 : plane * s.in_count + best_pos;
      } else {
        double r;
        if (s.kind == PoolKind::kAverage) {
          int64_t count = s.count_include_pad ? padded_taps : valid;
          r = count > 0 ? acc / static_cast<double>(count) : 0.0;
        } else {
          r = std::pow(acc, 1.0 / static_cast<double>(s.p));
        }
        if constexpr (std::is_same_v<T, double>) *out = r;
        else *out = static_cast<T>(static_cast<float>(r));
      }
      for (int64_t d = sp - 1; d >= 0; --d) {
        if (++oc[d] < s.geo.out[d]) break;
        oc[d] = 0;
      }
    }
  }
}

// Taps k in [lo, hi) of one window dim land inside [0, in); `padded` counts those
// before the end of the explicit padding (count_include_pad).
struct TapRange {
  int64_t lo, hi, padded;
};

TapRange tap_range(int64_t start, int64_t k, int64_t d, int64_t in, int64_t pad_end) {
  TapRange r{0, 0, 0};
  r.lo = start >= 0 ? 0 : (-start + d - 1) / d;
  r.hi = start >= in ? 0 : std::min(k, (in - 1 - start) / d + 1);
  r.hi = std::max(r.hi, r.lo);
  r.padded = start >= in + pad_end ? 0 : std::min(k, (in + pad_end - 1 - start) / d + 1);
  return r;
}

// Float32 max / average pooling over 1-D or 2-D windows without Indices: per-dim
// tap ranges replace the per-tap bounds checks of the generic loop.
void pool2d_planes_f32(const PoolSetup& s, const float* x, float* y, int64_t p0, int64_t p1) {
  const bool one_d = s.attrs.spatial == 1;
  const int64_t h = one_d ? 1 : s.geo.in[0], w = s.geo.in[one_d ? 0 : 1];
  const int64_t oh = one_d ? 1 : s.geo.out[0], ow = s.geo.out[one_d ? 0 : 1];
  const int64_t kh = one_d ? 1 : s.attrs.kernel[0], kw = s.attrs.kernel[one_d ? 0 : 1];
  const int64_t sh = one_d ? 1 : s.attrs.strides[0], sw = s.attrs.strides[one_d ? 0 : 1];
  const int64_t dh = one_d ? 1 : s.attrs.dilations[0], dw = s.attrs.dilations[one_d ? 0 : 1];
  const int64_t ph = one_d ? 0 : s.geo.pad_begin[0], pw = s.geo.pad_begin[one_d ? 0 : 1];
  const int64_t peh = one_d ? 0 : s.geo.pad_end[0], pew = s.geo.pad_end[one_d ? 0 : 1];
  std::vector<TapRange> cols(static_cast<size_t>(ow));
  for (int64_t j = 0; j < ow; ++j) cols[j] = tap_range(j * sw - pw, kw, dw, w, pew);
  for (int64_t plane = p0; plane < p1; ++plane) {
    const float* xp = x + plane * h * w;
    float* yp = y + plane * oh * ow;
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t hs = i * sh - ph;
      const TapRange rr = tap_range(hs, kh, dh, h, peh);
      for (int64_t j = 0; j < ow; ++j) {
        const TapRange& cr = cols[j];
        const int64_t ws = j * sw - pw;
        float best = -std::numeric_limits<float>::infinity();
        int64_t nans = 0;
        double sum = 0;
        for (int64_t a = rr.lo; a < rr.hi; ++a) {
          const float* row = xp + (hs + a * dh) * w + ws;
          if (s.kind == PoolKind::kMax) {
            for (int64_t b = cr.lo; b < cr.hi; ++b) {
              const float v = row[b * dw];
              best = v > best ? v : best;  // never picks NaN
              nans += v != v;
            }
          } else {
            for (int64_t b = cr.lo; b < cr.hi; ++b) sum += row[b * dw];
          }
        }
        const int64_t valid = (rr.hi - rr.lo) * (cr.hi - cr.lo);
        if (s.kind == PoolKind::kMax) {
          // NaN inputs are skipped unless the window holds nothing else (as the reference does).
          yp[i * ow + j] = valid > 0 && nans == valid ? std::numeric_limits<float>::quiet_NaN() : best;
        } else {
          const int64_t count = s.count_include_pad ? rr.padded * cr.padded : valid;
          yp[i * ow + j] = count > 0 ? static_cast<float>(sum / static_cast<double>(count)) : 0.f;
        }
      }
    }
  }
}

Status run_pool(KernelContext& ctx, PoolKind kind, bool parallel) {
  const Tensor& x = ctx.input(0);
  auto s = pool_setup(kind, ctx.attrs(), x.dims());
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor& y = ctx.output(0);
  int64_t* idx = kind == PoolKind::kMax && ctx.has_output(1) ? ctx.output(1).data_as<int64_t>() : nullptr;
  auto body = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    if (!parallel) return pool_planes<T>(*s, xp, yp, idx, 0, s->planes);
    if constexpr (std::is_same_v<T, float>) {
      if (kind != PoolKind::kLp && !idx && s->attrs.spatial <= 2) {
        cpu::parallel_for(s->planes, [&](int64_t p0, int64_t p1) { pool2d_planes_f32(*s, xp, yp, p0, p1); },
                          ctx.num_threads());
        return;
      }
    }
    cpu::parallel_for(s->planes, [&](int64_t p0, int64_t p1) { pool_planes<T>(*s, xp, yp, idx, p0, p1); },
                      ctx.num_threads());
  };
  if (kind == PoolKind::kMax) {
    KILN_DISPATCH_NUMERIC(x.dtype(), T, body(static_cast<T*>(nullptr)));
  } else {
    KILN_DISPATCH_FLOAT(x.dtype(), T, body(static_cast<T*>(nullptr)));
  }
  return Status();
}

Status infer_max(InferContext& ctx) { return infer_pool(ctx, PoolKind::kMax); }
Status infer_avg(InferContext& ctx) { return infer_pool(ctx, PoolKind::kAverage); }
Status infer_lp(InferContext& ctx) { return infer_pool(ctx, PoolKind::kLp); }
Status ref_avg(KernelContext& ctx) { return run_pool(ctx, PoolKind::kAverage, false); }
Status ref_lp(KernelContext& ctx) { return run_pool(ctx, PoolKind::kLp, false); }
Status par_max(KernelContext& ctx) { return run_pool(ctx, PoolKind::kMax, true); }
Status par_avg(KernelContext& ctx) { return run_pool(ctx, PoolKind::kAverage, true); }
Status par_lp(KernelContext& ctx) { return run_pool(ctx, PoolKind::kLp, true); }

bool applies_f32(const ir::Node&, const std::vector<TensorType>& inputs) {
  return !inputs.empty() && inputs[0].dtype == DataType::kFloat32;
}

}  // namespace

Status ref_max(KernelContext& ctx) { return run_pool(ctx, PoolKind::kMax, false); }

void register_global_pool_ops(OpRegistry& r);
void register_max_unpool_ops(OpRegistry& r);

}  // namespace kiln::ops::pool

namespace kiln::ops {

void register_pool_ops(OpRegistry& r) {
  using namespace pool;
  r.add({.name = "MaxPool", .infer = infer_max, .ref = ref_max, .fast = {{"cpu.parallel", par_max, applies_f32}}});
  r.add({.name = "AveragePool", .infer = infer_avg, .ref = ref_avg, .fast = {{"cpu.parallel", par_avg, applies_f32}}});
  r.add({.name = "LpPool", .infer = infer_lp, .ref = ref_lp, .fast = {{"cpu.parallel", par_lp, applies_f32}}});
  register_global_pool_ops(r);
  register_max_unpool_ops(r);
}

}  // namespace kiln::ops
