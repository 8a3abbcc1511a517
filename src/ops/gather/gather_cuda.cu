// CUDA kernels of the gather family: Gather, GatherElements, GatherND,
// ScatterND, ScatterElements, Trilu and OneHot.
//
// Out-of-range indices: the CPU kernels report them as errors, but a kernel
// cannot return an error without a device-to-host sync, so here every index is
// first wrapped (negative counts from the end) and then CLAMPED into [0, n-1]:
// a bad index reads or writes a valid element instead of faulting. Models with
// valid indices (all that the reference accepts) get identical results.
// ScatterND / ScatterElements with reduction "none" and duplicate indices write
// in an unspecified order (ONNX leaves it undefined); add/mul/max/min are atomic.
#include <type_traits>

#include "ops/common.h"
#include "ops/reshape/data_movement.h"
#include "ops/reshape/movement_cuda.cuh"

namespace kiln::ops {
namespace {

using cuda::Indexer;
using cuda::kMaxRank;

bool rank_ok(const TensorType& t, int extra = 0) {
  return !t.shape || t.shape->size() + static_cast<size_t>(extra) <= static_cast<size_t>(kMaxRank);
}

template <typename I>
__device__ __forceinline__ int64_t clamp_index(I raw, int64_t n) {
  auto i = static_cast<int64_t>(raw);
  if (i < 0) i += n;
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

#define KILN_CUDA_DISPATCH_INDEX(dtype, I, ...)                                    \
  switch (dtype) {                                                                 \
    case ::kiln::DataType::kInt32: {                                               \
      using I = int32_t;                                                           \
      __VA_ARGS__;                                                                 \
      break;                                                                       \
    }                                                                              \
    case ::kiln::DataType::kInt64: {                                               \
      using I = int64_t;                                                           \
      __VA_ARGS__;                                                                 \
      break;                                                                       \
    }                                                                              \
    default:                                                                       \
      return ctx.error("indices must be int32 or int64", ErrorCode::kUnsupported); \
  }

Result<size_t> axis_of(const KernelContext& ctx, int64_t rank, int64_t dflt = 0) {
  auto a = normalize_axis(ctx.attrs().get_int("axis", dflt), rank);
  if (!a) return ctx.error("axis is out of range");
  return static_cast<size_t>(*a);
}

// ---------------------------------------------------------------- Gather

/// y[o, j, k] = x[o, idx[j], k] in units of U (a whole number of elements).
template <typename U, typename I>
__global__ void gather_kernel(const U* __restrict__ x, const I* __restrict__ idx, U* __restrict__ y, int64_t nidx,
                              int64_t axis_n, int64_t inner, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t k = i % inner, t = i / inner;
    int64_t j = t % nidx, o = t / nidx;
    int64_t s = clamp_index(idx[j], axis_n);
    y[i] = x[(o * axis_n + s) * inner + k];
  }
}

Status gather_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  Tensor& y = ctx.output(0);
  if (x.dims().empty()) return ctx.error("data must have rank >= 1");
  KILN_ASSIGN_OR_RETURN(size_t ax, axis_of(ctx, x.rank()));
  int64_t n = x.dims()[ax], nidx = it.numel();
  int64_t inner_bytes =
      movement::dims_product(x.dims(), ax + 1, x.dims().size()) * static_cast<int64_t>(dtype_size(x.dtype()));
  if (y.numel() == 0) return Status();
  if (n == 0) return ctx.error("gather from an empty axis", ErrorCode::kInvalidArgument);
  int unit = cuda::movement::copy_unit(
      {static_cast<uint64_t>(inner_bytes), reinterpret_cast<uint64_t>(x.data()), reinterpret_cast<uint64_t>(y.data())});
  KILN_CUDA_DISPATCH_INDEX(it.dtype(), I, {
    cuda::movement::with_unit(unit, [&](auto tag) {
      using U = decltype(tag);
      int64_t inner = inner_bytes / static_cast<int64_t>(sizeof(U));
      int64_t total = y.numel() * static_cast<int64_t>(dtype_size(x.dtype())) / static_cast<int64_t>(sizeof(U));
      gather_kernel<U, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
          static_cast<const U*>(x.data()), static_cast<const I*>(it.data()), static_cast<U*>(y.data()), nidx, n, inner,
          total);
    });
  });
  return cuda::launch_status(ctx, "gather");
}

