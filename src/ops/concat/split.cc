// Split: cuts the input along one axis into pieces of given sizes or equal parts.
#include "ops/concat/concat_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Sizes of the pieces along an axis of size `dim` (-1 when unknown); nullopt
// when they depend on something not known yet.
// Opset 1 took `split` as input 1 or an attribute, opsets 2..12 as an attribute,
// opset 13 moved it to input 1, and opset 18 added num_outputs, whose last
// chunk is smaller when the dim does not divide evenly.
Result<std::optional<std::vector<int64_t>>> split_sizes(const ir::Node& n, bool has_split_input,
                                                        const Tensor* split_value, int64_t dim) {
  size_t nout = n.outputs.size();
  if (nout == 0) return node_error(n, "has no outputs");
  std::optional<std::vector<int64_t>> split;
  if (has_split_input && (n.opset >= 13 || n.opset < 2)) {
    if (!split_value) return std::optional<std::vector<int64_t>>();
    KILN_ASSIGN_OR_RETURN(split, read_indices(n, *split_value, "split"));
  } else if (n.opset < 13 && n.attrs.has("split")) {
    split = n.attrs.get_ints("split");
  }
  bool by_count = n.opset >= 18 && n.attrs.has("num_outputs");
  if (by_count) {
    if (split) return node_error(n, "cannot take both split and num_outputs");
    int64_t k = n.attrs.get_int("num_outputs", 0);
    if (k != static_cast<int64_t>(nout))
      return node_error(
          n, "num_outputs " + std::to_string(k) + " does not match the " + std::to_string(nout) + " outputs");
  }
  if (split) {
    if (split->size() != nout)
      return node_error(n, "split " + ints_to_string(*split) + " does not have one size per output");
    int64_t sum = 0;
    for (int64_t s : *split) {
      if (s < 0 || s > kMaxTensorElements)
        return node_error(n, "split " + ints_to_string(*split) + " has an invalid size");
      sum += s;
    }
    if (dim >= 0 && sum != dim)
      return node_error(n, "split " + ints_to_string(*split) + " does not add up to the dim " + std::to_string(dim));
    return split;
  }
  if (dim < 0) return std::optional<std::vector<int64_t>>();
  auto count = static_cast<int64_t>(nout);
  std::vector<int64_t> sizes;
  if (by_count) {
    int64_t chunk = (dim + count - 1) / count;
    int64_t left = dim;
    for (int64_t i = 0; i < count; ++i) {
      sizes.push_back(std::min(chunk, left));
      left -= sizes.back();
    }
  } else {
    if (dim % count != 0)
      return node_error(
          n, "dim " + std::to_string(dim) + " does not split into " + std::to_string(count) + " equal parts");
    sizes.assign(nout, dim / count);
  }
  return std::optional<std::vector<int64_t>>(sizes);
}

Result<int64_t> split_axis(const ir::Node& n, int64_t rank) {
  int64_t axis = n.attrs.get_int("axis", 0);
  auto a = normalize_axis(axis, rank);
  if (!a) return node_error(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return *a;
}

Status infer_split(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  const Shape* in = ctx.input_shape(0);
  bool has_split = ctx.has_input(1);
  if (has_split && !may_be_index_dtype(ctx.input_dtype(1))) return ctx.error("split input must be int64");
  if (!in) {
    KILN_RETURN_IF_ERROR(split_sizes(ctx.node(), has_split, ctx.value(1), -1).status());
    for (size_t i = 0; i < ctx.num_outputs(); ++i) ctx.set_output(i, dt, std::nullopt);
    return Status();
  }
  KILN_ASSIGN_OR_RETURN(int64_t axis, split_axis(ctx.node(), static_cast<int64_t>(in->size())));
  const Dim& d = (*in)[static_cast<size_t>(axis)];
  KILN_ASSIGN_OR_RETURN(auto sizes, split_sizes(ctx.node(), has_split, ctx.value(1), d.known() ? d.value : -1));
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    Shape s = *in;
    if (sizes)
      s[static_cast<size_t>(axis)] = Dim((*sizes)[i]);
    else if (ctx.num_outputs() != 1)
      s[static_cast<size_t>(axis)] = Dim::unknown();
    ctx.set_output(i, dt, s);
  }
  return Status();
}

Status ref_split(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  size_t r = x.dims().size();
  KILN_ASSIGN_OR_RETURN(int64_t axis, split_axis(ctx.node(), static_cast<int64_t>(r)));
  auto ax = static_cast<size_t>(axis);
  const Tensor* split_value = ctx.has_input(1) ? &ctx.input(1) : nullptr;
  KILN_ASSIGN_OR_RETURN(auto sizes, split_sizes(ctx.node(), ctx.has_input(1), split_value, x.dims()[ax]));
  if (!sizes) return ctx.error("split sizes are unknown", ErrorCode::kInternal);
  size_t esize = dtype_size(x.dtype());
  int64_t outer = dims_product(x.dims(), 0, ax);
  auto inner = static_cast<size_t>(dims_product(x.dims(), ax + 1, r)) * esize;
  size_t in_block = static_cast<size_t>(x.dims()[ax]) * inner;
  const auto* src = static_cast<const uint8_t*>(x.data());
  size_t offset = 0;
  for (size_t i = 0; i < sizes->size(); ++i) {
    size_t block = static_cast<size_t>((*sizes)[i]) * inner;
    if (ctx.has_output(i)) {
      Dims od = x.dims();
      od[ax] = (*sizes)[i];
      auto* dst = static_cast<uint8_t*>(ensure_output(ctx, i, x.dtype(), od).data());
      if (block)
        for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * block, src + o * in_block + offset, block);
    }
    offset += block;
  }
  return Status();
}

}  // namespace

void movement::add_split_ops(OpRegistry& r) {
  r.add({.name = "Split", .infer = infer_split, .ref = ref_split, .value_inputs = {1}});
}

}  // namespace kiln::ops
