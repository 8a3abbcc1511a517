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

// Dropout copies only in inference: training_mode absent or a constant false
// (a training-mode Dropout stays on the CPU, which refuses it clearly).
bool applies_dropout(const ir::Node& node, const std::vector<TensorType>&) {
  // Before opset 10 the mask has the data's type; the kernel writes a bool mask.
  if (node.opset < 10 && node.outputs.size() > 1 && node.outputs[1]) return false;
  if (node.opset < 12) return !node.attrs.has("is_test") || node.attrs.get_int("is_test", 1) != 0;
  const ir::Value* t = node.input(2);
  if (!t) return true;
  return t->initializer && t->initializer->numel() == 1 && t->initializer->get_as_double(0) == 0;
}

}  // namespace

void register_identity_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Identity", FastKernel{"cuda.copy", copy_cuda, nullptr});
  (void)r.add_cuda_kernel("", "Dropout", FastKernel{"cuda.copy", copy_cuda, applies_dropout});
}

}  // namespace kiln::ops
