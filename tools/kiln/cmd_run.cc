// kiln run: one inference with given or random inputs; prints and optionally saves outputs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>

#include "app.h"
#include "cli_util.h"
#include "npy.h"

namespace kiln::cli {

namespace {

// min / max / mean over the finite values of a numeric tensor.
std::string summary_stats(const Tensor& t) {
  if (t.numel() == 0 || !dtype_is_supported(t.dtype()) || t.dtype() == DataType::kBool) return "";
  double mn = INFINITY, mx = -INFINITY, sum = 0;
  int64_t n = 0, nonfinite = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = t.get_as_double(i);
    if (!std::isfinite(v)) {
      ++nonfinite;
      continue;
    }
    mn = std::min(mn, v);
    mx = std::max(mx, v);
    sum += v;
    ++n;
  }
  char buf[160];
  if (n == 0) return "  (no finite values)";
  std::snprintf(buf, sizeof buf, "  min %.6g  max %.6g  mean %.6g", mn, mx, sum / static_cast<double>(n));
  std::string s = buf;
  if (nonfinite) s += "  non-finite " + std::to_string(nonfinite);
  return s;
}

}  // namespace

Status run_run(const RunCmd& c) {
  CliLogger logger(c.build.verbose);
  ShapeMap given_shapes;
  for (const auto& s : c.shapes) {
    KILN_ASSIGN_OR_RETURN(ShapeMap m, parse_shape_spec(s, "--shapes"));
    for (auto& [k, v] : m) given_shapes[k] = v;
  }
  KILN_ASSIGN_OR_RETURN(auto files, load_input_files(c.inputs));
  for (const auto& [name, t] : files) {
    auto it = given_shapes.find(name);
    if (it != given_shapes.end() && it->second != t.dims())
      return Status(ErrorCode::kInvalidArgument, "--shapes gives " + name + " " + format_dims(it->second) +
                                                     " but its --input file holds " + format_dims(t.dims()));
    given_shapes[name] = t.dims();
  }

  KILN_ASSIGN_OR_RETURN(LoadedEngine loaded, load_engine(c.model, c.build, given_shapes, logger));
  Engine& e = *loaded.engine;
  KILN_ASSIGN_OR_RETURN(RunSetup setup, choose_run_setup(e, given_shapes, c.profile));
  KILN_ASSIGN_OR_RETURN(auto inputs, make_inputs(e, setup, files, c.seed));

  auto ctx = e.create_execution_context();
  KILN_RETURN_IF_ERROR(ctx->set_optimization_profile(setup.profile));
  auto t0 = std::chrono::steady_clock::now();
  auto result = ctx->infer(inputs);
  double secs = seconds_since(t0);
  if (!result.ok()) return result.status().with_context("running '" + c.model + "'");
  auto& outputs = result.value();

  if (!c.output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(c.output_dir, ec);
    if (ec) return Status(ErrorCode::kIo, "cannot create output directory '" + c.output_dir + "': " + ec.message());
  }
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.3f", secs * 1e3);
  std::cout << "ran " << c.model << " (profile " << setup.profile << ") in " << ms << " ms\n";
  for (const auto& name : engine_inputs(e)) {
    const Tensor& t = inputs.at(name);
    std::cout << "input  " << name << ": " << dtype_name(t.dtype()) << " " << format_dims(t.dims())
              << (files.empty() ? " (random)" : "") << "\n";
  }
  // Engine order, then any extra outputs the runtime returned.
  std::vector<std::string> order = engine_outputs(e);
  for (const auto& [name, t] : outputs)
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  std::set<std::string> used_files;
  for (const auto& name : order) {
    auto it = outputs.find(name);
    if (it == outputs.end())
      return Status(ErrorCode::kInternal, "the runtime returned no value for output '" + name + "'");
    const Tensor& t = it->second;
    std::cout << "output " << name << ": " << dtype_name(t.dtype()) << " " << format_dims(t.dims()) << summary_stats(t)
              << "\n";
    if (c.print_values > 0 && t.numel() > 0) std::cout << "  [" << format_values(t, c.print_values) << "]\n";
    if (!c.output_dir.empty()) {
      // Distinct names can sanitise to the same file name ("a/b", "a:b"); keep both.
      std::string base = safe_file_name(name), file = base + ".npy";
      for (int k = 1; used_files.count(file); ++k) file = base + "_" + std::to_string(k) + ".npy";
      used_files.insert(file);
      std::string path = (std::filesystem::path(c.output_dir) / file).string();
      KILN_RETURN_IF_ERROR(npy_write(path, t));
      std::cout << "  saved " << path << "\n";
    }
  }
  return Status();
}

}  // namespace kiln::cli
