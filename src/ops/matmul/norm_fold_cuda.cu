// CUDA kernels of MatMulBiasRowStats and NormMatMulBias (norm_fold.cc). Tactics 0 and 1: CUTLASS's
// Hopper GEMMs with the epilogues of norm_gemm.h (a cluster of two CTAs along m, or along n), where
// they run (an sm_90 GPU, FP16, kiln built with CUTLASS, shapes norm_gemm::takes and rows a multiple
// of 4: the statistics' rows are read as 16-byte vectors). Tactic 2, everywhere else: cuBLASLt, then
// one pass over Y (the bias and the statistics, or the folded LayerNorm's epilogue).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "ops/matmul/matmul_internal.h"
#include "ops/matmul/norm_gemm.h"

namespace kiln::ops {
namespace {

using matmul::BiasActivation;
constexpr int64_t kFallback = 2;

bool is_cuda_float(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

// Tactics offered for a problem, the first the default.
std::vector<int64_t> tactics_for(DataType t, int64_t rows, int64_t n, int64_t k) {
  if (t == DataType::kFloat16 && rows % 4 == 0 && matmul::norm_gemm::takes(rows, n, k) &&
      matmul::norm_gemm::runs_here())
    return {0, 1, kFallback};
  return {kFallback};
}

// The tactic to run: the node's, where this problem offers it (an engine from elsewhere runs the
// fallback), else the first offered.
int64_t pick(const KernelContext& ctx, const std::vector<int64_t>& offered) {
  cuda::report_tactics(offered);
  const int64_t t = ctx.attrs().get_int(kTacticAttr, offered[0]);
  for (int64_t o : offered)
    if (o == t) return t;
  return kFallback;
}

Status cuda_error(const KernelContext& ctx, const char* what, int e) {
  if (e == 0) return Status();
  return ctx.error(std::string(what) + " failed: " + cudaGetErrorString(static_cast<cudaError_t>(e)),
                   ErrorCode::kInternal);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Fallback of MatMulBiasRowStats after cuBLASLt wrote Y = A W^T + residual: Y += bias and the
// statistics of each row (one warp a row).
template <class T>
__global__ void bias_row_stats_kernel(T* __restrict__ y, const float* __restrict__ bias, int64_t rows, int64_t n,
                                      float eps, float* __restrict__ stats) {
  const int64_t r = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  T* row = y + r * n;
  float sum = 0.f, sq = 0.f;
  for (int64_t c = lane; c < n; c += 32) {
    const float z = cuda::to_f(row[c]) + bias[c];
    row[c] = cuda::from_f<T>(z);
    sum += z, sq += z * z;
  }
  sum = warp_sum(sum), sq = warp_sum(sq);
  if (lane == 0) {
    const float mean = sum / n, var = fmaxf(sq / n - mean * mean, 0.f), rs = rsqrtf(var + eps);
    stats[r] = rs, stats[rows + r] = -mean * rs, stats[2 * rows + r] = 0.f, stats[3 * rows + r] = 0.f;
  }
}

// Fallback of NormMatMulBias after cuBLASLt wrote Y = X W'^T: Y = act(rstd Y + nmr s + b').
template <class T>
__global__ void fold_epilogue_kernel(T* __restrict__ y, const float* __restrict__ stats, const float* __restrict__ s,
                                     const float* __restrict__ b, int64_t rows, int64_t n, bool gelu) {
  const int64_t total = rows * n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / n, c = i - r * n;
    float v = stats[r] * cuda::to_f(y[i]) + stats[rows + r] * s[c] + b[c];
    if (gelu) v = 0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    y[i] = cuda::from_f<T>(v);
  }
}

Status row_stats_cuda(KernelContext& ctx) {
  const Tensor &a = ctx.input(0), &w = ctx.input(1), &bias = ctx.input(2), &res = ctx.input(3);
  Tensor &y = ctx.output(0), &stats = ctx.output(1);
  if (w.rank() != 2 || bias.numel() != w.dim(0) || res.dims() != y.dims() || y.rank() == 0 ||
      y.dims().back() != w.dim(0) || a.dims().back() != w.dim(1))
    return ctx.error("A, W, bias and residual do not fit [..., K] x [N, K] -> [..., N]");
  const int64_t n = w.dim(0), k = w.dim(1), rows = y.numel() / std::max<int64_t>(n, 1);
  if (stats.dtype() != DataType::kFloat32 || stats.numel() != 4 * rows) return ctx.error("stats must be [4, rows]");
  if (rows == 0) return Status();
  const float eps = ctx.attrs().get_float("epsilon", 1e-5f);
  float* st = stats.data_as<float>();
  const cudaStream_t stream = cuda::stream_of(ctx);
  const int64_t t = pick(ctx, tactics_for(y.dtype(), rows, n, k));
  if (t != kFallback) {
    cudaMemsetAsync(st + 2 * rows, 0, static_cast<size_t>(2 * rows) * sizeof(float), stream);
    KILN_RETURN_IF_ERROR(cuda::launch_status(ctx, "row sums' zeroing"));
    matmul::norm_gemm::ResidualSums p;
    p.m = rows, p.n = n, p.k = k;
    p.x = a.data(), p.w = w.data(), p.bias = bias.data_as<float>(), p.c = res.data(), p.d = y.data();
    p.sums = st + 2 * rows, p.sumsq = st + 3 * rows;
    KILN_RETURN_IF_ERROR(
        cuda_error(ctx, "CUTLASS's residual GEMM", matmul::norm_gemm::residual_sums(p, int(t), stream)));
    return cuda_error(
        ctx, "the row statistics",
        matmul::norm_gemm::finish_stats(rows, n, eps, st + 2 * rows, st + 3 * rows, st, st + rows, stream));
  }
  if (k == 0) return ctx.error("K = 0 is not supported");
  KILN_RETURN_IF_ERROR(matmul::lt_gemm_nt(ctx, y.dtype(), rows, n, k, a.data(), w.data(), nullptr, res.data(), y.data(),
                                          BiasActivation::kNone));
  const int64_t threads = rows * 32;
  KILN_CUDA_DISPATCH_FLOAT(y.dtype(), T, {
    bias_row_stats_kernel<T>
        <<<static_cast<unsigned>((threads + cuda::kBlock - 1) / cuda::kBlock), cuda::kBlock, 0, stream>>>(
            y.data_as<T>(), bias.data_as<float>(), rows, n, eps, st);
  });
  return cuda::launch_status(ctx, "bias_row_stats");
}

Status norm_matmul_cuda(KernelContext& ctx) {
  const Tensor &x = ctx.input(0), &stats = ctx.input(1), &w = ctx.input(2), &s = ctx.input(3), &b = ctx.input(4);
  Tensor& y = ctx.output(0);
  if (w.rank() != 2 || s.numel() != w.dim(0) || b.numel() != w.dim(0) || y.rank() == 0 || y.dims().back() != w.dim(0) ||
      x.dims().back() != w.dim(1))
    return ctx.error("X, W', s and b' do not fit [..., K] x [N, K] -> [..., N]");
  const int64_t n = w.dim(0), k = w.dim(1), rows = y.numel() / std::max<int64_t>(n, 1);
  if (stats.dtype() != DataType::kFloat32 || stats.numel() != 4 * rows) return ctx.error("stats must be [4, rows]");
  if (rows == 0) return Status();
  KILN_ASSIGN_OR_RETURN(BiasActivation act, matmul::bias_activation(ctx.attrs()));
  if (act == BiasActivation::kRelu) return ctx.error("activation must be \"\" or \"GeluTanh\"");
  const bool gelu = act == BiasActivation::kGeluTanh;
  const float* st = stats.data_as<float>();
  const cudaStream_t stream = cuda::stream_of(ctx);
  const int64_t t = pick(ctx, tactics_for(y.dtype(), rows, n, k));
  if (t != kFallback) {
    matmul::norm_gemm::Folded p;
    p.m = rows, p.n = n, p.k = k, p.gelu = gelu;
    p.x = x.data(), p.w = w.data(), p.rstd = st, p.nmr = st + rows, p.s = s.data_as<float>(), p.b = b.data_as<float>();
    p.d = y.data();
    return cuda_error(ctx, "CUTLASS's folded GEMM", matmul::norm_gemm::folded(p, int(t), stream));
  }
  if (k == 0) return ctx.error("K = 0 is not supported");
  KILN_RETURN_IF_ERROR(matmul::lt_gemm_nt(ctx, y.dtype(), rows, n, k, x.data(), w.data(), nullptr, nullptr, y.data(),
                                          BiasActivation::kNone));
  KILN_CUDA_DISPATCH_FLOAT(y.dtype(), T, {
    fold_epilogue_kernel<T><<<cuda::grid_for(rows * n), cuda::kBlock, 0, stream>>>(
        y.data_as<T>(), st, s.data_as<float>(), b.data_as<float>(), rows, n, gelu);
  });
  return cuda::launch_status(ctx, "fold_epilogue");
}

bool applies_row_stats(const ir::Node&, const std::vector<TensorType>& in) {
  return in.size() >= 4 && is_cuda_float(in[0].dtype) && in[1].dtype == in[0].dtype &&
         in[2].dtype == DataType::kFloat32 && in[3].dtype == in[0].dtype;
}

bool applies_norm_matmul(const ir::Node& node, const std::vector<TensorType>& in) {
  auto act = matmul::bias_activation(node.attrs);
  return in.size() >= 5 && is_cuda_float(in[0].dtype) && in[1].dtype == DataType::kFloat32 &&
         in[2].dtype == in[0].dtype && in[3].dtype == DataType::kFloat32 && in[4].dtype == DataType::kFloat32 &&
         act.ok() && *act != BiasActivation::kRelu;
}

}  // namespace

void matmul::register_norm_fold_cuda(OpRegistry& r) {
  (void)r.add_cuda_kernel(
      "kiln", "MatMulBiasRowStats",
      FastKernel{"cuda.norm_gemm", row_stats_cuda, applies_row_stats, cuda::collect_tactics<row_stats_cuda>});
  (void)r.add_cuda_kernel(
      "kiln", "NormMatMulBias",
      FastKernel{"cuda.norm_gemm", norm_matmul_cuda, applies_norm_matmul, cuda::collect_tactics<norm_matmul_cuda>});
}

}  // namespace kiln::ops
