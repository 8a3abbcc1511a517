// NetworkDefinition: each API layer becomes ONNX-style IR nodes (default-domain opset 17)
// with weights copied into initializers. Shapes are inferred best-effort as layers are
// added (when the op is registered); the builder infers them for real.
#include <algorithm>
#include <cmath>

#include "builder/network_impl.h"
#include "ops/op.h"

namespace kiln {

namespace {

constexpr int kApiOpset = 17;

ir::Node* find_node(ir::Graph& g, const std::string& name) {
  for (auto& n : g.nodes())
    if (n->name == name) return n.get();
  return nullptr;
}

// Fills the node's output types from the op's inference when it can; silent on failure
// because later settings (groups, reshape dims) may still make the layer valid.
void infer_outputs(ir::Node& n) {
  const ops::OpDef* def = ops::OpRegistry::global().find(n.domain, n.op_type);
  if (!def) return;
  std::vector<ops::TensorType> types;
  std::vector<const Tensor*> values;
  for (ir::Value* v : n.inputs) {
    if (v && v->dtype == DataType::kUndefined) return;
    types.push_back(v ? ops::TensorType{v->dtype, v->shape} : ops::TensorType{});
    values.push_back(v && v->initializer ? v->initializer.get() : nullptr);
  }
  auto r = ops::infer_node(n, types, values);
  if (!r.ok()) return;
  for (size_t i = 0; i < n.outputs.size() && i < r->size(); ++i) {
    if (!n.outputs[i]) continue;
    n.outputs[i]->dtype = (*r)[i].dtype;
    n.outputs[i]->shape = (*r)[i].shape;
  }
}

void reinfer_all(ir::Graph& g) {
  for (auto& n : g.nodes()) infer_outputs(*n);
}

Tensor scalar(DataType dt, double v) {
  Tensor t = Tensor::empty(dt, {});
  t.set_from_double(0, v);
  return t;
}

Tensor int64_vector(const std::vector<int64_t>& v) {
  Tensor t = Tensor::empty(DataType::kInt64, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data_as<int64_t>()[i] = v[i];
  return t;
}

std::string layer_text(const std::string& name, const std::string& kind) {
  return "layer '" + name + "' (" + kind + ")";
}

}  // namespace

// ------------------------------------------------------------------ NetworkTensor

const std::string& NetworkTensor::name() const { return name_; }

void NetworkTensor::set_name(const std::string& name) {
  if (name == name_) return;
  auto& impl = net_->impl();
  ir::Graph& g = impl.graph;
  ir::Value* old = g.find_value(name_);
  if (!old) {
    impl.errors.push_back("cannot rename tensor '" + name_ + "': it is not in the network");
    return;
  }
  // Values are keyed by name, so renaming moves everything onto another value; the old
  // one is left detached. A detached value left by an earlier rename may be taken over.
  ir::Value* nv = name.empty() ? nullptr : g.find_value(name);
  bool reusable = nv && !nv->producer && !nv->initializer && g.consumers(nv).empty() && !g.is_output(nv);
  for (ir::Value* in : g.inputs) reusable = reusable && in != nv;
  for (auto& t : impl.tensors) reusable = reusable && t->name_ != name;
  if (name.empty() || (nv && !reusable)) {
    impl.errors.push_back("cannot rename tensor '" + name_ + "' to '" + name +
                          "': " + (name.empty() ? "the name is empty" : "the name is taken"));
    return;
  }
  if (!nv) nv = g.add_value(name).value();
  nv->dtype = old->dtype;
  nv->shape = old->shape;
  nv->layout = old->layout;
  nv->initializer = old->initializer;
  nv->producer = old->producer;
  if (old->producer)
    for (ir::Value*& o : old->producer->outputs)
      if (o == old) o = nv;
  g.replace_uses(old, nv);
  for (ir::Value*& in : g.inputs)
    if (in == old) in = nv;
  old->producer = nullptr;
  old->initializer.reset();
  old->dtype = DataType::kUndefined;
  old->shape.reset();
  name_ = name;
}

DataType NetworkTensor::dtype() const {
  const ir::Value* v = net_->impl().graph.find_value(name_);
  return v ? v->dtype : DataType::kUndefined;
}

Dims NetworkTensor::shape() const {
  const ir::Value* v = net_->impl().graph.find_value(name_);
  return v && v->shape ? shape_to_dims(*v->shape) : Dims{};
}

// ------------------------------------------------------------------ Layer

NetworkTensor* Layer::get_output(int i) const {
  return i >= 0 && i < num_outputs() ? outputs_[static_cast<size_t>(i)] : nullptr;
}

namespace {

// The layer's node of one of `op_types`, or nullptr.
ir::Node* layer_node(ir::Graph& g, const std::vector<std::string>& names, std::initializer_list<const char*> op_types) {
  for (const auto& n : names)
    if (ir::Node* node = find_node(g, n))
      for (const char* t : op_types)
        if (node->op_type == t) return node;
  return nullptr;
}

}  // namespace

void Layer::set_stride(const Dims& stride) {
  auto& impl = net_->impl();
  ir::Node* n = layer_node(impl.graph, node_names_, {"Conv", "MaxPool", "AveragePool"});
  if (!n)
    return impl.errors.push_back(layer_text(name_, kind_) + ": set_stride applies to convolution and pooling layers");
  for (int64_t s : stride)
    if (s <= 0) return impl.errors.push_back(layer_text(name_, kind_) + ": strides must be positive");
  n->attrs.set("strides", ir::Attribute::from_ints(stride));
  reinfer_all(impl.graph);
}

void Layer::set_padding(const Dims& padding) {
  auto& impl = net_->impl();
  ir::Node* n = layer_node(impl.graph, node_names_, {"Conv", "MaxPool", "AveragePool"});
  if (!n)
    return impl.errors.push_back(layer_text(name_, kind_) + ": set_padding applies to convolution and pooling layers");
  for (int64_t p : padding)
    if (p < 0) return impl.errors.push_back(layer_text(name_, kind_) + ": padding must not be negative");
  std::vector<int64_t> pads(padding);  // ONNX pads: all begins, then all ends
  pads.insert(pads.end(), padding.begin(), padding.end());
  n->attrs.set("pads", ir::Attribute::from_ints(pads));
  reinfer_all(impl.graph);
}

void Layer::set_dilation(const Dims& dilation) {
  auto& impl = net_->impl();
  ir::Node* n = layer_node(impl.graph, node_names_, {"Conv", "MaxPool"});
  if (!n)
    return impl.errors.push_back(layer_text(name_, kind_) +
                                 ": set_dilation applies to convolution and max pooling layers");
  for (int64_t d : dilation)
    if (d <= 0) return impl.errors.push_back(layer_text(name_, kind_) + ": dilations must be positive");
  n->attrs.set("dilations", ir::Attribute::from_ints(dilation));
  reinfer_all(impl.graph);
}

void Layer::set_num_groups(int64_t groups) {
  auto& impl = net_->impl();
  ir::Node* n = layer_node(impl.graph, node_names_, {"Conv"});
  if (!n) return impl.errors.push_back(layer_text(name_, kind_) + ": set_num_groups applies to convolution layers");
  if (groups <= 0) return impl.errors.push_back(layer_text(name_, kind_) + ": groups must be positive");
  const ir::Value* x = n->input(0);
  const ir::Value* w = n->input(1);
  if (x && x->shape && x->shape->size() >= 2 && (*x->shape)[1].known() && w && w->initializer &&
      w->initializer->rank() >= 2) {
    const int64_t c = (*x->shape)[1].value, cg = w->initializer->dim(1), k = w->initializer->dim(0);
    if (c != groups * cg || k % groups != 0)
      return impl.errors.push_back(layer_text(name_, kind_) + ": " + std::to_string(groups) + " groups do not fit " +
                                   std::to_string(c) + " input channels, " + std::to_string(k) +
                                   " output maps and a kernel of " + std::to_string(cg) + " channels per group");
  }
  n->attrs.set("group", ir::Attribute::from_int(groups));
  reinfer_all(impl.graph);
}

void Layer::set_reshape_dims(const Dims& dims) {
  auto& impl = net_->impl();
  ir::Graph& g = impl.graph;
  if (kind_ != "shuffle")
    return impl.errors.push_back(layer_text(name_, kind_) + ": set_reshape_dims applies to shuffle layers");
  for (int64_t d : dims)
    if (d < -1) return impl.errors.push_back(layer_text(name_, kind_) + ": reshape dims must be >= -1");
  ir::Value* shape = g.add_constant(name_ + "_shape", int64_vector(dims));
  if (ir::Node* r = layer_node(g, node_names_, {"Reshape"})) {
    r->inputs.resize(2);
    r->inputs[1] = shape;
  } else if (ir::Node* id = layer_node(g, node_names_, {"Identity"})) {
    id->op_type = "Reshape";
    id->inputs.push_back(shape);
  } else if (ir::Node* t = layer_node(g, node_names_, {"Transpose"})) {
    // Transpose then Reshape: the transpose now feeds a new intermediate value.
    ir::Value* out = t->outputs[0];
    ir::Value* mid = g.add_unique_value(name_ + "_transposed");
    t->outputs[0] = mid;
    mid->producer = t;
    ir::Node* r = g.add_node("Reshape", {mid, shape}, {out}, g.unique_name(name_ + "_reshape"));
    r->opset = kApiOpset;
    node_names_.push_back(r->name);
    (void)g.topo_sort();
  }
  reinfer_all(g);
}

void Layer::set_first_transpose(const std::vector<int64_t>& perm) {
  auto& impl = net_->impl();
  ir::Graph& g = impl.graph;
  if (kind_ != "shuffle")
    return impl.errors.push_back(layer_text(name_, kind_) + ": set_first_transpose applies to shuffle layers");
  std::vector<char> seen(perm.size(), 0);
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(perm.size()) || seen[static_cast<size_t>(p)]++)
      return impl.errors.push_back(layer_text(name_, kind_) + ": the transpose is not a permutation of 0.." +
                                   std::to_string(static_cast<int64_t>(perm.size()) - 1));
  }
  if (ir::Node* t = layer_node(g, node_names_, {"Transpose"})) {
    t->attrs.set("perm", ir::Attribute::from_ints(perm));
  } else if (ir::Node* id = layer_node(g, node_names_, {"Identity"})) {
    id->op_type = "Transpose";
    id->attrs.set("perm", ir::Attribute::from_ints(perm));
  } else if (ir::Node* r = layer_node(g, node_names_, {"Reshape"})) {
    ir::Value* in = r->inputs[0];
    ir::Value* mid = g.add_unique_value(name_ + "_transposed");
    r->inputs[0] = mid;
    ir::Node* t = g.add_node("Transpose", {in}, {mid}, g.unique_name(name_ + "_transpose"));
    t->opset = kApiOpset;
    t->attrs.set("perm", ir::Attribute::from_ints(perm));
    node_names_.push_back(t->name);
    (void)g.topo_sort();
  }
  reinfer_all(g);
}

