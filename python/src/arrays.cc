// Host arrays across the boundary: numpy / DLPack / __array_interface__ in, numpy out.
// Device (CUDA) arrays are in device_array.cc.
#include <nanobind/stl/string.h>

#include <cstring>

#include "common.h"

namespace kiln::py {

namespace dl = nb::dlpack;

DataType dtype_from_dlpack(dl::dtype t) {
  if (t.lanes != 1) return DataType::kUndefined;
  switch (static_cast<dl::dtype_code>(t.code)) {
    case dl::dtype_code::Float:
      return t.bits == 16   ? DataType::kFloat16
             : t.bits == 32 ? DataType::kFloat32
             : t.bits == 64 ? DataType::kFloat64
                            : DataType::kUndefined;
    case dl::dtype_code::Bfloat:
      return t.bits == 16 ? DataType::kBFloat16 : DataType::kUndefined;
    case dl::dtype_code::Int:
      return t.bits == 8    ? DataType::kInt8
             : t.bits == 16 ? DataType::kInt16
             : t.bits == 32 ? DataType::kInt32
             : t.bits == 64 ? DataType::kInt64
                            : DataType::kUndefined;
    case dl::dtype_code::UInt:
      return t.bits == 8    ? DataType::kUInt8
             : t.bits == 16 ? DataType::kUInt16
             : t.bits == 32 ? DataType::kUInt32
             : t.bits == 64 ? DataType::kUInt64
                            : DataType::kUndefined;
    case dl::dtype_code::Bool:
      return t.bits == 8 ? DataType::kBool : DataType::kUndefined;
    default:
      return DataType::kUndefined;
  }
}

dl::dtype dtype_to_dlpack(DataType t, bool bf16_as_uint16) {
  auto mk = [](dl::dtype_code c, int bits) {
    dl::dtype d;
    d.code = static_cast<uint8_t>(c);
    d.bits = static_cast<uint8_t>(bits);
    d.lanes = 1;
    return d;
  };
  switch (t) {
    case DataType::kFloat32:
      return mk(dl::dtype_code::Float, 32);
    case DataType::kFloat16:
      return mk(dl::dtype_code::Float, 16);
    case DataType::kFloat64:
      return mk(dl::dtype_code::Float, 64);
    case DataType::kInt8:
      return mk(dl::dtype_code::Int, 8);
    case DataType::kInt16:
      return mk(dl::dtype_code::Int, 16);
    case DataType::kInt32:
      return mk(dl::dtype_code::Int, 32);
    case DataType::kInt64:
      return mk(dl::dtype_code::Int, 64);
    case DataType::kUInt8:
      return mk(dl::dtype_code::UInt, 8);
    case DataType::kUInt16:
      return mk(dl::dtype_code::UInt, 16);
    case DataType::kUInt32:
      return mk(dl::dtype_code::UInt, 32);
    case DataType::kUInt64:
      return mk(dl::dtype_code::UInt, 64);
    case DataType::kBool:
      return mk(dl::dtype_code::Bool, 8);
    // numpy has no bfloat16: exported as its uint16 bits, then viewed (see to_numpy).
    case DataType::kBFloat16:
      return bf16_as_uint16 ? mk(dl::dtype_code::UInt, 16) : mk(dl::dtype_code::Bfloat, 16);
    default:
      raise(ErrorCode::kUnsupported, std::string("cannot return a ") + dtype_name(t) + " tensor to Python");
  }
}

namespace {

const char* dlpack_device_name(int device_type) {
  switch (device_type) {
    case 2:
      return "CUDA device";
    case 3:
      return "CUDA pinned host";
    case 4:
      return "OpenCL";
    case 7:
      return "Vulkan";
    case 8:
      return "Metal";
    case 10:
      return "ROCm";
    case 13:
      return "CUDA managed";
    default:
      return "non-CPU";
  }
}

}  // namespace

MemoryLocation memory_location(nb::handle obj) {
  MemoryLocation loc;
  if (nb::hasattr(obj, "__dlpack_device__")) {
    nb::object dev = obj.attr("__dlpack_device__")();
    loc.device_type = nb::cast<int>(dev[0]);
    loc.device_id = nb::cast<int>(dev[1]);
  } else if (nb::hasattr(obj, "__cuda_array_interface__")) {
    loc.device_type = nb::device::cuda::value;
    loc.device_id = -1;
  }
  return loc;
}

std::string MemoryLocation::describe() const {
  std::string s = std::string(dlpack_device_name(device_type)) + " memory";
  if (is_cuda() && device_id >= 0) s += " (cuda:" + std::to_string(device_id) + ")";
  return s;
}

namespace {

[[noreturn]] void raise_cuda(const std::string& what) {
  raise(ErrorCode::kUnsupported,
        what + " is in CUDA device memory; kiln reads it from host memory (pass e.g. tensor.cpu().numpy())");
}

nb::object numpy() { return nb::module_::import_("numpy"); }

bool is_bfloat16_numpy(nb::handle obj) {
  // ml_dtypes' bfloat16 has no buffer-protocol or DLPack code: detect it by name.
  if (!nb::hasattr(obj, "dtype") || !nb::hasattr(obj, "view")) return false;
  nb::object dtype = obj.attr("dtype");
  if (!nb::hasattr(dtype, "name")) return false;
  nb::object name = dtype.attr("name");
  return PyUnicode_Check(name.ptr()) && nb::cast<std::string>(name) == "bfloat16";
}

}  // namespace

bool is_array_like(nb::handle obj) {
  return nb::hasattr(obj, "__dlpack__") || PyObject_CheckBuffer(obj.ptr()) || nb::hasattr(obj, "__array_interface__") ||
         nb::hasattr(obj, "__cuda_array_interface__");
}

HostArray host_array(nb::handle obj_in, const std::string& what, bool writable) {
  nb::object obj = nb::borrow(obj_in);
  if (obj.is_none()) raise(ErrorCode::kInvalidArgument, what + " is None, expected an array");
  MemoryLocation loc = memory_location(obj);
  if (loc.is_cuda()) raise_cuda(what);
  if (!loc.is_host()) raise(ErrorCode::kUnsupported, what + " is in " + loc.describe() + "; kiln reads host memory");
  bool bf16 = is_bfloat16_numpy(obj);
  if (bf16) obj = obj.attr("view")("uint16");
  // Objects with only __array_interface__ (or Python lists) go through numpy, which
  // wraps the interface's memory without a copy.
  if (!nb::hasattr(obj, "__dlpack__") && !PyObject_CheckBuffer(obj.ptr())) {
    bool text = PyUnicode_Check(obj.ptr());
    if (!text &&
        (nb::hasattr(obj, "__array_interface__") || PySequence_Check(obj.ptr()) || PyNumber_Check(obj.ptr()))) {
      obj = numpy().attr("asarray")(obj);
    } else {
      raise(ErrorCode::kInvalidArgument, what + " must be an array (numpy, DLPack or __array_interface__), got " +
                                             nb::cast<std::string>(nb::str(nb::handle((PyObject*)Py_TYPE(obj.ptr())))));
    }
  }
  HostArray h;
  // A writable array is never converted: the caller's memory must be the one written.
  auto import_ro = [&](nb::handle o) {
    nb::ndarray<nb::ro, nb::c_contig> a;
    if (!nb::try_cast(o, a, true)) return false;
    h.array = nb::ndarray<>(a);
    return true;
  };
  bool ok = false;
  if (writable) {
    nb::ndarray<nb::c_contig> a;
    ok = nb::try_cast(obj, a, false);
    if (ok) h.array = nb::ndarray<>(a);
  } else {
    ok = import_ro(obj);
    if (!ok) {
      // Not C-contiguous and the producer could not convert it itself: numpy can.
      obj = numpy().attr("ascontiguousarray")(obj);
      ok = import_ro(obj);
    }
  }
  if (!ok)
    raise(ErrorCode::kInvalidArgument,
          what + (writable ? " must be a writable C-contiguous host array" : " could not be read as a host array"));
  MemoryLocation imported{static_cast<int>(h.array.device_type()), h.array.device_id()};
  if (imported.is_cuda()) raise_cuda(what);
  if (!imported.is_host())
    raise(ErrorCode::kUnsupported, what + " is in " + imported.describe() + "; kiln reads host memory");
  DataType dt = bf16 ? DataType::kBFloat16 : dtype_from_dlpack(h.array.dtype());
  if (dt == DataType::kUndefined)
    raise(ErrorCode::kUnsupported, what + " has an element type kiln does not support (DLPack code " +
                                       std::to_string(h.array.dtype().code) + ", " +
                                       std::to_string(h.array.dtype().bits) + " bits)");
  Dims dims;
  for (size_t i = 0; i < h.array.ndim(); ++i) dims.push_back(static_cast<int64_t>(h.array.shape(i)));
  h.tensor = Tensor::view(dt, dims, const_cast<void*>(h.array.data()));
  h.keep = obj;
  return h;
}

nb::object numpy_dtype(DataType t) {
  if (t == DataType::kBFloat16) {
    try {
      return nb::module_::import_("ml_dtypes").attr("bfloat16");
    } catch (nb::python_error&) {
      raise(ErrorCode::kUnsupported, "bfloat16 needs the ml_dtypes package (pip install ml_dtypes)");
    }
  }
  if (t == DataType::kUndefined || t == DataType::kString || dtype_is_narrow(t))
    raise(ErrorCode::kUnsupported, std::string("no numpy dtype for ") + dtype_name(t));
  return numpy().attr("dtype")(dtype_name(t));
}

nb::object to_numpy(Tensor t) {
  DataType dt = t.dtype();
  dl::dtype code = dtype_to_dlpack(dt, /*bf16_as_uint16=*/true);
  auto* held = new Tensor(std::move(t));
  nb::capsule owner(held, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  std::vector<size_t> shape;
  for (int64_t d : held->dims()) shape.push_back(static_cast<size_t>(d));
  // An empty tensor may have no buffer; numpy still wants a non-null pointer.
  static uint64_t empty_storage = 0;
  void* data = held->data() ? held->data() : &empty_storage;
  nb::ndarray<nb::numpy> arr(data, shape.size(), shape.data(), owner, nullptr, code, nb::device::cpu::value);
  nb::object out = arr.cast();
  if (dt == DataType::kBFloat16) {
    try {
      out = out.attr("view")(numpy_dtype(dt));
    } catch (StatusError&) {
      out = out.attr("astype")("uint32");
      out = (out * nb::int_(65536)).attr("view")("float32");  // bf16 bits are float32's upper half
    }
  }
  return out;
}

HostArray weights_array(nb::handle obj, const std::string& what, DataType float_target) {
  HostArray h = host_array(obj, what, false);
  DataType dt = h.tensor.dtype();
  if (dtype_is_float(float_target) && dtype_is_float(dt) && dt != float_target) {
    // A numpy view of the weights, whatever their producer, then numpy's cast.
    nb::object np = numpy(), as_numpy;
    if (dt == DataType::kBFloat16)
      as_numpy = np.attr("asarray")(h.keep).attr("view")(numpy_dtype(dt));  // keep holds the uint16 bits
    else if (nb::hasattr(h.keep, "__dlpack__"))
      as_numpy = np.attr("from_dlpack")(h.keep);
    else
      as_numpy = np.attr("asarray")(h.keep);
    nb::object cast = as_numpy.attr("astype")(numpy_dtype(float_target));
    h = host_array(cast, what, false);
  }
  return h;
}

BufferView::BufferView(nb::handle obj, const char* what) {
  if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();
    view_.obj = nullptr;
    raise(ErrorCode::kInvalidArgument, std::string(what) + " must be bytes-like (bytes, bytearray, memoryview)");
  }
}

BufferView::~BufferView() {
  if (view_.obj) PyBuffer_Release(&view_);
}

nb::object serialized_engine_bytes(const std::vector<uint8_t>& data) {
  // One copy: the memoryview over the vector goes straight into the bytes object.
  nb::handle cls = serialized_engine_type();
  nb::object mv = nb::steal(PyMemoryView_FromMemory(reinterpret_cast<char*>(const_cast<uint8_t*>(data.data())),
                                                    static_cast<Py_ssize_t>(data.size()), PyBUF_READ));
  if (!mv.is_valid()) throw nb::python_error();
  return cls(mv);
}

}  // namespace kiln::py
