// Tactic selection for CUDA engines: a kernel with several algorithms (cuDNN
// convolution algorithms, cuBLASLt matmul configurations) lists them; the
// builder times them at the first optimization profile's opt shapes and keeps
// the fastest in the node's `kiln.tactic`. Timings are shared through a
// TimingCache (in memory per build, and optionally a file). docs/tactics.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/builder.h"
#include "kiln/logger.h"
#include "ops/op.h"
#include "plan/engine_file.h"
#include "runtime/shape_eval.h"
#include "select/timing_cache.h"

namespace kiln::select {

/// Candidates an optimization level times per node: 0, 2, 4, 8, 16, or -1 (all) for 0..5.
int tactic_budget(int opt_level);

/// A chosen tactic in words, for `kiln inspect`: for the cuDNN conv kernel "graph engine"
/// (", fused epilogue") or "legacy algo A, math M"; otherwise "#ID"; "" for none (-1).
std::string describe_tactic(const std::string& kernel, int64_t id);

/// What tactic selection did.
struct TacticStats {
  int timed = 0;   ///< nodes whose candidates were timed
  int cached = 0;  ///< nodes answered by the timing cache (file, or an identical node earlier)
  int single = 0;  ///< nodes whose kernel offered one candidate (nothing to time)
  double seconds = 0;
  /// Sum of the picks' timed medians (timed and cached nodes): what the timed layers
  /// would take per inference at the opt shapes, to hold against the engine's GPU time.
  double picked_ms = 0;
  int warmed = 0;  ///< nodes whose candidates ran once on parallel threads before timing (TacticTimer::warm)
  int states = 0;  ///< nodes that keep their pick's compiled state in the engine (TacticTimer::state)
};

/// A node about to be timed, at concrete types (TacticTimer::warm).
struct WarmItem {
  const ir::Node* node = nullptr;
  std::vector<ops::TensorType> inputs, outputs;
};

/// The device side of tactic selection: CUDA in builds, a fake in tests.
class TacticTimer {
 public:
  virtual ~TacticTimer() = default;
  /// True when `node`'s kernel lists tactics.
  virtual bool has_tactics(const ir::Node& node) = 0;
  /// Gets ready to time `node` at these (concrete) types; returns its tactic IDs, best guess first.
  virtual Result<std::vector<int64_t>> prepare(const ir::Node& node, const std::vector<ops::TensorType>& inputs,
                                               const std::vector<ops::TensorType>& outputs) = 0;
  /// Median milliseconds of the prepared node running `tactic`.
  virtual Result<float> time(const ir::Node& node, int64_t tactic) = 0;
  /// Values of the next prepared node's inputs that shape inference computed at the opt
  /// shapes (null where none): shape tensors, which timing must not fill at random (a
  /// FusedAttention view's Reshape target computed at run time). Called before prepare.
  virtual void set_known_inputs(std::vector<const Tensor*> /*values*/) {}
  /// True when a first run of `node`'s tactics may compile code (FastKernel::compiles).
  virtual bool compiles(const ir::Node& /*node*/) { return false; }
  /// Runs the first `budget` (-1: all) candidates of each item once, on parallel threads,
  /// so that what they compile on a first run is compiled before timing starts (timing
  /// is one node at a time). Returns how many items it warmed; failures are left for
  /// timing to report.
  virtual int warm(const std::vector<WarmItem>& /*items*/, int /*budget*/) { return 0; }
  /// What the prepared node's kernel compiled for `tactic` and the engine can keep
  /// (cuda::report_state: a runtime-compiled cuDNN plan); empty when nothing.
  virtual Result<std::string> state(const ir::Node& /*node*/, int64_t /*tactic*/) { return std::string(); }
};

/// Sets `kiln.tactic` on every node `timer` has tactics for and whose types in
/// `opt` are concrete: from `cache` when it holds the node's signature timed at
/// least this widely, else by timing the first tactic_budget(opt_level)
/// candidates (the result goes into `cache`). Nodes whose kernel compiles on a
/// first run are first warmed together (TacticTimer::warm). Level 0 sets nothing. `build`
/// holds build-wide settings that change timings (it enters each signature).
Status choose_tactics(ir::Graph& g, const Propagation& opt, int opt_level, const std::string& build, TimingCache& cache,
                      TacticTimer& timer, Logger& logger, TacticStats& stats);

/// The build-wide settings that change a node's candidates or their timings, for
/// choose_tactics' `build`: "tf32=0|1", plus " splitk=1" with KILN_SPLITK_GEMM=1 (more
/// matmul candidates) and " attn_variants=V" with KILN_ATTENTION_WGMMA_VARIANTS=V other than
/// "012" (other Hopper attention candidates), so that such builds do not share timing-cache
/// entries with others.
std::string tactic_build_settings(bool tf32);

/// The builder's step for CUDA engines (a no-op otherwise): types at `profile`'s
/// opt shapes, the timing cache file of `config` loaded, choose_tactics with the
/// CUDA timer, the file saved; logs "tactics: N timed, M from cache (X s); the picks' medians sum to Y ms" and
/// adds tactics_timed / tactics_cached / tactics_single (and tactics_warmed, tactics_states) to `stats`.
Status select_tactics(ir::Graph& g, const plan::ProfileRanges& profile, const BuilderConfig& config, Logger& logger,
                      std::map<std::string, int>& stats);

/// The candidate sets' revision: bump it when a kernel offers new candidates or a tactic ID
/// changes meaning, so that timing caches written before are set aside (with a warning)
/// instead of answering for nodes whose new candidates they never timed (session 20's
/// enumerated cuBLASLt tiles and session 21's 32-key Hopper attention were invisible to
/// builds with an older cache file; session 22's conv tactics likewise: the 16-channel
/// tensor-core conv and the 1x1 conv as a cuBLASLt GEMM; session 23's conv + shortcut GEMM
/// variants; session 24's bottleneck chain and the shortcut GEMM's resident-weights variant).
inline constexpr int kTacticsRevision = 5;

/// A timing-cache key from its parts: device name, architecture, library versions, and the
/// candidate sets' revision (kTacticsRevision).
std::string timing_cache_key_for(const std::string& device, const std::string& arch, const std::string& libraries);

/// The timing-cache key of CUDA device `index`: name, compute capability, driver and library
/// versions, kTacticsRevision.
Result<std::string> timing_cache_key(int index);

}  // namespace kiln::select
