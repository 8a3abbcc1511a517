// Control flow: If, Loop and Scan run their body graphs through the executor's
// subgraph runner; bodies may read outer-scope values by name. Also the two Optional
// queries, on plain tensors.
#include <cstring>
#include <map>

#include "ops/common.h"
#include "ops/control/outer_types.h"

namespace kiln::ops {
namespace {

const ir::Graph* graph_attr(const ir::Node& n, const char* name) {
  const ir::Attribute* a = n.attrs.find(name);
  return a && a->kind == ir::Attribute::Kind::kGraph && a->g ? a->g.get() : nullptr;
}

// Copies `src` into a fresh buffer owned by the op's output.
void set_output_copy(KernelContext& ctx, size_t i, const Tensor& src) {
  if (!ctx.has_output(i)) return;
  Tensor& out = ctx.allocate_output(i, src.dtype(), src.dims());
  if (src.nbytes()) std::memcpy(out.data(), src.data(), src.nbytes());
}

bool scalar_true(const Tensor& t) { return t.numel() > 0 && t.get_as_double(0) != 0.0; }

// Declared type of a body output; shapes vary across iterations, so a dim the
// body does not pin down is unknown.
TensorType body_output_type(const ir::Graph& body, size_t i) {
  const ir::Value* v = body.outputs[i];
  return TensorType{v->dtype, v->shape};
}

// Body output dtypes, inferred through the body when its outputs are not
// declared (function bodies often omit value types). Outer-scope values take their
// types from the enclosing graphs (OuterTypes), else are seen as untyped; ops that
// forward an input's dtype still resolve.
std::vector<DataType> body_output_dtypes(const ir::Graph& body, const std::vector<TensorType>& inputs) {
  std::map<const ir::Value*, TensorType> types;
  // Bodies nested in this one see its values too.
  OuterTypes scope([&](const std::string& name) -> const TensorType* {
    auto v = body.values().find(name);
    if (v == body.values().end()) return nullptr;
    auto t = types.find(v->second.get());
    return t == types.end() ? nullptr : &t->second;
  });
  for (size_t i = 0; i < body.inputs.size(); ++i) {
    TensorType t{body.inputs[i]->dtype, body.inputs[i]->shape};
    if (i < inputs.size() && inputs[i].dtype != DataType::kUndefined) t = inputs[i];
    types[body.inputs[i]] = t;
  }
  for (auto& [name, v] : body.values())
    if (v->initializer) types[v.get()] = {v->initializer->dtype(), shape_from_dims(v->initializer->dims())};
  for (auto& n : body.nodes()) {
    std::vector<TensorType> ins;
    std::vector<const Tensor*> vals;
    for (ir::Value* in : n->inputs) {
      TensorType t;
      if (in) {
        auto it = types.find(in);
        t = it != types.end() ? it->second : TensorType{in->dtype, in->shape};
        if (it == types.end() && !in->producer && t.dtype == DataType::kUndefined)
          if (const TensorType* outer = OuterTypes::lookup(in->name)) t = *outer;  // read from an enclosing graph
      }
      ins.push_back(t);
      vals.push_back(in && in->initializer ? in->initializer.get() : nullptr);
    }
    auto r = infer_node(*n, ins, vals);
    for (size_t i = 0; i < n->outputs.size(); ++i) {
      if (!n->outputs[i]) continue;
      TensorType t{n->outputs[i]->dtype, n->outputs[i]->shape};
      if (r.ok() && i < r->size() && (*r)[i].dtype != DataType::kUndefined) t = (*r)[i];
      types[n->outputs[i]] = t;
    }
  }
  std::vector<DataType> out;
  for (ir::Value* o : body.outputs) {
    auto it = types.find(o);
    out.push_back(o->dtype != DataType::kUndefined ? o->dtype
                  : it != types.end()              ? it->second.dtype
                                                   : DataType::kUndefined);
  }
  return out;
}

// ------------------------------------------------------------------ If

Status infer_if(InferContext& ctx) {
  const ir::Graph* then_g = graph_attr(ctx.node(), "then_branch");
  const ir::Graph* else_g = graph_attr(ctx.node(), "else_branch");
  if (!then_g || !else_g) return ctx.error("needs graph attributes then_branch and else_branch");
  if (then_g->outputs.size() != ctx.num_outputs() || else_g->outputs.size() != ctx.num_outputs())
    return ctx.error("then_branch has " + std::to_string(then_g->outputs.size()) + " outputs and else_branch " +
                     std::to_string(else_g->outputs.size()) + ", the node has " + std::to_string(ctx.num_outputs()));
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    TensorType a = body_output_type(*then_g, i), b = body_output_type(*else_g, i);
    std::optional<Shape> shape;
    if (a.shape && b.shape && a.shape->size() == b.shape->size()) {
      shape = a.shape;
      for (size_t d = 0; d < shape->size(); ++d)
        if ((*a.shape)[d] != (*b.shape)[d]) (*shape)[d] = Dim::unknown();
    }
    // At run time only the taken branch's shape is real: leave it to the kernel.
    if (ctx.value(0)) shape = std::nullopt;
    DataType dt = a.dtype != DataType::kUndefined ? a.dtype : b.dtype;
    if (dt == DataType::kUndefined) dt = body_output_dtypes(*then_g, {})[i];
    if (dt == DataType::kUndefined) dt = body_output_dtypes(*else_g, {})[i];
    if (dt == DataType::kUndefined) return ctx.unsupported("cannot infer the dtype of output " + std::to_string(i));
    ctx.set_output(i, dt, shape);
  }
  return Status();
}

Status ref_if(KernelContext& ctx) {
  if (!ctx.subgraph_runner()) return ctx.error("If needs the executor's subgraph runner", ErrorCode::kInternal);
  bool cond = scalar_true(ctx.input(0));
  const ir::Graph* branch = graph_attr(ctx.node(), cond ? "then_branch" : "else_branch");
  KILN_ASSIGN_OR_RETURN(std::vector<Tensor> outs, ctx.subgraph_runner()(*branch, {}));
  if (outs.size() != ctx.num_outputs()) return ctx.error("branch produced the wrong number of outputs");
  for (size_t i = 0; i < outs.size(); ++i) set_output_copy(ctx, i, outs[i]);
  return Status();
}

// ------------------------------------------------------------------ Loop

Status infer_loop(InferContext& ctx) {
  const ir::Graph* body = graph_attr(ctx.node(), "body");
  if (!body) return ctx.error("needs graph attribute body");
  if (ctx.num_inputs() < 2) return ctx.error("needs inputs M and cond (either may be empty)");
  size_t n = ctx.num_inputs() - 2;
  if (body->inputs.size() != n + 2)
    return ctx.error("body takes " + std::to_string(body->inputs.size()) + " inputs; expected 2 + " +
                     std::to_string(n) + " loop-carried");
  if (body->outputs.size() < n + 1) return ctx.error("body has too few outputs");
  size_t k = body->outputs.size() - 1 - n;
  if (ctx.num_outputs() > n + k) return ctx.error("node has more outputs than the body provides");
  std::vector<TensorType> body_in{{DataType::kInt64, Shape{}}, {DataType::kBool, Shape{}}};
  for (size_t i = 0; i < n; ++i) body_in.push_back(ctx.input(2 + i));
  std::vector<DataType> dts = body_output_dtypes(*body, body_in);
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    DataType dt = i < n && ctx.input_dtype(2 + i) != DataType::kUndefined ? ctx.input_dtype(2 + i) : dts[1 + i];
    if (dt == DataType::kUndefined) return ctx.unsupported("cannot infer the dtype of output " + std::to_string(i));
    ctx.set_output(i, dt, std::nullopt);
  }
  return Status();
}

