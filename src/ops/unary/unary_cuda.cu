// CUDA kernels of the unary family: every pointwise op is a functor over the
// compute type (float for fp32/fp16/bf16, the integer itself for int32/int64)
// run by one vectorised map kernel; Clip, FastGelu/BiasGelu, IsNaN/IsInf and
// Not have small kernels of their own. Semantics follow the reference kernels
// in unary.cc, activation.cc and clip.cc.
#include "ops/unary/eltwise_cuda.cuh"

namespace kiln::ops {
namespace {

using namespace cuda::eltwise;
using cuda::from_f;
using cuda::to_f;

template <class C>
__device__ __forceinline__ C clamp01(C v) {  // NaN passes through
  return v < C(0) ? C(0) : (v > C(1) ? C(1) : v);
}
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus(float x) { return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x)); }
__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// ---- ops on float and int32/int64
struct Abs {
  static constexpr uint32_t kTypes = kBitsFloatI;
  template <class C>
  __device__ C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>)
      return fabsf(x);
    else
      return x < 0 ? negate(x) : x;
  }
};
struct Neg {
  static constexpr uint32_t kTypes = kBitsFloatI;
  template <class C>
  __device__ C operator()(C x) const {
    return negate(x);
  }
};
struct Sign {
  static constexpr uint32_t kTypes = kBitsFloatI;
  template <class C>
  __device__ C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>)
      if (isnan(x)) return x;
    return x > 0 ? C(1) : (x < 0 ? C(-1) : C(0));
  }
};
struct Relu {
  static constexpr uint32_t kTypes = kBitsFloatI;
  template <class C>
  __device__ C operator()(C x) const {
    return x < C(0) ? C(0) : x;
  }
};

// ---- float-only ops without attributes
#define KILN_CUDA_FLOAT_UNARY(Name, expr)                       \
  struct Name {                                                 \
    static constexpr uint32_t kTypes = kBitsFloat;              \
    __device__ float operator()(float x) const { return expr; } \
  };
KILN_CUDA_FLOAT_UNARY(Exp, expf(x))
KILN_CUDA_FLOAT_UNARY(Log, logf(x))
KILN_CUDA_FLOAT_UNARY(Sqrt, sqrtf(x))
KILN_CUDA_FLOAT_UNARY(Reciprocal, 1.0f / x)
KILN_CUDA_FLOAT_UNARY(Floor, floorf(x))
KILN_CUDA_FLOAT_UNARY(Ceil, ceilf(x))
KILN_CUDA_FLOAT_UNARY(Round, rintf(x))  // half-to-even
KILN_CUDA_FLOAT_UNARY(Sin, sinf(x))
KILN_CUDA_FLOAT_UNARY(Cos, cosf(x))
KILN_CUDA_FLOAT_UNARY(Tan, tanf(x))
KILN_CUDA_FLOAT_UNARY(Asin, asinf(x))
KILN_CUDA_FLOAT_UNARY(Acos, acosf(x))
KILN_CUDA_FLOAT_UNARY(Atan, atanf(x))
KILN_CUDA_FLOAT_UNARY(Sinh, sinhf(x))
KILN_CUDA_FLOAT_UNARY(Cosh, coshf(x))
KILN_CUDA_FLOAT_UNARY(Tanh, tanhf(x))
KILN_CUDA_FLOAT_UNARY(Asinh, asinhf(x))
KILN_CUDA_FLOAT_UNARY(Acosh, acoshf(x))
KILN_CUDA_FLOAT_UNARY(Atanh, atanhf(x))
KILN_CUDA_FLOAT_UNARY(Erf, erff(x))
KILN_CUDA_FLOAT_UNARY(Sigmoid, sigmoid(x))
KILN_CUDA_FLOAT_UNARY(HardSwish, x* clamp01(x / 6.0f + 0.5f))
KILN_CUDA_FLOAT_UNARY(Softplus, softplus(x))
KILN_CUDA_FLOAT_UNARY(Softsign, x / (1.0f + fabsf(x)))
KILN_CUDA_FLOAT_UNARY(Mish, x* tanhf(softplus(x)))
KILN_CUDA_FLOAT_UNARY(GeluErf, gelu_erf(x))
#undef KILN_CUDA_FLOAT_UNARY

