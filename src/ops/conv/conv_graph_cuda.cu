// Convolutions through cuDNN's graph (backend) API (conv_graph_cuda.h).
//
// Per problem, two operation graphs:
//   fused: Y = act(conv(X, W) + B [+ Z])       (virtual fp32 intermediates)
//   plain: Y = conv(X, W)                      (the caller's epilogue does the rest)
// cuDNN's mode-A heuristics rank each graph's engine configurations; those whose
// numerical notes allow the engine's precision become tactics (ID = base | fused
// bit | hash of engine index and knob values, so an ID names the same engine in
// every build on one cuDNN version). Execution plans are finalized lazily, the first
// time a candidate runs. Engines that compile at run time (cuDNN's runtime fusion)
// are offered for FP16/BF16 and large FP32 convs (runtime_fusion_cap); they load a module when finalized,
// under the process-wide capture lock, never inside a capture (the builder finalizes the
// candidates it will time on parallel threads first: select/tactics.cc). Graphs and
// plans are shared by all contexts and finalized with process-lifetime cuDNN handles
// (one per device and thread slot); each context executes them with its own handle.
#include <cudnn.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>

#include "backends/cuda/api.h"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/conv/conv_graph_cuda.h"

namespace kiln::ops::cudnn_graph {
namespace {

// Owns one backend descriptor.
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

// Collects the first failing cuDNN call of a sequence (the graph is then not offered).
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
};

template <typename T>
cudnnStatus_t set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t, int64_t n,
                  const T* v) {
  return cudnnBackendSetAttribute(d, a, t, n, v);
}

cudnnDataType_t dnn_type(DataType t) {
  return t == DataType::kFloat32 ? CUDNN_DATA_FLOAT : t == DataType::kFloat16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

constexpr int64_t kUidX = 1, kUidW = 2, kUidY = 3, kUidB = 4, kUidZ = 5;
constexpr int kMaxPerGraph = 8;  // candidates kept per graph (timing cost grows with each)

// Packed strides of logical dims `d` (NCHW / OIHW, or channels-last when `nhwc`).
std::vector<int64_t> strides_of(const std::vector<int64_t>& d, bool nhwc) {
  const size_t r = d.size();
  std::vector<int64_t> s(r, 1);
  if (!nhwc) {
    for (int i = static_cast<int>(r) - 2; i >= 0; --i) s[i] = s[i + 1] * d[i + 1];
    return s;
  }
  // Channels-last: C fastest, then the spatial dims right to left, then N.
  int64_t acc = d[1];
  s[1] = 1;
  for (int i = static_cast<int>(r) - 1; i >= 2; --i) {
    s[i] = acc;
    acc *= d[i];
  }
  s[0] = acc;
  return s;
}

cudnnStatus_t make_tensor(Desc& t, int64_t uid, cudnnDataType_t dt, const std::vector<int64_t>& dims, bool nhwc,
                          bool is_virtual) {
  Chain c;
  c(t.create(CUDNN_BACKEND_TENSOR_DESCRIPTOR), "create tensor");
  if (!c.ok()) return c.st;
  const std::vector<int64_t> st = strides_of(dims, nhwc);
  const int64_t align = 16;
  c(set(t.d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt), "tensor type");
  c(set(t.d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<int64_t>(dims.size()), dims.data()), "dims");
  c(set(t.d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<int64_t>(st.size()), st.data()), "strides");
  c(set(t.d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "uid");
  c(set(t.d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align), "alignment");
  if (is_virtual) {
    bool v = true;
    c(set(t.d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v), "virtual");
  }
  c(cudnnBackendFinalize(t.d), "finalize tensor");
  return c.st;
}

cudnnStatus_t make_pointwise(Desc& op, Desc& pw, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t in,
                             cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t out) {
  Chain c;
  c(pw.create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR), "create pointwise");
  if (!c.ok()) return c.st;
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  c(set(pw.d, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode), "pointwise mode");
  c(set(pw.d, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec), "pointwise precision");
  c(cudnnBackendFinalize(pw.d), "finalize pointwise");
  c(op.create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR), "create pointwise op");
  if (!c.ok()) return c.st;
  c(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw.d), "pw desc");
  c(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &in), "pw x");
  if (b) c(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b), "pw b");
  c(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &out), "pw y");
  c(cudnnBackendFinalize(op.d), "finalize pointwise op");
  return c.st;
}

