// A one-line build progress bar on stderr (a ProgressMonitor), for terminals.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kiln/kiln.h"

namespace kiln::cli {

/// Draws "kiln: <phase> [####----] step/total  elapsed" on one stderr line, redrawn in
/// place (and every 250 ms while a long step runs); the line is erased when the build ends.
class ProgressBar : public ProgressMonitor {
 public:
  ProgressBar();
  ~ProgressBar() override;
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void phase_start(const char* name, const char* parent, int steps) override;
  bool step_complete(const char* name, int step) override;
  void phase_finish(const char* name) override;

  /// True when stderr is a terminal (the only place the bar is drawn).
  static bool stderr_is_tty();
  /// Erases the bar's line, if one is shown, so that a message can be printed on stderr;
  /// the bar comes back at its next redraw.
  static void clear_line();

 private:
  struct Phase {
    std::string name;
    int steps = 0, done = 0;
  };
  void draw_locked();
  void erase_locked();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Phase> stack_;
  bool stop_ = false;
  bool shown_ = false;
  std::chrono::steady_clock::time_point t0_, last_draw_;
  std::thread ticker_;
};

}  // namespace kiln::cli
