// Constant (a tensor held in an attribute) and ConstantOfShape (a tensor of a
// given shape filled with one value).
#include "ops/generate/generate_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

// Opset 12 added value_float(s), value_int(s) and value_string(s) beside `value`.
Result<Tensor> constant_tensor(const ir::Node& n) {
  const ir::Attributes& a = n.attrs;
  int given = 0;
  for (const char* name : {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                           "value_strings", "sparse_value"})
    given += a.has(name);
  if (given != 1) return node_error(n, "needs exactly one value attribute, has " + std::to_string(given));
  if (a.has("value_string") || a.has("value_strings"))
    return node_error(n, "string constants are not supported", ErrorCode::kUnsupported);
  if (a.has("sparse_value")) return node_error(n, "sparse constants are not supported", ErrorCode::kUnsupported);
  if (a.has("value")) {
    const Tensor* t = a.get_tensor("value");
    if (!t) return node_error(n, "value attribute is not a tensor");
    if (!dtype_is_supported(t->dtype()))
      return node_error(n, std::string("constant of dtype ") + dtype_name(t->dtype()) + " is not supported",
                        ErrorCode::kUnsupported);
    return *t;
  }
  if (a.has("value_float"))
    return Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{a.get_float("value_float", 0)});
  if (a.has("value_int")) {
    Tensor t = Tensor::empty(DataType::kInt64, {});
    t.data_as<int64_t>()[0] = a.get_int("value_int", 0);
    return t;
  }
  if (a.has("value_floats")) {
    std::vector<float> v = a.get_floats("value_floats");
    Tensor t = Tensor::empty(DataType::kFloat32, {static_cast<int64_t>(v.size())});
    if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(float));
    return t;
  }
  std::vector<int64_t> v = a.get_ints("value_ints");
  Tensor t = Tensor::empty(DataType::kInt64, {static_cast<int64_t>(v.size())});
  if (!v.empty()) std::memcpy(t.data(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

Status infer_constant(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(Tensor t, constant_tensor(ctx.node()));
  ctx.set_output(0, t.dtype(), shape_from_dims(t.dims()));
  return Status();
}

Status ref_constant(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(Tensor t, constant_tensor(ctx.node()));
  Tensor& y = ensure_output(ctx, 0, t.dtype(), t.dims());
  if (t.nbytes()) std::memcpy(y.data(), t.data(), t.nbytes());
  return Status();
}

// The fill value: a one-element tensor attribute, float32 0 by default.
Result<Tensor> fill_value(const ir::Node& n) {
  if (!n.attrs.has("value")) return Tensor::zeros(DataType::kFloat32, {});
  const Tensor* t = n.attrs.get_tensor("value");
  if (!t || t->numel() != 1) return node_error(n, "value must be a one-element tensor");
  if (!dtype_is_supported(t->dtype()))
    return node_error(n, std::string("value of dtype ") + dtype_name(t->dtype()) + " is not supported",
                      ErrorCode::kUnsupported);
  return *t;
}

Status infer_constant_of_shape(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  KILN_ASSIGN_OR_RETURN(Tensor value, fill_value(ctx.node()));
  if (!dtype_may_be(ctx.input_dtype(0), DataType::kInt64)) return ctx.error("shape input must be int64");
  const Shape* s = ctx.input_shape(0);
  if (s && s->size() != 1) return ctx.error("shape input must be 1-D");
  const Tensor* v = ctx.value(0);
  if (!v) {
    auto len = input_length(ctx, 0);
    ctx.set_output(0, value.dtype(),
                   len ? std::optional<Shape>(Shape(static_cast<size_t>(*len), Dim::unknown())) : std::nullopt);
    return Status();
  }
  Dims dims = v->to_int64_vector();
  KILN_RETURN_IF_ERROR(check_dims(ctx.node(), dims));
  ctx.set_output(0, value.dtype(), shape_from_dims(dims));
  return Status();
}

Status ref_constant_of_shape(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(Tensor value, fill_value(ctx.node()));
  Dims dims = ctx.input(0).to_int64_vector();
  KILN_RETURN_IF_ERROR(check_dims(ctx.node(), dims));
  Tensor& y = ensure_output(ctx, 0, value.dtype(), dims);
  return with_element_size(dtype_size(value.dtype()), [&](auto tag) {
    using T = decltype(tag);
    T f;
    std::memcpy(&f, value.data(), sizeof(T));
    T* dst = y.data_as<T>();
    for (int64_t i = 0; i < y.numel(); ++i) dst[i] = f;
  });
}

}  // namespace

void register_generate_ops(OpRegistry& r) {
  r.add({.name = "Constant", .infer = infer_constant, .ref = ref_constant});
  r.add(
      {.name = "ConstantOfShape", .infer = infer_constant_of_shape, .ref = ref_constant_of_shape, .value_inputs = {0}});
  movement::add_range_ops(r);
  movement::add_space_depth_ops(r);
  movement::add_center_crop_pad_ops(r);
}

}  // namespace kiln::ops
