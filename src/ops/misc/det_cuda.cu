// CUDA Det for small matrices (n <= 32): one thread per matrix runs the
// reference's LU decomposition with partial pivoting, in double.
#include "backends/cuda/kernel_util.cuh"

namespace kiln::ops {
namespace {

constexpr int64_t kMaxDetN = 32;

template <class T>
__global__ void det_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int64_t count) {
  double a[kMaxDetN * kMaxDetN];
  for (int64_t m = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; m < count;
       m += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* xm = x + m * n * n;
    for (int64_t i = 0; i < n * n; ++i) a[i] = cuda::to_f(xm[i]);
    double det = 1;
    for (int64_t k = 0; k < n; ++k) {
      int64_t piv = k;
      for (int64_t i = k + 1; i < n; ++i)
        if (fabs(a[i * n + k]) > fabs(a[piv * n + k])) piv = i;
      if (a[piv * n + k] == 0) {
        det = 0;
        break;
      }
      if (piv != k) {
        for (int64_t j = 0; j < n; ++j) {
          const double t = a[k * n + j];
          a[k * n + j] = a[piv * n + j];
          a[piv * n + j] = t;
        }
        det = -det;
      }
      const double d = a[k * n + k];
      det *= d;
      for (int64_t i = k + 1; i < n; ++i) {
        const double f = a[i * n + k] / d;
        for (int64_t j = k + 1; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
      }
    }
    y[m] = cuda::from_f<T>(static_cast<float>(det));
  }
}

Status det_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const int64_t r = x.rank();
  if (r < 2 || x.dim(r - 1) != x.dim(r - 2)) return ctx.error("matrices must be square");
  const int64_t n = x.dim(r - 1);
  if (n > kMaxDetN) return ctx.error("matrices above 32 x 32 are not supported", ErrorCode::kUnsupported);
  const int64_t count = y.numel();
  if (count == 0) return Status();
  // Small blocks: each thread keeps its matrix in (local) memory.
  constexpr int kDetBlock = 64;
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    det_kernel<T><<<cuda::grid_for(count, kDetBlock), kDetBlock, 0, cuda::stream_of(ctx)>>>(x.data_as<T>(),
                                                                                            y.data_as<T>(), n, count);
  });
  return cuda::launch_status(ctx, "det");
}

bool det_applies(const ir::Node&, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  const DataType t = in[0].dtype;
  if (t != DataType::kFloat32 && t != DataType::kFloat16 && t != DataType::kBFloat16) return false;
  const auto& s = in[0].shape;
  if (!s || s->size() < 2) return false;
  const Dim& last = s->back();
  return last.known() && last.value <= kMaxDetN;
}

}  // namespace

void add_det_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Det", FastKernel{"cuda.det", det_cuda, det_applies});
}

}  // namespace kiln::ops
