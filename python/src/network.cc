// NetworkDefinition, NetworkTensor and Layer: building a network layer by layer.
// The C++ API collects misuse in network.errors(); here each call that adds an
// error raises it at once, so Python users see the problem where it happens.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "common.h"

namespace kiln::py {

namespace {

using Self = nb::pointer_and_handle<NetworkDefinition>;
using LayerSelf = nb::pointer_and_handle<Layer>;
using TensorSelf = nb::pointer_and_handle<NetworkTensor>;

nb::tuple dims_tuple(const Dims& d) {
  nb::list l;
  for (int64_t v : d) l.append(v);
  return nb::tuple(l);
}

// Raises the errors the network gained since `before` (as one InvalidArgumentError).
void raise_new_errors(const NetworkDefinition& net, size_t before, const std::string& fallback = "") {
  const auto& errs = net.errors();
  if (errs.size() <= before) {
    if (!fallback.empty()) raise(ErrorCode::kInvalidArgument, fallback);
    return;
  }
  std::string msg;
  for (size_t i = before; i < errs.size(); ++i) msg += (msg.empty() ? "" : "; ") + errs[i];
  raise(ErrorCode::kInvalidArgument, msg);
}

NetworkDefinition& network_of(nb::handle obj) { return nb::cast<NetworkDefinition&>(obj.attr("_network")); }

// Tensors and layers live inside their network: the Python handle keeps the
// network alive (reference_internal) and remembers it for error checks.
nb::object wrap_tensor(NetworkTensor* t, nb::handle network, nb::handle parent) {
  if (!t) return nb::none();
  nb::object o = nb::cast(t, nb::rv_policy::reference_internal, parent);
  o.attr("_network") = network;
  return o;
}

nb::object wrap_layer(Layer* l, const NetworkDefinition& net, nb::handle network, size_t before, const char* what) {
  if (!l) raise_new_errors(net, before, std::string(what) + " failed");
  raise_new_errors(net, before);
  nb::object o = nb::cast(l, nb::rv_policy::reference_internal, network);
  o.attr("_network") = network;
  return o;
}

NetworkTensor* tensor_arg(nb::handle obj, const char* what) {
  if (obj.is_none()) raise(ErrorCode::kInvalidArgument, std::string(what) + " is None");
  NetworkTensor* t = nullptr;
  if (!nb::try_cast<NetworkTensor*>(obj, t))
    raise(ErrorCode::kInvalidArgument, std::string(what) + " must be a kiln.NetworkTensor");
  return t;
}

// Layer settings are write-only in C++; the last value set is kept on the
// Python object so the properties can be read back.
nb::object stored(LayerSelf self, const char* key) {
  nb::dict d = nb::borrow<nb::dict>(self.h.attr("__dict__"));
  return d.contains(key) ? nb::object(d[key]) : nb::none();
}

template <typename V, typename F>
void apply_setting(LayerSelf self, const char* key, const V& value, nb::handle py_value, F&& apply) {
  const NetworkDefinition& net = network_of(self.h);
  size_t before = net.errors().size();
  apply(*self.p, value);
  raise_new_errors(net, before);
  nb::borrow<nb::dict>(self.h.attr("__dict__"))[key] = py_value;
}

template <typename Class>
void dims_property(Class& cls, const char* name, const char* key, void (Layer::*setter)(const Dims&), const char* doc) {
  cls.def_prop_rw(
      name, [key](LayerSelf self) { return stored(self, key); },
      [key, setter](LayerSelf self, const Dims& v) {
        apply_setting(self, key, v, dims_tuple(v), [setter](Layer& l, const Dims& d) { (l.*setter)(d); });
      },
      nb::for_getter(nb::sig("def (self) -> tuple[int, ...] | None")), doc);
}

}  // namespace

void register_network(nb::module_& m) {
  nb::class_<NetworkTensor>(m, "NetworkTensor", nb::dynamic_attr(),
                            "A tensor of a network under construction (a handle, not data). TensorRT: ITensor.")
      .def_prop_rw(
          "name", [](const NetworkTensor& t) { return t.name(); },
          [](TensorSelf self, const std::string& name) {
            const NetworkDefinition& net = network_of(self.h);
            size_t before = net.errors().size();
            self.p->set_name(name);
            raise_new_errors(net, before);
          },
          "Unique name within the network.")
      .def_prop_ro("dtype", &NetworkTensor::dtype, "Element type.")
      .def_prop_ro(
          "shape", [](const NetworkTensor& t) { return dims_tuple(t.shape()); },
          nb::sig("def shape(self) -> tuple[int, ...]"), "Dims; -1 where dynamic or not yet inferred.")
      .def("__repr__", [](const NetworkTensor& t) {
        return "<kiln.NetworkTensor '" + t.name() + "' " + dtype_name(t.dtype()) + " " +
               nb::cast<std::string>(nb::repr(dims_tuple(t.shape()))) + ">";
      });

  auto layer = nb::class_<Layer>(m, "Layer", nb::dynamic_attr(), "One layer of a network. TensorRT: ILayer.");
  layer
      .def_prop_ro(
          "name", [](const Layer& l) { return l.name(); }, "Layer name.")
      .def_prop_ro("num_outputs", &Layer::num_outputs, "Number of outputs.")
      .def(
          "get_output",
          [](LayerSelf self, int i) {
            if (i < 0 || i >= self.p->num_outputs())
              throw nb::index_error(("output " + std::to_string(i) + " of a layer with " +
                                     std::to_string(self.p->num_outputs()) + " outputs")
                                        .c_str());
            return wrap_tensor(self.p->get_output(i), self.h.attr("_network"), self.h);
          },
          nb::arg("index"), nb::sig("def get_output(self, index: int) -> NetworkTensor"), "Output `index`.");
  dims_property(layer, "stride", "_stride", &Layer::set_stride, "Convolution/pooling stride.");
  dims_property(layer, "stride_nd", "_stride", &Layer::set_stride, "Convolution/pooling stride.");
  dims_property(layer, "padding", "_padding", &Layer::set_padding, "Symmetric padding per spatial dim.");
  dims_property(layer, "padding_nd", "_padding", &Layer::set_padding, "Symmetric padding per spatial dim.");
  dims_property(layer, "dilation", "_dilation", &Layer::set_dilation, "Convolution/max-pool dilation.");
  dims_property(layer, "dilation_nd", "_dilation", &Layer::set_dilation, "Convolution/max-pool dilation.");
  dims_property(layer, "reshape_dims", "_reshape_dims", &Layer::set_reshape_dims,
                "Shuffle: reshape dims (0 copies the input dim, -1 is inferred).");
  layer.def_prop_rw(
      "first_transpose", [](LayerSelf self) { return stored(self, "_first_transpose"); },
      [](LayerSelf self, const std::vector<int64_t>& perm) {
        apply_setting(self, "_first_transpose", perm, dims_tuple(perm),
                      [](Layer& l, const std::vector<int64_t>& p) { l.set_first_transpose(p); });
      },
      nb::for_getter(nb::sig("def (self) -> tuple[int, ...] | None")),
      "Shuffle: transpose applied before the reshape.");
  layer.def_prop_rw(
      "num_groups", [](LayerSelf self) { return stored(self, "_num_groups"); },
      [](LayerSelf self, int64_t g) {
        apply_setting(self, "_num_groups", g, nb::int_(g), [](Layer& l, int64_t v) { l.set_num_groups(v); });
      },
      nb::for_getter(nb::sig("def (self) -> int | None")), "Convolution groups.");
  layer.def_prop_rw(
      "axis", [](LayerSelf self) { return stored(self, "_axis"); },
      [](LayerSelf self, int64_t a) {
        apply_setting(self, "_axis", a, nb::int_(a), [](Layer& l, int64_t v) { l.set_axis(v); });
      },
      nb::for_getter(nb::sig("def (self) -> int | None")), "Softmax/concatenation axis.");
  // TensorRT's softmax takes a bit mask with one bit set.
  layer.def_prop_rw(
      "axes",
      [](LayerSelf self) -> nb::object {
        nb::object a = stored(self, "_axis");
        if (a.is_none()) return a;
        int64_t v = nb::cast<int64_t>(a);
        return v >= 0 ? nb::object(nb::int_(int64_t{1} << v)) : nb::none();
      },
      [](LayerSelf self, uint32_t mask) {
        if (mask == 0 || (mask & (mask - 1)) != 0)
          raise(ErrorCode::kInvalidArgument, "axes must have exactly one bit set, got " + std::to_string(mask));
        int64_t axis = 0;
        while (!(mask & (1u << axis))) ++axis;
        apply_setting(self, "_axis", axis, nb::int_(axis), [](Layer& l, int64_t v) { l.set_axis(v); });
      },
      nb::for_getter(nb::sig("def (self) -> int | None")), "Softmax axis as a bit mask (TensorRT style).");
  layer.def_prop_rw(
      "precision", [](LayerSelf self) { return stored(self, "_precision"); },
      [](LayerSelf self, DataType t) {
        apply_setting(self, "_precision", t, nb::cast(t), [](Layer& l, DataType v) { l.set_precision(v); });
      },
      nb::for_getter(nb::sig("def (self) -> DataType | None")), "Forces this layer's compute precision.");
  layer.def("__repr__", [](const Layer& l) {
    return "<kiln.Layer '" + l.name() + "' with " + std::to_string(l.num_outputs()) + " output(s)>";
  });

  auto net = nb::class_<NetworkDefinition>(m, "NetworkDefinition",
                                           "A network: inputs, layers, outputs. TensorRT: INetworkDefinition.");
  net.def(nb::init<>())
      .def_prop_ro("num_inputs", &NetworkDefinition::num_inputs)
      .def_prop_ro("num_outputs", &NetworkDefinition::num_outputs)
      .def_prop_ro("num_layers", &NetworkDefinition::num_layers)
      .def_prop_ro("errors", &NetworkDefinition::errors, "API misuse collected so far (each also raised).")
      .def(
          "get_input",
          [](Self self, int i) {
            if (i < 0 || i >= self.p->num_inputs())
              throw nb::index_error(
                  ("input " + std::to_string(i) + " of " + std::to_string(self.p->num_inputs())).c_str());
            return wrap_tensor(self.p->get_input(i), self.h, self.h);
          },
          nb::arg("index"), nb::sig("def get_input(self, index: int) -> NetworkTensor"))
      .def(
          "get_output",
          [](Self self, int i) {
            if (i < 0 || i >= self.p->num_outputs())
              throw nb::index_error(
                  ("output " + std::to_string(i) + " of " + std::to_string(self.p->num_outputs())).c_str());
            return wrap_tensor(self.p->get_output(i), self.h, self.h);
          },
          nb::arg("index"), nb::sig("def get_output(self, index: int) -> NetworkTensor"))
      .def(
          "find_tensor",
          [](Self self, const std::string& name) { return wrap_tensor(self.p->find_tensor(name), self.h, self.h); },
          nb::arg("name"), nb::sig("def find_tensor(self, name: str) -> NetworkTensor | None"),
          "The tensor called `name`, or None.")
      .def(
          "add_input",
          [](Self self, const std::string& name, DataType dtype, const Dims& shape) {
            size_t before = self.p->errors().size();
            NetworkTensor* t = self.p->add_input(name, dtype, shape);
            if (!t) raise_new_errors(*self.p, before, "add_input '" + name + "' failed");
            return wrap_tensor(t, self.h, self.h);
          },
          nb::arg("name"), nb::arg("dtype"), nb::arg("shape"),
          nb::sig(
              "def add_input(self, name: str, dtype: DataType, shape: collections.abc.Sequence[int]) -> NetworkTensor"),
          "Adds an input; -1 marks a dynamic dim (give it a profile at build time).")
      .def(
          "mark_output",
          [](Self self, nb::handle tensor) {
            size_t before = self.p->errors().size();
            self.p->mark_output(tensor_arg(tensor, "mark_output: the tensor"));
            raise_new_errors(*self.p, before);
          },
          nb::arg("tensor"), nb::sig("def mark_output(self, tensor: NetworkTensor) -> None"),
          "Marks a tensor as a network output.");

  auto conv = [](Self self, nb::handle input, int64_t num_output_maps, const Dims& kernel_shape, nb::handle kernel,
                 nb::handle bias) {
    NetworkTensor* x = tensor_arg(input, "add_convolution: input");
    HostArray k = weights_array(kernel, "add_convolution: kernel", x->dtype());
    HostArray b;
    if (!bias.is_none()) b = weights_array(bias, "add_convolution: bias", x->dtype());
    size_t before = self.p->errors().size();
    Layer* l = self.p->add_convolution(x, num_output_maps, kernel_shape, k.tensor, b.tensor);
    return wrap_layer(l, *self.p, self.h, before, "add_convolution");
  };
#define KILN_CONV_SIG                                                                                        \
  "(self, input: NetworkTensor, num_output_maps: int, kernel_shape: collections.abc.Sequence[int], kernel: " \
  "numpy.typing.ArrayLike, "                                                                                 \
  "bias: numpy.typing.ArrayLike | None = None) -> Layer"
  const char* conv_doc = "Convolution over NCHW (or NCDHW); kernel [K, C/groups, *kernel_shape], bias [K].";
  net.def("add_convolution", conv, nb::arg("input"), nb::arg("num_output_maps"), nb::arg("kernel_shape"),
          nb::arg("kernel"), nb::arg("bias") = nb::none(), nb::sig("def add_convolution" KILN_CONV_SIG), conv_doc);
  net.def("add_convolution_nd", conv, nb::arg("input"), nb::arg("num_output_maps"), nb::arg("kernel_shape"),
          nb::arg("kernel"), nb::arg("bias") = nb::none(), nb::sig("def add_convolution_nd" KILN_CONV_SIG), conv_doc);
#undef KILN_CONV_SIG

  auto pool = [](Self self, nb::handle input, PoolingType type, const Dims& window) {
    NetworkTensor* x = tensor_arg(input, "add_pooling: input");
    size_t before = self.p->errors().size();
    return wrap_layer(self.p->add_pooling(x, type, window), *self.p, self.h, before, "add_pooling");
  };
  net.def("add_pooling", pool, nb::arg("input"), nb::arg("type"), nb::arg("window_size"),
          nb::sig("def add_pooling(self, input: NetworkTensor, type: PoolingType, window_size: "
                  "collections.abc.Sequence[int]) -> Layer"),
          "Max or average pooling (set stride/padding on the layer).");
  net.def("add_pooling_nd", pool, nb::arg("input"), nb::arg("type"), nb::arg("window_size"),
          nb::sig("def add_pooling_nd(self, input: NetworkTensor, type: PoolingType, window_size: "
                  "collections.abc.Sequence[int]) -> Layer"),
          "Max or average pooling (set stride/padding on the layer).");

  net.def(
      "add_matrix_multiply",
      [](Self self, nb::handle a, MatrixOperation op_a, nb::handle b, MatrixOperation op_b) {
        NetworkTensor* ta = tensor_arg(a, "add_matrix_multiply: input0");
        NetworkTensor* tb = tensor_arg(b, "add_matrix_multiply: input1");
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_matrix_multiply(ta, op_a, tb, op_b), *self.p, self.h, before,
                          "add_matrix_multiply");
      },
      nb::arg("input0"), nb::arg("op0"), nb::arg("input1"), nb::arg("op1"),
      nb::sig("def add_matrix_multiply(self, input0: NetworkTensor, op0: MatrixOperation, input1: NetworkTensor, "
              "op1: MatrixOperation) -> Layer"),
      "op0(input0) x op1(input1), batched and broadcast like numpy.matmul.");

