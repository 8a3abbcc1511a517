// CUDA kernels of the matmul family through cuBLASLt: MatMul (numpy batching),
// Gemm (C broadcast; a row-vector C with beta = 1 rides the BIAS epilogue) and
// com.microsoft FusedMatMul. Row-major D = op(A) op(B) is computed as the
// column-major D^T = op(B)^T op(A)^T, so no layout order attributes are needed.
// Tactics (docs/tactics.md) are the heuristic's top configurations, each ID a
// hash of the algorithm's configuration attributes, and with KILN_SPLITK_GEMM=1 for
// products of few rows kiln's own split-K GEMM (gemm_splitk.h) after the heuristic's first.
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/cuda/api.h"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "ops/matmul/bias_act.cuh"
#include "ops/matmul/gemm_splitk.h"
#include "ops/matmul/lt_config.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops {
namespace {
namespace lt_config = matmul::lt_config;

bool is_cuda_float(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

cudaDataType_t lt_type(DataType t) {
  return t == DataType::kFloat32 ? CUDA_R_32F : t == DataType::kFloat16 ? CUDA_R_16F : CUDA_R_16BF;
}

// Largest power of two (<= 256) dividing the address: cuBLASLt's heuristics
// assume 256-byte aligned buffers unless told otherwise.
uint32_t alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (v % a) != 0) a /= 2;
  return a;
}

/// One cuBLASLt problem in kiln's row-major terms: D[b] (m x n) = alpha op(A[b]) op(B[b]) + beta C[b] (+ bias[n]).
struct LtProblem {
  DataType dtype = DataType::kFloat32;
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;  ///< element strides between batches (0 = shared)
  float alpha = 1.f, beta = 0.f;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* c = nullptr;  ///< laid out like D; may equal d; ignored when beta == 0
  void* d = nullptr;
  const void* bias = nullptr;                                  ///< length n, same dtype; BIAS epilogue
  matmul::BiasActivation act = matmul::BiasActivation::kNone;  ///< RELU / GELU epilogue
  int rank = -1;  ///< >= 0: the heuristic's rank-th configuration (the 1x1 convs' GEMM tactics), not kiln.tactic's
};

struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  std::vector<int64_t> tactics;  ///< config IDs of the heuristic's results, best first
  std::mutex mu;                 // the bias pointer is set on `op` per launch
  ~LtPlan() {
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

std::mutex g_plans_mu;
std::map<std::vector<int64_t>, std::unique_ptr<LtPlan>>& plans() {
  static auto* m = new std::map<std::vector<int64_t>, std::unique_ptr<LtPlan>>();
  return *m;
}

// Heuristic results asked for: every candidate opt level 5 may time.
constexpr int kLtMaxAlgos = 32;

// A stable ID of an algorithm configuration (algo, tile, stages, split-K, ...):
// the same configuration found in another problem's list gets the same ID.
int64_t algo_config_id(const cublasLtMatmulAlgo_t& algo) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&h](const unsigned char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  for (int attr = CUBLASLT_ALGO_CONFIG_ID; attr <= CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID; ++attr) {
    const auto a = static_cast<cublasLtMatmulAlgoConfigAttributes_t>(attr);
    unsigned char buf[16] = {};
    size_t size = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&algo, a, nullptr, 0, &size) != CUBLAS_STATUS_SUCCESS ||
        size > sizeof buf || cublasLtMatmulAlgoConfigGetAttribute(&algo, a, buf, size, &size) != CUBLAS_STATUS_SUCCESS)
      size = 0;
    const unsigned char tag[2] = {static_cast<unsigned char>(attr), static_cast<unsigned char>(size)};
    mix(tag, 2);
    mix(buf, size);
  }
  return static_cast<int64_t>(h >> 2);  // non-negative: -1 means "no tactic"
}

// An algorithm's configuration (lt_config.h's fields).
lt_config::Config config_of(const cublasLtMatmulAlgo_t& algo) {
  lt_config::Config c;
  size_t w = 0;
  int32_t id = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
  c.algo = id;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &c.tile, sizeof c.tile, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &c.stages, sizeof c.stages, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &c.cluster, sizeof c.cluster, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &c.swizzle, sizeof c.swizzle, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &c.custom, sizeof c.custom, &w);
  return c;
}

