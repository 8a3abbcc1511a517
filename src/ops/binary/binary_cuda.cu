// CUDA kernels of the binary family: broadcasting arithmetic, comparisons,
// logical and bitwise ops (functors over the compute type), Pow with a base and
// exponent of different dtypes, and the variadic Max/Min/Sum/Mean. The operands'
// dims are coalesced first (ops/unary/eltwise_cuda.cuh); then
//   same shape or one scalar operand -> a flat kernel with 16-byte accesses,
//   two dims (bias along rows or columns) -> a 2-D kernel without index division,
//   anything else -> per-element offsets in 32-bit index math where it fits.
// Semantics follow binary.cc, logical.cc and variadic.cc.
#include "ops/binary/div_mod.h"
#include "ops/unary/eltwise_cuda.cuh"

namespace kiln::ops {
namespace {

using namespace cuda::eltwise;

// ---- functors: C is the compute type (float for 16-bit floats)
#define KILN_CUDA_BINARY(Name, types, bool_out, expr) \
  struct Name {                                       \
    static constexpr uint32_t kTypes = types;         \
    static constexpr bool kBoolOut = bool_out;        \
    template <class C>                                \
    __device__ auto operator()(C a, C b) const {      \
      return expr;                                    \
    }                                                 \
  };
KILN_CUDA_BINARY(Add, kBitsFloatI, false, wrap_add(a, b))
KILN_CUDA_BINARY(Sub, kBitsFloatI, false, wrap_sub(a, b))
KILN_CUDA_BINARY(Mul, kBitsFloatI, false, wrap_mul(a, b))
KILN_CUDA_BINARY(PRelu, kBitsFloatI, false, a < C(0) ? wrap_mul(b, a) : a)
KILN_CUDA_BINARY(Equal, kBitsFloatI | kBitBool, true, a == b)
KILN_CUDA_BINARY(Less, kBitsFloatI, true, a < b)
KILN_CUDA_BINARY(LessOrEqual, kBitsFloatI, true, a <= b)
KILN_CUDA_BINARY(Greater, kBitsFloatI, true, a > b)
KILN_CUDA_BINARY(GreaterOrEqual, kBitsFloatI, true, a >= b)
KILN_CUDA_BINARY(And, kBitBool, true, a&& b)
KILN_CUDA_BINARY(Or, kBitBool, true, a || b)
KILN_CUDA_BINARY(Xor, kBitBool, true, a != b)
KILN_CUDA_BINARY(BitwiseAnd, kBitsInt, false, static_cast<C>(a& b))
KILN_CUDA_BINARY(BitwiseOr, kBitsInt, false, static_cast<C>(a | b))
KILN_CUDA_BINARY(BitwiseXor, kBitsInt, false, static_cast<C>(a ^ b))
#undef KILN_CUDA_BINARY

// Div and Mod apply the reference's scalar rules (div_mod.h).
struct Div {
  static constexpr uint32_t kTypes = kBitsFloatI;
  static constexpr bool kBoolOut = false;
  template <class C>
  __device__ C operator()(C a, C b) const {
    return div_rule(a, b);
  }
};

struct Mod {
  static constexpr uint32_t kTypes = kBitsFloatI;
  static constexpr bool kBoolOut = false;
  bool fmod;
  explicit Mod(const ir::Attributes& a) : fmod(a.get_int("fmod", 0) != 0) {}
  template <class C>
  __device__ C operator()(C a, C b) const {
    return mod_rule(a, b, fmod);
  }
};

// Out-of-range shifts give 0 (or -1 for a right shift of a negative value).
struct BitShift {
  static constexpr uint32_t kTypes = kBitsInt;
  static constexpr bool kBoolOut = false;
  bool left;
  explicit BitShift(const ir::Attributes& a) : left(a.get_string("direction", "") == "LEFT") {}
  template <class C>
  __device__ C operator()(C a, C b) const {
    constexpr int kWidth = static_cast<int>(sizeof(C) * 8);
    bool in_range = b < static_cast<C>(kWidth);
    if constexpr (std::is_signed_v<C>) in_range = in_range && b >= 0;
    if (left) return in_range ? static_cast<C>(static_cast<wrap_t<C>>(a) << b) : C(0);
    if (in_range) return static_cast<C>(a >> b);
    if constexpr (std::is_signed_v<C>) return a < 0 ? C(-1) : C(0);
    return C(0);
  }
};

template <class Op>
Op make_op(const ir::Attributes& attrs) {
  if constexpr (std::is_constructible_v<Op, const ir::Attributes&>)
    return Op(attrs);
  else
    return Op{};
}

/// Storage-level wrapper: loads both operands as the compute type, stores the result.
template <class Op, class T>
struct BinaryFn {
  using Out = std::conditional_t<Op::kBoolOut, bool, T>;
  Op op;
  __device__ __forceinline__ Out operator()(T a, T b) const {
    if constexpr (Op::kBoolOut)
      return op(load_c(a), load_c(b));
    else
      return store_c<T>(op(load_c(a), load_c(b)));
  }
};

// ---- kernels; F maps (TA, TB) storage values to a TO storage value
template <int V, bool kA, bool kB, class TA, class TB, class TO, class F>
__global__ void binary_flat_kernel(const TA* a, const TB* b, TO* y, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const TA a0 = a[0];  // the value of a scalar operand (n >= 1: always readable)
  const TB b0 = b[0];
  const int64_t nv = n / V;
  for (int64_t i = t; i < nv; i += stride) {
    cuda::Vec<TA, V> va;
    cuda::Vec<TB, V> vb;
    cuda::Vec<TO, V> vy;
    if constexpr (kA) va = reinterpret_cast<const cuda::Vec<TA, V>*>(a)[i];
    if constexpr (kB) vb = reinterpret_cast<const cuda::Vec<TB, V>*>(b)[i];
#pragma unroll
    for (int k = 0; k < V; ++k) {
      TA xa;
      TB xb;
      if constexpr (kA)
        xa = va.v[k];
      else
        xa = a0;
      if constexpr (kB)
        xb = vb.v[k];
      else
        xb = b0;
      vy.v[k] = f(xa, xb);
    }
    reinterpret_cast<cuda::Vec<TO, V>*>(y)[i] = vy;
  }
  for (int64_t i = nv * V + t; i < n; i += stride) {
    TA xa;
    TB xb;
    if constexpr (kA)
      xa = a[i];
    else
      xa = a0;
    if constexpr (kB)
      xb = b[i];
    else
      xb = b0;
    y[i] = f(xa, xb);
  }
}

// Two coalesced dims: row r, column c; each operand's column stride is 0 or 1.
template <class TA, class TB, class TO, class F>
__global__ void binary_rows_kernel(const TA* a, const TB* b, TO* y, int64_t rows, int64_t cols, int64_t sa0,
                                   int64_t sa1, int64_t sb0, int64_t sb1, F f) {
  const int64_t rstride = static_cast<int64_t>(gridDim.y) * blockDim.y;
  const int64_t cstride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r < rows; r += rstride) {
    const TA* ar = a + r * sa0;
    const TB* br = b + r * sb0;
    TO* yr = y + r * cols;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += cstride)
      yr[c] = f(ar[c * sa1], br[c * sb1]);
  }
}

