// CUDA kernels of the normalization family. BatchNormalization (inference) is
// elementwise; LayerNormalization, RMSNormalization, com.microsoft
// SkipLayerNormalization, InstanceNormalization and GroupNormalization run one
// block per normalized row with fp64 statistics (the reference is double; memory-bound anyway) and a two-pass variance
// (the row is re-read from L2 rather than kept in registers, so any length works).
// Layer / RMS / SkipLayerNormalization rows of up to 4096 elements in 16-byte
// packs run the register-resident kernels of row_norm_fast.cuh instead.
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "ops/norm/block_reduce.cuh"
#include "ops/norm/norm_internal.h"
#include "ops/norm/norm_util.h"
#include "ops/norm/row_norm_fast.cuh"

namespace kiln::ops {
namespace {

bool is_cuda_float(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

// Threads per row block: enough to keep each thread on a few elements.
int row_block(int64_t cols) { return cols >= 4096 ? 512 : cols >= 1024 ? 256 : cols >= 256 ? 128 : 32; }

bool wants_output(const ir::Node& node, size_t i) { return i < node.outputs.size() && node.outputs[i] != nullptr; }

// ---------------------------------------------------------------- BatchNormalization

template <typename T, typename P>
__global__ void batch_norm_kernel(const T* x, T* y, const P* scale, const P* bias, const P* mean, const P* var,
                                  float eps, int64_t channels, int64_t inner, bool per_activation, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = i / inner;
    const int64_t c = plane % channels;
    const int64_t p = per_activation ? c * inner + (i - plane * inner) : c;
    const double inv = 1.0 / sqrt(static_cast<double>(cuda::to_f(var[p])) + eps);
    const double v = static_cast<double>(cuda::to_f(scale[p])) *
                         (cuda::to_f(x[i]) - static_cast<double>(cuda::to_f(mean[p]))) * inv +
                     cuda::to_f(bias[p]);
    y[i] = cuda::from_f<T>(static_cast<float>(v));
  }
}

Status batch_norm_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (x.rank() < 2) return ctx.error("X must have rank >= 2");
  if (ctx.attrs().get_int("training_mode", 0) != 0) return ctx.error("training mode", ErrorCode::kUnsupported);
  const int64_t total = x.numel();
  if (total == 0) return Status();
  const int64_t channels = x.dim(1), inner = total / (x.dim(0) * channels);
  const DataType pt = ctx.input(1).dtype();
  bool per_activation = false;
  for (size_t i = 1; i < 5; ++i) {
    const Tensor& p = ctx.input(i);
    if (p.dtype() != pt) return ctx.error("scale, B, mean and var dtypes differ");
    if (p.numel() != channels && p.numel() != channels * inner)
      return ctx.error("input " + std::to_string(i) + " " + dims_to_string(p.dims()) +
                       " must have C = " + std::to_string(channels) + " elements");
    per_activation = per_activation || p.numel() != channels;
  }
  if (per_activation)
    for (size_t i = 1; i < 5; ++i)
      if (ctx.input(i).numel() != channels * inner) return ctx.error("mixed per-channel and per-activation params");
  const float eps = ctx.attrs().get_float("epsilon", 1e-5f);
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    using XT = T;
    KILN_CUDA_DISPATCH_FLOAT(pt, P, {
      batch_norm_kernel<XT, P><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
          x.data_as<XT>(), y.data_as<XT>(), ctx.input(1).data_as<P>(), ctx.input(2).data_as<P>(),
          ctx.input(3).data_as<P>(), ctx.input(4).data_as<P>(), eps, channels, inner, per_activation, total);
    });
  });
  return cuda::launch_status(ctx, "batch_norm");
}

bool applies_batch_norm(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 5 || !is_cuda_float(inputs[0].dtype) || !is_cuda_float(inputs[1].dtype)) return false;
  for (size_t i = 2; i < 5; ++i)
    if (inputs[i].dtype != inputs[1].dtype) return false;
  if (node.attrs.get_int("training_mode", 0) != 0) return false;
  for (size_t i = 1; i < node.outputs.size(); ++i)
    if (node.outputs[i]) return false;
  return true;
}

