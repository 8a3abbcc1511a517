// CUDA helpers shared by the data-movement families (reshape, concat, gather,
// generate): a permute (transpose) of any rank with a tiled fast path, a 2-D
// strided copy in the widest aligned unit, and a fill. Host launchers take the
// kernel context for its stream and for errors that name the node.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/cuda/kernel_util.cuh"

namespace kiln::cuda::movement {

/// 16-byte unit for vectorized copies.
struct alignas(16) Unit16 {
  uint64_t lo, hi;
};

/// Largest unit (16, 8, 4, 2 or 1 bytes) dividing every value (byte counts and addresses).
inline int copy_unit(std::initializer_list<uint64_t> values) {
  uint64_t bits = 0;
  for (uint64_t v : values) bits |= v;
  for (int u : {16, 8, 4, 2})
    if ((bits & static_cast<uint64_t>(u - 1)) == 0) return u;
  return 1;
}

/// Runs body with U bound to an unsigned type of `unit` bytes.
template <typename F>
void with_unit(int unit, F&& f) {
  switch (unit) {
    case 16:
      f(Unit16{});
      break;
    case 8:
      f(uint64_t{});
      break;
    case 4:
      f(uint32_t{});
      break;
    case 2:
      f(uint16_t{});
      break;
    default:
      f(uint8_t{});
      break;
  }
}

// I: 32-bit indices when rows * width fits (a 64-bit division per unit made narrow
// copies, e.g. YOLO's 16-channel NHWC concat slabs, run at a fraction of bandwidth).
template <typename U, typename I>
__global__ void copy_2d_kernel(const U* __restrict__ src, I src_pitch, U* __restrict__ dst, I dst_pitch, I rows,
                               I width) {
  const I total = rows * width;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const I r = i / width, c = i - r * width;
    dst[r * dst_pitch + c] = src[r * src_pitch + c];
  }
}

/// dst[r * dst_pitch + c] = src[r * src_pitch + c] for r < rows, c < width (all in bytes).
inline void copy_2d(const void* src, int64_t src_pitch, void* dst, int64_t dst_pitch, int64_t rows, int64_t width,
                    cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return;
  if (rows == 1 || (src_pitch == width && dst_pitch == width)) {
    cudaMemcpyAsync(dst, src, static_cast<size_t>(rows * width), cudaMemcpyDeviceToDevice, stream);
    return;
  }
  int unit =
      copy_unit({static_cast<uint64_t>(src_pitch), static_cast<uint64_t>(dst_pitch), static_cast<uint64_t>(width),
                 reinterpret_cast<uint64_t>(src), reinterpret_cast<uint64_t>(dst)});
  with_unit(unit, [&](auto tag) {
    using U = decltype(tag);
    const int64_t u = static_cast<int64_t>(sizeof(U));
    const int64_t w = width / u, sp = src_pitch / u, dp = dst_pitch / u;
    // Every index the kernel forms (r * pitch + c, rows * width, i + grid stride) must
    // fit the 32-bit type: below 2^31, so adding a stride never wraps.
    const int64_t span = std::max({rows * w, rows * sp, rows * dp});
    if (span < static_cast<int64_t>(INT32_MAX)) {
      copy_2d_kernel<U, uint32_t><<<grid_for(rows * w), kBlock, 0, stream>>>(
          static_cast<const U*>(src), static_cast<uint32_t>(sp), static_cast<U*>(dst), static_cast<uint32_t>(dp),
          static_cast<uint32_t>(rows), static_cast<uint32_t>(w));
    } else {
      copy_2d_kernel<U, int64_t><<<grid_for(rows * w), kBlock, 0, stream>>>(static_cast<const U*>(src), sp,
                                                                            static_cast<U*>(dst), dp, rows, w);
    }
  });
}

template <typename T>
__global__ void fill_kernel(T* __restrict__ y, int64_t n, T v) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = v;
}

