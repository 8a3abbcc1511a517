// Running one ONNX backend node test folder through parser, builder and runtime.
#pragma once

#include <string>

#include "kiln/types.h"

namespace kiln::conformance {

/// How a test ended. The runner adds crash and timeout for children that died or hung.
enum class Outcome { kPass, kFail, kError, kUnsupported, kCrash, kTimeout };

/// "pass", "fail", "error", "unsupported", "crash", "timeout".
const char* outcome_name(Outcome o);
/// Inverse of outcome_name; false if unknown.
bool outcome_from_name(const std::string& s, Outcome* o);

struct TestResult {
  Outcome outcome = Outcome::kError;
  std::string message;  ///< why it did not pass (empty on pass)
};

/// Tolerances of the ONNX backend test runner (np.testing.assert_allclose).
struct Tolerance {
  double rtol = 1e-3;
  double atol = 1e-7;
};

/// Options for one test.
struct NodeTestOptions {
  Tolerance tol;
  int opt_level = -1;  ///< -1: the builder's default
  bool cuda = false;   ///< build CUDA engines (FP32, TF32 off)
  bool verbose = false;
};

/// Runs the test in folder `dir` (model.onnx + test_data_set_*/).
TestResult run_node_test(const std::string& dir, const NodeTestOptions& opt);

/// Compares an output with its reference: dtype and shape exactly, values within `tol`
/// (NaN equals NaN; integers and bools exactly). Empty string when equal.
std::string compare_tensors(const Tensor& actual, const Tensor& expected, const Tolerance& tol);

}  // namespace kiln::conformance
