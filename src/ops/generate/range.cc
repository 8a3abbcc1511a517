// Range: start, start + delta, ... up to limit (exclusive).
#include <cmath>

#include "base/dispatch.h"
#include "ops/generate/generate_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Element count max(ceil((limit - start) / delta), 0). Integers use exact
// 128-bit arithmetic so extreme values can neither overflow nor round.
Result<int64_t> range_count(const ir::Node& n, const Tensor& start, const Tensor& limit, const Tensor& delta) {
  if (start.numel() != 1 || limit.numel() != 1 || delta.numel() != 1)
    return node_error(n, "start, limit and delta must be scalars");
  double count;
  if (dtype_is_float(start.dtype())) {
    double s = start.get_as_double(0), l = limit.get_as_double(0), d = delta.get_as_double(0);
    if (d == 0) return node_error(n, "delta is 0");
    count = std::ceil((l - s) / d);
    if (std::isnan(count)) return node_error(n, "start, limit and delta must be finite");
  } else {
    auto s = static_cast<__int128>(start.get_as_int64(0)), l = static_cast<__int128>(limit.get_as_int64(0));
    auto d = static_cast<__int128>(delta.get_as_int64(0));
    if (start.dtype() == DataType::kUInt64) {
      s = static_cast<__int128>(start.data_as<uint64_t>()[0]);
      l = static_cast<__int128>(limit.data_as<uint64_t>()[0]);
      d = static_cast<__int128>(delta.data_as<uint64_t>()[0]);
    }
    if (d == 0) return node_error(n, "delta is 0");
    __int128 diff = l - s;
    __int128 c = d > 0 ? (diff > 0 ? (diff + d - 1) / d : 0) : (diff < 0 ? (-diff + -d - 1) / -d : 0);
    count = c > kMaxTensorElements ? static_cast<double>(kMaxTensorElements) + 1 : static_cast<double>(c);
  }
  if (count > static_cast<double>(kMaxTensorElements)) return node_error(n, "range would have more than 2^34 elements");
  return count < 0 ? int64_t{0} : static_cast<int64_t>(count);
}

Status infer_range(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 3));
  DataType dt = DataType::kUndefined;
  for (size_t i = 0; i < 3; ++i) {
    DataType t = ctx.input_dtype(i);
    if (!dtypes_compatible(t, dt)) return ctx.error("start, limit and delta must share a dtype");
    if (t != DataType::kUndefined) dt = t;
  }
  if (dt == DataType::kBool || (dt != DataType::kUndefined && !dtype_is_supported(dt)))
    return ctx.error("start, limit and delta must be numeric");
  const Tensor *s = ctx.value(0), *l = ctx.value(1), *d = ctx.value(2);
  Dim count = Dim::unknown();
  if (s && l && d) {
    KILN_ASSIGN_OR_RETURN(int64_t c, range_count(ctx.node(), *s, *l, *d));
    count = Dim(c);
  }
  ctx.set_output(0, dt, Shape{count});
  return Status();
}

// Opset 27's stash_type asks fp16/bf16 to compute in float; kiln computes every
// floating range in double and rounds once, which is at least as precise.
Status ref_range(KernelContext& ctx) {
  const Tensor &s = ctx.input(0), &l = ctx.input(1), &d = ctx.input(2);
  KILN_ASSIGN_OR_RETURN(int64_t count, range_count(ctx.node(), s, l, d));
  Tensor& y = ensure_output(ctx, 0, s.dtype(), {count});
  if (dtype_is_float(s.dtype())) {
    double start = s.get_as_double(0), delta = d.get_as_double(0);
    for (int64_t i = 0; i < count; ++i) y.set_from_double(i, start + static_cast<double>(i) * delta);
    return Status();
  }
  KILN_DISPATCH_INT(s.dtype(), T, {
    T start = s.data_as<T>()[0], delta = d.data_as<T>()[0];
    T* out = y.data_as<T>();
    // Every value lies between start and limit, so it fits T; compute it wide.
    for (int64_t i = 0; i < count; ++i)
      out[i] = static_cast<T>(static_cast<__int128>(start) + static_cast<__int128>(i) * static_cast<__int128>(delta));
  });
  return Status();
}

}  // namespace

void movement::add_range_ops(OpRegistry& r) {
  r.add({.name = "Range", .infer = infer_range, .ref = ref_range, .value_inputs = {0, 1, 2}});
}

}  // namespace kiln::ops