bool gather_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return in.size() >= 2 && cuda::movement::movable_dtype(in[0].dtype) && movement::is_index_dtype(in[1].dtype);
}

// ---------------------------------------------------------------- GatherElements

/// ix: dims of indices, strides of x with 0 on the axis.
template <typename T, typename I>
__global__ void gather_elements_kernel(const T* __restrict__ x, const I* __restrict__ idx, T* __restrict__ y,
                                       Indexer ix, int64_t axis_n, int64_t axis_stride, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = x[cuda::offset_of(ix, i) + clamp_index(idx[i], axis_n) * axis_stride];
}

/// Indexer over `idx_dims` that reads `x_dims`' strides, 0 on `axis`.
Result<Indexer> elementwise_indexer(const KernelContext& ctx, const Dims& x_dims, const Dims& idx_dims, size_t ax) {
  if (x_dims.size() != idx_dims.size() || x_dims.empty())
    return ctx.error("data and indices must have the same rank >= 1");
  if (x_dims.size() > static_cast<size_t>(kMaxRank)) return ctx.error("rank > 8", ErrorCode::kUnsupported);
  for (size_t d = 0; d < x_dims.size(); ++d)
    if (d != ax && idx_dims[d] > x_dims[d])
      return ctx.error("indices dims " + dims_to_string(idx_dims) + " exceed data dims " + dims_to_string(x_dims));
  auto st = strides_of(x_dims);
  Indexer ix;
  ix.rank = static_cast<int>(x_dims.size());
  for (size_t d = 0; d < x_dims.size(); ++d) {
    ix.dims[d] = idx_dims[d];
    ix.strides[d] = d == ax ? 0 : st[d];
  }
  return ix;
}

Status gather_elements_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(size_t ax, axis_of(ctx, x.rank()));
  KILN_ASSIGN_OR_RETURN(Indexer ix, elementwise_indexer(ctx, x.dims(), it.dims(), ax));
  int64_t total = it.numel();
  if (total == 0) return Status();
  int64_t n = x.dims()[ax];
  if (n == 0) return ctx.error("gather from an empty axis", ErrorCode::kInvalidArgument);
  int64_t axis_stride = strides_of(x.dims())[ax];
  KILN_CUDA_DISPATCH_INDEX(it.dtype(), I, {
    KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
      gather_elements_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
          static_cast<const T*>(x.data()), static_cast<const I*>(it.data()), static_cast<T*>(y.data()), ix, n,
          axis_stride, total);
    });
  });
  return cuda::launch_status(ctx, "gather_elements");
}

bool elements_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  return gather_applies(n, in) && rank_ok(in[0]);
}

// ---------------------------------------------------------------- GatherND / ScatterND

struct NdParams {
  int k = 0;                       ///< index tuple length
  int64_t dims[kMaxRank] = {};     ///< data dims addressed by the tuple
  int64_t strides[kMaxRank] = {};  ///< their strides
  int64_t per_batch = 1;           ///< index tuples per batch
  int64_t batch_stride = 0;        ///< data elements per batch
  int64_t slice = 1;               ///< elements copied per tuple
};

template <typename I>
__device__ __forceinline__ int64_t nd_offset(const NdParams& p, const I* __restrict__ idx, int64_t t) {
  int64_t off = (t / p.per_batch) * p.batch_stride;
  for (int j = 0; j < p.k; ++j) off += clamp_index(idx[t * p.k + j], p.dims[j]) * p.strides[j];
  return off;
}

template <typename T, typename I>
__global__ void gathernd_kernel(const T* __restrict__ x, const I* __restrict__ idx, T* __restrict__ y, NdParams p,
                                int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t t = i / p.slice, e = i - t * p.slice;
    y[i] = x[nd_offset(p, idx, t) + e];
  }
}

