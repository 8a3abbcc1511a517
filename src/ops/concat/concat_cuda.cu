// CUDA kernels of the concat family: Concat (one launch for up to 8 inputs, else a
// strided 2-D copy per input) and Split (a 2-D copy per output slab), Slice (a 2-D copy when one axis is cut with step
// 1 and the later axes are whole), Pad, Expand and Tile (one thread per output element mapping its coordinates back to
// the input). Value inputs (starts, pads, split, ...) are read from their host copies; shapes come from the
// preallocated outputs.
#include <algorithm>
#include <limits>
#include <type_traits>

#include "ops/common.h"
#include "ops/concat/pad_spec.h"
#include "ops/reshape/data_movement.h"
#include "ops/reshape/movement_cuda.cuh"

namespace kiln::ops {
namespace {

using cuda::Indexer;
using cuda::kMaxRank;

bool rank_ok(const TensorType& t) { return !t.shape || t.shape->size() <= static_cast<size_t>(kMaxRank); }

bool movable_applies(const ir::Node&, const std::vector<TensorType>& in) {
  return !in.empty() && cuda::movement::movable_dtype(in[0].dtype) && rank_ok(in[0]);
}

/// Reads an index vector from the host copy of input i (kUnsupported when it is not known).
Result<std::vector<int64_t>> host_ints(const KernelContext& ctx, size_t i, const char* what) {
  const Tensor* t = ctx.host_value(i);
  if (!t) return ctx.error(std::string(what) + " must be known when the engine is built", ErrorCode::kUnsupported);
  return movement::read_indices(ctx.node(), *t, what);
}

// ---------------------------------------------------------------- Concat / Split

// Up to kConcatInputs inputs in one launch (YOLO's C2f concats have 3-4 inputs and
// ran one copy kernel each: at batch 1 those launches cost more than the bytes).
// Each input's slab fills columns [offset, offset + width) of every output row; all
// in units of U.
constexpr int kConcatInputs = 8;
struct ConcatSlabs {
  const void* src[kConcatInputs];
  int64_t width[kConcatInputs];
  int64_t offset[kConcatInputs];
  int n;
};

template <typename U, typename I>
__global__ void concat_rows_kernel(ConcatSlabs p, U* __restrict__ dst, I rows, I row) {
  const I total = rows * row;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const I r = i / row, c = i - r * row;
    int k = 0;
    while (k + 1 < p.n && c >= static_cast<I>(p.offset[k + 1])) ++k;
    const I w = static_cast<I>(p.width[k]);
    dst[i] = static_cast<const U*>(p.src[k])[r * w + (c - static_cast<I>(p.offset[k]))];
  }
}

// One launch for all inputs when there are 2..kConcatInputs non-empty ones; false otherwise.
bool concat_one_launch(KernelContext& ctx, uint8_t* dst, int64_t outer, int64_t out_block,
                       const std::vector<std::pair<const void*, int64_t>>& slabs) {
  if (slabs.size() < 2 || slabs.size() > static_cast<size_t>(kConcatInputs) || outer < 1) return false;
  uint64_t bits = static_cast<uint64_t>(out_block) | reinterpret_cast<uint64_t>(dst);
  for (const auto& [ptr, block] : slabs) bits |= reinterpret_cast<uint64_t>(ptr) | static_cast<uint64_t>(block);
  const int unit = cuda::movement::copy_unit({bits});
  const int64_t row = out_block / unit;
  if (outer * row >= static_cast<int64_t>(INT32_MAX)) return false;  // the per-input copies handle the giants
  ConcatSlabs p{};
  p.n = static_cast<int>(slabs.size());
  int64_t offset = 0;
  for (int k = 0; k < p.n; ++k) {
    p.src[k] = slabs[k].first;
    p.width[k] = slabs[k].second / unit;
    p.offset[k] = offset;
    offset += p.width[k];
  }
  cuda::movement::with_unit(unit, [&](auto tag) {
    using U = decltype(tag);
    concat_rows_kernel<U, uint32_t><<<cuda::grid_for(outer * row), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
        p, reinterpret_cast<U*>(dst), static_cast<uint32_t>(outer), static_cast<uint32_t>(row));
  });
  return true;
}

