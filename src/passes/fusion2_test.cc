// Golden before/after tests for cancel_transposes, fuse_layernorm, fuse_rmsnorm and
// fuse_silu, with numerical equality of the rewritten graph and the original on random
// inputs, negative cases, and kiln.fused_from provenance (through the engine file too).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "builder/network_impl.h"
#include "harness/op_harness.h"
#include "kiln/kiln.h"
#include "ops/op.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"
#include "plan/engine_file.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::expect_outputs_close;
using testing::fused_from;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

// Graph-building helpers: every op has one output with a fresh name, or `out`.
struct Build {
  ir::Graph& g;
  DataType dt = DataType::kFloat32;

  ir::Value* input(const std::string& name, Shape s) {
    ir::Value* v = g.add_value(name, dt, std::move(s)).value();
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* c(double v, Dims d = {}) {
    return g.add_constant("c", Tensor::from_vector<double>(dt, d, std::vector<double>(dims_volume(d), v)));
  }
  ir::Value* ints(std::vector<int64_t> v) {
    const auto n = static_cast<int64_t>(v.size());
    return g.add_constant("i", Tensor::from_vector<int64_t>(DataType::kInt64, {n}, v));
  }
  ir::Value* random(Dims d, std::mt19937& rng, double lo = -1, double hi = 1) {
    return g.add_constant("w", test::random_tensor(dt, d, rng, lo, hi));
  }
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const std::string& out = "") {
    ir::Value* o = out.empty() ? g.add_unique_value("t") : g.add_value(out).value();
    g.add_node(type, ins, {o}, g.unique_name(type));
    return o;
  }
  ir::Value* bin(const std::string& type, ir::Value* a, ir::Value* b, bool swap, const std::string& out = "") {
    return swap ? op(type, {b, a}, out) : op(type, {a, b}, out);
  }
  static ir::Node* set(ir::Value* v, const std::string& name, ir::Attribute a) {
    v->producer->attrs.set(name, std::move(a));
    return v->producer;
  }
};

ir::Attribute ints_attr(std::vector<int64_t> v) { return ir::Attribute::from_ints(std::move(v)); }

// Runs both graphs on the same random inputs (dims from `dims`, by input name) and compares every output.
void expect_same_outputs(const ir::Graph& before, const ir::Graph& after, const std::map<std::string, Dims>& dims,
                         double rtol = 1e-5, double atol = 1e-5, unsigned seed = 5) {
  std::mt19937 rng(seed);
  std::map<std::string, Tensor> in;
  for (ir::Value* v : before.inputs) in[v->name] = test::random_tensor(v->dtype, dims.at(v->name), rng, -2, 2);
  auto want = run_graph(before, in);
  auto got = run_graph(after, in);
  expect_outputs_close(before, got, want, rtol, atol);
}

void expect_unchanged(ir::Graph& g, PassFn pass) {
  auto types = op_types(g);
  const size_t values = g.values().size();
  PassContext ctx = context_for(g);
  run_pass(g, pass, ctx);
  EXPECT_EQ(op_types(g), types) << ir::dump(g);
  EXPECT_EQ(g.values().size(), values);
}

}  // namespace

// ---------------------------------------------------------------- provenance

TEST(FusionProvenance, NamesAreFlattenedInOrderWithoutRepeats) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2});
  ir::Value* y = b.op("Relu", {x});
  ir::Node* a = y->producer;
  a->name = "a";
  ir::Node* f = b.op("Neg", {y})->producer;
  f->name = "f";
  set_fused_names(*f, {"c1", "bn1"});
  ir::Node* unnamed = b.op("Abs", {x})->producer;
  unnamed->name.clear();
  ir::Node* target = b.op("Exp", {x})->producer;
  record_fusion(*target, {a, f, a, unnamed});
  EXPECT_EQ(fused_from(*target), (std::vector<std::string>{"a", "c1", "bn1", "Abs"}));
}