template <class I, class TA, class TB, class TO, class F>
__global__ void binary_bcast_kernel(const TA* a, const TB* b, TO* y, int64_t n, BroadcastPlan<2> p, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I off[2];
    plan_offsets<I, 2>(p, 2, static_cast<I>(i), off);
    y[i] = f(a[off[0]], b[off[1]]);
  }
}

/// y = f(a, b) over inputs 0 and 1 broadcast to output 0.
template <class TA, class TB, class TO, class F>
Status launch_binary(KernelContext& ctx, F f) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Tensor& y = ctx.output(0);
  if (!broadcasts_to(a.dims(), y.dims()) || !broadcasts_to(b.dims(), y.dims()))
    return ctx.error("input dims do not broadcast to the output dims " + dims_to_string(y.dims()),
                     ErrorCode::kInternal);
  const int64_t n = y.numel();
  if (n == 0) return Status();
  BroadcastPlan<2> p;
  if (!make_plan(y.dims(), {&a.dims(), &b.dims()}, p))
    return ctx.error("more than 8 dims remain after merging", ErrorCode::kUnsupported);
  const TA* pa = a.data_as<TA>();
  const TB* pb = b.data_as<TB>();
  TO* py = y.data_as<TO>();
  cudaStream_t s = cuda::stream_of(ctx);
  if (p.rank == 1 && (p.strides[0][0] | p.strides[1][0]) != 0) {
    constexpr int V = pack_width<TA, TB, TO>();
    const bool va = p.strides[0][0] != 0, vb = p.strides[1][0] != 0;
    if (aligned_to(py, sizeof(TO) * V) && (!va || aligned_to(pa, sizeof(TA) * V)) &&
        (!vb || aligned_to(pb, sizeof(TB) * V))) {
      const unsigned grid = cuda::grid_for((n + V - 1) / V);
      if (va && vb)
        binary_flat_kernel<V, true, true><<<grid, cuda::kBlock, 0, s>>>(pa, pb, py, n, f);
      else if (va)
        binary_flat_kernel<V, true, false><<<grid, cuda::kBlock, 0, s>>>(pa, pb, py, n, f);
      else
        binary_flat_kernel<V, false, true><<<grid, cuda::kBlock, 0, s>>>(pa, pb, py, n, f);
      return Status();
    }
  }
  if (p.rank == 2 && p.dims[1] >= 32) {
    const int64_t rows = p.dims[0], cols = p.dims[1];
    const int bx = cols >= cuda::kBlock ? cuda::kBlock : static_cast<int>((cols + 31) / 32 * 32);
    const int by = cuda::kBlock / bx;
    dim3 grid(static_cast<unsigned>(std::min<int64_t>((cols + bx - 1) / bx, 4096)),
              static_cast<unsigned>(std::min<int64_t>((rows + by - 1) / by, 65535)));
    binary_rows_kernel<<<grid, dim3(bx, by), 0, s>>>(pa, pb, py, rows, cols, p.strides[0][0], p.strides[0][1],
                                                     p.strides[1][0], p.strides[1][1], f);
    return Status();
  }
  if (fits_int32(n))
    binary_bcast_kernel<int32_t><<<cuda::grid_for(n), cuda::kBlock, 0, s>>>(pa, pb, py, n, p, f);
  else
    binary_bcast_kernel<int64_t><<<cuda::grid_for(n), cuda::kBlock, 0, s>>>(pa, pb, py, n, p, f);
  return Status();
}

