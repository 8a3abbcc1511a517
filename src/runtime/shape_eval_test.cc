// Symbolic shape values (shape_eval.h): the exporters' Shape -> Gather -> Concat arithmetic
// gives Reshape / Expand symbolic output dims, and base/shape.h's monomial dims.
#include "runtime/shape_eval.h"

#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln {
namespace {

TEST(Monomial, ProductsAndExactQuotientsOfSymbols) {
  const Dim b = Dim::symbol("batch"), s = Dim::symbol("seq");
  EXPECT_EQ(dim_mul(b, Dim(4)).to_string(), "4*batch");
  EXPECT_EQ(dim_mul(Dim(197), dim_mul(b, Dim(4))).to_string(), "788*batch");
  EXPECT_EQ(dim_mul(s, b), dim_mul(b, s));  // canonical: factors sorted
  EXPECT_EQ(dim_mul(s, b).to_string(), "batch*seq");
  EXPECT_EQ(dim_div(dim_mul(b, Dim(12)), Dim(3)).to_string(), "4*batch");
  EXPECT_EQ(dim_div(dim_mul(b, Dim(12)), dim_mul(b, Dim(4))), Dim(3));
  EXPECT_EQ(dim_div(dim_mul(b, s), s), b);
  EXPECT_FALSE(dim_div(dim_mul(b, Dim(6)), Dim(4)).known());  // not exact: unknown, never a guess
  EXPECT_TRUE(dim_div(dim_mul(b, Dim(6)), Dim(4)).name.empty());
  EXPECT_TRUE(dim_div(b, s).name.empty());
  EXPECT_TRUE(dim_mul(b, Dim::unknown()).name.empty());
  EXPECT_FALSE(dim_mul(Dim(int64_t{1} << 40), Dim(int64_t{1} << 40)).known());  // overflow: unknown
  EXPECT_EQ(dim_mul(Dim(0), b), Dim(0));
  // A model's own symbol with '*' and digits stays one name through a product.
  EXPECT_EQ(dim_mul(Dim::symbol("N"), Dim(2)).to_string(), "2*N");
}

// y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), rest)) over x [batch, seq, 768] (rest
// [-1, 12, 64] unless given), then z = Expand(c [1, 1, 768], Concat(Unsqueeze(Gather(Shape(x), 0)), [1, 768])).
struct ShapeNet {
  ir::Graph g;
  ir::Value *x = nullptr, *y = nullptr, *z = nullptr, *c = nullptr;
};
void build_shape_net(ShapeNet& n, Dim seq = Dim::symbol("seq"), std::vector<int64_t> rest = {-1, 12, 64}) {
  ir::Graph& g = n.g;
  n.x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), seq, 768}).value();
  g.inputs = {n.x};
  auto node = [&](const std::string& op, std::vector<ir::Value*> ins, DataType t) {
    ir::Value* o = g.add_unique_value(op + "_out", t);
    ir::Node* nd = g.add_node(op, ins, {o}, g.unique_name(op));
    nd->opset = 17;
    return nd;
  };
  auto ints = [&](const std::string& name, std::vector<int64_t> v, bool scalar = false) {
    const Dims d = scalar ? Dims{} : Dims{static_cast<int64_t>(v.size())};
    return g.add_constant(name, Tensor::from_vector<int64_t>(DataType::kInt64, d, v));
  };
  ir::Node* shape = node("Shape", {n.x}, DataType::kInt64);
  ir::Node* b = node("Gather", {shape->outputs[0], ints("zero", {0}, true)}, DataType::kInt64);
  ir::Node* b1 = node("Unsqueeze", {b->outputs[0], ints("axes", {0})}, DataType::kInt64);
  ir::Node* target = node("Concat", {b1->outputs[0], ints("rest", rest)}, DataType::kInt64);
  target->attrs.set("axis", ir::Attribute::from_int(0));
  n.y = node("Reshape", {n.x, target->outputs[0]}, DataType::kFloat32)->outputs[0];
  ir::Node* to = node("Concat", {b1->outputs[0], ints("one_d", {1, 768})}, DataType::kInt64);
  to->attrs.set("axis", ir::Attribute::from_int(0));
  Tensor ct = Tensor::empty(DataType::kFloat32, {1, 1, 768});
  for (int64_t i = 0; i < 768; ++i) ct.set_from_double(i, 0.001 * static_cast<double>(i));
  n.c = g.add_constant("c", ct);
  n.z = node("Expand", {n.c, to->outputs[0]}, DataType::kFloat32)->outputs[0];
  g.outputs = {n.y, n.z};
}

