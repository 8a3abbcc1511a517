// Compress (keep the slices along an axis where a condition holds) and NonZero
// (coordinates of the non-zero elements). Both have data-dependent output sizes.
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Positions kept by a Compress condition over an axis of size dim (numpy.compress:
// a shorter condition keeps nothing past its end; a true past the axis is an error).
Result<std::vector<int64_t>> compress_keep(const ir::Node& n, const Tensor& cond, int64_t dim) {
  std::vector<int64_t> keep;
  const bool* c = cond.data_as<bool>();
  for (int64_t i = 0; i < cond.numel(); ++i) {
    if (!c[i]) continue;
    if (i >= dim)
      return node_error(n,
                        "condition is true at " + std::to_string(i) + ", past the axis of size " + std::to_string(dim),
                        ErrorCode::kInvalidArgument);
    keep.push_back(i);
  }
  return keep;
}

Status infer_compress(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  if (!dtype_may_be(ctx.input_dtype(1), DataType::kBool)) return ctx.error("condition must be bool");
  const Shape* cs = ctx.input_shape(1);
  if (cs && cs->size() != 1) return ctx.error("condition must be 1-D");
  const Shape* in = ctx.input_shape(0);
  bool has_axis = ctx.attrs().has("axis");
  if (!in) {
    ctx.set_output(0, dt, has_axis ? std::nullopt : std::optional<Shape>(Shape{Dim::unknown()}));
    return Status();
  }
  std::optional<size_t> ax;
  Dim dim = shape_product(*in, 0, in->size());
  if (has_axis) {
    int64_t axis = ctx.attrs().get_int("axis", 0);
    auto a = normalize_axis(axis, static_cast<int64_t>(in->size()));
    if (!a)
      return ctx.error("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(in->size()));
    ax = static_cast<size_t>(*a);
    dim = (*in)[*ax];
  }
  Dim count = Dim::unknown();
  if (const Tensor* c = ctx.value(1); c && dim.known()) {
    KILN_ASSIGN_OR_RETURN(auto keep, compress_keep(ctx.node(), *c, dim.value));
    count = Dim(static_cast<int64_t>(keep.size()));
  }
  Shape out = ax ? *in : Shape{count};
  if (ax) out[*ax] = count;
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_compress(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& c = ctx.input(1);
  if (c.dtype() != DataType::kBool) return ctx.error("condition must be bool");
  bool has_axis = ctx.attrs().has("axis");
  Dims xd = has_axis ? x.dims() : Dims{x.numel()};
  size_t ax = 0;
  if (has_axis) {
    int64_t axis = ctx.attrs().get_int("axis", 0);
    auto a = normalize_axis(axis, x.rank());
    if (!a) return ctx.error("axis " + std::to_string(axis) + " is out of range");
    ax = static_cast<size_t>(*a);
  }
  KILN_ASSIGN_OR_RETURN(auto keep, compress_keep(ctx.node(), c, xd[ax]));
  Dims od = xd;
  od[ax] = static_cast<int64_t>(keep.size());
  Tensor& y = ensure_output(ctx, 0, x.dtype(), od);
  size_t esize = dtype_size(x.dtype());
  int64_t outer = dims_product(xd, 0, ax);
  auto inner = static_cast<size_t>(dims_product(xd, ax + 1, xd.size())) * esize;
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  if (inner == 0) return Status();
  for (int64_t o = 0; o < outer; ++o)
    for (size_t j = 0; j < keep.size(); ++j)
      std::memcpy(dst + (static_cast<size_t>(o) * keep.size() + j) * inner,
                  src + static_cast<size_t>(o * xd[ax] + keep[j]) * inner, inner);
  return Status();
}

int64_t count_nonzero(const Tensor& x) {
  int64_t n = 0;
  for (int64_t i = 0; i < x.numel(); ++i) n += x.get_as_double(i) != 0.0;
  return n;
}

Status infer_nonzero(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  KILN_RETURN_IF_ERROR(check_dtype_supported(ctx.node(), dt, "input"));
  const Shape* in = ctx.input_shape(0);
  Dim rank = in ? Dim(static_cast<int64_t>(in->size())) : Dim::unknown();
  const Tensor* v = ctx.value(0);
  ctx.set_output(0, DataType::kInt64, Shape{rank, v ? Dim(count_nonzero(*v)) : Dim::unknown()});
  return Status();
}

// A scalar input gives a [0, count] result, as in the ONNX reference.
Status ref_nonzero(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  int64_t count = count_nonzero(x);
  auto r = static_cast<size_t>(x.rank());
  Tensor& y = ensure_output(ctx, 0, DataType::kInt64, {x.rank(), count});
  auto* out = y.data_as<int64_t>();
  std::vector<int64_t> idx(r, 0);
  int64_t j = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (x.get_as_double(i) != 0.0) {
      for (size_t d = 0; d < r; ++d) out[static_cast<int64_t>(d) * count + j] = idx[d];
      ++j;
    }
    for (int64_t d = static_cast<int64_t>(r) - 1; d >= 0; --d) {
      auto ud = static_cast<size_t>(d);
      if (++idx[ud] < x.dims()[ud]) break;
      idx[ud] = 0;
    }
  }
  return Status();
}

}  // namespace

void movement::add_select_ops(OpRegistry& r) {
  r.add({.name = "Compress", .infer = infer_compress, .ref = ref_compress, .value_inputs = {1}});
  r.add({.name = "NonZero", .infer = infer_nonzero, .ref = ref_nonzero, .value_inputs = {0}});
}

}  // namespace kiln::ops
