// ScatterND, ScatterElements and the deprecated Scatter: a copy of data with
// some positions replaced by (or reduced with) updates.
#include <type_traits>

#include "base/dispatch.h"
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

// Opset 16 added reduction add/mul, opset 18 max/min.
Result<Reduction> scatter_reduction(const ir::Node& n) {
  std::string s = n.attrs.get_string("reduction", "none");
  if (s == "none") return Reduction::kNone;
  if (s == "add") return Reduction::kAdd;
  if (s == "mul") return Reduction::kMul;
  if (s == "max") return Reduction::kMax;
  if (s == "min") return Reduction::kMin;
  return node_error(n, "unknown reduction '" + s + "'");
}

template <typename T>
T combine(T a, T b, Reduction r) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    return T(combine<float>(static_cast<float>(a), static_cast<float>(b), r));
  } else if constexpr (std::is_same_v<T, bool>) {
    switch (r) {
      case Reduction::kNone:
        return b;
      case Reduction::kAdd:
      case Reduction::kMax:
        return a || b;
      case Reduction::kMul:
      case Reduction::kMin:
        return a && b;
    }
    return b;
  } else {
    switch (r) {
      case Reduction::kNone:
        return b;
      case Reduction::kAdd:
        // Integers wrap (computed unsigned, so overflow is defined).
        if constexpr (std::is_integral_v<T>)
          return static_cast<T>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
        else
          return a + b;
      case Reduction::kMul:
        if constexpr (std::is_integral_v<T>)
          return static_cast<T>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
        else
          return a * b;
      case Reduction::kMax:
        return a < b ? b : a;
      case Reduction::kMin:
        return b < a ? b : a;
    }
    return b;
  }
}

// Copies data to the output, then combines updates[j] into output[offsets[j]].
Status scatter_apply(KernelContext& ctx, const std::vector<int64_t>& offsets, int64_t slice, Reduction red) {
  const Tensor& x = ctx.input(0);
  const Tensor& u = ctx.input(2);
  Tensor& y = ctx.output(0);
  if (u.dtype() != x.dtype()) return ctx.error("updates must have the data's dtype");
  if (u.numel() != static_cast<int64_t>(offsets.size()) * slice)
    return ctx.error("updates have " + std::to_string(u.numel()) + " elements, expected " +
                     std::to_string(static_cast<int64_t>(offsets.size()) * slice));
  if (x.nbytes() && y.data() != x.data()) std::memcpy(y.data(), x.data(), x.nbytes());
  KILN_DISPATCH_ALL(x.dtype(), T, {
    const T* src = u.data_as<T>();
    T* dst = y.data_as<T>();
    for (size_t j = 0; j < offsets.size(); ++j)
      for (int64_t e = 0; e < slice; ++e) {
        T& d = dst[offsets[j] + e];
        d = combine<T>(d, src[static_cast<int64_t>(j) * slice + e], red);
      }
  });
  return Status();
}

Status infer_scatter_common(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 3));
  DataType dt = ctx.input_dtype(0);
  if (!may_be_index_dtype(ctx.input_dtype(1))) return ctx.error("indices must be int32 or int64");
  if (!dtypes_compatible(ctx.input_dtype(2), dt)) return ctx.error("updates must have the data's dtype");
  KILN_RETURN_IF_ERROR(scatter_reduction(ctx.node()).status());
  ctx.set_output(0, dt, ctx.input(0).shape);
  return Status();
}

Status infer_scatternd(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_scatter_common(ctx));
  const Shape* data = ctx.input_shape(0);
  const Shape* idx = ctx.input_shape(1);
  const Shape* upd = ctx.input_shape(2);
  if (data && idx && upd && !idx->empty() && idx->back().known()) {
    int64_t k = idx->back().value;
    if (k < 1 || static_cast<size_t>(k) > data->size())
      return ctx.error("the last dim of indices (" + std::to_string(k) + ") must be in [1, " +
                       std::to_string(data->size()) + "]");
    Shape want(idx->begin(), idx->end() - 1);
    want.insert(want.end(), data->begin() + k, data->end());
    bool ok = want.size() == upd->size();
    for (size_t i = 0; ok && i < want.size(); ++i)
      if (want[i].known() && (*upd)[i].known() && want[i].value != (*upd)[i].value) ok = false;
    if (!ok) return ctx.error("updates shape " + shape_to_string(*upd) + " must be " + shape_to_string(want));
  } else if (idx && idx->empty()) {
    return ctx.error("indices must have rank >= 1");
  }
  return Status();
}

