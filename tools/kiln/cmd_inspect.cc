// kiln inspect: an engine's I/O, profiles, layers (kernel, precision) and memory, as
// tables for people or as the engine's own JSON. An ONNX model first gets a capability
// report (which nodes kiln supports, which have no CUDA kernel); only a fully supported
// model is then built in memory and shown like an engine file. Fused layers list the
// original nodes they replace (the kiln.fused_from attribute the passes record).
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "app.h"
#include "cli_util.h"
#include "plan/engine_file.h"

namespace kiln::cli {

namespace {

using Json = nlohmann::json;

// Left-aligned columns; cells longer than `max_cell` are cut with "...".
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& os, size_t max_cell = 60) const {
    std::vector<size_t> w;
    auto cut = [&](const std::string& s) { return s.size() > max_cell ? s.substr(0, max_cell - 3) + "..." : s; };
    for (const auto& r : rows_)
      for (size_t i = 0; i < r.size(); ++i) {
        if (w.size() <= i) w.push_back(0);
        w[i] = std::max(w[i], cut(r[i]).size());
      }
    for (size_t ri = 0; ri < rows_.size(); ++ri) {
      std::string line = "  ";
      for (size_t i = 0; i < rows_[ri].size(); ++i) {
        std::string c = cut(rows_[ri][i]);
        line += c;
        if (i + 1 < rows_[ri].size()) line += std::string(w[i] - c.size() + 2, ' ');
      }
      os << line << "\n";
      if (ri == 0) {
        size_t total = 0;
        for (size_t x : w) total += x + 2;
        os << "  " << std::string(total > 2 ? total - 2 : 0, '-') << "\n";
      }
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Any JSON value as display text: strings bare, lists of scalars comma separated.
std::string text(const Json& j) {
  if (j.is_null()) return "";
  if (j.is_string()) return j.get<std::string>();
  if (j.is_array()) {
    std::string s;
    for (const auto& x : j) s += (s.empty() ? "" : ", ") + text(x);
    return s;
  }
  return j.dump();
}

std::string field(const Json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key)) return "";
  return text(obj[key]);
}

std::string mode_name(TensorIOMode m) {
  return m == TensorIOMode::kInput ? "input" : m == TensorIOMode::kOutput ? "output" : "none";
}

// Passes each distinct message on once.
class OnceLogger : public Logger {
 public:
  explicit OnceLogger(Logger& to) : Logger(to.min_severity()), to_(to) {}
  void log(Severity severity, const std::string& message) override {
    if (seen_.insert(message).second) to_.emit(severity, message);
  }

 private:
  Logger& to_;
  std::set<std::string> seen_;
};

// True for a readable file that is not an engine (no "KILN" magic): an ONNX model.
bool is_onnx_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  if (!f) return false;
  f.read(magic, 4);
  return !(f.gcount() == 4 && std::memcmp(magic, "KILN", 4) == 0);
}

std::string shown_domain(const std::string& d) { return d.empty() ? "ai.onnx" : d; }

// The importer's name for an unnamed node.
std::string node_label(const NodeSupport& n) {
  return n.name.empty() ? n.op_type + "_" + std::to_string(n.index) : n.name;
}

// "3", "0-4".
std::string index_range(const std::vector<int>& idx) {
  if (idx.empty()) return "";
  if (idx.size() == 1) return std::to_string(idx.front());
  return std::to_string(idx.front()) + "-" + std::to_string(idx.back());
}

Json report_json(const std::string& model, const SupportReport& r) {
  Json nodes = Json::array(), unsupported = Json::array(), no_cuda = Json::array(), subgraphs = Json::array(),
       errors = Json::array();
  for (const NodeSupport& n : r.nodes) {
    nodes.push_back({{"index", n.index},
                     {"name", n.name},
                     {"op_type", n.op_type},
                     {"domain", shown_domain(n.domain)},
                     {"opset", n.opset},
                     {"supported", n.supported},
                     {"reason", n.reason},
                     {"cuda", n.cuda},
                     {"cuda_reason", n.cuda_reason}});
    if (!n.supported) unsupported.push_back(n.index);
    if (n.supported && !n.cuda) no_cuda.push_back(n.index);
  }
  for (const auto& [idx, ok] : r.subgraphs) subgraphs.push_back({{"nodes", idx}, {"supported", ok}});
  for (const ParserError& e : r.errors) errors.push_back(e.to_string());
  return Json{{"model", model},
              {"supported", r.supported},
              {"num_nodes", r.nodes.size()},
              {"num_unsupported", r.num_unsupported()},
              {"unsupported", unsupported},
              {"cpu_fallback_on_cuda", no_cuda},
              {"subgraphs", subgraphs},
              {"errors", errors},
              {"nodes", nodes}};
}

