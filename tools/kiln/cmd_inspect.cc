// kiln inspect: an engine's I/O, profiles, layers (kernel, precision) and memory, as
// tables for people or as the engine's own JSON.
#include <iostream>
#include <nlohmann/json.hpp>

#include "app.h"
#include "cli_util.h"

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

}  // namespace

Status run_inspect(const InspectCmd& c) {
  CliLogger logger(c.build.verbose);
  KILN_ASSIGN_OR_RETURN(LoadedEngine loaded, load_engine(c.model, c.build, {}, logger));
  const Engine& e = *loaded.engine;
  std::string raw = e.inspect_json();
  Json j = Json::parse(raw, nullptr, /*allow_exceptions=*/false);
  if (c.json) {
    if (j.is_discarded()) return Status(ErrorCode::kInternal, "the engine's JSON description is not valid JSON");
    std::cout << j.dump(2) << "\n";
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
    Table layers({"#", "name", "op", "kernel", "precision", "inputs -> outputs"});
    int i = 0;
    for (const auto& l : j["layers"]) {
      std::string io_text = field(l, "inputs") + " -> " + field(l, "outputs");
      layers.add(
          {std::to_string(i++), field(l, "name"), field(l, "op"), field(l, "kernel"), field(l, "precision"), io_text});
    }
    layers.print(os);
  }

  os << "\nMemory\n";
  os << "  weights:           " << format_bytes(e.weight_bytes()) << " (" << e.weight_bytes() << " bytes)\n";
  os << "  activation arena:  " << format_bytes(e.activation_bytes()) << " (" << e.activation_bytes() << " bytes)\n";
  if (j.contains("memory") && j["memory"].is_object())
    for (auto it = j["memory"].begin(); it != j["memory"].end(); ++it) {
      if (it.key() == "weights_bytes" || it.key() == "activation_bytes") continue;
      os << "  " << it.key() << ": " << text(it.value()) << "\n";
    }

  if (!e.metadata().empty()) {
    os << "\nMetadata\n";
    for (const auto& [k, v] : e.metadata()) os << "  " << k << " = " << v << "\n";
  }
  return Status();
}

}  // namespace kiln::cli
