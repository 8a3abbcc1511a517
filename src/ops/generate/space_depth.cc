// DepthToSpace and SpaceToDepth: move blocksize x blocksize spatial blocks
// between the channel dim and the height/width dims of an NCHW tensor. And kiln's
// SpaceToDepthNhwc, the input of a space-to-depth stem (passes/space_to_depth_stem.cc):
//   Y[n, i, j, (2p + q) * channels + c] = X[n, c, 2i + p - pads[0], 2j + q - pads[1]]
// for X [N, C, H, W] (C <= channels), Y [N, (H + pads[0] + pads[2]) / 2, (W + pads[1] +
// pads[3]) / 2, 4 * channels], zero outside X and for c >= C: the zero padding, the
// channel padding and the 2x2 space-to-depth of a channels-last result in one pass. An
// optional `to` (a float dtype, as Cast's) converts float values on the way (an FP16
// engine's stem reads the FP32 input itself: no Cast kernel before it).
#include <cstring>

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

struct NhwcBlocks {
  int64_t t = 0, l = 0, b = 0, r = 0, channels = 0;
  DataType to = DataType::kUndefined;  ///< the output dtype when it differs from the input's
};

bool float_type(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

Result<NhwcBlocks> nhwc_blocks(const ir::Node& n) {
  const std::vector<int64_t> pads = n.attrs.get_ints("pads", {0, 0, 0, 0});
  if (pads.size() != 4) return node_error(n, "pads must have 4 values (top, left, bottom, right)");
  for (int64_t p : pads)
    if (p < 0 || p > (int64_t{1} << 20)) return node_error(n, "pads must be in [0, 2^20]");
  NhwcBlocks s{pads[0], pads[1], pads[2], pads[3], n.attrs.get_int("channels", 0)};
  if (s.channels < 1 || s.channels > 1024) return node_error(n, "channels must be in [1, 1024]");
  if (n.attrs.has("to")) {
    s.to = static_cast<DataType>(n.attrs.get_int("to", 0));
    if (!float_type(s.to)) return node_error(n, "to must be float32, float16 or bfloat16");
  }
  return s;
}

Status infer_space_to_depth_nhwc(InferContext& ctx) {
  KILN_RETURN_IF_ERROR(require_inputs(ctx, 1));
  KILN_ASSIGN_OR_RETURN(NhwcBlocks s, nhwc_blocks(ctx.node()));
  const DataType from = ctx.input_dtype(0);
  if (s.to != DataType::kUndefined && from != DataType::kUndefined && from != s.to && !float_type(from))
    return ctx.error(std::string("to converts float inputs only, not ") + dtype_name(from));
  const DataType dt = s.to != DataType::kUndefined ? s.to : from;
  const Shape* in = ctx.input_shape(0);
  if (!in) {
    ctx.set_output(0, dt, Shape(4, Dim::unknown()));
    return Status();
  }
  if (in->size() != 4) return ctx.error("input must be 4-D (NCHW)");
  if ((*in)[1].known() && (*in)[1].value > s.channels)
    return ctx.error("input has " + std::to_string((*in)[1].value) +
                     " channels, more than channels = " + std::to_string(s.channels));
  auto half = [&](const Dim& d, int64_t pads, const char* what) -> Result<Dim> {
    if (!d.known()) return Dim::unknown();
    if ((d.value + pads) % 2 != 0)
      return ctx.error(std::string(what) + " " + std::to_string(d.value) + " plus its pads is odd");
    return Dim((d.value + pads) / 2);
  };
  Shape out = {(*in)[0], Dim::unknown(), Dim::unknown(), Dim(4 * s.channels)};
  KILN_ASSIGN_OR_RETURN(out[1], half((*in)[2], s.t + s.b, "height"));
  KILN_ASSIGN_OR_RETURN(out[2], half((*in)[3], s.l + s.r, "width"));
  ctx.set_output(0, dt, out);
  return Status();
}

Status ref_space_to_depth_nhwc(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(NhwcBlocks s, nhwc_blocks(ctx.node()));
  if (x.rank() != 4 || y.rank() != 4 || x.dim(1) > s.channels) return ctx.error("input must be NCHW");
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t bh = y.dim(1), bw = y.dim(2), cp = s.channels;
  if (y.dim(0) != n || 2 * bh != h + s.t + s.b || 2 * bw != w + s.l + s.r || y.dim(3) != 4 * cp)
    return ctx.error("output dims do not match the pads and channels", ErrorCode::kInternal);
  // Zero bits are a zero of every dtype; same dtypes copy bytes, `to` converts element by element.
  std::memset(y.data(), 0, static_cast<size_t>(y.nbytes()));
  const size_t es = dtype_size(x.dtype());
  auto copy = [&](int64_t to, int64_t from) {
    if (x.dtype() == y.dtype())
      std::memcpy(static_cast<char*>(y.data()) + to * es, static_cast<const char*>(x.data()) + from * es, es);
    else
      y.set_from_double(to, x.get_as_double(from));
  };
  for (int64_t b = 0; b < n; ++b)
    for (int64_t i = 0; i < bh; ++i)
      for (int64_t j = 0; j < bw; ++j)
        for (int64_t pq = 0; pq < 4; ++pq)
          for (int64_t ch = 0; ch < c; ++ch) {
            const int64_t hh = 2 * i + pq / 2 - s.t, ww = 2 * j + pq % 2 - s.l;
            if (hh < 0 || hh >= h || ww < 0 || ww >= w) continue;
            copy((((b * bh + i) * bw + j) * 4 + pq) * cp + ch, ((b * c + ch) * h + hh) * w + ww);
          }
  return Status();
}

}  // namespace

void movement::add_space_depth_ops(OpRegistry& r) {
  r.add({.name = "DepthToSpace", .infer = infer_depth_to_space, .ref = ref_depth_to_space});
  r.add({.name = "SpaceToDepth", .infer = infer_space_to_depth, .ref = ref_space_to_depth});
  r.add({.name = "SpaceToDepthNhwc",
         .domain = "kiln",
         .infer = infer_space_to_depth_nhwc,
         .ref = ref_space_to_depth_nhwc});
}

}  // namespace kiln::ops
