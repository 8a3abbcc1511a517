// DepthToSpace and SpaceToDepth: move blocksize x blocksize spatial blocks
// between the channel dim and the height/width dims of an NCHW tensor.
#include "ops/generate/generate_family.h"
#include "ops/reshape/data_movement.h"

namespace kiln::ops {
namespace {

using namespace movement;  // NOLINT(google-build-using-namespace)

Result<int64_t> blocksize_of(const ir::Node& n) {
  if (!n.attrs.has("blocksize")) return node_error(n, "missing the blocksize attribute");
  int64_t b = n.attrs.get_int("blocksize", 0);
  if (b < 1 || b > (int64_t{1} << 16)) return node_error(n, "blocksize " + std::to_string(b) + " is invalid");
  return b;
}

// Opset 11 added DepthToSpace's CRD mode (SpaceToDepth's came later); DCR is the default.
Result<bool> is_crd(const ir::Node& n) {
  std::string m = n.attrs.get_string("mode", "DCR");
  if (m != "DCR" && m != "CRD") return node_error(n, "unknown mode '" + m + "'");
  return m == "CRD";
}

Status infer_space_depth(InferContext& ctx, bool to_space) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  DataType dt = ctx.input_dtype(0);
  KILN_ASSIGN_OR_RETURN(int64_t b, blocksize_of(ctx.node()));
  KILN_RETURN_IF_ERROR(is_crd(ctx.node()).status());
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, Shape(4, Dim::unknown()));
    return Status();
  }
  if (in->size() != 4) return ctx.error("input must be 4-D (NCHW)");
  Shape out = *in;
  auto divide = [&](const Dim& d, int64_t by, const char* what) -> Result<Dim> {
    if (!d.known()) return by == 1 ? d : Dim::unknown();
    if (d.value % by != 0)
      return ctx.error(std::string(what) + " " + std::to_string(d.value) + " is not divisible by " +
                       std::to_string(by));
    return Dim(d.value / by);
  };
  if (to_space) {
    KILN_ASSIGN_OR_RETURN(out[1], divide((*in)[1], b * b, "channels"));
    out[2] = sat_mul((*in)[2], Dim(b));
    out[3] = sat_mul((*in)[3], Dim(b));
  } else {
    out[1] = sat_mul((*in)[1], Dim(b * b));
    KILN_ASSIGN_OR_RETURN(out[2], divide((*in)[2], b, "height"));
    KILN_ASSIGN_OR_RETURN(out[3], divide((*in)[3], b, "width"));
  }
  KILN_RETURN_IF_ERROR(check_shape(ctx.node(), out));
  ctx.set_output(0, dt, out);
  return Status();
}

Status infer_depth_to_space(InferContext& ctx) { return infer_space_depth(ctx, true); }
Status infer_space_to_depth(InferContext& ctx) { return infer_space_depth(ctx, false); }

// Both ops are a 6-D transpose of the same bytes (the ONNX spec's reshape-transpose-reshape).
Status ref_depth_to_space(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(int64_t b, blocksize_of(ctx.node()));
  KILN_ASSIGN_OR_RETURN(bool crd, is_crd(ctx.node()));
  if (x.rank() != 4 || x.dim(1) % (b * b) != 0) return ctx.error("input must be NCHW with C divisible by blocksize^2");
  int64_t n = x.dim(0), c = x.dim(1) / (b * b), h = x.dim(2), w = x.dim(3);
  Tensor y6 = y.reshaped({n, c, h, b, w, b});
  if (crd) return permute_tensor(x.reshaped({n, c, b, b, h, w}), {0, 1, 4, 2, 5, 3}, y6);
  return permute_tensor(x.reshaped({n, b, b, c, h, w}), {0, 3, 4, 1, 5, 2}, y6);
}

Status ref_space_to_depth(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(int64_t b, blocksize_of(ctx.node()));
  KILN_ASSIGN_OR_RETURN(bool crd, is_crd(ctx.node()));
  if (x.rank() != 4 || x.dim(2) % b != 0 || x.dim(3) % b != 0)
    return ctx.error("input must be NCHW with H and W divisible by blocksize");
  int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2) / b, w = x.dim(3) / b;
  Tensor x6 = x.reshaped({n, c, h, b, w, b});
  if (crd) {
    Tensor y6 = y.reshaped({n, c, b, b, h, w});
    return permute_tensor(x6, {0, 1, 3, 5, 2, 4}, y6);
  }
  Tensor y6 = y.reshaped({n, b, b, c, h, w});
  return permute_tensor(x6, {0, 3, 5, 1, 2, 4}, y6);
}

}  // namespace

void movement::add_space_depth_ops(OpRegistry& r) {
  r.add({.name = "DepthToSpace", .infer = infer_depth_to_space, .ref = ref_depth_to_space});
  r.add({.name = "SpaceToDepth", .infer = infer_space_to_depth, .ref = ref_space_to_depth});
}

}  // namespace kiln::ops
