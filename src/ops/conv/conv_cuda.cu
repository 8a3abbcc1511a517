// CUDA kernels of the conv family through cuDNN's descriptor API: Conv
// (cudnnConvolutionForward) and ConvTranspose (cudnnConvolutionBackwardData),
// 1-D (as 2-D with H = 1), 2-D and 3-D, NCHW, grouped, strided, dilated.
// Tactics (docs/tactics.md): forward convs offer cuDNN's graph-API engines first
// (conv_graph_cuda.h; conv + bias + residual + activation fused where an engine
// takes it), then the legacy algorithms, ID = algo * 4 + math type.
// cuDNN pads symmetrically; an asymmetric ONNX padding is taken when padding
// both sides by the leading pad yields the same windows (the extra trailing
// padding is then never read), otherwise `applies` says no.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "backends/cuda/kernel_util.cuh"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/conv/conv_act.cuh"
#include "ops/conv/conv_chain_cuda.h"
#include "ops/conv/conv_direct_cuda.h"
#include "ops/conv/conv_graph_cuda.h"
#include "ops/conv/conv_internal.h"
#include "ops/conv/conv_shortcut_cuda.h"
#include "ops/conv/conv_tc16_cuda.h"
#include "ops/layout.h"
#include "ops/matmul/matmul_internal.h"

namespace kiln::ops {
namespace {

Status fused_conv_cuda(KernelContext& ctx);

bool is_cuda_float(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat16 || t == DataType::kBFloat16;
}

cudnnDataType_t dnn_type(DataType t) {
  return t == DataType::kFloat32 ? CUDNN_DATA_FLOAT : t == DataType::kFloat16 ? CUDNN_DATA_HALF : CUDNN_DATA_BFLOAT16;
}

/// Geometry handed to cuDNN: `x` is the forward convolution's input and `y` its
/// output (for ConvTranspose, y is the op's input and x its output).
struct DnnGeometry {
  Dims x, w, y;  ///< full logical (NCHW / OIHW) dims, 1-D already expanded to 2-D
  std::vector<int> pads, strides, dilations;
  int64_t group = 1;
  bool nhwc = false;  ///< tensors stored NHWC, filter OHWI (kiln.nhwc nodes)
};

// Output of the forward conv of dim i with symmetric `pad`, or -1 when nothing fits.
int64_t symmetric_out(int64_t in, int64_t pad, int64_t ext, int64_t stride) {
  const int64_t span = in + 2 * pad - ext;
  return span < 0 ? -1 : span / stride + 1;
}

// Every spatial dim's padding is one cuDNN can express: the leading pad on both sides
// gives the same output size.
bool symmetric_padding(const conv::ConvShape& s) {
  for (int64_t i = 0; i < s.attrs.spatial; ++i)
    if (symmetric_out(s.geo.in[i], s.geo.pad_begin[i], window::window_extent(s.attrs, i), s.attrs.strides[i]) !=
        s.geo.out[i])
      return false;
  return true;
}

bool fits_int(const Dims& d) {
  int64_t v = 1;
  for (int64_t x : d) {
    if (x > INT32_MAX) return false;
    v *= x;
  }
  return v <= INT32_MAX;
}

// Expands a 1-D problem to 2-D (H = 1) and converts to cuDNN's int arrays.
DnnGeometry make_geometry(const Dims& x, const Dims& w, const Dims& y, const std::vector<int64_t>& pads,
                          const window::WindowAttrs& a, int64_t group) {
  DnnGeometry g;
  g.x = x;
  g.w = w;
  g.y = y;
  g.group = group;
  for (int64_t i = 0; i < a.spatial; ++i) {
    g.pads.push_back(static_cast<int>(pads[i]));
    g.strides.push_back(static_cast<int>(a.strides[i]));
    g.dilations.push_back(static_cast<int>(a.dilations[i]));
  }
  if (a.spatial == 1) {
    for (Dims* d : {&g.x, &g.w, &g.y}) d->insert(d->begin() + 2, 1);
    g.pads.insert(g.pads.begin(), 0);
    g.strides.insert(g.strides.begin(), 1);
    g.dilations.insert(g.dilations.begin(), 1);
  }
  return g;
}

// kiln's direct conv problem of a 2-D geometry (NCHW dims; nchw_in: X stays NCHW).
conv_direct::Problem direct_problem(const DnnGeometry& g, bool nchw_in) {
  return {g.x[0], g.x[2],       g.x[3],       g.x[1],    g.y[2],    g.y[3],         g.y[1],         g.w[2],
          g.w[3], g.strides[0], g.strides[1], g.pads[0], g.pads[1], g.dilations[0], g.dilations[1], nchw_in};
}

struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
  std::vector<int64_t> tactics;  ///< every usable (algo, math) as a tactic ID, cuDNN's ranking first
  ~ConvPlan() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

std::mutex g_plans_mu;
std::map<std::vector<int64_t>, std::unique_ptr<ConvPlan>>& plans() {
  static auto* m = new std::map<std::vector<int64_t>, std::unique_ptr<ConvPlan>>();
  return *m;
}

#define KILN_DNN_CHECK(call)                                                                                   \
  do {                                                                                                         \
    cudnnStatus_t st_ = (call);                                                                                \
    if (st_ != CUDNN_STATUS_SUCCESS)                                                                           \
      return ctx.error(                                                                                        \
          std::string(#call).substr(0, std::string(#call).find('(')) + " failed: " + cudnnGetErrorString(st_), \
          ErrorCode::kInternal);                                                                               \
  } while (0)

Status set_tensor(KernelContext& ctx, cudnnTensorDescriptor_t d, cudnnDataType_t t, const Dims& dims,
                  bool nhwc = false) {
  std::vector<int> dv(dims.begin(), dims.end()), sv(dims.size());
  int s = 1;
  for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) {
    sv[i] = s;
    s *= dv[i];
  }
  if (nhwc && dims.size() == 4) {  // logical [N, C, H, W] stored [N, H, W, C]
    sv = {dv[1] * dv[2] * dv[3], 1, dv[3] * dv[1], dv[1]};
  }
  KILN_DNN_CHECK(cudnnSetTensorNdDescriptor(d, t, static_cast<int>(dv.size()), dv.data(), sv.data()));
  return Status();
}

// The two cuDNN algorithm families kiln runs, behind one interface for rank_algos.
struct ForwardAlgos {
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  static cudnnStatus_t find(cudnnHandle_t h, const ConvPlan& p, int* n, Perf* perf) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, kCount, n, perf);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const ConvPlan& p, int algo, size_t* ws) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y,
                                                   static_cast<cudnnConvolutionFwdAlgo_t>(algo), ws);
  }
};
struct BackwardDataAlgos {
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static constexpr int kCount = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  static cudnnStatus_t find(cudnnHandle_t h, const ConvPlan& p, int* n, Perf* perf) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, kCount, n, perf);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const ConvPlan& p, int algo, size_t* ws) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x,
                                                        static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), ws);
  }
};

