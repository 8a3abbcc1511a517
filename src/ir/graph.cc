#include "ir/graph.h"

#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace kiln::ir {

std::string Node::describe() const {
  return "'" + (name.empty() ? std::string("<unnamed>") : name) + "' (" + (domain.empty() ? "" : domain + ".") +
         op_type + ")";
}

Value* Graph::find_value(const std::string& n) const {
  auto it = values_.find(n);
  return it == values_.end() ? nullptr : it->second.get();
}

Result<Value*> Graph::add_value(const std::string& n, DataType dtype, std::optional<Shape> shape) {
  if (values_.count(n)) return Status(ErrorCode::kInvalidModel, "tensor name '" + n + "' is defined twice");
  auto v = std::make_unique<Value>();
  v->name = n;
  v->dtype = dtype;
  v->shape = std::move(shape);
  Value* p = v.get();
  values_[n] = std::move(v);
  return p;
}

std::string Graph::unique_name(const std::string& hint) {
  std::string base = hint.empty() ? "t" : hint;
  if (!values_.count(base)) {
    bool node_clash = false;
    for (auto& n : nodes_)
      if (n->name == base) node_clash = true;
    if (!node_clash) return base;
  }
  for (;;) {
    std::string c = base + "__" + std::to_string(++name_counter_);
    if (!values_.count(c)) return c;
  }
}

Value* Graph::add_unique_value(const std::string& hint, DataType dtype) {
  return add_value(unique_name(hint), dtype).value();
}

Value* Graph::add_constant(const std::string& hint, Tensor t) {
  Value* v = add_unique_value(hint, t.dtype());
  v->shape = shape_from_dims(t.dims());
  v->initializer = std::make_shared<Tensor>(std::move(t));
  return v;
}

Node* Graph::add_node(const std::string& op_type, const std::vector<Value*>& ins, const std::vector<Value*>& outs,
                      const std::string& n) {
  auto node = std::make_unique<Node>();
  node->op_type = op_type;
  node->inputs = ins;
  node->outputs = outs;
  node->name = n;
  auto it = opset_imports.find("");
  node->opset = it == opset_imports.end() ? 17 : it->second;
  for (Value* o : outs)
    if (o) o->producer = node.get();
  Node* p = node.get();
  nodes_.push_back(std::move(node));
  return p;
}

void Graph::replace_uses(Value* from, Value* to) {
  for (auto& n : nodes_)
    for (Value*& in : n->inputs)
      if (in == from) in = to;
  for (Value*& o : outputs)
    if (o == from) o = to;
}

std::vector<Node*> Graph::consumers(const Value* v) const {
  std::vector<Node*> r;
  for (auto& n : nodes_)
    for (Value* in : n->inputs)
      if (in == v) {
        r.push_back(n.get());
        break;
      }
  return r;
}

bool Graph::is_output(const Value* v) const {
  for (Value* o : outputs)
    if (o == v) return true;
  return false;
}

Status Graph::topo_sort() {
  std::unordered_map<const Node*, int> pending;
  std::unordered_map<const Value*, std::vector<Node*>> users;
  for (auto& n : nodes_) {
    int count = 0;
    std::unordered_set<const Value*> seen;
    auto depend = [&](Value* in) {
      if (in && in->producer && seen.insert(in).second) {
        ++count;
        users[in].push_back(n.get());
      }
    };
    for (Value* in : n->inputs) depend(in);
    // A subgraph body reads outer values by name: their producers come first too.
    for (auto& s : subgraph_captures(*n)) depend(find_value(s));
    pending[n.get()] = count;
  }
  std::vector<Node*> ready, order;
  for (auto& n : nodes_)
    if (pending[n.get()] == 0) ready.push_back(n.get());
  // Keep original relative order where possible: process in index order.
  std::unordered_map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes_.size(); ++i) index[nodes_[i].get()] = i;
  std::set<std::pair<size_t, Node*>> queue;
  for (Node* n : ready) queue.insert({index[n], n});
  while (!queue.empty()) {
    Node* n = queue.begin()->second;
    queue.erase(queue.begin());
    order.push_back(n);
    for (Value* o : n->outputs) {
      if (!o) continue;
      for (Node* u : users[o])
        if (--pending[u] == 0) queue.insert({index[u], u});
    }
  }
  if (order.size() != nodes_.size()) {
    for (auto& n : nodes_)
      if (pending[n.get()] > 0)
        return Status(ErrorCode::kInvalidModel, "graph has a cycle through node " + n->describe());
  }
  std::unordered_map<const Node*, std::unique_ptr<Node>> owned;
  for (auto& n : nodes_) owned[n.get()] = std::move(n);
  nodes_.clear();
  for (Node* n : order) nodes_.push_back(std::move(owned[n]));
  return Status();
}

