// DFT: discrete Fourier transform along one axis of a real ([...,1]) or complex
// ([...,2]) signal; STFT: windowed DFT over frames of a signal.
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/signal/signal_util.h"

namespace kiln::ops {
namespace {

struct DftParams {
  int64_t axis = 0;          // normalized, never the last axis
  std::optional<int64_t> n;  // transform length, nullopt when not known yet
  bool inverse = false;
  bool onesided = false;
  bool axis_known = true;
};

// Opset 17-19 carry `axis` as an attribute (default 1); opset 20 moved it to
// input 2 (default -2), where a negative axis is counted before the last dim.
Result<DftParams> dft_params(const InferContext& ctx, int64_t rank, const Shape& in) {
  DftParams p;
  p.inverse = ctx.attrs().get_int("inverse", 0) != 0;
  p.onesided = ctx.attrs().get_int("onesided", 0) != 0;
  int64_t axis = 1;
  if (ctx.opset() >= 20) {
    axis = -2;
    if (ctx.has_input(2)) {
      const Tensor* a = ctx.value(2);
      if (!a) {
        p.axis_known = false;
      } else {
        if (a->numel() != 1) return ctx.error("axis input must be a scalar");
        axis = a->get_as_int64(0);
      }
    }
  } else {
    axis = ctx.attrs().get_int("axis", 1);
  }
  if (p.axis_known) {
    auto ax = normalize_axis(axis, rank);
    if (!ax || *ax == rank - 1)
      return ctx.error("axis " + std::to_string(axis) + " is out of range for a rank-" + std::to_string(rank) +
                       " input (the last dim holds real/imaginary parts)");
    p.axis = *ax;
  }
  if (ctx.has_input(1)) {
    const Tensor* l = ctx.value(1);
    if (l) {
      if (l->numel() != 1) return ctx.error("dft_length must be a scalar");
      int64_t n = l->get_as_int64(0);
      if (n <= 0) return ctx.error("dft_length must be positive, got " + std::to_string(n));
      p.n = n;
    }
  } else if (p.axis_known && in[static_cast<size_t>(p.axis)].known()) {
    int64_t len = in[static_cast<size_t>(p.axis)].value;
    if (p.inverse && p.onesided) {
      // A one-sided spectrum of L bins comes from an even-length real signal of 2(L-1).
      if (len < 2) return ctx.error("cannot infer dft_length of an inverse one-sided DFT from " +
                                    std::to_string(len) + " bins; give dft_length");
      p.n = 2 * (len - 1);
    } else {
      p.n = len;
    }
  }
  return p;
}

Status infer_dft(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* in, require_shape(ctx, 0));
  if (!dtype_is_float(ctx.input_dtype(0))) return ctx.unsupported("DFT needs a floating-point input");
  int64_t rank = static_cast<int64_t>(in->size());
  if (rank < 2) return ctx.error("input must have rank >= 2 ([..., signal, 1 or 2])");
  const Dim& last = in->back();
  if (last.known() && last.value != 1 && last.value != 2)
    return ctx.error("last dim must be 1 (real) or 2 (complex), got " + std::to_string(last.value));
  KILN_ASSIGN_OR_RETURN(DftParams p, dft_params(ctx, rank, *in));
  Shape out = *in;
  out.back() = Dim(p.inverse && p.onesided ? 1 : 2);
  if (!p.axis_known) {
    for (size_t i = 0; i + 1 < out.size(); ++i) out[i] = Dim::unknown();
  } else {
    Dim& d = out[static_cast<size_t>(p.axis)];
    if (!p.n) d = Dim::unknown();
    else d = Dim(p.onesided && !p.inverse ? *p.n / 2 + 1 : *p.n);
  }
  ctx.set_output(0, ctx.input_dtype(0), out);
  return Status();
}

Status ref_dft(KernelContext& kctx) {
  const Tensor& x = kctx.input(0);
  Tensor& y = kctx.output(0);
  const Dims& xd = x.dims();
  const Dims& yd = y.dims();
  int64_t rank = x.rank();
  bool inverse = kctx.attrs().get_int("inverse", 0) != 0;
  bool onesided = kctx.attrs().get_int("onesided", 0) != 0;
  // Inference already validated the axis against these same inputs.
  int64_t axis = kctx.opset() >= 20 ? (kctx.has_input(2) ? kctx.input(2).get_as_int64(0) : -2)
                                    : kctx.attrs().get_int("axis", 1);
  if (axis < 0) axis += rank;
  int64_t n = 0;
  if (kctx.has_input(1)) n = kctx.input(1).get_as_int64(0);
  else n = inverse && onesided ? 2 * (xd[axis] - 1) : xd[axis];
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= xd[i];
  for (int64_t i = axis + 1; i + 1 < rank; ++i) inner *= xd[i];
  int64_t lin = xd[axis], lout = yd[axis];
  int64_t cin = xd.back(), cout = yd.back();
  if (y.numel() == 0) return Status();
  std::vector<double> cs, sn;
  twiddles(n, cs, sn);
  std::vector<double> re(static_cast<size_t>(n)), im(static_cast<size_t>(n));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t q = 0; q < inner; ++q) {
      auto in_at = [&](int64_t j, int64_t c) { return ((o * lin + j) * inner + q) * cin + c; };
      auto out_at = [&](int64_t k, int64_t c) { return ((o * lout + k) * inner + q) * cout + c; };
      int64_t take = std::min(lin, n);
      if (inverse && onesided) take = std::min(lin, n / 2 + 1);
      std::fill(re.begin(), re.end(), 0.0);
      std::fill(im.begin(), im.end(), 0.0);
      for (int64_t j = 0; j < take; ++j) {
        re[j] = x.get_as_double(in_at(j, 0));
        im[j] = cin == 2 ? x.get_as_double(in_at(j, 1)) : 0.0;
      }
      for (int64_t k = 0; k < lout; ++k) {
        double sr = 0, si = 0;
        if (inverse && onesided) {
          // Hermitian extension: bins 1..ceil(n/2)-1 appear twice (as conjugates);
          // DC and, for even n, Nyquist once; imaginary parts of those drop out.
          for (int64_t j = 0; j < take; ++j) {
            int64_t m = (j * k) % n;
            double w = (j == 0 || 2 * j == n) ? 1.0 : 2.0;
            sr += w * (re[j] * cs[m] - im[j] * sn[m]);
          }
          y.set_from_double(out_at(k, 0), sr / static_cast<double>(n));
          continue;
        }
        double sign = inverse ? 1.0 : -1.0;
        for (int64_t j = 0; j < take; ++j) {
          int64_t m = (j * k) % n;
          double c = cs[m], s = sign * sn[m];
          sr += re[j] * c - im[j] * s;
          si += re[j] * s + im[j] * c;
        }
        if (inverse) {
          sr /= static_cast<double>(n);
          si /= static_cast<double>(n);
        }
        y.set_from_double(out_at(k, 0), sr);
        y.set_from_double(out_at(k, 1), si);
      }
    }
  }
  return Status();
}