/// Fills n elements of esize bytes with the element at `value` (host memory).
inline bool fill(void* y, int64_t n, size_t esize, const void* value, cudaStream_t stream) {
  if (n <= 0) return true;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, value, sizeof(T));
    fill_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(y), n, v);
  };
  switch (esize) {
    case 1:
      go(uint8_t{});
      return true;
    case 2:
      go(uint16_t{});
      return true;
    case 4:
      go(uint32_t{});
      return true;
    case 8:
      go(uint64_t{});
      return true;
    default:
      return false;
  }
}

// ---- permute

/// y[i] = x[offset_of(ix, i)]: ix holds the output dims and the input strides read in output order.
template <typename T>
__global__ void permute_kernel(const T* __restrict__ x, T* __restrict__ y, Indexer ix, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = x[offset_of(ix, i)];
}

/// Same with 32-bit index math (integer division is several times cheaper), for n < 2^31.
struct Indexer32 {
  int rank = 0;
  int dims[kMaxRank] = {};
  int strides[kMaxRank] = {};
};
template <typename T>
__global__ void permute_kernel32(const T* __restrict__ x, T* __restrict__ y, Indexer32 ix, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    int off = 0, k = i;
    for (int d = ix.rank - 1; d >= 0; --d) {
      int q = k / ix.dims[d];
      off += (k - q * ix.dims[d]) * ix.strides[d];
      k = q;
    }
    y[i] = x[off];
  }
}

inline constexpr int kTile = 32;
inline constexpr int kTileRows = 8;

/// Batched 2-D transpose: y[b][c][r] = x[b][r][c], through a padded shared tile so
/// both the reads and the writes are coalesced.
template <typename T>
__global__ void transpose_tiled_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t batch, int64_t rows,
                                       int64_t cols) {
  __shared__ T tile[kTile][kTile + 1];
  int64_t row_tiles = (rows + kTile - 1) / kTile;
  int64_t c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int64_t b = blockIdx.z; b < batch; b += gridDim.z) {
    const T* xb = x + b * rows * cols;
    T* yb = y + b * rows * cols;
    for (int64_t t = blockIdx.y; t < row_tiles; t += gridDim.y) {
      int64_t r0 = t * kTile;
      for (int i = threadIdx.y; i < kTile; i += kTileRows) {
        int64_t r = r0 + i, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[i][threadIdx.x] = xb[r * cols + c];
      }
      __syncthreads();
      for (int i = threadIdx.y; i < kTile; i += kTileRows) {
        int64_t c = c0 + i, r = r0 + threadIdx.x;
        if (c < cols && r < rows) yb[c * rows + r] = tile[threadIdx.x][i];
      }
      __syncthreads();
    }
  }
}

/// Most rows the narrow transpose below takes; more go through the square tiles.
inline constexpr int kNarrowRowsMax = 16;

