// The CUDA device layer the runtime, builder and tests use: device queries,
// allocations, copies, streams, events, graphs and per-context handles. Plain
// C++ declarations; every CUDA/cuBLAS/cuDNN error becomes a Status saying which
// call failed and (for allocations) how many bytes were asked for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "backends/cuda/device.h"
#include "backends/cuda/env.h"
#include "kiln/status.h"

namespace kiln::cuda {

/// Owned device memory (freed on destruction).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  ~DeviceBuffer();
  void* get() const { return ptr_; }
  size_t size() const { return bytes_; }

 private:
  friend Result<DeviceBuffer> device_alloc(size_t, const std::string&);
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

/// Allocates `bytes` on the current device; out of memory names `what` and the size.
Result<DeviceBuffer> device_alloc(size_t bytes, const std::string& what);

/// Page-locked host memory for staging copies.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  ~PinnedBuffer();
  void* get() const { return ptr_; }
  size_t size() const { return bytes_; }

 private:
  friend Result<PinnedBuffer> pinned_alloc(size_t, const std::string&);
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};
Result<PinnedBuffer> pinned_alloc(size_t bytes, const std::string& what);

/// Makes `index` the calling thread's device.
Status set_device(int index);

/// CUDA graph captures hold this shared; work that may synchronize the whole device
/// (creating or destroying library handles, freeing a context's memory, loading a
/// module) holds it exclusively, so it never runs while another thread's stream is
/// being captured (the driver crashed in cublasLtDestroy's context synchronize there).
std::shared_mutex& capture_lock();

namespace detail {
inline thread_local bool capture_lock_lent = false;
}  // namespace detail

/// Holds capture_lock() exclusively for its scope, unless the calling thread works under
/// a CaptureLockLent: then the thread that lent it holds it already (the builder's
/// parallel warm-up holds it once for all its workers, so their cuDNN finalizers and
/// module loads run together, and never beside a capture).
class ExclusiveCapture {
 public:
  ExclusiveCapture() {
    if (!detail::capture_lock_lent) lock_ = std::unique_lock<std::shared_mutex>(capture_lock());
  }

 private:
  std::unique_lock<std::shared_mutex> lock_;
};

/// Marks the calling thread, for its scope, as working for a thread that holds
/// capture_lock() exclusively until this thread is done. Such a thread must not
/// capture (that would take the lock shared: a deadlock).
class CaptureLockLent {
 public:
  CaptureLockLent() { detail::capture_lock_lent = true; }
  ~CaptureLockLent() { detail::capture_lock_lent = false; }
  CaptureLockLent(const CaptureLockLent&) = delete;
  CaptureLockLent& operator=(const CaptureLockLent&) = delete;
};
/// Current device of the calling thread.
int current_device();
/// True if `p` is device (or managed) memory; false for host memory.
bool is_device_pointer(const void* p);

enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice, kDefault };
Status copy_async(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream);
Status memset_async(void* dst, int value, size_t bytes, void* stream);
Status stream_create(void** stream);
void stream_destroy(void* stream);
Status stream_synchronize(void* stream);
/// Checks the last launch on this thread; names `what` on failure.
Status check_last_launch(const std::string& what);

/// An event pair for timing on a stream.
class EventTimer {
 public:
  EventTimer();
  ~EventTimer();
  Status record_start(void* stream);
  Status record_stop(void* stream);
  /// Milliseconds between start and stop (waits for stop).
  Result<float> elapsed_ms();

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

class LtWorkspaces;

/// A captured CUDA graph, instantiated and ready to replay.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  /// Starts capturing work enqueued on `stream`.
  static Status begin_capture(void* stream);
  /// Ends capture and instantiates; `lt`: the context's cuBLASLt workspaces, whose memsets
  /// in the captured work it folds first (LtWorkspaces::finish_capture).
  Status end_capture(void* stream, LtWorkspaces* lt = nullptr);
  Status launch(void* stream) const;
  bool valid() const { return exec_ != nullptr; }
  /// Drops a (failed) capture and clears the error it left.
  void reset();

 private:
  void* graph_ = nullptr;
  void* exec_ = nullptr;
};

