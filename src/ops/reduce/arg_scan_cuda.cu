// CUDA kernels of the reduce family's index ops: ArgMax/ArgMin, CumSum and
// TopK. All view the input as [outer, n, inner] around their axis.
#include <limits>
#include <type_traits>

#include "ops/common.h"
#include "ops/reduce/reduce_cuda.cuh"

namespace kiln::ops {
namespace {

using namespace reduce_cuda;  // NOLINT(google-build-using-namespace)

struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
};

AxisView view_around(const Tensor& x, int64_t axis) {
  AxisView v;
  for (int64_t i = 0; i < axis; ++i) v.outer *= x.dim(i);
  v.n = x.dim(axis);
  for (int64_t i = axis + 1; i < x.rank(); ++i) v.inner *= x.dim(i);
  return v;
}

/// Key type: float for floating inputs (exact for fp16/bf16), int64 for integers.
template <typename T>
using Key = std::conditional_t<std::is_integral_v<T>, int64_t, float>;

bool numeric_dtype(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16 || t == DataType::kInt32 ||
         t == DataType::kInt64;
}

#define KILN_REDUCE_DISPATCH(dtype, T, ...)                                                                    \
  switch (dtype) {                                                                                             \
    case DataType::kFloat32: {                                                                                 \
      using T = float;                                                                                         \
      __VA_ARGS__;                                                                                             \
      break;                                                                                                   \
    }                                                                                                          \
    case DataType::kFloat16: {                                                                                 \
      using T = __half;                                                                                        \
      __VA_ARGS__;                                                                                             \
      break;                                                                                                   \
    }                                                                                                          \
    case DataType::kBFloat16: {                                                                                \
      using T = __nv_bfloat16;                                                                                 \
      __VA_ARGS__;                                                                                             \
      break;                                                                                                   \
    }                                                                                                          \
    case DataType::kInt32: {                                                                                   \
      using T = int32_t;                                                                                       \
      __VA_ARGS__;                                                                                             \
      break;                                                                                                   \
    }                                                                                                          \
    case DataType::kInt64: {                                                                                   \
      using T = int64_t;                                                                                       \
      __VA_ARGS__;                                                                                             \
      break;                                                                                                   \
    }                                                                                                          \
    default:                                                                                                   \
      return ctx.error(std::string("no CUDA kernel for dtype ") + dtype_name(dtype), ErrorCode::kUnsupported); \
  }

// ---------------------------------------------------------------- ArgMax / ArgMin

template <typename K>
struct ArgBest {
  K v;
  int64_t i;  ///< -1: empty
};

/// True when b should replace a: NaN is the extreme (first NaN, or last with
/// select_last_index); ties go to the lower index (higher with `last`). The
/// combination is associative, so any reduction order gives arg.cc's answer.
template <typename K>
__device__ __forceinline__ bool arg_better(const ArgBest<K>& a, const ArgBest<K>& b, bool is_max, bool last) {
  if (b.i < 0) return false;
  if (a.i < 0) return true;
  bool an = is_nan(a.v), bn = is_nan(b.v);
  if (an || bn) {
    if (an && bn) return last ? b.i > a.i : b.i < a.i;
    return bn;
  }
  if (is_max ? b.v > a.v : b.v < a.v) return true;
  if (b.v == a.v) return last ? b.i > a.i : b.i < a.i;
  return false;
}

template <typename K>
__device__ __forceinline__ ArgBest<K> arg_warp(ArgBest<K> s, bool is_max, bool last) {
  for (int off = 16; off > 0; off >>= 1) {
    ArgBest<K> o;
    o.v = __shfl_xor_sync(0xffffffffu, s.v, off);
    o.i = __shfl_xor_sync(0xffffffffu, s.i, off);
    if (arg_better(s, o, is_max, last)) s = o;
  }
  return s;
}

/// inner == 1: a warp per row.
template <typename T>
__global__ void arg_rows_kernel(const T* __restrict__ x, int64_t* __restrict__ y, int64_t rows, int64_t n, bool is_max,
                                bool last) {
  using K = Key<T>;
  int lane = threadIdx.x & 31, warps = blockDim.x / 32;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + threadIdx.x / 32; row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    ArgBest<K> s{K(0), -1};
    const T* xr = x + row * n;
    for (int64_t j = lane; j < n; j += 32) {
      ArgBest<K> c{widen<T, K>(xr[j]), j};
      if (arg_better(s, c, is_max, last)) s = c;
    }
    s = arg_warp(s, is_max, last);
    if (lane == 0) y[row] = s.i;
  }
}