/// One runnable algorithm: a tactic ID is algo * 4 + math type (both small cuDNN enums).
struct DnnCandidate {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
  int64_t id() const { return int64_t(algo) * 4 + static_cast<int64_t>(math); }
};

// cuDNN's ranked algorithms that succeed within `ws_max` bytes of workspace, in
// its order, without duplicates. FP32 keeps `math` (FMA without TF32); reduced
// precision takes each algorithm's own math type.
template <typename Algos>
Status rank_algos(KernelContext& ctx, cudnnHandle_t h, ConvPlan& p, cudnnMathType_t math, bool f32, size_t ws_max,
                  std::vector<DnnCandidate>& out) {
  const bool fma_only = math == CUDNN_FMA_MATH;
  typename Algos::Perf perf[Algos::kCount];
  int n = 0;
  KILN_DNN_CHECK(Algos::find(h, p, &n, perf));
  for (int i = 0; i < n; ++i) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS ||
        (fma_only && perf[i].mathType != CUDNN_FMA_MATH && perf[i].mathType != CUDNN_DEFAULT_MATH))
      continue;
    // FP16/BF16: tensor-core variants only (the non-tensor-op ones can look fast in
    // isolated timing and are many times slower in an engine).
    if (!f32 && perf[i].mathType != CUDNN_TENSOR_OP_MATH && perf[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
        !out.empty())
      continue;
    DnnCandidate c;
    c.algo = static_cast<int>(perf[i].algo);
    c.math = f32 ? math : perf[i].mathType;
    KILN_DNN_CHECK(cudnnSetConvolutionMathType(p.conv, c.math));
    if (Algos::workspace(h, p, c.algo, &c.workspace) != CUDNN_STATUS_SUCCESS || c.workspace > ws_max) continue;
    bool dup = false;
    for (const DnnCandidate& o : out) dup = dup || o.id() == c.id();
    if (!dup) out.push_back(c);
  }
  return Status();
}

// `tactic` >= 0 asks for that candidate; when this problem has no such
// candidate, cuDNN's first choice runs (no error: tactics are timed at the opt
// shapes and may not exist at others).
Status build_plan(KernelContext& ctx, const DnnGeometry& g, DataType dtype, bool transpose, int64_t tactic,
                  ConvPlan& p) {
  const cuda::Env* env = ctx.cuda_env();
  auto h = static_cast<cudnnHandle_t>(env->cudnn);
  const cudnnDataType_t dt = dnn_type(dtype);
  KILN_DNN_CHECK(cudnnCreateTensorDescriptor(&p.x));
  KILN_DNN_CHECK(cudnnCreateTensorDescriptor(&p.y));
  KILN_DNN_CHECK(cudnnCreateFilterDescriptor(&p.w));
  KILN_DNN_CHECK(cudnnCreateConvolutionDescriptor(&p.conv));
  KILN_RETURN_IF_ERROR(set_tensor(ctx, p.x, dt, g.x, g.nhwc));
  KILN_RETURN_IF_ERROR(set_tensor(ctx, p.y, dt, g.y, g.nhwc));
  std::vector<int> wv(g.w.begin(), g.w.end());
  KILN_DNN_CHECK(cudnnSetFilterNdDescriptor(p.w, dt, g.nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                            static_cast<int>(wv.size()), wv.data()));
  KILN_DNN_CHECK(cudnnSetConvolutionNdDescriptor(p.conv, static_cast<int>(g.pads.size()), g.pads.data(),
                                                 g.strides.data(), g.dilations.data(), CUDNN_CROSS_CORRELATION,
                                                 CUDNN_DATA_FLOAT));
  KILN_DNN_CHECK(cudnnSetConvolutionGroupCount(p.conv, static_cast<int>(g.group)));
  // FP32 without TF32 must stay on FMA kernels (DEFAULT_MATH permits TF32 on Ampere and later).
  const bool f32 = dtype == DataType::kFloat32;
  const cudnnMathType_t math = f32 ? (env->allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH) : CUDNN_TENSOR_OP_MATH;
  KILN_DNN_CHECK(cudnnSetConvolutionMathType(p.conv, math));
  std::vector<int> out(g.x.size());
  KILN_DNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(p.conv, p.x, p.w, static_cast<int>(out.size()), out.data()));
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] != g.y[i])
      return ctx.error("cuDNN's convolution output dims differ from ONNX's " + dims_to_string(g.y),
                       ErrorCode::kUnsupported);
  const size_t ws_max = env->workspace_bytes;
  std::vector<DnnCandidate> cands;
  if (transpose) {
    KILN_RETURN_IF_ERROR(rank_algos<BackwardDataAlgos>(ctx, h, p, math, f32, ws_max, cands));
  } else {
    KILN_RETURN_IF_ERROR(rank_algos<ForwardAlgos>(ctx, h, p, math, f32, ws_max, cands));
  }
  if (cands.empty())
    return ctx.error("cuDNN offers no convolution algorithm within the " + std::to_string(ws_max) +
                         "-byte workspace for X " + dims_to_string(g.x) + ", W " + dims_to_string(g.w),
                     ErrorCode::kUnsupported);
  const DnnCandidate* pick = &cands[0];
  for (const DnnCandidate& c : cands) {
    if (c.id() == tactic) pick = &c;
    p.tactics.push_back(c.id());
  }
  KILN_DNN_CHECK(cudnnSetConvolutionMathType(p.conv, pick->math));
  p.algo = pick->algo;
  p.workspace = pick->workspace;
  return Status();
}

// `report`: hand the legacy candidates to a collecting builder (forward convs report
// them together with the graph candidates instead, in run_graph).
Result<ConvPlan*> plan_for(KernelContext& ctx, const DnnGeometry& g, DataType dtype, bool transpose,
                           bool report = true) {
  const cuda::Env* env = ctx.cuda_env();
  const int64_t tactic = ctx.attrs().get_int(kTacticAttr, -1);
  std::vector<int64_t> key{env->device, static_cast<int64_t>(dtype),
                           transpose,   dtype == DataType::kFloat32 && env->allow_tf32,
                           g.group,     static_cast<int64_t>(env->workspace_bytes),
                           g.nhwc,      tactic};
  for (const Dims* d : {&g.x, &g.w, &g.y}) {
    key.push_back(static_cast<int64_t>(d->size()));
    key.insert(key.end(), d->begin(), d->end());
  }
  for (const auto* v : {&g.pads, &g.strides, &g.dilations}) key.insert(key.end(), v->begin(), v->end());
  ConvPlan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_plans_mu);
    auto it = plans().find(key);
    if (it != plans().end()) plan = it->second.get();
  }
  if (!plan) {
    auto fresh = std::make_unique<ConvPlan>();
    KILN_RETURN_IF_ERROR(build_plan(ctx, g, dtype, transpose, tactic, *fresh));
    std::lock_guard<std::mutex> lock(g_plans_mu);
    auto [it, inserted] = plans().emplace(key, std::move(fresh));
    plan = it->second.get();
  }
  if (report) cuda::report_tactics(plan->tactics);
  return plan;
}

