// Golden before/after tests for fuse_gelu and fuse_skip_layernorm, plus numerical
// equality of the fused graph with the original on random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "harness/op_harness.h"
#include "ops/op.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

// Small graph-building helpers: every op has one output with a fresh name, or `out`.
struct Build {
  ir::Graph& g;
  DataType dt = DataType::kFloat32;
  bool tensor_consts = false;  // one-element [1] tensors instead of scalars

  ir::Value* c(double v) {
    return g.add_constant("c", Tensor::from_vector<double>(dt, tensor_consts ? Dims{1} : Dims{}, {v}));
  }
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const std::string& out = "") {
    ir::Value* o = out.empty() ? g.add_unique_value("t") : g.add_value(out).value();
    g.add_node(type, ins, {o}, g.unique_name(type));
    return o;
  }
  ir::Value* bin(const std::string& type, ir::Value* a, ir::Value* b, bool swap, const std::string& out = "") {
    return swap ? op(type, {b, a}, out) : op(type, {a, b}, out);
  }
};

// ---------------------------------------------------------------- Gelu

struct GeluCase {
  bool tanh = false;
  bool div = true;    // erf: Div(x, sqrt 2) or Mul(x, 1 / sqrt 2)
  int cube = 0;       // tanh: Pow(x, 3), Mul(x, Mul(x, x))
  int tail = 0;       // (x * p) * 0.5, (x * 0.5) * p, x * (p * 0.5)
  bool swap = false;  // every commutative op's operands swapped
  bool tensor_consts = false;
  std::string describe() const {
    return std::string(tanh ? "tanh" : "erf") +
           (tanh  ? " cube" + std::to_string(cube)
            : div ? " div"
                  : " mul") +
           " tail" + std::to_string(tail) + (swap ? " swapped" : "") + (tensor_consts ? " [1]-consts" : "");
  }
};

// x -> Relu -> <gelu subgraph> -> y -> Neg -> out. Returns the erf/tanh output, for negative tests.
ir::Value* gelu_graph(ir::Graph& g, const GeluCase& k, ir::Value** half = nullptr) {
  g.opset_imports[""] = 17;
  ir::Value* in = g.add_value("in", DataType::kFloat32, Shape{Dim::symbol("batch"), 3, 16}).value();
  g.inputs.push_back(in);
  Build b{g, DataType::kFloat32, k.tensor_consts};
  ir::Value* x = b.op("Relu", {in});  // a producer of x before the pattern
  // Relu would make x >= 0: subtract 1 so that negative values reach the Gelu too.
  x = b.op("Sub", {x, b.c(1.0)});
  ir::Value* e;
  if (!k.tanh) {
    ir::Value* t = k.div ? b.op("Div", {x, b.c(1.4142135)}) : b.bin("Mul", x, b.c(0.70710678), k.swap);
    e = b.op("Erf", {t});
  } else {
    ir::Value* cube = k.cube == 0 ? b.op("Pow", {x, b.c(3.0)}) : b.bin("Mul", x, b.op("Mul", {x, x}), k.swap);
    ir::Value* w = b.bin("Mul", cube, b.c(0.044715), k.swap);
    ir::Value* v = b.bin("Add", x, w, k.swap);
    ir::Value* u = b.bin("Mul", b.c(0.7978845608), v, k.swap);
    e = b.op("Tanh", {u});
  }
  ir::Value* p = b.bin("Add", e, b.c(1.0), k.swap);
  ir::Value* h = half && *half ? *half : b.c(0.5);
  if (k.tail == 0) {
    b.bin("Mul", b.bin("Mul", x, p, k.swap), h, k.swap, "y");
  } else if (k.tail == 1) {
    b.bin("Mul", b.bin("Mul", x, h, k.swap), p, k.swap, "y");
  } else {
    b.bin("Mul", x, b.bin("Mul", p, h, k.swap), k.swap, "y");
  }
  g.outputs.push_back(b.op("Neg", {g.find_value("y")}, "out"));
  return e;
}

