// Registers the misc family's CUDA kernels: Einsum, RoiAlign, Det.
// (NonMaxSuppression's output size depends on the data; GridSample has no CUDA kernel yet.)
#include "ops/op.h"

namespace kiln::ops {

void add_einsum_cuda_kernels(OpRegistry& r);
void add_roi_align_cuda_kernels(OpRegistry& r);
void add_det_cuda_kernels(OpRegistry& r);

void register_misc_cuda_kernels(OpRegistry& r) {
  add_einsum_cuda_kernels(r);
  add_roi_align_cuda_kernels(r);
  add_det_cuda_kernels(r);
}

}  // namespace kiln::ops
