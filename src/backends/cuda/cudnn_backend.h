// cuDNN's graph (backend) API, the parts every graph user shares: owned descriptors, a
// status chain, an operation graph under construction (tensors, pointwise, reduction and
// matmul operations), engine ranking by cuDNN's mode-A heuristics under kiln's numerical
// policy, execution plans finalized on process-lifetime handles, and execution through a
// variant pack. Users: ops/conv/conv_graph_cuda.cu (convolutions) and
// ops/attention/sdpa_cudnn_cuda.cu (attention).
#pragma once

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backends/cuda/api.h"
#include "kiln/types.h"

namespace kiln::cuda::dnn {

/// cuDNN's type for a float DataType (fp32, fp16, anything else bf16).
inline cudnnDataType_t data_type(DataType t) {
  return t == DataType::kFloat32 ? CUDNN_DATA_FLOAT : t == DataType::kFloat16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

/// Owns one backend descriptor.
struct Desc {
  cudnnBackendDescriptor_t d = nullptr;
  Desc() = default;
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc(Desc&& o) noexcept : d(o.d) { o.d = nullptr; }
  Desc& operator=(Desc&& o) noexcept {
    std::swap(d, o.d);
    return *this;
  }
  ~Desc() {
    if (d) cudnnBackendDestroyDescriptor(d);
  }
  cudnnStatus_t create(cudnnBackendDescriptorType_t t) { return cudnnBackendCreateDescriptor(t, &d); }
};

/// Collects the first failing cuDNN call of a sequence and what it was.
struct Chain {
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  const char* what = "";
  void operator()(cudnnStatus_t s, const char* w) {
    if (st == CUDNN_STATUS_SUCCESS && s != CUDNN_STATUS_SUCCESS) {
      st = s;
      what = w;
    }
  }
  bool ok() const { return st == CUDNN_STATUS_SUCCESS; }
  /// "what: cuDNN's status string" of the first failure ("" when none).
  std::string message() const;
};

template <typename T>
cudnnStatus_t set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t, int64_t n,
                  const T* v) {
  return cudnnBackendSetAttribute(d, a, t, n, v);
}

/// One operation graph under construction. Every call adds to `chain` (the first failure
/// sticks; later calls do nothing) and keeps what it made alive as long as the graph.
struct OpGraph {
  Chain chain;
  std::vector<Desc> keep;
  std::vector<cudnnBackendDescriptor_t> ops;
  Desc graph;

  /// A tensor of `dims` and `strides` (16-byte aligned unless `align` says less).
  cudnnBackendDescriptor_t tensor(int64_t uid, cudnnDataType_t type, const std::vector<int64_t>& dims,
                                  const std::vector<int64_t>& strides, bool is_virtual, int64_t align = 16);
  /// A scalar passed by value (fp32, all dims 1 over `rank`).
  cudnnBackendDescriptor_t scalar(int64_t uid, float value, int rank);
  /// y = mode(x[, b]) in fp32 arithmetic.
  void pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t y);
  /// y = reduce(x) over the dims where y has size 1, in fp32.
  void reduction(cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y);
  /// c = a b over the last two dims (batched over the leading ones), fp32 accumulation.
  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c);
  /// Adds an operation made elsewhere (its descriptor kept with the graph).
  void add(Desc op);
  /// Finalizes the graph of every operation added so far on handle `h`.
  bool finalize(cudnnHandle_t h, bool dynamic_shape = false);
};

/// One engine configuration cuDNN's heuristics offered for a graph.
struct Candidate {
  Desc cfg;
  int64_t id = 0;
  bool rtc = false;    ///< compiled at run time (cuDNN's runtime fusion)
  bool tried = false;  ///< plan finalize attempted
  Desc plan;           ///< finalized plan (null when finalize failed)
  int64_t workspace = 0;
};

/// Which engines kiln lets run: never inputs converted to a narrower type nor reductions
/// below fp32; for fp32 data, tensor cores (TF32) only where allowed.
struct Numerics {
  bool f32 = false;
  bool allow_tf32 = true;
};

/// Engine configurations of a finalized graph in cuDNN's mode-A order that `n` allows,
/// at most `max` and at most `rtc_cap` of them runtime-compiled; each one's ID is
/// `id_base` | (a hash of engine index and knob values masked by `id_mask`), so an ID
/// names the same engine in every build on one cuDNN version. Duplicates are dropped.
std::vector<Candidate> rank_engines(cudnnBackendDescriptor_t graph, Numerics n, int max, int rtc_cap, int64_t id_base,
                                    int64_t id_mask);

/// A cuDNN handle that finalizes graphs and plans, with the lock its users hold: cuDNN
/// lets threads call it together only on different handles.
struct FinalizeHandle {
  cudnnHandle_t h = nullptr;
  std::mutex mu;
};