/// inner > 1: a thread per (outer, inner) walks the axis (coalesced across inner).
template <typename T>
__global__ void arg_cols_kernel(const T* __restrict__ x, int64_t* __restrict__ y, int64_t outer, int64_t n,
                                int64_t inner, bool is_max, bool last) {
  using K = Key<T>;
  int64_t total = outer * inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = t / inner, i = t - o * inner;
    const T* xc = x + o * n * inner + i;
    ArgBest<K> s{K(0), -1};
    for (int64_t j = 0; j < n; ++j) {
      ArgBest<K> c{widen<T, K>(xc[j * inner]), j};
      if (arg_better(s, c, is_max, last)) s = c;
    }
    y[t] = s.i;
  }
}

Status arg_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  auto axis = normalize_axis(ctx.attrs().get_int("axis", 0), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  AxisView v = view_around(x, *axis);
  if (v.n == 0) return ctx.error("cannot take the arg-extreme of an empty axis");
  if (y.numel() == 0) return Status();
  bool is_max = ctx.node().op_type == "ArgMax";
  bool last = ctx.attrs().get_int("select_last_index", 0) != 0;
  cudaStream_t st = cuda::stream_of(ctx);
  KILN_REDUCE_DISPATCH(x.dtype(), T, {
    if (v.inner == 1) {
      arg_rows_kernel<T><<<cuda::grid_for(v.outer * 32), kBlock, 0, st>>>(x.data_as<T>(), y.data_as<int64_t>(), v.outer,
                                                                          v.n, is_max, last);
    } else {
      arg_cols_kernel<T><<<cuda::grid_for(v.outer * v.inner), kBlock, 0, st>>>(x.data_as<T>(), y.data_as<int64_t>(),
                                                                               v.outer, v.n, v.inner, is_max, last);
    }
  });
  return cuda::launch_status(ctx, "arg");
}

bool numeric_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && numeric_dtype(in[0].dtype);
}

// ---------------------------------------------------------------- CumSum

/// Running accumulator: float for fp16/bf16/fp32 (as cumulative.cc), int64 for integers.
template <typename T>
using RunAcc = std::conditional_t<std::is_integral_v<T>, int64_t, float>;

template <typename T>
__device__ __forceinline__ T from_acc(RunAcc<T> a) {
  if constexpr (std::is_integral_v<T>)
    return static_cast<T>(a);
  else
    return cuda::from_f<T>(a);
}

/// A thread per (outer, inner) column, walking the axis in order.
template <typename T>
__global__ void cumsum_cols_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t n, int64_t inner,
                                   bool exclusive, bool reverse) {
  using A = RunAcc<T>;
  int64_t total = outer * inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = t / inner, i = t - o * inner;
    A acc = A(0);
    for (int64_t s = 0; s < n; ++s) {
      int64_t k = reverse ? n - 1 - s : s;
      int64_t off = (o * n + k) * inner + i;
      A v = widen<T, A>(x[off]);
      if (exclusive) {
        y[off] = from_acc<T>(acc);
        acc = wrap_add(acc, v);
      } else {
        acc = wrap_add(acc, v);
        y[off] = from_acc<T>(acc);
      }
    }
  }
}

inline constexpr int kScanBlock = 512;

/// inner == 1 and a long axis: a block per row scans chunks of kScanBlock elements.
template <typename T>
__global__ void cumsum_rows_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n, bool exclusive,
                                   bool reverse) {
  using A = RunAcc<T>;
  __shared__ A incl[kScanBlock];
  __shared__ A warp_tot[kScanBlock / 32];
  int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    T* yr = y + row * n;
    A carry = A(0);
    for (int64_t c0 = 0; c0 < n; c0 += kScanBlock) {
      int64_t s = c0 + tid;
      int64_t k = reverse ? n - 1 - s : s;
      A v = s < n ? widen<T, A>(xr[k]) : A(0);
      // Inclusive scan within the warp, then across warp totals.
      A w = v;
      for (int off = 1; off < 32; off <<= 1) {
        A u = __shfl_up_sync(0xffffffffu, w, off);
        if (lane >= off) w = wrap_add(w, u);
      }
      if (lane == 31) warp_tot[warp] = w;
      __syncthreads();
      if (warp == 0) {
        A t = lane < kScanBlock / 32 ? warp_tot[lane] : A(0);
        for (int off = 1; off < 32; off <<= 1) {
          A u = __shfl_up_sync(0xffffffffu, t, off);
          if (lane >= off) t = wrap_add(t, u);
        }
        if (lane < kScanBlock / 32) warp_tot[lane] = t;
      }
      __syncthreads();
      if (warp > 0) w = wrap_add(w, warp_tot[warp - 1]);
      incl[tid] = w;
      __syncthreads();
      if (s < n) {
        A r = exclusive ? (tid > 0 ? incl[tid - 1] : A(0)) : w;
        yr[k] = from_acc<T>(wrap_add(carry, r));
      }
      carry = wrap_add(carry, incl[kScanBlock - 1]);
      __syncthreads();
    }
  }
}

