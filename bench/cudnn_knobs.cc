// Does cuDNN have a faster configuration of a conv than its mode-A heuristic's defaults? For each
// conv given on the command line (NHWC fp16 in and out, fp32 compute, optionally + bias + ReLU
// as kiln's fused graph), this times the heuristic's first configurations (what `kiln build`
// times) and, for each of them, every configuration that changes one of the engine's knobs
// (CUDNN_ATTR_ENGINE_KNOB_INFO: min..max by stride, at most 24 values a knob) or two of the knobs
// whose single changes were fastest; each a median of 5 samples of 10 runs. It prints every
// engine's default and best variant, and the best overall against the heuristic's best.
//
//   g++ -O2 -std=c++17 -o cudnn_knobs bench/cudnn_knobs.cc -I/usr/local/cuda/include \
//       -L/usr/local/cuda/lib64 -lcudnn -lcudart
//   ./cudnn_knobs 256x64x56x56:64x3x3:s1p1:fused 256x128x28x28:128x3x3:s1p1:fused
//
// A conv: NxCxHxW:KxRxS:sSTRIDEpPAD[:fused]. Session 25 wrote it to see whether ResNet-50's 3x3
// convs (cuDNN's, ~2.2 of 5.6 ms at bs256) leave speed in knobs the heuristic does not set, as
// cuBLASLt left tiles (bench/lt_enumerate.cc); not part of the build.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "probe_check.h"