void Graph::prune_values() {
  std::unordered_set<const Value*> used;
  for (Value* v : inputs) used.insert(v);
  for (Value* v : outputs) used.insert(v);
  for (auto& n : nodes_) {
    for (Value* v : n->inputs) used.insert(v);
    for (Value* v : n->outputs) used.insert(v);
  }
  // Subgraphs may capture outer values by name.
  std::unordered_set<std::string> captured;
  for (auto& n : nodes_)
    for (auto& [k, a] : n->attrs.all()) {
      if (a.g)
        for (auto& s : a.g->outer_references()) captured.insert(s);
      for (auto& g : a.graphs)
        for (auto& s : g->outer_references()) captured.insert(s);
    }
  for (auto it = values_.begin(); it != values_.end();) {
    if (!used.count(it->second.get()) && !captured.count(it->first))
      it = values_.erase(it);
    else
      ++it;
  }
}

namespace {
// What the subgraphs of one attribute (an If branch, a Loop/Scan body) read by name.
std::vector<std::string> attribute_captures(const Attribute& a) {
  std::vector<std::string> refs;
  if (a.g) refs = a.g->outer_references();
  for (auto& sg : a.graphs)
    if (sg)
      for (auto& r : sg->outer_references()) refs.push_back(r);
  return refs;
}
}  // namespace

std::vector<std::string> subgraph_captures(const Node& n) {
  std::vector<std::string> refs;
  for (auto& [k, a] : n.attrs.all())
    for (auto& r : attribute_captures(a)) refs.push_back(r);
  return refs;
}

std::vector<std::string> Graph::outer_references() const {
  std::unordered_set<std::string> defined;
  for (Value* v : inputs) defined.insert(v->name);
  for (auto& [n, v] : values_)
    if (v->initializer) defined.insert(n);
  for (auto& n : nodes_)
    for (Value* o : n->outputs)
      if (o) defined.insert(o->name);
  std::vector<std::string> refs;
  std::unordered_set<std::string> seen;
  auto add = [&](const std::string& s) {
    if (!defined.count(s) && seen.insert(s).second) refs.push_back(s);
  };
  for (auto& n : nodes_) {
    for (Value* in : n->inputs)
      if (in) add(in->name);
    for (auto& s : subgraph_captures(*n)) add(s);
  }
  for (Value* o : outputs) add(o->name);
  return refs;
}

std::unique_ptr<Graph> Graph::clone() const {
  auto g = std::make_unique<Graph>();
  g->name = name;
  g->opset_imports = opset_imports;
  g->name_counter_ = name_counter_;
  std::unordered_map<const Value*, Value*> map;
  for (auto& [n, v] : values_) {
    auto c = std::make_unique<Value>(*v);
    c->producer = nullptr;
    map[v.get()] = c.get();
    g->values_[n] = std::move(c);
  }
  auto m = [&](Value* v) -> Value* { return v ? map.at(v) : nullptr; };
  for (auto& n : nodes_) {
    auto c = std::make_unique<Node>(*n);
    for (auto& in : c->inputs) in = m(in);
    for (auto& o : c->outputs) {
      o = m(o);
      if (o) o->producer = c.get();
    }
    // Subgraph attributes are deep-copied so passes on one copy leave the other alone.
    for (auto& [k, a] : n->attrs.all()) {
      if (a.g || !a.graphs.empty()) {
        Attribute copy = a;
        if (a.g) copy.g = std::shared_ptr<Graph>(a.g->clone());
        for (auto& sg : copy.graphs) sg = std::shared_ptr<Graph>(sg->clone());
        c->attrs.set(k, copy);
      }
    }
    g->nodes_.push_back(std::move(c));
  }
  for (Value* v : inputs) g->inputs.push_back(m(v));
  for (Value* v : outputs) g->outputs.push_back(m(v));
  return g;
}