// ---- float-only ops with attributes (defaults as in activation.cc / clip.cc)
struct HardSigmoid {
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha, beta;
  explicit HardSigmoid(const ir::Attributes& a) : alpha(a.get_float("alpha", 0.2f)), beta(a.get_float("beta", 0.5f)) {}
  __device__ float operator()(float x) const { return clamp01(alpha * x + beta); }
};
struct LeakyRelu {
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha;
  explicit LeakyRelu(const ir::Attributes& a) : alpha(a.get_float("alpha", 0.01f)) {}
  __device__ float operator()(float x) const { return x < 0.0f ? alpha * x : x; }
};
struct ThresholdedRelu {
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha;
  explicit ThresholdedRelu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  __device__ float operator()(float x) const { return x > alpha ? x : 0.0f; }
};
struct Elu {
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha;
  explicit Elu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  __device__ float operator()(float x) const { return x < 0.0f ? alpha * expm1f(x) : x; }
};
struct Selu {
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha, gamma;
  explicit Selu(const ir::Attributes& a)
      : alpha(a.get_float("alpha", 1.67326319217681884765625f)),
        gamma(a.get_float("gamma", 1.05070102214813232421875f)) {}
  __device__ float operator()(float x) const { return gamma * (x > 0.0f ? x : alpha * expm1f(x)); }
};
struct Celu {
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha;
  explicit Celu(const ir::Attributes& a) : alpha(a.get_float("alpha", 1.0f)) {}
  __device__ float operator()(float x) const { return x > 0.0f ? x : alpha * expm1f(x / alpha); }
};
struct Gelu {
  static constexpr uint32_t kTypes = kBitsFloat;
  bool use_tanh;
  explicit Gelu(const ir::Attributes& a) : use_tanh(a.get_string("approximate", "none") == "tanh") {}
  __device__ float operator()(float x) const { return use_tanh ? gelu_tanh(x) : gelu_erf(x); }
};
struct Swish {  // also QuickGelu, whose alpha defaults to 1.702
  static constexpr uint32_t kTypes = kBitsFloat;
  float alpha;
  Swish(const ir::Attributes& a, float def) : alpha(a.get_float("alpha", def)) {}
  explicit Swish(const ir::Attributes& a) : Swish(a, 1.0f) {}
  __device__ float operator()(float x) const { return x * sigmoid(alpha * x); }
};
struct QuickGelu : Swish {
  explicit QuickGelu(const ir::Attributes& a) : Swish(a, 1.702f) {}
};
struct Shrink {
  static constexpr uint32_t kTypes = kBitsFloat;
  float lambd, bias;
  explicit Shrink(const ir::Attributes& a) : lambd(a.get_float("lambd", 0.5f)), bias(a.get_float("bias", 0.0f)) {}
  __device__ float operator()(float x) const { return x < -lambd ? x + bias : (x > lambd ? x - bias : 0.0f); }
};
struct BitwiseNot {
  static constexpr uint32_t kTypes = kBitsInt;
  template <class C>
  __device__ C operator()(C x) const {
    return static_cast<C>(~x);
  }
};

template <class Op>
Op make_op(const ir::Attributes& attrs) {
  if constexpr (std::is_constructible_v<Op, const ir::Attributes&>)
    return Op(attrs);
  else
    return Op{};
}

template <class Op, class T>
struct UnaryFn {
  Op op;
  __device__ __forceinline__ T operator()(T x) const { return store_c<T>(op(load_c(x))); }
};

template <class Op>
Status unary_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.numel() != x.numel() || y.dtype() != x.dtype())
    return ctx.error("output does not match the input", ErrorCode::kInternal);
  if (y.numel() == 0) return Status();
  const Op op = make_op<Op>(ctx.attrs());
  const bool ok = visit_type<Op::kTypes>(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map(x.data_as<T>(), y.data_as<T>(), y.numel(), UnaryFn<Op, T>{op}, cuda::stream_of(ctx));
  });
  if (!ok) return unsupported_dtype(ctx, x.dtype());
  return cuda::launch_status(ctx, "unary");
}

template <class Op>
bool unary_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && (type_bit(in[0].dtype) & Op::kTypes) != 0;
}

// ---- Clip: bounds from attributes (opset < 11) or optional scalar inputs read
// on the device, so they need not be known at plan time.
template <class T>
__global__ void clip_kernel(const T* x, T* y, int64_t n, const T* lo_p, const T* hi_p, compute_t<T> lo,
                            compute_t<T> hi) {
  if (lo_p) lo = load_c(*lo_p);
  if (hi_p) hi = load_c(*hi_p);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    compute_t<T> v = load_c(x[i]);
    if (v < lo) v = lo;  // NaN passes through; min > max gives max
    if (v > hi) v = hi;
    y[i] = store_c<T>(v);
  }
}

