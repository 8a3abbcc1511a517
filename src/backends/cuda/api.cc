#include "backends/cuda/api.h"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>

namespace kiln::cuda {

namespace {
Status check(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status();
  cudaGetLastError();  // clear a sticky-free error so later calls are not blamed
  ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
  return Status(code, what + ": " + cudaGetErrorString(e));
}
std::string mib(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }
Result<std::vector<cudaGraphNode_t>> dependencies_of(cudaGraphNode_t node) {
  size_t n = 0;
  KILN_RETURN_IF_ERROR(check(cudaGraphNodeGetDependencies(node, nullptr, nullptr, &n), "cudaGraphNodeGetDependencies"));
  std::vector<cudaGraphNode_t> deps(n);
  if (n)
    KILN_RETURN_IF_ERROR(
        check(cudaGraphNodeGetDependencies(node, deps.data(), nullptr, &n), "cudaGraphNodeGetDependencies"));
  deps.resize(n);
  std::sort(deps.begin(), deps.end());
  return deps;
}
// Graph nodes kept as void* (api.h has no CUDA types), back as what the graph calls take.
std::vector<cudaGraphNode_t> as_nodes(const std::vector<void*>& v) {
  std::vector<cudaGraphNode_t> n(v.size());
  for (size_t i = 0; i < v.size(); ++i) n[i] = static_cast<cudaGraphNode_t>(v[i]);
  return n;
}
}  // namespace

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

Result<DeviceBuffer> device_alloc(size_t bytes, const std::string& what) {
  DeviceBuffer b;
  if (bytes == 0) return b;
  cudaError_t e = cudaMalloc(&b.ptr_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    b.ptr_ = nullptr;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kInternal;
    return Status(code, "out of GPU memory: " + what + " needs " + std::to_string(bytes) + " bytes (" + mib(bytes) +
                            "), " + mib(free_b) + " of " + mib(total_b) + " free (" + cudaGetErrorString(e) + ")");
  }
  b.bytes_ = bytes;
  return b;
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}
PinnedBuffer::~PinnedBuffer() {
  if (ptr_) cudaFreeHost(ptr_);
}

Result<PinnedBuffer> pinned_alloc(size_t bytes, const std::string& what) {
  PinnedBuffer b;
  if (bytes == 0) return b;
  cudaError_t e = cudaMallocHost(&b.ptr_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    b.ptr_ = nullptr;
    return Status(ErrorCode::kOutOfMemory, "out of pinned host memory: " + what + " needs " + std::to_string(bytes) +
                                               " bytes (" + cudaGetErrorString(e) + ")");
  }
  b.bytes_ = bytes;
  return b;
}

Status set_device(int index) {
  int n = device_count();
  if (index < 0 || index >= n)
    return Status(ErrorCode::kDeviceMismatch, "CUDA device " + std::to_string(index) + " does not exist (" +
                                                  std::to_string(n) + " visible" +
                                                  (n == 0 ? ": " + no_device_reason() : "") + ")");
  return check(cudaSetDevice(index), "cudaSetDevice(" + std::to_string(index) + ")");
}

int current_device() {
  int d = 0;
  cudaGetDevice(&d);
  return d;
}

bool is_device_pointer(const void* p) {
  if (!p) return false;
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

Status copy_async(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream) {
  if (bytes == 0) return Status();
  cudaMemcpyKind k = kind == CopyKind::kHostToDevice     ? cudaMemcpyHostToDevice
                     : kind == CopyKind::kDeviceToHost   ? cudaMemcpyDeviceToHost
                     : kind == CopyKind::kDeviceToDevice ? cudaMemcpyDeviceToDevice
                                                         : cudaMemcpyDefault;
  return check(cudaMemcpyAsync(dst, src, bytes, k, static_cast<cudaStream_t>(stream)),
               "cudaMemcpyAsync of " + std::to_string(bytes) + " bytes");
}

Status memset_async(void* dst, int value, size_t bytes, void* stream) {
  if (bytes == 0) return Status();
  return check(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(stream)), "cudaMemsetAsync");
}

Status stream_create(void** stream) {
  cudaStream_t s = nullptr;
  KILN_RETURN_IF_ERROR(check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate"));
  *stream = s;
  return Status();
}
void stream_destroy(void* stream) {
  if (stream) cudaStreamDestroy(static_cast<cudaStream_t>(stream));
}
Status stream_synchronize(void* stream) {
  return check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}
Status check_last_launch(const std::string& what) { return check(cudaGetLastError(), what); }

EventTimer::EventTimer() {
  cudaEvent_t a = nullptr, b = nullptr;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  start_ = a;
  stop_ = b;
}
EventTimer::~EventTimer() {
  if (start_) cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  if (stop_) cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}
Status EventTimer::record_start(void* stream) {
  return check(cudaEventRecord(static_cast<cudaEvent_t>(start_), static_cast<cudaStream_t>(stream)), "cudaEventRecord");
}
Status EventTimer::record_stop(void* stream) {
  return check(cudaEventRecord(static_cast<cudaEvent_t>(stop_), static_cast<cudaStream_t>(stream)), "cudaEventRecord");
}
Result<float> EventTimer::elapsed_ms() {
  KILN_RETURN_IF_ERROR(check(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)), "cudaEventSynchronize"));
  float ms = 0;
  KILN_RETURN_IF_ERROR(
      check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)),
            "cudaEventElapsedTime"));
  return ms;
}