// The byte alignments of a problem's operands in cuBLASLt's terms (its A is kiln's B).
struct LtAlign {
  uint32_t a = 0, b = 0, cd = 0;
};

// Configuration c as an algorithm for the plan's problem, where the library accepts it within
// ws_bytes of workspace (cublasLtMatmulAlgoCheck) and the operands are aligned as the
// algorithm needs (AlgoCheck sees no pointers; the heuristic was told them).
bool enumerated_algo(cublasLtHandle_t lt, cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                     cublasLtMatrixLayout_t lc, cublasComputeType_t compute, cudaDataType_t dt,
                     const lt_config::Config& c, size_t ws_bytes, const LtAlign& have, cublasLtMatmulAlgo_t& algo,
                     size_t& workspace) {
  if (cublasLtMatmulAlgoInit(lt, compute, CUDA_R_32F, dt, dt, dt, dt, c.algo, &algo) != CUBLAS_STATUS_SUCCESS)
    return false;
  const auto needs = [&](cublasLtMatmulAlgoCapAttributes_t a, uint32_t got) {
    uint32_t need = 0;
    size_t w = 0;
    return cublasLtMatmulAlgoCapGetAttribute(&algo, a, &need, sizeof need, &w) == CUBLAS_STATUS_SUCCESS && need <= got;
  };
  if (!needs(CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_A_BYTES, have.a) ||
      !needs(CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_B_BYTES, have.b) ||
      !needs(CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_C_BYTES, have.cd) ||
      !needs(CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_D_BYTES, have.cd))
    return false;
  const auto set = [&](cublasLtMatmulAlgoConfigAttributes_t a, const void* v, size_t n) {
    return cublasLtMatmulAlgoConfigSetAttribute(&algo, a, v, n) == CUBLAS_STATUS_SUCCESS;
  };
  if (!set(CUBLASLT_ALGO_CONFIG_TILE_ID, &c.tile, sizeof c.tile) ||
      !set(CUBLASLT_ALGO_CONFIG_STAGES_ID, &c.stages, sizeof c.stages) ||
      !set(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &c.cluster, sizeof c.cluster) ||
      !set(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &c.swizzle, sizeof c.swizzle) ||
      !set(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &c.custom, sizeof c.custom))
    return false;
  cublasLtMatmulHeuristicResult_t check{};
  if (cublasLtMatmulAlgoCheck(lt, op, la, lb, lc, lc, &algo, &check) != CUBLAS_STATUS_SUCCESS ||
      check.state != CUBLAS_STATUS_SUCCESS || check.workspaceSize > ws_bytes)
    return false;
  workspace = check.workspaceSize;
  return true;
}

