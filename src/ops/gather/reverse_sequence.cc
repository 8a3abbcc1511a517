// ReverseSequence: for each batch entry b, reverses the first sequence_lens[b]
// steps along the time axis and copies the rest.
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Result<std::pair<size_t, size_t>> batch_time_axes(const ir::Node& n) {
  int64_t b = n.attrs.get_int("batch_axis", 1), t = n.attrs.get_int("time_axis", 0);
  if ((b != 0 && b != 1) || (t != 0 && t != 1) || b == t)
    return node_error(n, "batch_axis and time_axis must be 0 and 1 in some order");
  return std::make_pair(static_cast<size_t>(b), static_cast<size_t>(t));
}

Status infer_reverse_sequence(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 2));
  KILN_RETURN_IF_ERROR(batch_time_axes(ctx.node()).status());
  if (!dtype_may_be(ctx.input_dtype(1), DataType::kInt64)) return ctx.error("sequence_lens must be int64");
  const Shape* in = ctx.input_shape(0);
  const Shape* ls = ctx.input_shape(1);
  if (in && in->size() < 2) return ctx.error("input must have rank >= 2");
  if (ls && ls->size() != 1) return ctx.error("sequence_lens must be 1-D");
  return infer_same_as_input0(ctx);
}

Status ref_reverse_sequence(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& lens = ctx.input(1);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(auto axes, batch_time_axes(ctx.node()));
  auto [bax, tax] = axes;
  if (x.rank() < 2) return ctx.error("input must have rank >= 2");
  int64_t batch = x.dims()[bax], steps = x.dims()[tax];
  if (lens.dtype() != DataType::kInt64 || lens.numel() != batch)
    return ctx.error("sequence_lens must be int64 with one entry per batch (" + std::to_string(batch) + ")");
  const int64_t* len = lens.data_as<int64_t>();
  for (int64_t b = 0; b < batch; ++b)
    if (len[b] < 0 || len[b] > steps)
      return ctx.error("sequence_lens[" + std::to_string(b) + "] = " + std::to_string(len[b]) + " is outside [0, " +
                       std::to_string(steps) + "]");
  if (x.nbytes() && y.data() != x.data()) std::memcpy(y.data(), x.data(), x.nbytes());
  size_t esize = dtype_size(x.dtype());
  auto inner = static_cast<size_t>(dims_product(x.dims(), 2, x.dims().size())) * esize;
  if (inner == 0) return Status();
  auto strides = strides_of(x.dims());
  const auto* src = static_cast<const uint8_t*>(x.data());
  auto* dst = static_cast<uint8_t*>(y.data());
  auto at = [&](int64_t b, int64_t t) { return static_cast<size_t>(b * strides[bax] + t * strides[tax]) * esize; };
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len[b]; ++t) std::memcpy(dst + at(b, t), src + at(b, len[b] - 1 - t), inner);
  return Status();
}

}  // namespace

void movement::add_reverse_sequence_ops(OpRegistry& r) {
  r.add({.name = "ReverseSequence", .infer = infer_reverse_sequence, .ref = ref_reverse_sequence});
}

}  // namespace kiln::ops
