// TopK: the k largest (or smallest) elements along an axis and their int64
// indices; equal values keep the lower index first.
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "base/dispatch.h"
#include "ops/common.h"
#include "ops/reduce/reduce_util.h"

namespace kiln::ops {
namespace {

using namespace reduce_util;

/// k from the attribute (opset 1) or from input 1 (opset 10+); nullopt if unknown yet.
Result<std::optional<int64_t>> read_k(const ir::Node& node, const Tensor* k_value) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  if (node.opset < 10) {
    if (!node.attrs.has("k")) return err("attribute k is required");
    int64_t k = node.attrs.get_int("k", 0);
    if (k < 0) return err("k must be >= 0, got " + std::to_string(k));
    return std::optional<int64_t>(k);
  }
  if (!k_value) return std::optional<int64_t>();
  if (k_value->dtype() != DataType::kInt64 && k_value->dtype() != DataType::kInt32)
    return err(std::string("K must be int64, got ") + dtype_name(k_value->dtype()));
  if (k_value->numel() != 1 || k_value->rank() > 1) return err("K must hold exactly one value");
  int64_t k = k_value->get_as_int64(0);
  if (k < 0) return err("K must be >= 0, got " + std::to_string(k));
  return std::optional<int64_t>(k);
}

Status infer_top_k(InferContext& ctx) {
  DataType dt = ctx.input_dtype(0);
  if (dt == DataType::kBool || dt == DataType::kString || !dtype_is_supported(dt))
    return ctx.unsupported(std::string("dtype ") + dtype_name(dt) + " is not supported");
  if (ctx.opset() >= 10 && !ctx.has_input(1)) return ctx.error("input K is required");
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> k, read_k(ctx.node(), ctx.value(1)));
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    ctx.set_output(1, DataType::kInt64, std::nullopt);
    return Status();
  }
  int64_t rank = static_cast<int64_t>(in->size());
  int64_t axis_attr = ctx.attrs().get_int("axis", -1);
  auto axis = normalize_axis(axis_attr, rank);
  if (!axis)
    return ctx.error("axis " + std::to_string(axis_attr) + " is out of range for rank " + std::to_string(rank));
  Shape out = *in;
  Dim& ad = out[static_cast<size_t>(*axis)];
  if (k) {
    if (ad.known() && *k > ad.value)
      return ctx.error("k = " + std::to_string(*k) + " exceeds the axis size " + std::to_string(ad.value));
    ad = Dim(*k);
  } else {
    ad = Dim::unknown();
  }
  ctx.set_output(0, dt, out);
  ctx.set_output(1, DataType::kInt64, out);
  return Status();
}

// NaN sorts above every number (as numpy's lexsort does).
template <typename A>
bool greater(A a, A b) {
  if (is_nan(a)) return !is_nan(b);
  if (is_nan(b)) return false;
  return a > b;
}

Status ref_top_k(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> kk, read_k(ctx.node(), ctx.has_input(1) ? &ctx.input(1) : nullptr));
  if (!kk) return ctx.error("input K is required");
  auto axis = normalize_axis(ctx.attrs().get_int("axis", -1), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  int64_t k = *kk, n = x.dim(*axis);
  if (k > n) return ctx.error("k = " + std::to_string(k) + " exceeds the axis size " + std::to_string(n));
  bool largest = ctx.attrs().get_int("largest", 1) != 0;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < *axis; ++i) outer *= x.dim(i);
  for (int64_t i = *axis + 1; i < x.rank(); ++i) inner *= x.dim(i);
  Tensor& vals = ctx.output(0);
  Tensor* idx = ctx.has_output(1) ? &ctx.output(1) : nullptr;
  KILN_DISPATCH_NUMERIC(x.dtype(), T, {
    using A = Acc<T>;
    const T* xp = x.data_as<T>();
    T* vp = vals.data_as<T>();
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::vector<A> row(static_cast<size_t>(n));
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < inner; ++i) {
        const T* src = xp + o * n * inner + i;
        for (int64_t j = 0; j < n; ++j) row[j] = widen(src[j * inner]);
        std::iota(order.begin(), order.end(), 0);
        // The output is always sorted, which also satisfies sorted=0.
        auto before = [&](int64_t a, int64_t b) {
          if (row[a] == row[b] || (is_nan(row[a]) && is_nan(row[b]))) return a < b;
          return largest ? greater(row[a], row[b]) : greater(row[b], row[a]);
        };
        std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
        for (int64_t j = 0; j < k; ++j) {
          int64_t off = (o * k + j) * inner + i;
          vp[off] = src[order[j] * inner];
          if (idx) idx->data_as<int64_t>()[off] = order[j];
        }
      }
    }
  });
  return Status();
}

}  // namespace

void register_top_k_ops(OpRegistry& r) {
  r.add({.name = "TopK", .infer = infer_top_k, .ref = ref_top_k, .value_inputs = {1}});
}

}  // namespace kiln::ops
