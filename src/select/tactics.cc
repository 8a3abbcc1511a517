#include "select/tactics.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "backends/cuda/api.h"
#include "backends/cuda/node_runner.h"
#include "backends/cuda/tactic_sink.h"
#include "base/env.h"
#include "ops/attention/fused_attention.h"
#include "ops/conv/conv_graph_cuda.h"
#include "ops/matmul/gemm_splitk.h"
#include "ops/matmul/lt_config.h"

namespace kiln::select {

namespace {

constexpr int kWarmupRuns = 1;
// A tactic replaces the heuristic's first choice only when at least 3% faster.
constexpr float kMinGain = 0.97f;
constexpr int kRounds = 3;
constexpr int kTimedRuns = 3;

std::string ms_text(float ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f ms", ms);
  return buf;
}

// A cached entry answers this level when it timed at least as many candidates as the level would.
bool entry_covers(const TimingEntry& e, int budget) {
  if (e.total <= 1) return true;
  const int want = budget < 0 ? e.total : std::min(budget, e.total);
  return e.timed >= want;
}

// Times CUDA kernels through the node runner: buffers are uploaded once per node
// (weights are the real initializers, activations random) and reused for every tactic.
// Activations over 1 MiB travel as one 4096-element random period that the device
// repeats (filling and copying batch-256 activations on the host took most of a
// YOLOv8n bs256 build); smaller ones, which a kernel may read on the host, whole.
class CudaTacticTimer : public TacticTimer {
 public:
  CudaTacticTimer(int device, bool allow_tf32) {
    opts_.device = device;
    opts_.allow_tf32 = allow_tf32;
  }

  bool has_tactics(const ir::Node& node) override {
    const ops::FastKernel* k = kernel_of(node);
    return k && k->tactics != nullptr;
  }

  bool compiles(const ir::Node& node) override {
    const ops::FastKernel* k = kernel_of(node);
    return k && k->compiles;
  }

  void set_known_inputs(std::vector<const Tensor*> values) override { known_ = std::move(values); }

  Result<std::vector<int64_t>> prepare(const ir::Node& node, const std::vector<ops::TensorType>& inputs,
                                       const std::vector<ops::TensorType>& outputs) override {
    io_.reset();
    auto io = upload(node, inputs, outputs, rng_, host_, known_);
    known_.clear();
    KILN_ASSIGN_OR_RETURN(io_, std::move(io));
    return cuda::node_tactics_on_device(node, node.kernel, *io_, opts_);
  }

  Result<float> time(const ir::Node& node, int64_t tactic) override {
    cuda::NodeRunOptions o = opts_;
    o.tactic = tactic;
    o.timing_iterations = kTimedRuns;
    return cuda::time_node_on_device(node, node.kernel, *io_, kWarmupRuns, o);
  }

  Result<std::string> state(const ir::Node& node, int64_t tactic) override {
    cuda::NodeRunOptions o = opts_;
    o.tactic = tactic;
    return cuda::node_state_on_device(node, node.kernel, *io_, o);
  }

