// kiln bench: warm up, then time repeated runs and print a trtexec-like performance summary.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "app.h"
#include "cli_util.h"

namespace kiln::cli {

namespace {

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

double median(const std::vector<double>& sorted) {
  if (sorted.empty()) return 0;
  size_t n = sorted.size();
  return n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
}

// One inference. Binds caller buffers and calls execute() when every output shape is
// known up front, so the timed loop measures the engine and not output allocation;
// otherwise (data-dependent output shapes) falls back to infer().
class Runner {
 public:
  Runner(Engine& e, int profile, std::map<std::string, Tensor> inputs)
      : engine_(e), ctx_(e.create_execution_context()), inputs_(std::move(inputs)), profile_(profile) {}

  Status prepare() {
    KILN_RETURN_IF_ERROR(ctx_->set_optimization_profile(profile_));
    for (auto& [name, t] : inputs_) {
      KILN_RETURN_IF_ERROR(ctx_->set_input_shape(name, t.dims()));
      KILN_RETURN_IF_ERROR(ctx_->set_tensor_address(name, t.data()));
    }
    bound_ = true;
    for (const auto& name : engine_outputs(engine_)) {
      Dims d = ctx_->get_tensor_shape(name);
      if (dims_volume(d) < 0) {
        bound_ = false;
        break;
      }
      outputs_[name] = Tensor::empty(engine_.get_tensor_dtype(name), d);
    }
    if (bound_)
      for (auto& [name, t] : outputs_) KILN_RETURN_IF_ERROR(ctx_->set_tensor_address(name, t.data()));
    return Status();
  }

  Status once() {
    if (bound_) return ctx_->execute();
    auto r = ctx_->infer(inputs_);
    return r.status();
  }

  bool bound() const { return bound_; }

 private:
  Engine& engine_;
  std::unique_ptr<ExecutionContext> ctx_;
  std::map<std::string, Tensor> inputs_, outputs_;
  int profile_;
  bool bound_ = false;
};

std::string ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f ms", v);
  return buf;
}

}  // namespace

Status run_bench(const BenchCmd& c) {
  CliLogger logger(c.build.verbose);
  if (c.iterations == 0 || c.iterations < -1) return Status(ErrorCode::kInvalidArgument, "--iterations must be >= 1");
  if (c.warmup < -1) return Status(ErrorCode::kInvalidArgument, "--warmup must be >= 0");
  if (c.duration != -1 && !(c.duration >= 0)) return Status(ErrorCode::kInvalidArgument, "--duration must be >= 0");

  ShapeMap given_shapes;
  for (const auto& s : c.shapes) {
    KILN_ASSIGN_OR_RETURN(ShapeMap m, parse_shape_spec(s, "--shapes"));
    for (auto& [k, v] : m) given_shapes[k] = v;
  }
  KILN_ASSIGN_OR_RETURN(auto files, load_input_files(c.inputs));
  for (const auto& [name, t] : files) given_shapes[name] = t.dims();
  KILN_ASSIGN_OR_RETURN(LoadedEngine loaded, load_engine(c.model, c.build, given_shapes, logger));
  Engine& e = *loaded.engine;
  KILN_ASSIGN_OR_RETURN(RunSetup setup, choose_run_setup(e, given_shapes, c.profile));
  KILN_ASSIGN_OR_RETURN(auto inputs, make_inputs(e, setup, files, c.seed));

  Runner runner(e, setup.profile, inputs);
  KILN_RETURN_IF_ERROR(runner.prepare());

  // Warm-up: a fixed count if given, else 10 runs or 200 ms, whichever comes first.
  int warm = 0;
  auto tw = std::chrono::steady_clock::now();
  while (true) {
    if (c.warmup >= 0 ? warm >= c.warmup : (warm >= 10 || (warm >= 1 && seconds_since(tw) >= 0.2))) break;
    KILN_RETURN_IF_ERROR(runner.once().with_context("warm-up run"));
    ++warm;
  }

  // Timed: exactly --iterations if only that is given; otherwise run for the duration
  // (default 3 s) and at least --iterations (default 10) times.
  int min_iters = c.iterations > 0 ? c.iterations : 10;
  double duration = c.duration >= 0 ? c.duration : (c.iterations > 0 ? 0.0 : 3.0);
  bool exact = c.iterations > 0 && c.duration < 0;
  std::vector<double> lat;
  auto t0 = std::chrono::steady_clock::now();
  while (true) {
    if (exact ? static_cast<int>(lat.size()) >= min_iters
              : (static_cast<int>(lat.size()) >= min_iters && seconds_since(t0) >= duration))
      break;
    auto s = std::chrono::steady_clock::now();
    KILN_RETURN_IF_ERROR(runner.once().with_context("timed run " + std::to_string(lat.size())));
    lat.push_back(seconds_since(s) * 1e3);
  }
  double total = seconds_since(t0);

  std::vector<double> sorted = lat;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double v : lat) mean += v;
  mean /= static_cast<double>(lat.size());
  double qps = total > 0 ? static_cast<double>(lat.size()) / total : 0;

  std::string shapes;
  for (const auto& [name, d] : setup.shapes) shapes += (shapes.empty() ? "" : ",") + name + ":" + dims_to_string(d);
  char line[160];
  std::cout << "=== Performance summary ===\n";
  std::cout << "Model: " << c.model << (loaded.built ? " (built in memory)" : "") << "\n";
  std::cout << "Shapes: " << shapes << " (profile " << setup.profile << ")\n";
  std::snprintf(line, sizeof line, "Throughput: %.3f qps\n", qps);
  std::cout << line;
  std::cout << "Latency: min = " << ms(sorted.front()) << ", max = " << ms(sorted.back()) << ", mean = " << ms(mean)
            << ", median = " << ms(median(sorted)) << ", percentile(90%) = " << ms(percentile(sorted, 90))
            << ", percentile(95%) = " << ms(percentile(sorted, 95))
            << ", percentile(99%) = " << ms(percentile(sorted, 99)) << "\n";
  std::snprintf(line, sizeof line, "Total Host Walltime: %.4f s\n", total);
  std::cout << line;
  std::cout << "Iterations: " << lat.size() << " (after " << warm << " warm-up runs"
            << (runner.bound() ? "" : "; outputs allocated per run: data-dependent shapes") << ")\n";

  if (!c.json.empty()) {
    nlohmann::json j;
    j["model"] = c.model;
    j["built_in_memory"] = loaded.built;
    j["profile"] = setup.profile;
    for (const auto& [name, d] : setup.shapes) j["shapes"][name] = d;
    j["warmup_iterations"] = warm;
    j["iterations"] = lat.size();
    j["total_host_walltime_s"] = total;
    j["throughput_qps"] = qps;
    j["latency_ms"] = {{"min", sorted.front()},        {"max", sorted.back()},          {"mean", mean},
                       {"median", median(sorted)},     {"p90", percentile(sorted, 90)}, {"p95", percentile(sorted, 95)},
                       {"p99", percentile(sorted, 99)}};
    std::string text = j.dump(2) + "\n";
    KILN_RETURN_IF_ERROR(write_file(c.json, text.data(), text.size()));
  }
  return Status();
}

}  // namespace kiln::cli