#define KILN_LT_CHECK(call)                                                                                        \
  do {                                                                                                             \
    cublasStatus_t st_ = (call);                                                                                   \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                              \
      return ctx.error(                                                                                            \
          std::string(#call).substr(0, std::string(#call).find('(')) + " failed: " + cublasLtGetStatusString(st_), \
          ErrorCode::kInternal);                                                                                   \
  } while (0)

// While the builder collects candidates of a large problem: each of the heuristic's
// configurations (algorithm, stages, cluster, swizzle, custom option) with the other tiles the
// library accepts, after the heuristic's own list (plan.tactics): first every configuration's
// best tile by the wave model, then every second best, and so on, so that the default level's
// budget times the likeliest of each (lt_config.h).
void add_enumerated_tiles(cublasLtHandle_t lt, LtPlan& plan, const LtProblem& p, cublasComputeType_t compute,
                          cudaDataType_t dt, size_t ws_bytes, const LtAlign& have,
                          const cublasLtMatmulHeuristicResult_t* results, int found, int device) {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  std::vector<std::vector<std::pair<double, int64_t>>> per_base;
  std::vector<int64_t> bases;  // encoded with tile 0
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    lt_config::Config base = config_of(results[i].algo);
    base.tile = 0;
    int64_t key = 0;
    if (!lt_config::encode(base, key) || std::find(bases.begin(), bases.end(), key) != bases.end()) continue;
    bases.push_back(key);
    auto& list = per_base.emplace_back();
    for (const lt_config::Tile& t : lt_config::kTiles) {
      lt_config::Config c = base;
      c.tile = t.id;
      int64_t id = 0;
      cublasLtMatmulAlgo_t algo;
      size_t ws = 0;
      if (!lt_config::encode(c, id) ||
          !enumerated_algo(lt, plan.op, plan.la, plan.lb, plan.lc, compute, dt, c, ws_bytes, have, algo, ws) ||
          std::find(plan.tactics.begin(), plan.tactics.end(), algo_config_id(algo)) != plan.tactics.end())
        continue;
      list.push_back({lt_config::wave_cost(t, p.m, p.n, sms), id});
    }
    std::stable_sort(list.begin(), list.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  }
  for (size_t rank = 0;; ++rank) {
    bool any = false;
    for (const auto& list : per_base)
      if (rank < list.size()) plan.tactics.push_back(list[rank].second), any = true;
    if (!any) break;
  }
}

// `tactic` >= 0 asks for that configuration; when this problem's list lacks it,
// the heuristic's first choice runs (no error: tactics are timed at the opt
// shapes and alignments and may not exist at others).
Status build_plan(KernelContext& ctx, const LtProblem& p, cublasComputeType_t compute, size_t ws_bytes,
                  uint32_t align_a, uint32_t align_b, uint32_t align_cd, int64_t tactic, LtPlan& plan) {
  auto lt = static_cast<cublasLtHandle_t>(ctx.cuda_env()->cublaslt);
  const cudaDataType_t dt = lt_type(p.dtype);
  KILN_LT_CHECK(cublasLtMatmulDescCreate(&plan.op, compute, CUDA_R_32F));
  // cuBLASLt's A is kiln's B (stored n x k col-major, or k x n when transposed) and vice versa.
  cublasOperation_t op_a = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_b = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  KILN_LT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  KILN_LT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (p.bias || p.act != matmul::BiasActivation::kNone) {
    using matmul::BiasActivation;
    const bool relu = p.act == BiasActivation::kRelu, gelu = p.act == BiasActivation::kGeluTanh;
    cublasLtEpilogue_t epi = p.bias ? (relu   ? CUBLASLT_EPILOGUE_RELU_BIAS
                                       : gelu ? CUBLASLT_EPILOGUE_GELU_BIAS
                                              : CUBLASLT_EPILOGUE_BIAS)
                                    : (relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_GELU);
    KILN_LT_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    if (p.bias)
      KILN_LT_CHECK(
          cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)));
  }
  const uint64_t a_rows = p.trans_b ? p.k : p.n, a_cols = p.trans_b ? p.n : p.k;
  const uint64_t b_rows = p.trans_a ? p.m : p.k, b_cols = p.trans_a ? p.k : p.m;
  KILN_LT_CHECK(cublasLtMatrixLayoutCreate(&plan.la, dt, a_rows, a_cols, static_cast<int64_t>(a_rows)));
  KILN_LT_CHECK(cublasLtMatrixLayoutCreate(&plan.lb, dt, b_rows, b_cols, static_cast<int64_t>(b_rows)));
  KILN_LT_CHECK(cublasLtMatrixLayoutCreate(&plan.lc, dt, p.n, p.m, p.n));
  if (p.batch > 1) {
    const int32_t count = static_cast<int32_t>(p.batch);
    const int64_t sa = p.stride_b, sb = p.stride_a, sd = p.stride_d;
    for (auto [l, s] : {std::pair{plan.la, sa}, std::pair{plan.lb, sb}, std::pair{plan.lc, sd}}) {
      KILN_LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      KILN_LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s, sizeof(s)));
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  KILN_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>, decltype(&cublasLtMatmulPreferenceDestroy)>
      pref_guard(pref, cublasLtMatmulPreferenceDestroy);
  KILN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                     sizeof(ws_bytes)));
  // Again swapped: the preference's A is kiln's B.
  KILN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_b,
                                                     sizeof(align_b)));
  KILN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_a,
                                                     sizeof(align_a)));
  KILN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_cd,
                                                     sizeof(align_cd)));
  KILN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_cd,
                                                     sizeof(align_cd)));
  cublasLtMatmulHeuristicResult_t results[kLtMaxAlgos] = {};
  int found = 0;
  KILN_LT_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, plan.op, plan.la, plan.lb, plan.lc, plan.lc, pref, kLtMaxAlgos,
                                               results, &found));
  const cublasLtMatmulHeuristicResult_t* pick = nullptr;
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    const int64_t id = algo_config_id(results[i].algo);
    if (std::find(plan.tactics.begin(), plan.tactics.end(), id) != plan.tactics.end()) continue;
    plan.tactics.push_back(id);
    if (!pick || (p.rank < 0 && id == tactic) || static_cast<int>(plan.tactics.size()) - 1 == p.rank)
      pick = &results[i];
  }
  if (!pick)
    return ctx.error("cublasLtMatmulAlgoGetHeuristic found no algorithm for m=" + std::to_string(p.m) +
                         " n=" + std::to_string(p.n) + " k=" + std::to_string(p.k),
                     ErrorCode::kUnsupported);
  plan.algo = pick->algo;
  plan.workspace = pick->workspaceSize;
  // An enumerated configuration (lt_config.h) where the library accepts it for this problem;
  // else the heuristic's first choice stays.
  const LtAlign have{align_b, align_a, align_cd};
  if (lt_config::is_enumerated(tactic)) {
    cublasLtMatmulAlgo_t algo;
    size_t ws = 0;
    const lt_config::Config c = lt_config::decode(tactic);
    if (enumerated_algo(lt, plan.op, plan.la, plan.lb, plan.lc, compute, dt, c, ws_bytes, have, algo, ws))
      plan.algo = algo, plan.workspace = ws;
  }
  // FP16 / BF16 only: what session 20 probed and GPU-tested (FP32 / TF32 keep the heuristic's list).
  if (cuda::collecting_tactics() && p.dtype != DataType::kFloat32 && lt_config::offered(p.m, p.n, p.k, p.batch))
    add_enumerated_tiles(lt, plan, p, compute, dt, ws_bytes, have, results, found, ctx.cuda_env()->device);
  return Status();
}