Graph::~Graph() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
}
std::shared_mutex& capture_lock() {
  static std::shared_mutex m;
  return m;
}

void Graph::reset() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
  (void)cudaGetLastError();
}
// Whether this thread has a capture open (Graph::begin_capture .. end_capture): LtWorkspaces asks
// the driver for the capture's state only then, not on every eager GEMM.
static thread_local bool t_capturing = false;

Status Graph::begin_capture(void* stream) {
  KILN_RETURN_IF_ERROR(
      check(cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture"));
  t_capturing = true;
  return Status();
}
Status Graph::end_capture(void* stream, LtWorkspaces* lt) {
  t_capturing = false;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  if (cudaStreamGetCaptureInfo(static_cast<cudaStream_t>(stream), &st, &id) != cudaSuccess) cudaGetLastError();
  cudaGraph_t g = nullptr;
  KILN_RETURN_IF_ERROR(check(cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &g), "cudaStreamEndCapture"));
  graph_ = g;
  if (lt) KILN_RETURN_IF_ERROR(lt->finish_capture(g, id).with_context("folding cuBLASLt's memsets"));
  cudaGraphExec_t e = nullptr;
  KILN_RETURN_IF_ERROR(check(cudaGraphInstantiate(&e, g, 0), "cudaGraphInstantiate"));
  exec_ = e;
  return Status();
}
Status Graph::launch(void* stream) const {
  return check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), static_cast<cudaStream_t>(stream)),
               "cudaGraphLaunch");
}

Result<std::unique_ptr<LtWorkspaces>> LtWorkspaces::create(size_t region_bytes) {
  auto w = std::unique_ptr<LtWorkspaces>(new LtWorkspaces());
  KILN_ASSIGN_OR_RETURN(w->buffer_, device_alloc(region_bytes, "cuBLASLt's workspace regions for CUDA graphs"));
  return w;
}

LtWorkspaces::Call LtWorkspaces::begin(void* stream, size_t bytes, void* shared) {
  Call c;
  c.workspace = shared;
  const size_t need = (bytes + 255) & ~size_t(255);
  if (!t_capturing || need == 0 || need > kMaxRegion) return c;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  const cudaGraphNode_t* deps = nullptr;
  size_t n = 0;
  if (cudaStreamGetCaptureInfo(static_cast<cudaStream_t>(stream), &st, &id, nullptr, &deps, nullptr, &n) !=
          cudaSuccess ||
      st != cudaStreamCaptureStatusActive) {
    cudaGetLastError();
    return c;
  }
  if (id != capture_) {  // a new capture: regions from the start, nothing folded yet
    capture_ = id;
    used_ = 0;
    folded_.clear();
  }
  if (used_ + need > buffer_.size()) return c;
  c.workspace = static_cast<char*>(buffer_.get()) + used_;
  used_ += need;
  c.region = true;
  c.before.assign(deps, deps + n);
  return c;
}