/// Batched 2-D transpose with few rows (e.g. [N, 3, H*W] -> [N, H*W, 3], an image
/// going channels-last). Output pixel g (flat over batch x cols) holds the `rows`
/// values x[b][r][c] for g = b * cols + c. A block stages kPix x blockDim
/// consecutive pixels in shared memory in output order (reads coalesced along c),
/// then writes that contiguous stretch of y in 16-byte units, so tiles may straddle
/// images. I is uint32_t below 2^31 elements.
template <typename T, int kPix, typename I>
__global__ void transpose_narrow_kernel(const T* __restrict__ x, T* __restrict__ y, I cols, int rows, I npix) {
  extern __shared__ __align__(16) unsigned char narrow_smem[];
  T* tile = reinterpret_cast<T*>(narrow_smem);
  const I per_block = static_cast<I>(kPix) * blockDim.x;
  const I tiles = (npix + per_block - 1) / per_block;
  for (I t = blockIdx.x; t < tiles; t += gridDim.x) {
    const I g0 = t * per_block;
    const T* src[kPix];
#pragma unroll
    for (int j = 0; j < kPix; ++j) {
      const I g = g0 + static_cast<I>(j) * blockDim.x + threadIdx.x;
      const I b = g / cols, c = g - b * cols;
      src[j] = g < npix ? x + b * static_cast<I>(rows) * cols + c : nullptr;
    }
    for (int r = 0; r < rows; ++r) {
#pragma unroll
      for (int j = 0; j < kPix; ++j)
        if (src[j])
          tile[(j * static_cast<int>(blockDim.x) + static_cast<int>(threadIdx.x)) * rows + r] = src[j][r * cols];
    }
    __syncthreads();
    const I n = (npix - g0 < per_block ? npix - g0 : per_block) * static_cast<I>(rows);
    T* dst = y + g0 * static_cast<I>(rows);
    I done = 0;
    if (reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
      const I units = n * sizeof(T) / 16;
      for (I u = threadIdx.x; u < units; u += blockDim.x)
        reinterpret_cast<Unit16*>(dst)[u] = reinterpret_cast<const Unit16*>(tile)[u];
      done = units * (16 / sizeof(T));
    }
    for (I e = done + threadIdx.x; e < n; e += blockDim.x) dst[e] = tile[e];
    __syncthreads();
  }
}

/// Launches transpose_narrow_kernel for [batch, rows, cols] -> [batch, cols, rows];
/// false when the staging tile would not fit in 48 KB of shared memory.
template <typename T>
bool transpose_narrow(const T* x, T* y, int64_t batch, int rows, int64_t cols, cudaStream_t stream) {
  static_assert(16 % sizeof(T) == 0, "element sizes divide 16 bytes");
  const int64_t npix = batch * cols;
  const size_t row_bytes = static_cast<size_t>(rows) * sizeof(T);
  auto go = [&](auto pix, auto index) {
    constexpr int kPix = decltype(pix)::value;
    using I = decltype(index);
    const int64_t per_block = static_cast<int64_t>(kPix) * kBlock;
    const int64_t tiles = (npix + per_block - 1) / per_block;
    const size_t smem = static_cast<size_t>(per_block) * row_bytes;
    transpose_narrow_kernel<T, kPix, I>
        <<<static_cast<unsigned>(std::min<int64_t>(tiles, 65535 * 8)), kBlock, smem, stream>>>(
            x, y, static_cast<I>(cols), rows, static_cast<I>(npix));
  };
  if (static_cast<size_t>(kBlock) * row_bytes > 48 * 1024) return false;
  // Four pixels per thread (more loads in flight) while the tile stays <= 16 KB.
  const bool four = row_bytes <= 16;
  const bool small = npix * rows < INT32_MAX;
  if (four && small)
    go(std::integral_constant<int, 4>{}, uint32_t{});
  else if (four)
    go(std::integral_constant<int, 4>{}, uint64_t{});
  else if (small)
    go(std::integral_constant<int, 1>{}, uint32_t{});
  else
    go(std::integral_constant<int, 1>{}, uint64_t{});
  return true;
}

/// Longest innermost row (in bytes) the row-tiled permute below takes; the element-wise
/// path moves longer rows in whole 128-byte lines a warp already.
inline constexpr int kShortRowBytes = 64;
/// Shared memory of one row-tiled permute block at most.
inline constexpr int kRowTileBytes = 16 * 1024;