/// The workspace each context of `device` (and the builder's tactic timing there)
/// gives kernels: one size for both, since plans and tactics are keyed by it.
/// 1/32 of the device's memory, at most 1 GiB (cuDNN's faster FP32 algorithms for
/// large activations need hundreds of MiB: ResNet-50 FP32 at batch 256 ran 23.0 ms
/// with 64 MiB, 15.1 ms with 1 GiB, on the H100), or KILN_CUDA_WORKSPACE_MB.
size_t workspace_bytes(int device);

/// Takes cuBLASLt's per-GEMM memsets out of captured CUDA graphs. On Hopper most cuBLASLt GEMMs
/// ask for 4 bytes of workspace, a tile counter they zero with a memset first: in a graph that is
/// one more node on the chain between the previous kernel and the GEMM, ~3.5 us of idle GPU each
/// (docs/performance-work.md). Under capture, `begin` gives each call that asks for at most
/// `kMaxRegion` bytes (a counter) a region of its own in a buffer kept for this;
/// `finish_capture` then makes the first such memset zero every later region and removes the
/// others, the GEMM after each depending directly on what its memset depended on. Nothing else
/// writes the regions, so each counter is still zero when its GEMM starts, in every replay.
/// Outside capture, and for calls asking more (split-K partial sums: in regions of their own
/// those ran slower, ViT-B/16 bs32 2.48 vs 2.41 ms with any size, bs1 1.07 vs 0.45 ms up to
/// 64 KiB), cuBLASLt gets the shared workspace as before.
class LtWorkspaces {
 public:
  static constexpr size_t kMaxRegion = 256;
  /// One call's workspace and, under capture, what `end` needs.
  struct Call {
    void* workspace = nullptr;
    bool region = false;        ///< a region of this object's buffer (under capture)
    std::vector<void*> before;  ///< the capture's leaf nodes before the call
  };
  /// Regions out of a buffer of `region_bytes`.
  static Result<std::unique_ptr<LtWorkspaces>> create(size_t region_bytes);
  /// The workspace for a call needing `bytes` about to be enqueued on `stream`: a region of its
  /// own under capture, where one fits and `bytes` <= kMaxRegion, else `shared`.
  Call begin(void* stream, size_t bytes, void* shared);
  /// After the call: under capture, notes a memset into its region that `finish_capture` folds.
  Status end(const Call& call, void* stream);
  /// After capture `capture_id` ended in `graph` (a cudaGraph_t), before instantiation. What an
  /// earlier capture left (one that failed to end, or ended without this call) is dropped.
  Status finish_capture(void* graph, unsigned long long capture_id);
  /// How many memsets `finish_capture` has removed, over this object's life.
  size_t removed() const { return removed_; }

 private:
  struct Folded {
    std::vector<void*> before;
    void* memset;
    void* gemm;
    size_t offset;  ///< of its region in the buffer
  };
  DeviceBuffer buffer_;
  size_t used_ = 0;                 ///< bytes of the buffer the current capture handed out
  unsigned long long capture_ = 0;  ///< the capture `used_` and `folded_` belong to
  std::vector<Folded> folded_;
  size_t removed_ = 0;
};

/// The handles and workspace one execution context owns.
class Handles {
 public:
  ~Handles();
  /// Creates cuBLASLt and cuDNN handles for `device` and a workspace of `workspace_bytes`.
  static Result<std::unique_ptr<Handles>> create(int device, size_t workspace_bytes);
  /// Binds the handles to `stream` and returns the environment kernels see.
  Env env(void* stream, bool allow_tf32);
  LtWorkspaces* lt() const { return lt_.get(); }

 private:
  int device_ = 0;
  int cc_major_ = 0, cc_minor_ = 0;
  void* cublaslt_ = nullptr;
  void* cudnn_ = nullptr;
  void* cudnn_stream_ = nullptr;
  DeviceBuffer workspace_;
  std::unique_ptr<LtWorkspaces> lt_;
};

/// "sm_90" for compute capability 9.0.
std::string arch_name(int cc_major, int cc_minor);
/// Library versions as a short string ("cuda 13.0, cudnn 91400, cublasLt 130100, driver 13000").
std::string library_versions();

}  // namespace kiln::cuda
