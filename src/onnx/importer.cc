// Graph import: initializers, inputs, nodes (with inlined functions and subgraphs that
// read outer-scope values by name), outputs; every op is checked against the registry.
#include "onnx/importer.h"

#include <unordered_map>
#include <unordered_set>

#include "onnx/attributes.h"
#include "onnx/functions.h"
#include "onnx/tensor_proto.h"
#include "ops/op.h"

namespace kiln::onnx_import {

void Diagnostics::error(ParserError e) {
  logger_.emit(Logger::Severity::kError, e.to_string());
  errors_.push_back(std::move(e));
}

namespace {

// ONNX IR version of onnx 1.23; newer files may use things kiln has not seen.
constexpr int64_t kNewestIrVersion = 14;
// Subgraph nesting kiln follows (protobuf's own recursion limit stops deeper files earlier).
constexpr int kMaxGraphDepth = 64;

// Names visible from enclosing graphs.
struct Scope {
  const ir::Graph* graph;
  const Scope* parent;
  const ir::Value* find(const std::string& n) const {
    for (const Scope* s = this; s; s = s->parent)
      if (const ir::Value* v = s->graph->find_value(n)) return v;
    return nullptr;
  }
};

// The top-level node a subgraph hangs from, so errors inside it point somewhere useful.
struct Where {
  int node_index = -1;
  std::string node_name, op_type;
  std::string prefix;  // "in subgraph 'body' of node 'loop' (Loop): "
};

struct TypeInfo {
  DataType dtype = DataType::kUndefined;
  std::optional<Shape> shape;
};

Status type_from_proto(const onnx::TypeProto& t, const std::string& what, TypeInfo& out) {
  auto unsupported = [&](const char* kind) {
    return Status(ErrorCode::kUnsupported, what + " is " + kind + "; kiln supports only tensor inputs and outputs");
  };
  switch (t.value_case()) {
    case onnx::TypeProto::VALUE_NOT_SET: return Status();
    case onnx::TypeProto::kTensorType: break;
    case onnx::TypeProto::kSequenceType: return unsupported("a sequence");
    case onnx::TypeProto::kMapType: return unsupported("a map");
    case onnx::TypeProto::kOptionalType: return unsupported("an optional");
    case onnx::TypeProto::kSparseTensorType: return unsupported("a sparse tensor");
    default: return unsupported("an opaque type");
  }
  const auto& tt = t.tensor_type();
  if (tt.elem_type() != 0) {
    KILN_ASSIGN_OR_RETURN(out.dtype, dtype_from_onnx(tt.elem_type(), what));
  }
  if (tt.has_shape()) {
    Shape s;
    s.reserve(static_cast<size_t>(tt.shape().dim_size()));
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() >= 0)
        s.push_back(Dim(d.dim_value()));
      else if (d.has_dim_param() && !d.dim_param().empty())
        s.push_back(Dim::symbol(d.dim_param()));
      else
        s.push_back(Dim::unknown());  // exporters write -1 or nothing for "any size"
    }
    out.shape = std::move(s);
  }
  return Status();
}

// Declared types only fill what is not known yet (initializers and inference win).
void apply_hint(ir::Value* v, const TypeInfo& t) {
  if (v->initializer) return;
  if (v->dtype == DataType::kUndefined) v->dtype = t.dtype;
  if (!v->shape) v->shape = t.shape;
}

class ModelImporter {
 public:
  ModelImporter(onnx::ModelProto& m, std::string dir, Diagnostics& d) : model_(m), dir_(std::move(dir)), diag_(d) {}
  bool run(ir::Graph& g);

 private:
  bool import_graph(const onnx::GraphProto& gp, ir::Graph& g, const Scope* outer, const Where* where);
  void graph_error(const Where* w, const std::string& msg) {
    if (w)
      diag_.error(ParserError{w->node_index, w->node_name, w->op_type, w->prefix + msg});
    else
      diag_.error(msg);
  }
  void node_error(const Where* w, int index, const std::string& name, const std::string& op, const std::string& msg) {
    if (w)
      diag_.error(
          ParserError{w->node_index, w->node_name, w->op_type, w->prefix + "node '" + name + "' (" + op + "): " + msg});
    else
      diag_.error(ParserError{index, name, op, msg});
  }

