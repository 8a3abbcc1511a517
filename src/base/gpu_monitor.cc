#include "base/gpu_monitor.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace kiln {

GpuState summarize_gpu_samples(const std::vector<GpuSample>& samples, double watts_limit, double energy_j) {
  GpuState s;
  s.watts_limit = watts_limit;
  s.energy_j = energy_j;
  s.samples = static_cast<int>(samples.size());
  if (samples.empty()) return s;
  double mhz = 0, w = 0;
  int capped = 0, thermal = 0;
  s.celsius_min = s.celsius_max = samples[0].celsius;
  for (const GpuSample& x : samples) {
    mhz += x.sm_mhz, w += x.watts;
    s.celsius_min = std::min(s.celsius_min, x.celsius), s.celsius_max = std::max(s.celsius_max, x.celsius);
    capped += (x.reasons & kReasonPowerCap) != 0;
    thermal += (x.reasons & kReasonThermal) != 0;
  }
  const double n = static_cast<double>(samples.size());
  s.sm_mhz_mean = mhz / n, s.watts_mean = w / n;
  s.power_capped_share = capped / n, s.thermal_share = thermal / n;
  return s;
}

std::string describe_gpu_state(const GpuState& s, long runs) {
  if (s.samples == 0) return "no samples";
  char buf[256];
  int n = std::snprintf(buf, sizeof buf, "%.0f MHz, %.0f", s.sm_mhz_mean, s.watts_mean);
  if (s.watts_limit > 0) n += std::snprintf(buf + n, sizeof buf - n, " of %.0f", s.watts_limit);
  n += std::snprintf(buf + n, sizeof buf - n, " W, ");
  if (s.celsius_max - s.celsius_min >= 1)
    n += std::snprintf(buf + n, sizeof buf - n, "%.0f-%.0f C", s.celsius_min, s.celsius_max);
  else
    n += std::snprintf(buf + n, sizeof buf - n, "%.0f C", s.celsius_max);
  if (s.power_capped_share > 0)
    n += std::snprintf(buf + n, sizeof buf - n, ", at the power limit %.0f%% of the time", 100 * s.power_capped_share);
  if (s.thermal_share > 0)
    n += std::snprintf(buf + n, sizeof buf - n, ", thermal slowdown %.0f%% of the time", 100 * s.thermal_share);
  if (runs > 0 && s.energy_j >= 0) {
    const double j = s.energy_j / static_cast<double>(runs);
    if (j >= 1)
      std::snprintf(buf + n, sizeof buf - n, ", %.2f J a run", j);
    else
      std::snprintf(buf + n, sizeof buf - n, ", %.1f mJ a run", 1e3 * j);
  }
  return buf;
}

// NVML's entry points, as nvml.h declares them (nvmlReturn_t is an int enum, 0 = success;
// nvmlDevice_t a pointer); NVML_CLOCK_SM = 1, NVML_TEMPERATURE_GPU = 0.
struct GpuMonitor::Nvml {
  void* lib = nullptr;
  void* dev = nullptr;
  int (*shutdown)() = nullptr;
  int (*clock)(void*, int, unsigned*) = nullptr;
  int (*power)(void*, unsigned*) = nullptr;
  int (*limit)(void*, unsigned*) = nullptr;
  int (*temperature)(void*, int, unsigned*) = nullptr;
  int (*reasons)(void*, unsigned long long*) = nullptr;
  int (*energy)(void*, unsigned long long*) = nullptr;
  ~Nvml() {
    if (shutdown) shutdown();
    if (lib) dlclose(lib);
  }
  // Joules since the driver loaded, or -1.
  double energy_j() const {
    unsigned long long mj = 0;
    return energy && energy(dev, &mj) == 0 ? static_cast<double>(mj) * 1e-3 : -1.0;
  }
};

namespace {
template <class F>
bool bind(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  return f != nullptr;
}
}  // namespace