  // Worker threads (KILN_TACTIC_WARM_THREADS, default 4 or the cores if fewer; 0 or 1:
  // none, and plans compile as timing reaches them) each take the next node: upload its
  // buffers, list its candidates, run the first `budget` once. This thread holds the
  // capture lock meanwhile (cuda::ExclusiveCapture), lending it to the workers, whose
  // cuDNN finalizers may load modules. Buffers in flight stay under half of the
  // device's memory in all, each worker's kernel workspace included. cuDNN 9 compiles
  // runtime-fusion engines one at a time (session 8, H100, YOLOv8n FP32 bs32: 35
  // compiles summed 9.3 s serially, 32 s on 4 threads, 96 s on 16), so the warm-up wins
  // only the uploads, heuristics and legacy setup around them: builds 14.0 -> 12.5 s
  // (4 threads; 13.3 with 16, whose cudnnCreate calls alone took 2.3 s), FP16 4.5 -> 3.9.
  int warm(const std::vector<WarmItem>& items, int budget) override {
    const std::optional<long long> env = env_int("KILN_TACTIC_WARM_THREADS");
    long long threads = env ? *env : std::min<long long>(4, std::max(1u, std::thread::hardware_concurrency()));
    auto info = cuda::device_info(opts_.device);
    if (!info.ok()) return 0;
    const size_t cap = info->total_memory / 2, workspace = cuda::workspace_bytes(opts_.device);
    threads = std::min<long long>({threads, static_cast<long long>(items.size()),
                                   static_cast<long long>(cap / (2 * std::max<size_t>(workspace, 1)))});
    if (threads <= 1) return 0;
    const size_t io_cap = cap - static_cast<size_t>(threads) * workspace;
    std::mutex mu;
    std::condition_variable freed;
    size_t in_flight = 0;
    std::atomic<size_t> next{0};
    std::atomic<int> warmed{0};
    cuda::ExclusiveCapture hold;
    auto work = [&](unsigned seed) {
      cuda::CaptureLockLent lent;
      std::mt19937 rng(seed);
      std::vector<Tensor> host;
      for (size_t i; (i = next.fetch_add(1)) < items.size();) {
        const WarmItem& it = items[i];
        const size_t bytes = io_bytes(it);
        {
          std::unique_lock<std::mutex> lock(mu);
          freed.wait(lock, [&] { return in_flight == 0 || in_flight + bytes <= io_cap; });
          in_flight += bytes;
        }
        {
          auto io = upload(*it.node, it.inputs, it.outputs, rng, host);
          auto ids = io.ok() ? cuda::node_tactics_on_device(*it.node, it.node->kernel, **io, opts_)
                             : Result<std::vector<int64_t>>(io.status());
          if (ids.ok() && ids->size() > 1) {
            const size_t n = budget < 0 ? ids->size() : std::min(ids->size(), static_cast<size_t>(budget));
            ids->resize(n);
            if (cuda::warm_node_on_device(*it.node, it.node->kernel, **io, *ids, opts_).ok()) ++warmed;
          }
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          in_flight -= bytes;
        }
        freed.notify_all();
      }
    };
    std::vector<std::thread> pool;
    for (long long t = 0; t < threads; ++t) pool.emplace_back(work, static_cast<unsigned>(t + 1));
    for (std::thread& t : pool) t.join();
    return warmed.load();
  }

 private:
  static constexpr int64_t kPeriod = 4096;

  static const ops::FastKernel* kernel_of(const ir::Node& node) {
    if (node.device != ir::Device::kCUDA) return nullptr;
    const ops::OpDef* def = ops::OpRegistry::global().find(node.domain, node.op_type);
    if (!def) return nullptr;
    for (const ops::FastKernel& k : def->cuda)
      if (k.name == node.kernel) return &k;
    return nullptr;
  }

  // Device bytes of one node's buffers (its activations and outputs; weights are small).
  static size_t io_bytes(const WarmItem& it) {
    size_t b = 0;
    for (const auto* types : {&it.inputs, &it.outputs})
      for (const ops::TensorType& t : *types)
        if (t.shape) b += static_cast<size_t>(dims_volume(shape_to_dims(*t.shape))) * dtype_size(t.dtype);
    return b;
  }

  // The node's buffers on the device: weights are the real initializers, inputs with a
  // `known` value that value, activations random (`host` keeps their host tensors alive).
  Result<std::unique_ptr<cuda::DeviceNodeIO>> upload(const ir::Node& node, const std::vector<ops::TensorType>& inputs,
                                                     const std::vector<ops::TensorType>& outputs, std::mt19937& rng,
                                                     std::vector<Tensor>& host,
                                                     const std::vector<const Tensor*>& known = {}) {
    host.assign(inputs.size(), Tensor());
    std::vector<const Tensor*> in(inputs.size(), nullptr);
    std::vector<std::optional<Dims>> repeat_to(inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      const ir::Value* v = node.input(i);
      if (!v) continue;
      const Dims dims = shape_to_dims(*inputs[i].shape);
      if (v->initializer && v->initializer->dtype() == inputs[i].dtype && v->initializer->dims() == dims) {
        in[i] = v->initializer.get();
        continue;
      }
      const Tensor* k = i < known.size() ? known[i] : nullptr;
      if (k && k->dtype() == inputs[i].dtype && k->dims() == dims) {
        in[i] = k;
        continue;
      }
      const int64_t numel = dims_volume(dims);
      const bool big = numel * static_cast<int64_t>(dtype_size(inputs[i].dtype)) > (int64_t(1) << 20);
      if (big) {
        host[i] = random_tensor(inputs[i].dtype, {kPeriod}, rng);
        repeat_to[i] = dims;
      } else {
        host[i] = random_tensor(inputs[i].dtype, dims, rng);
      }
      in[i] = &host[i];
    }
    std::vector<Tensor> out(outputs.size());
    for (size_t i = 0; i < outputs.size(); ++i)
      if (node.outputs[i] && outputs[i].shape)
        out[i] = Tensor::empty(outputs[i].dtype, shape_to_dims(*outputs[i].shape));
    return cuda::upload_node_io(node, in, out, opts_, repeat_to);
  }

