// Slice: takes start:end:step along chosen axes (numpy basic slicing with clamping).
#include "ops/concat/concat_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

struct SliceArgs {
  std::vector<int64_t> starts, ends, axes, steps;  ///< axes normalized, one entry per sliced axis
};

// Opset 10 moved starts/ends/axes from attributes to inputs and added steps.
// Returns nullopt when an input value is not known yet.
Result<std::optional<SliceArgs>> slice_args(const ir::Node& n, size_t rank, const std::vector<const Tensor*>& vals,
                                            const std::vector<bool>& present) {
  SliceArgs a;
  std::optional<std::vector<int64_t>> axes;
  if (n.opset < 10) {
    if (!n.attrs.has("starts") || !n.attrs.has("ends")) return node_error(n, "missing the starts or ends attribute");
    a.starts = n.attrs.get_ints("starts");
    a.ends = n.attrs.get_ints("ends");
    if (n.attrs.has("axes")) axes = n.attrs.get_ints("axes");
  } else {
    if (!present[1] || !present[2]) return node_error(n, "missing the starts or ends input");
    for (size_t i = 1; i < 5; ++i)
      if (present[i] && !vals[i]) return std::optional<SliceArgs>();
    KILN_ASSIGN_OR_RETURN(a.starts, read_indices(n, *vals[1], "starts"));
    KILN_ASSIGN_OR_RETURN(a.ends, read_indices(n, *vals[2], "ends"));
    if (present[3]) {
      KILN_ASSIGN_OR_RETURN(auto v, read_indices(n, *vals[3], "axes"));
      axes = v;
    }
    if (present[4]) {
      KILN_ASSIGN_OR_RETURN(a.steps, read_indices(n, *vals[4], "steps"));
    }
  }
  size_t k = a.starts.size();
  if (a.ends.size() != k) return node_error(n, "starts and ends differ in length");
  if (!axes) {
    if (k > rank) return node_error(n, "more starts than input dims");
    axes = std::vector<int64_t>();
    for (size_t i = 0; i < k; ++i) axes->push_back(static_cast<int64_t>(i));
  }
  if (axes->size() != k) return node_error(n, "axes and starts differ in length");
  KILN_ASSIGN_OR_RETURN(a.axes, normalize_axes(n, *axes, static_cast<int64_t>(rank)));
  if (a.steps.empty()) a.steps.assign(k, 1);
  if (a.steps.size() != k) return node_error(n, "steps and starts differ in length");
  for (int64_t s : a.steps)
    if (s == 0) return node_error(n, "a step is 0");
  return std::optional<SliceArgs>(a);
}

std::vector<const Tensor*> infer_values(const InferContext& ctx, std::vector<bool>& present) {
  std::vector<const Tensor*> v(5, nullptr);
  present.assign(5, false);
  for (size_t i = 1; i < 5; ++i) {
    present[i] = ctx.has_input(i);
    v[i] = ctx.value(i);
  }
  return v;
}

Status infer_slice(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  if (ctx.opset() >= 10) {
    if (!ctx.has_input(1) || !ctx.has_input(2)) return ctx.error("missing the starts or ends input");
    for (size_t i = 1; i < 5; ++i)
      if (ctx.has_input(i) && !may_be_index_dtype(ctx.input_dtype(i)))
        return ctx.error("input " + std::to_string(i) + " must be int32 or int64");
  }
  if (!in) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  std::vector<bool> present;
  auto vals = infer_values(ctx, present);
  KILN_ASSIGN_OR_RETURN(auto args, slice_args(ctx.node(), in->size(), vals, present));
  if (!args) {
    ctx.set_output(0, dt, unknown_dims_like(in));
    return Status();
  }
  Shape out = *in;
  for (size_t i = 0; i < args->axes.size(); ++i) {
    auto ax = static_cast<size_t>(args->axes[i]);
    const Dim& d = (*in)[ax];
    if (d.known()) {
      out[ax] = Dim(slice_range(args->starts[i], args->ends[i], args->steps[i], d.value).second);
    } else {
      // start 0, end "to the end" (INT64_MAX-like), step 1 keeps a symbolic dim.
      bool whole = args->starts[i] == 0 && args->steps[i] == 1 && args->ends[i] >= kMaxTensorElements;
      out[ax] = whole ? d : Dim::unknown();
    }
  }
  ctx.set_output(0, dt, out);
  return Status();
}

template <typename T>
void slice_elements(const T* src, const Dims& in, T* dst, const Dims& out, const std::vector<int64_t>& first,
                    const std::vector<int64_t>& steps) {
  size_t r = out.size();
  int64_t total = dims_product(out, 0, r);
  if (total == 0) return;
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  std::vector<int64_t> in_strides = strides_of(in);
  int64_t base = 0;
  std::vector<int64_t> st(r);
  for (size_t d = 0; d < r; ++d) {
    base += first[d] * in_strides[d];
    st[d] = steps[d] * in_strides[d];
  }
  int64_t inner = out[r - 1], inner_stride = st[r - 1];
  MultiIndex it(Dims(out.begin(), out.end() - 1), {std::vector<int64_t>(st.begin(), st.end() - 1)});
  for (int64_t o = 0; o < total; o += inner, it.next()) {
    const T* s = src + base + it.offset(0);
    for (int64_t k = 0; k < inner; ++k) dst[o + k] = s[k * inner_stride];
  }
}

Status ref_slice(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  size_t r = x.dims().size();
  std::vector<const Tensor*> vals(5, nullptr);
  std::vector<bool> present(5, false);
  for (size_t i = 1; i < 5; ++i) {
    present[i] = ctx.has_input(i);
    if (present[i]) vals[i] = &ctx.input(i);
  }
  KILN_ASSIGN_OR_RETURN(auto args, slice_args(ctx.node(), r, vals, present));
  if (!args) return ctx.error("slice arguments are unknown", ErrorCode::kInternal);
  std::vector<int64_t> first(r, 0), steps(r, 1);
  Dims out = x.dims();
  for (size_t i = 0; i < args->axes.size(); ++i) {
    auto ax = static_cast<size_t>(args->axes[i]);
    auto [s, count] = slice_range(args->starts[i], args->ends[i], args->steps[i], x.dims()[ax]);
    first[ax] = s;
    steps[ax] = args->steps[i];
    out[ax] = count;
  }
  Tensor& y = ctx.output(0);
  if (y.dims() != out) return ctx.error("output dims do not match the slice", ErrorCode::kInternal);
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    slice_elements(x.data_as<T>(), x.dims(), y.data_as<T>(), out, first, steps);
  });
}

}  // namespace

void movement::add_slice_ops(OpRegistry& r) {
  r.add({.name = "Slice", .infer = infer_slice, .ref = ref_slice, .value_inputs = {1, 2, 3, 4}});
}

}  // namespace kiln::ops
