// exact_output_gemm: the head GEMM of an FP32 CUDA engine with TF32 is marked kiln.exact_fp32
// (through a bias Add and a Reshape); hidden GEMMs, large weights, FP16 and --no-tf32 engines
// are left as they are.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "ops/op.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::run_pass;

// x[N, 16] -> MatMul(W1[16, 32]) -> Relu -> MatMul(head[32, classes]) -> Add(b) -> Reshape -> y
struct Net {
  ir::Graph g;
  ir::Node* hidden = nullptr;
  ir::Node* head = nullptr;
};

void build(Net& n, int64_t classes) {
  std::mt19937 rng(3);
  ir::Graph& g = n.g;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("N"), 16}).value();
  g.inputs.push_back(x);
  auto node = [&](const std::string& op, std::vector<ir::Value*> ins) {
    ir::Value* o = g.add_unique_value("t");
    ir::Node* nd = g.add_node(op, ins, {o}, g.unique_name(op));
    nd->opset = 17;
    return nd;
  };
  auto random = [&](const Dims& d) { return g.add_constant("w", test::random_tensor(DataType::kFloat32, d, rng)); };
  n.hidden = node("MatMul", {x, random({16, 32})});
  ir::Node* relu = node("Relu", {n.hidden->outputs[0]});
  n.head = node("MatMul", {relu->outputs[0], random({32, classes})});
  ir::Node* add = node("Add", {n.head->outputs[0], random({classes})});
  ir::Value* shape = g.add_constant("shape", Tensor::from_vector<int64_t>(DataType::kInt64, {2}, {-1, classes}));
  ir::Node* reshape = node("Reshape", {add->outputs[0], shape});
  g.outputs.push_back(reshape->outputs[0]);
}

int64_t exact(const ir::Node* n) { return n->attrs.get_int(ops::kExactFp32Attr, 0); }

void run(Net& n, BuilderConfig& cfg) {
  PassContext ctx = context_for(n.g, cfg);
  run_pass(n.g, exact_output_gemm, ctx);
}

TEST(ExactOutputGemm, HeadOfTf32EngineRunsExactFp32) {
  Net n;
  build(n, 10);
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  ASSERT_TRUE(cfg.get_flag(BuilderFlag::kTF32));  // TF32 is on by default on the GPU
  run(n, cfg);
  EXPECT_EQ(exact(n.head), 1);
  EXPECT_EQ(exact(n.hidden), 0);  // a Relu follows it: not an output GEMM
}

// The head's kiln.exact_fp32 after the pass, in an engine configured by `tweak`.
int64_t head_exact(int64_t classes, DeviceType device, void (*tweak)(BuilderConfig&)) {
  Net n;
  build(n, classes);
  BuilderConfig cfg;
  cfg.set_device(device);
  tweak(cfg);
  run(n, cfg);
  return exact(n.head);
}

TEST(ExactOutputGemm, LeftAloneWithoutTf32InHalfPrecisionOnCpuOrForLargeWeights) {
  auto none = [](BuilderConfig&) {};
  EXPECT_EQ(head_exact(10, DeviceType::kCUDA, none), 1);
  EXPECT_EQ(head_exact(10, DeviceType::kCUDA, [](BuilderConfig& c) { c.clear_flag(BuilderFlag::kTF32); }), 0);
  EXPECT_EQ(head_exact(10, DeviceType::kCUDA, [](BuilderConfig& c) { c.set_flag(BuilderFlag::kFP16); }), 0);
  EXPECT_EQ(head_exact(10, DeviceType::kCPU, none), 0);
  // 32 x 131080 weights: over 2^22 elements (an LLM-size vocabulary).
  EXPECT_EQ(head_exact((int64_t{1} << 17) + 8, DeviceType::kCUDA, none), 0);
}

}  // namespace
}  // namespace kiln::passes