Status LtWorkspaces::end(const Call& call, void* stream) {
  if (!call.region || call.before.size() != 1) return Status();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  const cudaGraphNode_t* deps = nullptr;
  size_t n = 0;
  KILN_RETURN_IF_ERROR(
      check(cudaStreamGetCaptureInfo(static_cast<cudaStream_t>(stream), &st, &id, nullptr, &deps, nullptr, &n),
            "cudaStreamGetCaptureInfo"));
  // The shape to fold: before -> a memset of zeros into this call's region -> the GEMM, now
  // the capture's one leaf. Anything else keeps its memset (its region is its own either way).
  if (st != cudaStreamCaptureStatusActive || id != capture_ || n != 1) return Status();
  cudaGraphNode_t gemm = deps[0];
  KILN_ASSIGN_OR_RETURN(std::vector<cudaGraphNode_t> gd, dependencies_of(gemm));
  if (gd.size() != 1) return Status();
  cudaGraphNode_t memset = gd[0];
  cudaGraphNodeType type{};
  KILN_RETURN_IF_ERROR(check(cudaGraphNodeGetType(memset, &type), "cudaGraphNodeGetType"));
  if (type != cudaGraphNodeTypeMemset) return Status();
  cudaMemsetParams mp{};
  KILN_RETURN_IF_ERROR(check(cudaGraphMemsetNodeGetParams(memset, &mp), "cudaGraphMemsetNodeGetParams"));
  const char* dst = static_cast<const char*>(mp.dst);
  const char* lo = static_cast<const char*>(call.workspace);
  const char* hi = static_cast<const char*>(buffer_.get()) + used_;
  if (mp.value != 0 || dst < lo || dst + mp.width * mp.elementSize * std::max<size_t>(mp.height, 1) > hi)
    return Status();
  std::vector<cudaGraphNode_t> before = as_nodes(call.before);
  std::sort(before.begin(), before.end());
  KILN_ASSIGN_OR_RETURN(std::vector<cudaGraphNode_t> md, dependencies_of(memset));
  if (md != before) return Status();
  folded_.push_back({call.before, memset, gemm, static_cast<size_t>(lo - static_cast<const char*>(buffer_.get()))});
  return Status();
}

Status LtWorkspaces::finish_capture(void* graph_handle, unsigned long long capture_id) {
  std::vector<Folded> folded = std::move(folded_);
  folded_.clear();
  const bool ours = capture_id != 0 && capture_id == capture_;
  capture_ = 0;
  if (!ours || folded.size() < 2) return Status();
  auto graph = static_cast<cudaGraph_t>(graph_handle);
  // The first memset zeroes its region and every later one (the capture is a chain: every later
  // call comes after it).
  cudaMemsetParams all{};
  all.dst = static_cast<char*>(buffer_.get()) + folded[0].offset;
  all.value = 0;
  all.elementSize = 1;
  all.width = used_ - folded[0].offset;
  all.height = 1;
  all.pitch = 0;
  KILN_RETURN_IF_ERROR(check(cudaGraphMemsetNodeSetParams(static_cast<cudaGraphNode_t>(folded[0].memset), &all),
                             "cudaGraphMemsetNodeSetParams"));
  for (size_t i = 1; i < folded.size(); ++i) {
    const Folded& f = folded[i];
    KILN_RETURN_IF_ERROR(check(cudaGraphDestroyNode(static_cast<cudaGraphNode_t>(f.memset)), "cudaGraphDestroyNode"));
    const std::vector<cudaGraphNode_t> from = as_nodes(f.before);
    const std::vector<cudaGraphNode_t> to(from.size(), static_cast<cudaGraphNode_t>(f.gemm));
    KILN_RETURN_IF_ERROR(check(cudaGraphAddDependencies(graph, from.data(), to.data(), nullptr, from.size()),
                               "cudaGraphAddDependencies"));
    ++removed_;
  }
  return Status();
}

