// CUDA kernels of the reshape family: Reshape, Flatten, Squeeze and Unsqueeze
// keep the bytes (a device copy, skipped when the executor aliases the output),
// Transpose permutes them. Shape and Size are computed on the host by the executor.
#include "ops/common.h"
#include "ops/reshape/movement_cuda.cuh"

namespace kiln::ops {
namespace {

Status copy_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  if (y.nbytes() != x.nbytes()) return ctx.error("output size does not match the input", ErrorCode::kInternal);
  if (y.data() != x.data() && x.nbytes() > 0)
    cudaMemcpyAsync(y.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, cuda::stream_of(ctx));
  return cuda::launch_status(ctx, "copy");
}

bool copy_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && cuda::movement::movable_dtype(in[0].dtype);
}

bool transpose_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  return copy_applies(n, in) && (!in[0].shape || in[0].shape->size() <= static_cast<size_t>(cuda::kMaxRank));
}

Status transpose_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  size_t r = x.dims().size();
  std::vector<int64_t> perm;
  if (const ir::Attribute* a = ctx.attrs().find("perm")) {
    perm = a->ints;
  } else {
    for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
  }
  if (perm.size() != r) return ctx.error("perm does not match the input rank");
  std::vector<bool> seen(r, false);
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(r) || seen[static_cast<size_t>(p)])
      return ctx.error("perm is not a permutation");
    seen[static_cast<size_t>(p)] = true;
  }
  for (size_t j = 0; j < r; ++j)
    if (y.dims()[j] != x.dims()[static_cast<size_t>(perm[j])])
      return ctx.error("output dims do not match the permutation", ErrorCode::kInternal);
  return cuda::movement::permute(ctx, x.data(), y.data(), x.dims(), perm, dtype_size(x.dtype()));
}

}  // namespace

void register_reshape_cuda_kernels(OpRegistry& r) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
    (void)r.add_cuda_kernel("", op, FastKernel{"cuda.copy", copy_cuda, copy_applies});
  (void)r.add_cuda_kernel("", "Transpose", FastKernel{"cuda.transpose", transpose_cuda, transpose_applies});
}

}  // namespace kiln::ops