namespace {

struct D {  // an owned backend descriptor
  cudnnBackendDescriptor_t d = nullptr;
  explicit D(cudnnBackendDescriptorType_t t) { CK(cudnnBackendCreateDescriptor(t, &d)); }
  D(const D&) = delete;
  D& operator=(const D&) = delete;
  D(D&& o) noexcept : d(o.d) { o.d = nullptr; }
  ~D() {
    if (d) cudnnBackendDestroyDescriptor(d);
  }
};

template <class T>
cudnnStatus_t set(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t, int64_t n,
                  const T* v) {
  return cudnnBackendSetAttribute(d, a, t, n, v);
}

struct Conv {
  long n = 0, c = 0, h = 0, w = 0, k = 0, r = 0, s = 0, stride = 1, pad = 0;
  bool fused = false;
  long p() const { return (h + 2 * pad - r) / stride + 1; }
  long q() const { return (w + 2 * pad - s) / stride + 1; }
};

bool parse(const std::string& a, Conv& c) {
  char f[16] = {0};
  const int got = std::sscanf(a.c_str(), "%ldx%ldx%ldx%ld:%ldx%ldx%ld:s%ldp%ld:%15s", &c.n, &c.c, &c.h, &c.w, &c.k, &c.r,
                              &c.s, &c.stride, &c.pad, f);
  c.fused = std::string(f) == "fused";
  return got >= 9;
}

// An NHWC (or KRSC) tensor of logical dims [a, b, y, x] (b: channels).
cudnnBackendDescriptor_t tensor(std::vector<D>& keep, int64_t uid, cudnnDataType_t type, int64_t a, int64_t b,
                                int64_t y, int64_t x, bool is_virtual) {
  keep.emplace_back(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  cudnnBackendDescriptor_t t = keep.back().d;
  const int64_t dims[4] = {a, b, y, x}, strides[4] = {b * y * x, 1, x * b, b}, align = 16;
  CK(set(t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type));
  CK(set(t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims));
  CK(set(t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides));
  CK(set(t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
  CK(set(t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align));
  const bool v = is_virtual;
  CK(set(t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v));
  CK(cudnnBackendFinalize(t));
  return t;
}

cudnnBackendDescriptor_t pointwise(std::vector<D>& keep, cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x,
                                   cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t y) {
  keep.emplace_back(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  cudnnBackendDescriptor_t pw = keep.back().d;
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  CK(set(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode));
  CK(set(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec));
  CK(cudnnBackendFinalize(pw));
  keep.emplace_back(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  cudnnBackendDescriptor_t op = keep.back().d;
  CK(set(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw));
  CK(set(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
  if (b) CK(set(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
  CK(set(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
  CK(cudnnBackendFinalize(op));
  return op;
}

struct Graph {
  std::vector<D> keep;
  D graph{CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR};
};

// conv(X, W) [+ B, ReLU] -> Y; uids 1 X, 2 W, 3 Y, 4 B.
void build(cudnnHandle_t h, const Conv& c, Graph& g) {
  auto& keep = g.keep;
  const cudnnDataType_t half = CUDNN_DATA_HALF, f32 = CUDNN_DATA_FLOAT;
  cudnnBackendDescriptor_t x = tensor(keep, 1, half, c.n, c.c, c.h, c.w, false);
  cudnnBackendDescriptor_t w = tensor(keep, 2, half, c.k, c.c, c.r, c.s, false);
  cudnnBackendDescriptor_t y = tensor(keep, 3, half, c.n, c.k, c.p(), c.q(), false);
  cudnnBackendDescriptor_t acc = c.fused ? tensor(keep, 10, f32, c.n, c.k, c.p(), c.q(), true) : y;
  keep.emplace_back(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  cudnnBackendDescriptor_t cd = keep.back().d;
  const int64_t sd = 2, pads[2] = {c.pad, c.pad}, strides[2] = {c.stride, c.stride}, dil[2] = {1, 1};
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &f32));
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode));
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &sd));
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pads));
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pads));
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil));
  CK(set(cd, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, strides));
  CK(cudnnBackendFinalize(cd));
  keep.emplace_back(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  cudnnBackendDescriptor_t conv = keep.back().d;
  const float alpha = 1.f, beta = 0.f;
  CK(set(conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
  CK(set(conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w));
  CK(set(conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &acc));
  CK(set(conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd));
  CK(set(conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha));
  CK(set(conv, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta));
  CK(cudnnBackendFinalize(conv));
  std::vector<cudnnBackendDescriptor_t> ops{conv};
  if (c.fused) {
    cudnnBackendDescriptor_t b = tensor(keep, 4, half, 1, c.k, 1, 1, false);
    cudnnBackendDescriptor_t biased = tensor(keep, 11, f32, c.n, c.k, c.p(), c.q(), true);
    ops.push_back(pointwise(keep, CUDNN_POINTWISE_ADD, acc, b, biased));
    ops.push_back(pointwise(keep, CUDNN_POINTWISE_RELU_FWD, biased, nullptr, y));
  }
  CK(set(g.graph.d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h));
  CK(set(g.graph.d, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()),
         ops.data()));
  CK(cudnnBackendFinalize(g.graph.d));
}

using Knobs = std::map<int, int64_t>;  // knob type -> value

// Up to 64 child descriptors of `type` that `parent` lists under `attr`, created in `kd` (owned)
// and `raw`; how many it filled (0 where the query fails).
int64_t children(cudnnBackendDescriptor_t parent, cudnnBackendAttributeName_t attr, cudnnBackendDescriptorType_t type,
                 std::vector<D>& kd, std::vector<cudnnBackendDescriptor_t>& raw) {
  for (int i = 0; i < 64; ++i) kd.emplace_back(type), raw.push_back(kd.back().d);
  int64_t n = 0;
  if (cudnnBackendGetAttribute(parent, attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, 64, &n, raw.data()) != CUDNN_STATUS_SUCCESS)
    return 0;
  return n;
}

// The engine and knob choices of a heuristic configuration.
void describe(cudnnBackendDescriptor_t cfg, D& engine, Knobs& knobs) {
  int64_t n = 0;
  CK(cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &engine.d));
  std::vector<D> kd;
  std::vector<cudnnBackendDescriptor_t> raw;
  const int64_t nk = children(cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR, kd, raw);
  for (int64_t i = 0; i < nk; ++i) {
    cudnnBackendKnobType_t t{};
    int64_t v = 0, m = 0;
    cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &m, &t);
    cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1, &m, &v);
    knobs[static_cast<int>(t)] = v;
  }
}

struct Range {
  int64_t lo = 0, hi = 0, step = 1;
};
std::map<int, Range> knob_ranges(cudnnBackendDescriptor_t engine) {
  std::map<int, Range> out;
  std::vector<D> kd;
  std::vector<cudnnBackendDescriptor_t> raw;
  const int64_t nk = children(engine, CUDNN_ATTR_ENGINE_KNOB_INFO, CUDNN_BACKEND_KNOB_INFO_DESCRIPTOR, kd, raw);
  for (int64_t i = 0; i < nk; ++i) {
    cudnnBackendKnobType_t t{};
    Range r;
    int64_t m = 0;
    cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_INFO_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &m, &t);
    cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_INFO_MINIMUM_VALUE, CUDNN_TYPE_INT64, 1, &m, &r.lo);
    cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_INFO_MAXIMUM_VALUE, CUDNN_TYPE_INT64, 1, &m, &r.hi);
    cudnnBackendGetAttribute(raw[i], CUDNN_ATTR_KNOB_INFO_STRIDE, CUDNN_TYPE_INT64, 1, &m, &r.step);
    if (r.step <= 0) r.step = 1;
    out[static_cast<int>(t)] = r;
  }
  return out;
}

