#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::op_types;
using testing::run_pass;

ir::Value* scalar(ir::Graph& g, const std::string& name, float v) {
  ir::Value* c = g.add_value(name, DataType::kFloat32, Shape{}).value();
  c->initializer = std::make_shared<Tensor>(Tensor::from_vector<float>(DataType::kFloat32, {}, {v}));
  return c;
}

ir::Value* node(ir::Graph& g, const std::string& op, std::vector<ir::Value*> in, const std::string& name) {
  ir::Value* out = g.add_value(name).value();
  g.add_node(op, std::move(in), {out}, name + "_node");
  return out;
}

int count(const ir::Graph& g, const std::string& op) {
  auto ops = op_types(g);
  return static_cast<int>(std::count(ops.begin(), ops.end(), op));
}

// A graph (opset 17) with one float input "x" of `shape`.
ir::Value* start_graph(ir::Graph& g, const Shape& shape) {
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, shape).value();
  g.inputs.push_back(x);
  return x;
}

// `after` computes what `before` does, bit for bit, on random x of `dims`.
void expect_same_results(const ir::Graph& before, const ir::Graph& after, const Dims& dims, unsigned seed) {
  std::mt19937 rng(seed);
  Tensor xv = test::random_tensor(DataType::kFloat32, dims, rng, -2, 2);
  auto want = testing::execute(before, {{"x", xv}});
  auto got = testing::execute(after, {{"x", xv}});
  testing::expect_outputs_close(before, got, want, 0, 0);
}

// BERT's per-layer mask: Where(m, c0_i, c1_i) with equal per-layer scalars, each feeding
// its layer; one Where is left, every layer reads it, and the results do not change.
TEST(EliminateCommonSubexpressions, MergesPerLayerCopiesWithEqualConstants) {
  ir::Graph g;
  ir::Value* x = start_graph(g, Shape{2, 3});
  ir::Value* m = node(g, "Greater", {x, scalar(g, "zero", 0.f)}, "m");
  std::vector<ir::Value*> outs;
  for (int layer = 0; layer < 4; ++layer) {
    const std::string l = std::to_string(layer);
    ir::Value* mask = node(g, "Where", {m, scalar(g, "lo" + l, -1e4f), scalar(g, "hi" + l, 0.f)}, "mask" + l);
    outs.push_back(node(g, "Add", {x, mask}, "y" + l));
  }
  // Different constants: not the same computation.
  ir::Value* other = node(g, "Where", {m, scalar(g, "lo_other", -2e4f), scalar(g, "hi_other", 0.f)}, "other");
  outs.push_back(node(g, "Add", {x, other}, "y_other"));
  g.outputs = outs;
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, eliminate_common_subexpressions, ctx);
  EXPECT_EQ(count(g, "Where"), 2) << ir::dump(g);  // the four equal ones merged; the other kept
  EXPECT_EQ(count(g, "Add"), 5);                   // graph outputs keep their producers
  EXPECT_EQ(ctx.stats["merged_common_subexpressions"], 3);
  expect_same_results(*before, g, {2, 3}, 3);
}

// Chains merge in one sweep: once the first pair merged, their consumers are equal too.
TEST(EliminateCommonSubexpressions, MergesWholeChainsAndDifferentAttributesStayApart) {
  ir::Graph g;
  ir::Value* x = start_graph(g, Shape{4, 5});
  ir::Value* a1 = node(g, "Relu", {x}, "a1");
  ir::Value* a2 = node(g, "Relu", {x}, "a2");
  ir::Value* b1 = node(g, "Softmax", {a1}, "b1");
  ir::Value* b2 = node(g, "Softmax", {a2}, "b2");
  ir::Value* b3 = node(g, "Softmax", {a2}, "b3");
  b3->producer->attrs.set("axis", ir::Attribute::from_int(0));  // another axis: another result
  ir::Value* s = node(g, "Add", {b1, b2}, "s");
  g.outputs = {node(g, "Mul", {s, b3}, "out")};
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, eliminate_common_subexpressions, ctx);
  EXPECT_EQ(count(g, "Relu"), 1) << ir::dump(g);
  EXPECT_EQ(count(g, "Softmax"), 2);
  const ir::Node* add = g.find_value("s")->producer;
  EXPECT_EQ(add->inputs[0], add->inputs[1]);
  expect_same_results(*before, g, {4, 5}, 4);
}

// Random ops draw anew each time (Dropout stands for them: kiln imports no Random* op); outputs that are graph outputs
// or read by a body by name keep their producers.
TEST(EliminateCommonSubexpressions, LeavesRandomOpsOutputsAndCapturesAlone) {
  ir::Graph g;
  ir::Value* x = start_graph(g, Shape{2, 2});
  ir::Value* r1 = node(g, "Dropout", {x}, "r1");
  ir::Value* r2 = node(g, "Dropout", {x}, "r2");
  ir::Value* e1 = node(g, "Exp", {x}, "e1");
  ir::Value* e2 = node(g, "Exp", {x}, "e2");  // a graph output: stays
  ir::Value* n1 = node(g, "Neg", {x}, "n1");
  ir::Value* n2 = node(g, "Neg", {x}, "n2");  // read by a Loop body by name: stays
  ir::Value* loop = testing::add_loop_reading(g, n2, n1);
  g.outputs = {r1, r2, e1, e2, loop};
  PassContext ctx = context_for(g);
  run_pass(g, eliminate_common_subexpressions, ctx);
  EXPECT_EQ(count(g, "Dropout"), 2) << ir::dump(g);
  EXPECT_EQ(count(g, "Exp"), 2);
  EXPECT_EQ(count(g, "Neg"), 2);
  EXPECT_EQ(ctx.stats["merged_common_subexpressions"], 0);
}

}  // namespace
}  // namespace kiln::passes

namespace kiln::passes {
namespace {

// An Identity whose output a Loop body reads by name stays (the body has no other way to it).
TEST(EliminateIdentity, KeepsOutputsReadBySubgraphBodies) {
  ir::Graph g;
  ir::Value* x = start_graph(g, Shape{2, 2});
  ir::Value* read = node(g, "Identity", {x}, "read");    // read by the body: stays
  ir::Value* plain = node(g, "Identity", {x}, "plain");  // an ordinary use: goes
  ir::Value* y = node(g, "Neg", {plain}, "y");
  g.outputs = {y, testing::add_loop_reading(g, read, y)};
  auto before = g.clone();
  PassContext ctx = testing::context_for(g);
  testing::run_pass(g, eliminate_identity, ctx);
  EXPECT_EQ(count(g, "Identity"), 1) << ir::dump(g);
  EXPECT_NE(g.find_value("read"), nullptr);
  expect_same_results(*before, g, {2, 2}, 5);
}

}  // namespace
}  // namespace kiln::passes
