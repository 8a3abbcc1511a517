// CUDA kernels of the generate family: ConstantOfShape (a fill), Range (start
// and delta read on the device; the count is in the output's dims), and
// DepthToSpace / SpaceToDepth (6-D permutes of the same bytes).
#include <algorithm>
#include <type_traits>

#include "ops/common.h"
#include "ops/reshape/movement_cuda.cuh"

namespace kiln::ops {
namespace {

Status constant_of_shape_cuda(KernelContext& ctx) {
  Tensor& y = ctx.output(0);
  Tensor value = Tensor::zeros(DataType::kFloat32, {});
  if (ctx.attrs().has("value")) {
    const Tensor* t = ctx.attrs().get_tensor("value");
    if (!t || t->numel() != 1) return ctx.error("value must be a one-element tensor");
    value = *t;
  }
  if (value.dtype() != y.dtype()) return ctx.error("output dtype does not match the value", ErrorCode::kInternal);
  if (!cuda::movement::fill(y.data(), y.numel(), dtype_size(y.dtype()), value.data(), cuda::stream_of(ctx)))
    return ctx.error("no CUDA fill for this dtype", ErrorCode::kUnsupported);
  return cuda::launch_status(ctx, "fill");
}

bool constant_of_shape_applies(const ir::Node& n, const std::vector<TensorType>&) {
  if (!n.attrs.has("value")) return true;
  const Tensor* t = n.attrs.get_tensor("value");
  return t && t->numel() == 1 && cuda::movement::movable_dtype(t->dtype());
}

// Floating ranges are computed in double and rounded once, as range.cc does.
template <typename T>
__global__ void range_float_kernel(const T* __restrict__ start, const T* __restrict__ delta, T* __restrict__ y,
                                   int64_t n) {
  double s = static_cast<double>(cuda::to_f(*start)), d = static_cast<double>(cuda::to_f(*delta));
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = cuda::from_f<T>(static_cast<float>(s + static_cast<double>(i) * d));
}

__global__ void range_double_kernel(const double* __restrict__ start, const double* __restrict__ delta,
                                    double* __restrict__ y, int64_t n) {
  double s = *start, d = *delta;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = s + static_cast<double>(i) * d;
}

// Every value lies between start and limit, so it fits T; wrapping 64-bit
// arithmetic gives the same low bits as the reference's 128-bit product.
template <typename T>
__global__ void range_int_kernel(const T* __restrict__ start, const T* __restrict__ delta, T* __restrict__ y,
                                 int64_t n) {
  auto s = static_cast<uint64_t>(static_cast<int64_t>(*start)), d = static_cast<uint64_t>(static_cast<int64_t>(*delta));
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = static_cast<T>(s + static_cast<uint64_t>(i) * d);
}

Status range_cuda(KernelContext& ctx) {
  const Tensor &s = ctx.input(0), &d = ctx.input(2);
  Tensor& y = ctx.output(0);
  if (s.numel() != 1 || d.numel() != 1 || ctx.input(1).numel() != 1)
    return ctx.error("start, limit and delta must be scalars");
  if (y.dtype() != s.dtype() || d.dtype() != s.dtype()) return ctx.error("start, limit and delta must share a dtype");
  int64_t n = y.numel();
  if (n == 0) return Status();
  unsigned grid = cuda::grid_for(n);
  cudaStream_t st = cuda::stream_of(ctx);
  switch (s.dtype()) {
    case DataType::kFloat32:
      range_float_kernel<float>
          <<<grid, cuda::kBlock, 0, st>>>(s.data_as<float>(), d.data_as<float>(), y.data_as<float>(), n);
      break;
    case DataType::kFloat16:
      range_float_kernel<__half>
          <<<grid, cuda::kBlock, 0, st>>>(s.data_as<__half>(), d.data_as<__half>(), y.data_as<__half>(), n);
      break;
    case DataType::kBFloat16:
      range_float_kernel<__nv_bfloat16><<<grid, cuda::kBlock, 0, st>>>(
          s.data_as<__nv_bfloat16>(), d.data_as<__nv_bfloat16>(), y.data_as<__nv_bfloat16>(), n);
      break;
    case DataType::kFloat64:
      range_double_kernel<<<grid, cuda::kBlock, 0, st>>>(s.data_as<double>(), d.data_as<double>(), y.data_as<double>(),
                                                         n);
      break;
    case DataType::kInt16:
      range_int_kernel<int16_t>
          <<<grid, cuda::kBlock, 0, st>>>(s.data_as<int16_t>(), d.data_as<int16_t>(), y.data_as<int16_t>(), n);
      break;
    case DataType::kInt32:
      range_int_kernel<int32_t>
          <<<grid, cuda::kBlock, 0, st>>>(s.data_as<int32_t>(), d.data_as<int32_t>(), y.data_as<int32_t>(), n);
      break;
    case DataType::kInt64:
      range_int_kernel<int64_t>
          <<<grid, cuda::kBlock, 0, st>>>(s.data_as<int64_t>(), d.data_as<int64_t>(), y.data_as<int64_t>(), n);
      break;
    default:
      return ctx.error(std::string("no CUDA Range for dtype ") + dtype_name(s.dtype()), ErrorCode::kUnsupported);
  }
  return cuda::launch_status(ctx, "range");
}

bool range_applies(const ir::Node&, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  switch (in[0].dtype) {
    case DataType::kFloat32:
    case DataType::kFloat16:
    case DataType::kBFloat16:
    case DataType::kFloat64:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
      return true;
    default:
      return false;
  }
}

Result<std::pair<int64_t, bool>> block_and_mode(const KernelContext& ctx) {
  if (!ctx.attrs().has("blocksize")) return ctx.error("missing the blocksize attribute");
  int64_t b = ctx.attrs().get_int("blocksize", 0);
  if (b < 1 || b > (int64_t{1} << 16)) return ctx.error("blocksize is invalid");
  std::string m = ctx.attrs().get_string("mode", "DCR");
  if (m != "DCR" && m != "CRD") return ctx.error("unknown mode '" + m + "'");
  return std::make_pair(b, m == "CRD");
}

// Both ops are the ONNX spec's reshape-transpose-reshape, so the 6-D permutes
// below are the ones space_depth.cc uses.
Status depth_to_space_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(auto bm, block_and_mode(ctx));
  int64_t b = bm.first;
  if (x.rank() != 4 || x.dim(1) % (b * b) != 0) return ctx.error("input must be NCHW with C divisible by blocksize^2");
  int64_t n = x.dim(0), c = x.dim(1) / (b * b), h = x.dim(2), w = x.dim(3);
  if (bm.second)
    return cuda::movement::permute(ctx, x.data(), y.data(), {n, c, b, b, h, w}, {0, 1, 4, 2, 5, 3},
                                   dtype_size(x.dtype()));
  return cuda::movement::permute(ctx, x.data(), y.data(), {n, b, b, c, h, w}, {0, 3, 4, 1, 5, 2},
                                 dtype_size(x.dtype()));
}

Status space_to_depth_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  KILN_ASSIGN_OR_RETURN(auto bm, block_and_mode(ctx));
  int64_t b = bm.first;
  if (x.rank() != 4 || x.dim(2) % b != 0 || x.dim(3) % b != 0)
    return ctx.error("input must be NCHW with H and W divisible by blocksize");
  int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2) / b, w = x.dim(3) / b;
  Dims x6 = {n, c, h, b, w, b};
  if (bm.second) return cuda::movement::permute(ctx, x.data(), y.data(), x6, {0, 1, 3, 5, 2, 4}, dtype_size(x.dtype()));
  return cuda::movement::permute(ctx, x.data(), y.data(), x6, {0, 3, 5, 1, 2, 4}, dtype_size(x.dtype()));
}

