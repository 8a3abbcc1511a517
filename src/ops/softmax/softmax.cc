// Softmax, LogSoftmax and Hardmax. Before opset 13 the input is coerced to 2-D
// at `axis` ([prod(d[:axis]), prod(d[axis:])]) and normalized over the whole
// second dim; from opset 13 only the single `axis` is normalized.
#include <cmath>
#include <limits>
#include <type_traits>

#include "backends/cpu/thread_pool.h"
#include "base/dispatch.h"
#include "ops/common.h"

namespace kiln::ops {

namespace {

enum class Kind { kSoftmax, kLogSoftmax, kHardmax };

// X viewed as [outer, len, inner]; normalization runs over len.
struct Span {
  int64_t outer = 1, len = 1, inner = 1;
};

int64_t default_axis(int opset) { return opset >= 13 ? -1 : 1; }

Result<Span> span_of(const Dims& x, int64_t axis_attr, int opset) {
  const int64_t rank = static_cast<int64_t>(x.size());
  // Opset < 13 allows axis == rank - 1 .. -rank as well; both need rank >= 1.
  auto axis = normalize_axis(axis_attr, rank);
  if (!axis)
    return Status(ErrorCode::kInvalidArgument,
                  "axis " + std::to_string(axis_attr) + " is out of range for rank " + std::to_string(rank));
  Span s;
  for (int64_t d = 0; d < *axis; ++d) s.outer *= x[d];
  if (opset >= 13) {
    s.len = x[*axis];
    for (int64_t d = *axis + 1; d < rank; ++d) s.inner *= x[d];
  } else {
    for (int64_t d = *axis; d < rank; ++d) s.len *= x[d];
  }
  return s;
}

Status infer_softmax(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("needs input");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(ctx.node().op_type + " on " + dtype_name(t));
  if (const Shape* x = ctx.input_shape(0)) {
    int64_t axis = ctx.attrs().get_int("axis", default_axis(ctx.opset()));
    if (!normalize_axis(axis, static_cast<int64_t>(x->size())))
      return ctx.error("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(x->size()));
  }
  ctx.set_output(0, t, ctx.input(0).shape);
  return Status();
}

template <typename T>
void store(T* p, int64_t i, double v) {
  if constexpr (std::is_same_v<T, double>) p[i] = v;
  else p[i] = static_cast<T>(static_cast<float>(v));
}

// Reference: rows [r0, r1) of outer*inner, in double.
template <typename T>
void softmax_rows(Kind kind, const Span& s, const T* x, T* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t base = (r / s.inner) * s.len * s.inner + r % s.inner;
    double mx = -std::numeric_limits<double>::infinity();
    int64_t arg = 0;
    for (int64_t k = 0; k < s.len; ++k) {
      double v = static_cast<double>(x[base + k * s.inner]);
      if (v > mx) {
        mx = v;
        arg = k;
      }
    }
    if (kind == Kind::kHardmax) {
      for (int64_t k = 0; k < s.len; ++k) store(y, base + k * s.inner, k == arg ? 1.0 : 0.0);
      continue;
    }
    if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
      if (kind == Kind::kSoftmax) {
        // 16-bit floats round after each step, as numpy does in the ONNX reference
        // (x - max, exp, the float-accumulated sum, the division).
        float sum16 = 0.f;
        for (int64_t k = 0; k < s.len; ++k) {
          T t = static_cast<T>(static_cast<float>(x[base + k * s.inner]) - static_cast<float>(mx));
          T e = static_cast<T>(std::exp(static_cast<float>(t)));
          y[base + k * s.inner] = e;
          sum16 += static_cast<float>(e);
        }
        const float total = static_cast<float>(static_cast<T>(sum16));
        for (int64_t k = 0; k < s.len; ++k)
          y[base + k * s.inner] = static_cast<T>(static_cast<float>(y[base + k * s.inner]) / total);
        continue;
      }
    }
    double sum = 0;
    for (int64_t k = 0; k < s.len; ++k) sum += std::exp(static_cast<double>(x[base + k * s.inner]) - mx);
    const double log_sum = std::log(sum);
    for (int64_t k = 0; k < s.len; ++k) {
      double v = static_cast<double>(x[base + k * s.inner]) - mx;
      store(y, base + k * s.inner, kind == Kind::kSoftmax ? std::exp(v) / sum : v - log_sum);
    }
  }
}

// Fast float32 path for contiguous rows (inner == 1), in float.
void softmax_rows_f32(Kind kind, const Span& s, const float* x, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * s.len;
    float* yr = y + r * s.len;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t k = 0; k < s.len; ++k) mx = std::max(mx, xr[k]);
    float sum = 0.f;
    for (int64_t k = 0; k < s.len; ++k) {
      float e = std::exp(xr[k] - mx);
      if (kind == Kind::kSoftmax) yr[k] = e;
      sum += e;
    }
    if (kind == Kind::kSoftmax) {
      const float inv = 1.f / sum;
      for (int64_t k = 0; k < s.len; ++k) yr[k] *= inv;
    } else {
      // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds away
      // the small terms when max is large.
      const float log_sum = std::log(sum);
      for (int64_t k = 0; k < s.len; ++k) yr[k] = (xr[k] - mx) - log_sum;
    }
  }
}

