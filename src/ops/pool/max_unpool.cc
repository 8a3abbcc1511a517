// MaxUnpool: scatters pooled values back to the positions MaxPool's Indices
// recorded; everything else is zero.
#include <cstring>

#include "base/dispatch.h"
#include "ops/pool/pool_internal.h"

namespace kiln::ops::pool {

namespace {

// kernel_shape / strides / pads; the default output size inverts MaxPool's formula.
std::string unpool_attrs(const ir::Attributes& attrs, int64_t sp, window::WindowAttrs& w) {
  return window::read_window_attrs(attrs, sp, nullptr, w);
}

Status infer_max_unpool(InferContext& ctx) {
  if (!ctx.has_input(0) || !ctx.has_input(1)) return ctx.error("needs inputs X and I");
  DataType t = ctx.input_dtype(0);
  if (t != DataType::kUndefined && !dtype_is_float(t)) return ctx.unsupported(std::string("MaxUnpool on ") + dtype_name(t));
  if (ctx.input_dtype(1) != DataType::kUndefined && ctx.input_dtype(1) != DataType::kInt64)
    return ctx.error("I must be int64");
  const Shape* x = ctx.input_shape(0);
  if (x && x->size() < 3) return ctx.error("X must have rank >= 3, got " + shape_to_string(*x));
  if (ctx.has_input(2)) {
    auto os = input_ints(ctx, 2);
    if (os) {
      if (x && os->size() != x->size()) return ctx.error("output_shape must have X's rank");
      for (int64_t d : *os)
        if (d < 0) return ctx.error("output_shape entries must be >= 0");
      ctx.set_output(0, t, shape_from_dims(*os));
    } else {
      ctx.set_output(0, t, x ? std::optional<Shape>(Shape(x->size(), Dim::unknown())) : std::nullopt);
    }
    return Status();
  }
  if (!x) {
    ctx.set_output(0, t, std::nullopt);
    return Status();
  }
  const int64_t sp = static_cast<int64_t>(x->size()) - 2;
  window::WindowAttrs w;
  std::string err = unpool_attrs(ctx.attrs(), sp, w);
  if (!err.empty()) return ctx.error(err);
  Shape out{(*x)[0], (*x)[1]};
  for (int64_t d = 0; d < sp; ++d) {
    const Dim& in = (*x)[d + 2];
    if (!in.known()) {
      out.push_back(Dim::unknown());
      continue;
    }
    int64_t o = (in.value - 1) * w.strides[d] + w.kernel[d] - w.pads[d] - w.pads[d + sp];
    if (o < 0) return ctx.error("output spatial dim " + std::to_string(d) + " would be negative");
    out.push_back(Dim(o));
  }
  ctx.set_output(0, t, out);
  return Status();
}

Status ref_max_unpool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  if (idx.dtype() != DataType::kInt64) return ctx.error("I must be int64");
  if (idx.dims() != x.dims())
    return ctx.error("I " + dims_to_string(idx.dims()) + " must have X's shape " + dims_to_string(x.dims()));
  if (x.rank() < 3) return ctx.error("X must have rank >= 3");
  const int64_t sp = x.rank() - 2;
  window::WindowAttrs w;
  std::string err = unpool_attrs(ctx.attrs(), sp, w);
  if (!err.empty()) return ctx.error(err);
  // Indices address the unpooled size the attributes imply; an explicit, larger
  // output_shape only pads that block at the end of each dim (as the ONNX reference does).
  Dims inferred{x.dim(0), x.dim(1)};
  for (int64_t d = 0; d < sp; ++d)
    inferred.push_back((x.dim(d + 2) - 1) * w.strides[d] + w.kernel[d] - w.pads[d] - w.pads[d + sp]);
  Tensor& y = ctx.output(0);
  if (y.rank() != x.rank()) return ctx.error("output_shape must have X's rank");
  for (int64_t d = 0; d < x.rank(); ++d)
    if (inferred[d] < 0 || y.dim(d) < inferred[d])
      return ctx.error("output_shape " + dims_to_string(y.dims()) + " is smaller than the unpooled size " +
                       dims_to_string(inferred));
  const int64_t total = dims_volume(inferred);
  const auto in_strides = strides_of(inferred), out_strides = strides_of(y.dims());
  if (y.nbytes()) std::memset(y.data(), 0, y.nbytes());
  const int64_t* ip = idx.data_as<int64_t>();
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      if (ip[j] < 0 || ip[j] >= total)
        return ctx.error("index " + std::to_string(ip[j]) + " at position " + std::to_string(j) +
                         " is outside the unpooled tensor of " + std::to_string(total) + " elements");
      int64_t rem = ip[j], off = 0;
      for (int64_t d = 0; d < x.rank(); ++d) {
        off += (rem / in_strides[d]) * out_strides[d];
        rem %= in_strides[d];
      }
      yp[off] = xp[j];
    }
  });
  return Status();
}

}  // namespace

void register_max_unpool_ops(OpRegistry& r) {
  r.add({.name = "MaxUnpool", .infer = infer_max_unpool, .ref = ref_max_unpool, .value_inputs = {2}, .min_opset = 9});
}

}  // namespace kiln::ops::pool
