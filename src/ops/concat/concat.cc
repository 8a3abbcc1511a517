// Concat: joins the inputs along one axis; every other dim must agree.
#include "ops/concat/concat_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Opset 4 made `axis` required (it defaulted to 1); opset 11 allowed negative axes.
Result<int64_t> concat_axis(const ir::Node& n, int64_t rank) {
  if (!n.attrs.has("axis") && n.opset >= 4) return node_error(n, "missing the axis attribute");
  int64_t axis = n.attrs.get_int("axis", 1);
  auto a = normalize_axis(axis, rank);
  if (!a) return node_error(n, "axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  return *a;
}

Status infer_concat(InferContext& ctx) {
  if (ctx.num_inputs() == 0) return ctx.error("needs at least one input");
  DataType dt = DataType::kUndefined;
  const Shape* first = nullptr;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("input " + std::to_string(i) + " is missing");
    if (dt == DataType::kUndefined) dt = ctx.input_dtype(i);
    if (!dtypes_compatible(ctx.input_dtype(i), dt))
      return ctx.error("input " + std::to_string(i) + " has dtype " + dtype_name(ctx.input_dtype(i)) + ", expected " +
                       dtype_name(dt));
    if (!first) first = ctx.input_shape(i);
  }
  if (!first) {
    ctx.set_output(0, dt, std::nullopt);
    return Status();
  }
  size_t r = first->size();
  KILN_ASSIGN_OR_RETURN(int64_t axis, concat_axis(ctx.node(), static_cast<int64_t>(r)));
  auto ax = static_cast<size_t>(axis);
  Shape out = *first;
  out[ax] = Dim(0);
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Shape* s = ctx.input_shape(i);
    if (!s) {
      out[ax] = Dim::unknown();
      continue;
    }
    if (s->size() != r)
      return ctx.error("input " + std::to_string(i) + " has rank " + std::to_string(s->size()) + ", expected " +
                       std::to_string(r));
    for (size_t d = 0; d < r; ++d) {
      const Dim& b = (*s)[d];
      if (d == ax) {
        out[d] = sat_add(out[d], b);
      } else if (out[d].known() && b.known() && out[d].value != b.value) {
        return ctx.error("input " + std::to_string(i) + " has shape " + shape_to_string(*s) +
                         ", which does not match " + shape_to_string(*first) + " off the concat axis");
      } else if (!out[d].known() && b.known()) {
        out[d] = b;
      }
    }
  }
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_concat(KernelContext& ctx) {
  Tensor& y = ctx.output(0);
  size_t r = y.dims().size();
  KILN_ASSIGN_OR_RETURN(int64_t axis, concat_axis(ctx.node(), static_cast<int64_t>(r)));
  auto ax = static_cast<size_t>(axis);
  size_t esize = dtype_size(y.dtype());
  int64_t outer = dims_product(y.dims(), 0, ax);
  auto out_block = static_cast<size_t>(dims_product(y.dims(), ax, r)) * esize;
  auto* dst = static_cast<uint8_t*>(y.data());
  size_t offset = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& x = ctx.input(i);
    auto block = static_cast<size_t>(dims_product(x.dims(), ax, r)) * esize;
    if (offset + block > out_block) return ctx.error("inputs do not fit the output", ErrorCode::kInternal);
    const auto* src = static_cast<const uint8_t*>(x.data());
    if (block)
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_block + offset, src + o * block, block);
    offset += block;
  }
  return Status();
}

}  // namespace

void register_concat_ops(OpRegistry& r) {
  r.add({.name = "Concat", .infer = infer_concat, .ref = ref_concat});
  movement::add_split_ops(r);
  movement::add_tile_ops(r);
  movement::add_pad_ops(r);
  movement::add_slice_ops(r);
}

}  // namespace kiln::ops