Status stack(const std::vector<Tensor>& parts, const TensorType& declared, Tensor& out) {
  if (parts.empty()) {
    Dims d{0};
    if (declared.shape)
      for (const Dim& x : *declared.shape) d.push_back(x.known() ? x.value : 0);
    out = Tensor::empty(declared.dtype == DataType::kUndefined ? DataType::kFloat32 : declared.dtype, d);
    return Status();
  }
  Dims d{static_cast<int64_t>(parts.size())};
  for (int64_t x : parts[0].dims()) d.push_back(x);
  out = Tensor::empty(parts[0].dtype(), d);
  size_t bytes = parts[0].nbytes();
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].dims() != parts[0].dims() || parts[i].dtype() != parts[0].dtype())
      return Status(ErrorCode::kInvalidArgument, "scan output changes shape between iterations (" +
                                                     dims_to_string(parts[0].dims()) + " then " +
                                                     dims_to_string(parts[i].dims()) + ")");
    if (bytes) std::memcpy(static_cast<uint8_t*>(out.data()) + i * bytes, parts[i].data(), bytes);
  }
  return Status();
}

Status ref_loop(KernelContext& ctx) {
  if (!ctx.subgraph_runner()) return ctx.error("Loop needs the executor's subgraph runner", ErrorCode::kInternal);
  const ir::Graph& body = *graph_attr(ctx.node(), "body");
  size_t n = ctx.num_inputs() - 2;
  size_t k = body.outputs.size() - 1 - n;
  int64_t trips = ctx.has_input(0) ? ctx.input(0).get_as_int64(0) : INT64_MAX;
  bool cond = ctx.has_input(1) ? scalar_true(ctx.input(1)) : true;
  std::vector<Tensor> carried;
  for (size_t i = 0; i < n; ++i) {
    if (!ctx.has_input(2 + i)) return ctx.error("loop-carried input " + std::to_string(i) + " is missing");
    carried.push_back(ctx.input(2 + i));
  }
  std::vector<std::vector<Tensor>> scans(k);
  // A loop with neither a trip count nor a condition would never end.
  if (!ctx.has_input(0) && !ctx.has_input(1)) return ctx.error("Loop has neither M nor cond: it would never end");
  for (int64_t it = 0; it < trips && cond; ++it) {
    std::vector<Tensor> in;
    Tensor iter = Tensor::empty(DataType::kInt64, {});
    *iter.data_as<int64_t>() = it;
    Tensor c = Tensor::empty(DataType::kBool, {});
    *c.data_as<bool>() = cond;
    in.push_back(iter);
    in.push_back(c);
    for (auto& t : carried) in.push_back(t);
    KILN_ASSIGN_OR_RETURN(std::vector<Tensor> outs, ctx.subgraph_runner()(body, in));
    if (outs.size() != 1 + n + k) return ctx.error("body produced the wrong number of outputs");
    cond = scalar_true(outs[0]);
    for (size_t i = 0; i < n; ++i) carried[i] = outs[1 + i].clone();
    for (size_t j = 0; j < k; ++j) scans[j].push_back(outs[1 + n + j].clone());
  }
  for (size_t i = 0; i < n && i < ctx.num_outputs(); ++i) set_output_copy(ctx, i, carried[i]);
  for (size_t j = 0; j < k && n + j < ctx.num_outputs(); ++j) {
    if (!ctx.has_output(n + j)) continue;
    Tensor stacked;
    KILN_RETURN_IF_ERROR(
        stack(scans[j], body_output_type(body, 1 + n + j), stacked).with_context("node " + ctx.node().describe()));
    set_output_copy(ctx, n + j, stacked);
  }
  return Status();
}