void Layer::set_axis(int64_t axis) {
  auto& impl = net_->impl();
  ir::Node* n = layer_node(impl.graph, node_names_, {"Softmax", "Concat"});
  if (!n)
    return impl.errors.push_back(layer_text(name_, kind_) + ": set_axis applies to softmax and concatenation layers");
  n->attrs.set("axis", ir::Attribute::from_int(axis));
  reinfer_all(impl.graph);
}

void Layer::set_precision(DataType precision) {
  auto& impl = net_->impl();
  if (!dtype_is_float(precision) && precision != DataType::kInt8)
    return impl.errors.push_back(layer_text(name_, kind_) + ": precision " + dtype_name(precision) +
                                 " is not a compute precision");
  for (const auto& nm : node_names_)
    if (ir::Node* n = find_node(impl.graph, nm)) {
      n->precision = precision;
      // Marks the choice as the user's, so the builder keeps it.
      n->attrs.set("kiln.precision", ir::Attribute::from_int(static_cast<int64_t>(precision)));
    }
}

// ------------------------------------------------------------------ NetworkDefinition

NetworkDefinition::NetworkDefinition() : impl_(std::make_unique<Impl>()) { impl_->graph.opset_imports[""] = kApiOpset; }
NetworkDefinition::~NetworkDefinition() = default;

