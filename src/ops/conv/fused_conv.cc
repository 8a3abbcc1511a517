// FusedConv (com.microsoft, as onnxruntime defines it): Y = act(Conv(X, W, B) + Z).
// The fuse_conv_activation pass produces it; exporters and ORT-optimized models
// also contain it. `activation` is one of Relu, Sigmoid, Tanh, LeakyRelu (alpha),
// Clip (min, max), HardSigmoid (alpha, beta) and, as a kiln extension, Silu
// (x * sigmoid(x)); absent or "" means none. `activation_params` holds the numbers.
// kiln.max_pool (conv_internal.h) appends a 2-D max pool: Y = MaxPool(act(Conv + Z)).
// kiln.shortcut_strides (conv_internal.h) adds a 1x1 strided conv of inputs 4-6 (X2, W2, B2):
// Y = act(Conv(X, W, B) + Z + Conv(X2, W2, B2)), ResNet's downsample branch in the epilogue.
// kiln.chain_activation (conv_internal.h) adds output 1, H2 = act3(Conv(Y, W3, B3)) of inputs 7-8, a
// 1x1 conv of the finished Y: the next ResNet block's first conv.
#include <array>
#include <cmath>

#include "base/dispatch.h"
#include "ops/conv/conv_internal.h"
#include "ops/layout.h"
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

Result<std::optional<std::array<int64_t, 2>>> fused_shortcut(const ir::Attributes& attrs) {
  using Strides = std::optional<std::array<int64_t, 2>>;
  if (!attrs.has(kShortcutAttr)) return Strides();
  const std::vector<int64_t> v = attrs.get_ints(kShortcutAttr);
  if (v.size() != 2)
    return Status(ErrorCode::kInvalidModel,
                  std::string(kShortcutAttr) + " needs 2 ints (sh, sw), got " + std::to_string(v.size()));
  if (v[0] < 1 || v[1] < 1)
    return Status(ErrorCode::kInvalidModel, std::string(kShortcutAttr) + ": strides must be >= 1, got [" +
                                                std::to_string(v[0]) + ", " + std::to_string(v[1]) + "]");
  return Strides(std::array<int64_t, 2>{v[0], v[1]});
}

Result<std::optional<bool>> fused_chain(const ir::Attributes& attrs) {
  const ir::Attribute* a = attrs.find(kChainAttr);
  if (!a) return std::optional<bool>();
  if (a->kind != ir::Attribute::Kind::kString)
    return Status(ErrorCode::kInvalidModel, std::string(kChainAttr) + " must be a string (\"Relu\" or \"\")");
  if (a->s == "Relu") return std::optional<bool>(true);
  if (a->s.empty()) return std::optional<bool>(false);
  return Status(ErrorCode::kInvalidModel,
                std::string(kChainAttr) + ": activation '" + a->s + "' is not supported (\"Relu\", or \"\" for none)");
}