  // Random values in [-1, 1]: one kPeriod-element period, tiled (kernel speed does not
  // depend on the values; generating every element took seconds on large activations).
  static Tensor random_tensor(DataType dtype, const Dims& dims, std::mt19937& rng) {
    Tensor t = Tensor::zeros(dtype, dims);
    if (!dtype_is_float(dtype) || t.numel() == 0) return t;
    const int64_t period = std::min<int64_t>(t.numel(), kPeriod);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int64_t i = 0; i < period; ++i) t.set_from_double(i, u(rng));
    const size_t chunk = static_cast<size_t>(period) * dtype_size(dtype);
    auto* bytes = static_cast<uint8_t*>(t.data());
    for (size_t off = chunk; off < t.nbytes(); off += chunk)
      std::memcpy(bytes + off, bytes, std::min(chunk, t.nbytes() - off));
    return t;
  }

  cuda::NodeRunOptions opts_;
  std::mt19937 rng_{1234};
  std::vector<Tensor> host_;
  std::vector<const Tensor*> known_;  ///< set_known_inputs, for the next prepare only
  std::unique_ptr<cuda::DeviceNodeIO> io_;
};

// Types of `values` at the opt shapes; false when one present value is not concrete.
bool concrete_types(const std::vector<ir::Value*>& values, const Propagation& opt, std::vector<ops::TensorType>& out) {
  out.assign(values.size(), ops::TensorType{});
  for (size_t i = 0; i < values.size(); ++i) {
    if (!values[i]) continue;
    auto it = opt.types.find(values[i]);
    if (it == opt.types.end() || !it->second.shape || !shape_is_concrete(*it->second.shape)) return false;
    out[i] = it->second;
  }
  return true;
}

}  // namespace

std::string describe_tactic(const std::string& kernel, int64_t id) {
  if (id < 0) return "";
  if (kernel == "cuda.cudnn") {
    if (ops::cudnn_graph::is_graph_tactic(id))
      return std::string("cuDNN graph engine") + (ops::cudnn_graph::is_fused_tactic(id) ? ", fused epilogue" : "");
    if (id == ops::cudnn_graph::kDirectTactic) return "kiln direct conv";
    if (id == ops::cudnn_graph::kTc16Tactic) return "kiln tensor-core conv, 16 channels";
    if (ops::cudnn_graph::is_lt_gemm_tactic(id))
      return "1x1 conv as a cuBLASLt GEMM, the heuristic's configuration " +
             std::to_string(id - ops::cudnn_graph::kLtGemmTactic);
    if (ops::cudnn_graph::is_shortcut_tactic(id))
      return std::string("kiln conv + shortcut GEMM, ") +
             (id == ops::cudnn_graph::kShortcutTactic       ? "128 pixels a CTA"
              : id == ops::cudnn_graph::kShortcutTactic + 1 ? "64 pixels a CTA"
              : id == ops::cudnn_graph::kShortcutTactic + 2 ? "Hopper (TMA + wgmma)"
                                                            : "Hopper (TMA + wgmma), weights resident");
    if (ops::cudnn_graph::is_chain_tactic(id))
      return id == ops::cudnn_graph::kChainTactic ? "kiln bottleneck chain, Hopper (TMA + wgmma), one kernel"
                                                  : "kiln bottleneck chain, two GEMMs one after the other";
    return "cuDNN legacy algo " + std::to_string(id / 4) + ", math " + std::to_string(id % 4);
  }
  if (kernel == "cuda.flash_attention") {
    if (ops::attn::is_cudnn_sdpa_tactic(id)) return "cuDNN fused attention engine";
    if (ops::attn::is_hopper_tactic(id)) {
      const int64_t v = id - ops::attn::kHopperTacticBase;
      if (v == 2) return "kiln Hopper attention (TMA + wgmma), 2 warp groups a CTA, 32-key chunks";
      return "kiln Hopper attention (TMA + wgmma), " + std::to_string(v + 1) + " warp group" + (v > 0 ? "s" : "") +
             " a CTA";
    }
    return "kiln flash attention, variant " + std::to_string(id);
  }
  if (kernel == "cuda.cublaslt" && ops::matmul::lt_config::is_enumerated(id))
    return ops::matmul::lt_config::describe(id);
  if (kernel == "cuda.cublaslt" && ops::matmul::splitk::is_tactic(id))
    return "kiln split-K GEMM, " + std::to_string(ops::matmul::splitk::tactic_bm(id)) + "-row tiles, " +
           std::to_string(ops::matmul::splitk::tactic_waves(id)) + " CTA(s) per SM";
  std::string text = "#";  // (not "#" + to_string: GCC 12's -Wrestrict false positive once inlined)
  return text.append(std::to_string(id));
}

