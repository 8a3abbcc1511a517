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
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>

#include "backends/cuda/api.h"
#include "backends/cuda/cudnn_backend.h"
#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/conv/conv_graph_cuda.h"

namespace kiln::ops::cudnn_graph {
namespace {

using cuda::dnn::Candidate;
using cuda::dnn::Chain;
using cuda::dnn::Desc;
using cuda::dnn::mix;
using cuda::dnn::OpGraph;
using cuda::dnn::set;

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

// One operation graph and its ranked engine configurations.
struct GraphSet {
  OpGraph g;
  std::vector<Candidate> cands;
  std::vector<int64_t> uids;      ///< the non-virtual tensors, in variant-pack order
  std::vector<int64_t> topology;  ///< non-empty: a dynamic-shape graph sharing this kernel cache key
};

struct Entry {
  std::mutex mu;              ///< guards lazy plan finalization
  cuda::dnn::GraphHandle gh;  ///< finalizes this entry's graphs and plans
  GraphSet fused, plain;
  std::vector<int64_t> ids;
};

cuda::dnn::GraphCache<Entry>& cache() {
  static auto* c = new cuda::dnn::GraphCache<Entry>();
  return *c;
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
  const cudnnDataType_t dt = cuda::dnn::data_type(p.dtype);
  const cudnnDataType_t acc = CUDNN_DATA_FLOAT;
  const std::vector<int64_t> xd(p.x.begin(), p.x.end()), wd(p.w.begin(), p.w.end()), yd(p.y.begin(), p.y.end());
  std::vector<int64_t> bd(yd.size(), 1);
  bd[1] = yd[1];
  OpGraph& g = gs.g;
  auto tensor = [&](int64_t uid, cudnnDataType_t t, const std::vector<int64_t>& dims, bool virt) {
    return g.tensor(uid, t, dims, strides_of(dims, p.nhwc), virt);
  };
  const bool epilogue = fused && (p.bias || p.residual || p.act != GraphAct::kNone);
  if (fused && !epilogue) return;  // nothing to fuse: the plain graph covers it
  cudnnBackendDescriptor_t X = tensor(kUidX, dt, xd, false);
  cudnnBackendDescriptor_t W = tensor(kUidW, dt, wd, false);
  gs.uids = {kUidX, kUidW, kUidY};
  cudnnBackendDescriptor_t conv_out = epilogue ? tensor(100, acc, yd, true) : nullptr;
  cudnnBackendDescriptor_t Y = tensor(kUidY, dt, yd, false);
  if (!epilogue) conv_out = Y;
  Chain& c = g.chain;
  if (!c.ok()) return;

  // The convolution.
  const size_t sp = p.pads.size();
  std::vector<int64_t> pads(p.pads.begin(), p.pads.end()), strides(p.strides.begin(), p.strides.end()),
      dil(p.dilations.begin(), p.dilations.end());
  const int64_t spatial = static_cast<int64_t>(sp);
  Desc cd;
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
  Desc op;
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
  g.keep.push_back(std::move(cd));
  g.add(std::move(op));

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
      gs.uids.push_back(kUidB);
      steps.push_back({CUDNN_POINTWISE_ADD, tensor(kUidB, dt, bd, false)});
    }
    if (p.residual) {
      gs.uids.push_back(kUidZ);
      steps.push_back({CUDNN_POINTWISE_ADD, tensor(kUidZ, dt, yd, false)});
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
      cudnnBackendDescriptor_t out = i + 1 < steps.size() ? tensor(next_uid++, acc, yd, true) : Y;
      g.pointwise(steps[i].mode, cur, steps[i].operand, out);
      cur = out;
    }
  }
  if (!c.ok()) return;

