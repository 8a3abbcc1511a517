// CUDA kernels of the pooling family: MaxPool (without Indices), AveragePool and
// LpPool with one thread per output element (any strides, dilations, pads,
// auto_pad, ceil_mode), and the Global* pools with one block per (N, C) plane.
// Semantics follow pool.cc / global_pool.cc: NaNs are skipped by MaxPool unless
// the window holds nothing else; count_include_pad stops at the explicit padding.
#include "backends/cuda/kernel_util.cuh"
#include "ops/layout.h"
#include "ops/norm/block_reduce.cuh"
#include "ops/pool/pool_internal.h"

namespace kiln::ops {
namespace {

constexpr int kMaxSpatial = cuda::kMaxRank - 2;

struct PoolGeom {
  int sp = 0;
  int kind = 0;  // pool::PoolKind
  bool count_include_pad = false;
  float p = 2.f;
  int64_t in[kMaxSpatial], out[kMaxSpatial], k[kMaxSpatial], s[kMaxSpatial], d[kMaxSpatial];
  int64_t pb[kMaxSpatial], pe[kMaxSpatial];
  int64_t in_count = 1, out_count = 1, k_count = 1;
};

// One window's running result, shared by the NCHW and NHWC kernels.
struct PoolAcc {
  float acc = 0.f, best = 0.f;
  bool found = false;
  int64_t valid = 0;

  __device__ __forceinline__ void add(const PoolGeom& g, float v) {
    ++valid;
    if (g.kind == static_cast<int>(pool::PoolKind::kMax)) {
      if (v != v) return;
      if (!found || v > best) {
        best = v;
        found = true;
      }
    } else if (g.kind == static_cast<int>(pool::PoolKind::kAverage)) {
      acc += v;
    } else {
      acc += powf(fabsf(v), g.p);
    }
  }

  /// `padded_taps`: window taps inside the explicit padding (count_include_pad's divisor).
  __device__ __forceinline__ float result(const PoolGeom& g, int64_t padded_taps) const {
    if (g.kind == static_cast<int>(pool::PoolKind::kMax))
      return found ? best : (valid ? __int_as_float(0x7fc00000) : -INFINITY);
    if (g.kind == static_cast<int>(pool::PoolKind::kAverage)) {
      const int64_t count = g.count_include_pad ? padded_taps : valid;
      return count > 0 ? acc / static_cast<float>(count) : 0.f;
    }
    return powf(acc, 1.f / g.p);
  }
};

template <typename T>
__global__ void pool_kernel(PoolGeom g, const T* x, T* y, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = idx / g.out_count;
    int64_t rem = idx - plane * g.out_count;
    int64_t start[kMaxSpatial];
    int64_t padded_taps = 1;
    for (int d = g.sp - 1; d >= 0; --d) {
      const int64_t q = rem / g.out[d];
      const int64_t oc = rem - q * g.out[d];
      rem = q;
      start[d] = oc * g.s[d] - g.pb[d];
      const int64_t limit = g.in[d] + g.pe[d];
      const int64_t taps = start[d] >= limit ? 0 : min(g.k[d], (limit - 1 - start[d]) / g.d[d] + 1);
      padded_taps *= taps;
    }
    const T* xp = x + plane * g.in_count;
    PoolAcc a;
    for (int64_t kk = 0; kk < g.k_count; ++kk) {
      int64_t krem = kk, off = 0, stride = 1;
      bool inside = true;
      for (int d = g.sp - 1; d >= 0; --d) {
        const int64_t q = krem / g.k[d];
        const int64_t pos = start[d] + (krem - q * g.k[d]) * g.d[d];
        krem = q;
        inside = inside && pos >= 0 && pos < g.in[d];
        off += pos * stride;
        stride *= g.in[d];
      }
      if (inside) a.add(g, cuda::to_f(xp[off]));
    }
    y[idx] = cuda::from_f<T>(a.result(g, padded_taps));
  }
}

// 2-D pooling over NHWC: one thread per output element, channels innermost so
// neighbouring threads read neighbouring channels.
template <typename T>
__global__ void pool_nhwc_kernel(PoolGeom g, int64_t channels, const T* x, T* y, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = idx % channels;
    int64_t rest = idx / channels;
    const int64_t ow = rest % g.out[1];
    rest /= g.out[1];
    const int64_t oh = rest % g.out[0];
    const int64_t n = rest / g.out[0];
    const int64_t h0 = oh * g.s[0] - g.pb[0], w0 = ow * g.s[1] - g.pb[1];
    const int64_t hlim = g.in[0] + g.pe[0], wlim = g.in[1] + g.pe[1];
    const int64_t th = h0 >= hlim ? 0 : min(g.k[0], (hlim - 1 - h0) / g.d[0] + 1);
    const int64_t tw = w0 >= wlim ? 0 : min(g.k[1], (wlim - 1 - w0) / g.d[1] + 1);
    const T* xp = x + n * g.in[0] * g.in[1] * channels + c;
    PoolAcc a;
    for (int64_t i = 0; i < g.k[0]; ++i) {
      const int64_t h = h0 + i * g.d[0];
      if (h < 0 || h >= g.in[0]) continue;
      for (int64_t j = 0; j < g.k[1]; ++j) {
        const int64_t w = w0 + j * g.d[1];
        if (w < 0 || w >= g.in[1]) continue;
        a.add(g, cuda::to_f(xp[(h * g.in[1] + w) * channels]));
      }
    }
    y[idx] = cuda::from_f<T>(a.result(g, th * tw));
  }
}