std::unique_ptr<GpuMonitor> GpuMonitor::open(const std::string& bus_id, std::string* why) {
  auto fail = [&](const std::string& m) {
    if (why) *why = m;
    return nullptr;
  };
  auto n = std::make_unique<Nvml>();
  n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!n->lib) return fail("libnvidia-ml.so.1 (the NVIDIA driver's NVML) could not be loaded");
  int (*init)() = nullptr;
  int (*by_bus)(const char*, void**) = nullptr;
  if (!bind(n->lib, "nvmlInit_v2", init) || !bind(n->lib, "nvmlDeviceGetHandleByPciBusId_v2", by_bus) ||
      !bind(n->lib, "nvmlDeviceGetClockInfo", n->clock) || !bind(n->lib, "nvmlDeviceGetPowerUsage", n->power) ||
      !bind(n->lib, "nvmlDeviceGetTemperature", n->temperature) || !bind(n->lib, "nvmlShutdown", n->shutdown))
    return fail("NVML lacks the functions kiln samples");
  // Optional: older drivers lack the energy counter; the throttle-reasons call has a newer name too.
  bind(n->lib, "nvmlDeviceGetEnforcedPowerLimit", n->limit);
  bind(n->lib, "nvmlDeviceGetTotalEnergyConsumption", n->energy);
  if (!bind(n->lib, "nvmlDeviceGetCurrentClocksEventReasons", n->reasons))
    bind(n->lib, "nvmlDeviceGetCurrentClocksThrottleReasons", n->reasons);
  if (init() != 0) {
    n->shutdown = nullptr;  // not initialized: nothing to shut down
    return fail("nvmlInit failed");
  }
  if (by_bus(bus_id.c_str(), &n->dev) != 0) return fail("NVML does not know the GPU at PCI address " + bus_id);
  return std::unique_ptr<GpuMonitor>(new GpuMonitor(std::move(n)));
}

GpuMonitor::GpuMonitor(std::unique_ptr<Nvml> nvml) : nvml_(std::move(nvml)) {}

GpuMonitor::~GpuMonitor() {
  if (thread_.joinable()) stop();
}

bool GpuMonitor::sample(GpuSample& s) const {
  unsigned mhz = 0, mw = 0, c = 0;
  unsigned long long r = 0;
  if (nvml_->clock(nvml_->dev, 1, &mhz) != 0 || nvml_->power(nvml_->dev, &mw) != 0 ||
      nvml_->temperature(nvml_->dev, 0, &c) != 0)
    return false;
  if (nvml_->reasons && nvml_->reasons(nvml_->dev, &r) != 0) r = 0;
  s.sm_mhz = mhz, s.watts = mw * 1e-3, s.celsius = c, s.reasons = r;
  return true;
}

void GpuMonitor::start(int interval_ms) {
  if (thread_.joinable()) return;
  samples_.clear();
  stop_ = false;
  energy0_j_ = nvml_->energy_j();
  thread_ = std::thread([this, interval_ms] {
    const auto step = std::chrono::milliseconds(std::max(1, interval_ms));
    auto next = std::chrono::steady_clock::now();
    while (!stop_.load()) {
      GpuSample s;
      if (sample(s)) samples_.push_back(s);
      next += step;
      // Short sleeps, so stop() returns within a few milliseconds.
      while (!stop_.load() && std::chrono::steady_clock::now() < next)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
}

GpuState GpuMonitor::stop() {
  if (!thread_.joinable()) return summarize_gpu_samples({}, -1, -1);
  stop_ = true;
  thread_.join();
  const double e1 = nvml_->energy_j();
  unsigned limit_mw = 0;
  const double limit_w = nvml_->limit && nvml_->limit(nvml_->dev, &limit_mw) == 0 ? limit_mw * 1e-3 : -1.0;
  return summarize_gpu_samples(samples_, limit_w, energy0_j_ >= 0 && e1 >= energy0_j_ ? e1 - energy0_j_ : -1.0);
}

}  // namespace kiln