std::string tactic_build_settings(bool tf32) {
  std::string s = tf32 ? "tf32=1" : "tf32=0";
  if (ops::matmul::splitk::offered()) s += " splitk=1";
  if (const std::string v = ops::attn::hopper_variants_offered(); v != "012") s += " attn_variants=" + v;
  return s;
}

int tactic_budget(int opt_level) {
  switch (opt_level) {
    case 0:
      return 0;
    case 1:
      return 2;
    case 2:
      return 4;
    case 3:
      return 32;
    case 4:
      return 64;
    default:
      return opt_level < 0 ? 0 : -1;
  }
}

Status choose_tactics(ir::Graph& g, const Propagation& opt, int opt_level, const std::string& build, TimingCache& cache,
                      TacticTimer& timer, Logger& logger, TacticStats& stats) {
  const int budget = tactic_budget(opt_level);
  if (budget == 0) return Status();
  auto t0 = std::chrono::steady_clock::now();
  auto verbose = [&](const std::string& m) { logger.emit(Logger::Severity::kVerbose, m); };
  // The layers with tactics, at concrete types, and their signatures.
  struct Layer {
    ir::Node* node;
    std::vector<ops::TensorType> in, out;
    std::string sig;
    std::vector<const Tensor*> known;  ///< inputs' values at the opt shapes (shape tensors), else null
  };
  std::vector<Layer> layers;
  for (auto& node : g.nodes()) {
    if (!timer.has_tactics(*node)) continue;
    node->attrs.erase(ops::kTacticAttr);
    node->attrs.erase(cuda::kKernelStateAttr);
    Layer l{node.get(), {}, {}, "", {}};
    for (ir::Value* v : node->inputs) {
      auto it = v && !v->initializer ? opt.values.find(v) : opt.values.end();
      l.known.push_back(it != opt.values.end() ? &it->second : nullptr);
    }
    if (!concrete_types(node->inputs, opt, l.in) || !concrete_types(node->outputs, opt, l.out)) {
      verbose("tactic of " + node->describe() +
              ": shapes unknown at the opt shapes; the heuristic chooses at run time");
      continue;
    }
    l.sig = node_signature(*node, l.in, build);
    layers.push_back(std::move(l));
  }
  auto cached = [&](const Layer& l) -> const TimingEntry* {
    const TimingEntry* e = cache.find(l.sig);
    return e && entry_covers(*e, budget) ? e : nullptr;
  };
  // Kernels that compile on a first run (cuDNN's runtime fusion: ~0.2 s a plan, one
  // thread each) run their candidates together first, one node per thread.
  std::vector<WarmItem> warm;
  std::set<std::string> warm_sigs;
  for (const Layer& l : layers)
    if (timer.compiles(*l.node) && !cached(l) && warm_sigs.insert(l.sig).second)
      warm.push_back(WarmItem{l.node, l.in, l.out});
  if (!warm.empty()) {
    const auto w0 = std::chrono::steady_clock::now();
    const int n = timer.warm(warm, budget);
    stats.warmed += n;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f s",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count());
    if (n > 0)
      verbose("ran the candidates of " + std::to_string(n) + " layers that compile on a first run in parallel (" +
              secs + ")");
  }
  // What a pick compiled (a runtime-fusion plan) goes into the engine, so that loading it
  // skips the compile (~0.27 s a FP32 plan); the timing cache keeps it too, for rebuilds.
  // Once per signature: nodes of one signature share the plan when the engine loads.
  std::set<std::string> kept;
  auto keep_state = [&](ir::Node& node, const std::string& sig, const std::string& state) {
    if (state.empty() || !kept.insert(sig).second) return;
    node.attrs.set(cuda::kKernelStateAttr, ir::Attribute::from_string(state));
    ++stats.states;
  };
  for (Layer& l : layers) {
    ir::Node* node = l.node;
    const std::vector<ops::TensorType>& in = l.in;
    const std::vector<ops::TensorType>& out = l.out;
    const std::string& sig = l.sig;
    if (const TimingEntry* e = cached(l)) {
      if (e->tactic >= 0) node->attrs.set(ops::kTacticAttr, ir::Attribute::from_int(e->tactic));
      keep_state(*node, sig, e->state);
      stats.picked_ms += e->ms;
      ++stats.cached;
      continue;
    }
    timer.set_known_inputs(l.known);
    auto ids = timer.prepare(*node, in, out);
    if (!ids.ok()) {
      logger.emit(Logger::Severity::kWarning, "cannot time the tactics of " + node->describe() + " (" +
                                                  ids.status().message() + "); the heuristic chooses at run time");
      continue;
    }
    const int total = static_cast<int>(ids->size());
    if (total <= 1) {
      cache.put(sig, TimingEntry{-1, 0, 0, total});
      ++stats.single;
      continue;
    }
    const int n = budget < 0 ? total : std::min(budget, total);
    // Rounds over the candidates (each round times every candidate once), so that
    // clock ramp-up and other drift during the build hit all of them alike; a
    // candidate's time is its median over the rounds.
    std::vector<std::vector<float>> samples(static_cast<size_t>(n));
    std::vector<bool> failed(static_cast<size_t>(n), false);
    for (int round = 0; round < kRounds; ++round)
      for (int i = 0; i < n; ++i) {
        if (failed[static_cast<size_t>(i)]) continue;
        auto ms = timer.time(*node, (*ids)[i]);
        if (!ms.ok()) {
          verbose("tactic " + std::to_string((*ids)[i]) + " of " + node->describe() +
                  " failed: " + ms.status().message());
          failed[static_cast<size_t>(i)] = true;
          continue;
        }
        samples[static_cast<size_t>(i)].push_back(*ms);
      }
    int64_t best = -1;
    float best_ms = 0, first_ms = -1;
    std::string timed;  // every candidate's median, for -v (which kernels a layer could have run)
    for (int i = 0; i < n; ++i) {
      auto& v = samples[static_cast<size_t>(i)];
      const std::string what = describe_tactic(node->kernel, (*ids)[i]);
      if (i) timed += "; ";
      timed += std::to_string((*ids)[i]);
      if (!what.empty() && what[0] != '#') timed.append(" (").append(what).append(")");
      if (failed[static_cast<size_t>(i)] || v.empty()) {
        timed += " failed";
        continue;
      }
      std::sort(v.begin(), v.end());
      const float ms = v[v.size() / 2];
      timed += " " + ms_text(ms);
      if (i == 0) first_ms = ms;
      if (best < 0 || ms < best_ms) {
        best = (*ids)[i];
        best_ms = ms;
      }
    }
    // Timing noise must not overrule the library's own choice: another tactic
    // has to be clearly faster.
    if (first_ms >= 0 && best != (*ids)[0] && best_ms > first_ms * kMinGain) {
      best = (*ids)[0];
      best_ms = first_ms;
    }
    if (best < 0) {
      logger.emit(Logger::Severity::kWarning,
                  "no tactic of " + node->describe() + " ran; the heuristic chooses at run time");
      continue;
    }
    verbose("candidates of " + node->describe() + ", heuristic order: " + timed);
    node->attrs.set(ops::kTacticAttr, ir::Attribute::from_int(best));
    TimingEntry entry{best, best_ms, n, total, ""};
    if (timer.compiles(*node)) {
      auto st = timer.state(*node, best);
      if (st.ok()) entry.state = std::move(*st);
      if (!st.ok()) verbose("kept no compiled state of " + node->describe() + ": " + st.status().message());
      keep_state(*node, sig, entry.state);
    }
    cache.put(sig, entry);
    stats.picked_ms += best_ms;
    ++stats.timed;
    verbose("tactic of " + node->describe() + ": " + std::to_string(best) + " (" + ms_text(best_ms) + ", " +
            std::to_string(n) + " of " + std::to_string(total) + " timed; the heuristic's first " +
            (first_ms < 0 ? std::string("failed") : ms_text(first_ms)) + ")");
  }
  stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Status();
}