// The activations a cuDNN graph epilogue expresses (the others run in our epilogue kernel).
bool graph_act(int kind, cudnn_graph::GraphAct* out);

// A forward conv through cuDNN's graph engines (conv_graph_cuda.h), reporting the
// graph and legacy candidates together. Returns false when the legacy path must run
// (graph path off, a legacy tactic chosen, no engine runs); `*epilogue_done` says
// whether bias, residual and activation were applied in the graph (`act_kind` is the
// FusedConv activation, -1 for a plain Conv whose only epilogue is the bias).
Result<bool> run_graph(KernelContext& ctx, const DnnGeometry& g, const ConvPlan& legacy, int act_kind, const Tensor* b,
                       const Tensor* z, const std::vector<int64_t>& own, bool* epilogue_done) {
  *epilogue_done = false;
  const cuda::Env* env = ctx.cuda_env();
  cudnn_graph::ConvProblem pr;
  pr.x = g.x;
  pr.w = g.w;
  pr.y = g.y;
  pr.pads = g.pads;
  pr.strides = g.strides;
  pr.dilations = g.dilations;
  pr.nhwc = g.nhwc;
  pr.dtype = ctx.input(0).dtype();
  pr.allow_tf32 = env->allow_tf32;
  pr.bias = b != nullptr;
  pr.residual = z != nullptr;
  if (act_kind >= 0 && !graph_act(act_kind, &pr.act)) pr.bias = pr.residual = false;  // whole epilogue ours
  // Channel counts the tensor-core engines vectorize over (ResNet/YOLO/ViT convs all
  // are; stems are padded to 8 channels); other problems stay on the legacy path.
  const int64_t lanes = pr.dtype == DataType::kFloat32 ? 4 : 8;
  const bool channels_ok = g.x[1] % lanes == 0 && g.y[1] % lanes == 0;
  const bool legacy_fuses =
      act_kind < 0 || act_kind == static_cast<int>(Act::kNone) || act_kind == static_cast<int>(Act::kRelu);
  // Channels-last FP32 with TF32 allowed: cuDNN 9's legacy calls run it on an FMA engine
  // (convolve_common_engine_float_NHWC; ResNet-50 bs1 1.34 ms, 0.47 with the graph
  // engines' TF32 kernels, H100), so there the graph engines are offered and lead.
  const bool tf32_nhwc = pr.dtype == DataType::kFloat32 && pr.allow_tf32 && g.nhwc;
  const bool legacy_leads = legacy_fuses && !tf32_nhwc;
  const bool wanted = cudnn_graph::mode() == cudnn_graph::Mode::kAll ||
                      (cudnn_graph::mode() == cudnn_graph::Mode::kUnfused && !legacy_leads);
  Result<std::vector<int64_t>> ids = wanted && g.x.size() >= 4 && channels_ok
                                         ? cudnn_graph::candidates(ctx, pr)
                                         : Result<std::vector<int64_t>>(std::vector<int64_t>{});
  // With KILN_CUDNN_GRAPH=all, where the legacy call fuses the whole epilogue (none or
  // ReLU) its choice leads and graph engines must beat it when timed; elsewhere (and in
  // channels-last TF32) cuDNN's graph choice leads. The two first choices come first, so
  // every timing budget compares them.
  const std::vector<int64_t> graph_ids = ids.ok() ? *ids : std::vector<int64_t>{};
  const bool have_graph = !graph_ids.empty();
  const std::vector<int64_t>& lead = legacy_leads ? legacy.tactics : graph_ids;
  const std::vector<int64_t>& other = legacy_leads ? graph_ids : legacy.tactics;
  // In TF32 the two lists alternate all the way: the legacy list is short (2 algorithms
  // in FP32 channels-last) and its second often wins at batch 32 and more, which a
  // timing budget of 8 must not cut off behind 16 graph engines.
  std::vector<int64_t> all;
  if (!lead.empty()) all.push_back(lead[0]);
  if (!other.empty()) all.push_back(other[0]);
  all.insert(all.end(), own.begin(), own.end());  // kiln's own kernels that take the problem
  if (tf32_nhwc) {
    for (size_t i = 1; i < lead.size() || i < other.size(); ++i) {
      if (i < lead.size()) all.push_back(lead[i]);
      if (i < other.size()) all.push_back(other[i]);
    }
  } else {
    for (size_t i = 1; i < lead.size(); ++i) all.push_back(lead[i]);
    for (size_t i = 1; i < other.size(); ++i) all.push_back(other[i]);
  }
  cuda::report_tactics(all);
  const int64_t tactic = ctx.attrs().get_int(kTacticAttr, -1);
  if (!have_graph || (tactic >= 0 && !cudnn_graph::is_graph_tactic(tactic))) return false;
  if (tactic < 0 && legacy_leads && !legacy.tactics.empty()) return false;  // the legacy choice leads
  cudnn_graph::ConvBuffers buf;
  buf.x = ctx.input(0).data();
  buf.w = ctx.input(1).data();
  buf.b = b ? b->data() : nullptr;
  buf.z = z ? z->data() : nullptr;
  buf.y = ctx.output(0).data();
  Result<bool> fused = cudnn_graph::run(ctx, pr, tactic, buf);
  if (!fused.ok()) {
    cudaGetLastError();
    return false;
  }
  *epilogue_done = *fused;
  return true;
}

// ---------------------------------------------------------------- Epilogue

// act(y + bias[c] + z) in one pass over the conv output (conv_act.cuh); Conv's bias add
// is the case without an activation or z.
// The channel of element i is (i / inner) % channels (NCHW: inner = spatial
// volume; NHWC: inner = 1). I is uint32_t below 2^31 elements: 32-bit division
// is several times cheaper, and unsigned i + stride cannot overflow there.
template <typename T, typename I>
__global__ void epilogue_kernel(T* __restrict__ y, const T* __restrict__ bias, const T* __restrict__ z, ActParams act,
                                I channels, I inner, I total) {
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    float v = cuda::to_f(y[i]);
    if (bias) v += cuda::to_f(bias[(i / inner) % channels]);
    if (z) v += cuda::to_f(z[i]);
    y[i] = cuda::from_f<T>(apply_act(act, v));
  }
}

