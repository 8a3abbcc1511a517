// Activation functions: Sigmoid, HardSigmoid, HardSwish, Relu, LeakyRelu, Elu, Selu,
// Celu, Softplus, Softsign, Mish, Gelu, ThresholdedRelu, Swish, and the
// com.microsoft Gelu / FastGelu / BiasGelu / QuickGelu contrib ops.
#include <cmath>

#include "ops/unary/unary.h"

namespace kiln::ops {
namespace {

// Clamps to [0, 1] letting NaN through, as numpy's clip does.
template <class C>
C clamp01(C v) {
  return v < C(0) ? C(0) : (v > C(1) ? C(1) : v);
}

template <class C>
C sigmoid(C x) {
  return C(1) / (C(1) + std::exp(-x));
}

// log(1 + e^x) without overflow for large x.
template <class C>
C softplus(C x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

template <class C>
C gelu_erf(C x) {
  return C(0.5) * x * (C(1) + std::erf(x * C(M_SQRT1_2)));
}

template <class C>
C gelu_tanh(C x) {
  const C k = C(0.7978845608028654);  // sqrt(2 / pi)
  return C(0.5) * x * (C(1) + std::tanh(k * (x + C(0.044715) * x * x * x)));
}

struct Sigmoid {
  static constexpr uint32_t kTypes = kTypesFloat;
  template <class C>
  C operator()(C x) const {
    return sigmoid(x);
  }
};

struct HardSigmoid {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha, beta;
  explicit HardSigmoid(const ir::Attributes& a) : alpha(a.get_float("alpha", 0.2f)), beta(a.get_float("beta", 0.5f)) {}
  template <class C>
  C operator()(C x) const {
    return clamp01(C(alpha) * x + C(beta));
  }
};

struct HardSwish {
  static constexpr uint32_t kTypes = kTypesFloat;
  template <class C>
  C operator()(C x) const {
    return x * clamp01(x / C(6) + C(0.5));
  }
};

// Opset 14 added the signed integer types.
struct Relu {
  static constexpr uint32_t kTypes = kTypesSigned;
  template <class C>
  C operator()(C x) const {
    return x < C(0) ? C(0) : x;  // NaN passes through
  }
};

struct LeakyRelu {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha;
  explicit LeakyRelu(const ir::Attributes& a) : alpha(a.get_float("alpha", 0.01f)) {}
  template <class C>
  C operator()(C x) const {
    return x < C(0) ? C(alpha) * x : x;
  }
};

struct ThresholdedRelu {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha;
  explicit ThresholdedRelu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  template <class C>
  C operator()(C x) const {
    return x > C(alpha) ? x : C(0);
  }
};

struct Elu {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha;
  explicit Elu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  template <class C>
  C operator()(C x) const {
    return x < C(0) ? C(alpha) * std::expm1(x) : x;
  }
};

struct Selu {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha, gamma;
  explicit Selu(const ir::Attributes& a)
      : alpha(a.get_float("alpha", 1.67326319217681884765625f)),
        gamma(a.get_float("gamma", 1.05070102214813232421875f)) {}
  template <class C>
  C operator()(C x) const {
    return C(gamma) * (x > C(0) ? x : C(alpha) * std::expm1(x));
  }
};

struct Celu {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha;
  explicit Celu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  static Status validate(const InferContext& ctx) {
    if (ctx.attrs().get_float("alpha", 1.0f) == 0.0f) return ctx.error("Celu alpha must be nonzero");
    return Status();
  }
  template <class C>
  C operator()(C x) const {
    return x > C(0) ? x : C(alpha) * std::expm1(x / C(alpha));
  }
};

struct Softplus {
  static constexpr uint32_t kTypes = kTypesFloat;
  template <class C>
  C operator()(C x) const {
    return softplus(x);
  }
};

struct Softsign {
  static constexpr uint32_t kTypes = kTypesFloat;
  template <class C>
  C operator()(C x) const {
    return x / (C(1) + std::fabs(x));
  }
};

struct Mish {
  static constexpr uint32_t kTypes = kTypesFloat;
  template <class C>
  C operator()(C x) const {
    return x * std::tanh(softplus(x));
  }
};

// Opset 20: approximate = "none" (erf form) or "tanh".
struct Gelu {
  static constexpr uint32_t kTypes = kTypesFloat;
  bool use_tanh;
  explicit Gelu(const ir::Attributes& a) : use_tanh(a.get_string("approximate", "none") == "tanh") {}
  static Status validate(const InferContext& ctx) {
    std::string mode = ctx.attrs().get_string("approximate", "none");
    if (mode != "none" && mode != "tanh")
      return ctx.error("Gelu approximate must be \"none\" or \"tanh\", got \"" + mode + "\"");
    return Status();
  }
  template <class C>
  C operator()(C x) const {
    return use_tanh ? gelu_tanh(x) : gelu_erf(x);
  }
};

// com.microsoft Gelu is always the erf form.
struct GeluErf {
  static constexpr uint32_t kTypes = kTypesFloat;
  template <class C>
  C operator()(C x) const {
    return gelu_erf(x);
  }
};

// Opset 24: x * sigmoid(alpha * x).
struct Swish {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha;
  explicit Swish(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  template <class C>
  C operator()(C x) const {
    return x * sigmoid(C(alpha) * x);
  }
};

// com.microsoft QuickGelu: x * sigmoid(alpha * x), alpha defaulting to 1.702.
struct QuickGelu {
  static constexpr uint32_t kTypes = kTypesFloat;
  float alpha;
  explicit QuickGelu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.702f)) {}
  template <class C>
  C operator()(C x) const {
    return x * sigmoid(C(alpha) * x);
  }
};

// com.microsoft FastGelu (tanh form) and BiasGelu (erf form): Gelu of X + bias,
// the bias 1-D and broadcast along the last axis (optional for FastGelu).
Status infer_bias_gelu(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("input 0 is required");
  if (ctx.node().op_type == "BiasGelu" && !ctx.has_input(1)) return ctx.error("input 1 (bias) is required");
  KILN_RETURN_IF_ERROR(check_input_dtype(ctx, 0, kTypesFloat));
  if (ctx.has_input(1)) {
    KILN_RETURN_IF_ERROR(check_same_dtypes(ctx, 0, 2));
    const Shape* xs = ctx.input_shape(0);
    const Shape* bs = ctx.input_shape(1);
    if (bs && bs->size() != 1) return ctx.error("bias must be 1-D");
    if (xs && xs->empty()) return ctx.error("X must have rank >= 1 when a bias is given");
    if (xs && bs && xs->back().known() && (*bs)[0].known() && xs->back().value != (*bs)[0].value)
      return ctx.error("bias length " + (*bs)[0].to_string() + " does not match the last dim of X " +
                       xs->back().to_string());
  }
  ctx.set_output(0, ctx.input_dtype(0), ctx.input(0).shape);
  return Status();
}

template <bool kTanh>
Status bias_gelu_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const Tensor* bias = ctx.has_input(1) ? &ctx.input(1) : nullptr;
  KILN_RETURN_IF_ERROR(check_same_size(ctx, x, y));
  int64_t n = x.numel();
  int64_t inner = bias ? bias->numel() : 1;
  if (bias && (x.rank() == 0 || bias->rank() != 1 || x.dims().back() != inner))
    return ctx.error("bias must be 1-D with the length of X's last dim");
  KILN_DISPATCH_FLOAT(x.dtype(), T, {
    using C = compute_t<T>;
    const T* px = x.data_as<T>();
    const T* pb = bias ? bias->data_as<T>() : nullptr;
    T* py = y.data_as<T>();
    for (int64_t i = 0; i < n; ++i) {
      C v = static_cast<C>(px[i]);
      if (pb) v += static_cast<C>(pb[i % inner]);
      py[i] = T(kTanh ? gelu_tanh(v) : gelu_erf(v));
    }
  });
  return Status();
}

}  // namespace