/// Enqueues one cuBLASLt matmul; descriptors and the chosen algorithm are cached per problem shape.
/// `own`: kiln's split-K tactics for the problem, reported after cuBLASLt's first choice.
Status lt_matmul(KernelContext& ctx, const LtProblem& p, const std::vector<int64_t>& own = {}) {
  const cuda::Env* env = ctx.cuda_env();
  const bool tf32 = p.dtype == DataType::kFloat32 && env->allow_tf32 && ctx.attrs().get_int(kExactFp32Attr, 0) == 0;
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  // Batched matrices start at base + i * stride: their alignment is the lesser of both.
  const uintptr_t es = dtype_size(p.dtype);
  auto align = [&](const void* ptr, int64_t stride) {
    uintptr_t v = reinterpret_cast<uintptr_t>(ptr);
    if (p.batch > 1) v |= static_cast<uintptr_t>(stride) * es;
    return alignment_of(reinterpret_cast<const void*>(v));
  };
  const uint32_t align_a = align(p.a, p.stride_a), align_b = align(p.b, p.stride_b);
  uint32_t align_cd = align(p.d, p.stride_d);
  if (p.beta != 0.f && p.c) align_cd = std::min(align_cd, align(p.c, p.stride_d));
  std::vector<int64_t> key{env->device,
                           static_cast<int64_t>(p.dtype),
                           compute,
                           p.trans_a,
                           p.trans_b,
                           p.m,
                           p.n,
                           p.k,
                           p.batch,
                           p.batch > 1 ? p.stride_a : 0,
                           p.batch > 1 ? p.stride_b : 0,
                           p.batch > 1 ? p.stride_d : 0,
                           p.bias ? alignment_of(p.bias) : 0,
                           static_cast<int64_t>(p.act),
                           p.beta != 0.f && p.c,
                           align_a,
                           align_b,
                           align_cd,
                           static_cast<int64_t>(env->workspace_bytes),
                           p.rank,
                           p.rank >= 0 ? -1 : ctx.attrs().get_int(kTacticAttr, -1)};
  LtPlan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_plans_mu);
    auto it = plans().find(key);
    if (it != plans().end()) plan = it->second.get();
  }
  if (!plan) {
    auto fresh = std::make_unique<LtPlan>();
    KILN_RETURN_IF_ERROR(
        build_plan(ctx, p, compute, env->workspace_bytes, align_a, align_b, align_cd, key.back(), *fresh));
    std::lock_guard<std::mutex> lock(g_plans_mu);
    auto [it, inserted] = plans().emplace(key, std::move(fresh));
    plan = it->second.get();
  }
  if (own.empty()) {
    cuda::report_tactics(plan->tactics);
  } else {
    std::vector<int64_t> ids(plan->tactics.begin(), plan->tactics.begin() + 1);
    ids.insert(ids.end(), own.begin(), own.end());
    ids.insert(ids.end(), plan->tactics.begin() + 1, plan->tactics.end());
    cuda::report_tactics(ids);
  }
  std::lock_guard<std::mutex> lock(plan->mu);
  if (p.bias)
    KILN_LT_CHECK(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias, sizeof(p.bias)));
  const float alpha = p.alpha, beta = p.beta;
  const void* c = p.beta != 0.f && p.c ? p.c : p.d;
  // Under CUDA graph capture a region of its own, so its memset can be folded (api.h).
  cuda::LtWorkspaces::Call call{env->workspace};
  if (env->lt) call = env->lt->begin(env->stream, plan->workspace, env->workspace);
  KILN_LT_CHECK(cublasLtMatmul(static_cast<cublasLtHandle_t>(env->cublaslt), plan->op, &alpha, p.b, plan->la, p.a,
                               plan->lb, &beta, c, plan->lc, p.d, plan->lc, &plan->algo, call.workspace,
                               plan->workspace, cuda::stream_of(ctx)));
  if (env->lt) KILN_RETURN_IF_ERROR(env->lt->end(call, env->stream).with_context("cuBLASLt's workspace memset"));
  return Status();
}

