// Helpers shared by the pass tests: run a graph with the reference kernels, a
// PassContext from the graph's inputs (and a BuilderConfig), the op types in order, a Loop whose body
// reads an outer value by name.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "harness/op_harness.h"
#include "ops/op.h"
#include "passes/pass.h"
#include "runtime/executor.h"

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

// Runs a graph through the executor, which also runs subgraph bodies (If/Loop/Scan)
// and resolves the outer values they read by name.
inline std::map<std::string, Tensor> execute(const ir::Graph& g, const std::map<std::string, Tensor>& inputs) {
  std::vector<Tensor> ins, outs;
  for (ir::Value* in : g.inputs) ins.push_back(inputs.at(in->name));
  Status s = execute_graph(g, ins, nullptr, ExecOptions{}, outs);
  EXPECT_TRUE(s.ok()) << s.to_string();
  std::map<std::string, Tensor> out;
  for (size_t i = 0; i < outs.size(); ++i) out[g.outputs[i]->name] = outs[i];
  return out;
}

// Every output of `before` is in `got` and close to its value in `want` (outputs by name).
inline void expect_outputs_close(const ir::Graph& before, const std::map<std::string, Tensor>& got,
                                 const std::map<std::string, Tensor>& want, double rtol, double atol) {
  for (ir::Value* o : before.outputs) {
    SCOPED_TRACE(o->name);
    ASSERT_TRUE(got.count(o->name));
    EXPECT_TRUE(test::tensors_close(got.at(o->name), want.at(o->name), rtol, atol));
  }
}

// Appends y = Loop(trips, "", init) whose body computes prev + `outer`, reading `outer`
// from `g` by name (as ONNX's expanded Range reads its delta): a use that no node's
// inputs show. `outer` must broadcast to init's shape. Returns y.
inline ir::Value* add_loop_reading(ir::Graph& g, ir::Value* outer, ir::Value* init, int64_t trips = 3) {
  auto body = std::make_shared<ir::Graph>();
  body->name = "loop_body";
  ir::Value* i = body->add_value("iter", DataType::kInt64, Shape{}).value();
  ir::Value* cond_in = body->add_value("cond_in", DataType::kBool, Shape{}).value();
  ir::Value* prev = body->add_value("prev", init->dtype, init->shape).value();
  ir::Value* captured = body->add_value(outer->name, outer->dtype, outer->shape).value();
  ir::Value* cond_out = body->add_value("cond_out", DataType::kBool, Shape{}).value();
  ir::Value* cur = body->add_value("cur", init->dtype, init->shape).value();
  body->inputs = {i, cond_in, prev};
  body->outputs = {cond_out, cur};
  body->add_node("Identity", {cond_in}, {cond_out}, "cond_copy")->opset = 16;
  body->add_node("Add", {prev, captured}, {cur}, "step")->opset = 14;
  ir::Value* m = g.add_constant("trips", Tensor::from_vector<int64_t>(DataType::kInt64, {}, {trips}));
  ir::Value* y = g.add_unique_value("loop_out", init->dtype);
  ir::Node* loop = g.add_node("Loop", {m, nullptr, init}, {y}, g.unique_name("loop"));
  loop->opset = 16;
  ir::Attribute a;
  a.kind = ir::Attribute::Kind::kGraph;
  a.g = std::move(body);
  loop->attrs.set("body", std::move(a));
  return y;
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

// The same, building for `cfg` (its device, precisions and profiles), which must outlive it.
inline PassContext context_for(const ir::Graph& g, const BuilderConfig& cfg) {
  PassContext ctx = context_for(g);
  ctx.config = &cfg;
  return ctx;
}

// Runs `pass` on g as a build for `device` would.
inline Status run_for_device(Status (*pass)(ir::Graph&, PassContext&), ir::Graph& g, DeviceType device) {
  BuilderConfig cfg;
  cfg.set_device(device);
  PassContext ctx = context_for(g, cfg);
  return pass(g, ctx);
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
