// shape_only_nodes: producers read only through Shape/Size (transitively) are found;
// a data reader, a graph output or a Shape node itself keeps a node out.
#include "ir/shape_only.h"

#include <gtest/gtest.h>

namespace kiln::ir {
namespace {

TEST(ShapeOnly, FindsProducersReadOnlyForShapes) {
  Graph g;
  Value* x = g.add_value("x", DataType::kFloat32, Shape{2, 3}).value();
  g.inputs.push_back(x);
  auto node = [&](const std::string& op, std::vector<Value*> ins, const std::string& out) {
    Value* o = g.add_value(out).value();
    g.add_node(op, std::move(ins), {o}, op + "_" + out);
    return o;
  };
  Value* t = node("Transpose", {x}, "t");   // read by Neg only, which Shape reads: shape-only
  Value* n = node("Neg", {t}, "n");
  Value* s = node("Shape", {n}, "s");
  Value* r = node("Relu", {x}, "r");        // read as data by Add: runs
  Value* a = node("Add", {r, x}, "a");      // a graph output: runs
  Value* sz = node("Size", {r}, "sz");
  g.outputs = {a, s, sz};
  auto only = shape_only_nodes(g);
  auto has = [&](const Value* v) { return only.count(v->producer) != 0; };
  EXPECT_TRUE(has(t));
  EXPECT_TRUE(has(n));
  EXPECT_FALSE(has(s));   // Shape nodes are computed from types, not listed
  EXPECT_FALSE(has(r));
  EXPECT_FALSE(has(a));
  EXPECT_EQ(only.size(), 2u);
}

}  // namespace
}  // namespace kiln::ir
