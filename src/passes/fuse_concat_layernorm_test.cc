// fuse_concat_layernorm: ViT's class token + patch embeddings concatenated, then the first
// block's SkipLayerNormalization (position embeddings as skip), become one
// ConcatSkipLayerNormalization (golden graph, same outputs, every one of the norm's, on the
// reference kernels); an Expand of the token over the batch goes with them; CPU engines, a
// concatenation read elsewhere and a head of another batch stay as they are.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::fused_from;
using testing::op_types;
using testing::run_graph;

constexpr int64_t kBatch = 2, kPatches = 6, kHidden = 8;

struct Net {
  ir::Graph g;
};

// patches [kBatch, kPatches, kHidden] -> Concat(token', patches, axis 1) -> SkipLayerNormalization(.,
// pos [1, kPatches + 1, kHidden], gamma, beta) -> y and the sum s. token' is `token` [1, 1, kHidden]
// Expanded to the batch (`expand`), else a [kBatch, 1, kHidden] constant, or (`symbolic_head`) a
// graph input "token" of batch "m" that nothing proves to be kBatch. `extra_reader`: the
// concatenation is a graph output too.
void build(Net& n, std::mt19937& rng, bool expand, bool symbolic_head = false, bool extra_reader = false) {
  ir::Graph& g = n.g;
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  ir::Value* patches = g.add_value("patches", DataType::kFloat32, Shape{kBatch, kPatches, kHidden}).value();
  g.inputs.push_back(patches);
  ir::Value* head = nullptr;
  if (expand) {
    ir::Value* token = g.add_constant("token", test::random_tensor(DataType::kFloat32, {1, 1, kHidden}, rng));
    ir::Value* to = g.add_constant("to", Tensor::from_vector<int64_t>(DataType::kInt64, {3}, {kBatch, 1, kHidden}));
    head = g.add_value("token_b", DataType::kFloat32, Shape{kBatch, 1, kHidden}).value();
    g.add_node("Expand", {token, to}, {head}, "expand_token")->opset = 13;
  } else if (symbolic_head) {
    head = g.add_value("token", DataType::kFloat32, Shape{Dim::symbol("m"), 1, kHidden}).value();
    g.inputs.push_back(head);
  } else {
    head = g.add_constant("token", test::random_tensor(DataType::kFloat32, {kBatch, 1, kHidden}, rng));
  }
  ir::Value* pos = g.add_constant("pos", test::random_tensor(DataType::kFloat32, {1, kPatches + 1, kHidden}, rng));
  ir::Value* gamma = g.add_constant("gamma", test::random_tensor(DataType::kFloat32, {kHidden}, rng, 0.5, 1.5));
  ir::Value* beta = g.add_constant("beta", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
  const Shape xs{kBatch, kPatches + 1, kHidden};
  ir::Value* x = g.add_value("x", DataType::kFloat32, xs).value();
  ir::Node* cat = g.add_node("Concat", {head, patches}, {x}, "cat_token");
  cat->opset = 13;
  cat->attrs.set("axis", ir::Attribute::from_int(1));
  ir::Value* y = g.add_value("y", DataType::kFloat32, xs).value();
  ir::Value* s = g.add_value("s", DataType::kFloat32, xs).value();
  ir::Node* norm = g.add_node("SkipLayerNormalization", {x, pos, gamma, beta}, {y, nullptr, nullptr, s}, "ln_1");
  norm->domain = "com.microsoft";
  norm->opset = 1;
  norm->attrs.set("epsilon", ir::Attribute::from_float(1e-6f));
  g.outputs = {y, s};
  if (extra_reader) g.outputs.push_back(x);
}

Status run(ir::Graph& g, DeviceType device = DeviceType::kCUDA) {
  return testing::run_for_device(fuse_concat_layernorm, g, device);
}

TEST(FuseConcatLayerNorm, ClassTokenConcatAndNormBecomeOneNode) {
  std::mt19937 rng(1);
  for (bool expand : {true, false}) {
    SCOPED_TRACE(expand ? "expanded token" : "token constant");
    Net n;
    build(n, rng, expand);
    std::unique_ptr<ir::Graph> before(n.g.clone());
    ASSERT_TRUE(run(n.g).ok());
    ASSERT_TRUE(ir::verify(n.g).ok());
    EXPECT_EQ(op_types(n.g), (std::vector<std::string>{"ConcatSkipLayerNormalization"}));
    const ir::Node& f = *n.g.nodes()[0];
    EXPECT_EQ(f.domain, "kiln");
    ASSERT_EQ(f.inputs.size(), 5u);
    EXPECT_EQ(f.inputs[0]->name, "token");  // the Expand's input: read once for every batch
    EXPECT_EQ(f.inputs[1]->name, "patches");
    EXPECT_EQ(f.inputs[2]->name, "pos");
    ASSERT_EQ(f.outputs.size(), 4u);
    EXPECT_EQ(f.outputs[3]->name, "s");
    EXPECT_FLOAT_EQ(f.attrs.get_float("epsilon", 0), 1e-6f);
    EXPECT_EQ(fused_from(f), expand ? (std::vector<std::string>{"cat_token", "expand_token", "ln_1"})
                                    : (std::vector<std::string>{"cat_token", "ln_1"}));
    for (int trial = 0; trial < 3; ++trial) {
      std::map<std::string, Tensor> in = {
          {"patches", test::random_tensor(DataType::kFloat32, {kBatch, kPatches, kHidden}, rng)}};
      testing::expect_outputs_close(*before, run_graph(n.g, in), run_graph(*before, in), 1e-6, 1e-6);
    }
  }
}

TEST(FuseConcatLayerNorm, LeavesCpuEnginesSharedConcatsAndOtherBatches) {
  std::mt19937 rng(2);
  const std::vector<std::string> unfused = {"Concat", "SkipLayerNormalization"};
  Net cpu, shared, other;
  build(cpu, rng, false);
  ASSERT_TRUE(run(cpu.g, DeviceType::kCPU).ok());
  EXPECT_EQ(op_types(cpu.g), unfused);
  build(shared, rng, false, false, /*extra_reader=*/true);
  ASSERT_TRUE(run(shared.g).ok());
  EXPECT_EQ(op_types(shared.g), unfused);
  build(other, rng, false, /*symbolic_head=*/true);  // batch "m" against 2: not provably one set or rest's
  ASSERT_TRUE(run(other.g).ok());
  EXPECT_EQ(op_types(other.g), unfused);
}

}  // namespace
}  // namespace kiln::passes
