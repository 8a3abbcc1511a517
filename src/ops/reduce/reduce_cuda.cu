// CUDA kernels of the reduce family: Reduce* over any axes, ArgMax/ArgMin,
// CumSum and TopK (k <= 256 or rows of at most 2048 elements).
//
// Reduce* merges adjacent dims and picks one of two kernels: "rows" when the
// reduced elements of each output are contiguous ([rows, R]: a warp or a block
// per row), "cols" otherwise (a 32-wide tile of outputs per block, 8 threads
// down the reduced elements of each; several reduced groups are addressed by
// index decomposition). Few outputs with many reduced elements split R across
// blocks, with partial states in the workspace and a finishing kernel.
// fp16/bf16/fp32 accumulate in fp32; int32/int64 in int64 (wrapping like the reference).
#include <limits>
#include <type_traits>

#include "ops/reduce/reduce_cuda.cuh"

namespace kiln::ops {
namespace {

using namespace reduce_cuda;  // NOLINT(google-build-using-namespace)
using reduce_detail::ReduceKind;

// ---------------------------------------------------------------- Reduce*

template <typename T, typename A>
__global__ void reduce_rows_kernel(const T* __restrict__ x, T* __restrict__ y, State<A>* __restrict__ partial,
                                   int64_t rows, int64_t R, int64_t chunk, int tpr, ReduceKind kind) {
  __shared__ State<A> warp_states[kBlock / 32];
  int group = threadIdx.x / tpr, lane = threadIdx.x % tpr, groups = kBlock / tpr;
  int64_t r0 = blockIdx.y * chunk, r1 = min(R, r0 + chunk);
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * groups; row0 < rows;
       row0 += static_cast<int64_t>(gridDim.x) * groups) {
    int64_t row = row0 + group;
    State<A> s = init_state<T, A>(kind);
    if (row < rows) {
      const T* xr = x + row * R;
      for (int64_t r = r0 + lane; r < r1; r += tpr) add_value(s, widen<T, A>(xr[r]), kind);
    }
    s = warp_merge(s, kind);
    if (tpr > 32) {
      if ((threadIdx.x & 31) == 0) warp_states[threadIdx.x / 32] = s;
      __syncthreads();
      if (threadIdx.x == 0)
        for (int w = 1; w < kBlock / 32; ++w) merge_state(s, warp_states[w], kind);
      __syncthreads();
    }
    if (lane == 0 && row < rows) {
      if (partial)
        partial[blockIdx.y * rows + row] = s;
      else
        y[row] = finalize<T, A>(s, R, kind);
    }
  }
}

/// Outputs o (row-major over the kept dims) reduce x[offset_of(kept, o) + offset_of(red, r)].
template <typename T, typename A>
__global__ void reduce_cols_kernel(const T* __restrict__ x, T* __restrict__ y, State<A>* __restrict__ partial,
                                   Indexer kept, Indexer red, int64_t outputs, int64_t R, int64_t chunk,
                                   ReduceKind kind) {
  __shared__ State<A> states[kColRows][33];
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t r0 = blockIdx.y * chunk, r1 = min(R, r0 + chunk);
  for (int64_t tile = blockIdx.x; tile * 32 < outputs; tile += gridDim.x) {
    int64_t o = tile * 32 + tx;
    State<A> s = init_state<T, A>(kind);
    if (o < outputs) {
      const T* xb = x + offset_of(kept, o);
      if (red.rank == 1) {
        int64_t st = red.strides[0];
        for (int64_t r = r0 + ty; r < r1; r += kColRows) add_value(s, widen<T, A>(xb[r * st]), kind);
      } else {
        for (int64_t r = r0 + ty; r < r1; r += kColRows) add_value(s, widen<T, A>(xb[offset_of(red, r)]), kind);
      }
    }
    states[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && o < outputs) {
      for (int k = 1; k < kColRows; ++k) merge_state(s, states[k][tx], kind);
      if (partial)
        partial[blockIdx.y * outputs + o] = s;
      else
        y[o] = finalize<T, A>(s, R, kind);
    }
    __syncthreads();
  }
}

template <typename T, typename A>
__global__ void reduce_finish_kernel(const State<A>* __restrict__ partial, T* __restrict__ y, int64_t outputs,
                                     int splits, int64_t R, ReduceKind kind) {
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < outputs;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    State<A> s = partial[o];
    for (int k = 1; k < splits; ++k) merge_state(s, partial[k * outputs + o], kind);
    y[o] = finalize<T, A>(s, R, kind);
  }
}