struct Candidate {
  Desc cfg;
  int64_t id = 0;
  bool rtc = false;    ///< compiled at run time (cuDNN's runtime fusion)
  bool tried = false;  ///< plan finalize attempted
  Desc plan;           ///< finalized plan (null when finalize failed)
  int64_t workspace = 0;
};

// One operation graph and its ranked engine configurations.
struct GraphSet {
  std::vector<Desc> keep;  ///< tensors, pointwise descriptors and operations the graph references
  Desc graph;
  std::vector<Candidate> cands;
  std::vector<int64_t> uids;      ///< the non-virtual tensors, in variant-pack order
  std::vector<int64_t> topology;  ///< non-empty: a dynamic-shape graph sharing this kernel cache key
};

// A cuDNN handle that finalizes graphs and plans, with the lock its users hold: cuDNN
// lets threads call it together only on different handles.
struct FinalizeHandle {
  cudnnHandle_t h = nullptr;
  std::mutex mu;
};

struct Entry {
  std::mutex mu;                 ///< guards lazy plan finalization
  FinalizeHandle* fh = nullptr;  ///< finalizes this entry's graphs and plans
  cudnnHandle_t own = nullptr;   ///< or, when fh is null, the first caller's handle
  std::mutex own_mu;             ///< (locked like fh->mu)
  cudnnHandle_t handle() const { return fh ? fh->h : own; }
  std::mutex& handle_mu() { return fh ? fh->mu : own_mu; }
  GraphSet fused, plain;
  std::vector<int64_t> ids;
};

// A handle that finalizes graphs and plans on `device`, kept for the process's lifetime
// because the plans are shared by every context while the contexts' handles come and
// go (a plan must not outlive the handle it was finalized with). Each thread takes one
// of kSlots per device, so the builder's parallel warm-up (select/tactics.cc) finalizes
// on different handles. Null when it cannot be made here: inside a stream capture
// (creating a handle may synchronize the device) or when cudnnCreate fails; the caller
// then uses its own.
constexpr int kSlots = 16;
FinalizeHandle* finalize_handle(int device, bool capturing) {
  static std::mutex mu;
  static auto* handles = new std::map<std::pair<int, int>, std::unique_ptr<FinalizeHandle>>();
  static std::atomic<int> next_slot{0};
  thread_local const int slot = next_slot.fetch_add(1) % kSlots;
  std::lock_guard<std::mutex> lock(mu);
  auto it = handles->find({device, slot});
  if (it != handles->end()) return it->second->h ? it->second.get() : nullptr;  // a failed create is not retried
  if (capturing) return nullptr;
  cudnnHandle_t h = nullptr;
  {
    cuda::ExclusiveCapture no_capture;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) h = nullptr;
  }
  cudaGetLastError();
  auto& fh = (*handles)[{device, slot}];
  fh = std::make_unique<FinalizeHandle>();
  fh->h = h;
  return h ? fh.get() : nullptr;
}

std::mutex g_mu;
std::map<std::vector<int64_t>, std::unique_ptr<Entry>>& entries() {
  static auto* m = new std::map<std::vector<int64_t>, std::unique_ptr<Entry>>();
  return *m;
}

// KILN_CUDNN_KERNEL_CACHE=1: runtime-fusion graphs are built with dynamic shapes and
// share one cuDNN kernel cache per topology (dtype, layout, epilogue, rank), so a kernel
// compiled for one conv can serve the others (an A/B: compile time vs kernel speed).
bool kernel_cache_on() {
  static const bool on = env_is("KILN_CUDNN_KERNEL_CACHE", "1");
  return on;
}