// ---------------------------------------------------------------- MatMul / FusedMatMul

// Offsets that are i * stride for i in [first, first + count) relative to offsets[first].
bool affine(const std::vector<int64_t>& off, int64_t first, int64_t count, int64_t& stride) {
  stride = count > 1 ? off[first + 1] - off[first] : 0;
  for (int64_t i = 1; i < count; ++i)
    if (off[first + i] - off[first] != i * stride) return false;
  return true;
}

// y = act(y + bias) + residual (bias and residual may be null; a residual comes without an activation).
template <typename T>
__global__ void bias_act_lastdim_kernel(T* y, const T* bias, const T* residual, matmul::BiasActivation act, int64_t n,
                                        int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = cuda::from_f<T>(matmul::bias_activate(cuda::to_f(y[i]) + (bias ? cuda::to_f(bias[i % n]) : 0.f), act) +
                           (residual ? cuda::to_f(residual[i]) : 0.f));
}

Status bias_act_lastdim(KernelContext& ctx, const void* bias, const void* residual, matmul::BiasActivation act,
                        Tensor& y) {
  if (!bias && !residual && act == matmul::BiasActivation::kNone) return Status();
  const int64_t n = y.dims().back(), total = y.numel();
  KILN_CUDA_DISPATCH_FLOAT(y.dtype(), T, {
    bias_act_lastdim_kernel<T><<<cuda::grid_for(total), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
        y.data_as<T>(), static_cast<const T*>(bias), static_cast<const T*>(residual), act, n, total);
  });
  return cuda::launch_status(ctx, "matmul_bias_activation");
}