Status verify(const Graph& g) {
  std::unordered_set<const Value*> defined;
  std::unordered_set<const Value*> owned;
  for (auto& [n, v] : g.values()) owned.insert(v.get());
  for (Value* v : g.inputs) {
    if (!v || !owned.count(v)) return Status(ErrorCode::kInternal, "graph input is not a value of this graph");
    defined.insert(v);
  }
  for (auto& [n, v] : g.values()) {
    if (v->name != n) return Status(ErrorCode::kInternal, "value '" + v->name + "' is registered as '" + n + "'");
    if (v->initializer) defined.insert(v.get());
  }
  std::unordered_set<std::string> outer;
  for (auto& s : g.outer_references()) outer.insert(s);
  std::unordered_set<std::string> node_names;
  for (auto& node : g.nodes()) {
    if (node->op_type.empty()) return Status(ErrorCode::kInvalidModel, "a node has no op_type");
    for (size_t i = 0; i < node->inputs.size(); ++i) {
      Value* in = node->inputs[i];
      if (!in) continue;
      if (!owned.count(in)) return Status(ErrorCode::kInternal, "node " + node->describe() + " reads a foreign value");
      if (!defined.count(in) && !outer.count(in->name))
        return Status(ErrorCode::kInvalidModel, "node " + node->describe() + " input " + std::to_string(i) + " '" +
                                                    in->name + "' is used before it is defined");
    }
    // Values a body reads by name from this graph come before the node, like its inputs.
    for (auto& [k, a] : node->attrs.all()) {
      for (auto& r : attribute_captures(a)) {
        const Value* v = g.find_value(r);
        if (v && v->producer && !defined.count(v))
          return Status(ErrorCode::kInvalidModel,
                        "node " + node->describe() + " subgraph '" + k + "' reads '" + r + "' before it is defined");
      }
    }
    for (Value* o : node->outputs) {
      if (!o) continue;
      if (defined.count(o))
        return Status(ErrorCode::kInvalidModel,
                      "tensor '" + o->name + "' is produced twice (by node " + node->describe() + ")");
      if (o->producer != node.get())
        return Status(ErrorCode::kInternal, "tensor '" + o->name + "' has a stale producer link");
      defined.insert(o);
    }
  }
  for (Value* o : g.outputs)
    if (!o || (!defined.count(o) && !outer.count(o->name)))
      return Status(ErrorCode::kInvalidModel,
                    "graph output '" + (o ? o->name : std::string("?")) + "' is never produced");
  return Status();
}

namespace {
std::string value_text(const Value* v) {
  if (!v) return "<none>";
  std::string s = "%" + v->name + ":" + dtype_name(v->dtype);
  s += v->shape ? shape_to_string(*v->shape) : "[?]";
  return s;
}

std::string attr_text(const Attribute& a) {
  std::ostringstream os;
  switch (a.kind) {
    case Attribute::Kind::kInt:
      os << a.i;
      break;
    case Attribute::Kind::kFloat:
      os << a.f;
      break;
    case Attribute::Kind::kString:
      // Long strings (a kept compiled plan, kiln.kernel_state) show their start and size.
      if (a.s.size() > 160)
        os << '"' << a.s.substr(0, 40) << "...\" (" << a.s.size() << " bytes)";
      else
        os << '"' << a.s << '"';
      break;
    case Attribute::Kind::kInts:
      os << "[";
      for (size_t i = 0; i < a.ints.size(); ++i) os << (i ? "," : "") << a.ints[i];
      os << "]";
      break;
    case Attribute::Kind::kFloats:
      os << "[";
      for (size_t i = 0; i < a.floats.size(); ++i) os << (i ? "," : "") << a.floats[i];
      os << "]";
      break;
    case Attribute::Kind::kTensor:
      os << "tensor<" << dtype_name(a.t.dtype()) << "," << dims_to_string(a.t.dims()) << ">";
      break;
    case Attribute::Kind::kGraph:
      os << "graph(" << (a.g ? a.g->nodes().size() : 0) << " nodes)";
      break;
    default:
      os << "...";
      break;
  }
  return os.str();
}
}  // namespace

std::string dump(const Graph& g) {
  std::ostringstream os;
  os << "graph " << (g.name.empty() ? "main" : g.name) << " (";
  for (size_t i = 0; i < g.inputs.size(); ++i) os << (i ? ", " : "") << value_text(g.inputs[i]);
  os << ")\n";
  size_t consts = 0;
  for (auto& [n, v] : g.values())
    if (v->initializer) ++consts;
  os << "  " << consts << " initializers\n";
  for (auto& n : g.nodes()) {
    os << "  ";
    for (size_t i = 0; i < n->outputs.size(); ++i) os << (i ? ", " : "") << value_text(n->outputs[i]);
    os << " = " << (n->domain.empty() ? "" : n->domain + ".") << n->op_type;
    if (!n->attrs.all().empty()) {
      os << "<";
      bool first = true;
      for (auto& [k, a] : n->attrs.all()) {
        os << (first ? "" : ", ") << k << "=" << attr_text(a);
        first = false;
      }
      os << ">";
    }
    os << "(";
    for (size_t i = 0; i < n->inputs.size(); ++i)
      os << (i ? ", " : "") << (n->inputs[i] ? "%" + n->inputs[i]->name : "<none>");
    os << ")";
    if (!n->name.empty()) os << "  # " << n->name;
    if (!n->kernel.empty()) os << " [" << n->kernel << ", " << dtype_name(n->precision) << "]";
    os << "\n";
  }
  os << "  return ";
  for (size_t i = 0; i < g.outputs.size(); ++i) os << (i ? ", " : "") << value_text(g.outputs[i]);
  os << "\n";
  return os.str();
}

}  // namespace kiln::ir