// Same over vectors of V elements that never cross a channel boundary: either
// all V share one channel (inner % V == 0) or they are V consecutive channels
// (inner == 1, channels % V == 0), whose biases are then one vector load.
template <typename T, int V, typename I>
__global__ void epilogue_vec_kernel(T* __restrict__ y, const T* __restrict__ bias, const T* __restrict__ z,
                                    ActParams act, I channels, I inner, I nvec) {
  using P = cuda::Vec<T, V>;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I v = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += stride) {
    const I i = v * V;
    P pk = *reinterpret_cast<const P*>(y + i);
    float f[V];
#pragma unroll
    for (int k = 0; k < V; ++k) f[k] = cuda::to_f(pk.v[k]);
    if (bias) {
      if (inner == 1) {
        const P bk = *reinterpret_cast<const P*>(bias + i % channels);
#pragma unroll
        for (int k = 0; k < V; ++k) f[k] += cuda::to_f(bk.v[k]);
      } else {
        const float bc = cuda::to_f(bias[(i / inner) % channels]);
#pragma unroll
        for (int k = 0; k < V; ++k) f[k] += bc;
      }
    }
    if (z) {
      const P zk = *reinterpret_cast<const P*>(z + i);
#pragma unroll
      for (int k = 0; k < V; ++k) f[k] += cuda::to_f(zk.v[k]);
    }
#pragma unroll
    for (int k = 0; k < V; ++k) pk.v[k] = cuda::from_f<T>(apply_act(act, f[k]));
    *reinterpret_cast<P*>(y + i) = pk;
  }
}

// Blocks of kBlock threads for a grid-stride loop over `items`: one resident wave
// (SMs x occupancy of this kernel), fewer when there is less work.
template <auto Kernel>
unsigned resident_grid(int64_t items) {
  static const int64_t wave = [] {
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, Kernel, cuda::kBlock, 0) != cudaSuccess) {
      (void)cudaGetLastError();
      return int64_t{132} * 4;
    }
    return static_cast<int64_t>(std::max(sms, 1)) * std::max(per_sm, 1);
  }();
  const int64_t need = (items + cuda::kBlock - 1) / cuda::kBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(need, wave)));
}

template <typename T, typename I>
void run_epilogue(cudaStream_t s, int vec_bytes, T* y, const T* b, const T* z, const ActParams& act, int64_t channels,
                  int64_t inner, int64_t total) {
  auto go = [&](auto vec) {
    constexpr int V = decltype(vec)::value;
    const int64_t nvec = total / V;
    epilogue_vec_kernel<T, V, I><<<resident_grid<epilogue_vec_kernel<T, V, I>>(nvec), cuda::kBlock, 0, s>>>(
        y, b, z, act, static_cast<I>(channels), static_cast<I>(inner), static_cast<I>(nvec));
  };
  if (vec_bytes == 16) {
    go(std::integral_constant<int, 16 / static_cast<int>(sizeof(T))>{});
  } else if (vec_bytes == 8) {
    go(std::integral_constant<int, 8 / static_cast<int>(sizeof(T))>{});
  } else {
    epilogue_kernel<T, I><<<resident_grid<epilogue_kernel<T, I>>(total), cuda::kBlock, 0, s>>>(
        y, b, z, act, static_cast<I>(channels), static_cast<I>(inner), static_cast<I>(total));
  }
}

bool aligned_to(const void* p, int bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

/// y = act(y + b[(i / inner) % channels] + z) in place; b and z may be null.
Status launch_epilogue(KernelContext& ctx, Tensor& y, const Tensor* b, const Tensor* z, const ActParams& act,
                       int64_t channels, int64_t inner, const char* name) {
  const int64_t total = y.numel();
  if (total == 0) return Status();
  if (b && channels <= 0) return ctx.error("bias without channels", ErrorCode::kInternal);
  if (inner <= 0) inner = 1;
  KILN_CUDA_DISPATCH_FLOAT(y.dtype(), T, {
    T* yp = y.data_as<T>();
    const T* bp = b ? b->data_as<T>() : nullptr;
    const T* zp = z ? z->data_as<T>() : nullptr;
    int vec_bytes = 0;
    for (int bytes : {16, 8}) {
      const int64_t v = bytes / static_cast<int64_t>(sizeof(T));
      // Without a bias the channel does not matter.
      const bool whole = !bp || (inner == 1 ? channels % v == 0 && aligned_to(bp, bytes) : inner % v == 0);
      if (whole && total % v == 0 && aligned_to(yp, bytes) && (!zp || aligned_to(zp, bytes))) {
        vec_bytes = bytes;
        break;
      }
    }
    if (total < INT32_MAX)
      run_epilogue<T, uint32_t>(cuda::stream_of(ctx), vec_bytes, yp, bp, zp, act, channels, inner, total);
    else
      run_epilogue<T, int64_t>(cuda::stream_of(ctx), vec_bytes, yp, bp, zp, act, channels, inner, total);
  });
  return cuda::launch_status(ctx, name);
}

// y[n, m, ...] += b[m] (NCHW).
Status add_bias(KernelContext& ctx, const Tensor& b, Tensor& y) {
  const int64_t channels = y.dim(1), total = y.numel();
  const int64_t inner = channels ? total / (y.dim(0) * channels) : 0;
  if (total == 0) return Status();
  return launch_epilogue(ctx, y, &b, nullptr, ActParams{}, channels, inner, "conv_add_bias");
}

Status run_dnn(KernelContext& ctx, const DnnGeometry& g, bool transpose) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  Tensor& y = ctx.output(0);
  for (const Dims* d : {&g.x, &g.w, &g.y})
    if (!fits_int(*d)) return ctx.error("tensor too large for cuDNN's int dims", ErrorCode::kUnsupported);
  KILN_ASSIGN_OR_RETURN(ConvPlan * p, plan_for(ctx, g, x.dtype(), transpose, /*report=*/transpose));
  const Tensor* bias = ctx.has_input(2) && ctx.input(2).numel() > 0 ? &ctx.input(2) : nullptr;
  if (!transpose) {
    bool done = false;
    KILN_ASSIGN_OR_RETURN(bool ran, run_graph(ctx, g, *p, -1, bias, nullptr, /*own=*/{}, &done));
    if (ran) return done || !bias ? Status() : add_bias(ctx, *bias, y);
  }
  const cuda::Env* env = ctx.cuda_env();
  auto h = static_cast<cudnnHandle_t>(env->cudnn);
  const float one = 1.f, zero = 0.f;
  if (!transpose) {
    KILN_DNN_CHECK(cudnnConvolutionForward(h, &one, p->x, x.data(), p->w, w.data(), p->conv,
                                           static_cast<cudnnConvolutionFwdAlgo_t>(p->algo), env->workspace,
                                           p->workspace, &zero, p->y, y.data()));
  } else {
    KILN_DNN_CHECK(cudnnConvolutionBackwardData(h, &one, p->w, w.data(), p->y, x.data(), p->conv,
                                                static_cast<cudnnConvolutionBwdDataAlgo_t>(p->algo), env->workspace,
                                                p->workspace, &zero, p->x, y.data()));
  }
  if (bias) return add_bias(ctx, *bias, y);
  return Status();
}