void expect_gelu_fused(const GeluCase& k) {
  SCOPED_TRACE(k.describe());
  std::mt19937 rng(11);
  ir::Graph g;
  gelu_graph(g, k);
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_gelu, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Relu", "Sub", "Gelu", "Neg"}));
  const ir::Node& gelu = *g.nodes()[2];
  EXPECT_EQ(gelu.domain, "");
  EXPECT_EQ(gelu.opset, 20);
  ASSERT_EQ(gelu.inputs.size(), 1u);
  EXPECT_EQ(gelu.inputs[0], g.nodes()[1]->outputs[0]);
  EXPECT_EQ(gelu.outputs[0]->name, "y");
  EXPECT_EQ(gelu.attrs.get_string("approximate", "none"), k.tanh ? "tanh" : "none");
  // approximate (tanh only) and kiln.fused_from, which names every node the Gelu replaced.
  EXPECT_EQ(gelu.attrs.all().size(), k.tanh ? 2u : 1u);
  EXPECT_EQ(testing::fused_from(gelu).size(), before->nodes().size() - 3);
  EXPECT_EQ(ctx.stats[k.tanh ? "fused_gelu_tanh" : "fused_gelu"], 1);
  EXPECT_EQ(g.values().size(), 6u) << "intermediates and their constants are pruned";

  Tensor in = test::random_tensor(DataType::kFloat32, {2, 3, 16}, rng, -4, 4);
  auto want = run_graph(*before, {{"in", in}});
  auto got = run_graph(g, {{"in", in}});
  EXPECT_TRUE(test::tensors_close(got.at("out"), want.at("out"), 1e-5, 1e-6));
}

}  // namespace

TEST(FuseGelu, ErfFormsFuse) {
  for (bool div : {true, false})
    for (int tail = 0; tail < 3; ++tail)
      for (bool swap : {false, true})
        for (bool tensor_consts : {false, true})
          expect_gelu_fused({.tanh = false, .div = div, .tail = tail, .swap = swap, .tensor_consts = tensor_consts});
}

TEST(FuseGelu, TanhFormsFuse) {
  for (int cube = 0; cube < 2; ++cube)
    for (int tail = 0; tail < 3; ++tail)
      for (bool swap : {false, true})
        expect_gelu_fused({.tanh = true, .cube = cube, .tail = tail, .swap = swap, .tensor_consts = cube == 1});
}

TEST(FuseGelu, CubeAsMulOfSquareAndX) {
  // x^3 = Mul(Mul(x, x), x), the other grouping.
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{4, 8}).value();
  g.inputs.push_back(x);
  Build b{g};
  ir::Value* cube = b.op("Mul", {b.op("Mul", {x, x}), x});
  ir::Value* u = b.op("Mul", {b.op("Add", {x, b.op("Mul", {cube, b.c(0.044715)})}), b.c(0.7978845608)});
  ir::Value* p = b.op("Add", {b.op("Tanh", {u}), b.c(1.0)});
  g.outputs.push_back(b.op("Mul", {b.op("Mul", {x, b.c(0.5)}), p}, "y"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_gelu, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"Gelu"}));
  EXPECT_EQ(g.nodes()[0]->attrs.get_string("approximate", ""), "tanh");
  EXPECT_EQ(g.outputs[0]->name, "y");
  std::mt19937 rng(3);
  Tensor xin = test::random_tensor(DataType::kFloat32, {4, 8}, rng, -4, 4);
  EXPECT_TRUE(
      test::tensors_close(run_graph(g, {{"x", xin}}).at("y"), run_graph(*before, {{"x", xin}}).at("y"), 1e-5, 1e-6));
}

TEST(FuseGelu, HalfConstantsRoundedToTheirTypeMatch) {
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat16, Shape{4, 8}).value();
  g.inputs.push_back(x);
  Build b{g, DataType::kFloat16};
  ir::Value* p = b.op("Add", {b.op("Erf", {b.op("Div", {x, b.c(M_SQRT2)})}), b.c(1.0)});
  g.outputs.push_back(b.op("Mul", {b.op("Mul", {x, p}), b.c(0.5)}, "y"));
  PassContext ctx = context_for(g);
  run_pass(g, fuse_gelu, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Gelu"}));
}