Status gathernd_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  Tensor& y = ctx.output(0);
  const Dims& xd = x.dims();
  const Dims& id = it.dims();
  int64_t b = ctx.attrs().get_int("batch_dims", 0);
  if (xd.empty() || id.empty() || b < 0 || static_cast<size_t>(b) >= std::min(xd.size(), id.size()))
    return ctx.error("invalid ranks or batch_dims");
  auto ub = static_cast<size_t>(b);
  for (size_t d = 0; d < ub; ++d)
    if (xd[d] != id[d]) return ctx.error("batch dims of data and indices differ");
  int64_t k = id.back();
  if (k < 1 || static_cast<size_t>(k) > xd.size() - ub) return ctx.error("the last dim of indices is out of range");
  if (k > kMaxRank) return ctx.error("index tuples longer than 8", ErrorCode::kUnsupported);
  NdParams p;
  p.k = static_cast<int>(k);
  auto st = strides_of(xd);
  for (int64_t j = 0; j < k; ++j) {
    p.dims[j] = xd[ub + static_cast<size_t>(j)];
    p.strides[j] = st[ub + static_cast<size_t>(j)];
    if (p.dims[j] == 0 && y.numel() > 0) return ctx.error("gather from an empty axis", ErrorCode::kInvalidArgument);
  }
  p.per_batch = movement::dims_product(id, ub, id.size() - 1);
  p.batch_stride = movement::dims_product(xd, ub, xd.size());
  p.slice = movement::dims_product(xd, ub + static_cast<size_t>(k), xd.size());
  int64_t total = y.numel();
  if (total == 0 || p.per_batch == 0) return Status();
  KILN_CUDA_DISPATCH_INDEX(it.dtype(), I, {
    KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
      gathernd_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
          static_cast<const T*>(x.data()), static_cast<const I*>(it.data()), static_cast<T*>(y.data()), p, total);
    });
  });
  return cuda::launch_status(ctx, "gathernd");
}

enum class Reduction : int { kNone, kAdd, kMul, kMax, kMin };

Result<Reduction> reduction_of(const KernelContext& ctx) {
  std::string s = ctx.attrs().get_string("reduction", "none");
  if (s == "none") return Reduction::kNone;
  if (s == "add") return Reduction::kAdd;
  if (s == "mul") return Reduction::kMul;
  if (s == "max") return Reduction::kMax;
  if (s == "min") return Reduction::kMin;
  return ctx.error("unknown reduction '" + s + "'");
}

/// a (op) b as scatter.cc's combine: fp16/bf16 in float, integers wrapping.
template <typename T>
__device__ __forceinline__ T combine(T a, T b, Reduction r) {
  if constexpr (std::is_integral_v<T>) {
    using W = std::make_unsigned_t<T>;
    switch (r) {
      case Reduction::kAdd:
        return static_cast<T>(static_cast<W>(a) + static_cast<W>(b));
      case Reduction::kMul:
        return static_cast<T>(static_cast<W>(a) * static_cast<W>(b));
      case Reduction::kMax:
        return a < b ? b : a;
      case Reduction::kMin:
        return b < a ? b : a;
      default:
        return b;
    }
  } else {
    float x = cuda::to_f(a), y = cuda::to_f(b), z;
    switch (r) {
      case Reduction::kAdd:
        z = x + y;
        break;
      case Reduction::kMul:
        z = x * y;
        break;
      case Reduction::kMax:
        z = x < y ? y : x;
        break;
      case Reduction::kMin:
        z = y < x ? y : x;
        break;
      default:
        z = y;
        break;
    }
    return cuda::from_f<T>(z);
  }
}