// `bias` (length n, or null), `act` and `residual` (Y's shape, or null) ride the
// epilogue when the product is one call: the residual as C with beta = 1.
Status run_matmul(KernelContext& ctx, bool trans_a, bool trans_b, float alpha, const void* bias = nullptr,
                  matmul::BiasActivation act = matmul::BiasActivation::kNone, const void* residual = nullptr) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Tensor& y = ctx.output(0);
  if (a.dtype() != b.dtype() || !is_cuda_float(a.dtype())) return ctx.error("A and B must share a float dtype");
  auto g = matmul::matmul_dims(a.dims(), b.dims(), trans_a, trans_b);
  if (!g.ok()) return ctx.error(g.status().message());
  if (y.numel() == 0) return Status();
  const size_t es = dtype_size(a.dtype());
  if (g->k == 0) {
    cudaMemsetAsync(y.data(), 0, y.nbytes(), cuda::stream_of(ctx));
    KILN_RETURN_IF_ERROR(cuda::launch_status(ctx, "matmul_zero"));
    return bias_act_lastdim(ctx, bias, residual, act, y);
  }
  LtProblem p;
  p.dtype = a.dtype();
  p.trans_a = g->trans_a;
  p.trans_b = g->trans_b;
  p.k = g->k;
  p.n = g->n;
  p.alpha = alpha;
  const int64_t batch = g->batch();
  if (g->folds_into_m()) {
    // B shared, A contiguous: one [batch * m, k] x [k, n] product.
    p.m = g->m * batch;
    p.a = a.data();
    p.b = b.data();
    p.d = y.data();
    p.bias = bias;
    p.act = act;
    if (residual) {
      p.c = residual;
      p.beta = 1.f;
    }
    // Few rows, KILN_SPLITK_GEMM=1: kiln's split-K GEMM is a candidate too (Hopper clusters; no
    // transposes or scale). Opt-in: on the H100 it timed slower than cuBLASLt's first choice at
    // every shape tried (docs/tactics.md). A requested split-K tactic runs regardless.
    std::vector<int64_t> own;
    if (!p.trans_a && !p.trans_b && alpha == 1.f && ctx.cuda_env()->cc_major >= 9) {
      const matmul::splitk::Problem sp{p.dtype, p.m, p.n, p.k, p.a, p.b, bias, residual, p.d, act};
      const int64_t tactic = ctx.attrs().get_int(kTacticAttr, -1);
      if (matmul::splitk::is_tactic(tactic) && matmul::splitk::takes(sp)) {
        const int e = matmul::splitk::launch(sp, tactic, ctx.cuda_env()->device, ctx.cuda_env()->stream);
        if (e != 0)
          return ctx.error(
              std::string("split-K GEMM launch failed: ") + cudaGetErrorString(static_cast<cudaError_t>(e)),
              ErrorCode::kInternal);
        return cuda::launch_status(ctx, "splitk_gemm");
      }
      if (matmul::splitk::offered()) own = matmul::splitk::candidates(sp);
    }
    return lt_matmul(ctx, p, own);
  }
  p.m = g->m;
  p.stride_d = g->m * g->n;
  // Largest run of batches that is one strided-batched call: every run of that
  // length must have the same strides (runs follow the trailing batch dims).
  const int64_t batch_rank = static_cast<int64_t>(g->out.size()) - (a.rank() != 1 ? 1 : 0) - (b.rank() != 1 ? 1 : 0);
  std::vector<int64_t> candidates;  // suffix products of the batch dims, ascending
  for (int64_t len = 1, d = batch_rank - 1; d >= 0; --d) {
    len *= g->out[d];
    candidates.push_back(len);
  }
  int64_t run = 1;
  for (int64_t len : candidates) {
    if (len <= run || batch % len != 0) continue;
    int64_t sa = 0, sb = 0;
    bool ok = affine(g->a_offsets, 0, len, sa) && affine(g->b_offsets, 0, len, sb);
    for (int64_t first = len; ok && first < batch; first += len) {
      int64_t ta = 0, tb = 0;
      ok = affine(g->a_offsets, first, len, ta) && affine(g->b_offsets, first, len, tb) && ta == sa && tb == sb;
    }
    if (ok) run = len;
  }
  for (int64_t first = 0; first < batch; first += run) {
    p.batch = run;
    if (run > 1) {
      affine(g->a_offsets, first, run, p.stride_a);
      affine(g->b_offsets, first, run, p.stride_b);
    }
    p.a = static_cast<const char*>(a.data()) + g->a_offsets[first] * es;
    p.b = static_cast<const char*>(b.data()) + g->b_offsets[first] * es;
    p.d = static_cast<char*>(y.data()) + first * g->m * g->n * es;
    KILN_RETURN_IF_ERROR(lt_matmul(ctx, p));
  }
  return bias_act_lastdim(ctx, bias, residual, act, y);
}

