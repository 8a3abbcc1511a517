// Builder, BuilderConfig, OptimizationProfile and OnnxParser.
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>
#include <nanobind/trampoline.h>

#include <filesystem>

#include "backends/cuda/api.h"
#include "common.h"

namespace kiln::py {

namespace {

enum class NetworkDefinitionCreationFlag { kExplicitBatch = 0, kStronglyTyped = 1 };

// Builder keeps its logger so build_engine() can deserialize with it.
struct PyBuilder : Builder {
  explicit PyBuilder(Logger& l) : Builder(l), logger(&l) {}
  Logger* logger;
};

nb::list dims_list3(const Dims& a, const Dims& b, const Dims& c) {
  nb::list l;
  for (const Dims* d : {&a, &b, &c}) {
    nb::list t;
    for (int64_t v : *d) t.append(v);
    l.append(nb::tuple(t));
  }
  return l;
}

bool cuda_capability_at_least(int major, int minor) {
  if (cuda::device_count() == 0) return false;
  auto info = cuda::device_info(0);
  return info.ok() &&
         (info.value().cc_major > major || (info.value().cc_major == major && info.value().cc_minor >= minor));
}

std::vector<uint8_t> build(PyBuilder& b, const NetworkDefinition* network, const BuilderConfig* config) {
  if (!network) raise(ErrorCode::kInvalidArgument, "build_serialized_network: the network is None");
  BuilderConfig defaults;
  const BuilderConfig& c = config ? *config : defaults;
  Result<std::vector<uint8_t>> r = Status();
  {
    nb::gil_scoped_release unlocked;
    r = b.build_serialized_network(*network, c);
  }
  return unwrap(std::move(r));
}

// Lets Python subclasses override the ProgressMonitor methods. The build runs without
// the GIL; the trampoline takes it for each call. An exception raised by an override is
// reported through sys.unraisablehook and, from step_complete, cancels the build.
struct PyProgressMonitor : ProgressMonitor {
  NB_TRAMPOLINE(ProgressMonitor);

  void phase_start(const char* name, const char* parent, int steps) override {
    guarded("phase_start", [&] { call_start(name, parent, steps); });
  }
  bool step_complete(const char* name, int step) override {
    bool go_on = false;
    guarded("step_complete", [&] { go_on = call_step(name, step); });
    return go_on;
  }
  void phase_finish(const char* name) override {
    guarded("phase_finish", [&] { call_finish(name); });
  }