/// The unsigned word atomicCAS works on for T (void: T only takes plain stores).
template <typename T>
struct BitsOf {
  using type = void;
};
template <>
struct BitsOf<float> {
  using type = unsigned int;
};
template <>
struct BitsOf<__half> {
  using type = unsigned short int;
};
template <>
struct BitsOf<__nv_bfloat16> {
  using type = unsigned short int;
};
template <>
struct BitsOf<int32_t> {
  using type = unsigned int;
};
template <>
struct BitsOf<int64_t> {
  using type = unsigned long long int;
};

/// *p = combine(*p, v) atomically (a plain store for kNone).
template <typename T>
__device__ __forceinline__ void apply_update(T* p, T v, Reduction r) {
  using B = typename BitsOf<T>::type;
  if constexpr (std::is_void_v<B>) {
    *p = v;
  } else {
    if (r == Reduction::kNone) {
      *p = v;
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (r == Reduction::kAdd) {
        atomicAdd(p, v);
        return;
      }
    }
    static_assert(sizeof(B) == sizeof(T));
    B* bp = reinterpret_cast<B*>(p);
    B old = *bp, assumed;
    do {
      assumed = old;
      T cur;
      memcpy(&cur, &assumed, sizeof(T));
      T nv = combine(cur, v, r);
      B nb;
      memcpy(&nb, &nv, sizeof(T));
      old = atomicCAS(bp, assumed, nb);
    } while (old != assumed);
  }
}

template <typename T, typename I>
__global__ void scatternd_kernel(const T* __restrict__ u, const I* __restrict__ idx, T* __restrict__ y, NdParams p,
                                 Reduction r, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t t = i / p.slice, e = i - t * p.slice;
    apply_update(y + nd_offset(p, idx, t) + e, u[i], r);
  }
}

template <typename T, typename I>
__global__ void scatter_elements_kernel(const T* __restrict__ u, const I* __restrict__ idx, T* __restrict__ y,
                                        Indexer ix, int64_t axis_n, int64_t axis_stride, Reduction r, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    apply_update(y + cuda::offset_of(ix, i) + clamp_index(idx[i], axis_n) * axis_stride, u[i], r);
}

/// Same element size, but a numeric type for the reductions (bytes for "none").
#define KILN_CUDA_DISPATCH_SCATTER(red, dtype, T, ...) \
  if (red == Reduction::kNone) {                       \
    KILN_CUDA_DISPATCH_BYTES(dtype, T, __VA_ARGS__);   \
  } else {                                             \
    KILN_CUDA_DISPATCH_NUMERIC(dtype, T, __VA_ARGS__); \
  }

Status copy_data(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (ctx.input(2).dtype() != x.dtype()) return ctx.error("updates must have the data's dtype");
  if (y.data() != x.data() && x.nbytes() > 0)
    cudaMemcpyAsync(y.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream_of(ctx));
  return Status();
}

Status scatternd_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  const Tensor& u = ctx.input(2);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(Reduction red, reduction_of(ctx));
  const Dims& xd = x.dims();
  if (it.dims().empty()) return ctx.error("indices must have rank >= 1");
  int64_t k = it.dims().back();
  if (k < 1 || static_cast<size_t>(k) > xd.size()) return ctx.error("the last dim of indices is out of range");
  if (k > kMaxRank) return ctx.error("index tuples longer than 8", ErrorCode::kUnsupported);
  NdParams p;
  p.k = static_cast<int>(k);
  auto st = strides_of(xd);
  for (int64_t j = 0; j < k; ++j) {
    p.dims[j] = xd[static_cast<size_t>(j)];
    p.strides[j] = st[static_cast<size_t>(j)];
  }
  int64_t tuples = it.numel() / k;
  p.per_batch = std::max<int64_t>(tuples, 1);
  p.slice = movement::dims_product(xd, static_cast<size_t>(k), xd.size());
  if (u.numel() != tuples * p.slice) return ctx.error("updates do not match the indices");
  KILN_RETURN_IF_ERROR(copy_data(ctx));
  int64_t total = u.numel();
  if (total > 0) {
    for (int64_t j = 0; j < k; ++j)
      if (p.dims[j] == 0) return ctx.error("scatter into an empty axis", ErrorCode::kInvalidArgument);
    KILN_CUDA_DISPATCH_INDEX(it.dtype(), I, {
      KILN_CUDA_DISPATCH_SCATTER(red, x.dtype(), T, {
        scatternd_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
            static_cast<const T*>(u.data()), static_cast<const I*>(it.data()), static_cast<T*>(y.data()), p, red,
            total);
      });
    });
  }
  return cuda::launch_status(ctx, "scatternd");
}

