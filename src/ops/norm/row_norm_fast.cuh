// Register-resident row kernels for LayerNormalization, RMSNormalization and
// SkipLayerNormalization: used when a row is a whole number of 16-byte packs of
// at most kFastMaxCols elements and every pointer is 16-byte aligned. Each
// element is read once and written once (the generic kernels in norm_cuda.cu
// read a row three times); statistics are fp32, the variance two-pass from the
// registers. Rows of up to kFastMaxWarpCols run one warp per row (kFastWarpRows
// rows per block) with as many pack slots as the row needs (with_warp_slots),
// longer ones one kFastBlockThreads-thread block per row.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backends/cuda/kernel_util.cuh"
#include "ops/norm/block_reduce.cuh"

namespace kiln::cuda::rownorm {

/// Row elements each thread keeps in registers (as fp32), at most.
inline constexpr int kFastMaxPerThread = 32;
/// Rows per block of the warp-per-row kernel.
inline constexpr int kFastWarpRows = 4;
/// Threads of the block-per-row kernel.
inline constexpr int kFastBlockThreads = 128;
/// Longest row of the warp-per-row kernel.
inline constexpr int64_t kFastMaxWarpCols = 32 * kFastMaxPerThread;
/// Longest row of the fast path.
inline constexpr int64_t kFastMaxCols = kFastBlockThreads * kFastMaxPerThread;

/// Where a skip-norm kernel's input rows come from: row r of the input (idx null, group 0);
/// row idx[r] of a [rows, cols] table (GatherSkipLayerNormalization), negative indices
/// counting from the end and the rest clamped into the table, as the CUDA Gather does; or
/// (group > 0, ConcatSkipLayerNormalization) of each `group` rows the first `head_rows` from
/// `head` (its group's, or the one set when head_shared) and the rest from the input.
struct RowGather {
  const void* idx = nullptr;
  bool idx64 = false;
  int64_t rows = 0;
  const void* head = nullptr;
  int64_t group = 0, head_rows = 0;
  bool head_shared = false;
  __device__ __forceinline__ int64_t row(int64_t r) const {
    if (!idx) return r;
    int64_t i = idx64 ? static_cast<const int64_t*>(idx)[r] : static_cast<const int32_t*>(idx)[r];
    if (i < 0) i += rows;
    return i < 0 ? 0 : (i >= rows ? rows - 1 : i);
  }
  /// Row r of the kernel's input: `in`'s (as row() says) or head's.
  template <typename T>
  __device__ __forceinline__ const T* row_ptr(const T* in, int64_t r, int64_t cols) const {
    if (group > 0) {
      const int64_t g = r / group, t = r - g * group;
      if (t < head_rows) return static_cast<const T*>(head) + ((head_shared ? 0 : g * head_rows) + t) * cols;
      return in + (g * (group - head_rows) + t - head_rows) * cols;
    }
    return in + row(r) * cols;
  }
};

/// 16 bytes of T, loaded and stored as one vector access.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(T));
  T v[kSize];
};

/// True when the fast kernels handle rows of `cols` elements of `elem_bytes` bytes.
inline bool fast_cols_ok(int64_t cols, size_t elem_bytes) {
  const int64_t pack = 16 / static_cast<int64_t>(elem_bytes);
  return cols > 0 && cols <= kFastMaxCols && cols % pack == 0;
}

/// True when `p` is null or 16-byte aligned.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

/// Sum over the kThreads threads of one row; every one of them gets the result.
/// `smem` holds kThreads / 32 floats (unused for a warp).
template <int kThreads>
__device__ __forceinline__ float row_sum(float v, float* smem) {
  v = warp_reduce(v, SumOp());
  if constexpr (kThreads > 32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // smem may still be read by the previous call
    if (lane == 0) smem[warp] = v;
    __syncthreads();
    v = 0.f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) v += smem[w];
  }
  return v;
}

/// Pack slots per thread: slot i of thread `tid` holds pack i * kThreads + tid of the
/// row (so a warp's accesses are contiguous); slots past the row hold zeros.
template <typename T>
inline constexpr int kSlots = kFastMaxPerThread / Pack<T>::kSize;