Status run_pool(KernelContext& ctx, pool::PoolKind kind) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() - 2 > kMaxSpatial) return ctx.error("too many spatial dims", ErrorCode::kUnsupported);
  const bool nhwc = is_nhwc(ctx.node());
  if (nhwc && x.rank() != 4) return ctx.error("NHWC pooling is 2-D only", ErrorCode::kUnsupported);
  auto s = pool::pool_setup(kind, ctx.attrs(), nhwc ? nhwc_to_nchw(x.dims()) : x.dims());
  if (!s.ok()) return ctx.error(s.status().message());
  const int64_t total = y.numel();
  if (total == 0) return Status();
  PoolGeom g;
  g.sp = static_cast<int>(s->attrs.spatial);
  g.kind = static_cast<int>(kind);
  g.count_include_pad = s->count_include_pad;
  g.p = static_cast<float>(s->p);
  for (int d = 0; d < g.sp; ++d) {
    g.in[d] = s->geo.in[d];
    g.out[d] = s->geo.out[d];
    g.k[d] = s->attrs.kernel[d];
    g.s[d] = s->attrs.strides[d];
    g.d[d] = s->attrs.dilations[d];
    g.pb[d] = s->geo.pad_begin[d];
    g.pe[d] = s->geo.pad_end[d];
  }
  g.in_count = s->in_count;
  g.out_count = s->out_count;
  g.k_count = s->k_count;
  if (nhwc) {
    KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
      pool_nhwc_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(g, x.dim(3), x.data_as<T>(),
                                                                                            y.data_as<T>(), total);
    });
    return cuda::launch_status(ctx, "pool_nhwc");
  }
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    pool_kernel<T>
        <<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(g, x.data_as<T>(), y.data_as<T>(), total);
  });
  return cuda::launch_status(ctx, "pool");
}

Status max_pool_cuda(KernelContext& ctx) { return run_pool(ctx, pool::PoolKind::kMax); }
Status avg_pool_cuda(KernelContext& ctx) { return run_pool(ctx, pool::PoolKind::kAverage); }
Status lp_pool_cuda(KernelContext& ctx) { return run_pool(ctx, pool::PoolKind::kLp); }

