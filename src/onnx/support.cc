// Capability report. The importer's errors say which nodes kiln cannot read (unknown
// ops, opsets out of range, attribute types); one pass of each node's own type
// inference, in graph order, says which it cannot compute (input dtypes, attribute
// values). If/Loop/Scan bodies are checked the same way and count against their node.
#include "onnx/support.h"

#include <functional>
#include <map>
#include <unordered_map>

#include "onnx/functions.h"
#include "ops/op.h"
#include "runtime/shape_eval.h"

namespace kiln::onnx_import {

namespace {

// Types and known values of one graph, by name: bodies read their enclosing graphs'
// values by name.
struct Flow {
  const Flow* outer = nullptr;
  std::unordered_map<std::string, ops::TensorType> types;
  std::unordered_map<std::string, Tensor> values;

  ops::TensorType type(const std::string& n) const {
    for (const Flow* f = this; f; f = f->outer)
      if (auto it = f->types.find(n); it != f->types.end()) return it->second;
    return {};
  }
  const Tensor* value(const std::string& n) const {
    for (const Flow* f = this; f; f = f->outer)
      if (auto it = f->values.find(n); it != f->values.end()) return &it->second;
    return nullptr;
  }
};

// One node after the pass: the problem ("" if none) and the input types it saw.
struct NodeCheck {
  const ir::Node* node = nullptr;
  std::string problem;
  std::vector<ops::TensorType> inputs;
};

using Blocked = std::function<bool(const ir::Node&)>;

std::vector<NodeCheck> check_graph(const ir::Graph& g, Flow& flow, const Blocked& blocked);

bool has_subgraph(const ir::Node& n) {
  for (const auto& [k, a] : n.attrs.all())
    if (a.g || !a.graphs.empty()) return true;
  return false;
}

// Inference errors name the node ("node 'x' (Op): ..."); the report names it already.
std::string own_message(const ir::Node& n, const Status& s) {
  const std::string prefix = "node " + n.describe() + ": ";
  const std::string& m = s.message();
  return m.rfind(prefix, 0) == 0 ? m.substr(prefix.size()) : m;
}

// An inference error is the node's own only when every present input has a known dtype
// and rank; on less it may just be the unknown (an earlier unsupported node) speaking.
bool conclusive(const ir::Node& n, const std::vector<ops::TensorType>& types) {
  for (size_t i = 0; i < n.inputs.size(); ++i)
    if (n.inputs[i] && (types[i].dtype == DataType::kUndefined || !types[i].shape)) return false;
  return true;
}

// The first problem inside the node's bodies, as "in subgraph 'b' of node 'n' (If): node ...".
std::string check_bodies(const ir::Node& n, const Flow& flow) {
  auto check = [&](const ir::Graph& body, const std::string& attr) -> std::string {
    Flow inner;
    inner.outer = &flow;
    // A body input the body leaves untyped stays unknown (inconclusive), never guessed.
    for (const ir::Value* in : body.inputs) inner.types[in->name] = {in->dtype, in->shape};
    for (const NodeCheck& c : check_graph(body, inner, nullptr))
      if (!c.problem.empty())
        return "in subgraph '" + attr + "' of node " + n.describe() + ": node " + c.node->describe() + ": " + c.problem;
    return "";
  };
  for (const auto& [name, a] : n.attrs.all()) {
    if (a.g) {
      if (std::string p = check(*a.g, name); !p.empty()) return p;
    }
    for (size_t i = 0; i < a.graphs.size(); ++i)
      if (a.graphs[i]) {
        if (std::string p = check(*a.graphs[i], name + "[" + std::to_string(i) + "]"); !p.empty()) return p;
      }
  }
  return "";
}

// Small outputs are computed so that shape inputs (Reshape's shape, Resize's scales)
// are known downstream, as the builder's constant folding makes them.
void evaluate(const ir::Node& n, const std::vector<const Tensor*>& values, const std::vector<ops::TensorType>& outs,
              Flow& flow) {
  for (const auto& t : outs)
    if (!t.shape || !shape_is_concrete(*t.shape) || dims_volume(shape_to_dims(*t.shape)) > kEvalElementLimit) return;
  std::vector<Tensor> results;
  if (!ops::run_node(n, values, results).ok()) return;
  for (size_t i = 0; i < n.outputs.size() && i < results.size(); ++i) {
    if (!n.outputs[i] || results[i].numel() > kEvalElementLimit) continue;
    flow.types[n.outputs[i]->name] = {results[i].dtype(), shape_from_dims(results[i].dims())};
    flow.values[n.outputs[i]->name] = std::move(results[i]);
  }
}

// Walks `g` in order. A node that is blocked (already unsupported) or fails leaves its
// outputs unknown, so later nodes are judged only on what is known.
std::vector<NodeCheck> check_graph(const ir::Graph& g, Flow& flow, const Blocked& blocked) {
  for (const auto& [name, v] : g.values()) {
    if (!v->initializer) continue;
    flow.types[name] = {v->initializer->dtype(), shape_from_dims(v->initializer->dims())};
    flow.values[name] = *v->initializer;
  }
  std::vector<NodeCheck> out;
  out.reserve(g.nodes().size());
  for (const auto& node : g.nodes()) {
    NodeCheck c;
    c.node = node.get();
    std::vector<const Tensor*> values;
    bool all_known = true;
    int64_t elements = 0;
    for (const ir::Value* in : node->inputs) {
      c.inputs.push_back(in ? flow.type(in->name) : ops::TensorType{});
      const Tensor* v = in ? flow.value(in->name) : nullptr;
      values.push_back(v);
      if (in && !v) all_known = false;
      if (v) elements += v->numel();
    }
    const bool is_blocked = blocked && blocked(*node);
    auto r = ops::infer_node(*node, c.inputs, values);
    if (!is_blocked) {
      if (!r.ok() && conclusive(*node, c.inputs)) c.problem = own_message(*node, r.status());
      if (c.problem.empty() && has_subgraph(*node)) c.problem = check_bodies(*node, flow);
    }
    if (!is_blocked && r.ok() && c.problem.empty()) {
      for (size_t i = 0; i < node->outputs.size() && i < r->size(); ++i)
        if (node->outputs[i]) flow.types[node->outputs[i]->name] = (*r)[i];
      if (all_known && elements <= kEvalElementLimit && !has_subgraph(*node)) evaluate(*node, values, *r, flow);
    }
    out.push_back(std::move(c));
  }
  return out;
}

bool cuda_backend_built() {
  static const bool built = [] {
    for (const ops::OpDef* d : ops::OpRegistry::global().all())
      if (!d->cuda.empty()) return true;
    return false;
  }();
  return built;
}

// "" when a CUDA kernel takes the node, else why none does.
std::string cuda_problem(const ir::Node& n, const std::vector<ops::TensorType>& types) {
  if (!cuda_backend_built()) return "kiln was built without the CUDA backend";
  const ops::OpDef* def = ops::OpRegistry::global().find(n.domain, n.op_type);
  if (!def || def->cuda.empty()) return "no CUDA kernel for " + n.op_type;
  for (const ops::FastKernel& k : def->cuda)
    if (!k.applies || k.applies(n, types)) return "";
  std::string dtypes;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    if (!n.inputs[i]) continue;
    if (types[i].dtype == DataType::kUndefined) return "no CUDA kernel applies to unknown input types";
    std::string d = dtype_name(types[i].dtype);
    if (dtypes.find(d) == std::string::npos) dtypes += (dtypes.empty() ? "" : "/") + d;
  }
  return "CUDA kernels of " + n.op_type + " do not take " + (dtypes.empty() ? "no inputs" : dtypes) +
         " with these attributes";
}

// Default-domain-style map of the model's opset_import (first listing wins, as on import).
Opsets model_opsets(const onnx::ModelProto& model) {
  Opsets o;
  for (const auto& imp : model.opset_import())
    o.emplace(canonical_domain(imp.domain()), static_cast<int>(imp.version()));
  if (model.opset_import_size() == 0) o[""] = 1;
  return o;
}

// Graph node index of every value a main-graph node produces (function bodies inlined
// the way the importer inlines them), to trace IR nodes back to the node they came from.
std::unordered_map<std::string, int> producer_index(const onnx::ModelProto& model, const Opsets& opsets) {
  std::vector<std::string> problems;
  FunctionLibrary functions(model, opsets, problems);
  auto shared = std::make_shared<const Opsets>(opsets);
  std::unordered_map<std::string, int> out;
  for (const FlatNode& f :
       functions.expand(model.graph().node(), shared, [](int, const onnx::NodeProto&, const std::string&) {}))
    for (const std::string& o : f.node->output())
      if (!o.empty()) out.emplace(o, f.index);
  return out;
}

int index_of(const ir::Node& n, const std::unordered_map<std::string, int>& producers) {
  for (const ir::Value* o : n.outputs)
    if (o)
      if (auto it = producers.find(o->name); it != producers.end()) return it->second;
  return -1;
}

}  // namespace