// STFT inputs: signal [batch, length, 1|2], frame_step, window?, frame_length?.
struct StftParams {
  std::optional<int64_t> step, frame_length;
};

Result<StftParams> stft_params(const InferContext& ctx) {
  StftParams p;
  if (const Tensor* s = ctx.value(1)) {
    if (s->numel() != 1) return ctx.error("frame_step must be a scalar");
    p.step = s->get_as_int64(0);
    if (*p.step <= 0) return ctx.error("frame_step must be positive, got " + std::to_string(*p.step));
  }
  std::optional<int64_t> wlen;
  if (ctx.has_input(2)) {
    const Shape* w = ctx.input_shape(2);
    if (w) {
      if (w->size() != 1) return ctx.error("window must be rank 1");
      if ((*w)[0].known()) wlen = (*w)[0].value;
    }
  }
  if (ctx.has_input(3)) {
    if (const Tensor* f = ctx.value(3)) {
      if (f->numel() != 1) return ctx.error("frame_length must be a scalar");
      p.frame_length = f->get_as_int64(0);
      if (*p.frame_length <= 0) return ctx.error("frame_length must be positive");
      if (wlen && *wlen != *p.frame_length)
        return ctx.error("window length " + std::to_string(*wlen) + " differs from frame_length " +
                         std::to_string(*p.frame_length));
    }
  } else if (ctx.has_input(2)) {
    p.frame_length = wlen;
    if (wlen && *wlen <= 0) return ctx.error("window must not be empty");
  } else {
    return ctx.error("STFT needs a window or a frame_length");
  }
  return p;
}