TEST(FuseGelu, IntermediateReadTwiceIsNotFused) {
  for (const char* which : {"erf", "sum"}) {
    SCOPED_TRACE(which);
    ir::Graph g;
    ir::Value* e = gelu_graph(g, {});
    ir::Value* extra = std::string(which) == "erf" ? e : g.consumers(e)[0]->outputs[0];
    Build b{g};
    g.outputs.push_back(b.op("Exp", {extra}, "extra"));
    auto types = op_types(g);
    PassContext ctx = context_for(g);
    run_pass(g, fuse_gelu, ctx);
    EXPECT_EQ(op_types(g), types);
  }
  // An intermediate that is a graph output is not fused either.
  ir::Graph g;
  ir::Value* e = gelu_graph(g, {.tail = 1});
  g.outputs.push_back(e);
  auto types = op_types(g);
  PassContext ctx = context_for(g);
  run_pass(g, fuse_gelu, ctx);
  EXPECT_EQ(op_types(g), types);
}

TEST(FuseGelu, NonConstantOrWrongConstantsAreNotFused) {
  for (int tail = 0; tail < 3; ++tail) {
    SCOPED_TRACE(tail);
    ir::Graph g;
    ir::Value* half = g.add_value("half", DataType::kFloat32, Shape{}).value();
    gelu_graph(g, {.tail = tail}, &half);
    g.inputs.push_back(half);
    auto types = op_types(g);
    PassContext ctx = context_for(g);
    run_pass(g, fuse_gelu, ctx);
    EXPECT_EQ(op_types(g), types);
  }
  {
    // 0.45 instead of 0.5.
    ir::Graph g;
    ir::Value* half = g.add_constant("c", Tensor::from_vector<float>(DataType::kFloat32, {}, {0.45f}));
    gelu_graph(g, {}, &half);
    auto types = op_types(g);
    PassContext ctx = context_for(g);
    run_pass(g, fuse_gelu, ctx);
    EXPECT_EQ(op_types(g), types);
  }
  {
    // A [1, 1, 1, 1] "scalar" would broadcast x to rank 4: not a Gelu.
    ir::Graph g;
    ir::Value* half = g.add_constant("c", Tensor::from_vector<float>(DataType::kFloat32, {1, 1, 1, 1}, {0.5f}));
    gelu_graph(g, {}, &half);
    auto types = op_types(g);
    PassContext ctx = context_for(g);
    run_pass(g, fuse_gelu, ctx);
    EXPECT_EQ(op_types(g), types);
  }
}