TEST(FusionProvenance, ConvBatchNormReluKeepsEveryOriginalNameInTheEngineFile) {
  // Conv -> BatchNormalization folds into the Conv, then Relu joins it in a FusedConv:
  // the FusedConv names all three, and the attribute survives serialization.
  std::mt19937 rng(1);
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{1, 3, 6, 6});
  ir::Value* y = b.op("Conv", {x, b.random({4, 3, 3, 3}, rng), b.random({4}, rng)});
  y->producer->name = "conv1";
  ir::Value* bn = b.op("BatchNormalization", {y, b.random({4}, rng, 0.5, 2), b.random({4}, rng), b.random({4}, rng),
                                              b.random({4}, rng, 0.5, 2)});
  bn->producer->name = "bn1";
  ir::Value* r = b.op("Relu", {bn}, "out");
  r->producer->name = "relu1";
  g.outputs.push_back(r);
  auto before = g.clone();
  PassContext ctx = context_for(g);
  for (PassFn p : {infer_shapes, fold_conv_batchnorm, fuse_conv_activation}) {
    Status s = p(g, ctx);
    ASSERT_TRUE(s.ok()) << s.to_string();
  }
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedConv"}));
  EXPECT_EQ(fused_from(*g.nodes()[0]), (std::vector<std::string>{"conv1", "bn1", "relu1"}));
  expect_same_outputs(*before, g, {{"x", {1, 3, 6, 6}}}, 1e-4, 1e-4);

  plan::EngineModel m;
  m.graph = std::shared_ptr<ir::Graph>(g.clone().release());
  m.device = "cpu";
  m.device_arch = plan::host_arch();
  m.kiln_version = version_string();
  std::vector<uint8_t> bytes = plan::serialize_engine(m);
  auto back = plan::deserialize_engine(bytes.data(), bytes.size());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(fused_from(*back->graph->nodes()[0]), (std::vector<std::string>{"conv1", "bn1", "relu1"}));
}

TEST(FusionProvenance, BuiltEngineCarriesIt) {
  // Through the public builder: a convolution + ReLU network becomes one FusedConv.
  Logger logger(Logger::Severity::kError);
  Builder builder(logger);
  auto net = builder.create_network();
  std::mt19937 rng(2);
  NetworkTensor* x = net->add_input("x", DataType::kFloat32, {1, 2, 5, 5});
  Layer* c = net->add_convolution(x, 3, {3, 3}, test::random_tensor(DataType::kFloat32, {3, 2, 3, 3}, rng),
                                  test::random_tensor(DataType::kFloat32, {3}, rng));
  Layer* r = net->add_activation(c->get_output(0), ActivationType::kRelu);
  net->mark_output(r->get_output(0));
  auto config = builder.create_builder_config();
  auto bytes = builder.build_serialized_network(*net, *config);
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto m = plan::deserialize_engine(bytes->data(), bytes->size());
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_EQ(m->graph->nodes().size(), 1u);
  EXPECT_EQ(fused_from(*m->graph->nodes()[0]).size(), 2u);
}

// ---------------------------------------------------------------- cancel_transposes

TEST(CancelTransposes, InversePairIsRemoved) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{Dim::symbol("n"), 3, 4});
  ir::Value* t1 = b.op("Transpose", {x});
  Build::set(t1, "perm", ints_attr({1, 2, 0}));
  ir::Value* t2 = b.op("Transpose", {t1});
  Build::set(t2, "perm", ints_attr({2, 0, 1}));
  g.outputs.push_back(b.op("Relu", {t2}, "out"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, cancel_transposes, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Relu"}));
  EXPECT_EQ(g.nodes()[0]->inputs[0], g.find_value("x"));
  EXPECT_EQ(ctx.stats["cancelled_transposes"], 1);
  expect_same_outputs(*before, g, {{"x", {2, 3, 4}}});
}

TEST(CancelTransposes, PairsAndChainsMergeIntoOne) {
  for (int count : {2, 3}) {
    SCOPED_TRACE(count);
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{2, 3, 4, 5});
    ir::Value* v = x;
    const std::vector<std::vector<int64_t>> perms = {{1, 0, 2, 3}, {0, 2, 3, 1}, {3, 1, 0, 2}};
    for (int i = 0; i < count; ++i) {
      v = b.op("Transpose", {v});
      Build::set(v, "perm", ints_attr(perms[i]));
      v->producer->name = "t" + std::to_string(i);
    }
    g.outputs.push_back(b.op("Neg", {v}, "out"));
    auto before = g.clone();
    PassContext ctx = context_for(g);
    run_pass(g, cancel_transposes, ctx);
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"Transpose", "Neg"}));
    const ir::Node& t = *g.nodes()[0];
    EXPECT_EQ(t.inputs[0]->name, "x");
    // y = transpose(x, p1), z = transpose(y, p2): z = transpose(x, p1[p2]).
    std::vector<int64_t> q = perms[0];
    for (int i = 1; i < count; ++i) {
      std::vector<int64_t> n(4);
      for (size_t k = 0; k < 4; ++k) n[k] = q[perms[i][k]];
      q = n;
    }
    EXPECT_EQ(t.attrs.get_ints("perm"), q);
    EXPECT_EQ(fused_from(t).size(), static_cast<size_t>(count));
    EXPECT_EQ(ctx.stats["merged_transposes"], count - 1);
    expect_same_outputs(*before, g, {{"x", {2, 3, 4, 5}}});
  }
}

