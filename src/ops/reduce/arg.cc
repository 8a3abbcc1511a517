// ArgMax / ArgMin: int64 index of the largest / smallest element along one axis.
#include <string>

#include "base/dispatch.h"
#include "ops/common.h"
#include "ops/reduce/reduce_util.h"

namespace kiln::ops {
namespace {

using namespace reduce_util;

Status infer_arg(InferContext& ctx) {
  DataType dt = ctx.input_dtype(0);
  if (dt == DataType::kBool || dt == DataType::kString || !dtype_is_supported(dt))
    return ctx.unsupported(std::string("dtype ") + dtype_name(dt) + " is not supported");
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, DataType::kInt64, std::nullopt);
    return Status();
  }
  int64_t rank = static_cast<int64_t>(in->size());
  int64_t axis_attr = ctx.attrs().get_int("axis", 0);
  auto axis = normalize_axis(axis_attr, rank);
  if (!axis)
    return ctx.error("axis " + std::to_string(axis_attr) + " is out of range for rank " + std::to_string(rank));
  const Dim& ad = (*in)[static_cast<size_t>(*axis)];
  if (ad.known() && ad.value == 0) return ctx.error("cannot take the arg-extreme of an empty axis");
  bool keepdims = ctx.attrs().get_int("keepdims", 1) != 0;
  Shape out;
  for (int64_t i = 0; i < rank; ++i) {
    if (i != *axis)
      out.push_back((*in)[static_cast<size_t>(i)]);
    else if (keepdims)
      out.push_back(Dim(1));
  }
  ctx.set_output(0, DataType::kInt64, out);
  return Status();
}

// NaN counts as the extreme (numpy's argmax/argmin return the first NaN).
template <typename T>
int64_t arg_one(const T* x, int64_t n, int64_t stride, bool is_max, bool last) {
  int64_t best_i = 0;
  auto best = widen(x[0]);
  for (int64_t i = 1; i < n; ++i) {
    auto v = widen(x[i * stride]);
    bool take;
    if (is_nan(best))
      take = last && is_nan(v);
    else if (is_nan(v))
      take = true;
    else
      take = is_max ? (v > best || (last && v == best)) : (v < best || (last && v == best));
    if (take) best = v, best_i = i;
  }
  return best_i;
}

Status ref_arg(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  auto axis = normalize_axis(ctx.attrs().get_int("axis", 0), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  int64_t n = x.dim(*axis);
  if (n == 0) return ctx.error("cannot take the arg-extreme of an empty axis");
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < *axis; ++i) outer *= x.dim(i);
  for (int64_t i = *axis + 1; i < x.rank(); ++i) inner *= x.dim(i);
  bool is_max = ctx.node().op_type == "ArgMax";
  // select_last_index arrived in opset 12; earlier nodes do not carry it.
  bool last = ctx.attrs().get_int("select_last_index", 0) != 0;
  int64_t* yp = y.data_as<int64_t>();
  KILN_DISPATCH_NUMERIC(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i)
        yp[o * inner + i] = arg_one<T>(xp + o * n * inner + i, n, inner, is_max, last);
  });
  return Status();
}

}  // namespace

void register_arg_ops(OpRegistry& r) {
  r.add({.name = "ArgMax", .infer = infer_arg, .ref = ref_arg});
  r.add({.name = "ArgMin", .infer = infer_arg, .ref = ref_arg});
}

}  // namespace kiln::ops