// The kernel cache of `topology`, finalized with the first graph that asks for it;
// null when cuDNN refuses one. Callers hold the capture lock (ready()).
cudnnBackendDescriptor_t kernel_cache(const std::vector<int64_t>& topology, cudnnBackendDescriptor_t graph) {
  static std::mutex mu;  // the builder's warm-up finalizes on several threads
  static auto* caches = new std::map<std::vector<int64_t>, Desc>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = caches->find(topology);
  if (it != caches->end()) return it->second.d;
  Desc kc;
  Chain c;
  c(kc.create(CUDNN_BACKEND_KERNEL_CACHE_DESCRIPTOR), "kernel cache");
  if (c.ok()) c(set(kc.d, CUDNN_ATTR_KERNEL_CACHE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph), "graph");
  if (c.ok()) c(cudnnBackendFinalize(kc.d), "finalize kernel cache");
  if (!c.ok()) kc = Desc();
  Desc& slot = (*caches)[topology];
  slot = std::move(kc);
  return slot.d;
}

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0x100000001b3ull;
}

// Engine identity and acceptability of one configuration; false when it must not run.
// `*rtc`: the engine compiles its kernel at run time (cuDNN's runtime fusion).
bool describe(const ConvProblem& p, cudnnBackendDescriptor_t cfg, uint64_t* hash, bool* rtc) {
  Desc eng;
  if (eng.create(CUDNN_BACKEND_ENGINE_DESCRIPTOR) != CUDNN_STATUS_SUCCESS) return false;
  int64_t n = 0;
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng.d) !=
          CUDNN_STATUS_SUCCESS ||
      n != 1)
    return false;
  int64_t index = -1;
  if (cudnnBackendGetAttribute(eng.d, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &index) !=
      CUDNN_STATUS_SUCCESS)
    return false;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  int64_t nn = 0;
  if (cudnnBackendGetAttribute(eng.d, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, notes) != CUDNN_STATUS_SUCCESS)
    nn = 0;
  const bool f32 = p.dtype == DataType::kFloat32;
  for (int64_t i = 0; i < nn; ++i) {
    // Inputs converted to a narrower type, or accumulation below fp32: never.
    if (notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
        notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)
      return false;
    // FP32 on tensor cores is TF32: only when allowed.
    if (f32 && !p.allow_tf32 && notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE) return false;
  }
  *rtc = false;
  cudnnBackendBehaviorNote_t beh[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  int64_t nb = 0;
  if (cudnnBackendGetAttribute(eng.d, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                               CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &nb, beh) == CUDNN_STATUS_SUCCESS)
    for (int64_t i = 0; i < nb; ++i) *rtc = *rtc || beh[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
  uint64_t h = mix(0xcbf29ce484222325ull, static_cast<uint64_t>(index));
  // Knob choices refine the engine (tile sizes, split-K, ...).
  constexpr int kMaxKnobs = 32;
  std::vector<Desc> knobs(kMaxKnobs);
  std::vector<cudnnBackendDescriptor_t> kd(kMaxKnobs, nullptr);
  for (int i = 0; i < kMaxKnobs; ++i) {
    if (knobs[i].create(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR) != CUDNN_STATUS_SUCCESS) return false;
    kd[i] = knobs[i].d;
  }
  int64_t nk = 0;
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR, kMaxKnobs, &nk,
                               kd.data()) == CUDNN_STATUS_SUCCESS) {
    for (int64_t i = 0; i < nk && i < kMaxKnobs; ++i) {
      cudnnBackendKnobType_t type{};
      int64_t value = 0, m = 0;
      cudnnBackendGetAttribute(kd[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &m, &type);
      cudnnBackendGetAttribute(kd[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1, &m, &value);
      h = mix(mix(h, static_cast<uint64_t>(type)), static_cast<uint64_t>(value));
    }
  }
  *hash = h;
  return true;
}

// How many runtime-compiled engines a graph may offer: only fused graphs whose
// activation the legacy path cannot fuse (SiLU, Sigmoid, Tanh: otherwise an extra pass
// over the output). By default one: in FP16/BF16, and in FP32 where the output has at
// least 2^21 elements (the extra pass is then bandwidth, not launch latency).
// KILN_CUDNN_RUNTIME_FUSION=N offers N everywhere, =0 none. Each engine compiles once per
// process (at build, and the chosen ones again in every process that loads the engine);
// cuDNN compiles one at a time even from parallel threads (session 8: 16 threads made
// each FP32 compile 10x slower). YOLOv8n on the H100, GPU ms (build s) without -> with:
// FP16 bs1 0.609 -> 0.458 (~4 -> 11), bs32 3.58 -> 3.07 (3.8 -> 14.9), bs256 25.7 ->
// 21.8 (4.9 -> 16.3); FP32 (~0.27 s a compile, 8x FP16's) bs1 0.636 -> 0.602 (3.9 ->
// 20.3: not worth it, hence the size floor), bs32 6.09 -> 4.80 (3.3 -> 14.5), bs256
// 44.8 -> 37.6 (11.7 -> 29.0). In session 4 one such engine gave wrong values in two
// FusedConv harness cases; not reproduced since (the harness runs them).
int runtime_fusion_cap(const ConvProblem& p, bool fused) {
  const bool unfusable = p.act == GraphAct::kSilu || p.act == GraphAct::kSigmoid || p.act == GraphAct::kTanh;
  if (!fused || !unfusable) return 0;
  static const int setting = [] {
    const std::optional<long long> v = env_int("KILN_CUDNN_RUNTIME_FUSION");
    return v ? static_cast<int>(std::clamp<long long>(*v, 0, kMaxPerGraph)) : -1;
  }();
  if (setting >= 0) return setting;
  if (p.dtype == DataType::kFloat16 || p.dtype == DataType::kBFloat16) return 1;
  return p.dtype == DataType::kFloat32 && dims_volume(p.y) >= (int64_t(1) << 21) ? 1 : 0;
}

// Builds one graph (fused when `fused`) and ranks its engine configurations.
// Leaves `gs.cands` empty when cuDNN takes no part of it.
void build_graph(cudnnHandle_t h, const ConvProblem& p, bool fused, GraphSet& gs) {
  const cudnnDataType_t dt = dnn_type(p.dtype);
  const cudnnDataType_t acc = CUDNN_DATA_FLOAT;
  const std::vector<int64_t> xd(p.x.begin(), p.x.end()), wd(p.w.begin(), p.w.end()), yd(p.y.begin(), p.y.end());
  std::vector<int64_t> bd(yd.size(), 1);
  bd[1] = yd[1];
  auto tensor = [&](int64_t uid, cudnnDataType_t t, const std::vector<int64_t>& dims, bool nhwc, bool virt,
                    cudnnBackendDescriptor_t* out) {
    gs.keep.emplace_back();
    cudnnStatus_t s = make_tensor(gs.keep.back(), uid, t, dims, nhwc, virt);
    *out = gs.keep.back().d;
    return s;
  };
  Chain c;
  cudnnBackendDescriptor_t X, W, Y, B = nullptr, Z = nullptr;
  c(tensor(kUidX, dt, xd, p.nhwc, false, &X), "x");
  c(tensor(kUidW, dt, wd, p.nhwc, false, &W), "w");
  gs.uids = {kUidX, kUidW, kUidY};
  const bool epilogue = fused && (p.bias || p.residual || p.act != GraphAct::kNone);
  if (fused && !epilogue) return;  // nothing to fuse: the plain graph covers it
  cudnnBackendDescriptor_t conv_out = nullptr;
  if (epilogue) {
    c(tensor(100, acc, yd, p.nhwc, true, &conv_out), "conv out");
  }
  c(tensor(kUidY, dt, yd, p.nhwc, false, &Y), "y");
  if (!epilogue) conv_out = Y;
  if (!c.ok()) return;

  // The convolution.
  const size_t sp = p.pads.size();
  std::vector<int64_t> pads(p.pads.begin(), p.pads.end()), strides(p.strides.begin(), p.strides.end()),
      dil(p.dilations.begin(), p.dilations.end());
  const int64_t spatial = static_cast<int64_t>(sp);
  gs.keep.emplace_back();
  Desc& cd = gs.keep.back();
  c(cd.create(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR), "conv desc");
  if (!c.ok()) return;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &acc), "comp type");
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode), "conv mode");
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial), "spatial dims");
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, spatial, pads.data()), "pre pads");
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, spatial, pads.data()), "post pads");
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, spatial, strides.data()), "strides");
  c(set(cd.d, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, spatial, dil.data()), "dilations");
  c(cudnnBackendFinalize(cd.d), "finalize conv desc");
  gs.keep.emplace_back();
  Desc& op = gs.keep.back();
  c(op.create(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR), "conv op");
  if (!c.ok()) return;
  const float one = 1.f, zero = 0.f;
  c(set(op.d, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &X), "op x");
  c(set(op.d, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &W), "op w");
  c(set(op.d, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv_out), "op y");
  c(set(op.d, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd.d), "op conv");
  c(set(op.d, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &one), "alpha");
  c(set(op.d, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero), "beta");
  c(cudnnBackendFinalize(op.d), "finalize conv op");
  std::vector<cudnnBackendDescriptor_t> ops{op.d};

  // The epilogue: + B, + Z, activation; fp32 virtual tensors in between.
  if (epilogue && c.ok()) {
    cudnnBackendDescriptor_t cur = conv_out;
    int64_t next_uid = 101;
    struct Step {
      cudnnPointwiseMode_t mode;
      cudnnBackendDescriptor_t operand;
    };
    std::vector<Step> steps;
    if (p.bias) {
      c(tensor(kUidB, dt, bd, p.nhwc, false, &B), "b");
      gs.uids.push_back(kUidB);
      steps.push_back({CUDNN_POINTWISE_ADD, B});
    }
    if (p.residual) {
      c(tensor(kUidZ, dt, yd, p.nhwc, false, &Z), "z");
      gs.uids.push_back(kUidZ);
      steps.push_back({CUDNN_POINTWISE_ADD, Z});
    }
    switch (p.act) {
      case GraphAct::kNone:
        break;
      case GraphAct::kRelu:
        steps.push_back({CUDNN_POINTWISE_RELU_FWD, nullptr});
        break;
      case GraphAct::kSigmoid:
        steps.push_back({CUDNN_POINTWISE_SIGMOID_FWD, nullptr});
        break;
      case GraphAct::kTanh:
        steps.push_back({CUDNN_POINTWISE_TANH_FWD, nullptr});
        break;
      case GraphAct::kSilu:
        steps.push_back({CUDNN_POINTWISE_SWISH_FWD, nullptr});
        break;
    }
    for (size_t i = 0; i < steps.size() && c.ok(); ++i) {
      cudnnBackendDescriptor_t out = Y;
      if (i + 1 < steps.size()) c(tensor(next_uid++, acc, yd, p.nhwc, true, &out), "intermediate");
      gs.keep.emplace_back();
      Desc& pw = gs.keep.back();
      gs.keep.emplace_back();
      Desc& pop = gs.keep.back();
      c(make_pointwise(pop, pw, steps[i].mode, cur, steps[i].operand, out), "pointwise");
      ops.push_back(pop.d);
      cur = out;
    }
  }
  if (!c.ok()) return;

  // The graph and its heuristics.
  c(gs.graph.create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR), "graph");
  if (!c.ok()) return;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  c(set(gs.graph.d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h), "graph handle");