Status matmul_cuda(KernelContext& ctx) { return run_matmul(ctx, false, false, 1.f); }

Status fused_matmul_cuda(KernelContext& ctx) {
  return run_matmul(ctx, ctx.attrs().get_int("transA", 0) != 0, ctx.attrs().get_int("transB", 0) != 0,
                    ctx.attrs().get_float("alpha", 1.f));
}

bool applies_matmul(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 2 || !is_cuda_float(inputs[0].dtype) || inputs[1].dtype != inputs[0].dtype) return false;
  if (node.attrs.get_int("transBatchA", 0) != 0 || node.attrs.get_int("transBatchB", 0) != 0) return false;
  return true;
}

Status matmul_bias_cuda(KernelContext& ctx) {
  const Tensor& bias = ctx.input(2);
  const Tensor& y = ctx.output(0);
  if (bias.dtype() != y.dtype() || bias.rank() != 1 || y.rank() == 0 || bias.numel() != y.dims().back())
    return ctx.error("bias must be 1-D with the output's last dim and dtype");
  KILN_ASSIGN_OR_RETURN(matmul::BiasActivation act, matmul::bias_activation(ctx.attrs()));
  KILN_ASSIGN_OR_RETURN(const Tensor* residual, matmul::residual_input(ctx, y, act));
  return run_matmul(ctx, false, false, 1.f, bias.data(), act, residual ? residual->data() : nullptr);
}

bool applies_matmul_bias(const ir::Node& node, const std::vector<TensorType>& inputs) {
  return inputs.size() >= 3 && inputs[2].dtype == inputs[0].dtype && applies_matmul(node, inputs) &&
         matmul::bias_activation(node.attrs).ok() &&
         (inputs.size() < 4 || inputs[3].dtype == DataType::kUndefined || inputs[3].dtype == inputs[0].dtype);
}

// ---------------------------------------------------------------- Gemm

// Y[i, j] = scale * C[i * cs0 + j * cs1] for a C broadcast to [m, n].
template <typename T>
__global__ void broadcast_c_kernel(const T* c, T* y, int64_t m, int64_t n, int64_t cs0, int64_t cs1, float scale) {
  const int64_t total = m * n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / n, col = i - r * n;
    y[i] = cuda::from_f<T>(scale * cuda::to_f(c[r * cs0 + col * cs1]));
  }
}

