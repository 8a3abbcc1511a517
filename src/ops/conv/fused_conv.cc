// FusedConv (com.microsoft, as onnxruntime defines it): Y = act(Conv(X, W, B) + Z).
// The fuse_conv_activation pass produces it; exporters and ORT-optimized models
// also contain it. `activation` is one of Relu, Sigmoid, Tanh, LeakyRelu (alpha),
// Clip (min, max), HardSigmoid (alpha, beta) and, as a kiln extension, Silu
// (x * sigmoid(x)); absent or "" means none. `activation_params` holds the numbers.
// kiln.max_pool (conv_internal.h) appends a 2-D max pool: Y = MaxPool(act(Conv + Z)).
#include <cmath>

#include "base/dispatch.h"
#include "ops/conv/conv_internal.h"
#include "ops/pool/pool_internal.h"

namespace kiln::ops::conv {

namespace {

struct Activation {
  enum Kind { kNone, kRelu, kSigmoid, kTanh, kLeakyRelu, kClip, kHardSigmoid, kSilu } kind = kNone;
  float a = 0, b = 0;
  float operator()(float v) const {
    switch (kind) {
      case kNone: return v;
      case kRelu: return v > 0 ? v : 0;
      case kSigmoid: return 1.f / (1.f + std::exp(-v));
      case kTanh: return std::tanh(v);
      case kLeakyRelu: return v >= 0 ? v : a * v;
      case kClip: return std::fmin(std::fmax(v, a), b);
      case kHardSigmoid: return std::fmax(0.f, std::fmin(1.f, a * v + b));
      case kSilu: return v / (1.f + std::exp(-v));
    }
    return v;
  }
};

Result<Activation> parse_activation(const ir::Attributes& attrs) {
  Activation act;
  std::string name = attrs.get_string("activation", "");
  std::vector<float> p = attrs.get_floats("activation_params");
  auto need = [&](size_t n) -> Status {
    if (p.size() < n)
      return Status(ErrorCode::kInvalidModel, "activation " + name + " needs " + std::to_string(n) +
                                                  " activation_params, got " + std::to_string(p.size()));
    return Status();
  };
  if (name.empty()) act.kind = Activation::kNone;
  else if (name == "Relu") act.kind = Activation::kRelu;
  else if (name == "Sigmoid") act.kind = Activation::kSigmoid;
  else if (name == "Tanh") act.kind = Activation::kTanh;
  else if (name == "Silu") act.kind = Activation::kSilu;
  else if (name == "LeakyRelu") {
    act.kind = Activation::kLeakyRelu;
    act.a = p.empty() ? 0.01f : p[0];
  } else if (name == "Clip") {
    KILN_RETURN_IF_ERROR(need(2));
    act.kind = Activation::kClip;
    act.a = p[0];
    act.b = p[1];
  } else if (name == "HardSigmoid") {
    KILN_RETURN_IF_ERROR(need(2));
    act.kind = Activation::kHardSigmoid;
    act.a = p[0];
    act.b = p[1];
  } else {
    return Status(ErrorCode::kUnsupported, "FusedConv activation '" + name + "' is not supported");
  }
  return act;
}

}  // namespace

Result<std::optional<FusedMaxPool>> fused_max_pool(const ir::Attributes& attrs) {
  if (!attrs.has(kMaxPoolAttr)) return std::optional<FusedMaxPool>();
  const std::vector<int64_t> v = attrs.get_ints(kMaxPoolAttr);
  if (v.size() != 8)
    return Status(ErrorCode::kInvalidModel,
                  std::string(kMaxPoolAttr) + " needs 8 ints (kh, kw, sh, sw, pads), got " + std::to_string(v.size()));
  FusedMaxPool p{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
  if (p.kh < 1 || p.kw < 1 || p.sh < 1 || p.sw < 1 || p.pt < 0 || p.pl < 0 || p.pb < 0 || p.pr < 0 || p.pt >= p.kh ||
      p.pb >= p.kh || p.pl >= p.kw || p.pr >= p.kw)
    return Status(ErrorCode::kInvalidModel, std::string(kMaxPoolAttr) +
                                                ": kernels and strides must be >= 1 and pads "
                                                "in [0, kernel)");
  return std::optional<FusedMaxPool>(p);
}

namespace {

Status infer_fused_conv(InferContext& ctx) {
  auto act = parse_activation(ctx.attrs());
  if (!act.ok()) return act.status().code() == ErrorCode::kUnsupported ? ctx.unsupported(act.status().message())
                                                                        : ctx.error(act.status().message());
  auto pool = fused_max_pool(ctx.attrs());
  if (!pool.ok()) return ctx.error(pool.status().message());
  KILN_RETURN_IF_ERROR(infer_conv(ctx));
  if (ctx.has_input(3)) {
    if (ctx.input_dtype(3) != ctx.input_dtype(0)) return ctx.error("Z and X dtypes differ");
    const Shape* z = ctx.input_shape(3);
    const auto& y = ctx.outputs()[0].shape;
    if (z && y && z->size() != y->size()) return ctx.error("Z must have the output's shape");
  }
  if (*pool) {
    const TensorType conv_out = ctx.outputs()[0];
    if (conv_out.shape) {
      Shape y = *conv_out.shape;
      if (y.size() != 4) return ctx.error(std::string(kMaxPoolAttr) + " needs a 2-D conv");
      for (int i = 0; i < 2; ++i) {
        const Dim d = y[2 + i];
        if (!d.known()) continue;
        const int64_t o = i == 0 ? (*pool)->out_h(d.value) : (*pool)->out_w(d.value);
        if (o < 1) return ctx.error(std::string(kMaxPoolAttr) + "'s window does not fit the conv output");
        y[2 + i] = Dim(o);
      }
      ctx.set_output(0, conv_out.dtype, y);
    }
  }
  return Status();
}

// MaxPool of NCHW `in` into `out` (dims set) by MaxPool's own reference kernel.
Status max_pool_nchw(const Tensor& in, const FusedMaxPool& p, Tensor& out) {
  ir::Node pool;
  pool.op_type = "MaxPool";
  pool.attrs.set("kernel_shape", ir::Attribute::from_ints({p.kh, p.kw}));
  pool.attrs.set("strides", ir::Attribute::from_ints({p.sh, p.sw}));
  pool.attrs.set("pads", ir::Attribute::from_ints({p.pt, p.pl, p.pb, p.pr}));
  KernelContext sub(pool, {&in}, {&out});
  return pool::ref_max(sub);
}

// act(y + z) in place on the conv output.
Status epilogue(KernelContext& ctx) {
  auto act = parse_activation(ctx.attrs());
  if (!act.ok()) return ctx.error(act.status().message(), act.status().code());
  Tensor& y = ctx.output(0);
  const Tensor* z = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (z && z->dims() != y.dims())
    return ctx.error("Z has dims " + dims_to_string(z->dims()) + " but the output has " + dims_to_string(y.dims()));
  int64_t n = y.numel();
  KILN_DISPATCH_FLOAT(y.dtype(), T, {
    T* yp = y.data_as<T>();
    const T* zp = z ? z->data_as<T>() : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      float v = static_cast<float>(yp[i]);
      if (zp) v += static_cast<float>(zp[i]);
      yp[i] = static_cast<T>((*act)(v));
    }
  });
  return Status();
}

// The convolution itself through Conv's kernels: the three-input view of the node. With
// kiln.max_pool the conv and its epilogue fill a tensor of their own, pooled into Y.
Status conv_then_epilogue(KernelContext& ctx, KernelFn conv) {
  auto pool = fused_max_pool(ctx.attrs());
  if (!pool.ok()) return ctx.error(pool.status().message(), pool.status().code());
  std::vector<const Tensor*> ins = {&ctx.input(0), &ctx.input(1), ctx.has_input(2) ? &ctx.input(2) : nullptr};
  if (!*pool) {
    KernelContext sub(ctx.node(), ins, {&ctx.output(0)});
    sub.set_num_threads(ctx.num_threads());
    KILN_RETURN_IF_ERROR(conv(sub));
    return epilogue(ctx);
  }
  auto s = conv_shape(ctx.attrs(), ctx.input(0).dims(), ctx.input(1).dims(),
                      ctx.has_input(2) ? &ctx.input(2).dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor full = Tensor::empty(ctx.output(0).dtype(), s->out_dims());
  KernelContext sub(ctx.node(), ins, {&full});
  sub.set_num_threads(ctx.num_threads());
  KILN_RETURN_IF_ERROR(conv(sub));
  std::vector<const Tensor*> eins = ins;
  eins.push_back(ctx.has_input(3) ? &ctx.input(3) : nullptr);
  KernelContext esub(ctx.node(), eins, {&full});
  KILN_RETURN_IF_ERROR(epilogue(esub));
  return max_pool_nchw(full, **pool, ctx.output(0));
}

Status ref_fused_conv(KernelContext& ctx) { return conv_then_epilogue(ctx, ref_conv); }
Status cpu_fused_conv(KernelContext& ctx) {
  std::vector<TensorType> types;
  for (size_t i = 0; i < 3; ++i)
    types.push_back(ctx.has_input(i) ? TensorType{ctx.input(i).dtype(), shape_from_dims(ctx.input(i).dims())}
                                     : TensorType{});
#ifdef KILN_HAVE_DNNL
  if (applies_onednn_conv(ctx.node(), types)) return conv_then_epilogue(ctx, onednn_conv);
#endif
  if (applies_im2col_gemm(ctx.node(), types)) return conv_then_epilogue(ctx, cpu_im2col_gemm);
  return conv_then_epilogue(ctx, ref_conv);
}

}  // namespace

void register_fused_conv(OpRegistry& r) {
  r.add({.name = "FusedConv",
         .domain = "com.microsoft",
         .infer = infer_fused_conv,
         .ref = ref_fused_conv,
         .fast = {{"cpu.conv_epilogue", cpu_fused_conv, nullptr}}});
}

}  // namespace kiln::ops::conv
