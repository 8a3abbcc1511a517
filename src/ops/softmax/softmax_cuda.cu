// CUDA kernels of the softmax family: Softmax, LogSoftmax, Hardmax. X is viewed
// as [outer, len, inner] (before opset 13 the axis coerces to 2-D, so inner = 1).
// Contiguous rows (inner == 1) take one warp per row up to 1024 elements and
// one block per row beyond; strided rows take one thread per (outer, inner)
// column, so neighbouring threads read neighbouring elements. fp32 accumulation.
#include "backends/cuda/kernel_util.cuh"
#include "ops/common.h"
#include "ops/norm/block_reduce.cuh"

namespace kiln::ops {
namespace {

enum Kind : int { kSoftmax = 0, kLogSoftmax = 1, kHardmax = 2 };

constexpr int64_t kWarpRowMax = 1024;
constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ int64_t warp_min_i64(int64_t v) {
  for (int o = 16; o > 0; o /= 2) {
    const long long other = __shfl_xor_sync(0xffffffffu, static_cast<long long>(v), o);
    v = other < v ? other : v;
  }
  return v;
}

template <typename T, bool kWarp>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t rows, int64_t len, int kind) {
  __shared__ float scratch[32];
  __shared__ long long iscratch[32];
  int64_t row;
  int lane, width;
  if (kWarp) {
    row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    lane = threadIdx.x & 31;
    width = 32;
  } else {
    row = blockIdx.x;
    lane = threadIdx.x;
    width = blockDim.x;
  }
  if (row >= rows) return;  // whole warps (or the whole block) leave together
  auto sum = [&](float v) {
    return kWarp ? cuda::warp_reduce(v, cuda::SumOp()) : cuda::block_reduce(v, cuda::SumOp(), scratch);
  };
  auto max = [&](float v) {
    return kWarp ? cuda::warp_reduce(v, cuda::MaxOp()) : cuda::block_reduce(v, cuda::MaxOp(), scratch);
  };
  const T* xr = x + row * len;
  T* yr = y + row * len;
  float mx = -INFINITY;
  for (int64_t k = lane; k < len; k += width) mx = fmaxf(mx, cuda::to_f(xr[k]));  // fmaxf skips NaN, as `v > mx` does
  mx = max(mx);
  if (kind == kHardmax) {
    // The first maximum; rows without an element above -inf mark element 0 (as the reference does).
    int64_t arg = len;
    for (int64_t k = lane; k < len && arg == len; k += width)
      if (cuda::to_f(xr[k]) == mx && mx > -INFINITY) arg = k;
    arg = warp_min_i64(arg);
    if (!kWarp) {
      __syncthreads();
      if ((lane & 31) == 0) iscratch[lane >> 5] = arg;
      __syncthreads();
      for (int w = 0; w < (width + 31) / 32; ++w) arg = iscratch[w] < arg ? iscratch[w] : arg;
    }
    if (arg == len) arg = 0;
    for (int64_t k = lane; k < len; k += width) yr[k] = cuda::from_f<T>(k == arg ? 1.f : 0.f);
    return;
  }
  float s = 0.f;
  for (int64_t k = lane; k < len; k += width) s += expf(cuda::to_f(xr[k]) - mx);
  s = sum(s);
  if (kind == kSoftmax) {
    const float inv = 1.f / s;
    for (int64_t k = lane; k < len; k += width) yr[k] = cuda::from_f<T>(expf(cuda::to_f(xr[k]) - mx) * inv);
  } else {
    // (x - max) - log(sum): keeps the small terms when max is large.
    const float log_sum = logf(s);
    for (int64_t k = lane; k < len; k += width) yr[k] = cuda::from_f<T>((cuda::to_f(xr[k]) - mx) - log_sum);
  }
}

// One thread per (outer, inner) column of a strided axis.
template <typename T>
__global__ void softmax_columns_kernel(const T* x, T* y, int64_t outer, int64_t len, int64_t inner, int kind) {
  const int64_t total = outer * inner;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const T* xc = x + o * len * inner + i;
    T* yc = y + o * len * inner + i;
    float mx = -INFINITY;
    int64_t arg = 0;
    for (int64_t k = 0; k < len; ++k) {
      const float v = cuda::to_f(xc[k * inner]);
      if (v > mx) {
        mx = v;
        arg = k;
      }
    }
    if (kind == kHardmax) {
      for (int64_t k = 0; k < len; ++k) yc[k * inner] = cuda::from_f<T>(k == arg ? 1.f : 0.f);
      continue;
    }
    float s = 0.f;
    for (int64_t k = 0; k < len; ++k) s += expf(cuda::to_f(xc[k * inner]) - mx);
    if (kind == kSoftmax) {
      const float inv = 1.f / s;
      for (int64_t k = 0; k < len; ++k) yc[k * inner] = cuda::from_f<T>(expf(cuda::to_f(xc[k * inner]) - mx) * inv);
    } else {
      const float log_sum = logf(s);
      for (int64_t k = 0; k < len; ++k) yc[k * inner] = cuda::from_f<T>((cuda::to_f(xc[k * inner]) - mx) - log_sum);
    }
  }
}