TEST(CancelTransposes, InversePairEndingInAGraphOutputBecomesIdentity) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{3, 4});
  ir::Value* t1 = b.op("Transpose", {b.op("Relu", {x})});
  g.outputs.push_back(b.op("Transpose", {t1}, "out"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, cancel_transposes, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Identity"}));
  EXPECT_EQ(g.outputs[0]->name, "out");
  expect_same_outputs(*before, g, {{"x", {3, 4}}});
}

TEST(CancelTransposes, IntermediateReadElsewhereIsKept) {
  for (bool as_output : {false, true}) {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{3, 4});
    ir::Value* t1 = b.op("Transpose", {x});
    g.outputs.push_back(b.op("Transpose", {t1}, "out"));
    if (as_output)
      g.outputs.push_back(t1);
    else
      g.outputs.push_back(b.op("Exp", {t1}, "other"));
    expect_unchanged(g, cancel_transposes);
  }
}

TEST(CancelTransposes, ReshapePairMerges) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2, 3, 4});
  ir::Value* r1 = b.op("Reshape", {x, b.ints({6, 4})});
  r1->producer->name = "r1";
  ir::Value* r2 = b.op("Reshape", {r1, b.ints({4, -1})});
  r2->producer->name = "r2";
  g.outputs.push_back(b.op("Neg", {r2}, "out"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, cancel_transposes, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Reshape", "Neg"}));
  EXPECT_EQ(g.nodes()[0]->inputs[0]->name, "x");
  EXPECT_EQ(fused_from(*g.nodes()[0]), (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(ctx.stats["merged_reshapes"], 1);
  expect_same_outputs(*before, g, {{"x", {2, 3, 4}}});
}

TEST(CancelTransposes, ReshapePairWithCopiedDimOrComputedShapeIsKept) {
  {
    // 0 copies a dim of the second Reshape's own input.
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{2, 3, 4});
    ir::Value* r1 = b.op("Reshape", {x, b.ints({6, 4})});
    g.outputs.push_back(b.op("Reshape", {r1, b.ints({0, 2, 2})}, "out"));
    expect_unchanged(g, cancel_transposes);
  }
  {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{2, 3, 4});
    ir::Value* s = g.add_value("s", DataType::kInt64, Shape{2}).value();
    g.inputs.push_back(s);
    ir::Value* r1 = b.op("Reshape", {x, b.ints({6, 4})});
    g.outputs.push_back(b.op("Reshape", {r1, s}, "out"));
    expect_unchanged(g, cancel_transposes);
  }
}

TEST(CancelTransposes, SqueezeUnsqueezeOnTheSameAxesCancel) {
  for (int opset : {11, 13})
    for (bool unsqueeze_first : {true, false}) {
      SCOPED_TRACE(std::to_string(opset) + (unsqueeze_first ? " unsqueeze-first" : " squeeze-first"));
      ir::Graph g;
      g.opset_imports[""] = opset;
      Build b{g};
      ir::Value* x = b.input("x", unsqueeze_first ? Shape{3, 4} : Shape{3, 1, 4, 1});
      // The same axes, written once negative: -1 of the rank-4 tensor is 3.
      const std::vector<int64_t> a1 = {1, 3}, a2 = {-1, 1};
      auto axes_op = [&](const char* type, ir::Value* in, const std::vector<int64_t>& axes, const std::string& out) {
        ir::Value* v = opset < 13 ? b.op(type, {in}, out) : b.op(type, {in, b.ints(axes)}, out);
        if (opset < 13) Build::set(v, "axes", ints_attr(axes));
        return v;
      };
      ir::Value* y = axes_op(unsqueeze_first ? "Unsqueeze" : "Squeeze", x, a1, "");
      ir::Value* z = axes_op(unsqueeze_first ? "Squeeze" : "Unsqueeze", y, a2, "");
      g.outputs.push_back(b.op("Neg", {z}, "out"));
      auto before = g.clone();
      PassContext ctx = context_for(g);
      run_pass(g, cancel_transposes, ctx);
      ASSERT_EQ(op_types(g), (std::vector<std::string>{"Neg"}));
      EXPECT_EQ(g.nodes()[0]->inputs[0]->name, "x");
      EXPECT_EQ(ctx.stats["cancelled_squeezes"], 1);
      expect_same_outputs(*before, g, {{"x", unsqueeze_first ? Dims{3, 4} : Dims{3, 1, 4, 1}}});
    }
}

TEST(CancelTransposes, SqueezeUnsqueezeOnOtherAxesIsKept) {
  ir::Graph g;
  g.opset_imports[""] = 13;
  Build b{g};
  ir::Value* x = b.input("x", Shape{3, 4});
  ir::Value* y = b.op("Unsqueeze", {x, b.ints({0, 3})});
  g.outputs.push_back(b.op("Squeeze", {y, b.ints({0})}, "out"));
  expect_unchanged(g, cancel_transposes);
}

TEST(CancelTransposes, TransposeMovingOnlyOnesBecomesReshape) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{Dim::symbol("batch"), 1, 16, 1});
  ir::Value* t = b.op("Transpose", {x});
  Build::set(t, "perm", ints_attr({1, 0, 3, 2}));
  g.outputs.push_back(b.op("Neg", {t}, "out"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, cancel_transposes, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Reshape", "Neg"}));
  const ir::Node& r = *g.nodes()[0];
  ASSERT_TRUE(r.inputs[1]->initializer);
  // The moved unknown dim is inferred (-1).
  EXPECT_EQ(r.inputs[1]->initializer->to_int64_vector(), (std::vector<int64_t>{1, -1, 1, 16}));
  EXPECT_FALSE(r.attrs.has("perm"));
  EXPECT_EQ(ctx.stats["transposes_to_reshape"], 1);
  expect_same_outputs(*before, g, {{"x", {3, 1, 16, 1}}});
}

// Neg(Transpose(p2, Reshape(Transpose(p1, x [batch, 3, 4, 8]), to))) as the graph's output.
void transpose_reshape_transpose(ir::Graph& g, const Dim& batch, std::vector<int64_t> p1, std::vector<int64_t> to,
                                 std::vector<int64_t> p2) {
  Build b{g};
  ir::Value* x = b.input("x", Shape{batch, 3, 4, 8});
  ir::Value* t1 = b.op("Transpose", {x});
  Build::set(t1, "perm", ints_attr(p1));
  const auto rank = static_cast<int64_t>(to.size());
  ir::Value* r =
      b.op("Reshape", {t1, g.add_constant("to", Tensor::from_vector<int64_t>(DataType::kInt64, {rank}, to))});
  ir::Value* t2 = b.op("Transpose", {r});
  Build::set(t2, "perm", ints_attr(p2));
  g.outputs.push_back(b.op("Neg", {t2}, "out"));
}

// PyTorch's patch embedding after patchify_conv: the GEMM's [B, 14, 14, C] rows go to NCHW
// (Transpose), flatten(2) (Reshape) and back to [B, 196, C] (Transpose): x's order all along.
TEST(CancelTransposes, TransposeReshapeTransposeKeepingTheOrderBecomesReshape) {
  for (bool symbolic : {false, true}) {
    SCOPED_TRACE(symbolic);
    ir::Graph g;
    transpose_reshape_transpose(g, symbolic ? Dim::symbol("batch") : Dim(2), {0, 3, 1, 2}, {0, 8, 12}, {0, 2, 1});
    auto before = g.clone();
    PassContext ctx = context_for(g);
    run_pass(g, cancel_transposes, ctx);
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"Reshape", "Neg"}));
    const ir::Node& n = *g.nodes()[0];
    EXPECT_EQ(n.inputs[0], g.find_value("x"));
    EXPECT_EQ(n.inputs[1]->initializer->to_int64_vector(), (std::vector<int64_t>{symbolic ? 0 : 2, 12, 8}));
    EXPECT_EQ(ctx.stats["transpose_reshape_chains_to_reshape"], 1);
    expect_same_outputs(*before, g, {{"x", {2, 3, 4, 8}}});
  }
}

