// The kiln._kiln extension: exceptions, enums, the logger, and module setup.
#include <nanobind/eval.h>
#include <nanobind/stl/string.h>
#include <nanobind/trampoline.h>

#include "common.h"

namespace kiln::py {

namespace {

// One Python exception class per ErrorCode; created once, never freed (they
// live as long as the interpreter holds the module).
PyObject* g_errors[static_cast<int>(ErrorCode::kInternal) + 1] = {};

PyObject* new_error(nb::module_& m, const char* name, PyObject* base, PyObject* extra_base, const char* doc) {
  std::string qualified = std::string("kiln.") + name;
  nb::object bases = extra_base ? nb::object(nb::make_tuple(nb::handle(base), nb::handle(extra_base)))
                                : nb::object(nb::borrow(base));
  nb::object dict = nb::dict();
  dict["__doc__"] = nb::str(doc);
  PyObject* t = PyErr_NewException(qualified.c_str(), bases.ptr(), dict.ptr());
  if (!t) throw nb::python_error();
  m.attr(name) = nb::handle(t);
  return t;
}

PyObject* g_serialized_engine = nullptr;

}  // namespace

nb::handle serialized_engine_type() { return g_serialized_engine; }

void register_errors(nb::module_& m) {
  PyObject* base = new_error(m, "KilnError", PyExc_RuntimeError, nullptr,
                             "Base of kiln's exceptions; `code` is the kiln.ErrorCode, str() the message.");
  auto set = [&](ErrorCode c, PyObject* t) { g_errors[static_cast<int>(c)] = t; };
  set(ErrorCode::kOk, base);
  set(ErrorCode::kInvalidArgument,
      new_error(m, "InvalidArgumentError", base, PyExc_ValueError, "A malformed argument: shape, name or dtype."));
  set(ErrorCode::kNotFound,
      new_error(m, "NotFoundError", base, PyExc_LookupError, "A named tensor, input or file does not exist."));
  set(ErrorCode::kUnsupported, new_error(m, "UnsupportedError", base, PyExc_NotImplementedError,
                                         "A valid request this kiln build cannot serve."));
  set(ErrorCode::kInvalidModel,
      new_error(m, "InvalidModelError", base, nullptr, "The model or engine file itself is malformed."));
  set(ErrorCode::kVersionMismatch,
      new_error(m, "VersionMismatchError", base, nullptr, "The engine was built by another kiln or format version."));
  set(ErrorCode::kDeviceMismatch,
      new_error(m, "DeviceMismatchError", base, nullptr, "The engine was built for another device."));
  set(ErrorCode::kOutOfRange,
      new_error(m, "OutOfRangeError", base, PyExc_ValueError, "A shape outside the optimization profile."));
  set(ErrorCode::kOutOfMemory, new_error(m, "OutOfMemoryError", base, PyExc_MemoryError, "An allocation failed."));
  set(ErrorCode::kIo, new_error(m, "IoError", base, PyExc_OSError, "Reading or writing a file failed."));
  set(ErrorCode::kInternal, new_error(m, "InternalError", base, nullptr, "A bug in kiln."));

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const StatusError& e) {
      int code = static_cast<int>(e.status.code());
      if (code < 0 || code > static_cast<int>(ErrorCode::kInternal)) code = static_cast<int>(ErrorCode::kInternal);
      PyObject* type = g_errors[code];
      nb::object exc = nb::steal(PyObject_CallFunction(type, "s", e.status.message().c_str()));
      if (!exc.is_valid()) return;  // the call set its own error
      PyObject_SetAttrString(exc.ptr(), "code", nb::cast(e.status.code()).ptr());
      PyErr_SetObject(type, exc.ptr());
    }
  });
}

