#include "plan/memory_plan.h"

#include <algorithm>
#include <unordered_map>

namespace kiln::plan {

namespace {
uint64_t align_up(uint64_t x) { return (x + kAlignment - 1) / kAlignment * kAlignment; }

struct Interval {
  std::string name;
  int first = 0, last = 0;
  uint64_t size = 0;
};

// Ops whose output is input 0's bytes unchanged: the output shares its slot.
bool is_alias_op(const ir::Node& n) {
  if (!n.domain.empty() || n.inputs.empty() || !n.inputs[0] || n.outputs.empty() || !n.outputs[0]) return false;
  return n.op_type == "Reshape" || n.op_type == "Flatten" || n.op_type == "Squeeze" || n.op_type == "Unsqueeze" ||
         n.op_type == "Identity";
}
}  // namespace

MemoryPlan plan_memory(const ir::Graph& g, const std::map<std::string, uint64_t>& bytes) {
  std::unordered_map<const ir::Value*, Interval> live;
  // A reshape-like output lives in its input's slot: root[alias] is the value
  // that owns the slot, whose lifetime then covers every alias's readers.
  std::unordered_map<const ir::Value*, const ir::Value*> root;
  auto root_of = [&](const ir::Value* v) {
    auto r = root.find(v);
    return r == root.end() ? v : r->second;
  };
  const auto& nodes = g.nodes();
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    for (ir::Value* in : nodes[i]->inputs) {
      auto it = in ? live.find(root_of(in)) : live.end();
      if (it != live.end()) it->second.last = std::max(it->second.last, i);
    }
    for (ir::Value* o : nodes[i]->outputs) {
      if (!o || g.is_output(o) || o->is_constant()) continue;
      auto b = bytes.find(o->name);
      if (b == bytes.end() || b->second == 0) continue;
      if (is_alias_op(*nodes[i])) {
        const ir::Value* r = root_of(nodes[i]->inputs[0]);
        auto it = live.find(r);
        if (it != live.end() && it->second.size == align_up(b->second)) {
          root[o] = r;
          it->second.last = std::max(it->second.last, i);
          continue;
        }
      }
      live[o] = Interval{o->name, i, i, align_up(b->second)};
    }
    // Values captured by subgraphs stay alive while the node runs.
    for (auto& r : ir::subgraph_captures(*nodes[i])) {
      ir::Value* v = g.find_value(r);
      auto it = v ? live.find(root_of(v)) : live.end();
      if (it != live.end()) it->second.last = std::max(it->second.last, i);
    }
  }
  std::vector<Interval> order;
  for (auto& [v, iv] : live) order.push_back(iv);
  std::sort(order.begin(), order.end(), [](const Interval& a, const Interval& b) {
    return a.size != b.size ? a.size > b.size : a.name < b.name;
  });
  MemoryPlan plan;
  std::vector<std::pair<Interval, Slot>> placed;
  for (const Interval& iv : order) {
    // Occupied ranges of buffers whose lifetimes overlap this one.
    std::vector<Slot> busy;
    for (auto& [other, slot] : placed)
      if (!(other.last < iv.first || iv.last < other.first)) busy.push_back(slot);
    std::sort(busy.begin(), busy.end(), [](const Slot& a, const Slot& b) { return a.offset < b.offset; });
    uint64_t best = UINT64_MAX, best_gap = UINT64_MAX, cursor = 0;
    for (const Slot& s : busy) {
      if (s.offset > cursor) {
        uint64_t gap = s.offset - cursor;
        if (gap >= iv.size && gap < best_gap) {
          best = cursor;
          best_gap = gap;
        }
      }
      cursor = std::max(cursor, s.offset + s.size);
    }
    if (best == UINT64_MAX) best = cursor;
    Slot slot{best, iv.size};
    placed.push_back({iv, slot});
    plan.slots[iv.name] = slot;
    plan.arena_bytes = std::max(plan.arena_bytes, best + iv.size);
    plan.naive_bytes += iv.size;
  }
  for (auto& [alias, r] : root) plan.slots[alias->name] = plan.slots.at(r->name);
  return plan;
}

}  // namespace kiln::plan