  onnx::ModelProto& model_;
  std::string dir_;
  Diagnostics& diag_;
  std::shared_ptr<const Opsets> opsets_;
  std::unique_ptr<FunctionLibrary> functions_;
  int depth_ = 0;
};

bool ModelImporter::run(ir::Graph& g) {
  const size_t before = diag_.count();
  if (!model_.has_ir_version()) {
    diag_.error("not a valid ONNX model: ir_version is missing");
    return false;
  }
  if (model_.ir_version() > kNewestIrVersion)
    diag_.warning("the model's IR version " + std::to_string(model_.ir_version()) + " is newer than kiln knows (" +
                  std::to_string(kNewestIrVersion) + "); importing anyway");
  auto opsets = std::make_shared<Opsets>();
  if (model_.opset_import_size() == 0) {
    if (model_.ir_version() >= 3) {
      diag_.error("the model has no opset_import (required since IR version 3)");
      return false;
    }
    diag_.warning("the model has no opset_import; assuming default-domain opset 1");
    (*opsets)[""] = 1;
  }
  for (const auto& o : model_.opset_import()) {
    const std::string d = canonical_domain(o.domain());
    const std::string shown = d.empty() ? "ai.onnx" : d;
    if (o.version() < 1 || o.version() > 100000) {
      diag_.error("opset_import of domain '" + shown + "' has an invalid version " + std::to_string(o.version()));
      continue;
    }
    if (!opsets->emplace(d, static_cast<int>(o.version())).second)
      diag_.error("domain '" + shown + "' is listed twice in opset_import");
  }
  auto def = opsets->find("");
  if (def != opsets->end()) {
    if (def->second > kMaxOpset)
      diag_.error("opset " + std::to_string(def->second) + " is newer than kiln supports (" +
                  std::to_string(kMinOpset) + ".." + std::to_string(kMaxOpset) + ")");
    else if (def->second < kOldestTestedOpset)
      diag_.warning("opset " + std::to_string(def->second) + " is older than kiln is tested with (" +
                    std::to_string(kOldestTestedOpset) + ".." + std::to_string(kMaxOpset) +
                    "); operators are read with their current semantics where they differ");
  }
  if (!model_.has_graph()) {
    diag_.error("the model has no graph");
    return false;
  }
  if (model_.graph().node_size() == 0 && model_.graph().output_size() == 0) {
    diag_.error("the model's graph is empty (no nodes and no outputs)");
    return false;
  }
  opsets_ = opsets;
  std::vector<std::string> problems;
  functions_ = std::make_unique<FunctionLibrary>(model_, *opsets_, problems);
  for (auto& p : problems) diag_.error(p);
  if (diag_.count() != before) return false;
  return import_graph(model_.graph(), g, nullptr, nullptr) && diag_.count() == before;
}