bool dtypes_ok(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 2 || !is_cuda_float(inputs[0].dtype) || inputs[1].dtype != inputs[0].dtype) return false;
  if (node.input(2) && (inputs.size() < 3 || inputs[2].dtype != inputs[0].dtype)) return false;
  const Shape* x = inputs[0].shape ? &*inputs[0].shape : nullptr;
  const Shape* w = inputs[1].shape ? &*inputs[1].shape : nullptr;
  if (!x || !w || x->size() < 3 || x->size() > 5 || w->size() != x->size()) return false;
  return node.attrs.get_int("ceil_mode", 0) == 0;
}

// ---------------------------------------------------------------- Conv

Status conv_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor* b = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (w.dtype() != x.dtype() || (b && b->dtype() != x.dtype())) return ctx.error("X, W and B dtypes differ");
  // An NHWC Conv runs as a FusedConv without an activation (same descriptors and epilogue).
  if (is_nhwc(ctx.node())) return fused_conv_cuda(ctx);
  auto s = conv::conv_shape(ctx.attrs(), x.dims(), w.dims(), b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  if (ctx.output(0).numel() == 0) return Status();
  if (!symmetric_padding(*s)) return ctx.error("asymmetric padding cuDNN cannot express", ErrorCode::kUnsupported);
  if (s->c == 0 || s->k_count == 0) {
    // Empty reduction: the output is the bias (or zero).
    cudaMemsetAsync(ctx.output(0).data(), 0, ctx.output(0).nbytes(), cuda::stream_of(ctx));
    if (b) return add_bias(ctx, *b, ctx.output(0));
    return cuda::launch_status(ctx, "conv_zero");
  }
  DnnGeometry g = make_geometry(x.dims(), w.dims(), ctx.output(0).dims(), s->geo.pad_begin, s->attrs, s->group);
  return run_dnn(ctx, g, false);
}

bool applies_conv(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!dtypes_ok(node, inputs)) return false;
  const Shape& x = *inputs[0].shape;
  const Shape& w = *inputs[1].shape;
  const int64_t sp = static_cast<int64_t>(x.size()) - 2;
  std::vector<int64_t> kernel(sp, -1);
  for (int64_t i = 0; i < sp; ++i) kernel[i] = w[i + 2].known() ? w[i + 2].value : -1;
  window::WindowAttrs wa;
  if (!window::read_window_attrs(node.attrs, sp, &kernel, wa).empty()) return false;
  for (int64_t i = 0; i < sp; ++i) {
    if (wa.auto_pad == window::AutoPad::kValid) continue;
    if (wa.auto_pad == window::AutoPad::kNotSet && wa.pads[i] == wa.pads[i + sp]) continue;
    // Asymmetric: decide on the known input size.
    if (!x[i + 2].known()) return false;
    int64_t pb = 0;
    const int64_t out = window::output_size(wa, i, x[i + 2].value, &pb);
    if (out < 0 || symmetric_out(x[i + 2].value, pb, window::window_extent(wa, i), wa.strides[i]) != out) return false;
  }
  return true;
}

// ---------------------------------------------------------------- ConvTranspose

// cuDNN's backward data reproduces ConvTranspose when the forward conv of the
// output with the symmetric leading pad lands back on the input size.
bool transpose_expressible(const conv::ConvTransposeShape& s) {
  for (int64_t i = 0; i < s.attrs.spatial; ++i) {
    if (s.pad_begin[i] < 0) return false;
    if (symmetric_out(s.out[i], s.pad_begin[i], window::window_extent(s.attrs, i), s.attrs.strides[i]) != s.in[i])
      return false;
  }
  return true;
}

Status conv_transpose_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor* b = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (w.dtype() != x.dtype() || (b && b->dtype() != x.dtype())) return ctx.error("X, W and B dtypes differ");
  auto s = conv::conv_transpose_shape(ctx.attrs(), x.dims(), w.dims(), b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  Tensor& y = ctx.output(0);
  if (y.numel() == 0) return Status();
  if (x.numel() == 0 || s->k_count == 0 || s->in_count == 0) {
    cudaMemsetAsync(y.data(), 0, y.nbytes(), cuda::stream_of(ctx));
    if (b) return add_bias(ctx, *b, y);
    return cuda::launch_status(ctx, "conv_transpose_zero");
  }
  if (!transpose_expressible(*s)) return ctx.error("padding cuDNN cannot express", ErrorCode::kUnsupported);
  // The forward conv maps Y [N, M, out] to X [N, C, in] with filter W [C, M/group, k].
  DnnGeometry g = make_geometry(y.dims(), w.dims(), x.dims(), s->pad_begin, s->attrs, s->group);
  return run_dnn(ctx, g, true);
}

bool applies_conv_transpose(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!dtypes_ok(node, inputs)) return false;
  const Shape& x = *inputs[0].shape;
  const Shape& w = *inputs[1].shape;
  const int64_t sp = static_cast<int64_t>(x.size()) - 2;
  bool all_known = true;
  for (size_t i = 1; i < x.size(); ++i) all_known = all_known && x[i].known();
  for (const Dim& d : w) all_known = all_known && d.known();
  if (all_known) {
    Dims xd{1}, wd;
    for (size_t i = 1; i < x.size(); ++i) xd.push_back(x[i].value);
    for (const Dim& d : w) wd.push_back(d.value);
    auto s = conv::conv_transpose_shape(node.attrs, xd, wd, nullptr);
    return s.ok() && transpose_expressible(*s);
  }
  // Symbolic sizes: explicit symmetric pads and output_padding < stride always work.
  std::vector<int64_t> kernel(sp, -1);
  for (int64_t i = 0; i < sp; ++i) kernel[i] = w[i + 2].known() ? w[i + 2].value : -1;
  window::WindowAttrs wa;
  if (!window::read_window_attrs(node.attrs, sp, &kernel, wa).empty()) return false;
  if (wa.auto_pad != window::AutoPad::kNotSet || node.attrs.has("output_shape")) return false;
  const auto op = node.attrs.get_ints("output_padding", std::vector<int64_t>(sp, 0));
  if (static_cast<int64_t>(op.size()) != sp) return false;
  for (int64_t i = 0; i < sp; ++i)
    if (wa.pads[i] != wa.pads[i + sp] || op[i] >= wa.strides[i]) return false;
  return true;
}

