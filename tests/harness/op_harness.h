// The shared op harness: build a one-node case, run the reference kernel, and
// check every other kernel registered for the op against it on random inputs.
//
//   OpCase c("Conv");
//   c.attr("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
//   c.input(DataType::kFloat32, {1, 3, 8, 8}).input(DataType::kFloat32, {4, 3, 3, 3});
//   auto ref = c.run();                      // reference outputs
//   c.expect_all_kernels_match(1e-4, 1e-5);  // every fast kernel vs reference
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ops/op.h"

namespace kiln::test {

/// Uniform random data in [lo, hi] (integers: rounded; bool: coin flip). Never all zeros.
Tensor random_tensor(DataType dtype, const Dims& dims, std::mt19937& rng, double lo = -1.0, double hi = 1.0);

/// Max |a-b| / (atol + rtol*|b|) over elements; > 1 means out of tolerance. Shapes must match.
double tolerance_ratio(const Tensor& a, const Tensor& b, double rtol, double atol);

/// Asserts same dtype, dims and values within tolerance; names the first bad element.
::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, double rtol, double atol);

/// How many CUDA kernels a case must have compared: 1 when a GPU is present (use
/// with EXPECT_GE on expect_all_kernels_match), 0 otherwise.
int gpu_kernels();

/// Tolerances for one dtype (tables of them drive dtype sweeps in the op tests).
struct Tol {
  DataType dtype;
  double rtol, atol;
};

/// Per-dtype tolerances of a GPU kernel against the reference (float32 with TF32 off).
inline const std::vector<Tol> kGpuFloatTols = {
    {DataType::kFloat32, 1e-4, 1e-4}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 3e-2, 3e-2}};

class OpCase {
 public:
  explicit OpCase(std::string op_type, int opset = 17, std::string domain = "");
  /// Sets an attribute.
  OpCase& attr(const std::string& name, ir::Attribute a);
  /// Adds a random input of this dtype and dims in [lo, hi].
  OpCase& input(DataType dtype, Dims dims, double lo = -1.0, double hi = 1.0);
  /// Adds an input with given contents.
  OpCase& input(Tensor value);
  /// Adds an omitted optional input.
  OpCase& no_input();
  /// Number of outputs (default 1).
  OpCase& outputs(int n);
  /// Seed for random inputs (default 1234).
  OpCase& seed(unsigned s);
  /// Lets CUDA kernels use TF32-class FP32 arithmetic (default off: FP32 is compared
  /// exactly), as engines built with TF32 allowed do.
  OpCase& allow_tf32(bool on = true);

  /// The node (owned by the case's graph).
  ir::Node& node();
  /// Inputs (random ones are generated at first use).
  const std::vector<std::optional<Tensor>>& inputs();
  /// Runs the named kernel ("ref" or a fast kernel name).
  Result<std::vector<Tensor>> run(const std::string& kernel = "ref");
  /// Runs every fast kernel whose applies() accepts the case and compares with ref.
  /// Returns the number of kernels compared.
  int expect_all_kernels_match(double rtol, double atol);

 private:
  void materialize();
  std::unique_ptr<ir::Graph> graph_;
  ir::Node* node_ = nullptr;
  struct Spec {
    DataType dtype = DataType::kUndefined;
    Dims dims;
    double lo = -1, hi = 1;
    std::optional<Tensor> value;
    bool omitted = false;
  };
  std::vector<Spec> specs_;
  std::vector<std::optional<Tensor>> inputs_;
  int num_outputs_ = 1;
  unsigned seed_ = 1234;
  bool allow_tf32_ = false;
  bool built_ = false;
};

}  // namespace kiln::test
