#include "runtime/shape_eval.h"

#include <optional>

#include "ops/control/outer_types.h"

namespace kiln {

namespace {

bool has_subgraph(const ir::Node& n) {
  for (auto& [k, a] : n.attrs.all())
    if (a.g || !a.graphs.empty()) return true;
  return false;
}

// Shape/Size of a tensor whose dims are known need no data.
bool eval_shape_op(const ir::Node& n, const ops::TensorType& in, Tensor& out) {
  if (!in.shape || !shape_is_concrete(*in.shape)) return false;
  Dims d = shape_to_dims(*in.shape);
  if (n.op_type == "Size") {
    out = Tensor::empty(DataType::kInt64, {});
    *out.data_as<int64_t>() = dims_volume(d);
    return true;
  }
  int64_t rank = static_cast<int64_t>(d.size());
  int64_t start = n.attrs.get_int("start", 0), end = n.attrs.get_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  int64_t len = std::max<int64_t>(0, end - start);
  out = Tensor::empty(DataType::kInt64, {len});
  for (int64_t i = 0; i < len; ++i) out.data_as<int64_t>()[i] = d[static_cast<size_t>(start + i)];
  return true;
}

}  // namespace

Status propagate(const ir::Graph& g, const std::map<std::string, Shape>& input_shapes, Propagation& out, bool strict,
                 const std::map<std::string, Tensor>* input_values) {
  for (auto& [name, v] : g.values()) {
    if (v->initializer) {
      out.types[v.get()] = {v->initializer->dtype(), shape_from_dims(v->initializer->dims())};
      out.values[v.get()] = *v->initializer;
    }
  }
  for (ir::Value* in : g.inputs) {
    auto it = input_shapes.find(in->name);
    out.types[in] = {in->dtype, it != input_shapes.end() ? std::optional<Shape>(it->second) : in->shape};
    if (input_values) {
      auto v = input_values->find(in->name);
      if (v != input_values->end()) out.values[in] = v->second;
    }
  }
  for (auto& node : g.nodes()) {
    std::vector<ops::TensorType> types;
    std::vector<const Tensor*> values;
    bool all_known = true;
    int64_t elements = 0;
    for (ir::Value* in : node->inputs) {
      if (!in) {
        types.emplace_back();
        values.push_back(nullptr);
        continue;
      }
      auto t = out.types.find(in);
      types.push_back(t != out.types.end() ? t->second : ops::TensorType{in->dtype, in->shape});
      auto v = out.values.find(in);
      if (v != out.values.end()) {
        values.push_back(&v->second);
        elements += v->second.numel();
      } else {
        values.push_back(nullptr);
        all_known = false;
      }
    }
    if ((node->op_type == "Shape" || node->op_type == "Size") && node->domain.empty() && !types.empty() &&
        node->outputs.size() == 1 && node->outputs[0]) {
      Tensor t;
      if (eval_shape_op(*node, types[0], t)) {
        out.types[node->outputs[0]] = {t.dtype(), shape_from_dims(t.dims())};
        out.values[node->outputs[0]] = std::move(t);
        continue;
      }
    }
    if (all_known && elements <= kEvalElementLimit && !has_subgraph(*node)) {
      std::vector<Tensor> results;
      Status s = ops::run_node(*node, values, results);
      if (s.ok()) {
        bool small = true;
        for (auto& r : results) small = small && r.numel() <= kEvalElementLimit;
        for (size_t i = 0; i < node->outputs.size(); ++i) {
          if (!node->outputs[i]) continue;
          out.types[node->outputs[i]] = {results[i].dtype(), shape_from_dims(results[i].dims())};
          if (small) out.values[node->outputs[i]] = std::move(results[i]);
        }
        continue;
      }
      if (strict) return s;
    }
    // Bodies see this graph's value types by name (ops/control/outer_types.h).
    std::optional<ops::OuterTypes> scope;
    if (has_subgraph(*node))
      scope.emplace([&](const std::string& name) -> const ops::TensorType* {
        auto v = g.values().find(name);
        if (v == g.values().end()) return nullptr;
        auto t = out.types.find(v->second.get());
        return t == out.types.end() ? nullptr : &t->second;
      });
    auto r = ops::infer_node(*node, types, values);
    if (!r.ok()) {
      if (strict) return r.status();
      continue;
    }
    for (size_t i = 0; i < node->outputs.size() && i < r->size(); ++i)
      if (node->outputs[i]) out.types[node->outputs[i]] = (*r)[i];
  }
  return Status();
}

}  // namespace kiln