// ---------------------------------------------------------------- FusedConv

bool parse_act(const ir::Attributes& attrs, ActParams& p) {
  std::string name = attrs.get_string("activation", "");
  std::vector<float> f = attrs.get_floats("activation_params");
  if (name.empty())
    p.kind = Act::kNone;
  else if (name == "Relu")
    p.kind = Act::kRelu;
  else if (name == "Sigmoid")
    p.kind = Act::kSigmoid;
  else if (name == "Tanh")
    p.kind = Act::kTanh;
  else if (name == "Silu")
    p.kind = Act::kSilu;
  else if (name == "LeakyRelu") {
    p.kind = Act::kLeakyRelu;
    p.a = f.empty() ? 0.01f : f[0];
  } else if ((name == "Clip" || name == "HardSigmoid") && f.size() >= 2) {
    p.kind = name == "Clip" ? Act::kClip : Act::kHardSigmoid;
    p.a = f[0];
    p.b = f[1];
  } else {
    return false;
  }
  return true;
}

bool graph_act(int kind, cudnn_graph::GraphAct* out) {
  switch (static_cast<Act>(kind)) {
    case Act::kNone:
      *out = cudnn_graph::GraphAct::kNone;
      return true;
    case Act::kRelu:
      *out = cudnn_graph::GraphAct::kRelu;
      return true;
    case Act::kSigmoid:
      *out = cudnn_graph::GraphAct::kSigmoid;
      return true;
    case Act::kTanh:
      *out = cudnn_graph::GraphAct::kTanh;
      return true;
    case Act::kSilu:
      *out = cudnn_graph::GraphAct::kSilu;
      return true;
    default:
      return false;
  }
}

// cuDNN's fused conv + bias + (residual) + ReLU, where it takes the problem; the
// answer is remembered per conv plan.
std::mutex g_cba_mu;
std::map<std::pair<const void*, bool>, bool>& cba_support() {
  static auto* m = new std::map<std::pair<const void*, bool>, bool>();
  return *m;
}

// FusedConv with kiln.max_pool (passes/fuse_conv_maxpool.cc: ResNet's space-to-depth stem and
// its 3x3 / 2 pool): kiln's 16-channel tensor-core conv with the pool fused is the one kernel
// that runs it (the pass fuses only what it takes).
Status fused_conv_pooled_cuda(KernelContext& ctx, const conv::FusedMaxPool& pool, const ActParams& act, const Tensor* b,
                              const Tensor* z) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const bool stem_pool = pool.kh == 3 && pool.kw == 3 && pool.sh == 2 && pool.sw == 2 && pool.pt == 1 && pool.pl == 1 &&
                         pool.pb == 1 && pool.pr == 1;
  if (!is_nhwc(ctx.node()) || has_nchw_input(ctx.node()) || z || !stem_pool ||
      (act.kind != Act::kRelu && act.kind != Act::kNone))
    return ctx.error(std::string("FusedConv with ") + conv::kMaxPoolAttr +
                         " runs on CUDA only channels-last, without Z, with ReLU or no activation and a 3x3 / 2 pool "
                         "with pads 1 (kiln's 16-channel tensor-core conv)",
                     ErrorCode::kUnsupported);
  const Dims xd = nhwc_to_nchw(x.dims()), wd = nhwc_to_nchw(w.dims());
  auto s = conv::conv_shape(ctx.attrs(), xd, wd, b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  DnnGeometry g = make_geometry(xd, wd, s->out_dims(), s->geo.pad_begin, s->attrs, s->group);
  g.nhwc = true;
  if (g.x.size() != 4 || g.group != 1)
    return ctx.error(std::string("FusedConv with ") + conv::kMaxPoolAttr + " needs a 2-D conv without groups",
                     ErrorCode::kUnsupported);
  const Dims want{g.y[0], pool.out_h(g.y[2]), pool.out_w(g.y[3]), g.y[1]};  // NHWC
  if (ctx.output(0).dims() != want)
    return ctx.error("FusedConv with " + std::string(conv::kMaxPoolAttr) + ": Y has dims " +
                     dims_to_string(ctx.output(0).dims()) + " but the pooled conv gives " + dims_to_string(want));
  return conv_tc16::run_pooled(ctx, direct_problem(g, false), x.dtype(), x.data(), w.data(), b ? b->data() : nullptr,
                               ctx.output(0).data(), static_cast<int>(act.kind), act.a, act.b);
}