void print_report(std::ostream& os, const std::string& model, const SupportReport& r, bool cuda) {
  const size_t n = r.nodes.size();
  const int bad = r.num_unsupported();
  os << "Model: " << model << "\n";
  os << "Support: " << n << " node" << (n == 1 ? "" : "s") << ": ";
  if (bad == 0)
    os << "all supported";
  else
    os << bad << " of " << n << " unsupported";
  if (!r.errors.empty())
    os << "; the model has " << r.errors.size() << " other problem" << (r.errors.size() == 1 ? "" : "s");
  os << "\n";
  if (bad > 0) {
    os << "\nUnsupported nodes\n";
    Table t({"#", "name", "op", "domain", "opset", "reason"});
    for (const NodeSupport& s : r.nodes)
      if (!s.supported)
        t.add({std::to_string(s.index), node_label(s), s.op_type, shown_domain(s.domain), std::to_string(s.opset),
               s.reason});
    t.print(os, 120);
  }
  if (!r.errors.empty()) {
    os << "\nModel problems\n";
    for (const ParserError& e : r.errors) os << "  " << e.to_string() << "\n";
  }
  if (cuda) {
    int count = 0;
    Table t({"#", "name", "op", "why"});
    for (const NodeSupport& s : r.nodes)
      if (s.supported && !s.cuda) {
        ++count;
        t.add({std::to_string(s.index), node_label(s), s.op_type, s.cuda_reason});
      }
    os << "\nCPU fallback in a CUDA engine: " << count << " of " << n << " nodes have no CUDA kernel";
    if (count == 0) {
      os << "\n";
    } else {
      os << " (they run on the CPU unless the builder folds them into constants)\n";
      t.print(os, 120);
    }
  }
  os << "\nSubgraphs: " << r.subgraphs.size() << " run" << (r.subgraphs.size() == 1 ? "" : "s")
     << " of consecutive nodes\n";
  Table t({"nodes", "count", "support"});
  for (const auto& [idx, ok] : r.subgraphs)
    t.add({index_range(idx), std::to_string(idx.size()), ok ? "supported" : "unsupported"});
  t.print(os);
}

// load_engine, keeping the engine's bytes: the fused-node mapping is read from them.
Result<LoadedEngine> load_keeping_bytes(const InspectCmd& c, Logger& logger, std::vector<uint8_t>& bytes) {
  KILN_ASSIGN_OR_RETURN(bytes, read_file(c.model));
  LoadedEngine out;
  out.file_bytes = bytes.size();
  if (!looks_like_engine(bytes)) {
    KILN_ASSIGN_OR_RETURN(bytes, build_from_onnx(c.model, c.build, {}, logger, &out.build));
    out.built = true;
  }
  DeviceType type;
  int index = 0;
  KILN_RETURN_IF_ERROR(parse_device(c.build.device, type, index));
  Runtime runtime(logger);
  runtime.set_device_index(index);
  auto engine = runtime.deserialize(bytes.data(), bytes.size());
  if (!engine.ok())
    return engine.status().with_context(out.built ? "loading the engine built from '" + c.model + "'"
                                                  : "loading engine '" + c.model + "'");
  out.engine = std::move(engine).value();
  return out;
}

