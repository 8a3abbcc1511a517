// Trilu (keep the upper or lower triangle of the last two dims, zero the rest)
// and EyeLike (a 2-D tensor with ones on one diagonal).
#include "ops/gather/gather_family.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Status infer_trilu(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  KILN_RETURN_IF_ERROR(check_dtype_supported(ctx.node(), ctx.input_dtype(0), "input"));
  const Shape* in = ctx.input_shape(0);
  if (in && in->size() < 2) return ctx.error("input must have rank >= 2");
  if (ctx.has_input(1)) {
    if (!dtype_may_be(ctx.input_dtype(1), DataType::kInt64)) return ctx.error("k must be int64");
    const Shape* ks = ctx.input_shape(1);
    if (ks && sat_volume(*ks) > 1) return ctx.error("k must be a scalar");
  }
  return infer_same_as_input0(ctx);
}

Status ref_trilu(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() < 2) return ctx.error("input must have rank >= 2");
  int64_t k = 0;
  if (ctx.has_input(1)) {
    if (ctx.input(1).numel() != 1 || ctx.input(1).dtype() != DataType::kInt64)
      return ctx.error("k must be an int64 scalar");
    k = ctx.input(1).data_as<int64_t>()[0];
  }
  bool upper = ctx.attrs().get_int("upper", 1) != 0;
  int64_t rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1);
  int64_t mats = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  return with_element_size(dtype_size(x.dtype()), [&](auto tag) {
    using T = decltype(tag);
    const T* src = x.data_as<T>();
    T* dst = y.data_as<T>();
    for (int64_t m = 0; m < mats; ++m)
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          int64_t o = (m * rows + i) * cols + j;
          bool keep = upper ? j - i >= k : j - i <= k;
          dst[o] = keep ? src[o] : T{0};  // all-zero bits are 0 in every dtype
        }
  });
}

// Opset 22 widened the dtypes; `dtype` 0 or absent means the input's dtype.
Result<DataType> eyelike_dtype(const ir::Node& n, DataType in) {
  int64_t code = n.attrs.get_int("dtype", 0);
  DataType dt = code == 0 ? in : static_cast<DataType>(code);
  if (code == 0 && in == DataType::kUndefined) return dt;  // known at run time
  if (!dtype_is_supported(dt))
    return node_error(n, "dtype " + std::to_string(code) + " is not supported", ErrorCode::kUnsupported);
  return dt;
}

Status infer_eyelike(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  KILN_ASSIGN_OR_RETURN(DataType dt, eyelike_dtype(ctx.node(), ctx.input_dtype(0)));
  const Shape* in = ctx.input_shape(0);
  if (in && in->size() != 2) return ctx.error("input must be 2-D");
  ctx.set_output(0, dt, in ? std::optional<Shape>(*in) : Shape{Dim::unknown(), Dim::unknown()});
  return Status();
}

Status ref_eyelike(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() != 2) return ctx.error("input must be 2-D");
  int64_t k = ctx.attrs().get_int("k", 0);
  int64_t rows = x.dim(0), cols = x.dim(1);
  if (y.nbytes()) std::memset(y.data(), 0, y.nbytes());
  for (int64_t i = 0; i < rows; ++i) {
    // Column i + k, skipped when outside (and computed without overflow for extreme k).
    if (k >= cols || k < -rows) break;
    int64_t j = i + k;
    if (j >= 0 && j < cols) y.set_from_double(i * cols + j, 1.0);
  }
  return Status();
}

}  // namespace

void movement::add_triangular_ops(OpRegistry& r) {
  r.add({.name = "Trilu", .infer = infer_trilu, .ref = ref_trilu});
  r.add({.name = "EyeLike", .infer = infer_eyelike, .ref = ref_eyelike});
}

}  // namespace kiln::ops