Status concat_cuda(KernelContext& ctx) {
  Tensor& y = ctx.output(0);
  size_t r = y.dims().size();
  if (!ctx.attrs().has("axis") && ctx.opset() >= 4) return ctx.error("missing the axis attribute");
  auto axis = normalize_axis(ctx.attrs().get_int("axis", 1), static_cast<int64_t>(r));
  if (!axis) return ctx.error("axis is out of range");
  auto ax = static_cast<size_t>(*axis);
  size_t esize = dtype_size(y.dtype());
  int64_t outer = movement::dims_product(y.dims(), 0, ax);
  auto out_block = static_cast<int64_t>(movement::dims_product(y.dims(), ax, r) * static_cast<int64_t>(esize));
  auto* dst = static_cast<uint8_t*>(y.data());
  int64_t offset = 0;
  if (y.numel() == 0) return Status();
  std::vector<std::pair<const void*, int64_t>> slabs;  // non-empty inputs: data, bytes per output row
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& x = ctx.input(i);
    auto block = static_cast<int64_t>(movement::dims_product(x.dims(), ax, r) * static_cast<int64_t>(esize));
    if (offset + block > out_block) return ctx.error("inputs do not fit the output", ErrorCode::kInternal);
    if (block > 0) slabs.emplace_back(x.data(), block);
    offset += block;
  }
  if (offset != out_block) return ctx.error("inputs do not fill the output", ErrorCode::kInternal);
  if (!concat_one_launch(ctx, dst, outer, out_block, slabs)) {
    offset = 0;
    for (const auto& [ptr, block] : slabs) {
      cuda::movement::copy_2d(ptr, block, dst + offset, out_block, outer, block, cuda::stream_of(ctx));
      offset += block;
    }
  }
  return cuda::launch_status(ctx, "concat");
}

bool concat_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (in.empty()) return false;
  for (const TensorType& t : in)
    if (t.dtype != in[0].dtype || !rank_ok(t)) return false;
  return movable_applies(n, in);
}

// Split sizes as split.cc reads them: opset 1 took `split` as input 1 or an
// attribute, opsets 2..12 as an attribute, opset 13 moved it to input 1, and
// opset 18 added num_outputs (the last chunk smaller when the dim does not divide).
Result<std::vector<int64_t>> split_sizes(const KernelContext& ctx, int64_t dim) {
  const ir::Node& n = ctx.node();
  auto count = static_cast<int64_t>(ctx.num_outputs());
  if (count == 0) return ctx.error("has no outputs");
  std::vector<int64_t> sizes;
  if (ctx.has_input(1) && (ctx.opset() >= 13 || ctx.opset() < 2)) {
    KILN_ASSIGN_OR_RETURN(sizes, host_ints(ctx, 1, "split"));
  } else if (ctx.opset() < 13 && n.attrs.has("split")) {
    sizes = n.attrs.get_ints("split");
  } else if (ctx.opset() >= 18 && n.attrs.has("num_outputs")) {
    int64_t chunk = (dim + count - 1) / count, left = dim;
    for (int64_t i = 0; i < count; ++i) {
      sizes.push_back(std::min(chunk, left));
      left -= sizes.back();
    }
  } else {
    if (dim % count != 0) return ctx.error("the axis does not split into equal parts");
    sizes.assign(static_cast<size_t>(count), dim / count);
  }
  int64_t sum = 0;
  for (int64_t v : sizes) {
    if (v < 0) return ctx.error("split has a negative size");
    sum += v;
  }
  if (static_cast<int64_t>(sizes.size()) != count || sum != dim)
    return ctx.error("split sizes do not match the outputs and the axis");
  return sizes;
}