// The original nodes behind each layer (kiln.fused_from), in layer order; empty lists for
// layers that are not fusions, or all empty when the engine's graph cannot be read.
std::vector<std::vector<std::string>> fused_from_per_layer(const std::vector<uint8_t>& bytes, size_t layers) {
  std::vector<std::vector<std::string>> out(layers);
  auto meta_text = plan::engine_metadata_json(bytes.data(), bytes.size());
  if (!meta_text.ok()) return out;
  Json meta = Json::parse(meta_text.value(), nullptr, /*allow_exceptions=*/false);
  if (meta.is_discarded() || !meta.contains("graph") || !meta["graph"].contains("nodes")) return out;
  const Json& nodes = meta["graph"]["nodes"];
  if (!nodes.is_array() || nodes.size() != layers) return out;
  for (size_t i = 0; i < layers; ++i) {
    const Json& n = nodes[i];
    if (!n.contains("attrs") || !n["attrs"].contains("kiln.fused_from")) continue;
    const Json& v = n["attrs"]["kiln.fused_from"];
    if (!v.contains("v") || !v["v"].is_array()) continue;
    for (const Json& s : v["v"])
      if (s.is_string()) out[i].push_back(s.get<std::string>());
  }
  return out;
}

// "a, b, c (+4 more)".
std::string compact_names(const std::vector<std::string>& names, size_t shown = 3) {
  std::vector<std::string> head(names.begin(), names.begin() + std::min(shown, names.size()));
  std::string s = join(head, ", ");
  if (names.size() > shown) s += " (+" + std::to_string(names.size() - shown) + " more)";
  return s;
}

// Loads (or builds) the engine and prints it. With `report`, --json prints the report
// with the engine's description under "engine".
Status show_engine(const InspectCmd& c, Logger& logger, const Json* report) {
  std::vector<uint8_t> bytes;
  KILN_ASSIGN_OR_RETURN(LoadedEngine loaded, load_keeping_bytes(c, logger, bytes));
  const Engine& e = *loaded.engine;
  std::string raw = e.inspect_json();
  Json j = Json::parse(raw, nullptr, /*allow_exceptions=*/false);
  size_t fused_layers = 0, replaced_nodes = 0;
  std::vector<std::vector<std::string>> fused;
  if (!j.is_discarded() && j.contains("layers") && j["layers"].is_array()) {
    fused = fused_from_per_layer(bytes, j["layers"].size());
    for (size_t i = 0; i < fused.size(); ++i) {
      if (fused[i].empty()) continue;
      j["layers"][i]["fused_from"] = fused[i];
      ++fused_layers;
      replaced_nodes += fused[i].size();
    }
    j["fusion"] = {{"fused_layers", fused_layers}, {"replaced_nodes", replaced_nodes}};
  }
  if (c.json) {
    if (j.is_discarded()) return Status(ErrorCode::kInternal, "the engine's JSON description is not valid JSON");
    if (report) {
      Json out = *report;
      out["engine"] = std::move(j);
      std::cout << out.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    } else {
      std::cout << j.dump(2) << "\n";
    }
    return Status();
  }
  if (j.is_discarded()) {
    logger.emit(Logger::Severity::kWarning,
                "the engine's JSON description is not valid JSON; showing the API's view only");
    j = Json::object();
  }

  std::ostream& os = std::cout;
  os << "Engine: " << c.model;
  if (loaded.built)
    os << " (built in memory from ONNX)";
  else
    os << " (" << format_bytes(loaded.file_bytes) << ")";
  os << "\n";
  if (j.contains("header") && j["header"].is_object()) {
    for (auto it = j["header"].begin(); it != j["header"].end(); ++it)
      os << "  " << it.key() << ": " << text(it.value()) << "\n";
  }

  os << "\nI/O tensors\n";
  Table io({"name", "mode", "dtype", "shape", "dim names"});
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    std::string name = e.get_tensor_name(i);
    std::vector<std::string> dn = e.get_tensor_dim_names(name);
    bool any = false;
    for (auto& s : dn) {
      if (!s.empty()) any = true;
      if (s.empty()) s = "-";
    }
    io.add({name, mode_name(e.get_tensor_mode(name)), dtype_name(e.get_tensor_dtype(name)),
            format_dims(e.get_tensor_shape(name)), any ? "[" + join(dn, ", ") + "]" : ""});
  }
  io.print(os);

  os << "\nOptimization profiles: " << e.num_optimization_profiles() << "\n";
  bool any_range = false;
  Table prof({"profile", "input", "min", "opt", "max"});
  for (int p = 0; p < e.num_optimization_profiles(); ++p)
    for (const auto& name : engine_inputs(e)) {
      auto mmm = e.get_tensor_profile_shape(name, p);
      if (mmm.size() != 3) continue;
      any_range = true;
      prof.add({std::to_string(p), name, format_dims(mmm[0]), format_dims(mmm[1]), format_dims(mmm[2])});
    }
  if (any_range)
    prof.print(os);
  else
    os << "  (all inputs are static)\n";

  os << "\nLayers: " << e.num_layers() << "\n";
  if (j.contains("layers") && j["layers"].is_array()) {
    Table layers({"#", "name", "op", "kernel", "tactic", "precision", "inputs -> outputs", "fused"});
    size_t i = 0;
    for (const auto& l : j["layers"]) {
      std::string io_text = field(l, "inputs") + " -> " + field(l, "outputs");
      std::string from = i < fused.size() && !fused[i].empty() ? compact_names(fused[i]) : "";
      // A layer whose compiled plan travels in the engine (loading does not compile it).
      const bool kept = l.contains("kept_plan_bytes") && l["kept_plan_bytes"].is_number() && l["kept_plan_bytes"] > 0;
      layers.add({std::to_string(i), field(l, "name"), field(l, "op"), field(l, "kernel"),
                  field(l, "tactic_desc") + (kept ? " (+ compiled plan)" : ""), field(l, "precision"), io_text, from});
      ++i;
    }
    layers.print(os);
    if (fused_layers)
      os << "  " << fused_layers << " fused layer" << (fused_layers == 1 ? "" : "s") << " replace " << replaced_nodes
         << " node" << (replaced_nodes == 1 ? "" : "s") << " (--json lists them all)\n";
  }

  os << "\nMemory\n";
  os << "  weights:           " << format_bytes(e.weight_bytes()) << " (" << e.weight_bytes() << " bytes)\n";
  os << "  activation arena:  " << format_bytes(e.activation_bytes()) << " (" << e.activation_bytes() << " bytes)\n";
  if (j.contains("memory") && j["memory"].is_object())
    for (auto it = j["memory"].begin(); it != j["memory"].end(); ++it) {
      if (it.key() == "weights_bytes" || it.key() == "activation_bytes") continue;
      if (it.key() == "kept_plan_bytes" && it.value() == 0) continue;  // no compiled plans (every CPU engine)
      os << "  " << it.key() << ": " << text(it.value()) << "\n";
    }

  if (!e.metadata().empty()) {
    os << "\nMetadata\n";
    for (const auto& [k, v] : e.metadata()) os << "  " << k << " = " << v << "\n";
  }
  return Status();
}

}  // namespace