  net.def(
      "add_fully_connected",
      [](Self self, nb::handle input, int64_t num_outputs, nb::handle kernel, nb::handle bias) {
        NetworkTensor* x = tensor_arg(input, "add_fully_connected: input");
        HostArray k = weights_array(kernel, "add_fully_connected: kernel", x->dtype());
        HostArray b;
        if (!bias.is_none()) b = weights_array(bias, "add_fully_connected: bias", x->dtype());
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_fully_connected(x, num_outputs, k.tensor, b.tensor), *self.p, self.h, before,
                          "add_fully_connected");
      },
      nb::arg("input"), nb::arg("num_outputs"), nb::arg("kernel"), nb::arg("bias") = nb::none(),
      nb::sig("def add_fully_connected(self, input: NetworkTensor, num_outputs: int, kernel: numpy.typing.ArrayLike, "
              "bias: numpy.typing.ArrayLike | None = None) -> Layer"),
      "Flattens all but the first dim, then Y = X W^T + b with kernel [num_outputs, K].");

  net.def(
      "add_activation",
      [](Self self, nb::handle input, ActivationType type, float alpha, float beta) {
        NetworkTensor* x = tensor_arg(input, "add_activation: input");
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_activation(x, type, alpha, beta), *self.p, self.h, before, "add_activation");
      },
      nb::arg("input"), nb::arg("type"), nb::arg("alpha") = 0.f, nb::arg("beta") = 0.f,
      nb::sig("def add_activation(self, input: NetworkTensor, type: ActivationType, alpha: float = 0.0, "
              "beta: float = 0.0) -> Layer"),
      "Pointwise activation; alpha/beta as in TensorRT (0 selects the usual default).");

  net.def(
      "add_softmax",
      [](Self self, nb::handle input) {
        NetworkTensor* x = tensor_arg(input, "add_softmax: input");
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_softmax(x), *self.p, self.h, before, "add_softmax");
      },
      nb::arg("input"), nb::sig("def add_softmax(self, input: NetworkTensor) -> Layer"),
      "Softmax over the last axis (change with layer.axis or layer.axes).");

  net.def(
      "add_shuffle",
      [](Self self, nb::handle input) {
        NetworkTensor* x = tensor_arg(input, "add_shuffle: input");
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_shuffle(x), *self.p, self.h, before, "add_shuffle");
      },
      nb::arg("input"), nb::sig("def add_shuffle(self, input: NetworkTensor) -> Layer"),
      "Transpose then reshape: set layer.first_transpose and/or layer.reshape_dims.");

  net.def(
      "add_elementwise",
      [](Self self, nb::handle a, nb::handle b, ElementWiseOperation op) {
        NetworkTensor* ta = tensor_arg(a, "add_elementwise: input1");
        NetworkTensor* tb = tensor_arg(b, "add_elementwise: input2");
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_elementwise(ta, tb, op), *self.p, self.h, before, "add_elementwise");
      },
      nb::arg("input1"), nb::arg("input2"), nb::arg("op"),
      nb::sig("def add_elementwise(self, input1: NetworkTensor, input2: NetworkTensor, op: ElementWiseOperation) "
              "-> Layer"),
      "Binary elementwise operation with numpy broadcasting.");

  net.def(
      "add_concatenation",
      [](Self self, const std::vector<nb::handle>& inputs, int64_t axis) {
        std::vector<NetworkTensor*> ts;
        for (size_t i = 0; i < inputs.size(); ++i)
          ts.push_back(tensor_arg(inputs[i], ("add_concatenation: input " + std::to_string(i)).c_str()));
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_concatenation(ts, axis), *self.p, self.h, before, "add_concatenation");
      },
      nb::arg("inputs"), nb::arg("axis") = 0,
      nb::sig("def add_concatenation(self, inputs: collections.abc.Sequence[NetworkTensor], axis: int = 0) -> Layer"),
      "Concatenation along `axis`.");

  net.def(
      "add_constant",
      [](Self self, nb::handle shape_or_value, nb::handle weights) {
        HostArray a;
        Tensor value;
        if (weights.is_none()) {
          a = host_array(shape_or_value, "add_constant: value", false);
          value = a.tensor;
        } else {
          Dims shape = nb::cast<Dims>(shape_or_value);
          a = host_array(weights, "add_constant: weights", false);
          int64_t vol = dims_volume(shape);
          if (vol < 0 || vol != a.tensor.numel())
            raise(ErrorCode::kInvalidArgument, "add_constant: shape " + dims_to_string(shape) + " holds " +
                                                   std::to_string(vol) + " values but the weights have " +
                                                   std::to_string(a.tensor.numel()));
          value = a.tensor.reshaped(shape);
        }
        size_t before = self.p->errors().size();
        return wrap_layer(self.p->add_constant(value), *self.p, self.h, before, "add_constant");
      },
      nb::arg("shape"), nb::arg("weights") = nb::none(),
      nb::sig("def add_constant(self, shape: collections.abc.Sequence[int] | numpy.typing.ArrayLike, weights: "
              "numpy.typing.ArrayLike | None = None) -> Layer"),
      "A constant: add_constant(array), or TensorRT's add_constant(shape, weights).");
  net.def("__repr__", [](const NetworkDefinition& n) {
    return "<kiln.NetworkDefinition: " + std::to_string(n.num_inputs()) + " input(s), " +
           std::to_string(n.num_layers()) + " layer(s), " + std::to_string(n.num_outputs()) + " output(s)>";
  });
  add_context_manager(net);
}

}  // namespace kiln::py