struct Timer {
  cudnnHandle_t h;
  void* ptrs[4];
  int64_t uids[4] = {1, 2, 3, 4};
  int n = 3;
  void* ws = nullptr;
  size_t ws_size = 0;
  cudaEvent_t a, b;
};

// Median ms of `plan` (negative when it cannot be made or run).
float time_cfg(Timer& t, cudnnBackendDescriptor_t cfg) {
  D plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  if (set(plan.d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &t.h) ||
      set(plan.d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfg) ||
      cudnnBackendFinalize(plan.d))
    return -1.f;
  int64_t wsz = 0, m = 0;
  cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &m, &wsz);
  if (static_cast<size_t>(wsz) > t.ws_size) return -2.f;
  D vp(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  if (set(vp.d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, t.n, t.ptrs) ||
      set(vp.d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, t.n, t.uids) ||
      set(vp.d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &t.ws) || cudnnBackendFinalize(vp.d))
    return -3.f;
  for (int i = 0; i < 3; ++i)
    if (cudnnBackendExecute(t.h, plan.d, vp.d) != CUDNN_STATUS_SUCCESS) return -4.f;
  std::vector<float> samples;
  for (int s = 0; s < 5; ++s) {
    cudaEventRecord(t.a);
    for (int i = 0; i < 10; ++i) cudnnBackendExecute(t.h, plan.d, vp.d);
    cudaEventRecord(t.b);
    cudaEventSynchronize(t.b);
    float ms = 0;
    cudaEventElapsedTime(&ms, t.a, t.b);
    samples.push_back(ms / 10);
  }
  if (cudaGetLastError() != cudaSuccess) return -5.f;
  std::sort(samples.begin(), samples.end());
  return samples[2];
}

// A configuration of `engine` with `knobs`; false when cuDNN refuses it.
bool make_cfg(cudnnBackendDescriptor_t engine, const Knobs& knobs, D& cfg) {
  std::vector<D> kc;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (auto& [type, value] : knobs) {
    kc.emplace_back(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR);
    const cudnnBackendKnobType_t t = static_cast<cudnnBackendKnobType_t>(type);
    if (set(kc.back().d, CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &t) ||
        set(kc.back().d, CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1, &value) ||
        cudnnBackendFinalize(kc.back().d))
      return false;
    raw.push_back(kc.back().d);
  }
  if (set(cfg.d, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &engine)) return false;
  if (!raw.empty() && set(cfg.d, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                          static_cast<int64_t>(raw.size()), raw.data()))
    return false;
  return cudnnBackendFinalize(cfg.d) == CUDNN_STATUS_SUCCESS;
}

std::string knob_string(const Knobs& k) {
  std::string s;
  for (auto& [t, v] : k) s += (s.empty() ? "" : " ") + std::to_string(t) + "=" + std::to_string(v);
  return s;
}