// kiln SpaceToDepthNhwc (space_depth.cc), the general path (the rows kernel below takes the
// stem's 4 channels): one thread per output pixel, which gathers its 2x2 block of every input
// channel and writes 4 * channels values (16-byte stores when they fill them). Same types move
// bit patterns (U); an FP16/BF16 engine's stem converts its FP32 input on the way (`to`).
template <typename Tin, typename Tout>
__device__ __forceinline__ Tout convert_elem(Tin v) {
  if constexpr (std::is_same<Tin, Tout>::value) {
    return v;
  } else {
    return cuda::from_f<Tout>(cuda::to_f(v));
  }
}

template <typename Tin, typename Tout, int CP>
__global__ void space_to_depth_nhwc_kernel(const Tin* __restrict__ x, Tout* __restrict__ y, int c, int h, int w, int bh,
                                           int bw, int t, int l, int cp_rt, unsigned pixels) {
  const int cp = CP > 0 ? CP : cp_rt;
  const Tout zero = convert_elem<Tin, Tout>(Tin(0));
  for (unsigned pix = blockIdx.x * blockDim.x + threadIdx.x; pix < pixels; pix += gridDim.x * blockDim.x) {
    const unsigned j = pix % bw, rest = pix / bw, i = rest % bh, b = rest / bh;
    Tout* out = y + static_cast<size_t>(pix) * 4 * cp;
    alignas(16) Tout v[CP > 0 ? 4 * CP : 1];
    for (int pq = 0; pq < 4; ++pq) {
      const int hh = 2 * static_cast<int>(i) + (pq >> 1) - t, ww = 2 * static_cast<int>(j) + (pq & 1) - l;
      const bool in = hh >= 0 && hh < h && ww >= 0 && ww < w;
      for (int ch = 0; ch < cp; ++ch) {
        const Tout val =
            in && ch < c ? convert_elem<Tin, Tout>(x[((static_cast<size_t>(b) * c + ch) * h + hh) * w + ww]) : zero;
        if constexpr (CP > 0) {
          v[pq * CP + ch] = val;
        } else {
          out[pq * cp + ch] = val;
        }
      }
    }
    if constexpr (CP > 0) {
      static_assert((4 * CP * sizeof(Tout)) % 16 == 0, "whole 16-byte stores");
#pragma unroll
      for (int k = 0; k < static_cast<int>(4 * CP * sizeof(Tout) / 16); ++k)
        reinterpret_cast<uint4*>(out)[k] = reinterpret_cast<const uint4*>(v)[k];
    }
  }
}

