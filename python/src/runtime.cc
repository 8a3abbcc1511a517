// Runtime, Engine and ExecutionContext, including the high-level infer().
// On the CPU every execute call runs synchronously; stream handles are accepted
// for TensorRT compatibility and ignored.
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <map>

#include "common.h"
#include "runtime/engine_data.h"

namespace kiln::py {

namespace {

nb::tuple dims_tuple(const Dims& d) {
  nb::list l;
  for (int64_t v : d) l.append(v);
  return nb::tuple(l);
}

std::string io_names(const Engine& e, TensorIOMode mode) {
  std::string s;
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    std::string n = e.get_tensor_name(i);
    if (mode == TensorIOMode::kNone || e.get_tensor_mode(n) == mode) s += (s.empty() ? "" : ", ") + n;
  }
  return s;
}

void require_io(const Engine& e, const std::string& name) {
  if (e.get_tensor_mode(name) == TensorIOMode::kNone)
    raise(ErrorCode::kNotFound, "'" + name + "' is not an input or output of this engine (tensors: " +
                                    io_names(e, TensorIOMode::kNone) + ")");
}

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

std::string numpy_hint(DataType t) {
  return t == DataType::kBFloat16 ? "ml_dtypes.bfloat16" : std::string("numpy.") + dtype_name(t);
}

// numpy.int64(address) and friends are addresses, not 0-d arrays.
bool is_numpy_integer(nb::handle obj) {
  if (!PyIndex_Check(obj.ptr())) return false;
  nb::object np = nb::module_::import_("numpy");
  return PyObject_IsInstance(obj.ptr(), np.attr("integer").ptr()) == 1;
}

// An ExecutionContext plus the Python objects whose memory it has been given.
struct PyContext {
  struct Bound {
    void* ptr = nullptr;
    nb::ndarray<> array;  // keeps the memory behind ptr alive (empty for raw ints)
  };
  std::unique_ptr<ExecutionContext> ctx;
  nb::object engine;  // ctx points into the Engine: keep it alive
  std::map<std::string, Bound> bound;

  const Engine& eng() const { return ctx->engine(); }

  void set_address(const std::string& name, nb::handle obj) {
    require_io(eng(), name);
    const bool output = eng().get_tensor_mode(name) == TensorIOMode::kOutput;
    Bound b;
    if (obj.is_none()) {
      b.ptr = nullptr;
    } else if (PyLong_Check(obj.ptr()) || is_numpy_integer(obj)) {
      b.ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(nb::cast<uint64_t>(nb::int_(obj))));
    } else if (is_array_like(obj)) {
      HostArray h = host_array(obj, std::string(output ? "output" : "input") + " '" + name + "'", output);
      if (h.tensor.dtype() != eng().get_tensor_dtype(name))
        raise(ErrorCode::kInvalidArgument, "tensor '" + name + "' is " + dtype_name(eng().get_tensor_dtype(name)) +
                                               " but the array is " + dtype_name(h.tensor.dtype()));
      b.ptr = h.tensor.data();
      b.array = h.array;
    } else {
      // Anything convertible to an address (pycuda's DeviceAllocation, ctypes pointers).
      nb::object as_int = nb::steal(PyNumber_Long(obj.ptr()));
      if (!as_int.is_valid()) {
        PyErr_Clear();
        raise(ErrorCode::kInvalidArgument, "set_tensor_address('" + name + "'): expected an int address or an array");
      }
      b.ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(nb::cast<uint64_t>(as_int)));
    }
    check(ctx->set_tensor_address(name, b.ptr));
    bound[name] = std::move(b);
  }

  // infer() binds its own buffers; afterwards the ones set through the API come back.
  void restore_addresses() {
    for (int i = 0; i < eng().num_io_tensors(); ++i) {
      std::string n = eng().get_tensor_name(i);
      auto it = bound.find(n);
      (void)ctx->set_tensor_address(n, it != bound.end() ? it->second.ptr : nullptr);
    }
  }

  void execute() {
    Status s;
    {
      nb::gil_scoped_release unlocked;
      s = ctx->execute();
    }
    check(s);
  }

  nb::dict infer(nb::handle inputs, nb::handle outputs);
};