/// The axes of a row-tiled permute other than A, B and the row: dims (innermost last) and
/// their strides in x and in y, in units.
struct RowTileBatch {
  int rank = 0;
  int dims[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {}, out_strides[kMaxRank] = {};
};

/// A permute that keeps a short innermost row of nu units and exchanges input axis A (the
/// one outside the row in x, stride nu there) with axis B (the one outside the row in y,
/// stride nu there), e.g. ViT's patchify [N,C,14,16,14,16] -> [N,14,14,C,16,16] of 32-byte
/// rows: the element-wise path read 16 scattered rows a warp and ran at 2.05 TB/s, L1-bound
/// (ncu, session 21). A block takes one index of the other axes and a ta x tb tile of rows:
/// read along A (contiguous runs of ta rows in x) into shared memory, written along B
/// (contiguous runs of tb rows in y). `pitch` (odd) pads each B index's ta rows against
/// bank conflicts.
template <typename U>
__global__ void permute_row_tiles_kernel(const U* __restrict__ x, U* __restrict__ y, RowTileBatch bt, int dA, int dB,
                                         int nu, int64_t sB_in, int64_t sA_out, int ta, int tb, int pitch,
                                         int64_t tiles) {
  extern __shared__ __align__(16) unsigned char row_tile_smem[];
  U* tile = reinterpret_cast<U*>(row_tile_smem);
  const int tiles_a = (dA + ta - 1) / ta, tiles_b = (dB + tb - 1) / tb;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int ia = static_cast<int>(t % tiles_a);
    const int64_t t2 = t / tiles_a;
    const int ib = static_cast<int>(t2 % tiles_b);
    int64_t k = t2 / tiles_b, in_off = 0, out_off = 0;
    for (int d = bt.rank - 1; d >= 0; --d) {
      const int64_t q = k / bt.dims[d], r = k - q * bt.dims[d];
      in_off += r * bt.in_strides[d];
      out_off += r * bt.out_strides[d];
      k = q;
    }
    const int a0 = ia * ta, b0 = ib * tb;
    const int na = min(ta, dA - a0), nb = min(tb, dB - b0);
    const int n = na * nb * nu, row = na * nu;
    const U* xs = x + in_off + b0 * sB_in + static_cast<int64_t>(a0) * nu;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {  // x order: b, then a and the row's units
      const int b = i / row, au = i - b * row;
      tile[b * pitch + au] = xs[b * sB_in + au];
    }
    __syncthreads();
    U* ys = y + out_off + a0 * sA_out + static_cast<int64_t>(b0) * nu;
    const int col = nb * nu;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {  // y order: a, then b and the row's units
      const int a = i / col, bu = i - a * col, b = bu / nu, u = bu - b * nu;
      ys[a * sA_out + bu] = tile[b * pitch + a * nu + u];
    }
    __syncthreads();
  }
}

/// Launches permute_row_tiles_kernel for simplified dims d (units of sizeof(T)) and perm p
/// when the row (d's last axis) stays innermost, is at most kShortRowBytes long and rank
/// >= 3; false otherwise (the caller's paths run).
template <typename T>
bool permute_row_tiles(const T* x, T* y, const Dims& d, const std::vector<int64_t>& p, cudaStream_t stream) {
  const size_t r = d.size();
  if (r < 3 || r > static_cast<size_t>(kMaxRank) || p[r - 1] != static_cast<int64_t>(r - 1) ||
      d[r - 1] * static_cast<int64_t>(sizeof(T)) > kShortRowBytes)
    return false;
  for (int64_t v : d)
    if (v > INT32_MAX) return false;  // (32-bit dims in the kernel)
  const int64_t nu = d[r - 1];
  const size_t A = r - 2, B = static_cast<size_t>(p[r - 2]);
  if (B == A) return false;  // (simplify_permute merges such axes)
  std::vector<int64_t> in_st(r, 1), out_st(r, 1), out_dims(r);
  for (size_t i = r - 1; i-- > 0;) in_st[i] = in_st[i + 1] * d[i + 1];
  for (size_t j = 0; j < r; ++j) out_dims[j] = d[static_cast<size_t>(p[j])];
  std::vector<int64_t> ost(r, 1), out_of(r);  // y strides by y position; by x axis
  for (size_t j = r - 1; j-- > 0;) ost[j] = ost[j + 1] * out_dims[j + 1];
  for (size_t j = 0; j < r; ++j) out_of[static_cast<size_t>(p[j])] = ost[j];
  RowTileBatch bt;
  int64_t batch = 1;
  for (size_t i = 0; i + 1 < r; ++i) {
    if (i == A || i == B) continue;
    bt.dims[bt.rank] = static_cast<int>(d[i]);
    bt.in_strides[bt.rank] = in_st[i];
    bt.out_strides[bt.rank] = out_of[i];
    ++bt.rank;
    batch *= d[i];
  }
  const int dA = static_cast<int>(d[A]), dB = static_cast<int>(d[B]);
  int ta = std::min(dA, 32), tb = std::min(dB, 32);
  auto bytes = [&](int a, int b) { return static_cast<int64_t>(b) * ((a * nu) | 1) * static_cast<int64_t>(sizeof(T)); };
  while (bytes(ta, tb) > kRowTileBytes) (ta >= tb ? ta : tb) = std::max(1, (ta >= tb ? ta : tb) / 2);
  const int pitch = static_cast<int>((ta * nu) | 1);
  const int64_t tiles = batch * ((dA + ta - 1) / ta) * ((dB + tb - 1) / tb);
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(tiles, int64_t{1} << 20));
  permute_row_tiles_kernel<T><<<grid, kBlock, static_cast<size_t>(bytes(ta, tb)), stream>>>(
      x, y, bt, dA, dB, static_cast<int>(nu), in_st[B], out_of[A], ta, tb, pitch, tiles);
  return true;
}

