#include "runtime/executor.h"

#include <chrono>

#include "ops/op.h"

namespace kiln {

Status execute_graph(const ir::Graph& g, const std::vector<Tensor>& inputs, const Scope* outer, const ExecOptions& opts,
                     std::vector<Tensor>& outputs) {
  if (inputs.size() != g.inputs.size())
    return Status(ErrorCode::kInvalidArgument, "graph '" + g.name + "' takes " + std::to_string(g.inputs.size()) +
                                                   " inputs, got " + std::to_string(inputs.size()));
  std::unordered_map<const ir::Value*, Tensor> env;
  for (size_t i = 0; i < inputs.size(); ++i) env[g.inputs[i]] = inputs[i];
  const auto& nodes = g.nodes();
  // Last reader of each value, so heap buffers are released early.
  std::unordered_map<const ir::Value*, size_t> last_use;
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (ir::Value* in : nodes[i]->inputs)
      if (in) last_use[in] = i;
    // Values captured by a body by name stay alive until that node has run.
    for (auto& r : ir::subgraph_captures(*nodes[i]))
      if (const ir::Value* v = g.find_value(r)) last_use[v] = i;
  }
  auto lookup = [&](const ir::Value* v) -> const Tensor* {
    if (v->initializer) return v->initializer.get();
    auto it = env.find(v);
    if (it != env.end()) return &it->second;
    return outer ? outer->find(v->name) : nullptr;
  };
  for (size_t i = 0; i < nodes.size(); ++i) {
    const ir::Node& node = *nodes[i];
    std::vector<const Tensor*> ins;
    for (ir::Value* in : node.inputs) {
      if (!in) {
        ins.push_back(nullptr);
        continue;
      }
      const Tensor* t = lookup(in);
      if (!t)
        return Status(ErrorCode::kInternal, "node " + node.describe() + " input '" + in->name + "' was not computed");
      ins.push_back(t);
    }
    auto alloc = [&](size_t k, DataType dt, const Dims& dims) -> Tensor {
      if (opts.arena && opts.memory) {
        auto slot = opts.memory->slots.find(node.outputs[k]->name);
        uint64_t need = static_cast<uint64_t>(dims_volume(dims)) * dtype_size(dt);
        if (slot != opts.memory->slots.end() && need <= slot->second.size)
          return Tensor::view(dt, dims, opts.arena + slot->second.offset);
      }
      return Tensor::empty(dt, dims);
    };
    // Bodies see this graph's values (and everything outer) by name.
    ops::SubgraphRunner runner;
    bool has_subgraph = false;
    for (auto& [k, a] : node.attrs.all()) has_subgraph = has_subgraph || a.g || !a.graphs.empty();
    Scope scope;
    if (has_subgraph) {
      scope.parent = outer;
      for (auto& [v, t] : env) scope.names[v->name] = &t;
      for (auto& [name, v] : g.values())
        if (v->initializer) scope.names[name] = v->initializer.get();
      runner = [&scope, &opts](const ir::Graph& body,
                               const std::vector<Tensor>& body_inputs) -> Result<std::vector<Tensor>> {
        ExecOptions sub;
        sub.num_threads = opts.num_threads;
        std::vector<Tensor> outs;
        KILN_RETURN_IF_ERROR(execute_graph(body, body_inputs, &scope, sub, outs));
        return outs;
      };
    }
    ScopeTypes typing(has_subgraph ? &scope : nullptr);
    std::vector<Tensor> outs;
    auto t0 = std::chrono::steady_clock::now();
    KILN_RETURN_IF_ERROR(ops::run_node(node, ins, outs, runner, opts.num_threads, alloc));
    if (opts.layer_times)
      opts.layer_times->emplace_back(
          node.name.empty() ? node.op_type : node.name,
          std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - t0).count());
    for (size_t k = 0; k < node.outputs.size(); ++k)
      if (node.outputs[k]) env[node.outputs[k]] = std::move(outs[k]);
    if (!has_subgraph)
      for (ir::Value* in : node.inputs)
        if (in && !in->initializer && last_use[in] == i && !g.is_output(in)) env.erase(in);
  }
  outputs.clear();
  for (ir::Value* o : g.outputs) {
    const Tensor* t = lookup(o);
    if (!t) return Status(ErrorCode::kInternal, "output '" + o->name + "' was not computed");
    outputs.push_back(*t);
  }
  return Status();
}

}  // namespace kiln
