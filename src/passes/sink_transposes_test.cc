// Golden tests for sink_transposes: a last-axis-keeping Transpose moves through MatMul and a
// last-axis bias to meet (and, after cancel_transposes, cancel) another Transpose; it stays where
// the permutation moves the last axis or an operand broadcasts along another axis; the
// torchvision MHA layout ([S, B, E] around attention) disappears into FusedAttention's views and
// a Gemm between Reshapes. Each rewritten graph gives the reference outputs on random inputs.
#include <gtest/gtest.h>

#include <random>

#include "ops/attention/attn_view.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {

namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;
using testing::run_pass;

constexpr int64_t kB = 3, kS = 5, kE = 8, kF = 6;

Tensor random_tensor(const Dims& d, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  Tensor t = Tensor::empty(DataType::kFloat32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_from_double(i, u(rng));
  return t;
}

struct G {
  ir::Graph g;
  ir::Value* input(const std::string& name, const Dims& d) {
    ir::Value* v = g.add_value(name, DataType::kFloat32, shape_from_dims(d)).value();
    g.inputs.push_back(v);
    return v;
  }
  ir::Node* node(const std::string& type, const std::vector<ir::Value*>& ins, const ir::Attributes& a = {}) {
    ir::Value* o = g.add_unique_value("t");
    ir::Node* n = g.add_node(type, ins, {o}, g.unique_name(type));
    n->attrs = a;
    n->opset = 17;
    return n;
  }
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const ir::Attributes& a = {}) {
    return node(type, ins, a)->outputs[0];
  }
  ir::Value* c(Tensor t) { return g.add_constant("c", std::move(t)); }
  ir::Value* ints(std::vector<int64_t> v) {
    return c(Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(v.size())}, v));
  }
  ir::Value* transpose(ir::Value* x, std::vector<int64_t> p) {
    ir::Attributes a;
    a.set("perm", ir::Attribute::from_ints(std::move(p)));
    return op("Transpose", {x}, a);
  }
};

int count(const ir::Graph& g, const std::string& op) {
  auto ops = op_types(g);
  return static_cast<int>(std::count(ops.begin(), ops.end(), op));
}

const ir::Node* first(const ir::Graph& g, const std::string& op) {
  for (auto& n : g.nodes())
    if (n->op_type == op) return n.get();
  return nullptr;
}

// Runs sink_transposes then cancel_transposes (as the pipeline does) and checks the outputs.
void run_and_compare(G& b, const std::map<std::string, Tensor>& in, int want_transposes) {
  std::unique_ptr<ir::Graph> before(b.g.clone());
  BuilderConfig cfg;
  PassContext ctx = context_for(b.g, cfg);
  run_pass(b.g, sink_transposes, ctx);
  if (::testing::Test::HasFatalFailure()) return;
  run_pass(b.g, cancel_transposes, ctx);
  if (::testing::Test::HasFatalFailure()) return;
  EXPECT_EQ(count(b.g, "Transpose"), want_transposes) << ir::dump(b.g);
  auto want = run_graph(*before, in);
  auto got = run_graph(b.g, in);
  for (auto& [name, w] : want) {
    const Tensor& t = got.at(name);
    ASSERT_EQ(t.dims(), w.dims()) << name;
    for (int64_t i = 0; i < w.numel(); ++i)
      ASSERT_NEAR(t.get_as_double(i), w.get_as_double(i), 1e-4) << name << " at " << i;
  }
}

TEST(SinkTransposes, MovesThroughMatMulAndCancels) {
  G b;
  ir::Value* x = b.input("x", {kB, kS, kE});
  ir::Value* t = b.transpose(x, {1, 0, 2});
  ir::Node* mm = b.node("MatMul", {t, b.c(random_tensor({kE, kF}, 1))});
  b.g.outputs.push_back(b.transpose(mm->outputs[0], {1, 0, 2}));
  BuilderConfig cfg;
  PassContext ctx = context_for(b.g, cfg);
  std::unique_ptr<ir::Graph> g0(b.g.clone());
  run_pass(b.g, sink_transposes, ctx);
  EXPECT_EQ(mm->inputs[0], x) << ir::dump(b.g);
  EXPECT_EQ(ctx.stats["sunk_transposes"], 1);
  ASSERT_EQ(count(b.g, "Transpose"), 1) << ir::dump(b.g);  // composed: the identity
  EXPECT_EQ(first(b.g, "Transpose")->attrs.get_ints("perm"), (std::vector<int64_t>{0, 1, 2}));
  std::map<std::string, Tensor> in{{"x", random_tensor({kB, kS, kE}, 2)}};
  G again;
  ir::Value* x2 = again.input("x", {kB, kS, kE});
  ir::Node* mm2 = again.node("MatMul", {again.transpose(x2, {1, 0, 2}), again.c(random_tensor({kE, kF}, 1))});
  again.g.outputs.push_back(again.transpose(mm2->outputs[0], {1, 0, 2}));
  run_and_compare(again, in, 0);
}