// The stem's fast path (4 channels; the half of an output pixel that one input row gives is
// whole 16-byte stores): a block takes `rows` output rows of one image. Its threads first copy
// the 2 * rows input rows of every channel into shared memory as padded rows (zeros in the
// pads), consecutive threads reading consecutive elements (16-byte loads where rows are 16-byte
// aligned); then each writes 16 consecutive output bytes of the strip (contiguous in y),
// gathered from those rows. At ResNet-50 bs256's stem ([256, 3, 224, 224] fp32 -> [256, 115,
// 115, 16] fp16; ~90 us of bytes at ~2.9 TB/s, ~64 with fp16 in) the per-pixel kernel above, with
// its scattered 2-4 byte loads, took 104.9 us and this one 92.9 (ncu, bench/RESULTS.md session
// 24, run 3).
template <typename Tin, typename Tout, int CP>
__global__ void space_to_depth_nhwc_rows_kernel(const Tin* __restrict__ x, Tout* __restrict__ y, int c, int h, int w,
                                                int bh, int bw, int t, int l, int rows, bool vec) {
  constexpr int kIn = static_cast<int>(16 / sizeof(Tin));    // input elements a 16-byte load
  constexpr int kOut = static_cast<int>(16 / sizeof(Tout));  // output elements a 16-byte store
  static_assert((2 * CP * sizeof(Tout)) % 16 == 0, "each half of a pixel is whole 16-byte stores");
  extern __shared__ __align__(16) unsigned char s2d_smem[];
  Tout* tile = reinterpret_cast<Tout*>(s2d_smem);  // [c][2 * rows][2 * bw]: padded input rows
  const int strips = (bh + rows - 1) / rows;
  const int b = static_cast<int>(blockIdx.x) / strips, i0 = (static_cast<int>(blockIdx.x) % strips) * rows;
  const int out_rows = min(rows, bh - i0), in_rows = 2 * out_rows;
  const int pw = 2 * bw, pads = pw - w;  // padded width, left + right pad columns
  const Tout zero = convert_elem<Tin, Tout>(Tin(0));
  const int per_row = vec ? w / kIn : w;
  for (int u = static_cast<int>(threadIdx.x); u < c * in_rows * per_row; u += static_cast<int>(blockDim.x)) {
    const int r = u / per_row, k = u - r * per_row;
    const int ch = r / in_rows, lr = r - ch * in_rows, hh = 2 * i0 + lr - t;
    const bool in = hh >= 0 && hh < h;
    const Tin* src = x + ((static_cast<size_t>(b) * c + ch) * h + (in ? hh : 0)) * w;
    Tout* dst = tile + (ch * 2 * rows + lr) * pw + l;
    if (vec) {
      cuda::Vec<Tin, kIn> v;
      if (in) v = reinterpret_cast<const cuda::Vec<Tin, kIn>*>(src)[k];
#pragma unroll
      for (int e = 0; e < kIn; ++e) dst[k * kIn + e] = in ? convert_elem<Tin, Tout>(v.v[e]) : zero;
    } else {
      dst[k] = in ? convert_elem<Tin, Tout>(src[k]) : zero;
    }
  }
  for (int u = static_cast<int>(threadIdx.x); u < c * in_rows * pads; u += static_cast<int>(blockDim.x)) {
    const int r = u / pads, k = u - r * pads;
    const int ch = r / in_rows, lr = r - ch * in_rows;
    tile[(ch * 2 * rows + lr) * pw + (k < l ? k : w + k)] = zero;
  }
  __syncthreads();
  // A store's kOut elements lie in one half (p) of one pixel: element e of that half is
  // channel e % CP of input column 2j + e / CP.
  auto* out = reinterpret_cast<cuda::Vec<Tout, kOut>*>(y + (static_cast<size_t>(b) * bh + i0) * bw * 4 * CP);
  const int units = out_rows * bw * (4 * CP / kOut);
  for (int k = static_cast<int>(threadIdx.x); k < units; k += static_cast<int>(blockDim.x)) {
    const int pix = k / (4 * CP / kOut), half = k - pix * (4 * CP / kOut);
    const int p = half / (2 * CP / kOut), e0 = (half - p * (2 * CP / kOut)) * kOut;
    const int rl = pix / bw, j = pix - rl * bw;
    const Tout* src = tile + (2 * rl + p) * pw + 2 * j;
    cuda::Vec<Tout, kOut> v;
#pragma unroll
    for (int e = 0; e < kOut; ++e) {
      const int q = (e0 + e) / CP, ch = (e0 + e) % CP;
      v.v[e] = ch < c ? src[ch * 2 * rows * pw + q] : zero;
    }
    out[k] = v;
  }
}

