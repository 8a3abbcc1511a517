// CUDA kernels of the identity family: Identity (and Dropout in inference) is a
// device-to-device copy; the executor aliases it away where it can.
#include "backends/cuda/kernel_util.cuh"

namespace kiln::ops {
namespace {

Status copy_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.data() != x.data() && x.nbytes() > 0)
    cudaMemcpyAsync(y.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream_of(ctx));
  if (ctx.has_output(1)) {
    // Dropout's mask: all true in inference.
    Tensor& m = ctx.output(1);
    cudaMemsetAsync(m.data(), 1, m.nbytes(), cuda::stream_of(ctx));
  }
  return cuda::launch_status(ctx, "copy");
}

}  // namespace

void register_identity_cuda_kernels(OpRegistry& r) {
  for (const char* op : {"Identity", "Dropout"})
    (void)r.add_cuda_kernel("", op, FastKernel{"cuda.copy", copy_cuda, nullptr});
}

}  // namespace kiln::ops