TEST(SinkTransposes, MovesThroughMatMulAndLastAxisBias) {
  G b;
  ir::Value* x = b.input("x", {kB, kS, kE});
  ir::Value* t = b.transpose(x, {1, 0, 2});
  ir::Value* y = b.op("MatMul", {t, b.c(random_tensor({kE, kF}, 1))});
  ir::Value* z = b.op("Add", {b.c(random_tensor({kF}, 3)), y});  // bias first, as torch exports it
  ir::Value* r = b.op("Relu", {z});
  b.g.outputs.push_back(b.transpose(r, {1, 0, 2}));
  run_and_compare(b, {{"x", random_tensor({kB, kS, kE}, 4)}}, 0);
  EXPECT_EQ(count(b.g, "Add"), 1);
  EXPECT_EQ(first(b.g, "MatMul")->inputs[0], x);
}

TEST(SinkTransposes, StaysWhenThePermutationMovesTheLastAxis) {
  G b;
  ir::Value* x = b.input("x", {kB, kE, kS});
  ir::Value* t = b.transpose(x, {0, 2, 1});
  ir::Node* mm = b.node("MatMul", {t, b.c(random_tensor({kE, kF}, 1))});
  b.g.outputs.push_back(b.transpose(mm->outputs[0], {0, 2, 1}));
  run_and_compare(b, {{"x", random_tensor({kB, kE, kS}, 5)}}, 2);
  EXPECT_EQ(mm->inputs[0], t);
}

TEST(SinkTransposes, StaysWhenAnOperandBroadcastsAlongAnotherAxis) {
  G b;
  ir::Value* x = b.input("x", {kB, kS, kE});
  ir::Value* t = b.transpose(x, {1, 0, 2});
  ir::Node* add = b.node("Add", {t, b.c(random_tensor({kS, 1, 1}, 6))});
  b.g.outputs.push_back(b.transpose(add->outputs[0], {1, 0, 2}));
  run_and_compare(b, {{"x", random_tensor({kB, kS, kE}, 7)}}, 2);
  EXPECT_EQ(add->inputs[0], t);
}

TEST(SinkTransposes, StaysWhenNothingToMeet) {
  G b;
  ir::Value* x = b.input("x", {kB, kS, kE});
  ir::Value* t = b.transpose(x, {1, 0, 2});
  ir::Node* mm = b.node("MatMul", {t, b.c(random_tensor({kE, kF}, 1))});
  b.g.outputs.push_back(mm->outputs[0]);  // the transposed result is the output: moving it gains nothing
  run_and_compare(b, {{"x", random_tensor({kB, kS, kE}, 8)}}, 1);
  EXPECT_EQ(mm->inputs[0], t);
}

TEST(SinkTransposes, TwoTransposesMeetThroughUnaryOpsAndCancel) {
  G b;
  ir::Value* x = b.input("x", {kB, kS, 2, kE});
  ir::Value* t = b.transpose(x, {2, 0, 1, 3});
  ir::Attributes to;
  to.set("to", ir::Attribute::from_int(static_cast<int64_t>(DataType::kFloat32)));
  ir::Value* y = b.op("Cast", {b.op("Erf", {b.op("Relu", {t})})}, to);
  y = b.op("Mul", {y, b.c(random_tensor({1, 1, 1, kE}, 9))});
  b.g.outputs.push_back(b.transpose(y, {1, 2, 0, 3}));
  run_and_compare(b, {{"x", random_tensor({kB, kS, 2, kE}, 10)}}, 0);
  EXPECT_EQ(count(b.g, "Relu"), 1);
}

