// CUDA Einsum. Two-operand contractions without diagonals, broadcasting or
// labels summed in one operand only are a batched GEMM over label groups
// (batch, M, N, K), read through strides in place (no permutation copies); every
// other equation runs the general loop nest of the reference, one thread per
// output element. Floats accumulate in FP32, integers in 64-bit.
#include <algorithm>
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "ops/misc/einsum_plan.h"

namespace kiln::ops {
namespace {

constexpr int kMaxOperands = 8;
constexpr int kMaxLoops = 16;

// ---------------------------------------------------------------- general path

struct LoopNest {
  int operands = 0;
  int loops = 0;
  int out_loops = 0;
  int64_t dims[kMaxLoops] = {};
  int64_t strides[kMaxOperands][kMaxLoops] = {};
  const void* ptr[kMaxOperands] = {};
};

template <class T>
using acc_t = std::conditional_t<std::is_integral_v<T>, int64_t, float>;

template <class T>
__device__ __forceinline__ acc_t<T> load_acc(const T* p) {
  if constexpr (std::is_integral_v<T>)
    return static_cast<int64_t>(*p);
  else
    return cuda::to_f(*p);
}

template <class T>
__device__ __forceinline__ acc_t<T> mul_acc(acc_t<T> a, acc_t<T> b) {
  if constexpr (std::is_integral_v<T>)  // wraps like the reference, without signed-overflow UB
    return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
  else
    return a * b;
}

template <class T>
__device__ __forceinline__ acc_t<T> add_acc(acc_t<T> a, acc_t<T> b) {
  if constexpr (std::is_integral_v<T>)
    return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  else
    return a + b;
}

template <class T>
__global__ void einsum_loops_kernel(LoopNest nest, T* y, int64_t out_count, int64_t sum_count) {
  for (int64_t o = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; o < out_count;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t off[kMaxOperands];
    for (int i = 0; i < nest.operands; ++i) off[i] = 0;
    int64_t rest = o;
    for (int k = nest.out_loops - 1; k >= 0; --k) {
      const int64_t q = rest / nest.dims[k];
      const int64_t c = rest - q * nest.dims[k];
      rest = q;
      for (int i = 0; i < nest.operands; ++i) off[i] += c * nest.strides[i][k];
    }
    int64_t idx[kMaxLoops];
    for (int k = nest.out_loops; k < nest.loops; ++k) idx[k] = 0;
    acc_t<T> acc = 0;
    for (int64_t s = 0; s < sum_count; ++s) {
      acc_t<T> prod = 1;
      for (int i = 0; i < nest.operands; ++i)
        prod = mul_acc<T>(prod, load_acc(static_cast<const T*>(nest.ptr[i]) + off[i]));
      acc = add_acc<T>(acc, prod);
      // Odometer step over the summed loops, innermost last.
      for (int k = nest.loops - 1; k >= nest.out_loops; --k) {
        if (++idx[k] < nest.dims[k]) {
          for (int i = 0; i < nest.operands; ++i) off[i] += nest.strides[i][k];
          break;
        }
        for (int i = 0; i < nest.operands; ++i) off[i] -= nest.strides[i][k] * (nest.dims[k] - 1);
        idx[k] = 0;
      }
    }
    if constexpr (std::is_integral_v<T>)
      y[o] = static_cast<T>(acc);
    else
      y[o] = cuda::from_f<T>(acc);
  }
}

Status run_loops(KernelContext& ctx, const einsum::Plan& plan) {
  Tensor& y = ctx.output(0);
  const int64_t out_count = y.numel();
  LoopNest nest;
  nest.operands = static_cast<int>(ctx.num_inputs());
  nest.loops = static_cast<int>(plan.loop_dims.size());
  nest.out_loops = static_cast<int>(plan.num_output_loops);
  int64_t sum_count = 1;
  for (int k = 0; k < nest.loops; ++k) {
    nest.dims[k] = plan.loop_dims[k];
    if (k >= nest.out_loops) sum_count *= plan.loop_dims[k];
  }
  for (int i = 0; i < nest.operands; ++i) {
    nest.ptr[i] = ctx.input(i).data();
    for (int k = 0; k < nest.loops; ++k) nest.strides[i][k] = plan.strides[i][k];
  }
  KILN_CUDA_DISPATCH_NUMERIC(y.dtype(), T, {
    einsum_loops_kernel<T><<<cuda::grid_for(out_count), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(nest, y.data_as<T>(),
                                                                                                 out_count, sum_count);
  });
  return cuda::launch_status(ctx, "einsum_loops");
}

// ---------------------------------------------------------------- GEMM path

/// One label group (batch, M, N or K) flattened row-major, with each tensor's strides.
struct Group {
  int rank = 0;
  int64_t dims[kMaxLoops] = {};
  int64_t sa[kMaxLoops] = {}, sb[kMaxLoops] = {}, sc[kMaxLoops] = {};
  int64_t count = 1;
};

struct GroupOffsets {
  int64_t a = 0, b = 0, c = 0;
};

__device__ __forceinline__ GroupOffsets group_offsets(const Group& g, int64_t i) {
  GroupOffsets o;
  for (int d = g.rank - 1; d >= 0; --d) {
    const int64_t q = i / g.dims[d];
    const int64_t r = i - q * g.dims[d];
    i = q;
    o.a += r * g.sa[d];
    o.b += r * g.sb[d];
    o.c += r * g.sc[d];
  }
  return o;
}

struct GemmGroups {
  Group batch, m, n, k;
};

constexpr int kTile = 32;     // output tile kTile x kTile per block
constexpr int kTileK = 16;    // reduction chunk
constexpr int kThreads = 16;  // 16 x 16 threads, 2 x 2 outputs each

template <class T>
__global__ void einsum_gemm_kernel(GemmGroups g, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c) {
  __shared__ float as[kTileK][kTile + 1];
  __shared__ float bs[kTileK][kTile + 1];
  __shared__ int64_t m_off_a[kTile], m_off_c[kTile], n_off_b[kTile], n_off_c[kTile];
  __shared__ int64_t k_off_a[kTileK], k_off_b[kTileK];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kThreads + tx;
  const int64_t M = g.m.count, N = g.n.count, K = g.k.count;
  const int64_t m_tiles = (M + kTile - 1) / kTile;
  for (int64_t bt = blockIdx.z; bt < g.batch.count; bt += gridDim.z) {
    const GroupOffsets bo = group_offsets(g.batch, bt);
    for (int64_t mt = blockIdx.y; mt < m_tiles; mt += gridDim.y) {
      const int64_t m0 = mt * kTile, n0 = static_cast<int64_t>(blockIdx.x) * kTile;
      __syncthreads();  // the previous tile's offsets are no longer read
      if (tid < kTile) {
        const GroupOffsets mo = group_offsets(g.m, min(m0 + tid, M - 1));
        m_off_a[tid] = mo.a;
        m_off_c[tid] = mo.c;
      } else if (tid < 2 * kTile) {
        const GroupOffsets no = group_offsets(g.n, min(n0 + tid - kTile, N - 1));
        n_off_b[tid - kTile] = no.b;
        n_off_c[tid - kTile] = no.c;
      }
      float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
      for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
        __syncthreads();  // the previous chunk is consumed
        if (tid < kTileK) {
          const GroupOffsets ko = group_offsets(g.k, min(k0 + tid, K - 1));
          k_off_a[tid] = ko.a;
          k_off_b[tid] = ko.b;
        }
        __syncthreads();
        for (int e = tid; e < kTileK * kTile; e += kThreads * kThreads) {
          const int kk = e / kTile, mm = e % kTile;
          const bool ok_k = k0 + kk < K;
          as[kk][mm] = ok_k && m0 + mm < M ? cuda::to_f(a[bo.a + m_off_a[mm] + k_off_a[kk]]) : 0.f;
          bs[kk][mm] = ok_k && n0 + mm < N ? cuda::to_f(b[bo.b + n_off_b[mm] + k_off_b[kk]]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) {
          const float a0 = as[kk][ty], a1 = as[kk][ty + kThreads];
          const float b0 = bs[kk][tx], b1 = bs[kk][tx + kThreads];
          acc[0][0] += a0 * b0;
          acc[0][1] += a0 * b1;
          acc[1][0] += a1 * b0;
          acc[1][1] += a1 * b1;
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int mm = ty + i * kThreads, nn = tx + j * kThreads;
          if (m0 + mm < M && n0 + nn < N) c[bo.c + m_off_c[mm] + n_off_c[nn]] = cuda::from_f<T>(acc[i][j]);
        }
    }
  }
}

int find_label(const std::vector<int>& v, int id) {
  auto it = std::find(v.begin(), v.end(), id);
  return it == v.end() ? -1 : static_cast<int>(it - v.begin());
}

/// Fills the GEMM groups when the equation is a batched matmul over the two
/// operands; false otherwise (diagonals, broadcasting, one-sided sums).
bool plan_gemm(const einsum::Plan& plan, const Dims& da, const Dims& db, GemmGroups& g) {
  const std::vector<int>& la = plan.labels.inputs[0];
  const std::vector<int>& lb = plan.labels.inputs[1];
  const std::vector<int>& lo = plan.labels.output;
  auto distinct = [](std::vector<int> v) {
    std::sort(v.begin(), v.end());
    return std::adjacent_find(v.begin(), v.end()) == v.end();
  };
  if (!distinct(la) || !distinct(lb)) return false;
  // Output strides (the output is contiguous in its label order).
  std::vector<int64_t> sc(lo.size(), 0);
  for (int64_t d = static_cast<int64_t>(lo.size()) - 1, s = 1; d >= 0; --d) {
    sc[d] = s;
    s *= plan.loop_dims[d];
  }
  auto st_a = strides_of(da), st_b = strides_of(db);
  for (size_t loop = 0; loop < plan.order.size(); ++loop) {
    const int id = plan.order[loop];
    const int ia = find_label(la, id), ib = find_label(lb, id), io = find_label(lo, id);
    const int64_t size = plan.loop_dims[loop];
    // Broadcasting (a size-1 dim against a larger one) stays on the general path.
    if ((ia >= 0 && da[ia] != size) || (ib >= 0 && db[ib] != size)) return false;
    Group* grp;
    if (io >= 0)
      grp = ia >= 0 && ib >= 0 ? &g.batch : ia >= 0 ? &g.m : &g.n;
    else if (ia >= 0 && ib >= 0)
      grp = &g.k;
    else
      return false;  // summed over one operand only
    if (grp->rank >= kMaxLoops) return false;
    grp->dims[grp->rank] = size;
    grp->sa[grp->rank] = ia >= 0 ? st_a[ia] : 0;
    grp->sb[grp->rank] = ib >= 0 ? st_b[ib] : 0;
    grp->sc[grp->rank] = io >= 0 ? sc[io] : 0;
    grp->count *= size;
    ++grp->rank;
  }
  return true;
}

Status run_gemm(KernelContext& ctx, const GemmGroups& g) {
  Tensor& y = ctx.output(0);
  if (g.k.count == 0) {  // an empty sum: every output is 0
    cudaError_t e = cudaMemsetAsync(y.data(), 0, y.nbytes(), cuda::stream_of(ctx));
    if (e != cudaSuccess) return ctx.error(std::string("cudaMemsetAsync failed: ") + cudaGetErrorString(e));
    return Status();
  }
  const int64_t n_tiles = (g.n.count + kTile - 1) / kTile, m_tiles = (g.m.count + kTile - 1) / kTile;
  if (n_tiles > INT32_MAX) return ctx.error("too many columns for the GEMM path", ErrorCode::kUnsupported);
  dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(std::min<int64_t>(m_tiles, 65535)),
            static_cast<unsigned>(std::min<int64_t>(g.batch.count, 65535)));
  dim3 block(kThreads, kThreads);
  KILN_CUDA_DISPATCH_FLOAT(y.dtype(), T, {
    einsum_gemm_kernel<T><<<grid, block, 0, cuda::stream_of(ctx)>>>(g, ctx.input(0).data_as<T>(),
                                                                    ctx.input(1).data_as<T>(), y.data_as<T>());
  });
  return cuda::launch_status(ctx, "einsum_gemm");
}

Status einsum_cuda(KernelContext& ctx) {
  std::vector<Dims> dims;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) dims.push_back(ctx.input(i).dims());
  KILN_ASSIGN_OR_RETURN(einsum::Plan plan, einsum::make_plan(ctx.node(), dims));
  if (ctx.num_inputs() > static_cast<size_t>(kMaxOperands) || plan.loop_dims.size() > static_cast<size_t>(kMaxLoops))
    return ctx.error("too many operands or labels for the CUDA kernel", ErrorCode::kUnsupported);
  if (ctx.output(0).numel() == 0) return Status();
  const DataType dt = ctx.output(0).dtype();
  const bool is_float = dt == DataType::kFloat32 || dt == DataType::kFloat16 || dt == DataType::kBFloat16;
  GemmGroups g;
  if (is_float && ctx.num_inputs() == 2 && plan_gemm(plan, dims[0], dims[1], g)) return run_gemm(ctx, g);
  return run_loops(ctx, plan);
}

bool einsum_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.empty() || in.size() > static_cast<size_t>(kMaxOperands)) return false;
  const DataType dt = in[0].dtype;
  if (dt != DataType::kFloat32 && dt != DataType::kFloat16 && dt != DataType::kBFloat16 && dt != DataType::kInt32 &&
      dt != DataType::kInt64)
    return false;
  std::vector<int64_t> ranks;
  for (const TensorType& t : in) {
    if (t.dtype != dt || !t.shape) return false;
    ranks.push_back(static_cast<int64_t>(t.shape->size()));
  }
  auto p = einsum::parse_equation(node);
  if (!p.ok()) return false;
  auto labels = einsum::resolve_labels(node, *p, ranks);
  if (!labels.ok()) return false;
  std::vector<int> ids;
  for (const auto& v : labels->inputs) ids.insert(ids.end(), v.begin(), v.end());
  std::sort(ids.begin(), ids.end());
  return std::unique(ids.begin(), ids.end()) - ids.begin() <= kMaxLoops;
}

}  // namespace

void add_einsum_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Einsum", FastKernel{"cuda.einsum", einsum_cuda, einsum_applies});
}

}  // namespace kiln::ops
