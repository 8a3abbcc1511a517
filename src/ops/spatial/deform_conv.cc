// DeformConv (opset 19/22): 2-D convolution whose kernel taps are displaced by
// learned per-position offsets (bilinearly sampled, zero outside) and scaled by an optional mask.
#include <cmath>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/spatial/spatial_ops.h"

namespace kiln::ops {
namespace {

struct DeformAttrs {
  int64_t kh = 0, kw = 0, sh = 1, sw = 1, dh = 1, dw = 1, group = 1, offset_group = 1;
  int64_t pt = 0, pl = 0, pb = 0, pr = 0;
};

Result<DeformAttrs> deform_attrs(const ir::Node& node, const Shape& w) {
  auto err = [&](const std::string& m) { return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m); };
  DeformAttrs a;
  const auto& at = node.attrs;
  auto ks = at.get_ints("kernel_shape");
  if (ks.empty()) {
    if (!w[2].known() || !w[3].known()) return err("kernel_shape is needed when W's spatial dims are unknown");
    ks = {w[2].value, w[3].value};
  }
  auto st = at.get_ints("strides", {1, 1});
  auto di = at.get_ints("dilations", {1, 1});
  auto pa = at.get_ints("pads", {0, 0, 0, 0});
  if (ks.size() != 2 || st.size() != 2 || di.size() != 2 || pa.size() != 4)
    return err("kernel_shape/strides/dilations need 2 values and pads 4 (2-D only)");
  a.kh = ks[0];
  a.kw = ks[1];
  a.sh = st[0];
  a.sw = st[1];
  a.dh = di[0];
  a.dw = di[1];
  a.pt = pa[0];
  a.pl = pa[1];
  a.pb = pa[2];
  a.pr = pa[3];
  a.group = at.get_int("group", 1);
  a.offset_group = at.get_int("offset_group", 1);
  if (a.kh <= 0 || a.kw <= 0 || a.sh <= 0 || a.sw <= 0 || a.dh <= 0 || a.dw <= 0)
    return err("kernel_shape, strides and dilations must be positive");
  if (a.pt < 0 || a.pl < 0 || a.pb < 0 || a.pr < 0) return err("pads must be non-negative");
  if (a.group <= 0 || a.offset_group <= 0) return err("group and offset_group must be positive");
  if ((w[2].known() && w[2].value != a.kh) || (w[3].known() && w[3].value != a.kw))
    return err("kernel_shape does not match W");
  return a;
}

Dim out_dim(const Dim& in, int64_t k, int64_t s, int64_t d, int64_t p) {
  if (!in.known()) return Dim::unknown();
  int64_t n = in.value + p - ((k - 1) * d + 1);
  return n < 0 ? Dim(0) : Dim(n / s + 1);
}

Status infer_deform_conv(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* x, require_shape(ctx, 0));
  KILN_ASSIGN_OR_RETURN(const Shape* w, require_shape(ctx, 1));
  KILN_ASSIGN_OR_RETURN(const Shape* off, require_shape(ctx, 2));
  if (!dtype_is_float(ctx.input_dtype(0))) return ctx.unsupported("DeformConv needs floating-point inputs");
  if (x->size() != 4) return ctx.unsupported("only 2-D DeformConv (X of rank 4) is supported");
  if (w->size() != 4 || off->size() != 4) return ctx.error("W and offset must have rank 4");
  KILN_ASSIGN_OR_RETURN(DeformAttrs a, deform_attrs(ctx.node(), *w));
  const Dim &c = (*x)[1], &oc = (*w)[0], &cg = (*w)[1];
  if (c.known() && cg.known() && c.value != cg.value * a.group)
    return ctx.error("X has " + std::to_string(c.value) + " channels but W expects " +
                     std::to_string(cg.value * a.group));
  if (oc.known() && oc.value % a.group != 0) return ctx.error("output channels must be divisible by group");
  if (c.known() && c.value % a.offset_group != 0) return ctx.error("input channels must be divisible by offset_group");
  const Dim& oc2 = (*off)[1];
  if (oc2.known() && oc2.value != a.offset_group * a.kh * a.kw * 2)
    return ctx.error("offset dim 1 must be offset_group*kH*kW*2 = " +
                     std::to_string(a.offset_group * a.kh * a.kw * 2));
  Dim oh = out_dim((*x)[2], a.kh, a.sh, a.dh, a.pt + a.pb);
  Dim ow = out_dim((*x)[3], a.kw, a.sw, a.dw, a.pl + a.pr);
  if ((oh.known() && oh.value < 1) || (ow.known() && ow.value < 1)) return ctx.error("kernel larger than padded input");
  if (((*off)[2].known() && oh.known() && (*off)[2].value != oh.value) ||
      ((*off)[3].known() && ow.known() && (*off)[3].value != ow.value))
    return ctx.error("offset spatial dims must equal the output's (" + oh.to_string() + "x" + ow.to_string() + ")");
  if (ctx.has_input(3)) {
    const Shape* b = ctx.input_shape(3);
    if (b && (b->size() != 1 || ((*b)[0].known() && oc.known() && (*b)[0].value != oc.value)))
      return ctx.error("B must be [out_channels]");
  }
  if (ctx.has_input(4)) {
    const Shape* m = ctx.input_shape(4);
    if (m && (m->size() != 4 || ((*m)[1].known() && (*m)[1].value != a.offset_group * a.kh * a.kw)))
      return ctx.error("mask must be [N, offset_group*kH*kW, oH, oW]");
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape{(*x)[0], oc, oh, ow});
  return Status();
}

