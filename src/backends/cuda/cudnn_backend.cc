// cuDNN graph-API helpers shared by conv and attention (cudnn_backend.h).
#include "backends/cuda/cudnn_backend.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>

namespace kiln::cuda::dnn {

std::string Chain::message() const {
  if (ok()) return std::string();
  return std::string(what) + ": " + cudnnGetErrorString(st);
}

cudnnBackendDescriptor_t OpGraph::tensor(int64_t uid, cudnnDataType_t type, const std::vector<int64_t>& dims,
                                         const std::vector<int64_t>& strides, bool is_virtual, int64_t align) {
  if (!chain.ok()) return nullptr;
  Desc t;
  chain(t.create(CUDNN_BACKEND_TENSOR_DESCRIPTOR), "create tensor");
  if (!chain.ok()) return nullptr;
  chain(set(t.d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type), "tensor type");
  chain(set(t.d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<int64_t>(dims.size()), dims.data()),
        "tensor dims");
  chain(set(t.d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<int64_t>(strides.size()), strides.data()),
        "tensor strides");
  chain(set(t.d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "tensor uid");
  chain(set(t.d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align), "tensor alignment");
  if (is_virtual) {
    const bool v = true;
    chain(set(t.d, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v), "virtual tensor");
  }
  chain(cudnnBackendFinalize(t.d), "finalize tensor");
  keep.push_back(std::move(t));
  return keep.back().d;
}

cudnnBackendDescriptor_t OpGraph::scalar(int64_t uid, float value, int rank) {
  (void)value;  // passed in the variant pack
  if (!chain.ok()) return nullptr;
  Desc t;
  chain(t.create(CUDNN_BACKEND_TENSOR_DESCRIPTOR), "create scalar");
  if (!chain.ok()) return nullptr;
  const cudnnDataType_t type = CUDNN_DATA_FLOAT;
  const std::vector<int64_t> ones(static_cast<size_t>(rank), 1);
  const int64_t align = 4;
  const bool by_value = true;
  chain(set(t.d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type), "scalar type");
  chain(set(t.d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, rank, ones.data()), "scalar dims");
  chain(set(t.d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, rank, ones.data()), "scalar strides");
  chain(set(t.d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid), "scalar uid");
  chain(set(t.d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align), "scalar alignment");
  chain(set(t.d, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value), "scalar by value");
  chain(cudnnBackendFinalize(t.d), "finalize scalar");
  keep.push_back(std::move(t));
  return keep.back().d;
}

void OpGraph::pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                        cudnnBackendDescriptor_t y) {
  if (!chain.ok()) return;
  Desc pw, op;
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  chain(pw.create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR), "create pointwise");
  if (!chain.ok()) return;
  chain(set(pw.d, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode), "pointwise mode");
  chain(set(pw.d, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec), "pointwise precision");
  chain(cudnnBackendFinalize(pw.d), "finalize pointwise");
  chain(op.create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR), "create pointwise op");
  if (!chain.ok()) return;
  chain(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw.d), "pw desc");
  chain(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x), "pw x");
  if (b) chain(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b), "pw b");
  chain(set(op.d, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y), "pw y");
  chain(cudnnBackendFinalize(op.d), "finalize pointwise op");
  keep.push_back(std::move(pw));
  add(std::move(op));
}

void OpGraph::reduction(cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
  if (!chain.ok()) return;
  Desc rd, op;
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  chain(rd.create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR), "create reduction");
  if (!chain.ok()) return;
  chain(set(rd.d, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode), "reduction mode");
  chain(set(rd.d, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec), "reduction precision");
  chain(cudnnBackendFinalize(rd.d), "finalize reduction");
  chain(op.create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR), "create reduction op");
  if (!chain.ok()) return;
  chain(set(op.d, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd.d), "reduction desc");
  chain(set(op.d, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x), "reduction x");
  chain(set(op.d, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y), "reduction y");
  chain(cudnnBackendFinalize(op.d), "finalize reduction op");
  keep.push_back(std::move(rd));
  add(std::move(op));
}

void OpGraph::matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
  if (!chain.ok()) return;
  Desc mm, op;
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  chain(mm.create(CUDNN_BACKEND_MATMUL_DESCRIPTOR), "create matmul");
  if (!chain.ok()) return;
  chain(set(mm.d, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &prec), "matmul precision");
  chain(cudnnBackendFinalize(mm.d), "finalize matmul");
  chain(op.create(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR), "create matmul op");
  if (!chain.ok()) return;
  chain(set(op.d, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a), "matmul a");
  chain(set(op.d, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b), "matmul b");
  chain(set(op.d, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c), "matmul c");
  chain(set(op.d, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &mm.d), "matmul desc");
  chain(cudnnBackendFinalize(op.d), "finalize matmul op");
  keep.push_back(std::move(mm));
  add(std::move(op));
}

void OpGraph::add(Desc op) {
  ops.push_back(op.d);
  keep.push_back(std::move(op));
}

bool OpGraph::finalize(cudnnHandle_t h, bool dynamic_shape) {
  if (!chain.ok()) return false;
  chain(graph.create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR), "create graph");
  if (!chain.ok()) return false;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  chain(set(graph.d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h), "graph handle");
