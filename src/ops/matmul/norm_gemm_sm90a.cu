// CUTLASS's Hopper GEMMs with the epilogues of norm_gemm.h: row sums beside a residual add, and a
// LayerNorm folded into the next GEMM. Epilogue visitor trees (CUTLASS 3's EVT) on the TMA
// warp-specialized ping-pong kernel; everything here is CUTLASS's but the trees and the launch.
//
// Launch: Kernel::to_underlying_arguments then GemmUniversalAdapter::run, not the adapter's
// initialize(): that would fill the row-sum buffers through the driver's cuMemsetD32Async, which
// kiln does not link (libcuda is loaded at run time); the caller zeroes them instead (finish_stats
// does, after reading). The kernels need no workspace (checked per call).
//
// Compiled only with -DNDEBUG (CMakeLists.txt): CUTLASS's device asserts are calls inside the
// main loop, and ptxas then serializes every wgmma (warning C7510), 5-12% slower (session 30).
#include <cuda_runtime.h>

#include "backends/cuda/hopper.cuh"
#include "ops/matmul/norm_gemm.h"

#if defined(KILN_HAVE_CUTLASS) && KILN_HAVE_CUTLASS
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/thread/activation.h>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cute/tensor.hpp>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/util/packed_stride.hpp>
#endif

namespace kiln::ops::matmul::norm_gemm {

// Row statistics from the sums (one thread a row, grid-stride).
__global__ void finish_stats_kernel(int64_t m, float inv_n, float eps, float* __restrict__ sums,
                                    float* __restrict__ sumsq, float* __restrict__ rstd, float* __restrict__ nmr) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < m; r += int64_t{gridDim.x} * blockDim.x) {
    const float mean = sums[r] * inv_n, var = fmaxf(sumsq[r] * inv_n - mean * mean, 0.f), rs = rsqrtf(var + eps);
    rstd[r] = rs, nmr[r] = -mean * rs;
    sums[r] = 0.f, sumsq[r] = 0.f;
  }
}

int finish_stats(int64_t m, int64_t n, float eps, float* sums, float* sumsq, float* rstd, float* nmr, void* stream) {
  if (m <= 0 || n <= 0) return static_cast<int>(cudaErrorInvalidValue);
  const int64_t blocks = (m + 255) / 256;
  finish_stats_kernel<<<static_cast<unsigned>(blocks < 1024 ? blocks : 1024), 256, 0,
                        static_cast<cudaStream_t>(stream)>>>(m, 1.f / static_cast<float>(n), eps, sums, sumsq, rstd,
                                                             nmr);
  return static_cast<int>(cudaGetLastError());
}

#if defined(KILN_HAVE_CUTLASS) && KILN_HAVE_CUTLASS

namespace {

using namespace cute;
namespace fu = cutlass::epilogue::fusion;
using Half = cutlass::half_t;
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;
using Tile = Shape<_128, _128, _64>;

template <class T>
struct Square {
  CUTLASS_HOST_DEVICE T operator()(T const& x) const { return cutlass::multiplies<T>{}(x, x); }
};
template <class T>
using Identity = cutlass::epilogue::thread::Identity<T>;
template <class T>
using GeluTanh = cutlass::epilogue::thread::GELU_taylor<T>;

using ColVec = fu::Sm90ColBroadcast<0, Tile, float, float, Stride<_1, _0, int64_t>>;  // one value a row
using RowVec = fu::Sm90RowBroadcast<0, Tile, float, float, Stride<_0, _1, int64_t>>;  // one value a column
using Fma = fu::Sm90Compute<cutlass::homogeneous_multiply_add, float, float, kRound>;
using Plus = fu::Sm90Compute<cutlass::plus, float, float, kRound>;

// act(rstd * acc + (nmr * s + b'))
template <template <class> class Act>
using FoldTree = fu::Sm90EVT<fu::Sm90Compute<Act, Half, float, kRound>,
                             fu::Sm90EVT<Fma, ColVec, fu::Sm90AccFetch, fu::Sm90EVT<Fma, ColVec, RowVec, RowVec>>>;

// Z = acc + bias + C, written as D; row sums of Z and Z^2 (atomics into fp32 vectors).
using RowSum = fu::Sm90ColReduction<cutlass::plus, cutlass::plus, cutlass::atomic_add, 0, Tile, float, float, kRound>;
using SumsTree = fu::Sm90SplitTreeVisitor<
    fu::Sm90EVT<Plus, fu::Sm90SrcFetch<Half>, fu::Sm90EVT<Plus, fu::Sm90AccFetch, RowVec>>,
    fu::Sm90EVT<fu::Sm90Compute<Identity, Half, float, kRound>, fu::Sm90EVT<RowSum, fu::Sm90SplitTreeFetch>>,
    fu::Sm90EVT<RowSum, fu::Sm90EVT<fu::Sm90Compute<Square, float, float, kRound>, fu::Sm90SplitTreeFetch>>>;

// A: X [m, k] row-major; B: W [n, k] row-major (CUTLASS's column-major B, K-major like X); D row-major.
template <class Cluster, class Tree, class ElementC>
struct Gemm {
  using Epi = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, ElementC, cutlass::layout::RowMajor, 8, Half,
      cutlass::layout::RowMajor, 8, cutlass::epilogue::TmaWarpSpecialized, Tree>::CollectiveOp;
  using Main = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Half, cutlass::layout::RowMajor, 8, Half,
      cutlass::layout::ColumnMajor, 8, float, Tile, Cluster,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epi::SharedStorage))>,
      cutlass::gemm::KernelTmaWarpSpecializedPingpong>::CollectiveOp;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Main, Epi>;
  using Adapter = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  // Runs `args` (its epilogue's tree arguments already set) on `stream`.
  static cudaError_t run(typename Adapter::Arguments& args, cudaStream_t stream) {
    if (Adapter::can_implement(args) != cutlass::Status::kSuccess) return cudaErrorNotSupported;
    if (Adapter::get_workspace_size(args) != 0) return cudaErrorNotSupported;  // see the file comment
    static const cudaError_t smem = cudaFuncSetAttribute(
        cutlass::device_kernel<Kernel>, cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SharedStorageSize);
    if (smem != cudaSuccess) return smem;
    auto params = Kernel::to_underlying_arguments(args, nullptr);
    if (Adapter::run(params, stream) != cutlass::Status::kSuccess) {
      const cudaError_t e = cudaGetLastError();
      return e != cudaSuccess ? e : cudaErrorLaunchFailure;
    }
    return cudaGetLastError();
  }

  static typename Adapter::Arguments arguments(int64_t m, int64_t n, int64_t k, const void* x, const void* w,
                                               const void* c, void* d) {
    const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
    cutlass::KernelHardwareInfo hw;
    cudaGetDevice(&hw.device_id);
    hw.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(hw.device_id);
    return {
        cutlass::gemm::GemmUniversalMode::kGemm,
        {M, N, K, 1},
        {static_cast<const Half*>(x), cutlass::make_cute_packed_stride(typename Kernel::StrideA{}, make_shape(M, K, 1)),
         static_cast<const Half*>(w),
         cutlass::make_cute_packed_stride(typename Kernel::StrideB{}, make_shape(N, K, 1))},
        {{},
         static_cast<const ElementC*>(c),
         cutlass::make_cute_packed_stride(typename Kernel::StrideC{}, make_shape(M, N, 1)),
         static_cast<Half*>(d),
         cutlass::make_cute_packed_stride(typename Kernel::StrideD{}, make_shape(M, N, 1))},
        hw};
  }
};