 private:
  template <typename F>
  void guarded(const char* method, F&& f) {
    try {
      f();
    } catch (nb::python_error& e) {
      nb::gil_scoped_acquire gil;
      e.discard_as_unraisable((std::string("kiln.ProgressMonitor.") + method).c_str());
    } catch (...) {
    }
  }
  // Python sees the parent as None for the outermost phase.
  void call_start(const char* name, const char* parent, int steps) {
    NB_OVERRIDE_NAME("phase_start", phase_start, name, parent, steps);
  }
  bool call_step(const char* name, int step) { NB_OVERRIDE_NAME("step_complete", step_complete, name, step); }
  void call_finish(const char* name) { NB_OVERRIDE_NAME("phase_finish", phase_finish, name); }
};

}  // namespace

void register_builder(nb::module_& m) {
  // TensorRT needs EXPLICIT_BATCH for ONNX; kiln networks are always explicit-batch,
  // so the flags are accepted and ignored.
  nb::enum_<NetworkDefinitionCreationFlag>(
      m, "NetworkDefinitionCreationFlag", nb::is_arithmetic(),
      "Accepted for TensorRT compatibility; kiln networks are always explicit-batch.")
      .value("EXPLICIT_BATCH", NetworkDefinitionCreationFlag::kExplicitBatch)
      .value("STRONGLY_TYPED", NetworkDefinitionCreationFlag::kStronglyTyped);

  auto profile = nb::class_<OptimizationProfile>(
      m, "OptimizationProfile", "min/opt/max dims for each dynamic input. TensorRT: IOptimizationProfile.");
  profile.def(nb::init<>())
      .def(
          "set_shape",
          [](OptimizationProfile& p, const std::string& input, const Dims& min, const Dims& opt, const Dims& max) {
            check(p.set_shape(input, min, opt, max));
          },
          nb::arg("input"), nb::arg("min"), nb::arg("opt"), nb::arg("max"),
          nb::sig(
              "def set_shape(self, input: str, min: collections.abc.Sequence[int], opt: collections.abc.Sequence[int], "
              "max: collections.abc.Sequence[int]) -> None"),
          "Sets the range of input `input`; min <= opt <= max elementwise.")
      .def(
          "get_shape",
          [](const OptimizationProfile& p, const std::string& input) -> nb::list {
            if (!p.has_shape(input)) return nb::list();
            return dims_list3(p.get_min(input), p.get_opt(input), p.get_max(input));
          },
          nb::arg("input"), nb::sig("def get_shape(self, input: str) -> list[tuple[int, ...]]"),
          "[min, opt, max] of `input` ([] if unset).")
      .def("has_shape", &OptimizationProfile::has_shape, nb::arg("input"))
      .def_prop_ro("names", &OptimizationProfile::names, "Inputs with a range, sorted.")
      .def("__repr__", [](const OptimizationProfile& p) {
        std::string s = "<kiln.OptimizationProfile";
        for (auto& n : p.names())
          s += " " + n + ": " + dims_to_string(p.get_min(n)) + ".." + dims_to_string(p.get_max(n));
        return s + ">";
      });

  auto monitor = nb::class_<ProgressMonitor, PyProgressMonitor>(
      m, "ProgressMonitor",
      "Receives build progress (TensorRT: IProgressMonitor). Subclass it, override phase_start,\n"
      "step_complete (return False to cancel the build) and phase_finish, and set it as\n"
      "config.progress_monitor. Calls come from the building thread.");
  monitor.def(nb::init<>())
      .def("phase_start", &ProgressMonitor::phase_start, nb::arg("phase_name"), nb::arg("parent_phase").none(),
           nb::arg("num_steps"), "Phase `phase_name` starts inside `parent_phase` (None for the outermost).")
      .def("step_complete", &ProgressMonitor::step_complete, nb::arg("phase_name"), nb::arg("step"),
           "Step `step` (0-based) of the phase is done; return False to cancel the build.")
      .def("phase_finish", &ProgressMonitor::phase_finish, nb::arg("phase_name"),
           "The phase ends (also when the build fails or is cancelled).");
  m.attr("IProgressMonitor") = monitor;

  auto config = nb::class_<BuilderConfig>(m, "BuilderConfig", "Options for one build. TensorRT: IBuilderConfig.");
  config.def(nb::init<>())
      .def("set_flag", &BuilderConfig::set_flag, nb::arg("flag"), "Turns a flag on.")
      .def("clear_flag", &BuilderConfig::clear_flag, nb::arg("flag"), "Turns a flag off.")
      .def("get_flag", &BuilderConfig::get_flag, nb::arg("flag"), "True if a flag is on.")
      .def_prop_rw(
          "flags",
          [](const BuilderConfig& c) {
            uint32_t f = 0;
            for (int i = 0; i <= static_cast<int>(BuilderFlag::kDebug); ++i)
              if (c.get_flag(static_cast<BuilderFlag>(i))) f |= 1u << i;
            return f;
          },
          [](BuilderConfig& c, uint32_t f) {
            for (int i = 0; i <= static_cast<int>(BuilderFlag::kDebug); ++i) {
              if (f & (1u << i))
                c.set_flag(static_cast<BuilderFlag>(i));
              else
                c.clear_flag(static_cast<BuilderFlag>(i));
            }
          },
          "All flags as a bit mask (bit i = BuilderFlag value i).")
      .def("set_memory_pool_limit", &BuilderConfig::set_memory_pool_limit, nb::arg("pool"), nb::arg("pool_size"),
           "Limits a memory pool (bytes).")
      .def("get_memory_pool_limit", &BuilderConfig::get_memory_pool_limit, nb::arg("pool"))
      .def_prop_rw(
          "max_workspace_size",
          [](const BuilderConfig& c) { return c.get_memory_pool_limit(MemoryPoolType::kWorkspace); },
          [](BuilderConfig& c, uint64_t v) { c.set_memory_pool_limit(MemoryPoolType::kWorkspace, v); },
          "TensorRT 7/8 spelling of the WORKSPACE pool limit.")
      .def("add_optimization_profile", &BuilderConfig::add_optimization_profile, nb::arg("profile"),
           "Adds a profile; returns its index.")
      .def_prop_ro("num_optimization_profiles", [](const BuilderConfig& c) { return c.profiles().size(); })
      .def_prop_rw("builder_optimization_level", &BuilderConfig::optimization_level,
                   &BuilderConfig::set_optimization_level, "0 (fastest build) .. 5 (widest search); default 3.")
      .def_prop_rw(
          "timing_cache_path", [](const BuilderConfig& c) { return c.timing_cache_path(); },
          [](BuilderConfig& c, const std::string& p) { c.set_timing_cache_path(p); },
          "CUDA builds: file of tactic timings reused across builds ('' = none).")
      .def_prop_rw("device", &BuilderConfig::device, &BuilderConfig::set_device,
                   "Where the engine will run: DeviceType.CPU (default) or DeviceType.CUDA.")
      .def("set_device", &BuilderConfig::set_device, nb::arg("device"), "Sets `device`.")
      .def_prop_rw("default_device_type", &BuilderConfig::device, &BuilderConfig::set_device,
                   "Alias of `device` (TensorRT's name).")
      .def_prop_rw("device_index", &BuilderConfig::device_index, &BuilderConfig::set_device_index,
                   "CUDA device the engine is built (and its kernels timed) on; default 0.")
      .def("set_device_index", &BuilderConfig::set_device_index, nb::arg("index"), "Sets `device_index`.")
      .def_prop_rw(
          "progress_monitor", [](const BuilderConfig& c) { return c.get_progress_monitor(); },
          [](BuilderConfig& c, ProgressMonitor* monitor) { c.set_progress_monitor(monitor); },
          nb::for_getter(nb::rv_policy::reference), nb::for_setter(nb::arg("monitor").none()),
          nb::for_setter(nb::keep_alive<1, 2>()),
          "A ProgressMonitor that sees the build's phases (None: none); kept alive by the config.")
      .def("set_metadata", &BuilderConfig::set_metadata, nb::arg("key"), nb::arg("value"),
           "Free-form metadata stored in the engine (Engine.metadata).")
      .def_prop_ro("metadata", &BuilderConfig::metadata);
  add_context_manager(config);

  auto builder = nb::class_<PyBuilder>(m, "Builder", "Builds engines from networks. TensorRT: IBuilder.");
  builder.def(nb::init<Logger&>(), nb::arg("logger"), nb::keep_alive<1, 2>())
      .def(
          "create_network", [](PyBuilder& b, uint32_t) { return b.create_network(); }, nb::arg("flags") = 0,
          "An empty network (flags are accepted for TensorRT compatibility).")
      .def("create_builder_config", &PyBuilder::create_builder_config, "A config with defaults.")
      .def("create_optimization_profile", &PyBuilder::create_optimization_profile,
           "An empty profile (fill with set_shape, then config.add_optimization_profile).")
      .def(
          "build_serialized_network",
          [](PyBuilder& b, const NetworkDefinition* network, const BuilderConfig* config) {
            return serialized_engine_bytes(build(b, network, config));
          },
          nb::arg("network").none(), nb::arg("config").none() = nb::none(),
          nb::sig("def build_serialized_network(self, network: NetworkDefinition, config: BuilderConfig | None = None) "
                  "-> SerializedEngine"),
          "Optimizes the network and returns the engine as bytes. Raises a KilnError on failure.")
      .def(
          "build_engine",
          [](PyBuilder& b, const NetworkDefinition* network, const BuilderConfig* config) {
            std::vector<uint8_t> bytes = build(b, network, config);
            Runtime rt(*b.logger);
            return unwrap(rt.deserialize(bytes.data(), bytes.size()));
          },
          nb::arg("network").none(), nb::arg("config").none() = nb::none(),
          nb::sig("def build_engine(self, network: NetworkDefinition, config: BuilderConfig | None = None) -> Engine"),
          "TensorRT 7/8 style: builds and deserializes in one step.")
      .def_prop_ro(
          "platform_has_fast_fp16",
          [](const PyBuilder& b) { return b.platform_has_fast_fp16() || cuda_capability_at_least(5, 3); },
          "Whether the platform has fast FP16: CUDA device 0 is sm_53 or newer.")
      .def_prop_ro(
          "platform_has_fast_int8", [](const PyBuilder&) { return false; },
          "Whether the platform has fast INT8 kernels; False in this build.")
      .def_prop_ro(
          "platform_has_tf32", [](const PyBuilder&) { return cuda_capability_at_least(8, 0); },
          "Whether FP32 layers can use TF32 tensor cores: CUDA device 0 is sm_80 or newer.")
      .def_prop_ro(
          "logger", [](const PyBuilder& b) { return b.logger; }, nb::rv_policy::reference);
  add_context_manager(builder);

  nb::class_<ParserError>(m, "ParserError", "One problem found while parsing, naming where it is.")
      .def_ro("node_index", &ParserError::node_index, "Index in graph.node, -1 if not about a node.")
      .def_ro("node_name", &ParserError::node_name)
      .def_ro("op_type", &ParserError::op_type)
      .def_ro("message", &ParserError::message)
      .def(
          "desc", [](const ParserError& e) { return e.message; }, "The message (TensorRT's desc()).")
      .def(
          "node", [](const ParserError& e) { return e.node_index; }, "The node index (TensorRT's node()).")
      .def("__str__", &ParserError::to_string)
      .def("__repr__", [](const ParserError& e) { return "<kiln.ParserError " + e.to_string() + ">"; });

  auto parser = nb::class_<OnnxParser>(m, "OnnxParser", "Fills a network from an ONNX model; errors are collected.");
  parser
      .def(nb::init<NetworkDefinition&, Logger&>(), nb::arg("network"), nb::arg("logger"), nb::keep_alive<1, 2>(),
           nb::keep_alive<1, 3>())
      .def(
          "parse",
          [](OnnxParser& p, nb::handle model, nb::handle path) {
            BufferView buf(model, "parse: the model");
            std::string dir;
            if (!path.is_none()) {
              std::filesystem::path fp(nb::cast<std::string>(nb::str(path)));
              dir = fp.has_parent_path() ? fp.parent_path().string() : std::string(".");
            }
            nb::gil_scoped_release unlocked;
            return p.parse(buf.data(), buf.size(), dir);
          },
          nb::arg("model"), nb::arg("path") = nb::none(),
          nb::sig(
              "def parse(self, model: bytes | bytearray | memoryview, path: str | os.PathLike | None = None) -> bool"),
          "Parses a serialized ModelProto; `path` (the model's file) locates external data. True on success.")
      .def(
          "parse_from_file",
          [](OnnxParser& p, nb::handle path) {
            std::string s = nb::cast<std::string>(nb::module_::import_("os").attr("fspath")(path));
            nb::gil_scoped_release unlocked;
            return p.parse_from_file(s);
          },
          nb::arg("model"), nb::sig("def parse_from_file(self, model: str | os.PathLike) -> bool"),
          "Reads and parses a file; external data is looked up beside it. True on success.")
      .def_prop_ro("num_errors", &OnnxParser::num_errors, "Number of errors from the last parse.")
      .def(
          "get_error",
          [](const OnnxParser& p, int i) {
            if (i < 0 || i >= p.num_errors())
              throw nb::index_error(("error " + std::to_string(i) + " of " + std::to_string(p.num_errors())).c_str());
            return p.error(i);
          },
          nb::arg("index"), "Error `index` (0 <= index < num_errors).")
      .def_prop_ro(
          "errors",
          [](const OnnxParser& p) {
            std::vector<ParserError> v;
            for (int i = 0; i < p.num_errors(); ++i) v.push_back(p.error(i));
            return v;
          },
          "All errors from the last parse.")
      .def("clear_errors", &OnnxParser::clear_errors, "Forgets errors.");
  add_context_manager(parser);
}

}  // namespace kiln::py