SupportReport check_support(const onnx::ModelProto& model, const ir::Graph& graph,
                            const std::vector<ParserError>& errors) {
  SupportReport report;
  const onnx::GraphProto& gp = model.graph();
  const Opsets opsets = model_opsets(model);
  std::map<int, std::vector<std::string>> node_errors;
  for (const ParserError& e : errors) {
    if (e.node_index >= 0 && e.node_index < gp.node_size())
      node_errors[e.node_index].push_back(e.message);
    else
      report.errors.push_back(e);
  }

  report.nodes.resize(static_cast<size_t>(gp.node_size()));
  for (int i = 0; i < gp.node_size(); ++i) {
    const onnx::NodeProto& n = gp.node(i);
    NodeSupport& s = report.nodes[static_cast<size_t>(i)];
    s.index = i;
    s.name = n.name();
    s.op_type = n.op_type();
    s.domain = canonical_domain(n.domain());
    auto o = opsets.find(s.domain);
    s.opset = o == opsets.end() ? 0 : o->second;
    s.supported = true;
    s.cuda = true;
  }

  // The import stopped before the graph (e.g. an opset kiln does not read): no node was looked at.
  if (graph.values().empty() && gp.node_size() > 0) {
    const std::string why =
        report.errors.empty() ? std::string("the model could not be imported") : report.errors.front().message;
    for (NodeSupport& s : report.nodes) {
      s.supported = s.cuda = false;
      s.reason = "not imported: " + why;
      s.cuda_reason = "not imported";
    }
  }
  for (const auto& [index, msgs] : node_errors) {
    NodeSupport& s = report.nodes[static_cast<size_t>(index)];
    s.supported = s.cuda = false;
    for (const std::string& m : msgs) s.reason += (s.reason.empty() ? "" : "; ") + m;
    s.cuda_reason = "not supported";
  }

  const auto producers = producer_index(model, opsets);
  Flow flow;
  for (const ir::Value* in : graph.inputs) flow.types[in->name] = {in->dtype, in->shape};
  std::unordered_map<const ir::Node*, int> index;
  for (const auto& n : graph.nodes()) index[n.get()] = index_of(*n, producers);
  Blocked blocked = [&](const ir::Node& n) { return node_errors.count(index[&n]) != 0; };
  for (const NodeCheck& c : check_graph(graph, flow, blocked)) {
    const int i = index[c.node];
    if (i < 0 || node_errors.count(i)) continue;
    NodeSupport& s = report.nodes[static_cast<size_t>(i)];
    // A node inlined from a function is named in the text; the report names the call.
    const bool own = c.node->op_type == s.op_type && canonical_domain(c.node->domain) == s.domain;
    auto name = [&](const std::string& text) { return own ? text : "node " + c.node->describe() + ": " + text; };
    if (!s.supported) continue;
    if (!c.problem.empty()) {
      s.supported = s.cuda = false;
      s.reason = name(c.problem);
      s.cuda_reason = "not supported";
      continue;
    }
    if (std::string p = cuda_problem(*c.node, c.inputs); !p.empty() && s.cuda) {
      s.cuda = false;
      s.cuda_reason = name(p);
    }
  }

  for (const NodeSupport& s : report.nodes) {
    if (report.subgraphs.empty() || report.subgraphs.back().second != s.supported)
      report.subgraphs.push_back({{}, s.supported});
    report.subgraphs.back().first.push_back(s.index);
  }
  report.supported = report.errors.empty() && report.num_unsupported() == 0;
  return report;
}

}  // namespace kiln::onnx_import
