// fold_layernorm_matmul: the golden graph of a pre-norm block's GEMM -> LayerNorm -> GEMM, numerics
// against the unfolded graph on the reference kernels, and what stays (a LayerNorm with a second
// reader, too few rows, a CPU engine, an FP32 engine).
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "harness/scoped_env.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::fused_from;
using testing::op_types;
using testing::run_graph;

constexpr int64_t kH = 16, kF = 24;

struct Block {
  ir::Graph g;
  ir::Value* y = nullptr;  // LayerNorm's output
  ir::Node* ln = nullptr;
};

ir::Node* kiln_node(ir::Graph& g, const char* op, std::vector<ir::Value*> ins, ir::Value* out, const char* name) {
  ir::Node* n = g.add_node(op, std::move(ins), {out}, name);
  n->domain = "kiln";
  n->opset = 1;
  return n;
}

// x [2, 6, kH], a [2, 6, kH] -> h = MatMulBias(a, Wo, bo, x) -> y = LayerNorm(h) -> u = MatMulBias(y, W1, b1, GELU);
// outputs u and h (the residual stream). fp16 throughout, as after reduce_precision.
void pre_norm(Block& b, std::mt19937& rng) {
  ir::Graph& g = b.g;
  g.opset_imports[""] = 17;
  g.opset_imports["kiln"] = 1;
  const DataType t = DataType::kFloat16;
  const Shape sh{2, 6, kH};
  ir::Value* x = g.add_value("x", t, sh).value();
  ir::Value* a = g.add_value("a", t, sh).value();
  g.inputs = {x, a};
  auto cst = [&](const char* name, Dims d, double lo, double hi) {
    return g.add_constant(name, test::random_tensor(t, d, rng, lo, hi));
  };
  ir::Value* h = g.add_value("h", t, sh).value();
  kiln_node(g, "MatMulBias", {a, cst("wo", {kH, kH}, -0.5, 0.5), cst("bo", {kH}, -0.2, 0.2), x}, h, "proj");
  b.y = g.add_value("y", t, sh).value();
  b.ln = g.add_node("LayerNormalization", {h, cst("gamma", {kH}, 0.5, 1.5), cst("beta", {kH}, -0.2, 0.2)}, {b.y}, "ln");
  b.ln->opset = 17;
  b.ln->attrs.set("axis", ir::Attribute::from_int(-1));
  b.ln->attrs.set("epsilon", ir::Attribute::from_float(1e-5f));
  ir::Value* u = g.add_value("u", t, Shape{2, 6, kF}).value();
  ir::Node* fc =
      kiln_node(g, "MatMulBias", {b.y, cst("w1", {kH, kF}, -0.5, 0.5), cst("b1", {kF}, -0.2, 0.2)}, u, "fc1");
  fc->attrs.set("activation", ir::Attribute::from_string("GeluTanh"));
  g.outputs = {u, h};
}

BuilderConfig fp16_cuda() {
  BuilderConfig cfg;
  cfg.set_device(DeviceType::kCUDA);
  cfg.set_flag(BuilderFlag::kFP16);
  return cfg;
}

Status run(ir::Graph& g, const BuilderConfig& cfg) {
  PassContext ctx = context_for(g, cfg);
  KILN_RETURN_IF_ERROR(infer_shapes(g, ctx));
  KILN_RETURN_IF_ERROR(fold_layernorm_matmul(g, ctx));
  KILN_RETURN_IF_ERROR(ir::verify(g));
  return infer_shapes(g, ctx);
}

std::map<std::string, Tensor> random_inputs(std::mt19937& rng) {
  return {{"x", test::random_tensor(DataType::kFloat16, {2, 6, kH}, rng, 0.0, 2.0)},
          {"a", test::random_tensor(DataType::kFloat16, {2, 6, kH}, rng)}};
}

TEST(FoldLayerNormMatMul, PreNormBlockFoldsIntoBothGemms) {
  test::ScopedEnv any("KILN_NORM_FOLD_ANY_DEVICE", "1"), rows("KILN_NORM_FOLD_MIN_ROWS", "4");
  std::mt19937 rng(3);
  Block b, before;
  pre_norm(b, rng);
  std::mt19937 rng2(3);
  pre_norm(before, rng2);
  const BuilderConfig cfg = fp16_cuda();
  ASSERT_TRUE(run(b.g, cfg).ok());
  EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBiasRowStats", "NormMatMulBias"})) << ir::dump(b.g);
  const ir::Node& stats = *b.g.nodes()[0];
  const ir::Node& fold = *b.g.nodes()[1];
  EXPECT_EQ(fold.inputs[1], stats.outputs[1]) << "the folded GEMM reads the residual GEMM's statistics";
  EXPECT_EQ(fold.inputs[0], stats.outputs[0]) << "and h itself";
  EXPECT_EQ(fold.attrs.get_string("activation", ""), "GeluTanh");
  EXPECT_EQ(fused_from(fold), (std::vector<std::string>{"ln", "fc1"}));
  ASSERT_TRUE(stats.outputs[1]->shape.has_value());
  EXPECT_EQ(*stats.outputs[1]->shape, (Shape{4, 12}));

  ASSERT_TRUE(run(before.g, BuilderConfig()).ok());  // a CPU build: nothing to fold, shapes only
  auto in = random_inputs(rng);
  // fp16 storage of W diag(gamma) and the fp16 outputs: within a few fp16 ulps.
  testing::expect_outputs_close(before.g, run_graph(b.g, in), run_graph(before.g, in), 1e-2, 1e-2);
}

TEST(FoldLayerNormMatMul, WhatStays) {
  test::ScopedEnv any("KILN_NORM_FOLD_ANY_DEVICE", "1");
  {
    SCOPED_TRACE("too few rows (12 < the default 16384)");
    std::mt19937 rng(4);
    Block b;
    pre_norm(b, rng);
    ASSERT_TRUE(run(b.g, fp16_cuda()).ok());
    EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "LayerNormalization", "MatMulBias"}));
  }
  test::ScopedEnv rows("KILN_NORM_FOLD_MIN_ROWS", "4");
  {
    SCOPED_TRACE("the LayerNorm's output has a second reader");
    std::mt19937 rng(5);
    Block b;
    pre_norm(b, rng);
    b.g.outputs.push_back(b.y);
    ASSERT_TRUE(run(b.g, fp16_cuda()).ok());
    EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "LayerNormalization", "MatMulBias"}));
  }
  {
    SCOPED_TRACE("a CPU engine");
    std::mt19937 rng(6);
    Block b;
    pre_norm(b, rng);
    BuilderConfig cpu;
    cpu.set_flag(BuilderFlag::kFP16);
    ASSERT_TRUE(run(b.g, cpu).ok());
    EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "LayerNormalization", "MatMulBias"}));
  }
  {
    SCOPED_TRACE("an FP32 engine");
    std::mt19937 rng(7);
    Block b;
    pre_norm(b, rng);
    BuilderConfig fp32;
    fp32.set_device(DeviceType::kCUDA);
    ASSERT_TRUE(run(b.g, fp32).ok());
    EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "LayerNormalization", "MatMulBias"}));
  }
}

}  // namespace
}  // namespace kiln::passes