Status run_softmax(KernelContext& ctx, Kind kind) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const int64_t rank = x.rank();
  const int opset = ctx.opset();
  const int64_t axis_attr = ctx.attrs().get_int("axis", opset >= 13 ? -1 : 1);
  auto axis = normalize_axis(axis_attr, rank);
  if (!axis)
    return ctx.error("axis " + std::to_string(axis_attr) + " is out of range for rank " + std::to_string(rank));
  int64_t outer = 1, len = 1, inner = 1;
  for (int64_t d = 0; d < *axis; ++d) outer *= x.dim(d);
  if (opset >= 13) {
    len = x.dim(*axis);
    for (int64_t d = *axis + 1; d < rank; ++d) inner *= x.dim(d);
  } else {
    for (int64_t d = *axis; d < rank; ++d) len *= x.dim(d);
  }
  if (outer * inner == 0 || len == 0) return Status();
  cudaStream_t stream = cuda::stream_of(ctx);
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    const T* xp = x.data_as<T>();
    T* yp = y.data_as<T>();
    if (inner == 1 && len <= kWarpRowMax) {
      const int64_t blocks = (outer + kWarpsPerBlock - 1) / kWarpsPerBlock;
      if (blocks > INT32_MAX) return ctx.error("too many rows", ErrorCode::kUnsupported);
      softmax_rows_kernel<T, true>
          <<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, stream>>>(xp, yp, outer, len, kind);
    } else if (inner == 1) {
      if (outer > INT32_MAX) return ctx.error("too many rows", ErrorCode::kUnsupported);
      const int block = len >= 8192 ? 512 : 256;
      softmax_rows_kernel<T, false><<<static_cast<unsigned>(outer), block, 0, stream>>>(xp, yp, outer, len, kind);
    } else {
      softmax_columns_kernel<T>
          <<<cuda::grid_for(outer * inner), cuda::kBlock, 0, stream>>>(xp, yp, outer, len, inner, kind);
    }
  });
  return cuda::launch_status(ctx, "softmax");
}

Status softmax_cuda(KernelContext& ctx) { return run_softmax(ctx, kSoftmax); }
Status log_softmax_cuda(KernelContext& ctx) { return run_softmax(ctx, kLogSoftmax); }
Status hardmax_cuda(KernelContext& ctx) { return run_softmax(ctx, kHardmax); }

bool applies_float(const ir::Node&, const std::vector<TensorType>& inputs) {
  if (inputs.empty()) return false;
  const DataType t = inputs[0].dtype;
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

}  // namespace

void register_softmax_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Softmax", FastKernel{"cuda.softmax", softmax_cuda, applies_float});
  (void)r.add_cuda_kernel("", "LogSoftmax", FastKernel{"cuda.softmax", log_softmax_cuda, applies_float});
  (void)r.add_cuda_kernel("", "Hardmax", FastKernel{"cuda.softmax", hardmax_cuda, applies_float});
}

}  // namespace kiln::ops