/// Drops size-1 dims and merges input dims that stay adjacent and in order in the
/// output, so e.g. NCHW -> NHWC becomes [N, C, H*W] with perm [0, 2, 1].
inline void simplify_permute(const Dims& in, const std::vector<int64_t>& perm, Dims& out_in,
                             std::vector<int64_t>& out_perm) {
  size_t r = in.size();
  std::vector<int64_t> keep_index(r, -1);
  Dims d;
  for (size_t i = 0; i < r; ++i)
    if (in[i] != 1) {
      keep_index[i] = static_cast<int64_t>(d.size());
      d.push_back(in[i]);
    }
  std::vector<int64_t> p;
  for (int64_t a : perm)
    if (keep_index[static_cast<size_t>(a)] >= 0) p.push_back(keep_index[static_cast<size_t>(a)]);
  // Groups of output positions whose input axes are consecutive.
  std::vector<std::pair<int64_t, int64_t>> groups;  // (first input axis, last input axis), output order
  for (int64_t a : p) {
    if (!groups.empty() && groups.back().second + 1 == a)
      groups.back().second = a;
    else
      groups.push_back({a, a});
  }
  std::vector<size_t> order(groups.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return groups[a].first < groups[b].first; });
  out_in.assign(groups.size(), 1);
  out_perm.assign(groups.size(), 0);
  for (size_t k = 0; k < order.size(); ++k) {
    const auto& g = groups[order[k]];
    int64_t v = 1;
    for (int64_t a = g.first; a <= g.second; ++a) v *= d[static_cast<size_t>(a)];
    out_in[k] = v;
    out_perm[order[k]] = static_cast<int64_t>(k);
  }
}