TEST(FuseGelu, TwoGelusInARowBothFuse) {
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{4, 8}).value();
  g.inputs.push_back(x);
  Build b{g};
  auto gelu = [&](ir::Value* v, const std::string& out) {
    ir::Value* p = b.op("Add", {b.op("Erf", {b.op("Mul", {v, b.c(0.70710678)})}), b.c(1.0)});
    return b.op("Mul", {b.op("Mul", {v, p}), b.c(0.5)}, out);
  };
  g.outputs.push_back(gelu(gelu(x, "y1"), "y2"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_gelu, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Gelu", "Gelu"}));
  EXPECT_EQ(ctx.stats["fused_gelu"], 2);
  std::mt19937 rng(9);
  Tensor xin = test::random_tensor(DataType::kFloat32, {4, 8}, rng, -4, 4);
  EXPECT_TRUE(
      test::tensors_close(run_graph(g, {{"x", xin}}).at("y2"), run_graph(*before, {{"x", xin}}).at("y2"), 1e-5, 1e-6));
}

// ---------------------------------------------------------------- SkipLayerNormalization

namespace {

struct SlnCase {
  bool bias = false;  // b is a constant [hidden] bias instead of a full-shape input
  bool swap = false;  // Add(b, a)
  bool beta = true;
  int64_t axis = -1;        // LayerNormalization's axis attribute (0: left out)
  bool prenorm = false;     // the sum is also read by a later residual Add
  bool sum_output = false;  // the sum is also a graph output
  std::string describe() const {
    return std::string(bias ? "bias" : "skip") + (swap ? " swapped" : "") + (beta ? "" : " no-beta") + " axis" +
           std::to_string(axis) + (prenorm ? " prenorm" : "") + (sum_output ? " sum-output" : "");
  }
};

constexpr int64_t kHidden = 16;

// a, b -> Add -> s -> LayerNormalization -> y [-> Relu -> r -> Add(s, r) -> z]
void sln_graph(ir::Graph& g, const SlnCase& k, std::mt19937& rng) {
  g.opset_imports[""] = 17;
  ir::Value* a = g.add_value("a", DataType::kFloat32, Shape{Dim::symbol("batch"), 5, kHidden}).value();
  g.inputs.push_back(a);
  ir::Value* b;
  if (k.bias) {
    b = g.add_constant("bias", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
  } else {
    b = g.add_value("b", DataType::kFloat32, Shape{Dim::symbol("batch"), 5, kHidden}).value();
    g.inputs.push_back(b);
  }
  ir::Value* gamma = g.add_constant("gamma", test::random_tensor(DataType::kFloat32, {kHidden}, rng, 0.5, 2));
  ir::Value* beta = g.add_constant("beta", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
  Build bl{g};
  ir::Value* s = bl.bin("Add", a, b, k.swap, "s");
  std::vector<ir::Value*> ln_in = {s, gamma};
  if (k.beta) ln_in.push_back(beta);
  ir::Value* y = bl.op("LayerNormalization", ln_in, "y");
  ir::Node* ln = y->producer;
  if (k.axis) ln->attrs.set("axis", ir::Attribute::from_int(k.axis));
  ln->attrs.set("epsilon", ir::Attribute::from_float(1e-3f));
  if (k.prenorm) {
    g.outputs.push_back(bl.op("Add", {s, bl.op("Relu", {y})}, "z"));
  } else {
    g.outputs.push_back(y);
  }
  if (k.sum_output) g.outputs.push_back(s);
}

std::map<std::string, Tensor> sln_inputs(const ir::Graph& g, std::mt19937& rng) {
  std::map<std::string, Tensor> in;
  for (ir::Value* v : g.inputs) in[v->name] = test::random_tensor(DataType::kFloat32, {3, 5, kHidden}, rng, -2, 2);
  return in;
}

void expect_sln_fused(const SlnCase& k) {
  SCOPED_TRACE(k.describe());
  std::mt19937 rng(17);
  ir::Graph g;
  sln_graph(g, k, rng);
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_skip_layernorm, ctx);
  std::vector<std::string> want_ops = {"SkipLayerNormalization"};
  if (k.prenorm) want_ops.insert(want_ops.end(), {"Relu", "Add"});
  ASSERT_EQ(op_types(g), want_ops);
  const ir::Node& f = *g.nodes()[0];
  EXPECT_EQ(f.domain, "com.microsoft");
  EXPECT_EQ(f.opset, 1);
  EXPECT_EQ(g.opset_imports.at("com.microsoft"), 1);
  EXPECT_FLOAT_EQ(f.attrs.get_float("epsilon", 0), 1e-3f);
  EXPECT_EQ(f.attrs.all().size(), 2u);  // epsilon and kiln.fused_from
  EXPECT_EQ(testing::fused_from(f).size(), 2u);
  ASSERT_EQ(f.inputs.size(), k.beta ? 4u : 3u);
  // The full-shape operand is the input; two full-shape operands keep the Add's order.
  const bool b_first = k.swap && !k.bias;
  EXPECT_EQ(f.inputs[0]->name, b_first ? "b" : "a");
  EXPECT_EQ(f.inputs[1]->name, k.bias ? "bias" : b_first ? "a" : "b");
  EXPECT_EQ(f.inputs[2]->name, "gamma");
  if (k.beta) {
    EXPECT_EQ(f.inputs[3]->name, "beta");
  }
  const bool keep_sum = k.prenorm || k.sum_output;
  ASSERT_EQ(f.outputs.size(), keep_sum ? 4u : 1u);
  EXPECT_EQ(f.outputs[0]->name, "y");
  if (keep_sum) {
    EXPECT_EQ(f.outputs[1], nullptr);
    EXPECT_EQ(f.outputs[2], nullptr);
    EXPECT_EQ(f.outputs[3]->name, "s");
  }
  if (k.prenorm) {
    EXPECT_EQ(g.nodes()[2]->inputs[0]->name, "s");
  }
  EXPECT_EQ(g.find_value("s") != nullptr, keep_sum);
  EXPECT_EQ(ctx.stats["fused_skip_layernorm"], 1);

  auto in = sln_inputs(*before, rng);
  auto want = run_graph(*before, in);
  auto got = run_graph(g, in);
  for (ir::Value* o : before->outputs) {
    SCOPED_TRACE(o->name);
    EXPECT_TRUE(test::tensors_close(got.at(o->name), want.at(o->name), 1e-5, 1e-5));
  }
}

void expect_sln_unchanged(ir::Graph& g) {
  auto types = op_types(g);
  PassContext ctx = context_for(g);
  run_pass(g, fuse_skip_layernorm, ctx);
  EXPECT_EQ(op_types(g), types);
  EXPECT_EQ(ctx.stats.count("fused_skip_layernorm"), 0u);
}

}  // namespace

TEST(FuseSkipLayerNorm, AddThenLayerNormFuses) {
  for (bool bias : {false, true})
    for (bool swap : {false, true}) expect_sln_fused({.bias = bias, .swap = swap});
  expect_sln_fused({.beta = false});
  expect_sln_fused({.axis = 2});
  expect_sln_fused({.axis = 0});  // default axis -1
}

TEST(FuseSkipLayerNorm, SumReadElsewhereComesFromTheFourthOutput) {
  expect_sln_fused({.prenorm = true});
  expect_sln_fused({.bias = true, .swap = true, .prenorm = true});
  expect_sln_fused({.sum_output = true});
  expect_sln_fused({.prenorm = true, .sum_output = true});
}

// BERT's embeddings: Add(word, token_type) + position, both constants after folding,
// then LayerNorm: one SkipLayerNormalization of the word rows and token_type + position
// (the Add is gone); the same outputs. A skip the sum would make larger than the input's
// rows (a [2, 5, 16] constant over [1, 5, 16] rows) keeps the Add.
TEST(FuseSkipLayerNorm, ConstantSkipAbsorbsAnAddedConstant) {
  for (bool too_big : {false, true}) {
    SCOPED_TRACE(too_big ? "sum larger than the input" : "embeddings");
    std::mt19937 rng(8);
    ir::Graph g;
    g.opset_imports[""] = 17;
    const Dim rows = too_big ? Dim(1) : Dim::symbol("batch");
    ir::Value* word = g.add_value("word", DataType::kFloat32, Shape{rows, 5, kHidden}).value();
    g.inputs.push_back(word);
    Build bl{g};
    ir::Value* tt =
        g.add_constant("token_type", test::random_tensor(DataType::kFloat32, {too_big ? 2 : 1, 5, kHidden}, rng));
    ir::Value* pos = g.add_constant("position", test::random_tensor(DataType::kFloat32, {1, 5, kHidden}, rng));
    ir::Value* gamma = g.add_constant("gamma", test::random_tensor(DataType::kFloat32, {kHidden}, rng, 0.5, 2));
    ir::Value* beta = g.add_constant("beta", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
    ir::Value* t = bl.op("Add", {word, tt}, "t");
    ir::Value* s = bl.op("Add", {t, pos}, "s");
    ir::Value* y = bl.op("LayerNormalization", {s, gamma, beta}, "y");
    y->producer->attrs.set("epsilon", ir::Attribute::from_float(1e-3f));
    g.outputs.push_back(y);
    auto before = g.clone();
    PassContext ctx = context_for(g);
    run_pass(g, infer_shapes, ctx);
    run_pass(g, fuse_skip_layernorm, ctx);
    if (too_big) {
      EXPECT_EQ(op_types(g), (std::vector<std::string>{"Add", "SkipLayerNormalization"})) << ir::dump(g);
      continue;
    }
    ASSERT_EQ(op_types(g), (std::vector<std::string>{"SkipLayerNormalization"})) << ir::dump(g);
    EXPECT_EQ(g.nodes()[0]->inputs[0], word);
    ASSERT_TRUE(g.nodes()[0]->inputs[1]->initializer);
    EXPECT_EQ(ctx.stats["skip_constants_folded"], 1);
    Tensor x = test::random_tensor(DataType::kFloat32, {3, 5, kHidden}, rng);
    EXPECT_TRUE(test::tensors_close(run_graph(g, {{"word", x}}).at("y"), run_graph(*before, {{"word", x}}).at("y"),
                                    1e-5, 1e-5));
  }
}

TEST(FuseSkipLayerNorm, DefaultEpsilonIsCopiedExplicitly) {
  std::mt19937 rng(2);
  ir::Graph g;
  sln_graph(g, {}, rng);
  g.find_value("y")->producer->attrs.erase("epsilon");
  PassContext ctx = context_for(g);
  run_pass(g, fuse_skip_layernorm, ctx);
  ASSERT_EQ(op_types(g), (std::vector<std::string>{"SkipLayerNormalization"}));
  // LayerNormalization's default is 1e-5, SkipLayerNormalization's 1e-12.
  EXPECT_FLOAT_EQ(g.nodes()[0]->attrs.get_float("epsilon", 0), 1e-5f);
}

TEST(FuseSkipLayerNorm, NonLastAxisIsNotFused) {
  std::mt19937 rng(3);
  ir::Graph g;
  sln_graph(g, {.axis = 1}, rng);
  // LayerNormalization over [5, hidden]: scale and bias of that shape.
  ir::Node* ln = g.find_value("y")->producer;
  ln->inputs[1] = g.add_constant("gamma2", test::random_tensor(DataType::kFloat32, {5, kHidden}, rng));
  ln->inputs[2] = g.add_constant("beta2", test::random_tensor(DataType::kFloat32, {5, kHidden}, rng));
  g.prune_values();
  expect_sln_unchanged(g);
}

TEST(FuseSkipLayerNorm, UsedMeanOrInvStdDevIsNotFused) {
  for (size_t i : {1, 2}) {
    SCOPED_TRACE(i);
    std::mt19937 rng(4);
    ir::Graph g;
    sln_graph(g, {}, rng);
    ir::Node* ln = g.find_value("y")->producer;
    ln->outputs.resize(3, nullptr);
    ir::Value* stat = g.add_value(i == 1 ? "mean" : "inv_std").value();
    stat->producer = ln;
    ln->outputs[i] = stat;
    Build b{g};
    g.outputs.push_back(b.op("Neg", {stat}, "stat_out"));
    expect_sln_unchanged(g);
  }
  // Mean present but unused: dropped with the LayerNormalization.
  std::mt19937 rng(4);
  ir::Graph g;
  sln_graph(g, {}, rng);
  ir::Node* ln = g.find_value("y")->producer;
  ir::Value* mean = g.add_value("mean").value();
  mean->producer = ln;
  ln->outputs.push_back(mean);
  PassContext ctx = context_for(g);
  run_pass(g, fuse_skip_layernorm, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"SkipLayerNormalization"}));
  EXPECT_EQ(g.find_value("mean"), nullptr);
}

TEST(FuseSkipLayerNorm, OtherShapesAndNonConstantScaleAreNotFused) {
  {
    // Both operands broadcast: [batch, 1, h] + [1, 5, h] has no full-shape input.
    std::mt19937 rng(5);
    ir::Graph g;
    sln_graph(g, {}, rng);
    g.inputs[0]->shape = Shape{Dim::symbol("batch"), 1, kHidden};
    g.inputs[1]->shape = Shape{1, 5, kHidden};
    expect_sln_unchanged(g);
  }
  {
    // gamma is a graph input.
    std::mt19937 rng(6);
    ir::Graph g;
    sln_graph(g, {}, rng);
    ir::Value* gamma = g.add_value("gamma_in", DataType::kFloat32, Shape{kHidden}).value();
    g.inputs.push_back(gamma);
    g.find_value("y")->producer->inputs[1] = gamma;
    g.prune_values();
    expect_sln_unchanged(g);
  }
  {
    // A LayerNormalization whose input is not an Add.
    std::mt19937 rng(7);
    ir::Graph g;
    sln_graph(g, {}, rng);
    g.find_value("s")->producer->op_type = "Sub";
    expect_sln_unchanged(g);
  }
}

TEST(FuseSkipLayerNorm, TwoLayerNormsOfOneSumFuseOnce) {
  std::mt19937 rng(8);
  ir::Graph g;
  sln_graph(g, {}, rng);
  Build b{g};
  ir::Node* ln = g.find_value("y")->producer;
  g.outputs.push_back(b.op("LayerNormalization", {g.find_value("s"), ln->inputs[1]}, "y2"));
  auto before = g.clone();
  PassContext ctx = context_for(g);
  run_pass(g, fuse_skip_layernorm, ctx);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"SkipLayerNormalization", "LayerNormalization"}));
  auto in = sln_inputs(*before, rng);
  auto want = run_graph(*before, in);
  auto got = run_graph(g, in);
  for (const char* o : {"y", "y2"}) EXPECT_TRUE(test::tensors_close(got.at(o), want.at(o), 1e-5, 1e-5)) << o;
}