Status gemm_cuda(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  Tensor& y = ctx.output(0);
  const bool ta = ctx.attrs().get_int("transA", 0) != 0, tb = ctx.attrs().get_int("transB", 0) != 0;
  if (a.rank() != 2 || b.rank() != 2) return ctx.error("A and B must be 2-D");
  if (a.dtype() != b.dtype() || !is_cuda_float(a.dtype())) return ctx.error("A and B must share a float dtype");
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1), n = tb ? b.dim(0) : b.dim(1);
  if ((tb ? b.dim(1) : b.dim(0)) != k) return ctx.error("inner dims of A and B differ");
  if (y.numel() == 0) return Status();
  const float alpha = ctx.attrs().get_float("alpha", 1.f);
  float beta = ctx.attrs().get_float("beta", 1.f);
  const Tensor* c = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (c && c->dtype() != a.dtype()) return ctx.error("C dtype differs from A's");
  if (!c || c->numel() == 0) beta = 0.f;
  LtProblem p;
  p.dtype = a.dtype();
  p.trans_a = ta;
  p.trans_b = tb;
  p.m = m;
  p.n = n;
  p.k = k;
  p.alpha = alpha;
  p.beta = beta;
  p.a = a.data();
  p.b = b.data();
  p.d = y.data();
  if (beta != 0.f) {
    const Dims& cd = c->dims();
    if (cd.size() > 2) return ctx.error("C must have rank <= 2");
    const int64_t c0 = cd.size() == 2 ? cd[0] : 1, c1 = cd.empty() ? 1 : cd.back();
    if ((c0 != 1 && c0 != m) || (c1 != 1 && c1 != n))
      return ctx.error("C " + dims_to_string(cd) + " does not broadcast to [M, N]");
    const bool row_vector = c0 == 1 && c1 == n;
    if (c0 == m && c1 == n) {
      p.c = c->data();
    } else if (row_vector && beta == 1.f && k > 0) {
      p.bias = c->data();
      p.beta = 0.f;
    } else {
      // Broadcast (and scale, when k == 0) C into Y, then accumulate onto it.
      const int64_t cs0 = c0 == 1 ? 0 : c1, cs1 = c1 == 1 ? 0 : 1;
      const float scale = k == 0 ? beta : 1.f;
      KILN_CUDA_DISPATCH_FLOAT(a.dtype(), T, {
        broadcast_c_kernel<T><<<cuda::grid_for(m * n), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
            c->data_as<T>(), y.data_as<T>(), m, n, cs0, cs1, scale);
      });
      KILN_RETURN_IF_ERROR(cuda::launch_status(ctx, "gemm_broadcast_c"));
      if (k == 0) return Status();
      p.c = y.data();
    }
  }
  if (k == 0) {
    if (beta == 0.f) {
      cudaMemsetAsync(y.data(), 0, y.nbytes(), cuda::stream_of(ctx));
      return cuda::launch_status(ctx, "gemm_zero");
    }
    // k == 0 with a full C: Y = beta * C.
    KILN_CUDA_DISPATCH_FLOAT(a.dtype(), T, {
      broadcast_c_kernel<T><<<cuda::grid_for(m * n), cuda::kBlock, 0, cuda::stream_of(ctx)>>>(
          c->data_as<T>(), y.data_as<T>(), m, n, n, 1, beta);
    });
    return cuda::launch_status(ctx, "gemm_scale_c");
  }
  return lt_matmul(ctx, p);
}

bool applies_gemm(const ir::Node&, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 2 || !is_cuda_float(inputs[0].dtype) || inputs[1].dtype != inputs[0].dtype) return false;
  if (inputs.size() > 2 && inputs[2].dtype != DataType::kUndefined && inputs[2].dtype != inputs[0].dtype) return false;
  return true;
}

}  // namespace

Status matmul::lt_gemm_nt(KernelContext& ctx, DataType dtype, int64_t m, int64_t n, int64_t k, const void* x,
                          const void* w, const void* bias, const void* c, void* d, BiasActivation act, int rank) {
  LtProblem p;
  p.dtype = dtype;
  p.trans_b = true;
  p.m = m, p.n = n, p.k = k;
  p.a = x, p.b = w, p.bias = bias, p.d = d;
  p.act = act;
  p.rank = std::max(rank, 0);
  if (c) p.c = c, p.beta = 1.f;
  return lt_matmul(ctx, p);
}

void register_matmul_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel(
      "kiln", "MatMulBias",
      FastKernel{"cuda.cublaslt", matmul_bias_cuda, applies_matmul_bias, cuda::collect_tactics<matmul_bias_cuda>});
  (void)r.add_cuda_kernel("", "MatMul",
                          FastKernel{"cuda.cublaslt", matmul_cuda, applies_matmul, cuda::collect_tactics<matmul_cuda>});
  (void)r.add_cuda_kernel("", "Gemm",
                          FastKernel{"cuda.cublaslt", gemm_cuda, applies_gemm, cuda::collect_tactics<gemm_cuda>});
  (void)r.add_cuda_kernel(
      "com.microsoft", "FusedMatMul",
      FastKernel{"cuda.cublaslt", fused_matmul_cuda, applies_matmul, cuda::collect_tactics<fused_matmul_cuda>});
}

}  // namespace kiln::ops