Status infer_stft(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* in, require_shape(ctx, 0));
  if (!dtype_is_float(ctx.input_dtype(0))) return ctx.unsupported("STFT needs a floating-point signal");
  if (in->size() != 3) return ctx.error("signal must have rank 3 ([batch, length, 1 or 2])");
  const Dim& last = (*in)[2];
  if (last.known() && last.value != 1 && last.value != 2)
    return ctx.error("last dim of the signal must be 1 or 2, got " + std::to_string(last.value));
  if (ctx.has_input(2) && ctx.input_dtype(2) != ctx.input_dtype(0))
    return ctx.error("window dtype must match the signal dtype");
  KILN_ASSIGN_OR_RETURN(StftParams p, stft_params(ctx));
  bool onesided = ctx.attrs().get_int("onesided", 1) != 0;
  Dim frames = Dim::unknown(), bins = Dim::unknown();
  if (p.frame_length) {
    bins = Dim(onesided ? *p.frame_length / 2 + 1 : *p.frame_length);
    if (p.step && (*in)[1].known()) {
      int64_t len = (*in)[1].value;
      if (*p.frame_length > len)
        return ctx.error("frame_length " + std::to_string(*p.frame_length) + " exceeds the signal length " +
                         std::to_string(len));
      frames = Dim(1 + (len - *p.frame_length) / *p.step);
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), Shape{(*in)[0], frames, bins, Dim(2)});
  return Status();
}

Status ref_stft(KernelContext& kctx) {
  const Tensor& x = kctx.input(0);
  Tensor& y = kctx.output(0);
  int64_t batch = x.dim(0), len = x.dim(1), comps = x.dim(2);
  int64_t step = kctx.input(1).get_as_int64(0);
  int64_t fl = kctx.has_input(3) ? kctx.input(3).get_as_int64(0) : kctx.input(2).dim(0);
  int64_t frames = y.dim(1), bins = y.dim(2);
  const Tensor* window = kctx.has_input(2) ? &kctx.input(2) : nullptr;
  std::vector<double> cs, sn;
  twiddles(fl, cs, sn);
  std::vector<double> re(static_cast<size_t>(fl)), im(static_cast<size_t>(fl));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t f = 0; f < frames; ++f) {
      for (int64_t j = 0; j < fl; ++j) {
        int64_t t = f * step + j;
        double w = window ? window->get_as_double(j) : 1.0;
        bool inside = t < len;
        re[j] = inside ? w * x.get_as_double((b * len + t) * comps) : 0.0;
        im[j] = inside && comps == 2 ? w * x.get_as_double((b * len + t) * comps + 1) : 0.0;
      }
      for (int64_t k = 0; k < bins; ++k) {
        double sr = 0, si = 0;
        for (int64_t j = 0; j < fl; ++j) {
          int64_t m = (j * k) % fl;
          sr += re[j] * cs[m] + im[j] * sn[m];
          si += im[j] * cs[m] - re[j] * sn[m];
        }
        int64_t o = ((b * frames + f) * bins + k) * 2;
        y.set_from_double(o, sr);
        y.set_from_double(o + 1, si);
      }
    }
  }
  return Status();
}

}  // namespace

void add_dft_ops(OpRegistry& r) {
  r.add({.name = "DFT", .infer = infer_dft, .ref = ref_dft, .value_inputs = {1, 2}, .min_opset = 17});
  r.add({.name = "STFT", .infer = infer_stft, .ref = ref_stft, .value_inputs = {1, 3}, .min_opset = 17});
}

}  // namespace kiln::ops
