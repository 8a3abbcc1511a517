// Identity elimination: Identity, inference-mode Dropout and a Cast to the dtype its
// input already has forward their input; a Gather that picks every element of its axis
// in order (constant indices 0, 1, ..., n-1, only ones before the axis) is a Reshape
// (exporters write both in attention-mask code).
//   x -> Identity -> y -> Relu                          becomes    x -> Relu
//   x:bool -> Cast(to=bool) -> y                        becomes    x
//   x:[128,1] -> Gather(axis=0, [[0..127]]) -> y:[1,128,1]   becomes    y = Reshape(x, [1,128,1])
// It runs again after fold_constants, which makes such indices constant.
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

// Gather(data, indices) that reads data's axis in order once, with only ones before the
// axis and a known output shape: that shape (else empty).
std::vector<int64_t> in_order_gather_shape(const ir::Node& n) {
  if (n.op_type != "Gather" || !n.domain.empty() || n.inputs.size() != 2 || n.outputs.size() != 1) return {};
  const ir::Value* data = n.inputs[0];
  const ir::Value* idx = n.inputs[1];
  const ir::Value* out = n.outputs[0];
  if (!data || !idx || !out || !idx->initializer || !data->shape || !out->shape) return {};
  const auto rank = static_cast<int64_t>(data->shape->size());
  int64_t axis = n.attrs.get_int("axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank || !(*data->shape)[axis].known()) return {};
  for (int64_t i = 0; i < axis; ++i)
    if (!((*data->shape)[i].known() && (*data->shape)[i].value == 1)) return {};
  const Tensor& t = *idx->initializer;
  if (t.dtype() != DataType::kInt64 && t.dtype() != DataType::kInt32) return {};
  if (t.numel() != (*data->shape)[axis].value) return {};
  for (int64_t i = 0; i < t.numel(); ++i)
    if (static_cast<int64_t>(t.get_as_double(i)) != i) return {};
  std::vector<int64_t> dims;
  for (const Dim& d : *out->shape) {
    if (!d.known()) return {};
    dims.push_back(d.value);
  }
  return dims;
}

}  // namespace

Status eliminate_identity(ir::Graph& g, PassContext& ctx) {
  std::vector<const ir::Node*> removed;
  const std::set<std::string> captured = captured_names(g);  // read by bodies by name
  int reshaped = 0;
  for (auto& node : g.nodes()) {
    if (std::vector<int64_t> dims = in_order_gather_shape(*node); !dims.empty()) {
      const auto rank = static_cast<int64_t>(dims.size());
      node->op_type = "Reshape";
      node->opset = 14;
      node->attrs = ir::Attributes();
      node->inputs[1] =
          g.add_constant(node->name + "_shape", Tensor::from_vector<int64_t>(DataType::kInt64, {rank}, dims));
      ++reshaped;
      continue;
    }
    const bool same_cast = node->op_type == "Cast" && node->domain.empty() && node->inputs.size() == 1 &&
                           node->inputs[0] && node->inputs[0]->dtype != DataType::kUndefined &&
                           node->attrs.get_int("to", -1) == static_cast<int64_t>(node->inputs[0]->dtype);
    bool identity = (node->op_type == "Identity" && node->domain.empty()) || same_cast;
    // Dropout in inference: output 0 is the input; only when the mask is unused.
    bool dropout = node->op_type == "Dropout" && node->domain.empty() &&
                   (node->outputs.size() < 2 || !node->outputs[1] || g.consumers(node->outputs[1]).empty()) &&
                   !(node->outputs.size() > 1 && node->outputs[1] && g.is_output(node->outputs[1]));
    if (!identity && !dropout) continue;
    if (node->inputs.empty() || !node->inputs[0] || node->outputs.empty() || !node->outputs[0]) continue;
    ir::Value* in = node->inputs[0];
    ir::Value* out = node->outputs[0];
    // A graph output keeps its name, and so does a value a subgraph body reads by
    // name: only drop the node when the output is internal.
    if (g.is_output(out) || captured.count(out->name)) continue;
    g.replace_uses(out, in);
    removed.push_back(node.get());
  }
  g.remove_nodes_if([&](const ir::Node& n) { return std::find(removed.begin(), removed.end(), &n) != removed.end(); });
  g.prune_values();
  ctx.stats["removed_identity"] += static_cast<int>(removed.size());
  if (reshaped) ctx.stats["in_order_gathers_reshaped"] += reshaped;
  return Status();
}

}  // namespace kiln::passes
