// FusedAttention through cuDNN's fused attention engines (attention_cuda.cuh):
// the operation graph cuDNN's scaled-dot-product-attention engines match,
//   S = Q K^T (fp32)  ->  S * scale  ->  softmax as max / sub / exp / sum / div
//   (plus the log-sum-exp statistics, virtual)  ->  P (the I/O type)  ->  O = P V,
// over the operands' own strides (the views' head split and packed QKV cost nothing),
// ranked by cuDNN's mode-A heuristics and offered to the builder as tactics beside
// the register-resident kernel (flash_mma_cuda.cu), which timing may keep instead.
// On the H100, Hopper's engines (warp-group MMA) run ViT-B/16's attention at batch 256
// (197 tokens, no mask) in ~185 us where the mma.sync kernel takes ~290 (PyTorch's cuDNN
// backend, measured beside it); BERT's masked attention stays with the own kernel (no
// mask graph here: cuDNN measured no faster there).
//
// Offered for fp16/bf16, D == Dv in {64, 128}, no mask, every operand axis one stride
// and 16-byte aligned rows. Graphs and plans are kept per problem (dims and strides; the
// scale is passed by value) for the process, finalized on process-lifetime handles
// (cudnn_backend.h), never inside a stream capture. KILN_ATTENTION_CUDNN=0 offers none.
#include <cuda_fp16.h>
#include <cudnn.h>

#include <mutex>
#include <optional>
#include <vector>

#include "backends/cuda/api.h"
#include "backends/cuda/cudnn_backend.h"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/attention/attention_cuda.cuh"