Status clip_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.numel() != x.numel() || y.dtype() != x.dtype())
    return ctx.error("output does not match the input", ErrorCode::kInternal);
  for (size_t i = 1; i < 3 && ctx.opset() >= 11; ++i)
    if (ctx.has_input(i) && (ctx.input(i).dtype() != x.dtype() || ctx.input(i).numel() != 1))
      return ctx.error("min/max must be scalars of the input's dtype");
  if (y.numel() == 0) return Status();
  const bool ok = visit_type<kBitsFloatI>(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    C lo = std::numeric_limits<C>::lowest(), hi = std::numeric_limits<C>::max();
    const T* lo_p = nullptr;
    const T* hi_p = nullptr;
    if (ctx.opset() < 11) {
      if constexpr (std::is_floating_point_v<C>) {
        lo = ctx.attrs().get_float("min", -std::numeric_limits<float>::infinity());
        hi = ctx.attrs().get_float("max", std::numeric_limits<float>::infinity());
      }
    } else {
      if (ctx.has_input(1)) lo_p = ctx.input(1).data_as<T>();
      if (ctx.has_input(2)) hi_p = ctx.input(2).data_as<T>();
    }
    const int64_t n = y.numel();
    clip_kernel<T><<<cuda::grid_for(n), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(x.data_as<T>(), y.data_as<T>(), n,
                                                                                 lo_p, hi_p, lo, hi);
  });
  if (!ok) return unsupported_dtype(ctx, x.dtype());
  return cuda::launch_status(ctx, "clip");
}

bool clip_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  const uint32_t bit = type_bit(in[0].dtype);
  if (node.opset < 11) return (bit & kBitsFloat) != 0;
  for (size_t i = 1; i < in.size() && i < 3; ++i)
    if (node.input(i) && in[i].dtype != in[0].dtype) return false;
  return (bit & kBitsFloatI) != 0;
}

// ---- com.microsoft FastGelu (tanh form, optional bias) and BiasGelu (erf form):
// the bias is 1-D along the last axis, so rows x cols with no index division.
template <bool kTanh, class T>
__global__ void bias_gelu_kernel(const T* x, const T* b, T* y, int64_t rows, int64_t cols) {
  const int64_t cstride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += cstride) {
      const int64_t i = r * cols + c;
      const float v = to_f(x[i]) + to_f(b[c]);
      y[i] = from_f<T>(kTanh ? gelu_tanh(v) : gelu_erf(v));
    }
}

template <bool kTanh, class T>
struct GeluFn {
  __device__ T operator()(T v) const { return from_f<T>(kTanh ? gelu_tanh(to_f(v)) : gelu_erf(to_f(v))); }
};

template <bool kTanh>
Status bias_gelu_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.numel() != x.numel() || y.dtype() != x.dtype())
    return ctx.error("output does not match the input", ErrorCode::kInternal);
  const Tensor* bias = ctx.has_input(1) ? &ctx.input(1) : nullptr;
  if (bias && (x.rank() == 0 || bias->rank() != 1 || bias->dtype() != x.dtype() || x.dims().back() != bias->numel()))
    return ctx.error("bias must be 1-D with the length of X's last dim");
  const int64_t n = y.numel();
  if (n == 0) return Status();
  const bool ok = visit_type<kBitsFloat>(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    cudaStream_t s = cuda::stream_of(ctx);
    if (!bias) {
      launch_map(x.data_as<T>(), y.data_as<T>(), n, GeluFn<kTanh, T>{}, s);
      return;
    }
    const int64_t cols = bias->numel(), rows = n / cols;
    dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + cuda::kBlock - 1) / cuda::kBlock, 1024)),
              static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
    bias_gelu_kernel<kTanh, T>
        <<<grid, cuda::kBlock, 0, s>>>(x.data_as<T>(), bias->data_as<T>(), y.data_as<T>(), rows, cols);
  });
  if (!ok) return unsupported_dtype(ctx, x.dtype());
  return cuda::launch_status(ctx, "bias_gelu");
}

bool bias_gelu_applies(const ir::Node&, const std::vector<TensorType>& in) {
  if (in.empty() || !(type_bit(in[0].dtype) & kBitsFloat)) return false;
  return in.size() < 2 || in[1].dtype == DataType::kUndefined || in[1].dtype == in[0].dtype;
}

// ---- predicates: float -> bool, bool -> bool
template <class T>
struct IsNanInfFn {
  bool is_nan, neg, pos;
  __device__ bool operator()(T v) const {
    const float c = to_f(v);
    return is_nan ? isnan(c) : (isinf(c) && (c > 0 ? pos : neg));
  }
};