// ---------------------------------------------------------------- Layer / RMS

/// A parameter broadcast over the normalized dims: contiguous, or through an indexer.
struct ColParam {
  const void* data = nullptr;
  bool contiguous = true;
  cuda::Indexer ix;
};

template <typename T>
__device__ __forceinline__ float col_param(const ColParam& p, int64_t j) {
  const T* d = static_cast<const T*>(p.data);
  return cuda::to_f(d[p.contiguous ? j : cuda::offset_of(p.ix, j)]);
}

template <typename T>
__global__ void row_norm_kernel(const T* x, T* y, ColParam scale, ColParam bias, int64_t cols, float eps, bool rms,
                                float* mean_out, float* inv_out) {
  __shared__ double scratch[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  double mu = 0.0;
  if (!rms) {
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += cuda::to_f(xr[j]);
    mu = cuda::block_reduce(s, cuda::SumOp(), scratch) / static_cast<double>(cols);
  }
  double ss = 0.0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const double d = cuda::to_f(xr[j]) - mu;
    ss += d * d;
  }
  const double var = cuda::block_reduce(ss, cuda::SumOp(), scratch) / static_cast<double>(cols);
  const double inv = 1.0 / sqrt(var + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    double v = (cuda::to_f(xr[j]) - mu) * inv * col_param<T>(scale, j);
    if (bias.data) v += col_param<T>(bias, j);
    yr[j] = cuda::from_f<T>(static_cast<float>(v));
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[row] = static_cast<float>(mu);
    if (inv_out) inv_out[row] = static_cast<float>(inv);
  }
}

Status make_col_param(KernelContext& ctx, size_t i, const Dims& norm, ColParam& p) {
  const Tensor& t = ctx.input(i);
  if (t.dtype() != ctx.input(0).dtype()) return ctx.error("parameter dtypes must match X's");
  if (t.rank() > static_cast<int64_t>(norm.size()) || !norm::broadcasts_to(t.dims(), norm))
    return ctx.error("input " + std::to_string(i) + " " + dims_to_string(t.dims()) +
                         " does not broadcast over the normalized dims " + dims_to_string(norm),
                     ErrorCode::kUnsupported);
  p.data = t.data();
  p.contiguous = t.numel() == dims_volume(norm);
  if (!p.contiguous && !cuda::make_broadcast_indexer(norm, t.dims(), p.ix))
    return ctx.error("rank too large", ErrorCode::kUnsupported);
  return Status();
}

Status run_row_norm(KernelContext& ctx, bool rms) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  auto axis = normalize_axis(ctx.attrs().get_int("axis", -1), x.rank());
  if (!axis) return ctx.error("axis is out of range");
  const Dims norm(x.dims().begin() + *axis, x.dims().end());
  const int64_t cols = dims_volume(norm);
  const int64_t rows = cols ? x.numel() / cols : 0;
  ColParam scale, bias;
  KILN_RETURN_IF_ERROR(make_col_param(ctx, 1, norm, scale));
  if (!rms && ctx.has_input(2)) KILN_RETURN_IF_ERROR(make_col_param(ctx, 2, norm, bias));
  float* stats[2] = {nullptr, nullptr};
  for (size_t i = 1; i < 3 && !rms; ++i) {
    if (!ctx.has_output(i)) continue;
    if (ctx.output(i).dtype() != DataType::kFloat32)
      return ctx.error("statistics outputs other than float32", ErrorCode::kUnsupported);
    stats[i - 1] = ctx.output(i).data_as<float>();
  }
  if (rows == 0 || rows > INT32_MAX) return rows == 0 ? Status() : ctx.error("too many rows", ErrorCode::kUnsupported);
  const float eps = ctx.attrs().get_float("epsilon", 1e-5f);
  using cuda::rownorm::aligned16;
  const bool fast = cuda::rownorm::fast_cols_ok(cols, dtype_size(x.dtype())) && scale.contiguous &&
                    (!bias.data || bias.contiguous) && aligned16(x.data()) && aligned16(y.data()) &&
                    aligned16(scale.data) && aligned16(bias.data);
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    if (fast)
      cuda::rownorm::launch_row_norm_fast<T>(cuda::stream_of(ctx), x.data_as<T>(), y.data_as<T>(),
                                             static_cast<const T*>(scale.data), static_cast<const T*>(bias.data), rows,
                                             cols, eps, rms, stats[0], stats[1]);
    else
      row_norm_kernel<T><<<static_cast<unsigned>(rows), row_block(cols), 0, cuda::stream_of(ctx)>>>(
          x.data_as<T>(), y.data_as<T>(), scale, bias, cols, eps, rms, stats[0], stats[1]);
  });
  return cuda::launch_status(ctx, rms ? "rms_norm" : "layer_norm");
}