void register_types(nb::module_& m) {
  // bytes, so it can be written to a file or passed to deserialize as is; a `with`
  // block works on it as on TensorRT's IHostMemory.
  nb::dict ns;
  ns["__builtins__"] = nb::handle(PyEval_GetBuiltins());
  ns["__name__"] = "kiln";
  nb::exec(R"(
class SerializedEngine(bytes):
    """A serialized engine: bytes to save to a file or give to Runtime.deserialize_cuda_engine."""

    __slots__ = ()

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return len(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False
)",
           ns);
  g_serialized_engine = nb::object(ns["SerializedEngine"]).release().ptr();
  m.attr("SerializedEngine") = nb::handle(g_serialized_engine);

  nb::enum_<ErrorCode>(m, "ErrorCode", "Broad class of a kiln error (KilnError.code).")
      .value("OK", ErrorCode::kOk)
      .value("INVALID_ARGUMENT", ErrorCode::kInvalidArgument)
      .value("NOT_FOUND", ErrorCode::kNotFound)
      .value("UNSUPPORTED", ErrorCode::kUnsupported)
      .value("INVALID_MODEL", ErrorCode::kInvalidModel)
      .value("VERSION_MISMATCH", ErrorCode::kVersionMismatch)
      .value("DEVICE_MISMATCH", ErrorCode::kDeviceMismatch)
      .value("OUT_OF_RANGE", ErrorCode::kOutOfRange)
      .value("OUT_OF_MEMORY", ErrorCode::kOutOfMemory)
      .value("IO", ErrorCode::kIo)
      .value("INTERNAL", ErrorCode::kInternal);

  // Values are ONNX TensorProto codes; TensorRT's spellings are extra aliases.
  auto dt = nb::enum_<DataType>(m, "DataType", nb::is_arithmetic(), "Element types (values are ONNX codes).")
                .value("UNDEFINED", DataType::kUndefined)
                .value("FLOAT32", DataType::kFloat32)
                .value("UINT8", DataType::kUInt8)
                .value("INT8", DataType::kInt8)
                .value("UINT16", DataType::kUInt16)
                .value("INT16", DataType::kInt16)
                .value("INT32", DataType::kInt32)
                .value("INT64", DataType::kInt64)
                .value("STRING", DataType::kString)
                .value("BOOL", DataType::kBool)
                .value("FLOAT16", DataType::kFloat16)
                .value("FLOAT64", DataType::kFloat64)
                .value("UINT32", DataType::kUInt32)
                .value("UINT64", DataType::kUInt64)
                .value("BFLOAT16", DataType::kBFloat16)
                .value("FP8", DataType::kFloat8E4M3);
  dt.attr("FLOAT") = dt.attr("FLOAT32");
  dt.attr("HALF") = dt.attr("FLOAT16");
  dt.attr("DOUBLE") = dt.attr("FLOAT64");
  dt.attr("BF16") = dt.attr("BFLOAT16");

  m.def("dtype_size", &dtype_size, nb::arg("dtype"), "Bytes per element (0 for UNDEFINED/STRING).");
  m.def("dtype_name", [](DataType t) { return std::string(dtype_name(t)); }, nb::arg("dtype"),
        "Lower-case name, e.g. 'float32'.");
  m.def("nptype", &numpy_dtype, nb::arg("dtype"),
        "The numpy dtype of a kiln DataType (ml_dtypes.bfloat16 for BFLOAT16).");

  nb::enum_<TensorIOMode>(m, "TensorIOMode", nb::is_arithmetic(), "Whether an engine tensor is read or written.")
      .value("NONE", TensorIOMode::kNone)
      .value("INPUT", TensorIOMode::kInput)
      .value("OUTPUT", TensorIOMode::kOutput);

  nb::enum_<BuilderFlag>(m, "BuilderFlag", nb::is_arithmetic(), "Builder switches (TensorRT's names).")
      .value("FP16", BuilderFlag::kFP16)
      .value("BF16", BuilderFlag::kBF16)
      .value("INT8", BuilderFlag::kINT8)
      .value("FP8", BuilderFlag::kFP8)
      .value("TF32", BuilderFlag::kTF32)
      .value("STRICT_TYPES", BuilderFlag::kStrictTypes)
      .value("DEBUG", BuilderFlag::kDebug);

  nb::enum_<MemoryPoolType>(m, "MemoryPoolType", nb::is_arithmetic(), "Memory pools whose limit can be set.")
      .value("WORKSPACE", MemoryPoolType::kWorkspace);

  nb::enum_<DeviceType>(m, "DeviceType", nb::is_arithmetic(), "Where an engine runs.")
      .value("CPU", DeviceType::kCPU)
      .value("CUDA", DeviceType::kCUDA);

  nb::enum_<ActivationType>(m, "ActivationType", nb::is_arithmetic(), "Activations for add_activation.")
      .value("RELU", ActivationType::kRelu)
      .value("SIGMOID", ActivationType::kSigmoid)
      .value("TANH", ActivationType::kTanh)
      .value("LEAKY_RELU", ActivationType::kLeakyRelu)
      .value("ELU", ActivationType::kElu)
      .value("SELU", ActivationType::kSelu)
      .value("SOFTPLUS", ActivationType::kSoftplus)
      .value("GELU_ERF", ActivationType::kGelu)
      .value("SILU", ActivationType::kSilu)
      .value("CLIP", ActivationType::kClip)
      .value("HARD_SIGMOID", ActivationType::kHardSigmoid);

  nb::enum_<PoolingType>(m, "PoolingType", nb::is_arithmetic(), "Pooling kinds for add_pooling.")
      .value("MAX", PoolingType::kMax)
      .value("AVERAGE", PoolingType::kAverage);

  nb::enum_<ElementWiseOperation>(m, "ElementWiseOperation", nb::is_arithmetic(),
                                  "Binary operations for add_elementwise.")
      .value("SUM", ElementWiseOperation::kSum)
      .value("SUB", ElementWiseOperation::kSub)
      .value("PROD", ElementWiseOperation::kProd)
      .value("DIV", ElementWiseOperation::kDiv)
      .value("MAX", ElementWiseOperation::kMax)
      .value("MIN", ElementWiseOperation::kMin)
      .value("POW", ElementWiseOperation::kPow)
      .value("EQUAL", ElementWiseOperation::kEqual)
      .value("LESS", ElementWiseOperation::kLess)
      .value("GREATER", ElementWiseOperation::kGreater);

  nb::enum_<MatrixOperation>(m, "MatrixOperation", nb::is_arithmetic(), "Operand transforms for add_matrix_multiply.")
      .value("NONE", MatrixOperation::kNone)
      .value("TRANSPOSE", MatrixOperation::kTranspose);
}

