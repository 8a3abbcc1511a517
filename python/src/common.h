// Shared pieces of the Python bindings: Status -> exception, array <-> Tensor.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <string>
#include <utility>

#include "kiln/kiln.h"

namespace kiln::py {

namespace nb = nanobind;

/// Carries a failed Status out of a binding; the translator raises the kiln
/// exception class that matches its code, with the same message.
struct StatusError {
  Status status;
};

[[noreturn]] inline void raise(ErrorCode code, std::string message) {
  throw StatusError{Status(code, std::move(message))};
}

inline void check(const Status& s) {
  if (!s.ok()) throw StatusError{s};
}

template <typename T>
T unwrap(Result<T>&& r) {
  if (!r.ok()) throw StatusError{r.status()};
  return std::move(r).value();
}

/// Where an array's memory lives, from __dlpack_device__ (DLPack device type and id)
/// or __cuda_array_interface__, read without importing the array.
struct MemoryLocation {
  int device_type = 1;  ///< DLPack: 1 CPU, 2 CUDA, 3 CUDA pinned host, 13 CUDA managed
  int device_id = 0;    ///< -1 when unknown (__cuda_array_interface__ does not say)
  bool is_host() const { return device_type == 1 || device_type == 3; }
  bool is_cuda() const { return device_type == 2 || device_type == 13; }
  /// "CUDA device memory (cuda:0)".
  std::string describe() const;
};
MemoryLocation memory_location(nb::handle obj);

/// DLPack dtype <-> kiln DataType (kUndefined for a dtype kiln lacks).
DataType dtype_from_dlpack(nb::dlpack::dtype t);
/// Raises UnsupportedError for a dtype with no DLPack code; numpy has no bfloat16,
/// so `bf16_as_uint16` exports its bits as uint16 (viewed as ml_dtypes.bfloat16 later).
nb::dlpack::dtype dtype_to_dlpack(DataType t, bool bf16_as_uint16);

/// Host memory seen through DLPack / the buffer protocol / __array_interface__,
/// kept alive by `array` while `tensor` views it.
struct HostArray {
  nb::object keep;      ///< the object whose memory `tensor` views
  nb::ndarray<> array;  ///< the imported array (holds its producer alive)
  Tensor tensor;        ///< a view: dtype, dims and data of the array
};

/// Imports `obj` (numpy array, DLPack tensor, object with __array_interface__)
/// as a C-contiguous host array without copying when it already is one.
/// Raises UnsupportedError naming `what` for device memory and
/// InvalidArgumentError for anything that is not an array.
HostArray host_array(nb::handle obj, const std::string& what, bool writable);

/// True when `obj` looks like an array (DLPack, buffer, array interfaces).
bool is_array_like(nb::handle obj);

/// A numpy array owning `t` (no copy).
nb::object to_numpy(Tensor t);

/// A numpy dtype for a kiln DataType (ml_dtypes.bfloat16 for bfloat16).
nb::object numpy_dtype(DataType t);

/// Which library made a CUDA array: outputs kiln allocates are returned as the same kind.
enum class DeviceFramework { kNone, kTorch, kCupy };

/// CUDA device memory seen through DLPack or __cuda_array_interface__, used in place.
struct DeviceArrayRef {
  nb::object keep;      ///< the object whose memory `tensor` views
  nb::ndarray<> array;  ///< the DLPack import (empty for __cuda_array_interface__)
  Tensor tensor;        ///< a view of device memory: dtype, dims and pointer
  int device = -1;      ///< CUDA device index (-1 when the producer does not say)
  DeviceFramework framework = DeviceFramework::kNone;
};

/// Imports a C-contiguous CUDA array without copying. Raises InvalidArgumentError
/// naming `what` for a strided, read-only (when `writable`) or unsupported-dtype
/// array. Producer streams are made visible to CUDA's legacy default stream: DLPack
/// producers are asked for that stream, a __cuda_array_interface__ "stream" is waited for.
DeviceArrayRef device_array(nb::handle obj, const std::string& what, bool writable);

/// Allocates a CUDA output of `dtype` x `dims` on `device` and returns it as a torch
/// tensor, a cupy array or a kiln.DeviceArray (kNone); `*data` receives its pointer.
nb::object device_output(DataType dtype, const Dims& dims, int device, DeviceFramework framework, void** data);

/// Makes `device` current for the calling thread and restores the previous device after.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

/// Waits for the work queued on CUDA's legacy default stream of the current device:
/// where device_array() made the producers' work visible.
void sync_default_stream();

/// Copies `bytes` between any two of host and device memory and waits; errors name `what`.
void device_copy(void* dst, const void* src, size_t bytes, const std::string& what);

/// Weights for a layer: `obj` as a host tensor; floating-point weights are cast
/// to `float_target` when it is a float type and differs (numpy's default
/// float64 would not match a float32 network).
HostArray weights_array(nb::handle obj, const std::string& what, DataType float_target);

/// Reads a bytes-like object without copying.
class BufferView {
 public:
  explicit BufferView(nb::handle obj, const char* what);
  ~BufferView();
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  const void* data() const { return view_.buf; }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

/// Bytes of a serialized engine as a `kiln.SerializedEngine` (a bytes subclass
/// that also works in a `with` statement, like TensorRT's IHostMemory).
nb::object serialized_engine_bytes(const std::vector<uint8_t>& data);
/// The kiln.SerializedEngine class (set up by register_types).
nb::handle serialized_engine_type();

/// Adds __enter__/__exit__ so objects can be used in `with` as in TensorRT.
template <typename Class>
void add_context_manager(Class& cls) {
  cls.def(
      "__enter__", [](nb::handle self) { return nb::borrow(self); },
      nb::sig("def __enter__(self) -> typing_extensions.Self"));
  cls.def(
      "__exit__", [](nb::handle, nb::args) { return false; }, nb::sig("def __exit__(self, *exc_info: object) -> bool"));
}

void register_errors(nb::module_& m);
void register_types(nb::module_& m);
void register_logger(nb::module_& m);
void register_network(nb::module_& m);
void register_builder(nb::module_& m);
void register_runtime(nb::module_& m);
void register_device(nb::module_& m);

}  // namespace kiln::py