Status layer_norm_cuda(KernelContext& ctx) { return run_row_norm(ctx, false); }
Status rms_norm_cuda(KernelContext& ctx) { return run_row_norm(ctx, true); }

// X rank known; parameters of X's dtype whose rank fits in the normalized dims.
bool row_params_ok(const ir::Node& node, const std::vector<TensorType>& inputs, const std::vector<size_t>& params) {
  if (inputs.empty() || !is_cuda_float(inputs[0].dtype) || !inputs[0].shape) return false;
  const int64_t rank = static_cast<int64_t>(inputs[0].shape->size());
  auto axis = normalize_axis(node.attrs.get_int("axis", -1), rank);
  if (!axis || rank > cuda::kMaxRank) return false;
  for (size_t i : params) {
    if (!node.input(i)) continue;
    if (i >= inputs.size() || inputs[i].dtype != inputs[0].dtype || !inputs[i].shape) return false;
    if (static_cast<int64_t>(inputs[i].shape->size()) > rank - *axis) return false;
  }
  return true;
}

bool applies_layer_norm(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!row_params_ok(node, inputs, {1, 2})) return false;
  // Mean / InvStdDev are written as float32 only.
  if ((wants_output(node, 1) || wants_output(node, 2)) && node.attrs.get_int("stash_type", 1) != 1) return false;
  return true;
}

bool applies_rms_norm(const ir::Node& node, const std::vector<TensorType>& inputs) {
  return row_params_ok(node, inputs, {1});
}

// ---------------------------------------------------------------- SkipLayerNormalization

// input + skip (+ bias), rounded to T as the reference stores the sum before normalizing
// (`inr`: the input's row, e: the element's index in the output).
template <typename T>
__device__ __forceinline__ float skip_sum(const T* inr, const T* skip, const T* bias, const cuda::Indexer& skip_ix,
                                          bool skip_same, int64_t e, int64_t j) {
  float v = cuda::to_f(inr[j]) + cuda::to_f(skip[skip_same ? e : cuda::offset_of(skip_ix, e)]);
  if (bias) v += cuda::to_f(bias[j]);
  return cuda::to_f(cuda::from_f<T>(v));
}

template <typename T>
__global__ void skip_norm_kernel(const T* in, cuda::rownorm::RowGather gather, const T* skip, cuda::Indexer skip_ix,
                                 bool skip_same, const T* gamma, const T* beta, const T* bias, T* y, float* mean_out,
                                 float* inv_out, T* sum_out, int64_t cols, float eps) {
  __shared__ double scratch[32];
  const int64_t row = blockIdx.x, base = row * cols;
  const T* inr = gather.row_ptr(in, row, cols);
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = skip_sum(inr, skip, bias, skip_ix, skip_same, base + j, j);
    if (sum_out) sum_out[base + j] = cuda::from_f<T>(v);
    s += v;
  }
  const double mu = cuda::block_reduce(s, cuda::SumOp(), scratch) / static_cast<double>(cols);
  double ss = 0.0;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const double d = skip_sum(inr, skip, bias, skip_ix, skip_same, base + j, j) - mu;
    ss += d * d;
  }
  const double inv = 1.0 / sqrt(cuda::block_reduce(ss, cuda::SumOp(), scratch) / static_cast<double>(cols) + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    double v = (skip_sum(inr, skip, bias, skip_ix, skip_same, base + j, j) - mu) * inv * cuda::to_f(gamma[j]);
    if (beta) v += cuda::to_f(beta[j]);
    y[base + j] = cuda::from_f<T>(static_cast<float>(v));
  }
  if (threadIdx.x == 0) {
    if (mean_out) mean_out[row] = static_cast<float>(mu);
    if (inv_out) inv_out[row] = static_cast<float>(inv);
  }
}

