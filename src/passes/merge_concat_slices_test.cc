// merge_concat_slices: golden graphs and the same results as the unoptimized graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <limits>
#include <random>

#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;

ir::Value* ints(ir::Graph& g, const std::string& name, const std::vector<int64_t>& v) {
  Tensor t = Tensor::empty(DataType::kInt64, {static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data_as<int64_t>());  // (INT64_MAX has no exact double)
  return g.add_constant(name, t);
}

// Slice(t, [begin], [end], [axis]) as a new node; its output.
ir::Value* slice(ir::Graph& g, ir::Value* t, int64_t begin, int64_t end, int64_t axis, const std::string& name) {
  ir::Value* out = g.add_value(name).value();
  g.add_node("Slice", {t, ints(g, name + "_s", {begin}), ints(g, name + "_e", {end}), ints(g, name + "_a", {axis})},
             {out}, name);
  return out;
}

// YOLOv8's C2f: t = Relu(x) [N, 2c, H, W]; a, b = halves of t; m = Sigmoid(b);
// y = Concat(a, b, m) along the channels; z = Tanh(y).
struct C2f {
  ir::Graph g;
  ir::Value* b = nullptr;
};

void build_c2f(C2f& c, int64_t second_begin, int64_t second_end, int64_t axis_attr, int64_t slice_axis) {
  ir::Graph& g = c.g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 8, 3, 5}).value();
  g.inputs.push_back(x);
  ir::Value* t = g.add_value("t").value();
  g.add_node("Relu", {x}, {t}, "relu");
  ir::Value* a = slice(g, t, 0, 4, slice_axis, "a");
  c.b = slice(g, t, second_begin, second_end, slice_axis, "b");
  ir::Value* m = g.add_value("m").value();
  g.add_node("Sigmoid", {c.b}, {m}, "sig");
  ir::Value* y = g.add_value("y").value();
  ir::Node* cat = g.add_node("Concat", {a, c.b, m}, {y}, "cat");
  cat->attrs.set("axis", ir::Attribute::from_int(axis_attr));
  ir::Value* z = g.add_value("z").value();
  g.add_node("Tanh", {y}, {z}, "tanh");
  g.outputs.push_back(z);
}

TEST(MergeConcatSlices, HalvesOfOneTensorBecomeTheTensor) {
  std::mt19937 rng(5);
  // End 8 and INT64_MAX (PyTorch's open end) both reach the extent; axis -3 is axis 1 of rank 4.
  for (int64_t end : {int64_t(8), std::numeric_limits<int64_t>::max()}) {
    for (int64_t axis : {int64_t(1), int64_t(-3)}) {
      SCOPED_TRACE("end " + std::to_string(end) + ", axis " + std::to_string(axis));
      C2f c;
      build_c2f(c, 4, end, 1, axis);
      auto before = c.g.clone();
      PassContext ctx = context_for(c.g);
      ASSERT_TRUE(run_pipeline(c.g, ctx).ok());
      EXPECT_EQ(ctx.stats["merged_concat_slices"], 1);
      // The first half's Slice is gone; the second stays for the Sigmoid.
      EXPECT_EQ(op_types(c.g), (std::vector<std::string>{"Relu", "Slice", "Sigmoid", "Concat", "Tanh"}));
      for (auto& n : c.g.nodes())
        if (n->op_type == "Concat") {
          ASSERT_EQ(n->inputs.size(), 2u);
          EXPECT_EQ(n->inputs[0]->name, "t");
        }
      Tensor xin = test::random_tensor(DataType::kFloat32, {2, 8, 3, 5}, rng);
      auto want = run_graph(*before, {{"x", xin}});
      auto got = run_graph(c.g, {{"x", xin}});
      EXPECT_TRUE(test::tensors_close(got.at("z"), want.at("z"), 0, 0));
    }
  }
}

TEST(MergeConcatSlices, LeavesGapsOverlapsOtherAxesAndPartialCover) {
  // The second slice's [begin, end): a gap after the first, an overlap with it, a run
  // that covers only part of t.
  const std::vector<std::array<int64_t, 2>> cases = {{5, 8}, {3, 8}, {4, 7}};
  std::mt19937 rng(6);
  for (const auto& k : cases) {
    SCOPED_TRACE(std::to_string(k[0]) + ".." + std::to_string(k[1]));
    C2f c;
    build_c2f(c, k[0], k[1], 1, 1);
    auto before = c.g.clone();
    PassContext ctx = context_for(c.g);
    ASSERT_TRUE(run_pipeline(c.g, ctx).ok());
    EXPECT_EQ(ctx.stats["merged_concat_slices"], 0);
    Tensor xin = test::random_tensor(DataType::kFloat32, {2, 8, 3, 5}, rng);
    EXPECT_TRUE(
        test::tensors_close(run_graph(c.g, {{"x", xin}}).at("z"), run_graph(*before, {{"x", xin}}).at("z"), 0, 0));
  }
  // Slices along W (axis 3) feeding a Concat along C: not the Concat's axis, left alone.
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 4, 3, 6}).value();
  g.inputs.push_back(x);
  ir::Value* a = slice(g, x, 0, 3, 3, "a");
  ir::Value* b = slice(g, x, 3, 6, 3, "b");
  ir::Value* y = g.add_value("y").value();
  g.add_node("Concat", {a, b}, {y}, "cat")->attrs.set("axis", ir::Attribute::from_int(1));
  g.outputs.push_back(y);
  auto before = g.clone();
  PassContext ctx = context_for(g);
  ASSERT_TRUE(run_pipeline(g, ctx).ok());
  EXPECT_EQ(ctx.stats["merged_concat_slices"], 0);
  Tensor xin = test::random_tensor(DataType::kFloat32, {2, 4, 3, 6}, rng);
  EXPECT_TRUE(test::tensors_close(run_graph(g, {{"x", xin}}).at("y"), run_graph(*before, {{"x", xin}}).at("y"), 0, 0));
}

}  // namespace
}  // namespace kiln::passes
