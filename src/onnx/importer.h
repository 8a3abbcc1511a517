// Imports an ONNX ModelProto into kiln's IR graph, collecting every problem found.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/logger.h"
#include "kiln/onnx_parser.h"
#include "onnx/onnx.pb.h"

namespace kiln::onnx_import {

/// Default-domain opsets kiln reads (ONNX 1.23 defines up to 28).
constexpr int kMinOpset = 1;
constexpr int kMaxOpset = 28;
/// Opsets below this import with a warning: few kernels cover their old semantics.
constexpr int kOldestTestedOpset = 7;

/// Collects errors (echoed to the logger) and logs warnings.
class Diagnostics {
 public:
  Diagnostics(Logger& logger, std::vector<ParserError>& errors) : logger_(logger), errors_(errors) {}
  void error(ParserError e);
  void error(const std::string& message) { error(ParserError{-1, "", "", message}); }
  void warning(const std::string& message) { logger_.emit(Logger::Severity::kWarning, message); }
  void info(const std::string& message) { logger_.emit(Logger::Severity::kInfo, message); }
  size_t count() const { return errors_.size(); }

 private:
  Logger& logger_;
  std::vector<ParserError>& errors_;
};

/// Imports `model` into `graph` (which must hold nothing yet). External data is read
/// under `model_dir`. Returns false if any error was reported to `diag`. The raw bytes
/// of top-level initializers are released from `model` once copied, to bound peak memory.
bool import_model(onnx::ModelProto& model, const std::string& model_dir, ir::Graph& graph, Diagnostics& diag);

}  // namespace kiln::onnx_import
