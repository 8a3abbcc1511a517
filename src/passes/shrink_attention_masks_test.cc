// shrink_attention_masks: BERT's eager mask (padding And all-true, Expand, Where) reaches
// FusedAttention as the unexpanded [B,1,1,S] Where; the outputs stay the same on the CPU
// reference; masks that are not broadcasts, or whose constant is not neutral, stay.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::run_pass;

constexpr int64_t B = 2, H = 3, S = 8, D = 16;

struct Net {
  ir::Graph g;
  ir::Node* attention = nullptr;
  ir::Node* where = nullptr;
};

// pad [B,1,1,S] bool -> And(c [1,1,S,1]) -> Expand [B,1,S,S] -> Where(., 0, -1e4) -> mask
// of FusedAttention over plain [B,H,S,D] operands. `dynamic`: B is the symbol "B" and pad
// first goes through Reshape(pad, Abs(Shape(pad))), whose dims symbolic inference cannot
// know (it follows Shape through Gather, Concat and the like, not Abs): the shapes below it
// are [?,?,...].
void build(Net& n, bool all_true, bool dynamic = false) {
  ir::Graph& g = n.g;
  auto input = [&](const std::string& name, DataType t, Shape s) {
    ir::Value* v = g.add_value(name, t, s).value();
    g.inputs.push_back(v);
    return v;
  };
  auto node = [&](const std::string& op, std::vector<ir::Value*> ins, DataType t, Shape s) {
    ir::Value* o = g.add_unique_value(op, t);
    o->shape = s;
    ir::Node* nd = g.add_node(op, ins, {o}, g.unique_name(op));
    nd->opset = 17;
    return nd;
  };
  const Dim b = dynamic ? Dim::symbol("B") : Dim(B), unknown = Dim::unknown();
  ir::Value* q = input("q", DataType::kFloat32, Shape{b, H, S, D});
  ir::Value* k = input("k", DataType::kFloat32, Shape{b, H, S, D});
  ir::Value* v = input("v", DataType::kFloat32, Shape{b, H, S, D});
  ir::Value* pad = input("pad", DataType::kBool, Shape{b, 1, 1, S});
  if (dynamic) {
    ir::Node* shape = node("Shape", {pad}, DataType::kInt64, Shape{4});
    ir::Node* abs = node("Abs", {shape->outputs[0]}, DataType::kInt64, Shape{4});  // beyond symbolic shape values
    pad =
        node("Reshape", {pad, abs->outputs[0]}, DataType::kBool, Shape{unknown, unknown, unknown, unknown})->outputs[0];
  }
  std::vector<uint8_t> bits(S, 1);
  if (!all_true) bits[3] = 0;
  Tensor c = Tensor::empty(DataType::kBool, {1, 1, S, 1});
  for (int64_t i = 0; i < S; ++i) c.set_from_double(i, bits[static_cast<size_t>(i)]);
  const Shape full = dynamic ? Shape{unknown, unknown, S, unknown} : Shape{B, 1, S, S};
  ir::Node* both = node("And", {g.add_constant("bidirectional", c), pad}, DataType::kBool, full);
  ir::Value* to = g.add_constant("to", Tensor::from_vector<int64_t>(DataType::kInt64, {4}, {1, 1, S, S}));
  ir::Node* expand = node("Expand", {both->outputs[0], to}, DataType::kBool, full);
  n.where =
      node("Where",
           {expand->outputs[0], g.add_constant("zero", Tensor::from_vector<float>(DataType::kFloat32, {1}, {0.f})),
            g.add_constant("low", Tensor::from_vector<float>(DataType::kFloat32, {1}, {-1e4f}))},
           DataType::kFloat32, full);
  ir::Value* o = g.add_unique_value("o", DataType::kFloat32);
  o->shape = Shape{b, H, S, D};
  n.attention = g.add_node("FusedAttention", {q, k, v, n.where->outputs[0]}, {o}, "attention");
  n.attention->domain = "kiln";
  n.attention->opset = 1;
  n.attention->attrs.set("scale", ir::Attribute::from_float(0.25f));
  for (const char* view : {"q_view", "k_view", "v_view", "o_view"})
    n.attention->attrs.set(view, ir::Attribute::from_ints({}));
  g.outputs.push_back(o);
}

std::map<std::string, Tensor> inputs() {
  std::mt19937 rng(7);
  std::map<std::string, Tensor> in;
  for (const char* name : {"q", "k", "v"}) in[name] = test::random_tensor(DataType::kFloat32, {B, H, S, D}, rng, -2, 2);
  Tensor pad = Tensor::empty(DataType::kBool, {B, 1, 1, S});
  for (int64_t i = 0; i < pad.numel(); ++i) pad.set_from_double(i, (i * 5) % 7 != 0);  // some keys padded
  in["pad"] = pad;
  return in;
}