// The same chain with the first Transpose taking another order ([2, 8, 4, 3]: the merged
// (4, 3) is w-major) moves data: kept.
TEST(CancelTransposes, TransposeReshapeTransposeMovingDataIsKept) {
  ir::Graph g;
  transpose_reshape_transpose(g, Dim(2), {0, 3, 2, 1}, {2, 8, 12}, {0, 2, 1});
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, cancel_transposes, ctx);
  EXPECT_EQ(ctx.stats["transpose_reshape_chains_to_reshape"], 0);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Transpose", "Reshape", "Transpose", "Neg"}));
  expect_same_outputs(*before, g, {{"x", {2, 3, 4, 8}}});
}

TEST(CancelTransposes, TransposeMovingRealDimsIsKept) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{2, 1, 16});
  ir::Value* t = b.op("Transpose", {x});
  Build::set(t, "perm", ints_attr({2, 1, 0}));
  g.outputs.push_back(b.op("Neg", {t}, "out"));
  expect_unchanged(g, cancel_transposes);
  // Two unknown dims moved cannot both be -1.
  ir::Graph g2;
  Build b2{g2};
  ir::Value* x2 = b2.input("x", Shape{Dim::symbol("a"), 1, Dim::symbol("b")});
  ir::Value* t2 = b2.op("Transpose", {x2});
  Build::set(t2, "perm", ints_attr({1, 0, 2}));
  g2.outputs.push_back(b2.op("Neg", {t2}, "out"));
  PassContext ctx = context_for(g2);
  run_pass(g2, cancel_transposes, ctx);
  ASSERT_EQ(op_types(g2), (std::vector<std::string>{"Reshape", "Neg"}));
  EXPECT_EQ(g2.nodes()[0]->inputs[1]->initializer->to_int64_vector(), (std::vector<int64_t>{1, -1, 0}));
}