Status run_softmax(KernelContext& ctx, Kind kind, bool fast) {
  const Tensor& x = ctx.input(0);
  auto s = span_of(x.dims(), ctx.attrs().get_int("axis", default_axis(ctx.opset())), ctx.opset());
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor& y = ctx.output(0);
  const int64_t rows = s->outer * s->inner;
  if (s->len == 0 || rows == 0) return Status();
  if (fast) {
    if (x.dtype() != DataType::kFloat32) return ctx.error("cpu.parallel needs float32");
    const float* xp = x.data_as<float>();
    float* yp = y.data_as<float>();
    cpu::parallel_for(rows, [&](int64_t r0, int64_t r1) {
      if (s->inner == 1 && kind != Kind::kHardmax) softmax_rows_f32(kind, *s, xp, yp, r0, r1);
      else softmax_rows<float>(kind, *s, xp, yp, r0, r1);
    }, ctx.num_threads(), 16);
    return Status();
  }
  KILN_DISPATCH_FLOAT(x.dtype(), T, softmax_rows<T>(kind, *s, x.data_as<T>(), y.data_as<T>(), 0, rows));
  return Status();
}

Status ref_softmax(KernelContext& ctx) { return run_softmax(ctx, Kind::kSoftmax, false); }
Status ref_log_softmax(KernelContext& ctx) { return run_softmax(ctx, Kind::kLogSoftmax, false); }
Status ref_hardmax(KernelContext& ctx) { return run_softmax(ctx, Kind::kHardmax, false); }
Status par_softmax(KernelContext& ctx) { return run_softmax(ctx, Kind::kSoftmax, true); }
Status par_log_softmax(KernelContext& ctx) { return run_softmax(ctx, Kind::kLogSoftmax, true); }

bool applies_f32(const ir::Node&, const std::vector<TensorType>& inputs) {
  return !inputs.empty() && inputs[0].dtype == DataType::kFloat32;
}

}  // namespace

void register_softmax_ops(OpRegistry& r) {
  r.add({.name = "Softmax", .infer = infer_softmax, .ref = ref_softmax,
         .fast = {{"cpu.parallel", par_softmax, applies_f32}}});
  r.add({.name = "LogSoftmax", .infer = infer_softmax, .ref = ref_log_softmax,
         .fast = {{"cpu.parallel", par_log_softmax, applies_f32}}});
  r.add({.name = "Hardmax", .infer = infer_softmax, .ref = ref_hardmax});
}

}  // namespace kiln::ops