Status check_unit_conv(const KernelContext& ctx, const Dims& x, const Dims& w, const Tensor* b,
                       const std::string& what) {
  auto s = conv_shape(ctx.attrs(), nhwc_to_nchw(x), nhwc_to_nchw(w), b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  for (int64_t i = 0; i < s->attrs.spatial; ++i)
    if (s->attrs.strides[i] != 1 || s->geo.pad_begin[i] != 0 || s->group != 1)
      return ctx.error(what + " needs its conv at stride 1 without padding or groups", ErrorCode::kUnsupported);
  return Status();
}

namespace {

// Shape checks that pass where a dim is not known.
bool not_one(const Dim& d) { return d.known() && d.value != 1; }
bool differ(const Dim& a, const Dim& b) { return a.known() && b.known() && a.value != b.value; }

// Inputs first .. first + names.size() - 1, where present and typed, have X's dtype.
Status same_dtype_as_x(InferContext& ctx, size_t first, const std::vector<const char*>& names) {
  const DataType t = ctx.input_dtype(0);
  for (size_t k = 0; k < names.size(); ++k) {
    const DataType ti = ctx.input_dtype(first + k);
    if (ctx.has_input(first + k) && t != DataType::kUndefined && ti != DataType::kUndefined && ti != t)
      return ctx.error(std::string(names[k]) + " is " + dtype_name(ti) + " but X is " + dtype_name(t));
  }
  return Status();
}

// Inputs 4-6 of a FusedConv with kiln.shortcut_strides against the conv's: X2 [N, C2, H2, W2],
// W2 [M, C2, 1, 1] and B2 [M] in X's dtype, and the shortcut's output [N, M, (H2 - 1) / sh + 1,
// (W2 - 1) / sw + 1] the conv's (dims not known on both sides pass).
Status infer_shortcut(InferContext& ctx, const std::array<int64_t, 2>& strides) {
  const std::string attr = kShortcutAttr;
  if (!ctx.has_input(4) || !ctx.has_input(5)) return ctx.error(attr + " needs inputs 4 (X2) and 5 (W2)");
  KILN_RETURN_IF_ERROR(same_dtype_as_x(ctx, 4, {"X2", "W2", "B2"}));
  const Shape* x2 = ctx.input_shape(4);
  const Shape* w2 = ctx.input_shape(5);
  const Shape* w = ctx.input_shape(1);
  if (x2 && x2->size() != 4) return ctx.error("X2 must be [N, C2, H2, W2], got " + shape_to_string(*x2));
  Dim m = w ? (*w)[0] : Dim::unknown();
  if (w2) {
    if (w2->size() != 4 || not_one((*w2)[2]) || not_one((*w2)[3]))
      return ctx.error("W2 must be 1x1 ([M, C2, 1, 1]), got " + shape_to_string(*w2));
    if (x2 && differ((*w2)[1], (*x2)[1]))
      return ctx.error("W2 " + shape_to_string(*w2) + " expects " + (*w2)[1].to_string() + " channels but X2 " +
                       shape_to_string(*x2) + " has " + (*x2)[1].to_string());
    if (differ((*w2)[0], m))
      return ctx.error("W2 has " + (*w2)[0].to_string() + " output channels but W has " + m.to_string());
    if (!m.known()) m = (*w2)[0];
  }
  if (ctx.has_input(6) && ctx.input_shape(6)) {
    const Shape& b2 = *ctx.input_shape(6);
    if (b2.size() != 1 || differ(b2[0], m))
      return ctx.error("B2 " + shape_to_string(b2) + " must be [M] with M = " + m.to_string());
  }
  const auto& y = ctx.outputs()[0].shape;
  if (y && y->size() != 4) return ctx.error(attr + " needs a 2-D conv");
  if (!x2 || !y) return Status();
  const char* dim_names[] = {"batch (dim 0)", "", "height (dim 2)", "width (dim 3)"};
  for (size_t d : {0, 2, 3}) {
    const Dim& in = (*x2)[d];
    if (!in.known() || !(*y)[d].known()) continue;
    const int64_t o = d == 0 ? in.value : (in.value - 1) / strides[d - 2] + 1;
    if (o != (*y)[d].value)
      return ctx.error("the shortcut conv's output " + std::string(dim_names[d]) + " is " + std::to_string(o) +
                       " (X2 " + shape_to_string(*x2) + ", " + attr + " [" + std::to_string(strides[0]) + ", " +
                       std::to_string(strides[1]) + "]) but the conv's is " + (*y)[d].to_string());
  }
  return Status();
}

// Inputs 7-8 and output 1 of a FusedConv with kiln.chain_activation against Y (output 0, NCHW):
// W3 [M2, M, 1, 1] and B3 [M2] in X's dtype, H2 [N, M2, H, W] (dims not known on both sides pass).
Status infer_chain(InferContext& ctx) {
  const std::string attr = kChainAttr;
  if (ctx.num_outputs() != 2)
    return ctx.error("FusedConv with " + attr + " has 2 outputs (Y, H2), got " + std::to_string(ctx.num_outputs()));
  if (!ctx.has_input(7)) return ctx.error(attr + " needs input 7 (W3)");
  KILN_RETURN_IF_ERROR(same_dtype_as_x(ctx, 7, {"W3", "B3"}));
  const TensorType y = ctx.outputs()[0];
  if (y.shape && y.shape->size() != 4) return ctx.error(attr + " needs a 2-D conv");
  const Dim m = y.shape ? (*y.shape)[1] : Dim::unknown();
  Dim m2 = Dim::unknown();
  if (const Shape* w3 = ctx.input_shape(7)) {
    if (w3->size() != 4 || not_one((*w3)[2]) || not_one((*w3)[3]))
      return ctx.error("W3 must be 1x1 ([M2, M, 1, 1]), got " + shape_to_string(*w3));
    if (differ((*w3)[1], m))
      return ctx.error("W3 " + shape_to_string(*w3) + " expects " + (*w3)[1].to_string() + " channels but Y has " +
                       m.to_string());
    m2 = (*w3)[0];
  }
  if (ctx.has_input(8) && ctx.input_shape(8)) {
    const Shape& b3 = *ctx.input_shape(8);
    if (b3.size() != 1 || differ(b3[0], m2))
      return ctx.error("B3 " + shape_to_string(b3) + " must be [M2] with M2 = " + m2.to_string());
    if (!m2.known()) m2 = b3[0];
  }
  std::optional<Shape> h2;
  if (y.shape) h2 = Shape{(*y.shape)[0], m2, (*y.shape)[2], (*y.shape)[3]};
  ctx.set_output(1, y.dtype, h2);
  return Status();
}

Status infer_fused_conv(InferContext& ctx) {
  auto act = parse_activation(ctx.attrs());
  if (!act.ok()) return act.status().code() == ErrorCode::kUnsupported ? ctx.unsupported(act.status().message())
                                                                        : ctx.error(act.status().message());
  auto pool = fused_max_pool(ctx.attrs());
  if (!pool.ok()) return ctx.error(pool.status().message());
  auto shortcut = fused_shortcut(ctx.attrs());
  if (!shortcut.ok()) return ctx.error(shortcut.status().message());
  auto chain = fused_chain(ctx.attrs());
  if (!chain.ok()) return ctx.error(chain.status().message());
  const std::string n_in = std::to_string(ctx.num_inputs());
  if (ctx.num_inputs() > 9) return ctx.error("FusedConv has at most 9 inputs, got " + n_in);
  if (!*chain && ctx.num_inputs() > 7)
    return ctx.error("FusedConv has " + n_in + " inputs; inputs 7 (W3) and 8 (B3) need " + kChainAttr);
  // With the chain, inputs 4-6 are empty slots ahead of W3 where there is no shortcut.
  if (!*shortcut && !*chain && ctx.num_inputs() > 4)
    return ctx.error("FusedConv has " + n_in + " inputs; inputs past Z need " + kShortcutAttr);
  for (size_t i = 4; i < 7 && !*shortcut; ++i)
    if (ctx.has_input(i))
      return ctx.error("FusedConv has input " + std::to_string(i) + "; inputs 4-6 (X2, W2, B2) need " + kShortcutAttr);
  if (!*chain && ctx.num_outputs() != 1)
    return ctx.error("FusedConv has " + std::to_string(ctx.num_outputs()) + " outputs; a second one (H2) needs " +
                     kChainAttr);
  if (*shortcut && *pool) return ctx.error(std::string(kShortcutAttr) + " cannot be combined with " + kMaxPoolAttr);
  if (*chain && *pool) return ctx.error(std::string(kChainAttr) + " cannot be combined with " + kMaxPoolAttr);
  KILN_RETURN_IF_ERROR(infer_conv(ctx));
  if (ctx.has_input(3)) {
    if (ctx.input_dtype(3) != ctx.input_dtype(0)) return ctx.error("Z and X dtypes differ");
    const Shape* z = ctx.input_shape(3);
    const auto& y = ctx.outputs()[0].shape;
    if (z && y && z->size() != y->size()) return ctx.error("Z must have the output's shape");
  }
  if (*shortcut) KILN_RETURN_IF_ERROR(infer_shortcut(ctx, **shortcut));
  if (*chain) KILN_RETURN_IF_ERROR(infer_chain(ctx));
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

// A Conv node for Conv's reference kernel: 1x1 at `strides`, no pads (the shortcut and chained convs).
ir::Node conv1x1_node(const std::array<int64_t, 2>& strides) {
  ir::Node conv;
  conv.op_type = "Conv";
  conv.attrs.set("kernel_shape", ir::Attribute::from_ints({1, 1}));
  conv.attrs.set("strides", ir::Attribute::from_ints({strides[0], strides[1]}));
  conv.attrs.set("pads", ir::Attribute::from_ints({0, 0, 0, 0}));
  return conv;
}

// Conv(X2, W2, B2; 1x1, strides, no pads) of the NCHW inputs 4-6 by Conv's reference kernel, in
// a tensor of its own with the conv output's dims `y_dims`.
Result<Tensor> shortcut_conv_nchw(const KernelContext& ctx, const std::array<int64_t, 2>& strides, const Dims& y_dims) {
  const std::string attr = kShortcutAttr;
  if (!ctx.has_input(4) || !ctx.has_input(5)) return ctx.error(attr + " needs inputs 4 (X2) and 5 (W2)");
  const Tensor& x2 = ctx.input(4);
  const Tensor& w2 = ctx.input(5);
  const Tensor* b2 = ctx.has_input(6) ? &ctx.input(6) : nullptr;
  const DataType t = ctx.input(0).dtype();
  if (x2.dtype() != t || w2.dtype() != t || (b2 && b2->dtype() != t))
    return ctx.error(attr + ": X2, W2 and B2 must be " + dtype_name(t) + " as X is");
  if (w2.rank() != 4 || w2.dim(2) != 1 || w2.dim(3) != 1)
    return ctx.error("W2 must be 1x1 ([M, C2, 1, 1]), got " + dims_to_string(w2.dims()));
  const ir::Node conv = conv1x1_node(strides);
  auto s = conv_shape(conv.attrs, x2.dims(), w2.dims(), b2 ? &b2->dims() : nullptr);
  if (!s.ok()) return ctx.error(attr + ": " + s.status().message());
  if (s->out_dims() != y_dims)
    return ctx.error("the shortcut conv's output " + dims_to_string(s->out_dims()) + " is not the conv's " +
                     dims_to_string(y_dims));
  Tensor r = Tensor::empty(t, s->out_dims());
  KernelContext sub(conv, {&x2, &w2, b2}, {&r});
  KILN_RETURN_IF_ERROR(ref_conv(sub));
  return r;
}

// H2 = act3(Conv(Y, W3, B3; 1x1, stride 1, no pads)) of the finished NCHW Y into output 1 by Conv's
// reference kernel, the activation (ReLU when `relu`) applied to its rounded values as FusedConv's
// epilogue does. Nothing when output 1 is not wanted.
Status chain_conv_nchw(KernelContext& ctx, const Tensor& y, bool relu) {
  const std::string attr = kChainAttr;
  if (!ctx.has_output(1)) return Status();
  if (!ctx.has_input(7)) return ctx.error(attr + " needs input 7 (W3)");
  const Tensor& w3 = ctx.input(7);
  const Tensor* b3 = ctx.has_input(8) ? &ctx.input(8) : nullptr;
  const DataType t = y.dtype();
  if (w3.dtype() != t || (b3 && b3->dtype() != t))
    return ctx.error(attr + ": W3 and B3 must be " + dtype_name(t) + " as X is");
  if (w3.rank() != 4 || w3.dim(2) != 1 || w3.dim(3) != 1)
    return ctx.error("W3 must be 1x1 ([M2, M, 1, 1]), got " + dims_to_string(w3.dims()));
  const ir::Node conv = conv1x1_node({1, 1});
  auto s = conv_shape(conv.attrs, y.dims(), w3.dims(), b3 ? &b3->dims() : nullptr);
  if (!s.ok()) return ctx.error(attr + ": " + s.status().message());
  Tensor& h2 = ctx.output(1);
  if (h2.dims() != s->out_dims() || h2.dtype() != t)
    return ctx.error("output 1 is " + dims_to_string(h2.dims()) + " but the chained conv's output is " +
                     dims_to_string(s->out_dims()));
  KernelContext sub(conv, {&y, &w3, b3}, {&h2});
  KILN_RETURN_IF_ERROR(ref_conv(sub));
  if (!relu) return Status();
  const Activation act{Activation::kRelu};
  const int64_t n = h2.numel();
  KILN_DISPATCH_FLOAT(t, T, {
    T* p = h2.data_as<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(act(static_cast<float>(p[i])));
  });
  return Status();
}

// act(y + z + r) in place on the conv output y (z: input 3; r: the shortcut conv's output or null).
Status epilogue(const KernelContext& ctx, Tensor& y, const Tensor* r) {
  auto act = parse_activation(ctx.attrs());
  if (!act.ok()) return ctx.error(act.status().message(), act.status().code());
  const Tensor* z = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (z && z->dims() != y.dims())
    return ctx.error("Z has dims " + dims_to_string(z->dims()) + " but the output has " + dims_to_string(y.dims()));
  int64_t n = y.numel();
  KILN_DISPATCH_FLOAT(y.dtype(), T, {
    T* yp = y.data_as<T>();
    const T* zp = z ? z->data_as<T>() : nullptr;
    const T* rp = r ? r->data_as<T>() : nullptr;
    for (int64_t i = 0; i < n; ++i) {
      float v = static_cast<float>(yp[i]);
      if (zp) v += static_cast<float>(zp[i]);
      if (rp) v += static_cast<float>(rp[i]);
      yp[i] = static_cast<T>((*act)(v));
    }
  });
  return Status();
}

// The convolution itself through Conv's kernels: the three-input view of the node. With
// kiln.max_pool the conv and its epilogue fill a tensor of their own, pooled into Y; with
// kiln.shortcut_strides the shortcut conv fills one that the epilogue adds; with kiln.chain_activation
// the chained conv reads the finished Y into output 1.
Status conv_then_epilogue(KernelContext& ctx, KernelFn conv) {
  auto pool = fused_max_pool(ctx.attrs());
  if (!pool.ok()) return ctx.error(pool.status().message(), pool.status().code());
  auto shortcut = fused_shortcut(ctx.attrs());
  if (!shortcut.ok()) return ctx.error(shortcut.status().message(), shortcut.status().code());
  auto chain = fused_chain(ctx.attrs());
  if (!chain.ok()) return ctx.error(chain.status().message(), chain.status().code());
  std::vector<const Tensor*> ins = {&ctx.input(0), &ctx.input(1), ctx.has_input(2) ? &ctx.input(2) : nullptr};
  if (!*pool) {
    Tensor& y = ctx.output(0);
    KernelContext sub(ctx.node(), ins, {&y});
    sub.set_num_threads(ctx.num_threads());
    KILN_RETURN_IF_ERROR(conv(sub));
    Tensor r;
    if (*shortcut) {
      auto sc = shortcut_conv_nchw(ctx, **shortcut, y.dims());
      if (!sc.ok()) return sc.status();
      r = std::move(*sc);
    }
    KILN_RETURN_IF_ERROR(epilogue(ctx, y, *shortcut ? &r : nullptr));
    return *chain ? chain_conv_nchw(ctx, y, **chain) : Status();
  }
  if (*shortcut) return ctx.error(std::string(kShortcutAttr) + " cannot be combined with " + kMaxPoolAttr);
  if (*chain) return ctx.error(std::string(kChainAttr) + " cannot be combined with " + kMaxPoolAttr);
  auto s = conv_shape(ctx.attrs(), ctx.input(0).dims(), ctx.input(1).dims(),
                      ctx.has_input(2) ? &ctx.input(2).dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor full = Tensor::empty(ctx.output(0).dtype(), s->out_dims());
  KernelContext sub(ctx.node(), ins, {&full});
  sub.set_num_threads(ctx.num_threads());
  KILN_RETURN_IF_ERROR(conv(sub));
  KILN_RETURN_IF_ERROR(epilogue(ctx, full, nullptr));
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