void run(cudnnHandle_t h, const Conv& c, const std::string& name) {
  Graph g;
  build(h, c, g);
  D heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t hm = CUDNN_HEUR_MODE_A;
  CK(set(heur.d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &g.graph.d));
  CK(set(heur.d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hm));
  CK(cudnnBackendFinalize(heur.d));
  int64_t count = 0;
  CK(cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
  const int64_t take = std::min<int64_t>(count, 8);
  std::vector<D> cfgs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR), raw.push_back(cfgs.back().d);
  CK(cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &count,
                              raw.data()));
  Timer t{h};
  const size_t xs = c.n * c.c * c.h * c.w, wsz = c.k * c.c * c.r * c.s, ys = c.n * c.k * c.p() * c.q();
  CK(cudaMalloc(&t.ptrs[0], xs * 2));
  CK(cudaMalloc(&t.ptrs[1], wsz * 2));
  CK(cudaMalloc(&t.ptrs[2], ys * 2));
  CK(cudaMalloc(&t.ptrs[3], c.k * 2));
  cudaMemset(t.ptrs[0], 0x3c, xs * 2);  // small fp16 values: every engine computes the same finite sums
  cudaMemset(t.ptrs[1], 0x1c, wsz * 2);
  cudaMemset(t.ptrs[3], 0, c.k * 2);
  t.n = c.fused ? 4 : 3;
  t.ws_size = size_t(1) << 30;
  CK(cudaMalloc(&t.ws, t.ws_size));
  cudaEventCreate(&t.a);
  cudaEventCreate(&t.b);
  float heur_best = 1e9f, all_best = 1e9f;
  std::string all_what;
  int timed = 0;
  for (int64_t i = 0; i < take; ++i) {
    D engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    Knobs def;
    describe(raw[i], engine, def);
    int64_t eidx = -1, m = 0;
    cudnnBackendGetAttribute(engine.d, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &m, &eidx);
    cudnnBackendBehaviorNote_t beh[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
    int64_t nb = 0;
    bool rtc = false;
    if (cudnnBackendGetAttribute(engine.d, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                                 CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &nb, beh) == CUDNN_STATUS_SUCCESS)
      for (int64_t j = 0; j < nb; ++j) rtc = rtc || beh[j] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
    if (rtc) {  // (each variant would compile a kernel: seconds each)
      std::printf("%s  heuristic #%ld engine %ld: compiled at run time, skipped\n", name.c_str(), static_cast<long>(i),
                  static_cast<long>(eidx));
      continue;
    }
    const float base = time_cfg(t, raw[i]);
    ++timed;
    if (base > 0) heur_best = std::min(heur_best, base), all_best = std::min(all_best, base);
    if (base > 0 && base <= all_best) all_what = "heuristic #" + std::to_string(i);
    // One knob at a time.
    std::vector<std::pair<float, Knobs>> singles;
    for (auto& [type, r] : knob_ranges(engine.d)) {
      int n = 0;
      for (int64_t v = r.lo; v <= r.hi && n < 24; v += r.step, ++n) {
        Knobs k = def;
        if (k.count(type) && k[type] == v) continue;
        k[type] = v;
        D cfg(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        if (!make_cfg(engine.d, k, cfg)) continue;
        const float ms = time_cfg(t, cfg.d);
        ++timed;
        if (ms > 0) singles.push_back({ms, k});
      }
    }
    std::sort(singles.begin(), singles.end(), [](auto& a, auto& b) { return a.first < b.first; });
    float best = base;
    Knobs best_k = def;
    if (!singles.empty() && (best < 0 || singles[0].first < best)) best = singles[0].first, best_k = singles[0].second;
    // Two knobs: each pair of the 6 best single changes.
    const size_t top = std::min<size_t>(singles.size(), 6);
    for (size_t a = 0; a < top; ++a)
      for (size_t b = a + 1; b < top; ++b) {
        Knobs k = singles[a].second;
        for (auto& [type, v] : singles[b].second)
          if (!def.count(type) || def.at(type) != v) k[type] = v;
        D cfg(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        if (!make_cfg(engine.d, k, cfg)) continue;
        const float ms = time_cfg(t, cfg.d);
        ++timed;
        if (ms > 0 && ms < best) best = ms, best_k = k;
      }
    std::printf("%s  heuristic #%ld engine %ld: default %.4f ms [%s]; best of %zu variants %.4f ms [%s]\n", name.c_str(),
                static_cast<long>(i), static_cast<long>(eidx), base, knob_string(def).c_str(), singles.size(), best,
                knob_string(best_k).c_str());
    if (best > 0 && best < all_best) all_best = best, all_what = "engine " + std::to_string(eidx) + " [" + knob_string(best_k) + "]";
    std::fflush(stdout);
  }
  std::printf("%s  SUMMARY heuristic's best %.4f ms, best found %.4f ms (ratio %.3f, %s; %d configurations timed)\n\n",
              name.c_str(), heur_best, all_best, all_best / heur_best, all_what.c_str(), timed);
  for (void* p : t.ptrs) cudaFree(p);
  cudaFree(t.ws);
}

}  // namespace

int main(int argc, char** argv) {
  cudnnHandle_t h;
  CK(cudnnCreate(&h));
  for (int i = 1; i < argc; ++i) {
    Conv c;
    if (!parse(argv[i], c)) {
      std::fprintf(stderr, "bad conv '%s' (NxCxHxW:KxRxS:sSTRIDEpPAD[:fused])\n", argv[i]);
      return 2;
    }
    run(h, c, argv[i]);
  }
  cudnnDestroy(h);
  return 0;
}
