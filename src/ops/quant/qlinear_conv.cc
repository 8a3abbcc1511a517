// QLinearConv: N-D grouped convolution of quantized input and weights with exact
// integer accumulation, requantized to the output scale and zero point.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backends/cpu/thread_pool.h"
#include "ops/common.h"
#include "ops/quant/quant_util.h"

namespace kiln::ops {
namespace {

using namespace quant;

bool is_q8(DataType t) { return t == DataType::kInt8 || t == DataType::kUInt8; }

/// Convolution geometry from the attributes and the weight's kernel dims.
struct ConvGeom {
  int64_t group = 1;
  std::vector<int64_t> kernel, strides, dilations, pad_begin, pad_end;
  std::string auto_pad;
};

Result<ConvGeom> conv_geom(const ir::Node& node, const Dims& w_kernel) {
  auto err = [&](const std::string& m) {
    return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m);
  };
  size_t k = w_kernel.size();
  ConvGeom g;
  g.group = node.attrs.get_int("group", 1);
  if (g.group < 1) return err("group must be >= 1");
  g.kernel = node.attrs.get_ints("kernel_shape", w_kernel);
  if (g.kernel != w_kernel) return err("kernel_shape does not match the weight dims");
  g.strides = node.attrs.get_ints("strides", std::vector<int64_t>(k, 1));
  g.dilations = node.attrs.get_ints("dilations", std::vector<int64_t>(k, 1));
  std::vector<int64_t> pads = node.attrs.get_ints("pads", std::vector<int64_t>(2 * k, 0));
  if (g.strides.size() != k || g.dilations.size() != k || pads.size() != 2 * k)
    return err("strides/dilations/pads do not match the number of spatial dims");
  for (size_t i = 0; i < k; ++i) {
    if (g.strides[i] < 1 || g.dilations[i] < 1) return err("strides and dilations must be >= 1");
    if (pads[i] < 0 || pads[k + i] < 0) return err("pads must be >= 0");
  }
  g.pad_begin.assign(pads.begin(), pads.begin() + k);
  g.pad_end.assign(pads.begin() + k, pads.end());
  g.auto_pad = node.attrs.get_string("auto_pad", "NOTSET");
  if (g.auto_pad != "NOTSET" && g.auto_pad != "VALID" && g.auto_pad != "SAME_UPPER" && g.auto_pad != "SAME_LOWER")
    return err("unsupported auto_pad '" + g.auto_pad + "'");
  return g;
}

/// Output size of spatial dim i (-1 if the input size is unknown); fixes SAME pads.
int64_t out_size(ConvGeom& g, size_t i, int64_t in) {
  if (in < 0) return -1;
  int64_t ext = g.dilations[i] * (g.kernel[i] - 1) + 1;
  if (g.auto_pad == "SAME_UPPER" || g.auto_pad == "SAME_LOWER") {
    int64_t out = (in + g.strides[i] - 1) / g.strides[i];
    int64_t total = std::max<int64_t>(0, (out - 1) * g.strides[i] + ext - in);
    g.pad_begin[i] = g.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    g.pad_end[i] = total - g.pad_begin[i];
    return out;
  }
  if (g.auto_pad == "VALID") g.pad_begin[i] = g.pad_end[i] = 0;
  int64_t span = in + g.pad_begin[i] + g.pad_end[i] - ext;
  return span < 0 ? 0 : span / g.strides[i] + 1;
}

Status infer_qlinear_conv(InferContext& ctx) {
  if (!is_q8(ctx.input_dtype(0)) || !is_q8(ctx.input_dtype(3))) return ctx.unsupported("x and w must be int8 or uint8");
  for (int i : {1, 4, 6}) {
    DataType t = ctx.input_dtype(i);
    if (t != DataType::kFloat32 && t != DataType::kFloat16 && t != DataType::kBFloat16)
      return ctx.error("scale input " + std::to_string(i) + " must be a float tensor");
  }
  DataType out = ctx.has_input(7) ? ctx.input_dtype(7) : ctx.input_dtype(0);
  if (!is_q8(out)) return ctx.unsupported(std::string("output type ") + dtype_name(out) + " is not supported");
  if (ctx.has_input(8) && ctx.input_dtype(8) != DataType::kInt32) return ctx.error("bias must be int32");
  const Shape* x = ctx.input_shape(0);
  const Shape* w = ctx.input_shape(3);
  if (!x || !w) {
    ctx.set_output(0, out, std::nullopt);
    return Status();
  }
  if (x->size() < 3 || w->size() != x->size()) return ctx.error("x and w must have the same rank >= 3");
  Dims wd = shape_to_dims(*w);
  Dims wk(wd.begin() + 2, wd.end());
  for (int64_t d : wk)
    if (d < 0) {  // unknown kernel dims: only batch and channels are known
      Shape s(x->size(), Dim::unknown());
      s[0] = (*x)[0], s[1] = (*w)[0];
      ctx.set_output(0, out, s);
      return Status();
    }
  KILN_ASSIGN_OR_RETURN(ConvGeom g, conv_geom(ctx.node(), wk));
  const Dim& c = (*x)[1];
  if (c.known() && wd[1] >= 0 && c.value != wd[1] * g.group)
    return ctx.error("input channels " + std::to_string(c.value) + " != weight channels x group");
  if (wd[0] >= 0 && wd[0] % g.group != 0) return ctx.error("output channels are not divisible by group");
  Shape s{(*x)[0], (*w)[0]};
  for (size_t i = 0; i < wk.size(); ++i) {
    int64_t o = out_size(g, i, (*x)[2 + i].known() ? (*x)[2 + i].value : -1);
    s.push_back(o >= 0 ? Dim(o) : Dim::unknown());
  }
  ctx.set_output(0, out, s);
  return Status();
}

Status ref_qlinear_conv(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(3);
  Tensor& y = ctx.output(0);
  const Dims& xd = x.dims();
  const Dims& wd = w.dims();
  size_t k = wd.size() - 2;
  Dims wk(wd.begin() + 2, wd.end());
  KILN_ASSIGN_OR_RETURN(ConvGeom g, conv_geom(ctx.node(), wk));
  int64_t N = xd[0], C = xd[1], M = wd[0], cg = wd[1];
  if (C != cg * g.group || M % g.group != 0 || M < g.group) return ctx.error("channel counts do not match group");
  int64_t mg = M / g.group;
  Dims od;
  for (size_t i = 0; i < k; ++i) od.push_back(out_size(g, i, xd[2 + i]));
  auto per_m = [&](int i, const char* what) -> Result<std::vector<double>> {
    if (!ctx.has_input(i)) return std::vector<double>(static_cast<size_t>(M), 0.0);
    const Tensor& t = ctx.input(i);
    if (t.numel() != 1 && (t.rank() != 1 || t.numel() != M))
      return ctx.error(std::string(what) + " must be a scalar or have one value per output channel");
    std::vector<double> v(static_cast<size_t>(M));
    for (int64_t m = 0; m < M; ++m) v[m] = t.get_as_double(t.numel() == 1 ? 0 : m);
    return v;
  };
  KILN_ASSIGN_OR_RETURN(std::vector<double> w_scale, per_m(4, "w_scale"));
  KILN_ASSIGN_OR_RETURN(std::vector<double> w_zp, per_m(5, "w_zero_point"));
  KILN_ASSIGN_OR_RETURN(std::vector<double> bias, per_m(8, "B"));
  if (ctx.input(1).numel() != 1 || ctx.input(6).numel() != 1) return ctx.error("x_scale and y_scale must be scalars");
  if ((ctx.has_input(2) && ctx.input(2).numel() != 1) || (ctx.has_input(7) && ctx.input(7).numel() != 1))
    return ctx.error("x_zero_point and y_zero_point must be scalars");
  double x_scale = ctx.input(1).get_as_double(0), y_scale = ctx.input(6).get_as_double(0);
  int64_t x_zp = ctx.has_input(2) ? ctx.input(2).get_as_int64(0) : 0;
  double y_zp = ctx.has_input(7) ? ctx.input(7).get_as_double(0) : 0.0;
  DataType sdt = ctx.input(1).dtype();

  auto xs = strides_of(xd), ws = strides_of(wd);
  int64_t out_spatial = dims_volume(od), k_spatial = dims_volume(wk);
  std::vector<int64_t> oi(k), ki(k);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t m = 0; m < M; ++m) {
      int64_t grp = m / mg;
      // Per-channel multiplier, computed in the scales' float type like the reference.
      double mult = round_to(round_to(x_scale * w_scale[m], sdt) / y_scale, sdt);
      int64_t wzp = static_cast<int64_t>(w_zp[m]);
      std::fill(oi.begin(), oi.end(), 0);
      for (int64_t o = 0; o < out_spatial; ++o) {
        int64_t acc = static_cast<int64_t>(bias[m]);
        std::fill(ki.begin(), ki.end(), 0);
        for (int64_t kk = 0; kk < k_spatial; ++kk) {
          int64_t xoff = 0, woff = m * ws[0];
          bool inside = true;
          for (size_t d = 0; d < k; ++d) {
            int64_t pos = oi[d] * g.strides[d] - g.pad_begin[d] + ki[d] * g.dilations[d];
            if (pos < 0 || pos >= xd[2 + d]) inside = false;
            xoff += pos * xs[2 + d];
            woff += ki[d] * ws[2 + d];
          }
          if (inside) {
            for (int64_t c = 0; c < cg; ++c) {
              int64_t xv = x.get_as_int64(n * xs[0] + (grp * cg + c) * xs[1] + xoff) - x_zp;
              int64_t wv = w.get_as_int64(woff + c * ws[1]) - wzp;
              acc += xv * wv;
            }
          }
          for (size_t d = k; d-- > 0;) {
            if (++ki[d] < wk[d]) break;
            ki[d] = 0;
          }
        }
        int32_t c32 = static_cast<int32_t>(static_cast<uint32_t>(acc));
        y.set_from_double((n * M + m) * out_spatial + o,
                          saturate_round(static_cast<double>(c32) * mult + y_zp, y.dtype()));
        for (size_t d = k; d-- > 0;) {
          if (++oi[d] < od[d]) break;
          oi[d] = 0;
        }
      }
    }
  }
  return Status();
}