Status split_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  size_t r = x.dims().size();
  auto axis = normalize_axis(ctx.attrs().get_int("axis", 0), static_cast<int64_t>(r));
  if (!axis) return ctx.error("axis is out of range");
  auto ax = static_cast<size_t>(*axis);
  KILN_ASSIGN_OR_RETURN(auto sizes, split_sizes(ctx, x.dims()[ax]));
  size_t esize = dtype_size(x.dtype());
  int64_t outer = movement::dims_product(x.dims(), 0, ax);
  int64_t inner = movement::dims_product(x.dims(), ax + 1, r) * static_cast<int64_t>(esize);
  int64_t in_block = x.dims()[ax] * inner;
  int64_t offset = 0;
  const auto* src = static_cast<const uint8_t*>(x.data());
  for (size_t i = 0; i < sizes.size(); ++i) {
    int64_t block = sizes[i] * inner;
    if (ctx.has_output(i)) {
      Tensor& y = ctx.output(i);
      Dims od = x.dims();
      od[ax] = sizes[i];
      if (y.dims() != od) return ctx.error("output dims do not match the split", ErrorCode::kInternal);
      cuda::movement::copy_2d(src + offset, in_block, y.data(), block, outer, block, cuda::stream_of(ctx));
    }
    offset += block;
  }
  return cuda::launch_status(ctx, "split");
}

// ---------------------------------------------------------------- Slice

/// y[i] = x[base + offset_of(ix, i)] (strides may be negative).
template <typename T>
__global__ void strided_gather_kernel(const T* __restrict__ x, int64_t base, Indexer ix, T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = x[base + cuda::offset_of(ix, i)];
}

Status strided_gather(KernelContext& ctx, const Tensor& x, int64_t base, const Indexer& ix, Tensor& y,
                      const char* name) {
  int64_t n = y.numel();
  if (n == 0) return Status();
  KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
    strided_gather_kernel<T><<<cuda::grid_for(n), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
        static_cast<const T*>(x.data()), base, ix, static_cast<T*>(y.data()), n);
  });
  return cuda::launch_status(ctx, name);
}

Status slice_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const ir::Node& n = ctx.node();
  size_t r = x.dims().size();
  std::vector<int64_t> starts, ends, steps;
  std::optional<std::vector<int64_t>> axes;
  // Opset 10 moved starts/ends/axes from attributes to inputs and added steps.
  if (ctx.opset() < 10) {
    if (!n.attrs.has("starts") || !n.attrs.has("ends")) return ctx.error("missing the starts or ends attribute");
    starts = n.attrs.get_ints("starts");
    ends = n.attrs.get_ints("ends");
    if (n.attrs.has("axes")) axes = n.attrs.get_ints("axes");
  } else {
    if (!ctx.has_input(1) || !ctx.has_input(2)) return ctx.error("missing the starts or ends input");
    KILN_ASSIGN_OR_RETURN(starts, host_ints(ctx, 1, "starts"));
    KILN_ASSIGN_OR_RETURN(ends, host_ints(ctx, 2, "ends"));
    if (ctx.has_input(3)) {
      KILN_ASSIGN_OR_RETURN(auto v, host_ints(ctx, 3, "axes"));
      axes = v;
    }
    if (ctx.has_input(4)) {
      KILN_ASSIGN_OR_RETURN(steps, host_ints(ctx, 4, "steps"));
    }
  }
  size_t k = starts.size();
  if (ends.size() != k) return ctx.error("starts and ends differ in length");
  if (!axes) {
    if (k > r) return ctx.error("more starts than input dims");
    axes = std::vector<int64_t>();
    for (size_t i = 0; i < k; ++i) axes->push_back(static_cast<int64_t>(i));
  }
  if (axes->size() != k) return ctx.error("axes and starts differ in length");
  KILN_ASSIGN_OR_RETURN(auto norm, movement::normalize_axes(n, *axes, static_cast<int64_t>(r)));
  if (steps.empty()) steps.assign(k, 1);
  if (steps.size() != k) return ctx.error("steps and starts differ in length");
  std::vector<int64_t> first(r, 0), step(r, 1);
  Dims out = x.dims();
  for (size_t i = 0; i < k; ++i) {
    if (steps[i] == 0) return ctx.error("a step is 0");
    auto ax = static_cast<size_t>(norm[i]);
    auto [s, count] = movement::slice_range(starts[i], ends[i], steps[i], x.dims()[ax]);
    first[ax] = s;
    step[ax] = steps[i];
    out[ax] = count;
  }
  if (y.dims() != out) return ctx.error("output dims do not match the slice", ErrorCode::kInternal);
  if (y.numel() == 0) return Status();
  // One axis cut with step 1 and every axis after it whole (a channel split in NHWC
  // or NCHW, a row range): a 2-D copy of `rows` runs, each a contiguous stretch.
  {
    size_t cut = r;
    bool simple = true;
    for (size_t d = 0; d < r; ++d) {
      if (out[d] == x.dims()[d] && step[d] == 1) continue;  // whole (a full reversal is not)
      if (cut != r || step[d] != 1) simple = false;
      cut = d;
    }
    if (simple && cut < r) {
      const auto esize = static_cast<int64_t>(dtype_size(x.dtype()));
      const int64_t inner = movement::dims_product(x.dims(), cut + 1, r) * esize;
      const int64_t rows = movement::dims_product(x.dims(), 0, cut);
      const auto* src = static_cast<const uint8_t*>(x.data()) + first[cut] * inner;
      cuda::movement::copy_2d(src, x.dims()[cut] * inner, y.data(), out[cut] * inner, rows, out[cut] * inner,
                              cuda::stream_of(ctx));
      return cuda::launch_status(ctx, "slice");
    }
  }
  auto st = strides_of(x.dims());
  Indexer ix;
  ix.rank = static_cast<int>(r);
  int64_t base = 0;
  for (size_t d = 0; d < r; ++d) {
    ix.dims[d] = out[d];
    ix.strides[d] = step[d] * st[d];
    base += first[d] * st[d];
  }
  return strided_gather(ctx, x, base, ix, y, "slice");
}

