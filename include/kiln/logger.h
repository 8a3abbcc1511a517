// Logging interface; subclass Logger to route kiln's messages.
#pragma once

#include <string>

namespace kiln {

/// Receives kiln's diagnostics. The default implementation prints to stderr.
class Logger {
 public:
  /// Severity, most severe first (TensorRT's order).
  enum class Severity { kInternalError = 0, kError = 1, kWarning = 2, kInfo = 3, kVerbose = 4 };
  /// Prints messages at `min_severity` or more severe.
  explicit Logger(Severity min_severity = Severity::kWarning) : min_(min_severity) {}
  virtual ~Logger() = default;
  /// Called for every message at or above the threshold.
  virtual void log(Severity severity, const std::string& message);
  /// Current threshold.
  Severity min_severity() const { return min_; }
  /// Changes the threshold.
  void set_min_severity(Severity s) { min_ = s; }
  /// Filters by threshold then calls log().
  void emit(Severity severity, const std::string& message) {
    if (static_cast<int>(severity) <= static_cast<int>(min_)) log(severity, message);
  }

 private:
  Severity min_;
};

/// A process-wide default logger (warnings and errors to stderr).
Logger& default_logger();

}  // namespace kiln