// ------------------------------------------------------------------ Scan (opset 8)
// Opset 8 batches: inputs are [sequence_lens], states [B, ...] and scan inputs
// [B, seq, ...]; the body sees one batch row (and one step) at a time. Scan
// outputs are [B, seq, ...], zero-padded past each row's sequence length.

Status infer_scan8(InferContext& ctx, const ir::Graph& body) {
  int64_t m = ctx.attrs().get_int("num_scan_inputs", -1);
  if (ctx.num_inputs() < 1 || m < 0 || static_cast<size_t>(m) > ctx.num_inputs() - 1)
    return ctx.error("bad num_scan_inputs");
  if (ctx.has_input(0) && ctx.input_dtype(0) != DataType::kInt64) return ctx.error("sequence_lens must be int64");
  size_t n = ctx.num_inputs() - 1 - static_cast<size_t>(m);
  if (body.inputs.size() != n + static_cast<size_t>(m))
    return ctx.error("body input count differs from the node's states + scan inputs");
  if (body.outputs.size() < n) return ctx.error("body has too few outputs");
  if (ctx.num_outputs() > body.outputs.size()) return ctx.error("node has more outputs than the body provides");
  auto dirs = ctx.attrs().get_ints("directions", std::vector<int64_t>(m, 0));
  if (dirs.size() != static_cast<size_t>(m)) return ctx.error("directions must have num_scan_inputs entries");
  std::vector<TensorType> body_in;
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.error("state and scan inputs are required");
    TensorType t = ctx.input(i);
    size_t drop = i > n ? 2 : 1;  // batch axis, and the sequence axis of scan inputs
    if (t.shape && t.shape->size() < drop)
      return ctx.error("input " + std::to_string(i) + " lacks the batch/sequence axes");
    if (t.shape) t.shape->erase(t.shape->begin(), t.shape->begin() + static_cast<std::ptrdiff_t>(drop));
    body_in.push_back(t);
  }
  std::vector<DataType> dts = body_output_dtypes(body, body_in);
  for (size_t i = 0; i < ctx.num_outputs(); ++i) {
    DataType dt = i < n ? ctx.input_dtype(1 + i) : dts[i];
    if (dt == DataType::kUndefined) return ctx.unsupported("cannot infer the dtype of output " + std::to_string(i));
    ctx.set_output(i, dt, std::nullopt);
  }
  return Status();
}

