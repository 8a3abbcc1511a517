#include "plan/memory_plan.h"

#include <gtest/gtest.h>

namespace kiln::plan {

namespace {
bool overlaps(const Slot& a, const Slot& b) { return a.offset < b.offset + b.size && b.offset < a.offset + a.size; }
}  // namespace

TEST(MemoryPlan, ReusesBuffersWhoseLifetimesDoNotOverlap) {
  // x -> n0 -> a -> n1 -> b -> n2 -> c -> n3 -> y ; a and c never live together.
  ir::Graph g;
  ir::Value* x = g.add_value("x", DataType::kFloat32).value();
  g.inputs.push_back(x);
  ir::Value* a = g.add_value("a").value();
  ir::Value* b = g.add_value("b").value();
  ir::Value* c = g.add_value("c").value();
  ir::Value* y = g.add_value("y").value();
  g.add_node("Relu", {x}, {a});
  g.add_node("Relu", {a}, {b});
  g.add_node("Relu", {b}, {c});
  g.add_node("Relu", {c}, {y});
  g.outputs.push_back(y);
  MemoryPlan p = plan_memory(g, {{"a", 1000}, {"b", 3000}, {"c", 1000}, {"y", 500}});
  ASSERT_EQ(p.slots.size(), 3u) << "graph outputs live in user buffers";
  EXPECT_FALSE(overlaps(p.slots["a"], p.slots["b"]));
  EXPECT_FALSE(overlaps(p.slots["b"], p.slots["c"]));
  EXPECT_LT(p.arena_bytes, p.naive_bytes);
  for (auto& [n, s] : p.slots) EXPECT_EQ(s.offset % kAlignment, 0u) << n;
}

TEST(MemoryPlan, BranchesThatLiveTogetherNeverShare) {
  // x -> {p, q, r} -> Sum : all three live until the Sum.
  ir::Graph g;
  ir::Value* x = g.add_value("x", DataType::kFloat32).value();
  g.inputs.push_back(x);
  std::vector<ir::Value*> mids;
  for (const char* n : {"p", "q", "r"}) {
    mids.push_back(g.add_value(n).value());
    g.add_node("Relu", {x}, {mids.back()});
  }
  ir::Value* y = g.add_value("y").value();
  g.add_node("Sum", mids, {y});
  g.outputs.push_back(y);
  MemoryPlan p = plan_memory(g, {{"p", 640}, {"q", 64}, {"r", 6400}});
  EXPECT_FALSE(overlaps(p.slots["p"], p.slots["q"]));
  EXPECT_FALSE(overlaps(p.slots["p"], p.slots["r"]));
  EXPECT_FALSE(overlaps(p.slots["q"], p.slots["r"]));
  EXPECT_EQ(p.arena_bytes, p.naive_bytes);
}

TEST(MemoryPlan, ReshapeOutputsShareTheirInputSlot) {
  // x -> Relu -> a -> Reshape -> r -> Relu -> b -> Relu -> c -> Add(r, c) -> y
  // r is a's bytes: same slot, and a's slot stays busy until r's last reader (the Add),
  // so b and c must not land on it.
  ir::Graph g;
  ir::Value* x = g.add_value("x", DataType::kFloat32).value();
  g.inputs.push_back(x);
  ir::Value* shape = g.add_constant("shape", Tensor::from_vector<int64_t>(DataType::kInt64, {1}, {-1}));
  ir::Value* a = g.add_value("a").value();
  ir::Value* r = g.add_value("r").value();
  ir::Value* b = g.add_value("b").value();
  ir::Value* c = g.add_value("c").value();
  ir::Value* y = g.add_value("y").value();
  g.add_node("Relu", {x}, {a});
  g.add_node("Reshape", {a, shape}, {r});
  g.add_node("Relu", {r}, {b});
  g.add_node("Relu", {b}, {c});
  g.add_node("Add", {r, c}, {y});
  g.outputs.push_back(y);
  MemoryPlan p = plan_memory(g, {{"a", 1000}, {"r", 1000}, {"b", 1000}, {"c", 1000}, {"y", 1000}});
  EXPECT_EQ(p.slots["r"].offset, p.slots["a"].offset);
  EXPECT_FALSE(overlaps(p.slots["a"], p.slots["b"]));
  EXPECT_FALSE(overlaps(p.slots["a"], p.slots["c"]));
  EXPECT_FALSE(overlaps(p.slots["b"], p.slots["c"]));
}

}  // namespace kiln::plan