/// 2-D convolution on int16 copies of (x - x_zp) and (w - w_zp), parallel over output channels.
Status fast_qlinear_conv(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(3);
  auto in = [&](int i) { return ctx.has_input(i) ? &ctx.input(i) : nullptr; };
  bool ok = x.rank() == 4 && w.rank() == 4 && in(1)->numel() == 1 && in(6)->numel() == 1 &&
            (!in(2) || in(2)->numel() == 1) && (!in(7) || in(7)->numel() == 1);
  for (int i : {1, 4, 6}) ok = ok && in(i)->dtype() == DataType::kFloat32;
  if (!ok) return ref_qlinear_conv(ctx);
  const Dims& xd = x.dims();
  const Dims& wd = w.dims();
  Dims wk(wd.begin() + 2, wd.end());
  KILN_ASSIGN_OR_RETURN(ConvGeom g, conv_geom(ctx.node(), wk));
  int64_t N = xd[0], C = xd[1], H = xd[2], W = xd[3], M = wd[0], cg = wd[1], KH = wd[2], KW = wd[3];
  if (C != cg * g.group || M % g.group != 0 || M < g.group) return ctx.error("channel counts do not match group");
  int64_t mg = M / g.group;
  int64_t OH = out_size(g, 0, H), OW = out_size(g, 1, W);
  int64_t sh = g.strides[0], sw = g.strides[1], dh = g.dilations[0], dw = g.dilations[1];
  int64_t pt = g.pad_begin[0], pl = g.pad_begin[1];
  int64_t Hp = std::max(H + pt + g.pad_end[0], (OH - 1) * sh + (KH - 1) * dh + 1);
  int64_t Wp = std::max(W + pl + g.pad_end[1], (OW - 1) * sw + (KW - 1) * dw + 1);
  auto per_m = [&](int i) {
    std::vector<double> v(static_cast<size_t>(M), 0.0);
    if (const Tensor* t = in(i))
      for (int64_t m = 0; m < M; ++m) v[m] = t->get_as_double(t->numel() == 1 ? 0 : m);
    return v;
  };
  for (int i : {4, 5, 8})
    if (in(i) && in(i)->numel() != 1 && (in(i)->rank() != 1 || in(i)->numel() != M))
      return ctx.error("w_scale, w_zero_point and B must be scalars or have one value per output channel");
  std::vector<double> w_scale = per_m(4), w_zp = per_m(5), bias = per_m(8);
  double x_scale = in(1)->get_as_double(0), y_scale = in(6)->get_as_double(0);
  int x_zp = in(2) ? static_cast<int>(in(2)->get_as_int64(0)) : 0;
  double y_zp = in(7) ? in(7)->get_as_double(0) : 0.0;
  std::vector<int16_t> wq(static_cast<size_t>(w.numel()));
  int64_t per_out = cg * KH * KW;
  for (int64_t i = 0; i < w.numel(); ++i)
    wq[i] = static_cast<int16_t>(w.get_as_int64(i) - static_cast<int64_t>(w_zp[i / per_out]));
  std::vector<int16_t> xpad(static_cast<size_t>(C * Hp * Wp));
  Tensor& y = ctx.output(0);
  for (int64_t n = 0; n < N; ++n) {
    std::fill(xpad.begin(), xpad.end(), int16_t(0));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t ww = 0; ww < W; ++ww)
          xpad[(c * Hp + h + pt) * Wp + ww + pl] =
              static_cast<int16_t>(x.get_as_int64(((n * C + c) * H + h) * W + ww) - x_zp);
    cpu::parallel_for(
        M,
        [&](int64_t m0, int64_t m1) {
          std::vector<uint32_t> acc(static_cast<size_t>(OH * OW));
          for (int64_t m = m0; m < m1; ++m) {
            int64_t grp = m / mg;
            std::fill(acc.begin(), acc.end(), static_cast<uint32_t>(static_cast<int64_t>(bias[m])));
            for (int64_t c = 0; c < cg; ++c) {
              int64_t ch = grp * cg + c;
              for (int64_t kh = 0; kh < KH; ++kh)
                for (int64_t kw = 0; kw < KW; ++kw) {
                  // Unsigned products and sums wrap in 32 bits like the reference's int32 math.
                  uint32_t wv = static_cast<uint32_t>(static_cast<int32_t>(wq[((m * cg + c) * KH + kh) * KW + kw]));
                  if (wv == 0) continue;
                  for (int64_t oh = 0; oh < OH; ++oh) {
                    const int16_t* src = &xpad[(ch * Hp + oh * sh + kh * dh) * Wp + kw * dw];
                    uint32_t* dst = &acc[oh * OW];
                    if (sw == 1) {
                      for (int64_t ow = 0; ow < OW; ++ow)
                        dst[ow] += wv * static_cast<uint32_t>(static_cast<int32_t>(src[ow]));
                    } else {
                      for (int64_t ow = 0; ow < OW; ++ow)
                        dst[ow] += wv * static_cast<uint32_t>(static_cast<int32_t>(src[ow * sw]));
                    }
                  }
                }
            }
            double mult = round_to(round_to(x_scale * w_scale[m], DataType::kFloat32) / y_scale, DataType::kFloat32);
            int64_t base = (n * M + m) * OH * OW;
            for (int64_t o = 0; o < OH * OW; ++o)
              y.set_from_double(
                  base + o, saturate_round(static_cast<double>(static_cast<int32_t>(acc[o])) * mult + y_zp, y.dtype()));
          }
        },
        ctx.num_threads());
  }
  return Status();
}

}  // namespace

void register_qlinear_conv_ops(OpRegistry& r) {
  r.add({.name = "QLinearConv",
         .infer = infer_qlinear_conv,
         .ref = ref_qlinear_conv,
         .fast = {{"cpu.int16", fast_qlinear_conv, nullptr}},
         .min_opset = 10});
}

}  // namespace kiln::ops