// ---------------------------------------------------------------- with the other passes

TEST(Fusion, PreNormTransformerBlockInPipelineOrder) {
  // x -> +attn -> LN -> MatMul+b -> Gelu(erf) -> MatMul+b -> +residual -> LN
  std::mt19937 rng(23);
  ir::Graph g;
  g.opset_imports[""] = 17;
  const int64_t h = 16, f = 32;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 4, h}).value();
  g.inputs.push_back(x);
  Build b{g};
  auto w = [&](Dims d, double lo = -0.5, double hi = 0.5) {
    return g.add_constant("w", test::random_tensor(DataType::kFloat32, d, rng, lo, hi));
  };
  auto linear = [&](ir::Value* v, int64_t k, int64_t n) {
    return b.op("Add", {b.op("MatMul", {v, w({k, n})}), w({n})});
  };
  ir::Value* s1 = b.op("Add", {x, linear(x, h, h)});
  ir::Value* n1 = b.op("LayerNormalization", {s1, w({h}, 0.5, 2), w({h})});
  ir::Value* u = linear(n1, h, f);
  ir::Value* p = b.op("Add", {b.op("Erf", {b.op("Div", {u, b.c(1.4142135)})}), b.c(1.0)});
  ir::Value* m = linear(b.op("Mul", {b.op("Mul", {u, p}), b.c(0.5)}), f, h);
  ir::Value* s2 = b.op("Add", {s1, m});
  g.outputs.push_back(b.op("LayerNormalization", {s2, w({h}, 0.5, 2), w({h})}, "y"));
  auto before = g.clone();

  // The order run_pipeline uses, with the two fusions after fuse_matmul_bias.
  const Pass order[] = {{"infer_shapes", infer_shapes},
                        {"eliminate_identity", eliminate_identity},
                        {"fold_constants", fold_constants},
                        {"eliminate_dead_nodes", eliminate_dead_nodes},
                        {"fuse_matmul_bias", fuse_matmul_bias},
                        {"fuse_gelu", fuse_gelu},
                        {"fuse_skip_layernorm", fuse_skip_layernorm},
                        {"infer_shapes", infer_shapes}};
  PassContext ctx = context_for(g);
  for (const Pass& pass : order) {
    Status st = pass.fn(g, ctx);
    ASSERT_TRUE(st.ok()) << pass.name << ": " << st.to_string();
    st = ir::verify(g);
    ASSERT_TRUE(st.ok()) << pass.name << ": " << st.to_string();
  }
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"MatMulBias", "SkipLayerNormalization", "MatMulBias", "Gelu",
                                                   "MatMulBias", "SkipLayerNormalization"}));
  EXPECT_EQ(ctx.stats["fused_gelu"], 1);
  EXPECT_EQ(ctx.stats["fused_skip_layernorm"], 2);
  EXPECT_EQ(ctx.stats["fused_skip_layernorm_with_sum"], 1);
  ASSERT_TRUE(g.outputs[0]->shape);
  EXPECT_EQ(shape_to_string(*g.outputs[0]->shape), "[batch,4,16]");

  Tensor xin = test::random_tensor(DataType::kFloat32, {3, 4, h}, rng, -2, 2);
  EXPECT_TRUE(
      test::tensors_close(run_graph(g, {{"x", xin}}).at("y"), run_graph(*before, {{"x", xin}}).at("y"), 1e-5, 1e-5));
}

}  // namespace kiln::passes