// SkipLayerNormalization of rows of `dims` (the output's dims), the input's rows at `in`
// as `gather` says; gamma, beta and bias are inputs p, p + 1, p + 2 (the last two
// optional); outputs as SkipLayerNormalization's.
Status run_skip_norm(KernelContext& ctx, DataType dt, const void* in, cuda::rownorm::RowGather gather, const Dims& dims,
                     const Tensor& skip, size_t p) {
  if (dims.empty()) return ctx.error("input must have rank >= 1");
  const int64_t h = dims.back();
  if (skip.dtype() != dt) return ctx.error("skip dtype differs from input's");
  if (!norm::broadcasts_to(skip.dims(), dims)) return ctx.error("skip does not broadcast to input");
  const void* params[3] = {};
  for (size_t i = 0; i < 3; ++i) {
    if (!ctx.has_input(p + i)) continue;
    const Tensor& t = ctx.input(p + i);
    if (t.numel() != h)
      return ctx.error("input " + std::to_string(p + i) + " must have " + std::to_string(h) + " elements");
    if (t.dtype() != dt) return ctx.error("parameter dtypes must match the input's");
    params[i] = t.data();
  }
  const int64_t numel = dims_volume(dims);
  const int64_t rows = h ? numel / h : 0;
  if (rows == 0) return Status();
  if (rows > INT32_MAX) return ctx.error("too many rows", ErrorCode::kUnsupported);
  cuda::Indexer skip_ix;
  const bool skip_same = skip.numel() == numel;
  if (!skip_same && !cuda::make_broadcast_indexer(dims, skip.dims(), skip_ix))
    return ctx.error("rank too large", ErrorCode::kUnsupported);
  float* stats[2] = {nullptr, nullptr};
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.has_output(i)) continue;
    if (ctx.output(i).dtype() != DataType::kFloat32) return ctx.error("statistics outputs must be float32");
    stats[i - 1] = ctx.output(i).data_as<float>();
  }
  void* sum_out = ctx.has_output(3) ? ctx.output(3).data() : nullptr;
  const float eps = ctx.attrs().get_float("epsilon", 1e-12f);
  using cuda::rownorm::aligned16;
  // The fast kernel repeats skip's rows: the same shape, or skip broadcast over leading dims only.
  size_t lead = 0;
  while (lead < skip.dims().size() && skip.dim(static_cast<int64_t>(lead)) == 1) ++lead;
  const size_t kept = skip.dims().size() - lead;
  bool repeats = kept >= 1 && kept <= dims.size();
  for (size_t i = 0; repeats && i < kept; ++i) repeats = skip.dims()[lead + i] == dims[dims.size() - kept + i];
  const int64_t skip_rows = skip_same ? rows : skip.numel() / h;
  bool fast = (skip_same || repeats) && cuda::rownorm::fast_cols_ok(h, dtype_size(dt)) && aligned16(in) &&
              aligned16(gather.head) && aligned16(skip.data()) && aligned16(ctx.output(0).data()) && aligned16(sum_out);
  for (const void* q : params) fast = fast && aligned16(q);
  KILN_CUDA_DISPATCH_FLOAT(dt, T, {
    const T* x = static_cast<const T*>(in);
    const T *gamma = static_cast<const T*>(params[0]), *beta = static_cast<const T*>(params[1]),
            *bias = static_cast<const T*>(params[2]);
    if (fast) {
      cuda::rownorm::launch_skip_norm_fast<T>(cuda::stream_of(ctx), x, gather, skip.data_as<T>(), gamma, beta, bias,
                                              ctx.output(0).data_as<T>(), stats[0], stats[1], static_cast<T*>(sum_out),
                                              rows, skip_rows, h, eps);
    } else {
      skip_norm_kernel<T><<<static_cast<unsigned>(rows), row_block(h), 0, cuda::stream_of(ctx)>>>(
          x, gather, skip.data_as<T>(), skip_ix, skip_same, gamma, beta, bias, ctx.output(0).data_as<T>(), stats[0],
          stats[1], static_cast<T*>(sum_out), h, eps);
    }
  });
  return cuda::launch_status(ctx, "skip_layer_norm");
}