NetworkTensor* NetworkDefinition::find_tensor(const std::string& name) {
  for (auto& t : impl_->tensors)
    if (t->name_ == name) return t.get();
  if (!impl_->graph.find_value(name)) return nullptr;
  impl_->tensors.push_back(std::unique_ptr<NetworkTensor>(new NetworkTensor(this, name)));
  return impl_->tensors.back().get();
}

Layer* NetworkDefinition::add_layer_(const std::string& kind, const std::vector<std::string>& node_names,
                                     const std::vector<std::string>& output_names) {
  auto l = std::make_unique<Layer>();
  l->net_ = this;
  l->kind_ = kind;
  l->node_names_ = node_names;
  l->name_ = !node_names.empty() ? node_names[0] : !output_names.empty() ? output_names[0] : kind;
  for (const auto& o : output_names) l->outputs_.push_back(find_tensor(o));
  impl_->layers.push_back(std::move(l));
  return impl_->layers.back().get();
}

namespace {

// Shared plumbing for the add_* methods: input checks, naming, node creation.
struct LayerBuilder {
  NetworkDefinition& net;
  ir::Graph& g;
  std::vector<std::string>& errors;
  std::string kind;
  std::string name;
  std::vector<std::string> node_names;

  LayerBuilder(NetworkDefinition& n, std::string k)
      : net(n), g(n.impl().graph), errors(n.impl().errors), kind(std::move(k)) {
    name = g.unique_name(kind + "_" + std::to_string(n.impl().layers.size()));
  }
  void error(const std::string& msg) { errors.push_back("add_" + kind + " ('" + name + "'): " + msg); }
  // The value behind a handle, or nullptr (with an error).
  ir::Value* value(NetworkTensor* t, const char* what) {
    if (!t) {
      error(std::string(what) + " is null");
      return nullptr;
    }
    ir::Value* v = g.find_value(t->name());
    if (!v || net.find_tensor(t->name()) != t) {
      error(std::string(what) + " '" + t->name() + "' is not a tensor of this network");
      return nullptr;
    }
    return v;
  }
  ir::Value* out() { return g.add_unique_value(name + "_out"); }
  ir::Value* temp(const std::string& hint) { return g.add_unique_value(name + "_" + hint); }
  ir::Node* node(const std::string& op, const std::vector<ir::Value*>& ins, const std::vector<ir::Value*>& outs) {
    ir::Node* n = g.add_node(op, ins, outs, node_names.empty() ? name : g.unique_name(name + "_" + op));
    n->opset = kApiOpset;
    node_names.push_back(n->name);
    return n;
  }
  // Float dtype for helper constants: the input's when it is a float type.
  static DataType const_dtype(const ir::Value* x) {
    return dtype_is_float(x->dtype) && !dtype_is_narrow(x->dtype) ? x->dtype : DataType::kFloat32;
  }
  // Infers the new nodes' outputs; returns the output names for add_layer_.
  std::vector<std::string> finish(const std::vector<ir::Value*>& results) {
    // In graph order: a layer may create its nodes consumer first.
    for (auto& n : g.nodes())
      if (std::find(node_names.begin(), node_names.end(), n->name) != node_names.end()) infer_outputs(*n);
    std::vector<std::string> outs;
    for (ir::Value* v : results) outs.push_back(v->name);
    return outs;
  }
};

}  // namespace