#pragma GCC diagnostic pop
  c(set(gs.graph.d, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()),
        ops.data()),
    "graph ops");
  const int rtc_cap = runtime_fusion_cap(p, fused);
  if (rtc_cap > 0 && kernel_cache_on()) {
    // A dynamic-shape graph: its runtime-compiled kernel can serve later graphs of the
    // same topology through the kernel cache (ready()).
    const bool dyn = true;
    c(set(gs.graph.d, CUDNN_ATTR_OPERATIONGRAPH_IS_DYNAMIC_SHAPE_ENABLED, CUDNN_TYPE_BOOLEAN, 1, &dyn),
      "dynamic shape");
    gs.topology = {static_cast<int64_t>(p.dtype),   p.nhwc, p.bias, p.residual, static_cast<int64_t>(p.act),
                   static_cast<int64_t>(p.x.size())};
  }
  c(cudnnBackendFinalize(gs.graph.d), "finalize graph");
  if (!c.ok()) return;
  Desc heur;
  c(heur.create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR), "heuristics");
  if (!c.ok()) return;
  const cudnnBackendHeurMode_t hm = CUDNN_HEUR_MODE_A;
  c(set(heur.d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &gs.graph.d), "heur graph");
  c(set(heur.d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hm), "heur mode");
  c(cudnnBackendFinalize(heur.d), "finalize heuristics");
  if (!c.ok()) return;
  int64_t count = 0;
  if (cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               nullptr) != CUDNN_STATUS_SUCCESS ||
      count <= 0)
    return;
  std::vector<Desc> cfgs(static_cast<size_t>(count));
  std::vector<cudnnBackendDescriptor_t> raw(cfgs.size());
  for (size_t i = 0; i < cfgs.size(); ++i) {
    if (cfgs[i].create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) != CUDNN_STATUS_SUCCESS) return;
    raw[i] = cfgs[i].d;
  }
  int64_t got = 0;
  if (cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               raw.data()) != CUDNN_STATUS_SUCCESS)
    return;
  int rtc_taken = 0;
  for (int64_t i = 0; i < got && static_cast<int>(gs.cands.size()) < kMaxPerGraph; ++i) {
    uint64_t hash = 0;
    bool rtc = false;
    if (!describe(p, raw[i], &hash, &rtc)) continue;
    if (rtc && rtc_taken >= rtc_cap) continue;
    rtc_taken += rtc;
    const int64_t id = kTacticBase | (fused ? kFusedBit : 0) | static_cast<int64_t>(hash & ((uint64_t(1) << 47) - 1));
    bool dup = false;
    for (const Candidate& o : gs.cands) dup = dup || o.id == id;
    if (dup) continue;
    Candidate cand;
    cand.cfg = std::move(cfgs[i]);
    cand.id = id;
    cand.rtc = rtc;
    gs.cands.push_back(std::move(cand));
  }
}