Status run_inspect(const InspectCmd& c) {
  CliLogger cli_logger(c.build.verbose);
  if (!is_onnx_file(c.model)) {
    if (c.report_only)
      return Status(ErrorCode::kInvalidArgument,
                    "--report-only takes an ONNX model; '" + c.model + "' is an engine file (or cannot be read)");
    return show_engine(c, cli_logger, nullptr);
  }
  DeviceType device;
  int device_index = 0;
  KILN_RETURN_IF_ERROR(parse_device(c.build.device, device, device_index));

  // The report and the build parse the same model: say each warning once.
  OnceLogger logger(cli_logger);
  NetworkDefinition scratch;
  OnnxParser parser(scratch, logger);
  SupportReport report = parser.supports_model_file(c.model);
  if (report.nodes.empty() && !report.errors.empty()) {
    std::string msg = "cannot parse ONNX model '" + c.model + "'";
    for (const auto& e : report.errors) msg += "\n  " + e.to_string();
    return Status(ErrorCode::kInvalidModel, msg);
  }

  Json rj = report_json(c.model, report);
  if (!c.json) print_report(std::cout, c.model, report, device == DeviceType::kCUDA);
  if (!report.supported) {
    if (c.json) std::cout << rj.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    const int bad = report.num_unsupported();
    std::string msg = "'" + c.model + "' ";
    if (bad > 0)
      msg += "has " + std::to_string(bad) + " unsupported node" + (bad == 1 ? "" : "s");
    else
      msg += "has problems kiln cannot build past";
    return Status(ErrorCode::kUnsupported, msg + "; nothing was built");
  }
  if (c.report_only) {
    if (c.json) std::cout << rj.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    return Status();
  }
  if (!c.json) std::cout << "\n";
  return show_engine(c, logger, &rj);
}

}  // namespace kiln::cli
