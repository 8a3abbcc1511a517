// Function inlining: formal inputs/outputs map to the caller's values, internal values
// get a per-call prefix, and attributes that refer to the caller's (ref_attr_name) are
// substituted, falling back to the function's defaults.
#include "onnx/functions.h"

#include <unordered_set>

namespace kiln::onnx_import {

namespace {

constexpr int kMaxDepth = 32;

std::string fn_key(const std::string& domain, const std::string& name, const std::string& overload) {
  return canonical_domain(domain) + '\0' + name + '\0' + overload;
}

using Rename = std::function<std::string(const std::string&)>;

// Renames the names `g` reads from enclosing scopes (those it does not define itself).
void rename_free(onnx::GraphProto& g, const Rename& rn) {
  std::unordered_set<std::string> local;
  for (const auto& v : g.input()) local.insert(v.name());
  for (const auto& t : g.initializer()) local.insert(t.name());
  for (const auto& t : g.sparse_initializer()) local.insert(t.values().name());
  for (const auto& n : g.node())
    for (const auto& o : n.output()) local.insert(o);
  Rename inner = [&](const std::string& s) { return s.empty() || local.count(s) ? s : rn(s); };
  for (auto& n : *g.mutable_node()) {
    for (auto& in : *n.mutable_input()) in = inner(in);
    for (auto& a : *n.mutable_attribute()) {
      if (a.has_g()) rename_free(*a.mutable_g(), inner);
      for (auto& sg : *a.mutable_graphs()) rename_free(sg, inner);
    }
  }
  for (auto& o : *g.mutable_output()) o.set_name(inner(o.name()));
}

// Replaces attributes that name one of the caller's (ref_attr_name), in `n` and its subgraphs.
void substitute(onnx::NodeProto& n, const std::map<std::string, const onnx::AttributeProto*>& given) {
  google::protobuf::RepeatedPtrField<onnx::AttributeProto> kept;
  for (const auto& a : n.attribute()) {
    if (a.ref_attr_name().empty()) {
      onnx::AttributeProto* c = kept.Add();
      *c = a;
      if (c->has_g())
        for (auto& sn : *c->mutable_g()->mutable_node()) substitute(sn, given);
      for (auto& sg : *c->mutable_graphs())
        for (auto& sn : *sg.mutable_node()) substitute(sn, given);
      continue;
    }
    auto it = given.find(a.ref_attr_name());
    if (it == given.end()) continue;  // neither given nor defaulted: the attribute is absent
    onnx::AttributeProto* c = kept.Add();
    *c = *it->second;
    c->set_name(a.name());
    c->clear_ref_attr_name();
  }
  n.mutable_attribute()->Swap(&kept);
}

}  // namespace

FunctionLibrary::FunctionLibrary(const onnx::ModelProto& model, const Opsets& model_opsets,
                                 std::vector<std::string>& problems)
    : model_opsets_(model_opsets) {
  for (const auto& f : model.functions()) {
    std::string k = fn_key(f.domain(), f.name(), f.overload());
    if (f.name().empty()) {
      problems.push_back("a model-local function has no name");
      continue;
    }
    if (!functions_.emplace(k, &f).second)
      problems.push_back("function '" + f.name() + "' (domain '" + f.domain() + "') is defined twice");
  }
}

const onnx::FunctionProto* FunctionLibrary::find(const onnx::NodeProto& node) const {
  if (functions_.empty()) return nullptr;
  auto it = functions_.find(fn_key(node.domain(), node.op_type(), node.overload()));
  return it == functions_.end() ? nullptr : it->second;
}

std::vector<FlatNode> FunctionLibrary::expand(const google::protobuf::RepeatedPtrField<onnx::NodeProto>& nodes,
                                              const std::shared_ptr<const Opsets>& opsets, const ExpandError& error) {
  std::vector<FlatNode> out;
  out.reserve(static_cast<size_t>(nodes.size()));
  if (functions_.empty()) {
    for (int i = 0; i < nodes.size(); ++i) out.push_back(FlatNode{&nodes.Get(i), nullptr, opsets, i, ""});
    return out;
  }
  std::vector<Item> items;
  for (const auto& n : nodes) items.emplace_back(&n, nullptr);
  expand_list(items, opsets, -1, "", 0, out, error);
  return out;
}

void FunctionLibrary::expand_list(const std::vector<Item>& nodes, const std::shared_ptr<const Opsets>& opsets,
                                  int outer_index, const std::string& via, int depth, std::vector<FlatNode>& out,
                                  const ExpandError& error) {
  for (size_t i = 0; i < nodes.size(); ++i) {
    const onnx::NodeProto& n = *nodes[i].first;
    const int index = outer_index >= 0 ? outer_index : static_cast<int>(i);
    const onnx::FunctionProto* fn = find(n);
    if (!fn) {
      out.push_back(FlatNode{&n, nodes[i].second, opsets, index, via});
      continue;
    }
    if (depth >= kMaxDepth) {
      error(index, n,
            via + "function '" + fn->name() + "' calls nest deeper than " + std::to_string(kMaxDepth) +
                " (a recursive function?)");
      continue;
    }
    inline_call(n, *fn, index, via, depth, out, error);
  }
}

void FunctionLibrary::inline_call(const onnx::NodeProto& call, const onnx::FunctionProto& fn, int index,
                                  const std::string& via, int depth, std::vector<FlatNode>& out,
                                  const ExpandError& error) {
  if (call.input_size() > fn.input_size() || call.output_size() > fn.output_size()) {
    error(index, call,
          via + "calls function '" + fn.name() + "' with " + std::to_string(call.input_size()) + " inputs and " +
              std::to_string(call.output_size()) + " outputs; it declares " + std::to_string(fn.input_size()) +
              " and " + std::to_string(fn.output_size()));
    return;
  }
  const std::string caller = call.name().empty() ? call.op_type() : call.name();
  const std::string prefix = caller + "/" + fn.name() + "__" + std::to_string(++counter_) + "/";
  std::map<std::string, std::string> names;
  for (int j = 0; j < fn.input_size(); ++j) names[fn.input(j)] = j < call.input_size() ? call.input(j) : "";
  for (int j = 0; j < fn.output_size(); ++j)
    names[fn.output(j)] = j < call.output_size() && !call.output(j).empty() ? call.output(j) : prefix + fn.output(j);
  Rename rn = [&](const std::string& s) -> std::string {
    if (s.empty()) return s;
    auto it = names.find(s);
    return it != names.end() ? it->second : prefix + s;
  };

  // The caller's attributes, else the function's defaults.
  std::map<std::string, const onnx::AttributeProto*> given;
  for (const auto& a : fn.attribute_proto()) given[a.name()] = &a;
  for (const auto& a : call.attribute()) given[a.name()] = &a;

  auto opsets = std::make_shared<Opsets>(model_opsets_);
  for (const auto& o : fn.opset_import()) (*opsets)[canonical_domain(o.domain())] = static_cast<int>(o.version());

  std::vector<Item> body;
  for (int k = 0; k < fn.node_size(); ++k) {
    const onnx::NodeProto& bn = fn.node(k);
    auto c = std::make_shared<onnx::NodeProto>(bn);
    for (auto& in : *c->mutable_input()) in = rn(in);
    for (auto& o : *c->mutable_output()) o = rn(o);
    c->set_name(prefix + (bn.name().empty() ? bn.op_type() + "_" + std::to_string(k) : bn.name()));
    // Rename free names of the body's own subgraphs before the caller's graphs come in.
    for (auto& a : *c->mutable_attribute()) {
      if (a.has_g()) rename_free(*a.mutable_g(), rn);
      for (auto& sg : *a.mutable_graphs()) rename_free(sg, rn);
    }
    substitute(*c, given);
    body.emplace_back(c.get(), c);
  }
  expand_list(body, opsets, index, via + "in function '" + fn.name() + "' called by node '" + caller + "': ", depth + 1,
              out, error);
}

}  // namespace kiln::onnx_import