struct RestoreGuard {
  PyContext& c;
  ~RestoreGuard() { c.restore_addresses(); }
};

nb::dict PyContext::infer(nb::handle inputs, nb::handle outputs) {
  const Engine& e = eng();
  std::vector<std::string> in_names, out_names;
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    std::string n = e.get_tensor_name(i);
    (e.get_tensor_mode(n) == TensorIOMode::kInput ? in_names : out_names).push_back(n);
  }
  std::vector<std::pair<std::string, nb::handle>> items;
  if (PyDict_Check(inputs.ptr())) {
    for (auto [k, v] : nb::borrow<nb::dict>(inputs)) {
      if (!PyUnicode_Check(k.ptr())) raise(ErrorCode::kInvalidArgument, "infer(): input names must be str");
      items.emplace_back(nb::cast<std::string>(k), v);
    }
  } else if (in_names.size() == 1 && is_array_like(inputs)) {
    items.emplace_back(in_names[0], inputs);
  } else {
    raise(ErrorCode::kInvalidArgument,
          "infer() takes a dict {input name: array}; the engine's inputs are: " + io_names(e, TensorIOMode::kInput));
  }
  std::map<std::string, HostArray> arrays;
  for (auto& [name, obj] : items) {
    if (e.get_tensor_mode(name) != TensorIOMode::kInput)
      raise(ErrorCode::kNotFound,
            "'" + name + "' is not an input of this engine (inputs: " + io_names(e, TensorIOMode::kInput) + ")");
    HostArray h = host_array(obj, "input '" + name + "'", false);
    DataType want = e.get_tensor_dtype(name);
    if (h.tensor.dtype() != want)
      raise(ErrorCode::kInvalidArgument, "input '" + name + "' expects " + dtype_name(want) + ", got " +
                                             dtype_name(h.tensor.dtype()) + " (convert with .astype(" +
                                             numpy_hint(want) + "))");
    arrays[name] = std::move(h);
  }
  for (auto& n : in_names)
    if (!arrays.count(n))
      raise(ErrorCode::kNotFound, "missing input '" + n + "' (inputs: " + io_names(e, TensorIOMode::kInput) + ")");

  RestoreGuard guard{*this};
  nb::dict result;
  if (outputs.is_none()) {
    std::map<std::string, Tensor> views;
    for (auto& [n, h] : arrays) views[n] = h.tensor;
    Result<std::map<std::string, Tensor>> r = Status();
    {
      nb::gil_scoped_release unlocked;
      r = ctx->infer(views);
    }
    auto outs = unwrap(std::move(r));
    for (auto& n : out_names) {
      auto it = outs.find(n);
      if (it != outs.end()) result[n.c_str()] = to_numpy(std::move(it->second));
    }
    return result;
  }

  // Caller-provided outputs: bind them and write in place; missing ones are allocated.
  if (!PyDict_Check(outputs.ptr())) raise(ErrorCode::kInvalidArgument, "infer(): outputs must be a dict {name: array}");
  nb::dict given = nb::borrow<nb::dict>(outputs);
  for (auto [k, v] : given) {
    std::string n = nb::cast<std::string>(k);
    if (e.get_tensor_mode(n) != TensorIOMode::kOutput)
      raise(ErrorCode::kNotFound,
            "'" + n + "' is not an output of this engine (outputs: " + io_names(e, TensorIOMode::kOutput) + ")");
  }
  for (auto& [n, h] : arrays) {
    check(ctx->set_input_shape(n, h.tensor.dims()));
    check(ctx->set_tensor_address(n, h.tensor.data()));
  }
  std::vector<HostArray> keep;
  for (auto& n : out_names) {
    Dims want = ctx->get_tensor_shape(n);
    DataType dt = e.get_tensor_dtype(n);
    nb::object obj;
    if (given.contains(n.c_str())) {
      obj = given[n.c_str()];
    } else {
      if (dims_volume(want) < 0)
        raise(ErrorCode::kUnsupported, "output '" + n + "' has a data-dependent shape " + dims_to_string(want) +
                                           "; it cannot be preallocated (call infer() without outputs=)");
      obj = nb::module_::import_("numpy").attr("empty")(dims_tuple(want), numpy_dtype(dt));
    }
    HostArray h = host_array(obj, "output '" + n + "'", true);
    if (h.tensor.dtype() != dt)
      raise(ErrorCode::kInvalidArgument,
            "output '" + n + "' is " + dtype_name(dt) + " but the array is " + dtype_name(h.tensor.dtype()));
    if (h.tensor.dims() != want)
      raise(ErrorCode::kInvalidArgument, "output '" + n + "' has shape " + dims_to_string(want) +
                                             " for these inputs but the array has shape " +
                                             dims_to_string(h.tensor.dims()));
    check(ctx->set_tensor_address(n, h.tensor.data()));
    result[n.c_str()] = obj;
    keep.push_back(std::move(h));
  }
  execute();
  return result;
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
               io_names(e, TensorIOMode::kNone) + "), " + std::to_string(e.num_layers()) + " layers>";
      });
  add_context_manager(engine);

  auto ctx = nb::class_<PyContext>(m, "ExecutionContext",
                                   "Per-run state: profile, input shapes, bound buffers. TensorRT: IExecutionContext.\n"
                                   "On the CPU every execute call runs synchronously.");
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
          "Selects a profile (synchronous on the CPU).")
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
          "Binds host memory (an int address, or an array kept alive by the context) to an I/O tensor.")
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
          [](PyContext& c, nb::handle) {
            c.execute();
            return true;
          },
          nb::arg("stream_handle") = 0, nb::sig("def execute_async_v3(self, stream_handle: int = 0) -> bool"),
          "Runs with the bound buffers. On the CPU this is synchronous: outputs are ready on return.")
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
          "Binds one address per I/O tensor (in engine order) and runs synchronously.")
      .def(
          "execute_async_v2",
          [](PyContext& c, const std::vector<nb::handle>& bindings, nb::handle) {
            const Engine& e = c.eng();
            if (static_cast<int>(bindings.size()) != e.num_io_tensors())
              raise(ErrorCode::kInvalidArgument, "execute_async_v2: got " + std::to_string(bindings.size()) +
                                                     " bindings, the engine has " + std::to_string(e.num_io_tensors()));
            for (int i = 0; i < e.num_io_tensors(); ++i)
              c.set_address(e.get_tensor_name(i), bindings[static_cast<size_t>(i)]);
            c.execute();
            return true;
          },
          nb::arg("bindings"), nb::arg("stream_handle") = 0,
          nb::sig("def execute_async_v2(self, bindings: collections.abc.Sequence[int | numpy.typing.ArrayLike], "
                  "stream_handle: int = 0) -> bool"),
          "As execute_v2 (synchronous on the CPU).")
      .def("infer", &PyContext::infer, nb::arg("inputs"), nb::arg("outputs").none() = nb::none(),
           nb::sig(
               "def infer(self, inputs: collections.abc.Mapping[str, numpy.typing.ArrayLike] | numpy.typing.ArrayLike, "
               "outputs: collections.abc.Mapping[str, numpy.typing.ArrayLike] | None = None) -> dict[str, "
               "numpy.typing.NDArray]"),
           "Runs once: sets the input shapes from the arrays, binds them without copying and returns\n"
           "{output name: numpy array}. Inputs may be numpy arrays or any host DLPack /\n"
           "__array_interface__ object; a lone array is accepted for a one-input engine. With\n"
           "`outputs`, results are written into those arrays (others are allocated).")
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
  runtime.def(nb::init<Logger&>(), nb::arg("logger"), nb::keep_alive<1, 2>())
      .def("deserialize_cuda_engine", deserialize, nb::arg("serialized_engine"),
           nb::sig("def deserialize_cuda_engine(self, serialized_engine: bytes | bytearray | memoryview) -> Engine"),
           "Checks and loads an engine (any device; TensorRT's name).")
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