bool float_input(const std::vector<TensorType>& inputs) {
  if (inputs.empty()) return false;
  const DataType t = inputs[0].dtype;
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

bool applies_pool(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!float_input(inputs)) return false;
  // MaxPool's Indices output stays with the reference.
  if (node.outputs.size() > 1 && node.outputs[1] != nullptr) return false;
  const auto& shape = inputs[0].shape;
  if (is_nhwc(node)) return shape && shape->size() == 4;
  return !shape || (shape->size() >= 3 && shape->size() - 2 <= static_cast<size_t>(kMaxSpatial));
}

// ---------------------------------------------------------------- Global pools

template <typename T>
__global__ void global_pool_kernel(int kind, float p, const T* x, T* y, int64_t count) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const T* xp = x + blockIdx.x * count;
  float r;
  if (kind == static_cast<int>(pool::PoolKind::kMax)) {
    float acc = -INFINITY;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const float v = cuda::to_f(xp[i]);
      acc = (v != v || v > acc) ? v : acc;  // NaN sticks, as in the reference
    }
    r = cuda::block_reduce(acc, cuda::NanMaxOp(), fscratch);
  } else {
    // Sums in double, like the reference.
    const bool avg = kind == static_cast<int>(pool::PoolKind::kAverage);
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const double v = cuda::to_f(xp[i]);
      acc += avg ? v : pow(fabs(v), static_cast<double>(p));
    }
    acc = cuda::block_reduce(acc, cuda::SumOp(), dscratch);
    r = static_cast<float>(avg ? acc / static_cast<double>(count) : pow(acc, 1.0 / p));
  }
  if (threadIdx.x == 0) y[blockIdx.x] = cuda::from_f<T>(r);
}

Status run_global(KernelContext& ctx, pool::PoolKind kind) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() < 3) return ctx.error("X must have rank >= 3");
  const int64_t planes = x.dim(0) * x.dim(1);
  if (planes == 0) return Status();
  const int64_t count = x.numel() / planes;
  const int64_t p = ctx.attrs().get_int("p", 2);
  if (kind == pool::PoolKind::kLp && p < 1) return ctx.error("p must be >= 1");
  if (planes > INT32_MAX) return ctx.error("too many planes", ErrorCode::kUnsupported);
  const int block = count >= 1024 ? 256 : count >= 256 ? 128 : 32;
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    global_pool_kernel<T><<<static_cast<unsigned>(planes), block, 0, cuda::stream_of(ctx)>>>(
        static_cast<int>(kind), static_cast<float>(p), x.data_as<T>(), y.data_as<T>(), count);
  });
  return cuda::launch_status(ctx, "global_pool");
}

Status global_avg_cuda(KernelContext& ctx) { return run_global(ctx, pool::PoolKind::kAverage); }
Status global_max_cuda(KernelContext& ctx) { return run_global(ctx, pool::PoolKind::kMax); }
Status global_lp_cuda(KernelContext& ctx) { return run_global(ctx, pool::PoolKind::kLp); }

bool applies_global(const ir::Node&, const std::vector<TensorType>& inputs) { return float_input(inputs); }

}  // namespace

void register_pool_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "MaxPool", FastKernel{"cuda.pool", max_pool_cuda, applies_pool});
  (void)r.add_cuda_kernel("", "AveragePool", FastKernel{"cuda.pool", avg_pool_cuda, applies_pool});
  (void)r.add_cuda_kernel("", "LpPool", FastKernel{"cuda.pool", lp_pool_cuda, applies_pool});
  (void)r.add_cuda_kernel("", "GlobalAveragePool", FastKernel{"cuda.global_pool", global_avg_cuda, applies_global});
  (void)r.add_cuda_kernel("", "GlobalMaxPool", FastKernel{"cuda.global_pool", global_max_cuda, applies_global});
  (void)r.add_cuda_kernel("", "GlobalLpPool", FastKernel{"cuda.global_pool", global_lp_cuda, applies_global});
}

}  // namespace kiln::ops