NetworkTensor* NetworkDefinition::add_input(const std::string& name, DataType dtype, const Dims& dims) {
  auto& impl = *impl_;
  auto bad = [&](const std::string& msg) -> NetworkTensor* {
    impl.errors.push_back("add_input '" + name + "': " + msg);
    return nullptr;
  };
  if (name.empty()) return bad("the name is empty");
  if (impl.graph.find_value(name)) return bad("the name is already used");
  if (!dtype_is_supported(dtype)) return bad(std::string("dtype ") + dtype_name(dtype) + " is not supported");
  for (int64_t d : dims)
    if (d < -1) return bad("dims " + dims_to_string(dims) + " hold a negative size (use -1 for dynamic)");
  ir::Value* v = impl.graph.add_value(name, dtype, shape_from_dims(dims)).value();
  impl.graph.inputs.push_back(v);
  return find_tensor(name);
}

void NetworkDefinition::mark_output(NetworkTensor* tensor) {
  if (!tensor || find_tensor(tensor->name()) != tensor) {
    impl_->errors.push_back(std::string("mark_output: ") +
                            (tensor ? "tensor '" + tensor->name() + "' is not in this network" : "the tensor is null"));
    return;
  }
  ir::Value* v = impl_->graph.find_value(tensor->name());
  if (!impl_->graph.is_output(v)) impl_->graph.outputs.push_back(v);
}