namespace kiln::ops::attn {
namespace {

using cuda::dnn::Candidate;
using cuda::dnn::Chain;
using cuda::dnn::OpGraph;

constexpr int64_t kUidQ = 1, kUidK = 2, kUidV = 3, kUidO = 4, kUidScale = 5;
constexpr int kMaxCandidates = 4;

bool enabled() {
  static const bool on = !env_is("KILN_ATTENTION_CUDNN", "0");
  return on;
}

// The [B, H, S, D] strides of an operand whose every axis is one stride; false otherwise.
bool plain_strides(const OperandMap& m, const int64_t (&dims)[4], std::vector<int64_t>& s) {
  s.assign(4, 0);
  for (int a = 0; a < 4; ++a) {
    if (m.ax[a].inner_n < dims[a]) return false;
    s[static_cast<size_t>(a)] = m.ax[a].inner_s;
  }
  return s[3] == 1;
}

struct Problem {
  DataType dtype = DataType::kFloat16;
  int64_t B = 0, H = 0, Sq = 0, Sk = 0, D = 0;
  std::vector<int64_t> q, k, v, o;  // strides
};

// The problem cuDNN's graph can express for `g`, or nothing.
std::optional<Problem> problem_of(KernelContext& ctx, const FusedAttentionGeometry& g) {
  const DataType t = ctx.input(0).dtype();
  if (t != DataType::kFloat16 && t != DataType::kBFloat16) return std::nullopt;
  if (g.has_mask || g.D != g.Dv || (g.D != 64 && g.D != 128) || g.Sq < 1 || g.Sk < 1) return std::nullopt;
  Problem p;
  p.dtype = t;
  p.B = g.B, p.H = g.H, p.Sq = g.Sq, p.Sk = g.Sk, p.D = g.D;
  const int64_t qd[4] = {g.B, g.H, g.Sq, g.D}, kd[4] = {g.B, g.H, g.Sk, g.D};
  if (!plain_strides(g.q, qd, p.q) || !plain_strides(g.k, kd, p.k) || !plain_strides(g.v, kd, p.v) ||
      !plain_strides(g.o, qd, p.o))
    return std::nullopt;
  // 16-byte rows, as the register-resident kernel needs them (both dtypes are 2 bytes).
  if (!vec_ok<__half>(g.q, ctx.input(0).data(), g.D) || !vec_ok<__half>(g.k, ctx.input(1).data(), g.D) ||
      !vec_ok<__half>(g.v, ctx.input(2).data(), g.D) || !vec_ok<__half>(g.o, ctx.output(0).data(), g.D))
    return std::nullopt;
  return p;
}

struct Entry {
  std::mutex mu;              ///< guards lazy plan finalization
  cuda::dnn::GraphHandle gh;  ///< finalizes this entry's graph and plans
  OpGraph g;
  std::vector<Candidate> cands;
  std::vector<int64_t> ids;
};

// The graph of problem `p` and its ranked engines (none when cuDNN takes no part of it).
void build(cudnnHandle_t h, const Problem& p, Entry& e) {
  OpGraph& g = e.g;
  const cudnnDataType_t io = cuda::dnn::data_type(p.dtype);  // fp16 or bf16 (problem_of)
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  const int64_t B = p.B, H = p.H, Sq = p.Sq, Sk = p.Sk, D = p.D;
  const std::vector<int64_t> s_dims{B, H, Sq, Sk}, s_str{H * Sq * Sk, Sq * Sk, Sk, 1};
  const std::vector<int64_t> r_dims{B, H, Sq, 1}, r_str{H * Sq, Sq, 1, 1};
  cudnnBackendDescriptor_t Q = g.tensor(kUidQ, io, {B, H, Sq, D}, p.q, false);
  // K^T: K's [B, H, Sk, D] with the last two dims (and strides) swapped.
  cudnnBackendDescriptor_t KT = g.tensor(kUidK, io, {B, H, D, Sk}, {p.k[0], p.k[1], p.k[3], p.k[2]}, false);
  cudnnBackendDescriptor_t V = g.tensor(kUidV, io, {B, H, Sk, D}, p.v, false);
  cudnnBackendDescriptor_t O = g.tensor(kUidO, io, {B, H, Sq, D}, p.o, false);
  cudnnBackendDescriptor_t scale = g.scalar(kUidScale, 0.f, 4);
  int64_t uid = 100;
  auto virt = [&](cudnnDataType_t t, const std::vector<int64_t>& dims, const std::vector<int64_t>& str) {
    return g.tensor(uid++, t, dims, str, true);
  };
  cudnnBackendDescriptor_t S = virt(f32, s_dims, s_str);
  g.matmul(Q, KT, S);
  cudnnBackendDescriptor_t S1 = virt(f32, s_dims, s_str);
  g.pointwise(CUDNN_POINTWISE_MUL, S, scale, S1);
  cudnnBackendDescriptor_t M = virt(f32, r_dims, r_str);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, S1, M);
  cudnnBackendDescriptor_t T = virt(f32, s_dims, s_str);
  g.pointwise(CUDNN_POINTWISE_SUB, S1, M, T);
  cudnnBackendDescriptor_t E = virt(f32, s_dims, s_str);
  g.pointwise(CUDNN_POINTWISE_EXP, T, nullptr, E);
  cudnnBackendDescriptor_t Z = virt(f32, r_dims, r_str);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, E, Z);
  // The log-sum-exp statistics (virtual: inference keeps none) complete the pattern.
  cudnnBackendDescriptor_t L = virt(f32, r_dims, r_str);
  g.pointwise(CUDNN_POINTWISE_LOG, Z, nullptr, L);
  cudnnBackendDescriptor_t stats = virt(f32, r_dims, r_str);
  g.pointwise(CUDNN_POINTWISE_ADD, M, L, stats);
  cudnnBackendDescriptor_t P = virt(io, s_dims, s_str);
  g.pointwise(CUDNN_POINTWISE_DIV, E, Z, P);
  g.matmul(P, V, O);
  if (!g.finalize(h)) return;
  e.cands = cuda::dnn::rank_engines(g.graph.d, cuda::dnn::Numerics{}, kMaxCandidates, 1, kCudnnSdpaTacticBase,
                                    kCudnnSdpaTacticBase - 1);
  for (const Candidate& c : e.cands) e.ids.push_back(c.id);
}