std::string timing_cache_key_for(const std::string& device, const std::string& arch, const std::string& libraries) {
  return device + ", " + arch + ", " + libraries + ", kiln tactics r" + std::to_string(kTacticsRevision);
}

Result<std::string> timing_cache_key(int index) {
  KILN_ASSIGN_OR_RETURN(cuda::DeviceInfo info, cuda::device_info(index));
  return timing_cache_key_for(info.name, cuda::arch_name(info.cc_major, info.cc_minor), cuda::library_versions());
}

Status select_tactics(ir::Graph& g, const plan::ProfileRanges& profile, const BuilderConfig& config, Logger& logger,
                      std::map<std::string, int>& stats) {
  if (config.device() != DeviceType::kCUDA) {
    if (!config.timing_cache_path().empty())
      logger.emit(Logger::Severity::kWarning, "the timing cache is ignored for CPU engines (nothing is timed)");
    return Status();
  }
  if (tactic_budget(config.optimization_level()) == 0) return Status();
  std::map<std::string, Shape> shapes;
  for (ir::Value* in : g.inputs) {
    auto it = profile.find(in->name);
    shapes[in->name] = it != profile.end() ? shape_from_dims(it->second[1]) : *in->shape;
  }
  Propagation opt;
  KILN_RETURN_IF_ERROR(propagate(g, shapes, opt, /*strict=*/false).with_context("at the opt shapes"));
  KILN_ASSIGN_OR_RETURN(std::string key, timing_cache_key(config.device_index()));
  const std::string& path = config.timing_cache_path();
  TimingCache cache(key);
  if (!path.empty()) {
    KILN_ASSIGN_OR_RETURN(cache, TimingCache::load(path, key, logger));
  }
  const bool tf32 = config.get_flag(BuilderFlag::kTF32);
  CudaTacticTimer timer(config.device_index(), tf32);
  TacticStats st;
  KILN_RETURN_IF_ERROR(
      choose_tactics(g, opt, config.optimization_level(), tactic_build_settings(tf32), cache, timer, logger, st));
  if (!path.empty()) KILN_RETURN_IF_ERROR(cache.save(path));
  stats["tactics_timed"] += st.timed;
  stats["tactics_cached"] += st.cached;
  stats["tactics_single"] += st.single;
  if (st.warmed) stats["tactics_warmed"] += st.warmed;
  if (st.states) stats["tactics_states"] += st.states;
  char secs[32], picked[32];
  std::snprintf(secs, sizeof secs, "%.2f", st.seconds);
  std::snprintf(picked, sizeof picked, "%.3f", st.picked_ms);
  // The summed picks next to the engine's GPU time show when isolated timing misleads
  // (session 7: ResNet-50 FP32 bs32's eager-timed picks).
  logger.emit(Logger::Severity::kInfo, "tactics: " + std::to_string(st.timed) + " timed, " + std::to_string(st.cached) +
                                           " from cache (" + secs + " s); the picks' medians sum to " + picked + " ms");
  return Status();
}

}  // namespace kiln::select