using Along_m = Shape<_2, _1, _1>;
using Along_n = Shape<_1, _2, _1>;

template <class Cluster>
cudaError_t run_sums(const ResidualSums& p, cudaStream_t stream) {
  using G = Gemm<Cluster, SumsTree, Half>;
  auto args = G::arguments(p.m, p.n, p.k, p.x, p.w, p.c, p.d);
  // {Z = {C, {acc, bias, +}, +}, sum of squares = {{Z, square}, sumsq}, D = {{Z, sum}, identity}}
  args.epilogue.thread = {{{}, {{}, {p.bias}, {}}, {}}, {{{}, {}}, {p.sumsq}}, {{{}, {p.sums}}, {}}};
  return G::run(args, stream);
}

template <class Cluster, template <class> class Act>
cudaError_t run_folded(const Folded& p, cudaStream_t stream) {
  using G = Gemm<Cluster, FoldTree<Act>, void>;
  auto args = G::arguments(p.m, p.n, p.k, p.x, p.w, nullptr, p.d);
  // {act: {fma: {rstd, acc, {fma: {nmr, s, b}}}}}
  args.epilogue.thread = {{{p.rstd}, {}, {{p.nmr}, {p.s}, {p.b}, {}}, {}}, {}};
  return G::run(args, stream);
}

}  // namespace

bool built() { return true; }
bool runs_here() { return cuda::hopper::current_device_is_sm90(); }

int residual_sums(const ResidualSums& p, int config, void* stream) {
  if (!takes(p.m, p.n, p.k) || !p.x || !p.w || !p.c || !p.d || !p.sums || !p.sumsq || config < 0 || config >= kConfigs)
    return static_cast<int>(cudaErrorInvalidValue);
  const auto s = static_cast<cudaStream_t>(stream);
  return static_cast<int>(config == 0 ? run_sums<Along_m>(p, s) : run_sums<Along_n>(p, s));
}

int folded(const Folded& p, int config, void* stream) {
  if (!takes(p.m, p.n, p.k) || !p.x || !p.w || !p.rstd || !p.nmr || !p.s || !p.b || !p.d || config < 0 ||
      config >= kConfigs)
    return static_cast<int>(cudaErrorInvalidValue);
  const auto s = static_cast<cudaStream_t>(stream);
  cudaError_t e;
  if (p.gelu)
    e = config == 0 ? run_folded<Along_m, GeluTanh>(p, s) : run_folded<Along_n, GeluTanh>(p, s);
  else
    e = config == 0 ? run_folded<Along_m, Identity>(p, s) : run_folded<Along_n, Identity>(p, s);
  return static_cast<int>(e);
}

#else  // built without CUTLASS's headers (cmake/cutlass.cmake)

bool built() { return false; }
bool runs_here() { return false; }
int residual_sums(const ResidualSums&, int, void*) { return static_cast<int>(cudaErrorNotSupported); }
int folded(const Folded&, int, void*) { return static_cast<int>(cudaErrorNotSupported); }

#endif

}  // namespace kiln::ops::matmul::norm_gemm
