#include <gtest/gtest.h>

#include "ir/graph.h"

namespace kiln::ir {

TEST(Graph, TopoSortOrdersProducersFirstAndDetectsCycles) {
  Graph g;
  Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 4}).value();
  g.inputs.push_back(x);
  Value* a = g.add_value("a").value();
  Value* b = g.add_value("b").value();
  g.add_node("Relu", {a}, {b}, "second");
  g.add_node("Relu", {x}, {a}, "first");
  g.outputs.push_back(b);
  EXPECT_FALSE(verify(g).ok());
  ASSERT_TRUE(g.topo_sort().ok());
  EXPECT_EQ(g.nodes()[0]->name, "first");
  EXPECT_TRUE(verify(g).ok());
  g.nodes()[0]->inputs[0] = b;  // first now reads second's output: a cycle
  Status s = g.topo_sort();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cycle"), std::string::npos);
}

TEST(Graph, SubgraphCapturesOrderAndVerifyLikeInputs) {
  // The If's branch reads `a` by name: a's producer, appended after the If, must move first.
  Graph g;
  Value* x = g.add_value("x", DataType::kFloat32, Shape{4}).value();
  Value* c = g.add_value("c", DataType::kBool, Shape{}).value();
  g.inputs = {x, c};
  auto branch = std::make_shared<Graph>();
  Value* a_in = branch->add_value("a", DataType::kFloat32, Shape{4}).value();
  Value* r = branch->add_value("r", DataType::kFloat32, Shape{4}).value();
  branch->add_node("Neg", {a_in}, {r}, "neg");
  branch->outputs = {r};
  Value* y = g.add_value("y").value();
  Node* n = g.add_node("If", {c}, {y}, "if");
  Attribute then_branch, else_branch;
  then_branch.kind = else_branch.kind = Attribute::Kind::kGraph;
  then_branch.g = else_branch.g = branch;
  n->attrs.set("then_branch", then_branch);
  n->attrs.set("else_branch", else_branch);
  Value* a = g.add_value("a").value();
  g.add_node("Relu", {x}, {a}, "relu");
  g.outputs = {y};
  Status s = verify(g);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("reads 'a' before it is defined"), std::string::npos) << s.to_string();
  ASSERT_TRUE(g.topo_sort().ok());
  EXPECT_EQ(g.nodes()[0]->name, "relu");
  EXPECT_TRUE(verify(g).ok());
}

TEST(Graph, CloneIsDeepAndDumpShowsSymbolicDims) {
  Graph g;
  Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 3}).value();
  g.inputs.push_back(x);
  Value* y = g.add_value("y", DataType::kFloat32).value();
  g.add_node("Relu", {x}, {y}, "r");
  g.outputs.push_back(y);
  auto c = g.clone();
  c->nodes()[0]->name = "changed";
  EXPECT_EQ(g.nodes()[0]->name, "r");
  EXPECT_EQ(c->nodes()[0]->inputs[0], c->inputs[0]);
  EXPECT_NE(c->inputs[0], g.inputs[0]);
  std::string text = dump(g);
  EXPECT_NE(text.find("[batch,3]"), std::string::npos) << text;
  EXPECT_NE(text.find("Relu"), std::string::npos);
}

TEST(Graph, DuplicateValueNameIsAnError) {
  Graph g;
  ASSERT_TRUE(g.add_value("x").ok());
  auto r = g.add_value("x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'x'"), std::string::npos);
}

}  // namespace kiln::ir