template <class Op>
Status binary_cuda(KernelContext& ctx) {
  const DataType t = ctx.input(0).dtype();
  if (ctx.input(1).dtype() != t || ctx.output(0).dtype() != (Op::kBoolOut ? DataType::kBool : t))
    return ctx.error("operand dtypes do not match the op", ErrorCode::kInternal);
  const Op op = make_op<Op>(ctx.attrs());
  Status st;
  const bool ok = visit_type<Op::kTypes>(t, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Fn = BinaryFn<Op, T>;
    st = launch_binary<T, T, typename Fn::Out>(ctx, Fn{op});
  });
  if (!ok) return unsupported_dtype(ctx, t);
  if (!st.ok()) return st;
  return cuda::launch_status(ctx, "binary");
}

template <class Op>
bool binary_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return in.size() == 2 && (type_bit(in[0].dtype) & Op::kTypes) != 0 && in[1].dtype == in[0].dtype && ranks_fit(in);
}

// ---- Pow: the exponent may have another dtype; it is read as double (as binary.cc).
template <class T>
__device__ T int_pow(T base, int64_t e) {
  if (e < 0) {
    if (base == 1) return 1;
    if (base == -1) return (e & 1) ? T(-1) : T(1);
    return 0;
  }
  T r = 1;
  while (e) {
    if (e & 1) r = wrap_mul(r, base);
    base = wrap_mul(base, base);
    e >>= 1;
  }
  return r;
}

