// Fast float32 Conv (im2col + kiln's GEMM, direct depthwise loop) and
// ConvTranspose (GEMM + col2im) on the CPU thread pool.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cpu/gemm.h"
#include "backends/cpu/thread_pool.h"
#include "ops/conv/conv_internal.h"

namespace kiln::ops::conv {

namespace {

// Grow-only per-thread scratch for the column matrices.
float* scratch(size_t floats) {
  struct Buf {
    float* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.n < floats) {
    std::free(buf.p);
    buf.p = static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64));
    buf.n = buf.p ? floats : 0;
  }
  return buf.p;
}

// 2-D view of a 1-D or 2-D window (1-D is H = 1).
struct Win2 {
  int64_t h, w, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw;
};

Win2 win2(const window::WindowAttrs& a, const Dims& in, const Dims& out, const std::vector<int64_t>& pad_begin) {
  if (a.spatial == 1) return {1, in[0], 1, out[0], 1, a.kernel[0], 1, a.strides[0], 1, a.dilations[0], 0, pad_begin[0]};
  return {in[0], in[1], out[0], out[1], a.kernel[0], a.kernel[1], a.strides[0], a.strides[1],
          a.dilations[0], a.dilations[1], pad_begin[0], pad_begin[1]};
}

// Output columns [lo, hi) whose input column ow*sw + off lies in [0, w).
void valid_cols(int64_t off, int64_t sw, int64_t w, int64_t ow, int64_t& lo, int64_t& hi) {
  lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
  hi = w - 1 - off < 0 ? 0 : (w - 1 - off) / sw + 1;
  lo = std::min(lo, ow);
  hi = std::clamp(hi, lo, ow);
}

// col[(c*KH + kh)*KW + kw][oh*OW + ow] = x[c][ih][iw] (0 in the padding).
void im2col_2d(const float* x, int64_t cg, const Win2& v, float* col, int threads) {
  const int64_t rows = cg * v.kh * v.kw, ohw = v.oh * v.ow;
  cpu::parallel_for(rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / (v.kh * v.kw), kh = (r / v.kw) % v.kh, kw = r % v.kw;
      float* dst = col + r * ohw;
      const int64_t off = kw * v.dw - v.pw;
      int64_t lo, hi;
      valid_cols(off, v.sw, v.w, v.ow, lo, hi);
      for (int64_t oh = 0; oh < v.oh; ++oh, dst += v.ow) {
        const int64_t ih = oh * v.sh - v.ph + kh * v.dh;
        if (ih < 0 || ih >= v.h) {
          std::memset(dst, 0, sizeof(float) * v.ow);
          continue;
        }
        const float* src = x + (c * v.h + ih) * v.w + off;
        for (int64_t ow = 0; ow < lo; ++ow) dst[ow] = 0.f;
        if (v.sw == 1) std::memcpy(dst + lo, src + lo, sizeof(float) * (hi - lo));
        else
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * v.sw];
        for (int64_t ow = hi; ow < v.ow; ++ow) dst[ow] = 0.f;
      }
    }
  }, threads);
}

// Any number of spatial dims, one tap at a time.
void im2col_nd(const float* x, int64_t cg, const ConvShape& s, float* col, int threads) {
  const int64_t sp = s.attrs.spatial, rows = cg * s.k_count;
  const Dims kdims(s.attrs.kernel.begin(), s.attrs.kernel.end());
  const auto in_strides = strides_of(s.geo.in);
  cpu::parallel_for(rows, [&](int64_t r0, int64_t r1) {
    std::vector<int64_t> kc(sp), oc(sp);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / s.k_count;
      int64_t rem = r % s.k_count;
      for (int64_t d = sp - 1; d >= 0; --d) {
        kc[d] = rem % kdims[d];
        rem /= kdims[d];
      }
      std::fill(oc.begin(), oc.end(), 0);
      const float* xc = x + c * s.in_count;
      float* dst = col + r * s.out_count;
      for (int64_t o = 0; o < s.out_count; ++o) {
        int64_t off = 0;
        bool inside = true;
        for (int64_t d = 0; d < sp; ++d) {
          int64_t pos = oc[d] * s.attrs.strides[d] - s.geo.pad_begin[d] + kc[d] * s.attrs.dilations[d];
          inside = inside && pos >= 0 && pos < s.geo.in[d];
          off += pos * in_strides[d];
        }
        dst[o] = inside ? xc[off] : 0.f;
        for (int64_t d = sp - 1; d >= 0; --d) {
          if (++oc[d] < s.geo.out[d]) break;
          oc[d] = 0;
        }
      }
    }
  }, threads);
}