// ------------------------------------------------------------------ Logger

namespace {

// Lets Python subclasses override log(). An exception raised by the override is
// reported through sys.unraisablehook: kiln calls log() from C++ code that must
// not unwind.
struct PyLogger : Logger {
  NB_TRAMPOLINE(Logger);

  void log(Severity severity, const std::string& message) override {
    try {
      dispatch(severity, message);
    } catch (nb::python_error& e) {
      nb::gil_scoped_acquire gil;
      e.discard_as_unraisable("kiln.Logger.log");
    } catch (...) {
    }
  }

  void dispatch(Severity severity, const std::string& message) { NB_OVERRIDE_NAME("log", log, severity, message); }
};

}  // namespace

void register_logger(nb::module_& m) {
  auto logger = nb::class_<Logger, PyLogger>(
      m, "Logger",
      "Receives kiln's messages. The default prints to stderr; subclass it (or kiln.ILogger) and\n"
      "override log(severity, msg) to route them. Messages less severe than min_severity are dropped.");
  nb::enum_<Logger::Severity>(logger, "Severity", nb::is_arithmetic(), "Message severity, most severe first.")
      .value("INTERNAL_ERROR", Logger::Severity::kInternalError)
      .value("ERROR", Logger::Severity::kError)
      .value("WARNING", Logger::Severity::kWarning)
      .value("INFO", Logger::Severity::kInfo)
      .value("VERBOSE", Logger::Severity::kVerbose);
  for (const char* s : {"INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"})
    logger.attr(s) = logger.attr("Severity").attr(s);
  logger.def(nb::init<Logger::Severity>(), nb::arg("min_severity") = Logger::Severity::kWarning)
      .def("log", &Logger::log, nb::arg("severity"), nb::arg("msg"),
           "Called for each message at or above min_severity; override it in a subclass.")
      .def_prop_rw("min_severity", &Logger::min_severity, &Logger::set_min_severity,
                   "Messages less severe than this are dropped.");
  m.attr("ILogger") = logger;
}

}  // namespace kiln::py

NB_MODULE(_kiln, m) {
  using namespace kiln::py;
  m.doc() = "kiln: a deep-learning inference optimizer and runtime (TensorRT-style API).";
  m.attr("__version__") = kiln::version_string();
  register_errors(m);
  register_types(m);
  register_logger(m);
  register_network(m);
  register_builder(m);
  register_runtime(m);
}