// Input bytes a block of the rows kernel reads at least (rows are added up to it: ~2.6 16-byte
// loads a thread at the fp32 stem), and the shared memory it may take without an opt-in.
constexpr int64_t kS2dBlockBytes = 8 * 1024;
constexpr int64_t kS2dSmem = 48 * 1024;
constexpr int kS2dMaxRows = 8;

template <typename Tin, typename Tout>
void launch_space_to_depth_nhwc(const Tensor& x, Tensor& y, int64_t cp, int t, int l, cudaStream_t stream) {
  const int64_t pixels = y.numel() / (4 * cp);
  const int c = static_cast<int>(x.dim(1)), h = static_cast<int>(x.dim(2)), w = static_cast<int>(x.dim(3));
  const int bh = static_cast<int>(y.dim(1)), bw = static_cast<int>(y.dim(2));
  const auto n = static_cast<unsigned>(pixels);
  const auto* xp = static_cast<const Tin*>(x.data());
  auto* yp = static_cast<Tout*>(y.data());
  if constexpr ((8 * sizeof(Tout)) % 16 == 0) {
    const int64_t tile_row = int64_t{c} * 2 * 2 * bw * static_cast<int64_t>(sizeof(Tout));  // tile bytes an output row
    if (cp == 4 && cuda::aligned(y.data(), 16) && 2 * bw >= w + l && tile_row <= kS2dSmem) {
      const int64_t in_row = std::max<int64_t>(1, int64_t{c} * 2 * w * static_cast<int64_t>(sizeof(Tin)));
      int64_t rows = std::min<int64_t>({(kS2dBlockBytes + in_row - 1) / in_row, kS2dMaxRows, bh});
      if (tile_row > 0) rows = std::min(rows, kS2dSmem / tile_row);
      const int64_t blocks = y.dim(0) * ((bh + rows - 1) / rows);
      const bool vec = w % static_cast<int>(16 / sizeof(Tin)) == 0 && cuda::aligned(x.data(), 16);
      space_to_depth_nhwc_rows_kernel<Tin, Tout, 4>
          <<<static_cast<unsigned>(blocks), cuda::kBlock, static_cast<size_t>(rows * tile_row), stream>>>(
              xp, yp, c, h, w, bh, bw, t, l, static_cast<int>(rows), vec);
      return;
    }
  }
  if (cp == 4 && reinterpret_cast<uintptr_t>(y.data()) % 16 == 0)
    space_to_depth_nhwc_kernel<Tin, Tout, 4>
        <<<cuda::grid_for(pixels), cuda::kBlock, 0, stream>>>(xp, yp, c, h, w, bh, bw, t, l, 4, n);
  else
    space_to_depth_nhwc_kernel<Tin, Tout, 0>
        <<<cuda::grid_for(pixels), cuda::kBlock, 0, stream>>>(xp, yp, c, h, w, bh, bw, t, l, static_cast<int>(cp), n);
}