TEST(ShapeEval, ShapeArithmeticGivesSymbolicDims) {
  ShapeNet n;
  build_shape_net(n);
  Propagation p;
  ASSERT_TRUE(propagate(n.g, {{"x", *n.x->shape}}, p).ok());
  EXPECT_EQ(shape_to_string(*p.types.at(n.y).shape), "[batch,seq,12,64]");
  EXPECT_EQ(shape_to_string(*p.types.at(n.z).shape), "[batch,1,768]");
  // The target itself is known element by element: batch, then the literals.
  const SymVec& t = p.sym.at(n.y->producer->inputs[1]);
  ASSERT_EQ(t.e.size(), 4u);
  EXPECT_FALSE(t.e[0].literal);
  EXPECT_EQ(t.e[0].dim, Dim::symbol("batch"));
  EXPECT_TRUE(t.e[1].literal && t.e[1].value == -1);
  // With concrete inputs the same graph evaluates to numbers, as it always did.
  Propagation q;
  ASSERT_TRUE(propagate(n.g, {{"x", Shape{2, 5, 768}}}, q).ok());
  EXPECT_EQ(shape_to_string(*q.types.at(n.y).shape), "[2,5,12,64]");
  EXPECT_EQ(shape_to_string(*q.types.at(n.z).shape), "[2,1,768]");
}

// Where(Equal(t, -1), 1, t) (torch's expand(-1, ...) export) and Div / Mul / Slice of shape values.
TEST(ShapeEval, EqualWhereAndArithmeticOfShapeValues) {
  ir::Graph g;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("B"), 196, 768}).value();
  g.inputs = {x};
  auto node = [&](const std::string& op, std::vector<ir::Value*> ins, DataType t) {
    ir::Value* o = g.add_unique_value(op + "_out", t);
    ir::Node* nd = g.add_node(op, ins, {o}, g.unique_name(op));
    nd->opset = 17;
    return nd;
  };
  auto ints = [&](const std::string& name, std::vector<int64_t> v) {
    return g.add_constant(name, Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(v.size())}, v));
  };
  ir::Node* shape = node("Shape", {x}, DataType::kInt64);
  // [B, 196] * [1, 4] / [1, 2] -> [B, 392]; Slice keeps the first two.
  ir::Node* first2 = node("Slice", {shape->outputs[0], ints("s0", {0}), ints("e2", {2})}, DataType::kInt64);
  ir::Node* mul = node("Mul", {first2->outputs[0], ints("m", {1, 4})}, DataType::kInt64);
  ir::Node* div = node("Div", {mul->outputs[0], ints("d", {1, 2})}, DataType::kInt64);
  ir::Node* tgt = node("Concat", {div->outputs[0], ints("h", {384})}, DataType::kInt64);
  tgt->attrs.set("axis", ir::Attribute::from_int(0));
  ir::Value* r = node("Reshape", {x, tgt->outputs[0]}, DataType::kFloat32)->outputs[0];
  // Where(Equal([B, -1, -1], -1), [1, 1, 1], [B, -1, -1]) = [B, 1, 1].
  ir::Node* b = node("Slice", {shape->outputs[0], ints("s0b", {0}), ints("e1", {1})}, DataType::kInt64);
  ir::Node* v = node("Concat", {b->outputs[0], ints("neg", {-1, -1})}, DataType::kInt64);
  v->attrs.set("axis", ir::Attribute::from_int(0));
  ir::Node* eq = node("Equal", {v->outputs[0], ints("minus1", {-1})}, DataType::kBool);
  ir::Node* w = node("Where", {eq->outputs[0], ints("ones", {1, 1, 1}), v->outputs[0]}, DataType::kInt64);
  Tensor ct = Tensor::empty(DataType::kFloat32, {1, 1, 768});
  ir::Value* e = node("Expand", {g.add_constant("c", ct), w->outputs[0]}, DataType::kFloat32)->outputs[0];
  g.outputs = {r, e};
  Propagation p;
  ASSERT_TRUE(propagate(g, {{"x", *x->shape}}, p).ok());
  EXPECT_EQ(shape_to_string(*p.types.at(r).shape), "[B,392,384]");
  EXPECT_EQ(shape_to_string(*p.types.at(e).shape), "[B,1,768]");
}