/// Splits of R so that about two blocks per SM run; 1 when the workspace is too small.
int choose_splits(const KernelContext& ctx, int64_t blocks, int64_t R, int64_t min_chunk, int64_t outputs,
                  size_t state_bytes) {
  int64_t want = 2 * cuda::sm_count();
  if (blocks >= want || R < 2 * min_chunk) return 1;
  int64_t s = std::min<int64_t>((want + blocks - 1) / blocks, R / min_chunk);
  s = std::min<int64_t>(s, 1024);
  const cuda::Env* env = ctx.cuda_env();
  while (s > 1 && static_cast<size_t>(s * outputs) * state_bytes > env->workspace_bytes) s /= 2;
  return static_cast<int>(std::max<int64_t>(s, 1));
}

template <typename T, typename A>
Status launch_reduce(KernelContext& ctx, const T* x, T* y, const std::vector<std::pair<int64_t, bool>>& groups,
                     int64_t outputs, ReduceKind kind) {
  cudaStream_t stream = cuda::stream_of(ctx);
  auto* ws = static_cast<State<A>*>(ctx.cuda_env()->workspace);
  int nred = 0;
  for (auto& g : groups) nred += g.second;
  bool rows_layout = nred == 0 || (nred == 1 && groups.back().second);
  if (rows_layout) {
    int64_t R = nred == 0 ? 1 : groups.back().first;
    int tpr = R <= 1024 ? 32 : kBlock;
    int64_t blocks = (outputs + (kBlock / tpr) - 1) / (kBlock / tpr);
    int splits = choose_splits(ctx, blocks, R, 4096, outputs, sizeof(State<A>));
    int64_t chunk = (R + splits - 1) / splits;
    dim3 grid(static_cast<unsigned>(std::min<int64_t>(blocks, 65535 * 8)), static_cast<unsigned>(splits));
    reduce_rows_kernel<T, A>
        <<<grid, kBlock, 0, stream>>>(x, y, splits > 1 ? ws : nullptr, outputs, R, chunk, tpr, kind);
    if (splits > 1)
      reduce_finish_kernel<T, A><<<cuda::grid_for(outputs), kBlock, 0, stream>>>(ws, y, outputs, splits, R, kind);
    return cuda::launch_status(ctx, "reduce_rows");
  }
  // Strides of the merged groups, then the kept and reduced indexers.
  std::vector<int64_t> st(groups.size(), 1);
  for (size_t i = groups.size() - 1; i-- > 0;) st[i] = st[i + 1] * groups[i + 1].first;
  Indexer kept, red;
  for (size_t i = 0; i < groups.size(); ++i) {
    Indexer& ix = groups[i].second ? red : kept;
    ix.dims[ix.rank] = groups[i].first;
    ix.strides[ix.rank] = st[i];
    ++ix.rank;
  }
  int64_t R = 1;
  for (int i = 0; i < red.rank; ++i) R *= red.dims[i];
  int64_t blocks = (outputs + 31) / 32;
  int splits = choose_splits(ctx, blocks, R, 256, outputs, sizeof(State<A>));
  int64_t chunk = (R + splits - 1) / splits;
  dim3 grid(static_cast<unsigned>(std::min<int64_t>(blocks, 65535 * 8)), static_cast<unsigned>(splits));
  reduce_cols_kernel<T, A>
      <<<grid, dim3(32, kColRows), 0, stream>>>(x, y, splits > 1 ? ws : nullptr, kept, red, outputs, R, chunk, kind);
  if (splits > 1)
    reduce_finish_kernel<T, A><<<cuda::grid_for(outputs), kBlock, 0, stream>>>(ws, y, outputs, splits, R, kind);
  return cuda::launch_status(ctx, "reduce_cols");
}

