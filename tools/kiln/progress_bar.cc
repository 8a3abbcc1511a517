#include "progress_bar.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace kiln::cli {

namespace {
// The bar on screen, for clear_line() (one build at a time in the kiln command).
std::atomic<ProgressBar*> g_active{nullptr};
constexpr int kBarWidth = 20;
constexpr size_t kMaxLine = 100;
}  // namespace

ProgressBar::ProgressBar() : t0_(std::chrono::steady_clock::now()) {
  g_active.store(this);
  ticker_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(250), [this] { return stop_; }))
      if (!stack_.empty()) draw_locked();
  });
}

ProgressBar::~ProgressBar() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    erase_locked();
  }
  cv_.notify_all();
  ticker_.join();
  g_active.store(nullptr);
}

bool ProgressBar::stderr_is_tty() { return isatty(fileno(stderr)) == 1; }

void ProgressBar::clear_line() {
  ProgressBar* bar = g_active.load();
  if (!bar) return;
  std::lock_guard<std::mutex> lock(bar->mu_);
  bar->erase_locked();
}

void ProgressBar::phase_start(const char* name, const char* parent, int steps) {
  std::lock_guard<std::mutex> lock(mu_);
  stack_.push_back(Phase{name ? name : "", steps, 0});
  draw_locked();
}

bool ProgressBar::step_complete(const char* name, int step) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
    if (it->name == name) {
      it->done = step + 1;
      break;
    }
  // Redraw at most 20 times a second: tactic timing may report thousands of steps.
  if (std::chrono::steady_clock::now() - last_draw_ > std::chrono::milliseconds(50)) draw_locked();
  return true;
}

void ProgressBar::phase_finish(const char* name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = stack_.rbegin(); it != stack_.rend(); ++it)
    if (it->name == name) {
      stack_.erase(std::next(it).base());
      break;
    }
  if (stack_.empty())
    erase_locked();
  else
    draw_locked();
}

void ProgressBar::draw_locked() {
  if (stack_.empty()) return;
  const Phase& p = stack_.back();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  std::string line = "kiln: ";
  // The outer phase's position first: "Building engine 2/5: Selecting kernels [...]".
  if (stack_.size() > 1 && stack_.front().steps > 0)
    line += stack_.front().name + " " + std::to_string(std::min(stack_.front().done + 1, stack_.front().steps)) + "/" +
            std::to_string(stack_.front().steps) + ": ";
  line += p.name;
  if (p.steps > 0) {
    const int filled = static_cast<int>(static_cast<int64_t>(kBarWidth) * std::min(p.done, p.steps) / p.steps);
    line += " [" + std::string(filled, '#') + std::string(kBarWidth - filled, '-') + "] " + std::to_string(p.done) +
            "/" + std::to_string(p.steps);
  }
  char t[32];
  std::snprintf(t, sizeof t, "  %.1f s", secs);
  line += t;
  if (line.size() > kMaxLine) line.resize(kMaxLine);
  // \r and "erase to end of line": the bar overwrites itself.
  std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
  std::fflush(stderr);
  shown_ = true;
  last_draw_ = std::chrono::steady_clock::now();
}

void ProgressBar::erase_locked() {
  if (!shown_) return;
  std::fprintf(stderr, "\r\x1b[K");
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace kiln::cli