Status scatter_elements_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& it = ctx.input(1);
  const Tensor& u = ctx.input(2);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(Reduction red, reduction_of(ctx));
  if (u.dims() != it.dims()) return ctx.error("indices and updates must have the same shape");
  KILN_ASSIGN_OR_RETURN(size_t ax, axis_of(ctx, x.rank()));
  KILN_ASSIGN_OR_RETURN(Indexer ix, elementwise_indexer(ctx, x.dims(), it.dims(), ax));
  KILN_RETURN_IF_ERROR(copy_data(ctx));
  int64_t total = it.numel();
  if (total > 0) {
    int64_t n = x.dims()[ax];
    if (n == 0) return ctx.error("scatter into an empty axis", ErrorCode::kInvalidArgument);
    int64_t axis_stride = strides_of(x.dims())[ax];
    KILN_CUDA_DISPATCH_INDEX(it.dtype(), I, {
      KILN_CUDA_DISPATCH_SCATTER(red, x.dtype(), T, {
        scatter_elements_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
            static_cast<const T*>(u.data()), static_cast<const I*>(it.data()), static_cast<T*>(y.data()), ix, n,
            axis_stride, red, total);
      });
    });
  }
  return cuda::launch_status(ctx, "scatter_elements");
}

bool is_cuda_numeric(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16 || t == DataType::kInt32 ||
         t == DataType::kInt64;
}

bool scatter_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (in.size() < 3 || !gather_applies(n, in) || in[2].dtype != in[0].dtype || !rank_ok(in[0])) return false;
  std::string red = n.attrs.get_string("reduction", "none");
  if (red == "none") return true;
  return (red == "add" || red == "mul" || red == "max" || red == "min") && is_cuda_numeric(in[0].dtype);
}

// ---------------------------------------------------------------- Trilu / OneHot

template <typename T>
__global__ void trilu_kernel(const T* __restrict__ x, T* __restrict__ y, const int64_t* __restrict__ k_ptr, bool upper,
                             int64_t rows, int64_t cols, int64_t total) {
  int64_t k = k_ptr ? *k_ptr : 0;
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t j = o % cols, i = (o / cols) % rows;
    bool keep = upper ? j - i >= k : j - i <= k;
    y[o] = keep ? x[o] : T(0);
  }
}

Status trilu_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() < 2) return ctx.error("input must have rank >= 2");
  // k is read on the device, so a computed k needs no host copy.
  const int64_t* k_ptr = nullptr;
  if (ctx.has_input(1)) {
    if (ctx.input(1).numel() != 1 || ctx.input(1).dtype() != DataType::kInt64)
      return ctx.error("k must be an int64 scalar");
    k_ptr = static_cast<const int64_t*>(ctx.input(1).data());
  }
  bool upper = ctx.attrs().get_int("upper", 1) != 0;
  int64_t rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1), total = x.numel();
  if (total == 0) return Status();
  KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
    trilu_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
        static_cast<const T*>(x.data()), static_cast<T*>(y.data()), k_ptr, upper, rows, cols, total);
  });
  return cuda::launch_status(ctx, "trilu");
}

bool trilu_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && cuda::movement::movable_dtype(in[0].dtype) &&
         (in.size() < 2 || in[1].dtype == DataType::kUndefined || in[1].dtype == DataType::kInt64);
}