/// The rows' common tail: variance from the registers (two-pass), then
/// (v - mu) * inv * gamma (+ beta) stored as T, and the statistics when asked for.
template <typename T, int kThreads, int kN>
__device__ __forceinline__ void normalize_and_store(const float (&v)[kN][Pack<T>::kSize], float mu, int packs, int tid,
                                                    float n, float eps, const T* gamma, const T* beta, Pack<T>* yr,
                                                    float* smem, int64_t row, float* mean_out, float* inv_out) {
  using P = Pack<T>;
  constexpr int kPack = P::kSize;
  // gamma and beta are loaded before the variance reduction, not after it: one
  // dependent memory round trip less per row (small batches are latency-bound).
  const P* gp = reinterpret_cast<const P*>(gamma);
  const P* bp = reinterpret_cast<const P*>(beta);
  P gv[kN], bv[kN];
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int p = i * kThreads + tid;
    if (p < packs) {
      gv[i] = gp[p];
      bv[i] = bp ? bp[p] : P{};
    }
  }
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    if (i * kThreads + tid < packs) {
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        const float d = v[i][k] - mu;
        ss += d * d;
      }
    }
  }
  const float inv = 1.f / sqrtf(row_sum<kThreads>(ss, smem) / n + eps);
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int p = i * kThreads + tid;
    if (p < packs) {
      const P& g = gv[i];
      const P& b = bv[i];
      P o;
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        float r = (v[i][k] - mu) * inv * to_f(g.v[k]);
        if (bp) r += to_f(b.v[k]);
        o.v[k] = from_f<T>(r);
      }
      yr[p] = o;
    }
  }
  if (tid == 0) {
    if (mean_out) mean_out[row] = mu;
    if (inv_out) inv_out[row] = inv;
  }
}

/// LayerNormalization (rms = false) / RMSNormalization (rms = true) of rows of
/// `cols` elements; gamma (and beta, may be null) hold `cols` elements.
/// Grid: ceil(rows / kRows) blocks of kThreads * kRows threads, the last rows first with
/// `rev` (cuda::reverse_grids); kN pack slots a thread (at least cols / (kThreads * pack)).
template <typename T, int kThreads, int kRows, int kN = kSlots<T>>
__global__ void __launch_bounds__(kThreads* kRows)
    row_norm_fast_kernel(const T* x, T* y, const T* gamma, const T* beta, int64_t rows, int cols, float eps, bool rms,
                         float* mean_out, float* inv_out, bool rev) {
  using P = Pack<T>;
  constexpr int kPack = P::kSize;
  __shared__ float smem[kThreads > 32 ? kThreads / 32 : 1];
  const int tid = static_cast<int>(threadIdx.x) % kThreads;
  const int64_t row = static_cast<int64_t>(rev ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * kRows +
                      static_cast<int>(threadIdx.x) / kThreads;
  // Only the warp kernel (no __syncthreads) can have rows past the end.
  if (row >= rows) return;
  const int packs = cols / kPack;
  const P* xr = reinterpret_cast<const P*>(x + row * cols);
  P* yr = reinterpret_cast<P*>(y + row * cols);
  float v[kN][kPack];
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int p = i * kThreads + tid;
    if (p < packs) {
      const P a = xr[p];
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        v[i][k] = to_f(a.v[k]);
        s += v[i][k];
      }
    } else {
#pragma unroll
      for (int k = 0; k < kPack; ++k) v[i][k] = 0.f;
    }
  }
  const float n = static_cast<float>(cols);
  // rms is the same for the whole grid, so every thread of a block reduces or none does.
  const float mu = rms ? 0.f : row_sum<kThreads>(s, smem) / n;
  normalize_and_store<T, kThreads, kN>(v, mu, packs, tid, n, eps, gamma, beta, yr, smem, row, mean_out, inv_out);
}

/// com.microsoft SkipLayerNormalization over rows of `cols` elements: skip has
/// `skip_rows` rows, repeated over the input's (the same shape, or broadcast over
/// leading dims: BERT's position embeddings); gamma, beta, bias (the last two may be
/// null) hold `cols` elements; sum_out (may be null) gets input + skip + bias. The
/// input's rows as `gather` says (GatherSkipLayerNormalization: a table's;
/// ConcatSkipLayerNormalization: two tensors'). Grid as
/// row_norm_fast_kernel's.
template <typename T, int kThreads, int kRows, int kN = kSlots<T>>
__global__ void __launch_bounds__(kThreads* kRows)
    skip_norm_fast_kernel(const T* in, RowGather gather, const T* skip, const T* gamma, const T* beta, const T* bias,
                          T* y, float* mean_out, float* inv_out, T* sum_out, int64_t rows, int64_t skip_rows, int cols,
                          float eps, bool rev) {
  using P = Pack<T>;
  constexpr int kPack = P::kSize;
  __shared__ float smem[kThreads > 32 ? kThreads / 32 : 1];
  const int tid = static_cast<int>(threadIdx.x) % kThreads;
  const int64_t row = static_cast<int64_t>(rev ? gridDim.x - 1 - blockIdx.x : blockIdx.x) * kRows +
                      static_cast<int>(threadIdx.x) / kThreads;
  if (row >= rows) return;
  const int packs = cols / kPack;
  const int64_t base = row * cols;
  const P* ir = reinterpret_cast<const P*>(gather.row_ptr(in, row, cols));
  const P* sr = reinterpret_cast<const P*>(skip + (skip_rows == rows ? row : row % skip_rows) * cols);
  const P* cp = reinterpret_cast<const P*>(bias);
  P* sumr = reinterpret_cast<P*>(sum_out ? sum_out + base : nullptr);
  float v[kN][kPack];
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kN; ++i) {
    const int p = i * kThreads + tid;
    if (p < packs) {
      const P a = ir[p];
      const P b = sr[p];
      const P c = cp ? cp[p] : P{};
      P sum;
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        float t = to_f(a.v[k]) + to_f(b.v[k]);
        if (cp) t += to_f(c.v[k]);
        // The reference stores the sum as T before normalizing it.
        sum.v[k] = from_f<T>(t);
        v[i][k] = to_f(sum.v[k]);
        s += v[i][k];
      }
      if (sumr) sumr[p] = sum;
    } else {
#pragma unroll
      for (int k = 0; k < kPack; ++k) v[i][k] = 0.f;
    }
  }
  const float n = static_cast<float>(cols);
  const float mu = row_sum<kThreads>(s, smem) / n;
  normalize_and_store<T, kThreads, kN>(v, mu, packs, tid, n, eps, gamma, beta, reinterpret_cast<P*>(y + base), smem,
                                       row, mean_out, inv_out);
}