// ------------------------------------------------------------------ Scan (opset 9+)

Status infer_scan(InferContext& ctx) {
  const ir::Graph* body = graph_attr(ctx.node(), "body");
  if (!body) return ctx.error("needs graph attribute body");
  if (ctx.opset() < 9) return infer_scan8(ctx, *body);
  int64_t m = ctx.attrs().get_int("num_scan_inputs", -1);
  if (m < 0 || static_cast<size_t>(m) > ctx.num_inputs()) return ctx.error("bad num_scan_inputs");
  size_t n = ctx.num_inputs() - static_cast<size_t>(m);
  if (body->inputs.size() != ctx.num_inputs()) return ctx.error("body input count differs from the node's");
  if (body->outputs.size() < n) return ctx.error("body has too few outputs");
  std::vector<TensorType> body_in;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    TensorType t = ctx.input(i);
    if (i >= n && t.shape && !t.shape->empty()) t.shape->erase(t.shape->begin());  // one slice
    body_in.push_back(t);
  }
  std::vector<DataType> dts = body_output_dtypes(*body, body_in);
  for (size_t i = 0; i < ctx.num_outputs() && i < body->outputs.size(); ++i) {
    DataType dt = i < n ? ctx.input_dtype(i) : dts[i];
    if (dt == DataType::kUndefined) return ctx.unsupported("cannot infer the dtype of output " + std::to_string(i));
    ctx.set_output(i, dt, std::nullopt);
  }
  return Status();
}

// Slice `t` at index `i` along `axis` (removing the axis).
Tensor take_slice(const Tensor& t, int64_t axis, int64_t i) {
  Dims d = t.dims();
  int64_t outer = 1, inner = 1;
  for (int64_t a = 0; a < axis; ++a) outer *= d[a];
  for (size_t a = axis + 1; a < d.size(); ++a) inner *= d[a];
  int64_t len = d[axis];
  d.erase(d.begin() + axis);
  Tensor out = Tensor::empty(t.dtype(), d);
  size_t es = dtype_size(t.dtype());
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(static_cast<uint8_t*>(out.data()) + o * inner * es,
                static_cast<const uint8_t*>(t.data()) + ((o * len + i) * inner) * es, inner * es);
  return out;
}

// Stacks parts along `axis` (inserted).
Tensor stack_axis(const std::vector<Tensor>& parts, int64_t axis) {
  Dims d = parts[0].dims();
  int64_t outer = 1, inner = 1;
  for (int64_t a = 0; a < axis; ++a) outer *= d[a];
  for (size_t a = axis; a < d.size(); ++a) inner *= d[a];
  int64_t len = static_cast<int64_t>(parts.size());
  d.insert(d.begin() + axis, len);
  Tensor out = Tensor::empty(parts[0].dtype(), d);
  size_t es = dtype_size(out.dtype());
  for (int64_t i = 0; i < len; ++i)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(static_cast<uint8_t*>(out.data()) + ((o * len + i) * inner) * es,
                  static_cast<const uint8_t*>(parts[i].data()) + o * inner * es, inner * es);
  return out;
}

