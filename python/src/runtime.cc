// Runtime, Engine and ExecutionContext bindings. What the context does (binding
// buffers, streams, infer) is in context.cc.
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <map>

#include "context.h"
#include "runtime/engine_data.h"

namespace kiln::py {

namespace {

std::string binding_name(const Engine& e, int index) {
  if (index < 0 || index >= e.num_io_tensors())
    throw nb::index_error(("binding " + std::to_string(index) + " of an engine with " +
                           std::to_string(e.num_io_tensors()) + " I/O tensors")
                              .c_str());
  return e.get_tensor_name(index);
}

// A binding given as an index or a name (TensorRT 7/8 accept both).
std::string binding_arg(const Engine& e, nb::handle b) {
  if (PyLong_Check(b.ptr())) return binding_name(e, nb::cast<int>(b));
  if (PyUnicode_Check(b.ptr())) return nb::cast<std::string>(b);
  throw nb::type_error("expected a binding index (int) or a tensor name (str)");
}

}  // namespace

void register_runtime(nb::module_& m) {
  auto engine = nb::class_<Engine>(m, "Engine",
                                   "A deserialized, immutable engine shared by its execution contexts. "
                                   "TensorRT: ICudaEngine.");
  engine.def_prop_ro("num_io_tensors", &Engine::num_io_tensors, "Inputs and outputs, inputs first.")
      .def(
          "get_tensor_name", [](const Engine& e, int i) { return binding_name(e, i); }, nb::arg("index"),
          "Name of I/O tensor `index`.")
      .def("get_tensor_mode", &Engine::get_tensor_mode, nb::arg("name"), "INPUT, OUTPUT, or NONE for an unknown name.")
      .def("get_tensor_dtype", &Engine::get_tensor_dtype, nb::arg("name"), "Element type (UNDEFINED if unknown).")
      .def(
          "get_tensor_shape",
          [](const Engine& e, const std::string& name) {
            require_io(e, name);
            return dims_tuple(e.get_tensor_shape(name));
          },
          nb::arg("name"), nb::sig("def get_tensor_shape(self, name: str) -> tuple[int, ...]"),
          "Dims with -1 for dynamic dims.")
      .def("get_tensor_dim_names", &Engine::get_tensor_dim_names, nb::arg("name"),
           "Symbolic dim names ('' where unnamed).")
      .def_prop_ro("num_optimization_profiles", &Engine::num_optimization_profiles)
      .def(
          "get_tensor_profile_shape",
          [](const Engine& e, const std::string& name, int profile) {
            require_io(e, name);
            auto r = e.get_tensor_profile_shape(name, profile);
            if (r.size() != 3)
              raise(ErrorCode::kNotFound, "no optimization profile shape for '" + name + "' in profile " +
                                              std::to_string(profile) + " (the engine has " +
                                              std::to_string(e.num_optimization_profiles()) + " profile(s))");
            nb::list l;
            for (auto& d : r) l.append(dims_tuple(d));
            return l;
          },
          nb::arg("name"), nb::arg("profile_index"),
          nb::sig("def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]"),
          "[min, opt, max] of input `name` in a profile.")
      .def_prop_ro("num_layers", &Engine::num_layers)
      .def_prop_ro("device_memory_size", &Engine::activation_bytes,
                   "Bytes of activation memory a context needs at the profiles' max shapes.")
      .def_prop_ro("activation_bytes", &Engine::activation_bytes)
      .def_prop_ro("weight_bytes", &Engine::weight_bytes)
      .def("inspect_json", &Engine::inspect_json, "A JSON description: I/O, profiles, layers, memory.")
      .def_prop_ro("metadata", &Engine::metadata, "User metadata stored at build time.")
      .def_prop_ro("device", &Engine::device, "'cpu' or 'cuda': where the engine runs.")
      .def_prop_ro("device_index", &engine_device, "CUDA device a CUDA engine runs on; -1 for CPU engines.")
      .def(
          "serialize", [](const Engine& e) { return serialized_engine_bytes(plan::serialize_engine(e.data()->model)); },
          nb::sig("def serialize(self) -> SerializedEngine"), "The engine file bytes (TensorRT 7/8 style).")
      .def(
          "create_execution_context",
          [](nb::pointer_and_handle<Engine> self) {
            auto c = std::make_unique<PyContext>();
            c->ctx = self.p->create_execution_context();
            c->engine = nb::borrow(self.h);
            return c;
          },
          "A new context; several may run concurrently.")
      .def(
          "__getitem__",
          [](const Engine& e, nb::handle key) -> nb::object {
            if (PyLong_Check(key.ptr())) return nb::str(binding_name(e, nb::cast<int>(key)).c_str());
            std::string name = binding_arg(e, key);
            for (int i = 0; i < e.num_io_tensors(); ++i)
              if (e.get_tensor_name(i) == name) return nb::int_(i);
            raise(ErrorCode::kNotFound, "'" + name + "' is not an input or output of this engine");
          },
          nb::arg("key"), nb::sig("def __getitem__(self, key: int | str) -> str | int"),
          "engine[i] is the name of I/O tensor i; engine[name] its index.")
      // TensorRT 7/8 binding-index API.
      .def_prop_ro("num_bindings", &Engine::num_io_tensors)
      .def(
          "get_binding_name", [](const Engine& e, int i) { return binding_name(e, i); }, nb::arg("index"))
      .def(
          "get_binding_index",
          [](const Engine& e, const std::string& name) {
            for (int i = 0; i < e.num_io_tensors(); ++i)
              if (e.get_tensor_name(i) == name) return i;
            return -1;
          },
          nb::arg("name"))
      .def(
          "binding_is_input",
          [](const Engine& e, nb::handle b) {
            std::string n = binding_arg(e, b);
            return e.get_tensor_mode(n) == TensorIOMode::kInput;
          },
          nb::arg("binding"), nb::sig("def binding_is_input(self, binding: int | str) -> bool"))
      .def(
          "get_binding_shape",
          [](const Engine& e, int i) { return dims_tuple(e.get_tensor_shape(binding_name(e, i))); }, nb::arg("index"),
          nb::sig("def get_binding_shape(self, index: int) -> tuple[int, ...]"))
      .def(
          "get_binding_dtype", [](const Engine& e, int i) { return e.get_tensor_dtype(binding_name(e, i)); },
          nb::arg("index"))
      .def(
          "get_profile_shape",
          [](const Engine& e, int profile, nb::handle b) {
            std::string n = binding_arg(e, b);
            nb::list l;
            for (auto& d : e.get_tensor_profile_shape(n, profile)) l.append(dims_tuple(d));
            return l;
          },
          nb::arg("profile_index"), nb::arg("binding"),
          nb::sig("def get_profile_shape(self, profile_index: int, binding: int | str) -> list[tuple[int, ...]]"))
      .def("__repr__", [](const Engine& e) {
        return "<kiln.Engine: " + std::to_string(e.num_io_tensors()) + " I/O tensors (" +
               io_names(e, TensorIOMode::kNone) + "), " + std::to_string(e.num_layers()) + " layers, " + e.device() +
               ">";
      });
  add_context_manager(engine);

  nb::class_<RunTiming>(m, "RunTiming", "Where the time of one run went (CUDA engines; milliseconds).")
      .def_ro("h2d_ms", &RunTiming::h2d_ms, "Copying inputs into the engine (0 when bound in place).")
      .def_ro("compute_ms", &RunTiming::compute_ms, "The layers.")
      .def_ro("d2h_ms", &RunTiming::d2h_ms, "Copying outputs out (0 when bound in place).")
      .def("__repr__", [](const RunTiming& t) {
        return "<kiln.RunTiming h2d " + std::to_string(t.h2d_ms) + " ms, compute " + std::to_string(t.compute_ms) +
               " ms, d2h " + std::to_string(t.d2h_ms) + " ms>";
      });

  auto ctx =
      nb::class_<PyContext>(m, "ExecutionContext",
                            "Per-run state: profile, input shapes, bound buffers. TensorRT: IExecutionContext.\n"
                            "CPU engines run every execute call synchronously. CUDA engines take host or device\n"
                            "buffers (detected per pointer; device buffers are used in place when CUDA graphs are\n"
                            "off); execute_async_v3(stream) enqueues on a cudaStream_t without waiting, and stream 0\n"
                            "(TensorRT's default stream) runs synchronously, after the default stream's work.");
  ctx.def_prop_ro(
         "engine", [](const PyContext& c) { return c.engine; }, nb::sig("def engine(self) -> Engine"))
      .def_prop_rw(
          "active_optimization_profile", [](const PyContext& c) { return c.ctx->get_optimization_profile(); },
          [](PyContext& c, int i) { check(c.ctx->set_optimization_profile(i)); },
          "The optimization profile used for shape checks (default 0).")
      .def(
          "set_optimization_profile_async",
          [](PyContext& c, int i, nb::handle) {
            check(c.ctx->set_optimization_profile(i));
            return true;
          },
          nb::arg("profile_index"), nb::arg("stream_handle") = 0,
          nb::sig("def set_optimization_profile_async(self, profile_index: int, stream_handle: int = 0) -> bool"),
          "Selects a profile (host state only: takes effect at once, whatever the stream).")
      .def(
          "set_input_shape",
          [](PyContext& c, const std::string& name, const Dims& shape) {
            check(c.ctx->set_input_shape(name, shape));
            return true;
          },
          nb::arg("name"), nb::arg("shape"),
          nb::sig("def set_input_shape(self, name: str, shape: collections.abc.Sequence[int]) -> bool"),
          "Sets a dynamic input's dims; raises naming the dim and its range if outside the profile.")
      .def(
          "get_tensor_shape",
          [](const PyContext& c, const std::string& name) {
            require_io(c.eng(), name);
            return dims_tuple(c.ctx->get_tensor_shape(name));
          },
          nb::arg("name"), nb::sig("def get_tensor_shape(self, name: str) -> tuple[int, ...]"),
          "Dims of an I/O tensor for the current input shapes; -1 where data-dependent.")
      .def(
          "set_tensor_address",
          [](PyContext& c, const std::string& name, nb::handle address) {
            c.set_address(name, address);
            return true;
          },
          nb::arg("name"), nb::arg("address").none(),
          nb::sig("def set_tensor_address(self, name: str, address: int | numpy.typing.ArrayLike | None) -> bool"),
          "Binds memory to an I/O tensor: an int address, or an array kept alive by the context. CUDA\n"
          "engines also take device memory: an int device address or a C-contiguous CUDA array\n"
          "(torch, cupy, kiln.DeviceArray: anything with __dlpack__ or __cuda_array_interface__).")
      .def(
          "get_tensor_address",
          [](const PyContext& c, const std::string& name) {
            auto it = c.bound.find(name);
            return it == c.bound.end() ? uint64_t{0}
                                       : static_cast<uint64_t>(reinterpret_cast<uintptr_t>(it->second.ptr));
          },
          nb::arg("name"))
      .def(
          "execute_async_v3",
          [](PyContext& c, uintptr_t stream) {
            c.enqueue(stream);
            return true;
          },
          nb::arg("stream_handle") = 0, nb::sig("def execute_async_v3(self, stream_handle: int = 0) -> bool"),
          "Runs with the bound buffers. CUDA engines: `stream_handle` is a cudaStream_t as an int\n"
          "(torch.cuda.current_stream().cuda_stream); the run is enqueued there and the call returns\n"
          "without waiting (synchronize the stream before reading outputs). 0, TensorRT's default\n"
          "stream, runs on the context's own stream after the default stream's work and waits. CPU\n"
          "engines always run synchronously.")
      .def(
          "execute_v2",
          [](PyContext& c, const std::vector<nb::handle>& bindings) {
            const Engine& e = c.eng();
            if (static_cast<int>(bindings.size()) != e.num_io_tensors())
              raise(ErrorCode::kInvalidArgument, "execute_v2: got " + std::to_string(bindings.size()) +
                                                     " bindings, the engine has " + std::to_string(e.num_io_tensors()) +
                                                     " I/O tensors (" + io_names(e, TensorIOMode::kNone) + ")");
            for (int i = 0; i < e.num_io_tensors(); ++i)
              c.set_address(e.get_tensor_name(i), bindings[static_cast<size_t>(i)]);
            c.execute();
            return true;
          },
          nb::arg("bindings"),
          nb::sig("def execute_v2(self, bindings: collections.abc.Sequence[int | numpy.typing.ArrayLike]) -> bool"),
          "Binds one address or array per I/O tensor (in engine order; device addresses for CUDA\n"
          "engines, e.g. tensor.data_ptr()) and runs synchronously.")
      .def(
          "execute_async_v2",
          [](PyContext& c, const std::vector<nb::handle>& bindings, uintptr_t stream) {
            const Engine& e = c.eng();
            if (static_cast<int>(bindings.size()) != e.num_io_tensors())
              raise(ErrorCode::kInvalidArgument, "execute_async_v2: got " + std::to_string(bindings.size()) +
                                                     " bindings, the engine has " + std::to_string(e.num_io_tensors()));
            for (int i = 0; i < e.num_io_tensors(); ++i)
              c.set_address(e.get_tensor_name(i), bindings[static_cast<size_t>(i)]);
            c.enqueue(stream);
            return true;
          },
          nb::arg("bindings"), nb::arg("stream_handle") = 0,
          nb::sig("def execute_async_v2(self, bindings: collections.abc.Sequence[int | numpy.typing.ArrayLike], "
                  "stream_handle: int = 0) -> bool"),
          "As execute_v2, with execute_async_v3's stream rules.")
      .def_prop_rw(
          "use_cuda_graph", [](const PyContext& c) { return c.use_cuda_graph; },
          [](PyContext& c, bool on) {
            c.ctx->set_use_cuda_graph(on);
            c.use_cuda_graph = on;
          },
          "CUDA engines: capture each input shape's layers into a CUDA graph once and replay it.\n"
          "Device buffers are then copied into the graph's own buffers (no longer used in place), and\n"
          "execute_async_v3 needs a created stream (CUDA cannot capture on the legacy default stream, 1).")
      .def_prop_rw(
          "timing", [](const PyContext& c) { return c.timing; },
          [](PyContext& c, bool on) {
            c.ctx->set_timing(on);
            c.timing = on;
          },
          "Record last_timing on every run (CUDA engines; adds event records).")
      .def_prop_ro(
          "last_timing", [](const PyContext& c) { return c.ctx->last_timing(); },
          "RunTiming of the last run made with timing on.")
      .def_prop_rw(
          "profiling", [](const PyContext& c) { return c.profiling; },
          [](PyContext& c, bool on) {
            c.ctx->set_profiling(on);
            c.profiling = on;
          },
          "Record each layer's time on the next runs (serializes the layers; no CUDA graph).")
      .def_prop_ro(
          "layer_times", [](const PyContext& c) { return c.ctx->layer_times(); },
          nb::sig("def layer_times(self) -> list[tuple[str, float]]"),
          "[(layer name, milliseconds)] of the last profiled run.")
      .def_prop_ro(
          "last_fallback_count", [](const PyContext& c) { return c.ctx->last_fallback_count(); },
          "CUDA engines: layers of the last run that had no CUDA kernel and ran on the CPU.")
      .def("infer", &PyContext::infer, nb::arg("inputs"), nb::arg("outputs").none() = nb::none(),
           nb::sig(
               "def infer(self, inputs: collections.abc.Mapping[str, numpy.typing.ArrayLike] | numpy.typing.ArrayLike, "
               "outputs: collections.abc.Mapping[str, numpy.typing.ArrayLike] | None = None) -> dict[str, "
               "typing.Any]"),
           "Runs once and waits: sets the input shapes from the arrays, binds them without copying and\n"
           "returns {output name: array}. Inputs may be numpy arrays or any host DLPack /\n"
           "__array_interface__ object; a lone array is accepted for a one-input engine. CUDA engines\n"
           "also take C-contiguous CUDA arrays (torch, cupy, anything with __dlpack__ or\n"
           "__cuda_array_interface__), used in place; with any of those the outputs are allocated on\n"
           "the device and returned as torch tensors (torch inputs), cupy arrays (cupy inputs) or\n"
           "kiln.DeviceArray, else as numpy arrays. With `outputs`, results are written into those\n"
           "arrays, host or device (others are allocated). Inputs written on any torch/cupy stream are\n"
           "waited for; the outputs are complete on return.")
      // TensorRT 7/8 binding-index API.
      .def(
          "set_binding_shape",
          [](PyContext& c, int i, const Dims& shape) {
            check(c.ctx->set_input_shape(binding_name(c.eng(), i), shape));
            return true;
          },
          nb::arg("index"), nb::arg("shape"),
          nb::sig("def set_binding_shape(self, index: int, shape: collections.abc.Sequence[int]) -> bool"))
      .def(
          "get_binding_shape",
          [](const PyContext& c, int i) { return dims_tuple(c.ctx->get_tensor_shape(binding_name(c.eng(), i))); },
          nb::arg("index"), nb::sig("def get_binding_shape(self, index: int) -> tuple[int, ...]"));
  add_context_manager(ctx);

  auto runtime = nb::class_<Runtime>(m, "Runtime", "Deserializes engines. TensorRT: IRuntime.");
  auto deserialize = [](Runtime& r, nb::handle data) {
    BufferView buf(data, "the serialized engine");
    Result<std::unique_ptr<Engine>> e = Status();
    {
      nb::gil_scoped_release unlocked;
      e = r.deserialize(buf.data(), buf.size());
    }
    return unwrap(std::move(e));
  };
  runtime
      .def(
          "__init__",
          [](Runtime* self, Logger& logger, int device_index) {
            new (self) Runtime(logger);
            self->set_device_index(device_index);
          },
          nb::arg("logger"), nb::arg("device_index") = 0, nb::keep_alive<1, 2>(),
          "A runtime; CUDA engines it deserializes run on CUDA device `device_index`.")
      .def_prop_rw("device_index", &Runtime::device_index, &Runtime::set_device_index,
                   "CUDA device that deserialized CUDA engines run on (default 0).")
      .def("deserialize_cuda_engine", deserialize, nb::arg("serialized_engine"),
           nb::sig("def deserialize_cuda_engine(self, serialized_engine: bytes | bytearray | memoryview) -> Engine"),
           "Checks and loads an engine (CPU or CUDA; TensorRT's name). CUDA engines need a GPU of the\n"
           "compute capability they were built for; their weights are uploaded to it here.")
      .def("deserialize_engine", deserialize, nb::arg("serialized_engine"),
           nb::sig("def deserialize_engine(self, serialized_engine: bytes | bytearray | memoryview) -> Engine"),
           "Checks and loads an engine (device-neutral name).")
      .def(
          "deserialize_file",
          [](Runtime& r, nb::handle path) {
            std::string s = nb::cast<std::string>(nb::module_::import_("os").attr("fspath")(path));
            Result<std::unique_ptr<Engine>> e = Status();
            {
              nb::gil_scoped_release unlocked;
              e = r.deserialize_file(s);
            }
            return unwrap(std::move(e));
          },
          nb::arg("path"), nb::sig("def deserialize_file(self, path: str | os.PathLike) -> Engine"),
          "Reads an engine file and loads it.");
  add_context_manager(runtime);
}

}  // namespace kiln::py