bool ModelImporter::import_graph(const onnx::GraphProto& gp, ir::Graph& g, const Scope* outer, const Where* where) {
  const size_t before = diag_.count();
  const bool is_main = outer == nullptr;
  if (depth_ >= kMaxGraphDepth) {
    graph_error(where, "subgraphs nest deeper than " + std::to_string(kMaxGraphDepth));
    return false;
  }
  g.name = gp.name();
  g.opset_imports = *opsets_;

  for (int i = 0; i < gp.initializer_size(); ++i) {
    const onnx::TensorProto& t = gp.initializer(i);
    if (t.name().empty()) {
      graph_error(where, "initializer " + std::to_string(i) + " has no name");
      continue;
    }
    if (g.find_value(t.name())) {
      graph_error(where, "initializer '" + t.name() + "' is defined twice");
      continue;
    }
    auto r = tensor_from_proto(t, dir_, "initializer '" + t.name() + "'");
    if (!r.ok()) {
      graph_error(where, r.status().message());
      continue;
    }
    Tensor tensor = std::move(r).value();
    ir::Value* v = g.add_value(t.name(), tensor.dtype(), shape_from_dims(tensor.dims())).value();
    v->initializer = std::make_shared<Tensor>(std::move(tensor));
    // The tensor holds its own copy now; freeing the protobuf's keeps peak memory near 2x the weights.
    if (is_main && t.has_raw_data())
      std::string().swap(*model_.mutable_graph()->mutable_initializer(i)->mutable_raw_data());
  }
  for (const auto& t : gp.sparse_initializer())
    graph_error(where, "sparse initializer '" + t.values().name() + "' is not supported by kiln");

  for (int i = 0; i < gp.input_size(); ++i) {
    const onnx::ValueInfoProto& in = gp.input(i);
    const std::string& name = in.name();
    if (name.empty()) {
      graph_error(where, "graph input " + std::to_string(i) + " has no name");
      continue;
    }
    if (ir::Value* v = g.find_value(name)) {
      // IR versions before 4 list every initializer as an input too: it stays a constant.
      if (!v->initializer) graph_error(where, "graph input '" + name + "' is listed twice");
      continue;
    }
    TypeInfo ti;
    Status s = type_from_proto(in.type(), "graph input '" + name + "'", ti);
    if (!s.ok())
      graph_error(where, s.message());
    else if (is_main && ti.dtype == DataType::kUndefined)
      graph_error(where, "graph input '" + name + "' has no element type");
    // Created even when its type is bad, so nodes reading it report nothing further.
    ir::Value* v = g.add_value(name, ti.dtype, ti.shape).value();
    g.inputs.push_back(v);
  }

  auto flat = functions_->expand(gp.node(), opsets_, [&](int idx, const onnx::NodeProto& n, const std::string& msg) {
    node_error(where, idx, n.name().empty() ? n.op_type() + "_" + std::to_string(idx) : n.name(), n.op_type(), msg);
  });

  // Stable unique node names: "<op_type>_<index>" for unnamed ones.
  std::vector<std::string> names(flat.size());
  {
    std::unordered_set<std::string> taken;
    for (size_t i = 0; i < flat.size(); ++i) {
      const onnx::NodeProto& n = *flat[i].node;
      std::string base = n.name().empty() ? n.op_type() + "_" + std::to_string(flat[i].index) : n.name();
      std::string name = base;
      for (int k = 1; !taken.insert(name).second; ++k) name = base + "__" + std::to_string(k);
      names[i] = std::move(name);
    }
  }

  // Every node output first, so nodes may come in any order (topo_sort orders them).
  std::vector<char> failed(flat.size(), 0);
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < flat.size(); ++i) {
    const onnx::NodeProto& n = *flat[i].node;
    for (const std::string& o : n.output()) {
      if (o.empty()) continue;
      if (ir::Value* v = g.find_value(o)) {
        auto p = producer.find(o);
        std::string by = p != producer.end() ? "node '" + names[p->second] + "'"
                         : v->initializer    ? std::string("an initializer")
                                             : std::string("a graph input");
        node_error(where, flat[i].index, names[i], n.op_type(),
                   flat[i].via + "output '" + o + "' is already produced by " + by);
        failed[i] = 1;
        continue;
      }
      g.add_value(o).value();
      producer[o] = i;
    }
  }
  for (const auto& vi : gp.value_info()) {
    ir::Value* v = g.find_value(vi.name());
    TypeInfo ti;
    if (v && type_from_proto(vi.type(), vi.name(), ti).ok()) apply_hint(v, ti);
  }

  Scope here{&g, outer};
  const auto& registry = ops::OpRegistry::global();
  for (size_t i = 0; i < flat.size(); ++i) {
    const FlatNode& fnode = flat[i];
    const onnx::NodeProto& n = *fnode.node;
    const std::string& op = n.op_type();
    auto report = [&](const std::string& msg) { node_error(where, fnode.index, names[i], op, fnode.via + msg); };
    bool ok = !failed[i];
    if (op.empty()) {
      report("the node has no op_type");
      ok = false;
    }

    std::vector<ir::Value*> ins;
    ins.reserve(static_cast<size_t>(n.input_size()));
    for (int j = 0; j < n.input_size(); ++j) {
      const std::string& name = n.input(j);
      if (name.empty()) {
        ins.push_back(nullptr);  // an omitted optional input
        continue;
      }
      ir::Value* v = g.find_value(name);
      if (!v && outer) {
        // A value of an enclosing graph: a same-named placeholder that outer_references() reports.
        if (const ir::Value* ov = outer->find(name)) v = g.add_value(name, ov->dtype, ov->shape).value();
      }
      if (!v) {
        report("input " + std::to_string(j) + " '" + name +
               "' is not defined by any graph input, initializer or node output" +
               (outer ? " (here or in an enclosing graph)" : ""));
        ok = false;
      }
      ins.push_back(v);
    }
    std::vector<ir::Value*> outs;
    outs.reserve(static_cast<size_t>(n.output_size()));
    for (const std::string& o : n.output()) outs.push_back(o.empty() ? nullptr : g.find_value(o));

    const std::string domain = canonical_domain(n.domain());
    const std::string shown_domain = domain.empty() ? "ai.onnx" : domain;
    int opset = 0;
    auto oit = fnode.opsets->find(domain);
    if (oit == fnode.opsets->end()) {
      report("domain '" + shown_domain + "' is not listed in the model's opset_import");
    } else if (!op.empty()) {
      opset = oit->second;
      const ops::OpDef* def = registry.find(domain, op);
      const std::string what = "operator " + op + " (domain " + shown_domain + ", opset " + std::to_string(opset) + ")";
      if (!def)
        report(what + " is not supported by kiln");
      else if (opset < def->min_opset || opset > def->max_opset)
        report(what + " is not supported by kiln (it covers opsets " + std::to_string(def->min_opset) + ".." +
               std::to_string(def->max_opset) + ")");
    }

    ir::Attributes attrs;
    for (const auto& a : n.attribute()) {
      SubgraphFn sub = [&](const onnx::GraphProto& sgp, const std::string& attr_name) -> std::shared_ptr<ir::Graph> {
        Where w = where ? *where : Where{fnode.index, names[i], op, ""};
        w.prefix += fnode.via + "in subgraph '" + attr_name + "' of node '" + names[i] + "' (" + op + "): ";
        auto sg = std::make_shared<ir::Graph>();
        ++depth_;
        bool good = import_graph(sgp, *sg, &here, &w);
        --depth_;
        return good ? sg : nullptr;
      };
      ir::Attribute attr;
      std::string note;
      Status s = convert_attribute(a, domain, op, dir_, sub, attr, note);
      if (!note.empty()) diag_.warning("node '" + names[i] + "' (" + op + "): " + note);
      if (!s.ok()) {
        if (!s.message().empty()) report(s.message());
        continue;
      }
      if (attrs.has(a.name())) {
        report("attribute '" + a.name() + "' is given twice");
        continue;
      }
      attrs.set(a.name(), std::move(attr));
    }
    if (!ok) continue;
    ir::Node* node = g.add_node(op, ins, outs, names[i]);
    node->domain = domain;
    node->opset = opset;
    node->attrs = std::move(attrs);
  }

  if (is_main && gp.output_size() == 0) graph_error(where, "the graph has no outputs");
  std::unordered_set<std::string> seen;
  for (int i = 0; i < gp.output_size(); ++i) {
    const onnx::ValueInfoProto& out = gp.output(i);
    const std::string& name = out.name();
    if (name.empty()) {
      graph_error(where, "graph output " + std::to_string(i) + " has no name");
      continue;
    }
    if (!seen.insert(name).second) {
      graph_error(where, "graph output '" + name + "' is listed twice");
      continue;
    }
    ir::Value* v = g.find_value(name);
    if (!v && outer) {
      if (const ir::Value* ov = outer->find(name)) v = g.add_value(name, ov->dtype, ov->shape).value();
    }
    if (!v) {
      graph_error(where, "graph output '" + name + "' is not produced by any node and is no input or initializer");
      continue;
    }
    TypeInfo ti;
    Status s = type_from_proto(out.type(), "graph output '" + name + "'", ti);
    if (!s.ok())
      graph_error(where, s.message());
    else
      apply_hint(v, ti);
    g.outputs.push_back(v);
  }

  if (diag_.count() != before) return false;
  Status s = g.topo_sort();
  if (s.ok()) s = ir::verify(g);
  if (!s.ok()) {
    graph_error(where, s.message());
    return false;
  }
  return true;
}

}  // namespace

bool import_model(onnx::ModelProto& model, const std::string& model_dir, ir::Graph& graph, Diagnostics& diag) {
  ModelImporter importer(model, model_dir, diag);
  return importer.run(graph);
}

}  // namespace kiln::onnx_import
