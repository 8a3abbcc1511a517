// CUDA arrays across the boundary: torch / cupy / any DLPack or
// __cuda_array_interface__ producer in (used in place), kiln.DeviceArray and
// framework tensors out, and the kiln.cuda_* device queries.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "backends/cuda/api.h"
#include "common.h"

namespace kiln::py {

namespace {

// cudaStreamLegacy: CUDA's legacy default stream, named without CUDA headers (the
// core never includes them). torch's default stream is this one.
void* const kLegacyStream = reinterpret_cast<void*>(uintptr_t{1});

/// Device memory kiln allocated, returned to Python as kiln.DeviceArray.
struct DeviceArray {
  std::shared_ptr<cuda::DeviceBuffer> buffer;
  DataType dtype = DataType::kFloat32;
  Dims dims;
  int device = 0;

  void* data() const { return buffer ? buffer->get() : nullptr; }
  size_t nbytes() const { return static_cast<size_t>(dims_volume(dims)) * dtype_size(dtype); }
};

std::shared_ptr<cuda::DeviceBuffer> allocate(DataType dtype, const Dims& dims, int device) {
  for (int64_t d : dims)
    if (d < 0) raise(ErrorCode::kInvalidArgument, "cannot allocate a device array of shape " + dims_to_string(dims));
  if (dtype_size(dtype) == 0) raise(ErrorCode::kUnsupported, std::string("no device arrays of ") + dtype_name(dtype));
  size_t bytes = static_cast<size_t>(dims_volume(dims)) * dtype_size(dtype);
  DeviceScope scope(device);
  // One byte for empty arrays: DLPack consumers expect a real pointer.
  cuda::DeviceBuffer b = unwrap(cuda::device_alloc(
      std::max<size_t>(bytes, 1), "a " + dims_to_string(dims) + " " + dtype_name(dtype) + " device array"));
  return std::make_shared<cuda::DeviceBuffer>(std::move(b));
}

nb::tuple dims_tuple(const Dims& d) {
  nb::list l;
  for (int64_t v : d) l.append(v);
  return nb::tuple(l);
}

std::vector<size_t> size_dims(const Dims& d) {
  std::vector<size_t> s;
  for (int64_t v : d) s.push_back(static_cast<size_t>(v));
  return s;
}

DeviceFramework framework_of(nb::handle obj) {
  nb::object module = nb::handle((PyObject*)Py_TYPE(obj.ptr())).attr("__module__");
  if (!PyUnicode_Check(module.ptr())) return DeviceFramework::kNone;
  std::string m = nb::cast<std::string>(module);
  std::string top = m.substr(0, m.find('.'));
  if (top == "torch") return DeviceFramework::kTorch;
  if (top == "cupy") return DeviceFramework::kCupy;
  return DeviceFramework::kNone;
}

// "<f4" -> kFloat32; kUndefined for what kiln does not run (and non-native byte order).
DataType dtype_from_typestr(const std::string& s) {
  if (s.size() < 3 || s[0] == '>') return DataType::kUndefined;
  char kind = s[1];
  int size = std::atoi(s.c_str() + 2);
  switch (kind) {
    case 'f':
      return size == 2   ? DataType::kFloat16
             : size == 4 ? DataType::kFloat32
             : size == 8 ? DataType::kFloat64
                         : DataType::kUndefined;
    case 'i':
      return size == 1   ? DataType::kInt8
             : size == 2 ? DataType::kInt16
             : size == 4 ? DataType::kInt32
             : size == 8 ? DataType::kInt64
                         : DataType::kUndefined;
    case 'u':
      return size == 1   ? DataType::kUInt8
             : size == 2 ? DataType::kUInt16
             : size == 4 ? DataType::kUInt32
             : size == 8 ? DataType::kUInt64
                         : DataType::kUndefined;
    case 'b':
      return size == 1 ? DataType::kBool : DataType::kUndefined;
    default:
      return DataType::kUndefined;
  }
}

std::string typestr(DataType t) {
  switch (t) {
    case DataType::kFloat16:
      return "<f2";
    case DataType::kFloat32:
      return "<f4";
    case DataType::kFloat64:
      return "<f8";
    case DataType::kInt8:
      return "|i1";
    case DataType::kInt16:
      return "<i2";
    case DataType::kInt32:
      return "<i4";
    case DataType::kInt64:
      return "<i8";
    case DataType::kUInt8:
      return "|u1";
    case DataType::kUInt16:
      return "<u2";
    case DataType::kUInt32:
      return "<u4";
    case DataType::kUInt64:
      return "<u8";
    case DataType::kBool:
      return "|b1";
    default:
      // bfloat16 has no type string. An AttributeError makes hasattr() false, so
      // consumers fall back to DLPack.
      throw nb::attribute_error(
          (std::string("__cuda_array_interface__ has no type for ") + dtype_name(t) + "; use DLPack (__dlpack__)")
              .c_str());
  }
}

// Strides in elements; true when they are those of a C-contiguous array (dims of
// extent 1 may have any stride, as torch gives them).
bool is_c_contiguous(const Dims& dims, const std::vector<int64_t>& strides) {
  if (dims_volume(dims) == 0) return true;
  int64_t expect = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    if (dims[i] != 1 && strides[i] != expect) return false;
    expect *= dims[i];
  }
  return true;
}

std::string strides_string(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

[[noreturn]] void raise_strided(const std::string& what, const std::vector<int64_t>& strides) {
  raise(ErrorCode::kInvalidArgument, what + " is not C-contiguous (strides " + strides_string(strides) +
                                         " elements); kiln binds device memory in place: pass tensor.contiguous()");
}

DeviceArrayRef import_dlpack(nb::handle obj, const std::string& what, bool writable) {
  DeviceArrayRef r;
  nb::object capsule;
  try {
    // stream=1: kiln reads on CUDA's legacy default stream, so the producer makes its
    // pending work visible there (torch and cupy queue an event wait); execute() then
    // waits for that stream. Producers without a stream argument get none.
    try {
      capsule = obj.attr("__dlpack__")(nb::arg("stream") = 1);
    } catch (nb::python_error& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      capsule = obj.attr("__dlpack__")();
    }
  } catch (nb::python_error& e) {
    raise(ErrorCode::kInvalidArgument,
          what + " could not be exported through DLPack: " + nb::cast<std::string>(nb::str(e.value())));
  }
  if (!nb::try_cast(capsule, r.array, false))
    raise(ErrorCode::kInvalidArgument,
          what + " could not be imported through DLPack" + (writable ? " as a writable array" : std::string()));
  DataType dt = dtype_from_dlpack(r.array.dtype());
  if (dt == DataType::kUndefined)
    raise(ErrorCode::kUnsupported, what + " has an element type kiln does not support (DLPack code " +
                                       std::to_string(r.array.dtype().code) + ", " +
                                       std::to_string(r.array.dtype().bits) + " bits)");
  Dims dims;
  std::vector<int64_t> strides;
  for (size_t i = 0; i < r.array.ndim(); ++i) {
    dims.push_back(static_cast<int64_t>(r.array.shape(i)));
    strides.push_back(r.array.stride(i));
  }
  if (!is_c_contiguous(dims, strides)) raise_strided(what, strides);
  r.tensor = Tensor::view(dt, dims, const_cast<void*>(r.array.data()));
  r.device = r.array.device_id();
  return r;
}

DeviceArrayRef import_cuda_array_interface(nb::handle obj, const std::string& what, bool writable) {
  DeviceArrayRef r;
  nb::object cai = obj.attr("__cuda_array_interface__");
  if (!PyDict_Check(cai.ptr())) raise(ErrorCode::kInvalidArgument, what + ": __cuda_array_interface__ is not a dict");
  nb::dict d = nb::borrow<nb::dict>(cai);
  auto get = [&](const char* key) -> nb::object {
    if (!d.contains(key))
      raise(ErrorCode::kInvalidArgument, what + ": __cuda_array_interface__ has no '" + std::string(key) + "'");
    return d[key];
  };
  std::string ts = nb::cast<std::string>(get("typestr"));
  DataType dt = dtype_from_typestr(ts);
  if (dt == DataType::kUndefined)
    raise(ErrorCode::kUnsupported, what + " has an element type kiln does not support (typestr '" + ts + "')");
  Dims dims;
  for (nb::handle v : get("shape")) dims.push_back(nb::cast<int64_t>(v));
  if (d.contains("mask") && !d["mask"].is_none())
    raise(ErrorCode::kUnsupported, what + " is a masked array; kiln reads plain arrays");
  if (d.contains("strides") && !d["strides"].is_none()) {
    std::vector<int64_t> strides;
    int64_t size = static_cast<int64_t>(dtype_size(dt));
    bool whole = true;
    for (nb::handle v : d["strides"]) {
      int64_t bytes = nb::cast<int64_t>(v);
      whole = whole && bytes % size == 0;
      strides.push_back(bytes / size);
    }
    if (!whole || strides.size() != dims.size() || !is_c_contiguous(dims, strides)) raise_strided(what, strides);
  }
  nb::object data = get("data");
  uintptr_t ptr = nb::cast<uintptr_t>(data[0]);
  if (writable && nb::cast<bool>(data[1])) raise(ErrorCode::kInvalidArgument, what + " is read-only");
  // Version 3: the producer's stream with pending work on the array (None: none).
  if (d.contains("stream") && !d["stream"].is_none()) {
    uintptr_t stream = nb::cast<uintptr_t>(d["stream"]);
    if (stream != 0) {
      Status s;
      {
        nb::gil_scoped_release unlocked;
        s = cuda::stream_synchronize(reinterpret_cast<void*>(stream));
      }
      check(s.with_context("waiting for the stream of " + what));
    }
  }
  r.tensor = Tensor::view(dt, dims, reinterpret_cast<void*>(ptr));
  return r;
}

nb::dict cuda_array_interface(const DeviceArray& a) {
  nb::dict d;
  d["shape"] = dims_tuple(a.dims);
  d["typestr"] = typestr(a.dtype);
  d["data"] = nb::make_tuple(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(a.data())), false);
  d["strides"] = nb::none();
  d["version"] = 3;
  return d;  // no "stream": kiln returns arrays whose work is complete
}

}  // namespace