Status isnan_isinf_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.numel() != x.numel() || y.dtype() != DataType::kBool)
    return ctx.error("output does not match the input", ErrorCode::kInternal);
  if (y.numel() == 0) return Status();
  const bool is_nan = ctx.node().op_type == "IsNaN";
  const bool neg = ctx.attrs().get_int("detect_negative", 1) != 0;
  const bool pos = ctx.attrs().get_int("detect_positive", 1) != 0;
  const bool ok = visit_type<kBitsFloat>(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map(x.data_as<T>(), y.data_as<bool>(), y.numel(), IsNanInfFn<T>{is_nan, neg, pos}, cuda::stream_of(ctx));
  });
  if (!ok) return unsupported_dtype(ctx, x.dtype());
  return cuda::launch_status(ctx, "isnan_isinf");
}

bool float_in_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && (type_bit(in[0].dtype) & kBitsFloat) != 0;
}

struct NotFn {
  __device__ bool operator()(bool x) const { return !x; }
};

Status not_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.numel() != x.numel() || x.dtype() != DataType::kBool || y.dtype() != DataType::kBool)
    return ctx.error("Not expects bool input and output", ErrorCode::kInternal);
  if (y.numel() == 0) return Status();
  launch_map(x.data_as<bool>(), y.data_as<bool>(), y.numel(), NotFn{}, cuda::stream_of(ctx));
  return cuda::launch_status(ctx, "not");
}

bool bool_in_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && in[0].dtype == DataType::kBool;
}

struct Entry {
  const char* domain;
  const char* name;
  KernelFn fn;
  KernelApplies applies;
};

#define KILN_UNARY(Name, Op) \
  { "", Name, unary_cuda<Op>, unary_applies<Op> }
const Entry kEntries[] = {
    KILN_UNARY("Abs", Abs),
    KILN_UNARY("Neg", Neg),
    KILN_UNARY("Sign", Sign),
    KILN_UNARY("Relu", Relu),
    KILN_UNARY("Exp", Exp),
    KILN_UNARY("Log", Log),
    KILN_UNARY("Sqrt", Sqrt),
    KILN_UNARY("Reciprocal", Reciprocal),
    KILN_UNARY("Floor", Floor),
    KILN_UNARY("Ceil", Ceil),
    KILN_UNARY("Round", Round),
    KILN_UNARY("Sin", Sin),
    KILN_UNARY("Cos", Cos),
    KILN_UNARY("Tan", Tan),
    KILN_UNARY("Asin", Asin),
    KILN_UNARY("Acos", Acos),
    KILN_UNARY("Atan", Atan),
    KILN_UNARY("Sinh", Sinh),
    KILN_UNARY("Cosh", Cosh),
    KILN_UNARY("Tanh", Tanh),
    KILN_UNARY("Asinh", Asinh),
    KILN_UNARY("Acosh", Acosh),
    KILN_UNARY("Atanh", Atanh),
    KILN_UNARY("Erf", Erf),
    KILN_UNARY("Sigmoid", Sigmoid),
    KILN_UNARY("HardSigmoid", HardSigmoid),
    KILN_UNARY("HardSwish", HardSwish),
    KILN_UNARY("LeakyRelu", LeakyRelu),
    KILN_UNARY("ThresholdedRelu", ThresholdedRelu),
    KILN_UNARY("Elu", Elu),
    KILN_UNARY("Selu", Selu),
    KILN_UNARY("Celu", Celu),
    KILN_UNARY("Softplus", Softplus),
    KILN_UNARY("Softsign", Softsign),
    KILN_UNARY("Mish", Mish),
    KILN_UNARY("Gelu", Gelu),
    KILN_UNARY("Swish", Swish),
    KILN_UNARY("Shrink", Shrink),
    KILN_UNARY("BitwiseNot", BitwiseNot),
    {"com.microsoft", "Gelu", unary_cuda<GeluErf>, unary_applies<GeluErf>},
    {"com.microsoft", "QuickGelu", unary_cuda<QuickGelu>, unary_applies<QuickGelu>},
    {"com.microsoft", "FastGelu", bias_gelu_cuda<true>, bias_gelu_applies},
    {"com.microsoft", "BiasGelu", bias_gelu_cuda<false>, bias_gelu_applies},
    {"", "Clip", clip_cuda, clip_applies},
    {"", "IsNaN", isnan_isinf_cuda, float_in_applies},
    {"", "IsInf", isnan_isinf_cuda, float_in_applies},
    {"", "Not", not_cuda, bool_in_applies},
};
#undef KILN_UNARY

}  // namespace

void register_unary_cuda_kernels(OpRegistry& r) {
  for (const Entry& e : kEntries)
    (void)r.add_cuda_kernel(e.domain, e.name, FastKernel{"cuda.eltwise", e.fn, e.applies});
}

}  // namespace kiln::ops
