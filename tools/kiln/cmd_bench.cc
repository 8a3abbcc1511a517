// kiln bench: warm up, then time repeated runs and print a trtexec-like performance summary.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "app.h"
#include "backends/cuda/api.h"
#include "backends/cuda/device.h"
#include "base/gpu_monitor.h"
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
// otherwise (data-dependent output shapes) falls back to infer(). For CUDA engines
// with --no-data-transfers the bound buffers are device memory.
class Runner {
 public:
  Runner(Engine& e, int profile, std::map<std::string, Tensor> inputs)
      : engine_(e), ctx_(e.create_execution_context()), inputs_(std::move(inputs)), profile_(profile) {}

  Status prepare(bool device_buffers) {
    KILN_RETURN_IF_ERROR(ctx_->set_optimization_profile(profile_));
    for (auto& [name, t] : inputs_) {
      KILN_RETURN_IF_ERROR(ctx_->set_input_shape(name, t.dims()));
      void* p = t.data();
      if (device_buffers) {
        KILN_ASSIGN_OR_RETURN(cuda::DeviceBuffer b, cuda::device_alloc(t.nbytes(), "input '" + name + "'"));
        KILN_RETURN_IF_ERROR(cuda::copy_async(b.get(), t.data(), t.nbytes(), cuda::CopyKind::kHostToDevice, nullptr));
        KILN_RETURN_IF_ERROR(cuda::stream_synchronize(nullptr));
        p = b.get();
        device_.push_back(std::move(b));
      }
      KILN_RETURN_IF_ERROR(ctx_->set_tensor_address(name, p));
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
      for (auto& [name, t] : outputs_) {
        void* p = t.data();
        if (device_buffers) {
          KILN_ASSIGN_OR_RETURN(cuda::DeviceBuffer b, cuda::device_alloc(t.nbytes(), "output '" + name + "'"));
          p = b.get();
          device_.push_back(std::move(b));
        }
        KILN_RETURN_IF_ERROR(ctx_->set_tensor_address(name, p));
      }
    return Status();
  }

  Status once() {
    if (bound_) return ctx_->execute();
    auto r = ctx_->infer(inputs_);
    return r.status();
  }

  bool bound() const { return bound_; }
  ExecutionContext& context() { return *ctx_; }

 private:
  Engine& engine_;
  std::unique_ptr<ExecutionContext> ctx_;
  std::map<std::string, Tensor> inputs_, outputs_;
  std::vector<cuda::DeviceBuffer> device_;
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

  bool on_cuda = e.device() == "cuda";
  if (!on_cuda && (c.cuda_graph || c.no_data_transfers || c.streams != 1))
    return Status(ErrorCode::kInvalidArgument,
                  "--cuda-graph, --no-data-transfers and --streams apply to CUDA engines; this engine runs on the CPU");
  if (c.streams < 1 || c.streams > 64) return Status(ErrorCode::kInvalidArgument, "--streams must be 1..64");
  std::vector<std::unique_ptr<Runner>> runners;
  for (int i = 0; i < c.streams; ++i) {
    runners.push_back(std::make_unique<Runner>(e, setup.profile, inputs));
    KILN_RETURN_IF_ERROR(runners.back()->prepare(c.no_data_transfers));
    runners.back()->context().set_use_cuda_graph(c.cuda_graph);
  }
  // One CUDA stream: every other timed run records GPU timing events (H2D, compute, D2H)
  // and only the runs between them give latency samples, so the latency is what an
  // application calling execute() sees, not that plus six event records and three event
  // waits (BERT-base FP16 bs1: ~8 us of ~0.42 ms).
  const bool gpu_timing = on_cuda && c.streams == 1;
  Runner& runner = *runners[0];

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
  for (size_t r = 1; r < runners.size(); ++r)
    for (int w = 0; w < std::max(warm, 2); ++w) KILN_RETURN_IF_ERROR(runners[r]->once().with_context("warm-up run"));
  // The GPU's clock, power and temperature while the runs are timed (base/gpu_monitor.h):
  // at the power limit the same engine runs a few percent slower on a hotter GPU.
  std::unique_ptr<GpuMonitor> monitor;
  std::string no_monitor;
  if (on_cuda) {
    auto dev = cuda::device_info(cuda::current_device());
    if (dev.ok())
      monitor = GpuMonitor::open(dev->pci_bus_id, &no_monitor);
    else
      no_monitor = dev.status().message();
    if (monitor) monitor->start();
  }
  std::vector<double> lat, h2d, gpu, d2h;
  std::atomic<bool> stop{false};
  std::atomic<long> extra_runs{0};
  std::vector<Status> extra_status(runners.size());
  std::vector<std::thread> others;
  auto t0 = std::chrono::steady_clock::now();
  for (size_t r = 1; r < runners.size(); ++r)
    others.emplace_back([&, r] {
      while (!stop.load()) {
        Status st = runners[r]->once();
        if (!st.ok()) {
          extra_status[r] = st;
          return;
        }
        ++extra_runs;
      }
    });
  Status loop_status;
  long runs = 0;
  while (true) {
    const bool timing_run = gpu_timing && runs % 2 == 1;
    if (!timing_run && (exact ? static_cast<int>(lat.size()) >= min_iters
                              : (static_cast<int>(lat.size()) >= min_iters && seconds_since(t0) >= duration)))
      break;
    if (gpu_timing) runner.context().set_timing(timing_run);
    auto s = std::chrono::steady_clock::now();
    loop_status = runner.once().with_context("timed run " + std::to_string(runs));
    if (!loop_status.ok()) break;
    const double took = seconds_since(s) * 1e3;
    ++runs;
    if (!timing_run) {
      lat.push_back(took);
      continue;
    }
    RunTiming t = runner.context().last_timing();
    h2d.push_back(t.h2d_ms);
    gpu.push_back(t.compute_ms);
    d2h.push_back(t.d2h_ms);
  }
  stop = true;
  for (auto& t : others) t.join();
  double total = seconds_since(t0);
  const GpuState gpu_state = monitor ? monitor->stop() : GpuState{};
  const long all_runs = runs + extra_runs.load();
  KILN_RETURN_IF_ERROR(loop_status);
  for (auto& st : extra_status) KILN_RETURN_IF_ERROR(st.with_context("stream run"));

  std::vector<double> sorted = lat;
  std::sort(sorted.begin(), sorted.end());
  double mean = 0;
  for (double v : lat) mean += v;
  mean /= static_cast<double>(lat.size());
  double qps = total > 0 ? static_cast<double>(all_runs) / total : 0;
  auto summary = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  std::vector<double> s_h2d = summary(h2d), s_gpu = summary(gpu), s_d2h = summary(d2h);

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
  if (!s_gpu.empty()) {
    std::cout << "GPU Compute Time: min = " << ms(s_gpu.front()) << ", max = " << ms(s_gpu.back())
              << ", median = " << ms(median(s_gpu)) << ", percentile(99%) = " << ms(percentile(s_gpu, 99)) << "\n";
    std::cout << "H2D Latency: median = " << ms(median(s_h2d)) << "; D2H Latency: median = " << ms(median(s_d2h))
              << (c.no_data_transfers ? " (device buffers: device-to-device copies)" : "") << "\n";
  }
  if (on_cuda)
    std::cout << "CUDA: " << (c.cuda_graph ? "graph replay" : "kernel launches") << ", " << c.streams
              << " stream(s), " << runner.context().last_fallback_count() << " layer(s) on the CPU\n";
  if (on_cuda)
    std::cout << "GPU: " << (monitor ? describe_gpu_state(gpu_state, all_runs) : "not sampled (" + no_monitor + ")")
              << "\n";
  std::snprintf(line, sizeof line, "Total Host Walltime: %.4f s\n", total);
  std::cout << line;
  std::cout << "Iterations: " << lat.size() << (gpu_timing ? " untimed, each followed by one with GPU timing events" : "")
            << " (after " << warm << " warm-up runs"
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
    if (!s_gpu.empty())
      j["gpu_compute_ms"] = {{"min", s_gpu.front()}, {"median", median(s_gpu)}, {"p99", percentile(s_gpu, 99)},
                             {"h2d_median", median(s_h2d)}, {"d2h_median", median(s_d2h)}};
    j["device"] = e.device();
    j["cuda_graph"] = c.cuda_graph;
    j["streams"] = c.streams;
    j["no_data_transfers"] = c.no_data_transfers;
    if (monitor && gpu_state.samples > 0) {
      nlohmann::json g = {{"samples", gpu_state.samples},
                          {"sm_clock_mhz_mean", gpu_state.sm_mhz_mean},
                          {"power_w_mean", gpu_state.watts_mean},
                          {"temperature_c_min", gpu_state.celsius_min},
                          {"temperature_c_max", gpu_state.celsius_max},
                          {"power_capped_share", gpu_state.power_capped_share},
                          {"thermal_slowdown_share", gpu_state.thermal_share}};
      if (gpu_state.watts_limit > 0) g["power_limit_w"] = gpu_state.watts_limit;
      if (gpu_state.energy_j >= 0 && all_runs > 0) g["energy_j_per_run"] = gpu_state.energy_j / all_runs;
      j["gpu_state"] = g;
    }
    std::string text = j.dump(2) + "\n";
    KILN_RETURN_IF_ERROR(write_file(c.json, text.data(), text.size()));
  }
  if (c.dump_profile || !c.export_profile.empty()) {
    ExecutionContext& ctx = runner.context();
    ctx.set_profiling(true);
    KILN_RETURN_IF_ERROR(runner.once().with_context("profiled run"));
    ctx.set_profiling(false);
    auto times = ctx.layer_times();
    double sum = 0;
    for (auto& [n, t] : times) sum += t;
    if (c.dump_profile) {
      std::cout << "=== Profile (" << times.size() << " layers, " << ms(sum) << " serialized) ===\n";
      for (auto& [n, t] : times) {
        std::snprintf(line, sizeof line, "%10.4f ms %6.2f %%  ", t, sum > 0 ? 100.0 * t / sum : 0.0);
        std::cout << line << n << "\n";
      }
    }
    if (!c.export_profile.empty()) {
      nlohmann::json j = nlohmann::json::array();
      for (auto& [n, t] : times) j.push_back({{"name", n}, {"ms", t}, {"percent", sum > 0 ? 100.0 * t / sum : 0.0}});
      std::string text = j.dump(2) + "\n";
      KILN_RETURN_IF_ERROR(write_file(c.export_profile, text.data(), text.size()));
    }
  }
  return Status();
}

}  // namespace kiln::cli