template <class TA, class TB>
struct PowFn {
  __device__ TA operator()(TA x, TB e) const {
    const double p = to_double(e);
    if constexpr (kIntType<TA> && kIntType<TB>)
      return int_pow(x, double_to_int<int64_t>(p));
    else
      return convert<TA>(pow(to_double(x), p));
  }
};

Status pow_cuda(KernelContext& ctx) {
  const DataType ta = ctx.input(0).dtype(), tb = ctx.input(1).dtype();
  if (ctx.output(0).dtype() != ta) return ctx.error("output dtype does not match the base", ErrorCode::kInternal);
  Status st;
  bool ok_b = false;
  const bool ok_a = visit_type<kBitsFloatI>(ta, [&](auto tag_a) {
    using TA = typename decltype(tag_a)::type;
    ok_b = visit_type<kBitsFloatI>(tb, [&](auto tag_b) {
      using TB = typename decltype(tag_b)::type;
      st = launch_binary<TA, TB, TA>(ctx, PowFn<TA, TB>{});
    });
  });
  if (!ok_a || !ok_b) return unsupported_dtype(ctx, ok_a ? tb : ta);
  if (!st.ok()) return st;
  return cuda::launch_status(ctx, "pow");
}

bool pow_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return in.size() == 2 && (type_bit(in[0].dtype) & kBitsFloatI) && (type_bit(in[1].dtype) & kBitsFloatI) &&
         ranks_fit(in);
}

// ---- variadic Max/Min/Sum/Mean: one kernel folds every input left to right in
// the compute type (16-bit floats accumulate in float and round once).
constexpr int kMaxVariadic = 8;

struct Max {
  static constexpr uint32_t kTypes = kBitsFloatI;
  static constexpr bool kMean = false;
  template <class C>
  __device__ C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>)
      if (isnan(a) || isnan(b)) return a + b;  // NaN propagates
    return a < b ? b : a;
  }
};
struct Min {
  static constexpr uint32_t kTypes = kBitsFloatI;
  static constexpr bool kMean = false;
  template <class C>
  __device__ C operator()(C a, C b) const {
    if constexpr (std::is_floating_point_v<C>)
      if (isnan(a) || isnan(b)) return a + b;
    return b < a ? b : a;
  }
};
struct Sum {
  static constexpr uint32_t kTypes = kBitsFloatI;
  static constexpr bool kMean = false;
  template <class C>
  __device__ C operator()(C a, C b) const {
    return wrap_add(a, b);
  }
};
struct Mean : Sum {
  static constexpr uint32_t kTypes = kBitsFloat;
  static constexpr bool kMean = true;
};

template <class T>
struct VariadicInputs {
  const T* p[kMaxVariadic];
};

template <class Op, class I, class T>
__global__ void variadic_kernel(VariadicInputs<T> in, int k, T* y, int64_t n, BroadcastPlan<kMaxVariadic> p) {
  using C = compute_t<T>;
  const Op op{};
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I off[kMaxVariadic];
    plan_offsets<I, kMaxVariadic>(p, k, static_cast<I>(i), off);
    C acc = op(load_c(in.p[0][off[0]]), load_c(in.p[1][off[1]]));
    for (int j = 2; j < k; ++j) acc = op(acc, load_c(in.p[j][off[j]]));
    if constexpr (Op::kMean) acc /= static_cast<C>(k);
    y[i] = store_c<T>(acc);
  }
}

