// The executor: walks a planned graph in order and runs each node's kernel.
// Subgraphs (If/Loop/Scan bodies) run through the same code with a scope chain
// that resolves outer-scope names.
#pragma once

#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "ops/control/outer_types.h"
#include "ops/op.h"
#include "plan/memory_plan.h"

namespace kiln {

/// Name -> tensor bindings visible to a (sub)graph, chained to the enclosing scope.
struct Scope {
  const Scope* parent = nullptr;
  std::unordered_map<std::string, const Tensor*> names;
  const Tensor* find(const std::string& n) const {
    for (const Scope* s = this; s; s = s->parent) {
      auto it = s->names.find(n);
      if (it != s->names.end()) return it->second;
    }
    return nullptr;
  }
};

/// While alive (and given a scope), the type inference of the bodies of the node being run
/// sees the types of the outer values they read by name: an ops::OuterTypes over `scope`'s
/// tensors. Null scope: nothing (a node without bodies).
class ScopeTypes {
 public:
  explicit ScopeTypes(const Scope* scope) {
    if (!scope) return;
    typing_.emplace([this, scope](const std::string& name) -> const ops::TensorType* {
      auto it = cache_.find(name);
      if (it != cache_.end()) return &it->second;
      const Tensor* t = scope->find(name);
      if (!t) return nullptr;
      return &cache_.emplace(name, ops::TensorType{t->dtype(), shape_from_dims(t->dims())}).first->second;
    });
  }

 private:
  std::unordered_map<std::string, ops::TensorType> cache_;
  std::optional<ops::OuterTypes> typing_;  // after cache_: closed before it goes
};

struct ExecOptions {
  uint8_t* arena = nullptr;                  ///< top-level graph only
  const plan::MemoryPlan* memory = nullptr;  ///< slots into the arena
  int num_threads = 1;
  /// When set, (node name, milliseconds) of each top-level node is appended.
  std::vector<std::pair<std::string, float>>* layer_times = nullptr;
};

/// Runs `g` with `inputs` in the order of g.inputs; fills `outputs` in the order of g.outputs.
/// Values the graph reads but does not define are looked up in `outer`.
Status execute_graph(const ir::Graph& g, const std::vector<Tensor>& inputs, const Scope* outer, const ExecOptions& opts,
                     std::vector<Tensor>& outputs);

}  // namespace kiln