#pragma GCC diagnostic pop
  chain(set(graph.d, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()),
            ops.data()),
        "graph ops");
  if (dynamic_shape) {
    const bool dyn = true;
    chain(set(graph.d, CUDNN_ATTR_OPERATIONGRAPH_IS_DYNAMIC_SHAPE_ENABLED, CUDNN_TYPE_BOOLEAN, 1, &dyn),
          "dynamic shape");
  }
  chain(cudnnBackendFinalize(graph.d), "finalize graph");
  return chain.ok();
}

namespace {

// Engine identity and acceptability of one configuration; false when it must not run.
// `*rtc`: the engine compiles its kernel at run time (cuDNN's runtime fusion).
bool describe(Numerics num, cudnnBackendDescriptor_t cfg, uint64_t* hash, bool* rtc) {
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
  for (int64_t i = 0; i < nn; ++i) {
    // Inputs converted to a narrower type, or accumulation below fp32: never.
    if (notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
        notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)
      return false;
    // FP32 on tensor cores is TF32: only when allowed.
    if (num.f32 && !num.allow_tf32 && notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE) return false;
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

}  // namespace

std::vector<Candidate> rank_engines(cudnnBackendDescriptor_t graph, Numerics num, int max, int rtc_cap, int64_t id_base,
                                    int64_t id_mask) {
  std::vector<Candidate> out;
  Desc heur;
  Chain c;
  c(heur.create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR), "heuristics");
  if (!c.ok()) return out;
  const cudnnBackendHeurMode_t hm = CUDNN_HEUR_MODE_A;
  c(set(heur.d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph), "heur graph");
  c(set(heur.d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &hm), "heur mode");
  c(cudnnBackendFinalize(heur.d), "finalize heuristics");
  if (!c.ok()) return out;
  int64_t count = 0;
  if (cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               nullptr) != CUDNN_STATUS_SUCCESS ||
      count <= 0)
    return out;
  std::vector<Desc> cfgs(static_cast<size_t>(count));
  std::vector<cudnnBackendDescriptor_t> raw(cfgs.size());
  for (size_t i = 0; i < cfgs.size(); ++i) {
    if (cfgs[i].create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR) != CUDNN_STATUS_SUCCESS) return out;
    raw[i] = cfgs[i].d;
  }
  int64_t got = 0;
  if (cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               raw.data()) != CUDNN_STATUS_SUCCESS)
    return out;
  int rtc_taken = 0;
  for (int64_t i = 0; i < got && static_cast<int>(out.size()) < max; ++i) {
    uint64_t hash = 0;
    bool rtc = false;
    if (!describe(num, raw[i], &hash, &rtc)) continue;
    if (rtc && rtc_taken >= rtc_cap) continue;
    rtc_taken += rtc;
    const int64_t id = id_base | static_cast<int64_t>(hash & static_cast<uint64_t>(id_mask));
    bool dup = false;
    for (const Candidate& o : out) dup = dup || o.id == id;
    if (dup) continue;
    Candidate cand;
    cand.cfg = std::move(cfgs[i]);
    cand.id = id;
    cand.rtc = rtc;
    out.push_back(std::move(cand));
  }
  return out;
}

FinalizeHandle* finalize_handle(int device, bool capturing) {
  constexpr int kSlots = 16;
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
    ExclusiveCapture no_capture;
    if (cudnnCreate(&h) != CUDNN_STATUS_SUCCESS) h = nullptr;
  }
  cudaGetLastError();
  auto& fh = (*handles)[{device, slot}];
  fh = std::make_unique<FinalizeHandle>();
  fh->h = h;
  return h ? fh.get() : nullptr;
}

bool ready(cudnnHandle_t h, Candidate& cand, size_t ws_max, cudnnBackendDescriptor_t kernel_cache) {
  if (!cand.tried) {
    cand.tried = true;
    finalize_plan(h, ws_max, cand, [&](cudnnBackendDescriptor_t plan, Chain& c) {
      c(set(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cand.cfg.d), "plan cfg");
      if (cand.rtc && kernel_cache)
        c(set(plan, CUDNN_ATTR_EXECUTION_PLAN_KERNEL_CACHE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &kernel_cache), "cache");
    });
  }
  return cand.plan.d != nullptr;
}

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

Chain execute(cudnnHandle_t h, cudnnBackendDescriptor_t plan, const std::vector<int64_t>& uids,
              const std::vector<void*>& ptrs, void* workspace) {
  Desc vp;
  Chain c;
  c(vp.create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR), "variant pack");
  if (!c.ok()) return c;
  c(set(vp.d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<int64_t>(uids.size()), uids.data()),
    "uids");
  c(set(vp.d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<int64_t>(ptrs.size()),
        ptrs.data()),
    "pointers");
  c(set(vp.d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace), "workspace");
  c(cudnnBackendFinalize(vp.d), "finalize variant pack");
  if (c.ok()) c(cudnnBackendExecute(h, plan, vp.d), "execute");
  if (!c.ok()) cudaGetLastError();
  return c;
}

}  // namespace kiln::cuda::dnn