Status ref_scan8(KernelContext& ctx, const ir::Graph& body) {
  int64_t m = ctx.attrs().get_int("num_scan_inputs", 0);
  size_t n = ctx.num_inputs() - 1 - static_cast<size_t>(m);
  size_t k = body.outputs.size() - n;
  auto dirs = ctx.attrs().get_ints("directions", std::vector<int64_t>(m, 0));
  int64_t batch = -1, max_len = -1;
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    const bool scan = i > n;
    if (t.rank() < (scan ? 2 : 1)) return ctx.error("input " + std::to_string(i) + " lacks the batch/sequence axes");
    if (batch >= 0 && t.dim(0) != batch) return ctx.error("inputs have different batch sizes");
    batch = t.dim(0);
    if (scan) {
      if (max_len >= 0 && t.dim(1) != max_len) return ctx.error("scan inputs have different sequence lengths");
      max_len = t.dim(1);
    }
  }
  if (batch < 0) return ctx.error("Scan has no state or scan inputs");
  if (max_len < 0) max_len = 0;
  std::vector<int64_t> lens(static_cast<size_t>(batch), max_len);
  if (ctx.has_input(0)) {
    lens = ctx.input(0).to_int64_vector();
    if (static_cast<int64_t>(lens.size()) != batch) return ctx.error("sequence_lens must have one entry per batch row");
    for (int64_t l : lens)
      if (l < 0 || l > max_len)
        return ctx.error("sequence length " + std::to_string(l) + " is outside [0, " + std::to_string(max_len) + "]");
  }
  std::vector<std::vector<Tensor>> final_states(n);  // [state][b]
  std::vector<std::vector<Tensor>> rows(k);          // [output][b], each [max_len, ...]
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<Tensor> state;
    for (size_t i = 0; i < n; ++i) state.push_back(take_slice(ctx.input(1 + i), 0, b));
    std::vector<Tensor> seqs;
    for (int64_t j = 0; j < m; ++j) seqs.push_back(take_slice(ctx.input(1 + n + j), 0, b));
    const int64_t len = lens[static_cast<size_t>(b)];
    std::vector<std::vector<Tensor>> steps(k);
    for (int64_t it = 0; it < len; ++it) {
      std::vector<Tensor> in = state;
      for (int64_t j = 0; j < m; ++j) in.push_back(take_slice(seqs[j], 0, dirs[j] ? len - 1 - it : it));
      KILN_ASSIGN_OR_RETURN(std::vector<Tensor> res, ctx.subgraph_runner()(body, in));
      if (res.size() != n + k) return ctx.error("body produced the wrong number of outputs");
      for (size_t i = 0; i < n; ++i) state[i] = res[i].clone();
      for (size_t j = 0; j < k; ++j) steps[j].push_back(res[n + j].clone());
    }
    for (size_t i = 0; i < n; ++i) final_states[i].push_back(state[i]);
    for (size_t j = 0; j < k; ++j) {
      if (steps[j].empty()) {
        rows[j].emplace_back();  // filled once another row shows the element shape
        continue;
      }
      while (static_cast<int64_t>(steps[j].size()) < max_len)
        steps[j].push_back(Tensor::zeros(steps[j][0].dtype(), steps[j][0].dims()));
      rows[j].push_back(stack_axis(steps[j], 0));
    }
  }
  for (size_t i = 0; i < n && i < ctx.num_outputs(); ++i)
    set_output_copy(ctx, i, batch > 0 ? stack_axis(final_states[i], 0) : ctx.input(1 + i));
  for (size_t j = 0; j < k && n + j < ctx.num_outputs(); ++j) {
    if (!ctx.has_output(n + j)) continue;
    const Tensor* like = nullptr;
    for (const Tensor& r : rows[j])
      if (!r.is_null()) like = &r;
    if (!like) {
      ctx.allocate_output(n + j, body.outputs[n + j]->dtype, {batch, max_len});
      continue;
    }
    for (Tensor& r : rows[j])
      if (r.is_null()) r = Tensor::zeros(like->dtype(), like->dims());
    set_output_copy(ctx, n + j, stack_axis(rows[j], 0));
  }
  return Status();
}