Status ref_deform_conv(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor& off = ctx.input(2);
  const Tensor* b = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  const Tensor* mask = ctx.has_input(4) ? &ctx.input(4) : nullptr;
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(DeformAttrs a, deform_attrs(ctx.node(), shape_from_dims(w.dims())));
  int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), wd = x.dim(3);
  int64_t oc = w.dim(0), cg = w.dim(1), oh = y.dim(2), ow = y.dim(3);
  int64_t ocg = oc / a.group, cpo = c / a.offset_group, kk = a.kh * a.kw;
  if (off.dim(0) != n || off.dim(2) != oh || off.dim(3) != ow) return ctx.error("offset shape mismatch");
  if (mask && (mask->dim(0) != n || mask->dim(2) != oh || mask->dim(3) != ow)) return ctx.error("mask shape mismatch");
  // Bilinear sample of channel plane `base` at (py, px); taps outside the image are zero.
  auto sample = [&](int64_t base, double py, double px) {
    double y0 = std::floor(py), x0 = std::floor(px);
    double fy = py - y0, fx = px - x0;
    double s = 0;
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx) {
        double yy = y0 + dy, xx = x0 + dx;
        if (yy < 0 || yy >= static_cast<double>(h) || xx < 0 || xx >= static_cast<double>(wd)) continue;
        double wt = (dy ? fy : 1 - fy) * (dx ? fx : 1 - fx);
        if (wt == 0) continue;
        s += wt * x.get_as_double(base + static_cast<int64_t>(yy) * wd + static_cast<int64_t>(xx));
      }
    return s;
  };
  for (int64_t bi = 0; bi < n; ++bi)
    for (int64_t o = 0; o < oc; ++o) {
      int64_t g = o / ocg;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = b ? b->get_as_double(o) : 0.0;
          for (int64_t ci = 0; ci < cg; ++ci) {
            int64_t ch = g * cg + ci;
            int64_t og = ch / cpo;
            for (int64_t ky = 0; ky < a.kh; ++ky)
              for (int64_t kx = 0; kx < a.kw; ++kx) {
                int64_t k = ky * a.kw + kx;
                int64_t obase = ((bi * a.offset_group + og) * kk + k) * 2;
                double dy = off.get_as_double(((obase + 0) * oh + i) * ow + j);
                double dx = off.get_as_double(((obase + 1) * oh + i) * ow + j);
                double py = static_cast<double>(i * a.sh - a.pt + ky * a.dh) + dy;
                double px = static_cast<double>(j * a.sw - a.pl + kx * a.dw) + dx;
                double m = mask ? mask->get_as_double((((bi * a.offset_group + og) * kk + k) * oh + i) * ow + j) : 1.0;
                double v = sample((bi * c + ch) * h * wd, py, px);
                acc += w.get_as_double(((o * cg + ci) * a.kh + ky) * a.kw + kx) * v * m;
              }
          }
          y.set_from_double(((bi * oc + o) * oh + i) * ow + j, acc);
        }
    }
  return Status();
}

}  // namespace

void add_deform_conv_op(OpRegistry& r) {
  r.add({.name = "DeformConv", .infer = infer_deform_conv, .ref = ref_deform_conv, .min_opset = 19});
}

}  // namespace kiln::ops