Status reduce_kernel(KernelContext& ctx) {
  const ir::Node& node = ctx.node();
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  // An axes input known to be empty needs no host copy.
  static const Tensor kNoAxes = Tensor::empty(DataType::kInt64, {0});
  const Tensor* axes_value = nullptr;
  if (ctx.has_input(1)) {
    axes_value = ctx.input(1).numel() == 0 ? &kNoAxes : ctx.host_value(1);
    if (!axes_value) return ctx.error("axes must be known when the engine is built", ErrorCode::kUnsupported);
  }
  KILN_ASSIGN_OR_RETURN(reduce_detail::AxesSource src, reduce_detail::axes_source(node, ctx.has_input(1), axes_value));
  bool noop = false;
  KILN_ASSIGN_OR_RETURN(std::vector<bool> mask, reduce_detail::reduced_mask(node, src, x.rank(), &noop));
  if (noop) {
    if (x.nbytes() && y.data() != x.data())
      cudaMemcpyAsync(y.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream_of(ctx));
    return cuda::launch_status(ctx, "copy");
  }
  int64_t outputs = y.numel();
  if (outputs == 0) return Status();
  std::vector<std::pair<int64_t, bool>> groups;  // merged (size, reduced) runs, size-1 dims dropped
  int64_t kept_count = 1;
  for (size_t i = 0; i < x.dims().size(); ++i) {
    int64_t d = x.dims()[i];
    if (!mask[i]) kept_count *= d;
    if (d == 1) continue;
    if (!groups.empty() && groups.back().second == mask[i])
      groups.back().first *= d;
    else
      groups.push_back({d, mask[i]});
  }
  if (kept_count != outputs) return ctx.error("output size does not match the reduction", ErrorCode::kInternal);
  // An empty reduced axis: every output is the empty reduction's value.
  if (x.numel() == 0) groups = {{outputs, false}, {0, true}};
  ReduceKind kind = reduce_detail::kind_of(node.op_type);
  switch (x.dtype()) {
    case DataType::kFloat32:
      return launch_reduce<float, float>(ctx, x.data_as<float>(), y.data_as<float>(), groups, outputs, kind);
    case DataType::kFloat16:
      return launch_reduce<__half, float>(ctx, x.data_as<__half>(), y.data_as<__half>(), groups, outputs, kind);
    case DataType::kBFloat16:
      return launch_reduce<__nv_bfloat16, float>(ctx, x.data_as<__nv_bfloat16>(), y.data_as<__nv_bfloat16>(), groups,
                                                 outputs, kind);
    case DataType::kInt32:
      return launch_reduce<int32_t, int64_t>(ctx, x.data_as<int32_t>(), y.data_as<int32_t>(), groups, outputs, kind);
    case DataType::kInt64:
      return launch_reduce<int64_t, int64_t>(ctx, x.data_as<int64_t>(), y.data_as<int64_t>(), groups, outputs, kind);
    default:
      return ctx.error(std::string("no CUDA reduction for dtype ") + dtype_name(x.dtype()), ErrorCode::kUnsupported);
  }
}

bool reduce_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  if (in[0].shape && in[0].shape->size() > static_cast<size_t>(kMaxRank)) return false;
  DataType t = in[0].dtype;
  if (t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16) return true;
  if (t != DataType::kInt32 && t != DataType::kInt64) return false;
  // Integer L2 / LogSum / LogSumExp round through double in the reference; not done here.
  ReduceKind k = reduce_detail::kind_of(n.op_type);
  return k != ReduceKind::kL2 && k != ReduceKind::kLogSum && k != ReduceKind::kLogSumExp;
}

}  // namespace

void register_arg_scan_cuda_kernels(OpRegistry& r);  // arg_scan_cuda.cu

void register_reduce_cuda_kernels(OpRegistry& r) {
  for (const char* name : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
    (void)r.add_cuda_kernel("", name, FastKernel{"cuda.reduce", reduce_kernel, reduce_applies});
  register_arg_scan_cuda_kernels(r);
}

}  // namespace kiln::ops