std::vector<int64_t> key_of(const KernelContext& ctx, const Problem& p) {
  const cuda::Env* env = ctx.cuda_env();
  std::vector<int64_t> k{env->device, static_cast<int64_t>(p.dtype),
                         p.B,         p.H,
                         p.Sq,        p.Sk,
                         p.D,         static_cast<int64_t>(env->workspace_bytes)};
  for (const auto* s : {&p.q, &p.k, &p.v, &p.o}) k.insert(k.end(), s->begin(), s->end());
  return k;
}

cuda::dnn::GraphCache<Entry>& cache() {
  static auto* c = new cuda::dnn::GraphCache<Entry>();
  return *c;
}

bool capturing(KernelContext& ctx) { return cuda::dnn::capturing(cuda::stream_of(ctx)); }

// The entry of `p`, built the first time (not inside a capture: null then).
Entry* entry_for(KernelContext& ctx, const Problem& p) {
  return cache().get(key_of(ctx, p), [&](Entry& fresh) {
    if (capturing(ctx)) return false;
    fresh.gh.init(ctx.cuda_env()->device, false, static_cast<cudnnHandle_t>(ctx.cuda_env()->cudnn));
    {
      std::lock_guard<std::mutex> lock(fresh.gh.mu());
      build(fresh.gh.handle(), p, fresh);
    }
    cudaGetLastError();
    return true;
  });
}

}  // namespace

std::vector<int64_t> cudnn_sdpa_candidates(KernelContext& ctx, const FusedAttentionGeometry& g) {
  if (!enabled() || !ctx.cuda_env()) return {};
  const std::optional<Problem> p = problem_of(ctx, g);
  if (!p) return {};
  Entry* e = entry_for(ctx, *p);
  return e ? e->ids : std::vector<int64_t>{};
}

Result<bool> cudnn_sdpa_run(KernelContext& ctx, const FusedAttentionGeometry& g, int64_t tactic) {
  if (!enabled() || !ctx.cuda_env()) return false;
  const std::optional<Problem> p = problem_of(ctx, g);
  if (!p) return false;
  Entry* e = entry_for(ctx, *p);
  if (!e) return false;
  Candidate* cand = nullptr;
  for (Candidate& c : e->cands)
    if (c.id == tactic) cand = &c;
  if (!cand) return false;
  const cuda::Env* env = ctx.cuda_env();
  {
    std::lock_guard<std::mutex> lock(e->mu);
    // Finalizing may load a module: never inside a capture (the executor runs once eagerly first).
    if (!cand->tried && capturing(ctx)) return false;
    if (!cand->tried) {
      std::lock_guard<std::mutex> finalizing(e->gh.mu());
      cuda::dnn::ready(e->gh.handle(), *cand, env->workspace_bytes);
    }
    if (!cand->plan.d) return false;
  }
  const size_t es = 2;  // fp16 / bf16
  auto at = [&](const void* base, const OperandMap& m) {
    return static_cast<void*>(static_cast<char*>(const_cast<void*>(base)) + m.offset * static_cast<int64_t>(es));
  };
  float scale = g.scale;
  const std::vector<int64_t> uids{kUidQ, kUidK, kUidV, kUidO, kUidScale};
  const std::vector<void*> ptrs{at(ctx.input(0).data(), g.q), at(ctx.input(1).data(), g.k),
                                at(ctx.input(2).data(), g.v), at(ctx.output(0).data(), g.o), &scale};
  // A refusal here (none seen) leaves the launch to the register-resident kernel.
  return cuda::dnn::execute(static_cast<cudnnHandle_t>(env->cudnn), cand->plan.d, uids, ptrs, env->workspace).ok();
}

}  // namespace kiln::ops::attn
