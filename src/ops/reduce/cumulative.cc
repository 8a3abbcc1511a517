// CumSum / CumProd: running sum / product along one axis (optionally exclusive
// and/or reversed). The axis comes from a scalar input.
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "base/dispatch.h"
#include "ops/common.h"
#include "ops/reduce/reduce_util.h"

namespace kiln::ops {
namespace {

using namespace reduce_util;

Result<int64_t> read_axis(const ir::Node& node, const Tensor& t, int64_t rank) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  if (t.dtype() != DataType::kInt32 && t.dtype() != DataType::kInt64)
    return err(std::string("axis must be int32 or int64, got ") + dtype_name(t.dtype()));
  if (t.numel() != 1 || t.rank() > 1) return err("axis must be a scalar");
  int64_t a = t.get_as_int64(0);
  auto n = normalize_axis(a, rank);
  if (!n) return err("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
  return *n;
}

Status infer_cumulative(InferContext& ctx) {
  DataType dt = ctx.input_dtype(0);
  if (dt == DataType::kBool || dt == DataType::kString || !dtype_is_supported(dt))
    return ctx.unsupported(std::string("dtype ") + dtype_name(dt) + " is not supported");
  const Shape* in = ctx.input_shape(0);
  if (in && in->empty()) return ctx.error("input must have rank >= 1");
  if (in && ctx.value(1)) {
    auto a = read_axis(ctx.node(), *ctx.value(1), static_cast<int64_t>(in->size()));
    if (!a.ok()) return a.status();
  }
  ctx.set_output(0, dt, ctx.input(0).shape);
  return Status();
}

/// Running accumulator type: the element type's own arithmetic (float for fp16/bf16),
/// 64-bit for integers (results wrap like the element type).
template <typename T>
using RunAcc = std::conditional_t<std::is_same_v<T, double>, double, std::conditional_t<kFloatLike<T>, float, Acc<T>>>;

Status ref_cumulative(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() == 0) return ctx.error("input must have rank >= 1");
  if (!ctx.has_input(1)) return ctx.error("the axis input is required");
  KILN_ASSIGN_OR_RETURN(int64_t axis, read_axis(ctx.node(), ctx.input(1), x.rank()));
  bool exclusive = ctx.attrs().get_int("exclusive", 0) != 0;
  bool reverse = ctx.attrs().get_int("reverse", 0) != 0;
  bool prod = ctx.node().op_type == "CumProd";
  int64_t n = x.dim(axis), outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dim(i);
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.dim(i);
  KILN_DISPATCH_NUMERIC(x.dtype(), T, {
    using A = RunAcc<T>;
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    // One running accumulator per inner position, so memory is walked in order.
    std::vector<A> acc(static_cast<size_t>(inner));
    for (int64_t o = 0; o < outer; ++o) {
      std::fill(acc.begin(), acc.end(), prod ? A(1) : A(0));
      for (int64_t s = 0; s < n; ++s) {
        int64_t k = reverse ? n - 1 - s : s;
        const T* xr = xp + (o * n + k) * inner;
        T* yr = yp + (o * n + k) * inner;
        for (int64_t i = 0; i < inner; ++i) {
          A v = static_cast<A>(widen(xr[i]));
          if (exclusive) {
            yr[i] = static_cast<T>(acc[i]);
            acc[i] = prod ? A(acc[i] * v) : A(acc[i] + v);
          } else {
            acc[i] = prod ? A(acc[i] * v) : A(acc[i] + v);
            yr[i] = static_cast<T>(acc[i]);
          }
        }
      }
    }
  });
  return Status();
}

}  // namespace

void register_cumulative_ops(OpRegistry& r) {
  // axis is a value input: CUDA kernels need it on the host.
  r.add({.name = "CumSum", .infer = infer_cumulative, .ref = ref_cumulative, .value_inputs = {1}, .min_opset = 11});
  r.add({.name = "CumProd", .infer = infer_cumulative, .ref = ref_cumulative, .value_inputs = {1}, .min_opset = 26});
}

}  // namespace kiln::ops