bool slice_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  if (!movable_applies(n, in)) return false;
  for (size_t i = 1; i < in.size() && i < 5; ++i)
    if (in[i].dtype != DataType::kUndefined && !movement::is_index_dtype(in[i].dtype)) return false;
  return true;
}

// ---------------------------------------------------------------- Expand / Tile

Status expand_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  Dims check;
  if (!broadcast_dims({x.dims(), y.dims()}, check) || check != y.dims())
    return ctx.error("cannot expand " + dims_to_string(x.dims()) + " to " + dims_to_string(y.dims()),
                     ErrorCode::kInternal);
  Indexer ix;
  if (!cuda::make_broadcast_indexer(y.dims(), x.dims(), ix)) return ctx.error("rank > 8", ErrorCode::kUnsupported);
  return strided_gather(ctx, x, 0, ix, y, "expand");
}

bool expand_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  // The output rank can exceed the input's: bound it by the shape input's length when known.
  if (!movable_applies(n, in)) return false;
  if (in.size() > 1 && in[1].shape && in[1].shape->size() == 1 && (*in[1].shape)[0].known())
    return (*in[1].shape)[0].value <= kMaxRank;
  return true;
}

/// Tile: output coordinate o reads input coordinate o % in_dim on every axis.
struct TileParams {
  int rank = 0;
  int64_t out_dims[kMaxRank] = {};
  int64_t in_dims[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
};

template <typename T>
__global__ void tile_kernel(const T* __restrict__ x, TileParams p, T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i, off = 0;
    for (int d = p.rank - 1; d >= 0; --d) {
      int64_t q = rest / p.out_dims[d];
      int64_t o = rest - q * p.out_dims[d];
      off += (o % p.in_dims[d]) * p.in_strides[d];
      rest = q;
    }
    y[i] = x[off];
  }
}

Status tile_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  size_t r = x.dims().size();
  if (y.dims().size() != r) return ctx.error("output rank does not match the input", ErrorCode::kInternal);
  int64_t n = y.numel();
  if (n == 0) return Status();
  TileParams p;
  p.rank = static_cast<int>(r);
  auto st = strides_of(x.dims());
  for (size_t d = 0; d < r; ++d) {
    if (x.dims()[d] == 0 || y.dims()[d] % x.dims()[d] != 0)
      return ctx.error("output dims are not a tiling of the input", ErrorCode::kInternal);
    p.out_dims[d] = y.dims()[d];
    p.in_dims[d] = x.dims()[d];
    p.in_strides[d] = st[d];
  }
  KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
    tile_kernel<T><<<cuda::grid_for(n), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(static_cast<const T*>(x.data()), p,
                                                                                 static_cast<T*>(y.data()), n);
  });
  return cuda::launch_status(ctx, "tile");
}

