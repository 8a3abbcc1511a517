// fuse_matmul_residual: golden graphs (post-norm, pre-norm with the sum kept, a plain Add,
// and what stays) and numerics against the unfused graph on the reference kernels.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::fused_from;
using testing::op_types;
using testing::run_graph;

constexpr int64_t kHidden = 8;

struct Block {
  ir::Graph g;
  ir::Value* x = nullptr;  // [2, 5, 8], the residual
  ir::Value* z = nullptr;  // the projection's output
  ir::Node* mm = nullptr;
};

// x -> MatMulBias(W, b) = z; the test adds the node summing z and x.
void projection(Block& b, std::mt19937& rng, Shape x_shape = Shape{2, 5, kHidden}) {
  ir::Graph& g = b.g;
  g.opset_imports[""] = 17;
  g.opset_imports["kiln"] = 1;
  g.opset_imports["com.microsoft"] = 1;
  b.x = g.add_value("x", DataType::kFloat32, x_shape).value();
  g.inputs.push_back(b.x);
  ir::Value* w = g.add_constant("w", test::random_tensor(DataType::kFloat32, {kHidden, kHidden}, rng));
  ir::Value* bias = g.add_constant("b", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
  b.z = g.add_value("z", DataType::kFloat32, x_shape).value();
  b.mm = g.add_node("MatMulBias", {b.x, w, bias}, {b.z}, "proj");
  b.mm->domain = "kiln";
  b.mm->opset = 1;
}

// y = SkipLayerNormalization(z, x, gamma, beta); `keep_sum`: its output 3 (the sum) is a graph output too.
ir::Node* skip_norm(Block& b, std::mt19937& rng, bool keep_sum) {
  ir::Graph& g = b.g;
  ir::Value* gamma = g.add_constant("gamma", test::random_tensor(DataType::kFloat32, {kHidden}, rng, 0.5, 1.5));
  ir::Value* beta = g.add_constant("beta", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
  ir::Value* y = g.add_value("y", DataType::kFloat32, *b.x->shape).value();
  std::vector<ir::Value*> outs = {y};
  if (keep_sum) {
    ir::Value* s = g.add_value("s", DataType::kFloat32, *b.x->shape).value();
    outs = {y, nullptr, nullptr, s};
  }
  ir::Node* n = g.add_node("SkipLayerNormalization", {b.z, b.x, gamma, beta}, outs, "norm");
  n->domain = "com.microsoft";
  n->opset = 1;
  n->attrs.set("epsilon", ir::Attribute::from_float(1e-5f));
  for (ir::Value* o : outs)
    if (o) g.outputs.push_back(o);
  return n;
}

std::map<std::string, Tensor> random_x(const ir::Graph& g, std::mt19937& rng) {
  return {{"x", test::random_tensor(DataType::kFloat32, shape_to_dims(*g.inputs[0]->shape), rng)}};
}

void expect_same_outputs(const ir::Graph& before, const ir::Graph& after, std::mt19937& rng) {
  auto in = random_x(before, rng);
  testing::expect_outputs_close(before, run_graph(after, in), run_graph(before, in), 1e-5, 1e-5);
}

Status run(ir::Graph& g) {
  PassContext ctx = context_for(g);
  return fuse_matmul_residual(g, ctx);
}

TEST(FuseMatMulResidual, PostNormBecomesGemmWithResidualThenLayerNorm) {
  std::mt19937 rng(1);
  Block b;
  projection(b, rng);
  skip_norm(b, rng, /*keep_sum=*/false);
  auto before = b.g.clone();
  ASSERT_TRUE(run(b.g).ok());
  EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "LayerNormalization"})) << ir::dump(b.g);
  const ir::Node& mm = *b.g.nodes()[0];
  ASSERT_EQ(mm.inputs.size(), 4u);
  EXPECT_EQ(mm.inputs[3]->name, "x");
  const ir::Node& ln = *b.g.nodes()[1];
  EXPECT_EQ(ln.inputs[0], mm.outputs[0]);
  EXPECT_EQ(ln.attrs.get_int("axis", 0), -1);
  EXPECT_FLOAT_EQ(ln.attrs.get_float("epsilon", 0), 1e-5f);
  EXPECT_EQ(fused_from(mm), (std::vector<std::string>{"proj", "norm"}));
  expect_same_outputs(*before, b.g, rng);
}

TEST(FuseMatMulResidual, PreNormSumIsWrittenByTheGemm) {
  std::mt19937 rng(2);
  Block b;
  projection(b, rng);
  skip_norm(b, rng, /*keep_sum=*/true);
  auto before = b.g.clone();
  ASSERT_TRUE(run(b.g).ok());
  ASSERT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "LayerNormalization"})) << ir::dump(b.g);
  EXPECT_EQ(b.g.nodes()[0]->outputs[0]->name, "s");
  EXPECT_EQ(b.g.nodes()[1]->inputs[0]->name, "s");
  EXPECT_EQ(b.g.nodes()[1]->outputs.size(), 1u);
  expect_same_outputs(*before, b.g, rng);
}