/// y = x permuted by perm (y dim j is x dim perm[j]), elements of esize bytes.
inline Status permute(const ops::KernelContext& ctx, const void* x, void* y, const Dims& in_dims,
                      const std::vector<int64_t>& perm, size_t esize) {
  int64_t n = 1;
  for (int64_t v : in_dims) n *= v;
  if (n == 0) return Status();
  cudaStream_t stream = stream_of(ctx);
  Dims d;
  std::vector<int64_t> p;
  simplify_permute(in_dims, perm, d, p);
  size_t r = d.size();
  if (r <= 1) {
    if (x != y) cudaMemcpyAsync(y, x, static_cast<size_t>(n) * esize, cudaMemcpyDeviceToDevice, stream);
    return launch_status(ctx, "permute");
  }
  if (r > static_cast<size_t>(kMaxRank))
    return ctx.error("permute of rank " + std::to_string(r) + " exceeds the CUDA limit of 8", ErrorCode::kUnsupported);
  // The innermost axis stays innermost (e.g. [B,S,H,D] -> [B,H,S,D]): move whole
  // rows in units of up to 16 bytes instead of single elements.
  if (p[r - 1] == static_cast<int64_t>(r - 1)) {
    const size_t row_bytes = static_cast<size_t>(d[r - 1]) * esize;
    const auto addr = reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(y);
    for (size_t v : {size_t(16), size_t(8), size_t(4)}) {
      if (v <= esize || row_bytes % v != 0 || addr % v != 0) continue;
      d[r - 1] = static_cast<int64_t>(row_bytes / v);
      n = n * static_cast<int64_t>(esize) / static_cast<int64_t>(v);
      esize = v;
      break;
    }
  }
  bool swap_last = p[r - 1] == static_cast<int64_t>(r - 2) && p[r - 2] == static_cast<int64_t>(r - 1);
  for (size_t j = 0; j + 2 < r && swap_last; ++j) swap_last = p[j] == static_cast<int64_t>(j);
  auto go = [&](auto tag) {
    using T = decltype(tag);
    if (!swap_last && permute_row_tiles<T>(static_cast<const T*>(x), static_cast<T*>(y), d, p, stream)) return;
    if (swap_last && d[r - 2] <= kNarrowRowsMax) {
      int64_t rows = d[r - 2], cols = d[r - 1], batch = n / (rows * cols);
      if (transpose_narrow<T>(static_cast<const T*>(x), static_cast<T*>(y), batch, static_cast<int>(rows), cols,
                              stream))
        return;
    }
    if (swap_last) {
      int64_t rows = d[r - 2], cols = d[r - 1], batch = n / (rows * cols);
      dim3 block(kTile, kTileRows);
      int64_t gx = (cols + kTile - 1) / kTile, gy = std::min<int64_t>((rows + kTile - 1) / kTile, 65535);
      dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy),
                static_cast<unsigned>(std::min<int64_t>(batch, 65535)));
      transpose_tiled_kernel<T>
          <<<grid, block, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), batch, rows, cols);
      return;
    }
    std::vector<int64_t> st(r, 1);
    for (size_t i = r - 1; i-- > 0;) st[i] = st[i + 1] * d[i + 1];
    if (n < INT32_MAX) {
      Indexer32 ix;
      ix.rank = static_cast<int>(r);
      for (size_t j = 0; j < r; ++j) {
        ix.dims[j] = static_cast<int>(d[static_cast<size_t>(p[j])]);
        ix.strides[j] = static_cast<int>(st[static_cast<size_t>(p[j])]);
      }
      permute_kernel32<T>
          <<<grid_for(n), kBlock, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), ix, static_cast<int>(n));
      return;
    }
    Indexer ix;
    ix.rank = static_cast<int>(r);
    for (size_t j = 0; j < r; ++j) {
      ix.dims[j] = d[static_cast<size_t>(p[j])];
      ix.strides[j] = st[static_cast<size_t>(p[j])];
    }
    permute_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(y), ix, n);
  };
  switch (esize) {
    case 1:
      go(uint8_t{});
      break;
    case 2:
      go(uint16_t{});
      break;
    case 4:
      go(uint32_t{});
      break;
    case 8:
      go(uint64_t{});
      break;
    case 16:
      go(uint4{});
      break;
    default:
      return ctx.error("no CUDA permute for elements of " + std::to_string(esize) + " bytes", ErrorCode::kUnsupported);
  }
  return launch_status(ctx, "permute");
}

/// The element-size dtypes the movement kernels copy (every dtype kiln holds but strings).
inline bool movable_dtype(DataType t) {
  size_t s = dtype_size(t);
  return t != DataType::kUndefined && t != DataType::kString && (s == 1 || s == 2 || s == 4 || s == 8);
}

}  // namespace kiln::cuda::movement
