// The CUDA device layer when kiln is built without nvcc/cuDNN: no devices, and
// every call that needs one says so. Implements backends/cuda/{device,api,node_runner}.h.
#include "backends/cuda/api.h"
#include "backends/cuda/node_runner.h"
#include "ops/conv/conv_graph_cuda.h"
#include "ops/matmul/gemm_hopper.h"

namespace kiln::cuda {

namespace {
const char* kReason = "kiln was built without the CUDA backend (nvcc or cuDNN was not found at configure time)";
Status no_cuda() { return Status(ErrorCode::kUnsupported, kReason); }
}  // namespace

int device_count() { return 0; }
std::string no_device_reason() { return kReason; }
Result<DeviceInfo> device_info(int) { return no_cuda(); }
Status saxpy_host(int, float, const float*, float*, size_t) { return no_cuda(); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  std::swap(ptr_, o.ptr_);
  std::swap(bytes_, o.bytes_);
  return *this;
}
DeviceBuffer::~DeviceBuffer() = default;
Result<DeviceBuffer> device_alloc(size_t, const std::string&) { return no_cuda(); }
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  std::swap(ptr_, o.ptr_);
  std::swap(bytes_, o.bytes_);
  return *this;
}
PinnedBuffer::~PinnedBuffer() = default;
Result<PinnedBuffer> pinned_alloc(size_t, const std::string&) { return no_cuda(); }
Status set_device(int) { return no_cuda(); }
std::shared_mutex& capture_lock() {
  static std::shared_mutex m;
  return m;
}
int current_device() { return -1; }
bool is_device_pointer(const void*) { return false; }
Status copy_async(void*, const void*, size_t, CopyKind, void*) { return no_cuda(); }
Status memset_async(void*, int, size_t, void*) { return no_cuda(); }
Status stream_create(void**) { return no_cuda(); }
void stream_destroy(void*) {}
Status stream_synchronize(void*) { return no_cuda(); }
Status check_last_launch(const std::string&) { return no_cuda(); }
EventTimer::EventTimer() = default;
EventTimer::~EventTimer() = default;
Status EventTimer::record_start(void*) { return no_cuda(); }
Status EventTimer::record_stop(void*) { return no_cuda(); }
Result<float> EventTimer::elapsed_ms() { return no_cuda(); }
Graph::~Graph() = default;
Status Graph::begin_capture(void*) { return no_cuda(); }
Status Graph::end_capture(void*, LtWorkspaces*) { return no_cuda(); }
Status Graph::launch(void*) const { return no_cuda(); }
void Graph::reset() {}
Result<std::unique_ptr<LtWorkspaces>> LtWorkspaces::create(size_t) { return no_cuda(); }
LtWorkspaces::Call LtWorkspaces::begin(void*, size_t, void* shared) { return Call{shared}; }
Status LtWorkspaces::end(const Call&, void*) { return no_cuda(); }
Status LtWorkspaces::finish_capture(void*, unsigned long long) { return no_cuda(); }
Handles::~Handles() = default;
size_t workspace_bytes(int) { return size_t(64) << 20; }
Result<std::unique_ptr<Handles>> Handles::create(int, size_t) { return no_cuda(); }
Env Handles::env(void*, bool) { return Env{}; }
std::string arch_name(int cc_major, int cc_minor) {
  return "sm_" + std::to_string(cc_major) + std::to_string(cc_minor);
}
std::string library_versions() { return "none (built without CUDA)"; }

Result<std::vector<Tensor>> run_node_on_device(const ir::Node&, const std::string&, const std::vector<const Tensor*>&,
                                               const std::vector<Tensor>&, const NodeRunOptions&) {
  return no_cuda();
}
Result<std::unique_ptr<DeviceNodeIO>> upload_node_io(const ir::Node&, const std::vector<const Tensor*>&,
                                                     const std::vector<Tensor>&, const NodeRunOptions&,
                                                     const std::vector<std::optional<Dims>>&) {
  return no_cuda();
}
Result<std::vector<int64_t>> node_tactics_on_device(const ir::Node&, const std::string&, DeviceNodeIO&,
                                                    const NodeRunOptions&) {
  return no_cuda();
}
Status warm_node_on_device(const ir::Node&, const std::string&, DeviceNodeIO&, const std::vector<int64_t>&,
                           const NodeRunOptions&) {
  return no_cuda();
}
Result<float> time_node_on_device(const ir::Node&, const std::string&, DeviceNodeIO&, int, const NodeRunOptions&) {
  return no_cuda();
}
Result<std::string> node_state_on_device(const ir::Node&, const std::string&, DeviceNodeIO&, const NodeRunOptions&) {
  return no_cuda();
}

}  // namespace kiln::cuda

namespace kiln::ops::cudnn_graph {

// Without CUDA no plan is ever made (the GPU tests that call these skip first).
int64_t plans_from_state() { return 0; }
void forget_plans_for_test() {}

}  // namespace kiln::ops::cudnn_graph

namespace kiln::ops::matmul::hopper {

// Without CUDA there is no kernel to launch (its GPU test skips first).
int launch(const Problem&, int, void*) { return 1; }

}  // namespace kiln::ops::matmul::hopper