TEST(SinkTransposes, ShapeReaderKeepsTheOldLayout) {
  G b;
  ir::Value* x = b.input("x", {kB, kS, kE});
  ir::Value* t = b.transpose(x, {1, 0, 2});
  ir::Value* y = b.op("MatMul", {t, b.c(random_tensor({kE, kF}, 1))});
  b.g.outputs.push_back(b.op("Shape", {y}));
  b.g.outputs.push_back(b.transpose(y, {1, 0, 2}));
  run_and_compare(b, {{"x", random_tensor({kB, kS, kE}, 11)}}, 1);  // the Shape reader's, which never runs
  EXPECT_EQ(first(b.g, "MatMul")->inputs[0], x);
  EXPECT_EQ(first(b.g, "Transpose")->outputs[0], first(b.g, "Shape")->inputs[0]);
}

// torchvision's nn.MultiheadAttention(batch_first=True) after fuse_attention:
//   x[B,S,E] -> T(1,0,2) -> MatMulBias(W_in) -> FusedAttention(views of [S,B,3E]) -> [S,B,H,D]
//   -> Reshape [-1,E] -> Gemm(W_out^T, b) -> Reshape [S,B,E] -> T(1,0,2) -> [B,S,E]
TEST(SinkTransposes, MhaLayoutFoldsIntoAttentionViews) {
  constexpr int64_t kH = 2, kD = 4, kEm = kH * kD;
  namespace av = ops::attn;
  G b;
  ir::Value* x = b.input("x", {kB, kS, kEm});
  ir::Value* t = b.transpose(x, {1, 0, 2});
  ir::Node* in_proj =
      b.node("MatMulBias", {t, b.c(random_tensor({kEm, 3 * kEm}, 1)), b.c(random_tensor({3 * kEm}, 2))});
  in_proj->domain = "kiln";
  in_proj->opset = 1;
  b.g.opset_imports.emplace("kiln", 1);
  ir::Value* qkv = in_proj->outputs[0];
  auto view = [&](int64_t which) {
    std::vector<int64_t> code;
    av::encode_step(code, av::kReshape, {4, 0});  // [S,B,3,H,D]
    av::encode_step(code, av::kGather, {2, which});
    av::encode_step(code, av::kTranspose, {1, 2, 0, 3});  // [B,H,S,D]
    return code;
  };
  std::vector<int64_t> o_view;
  av::encode_step(o_view, av::kTranspose, {2, 0, 1, 3});  // [S,B,H,D]
  ir::Value* o = b.g.add_unique_value("o");
  ir::Node* f = b.g.add_node("FusedAttention", {qkv, qkv, qkv, nullptr, b.ints({kS, kB, 3, kH, kD})}, {o}, "fa");
  f->domain = "kiln";
  f->opset = 1;
  f->attrs.set("scale", ir::Attribute::from_float(0.5f));
  f->attrs.set("q_view", ir::Attribute::from_ints(view(0)));
  f->attrs.set("k_view", ir::Attribute::from_ints(view(1)));
  f->attrs.set("v_view", ir::Attribute::from_ints(view(2)));
  f->attrs.set("o_view", ir::Attribute::from_ints(o_view));
  ir::Value* rows = b.op("Reshape", {o, b.ints({-1, kEm})});
  ir::Attributes gemm;
  gemm.set("transB", ir::Attribute::from_int(1));
  ir::Value* proj = b.op("Gemm", {rows, b.c(random_tensor({kEm, kEm}, 3)), b.c(random_tensor({kEm}, 4))}, gemm);
  ir::Value* sbe = b.op("Reshape", {proj, b.ints({kS, kB, kEm})});
  b.g.outputs.push_back(b.transpose(sbe, {1, 0, 2}));
  run_and_compare(b, {{"x", random_tensor({kB, kS, kEm}, 5)}}, 0);
  EXPECT_EQ(count(b.g, "Gemm"), 0) << ir::dump(b.g);
  EXPECT_EQ(count(b.g, "MatMulBias"), 2) << ir::dump(b.g);
  const ir::Node* fa = first(b.g, "FusedAttention");
  ASSERT_NE(fa, nullptr);
  EXPECT_EQ(in_proj->inputs[0], x);
  EXPECT_EQ(fa->inputs[0], in_proj->outputs[0]);
  std::vector<int64_t> want_o;
  av::encode_step(want_o, av::kTranspose, {0, 2, 1, 3});  // [B,S,H,D]: the two permutations merged
  EXPECT_EQ(fa->attrs.get_ints("o_view"), want_o);
  EXPECT_EQ(fa->attrs.get_ints("q_view").front(), av::kTranspose);
}

}  // namespace

}  // namespace kiln::passes
