// Build progress: the phases the builder reports to BuilderConfig's ProgressMonitor.
// Code inside a phase (the passes, tactic timing in src/select/) opens a child phase:
//   BuildPhase phase(config.get_progress_monitor(), kPhaseTactics, kPhaseBuild, candidates);
//   for (...) { ...; KILN_RETURN_IF_ERROR(phase.step()); }
#pragma once

#include "kiln/builder.h"
#include "kiln/status.h"

namespace kiln {

/// The builder's phases: kPhaseBuild, and inside it one phase per step of kPhaseBuild.
inline constexpr const char* kPhaseBuild = "Building engine";
inline constexpr const char* kPhasePasses = "Optimizing graph";       ///< one step per pass
inline constexpr const char* kPhaseKernels = "Selecting kernels";     ///< one step
inline constexpr const char* kPhaseTactics = "Timing tactics";        ///< reported by select_tactics
inline constexpr const char* kPhaseMemory = "Planning memory";        ///< one step
inline constexpr const char* kPhaseSerialize = "Serializing engine";  ///< one step
/// kPhaseBuild's steps: the five phases above.
inline constexpr int kBuildPhaseSteps = 5;

/// One phase: started on construction, finished on destruction (early returns included).
/// Every call is a no-op without a monitor.
class BuildPhase {
 public:
  BuildPhase(ProgressMonitor* monitor, const char* name, const char* parent, int steps)
      : monitor_(monitor), name_(name), steps_(steps) {
    if (monitor_) monitor_->phase_start(name_, parent, steps_);
  }
  ~BuildPhase() {
    if (monitor_) monitor_->phase_finish(name_);
  }
  BuildPhase(const BuildPhase&) = delete;
  BuildPhase& operator=(const BuildPhase&) = delete;

  /// Reports the next step done; an error saying "build cancelled" when the monitor asks to stop.
  Status step() {
    const int s = done_++;
    if (!monitor_ || monitor_->step_complete(name_, s)) return Status();
    return Status(ErrorCode::kInvalidArgument, std::string("build cancelled by the progress monitor in '") + name_ +
                                                   "' (step " + std::to_string(s + 1) + " of " +
                                                   std::to_string(steps_) + ")");
  }
  /// The phase's name, for child phases' `parent`.
  const char* name() const { return name_; }
  /// Steps reported so far.
  int steps_done() const { return done_; }

 private:
  ProgressMonitor* monitor_;
  const char* name_;
  int steps_;
  int done_ = 0;
};

}  // namespace kiln