Handles::~Handles() {
  if (cublaslt_) cublasLtDestroy(static_cast<cublasLtHandle_t>(cublaslt_));
  if (cudnn_) cudnnDestroy(static_cast<cudnnHandle_t>(cudnn_));
}

size_t workspace_bytes(int device) {
  static std::mutex mu;
  static std::map<int, size_t> sizes;
  std::lock_guard<std::mutex> lock(mu);
  auto it = sizes.find(device);
  if (it != sizes.end()) return it->second;
  size_t bytes = size_t(64) << 20;
  const char* v = std::getenv("KILN_CUDA_WORKSPACE_MB");
  const long mb = v ? std::strtol(v, nullptr, 10) : 0;
  if (mb > 0) {
    bytes = size_t(mb) << 20;
  } else if (auto info = device_info(device); info.ok() && info->total_memory > 0) {
    bytes = std::min(size_t(1) << 30, std::max(bytes, info->total_memory / 32));
  }
  sizes.emplace(device, bytes);
  return bytes;
}

Result<std::unique_ptr<Handles>> Handles::create(int device, size_t workspace_bytes) {
  KILN_RETURN_IF_ERROR(set_device(device));
  auto h = std::unique_ptr<Handles>(new Handles());
  h->device_ = device;
  KILN_ASSIGN_OR_RETURN(DeviceInfo info, device_info(device));
  h->cc_major_ = info.cc_major;
  h->cc_minor_ = info.cc_minor;
  cublasLtHandle_t lt = nullptr;
  cublasStatus_t bs = cublasLtCreate(&lt);
  if (bs != CUBLAS_STATUS_SUCCESS)
    return Status(ErrorCode::kInternal, std::string("cublasLtCreate: ") + cublasLtGetStatusString(bs));
  h->cublaslt_ = lt;
  cudnnHandle_t dnn = nullptr;
  cudnnStatus_t ds = cudnnCreate(&dnn);
  if (ds != CUDNN_STATUS_SUCCESS)
    return Status(ErrorCode::kInternal, std::string("cudnnCreate: ") + cudnnGetErrorString(ds));
  h->cudnn_ = dnn;
  KILN_ASSIGN_OR_RETURN(h->workspace_, device_alloc(workspace_bytes, "the kernel workspace"));
  // 256 bytes a GEMM (its 4-byte counter): room for 4,096 in a capture.
  KILN_ASSIGN_OR_RETURN(h->lt_, LtWorkspaces::create(size_t(1) << 20));
  return h;
}

Env Handles::env(void* stream, bool allow_tf32) {
  if (stream != cudnn_stream_) {
    cudnnSetStream(static_cast<cudnnHandle_t>(cudnn_), static_cast<cudaStream_t>(stream));
    cudnn_stream_ = stream;
  }
  Env e;
  e.device = device_;
  e.cc_major = cc_major_;
  e.cc_minor = cc_minor_;
  e.stream = stream;
  e.cublaslt = cublaslt_;
  e.cudnn = cudnn_;
  e.workspace = workspace_.get();
  e.workspace_bytes = workspace_.size();
  e.lt = lt_.get();
  e.allow_tf32 = allow_tf32;
  return e;
}

std::string arch_name(int cc_major, int cc_minor) {
  return "sm_" + std::to_string(cc_major) + std::to_string(cc_minor);
}

std::string library_versions() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  return "cudart " + std::to_string(rt) + ", driver " + std::to_string(drv) + ", cudnn " +
         std::to_string(cudnnGetVersion()) + ", cublasLt " + std::to_string(cublasLtGetVersion());
}

}  // namespace kiln::cuda
