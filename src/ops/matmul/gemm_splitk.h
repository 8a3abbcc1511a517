// kiln's own GEMM for few rows (BERT/ViT at batch 1, decoder steps): row-major
// Y[m, n] = act(A[m, k] B[k, n] + bias[n]) + residual[m, n] in FP16/BF16 on mma.sync
// tensor cores, with K split over the CTAs of a thread-block cluster that sum their
// partial tiles through distributed shared memory (Hopper), so that a product of
// 128 rows still fills the GPU. cuBLASLt runs such products on a few dozen CTAs, each
// walking all of K (BERT-base's fc2 at batch 1: 48 CTAs over K = 3072).
//
// It is a tactic of the cuda.cublaslt kernel (matmul_cuda.cu), offered only with
// KILN_SPLITK_GEMM=1: the candidates below join cuBLASLt's list after its first choice,
// for products of at most kMaxRows rows, and the builder times them like the others.
// Measured on the H100 (bench/RESULTS.md, session 12) it loses to cuBLASLt's Hopper
// (wgmma) kernels at every shape tried, BERT-base's batch-1 products by 1.1-1.8x and
// decoder-step products (m = 1-64, k and n 4096-11008) by 5-60%: mma.sync issues about
// five times the instructions a warp, and short K shares leave the warps latency-bound.
// It stays as the tested frame (planning, cluster reduction, epilogue) for a
// wgmma/TMA main loop. The planning is plain C++ so that it is tested without a GPU;
// gemm_splitk_cuda.cu holds the kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/env.h"
#include "kiln/types.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops::matmul::splitk {

inline constexpr int kBN = 64;            ///< columns of a CTA tile
inline constexpr int kBK = 64;            ///< K of one pipeline stage
inline constexpr int kMaxSplit = 8;       ///< CTAs of a cluster (the portable maximum)
inline constexpr int64_t kMaxRows = 256;  ///< products offered the tactics (m after folding the batch)

/// Tactic IDs: kTacticBase + (rows of a CTA tile / 32) * 16 + waves (CTAs per SM aimed at).
inline constexpr int64_t kTacticBase = int64_t{1} << 52;

/// Whether the tactics are offered (KILN_SPLITK_GEMM=1); a requested one runs regardless.
inline bool offered() { return env_is("KILN_SPLITK_GEMM", "1"); }

inline bool is_tactic(int64_t id) { return id >= kTacticBase && id < kTacticBase + 256; }
inline int64_t tactic_id(int bm, int waves) { return kTacticBase + (bm / 32) * 16 + waves; }
inline int tactic_bm(int64_t id) { return static_cast<int>((id - kTacticBase) / 16) * 32; }
inline int tactic_waves(int64_t id) { return static_cast<int>((id - kTacticBase) % 16); }

/// One product in row-major terms; bias (length n) and residual (m x n) may be null.
struct Problem {
  DataType dtype = DataType::kFloat16;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  void* y = nullptr;
  BiasActivation act = BiasActivation::kNone;
};

/// How a tactic runs a problem: a grid of n_tiles x m_tiles x split CTAs, each cluster
/// of `split` CTAs sharing one output tile, CTA z summing K blocks [z kps, (z+1) kps).
struct Launch {
  int bm = 64;
  int64_t n_tiles = 0, m_tiles = 0;
  int split = 1;
  int64_t kps = 0;  ///< K blocks (of kBK) per CTA; every CTA of a cluster has at least one
};

/// The kernel's requirements: 16-bit floats, rows of 16-byte chunks (n and k multiples
/// of 8), 16-byte aligned buffers, a grid CUDA can launch. Anything else runs on cuBLASLt.
inline bool takes(const Problem& p) {
  auto aligned = [](const void* q) { return q == nullptr || reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  return (p.dtype == DataType::kFloat16 || p.dtype == DataType::kBFloat16) && p.m > 0 && p.n > 0 && p.k > 0 &&
         p.n % 8 == 0 && p.k % 8 == 0 && (p.m + 31) / 32 <= 65535 && p.a && p.b && p.y && aligned(p.a) &&
         aligned(p.b) && aligned(p.y) && aligned(p.bias) && aligned(p.residual);
}

/// The grid of tactic `id` for p on a GPU of `sms` SMs: split K until the tiles times
/// the split reach `waves` CTAs per SM (at most kMaxSplit), then even the K blocks out
/// so that no CTA of a cluster is idle.
inline Launch plan(const Problem& p, int64_t id, int sms) {
  Launch l;
  l.bm = tactic_bm(id);
  l.n_tiles = (p.n + kBN - 1) / kBN;
  l.m_tiles = (p.m + l.bm - 1) / l.bm;
  const int64_t kb = (p.k + kBK - 1) / kBK, tiles = l.n_tiles * l.m_tiles;
  const int64_t want = std::max<int64_t>(1, static_cast<int64_t>(tactic_waves(id)) * sms / tiles);
  const int64_t split = std::min<int64_t>({want, kMaxSplit, kb});
  l.kps = (kb + split - 1) / split;
  l.split = static_cast<int>((kb + l.kps - 1) / l.kps);
  return l;
}

/// The tactics offered for p (none past kMaxRows rows or where `takes` says no): tiles
/// of 32 rows for m <= 32, else 64, each aiming at one and two CTAs per SM, and tiles of
/// 128 rows at one per SM for m > 64.
inline std::vector<int64_t> candidates(const Problem& p) {
  if (!takes(p) || p.m > kMaxRows) return {};
  const int bm = p.m <= 32 ? 32 : 64;
  std::vector<int64_t> ids{tactic_id(bm, 1), tactic_id(bm, 2)};
  if (p.m > 64) ids.push_back(tactic_id(128, 1));
  return ids;
}

/// Enqueues tactic `id` (is_tactic, and `takes(p)`) on `stream` (a cudaStream_t);
/// returns the launch's cudaError_t (0 on success). Defined in gemm_splitk_cuda.cu.
int launch(const Problem& p, int64_t id, int device, void* stream);

}  // namespace kiln::ops::matmul::splitk
