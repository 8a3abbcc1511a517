// kiln.ExecutionContext's behaviour: binding buffers, the stream rules of the
// execute calls, and infer(). The bindings themselves are in runtime.cc.
//
// Synchronization with CUDA arrays from other libraries: device_array() asks each
// producer to make its pending work visible on CUDA's legacy default stream
// (DLPack's stream=None), and execute() waits for that stream before running on the
// context's own stream; so infer() and execute_v2 see complete inputs whichever
// stream torch or cupy wrote them on, and return with the outputs complete.
#include "context.h"

#include <nanobind/stl/string.h>

#include <cstring>
#include <optional>

#include "runtime/cuda_executor.h"

namespace kiln::py {

namespace {

std::string numpy_hint(DataType t) {
  return t == DataType::kBFloat16 ? "ml_dtypes.bfloat16" : std::string("numpy.") + dtype_name(t);
}

std::string convert_hint(DataType t, bool on_device, DeviceFramework framework) {
  if (!on_device) return " (convert with .astype(" + numpy_hint(t) + "))";
  if (framework == DeviceFramework::kTorch) return std::string(" (convert with .to(torch.") + dtype_name(t) + "))";
  if (framework == DeviceFramework::kCupy) return std::string(" (convert with .astype(cupy.") + dtype_name(t) + "))";
  return "";
}

// numpy.int64(address) and friends are addresses, not 0-d arrays.
bool is_numpy_integer(nb::handle obj) {
  if (!PyIndex_Check(obj.ptr())) return false;
  nb::object np = nb::module_::import_("numpy");
  return PyObject_IsInstance(obj.ptr(), np.attr("integer").ptr()) == 1;
}

[[noreturn]] void raise_cpu_engine(const std::string& what, const MemoryLocation& loc) {
  raise(ErrorCode::kDeviceMismatch,
        what + " is in " + loc.describe() +
            ", but this engine runs on the CPU; pass host memory (e.g. tensor.cpu().numpy()) "
            "or build a CUDA engine (config.set_device(kiln.DeviceType.CUDA))");
}

void require_device(const DeviceArrayRef& d, int device, const std::string& what) {
  if (d.device >= 0 && d.device != device)
    raise(ErrorCode::kDeviceMismatch,
          what + " is on cuda:" + std::to_string(d.device) + " but the engine runs on cuda:" + std::to_string(device));
}

struct RestoreGuard {
  PyContext& c;
  ~RestoreGuard() { c.restore_addresses(); }
};

}  // namespace

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

int engine_device(const Engine& e) {
  if (e.device() != "cuda") return -1;
  const auto& w = e.data()->cuda_weights;
  return w ? w->device : 0;
}

void PyContext::set_address(const std::string& name, nb::handle obj) {
  require_io(eng(), name);
  const bool output = eng().get_tensor_mode(name) == TensorIOMode::kOutput;
  const std::string what = std::string(output ? "output" : "input") + " '" + name + "'";
  Bound b;
  if (obj.is_none()) {
    b.ptr = nullptr;
  } else if (PyLong_Check(obj.ptr()) || is_numpy_integer(obj)) {
    b.ptr = reinterpret_cast<void*>(static_cast<uintptr_t>(nb::cast<uint64_t>(nb::int_(obj))));
  } else if (is_array_like(obj)) {
    Tensor view;
    MemoryLocation loc = memory_location(obj);
    if (loc.is_cuda()) {
      if (!is_cuda()) raise_cpu_engine(what, loc);
      DeviceArrayRef d = device_array(obj, what, output);
      require_device(d, engine_device(eng()), what);
      view = d.tensor;
      b.keep = d.keep;
      b.array = d.array;
    } else {
      HostArray h = host_array(obj, what, output);
      view = h.tensor;
      b.keep = h.keep;
      b.array = h.array;
    }
    if (view.dtype() != eng().get_tensor_dtype(name))
      raise(ErrorCode::kInvalidArgument, "tensor '" + name + "' is " + dtype_name(eng().get_tensor_dtype(name)) +
                                             " but the array is " + dtype_name(view.dtype()));
    b.ptr = view.data();
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

void PyContext::restore_addresses() {
  for (int i = 0; i < eng().num_io_tensors(); ++i) {
    std::string n = eng().get_tensor_name(i);
    auto it = bound.find(n);
    (void)ctx->set_tensor_address(n, it != bound.end() ? it->second.ptr : nullptr);
  }
}

void PyContext::execute() {
  std::optional<DeviceScope> scope;
  if (is_cuda()) {
    scope.emplace(engine_device(eng()));
    sync_default_stream();
  }
  Status s;
  {
    nb::gil_scoped_release unlocked;
    s = ctx->execute();
  }
  check(s);
}

void PyContext::enqueue(uintptr_t stream) {
  if (stream == 0 || !is_cuda()) return execute();
  DeviceScope scope(engine_device(eng()));
  Status s;
  {
    nb::gil_scoped_release unlocked;
    s = ctx->enqueue(reinterpret_cast<void*>(stream));
  }
  check(s);
}

PyContext::Array PyContext::import_array(const std::string& name, nb::handle obj, bool output) {
  const Engine& e = eng();
  const std::string what = std::string(output ? "output" : "input") + " '" + name + "'";
  Array a;
  a.obj = nb::borrow(obj);
  MemoryLocation loc = memory_location(obj);
  if (loc.is_cuda()) {
    if (!is_cuda()) raise_cpu_engine(what, loc);
    a.device = device_array(obj, what, output);
    require_device(a.device, engine_device(e), what);
    a.tensor = a.device.tensor;
    a.on_device = true;
  } else {
    a.host = host_array(obj, what, output);
    a.tensor = a.host.tensor;
  }
  DataType want = e.get_tensor_dtype(name);
  if (a.tensor.dtype() != want) {
    if (output)
      raise(ErrorCode::kInvalidArgument,
            what + " is " + dtype_name(want) + " but the array is " + dtype_name(a.tensor.dtype()));
    raise(ErrorCode::kInvalidArgument, what + " expects " + dtype_name(want) + ", got " + dtype_name(a.tensor.dtype()) +
                                           convert_hint(want, a.on_device, a.device.framework));
  }
  return a;
}

std::map<std::string, Tensor> PyContext::run_allocating(const std::map<std::string, Array>& ins) {
  std::map<std::string, Tensor> views;
  for (auto& [n, a] : ins) views[n] = a.tensor;
  Result<std::map<std::string, Tensor>> r = Status();
  {
    nb::gil_scoped_release unlocked;
    r = ctx->infer(views);
  }
  return unwrap(std::move(r));
}

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
  std::map<std::string, Array> ins;
  bool any_device = false;
  DeviceFramework framework = DeviceFramework::kNone;  // of the first device input: outputs are made alike
  for (auto& [name, obj] : items) {
    if (e.get_tensor_mode(name) != TensorIOMode::kInput)
      raise(ErrorCode::kNotFound,
            "'" + name + "' is not an input of this engine (inputs: " + io_names(e, TensorIOMode::kInput) + ")");
    Array a = import_array(name, obj, false);
    if (a.on_device && !any_device) framework = a.device.framework;
    any_device = any_device || a.on_device;
    ins[name] = std::move(a);
  }
  for (auto& n : in_names)
    if (!ins.count(n))
      raise(ErrorCode::kNotFound, "missing input '" + n + "' (inputs: " + io_names(e, TensorIOMode::kInput) + ")");

  RestoreGuard guard{*this};
  nb::dict result;
  if (outputs.is_none() && !any_device) {
    // Host in, host out: kiln allocates the outputs (whatever their shape) and returns them.
    auto outs = run_allocating(ins);
    for (auto& n : out_names) {
      auto it = outs.find(n);
      if (it != outs.end()) result[n.c_str()] = to_numpy(std::move(it->second));
    }
    return result;
  }

  // Outputs are bound before the run: the caller's (written in place) and ones
  // allocated here, on the device when any input is there.
  nb::dict given;
  if (!outputs.is_none()) {
    if (!PyDict_Check(outputs.ptr()))
      raise(ErrorCode::kInvalidArgument, "infer(): outputs must be a dict {name: array}");
    given = nb::borrow<nb::dict>(outputs);
  }
  for (auto [k, v] : given) {
    std::string n = nb::cast<std::string>(k);
    if (e.get_tensor_mode(n) != TensorIOMode::kOutput)
      raise(ErrorCode::kNotFound,
            "'" + n + "' is not an output of this engine (outputs: " + io_names(e, TensorIOMode::kOutput) + ")");
  }
  for (auto& [n, a] : ins) {
    check(ctx->set_input_shape(n, a.tensor.dims()));
    check(ctx->set_tensor_address(n, a.tensor.data()));
  }
  for (auto& n : out_names)
    if (dims_volume(ctx->get_tensor_shape(n)) < 0) return infer_data_dependent(ins, given, any_device, framework);
  std::optional<DeviceScope> scope;
  if (is_cuda()) scope.emplace(engine_device(e));
  std::vector<Array> keep;
  for (auto& n : out_names) {
    Dims want = ctx->get_tensor_shape(n);
    DataType dt = e.get_tensor_dtype(n);
    Array a;
    if (given.contains(n.c_str())) {
      a = import_array(n, given[n.c_str()], true);
    } else if (any_device) {
      void* data = nullptr;
      a.obj = device_output(dt, want, engine_device(e), framework, &data);
      a.tensor = Tensor::view(dt, want, data);
    } else {
      a = import_array(n, nb::module_::import_("numpy").attr("empty")(dims_tuple(want), numpy_dtype(dt)), true);
    }
    if (a.tensor.dims() != want)
      raise(ErrorCode::kInvalidArgument, "output '" + n + "' has shape " + dims_to_string(want) +
                                             " for these inputs but the array has shape " +
                                             dims_to_string(a.tensor.dims()));
    check(ctx->set_tensor_address(n, a.tensor.data()));
    result[n.c_str()] = a.obj;
    keep.push_back(std::move(a));
  }
  execute();
  return result;
}

// An output whose dims depend on the data cannot be allocated (or checked) before
// the run: run with kiln's own output buffers, then copy each output where it belongs.
nb::dict PyContext::infer_data_dependent(const std::map<std::string, Array>& ins, const nb::dict& given,
                                         bool any_device, DeviceFramework framework) {
  const Engine& e = eng();
  const int device = engine_device(e);
  std::optional<DeviceScope> scope;
  if (is_cuda()) {
    scope.emplace(device);
    sync_default_stream();
  }
  auto outs = run_allocating(ins);
  nb::dict result;
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    std::string n = e.get_tensor_name(i);
    if (e.get_tensor_mode(n) != TensorIOMode::kOutput) continue;
    Tensor& host = outs.at(n);
    Array a;
    if (given.contains(n.c_str())) {
      a = import_array(n, given[n.c_str()], true);
      if (a.tensor.dims() != host.dims())
        raise(ErrorCode::kInvalidArgument, "output '" + n + "' has shape " + dims_to_string(host.dims()) +
                                               " for these inputs but the array has shape " +
                                               dims_to_string(a.tensor.dims()));
    } else if (any_device) {
      void* data = nullptr;
      a.obj = device_output(host.dtype(), host.dims(), device, framework, &data);
      a.tensor = Tensor::view(host.dtype(), host.dims(), data);
      a.on_device = true;
    } else {
      result[n.c_str()] = to_numpy(std::move(host));
      continue;
    }
    if (a.on_device)
      device_copy(a.tensor.data(), host.data(), host.nbytes(), "copying output '" + n + "'");
    else if (host.nbytes() > 0)
      std::memcpy(a.tensor.data(), host.data(), host.nbytes());
    result[n.c_str()] = a.obj;
  }
  return result;
}

}  // namespace kiln::py