// ---------------------------------------------------------------- Pad

struct PadParams {
  int rank = 0;
  movement::PadMode mode = movement::PadMode::kConstant;
  int64_t out_dims[kMaxRank] = {};
  int64_t in_dims[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
  int64_t begin[kMaxRank] = {};
};

template <typename T>
__global__ void pad_kernel(const T* __restrict__ x, PadParams p, const T* __restrict__ fill_ptr, T fill_value,
                           T* __restrict__ y, int64_t n) {
  T fill = fill_ptr ? *fill_ptr : fill_value;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i, off = 0;
    bool inside = true;
    for (int d = p.rank - 1; d >= 0; --d) {
      int64_t q = rest / p.out_dims[d];
      int64_t o = rest - q * p.out_dims[d];
      rest = q;
      int64_t s = movement::pad_source_index(o - p.begin[d], p.in_dims[d], p.mode);
      if (s < 0) inside = false;
      off += s * p.in_strides[d];
    }
    y[i] = inside ? x[off] : fill;
  }
}

// Constant padding (or cropping) of the last axis only: nhwc_layout pads a stem
// conv's channels 3 -> 8. One thread per E-element chunk of an output row, E
// chosen so a chunk is one 16-byte store when the row's bytes allow it (a 3 -> 8
// fp16 row is a single chunk); the chunk's source values are read directly.
// I is uint32_t when both tensors have fewer than 2^31 elements (cheap division).
// `begin` is clamped to [-cin, cout] by the caller, so s stays in range.
template <typename T, int E, typename I>
__global__ void pad_last_axis_kernel(const T* __restrict__ x, I cin, I cout, int64_t begin, T fill, T* __restrict__ y,
                                     I nchunks) {
  const I per_row = cout / E;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I q = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; q < nchunks; q += stride) {
    const I r = q / per_row, j0 = (q - r * per_row) * E;
    const T* xr = x + r * cin;
    cuda::Vec<T, E> out;
#pragma unroll
    for (int k = 0; k < E; ++k) {
      const int64_t s = static_cast<int64_t>(j0 + k) - begin;
      out.v[k] = s >= 0 && s < static_cast<int64_t>(cin) ? xr[s] : fill;
    }
    *reinterpret_cast<cuda::Vec<T, E>*>(y + q * E) = out;
  }
}

template <typename T, typename I>
void launch_pad_last_axis(int chunk_bytes, const T* x, int64_t cin, int64_t cout, int64_t begin, T fill, T* y,
                          int64_t total, cudaStream_t stream) {
  auto go = [&](auto e) {
    constexpr int E = decltype(e)::value;
    if constexpr (E * sizeof(T) <= 16) {
      const int64_t chunks = total / E;
      pad_last_axis_kernel<T, E, I><<<cuda::grid_for(chunks), cuda::kBlock, 0, stream>>>(
          x, static_cast<I>(cin), static_cast<I>(cout), begin, fill, y, static_cast<I>(chunks));
    }
  };
  switch (chunk_bytes / static_cast<int>(sizeof(T))) {
    case 16:
      go(std::integral_constant<int, 16>{});
      break;
    case 8:
      go(std::integral_constant<int, 8>{});
      break;
    case 4:
      go(std::integral_constant<int, 4>{});
      break;
    case 2:
      go(std::integral_constant<int, 2>{});
      break;
    default:
      go(std::integral_constant<int, 1>{});
      break;
  }
}