// ---------------------------------------------------------------- fuse_layernorm / fuse_rmsnorm

namespace {

struct NormCase {
  bool rms = false;
  int square = 0;           // Pow(d, 2), Mul(d, d)
  int divide = 0;           // Div(d, Sqrt), Mul(d, Reciprocal(Sqrt)), Mul(d, Pow(v + eps, -0.5))
  bool scale = true;        // Mul by gamma / weight
  bool bias = true;         // Add beta (LayerNorm only)
  bool swap = false;        // commutative operands swapped
  int opset = 13;           // 18: ReduceMean axes as an input
  int64_t axis = -1;        // ReduceMean axis (2 is the last axis too)
  bool tensor_eps = false;  // eps as a [1] tensor
  std::string describe() const {
    return std::string(rms ? "rms" : "ln") + " square" + std::to_string(square) + " divide" + std::to_string(divide) +
           (scale ? " scale" : "") + (bias && !rms ? " bias" : "") + (swap ? " swapped" : "") + " opset" +
           std::to_string(opset) + " axis" + std::to_string(axis) + (tensor_eps ? " [1]-eps" : "");
  }
};

constexpr int64_t kHidden = 8;

struct NormGraph {
  ir::Value* x = nullptr;
  ir::Value* d = nullptr;    // the centered difference (LayerNorm), or x
  ir::Value* sq = nullptr;   // the squares
  ir::Value* var = nullptr;  // ReduceMean of the squares
  ir::Value* eps = nullptr;
  ir::Value* rstd = nullptr;  // Sqrt(var + eps)
  ir::Value* y = nullptr;
};

ir::Value* reduce_mean(Build& b, ir::Value* in, const NormCase& k) {
  if (k.opset >= 18) return b.op("ReduceMean", {in, b.ints({k.axis})});
  ir::Value* v = b.op("ReduceMean", {in});
  Build::set(v, "axes", ints_attr({k.axis}));
  return v;
}

// in -> Relu -> x -> <norm subgraph> -> y -> Neg -> out
NormGraph norm_graph(ir::Graph& g, const NormCase& k, std::mt19937& rng, DataType dt = DataType::kFloat32) {
  g.opset_imports[""] = k.opset;
  Build b{g, dt};
  NormGraph n;
  ir::Value* in = b.input("in", Shape{Dim::symbol("batch"), 5, kHidden});
  n.x = b.op("Sub", {b.op("Relu", {in}), b.c(0.5)});
  n.d = k.rms ? n.x : b.op("Sub", {n.x, reduce_mean(b, n.x, k)});
  n.sq = k.square == 0 ? b.op("Pow", {n.d, b.c(2.0)}) : b.op("Mul", {n.d, n.d});
  n.var = reduce_mean(b, n.sq, k);
  n.eps = b.c(1e-3, k.tensor_eps ? Dims{1} : Dims{});
  ir::Value* ve = b.bin("Add", n.var, n.eps, k.swap);
  ir::Value* normed;
  if (k.divide == 0) {
    n.rstd = b.op("Sqrt", {ve});
    normed = b.op("Div", {n.d, n.rstd});
  } else if (k.divide == 1) {
    n.rstd = b.op("Sqrt", {ve});
    normed = b.bin("Mul", n.d, b.op("Reciprocal", {n.rstd}), k.swap);
  } else {
    n.rstd = b.op("Pow", {ve, b.c(-0.5)});
    normed = b.bin("Mul", n.d, n.rstd, k.swap);
  }
  if (k.scale) normed = b.bin("Mul", normed, b.random({kHidden}, rng, 0.5, 2), !k.swap);
  if (k.bias && !k.rms) normed = b.bin("Add", normed, b.random({1, 1, kHidden}, rng), k.swap);
  n.y = normed;
  g.outputs.push_back(b.op("Neg", {n.y}, "out"));
  return n;
}

void expect_norm_fused(const NormCase& k) {
  SCOPED_TRACE(k.describe());
  std::mt19937 rng(7);
  ir::Graph g;
  norm_graph(g, k, rng);
  auto before = g.clone();
  const size_t pattern_nodes = before->nodes().size() - 3;  // Relu, Sub and Neg stay
  PassContext ctx = context_for(g);
  run_pass(g, k.rms ? fuse_rmsnorm : fuse_layernorm, ctx);
  const char* op = k.rms ? "RMSNormalization" : "LayerNormalization";
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Sub", op, "Neg"}));
  const ir::Node& f = *g.nodes()[2];
  EXPECT_EQ(f.domain, "");
  EXPECT_EQ(f.opset, std::max(k.rms ? 23 : 17, k.opset));
  EXPECT_EQ(f.attrs.get_int("axis", 0), -1);
  EXPECT_FLOAT_EQ(f.attrs.get_float("epsilon", 0), 1e-3f);
  EXPECT_EQ(f.inputs[0], g.nodes()[1]->outputs[0]);
  const bool bias = k.bias && !k.rms;
  ASSERT_EQ(f.inputs.size(), bias ? 3u : 2u);
  for (size_t i = 1; i < f.inputs.size(); ++i) {
    ASSERT_TRUE(f.inputs[i]->initializer);
    EXPECT_EQ(f.inputs[i]->initializer->dims(), (Dims{kHidden})) << "scale and bias are [hidden]";
  }
  EXPECT_EQ(fused_from(f).size(), pattern_nodes);
  EXPECT_EQ(ctx.stats[k.rms ? "fused_rmsnorm" : "fused_layernorm"], 1);
  expect_same_outputs(*before, g, {{"in", {3, 5, kHidden}}}, 1e-4, 1e-5);
}

}  // namespace