// One channel of a depthwise 2-D conv: out += w[kh][kw] * shifted input rows.
void depthwise_channel(const float* x, const float* w, float bias, const Win2& v, float* y) {
  std::fill(y, y + v.oh * v.ow, bias);
  for (int64_t kh = 0; kh < v.kh; ++kh)
    for (int64_t kw = 0; kw < v.kw; ++kw) {
      const float wv = w[kh * v.kw + kw];
      const int64_t off = kw * v.dw - v.pw;
      int64_t lo, hi;
      valid_cols(off, v.sw, v.w, v.ow, lo, hi);
      for (int64_t oh = 0; oh < v.oh; ++oh) {
        const int64_t ih = oh * v.sh - v.ph + kh * v.dh;
        if (ih < 0 || ih >= v.h) continue;
        const float* src = x + ih * v.w + off;
        float* dst = y + oh * v.ow;
        if (v.sw == 1)
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] += wv * src[ow];
        else
          for (int64_t ow = lo; ow < hi; ++ow) dst[ow] += wv * src[ow * v.sw];
      }
    }
}

bool all_f32(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 2) return false;
  for (size_t i = 0; i < inputs.size() && i < 3; ++i)
    if (node.input(i) && inputs[i].dtype != DataType::kFloat32) return false;
  return true;
}

}  // namespace

bool applies_im2col_gemm(const ir::Node& node, const std::vector<TensorType>& inputs) { return all_f32(node, inputs); }

Status cpu_im2col_gemm(KernelContext& ctx) {
  const Tensor& xt = ctx.input(0);
  const Tensor& wt = ctx.input(1);
  const Tensor* bt = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (xt.dtype() != DataType::kFloat32 || wt.dtype() != DataType::kFloat32 || (bt && bt->dtype() != DataType::kFloat32))
    return ctx.error("cpu.im2col_gemm needs float32");
  auto sr = conv_shape(ctx.attrs(), xt.dims(), wt.dims(), bt ? &bt->dims() : nullptr);
  if (!sr.ok()) return ctx.error(sr.status().message());
  const ConvShape& s = *sr;
  const float* x = xt.data_as<float>();
  const float* w = wt.data_as<float>();
  const float* b = bt ? bt->data_as<float>() : nullptr;
  float* y = ctx.output(0).data_as<float>();
  if (s.n == 0 || s.m == 0 || s.out_count == 0) return Status();
  const int threads = ctx.num_threads();
  const int64_t cg = s.c / s.group, mg = s.m / s.group, kdim = cg * s.k_count;
  const int64_t sp = s.attrs.spatial;

  if (sp <= 2 && cg == 1 && mg == 1 && s.group > 1) {
    const Win2 v = win2(s.attrs, s.geo.in, s.geo.out, s.geo.pad_begin);
    cpu::parallel_for(s.n * s.m, [&](int64_t c0, int64_t c1) {
      for (int64_t nc = c0; nc < c1; ++nc) {
        const int64_t ch = nc % s.m;
        depthwise_channel(x + nc * s.in_count, w + ch * s.k_count, b ? b[ch] : 0.f, v, y + nc * s.out_count);
      }
    }, threads);
    return Status();
  }

  bool pointwise = true;
  for (int64_t d = 0; d < sp; ++d)
    pointwise = pointwise && s.attrs.kernel[d] == 1 && s.attrs.strides[d] == 1 && s.geo.pad_begin[d] == 0 &&
                s.geo.out[d] == s.geo.in[d];
  const size_t col_size = pointwise ? 0 : static_cast<size_t>(kdim * s.out_count);
  const Win2 v = sp <= 2 ? win2(s.attrs, s.geo.in, s.geo.out, s.geo.pad_begin) : Win2{};

  // One group's product; `inner` threads for im2col and the GEMM.
  auto run_group = [&](int64_t n, int64_t g, int inner) -> bool {
    const float* xg = x + (n * s.c + g * cg) * s.in_count;
    const float* col = xg;
    if (!pointwise) {
      float* buf = scratch(col_size);
      if (!buf) return false;
      if (sp <= 2) im2col_2d(xg, cg, v, buf, inner);
      else im2col_nd(xg, cg, s, buf, inner);
      col = buf;
    }
    cpu::sgemm(false, false, mg, s.out_count, kdim, 1.f, w + g * mg * kdim, kdim, col, s.out_count, 0.f,
               y + (n * s.m + g * mg) * s.out_count, s.out_count, inner);
    return true;
  };

  bool ok = true;
  const int64_t jobs = s.n * s.group;
  if (jobs > 1 && mg * s.out_count * kdim < (int64_t{1} << 22)) {
    // Many small products: one per thread.
    std::vector<char> done(static_cast<size_t>(jobs), 1);
    cpu::parallel_for(jobs, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) done[j] = run_group(j / s.group, j % s.group, 1);
    }, threads);
    for (char d : done) ok = ok && d;
  } else {
    for (int64_t j = 0; j < jobs && ok; ++j) ok = run_group(j / s.group, j % s.group, threads);
  }
  if (!ok) return ctx.error("out of memory for the im2col buffer", ErrorCode::kOutOfMemory);
  if (b) {
    cpu::parallel_for(s.n * s.m, [&](int64_t c0, int64_t c1) {
      for (int64_t nc = c0; nc < c1; ++nc) {
        float* yc = y + nc * s.out_count;
        const float bv = b[nc % s.m];
        for (int64_t o = 0; o < s.out_count; ++o) yc[o] += bv;
      }
    }, threads);
  }
  return Status();
}