Status fused_conv_cuda(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor* b = ctx.has_input(2) && ctx.input(2).numel() > 0 ? &ctx.input(2) : nullptr;
  const Tensor* z = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  Tensor& y = ctx.output(0);
  ActParams act;
  if (!parse_act(ctx.attrs(), act)) return ctx.error("unsupported activation", ErrorCode::kUnsupported);
  auto pool = conv::fused_max_pool(ctx.attrs());
  if (!pool.ok()) return ctx.error(pool.status().message(), pool.status().code());
  if (*pool) return fused_conv_pooled_cuda(ctx, **pool, act, b, z);
  auto shortcut = conv::fused_shortcut(ctx.attrs());
  if (!shortcut.ok()) return ctx.error(shortcut.status().message(), shortcut.status().code());
  auto chain = conv::fused_chain(ctx.attrs());
  if (!chain.ok()) return ctx.error(chain.status().message(), chain.status().code());
  if (*chain) return conv_chain::run_fused_conv(ctx, *shortcut, static_cast<int>(act.kind), **chain, b, z);
  if (*shortcut) return conv_shortcut::run_fused_conv(ctx, **shortcut, static_cast<int>(act.kind), b, z);
  if (z && z->dims() != y.dims()) return ctx.error("Z must have the output's dims");
  const bool nhwc = is_nhwc(ctx.node());
  // An NCHW input under an NHWC output (kNchwInputAttr): only kiln's direct conv reads it.
  const bool nchw_in = nhwc && has_nchw_input(ctx.node());
  const Dims xd = nhwc && !nchw_in ? nhwc_to_nchw(x.dims()) : x.dims();
  const Dims wd = nhwc ? nhwc_to_nchw(w.dims()) : w.dims();
  const Dims yd = nhwc ? nhwc_to_nchw(y.dims()) : y.dims();
  auto s = conv::conv_shape(ctx.attrs(), xd, wd, b ? &b->dims() : nullptr);
  if (!s.ok()) return ctx.error(s.status().message());
  if (y.numel() == 0) return Status();
  if (!symmetric_padding(*s)) return ctx.error("asymmetric padding cuDNN cannot express", ErrorCode::kUnsupported);
  if (s->c == 0 || s->k_count == 0) return ctx.error("empty convolution", ErrorCode::kUnsupported);
  DnnGeometry g = make_geometry(xd, wd, yd, s->geo.pad_begin, s->attrs, s->group);
  g.nhwc = nhwc;
  // kiln's direct conv: NHWC, few input channels (conv_direct_cuda.h).
  conv_direct::Problem dp;
  bool direct = false;
  static const bool direct_on = !env_is("KILN_CONV_DIRECT", "0");  // an A/B switch
  if ((direct_on || nchw_in) && nhwc && g.x.size() == 4 && g.group == 1) {
    dp = direct_problem(g, nchw_in);
    direct = conv_direct::applies(dp);
  }
  if (nchw_in) {
    if (!direct) return ctx.error("a conv reading NCHW input needs kiln's direct conv, which does not take it");
    return conv_direct::run(ctx, dp, x.dtype(), x.data(), w.data(), b ? b->data() : nullptr, z ? z->data() : nullptr,
                            y.data(), static_cast<int>(act.kind), act.a, act.b);
  }
  for (const Dims* d : {&g.x, &g.w, &g.y})
    if (!fits_int(*d)) return ctx.error("tensor too large for cuDNN's int dims", ErrorCode::kUnsupported);
  KILN_ASSIGN_OR_RETURN(ConvPlan * p, plan_for(ctx, g, x.dtype(), false, /*report=*/false));
  const cuda::Env* env = ctx.cuda_env();
  auto h = static_cast<cudnnHandle_t>(env->cudnn);
  const float one = 1.f, zero = 0.f;
  // kiln's tensor-core conv over 16 channels (the space-to-depth stems; conv_tc16_cuda.h).
  static const bool tc16_on = !env_is("KILN_CONV_TC16", "0");  // an A/B switch
  const conv_tc16::Problem tp = direct_problem(g, false);
  const bool tc16 = tc16_on && nhwc && g.x.size() == 4 && g.group == 1 &&
                    (x.dtype() == DataType::kFloat16 || x.dtype() == DataType::kBFloat16) && conv_tc16::applies(tp);
  // A 1x1 conv (stride 1, no padding) over channels-last pixels is one GEMM: cuBLASLt with
  // the bias, residual and ReLU in its epilogue (cuDNN ran ResNet-50 bs256's 64 -> 256 + residual
  // convs on an implicit-GEMM kernel, 0.49 ms, against 0.33-0.34 as the GEMM). The heuristic's
  // first kLtGemmRanks configurations are candidates.
  static const bool lt_on = !env_is("KILN_CONV_LT_GEMM", "0");  // an A/B switch
  const bool lt1x1 = lt_on && nhwc && g.x.size() == 4 && g.group == 1 && g.w[2] == 1 && g.w[3] == 1 &&
                     g.strides[0] == 1 && g.strides[1] == 1 && g.pads[0] == 0 && g.pads[1] == 0 &&
                     (x.dtype() == DataType::kFloat16 || x.dtype() == DataType::kBFloat16) &&
                     (act.kind == Act::kNone || act.kind == Act::kRelu);
  std::vector<int64_t> own;
  if (direct) own.push_back(cudnn_graph::kDirectTactic);
  if (tc16) own.push_back(cudnn_graph::kTc16Tactic);
  if (lt1x1)
    for (int64_t r = 0; r < cudnn_graph::kLtGemmRanks; ++r) own.push_back(cudnn_graph::kLtGemmTactic + r);
  bool graph_done = false;
  KILN_ASSIGN_OR_RETURN(const bool graph_ran,
                        run_graph(ctx, g, *p, static_cast<int>(act.kind), b, z, own, &graph_done));
  if (graph_done) return Status();
  const int64_t tactic = ctx.attrs().get_int(kTacticAttr, -1);
  if (!graph_ran && direct && tactic == cudnn_graph::kDirectTactic)
    return conv_direct::run(ctx, dp, x.dtype(), x.data(), w.data(), b ? b->data() : nullptr, z ? z->data() : nullptr,
                            y.data(), static_cast<int>(act.kind), act.a, act.b);
  if (!graph_ran && tc16 && tactic == cudnn_graph::kTc16Tactic)
    return conv_tc16::run(ctx, tp, x.dtype(), x.data(), w.data(), b ? b->data() : nullptr, z ? z->data() : nullptr,
                          y.data(), static_cast<int>(act.kind), act.a, act.b);
  if (!graph_ran && lt1x1 && cudnn_graph::is_lt_gemm_tactic(tactic))
    return matmul::lt_gemm_nt(ctx, x.dtype(), g.x[0] * g.x[2] * g.x[3], g.y[1], g.x[1], x.data(), w.data(),
                              b ? b->data() : nullptr, z ? z->data() : nullptr, y.data(),
                              act.kind == Act::kRelu ? matmul::BiasActivation::kRelu : matmul::BiasActivation::kNone,
                              static_cast<int>(tactic - cudnn_graph::kLtGemmTactic));
  // ReLU or identity with a bias: one cuDNN call (identity needs IMPLICIT_PRECOMP_GEMM).
  // KILN_CUDNN_FUSED_CALL=0 skips it (the plain conv and our epilogue run instead): an
  // A/B for FP32 NHWC, where the call seems to run on an FMA engine (RESULTS.md, session 6).
  static const bool cba_on = !env_is("KILN_CUDNN_FUSED_CALL", "0");
  bool try_cba = cba_on && !graph_ran && b &&
                 (act.kind == Act::kRelu ||
                  (act.kind == Act::kNone && p->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM));
  if (try_cba) {
    bool known = false, ok = false;
    {
      std::lock_guard<std::mutex> lock(g_cba_mu);
      auto it = cba_support().find({p, z != nullptr});
      if (it != cba_support().end()) {
        known = true;
        ok = it->second;
      }
    }
    if (!known || ok) {
      cudnnTensorDescriptor_t bd = nullptr;
      cudnnActivationDescriptor_t ad = nullptr;
      cudnnStatus_t st = cudnnCreateTensorDescriptor(&bd);
      Dims bdims(g.y.size(), 1);
      bdims[1] = g.y[1];
      if (st == CUDNN_STATUS_SUCCESS) {
        std::vector<int> dv(bdims.begin(), bdims.end()), sv(bdims.size(), 1);
        sv[0] = dv[1];
        st = cudnnSetTensorNdDescriptor(bd, dnn_type(x.dtype()), static_cast<int>(dv.size()), dv.data(), sv.data());
      }
      if (st == CUDNN_STATUS_SUCCESS) st = cudnnCreateActivationDescriptor(&ad);
      if (st == CUDNN_STATUS_SUCCESS)
        st =
            cudnnSetActivationDescriptor(ad, act.kind == Act::kRelu ? CUDNN_ACTIVATION_RELU : CUDNN_ACTIVATION_IDENTITY,
                                         CUDNN_NOT_PROPAGATE_NAN, 0.0);
      const float alpha2 = z ? 1.f : 0.f;
      if (st == CUDNN_STATUS_SUCCESS)
        st = cudnnConvolutionBiasActivationForward(
            h, &one, p->x, x.data(), p->w, w.data(), p->conv, static_cast<cudnnConvolutionFwdAlgo_t>(p->algo),
            env->workspace, p->workspace, &alpha2, p->y, z ? z->data() : y.data(), bd, b->data(), ad, p->y, y.data());
      if (ad) cudnnDestroyActivationDescriptor(ad);
      if (bd) cudnnDestroyTensorDescriptor(bd);
      if (!known) {
        std::lock_guard<std::mutex> lock(g_cba_mu);
        cba_support()[{p, z != nullptr}] = st == CUDNN_STATUS_SUCCESS;
      }
      if (st == CUDNN_STATUS_SUCCESS) return Status();
      cudaGetLastError();
    }
  }
  if (!graph_ran)
    KILN_DNN_CHECK(cudnnConvolutionForward(h, &one, p->x, x.data(), p->w, w.data(), p->conv,
                                           static_cast<cudnnConvolutionFwdAlgo_t>(p->algo), env->workspace,
                                           p->workspace, &zero, p->y, y.data()));
  const int64_t channels = yd[1], total = y.numel();
  // NCHW: channel = (i / H*W) % C; NHWC: channel = i % C.
  const int64_t inner = nhwc ? 1 : (channels ? total / (yd[0] * channels) : 1);
  return launch_epilogue(ctx, y, b, z, act, channels, inner, "fused_conv_epilogue");
}