TEST(FuseLayerNorm, DecomposedFormsFuse) {
  for (int square = 0; square < 2; ++square)
    for (int divide = 0; divide < 3; ++divide)
      for (bool swap : {false, true}) expect_norm_fused({.square = square, .divide = divide, .swap = swap});
  expect_norm_fused({.scale = false});
  expect_norm_fused({.bias = false});
  expect_norm_fused({.scale = false, .bias = false});
  expect_norm_fused({.opset = 18});
  expect_norm_fused({.axis = 2});
  expect_norm_fused({.opset = 18, .axis = 2, .tensor_eps = true});
}

TEST(FuseRmsNorm, DecomposedFormsFuse) {
  for (int square = 0; square < 2; ++square)
    for (int divide = 0; divide < 3; ++divide)
      for (bool swap : {false, true})
        expect_norm_fused({.rms = true, .square = square, .divide = divide, .swap = swap});
  expect_norm_fused({.rms = true, .divide = 1, .scale = false});
  expect_norm_fused({.rms = true, .divide = 1, .opset = 18, .tensor_eps = true});
}

TEST(FuseLayerNorm, Float16Fuses) {
  std::mt19937 rng(3);
  ir::Graph g;
  norm_graph(g, {}, rng, DataType::kFloat16);
  PassContext ctx = context_for(g);
  run_pass(g, fuse_layernorm, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Sub", "LayerNormalization", "Neg"}));
}

TEST(FuseLayerNorm, WrongAxisOrKeepdimsIsNotFused) {
  for (bool rms : {false, true}) {
    SCOPED_TRACE(rms);
    PassFn pass = rms ? fuse_rmsnorm : fuse_layernorm;
    {
      std::mt19937 rng(1);
      ir::Graph g;
      norm_graph(g, {.rms = rms, .axis = 1}, rng);
      expect_unchanged(g, pass);
    }
    {
      std::mt19937 rng(1);
      ir::Graph g;
      NormGraph n = norm_graph(g, {.rms = rms}, rng);
      // Only the variance reduces another axis.
      n.var->producer->attrs.set("axes", ints_attr({1}));
      expect_unchanged(g, pass);
    }
    {
      std::mt19937 rng(1);
      ir::Graph g;
      NormGraph n = norm_graph(g, {.rms = rms}, rng);
      n.var->producer->attrs.set("axes", ints_attr({1, 2}));
      expect_unchanged(g, pass);
    }
  }
}

TEST(FuseLayerNorm, NonConstantOrWideEpsilonIsNotFused) {
  for (bool rms : {false, true}) {
    SCOPED_TRACE(rms);
    PassFn pass = rms ? fuse_rmsnorm : fuse_layernorm;
    {
      std::mt19937 rng(2);
      ir::Graph g;
      NormGraph n = norm_graph(g, {.rms = rms}, rng);
      ir::Value* eps = g.add_value("eps", DataType::kFloat32, Shape{}).value();
      g.inputs.push_back(eps);
      ir::Node* add = g.consumers(n.var)[0];
      add->inputs[add->inputs[0] == n.var ? 1 : 0] = eps;
      g.prune_values();
      expect_unchanged(g, pass);
    }
    {
      // A [1, 1, 1, 1] epsilon broadcasts to rank 4.
      std::mt19937 rng(2);
      ir::Graph g;
      NormGraph n = norm_graph(g, {.rms = rms}, rng);
      ir::Node* add = g.consumers(n.var)[0];
      add->inputs[add->inputs[0] == n.var ? 1 : 0] =
          g.add_constant("eps4", Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 1, 1}, {1e-3f}));
      g.prune_values();
      PassContext ctx = context_for(g);
      Status s = infer_shapes(g, ctx);
      ASSERT_TRUE(s.ok());
      s = pass(g, ctx);
      ASSERT_TRUE(s.ok());
      EXPECT_EQ(ctx.stats.count(rms ? "fused_rmsnorm" : "fused_layernorm"), 0u);
    }
  }
}