Status pad_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  const ir::Node& n = ctx.node();
  size_t r = x.dims().size();
  if (r > static_cast<size_t>(kMaxRank)) return ctx.error("rank is above 8", ErrorCode::kUnsupported);
  if (ctx.opset() >= 11 && !ctx.has_input(1)) return ctx.error("missing the pads input");
  const Tensor* axes = ctx.has_input(3) ? ctx.host_value(3) : nullptr;
  KILN_ASSIGN_OR_RETURN(auto spec, movement::pad_spec(n, r, ctx.host_value(1), ctx.has_input(3), axes));
  if (!spec) return ctx.error("pads and axes must be known when the engine is built", ErrorCode::kUnsupported);
  KILN_ASSIGN_OR_RETURN(Shape want, movement::padded_shape(n, shape_from_dims(x.dims()), *spec));
  if (shape_to_dims(want) != y.dims()) return ctx.error("output dims do not match the pads", ErrorCode::kInternal);
  PadParams p;
  p.rank = static_cast<int>(r);
  p.mode = spec->mode;
  auto st = strides_of(x.dims());
  for (size_t d = 0; d < r; ++d) {
    p.in_dims[d] = x.dims()[d];
    p.in_strides[d] = st[d];
    p.out_dims[d] = y.dims()[d];
    p.begin[d] = spec->begin[d];
  }
  int64_t total = y.numel();
  if (total == 0) return Status();
  // The constant: a scalar known on the host, or input 2 read on the device.
  KILN_ASSIGN_OR_RETURN(movement::PadFill fill,
                        movement::pad_fill(n, x.dtype(), ctx.has_input(2) ? &ctx.input(2) : nullptr));
  const void* fill_ptr = fill.from_input ? ctx.input(2).data() : nullptr;
  bool last_axis_only = r >= 1 && p.mode == movement::PadMode::kConstant && !fill_ptr;
  for (size_t d = 0; d + 1 < r && last_axis_only; ++d)
    last_axis_only = p.begin[d] == 0 && p.in_dims[d] == p.out_dims[d];
  if (last_axis_only) {
    const int64_t cin = p.in_dims[r - 1], cout = p.out_dims[r - 1];
    const int64_t begin = std::min(std::max(p.begin[r - 1], -cin), cout);
    const bool narrow = total < INT32_MAX && x.numel() < INT32_MAX;
    KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
      T fv;
      std::memcpy(&fv, fill.value.data(), sizeof(T));
      // Widest store unit that divides the output row and the output's address.
      const auto row_bytes = static_cast<uint64_t>(cout) * sizeof(T);
      int chunk = static_cast<int>(sizeof(T));
      for (int u : {16, 8, 4, 2})
        if (u > chunk && row_bytes % static_cast<uint64_t>(u) == 0 &&
            reinterpret_cast<uintptr_t>(y.data()) % static_cast<uintptr_t>(u) == 0) {
          chunk = u;
          break;
        }
      const T* xp = static_cast<const T*>(x.data());
      T* yp = static_cast<T*>(y.data());
      if (narrow)
        launch_pad_last_axis<T, uint32_t>(chunk, xp, cin, cout, begin, fv, yp, total, cuda::stream_of(ctx));
      else
        launch_pad_last_axis<T, uint64_t>(chunk, xp, cin, cout, begin, fv, yp, total, cuda::stream_of(ctx));
    });
    return cuda::launch_status(ctx, "pad_last_axis");
  }
  KILN_CUDA_DISPATCH_BYTES(x.dtype(), T, {
    T fv;
    std::memcpy(&fv, fill.value.data(), sizeof(T));
    pad_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
        static_cast<const T*>(x.data()), p, static_cast<const T*>(fill_ptr), fv, static_cast<T*>(y.data()), total);
  });
  return cuda::launch_status(ctx, "pad");
}

bool pad_applies(const ir::Node& n, const std::vector<TensorType>& in) {
  return movable_applies(n, in) && movement::pad_mode(n).ok();
}

}  // namespace

void register_concat_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel("", "Concat", FastKernel{"cuda.concat", concat_cuda, concat_applies});
  (void)r.add_cuda_kernel("", "Split", FastKernel{"cuda.split", split_cuda, movable_applies});
  (void)r.add_cuda_kernel("", "Slice", FastKernel{"cuda.slice", slice_cuda, slice_applies});
  (void)r.add_cuda_kernel("", "Expand", FastKernel{"cuda.expand", expand_cuda, expand_applies});
  (void)r.add_cuda_kernel("", "Tile", FastKernel{"cuda.tile", tile_cuda, movable_applies});
  (void)r.add_cuda_kernel("", "Pad", FastKernel{"cuda.pad", pad_cuda, pad_applies});
}

}  // namespace kiln::ops