TEST(FoldShapeTargets, RuntimeTargetsBecomeConstantsWithTheSameResult) {
  ShapeNet n;
  build_shape_net(n, Dim(7), {7, 12, 64});  // target [batch, 7, 12, 64]
  auto before = n.g.clone();
  passes::PassContext ctx = passes::testing::context_for(n.g);
  ASSERT_TRUE(passes::infer_shapes(n.g, ctx).ok());
  ASSERT_TRUE(passes::fold_shape_targets(n.g, ctx).ok());
  EXPECT_EQ(ctx.stats["folded_shape_targets"], 1);
  const ir::Value* t = n.y->producer->inputs[1];
  ASSERT_TRUE(t->is_constant());
  // batch, the one symbolic element, is inferred; the Expand keeps its runtime target.
  EXPECT_EQ(t->initializer->to_int64_vector(), (std::vector<int64_t>{-1, 7, 12, 64}));
  EXPECT_FALSE(n.z->producer->inputs[1]->is_constant());
  ASSERT_TRUE(passes::eliminate_dead_nodes(n.g, ctx).ok());
  std::mt19937 rng(3);
  for (int64_t batch : {1, 3}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    const Tensor x = test::random_tensor(DataType::kFloat32, {batch, 7, 768}, rng);
    auto want = passes::testing::run_graph(*before, {{"x", x}});
    auto got = passes::testing::run_graph(n.g, {{"x", x}});
    passes::testing::expect_outputs_close(*before, got, want, 0, 0);
  }
  // The default net's target, [batch, -1, 12, 64], already infers one dim: it stays.
  ShapeNet m;
  build_shape_net(m);
  passes::PassContext mctx = passes::testing::context_for(m.g);
  ASSERT_TRUE(passes::infer_shapes(m.g, mctx).ok());
  ASSERT_TRUE(passes::fold_shape_targets(m.g, mctx).ok());
  EXPECT_EQ(mctx.stats["folded_shape_targets"], 0);
}

// A target with two dims it cannot place (neither the input's dim at that position) stays.
TEST(FoldShapeTargets, TwoDimsToInferStay) {
  ir::Graph g;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("a"), Dim::symbol("b"), 8}).value();
  g.inputs = {x};
  ir::Value* shp = g.add_unique_value("shp", DataType::kInt64);
  g.add_node("Shape", {x}, {shp}, "shape")->opset = 17;
  ir::Value* idx = g.add_constant("idx", Tensor::from_vector<int64_t>(DataType::kInt64, {3}, {1, 0, 2}));
  ir::Value* perm = g.add_unique_value("perm", DataType::kInt64);
  g.add_node("Gather", {shp, idx}, {perm}, "gather")->opset = 17;  // [b, a, 8]: swapped
  ir::Value* y = g.add_unique_value("y", DataType::kFloat32);
  g.add_node("Reshape", {x, perm}, {y}, "reshape")->opset = 17;
  g.outputs = {y};
  passes::PassContext ctx = passes::testing::context_for(g);
  ASSERT_TRUE(passes::infer_shapes(g, ctx).ok());
  EXPECT_EQ(shape_to_string(*y->shape), "[b,a,8]");
  ASSERT_TRUE(passes::fold_shape_targets(g, ctx).ok());
  EXPECT_EQ(ctx.stats["folded_shape_targets"], 0);
  EXPECT_FALSE(y->producer->inputs[1]->is_constant());
}

}  // namespace
}  // namespace kiln