TEST(FuseLayerNorm, IntermediateReadElsewhereIsNotFused) {
  for (bool rms : {false, true})
    for (int which = 0; which < 4; ++which) {
      if (rms && which == 3) continue;
      SCOPED_TRACE(std::to_string(rms) + " " + std::to_string(which));
      std::mt19937 rng(4);
      ir::Graph g;
      NormGraph n = norm_graph(g, {.rms = rms}, rng);
      ir::Value* extra = which == 0 ? n.var : which == 1 ? n.rstd : which == 2 ? n.sq : n.d;
      Build b{g};
      g.outputs.push_back(b.op("Exp", {extra}, "extra"));
      expect_unchanged(g, rms ? fuse_rmsnorm : fuse_layernorm);
    }
  // A LayerNorm whose mean is read elsewhere is still an RMSNorm of the difference (its beta Add stays).
  std::mt19937 rng(4);
  ir::Graph g;
  NormGraph n = norm_graph(g, {}, rng);
  Build b{g};
  g.outputs.push_back(b.op("Exp", {n.d->producer->inputs[1]}, "mean_out"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_layernorm, ctx);
  EXPECT_EQ(ctx.stats.count("fused_layernorm"), 0u);
  run_pass(g, fuse_rmsnorm, ctx);
  EXPECT_EQ(op_types(g),
            (std::vector<std::string>{"Relu", "Sub", "ReduceMean", "Sub", "RMSNormalization", "Add", "Neg", "Exp"}));
  expect_same_outputs(*before, g, {{"in", {3, 5, kHidden}}}, 1e-4, 1e-5);
}

TEST(FuseLayerNorm, ThenSkipLayerNormInPipelineOrder) {
  // a + b -> decomposed LayerNorm: fuse_layernorm, then fuse_skip_layernorm takes the Add.
  std::mt19937 rng(6);
  ir::Graph g;
  g.opset_imports[""] = 13;
  Build b{g};
  ir::Value* a = b.input("a", Shape{Dim::symbol("batch"), 4, kHidden});
  ir::Value* c = b.input("b", Shape{Dim::symbol("batch"), 4, kHidden});
  ir::Value* s = b.op("Add", {a, c});
  NormCase k;
  ir::Value* d = b.op("Sub", {s, reduce_mean(b, s, k)});
  ir::Value* v = reduce_mean(b, b.op("Pow", {d, b.c(2.0)}), k);
  ir::Value* n = b.op("Div", {d, b.op("Sqrt", {b.op("Add", {v, b.c(1e-5)})})});
  g.outputs.push_back(b.op("Add", {b.op("Mul", {n, b.random({kHidden}, rng, 0.5, 2)}), b.random({kHidden}, rng)}, "y"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  for (PassFn p : {infer_shapes, fuse_layernorm, fuse_rmsnorm, fuse_skip_layernorm, infer_shapes}) {
    Status st = p(g, ctx);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(ir::verify(g).ok());
  }
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"SkipLayerNormalization"}));
  EXPECT_EQ(fused_from(*g.nodes()[0]).size(), before->nodes().size());
  expect_same_outputs(*before, g, {{"a", {2, 4, kHidden}}, {"b", {2, 4, kHidden}}}, 1e-4, 1e-5);
}

// ---------------------------------------------------------------- fuse_silu

TEST(FuseSilu, SigmoidTimesInputBecomesSwish) {
  for (bool swap : {false, true}) {
    SCOPED_TRACE(swap);
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.op("Relu", {b.input("in", Shape{Dim::symbol("n"), 3, 7, 5})});
    x = b.op("Sub", {x, b.c(1.0)});
    ir::Value* s = b.op("Sigmoid", {x});
    s->producer->name = "sig";
    ir::Value* y = b.bin("Mul", x, s, swap, "y");
    y->producer->name = "mul";
    g.outputs.push_back(b.op("Neg", {y}, "out"));
    auto before = g.clone();
    PassContext ctx = context_for(g);
    run_pass(g, fuse_silu, ctx);
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Sub", "Swish", "Neg"}));
    const ir::Node& f = *g.nodes()[2];
    EXPECT_EQ(f.opset, 24);
    EXPECT_EQ(f.attrs.get_float("alpha", 1.0f), 1.0f);
    ASSERT_EQ(f.inputs.size(), 1u);
    EXPECT_EQ(f.outputs[0]->name, "y");
    EXPECT_EQ(fused_from(f), (std::vector<std::string>{"sig", "mul"}));
    EXPECT_EQ(ctx.stats["fused_silu"], 1);
    expect_same_outputs(*before, g, {{"in", {2, 3, 7, 5}}});
  }
}