TEST(FuseMatMulResidual, PlainAddJoinsTheGemmWhateverTheOperandOrder) {
  for (bool z_first : {true, false}) {
    SCOPED_TRACE(z_first ? "Add(z, x)" : "Add(x, z)");
    std::mt19937 rng(3);
    Block b;
    projection(b, rng);
    ir::Value* s = b.g.add_value("s", DataType::kFloat32, *b.x->shape).value();
    b.g.add_node("Add", z_first ? std::vector<ir::Value*>{b.z, b.x} : std::vector<ir::Value*>{b.x, b.z}, {s}, "add")
        ->opset = 17;
    b.g.outputs.push_back(s);
    auto before = b.g.clone();
    ASSERT_TRUE(run(b.g).ok());
    ASSERT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias"})) << ir::dump(b.g);
    EXPECT_EQ(b.g.nodes()[0]->outputs[0]->name, "s");
    EXPECT_EQ(b.g.nodes()[0]->inputs.size(), 4u);
    expect_same_outputs(*before, b.g, rng);
  }
}

// A dynamic batch: the projection's rows through computed dims ([?, 8]) and the residual
// ["batch", 8] still fuse.
TEST(FuseMatMulResidual, AnonymousDimsMatchASymbol) {
  std::mt19937 rng(7);
  Block b;
  projection(b, rng, Shape{Dim::symbol("batch"), kHidden});
  b.z->shape = Shape{Dim::unknown(), kHidden};
  ir::Value* s = b.g.add_value("s", DataType::kFloat32).value();
  b.g.add_node("Add", {b.z, b.x}, {s}, "add")->opset = 17;
  b.g.outputs.push_back(s);
  ASSERT_TRUE(run(b.g).ok());
  EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias"})) << ir::dump(b.g);
}

// The residual computed after the projection: the GEMM moves after it.
TEST(FuseMatMulResidual, ResidualComputedLaterReordersTheGemm) {
  std::mt19937 rng(4);
  Block b;
  projection(b, rng);
  ir::Value* r = b.g.add_value("r", DataType::kFloat32, *b.x->shape).value();
  b.g.add_node("Neg", {b.x}, {r}, "neg")->opset = 17;
  ir::Value* s = b.g.add_value("s", DataType::kFloat32, *b.x->shape).value();
  b.g.add_node("Add", {b.z, r}, {s}, "add")->opset = 17;
  b.g.outputs.push_back(s);
  auto before = b.g.clone();
  ASSERT_TRUE(run(b.g).ok());
  EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"Neg", "MatMulBias"})) << ir::dump(b.g);
  EXPECT_TRUE(ir::verify(b.g).ok());
  expect_same_outputs(*before, b.g, rng);
}

TEST(FuseMatMulResidual, WhatDoesNotFuseStays) {
  struct Case {
    const char* what;
    void (*change)(Block&);
  };
  const Case cases[] = {
      {"z also a graph output", [](Block& b) { b.g.outputs.push_back(b.z); }},
      {"z read twice",
       [](Block& b) {
         ir::Value* t = b.g.add_value("t").value();
         b.g.add_node("Relu", {b.z}, {t}, "other")->opset = 17;
         b.g.outputs.push_back(t);
       }},
      {"an activation", [](Block& b) { b.mm->attrs.set("activation", ir::Attribute::from_string("Relu")); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::mt19937 rng(5);
    Block b;
    projection(b, rng);
    ir::Value* s = b.g.add_value("s", DataType::kFloat32, *b.x->shape).value();
    b.g.add_node("Add", {b.z, b.x}, {s}, "add")->opset = 17;
    b.g.outputs.push_back(s);
    c.change(b);
    const size_t nodes = b.g.nodes().size();
    ASSERT_TRUE(run(b.g).ok());
    EXPECT_EQ(b.g.nodes().size(), nodes) << ir::dump(b.g);
    EXPECT_EQ(b.mm->inputs.size(), 3u);
  }
  // A broadcast residual ([hidden]), one of another symbol or of another known size is not C.
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE(kind == 0 ? "[hidden] residual" : kind == 1 ? "other symbol" : "other size");
    std::mt19937 rng(6);
    Block b;
    projection(b, rng, Shape{kind == 2 ? Dim(4) : Dim::symbol("n"), kHidden});
    ir::Value* r =
        kind == 0
            ? b.g.add_constant("r", test::random_tensor(DataType::kFloat32, {kHidden}, rng))
            : b.g.add_value("r", DataType::kFloat32, Shape{kind == 1 ? Dim::symbol("m") : Dim(1), kHidden}).value();
    if (kind) b.g.inputs.push_back(r);
    ir::Value* s = b.g.add_value("s", DataType::kFloat32).value();
    b.g.add_node("Add", {b.z, r}, {s}, "add")->opset = 17;
    b.g.outputs.push_back(s);
    ASSERT_TRUE(run(b.g).ok());
    EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"MatMulBias", "Add"})) << ir::dump(b.g);
  }
}

}  // namespace
}  // namespace kiln::passes