  // The graph and its heuristics.
  const int rtc_cap = runtime_fusion_cap(p, fused);
  // A dynamic-shape graph: its runtime-compiled kernel can serve later graphs of the
  // same topology through the kernel cache (ready()).
  const bool dynamic = rtc_cap > 0 && kernel_cache_on();
  if (dynamic)
    gs.topology = {static_cast<int64_t>(p.dtype),   p.nhwc, p.bias, p.residual, static_cast<int64_t>(p.act),
                   static_cast<int64_t>(p.x.size())};
  if (!g.finalize(h, dynamic)) return;
  const cuda::dnn::Numerics num{p.dtype == DataType::kFloat32, p.allow_tf32};
  gs.cands = cuda::dnn::rank_engines(g.graph.d, num, kMaxPerGraph, rtc_cap, kTacticBase | (fused ? kFusedBit : 0),
                                     (int64_t(1) << 47) - 1);
}

// Finalizes a candidate's plan once (runtime-compiled ones share their topology's kernel
// cache); false when cuDNN refuses it or it needs too much workspace. Callers hold the
// entry's lock and its handle's.
bool ready(cudnnHandle_t h, const GraphSet& gs, Candidate& cand, size_t ws_max) {
  cudnnBackendDescriptor_t kc = nullptr;
  if (!cand.tried && cand.rtc && !gs.topology.empty()) kc = kernel_cache(gs.topology, gs.g.graph.d);
  return cuda::dnn::ready(h, cand, ws_max, kc);
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

// Finalizes `cand` from the node's kept state when that state is this candidate's plan.
// Callers hold the entry's lock and its handle's.
bool ready_from_state(cudnnHandle_t h, const std::string& state, const std::string& header, Candidate& cand,
                      size_t ws_max) {
  if (state.size() <= header.size() || state.compare(0, header.size(), header) != 0) return false;
  const bool ok = cuda::dnn::finalize_plan(h, ws_max, cand, [&](cudnnBackendDescriptor_t plan, Chain& c) {
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
  return cache().get(key_of(ctx, p), [&](Entry& fresh) {
    fresh.gh.init(ctx.cuda_env()->device, cuda::dnn::capturing(cuda::stream_of(ctx)),
                  static_cast<cudnnHandle_t>(ctx.cuda_env()->cudnn));
    {
      std::lock_guard<std::mutex> lock(fresh.gh.mu());
      build_graph(fresh.gh.handle(), p, true, fresh.fused);
      build_graph(fresh.gh.handle(), p, false, fresh.plain);
    }
    // Interleaved (fused, plain, fused, ...) so a timing budget covers both graphs.
    for (size_t i = 0; i < fresh.fused.cands.size() || i < fresh.plain.cands.size(); ++i)
      for (const GraphSet* gs : {&fresh.fused, &fresh.plain})
        if (i < gs->cands.size()) fresh.ids.push_back(gs->cands[i].id);
    cudaGetLastError();
    return true;
  });
}

}  // namespace

int64_t plans_from_state() { return g_plans_from_state.load(); }

void forget_plans_for_test() { cache().clear(); }

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
  const bool capturing = cuda::dnn::capturing(cuda::stream_of(ctx));
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
      if (!cand->tried && capturing) continue;
      if (!cand->tried) {
        std::lock_guard<std::mutex> finalizing(e->gh.mu());
        if (!(cand->rtc && state &&
              ready_from_state(e->gh.handle(), *state, state_header(key_of(ctx, p), cand->id), *cand,
                               env->workspace_bytes)))
          ready(e->gh.handle(), *gs, *cand, env->workspace_bytes);
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
    const Chain c = cuda::dnn::execute(h, cand->plan.d, gs->uids, ptrs, env->workspace);
    if (c.ok() && cand->rtc && cuda::collecting_state()) {
      std::string json = cuda::dnn::plan_json(cand->plan.d);
      if (!json.empty()) cuda::report_state(state_header(key_of(ctx, p), cand->id) + json);
    }
    if (c.ok()) return gs == &e->fused;
    // Refused here (execute cleared its error): the next candidate in order.
  }
  return ctx.error("no cuDNN graph engine runs this convolution", ErrorCode::kUnsupported);
}

}  // namespace kiln::ops::cudnn_graph