DeviceArrayRef device_array(nb::handle obj, const std::string& what, bool writable) {
  MemoryLocation loc = memory_location(obj);
  if (!loc.is_cuda()) raise(ErrorCode::kInternal, what + " is not in CUDA memory");
  DeviceArrayRef r = nb::hasattr(obj, "__dlpack__") && nb::hasattr(obj, "__dlpack_device__")
                         ? import_dlpack(obj, what, writable)
                         : import_cuda_array_interface(obj, what, writable);
  if (r.tensor.data() == nullptr && r.tensor.numel() > 0) raise(ErrorCode::kInvalidArgument, what + " has no data");
  r.keep = nb::borrow(obj);
  r.framework = framework_of(obj);
  return r;
}

nb::object device_output(DataType dtype, const Dims& dims, int device, DeviceFramework framework, void** data) {
  auto buffer = allocate(dtype, dims, device);
  *data = buffer->get();
  if (framework == DeviceFramework::kNone) return nb::cast(DeviceArray{buffer, dtype, dims, device});
  auto* held = new std::shared_ptr<cuda::DeviceBuffer>(buffer);
  nb::capsule owner(held, [](void* p) noexcept { delete static_cast<std::shared_ptr<cuda::DeviceBuffer>*>(p); });
  std::vector<size_t> shape = size_dims(dims);
  nb::dlpack::dtype code = dtype_to_dlpack(dtype, /*bf16_as_uint16=*/false);
  if (framework == DeviceFramework::kTorch)
    return nb::ndarray<nb::pytorch>(buffer->get(), shape.size(), shape.data(), owner, nullptr, code,
                                    nb::device::cuda::value, device)
        .cast();
  return nb::ndarray<nb::cupy>(buffer->get(), shape.size(), shape.data(), owner, nullptr, code, nb::device::cuda::value,
                               device)
      .cast();
}