/// A handle that finalizes graphs and plans on `device`, kept for the process's lifetime
/// because plans are shared by every context while the contexts' handles come and go (a
/// plan must not outlive the handle it was finalized with). Each thread takes one of a
/// few slots per device, so the builder's parallel warm-up finalizes on different
/// handles. Null when none can be made here: inside a stream capture (creating a handle
/// may synchronize the device) or when cudnnCreate fails; the caller then uses its own.
FinalizeHandle* finalize_handle(int device, bool capturing);

/// The handle a cache entry's graphs and plans are finalized with: a process-lifetime one
/// (finalize_handle), or, where none can be made, the first caller's, with the lock its
/// users hold.
struct GraphHandle {
  FinalizeHandle* fh = nullptr;
  cudnnHandle_t own = nullptr;
  std::mutex own_mu;
  void init(int device, bool capturing, cudnnHandle_t caller) {
    fh = finalize_handle(device, capturing);
    if (!fh) own = caller;
  }
  cudnnHandle_t handle() const { return fh ? fh->h : own; }
  std::mutex& mu() { return fh ? fh->mu : own_mu; }
};

/// True while `stream` (a cudaStream_t) is being captured into a graph.
inline bool capturing(void* stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &st) != cudaSuccess) cudaGetLastError();
  return st != cudaStreamCaptureStatusNone;
}

/// Makes `cand`'s execution plan on handle `h` from what `source(plan, chain)` sets on it
/// (an engine configuration, or a kept JSON), under the capture lock: finalizing a
/// runtime-fusion plan compiles and loads a module, so no capture may run elsewhere.
/// Keeps the plan when cuDNN finalizes it and its workspace fits `ws_max`.
template <typename Source>
bool finalize_plan(cudnnHandle_t h, size_t ws_max, Candidate& cand, Source&& source) {
  Desc plan;
  Chain c;
  c(plan.create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR), "plan");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  c(set(plan.d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h), "plan handle");
#pragma GCC diagnostic pop
  {
    ExclusiveCapture no_capture;
    source(plan.d, c);
    c(cudnnBackendFinalize(plan.d), "finalize plan");
  }
  int64_t ws = 0, n = 0;
  if (c.ok())
    c(cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &ws),
      "workspace");
  cudaGetLastError();  // a refused engine may leave a non-sticky error behind
  if (!c.ok() || ws < 0 || static_cast<size_t>(ws) > ws_max) return false;
  cand.plan = std::move(plan);
  cand.workspace = ws;
  return true;
}

/// Finalizes `cand`'s plan from its engine configuration once (later calls say how the
/// first went); false when cuDNN refuses it or it needs more workspace than `ws_max`.
/// `kernel_cache`: a runtime-compiled plan shares it (may be null).
bool ready(cudnnHandle_t h, Candidate& cand, size_t ws_max, cudnnBackendDescriptor_t kernel_cache = nullptr);

/// cuDNN's JSON serialization of a finalized plan; empty when it has none.
std::string plan_json(cudnnBackendDescriptor_t plan);

/// Runs `plan` on handle `h` (its stream) with the tensors' device pointers by unique ID.
Chain execute(cudnnHandle_t h, cudnnBackendDescriptor_t plan, const std::vector<int64_t>& uids,
              const std::vector<void*>& ptrs, void* workspace);

/// A kernel's graphs by problem key (the numbers that decide the graph), each built once
/// and kept for the process: engine IDs and plans must outlive every engine using them.
///
///   static GraphCache<Entry>& cache() { static auto* c = new GraphCache<Entry>(); return *c; }
///   Entry* e = cache().get(key_of(p), [&](Entry& fresh) { build(p, fresh); return true; });
template <class Entry>
class GraphCache {
 public:
  /// The entry of `key`; the first call builds it with `build(Entry&)` outside the lock
  /// (two threads may both build; the first insert wins). `build` returning false keeps
  /// nothing (e.g. inside a stream capture, where building may load modules): null then.
  template <class Build>
  Entry* get(const std::vector<int64_t>& key, Build&& build) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = entries_.find(key);
      if (it != entries_.end()) return it->second.get();
    }
    auto fresh = std::make_unique<Entry>();
    if (!build(*fresh)) return nullptr;
    std::lock_guard<std::mutex> lock(mu_);
    return entries_.emplace(key, std::move(fresh)).first->second.get();
  }
  /// Drops every entry (tests; no kernel may be running one).
  void clear() {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }

 private:
  std::mutex mu_;
  std::map<std::vector<int64_t>, std::unique_ptr<Entry>> entries_;
};

/// 64-bit hash step shared by the engine IDs and their users' keys.
inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0x100000001b3ull;
}

}  // namespace kiln::cuda::dnn