int count(const ir::Graph& g, const std::string& op) {
  int c = 0;
  for (auto& n : g.nodes()) c += n->op_type == op;
  return c;
}

TEST(ShrinkAttentionMasks, BertEagerMaskReachesAttentionUnexpanded) {
  Net n;
  build(n, /*all_true=*/true);
  auto before = n.g.clone();
  PassContext ctx = context_for(n.g);
  run_pass(n.g, shrink_attention_masks, ctx);
  EXPECT_EQ(ctx.stats["shrunk_attention_masks"], 1);
  const ir::Value* mask = n.attention->inputs[3];
  ASSERT_TRUE(mask->producer) << ir::dump(n.g);
  EXPECT_EQ(mask->producer->op_type, "Where");
  ASSERT_TRUE(mask->shape);
  EXPECT_EQ(shape_to_string(*mask->shape), shape_to_string(Shape{B, 1, 1, S}));
  EXPECT_EQ(mask->producer->inputs[0]->name, "pad") << "the Where reads the padding mask itself";
  EXPECT_EQ(count(n.g, "Expand"), 0) << ir::dump(n.g);
  EXPECT_EQ(count(n.g, "And"), 0) << ir::dump(n.g);
  EXPECT_EQ(count(n.g, "Where"), 1) << ir::dump(n.g);
  const auto in = inputs();
  testing::expect_outputs_close(*before, testing::run_graph(n.g, in), testing::run_graph(*before, in), 1e-6, 1e-6);
}

// A dynamic batch: symbolic shapes cannot say the padding mask is smaller than the
// expanded one; the first profile's opt dims do (B = 2 there), and the rewrite holds at
// every B (run at B = 2 here).
TEST(ShrinkAttentionMasks, DynamicBatchShrinksByTheOptShapes) {
  Net n;
  build(n, /*all_true=*/true, /*dynamic=*/true);
  auto before = n.g.clone();
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  OptimizationProfile prof;
  for (const char* name : {"q", "k", "v"})
    ASSERT_TRUE(prof.set_shape(name, {1, H, S, D}, {B, H, S, D}, {4, H, S, D}).ok());
  ASSERT_TRUE(prof.set_shape("pad", {1, 1, 1, S}, {B, 1, 1, S}, {4, 1, 1, S}).ok());
  cfg.add_optimization_profile(prof);
  PassContext ctx = context_for(n.g, cfg);
  run_pass(n.g, shrink_attention_masks, ctx);
  EXPECT_EQ(ctx.stats["shrunk_attention_masks"], 1) << ir::dump(n.g);
  const ir::Value* mask = n.attention->inputs[3];
  ASSERT_TRUE(mask->producer);
  EXPECT_EQ(mask->producer->op_type, "Where");
  EXPECT_EQ(mask->producer->inputs[0]->producer->op_type, "Reshape") << "the Where reads the padding mask itself";
  EXPECT_EQ(count(n.g, "Expand"), 0) << ir::dump(n.g);
  const auto in = inputs();
  testing::expect_outputs_close(*before, testing::run_graph(n.g, in), testing::run_graph(*before, in), 1e-6, 1e-6);
  // Without a profile nothing says it is smaller: it stays.
  Net plain;
  build(plain, /*all_true=*/true, /*dynamic=*/true);
  PassContext no_profile = context_for(plain.g);
  run_pass(plain.g, shrink_attention_masks, no_profile);
  EXPECT_EQ(no_profile.stats["shrunk_attention_masks"], 0);
}

TEST(ShrinkAttentionMasks, AndWithAConstantThatMasksStays) {
  Net n;
  build(n, /*all_true=*/false);  // query row 3 masked: the [B,1,S,S] shape carries information
  PassContext ctx = context_for(n.g);
  run_pass(n.g, shrink_attention_masks, ctx);
  EXPECT_EQ(ctx.stats["shrunk_attention_masks"], 0);
  EXPECT_EQ(n.attention->inputs[3], n.where->outputs[0]);
  EXPECT_EQ(count(n.g, "Expand"), 1);
}

TEST(ShrinkAttentionMasks, RunsInTheCudaPipelineOnly) {
  // The CPU pipeline has no FusedAttention; a CUDA FP16 pipeline over the same graph keeps
  // the attention and shrinks its mask before reduce_precision halves it.
  Net n;
  build(n, /*all_true=*/true);
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  PassContext ctx = context_for(n.g, cfg);
  ASSERT_TRUE(run_pipeline(n.g, ctx).ok());
  EXPECT_EQ(ctx.stats["shrunk_attention_masks"], 1) << ir::dump(n.g);
  EXPECT_EQ(count(n.g, "Expand"), 0) << ir::dump(n.g);
}

}  // namespace
}  // namespace kiln::passes