/// Index j of an index tensor as onehot.cc's read_index does (floats truncate; NaN/huge never match).
template <typename I>
__device__ __forceinline__ bool onehot_index(I v, int64_t* out) {
  if constexpr (std::is_floating_point_v<I>) {
    if (!(fabs(static_cast<double>(v)) <= 9.0e18)) return false;
    *out = static_cast<int64_t>(v);
  } else {
    *out = static_cast<int64_t>(v);
  }
  return true;
}

template <typename T, typename I>
__global__ void onehot_kernel(const I* __restrict__ idx, const T* __restrict__ values, T* __restrict__ y, int64_t depth,
                              int64_t inner, int64_t total) {
  T off = values[0], on = values[1];
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t in = o % inner, t = o / inner;
    int64_t k = t % depth, outer = t / depth;
    int64_t v;
    bool hit = false;
    if (onehot_index(idx[outer * inner + in], &v)) {
      if (v < 0) v += depth;
      hit = v == k;
    }
    y[o] = hit ? on : off;
  }
}

Status onehot_cuda(KernelContext& ctx) {
  const Tensor& it = ctx.input(0);
  const Tensor& values = ctx.input(2);
  Tensor& y = ctx.output(0);
  if (values.numel() != 2) return ctx.error("values must hold [off_value, on_value]");
  auto axis = normalize_axis(ctx.attrs().get_int("axis", -1), it.rank() + 1);
  if (!axis) return ctx.error("axis is out of range");
  auto ax = static_cast<size_t>(*axis);
  if (y.dims().size() != it.dims().size() + 1 || y.dtype() != values.dtype())
    return ctx.error("output does not match the indices", ErrorCode::kInternal);
  int64_t depth = y.dims()[ax];
  int64_t inner = movement::dims_product(it.dims(), ax, it.dims().size());
  int64_t total = y.numel();
  if (total == 0) return Status();
  auto launch = [&](auto itag) -> Status {
    using I = decltype(itag);
    KILN_CUDA_DISPATCH_BYTES(values.dtype(), T, {
      onehot_kernel<T, I><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
          static_cast<const I*>(it.data()), static_cast<const T*>(values.data()), static_cast<T*>(y.data()), depth,
          inner, total);
    });
    return Status();
  };
  switch (it.dtype()) {
    case DataType::kInt32:
      KILN_RETURN_IF_ERROR(launch(int32_t{}));
      break;
    case DataType::kInt64:
      KILN_RETURN_IF_ERROR(launch(int64_t{}));
      break;
    case DataType::kFloat32:
      KILN_RETURN_IF_ERROR(launch(float{}));
      break;
    default:
      return ctx.error("indices dtype not supported by the CUDA kernel", ErrorCode::kUnsupported);
  }
  return cuda::launch_status(ctx, "onehot");
}

bool onehot_applies(const ir::Node&, const std::vector<TensorType>& in) {
  if (in.size() < 3) return false;
  DataType t = in[0].dtype;
  return (t == DataType::kInt32 || t == DataType::kInt64 || t == DataType::kFloat32) &&
         cuda::movement::movable_dtype(in[2].dtype);
}

}  // namespace

void register_gather_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Gather", FastKernel{"cuda.gather", gather_cuda, gather_applies});
  (void)r.add_cuda_kernel("", "GatherElements",
                          FastKernel{"cuda.gather_elements", gather_elements_cuda, elements_applies});
  (void)r.add_cuda_kernel("", "GatherND", FastKernel{"cuda.gathernd", gathernd_cuda, gather_applies});
  (void)r.add_cuda_kernel("", "ScatterND", FastKernel{"cuda.scatternd", scatternd_cuda, scatter_applies});
  for (const char* op : {"ScatterElements", "Scatter"})
    (void)r.add_cuda_kernel("", op, FastKernel{"cuda.scatter_elements", scatter_elements_cuda, scatter_applies});
  (void)r.add_cuda_kernel("", "Trilu", FastKernel{"cuda.trilu", trilu_cuda, trilu_applies});
  (void)r.add_cuda_kernel("", "OneHot", FastKernel{"cuda.onehot", onehot_cuda, onehot_applies});
}

}  // namespace kiln::ops