Status cumsum_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() == 0) return ctx.error("input must have rank >= 1");
  if (!ctx.has_input(1)) return ctx.error("the axis input is required");
  const Tensor* at = ctx.host_value(1);
  if (!at) return ctx.error("axis must be known when the engine is built", ErrorCode::kUnsupported);
  if ((at->dtype() != DataType::kInt32 && at->dtype() != DataType::kInt64) || at->numel() != 1 || at->rank() > 1)
    return ctx.error("axis must be an int32 or int64 scalar");
  auto axis = normalize_axis(at->get_as_int64(0), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  AxisView v = view_around(x, *axis);
  if (y.numel() == 0) return Status();
  bool exclusive = ctx.attrs().get_int("exclusive", 0) != 0;
  bool reverse = ctx.attrs().get_int("reverse", 0) != 0;
  cudaStream_t st = cuda::stream_of(ctx);
  KILN_REDUCE_DISPATCH(x.dtype(), T, {
    if (v.inner == 1 && v.n > 64) {
      unsigned grid = static_cast<unsigned>(std::min<int64_t>(v.outer, 65535 * 8));
      cumsum_rows_kernel<T>
          <<<grid, kScanBlock, 0, st>>>(x.data_as<T>(), y.data_as<T>(), v.outer, v.n, exclusive, reverse);
    } else {
      cumsum_cols_kernel<T><<<cuda::grid_for(v.outer * v.inner), kBlock, 0, st>>>(
          x.data_as<T>(), y.data_as<T>(), v.outer, v.n, v.inner, exclusive, reverse);
    }
  });
  return cuda::launch_status(ctx, "cumsum");
}

// ---------------------------------------------------------------- TopK

inline constexpr int kTopKBlock = 512;
inline constexpr int kTopKSortMax = 2048;  ///< rows up to this long are sorted whole in shared memory
inline constexpr int64_t kTopKSelectMax = 256;

/// top_k.cc's order: NaN above every number; equal values keep the lower index first.
template <typename K>
__device__ __forceinline__ bool topk_before(K va, int64_t ia, K vb, int64_t ib, bool largest) {
  bool an = is_nan(va), bn = is_nan(vb);
  if (va == vb || (an && bn)) return ia < ib;
  bool a_gt_b = an ? true : (bn ? false : va > vb);
  return largest ? a_gt_b : !a_gt_b;
}

/// Sorts each row (padded to a power of two) with a bitonic network in shared memory.
template <typename T>
__global__ void topk_sort_kernel(const T* __restrict__ x, T* __restrict__ vals, int64_t* __restrict__ idx,
                                 int64_t inner, int64_t n, int64_t k, int pow2, bool largest) {
  using K = Key<T>;
  extern __shared__ unsigned char smem[];
  K* keys = reinterpret_cast<K*>(smem);
  int* ids = reinterpret_cast<int*>(keys + pow2);
  int64_t row = blockIdx.x;  // (outer, inner) pair
  int64_t o = row / inner, in = row - o * inner;
  const T* xr = x + o * n * inner + in;
  for (int j = threadIdx.x; j < pow2; j += blockDim.x) {
    ids[j] = j < n ? j : -1;  // -1 pads sort last
    keys[j] = j < n ? widen<T, K>(xr[j * inner]) : K(0);
  }
  __syncthreads();
  for (int size = 2; size <= pow2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < pow2; t += blockDim.x) {
        int u = t ^ stride;
        if (u > t) {
          bool up = (t & size) == 0;
          int ia = ids[t], ib = ids[u];
          // Does element u belong before element t?
          bool u_first = ib < 0 ? false : (ia < 0 ? true : topk_before(keys[u], ib, keys[t], ia, largest));
          if (u_first == up) {
            K kv = keys[t];
            keys[t] = keys[u];
            keys[u] = kv;
            ids[t] = ib;
            ids[u] = ia;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int j = threadIdx.x; j < k; j += blockDim.x) {
    int64_t off = (o * k + j) * inner + in;
    vals[off] = xr[static_cast<int64_t>(ids[j]) * inner];
    if (idx) idx[off] = ids[j];
  }
}

/// Long rows, small k: k rounds, each taking the best element ordered after the previous pick.
template <typename T>
__global__ void topk_select_kernel(const T* __restrict__ x, T* __restrict__ vals, int64_t* __restrict__ idx,
                                   int64_t inner, int64_t n, int64_t k, bool largest) {
  using K = Key<T>;
  __shared__ K warp_v[kTopKBlock / 32];
  __shared__ int64_t warp_i[kTopKBlock / 32];
  __shared__ K prev_v;
  __shared__ int64_t prev_i;
  int64_t row = blockIdx.x;
  int64_t o = row / inner, in = row - o * inner;
  const T* xr = x + o * n * inner + in;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) prev_i = -1;
  __syncthreads();
  for (int64_t round = 0; round < k; ++round) {
    K pv = prev_v;
    int64_t pi = prev_i;
    K bv = K(0);
    int64_t bi = -1;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      K v = widen<T, K>(xr[j * inner]);
      if (pi >= 0 && !topk_before(pv, pi, v, j, largest)) continue;
      if (bi < 0 || topk_before(v, j, bv, bi, largest)) bv = v, bi = j;
    }
    for (int off = 16; off > 0; off >>= 1) {
      K ov = __shfl_xor_sync(0xffffffffu, bv, off);
      int64_t oi = __shfl_xor_sync(0xffffffffu, bi, off);
      if (oi >= 0 && (bi < 0 || topk_before(ov, oi, bv, bi, largest))) bv = ov, bi = oi;
    }
    if (lane == 0) warp_v[warp] = bv, warp_i[warp] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kTopKBlock / 32; ++w)
        if (warp_i[w] >= 0 && (bi < 0 || topk_before(warp_v[w], warp_i[w], bv, bi, largest)))
          bv = warp_v[w], bi = warp_i[w];
      int64_t off = (o * k + round) * inner + in;
      vals[off] = xr[bi * inner];
      if (idx) idx[off] = bi;
      prev_v = bv;
      prev_i = bi;
    }
    __syncthreads();
  }
}