// Makes `cand`'s execution plan on handle `h` from what `source(plan, chain)` sets on it
// (an engine configuration, or a kept JSON), called under the capture lock: finalizing a
// runtime-fusion plan compiles and loads a module, so no capture may run elsewhere. Keeps
// the plan when cuDNN finalizes it and its workspace fits `ws_max`.
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
    cuda::ExclusiveCapture no_capture;
    source(plan.d, c);
    c(cudnnBackendFinalize(plan.d), "finalize plan");
  }
  int64_t ws = 0, n = 0;
  if (c.ok())
    c(cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &ws),
      "workspace");
  cudaGetLastError();  // a refused engine may leave a sticky-free error behind
  if (!c.ok() || ws < 0 || static_cast<size_t>(ws) > ws_max) return false;
  cand.plan = std::move(plan);
  cand.workspace = ws;
  return true;
}

// Finalizes a candidate's plan once; false when cuDNN refuses it or it needs too much workspace.
// Callers hold the entry's lock and its handle's.
bool ready(cudnnHandle_t h, const GraphSet& gs, Candidate& cand, size_t ws_max) {
  if (!cand.tried) {
    cand.tried = true;
    finalize_plan(h, ws_max, cand, [&](cudnnBackendDescriptor_t plan, Chain& c) {
      c(set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cand.cfg.d), "plan cfg");
      if (cand.rtc && !gs.topology.empty()) {
        cudnnBackendDescriptor_t kc = kernel_cache(gs.topology, gs.graph.d);
        if (kc) c(set(plan, CUDNN_ATTR_EXECUTION_PLAN_KERNEL_CACHE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &kc), "cache");
      }
    });
  }
  return cand.plan.d != nullptr;
}