Status skip_layer_norm_cuda(KernelContext& ctx) {
  const Tensor& in = ctx.input(0);
  return run_skip_norm(ctx, in.dtype(), in.data(), {}, in.dims(), ctx.input(1), 2);
}

bool applies_skip_layer_norm(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 3 || !is_cuda_float(inputs[0].dtype)) return false;
  if (inputs[0].shape && inputs[0].shape->size() > static_cast<size_t>(cuda::kMaxRank)) return false;
  for (size_t i = 1; i <= 4; ++i)
    if (node.input(i) && (i >= inputs.size() || inputs[i].dtype != inputs[0].dtype)) return false;
  return true;
}

// kiln GatherSkipLayerNormalization: the table's rows idx[r] are the input's rows.
Status gather_skip_layer_norm_cuda(KernelContext& ctx) {
  const Tensor& table = ctx.input(0);
  const Tensor& idx = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Dims dims, norm::gathered_dims(ctx, table, idx));
  if (table.dim(0) == 0 && idx.numel() > 0) return ctx.error("indices into an empty table");
  cuda::rownorm::RowGather gather{idx.data(), idx.dtype() == DataType::kInt64, table.dim(0)};
  return run_skip_norm(ctx, table.dtype(), table.data(), gather, dims, ctx.input(2), 3);
}

bool applies_gather_skip_layer_norm(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 4 || !is_cuda_float(inputs[0].dtype)) return false;
  if (inputs[1].dtype != DataType::kInt32 && inputs[1].dtype != DataType::kInt64) return false;
  if (inputs[1].shape && inputs[1].shape->size() + 1 > static_cast<size_t>(cuda::kMaxRank)) return false;
  for (size_t i = 2; i <= 4; ++i)
    if (node.input(i) && (i >= inputs.size() || inputs[i].dtype != inputs[0].dtype)) return false;
  return true;
}

// kiln ConcatSkipLayerNormalization: of each batch's n0 + n1 rows, the first n0 are head's
// (its batch's, or its one set) and the rest rest's.
Status concat_skip_layer_norm_cuda(KernelContext& ctx) {
  const Tensor &head = ctx.input(0), &rest = ctx.input(1);
  KILN_ASSIGN_OR_RETURN(Dims dims, norm::concat_rows_dims(ctx, head, rest));
  cuda::rownorm::RowGather rows;
  rows.head = head.data();
  rows.group = dims[1];
  rows.head_rows = head.dim(1);
  rows.head_shared = head.dim(0) == 1;
  return run_skip_norm(ctx, rest.dtype(), rest.data(), rows, dims, ctx.input(2), 3);
}

bool applies_concat_skip_layer_norm(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 4 || !is_cuda_float(inputs[1].dtype) || inputs[0].dtype != inputs[1].dtype) return false;
  for (size_t i = 2; i <= 5; ++i)
    if (node.input(i) && (i >= inputs.size() || inputs[i].dtype != inputs[1].dtype)) return false;
  return true;
}

// ---------------------------------------------------------------- Instance / Group

// One block per (n, group): `size` = channels_per_group * inner contiguous elements.
template <typename T>
__global__ void group_norm_kernel(const T* x, T* y, const T* scale, const T* bias, int64_t groups, int64_t cpg,
                                  int64_t inner, float eps, bool per_group) {
  __shared__ double scratch[32];
  const int64_t row = blockIdx.x, size = cpg * inner, base = row * size;
  const int64_t g = row % groups;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < size; i += blockDim.x) s += cuda::to_f(x[base + i]);
  const double mu = size ? cuda::block_reduce(s, cuda::SumOp(), scratch) / static_cast<double>(size) : 0.0;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < size; i += blockDim.x) {
    const double d = cuda::to_f(x[base + i]) - mu;
    ss += d * d;
  }
  const double var = size ? cuda::block_reduce(ss, cuda::SumOp(), scratch) / static_cast<double>(size) : 0.0;
  const double inv = 1.0 / sqrt(var + eps);
  for (int64_t i = threadIdx.x; i < size; i += blockDim.x) {
    const int64_t p = per_group ? g : g * cpg + i / inner;
    const double v = (cuda::to_f(x[base + i]) - mu) * inv * cuda::to_f(scale[p]) + cuda::to_f(bias[p]);
    y[base + i] = cuda::from_f<T>(static_cast<float>(v));
  }
}

