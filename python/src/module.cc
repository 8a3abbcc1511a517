// The kiln._kiln extension: exceptions, enums, the logger, and module setup.
#include <nanobind/stl/string.h>
#include <nanobind/trampoline.h>

#include "common.h"

namespace kiln::py {

namespace {

// One Python exception class per ErrorCode (defined in kiln/errors.py); held for
// the life of the process.
PyObject* g_errors[static_cast<int>(ErrorCode::kInternal) + 1] = {};
PyObject* g_serialized_engine = nullptr;

}  // namespace

nb::handle serialized_engine_type() { return g_serialized_engine; }

void register_errors(nb::module_& m) {
  nb::module_ errors = nb::module_::import_("kiln.errors");
  const std::pair<ErrorCode, const char*> classes[] = {
      {ErrorCode::kOk, "KilnError"},
      {ErrorCode::kInvalidArgument, "InvalidArgumentError"},
      {ErrorCode::kNotFound, "NotFoundError"},
      {ErrorCode::kUnsupported, "UnsupportedError"},
      {ErrorCode::kInvalidModel, "InvalidModelError"},
      {ErrorCode::kVersionMismatch, "VersionMismatchError"},
      {ErrorCode::kDeviceMismatch, "DeviceMismatchError"},
      {ErrorCode::kOutOfRange, "OutOfRangeError"},
      {ErrorCode::kOutOfMemory, "OutOfMemoryError"},
      {ErrorCode::kIo, "IoError"},
      {ErrorCode::kInternal, "InternalError"},
  };
  for (auto& [code, name] : classes) {
    nb::object cls = errors.attr(name);
    m.attr(name) = cls;
    g_errors[static_cast<int>(code)] = cls.release().ptr();
  }
  g_serialized_engine = nb::object(nb::module_::import_("kiln.host_memory").attr("SerializedEngine")).release().ptr();
  m.attr("SerializedEngine") = nb::handle(g_serialized_engine);

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
                .value("FLOAT8E4M3FN", DataType::kFloat8E4M3FN)
                .value("FLOAT8E4M3FNUZ", DataType::kFloat8E4M3FNUZ)
                .value("FLOAT8E5M2", DataType::kFloat8E5M2)
                .value("FLOAT8E5M2FNUZ", DataType::kFloat8E5M2FNUZ)
                .value("UINT4", DataType::kUInt4)
                .value("INT4", DataType::kInt4)
                .value("FLOAT4E2M1", DataType::kFloat4E2M1)
                .value("FLOAT8E8M0", DataType::kFloat8E8M0)
                .value("UINT2", DataType::kUInt2)
                .value("INT2", DataType::kInt2);
  dt.attr("FLOAT") = dt.attr("FLOAT32");
  dt.attr("HALF") = dt.attr("FLOAT16");
  dt.attr("DOUBLE") = dt.attr("FLOAT64");
  dt.attr("BF16") = dt.attr("BFLOAT16");
  dt.attr("FP8") = dt.attr("FLOAT8E4M3FN");

  m.def("dtype_size", &dtype_size, nb::arg("dtype"), "Bytes per element (0 for UNDEFINED/STRING).");
  m.def(
      "dtype_name", [](DataType t) { return std::string(dtype_name(t)); }, nb::arg("dtype"),
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
  // A Python Logger subclass with an __init__ forms a cycle through its module's
  // globals that the interpreter frees only after nanobind's exit-time leak check,
  // which then reports false leaks for everything still referenced from there.
  nanobind::set_leak_warnings(false);
  register_errors(m);
  register_types(m);
  register_logger(m);
  register_network(m);
  register_builder(m);
  register_device(m);
  register_runtime(m);
}
