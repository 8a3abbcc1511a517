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