Status ref_scatternd(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Reduction red, scatter_reduction(ctx.node()));
  if (it.dims().empty()) return ctx.error("indices must have rank >= 1");
  auto k = static_cast<size_t>(it.dims().back());
  const Dims& xd = x.dims();
  if (k < 1 || k > xd.size()) return ctx.error("the last dim of indices is out of range");
  KILN_ASSIGN_OR_RETURN(auto idx, kernel_indices(ctx, it));
  auto strides = strides_of(xd);
  int64_t slice = dims_product(xd, k, xd.size());
  std::vector<int64_t> offsets(idx.size() / k);
  for (size_t m = 0; m < offsets.size(); ++m) {
    int64_t off = 0;
    for (size_t j = 0; j < k; ++j) {
      KILN_ASSIGN_OR_RETURN(int64_t i, checked_index(ctx, idx[m * k + j], xd[j], "scatternd"));
      off += i * strides[j];
    }
    offsets[m] = off;
  }
  return scatter_apply(ctx, offsets, slice, red);
}

Result<int64_t> scatter_axis(const ir::Node& n, int64_t rank) {
  int64_t axis = n.attrs.get_int("axis", 0);
  auto a = normalize_axis(axis, rank);
  if (!a) return node_error(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return *a;
}

Status infer_scatter_elements(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(infer_scatter_common(ctx));
  const Shape* data = ctx.input_shape(0);
  const Shape* idx = ctx.input_shape(1);
  const Shape* upd = ctx.input_shape(2);
  if (data && idx) {
    if (data->size() != idx->size() || data->empty()) return ctx.error("data and indices must have the same rank >= 1");
    KILN_RETURN_IF_ERROR(scatter_axis(ctx.node(), static_cast<int64_t>(data->size())).status());
  }
  if (idx && upd && idx->size() != upd->size()) return ctx.error("indices and updates must have the same shape");
  return Status();
}

Status ref_scatter_elements(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Reduction red, scatter_reduction(ctx.node()));
  const Dims& xd = x.dims();
  if (xd.size() != it.dims().size() || xd.empty()) return ctx.error("data and indices must have the same rank >= 1");
  if (ctx.input(2).dims() != it.dims()) return ctx.error("indices and updates must have the same shape");
  KILN_ASSIGN_OR_RETURN(int64_t axis, scatter_axis(ctx.node(), x.rank()));
  auto ax = static_cast<size_t>(axis);
  for (size_t d = 0; d < xd.size(); ++d)
    if (d != ax && it.dims()[d] > xd[d])
      return ctx.error("indices dims " + dims_to_string(it.dims()) + " exceed data dims " + dims_to_string(xd));
  KILN_ASSIGN_OR_RETURN(auto idx, kernel_indices(ctx, it));
  auto strides = strides_of(xd);
  std::vector<int64_t> st = strides;
  st[ax] = 0;  // the axis coordinate comes from the index instead
  std::vector<int64_t> offsets(idx.size());
  MultiIndex mi(it.dims(), {st});
  for (size_t j = 0; j < idx.size(); ++j, mi.next()) {
    KILN_ASSIGN_OR_RETURN(int64_t i, checked_index(ctx, idx[j], xd[ax], "scatter"));
    offsets[j] = mi.offset(0) + i * strides[ax];
  }
  return scatter_apply(ctx, offsets, 1, red);
}

}  // namespace

void movement::add_scatter_ops(OpRegistry& r) {
  r.add({.name = "ScatterND", .infer = infer_scatternd, .ref = ref_scatternd});
  r.add({.name = "ScatterElements", .infer = infer_scatter_elements, .ref = ref_scatter_elements});
  // Scatter (opsets 9-10) is ScatterElements without reduction; ONNX deprecated it in 11.
  r.add({.name = "Scatter", .infer = infer_scatter_elements, .ref = ref_scatter_elements});
}

}  // namespace kiln::ops