// ---------------------------------------------------------------- ConvTranspose

bool applies_gemm_col2im(const ir::Node& node, const std::vector<TensorType>& inputs) { return all_f32(node, inputs); }

Status cpu_gemm_col2im(KernelContext& ctx) {
  const Tensor& xt = ctx.input(0);
  const Tensor& wt = ctx.input(1);
  const Tensor* bt = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (xt.dtype() != DataType::kFloat32 || wt.dtype() != DataType::kFloat32 || (bt && bt->dtype() != DataType::kFloat32))
    return ctx.error("cpu.gemm_col2im needs float32");
  auto sr = conv_transpose_shape(ctx.attrs(), xt.dims(), wt.dims(), bt ? &bt->dims() : nullptr);
  if (!sr.ok()) return ctx.error(sr.status().message());
  const ConvTransposeShape& s = *sr;
  const float* x = xt.data_as<float>();
  const float* w = wt.data_as<float>();
  const float* b = bt ? bt->data_as<float>() : nullptr;
  float* y = ctx.output(0).data_as<float>();
  if (s.n == 0 || s.m == 0 || s.out_count == 0) return Status();
  const int threads = ctx.num_threads();
  const int64_t sp = s.attrs.spatial, cg = s.c / s.group, mg = s.m / s.group, rows = mg * s.k_count;
  float* col = scratch(static_cast<size_t>(rows * s.in_count));
  if (!col && rows * s.in_count > 0) return ctx.error("out of memory for the col2im buffer", ErrorCode::kOutOfMemory);
  const Dims kdims(s.attrs.kernel.begin(), s.attrs.kernel.end());
  const auto out_strides = strides_of(s.out);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t g = 0; g < s.group; ++g) {
      // col[mo*K + k][i] = sum_c W[g*cg + c][mo][k] * X[n][g*cg + c][i]
      cpu::sgemm(true, false, rows, s.in_count, cg, 1.f, w + g * cg * rows, rows,
                 x + (n * s.c + g * cg) * s.in_count, s.in_count, 0.f, col, s.in_count, threads);
      cpu::parallel_for(mg, [&](int64_t m0, int64_t m1) {
        std::vector<int64_t> ic(sp), kc(sp);
        for (int64_t mo = m0; mo < m1; ++mo) {
          const int64_t m = g * mg + mo;
          float* yc = y + (n * s.m + m) * s.out_count;
          std::fill(yc, yc + s.out_count, b ? b[m] : 0.f);
          for (int64_t k = 0; k < s.k_count; ++k) {
            int64_t rem = k;
            for (int64_t d = sp - 1; d >= 0; --d) {
              kc[d] = rem % kdims[d];
              rem /= kdims[d];
            }
            const float* cr = col + (mo * s.k_count + k) * s.in_count;
            std::fill(ic.begin(), ic.end(), 0);
            for (int64_t i = 0; i < s.in_count; ++i) {
              int64_t off = 0;
              bool inside = true;
              for (int64_t d = 0; d < sp; ++d) {
                int64_t pos = ic[d] * s.attrs.strides[d] - s.pad_begin[d] + kc[d] * s.attrs.dilations[d];
                inside = inside && pos >= 0 && pos < s.out[d];
                off += pos * out_strides[d];
              }
              if (inside) yc[off] += cr[i];
              for (int64_t d = sp - 1; d >= 0; --d) {
                if (++ic[d] < s.in[d]) break;
                ic[d] = 0;
              }
            }
          }
        }
      }, threads);
    }
  return Status();
}

}  // namespace kiln::ops::conv