Status topk_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  int64_t k;
  if (ctx.opset() < 10) {
    k = ctx.attrs().get_int("k", -1);
  } else {
    const Tensor* kt = ctx.has_input(1) ? ctx.host_value(1) : nullptr;
    if (!kt) return ctx.error("K must be known when the engine is built", ErrorCode::kUnsupported);
    if ((kt->dtype() != DataType::kInt64 && kt->dtype() != DataType::kInt32) || kt->numel() != 1)
      return ctx.error("K must hold exactly one int64 value");
    k = kt->get_as_int64(0);
  }
  auto axis = normalize_axis(ctx.attrs().get_int("axis", -1), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  AxisView v = view_around(x, *axis);
  if (k < 0 || k > v.n) return ctx.error("k is out of range for the axis");
  bool largest = ctx.attrs().get_int("largest", 1) != 0;
  Tensor& vals = ctx.output(0);
  int64_t* idx = ctx.has_output(1) ? ctx.output(1).data_as<int64_t>() : nullptr;
  int64_t rows = v.outer * v.inner;
  if (k == 0 || rows == 0) return Status();
  if (v.n > kTopKSortMax && k > kTopKSelectMax)
    return ctx.error("CUDA TopK handles k <= 256 on rows longer than 2048", ErrorCode::kUnsupported);
  if (rows > std::numeric_limits<int>::max()) return ctx.error("too many rows", ErrorCode::kUnsupported);
  cudaStream_t st = cuda::stream_of(ctx);
  KILN_REDUCE_DISPATCH(x.dtype(), T, {
    if (v.n <= kTopKSortMax) {
      int pow2 = 1;
      while (pow2 < v.n) pow2 <<= 1;
      size_t smem = static_cast<size_t>(pow2) * (sizeof(Key<T>) + sizeof(int));
      topk_sort_kernel<T><<<static_cast<unsigned>(rows), kTopKBlock, smem, st>>>(x.data_as<T>(), vals.data_as<T>(), idx,
                                                                                 v.inner, v.n, k, pow2, largest);
    } else {
      topk_select_kernel<T><<<static_cast<unsigned>(rows), kTopKBlock, 0, st>>>(x.data_as<T>(), vals.data_as<T>(), idx,
                                                                                v.inner, v.n, k, largest);
    }
  });
  return cuda::launch_status(ctx, "topk");
}

bool topk_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (in.empty() || !numeric_dtype(in[0].dtype)) return false;
  // Before opset 10 k is an attribute we can check; later the kernel checks it.
  if (n.opset < 10 && n.attrs.get_int("k", 0) > kTopKSelectMax) {
    const auto& s = in[0].shape;
    if (!s) return false;
    auto axis = normalize_axis(n.attrs.get_int("axis", -1), static_cast<int64_t>(s->size()));
    if (!axis) return false;
    const Dim& d = (*s)[static_cast<size_t>(*axis)];
    return d.known() && d.value <= kTopKSortMax;
  }
  return true;
}

}  // namespace

void register_arg_scan_cuda_kernels(OpRegistry& r) {
  for (const char* op : {"ArgMax", "ArgMin"})
    (void)r.add_cuda_kernel("", op, FastKernel{"cuda.arg", arg_cuda, numeric_applies});
  (void)r.add_cuda_kernel("", "CumSum", FastKernel{"cuda.cumsum", cumsum_cuda, numeric_applies});
  (void)r.add_cuda_kernel("", "TopK", FastKernel{"cuda.topk", topk_cuda, topk_applies});
}

}  // namespace kiln::ops