Status run_group_norm(KernelContext& ctx, bool group) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) return ctx.error("X must have rank >= 2");
  const int64_t n = x.dim(0), c = x.dim(1);
  if (x.numel() == 0) return Status();
  const int64_t inner = x.numel() / (n * c);
  int64_t groups = c;
  if (group) {
    groups = ctx.attrs().get_int("num_groups", 1);
    if (groups < 1 || c % groups != 0) return ctx.error("channels are not divisible by num_groups");
  }
  const Tensor& scale = ctx.input(1);
  const Tensor& bias = ctx.input(2);
  if (scale.dtype() != x.dtype() || bias.dtype() != x.dtype()) return ctx.error("scale and B dtypes must match X's");
  // Opset 18 GroupNormalization gives scale/bias per group; opset 21 per channel.
  if (scale.numel() != bias.numel() || (scale.numel() != c && !(group && scale.numel() == groups)))
    return ctx.error("scale and B must have C = " + std::to_string(c) + (group ? " or num_groups" : "") + " elements");
  const bool per_group = scale.numel() != c;
  const int64_t rows = n * groups;
  if (rows > INT32_MAX) return ctx.error("too many rows", ErrorCode::kUnsupported);
  const int64_t cpg = c / groups;
  const float eps = ctx.attrs().get_float("epsilon", 1e-5f);
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    group_norm_kernel<T><<<static_cast<unsigned>(rows), row_block(cpg * inner), 0, cuda::stream_of(ctx)>>>(
        x.data_as<T>(), ctx.output(0).data_as<T>(), scale.data_as<T>(), bias.data_as<T>(), groups, cpg, inner, eps,
        per_group);
  });
  return cuda::launch_status(ctx, group ? "group_norm" : "instance_norm");
}

Status instance_norm_cuda(KernelContext& ctx) { return run_group_norm(ctx, false); }
Status group_norm_cuda(KernelContext& ctx) { return run_group_norm(ctx, true); }

bool applies_channel_norm(const ir::Node&, const std::vector<TensorType>& inputs) {
  return inputs.size() >= 3 && is_cuda_float(inputs[0].dtype) && inputs[1].dtype == inputs[0].dtype &&
         inputs[2].dtype == inputs[0].dtype;
}

}  // namespace

void register_norm_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "BatchNormalization", FastKernel{"cuda.batch_norm", batch_norm_cuda, applies_batch_norm});
  (void)r.add_cuda_kernel("", "LayerNormalization", FastKernel{"cuda.row_norm", layer_norm_cuda, applies_layer_norm});
  (void)r.add_cuda_kernel("", "RMSNormalization", FastKernel{"cuda.row_norm", rms_norm_cuda, applies_rms_norm});
  (void)r.add_cuda_kernel("com.microsoft", "SkipLayerNormalization",
                          FastKernel{"cuda.skip_layer_norm", skip_layer_norm_cuda, applies_skip_layer_norm});
  (void)r.add_cuda_kernel(
      "kiln", "GatherSkipLayerNormalization",
      FastKernel{"cuda.skip_layer_norm", gather_skip_layer_norm_cuda, applies_gather_skip_layer_norm});
  (void)r.add_cuda_kernel(
      "kiln", "ConcatSkipLayerNormalization",
      FastKernel{"cuda.skip_layer_norm", concat_skip_layer_norm_cuda, applies_concat_skip_layer_norm});
  (void)r.add_cuda_kernel("", "InstanceNormalization",
                          FastKernel{"cuda.group_norm", instance_norm_cuda, applies_channel_norm});
  (void)r.add_cuda_kernel("", "GroupNormalization",
                          FastKernel{"cuda.group_norm", group_norm_cuda, applies_channel_norm});
}

}  // namespace kiln::ops