DeviceScope::DeviceScope(int device) {
  previous_ = cuda::current_device();
  check(cuda::set_device(device));
  if (previous_ == device) previous_ = -1;
}

DeviceScope::~DeviceScope() {
  if (previous_ >= 0) (void)cuda::set_device(previous_);
}

void device_copy(void* dst, const void* src, size_t bytes, const std::string& what) {
  Status s;
  {
    nb::gil_scoped_release unlocked;
    s = cuda::copy_async(dst, src, bytes, cuda::CopyKind::kDefault, kLegacyStream);
    if (s.ok()) s = cuda::stream_synchronize(kLegacyStream);
  }
  check(s.with_context(what));
}

void sync_default_stream() {
  Status s;
  {
    nb::gil_scoped_release unlocked;
    s = cuda::stream_synchronize(kLegacyStream);
  }
  check(s.with_context("waiting for the CUDA default stream"));
}

void register_device(nb::module_& m) {
  m.def("cuda_device_count", &cuda::device_count, "Number of usable CUDA devices (0 without a GPU or driver).");
  m.def("cuda_unavailable_reason", &cuda::no_device_reason,
        "Why no CUDA device is usable ('' when one is): for skip messages and logs.");
  m.def(
      "cuda_device_name", [](int index) { return unwrap(cuda::device_info(index)).name; }, nb::arg("index") = 0,
      "Name of CUDA device `index`, e.g. 'NVIDIA H100 80GB HBM3'.");
  m.def(
      "cuda_device_capability",
      [](int index) {
        cuda::DeviceInfo info = unwrap(cuda::device_info(index));
        return nb::make_tuple(info.cc_major, info.cc_minor);
      },
      nb::arg("index") = 0, nb::sig("def cuda_device_capability(index: int = 0) -> tuple[int, int]"),
      "Compute capability (major, minor) of CUDA device `index`.");

  auto cls = nb::class_<DeviceArray>(
      m, "DeviceArray",
      "CUDA device memory owned by kiln: what infer() returns for device inputs that are neither torch\n"
      "tensors nor cupy arrays, and a buffer for set_tensor_address / execute_v2. Exposes\n"
      "__cuda_array_interface__ (v3) and DLPack, so torch.from_dlpack(a) and cupy.asarray(a) view it\n"
      "without copying; freed when the last reference goes.");
  cls.def_static(
         "empty",
         [](const Dims& shape, DataType dtype, int device_index) {
           return DeviceArray{allocate(dtype, shape, device_index), dtype, shape, device_index};
         },
         nb::arg("shape"), nb::arg("dtype") = DataType::kFloat32, nb::arg("device_index") = 0,
         nb::sig("def empty(shape: collections.abc.Sequence[int], dtype: DataType = DataType.FLOAT32, "
                 "device_index: int = 0) -> DeviceArray"),
         "Uninitialized device memory of `shape` and `dtype` on CUDA device `device_index`.")
      .def_static(
          "from_host",
          [](nb::handle array, int device_index) {
            HostArray h = host_array(array, "from_host(): the array", false);
            DeviceArray a{allocate(h.tensor.dtype(), h.tensor.dims(), device_index), h.tensor.dtype(), h.tensor.dims(),
                          device_index};
            device_copy(a.data(), h.tensor.data(), a.nbytes(), "copying to the device");
            return a;
          },
          nb::arg("array"), nb::arg("device_index") = 0,
          nb::sig("def from_host(array: numpy.typing.ArrayLike, device_index: int = 0) -> DeviceArray"),
          "A device copy of a host array.")
      .def(
          "copy_from_host",
          [](DeviceArray& a, nb::handle array) {
            HostArray h = host_array(array, "copy_from_host(): the array", false);
            if (h.tensor.dtype() != a.dtype || h.tensor.dims() != a.dims)
              raise(ErrorCode::kInvalidArgument, "copy_from_host(): the array is " + dims_to_string(h.tensor.dims()) +
                                                     " " + dtype_name(h.tensor.dtype()) + ", the device array " +
                                                     dims_to_string(a.dims) + " " + dtype_name(a.dtype));
            device_copy(a.data(), h.tensor.data(), a.nbytes(), "copying to the device");
          },
          nb::arg("array"), nb::sig("def copy_from_host(self, array: numpy.typing.ArrayLike) -> None"),
          "Overwrites the contents with a host array of the same shape and dtype.")
      .def(
          "copy_to_host",
          [](const DeviceArray& a) {
            Tensor t = Tensor::empty(a.dtype, a.dims);
            device_copy(t.data(), a.data(), a.nbytes(), "copying to the host");
            return to_numpy(std::move(t));
          },
          nb::sig("def copy_to_host(self) -> numpy.typing.NDArray"), "A numpy copy.")
      .def_prop_ro(
          "shape", [](const DeviceArray& a) { return dims_tuple(a.dims); },
          nb::sig("def shape(self) -> tuple[int, ...]"))
      .def_ro("dtype", &DeviceArray::dtype)
      .def_prop_ro("nbytes", &DeviceArray::nbytes)
      .def_ro("device_index", &DeviceArray::device)
      .def_prop_ro(
          "ptr", [](const DeviceArray& a) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(a.data())); },
          "The device address (an int, as torch's data_ptr()).")
      .def("__int__", [](const DeviceArray& a) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(a.data())); })
      .def_prop_ro("__cuda_array_interface__", &cuda_array_interface,
                   nb::sig("def __cuda_array_interface__(self) -> dict[str, object]"))
      .def(
          "__dlpack_device__",
          [](const DeviceArray& a) { return nb::make_tuple(static_cast<int>(nb::device::cuda::value), a.device); },
          nb::sig("def __dlpack_device__(self) -> tuple[int, int]"))
      .def(
          "__dlpack__",
          [](nb::handle self, nb::kwargs kwargs) {
            const DeviceArray& a = nb::cast<const DeviceArray&>(self);
            std::vector<size_t> shape = size_dims(a.dims);
            // A nanobind array-API object over the same memory, owned by `self`; it
            // implements the protocol (stream, max_version, dl_device, copy).
            nb::ndarray<nb::array_api> view(a.data(), shape.size(), shape.data(), self, nullptr,
                                            dtype_to_dlpack(a.dtype, /*bf16_as_uint16=*/false), nb::device::cuda::value,
                                            a.device);
            return view.cast().attr("__dlpack__")(**kwargs);
          },
          nb::sig("def __dlpack__(self, **kwargs: object) -> object"))
      .def("__repr__", [](const DeviceArray& a) {
        return "<kiln.DeviceArray " + dims_to_string(a.dims) + " " + dtype_name(a.dtype) +
               " on cuda:" + std::to_string(a.device) + ">";
      });
}

}  // namespace kiln::py
