// Common subexpression elimination: a node computing what an earlier node already
// computes (same op, attributes and inputs; small constants compared by value) reads
// the earlier node's outputs instead.
//   m -> Where(m, c0, c1) -> layer 0     becomes    m -> Where(m, c0, c1) -> layer 0
//   m -> Where(m, c0', c1') -> layer 1                                   \-> layer 1
// (transformers exports rebuild BERT's attention mask in each of the 12 layers, with
// per-layer copies of the same scalar constants: 12 kernels where 1 does).
// Not merged: nodes with subgraphs, random ops, and duplicates whose outputs are graph
// outputs or read by a subgraph body by name (their names must stay).
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {
namespace {

// Constants up to this size are compared by content (scalars, shapes, small tables).
constexpr size_t kContentBytes = 1024;

bool random_op(const ir::Node& n) {
  static const std::set<std::string> ops = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                                            "Multinomial",  "Bernoulli",     "Dropout"};
  return ops.count(n.op_type) > 0;
}

bool has_subgraph(const ir::Node& n) {
  bool any = false;
  ir::for_each_subgraph(n, [&](const ir::Graph&) { any = true; });
  return any;
}

void put_bytes(std::string& key, const void* p, size_t n) { key.append(static_cast<const char*>(p), n); }

void put_tensor(std::string& key, const Tensor& t) {
  key += std::to_string(static_cast<int>(t.dtype())) + "[" + dims_to_string(t.dims()) + "]";
  if (t.dtype() == DataType::kString) {
    key += "<strings@" + std::to_string(reinterpret_cast<uintptr_t>(t.data())) + ">";
    return;
  }
  put_bytes(key, t.data(), t.nbytes());
}

// Every attribute, exactly (floats by bit pattern).
std::string attrs_key(const ir::Node& n) {
  std::string key;
  for (auto& [name, a] : n.attrs.all()) {
    key += name + "=" + std::to_string(static_cast<int>(a.kind)) + ":";
    switch (a.kind) {
      case ir::Attribute::Kind::kFloat:
        put_bytes(key, &a.f, sizeof a.f);
        break;
      case ir::Attribute::Kind::kInt:
        key += std::to_string(a.i);
        break;
      case ir::Attribute::Kind::kString:
        key += std::to_string(a.s.size()) + ":" + a.s;
        break;
      case ir::Attribute::Kind::kTensor:
        put_tensor(key, a.t);
        break;
      case ir::Attribute::Kind::kFloats:
        put_bytes(key, a.floats.data(), a.floats.size() * sizeof(float));
        break;
      case ir::Attribute::Kind::kInts:
        for (int64_t v : a.ints) key += std::to_string(v) + ",";
        break;
      case ir::Attribute::Kind::kStrings:
        for (const auto& s : a.strings) key += std::to_string(s.size()) + ":" + s;
        break;
      case ir::Attribute::Kind::kTensors:
        for (const Tensor& t : a.tensors) put_tensor(key, t);
        break;
      case ir::Attribute::Kind::kGraph:
      case ir::Attribute::Kind::kGraphs:
        break;  // nodes with subgraphs are never merged
    }
    key += ";";
  }
  return key;
}

}  // namespace

Status eliminate_common_subexpressions(ir::Graph& g, PassContext& ctx) {
  const std::set<std::string> captured = captured_names(g);
  // Each value's identity in keys: small constants by content, everything else by value.
  std::unordered_map<const ir::Value*, std::string> ident;
  std::map<std::string, std::string> constant_ids;  // content -> the first such constant's id
  auto id_of = [&](const ir::Value* v) -> const std::string& {
    auto it = ident.find(v);
    if (it != ident.end()) return it->second;
    std::string id = "v" + std::to_string(reinterpret_cast<uintptr_t>(v));
    if (v->initializer && v->initializer->nbytes() <= kContentBytes && v->initializer->dtype() != DataType::kString) {
      std::string content;
      put_tensor(content, *v->initializer);
      id = constant_ids.emplace(content, id).first->second;
    }
    return ident.emplace(v, std::move(id)).first->second;
  };
  std::unordered_map<std::string, ir::Node*> seen;
  std::set<const ir::Node*> removed;
  for (auto& np : g.nodes()) {
    ir::Node& n = *np;
    if (has_subgraph(n) || random_op(n) || n.outputs.empty()) continue;
    std::string key = n.domain + "::" + n.op_type + "@" + std::to_string(n.opset) + "(";
    for (const ir::Value* in : n.inputs) key += (in ? id_of(in) : std::string("-")) + ",";
    key += ")->";
    for (const ir::Value* o : n.outputs) key += o ? "o" : "-";
    key += "{" + attrs_key(n) + "}";
    auto [it, fresh] = seen.emplace(key, &n);
    if (fresh) continue;
    bool pinned = false;
    for (const ir::Value* o : n.outputs) pinned = pinned || (o && (g.is_output(o) || captured.count(o->name)));
    if (pinned) continue;
    const ir::Node& first = *it->second;
    for (size_t i = 0; i < n.outputs.size(); ++i)
      if (n.outputs[i]) g.replace_uses(n.outputs[i], first.outputs[i]);
    removed.insert(&n);
  }
  if (removed.empty()) return Status();
  g.remove_nodes_if([&](const ir::Node& n) { return removed.count(&n) > 0; });
  g.prune_values();
  ctx.stats["merged_common_subexpressions"] += static_cast<int>(removed.size());
  return Status();
}

}  // namespace kiln::passes