void register_activation_ops(OpRegistry& r) {
  r.add(unary_op_def<Sigmoid>("Sigmoid"));
  r.add(unary_op_def<HardSigmoid>("HardSigmoid"));
  r.add(unary_op_def<HardSwish>("HardSwish"));
  r.add(unary_op_def<Relu>("Relu"));
  r.add(unary_op_def<LeakyRelu>("LeakyRelu"));
  r.add(unary_op_def<ThresholdedRelu>("ThresholdedRelu"));
  r.add(unary_op_def<Elu>("Elu"));
  r.add(unary_op_def<Selu>("Selu"));
  r.add(unary_op_def<Celu>("Celu"));
  r.add(unary_op_def<Softplus>("Softplus"));
  r.add(unary_op_def<Softsign>("Softsign"));
  r.add(unary_op_def<Mish>("Mish"));
  r.add(unary_op_def<Gelu>("Gelu"));
  r.add(unary_op_def<Swish>("Swish"));
  r.add(unary_op_def<GeluErf>("Gelu", "com.microsoft"));
  r.add(unary_op_def<QuickGelu>("QuickGelu", "com.microsoft"));
  r.add({.name = "FastGelu", .domain = "com.microsoft", .infer = infer_bias_gelu, .ref = bias_gelu_kernel<true>});
  r.add({.name = "BiasGelu", .domain = "com.microsoft", .infer = infer_bias_gelu, .ref = bias_gelu_kernel<false>});
}

}  // namespace kiln::ops
