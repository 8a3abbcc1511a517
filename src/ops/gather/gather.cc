// Gather (take slices along an axis), GatherElements (take elements along an
// axis) and GatherND (take slices addressed by index tuples).
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Status check_indices_dtype(const InferContext& ctx) {
  if (!may_be_index_dtype(ctx.input_dtype(1))) return ctx.error("indices must be int32 or int64");
  return Status();
}

Result<int64_t> gather_axis(const ir::Node& n, int64_t rank) {
  int64_t axis = n.attrs.get_int("axis", 0);
  auto a = normalize_axis(axis, rank);
  if (!a) return node_error(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return *a;
}

Status infer_gather(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(check_indices_dtype(ctx));
  const Shape* data = ctx.input_shape(0);
  const Shape* idx = ctx.input_shape(1);
  if (!data || !idx) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  if (data->empty()) return ctx.error("data must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis, gather_axis(ctx.node(), static_cast<int64_t>(data->size())));
  auto ax = static_cast<size_t>(axis);
  Shape out(data->begin(), data->begin() + static_cast<std::ptrdiff_t>(ax));
  out.insert(out.end(), idx->begin(), idx->end());
  out.insert(out.end(), data->begin() + static_cast<std::ptrdiff_t>(ax) + 1, data->end());
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_gather(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.dims().empty()) return ctx.error("data must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(int64_t axis, gather_axis(ctx.node(), x.rank()));
  auto ax = static_cast<size_t>(axis);
  KILN_ASSIGN_OR_RETURN(auto idx, kernel_indices(ctx, ctx.input(1)));
  int64_t n = x.dims()[ax];
  for (int64_t& i : idx) {
    KILN_ASSIGN_OR_RETURN(i, checked_index(ctx, i, n, "gather"));
  }
  size_t esize = dtype_size(x.dtype());
  int64_t outer = dims_product(x.dims(), 0, ax);
  auto inner = static_cast<size_t>(dims_product(x.dims(), ax + 1, x.dims().size())) * esize;
  if (inner == 0 || idx.empty()) return Status();
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  for (int64_t o = 0; o < outer; ++o)
    for (size_t j = 0; j < idx.size(); ++j)
      std::memcpy(dst + (static_cast<size_t>(o) * idx.size() + j) * inner,
                  src + (static_cast<size_t>(o * n + idx[j])) * inner, inner);
  return Status();
}

Status infer_gather_elements(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(check_indices_dtype(ctx));
  const Shape* data = ctx.input_shape(0);
  const Shape* idx = ctx.input_shape(1);
  if (data && idx) {
    if (data->size() != idx->size() || data->empty()) return ctx.error("data and indices must have the same rank >= 1");
    KILN_RETURN_IF_ERROR(gather_axis(ctx.node(), static_cast<int64_t>(data->size())).status());
  }
  ctx.set_output(0, dt, idx ? std::optional<Shape>(*idx) : std::nullopt);
  return Status();
}

// Checks indices' dims fit data's off the axis, so every element read is in bounds.
Status check_elementwise_dims(const KernelContext& ctx, const Dims& data, const Dims& idx, size_t axis) {
  if (data.size() != idx.size() || data.empty()) return ctx.error("data and indices must have the same rank >= 1");
  for (size_t d = 0; d < data.size(); ++d)
    if (d != axis && idx[d] > data[d])
      return ctx.error("indices dims " + dims_to_string(idx) + " exceed data dims " + dims_to_string(data));
  return Status();
}

Status ref_gather_elements(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(int64_t axis, gather_axis(ctx.node(), x.rank()));
  auto ax = static_cast<size_t>(axis);
  KILN_RETURN_IF_ERROR(check_elementwise_dims(ctx, x.dims(), it.dims(), ax));
  KILN_ASSIGN_OR_RETURN(auto idx, kernel_indices(ctx, it));
  int64_t n = x.dims()[ax];
  auto x_strides = strides_of(x.dims());
  std::vector<int64_t> st = x_strides;
  st[ax] = 0;  // the axis coordinate comes from the index instead
  std::vector<int64_t> offs(idx.size());
  MultiIndex mi(it.dims(), {st});
  for (size_t j = 0; j < idx.size(); ++j, mi.next()) {
    KILN_ASSIGN_OR_RETURN(int64_t i, checked_index(ctx, idx[j], n, "gather"));
    offs[j] = mi.offset(0) + i * x_strides[ax];
  }
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    const T* src = x.data_as<T>();
    T* dst = y.data_as<T>();
    for (size_t j = 0; j < offs.size(); ++j) dst[j] = src[offs[j]];
  });
}

// Opset 12 added batch_dims.
struct GatherNDDims {
  size_t b = 0, k = 0;
};

Result<GatherNDDims> gathernd_dims(const ir::Node& n, const Shape& data, const Shape& idx) {
  GatherNDDims g;
  int64_t b = n.attrs.get_int("batch_dims", 0);
  size_t r = data.size(), q = idx.size();
  if (r < 1 || q < 1) return node_error(n, "data and indices must have rank >= 1");
  if (b < 0 || static_cast<size_t>(b) >= std::min(r, q))
    return node_error(n, "batch_dims " + std::to_string(b) + " must be below the ranks of data and indices");
  g.b = static_cast<size_t>(b);
  for (size_t d = 0; d < g.b; ++d)
    if (data[d].known() && idx[d].known() && data[d].value != idx[d].value)
      return node_error(
          n, "batch dims of data " + shape_to_string(data) + " and indices " + shape_to_string(idx) + " differ");
  const Dim& last = idx[q - 1];
  if (!last.known()) return node_error(n, "the last dim of indices must be known", ErrorCode::kUnsupported);
  if (last.value < 1 || static_cast<size_t>(last.value) > r - g.b)
    return node_error(n, "the last dim of indices (" + std::to_string(last.value) + ") must be in [1, " +
                             std::to_string(r - g.b) + "]");
  g.k = static_cast<size_t>(last.value);
  return g;
}

Status infer_gathernd(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  if (!dtype_may_be(ctx.input_dtype(1), DataType::kInt64)) return ctx.error("indices must be int64");
  const Shape* data = ctx.input_shape(0);
  const Shape* idx = ctx.input_shape(1);
  if (!data || !idx || (!idx->empty() && !idx->back().known())) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(auto g, gathernd_dims(ctx.node(), *data, *idx));
  Shape out(idx->begin(), idx->end() - 1);
  out.insert(out.end(), data->begin() + static_cast<std::ptrdiff_t>(g.b + g.k), data->end());
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_gathernd(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(auto g, gathernd_dims(ctx.node(), shape_from_dims(x.dims()), shape_from_dims(it.dims())));
  for (size_t d = 0; d < g.b; ++d)
    if (x.dims()[d] != it.dims()[d]) return ctx.error("batch dims of data and indices differ");
  KILN_ASSIGN_OR_RETURN(auto idx, kernel_indices(ctx, it));
  const Dims& xd = x.dims();
  size_t esize = dtype_size(x.dtype());
  int64_t batches = dims_product(xd, 0, g.b);
  int64_t per_batch = dims_product(it.dims(), g.b, it.dims().size() - 1);  // index tuples per batch
  auto slice = static_cast<size_t>(dims_product(xd, g.b + g.k, xd.size())) * esize;
  int64_t batch_stride = dims_product(xd, g.b, xd.size());
  auto x_strides = strides_of(xd);
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  size_t t = 0;
  for (int64_t bi = 0; bi < batches; ++bi) {
    for (int64_t m = 0; m < per_batch; ++m, ++t) {
      int64_t off = bi * batch_stride;
      for (size_t j = 0; j < g.k; ++j) {
        KILN_ASSIGN_OR_RETURN(int64_t i, checked_index(ctx, idx[t * g.k + j], xd[g.b + j], "gathernd"));
        off += i * x_strides[g.b + j];
      }
      if (slice) std::memcpy(dst + t * slice, src + static_cast<size_t>(off) * esize, slice);
    }
  }
  return Status();
}

}  // namespace

void register_gather_ops(OpRegistry& r) {
  r.add({.name = "Gather", .infer = infer_gather, .ref = ref_gather});
  r.add({.name = "GatherElements", .infer = infer_gather_elements, .ref = ref_gather_elements});
  r.add({.name = "GatherND", .infer = infer_gathernd, .ref = ref_gathernd});
  movement::add_scatter_ops(r);
  movement::add_select_ops(r);
  movement::add_onehot_ops(r);
  movement::add_triangular_ops(r);
  movement::add_reverse_sequence_ops(r);
  movement::add_unique_ops(r);
}

}  // namespace kiln::ops