// The NCHW view of an NHWC node's input types (applies_conv reasons in NCHW).
std::vector<TensorType> logical_types(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!is_nhwc(node)) return inputs;
  std::vector<TensorType> t = inputs;
  for (size_t i = 0; i < t.size(); ++i)
    if (nhwc_input_slot(node, i) != LayoutSlot::kPlain && t[i].shape) t[i].shape = nhwc_to_nchw(*t[i].shape);
  return t;
}

// A kNchwInputAttr conv runs only as kiln's direct conv: it must take the geometry (an
// unknown batch counts as 1; run checks the real one).
bool direct_takes_nchw_input(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 2 || !inputs[0].shape || !inputs[1].shape || inputs[0].shape->size() != 4 ||
      inputs[1].shape->size() != 4)
    return false;
  Dims xd, wd;
  for (size_t i = 0; i < 4; ++i) {
    const Dim& dx = (*inputs[0].shape)[i];
    const Dim& dw = (*inputs[1].shape)[i];
    if ((!dx.known() && i != 0) || !dw.known()) return false;
    xd.push_back(dx.known() ? dx.value : 1);
    wd.push_back(dw.value);
  }
  wd = nhwc_to_nchw(wd);
  auto s = conv::conv_shape(node.attrs, xd, wd, nullptr);
  if (!s.ok() || s->group != 1) return false;
  if (!symmetric_padding(*s)) return false;
  return conv_direct::applies(
      direct_problem(make_geometry(xd, wd, s->out_dims(), s->geo.pad_begin, s->attrs, 1), true));
}

bool applies_fused_conv(const ir::Node& node, const std::vector<TensorType>& inputs) {
  ActParams act;
  if (!parse_act(node.attrs, act)) return false;
  // kiln's own channels-last kernels: ReLU or none, FP16/BF16 at every slot they read.
  const bool relu_or_none = act.kind == Act::kRelu || act.kind == Act::kNone;
  auto half_at = [&](std::initializer_list<size_t> slots) {
    const DataType t = inputs[0].dtype;
    for (size_t i : slots)
      if (inputs[i].dtype != t) return false;
    return t == DataType::kFloat16 || t == DataType::kBFloat16;
  };
  const bool shortcut = node.attrs.has(conv::kShortcutAttr);
  if (node.attrs.has(conv::kChainAttr))  // kiln's bottleneck chain (conv_chain::run_fused_conv)
    return inputs.size() >= 8 && is_nhwc(node) && node.outputs.size() == 2 && relu_or_none && half_at({0, 1, 7}) &&
           (!shortcut || half_at({4, 5}));
  if (shortcut)  // kiln's conv + shortcut GEMM (conv_shortcut::run_fused_conv)
    return inputs.size() >= 6 && is_nhwc(node) && !node.input(3) && relu_or_none && half_at({0, 1, 4, 5});
  if (node.input(3) && (inputs.size() < 4 || inputs[3].dtype != inputs[0].dtype)) return false;
  if (is_nhwc(node) && (!inputs[0].shape || inputs[0].shape->size() != 4)) return false;
  if (is_nhwc(node) && has_nchw_input(node) && !direct_takes_nchw_input(node, inputs)) return false;
  return applies_conv(node, logical_types(node, inputs));
}

bool applies_conv_any_layout(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (!is_nhwc(node)) return applies_conv(node, inputs);
  if (inputs.empty() || !inputs[0].shape || inputs[0].shape->size() != 4) return false;
  if (has_nchw_input(node) && !direct_takes_nchw_input(node, inputs)) return false;
  return applies_conv(node, logical_types(node, inputs));
}

}  // namespace

void register_conv_cuda_kernels(OpRegistry& r) {
  (void)r.add_cuda_kernel(
      "com.microsoft", "FusedConv",
      FastKernel{"cuda.cudnn", fused_conv_cuda, applies_fused_conv, cuda::collect_tactics<fused_conv_cuda>,
                 /*compiles=*/true});  // runtime-fusion engines (conv_graph_cuda.cu)
  (void)r.add_cuda_kernel(
      "", "Conv", FastKernel{"cuda.cudnn", conv_cuda, applies_conv_any_layout, cuda::collect_tactics<conv_cuda>});
  (void)r.add_cuda_kernel("", "ConvTranspose",
                          FastKernel{"cuda.cudnn", conv_transpose_cuda, applies_conv_transpose,
                                     cuda::collect_tactics<conv_transpose_cuda>});
}

}  // namespace kiln::ops