// ---------------------------------------------------------------- plans kept in the engine
//
// A runtime-compiled plan the builder picked is kept on its node (cuda::kKernelStateAttr):
// a header naming the cuDNN version, the problem (key_of without the device index) and the
// candidate, then cuDNN's JSON serialization of the finalized plan, which carries the
// compiled kernel. Loading the engine finalizes the plan from it instead of compiling
// again (YOLOv8n FP32 bs256: ~35 compiles of ~0.27 s). A state whose header differs (another
// cuDNN, another problem, another candidate), or that cuDNN refuses, is ignored: the plan
// then compiles as it would without one.
std::atomic<int64_t> g_plans_from_state{0};

std::string state_header(const std::vector<int64_t>& key, int64_t id) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 1; i < key.size(); ++i) h = mix(h, static_cast<uint64_t>(key[i]));  // [0]: the device index
  char buf[96];
  std::snprintf(buf, sizeof buf, "kiln-cudnn-plan %zu %016llx %lld\n", cudnnGetVersion(),
                static_cast<unsigned long long>(h), static_cast<long long>(id));
  return buf;
}

// cuDNN's JSON serialization of a finalized runtime-compiled plan; empty when it has none.
std::string plan_json(cudnnBackendDescriptor_t plan) {
  int64_t n = 0;
  if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR, 0, &n, nullptr) !=
          CUDNN_STATUS_SUCCESS ||
      n <= 0) {
    cudaGetLastError();
    return std::string();
  }
  std::string json(static_cast<size_t>(n), '\0');
  int64_t got = 0;
  if (cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR, n, &got,
                               json.data()) != CUDNN_STATUS_SUCCESS) {
    cudaGetLastError();
    return std::string();
  }
  json.resize(std::min<size_t>(static_cast<size_t>(std::max<int64_t>(got, 0)), json.size()));
  while (!json.empty() && json.back() == '\0') json.pop_back();
  return json;
}

