// CUDA RoiAlign: one thread per output element (roi, channel, bin). The bin
// geometry and bilinear samples come from roi_align.h, as in the reference, in
// double. Conditions the reference reports as errors (a batch index out of
// range, a non-finite ROI, over 2^20 samples per bin) cannot stop a kernel:
// those bins get NaN.
#include "backends/cuda/kernel_util.cuh"
#include "ops/misc/roi_align.h"

namespace kiln::ops {
namespace {

// std::max's rule (NaN in the first argument wins), as the reference uses.
__device__ __forceinline__ double max_like_std(double a, double b) { return a < b ? b : a; }

template <class T, class R, class I>
__global__ void roi_align_kernel(RoiSpec spec, const T* __restrict__ x, const R* __restrict__ rois,
                                 const I* __restrict__ batch_index, T* __restrict__ y, int64_t N, int64_t C, int64_t H,
                                 int64_t W, int64_t total) {
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pw = idx % spec.out_w;
    int64_t rest = idx / spec.out_w;
    const int64_t ph = rest % spec.out_h;
    rest /= spec.out_h;
    const int64_t c = rest % C;
    const int64_t n = rest / C;
    const int64_t b = static_cast<int64_t>(batch_index[n]);
    if (b < 0 || b >= N) {
      y[idx] = cuda::from_f<T>(__int_as_float(0x7fc00000));
      continue;
    }
    if (H == 0 || W == 0) {  // nothing to sample: every bin is empty
      y[idx] = cuda::from_f<T>(0.f);
      continue;
    }
    const R* r = rois + n * 4;
    const RoiBox box = roi_box(spec, cuda::to_f(r[0]), cuda::to_f(r[1]), cuda::to_f(r[2]), cuda::to_f(r[3]));
    if (!box.finite || box.too_many) {
      y[idx] = cuda::from_f<T>(__int_as_float(0x7fc00000));
      continue;
    }
    const T* plane = x + (b * C + c) * H * W;
    double v = 0;
    bool first = true;
    for (int64_t iy = 0; iy < box.grid_h; ++iy) {
      const double yy = box.start_h + ph * box.bin_h + (iy + 0.5) * box.bin_h / static_cast<double>(box.grid_h);
      for (int64_t ix = 0; ix < box.grid_w; ++ix) {
        const double xx = box.start_w + pw * box.bin_w + (ix + 0.5) * box.bin_w / static_cast<double>(box.grid_w);
        const RoiSample s = roi_sample(yy, xx, H, W);
        double p[4];
        for (int q = 0; q < 4; ++q) p[q] = s.w[q] * static_cast<double>(cuda::to_f(plane[s.pos[q]]));
        if (spec.max_mode) {
          // The largest weighted corner, as the reference does.
          const double m = max_like_std(max_like_std(p[0], p[1]), max_like_std(p[2], p[3]));
          v = first ? m : max_like_std(v, m);
          first = false;
        } else {
          v += p[0] + p[1] + p[2] + p[3];
        }
      }
    }
    if (!spec.max_mode) {
      const int64_t count = box.grid_h * box.grid_w;
      v /= static_cast<double>(count > 1 ? count : 1);
    }
    y[idx] = cuda::from_f<T>(static_cast<float>(v));
  }
}

Status roi_align_cuda(KernelContext& ctx) {
  KILN_ASSIGN_OR_RETURN(RoiSpec spec, parse_roi(ctx.node()));
  const Tensor& x = ctx.input(0);
  const Tensor& rois = ctx.input(1);
  const Tensor& bidx = ctx.input(2);
  Tensor& y = ctx.output(0);
  if (x.rank() != 4 || rois.rank() != 2 || rois.dim(1) != 4 || bidx.rank() != 1 || bidx.dim(0) != rois.dim(0))
    return ctx.error("expected X [N,C,H,W], rois [R,4] and batch_indices [R]");
  const int64_t total = y.numel();
  if (total == 0) return Status();
  const bool idx64 = bidx.dtype() == DataType::kInt64;
  if (!idx64 && bidx.dtype() != DataType::kInt32) return ctx.error("batch_indices must be int32 or int64");
  auto launch = [&](auto* xp, auto* rp, auto* ip, auto* yp) {
    roi_align_kernel<<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
        spec, xp, rp, ip, yp, x.dim(0), x.dim(1), x.dim(2), x.dim(3), total);
  };
  KILN_CUDA_DISPATCH_FLOAT(x.dtype(), T, {
    KILN_CUDA_DISPATCH_FLOAT(rois.dtype(), R, {
      if (idx64)
        launch(x.data_as<T>(), rois.data_as<R>(), bidx.data_as<int64_t>(), y.data_as<T>());
      else
        launch(x.data_as<T>(), rois.data_as<R>(), bidx.data_as<int32_t>(), y.data_as<T>());
    });
  });
  return cuda::launch_status(ctx, "roi_align");
}

bool is_float(DataType t) { return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16; }

bool roi_align_applies(const ir::Node& node, const std::vector<TensorType>& in) {
  if (in.size() < 3 || !is_float(in[0].dtype) || !is_float(in[1].dtype)) return false;
  if (in[2].dtype != DataType::kInt64 && in[2].dtype != DataType::kInt32) return false;
  return parse_roi(node).ok();
}

}  // namespace

void add_roi_align_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "RoiAlign", FastKernel{"cuda.roi_align", roi_align_cuda, roi_align_applies});
}

}  // namespace kiln::ops
