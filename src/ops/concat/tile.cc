// Tile (repeat the input along each axis) and Expand (numpy-broadcast to a shape).
#include "ops/concat/concat_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Status check_int_vector_input(const InferContext& ctx, size_t i, const std::string& what) {
  if (!ctx.has_input(i)) return ctx.error("missing the " + what + " input");
  if (!dtype_may_be(ctx.input_dtype(i), DataType::kInt64)) return ctx.error(what + " input must be int64");
  const Shape* s = ctx.input_shape(i);
  if (s && s->size() != 1) return ctx.error(what + " input must be 1-D");
  return Status();
}

Result<std::vector<int64_t>> tile_repeats(const ir::Node& n, const Tensor& reps, size_t rank) {
  std::vector<int64_t> v = reps.to_int64_vector();
  if (v.size() != rank)
    return node_error(
        n, "repeats " + ints_to_string(v) + " must have one entry per input dim (" + std::to_string(rank) + ")");
  for (int64_t x : v)
    if (x < 0) return node_error(n, "repeats " + ints_to_string(v) + " has a negative entry");
  return v;
}

Status infer_tile(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  KILN_RETURN_IF_ERROR(check_int_vector_input(ctx, 1, "repeats"));
  const Tensor* reps = ctx.value(1);
  if (!in || !reps) {
    if (in)
      ctx.set_output(0, dt, unknown_dims_like(in));
    else if (auto len = input_length(ctx, 1))
      ctx.set_output(0, dt, Shape(static_cast<size_t>(*len), Dim::unknown()));
    else
      ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(auto r, tile_repeats(ctx.node(), *reps, in->size()));
  Shape out;
  for (size_t i = 0; i < in->size(); ++i) out.push_back(r[i] == 0 ? Dim(0) : sat_mul((*in)[i], Dim(r[i])));
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

// Copies the input block at axis d into every repeat of it in the output.
template <typename T>
void tile_axis(const T* src, T* dst, const Dims& in, const std::vector<int64_t>& reps,
               const std::vector<int64_t>& in_strides, const std::vector<int64_t>& out_strides, size_t d) {
  int64_t n = in[d];
  if (d + 1 == in.size()) {
    for (int64_t rep = 0; rep < reps[d]; ++rep)
      for (int64_t i = 0; i < n; ++i) dst[rep * n + i] = src[i];
    return;
  }
  for (int64_t rep = 0; rep < reps[d]; ++rep)
    for (int64_t i = 0; i < n; ++i)
      tile_axis(src + i * in_strides[d], dst + (rep * n + i) * out_strides[d], in, reps, in_strides, out_strides,
                d + 1);
}

Status ref_tile(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(auto reps, tile_repeats(ctx.node(), ctx.input(1), x.dims().size()));
  if (y.numel() == 0) return Status();
  if (x.dims().empty()) return copy_input0_bytes(ctx);
  auto in_strides = strides_of(x.dims());
  auto out_strides = strides_of(y.dims());
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    tile_axis(x.data_as<T>(), y.data_as<T>(), x.dims(), reps, in_strides, out_strides, 0);
  });
}

Status infer_expand(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  KILN_RETURN_IF_ERROR(check_int_vector_input(ctx, 1, "shape"));
  const Tensor* sv = ctx.value(1);
  if (!sv) {
    auto len = input_length(ctx, 1);
    if (in && len)
      ctx.set_output(0, dt, Shape(std::max(in->size(), static_cast<size_t>(*len)), Dim::unknown()));
    else
      ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  std::vector<int64_t> target = sv->to_int64_vector();
  Shape ts;
  for (int64_t v : target) {
    if (v < 0) return ctx.error("shape " + ints_to_string(target) + " has a negative dim");
    ts.push_back(Dim(v));
  }
  if (!in) {
    // The input may have more dims than the target, so the rank is unknown.
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  auto out = broadcast_shapes({in, &ts});
  if (!out) return ctx.error("cannot expand " + shape_to_string(*in) + " to " + ints_to_string(target));
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), *out));
  ctx.set_output(0, dt, *out);
  return Status();
}

template <typename T>
void broadcast_copy(const T* src, const Dims& in, T* dst, const Dims& out) {
  size_t r = out.size();
  int64_t total = dims_product(out, 0, r);
  if (total == 0) return;
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  std::vector<int64_t> st = broadcast_strides(in, out);
  int64_t inner = out[r - 1], inner_stride = st[r - 1];
  Dims outer_dims(out.begin(), out.end() - 1);
  std::vector<int64_t> outer_st(st.begin(), st.end() - 1);
  MultiIndex it(outer_dims, {outer_st});
  for (int64_t o = 0; o < total; o += inner, it.next()) {
    const T* s = src + it.offset(0);
    for (int64_t k = 0; k < inner; ++k) dst[o + k] = s[k * inner_stride];
  }
}

Status ref_expand(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  Dims check;
  if (!broadcast_dims({x.dims(), y.dims()}, check) || check != y.dims())
    return ctx.error("cannot expand " + dims_to_string(x.dims()) + " to " + dims_to_string(y.dims()),
                     ErrorCode::kInternal);
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    broadcast_copy(x.data_as<T>(), x.dims(), y.data_as<T>(), y.dims());
  });
}

}  // namespace

void movement::add_tile_ops(OpRegistry& r) {
  r.add({.name = "Tile", .infer = infer_tile, .ref = ref_tile, .value_inputs = {1}, .min_opset = 6});
  r.add({.name = "Expand", .infer = infer_expand, .ref = ref_expand, .value_inputs = {1}});
}

}  // namespace kiln::ops