// Finalizes `cand` from the node's kept state when that state is this candidate's plan.
// Callers hold the entry's lock and its handle's.
bool ready_from_state(cudnnHandle_t h, const std::string& state, const std::string& header, Candidate& cand,
                      size_t ws_max) {
  if (state.size() <= header.size() || state.compare(0, header.size(), header) != 0) return false;
  const bool ok = finalize_plan(h, ws_max, cand, [&](cudnnBackendDescriptor_t plan, Chain& c) {
    c(set(plan, CUDNN_ATTR_EXECUTION_PLAN_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
          static_cast<int64_t>(state.size() - header.size()), state.data() + header.size()),
      "plan json");
  });
  if (!ok) return false;
  cand.tried = true;
  g_plans_from_state.fetch_add(1);
  return true;
}

std::vector<int64_t> key_of(const KernelContext& ctx, const ConvProblem& p) {
  const cuda::Env* env = ctx.cuda_env();
  std::vector<int64_t> k{env->device,
                         static_cast<int64_t>(p.dtype),
                         p.nhwc,
                         p.dtype == DataType::kFloat32 && p.allow_tf32,
                         p.bias,
                         p.residual,
                         static_cast<int64_t>(p.act),
                         static_cast<int64_t>(env->workspace_bytes)};
  for (const Dims* d : {&p.x, &p.w, &p.y}) {
    k.push_back(static_cast<int64_t>(d->size()));
    k.insert(k.end(), d->begin(), d->end());
  }
  for (const auto* v : {&p.pads, &p.strides, &p.dilations}) k.insert(k.end(), v->begin(), v->end());
  return k;
}

Entry* entry_for(KernelContext& ctx, const ConvProblem& p) {
  const std::vector<int64_t> key = key_of(ctx, p);
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = entries().find(key);
    if (it != entries().end()) return it->second.get();
  }
  auto fresh = std::make_unique<Entry>();
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(cuda::stream_of(ctx), &capturing) != cudaSuccess) cudaGetLastError();
  fresh->fh = finalize_handle(ctx.cuda_env()->device, capturing != cudaStreamCaptureStatusNone);
  if (!fresh->fh) fresh->own = static_cast<cudnnHandle_t>(ctx.cuda_env()->cudnn);
  {
    std::lock_guard<std::mutex> lock(fresh->handle_mu());
    build_graph(fresh->handle(), p, true, fresh->fused);
    build_graph(fresh->handle(), p, false, fresh->plain);
  }
  // Interleaved (fused, plain, fused, ...) so a timing budget covers both graphs.
  for (size_t i = 0; i < fresh->fused.cands.size() || i < fresh->plain.cands.size(); ++i)
    for (const GraphSet* gs : {&fresh->fused, &fresh->plain})
      if (i < gs->cands.size()) fresh->ids.push_back(gs->cands[i].id);
  cudaGetLastError();
  std::lock_guard<std::mutex> lock(g_mu);
  auto [it, inserted] = entries().emplace(key, std::move(fresh));
  return it->second.get();
}

}  // namespace

int64_t plans_from_state() { return g_plans_from_state.load(); }

void forget_plans_for_test() {
  std::lock_guard<std::mutex> lock(g_mu);
  entries().clear();
}