TEST(FuseSilu, HardSigmoidTimesInputBecomesHardSwish) {
  ir::Graph g;
  Build b{g};
  ir::Value* x = b.input("x", Shape{4, 9});
  ir::Value* h = b.op("HardSigmoid", {x});
  Build::set(h, "alpha", ir::Attribute::from_float(1.0f / 6.0f));
  g.outputs.push_back(b.op("Mul", {h, x}, "y"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_silu, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"HardSwish"}));
  expect_same_outputs(*before, g, {{"x", {4, 9}}});
  // HardSigmoid's default alpha (0.2) is not HardSwish's gate.
  ir::Graph g2;
  Build b2{g2};
  ir::Value* x2 = b2.input("x", Shape{4, 9});
  g2.outputs.push_back(b2.op("Mul", {b2.op("HardSigmoid", {x2}), x2}, "y"));
  expect_unchanged(g2, fuse_silu);
}

TEST(FuseSilu, SigmoidReadElsewhereOrOfAnotherValueIsNotFused) {
  {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{4, 9});
    ir::Value* s = b.op("Sigmoid", {x});
    g.outputs.push_back(b.op("Mul", {x, s}, "y"));
    g.outputs.push_back(s);
    expect_unchanged(g, fuse_silu);
  }
  {
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{4, 9});
    ir::Value* s = b.op("Sigmoid", {x});
    g.outputs.push_back(b.op("Mul", {x, s}, "y"));
    g.outputs.push_back(b.op("Exp", {s}, "e"));
    expect_unchanged(g, fuse_silu);
  }
  {
    // Gated: z * Sigmoid(x) is a GLU-style gate, not SiLU.
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{4, 9});
    ir::Value* z = b.input("z", Shape{4, 9});
    g.outputs.push_back(b.op("Mul", {z, b.op("Sigmoid", {x})}, "y"));
    expect_unchanged(g, fuse_silu);
  }
}

TEST(FuseSilu, ConvThenSiluStillBecomesOneFusedConv) {
  // In pipeline order fuse_conv_activation sees the Sigmoid/Mul first; an opset-24 Swish
  // after a Conv (or one fuse_silu made) is taken as the Silu activation too.
  for (bool swish_first : {false, true}) {
    SCOPED_TRACE(swish_first);
    std::mt19937 rng(8);
    ir::Graph g;
    Build b{g};
    ir::Value* x = b.input("x", Shape{1, 2, 6, 6});
    ir::Value* y = b.op("Conv", {x, b.random({3, 2, 3, 3}, rng), b.random({3}, rng)});
    g.outputs.push_back(b.op("Mul", {y, b.op("Sigmoid", {y})}, "out"));
    auto before = g.clone();
    PassContext ctx = context_for(g);
    if (swish_first) run_pass(g, fuse_silu, ctx);
    run_pass(g, fuse_conv_activation, ctx);
    if (!swish_first) run_pass(g, fuse_silu, ctx);
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"FusedConv"}));
    EXPECT_EQ(g.nodes()[0]->attrs.get_string("activation", ""), "Silu");
    EXPECT_EQ(fused_from(*g.nodes()[0]).size(), 3u);
    expect_same_outputs(*before, g, {{"x", {1, 2, 6, 6}}}, 1e-4, 1e-5);
  }
}

// ---------------------------------------------------------------- the whole pipeline

TEST(Fusion2, PipelineFusesLlamaStyleBlock) {
  // RMSNorm -> MatMul -> SiLU gate, through run_pipeline on the CPU.
  std::mt19937 rng(12);
  ir::Graph g;
  g.opset_imports[""] = 13;
  Build b{g};
  ir::Value* x = b.input("x", Shape{Dim::symbol("batch"), 4, kHidden});
  ir::Value* v = b.op("ReduceMean", {b.op("Pow", {x, b.c(2.0)})});
  Build::set(v, "axes", ints_attr({-1}));
  ir::Value* n = b.op("Mul", {x, b.op("Reciprocal", {b.op("Sqrt", {b.op("Add", {v, b.c(1e-6)})})})});
  ir::Value* h = b.op("MatMul", {b.op("Mul", {b.random({kHidden}, rng, 0.5, 2), n}), b.random({kHidden, 16}, rng)});
  ir::Value* t = b.op("Transpose", {b.op("Transpose", {h})});
  g.outputs.push_back(b.op("Mul", {t, b.op("Sigmoid", {t})}, "y"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  Status s = run_pipeline(g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"RMSNormalization", "MatMul", "Swish"}));
  expect_same_outputs(*before, g, {{"x", {2, 4, kHidden}}}, 1e-4, 1e-5);
}

}  // namespace kiln::passes