Status space_to_depth_nhwc_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const std::vector<int64_t> pads = ctx.attrs().get_ints("pads", {0, 0, 0, 0});
  const int64_t cp = ctx.attrs().get_int("channels", 0);
  if (x.rank() != 4 || y.rank() != 4 || pads.size() != 4 || cp < x.dim(1) || y.dim(3) != 4 * cp)
    return ctx.error("input must be NCHW with at most `channels` channels");
  if (y.numel() == 0) return Status();
  if (y.numel() >= (int64_t{1} << 31) || x.numel() >= (int64_t{1} << 31))
    return ctx.error("tensors of 2^31 elements and more are not supported", ErrorCode::kUnsupported);
  const int t = static_cast<int>(pads[0]), l = static_cast<int>(pads[1]);
  cudaStream_t stream = cuda::stream_of(ctx);
  if (x.dtype() == y.dtype()) {
    KILN_CUDA_DISPATCH_BYTES(x.dtype(), U, { launch_space_to_depth_nhwc<U, U>(x, y, cp, t, l, stream); });
  } else if (x.dtype() == DataType::kFloat32 && y.dtype() == DataType::kFloat16) {
    launch_space_to_depth_nhwc<float, __half>(x, y, cp, t, l, stream);
  } else if (x.dtype() == DataType::kFloat32 && y.dtype() == DataType::kBFloat16) {
    launch_space_to_depth_nhwc<float, __nv_bfloat16>(x, y, cp, t, l, stream);
  } else {
    return ctx.error(std::string("no CUDA conversion from ") + dtype_name(x.dtype()) + " to " + dtype_name(y.dtype()),
                     ErrorCode::kUnsupported);
  }
  return cuda::launch_status(ctx, "space_to_depth_nhwc");
}

// Same dtypes, or FP32 in and FP16/BF16 out (`to`).
bool space_to_depth_nhwc_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  const DataType from = in[0].dtype;
  const DataType to = n.attrs.has("to") ? static_cast<DataType>(n.attrs.get_int("to", 0)) : from;
  if (to == from) return cuda::movement::movable_dtype(from);
  return from == DataType::kFloat32 && (to == DataType::kFloat16 || to == DataType::kBFloat16);
}

bool movable_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && cuda::movement::movable_dtype(in[0].dtype);
}

}  // namespace

void register_generate_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "ConstantOfShape",
                          FastKernel{"cuda.fill", constant_of_shape_cuda, constant_of_shape_applies});
  (void)r.add_cuda_kernel("", "Range", FastKernel{"cuda.range", range_cuda, range_applies});
  (void)r.add_cuda_kernel("", "DepthToSpace", FastKernel{"cuda.depth_to_space", depth_to_space_cuda, movable_applies});
  (void)r.add_cuda_kernel("", "SpaceToDepth", FastKernel{"cuda.space_to_depth", space_to_depth_cuda, movable_applies});
  (void)r.add_cuda_kernel(
      "kiln", "SpaceToDepthNhwc",
      FastKernel{"cuda.space_to_depth_nhwc", space_to_depth_nhwc_cuda, space_to_depth_nhwc_applies});
}

}  // namespace kiln::ops