Result<std::vector<int64_t>> candidates(KernelContext& ctx, const ConvProblem& p) {
  if (!enabled()) return std::vector<int64_t>{};
  return entry_for(ctx, p)->ids;
}

Result<bool> run(KernelContext& ctx, const ConvProblem& p, int64_t tactic, const ConvBuffers& buf) {
  if (!enabled()) return ctx.error("cuDNN graph path disabled", ErrorCode::kUnsupported);
  for (const void* ptr : {buf.x, buf.w, buf.b, buf.z, static_cast<const void*>(buf.y)})
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
      return ctx.error("buffer not 16-byte aligned for cuDNN's graph engines", ErrorCode::kUnsupported);
  Entry* e = entry_for(ctx, p);
  const cuda::Env* env = ctx.cuda_env();
  auto h = static_cast<cudnnHandle_t>(env->cudnn);
  const ir::Attribute* kept = ctx.attrs().find(cuda::kKernelStateAttr);
  const std::string* state = kept && kept->kind == ir::Attribute::Kind::kString ? &kept->s : nullptr;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(cuda::stream_of(ctx), &capturing) != cudaSuccess) cudaGetLastError();
  // The requested candidate first, then cuDNN's order; a plan is finalized at most once.
  std::vector<std::pair<GraphSet*, Candidate*>> order;
  for (GraphSet* gs : {&e->fused, &e->plain})
    for (Candidate& c : gs->cands)
      if (c.id == tactic) order.push_back({gs, &c});
  for (size_t i = 0; i < e->fused.cands.size() || i < e->plain.cands.size(); ++i)
    for (GraphSet* gs : {&e->fused, &e->plain})
      if (i < gs->cands.size() && gs->cands[i].id != tactic) order.push_back({gs, &gs->cands[i]});
  for (auto [gs, cand] : order) {
    {
      std::lock_guard<std::mutex> lock(e->mu);
      // Finalizing may load a module: never inside a capture (the executor runs once eagerly first).
      if (!cand->tried && capturing != cudaStreamCaptureStatusNone) continue;
      if (!cand->tried) {
        std::lock_guard<std::mutex> finalizing(e->handle_mu());
        if (!(cand->rtc && state &&
              ready_from_state(e->handle(), *state, state_header(key_of(ctx, p), cand->id), *cand,
                               env->workspace_bytes)))
          ready(e->handle(), *gs, *cand, env->workspace_bytes);
      }
      if (!cand->plan.d) continue;
    }
    std::vector<void*> ptrs;
    for (int64_t uid : gs->uids) {
      switch (uid) {
        case kUidX:
          ptrs.push_back(const_cast<void*>(buf.x));
          break;
        case kUidW:
          ptrs.push_back(const_cast<void*>(buf.w));
          break;
        case kUidY:
          ptrs.push_back(buf.y);
          break;
        case kUidB:
          ptrs.push_back(const_cast<void*>(buf.b));
          break;
        case kUidZ:
          ptrs.push_back(const_cast<void*>(buf.z));
          break;
      }
    }
    Desc vp;
    Chain c;
    c(vp.create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR), "variant pack");
    if (!c.ok()) break;
    void* ws = env->workspace;
    c(set(vp.d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<int64_t>(gs->uids.size()),
          gs->uids.data()),
      "uids");
    c(set(vp.d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(ptrs.size()),
          ptrs.data()),
      "pointers");
    c(set(vp.d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws), "workspace");
    c(cudnnBackendFinalize(vp.d), "finalize variant pack");
    if (c.ok()) c(cudnnBackendExecute(h, cand->plan.d, vp.d), "execute");
    if (c.ok() && cand->rtc && cuda::collecting_state()) {
      std::string json = plan_json(cand->plan.d);
      if (!json.empty()) cuda::report_state(state_header(key_of(ctx, p), cand->id) + json);
    }
    if (c.ok()) return gs == &e->fused;
    cudaGetLastError();
    if (cand->id == tactic) continue;  // the asked-for engine failed here: cuDNN's order next
  }
  return ctx.error("no cuDNN graph engine runs this convolution", ErrorCode::kUnsupported);
}

}  // namespace kiln::ops::cudnn_graph