Layer* NetworkDefinition::add_convolution(NetworkTensor* input, int64_t num_output_maps, const Dims& kernel_shape,
                                          const Tensor& kernel, const Tensor& bias) {
  LayerBuilder b(*this, "convolution");
  ir::Value* x = b.value(input, "input");
  if (!x) return nullptr;
  if (num_output_maps <= 0) return b.error("num_output_maps must be positive"), nullptr;
  if (kernel_shape.empty()) return b.error("kernel_shape is empty"), nullptr;
  int64_t window = 1;
  for (int64_t k : kernel_shape) {
    if (k <= 0 || __builtin_mul_overflow(window, k, &window))
      return b.error("kernel_shape " + dims_to_string(kernel_shape) + " is invalid"), nullptr;
  }
  if (x->shape && x->shape->size() != kernel_shape.size() + 2)
    return b.error("a " + std::to_string(kernel_shape.size()) + "-D kernel needs a rank-" +
                   std::to_string(kernel_shape.size() + 2) + " input, got rank " + std::to_string(x->shape->size())),
           nullptr;
  int64_t per_channel = 0;
  if (__builtin_mul_overflow(num_output_maps, window, &per_channel))
    return b.error("num_output_maps*kernel overflows"), nullptr;
  const int64_t count = kernel.is_null() ? 0 : kernel.numel();
  // The kernel is [K, C/groups, k...]; groups may still be set, so C/groups comes from its size.
  const bool c_known = x->shape && (*x->shape)[1].known();
  const int64_t c = c_known ? (*x->shape)[1].value : -1;
  if (count == 0 || count % per_channel != 0 || (c_known && c % (count / per_channel) != 0)) {
    std::string expected = std::to_string(num_output_maps) + "*" + (c_known ? std::to_string(c) : std::string("C")) +
                           "/groups*" + dims_to_string(kernel_shape);
    return b.error("the kernel has " + std::to_string(count) +
                   " values; expected num_output_maps*C/groups*kernel = " + expected),
           nullptr;
  }
  if (!bias.is_null() && bias.numel() != num_output_maps)
    return b.error("the bias has " + std::to_string(bias.numel()) + " values; expected " +
                   std::to_string(num_output_maps)),
           nullptr;
  Dims wdims{num_output_maps, count / per_channel};
  wdims.insert(wdims.end(), kernel_shape.begin(), kernel_shape.end());
  std::vector<ir::Value*> ins{x, b.g.add_constant(b.name + "_kernel", kernel.clone().reshaped(wdims))};
  if (!bias.is_null()) ins.push_back(b.g.add_constant(b.name + "_bias", bias.clone().reshaped({num_output_maps})));
  ir::Value* y = b.out();
  b.node("Conv", ins, {y})->attrs.set("kernel_shape", ir::Attribute::from_ints(kernel_shape));
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_pooling(NetworkTensor* input, PoolingType type, const Dims& window_size) {
  LayerBuilder b(*this, "pooling");
  ir::Value* x = b.value(input, "input");
  if (!x) return nullptr;
  if (window_size.empty()) return b.error("window_size is empty"), nullptr;
  for (int64_t k : window_size)
    if (k <= 0) return b.error("window_size " + dims_to_string(window_size) + " is invalid"), nullptr;
  if (x->shape && x->shape->size() != window_size.size() + 2)
    return b.error("a " + std::to_string(window_size.size()) + "-D window needs a rank-" +
                   std::to_string(window_size.size() + 2) + " input, got rank " + std::to_string(x->shape->size())),
           nullptr;
  ir::Value* y = b.out();
  b.node(type == PoolingType::kMax ? "MaxPool" : "AveragePool", {x}, {y})
      ->attrs.set("kernel_shape", ir::Attribute::from_ints(window_size));
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_matrix_multiply(NetworkTensor* a, MatrixOperation op_a, NetworkTensor* bt,
                                              MatrixOperation op_b) {
  LayerBuilder b(*this, "matrix_multiply");
  ir::Value* va = b.value(a, "input a");
  ir::Value* vb = b.value(bt, "input b");
  if (!va || !vb) return nullptr;
  // kTranspose swaps the last two dims, which needs the rank; vectors stay as they are.
  auto transposed = [&](ir::Value* v, MatrixOperation op, const char* which) -> ir::Value* {
    if (op == MatrixOperation::kNone) return v;
    if (!v->shape) {
      b.error(std::string("transposing input ") + which + " '" + v->name + "' needs its rank, which is unknown");
      return nullptr;
    }
    const int64_t r = static_cast<int64_t>(v->shape->size());
    if (r < 2) return v;
    std::vector<int64_t> perm(static_cast<size_t>(r));
    for (int64_t i = 0; i < r; ++i) perm[static_cast<size_t>(i)] = i;
    std::swap(perm[static_cast<size_t>(r - 1)], perm[static_cast<size_t>(r - 2)]);
    ir::Value* t = b.temp(std::string("transposed_") + which);
    b.node("Transpose", {v}, {t})->attrs.set("perm", ir::Attribute::from_ints(perm));
    return t;
  };
  // The MatMul is created first so it carries the layer's name.
  ir::Value* y = b.out();
  ir::Node* mm = b.node("MatMul", {va, vb}, {y});
  ir::Value* ta = transposed(va, op_a, "a");
  ir::Value* tb = transposed(vb, op_b, "b");
  if (!ta || !tb) {
    b.g.remove_nodes_if([&](const ir::Node& n) {
      for (const auto& nm : b.node_names)
        if (n.name == nm) return true;
      return false;
    });
    return nullptr;
  }
  mm->inputs = {ta, tb};
  (void)b.g.topo_sort();
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_fully_connected(NetworkTensor* input, int64_t num_outputs, const Tensor& kernel,
                                              const Tensor& bias) {
  LayerBuilder b(*this, "fully_connected");
  ir::Value* x = b.value(input, "input");
  if (!x) return nullptr;
  if (num_outputs <= 0) return b.error("num_outputs must be positive"), nullptr;
  const int64_t count = kernel.is_null() ? 0 : kernel.numel();
  if (count == 0 || count % num_outputs != 0)
    return b.error("the kernel has " + std::to_string(count) +
                   " values; expected num_outputs*K with num_outputs = " + std::to_string(num_outputs)),
           nullptr;
  const int64_t k = count / num_outputs;
  if (x->shape && !x->shape->empty()) {
    Shape rest(x->shape->begin() + 1, x->shape->end());
    const int64_t vol = shape_volume(rest);
    if (vol >= 0 && vol != k)
      return b.error("the input has " + std::to_string(vol) + " features per row but the kernel " +
                     std::to_string(num_outputs) + "x" + std::to_string(k) + " expects " + std::to_string(k)),
             nullptr;
  }
  if (!bias.is_null() && bias.numel() != num_outputs)
    return b.error("the bias has " + std::to_string(bias.numel()) + " values; expected " + std::to_string(num_outputs)),
           nullptr;
  ir::Value* flat = b.temp("flat");
  ir::Value* y = b.out();
  std::vector<ir::Value*> ins{flat, b.g.add_constant(b.name + "_kernel", kernel.clone().reshaped({num_outputs, k}))};
  if (!bias.is_null()) ins.push_back(b.g.add_constant(b.name + "_bias", bias.clone().reshaped({num_outputs})));
  ir::Node* gemm = b.node("Gemm", ins, {y});
  gemm->attrs.set("transB", ir::Attribute::from_int(1));
  b.node("Flatten", {x}, {flat})->attrs.set("axis", ir::Attribute::from_int(1));
  (void)b.g.topo_sort();
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

// alpha/beta of 0 select the ONNX default of the parameter (as TensorRT's defaults do).
Layer* NetworkDefinition::add_activation(NetworkTensor* input, ActivationType type, float alpha, float beta) {
  LayerBuilder b(*this, "activation");
  ir::Value* x = b.value(input, "input");
  if (!x) return nullptr;
  const DataType cd = LayerBuilder::const_dtype(x);
  auto k = [&](const char* hint, double v) { return b.g.add_constant(b.name + "_" + hint, scalar(cd, v)); };
  auto simple = [&](const char* op) {
    ir::Value* y = b.out();
    b.node(op, {x}, {y});
    return y;
  };
  auto or_default = [](float v, float def) { return v != 0.f ? v : def; };
  ir::Value* y = nullptr;
  switch (type) {
    case ActivationType::kRelu: y = simple("Relu"); break;
    case ActivationType::kSigmoid: y = simple("Sigmoid"); break;
    case ActivationType::kTanh: y = simple("Tanh"); break;
    case ActivationType::kLeakyRelu:
      y = simple("LeakyRelu");
      find_node(b.g, b.node_names[0])->attrs.set("alpha", ir::Attribute::from_float(or_default(alpha, 0.01f)));
      break;
    case ActivationType::kElu:
      y = simple("Elu");
      find_node(b.g, b.node_names[0])->attrs.set("alpha", ir::Attribute::from_float(or_default(alpha, 1.f)));
      break;
    case ActivationType::kSelu: {
      y = simple("Selu");
      ir::Node* n = find_node(b.g, b.node_names[0]);
      n->attrs.set("alpha", ir::Attribute::from_float(or_default(alpha, 1.67326319217681884765625f)));
      n->attrs.set("gamma", ir::Attribute::from_float(or_default(beta, 1.05070102214813232421875f)));
      break;
    }
    case ActivationType::kSoftplus: {
      // TensorRT's softplus is alpha * log(1 + exp(beta * x)).
      const float a = or_default(alpha, 1.f), bb = or_default(beta, 1.f);
      y = b.out();
      if (a == 1.f && bb == 1.f) {
        b.node("Softplus", {x}, {y});
      } else {
        ir::Value* scaled = b.temp("scaled");
        ir::Value* sp = b.temp("softplus");
        b.node("Mul", {x, k("beta", bb)}, {scaled});
        b.node("Softplus", {scaled}, {sp});
        b.node("Mul", {sp, k("alpha", a)}, {y});
      }
      break;
    }
    case ActivationType::kGelu: {
      // Gelu is an ONNX op only from opset 20: 0.5 * x * (1 + erf(x / sqrt(2))).
      ir::Value* d = b.temp("div");
      ir::Value* e = b.temp("erf");
      ir::Value* p = b.temp("plus1");
      ir::Value* m = b.temp("mul");
      y = b.out();
      b.node("Div", {x, k("sqrt2", std::sqrt(2.0))}, {d});
      b.node("Erf", {d}, {e});
      b.node("Add", {e, k("one", 1.0)}, {p});
      b.node("Mul", {x, p}, {m});
      b.node("Mul", {m, k("half", 0.5)}, {y});
      break;
    }
    case ActivationType::kSilu: {
      ir::Value* s = b.temp("sigmoid");
      y = b.out();
      b.node("Mul", {x, s}, {y});
      b.node("Sigmoid", {x}, {s});
      (void)b.g.topo_sort();
      break;
    }
    case ActivationType::kClip:
      if (alpha > beta)
        return b.error("clip bounds [" + std::to_string(alpha) + ", " + std::to_string(beta) + "] are empty"), nullptr;
      y = b.out();
      b.node("Clip", {x, k("min", alpha), k("max", beta)}, {y});
      break;
    case ActivationType::kHardSigmoid: {
      y = simple("HardSigmoid");
      ir::Node* n = find_node(b.g, b.node_names[0]);
      n->attrs.set("alpha", ir::Attribute::from_float(alpha == 0.f && beta == 0.f ? 0.2f : alpha));
      n->attrs.set("beta", ir::Attribute::from_float(alpha == 0.f && beta == 0.f ? 0.5f : beta));
      break;
    }
  }
  if (!y) return b.error("unknown activation type"), nullptr;
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_softmax(NetworkTensor* input) {
  LayerBuilder b(*this, "softmax");
  ir::Value* x = b.value(input, "input");
  if (!x) return nullptr;
  ir::Value* y = b.out();
  b.node("Softmax", {x}, {y})->attrs.set("axis", ir::Attribute::from_int(-1));
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_shuffle(NetworkTensor* input) {
  LayerBuilder b(*this, "shuffle");
  ir::Value* x = b.value(input, "input");
  if (!x) return nullptr;
  // An Identity until set_first_transpose / set_reshape_dims turn it into Transpose/Reshape.
  ir::Value* y = b.out();
  b.node("Identity", {x}, {y});
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_elementwise(NetworkTensor* a, NetworkTensor* bt, ElementWiseOperation op) {
  LayerBuilder b(*this, "elementwise");
  ir::Value* va = b.value(a, "input a");
  ir::Value* vb = b.value(bt, "input b");
  if (!va || !vb) return nullptr;
  const char* onnx_op = nullptr;
  switch (op) {
    case ElementWiseOperation::kSum: onnx_op = "Add"; break;
    case ElementWiseOperation::kSub: onnx_op = "Sub"; break;
    case ElementWiseOperation::kProd: onnx_op = "Mul"; break;
    case ElementWiseOperation::kDiv: onnx_op = "Div"; break;
    case ElementWiseOperation::kMax: onnx_op = "Max"; break;
    case ElementWiseOperation::kMin: onnx_op = "Min"; break;
    case ElementWiseOperation::kPow: onnx_op = "Pow"; break;
    case ElementWiseOperation::kEqual: onnx_op = "Equal"; break;
    case ElementWiseOperation::kLess: onnx_op = "Less"; break;
    case ElementWiseOperation::kGreater: onnx_op = "Greater"; break;
  }
  if (!onnx_op) return b.error("unknown elementwise operation"), nullptr;
  ir::Value* y = b.out();
  b.node(onnx_op, {va, vb}, {y});
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_concatenation(const std::vector<NetworkTensor*>& inputs, int64_t axis) {
  LayerBuilder b(*this, "concatenation");
  if (inputs.empty()) return b.error("no inputs"), nullptr;
  std::vector<ir::Value*> ins;
  for (size_t i = 0; i < inputs.size(); ++i) {
    ir::Value* v = b.value(inputs[i], ("input " + std::to_string(i)).c_str());
    if (!v) return nullptr;
    ins.push_back(v);
  }
  ir::Value* y = b.out();
  b.node("Concat", ins, {y})->attrs.set("axis", ir::Attribute::from_int(axis));
  return add_layer_(b.kind, b.node_names, b.finish({y}));
}

Layer* NetworkDefinition::add_constant(const Tensor& value) {
  LayerBuilder b(*this, "constant");
  if (value.is_null()) return b.error("the value is empty"), nullptr;
  if (!dtype_is_supported(value.dtype()))
    return b.error(std::string("dtype ") + dtype_name(value.dtype()) + " is not supported"), nullptr;
  ir::Value* v = b.g.add_constant(b.name, value.clone());
  return add_layer_(b.kind, {}, {v->name});
}

int NetworkDefinition::num_inputs() const { return static_cast<int>(impl_->graph.inputs.size()); }
int NetworkDefinition::num_outputs() const { return static_cast<int>(impl_->graph.outputs.size()); }
int NetworkDefinition::num_layers() const { return static_cast<int>(impl_->layers.size()); }

NetworkTensor* NetworkDefinition::get_input(int i) const {
  if (i < 0 || i >= num_inputs()) return nullptr;
  return const_cast<NetworkDefinition*>(this)->find_tensor(impl_->graph.inputs[static_cast<size_t>(i)]->name);
}

NetworkTensor* NetworkDefinition::get_output(int i) const {
  if (i < 0 || i >= num_outputs()) return nullptr;
  return const_cast<NetworkDefinition*>(this)->find_tensor(impl_->graph.outputs[static_cast<size_t>(i)]->name);
}

const std::vector<std::string>& NetworkDefinition::errors() const { return impl_->errors; }

}  // namespace kiln