/// Calls f(std::integral_constant<int, N>{}) with the warp kernels' pack slots for rows of
/// `cols` elements: a quarter, half, three quarters or all of kSlots<T>, the fewest that
/// hold the row. (Registers for unused slots cost occupancy: BERT-base's 768-wide fp16 rows
/// fill 3 of 4 slots, and all four took 92 registers, 5 blocks an SM.)
template <typename T, class F>
void with_warp_slots(int64_t cols, F&& f) {
  constexpr int kS = kSlots<T>, kQ = kS / 4;
  static_assert(kQ * 4 == kS, "slots in quarters");
  const int64_t per_lane = (cols / Pack<T>::kSize + 31) / 32;  // packs a lane
  if (per_lane <= kQ) {
    f(std::integral_constant<int, kQ>{});
  } else if (per_lane <= 2 * kQ) {
    f(std::integral_constant<int, 2 * kQ>{});
  } else if (per_lane <= 3 * kQ) {
    f(std::integral_constant<int, 3 * kQ>{});
  } else {
    f(std::integral_constant<int, kS>{});
  }
}

/// Launches row_norm_fast_kernel; the caller checked fast_cols_ok and alignment.
template <typename T>
void launch_row_norm_fast(cudaStream_t stream, const T* x, T* y, const T* gamma, const T* beta, int64_t rows,
                          int64_t cols, float eps, bool rms, float* mean_out, float* inv_out) {
  const int c = static_cast<int>(cols);
  if (cols <= kFastMaxWarpCols) {
    const auto grid = static_cast<unsigned>((rows + kFastWarpRows - 1) / kFastWarpRows);
    with_warp_slots<T>(cols, [&](auto n) {
      row_norm_fast_kernel<T, 32, kFastWarpRows, decltype(n)::value><<<grid, 32 * kFastWarpRows, 0, stream>>>(
          x, y, gamma, beta, rows, c, eps, rms, mean_out, inv_out, reverse_grids());
    });
  } else {
    row_norm_fast_kernel<T, kFastBlockThreads, 1><<<static_cast<unsigned>(rows), kFastBlockThreads, 0, stream>>>(
        x, y, gamma, beta, rows, c, eps, rms, mean_out, inv_out, reverse_grids());
  }
}

/// Launches skip_norm_fast_kernel; the caller checked fast_cols_ok and alignment.
template <typename T>
void launch_skip_norm_fast(cudaStream_t stream, const T* in, RowGather gather, const T* skip, const T* gamma,
                           const T* beta, const T* bias, T* y, float* mean_out, float* inv_out, T* sum_out,
                           int64_t rows, int64_t skip_rows, int64_t cols, float eps) {
  const int c = static_cast<int>(cols);
  if (cols <= kFastMaxWarpCols) {
    const auto grid = static_cast<unsigned>((rows + kFastWarpRows - 1) / kFastWarpRows);
    with_warp_slots<T>(cols, [&](auto n) {
      skip_norm_fast_kernel<T, 32, kFastWarpRows, decltype(n)::value><<<grid, 32 * kFastWarpRows, 0, stream>>>(
          in, gather, skip, gamma, beta, bias, y, mean_out, inv_out, sum_out, rows, skip_rows, c, eps, reverse_grids());
    });
  } else {
    skip_norm_fast_kernel<T, kFastBlockThreads, 1><<<static_cast<unsigned>(rows), kFastBlockThreads, 0, stream>>>(
        in, gather, skip, gamma, beta, bias, y, mean_out, inv_out, sum_out, rows, skip_rows, c, eps, reverse_grids());
  }
}

}  // namespace kiln::cuda::rownorm
