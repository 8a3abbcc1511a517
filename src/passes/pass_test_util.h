// Helpers shared by the pass tests: run a graph with the reference kernels, a
// PassContext from the graph's inputs, the op types in order.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "ops/op.h"
#include "passes/pass.h"

namespace kiln::passes::testing {

// Runs a graph node by node with the reference kernels.
inline std::map<std::string, Tensor> run_graph(const ir::Graph& g, const std::map<std::string, Tensor>& inputs) {
  std::map<const ir::Value*, Tensor> env;
  for (ir::Value* in : g.inputs) env[in] = inputs.at(in->name);
  for (auto& n : g.nodes()) {
    std::vector<const Tensor*> ins;
    for (ir::Value* v : n->inputs) ins.push_back(!v ? nullptr : v->initializer ? v->initializer.get() : &env.at(v));
    std::vector<Tensor> outs;
    Status s = ops::run_node(*n, ins, outs);
    EXPECT_TRUE(s.ok()) << s.to_string();
    for (size_t i = 0; i < outs.size(); ++i)
      if (n->outputs[i]) env[n->outputs[i]] = outs[i];
  }
  std::map<std::string, Tensor> out;
  for (ir::Value* o : g.outputs) out[o->name] = o->initializer ? *o->initializer : env.at(o);
  return out;
}

// Infers shapes (as the pipeline has by then), runs `pass` and checks the graph.
inline void run_pass(ir::Graph& g, PassFn pass, PassContext& ctx) {
  Status s = infer_shapes(g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  s = pass(g, ctx);
  ASSERT_TRUE(s.ok()) << s.to_string();
  s = ir::verify(g);
  ASSERT_TRUE(s.ok()) << s.to_string() << "\n" << ir::dump(g);
}

inline PassContext context_for(const ir::Graph& g) {
  PassContext ctx;
  for (ir::Value* in : g.inputs) ctx.input_shapes[in->name] = *in->shape;
  return ctx;
}

inline std::vector<std::string> op_types(const ir::Graph& g) {
  std::vector<std::string> r;
  for (auto& n : g.nodes()) r.push_back(n->op_type);
  return r;
}

// The kiln.fused_from names of a fused node (empty if none).
inline std::vector<std::string> fused_from(const ir::Node& n) {
  const ir::Attribute* a = n.attrs.find("kiln.fused_from");
  return a && a->kind == ir::Attribute::Kind::kStrings ? a->strings : std::vector<std::string>{};
}

}  // namespace kiln::passes::testing
