// kiln.ExecutionContext: an ExecutionContext plus the Python objects whose memory
// it has been given, the execute calls' stream rules, and infer().
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common.h"

namespace kiln::py {

/// (1, 3, 16, 16) for Dims {1, 3, 16, 16}.
nb::tuple dims_tuple(const Dims& d);
/// "images, scores": the engine's I/O tensor names of `mode` (kNone: all).
std::string io_names(const Engine& e, TensorIOMode mode);
/// Raises NotFoundError unless `name` is an input or output of `e`.
void require_io(const Engine& e, const std::string& name);
/// CUDA device a CUDA engine runs on; -1 for CPU engines.
int engine_device(const Engine& e);

struct PyContext {
  /// A buffer given through set_tensor_address / execute_v2 and what keeps it alive.
  struct Bound {
    void* ptr = nullptr;
    nb::object keep;      // the array object (None for raw int addresses)
    nb::ndarray<> array;  // its import, which may own a converted copy or a DLPack export
  };
  std::unique_ptr<ExecutionContext> ctx;
  nb::object engine;  // ctx points into the Engine: keep it alive
  std::map<std::string, Bound> bound;
  bool use_cuda_graph = false, timing = false, profiling = false;

  const Engine& eng() const { return ctx->engine(); }
  bool is_cuda() const { return engine_device(eng()) >= 0; }

  /// Binds an int address, a host array or (CUDA engines) a CUDA array to an I/O tensor.
  void set_address(const std::string& name, nb::handle obj);
  /// infer() binds its own buffers; afterwards the ones set through the API come back.
  void restore_addresses();
  /// Runs and waits. CUDA engines first wait for the work queued on CUDA's default
  /// stream (torch's default stream), so inputs written there are complete.
  void execute();
  /// execute_async_v2/v3: 0 (TensorRT's default stream) runs as execute(); any other
  /// handle is a cudaStream_t the run is enqueued on without waiting (CUDA engines).
  void enqueue(uintptr_t stream);
  /// The high-level call: {name: array} in, {name: array} out (see the binding's doc).
  nb::dict infer(nb::handle inputs, nb::handle outputs);

 private:
  /// An input or output array seen by infer(): host or CUDA memory.
  struct Array {
    nb::object obj;
    HostArray host;
    DeviceArrayRef device;
    Tensor tensor;  // view of host or device memory
    bool on_device = false;
  };
  Array import_array(const std::string& name, nb::handle obj, bool output);
  /// Runs the context on the arrays' tensors with the GIL released; kiln allocates the outputs.
  std::map<std::string, Tensor> run_allocating(const std::map<std::string, Array>& ins);
  nb::dict infer_data_dependent(const std::map<std::string, Array>& ins, const nb::dict& given, bool any_device,
                                DeviceFramework framework);
};

}  // namespace kiln::py