Status ref_scan(KernelContext& ctx) {
  if (!ctx.subgraph_runner()) return ctx.error("Scan needs the executor's subgraph runner", ErrorCode::kInternal);
  const ir::Graph& body = *graph_attr(ctx.node(), "body");
  if (ctx.opset() < 9) return ref_scan8(ctx, body);
  int64_t m = ctx.attrs().get_int("num_scan_inputs", 0);
  size_t n = ctx.num_inputs() - static_cast<size_t>(m);
  size_t k = body.outputs.size() - n;
  auto in_axes = ctx.attrs().get_ints("scan_input_axes", std::vector<int64_t>(m, 0));
  auto in_dirs = ctx.attrs().get_ints("scan_input_directions", std::vector<int64_t>(m, 0));
  auto out_axes = ctx.attrs().get_ints("scan_output_axes", std::vector<int64_t>(k, 0));
  auto out_dirs = ctx.attrs().get_ints("scan_output_directions", std::vector<int64_t>(k, 0));
  if (in_axes.size() != static_cast<size_t>(m) || in_dirs.size() != static_cast<size_t>(m) || out_axes.size() != k ||
      out_dirs.size() != k)
    return ctx.error("scan axes/directions attributes do not match the number of scan inputs/outputs");
  int64_t len = -1;
  for (int64_t j = 0; j < m; ++j) {
    const Tensor& t = ctx.input(n + j);
    auto ax = normalize_axis(in_axes[j], t.rank());
    if (!ax) return ctx.error("scan_input_axes[" + std::to_string(j) + "] is out of range");
    in_axes[j] = *ax;
    if (len >= 0 && t.dim(*ax) != len) return ctx.error("scan inputs have different sequence lengths");
    len = t.dim(*ax);
  }
  if (len < 0) len = 0;
  std::vector<Tensor> state;
  for (size_t i = 0; i < n; ++i) state.push_back(ctx.input(i));
  std::vector<std::vector<Tensor>> outs(k);
  for (int64_t it = 0; it < len; ++it) {
    std::vector<Tensor> in = state;
    for (int64_t j = 0; j < m; ++j) {
      int64_t idx = in_dirs[j] ? len - 1 - it : it;
      in.push_back(take_slice(ctx.input(n + j), in_axes[j], idx));
    }
    KILN_ASSIGN_OR_RETURN(std::vector<Tensor> res, ctx.subgraph_runner()(body, in));
    if (res.size() != n + k) return ctx.error("body produced the wrong number of outputs");
    for (size_t i = 0; i < n; ++i) state[i] = res[i].clone();
    for (size_t j = 0; j < k; ++j) outs[j].push_back(res[n + j].clone());
  }
  for (size_t i = 0; i < n; ++i) set_output_copy(ctx, i, state[i]);
  for (size_t j = 0; j < k; ++j) {
    if (!ctx.has_output(n + j)) continue;
    if (outs[j].empty()) {
      ctx.allocate_output(n + j, body.outputs[n + j]->dtype, {0});
      continue;
    }
    if (out_dirs[j]) std::reverse(outs[j].begin(), outs[j].end());
    auto ax = normalize_axis(out_axes[j], outs[j][0].rank() + 1);
    if (!ax) return ctx.error("scan_output_axes[" + std::to_string(j) + "] is out of range");
    set_output_copy(ctx, n + j, stack_axis(outs[j], *ax));
  }
  return Status();
}

// ------------------------------------------------------------------ Optional
//
// kiln has no optional type: a value is a tensor or absent (an omitted input). So
// OptionalHasElement says whether its input is given, and OptionalGetElement of a tensor
// is that tensor (ONNX allows a tensor there since opset 18). Graph inputs and outputs of
// optional type are refused where the model is read.

Status infer_optional_has_element(InferContext& ctx) {
  ctx.set_output(0, DataType::kBool, Shape{});
  return Status();
}

Status ref_optional_has_element(KernelContext& ctx) {
  Tensor& y = ctx.allocate_output(0, DataType::kBool, {});
  *y.data_as<bool>() = ctx.has_input(0);
  return Status();
}

Status infer_optional_get_element(InferContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("has no input (an empty optional has no element)");
  return infer_same_as_input0(ctx);
}

Status ref_optional_get_element(KernelContext& ctx) {
  if (!ctx.has_input(0)) return ctx.error("has no input (an empty optional has no element)");
  set_output_copy(ctx, 0, ctx.input(0));
  return Status();
}

}  // namespace

void register_control_ops(OpRegistry& r) {
  r.add({.name = "OptionalHasElement",
         .infer = infer_optional_has_element,
         .ref = ref_optional_has_element,
         .min_opset = 15});
  r.add({.name = "OptionalGetElement",
         .infer = infer_optional_get_element,
         .ref = ref_optional_get_element,
         .min_opset = 15});
  r.add({.name = "If", .infer = infer_if, .ref = ref_if, .value_inputs = {0}});
  r.add({.name = "Loop", .infer = infer_loop, .ref = ref_loop});
  r.add({.name = "Scan", .infer = infer_scan, .ref = ref_scan});
}

}  // namespace kiln::ops