template <class Op>
Status variadic_cuda(KernelContext& ctx) {
  Tensor& y = ctx.output(0);
  const size_t k = ctx.num_inputs();
  if (k == 0 || k > static_cast<size_t>(kMaxVariadic))
    return ctx.error("unsupported input count", ErrorCode::kUnsupported);
  std::vector<const Dims*> dims;
  for (size_t i = 0; i < k; ++i) {
    if (!ctx.has_input(i) || ctx.input(i).dtype() != y.dtype())
      return ctx.error("inputs must share the output's dtype");
    if (!broadcasts_to(ctx.input(i).dims(), y.dims()))
      return ctx.error("input dims do not broadcast to the output dims", ErrorCode::kInternal);
    dims.push_back(&ctx.input(i).dims());
  }
  const int64_t n = y.numel();
  if (n == 0) return Status();
  cudaStream_t s = cuda::stream_of(ctx);
  if (k == 1) {
    if (y.data() != ctx.input(0).data())
      cudaMemcpyAsync(y.data(), ctx.input(0).data(), y.nbytes(), cudaMemcpyDeviceToDevice, s);
    return cuda::launch_status(ctx, "variadic copy");
  }
  BroadcastPlan<kMaxVariadic> p;
  if (!make_plan(y.dims(), dims, p)) return ctx.error("more than 8 dims remain after merging", ErrorCode::kUnsupported);
  const bool ok = visit_type<Op::kTypes>(y.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    VariadicInputs<T> in{};
    for (size_t i = 0; i < k; ++i) in.p[i] = ctx.input(i).data_as<T>();
    const int ki = static_cast<int>(k);
    if (fits_int32(n))
      variadic_kernel<Op, int32_t><<<cuda::grid_for(n), cuda::kBlock, 0, s>>>(in, ki, y.data_as<T>(), n, p);
    else
      variadic_kernel<Op, int64_t><<<cuda::grid_for(n), cuda::kBlock, 0, s>>>(in, ki, y.data_as<T>(), n, p);
  });
  if (!ok) return unsupported_dtype(ctx, y.dtype());
  return cuda::launch_status(ctx, "variadic");
}

template <class Op>
bool variadic_applies(const ir::Node&, const std::vector<TensorType>& in) {
  if (in.empty() || in.size() > static_cast<size_t>(kMaxVariadic)) return false;
  for (const auto& t : in)
    if (t.dtype != in[0].dtype) return false;
  return (type_bit(in[0].dtype) & Op::kTypes) != 0 && ranks_fit(in);
}

struct Entry {
  const char* name;
  KernelFn fn;
  KernelApplies applies;
};

#define KILN_BINARY(Op) \
  { #Op, binary_cuda < Op>, binary_applies < Op> }
#define KILN_VARIADIC(Op) \
  { #Op, variadic_cuda < Op>, variadic_applies < Op> }
const Entry kEntries[] = {
    KILN_BINARY(Add),
    KILN_BINARY(Sub),
    KILN_BINARY(Mul),
    KILN_BINARY(Div),
    KILN_BINARY(Mod),
    KILN_BINARY(PRelu),
    KILN_BINARY(BitShift),
    KILN_BINARY(Equal),
    KILN_BINARY(Less),
    KILN_BINARY(LessOrEqual),
    KILN_BINARY(Greater),
    KILN_BINARY(GreaterOrEqual),
    KILN_BINARY(And),
    KILN_BINARY(Or),
    KILN_BINARY(Xor),
    KILN_BINARY(BitwiseAnd),
    KILN_BINARY(BitwiseOr),
    KILN_BINARY(BitwiseXor),
    KILN_VARIADIC(Max),
    KILN_VARIADIC(Min),
    KILN_VARIADIC(Sum),
    KILN_VARIADIC(Mean),
    {"Pow", pow_cuda, pow_applies},
};
#undef KILN_BINARY
#undef KILN_VARIADIC

}  // namespace

void register_binary_cuda_kernels(OpRegistry& r) {
  for (const Entry& e : kEntries) (void)r.add_cuda_kernel("", e.name, FastKernel{"cuda.eltwise", e.fn, e.applies});
}

}  // namespace kiln::ops
