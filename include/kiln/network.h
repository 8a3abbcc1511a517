// NetworkDefinition: a graph built through the API or filled by OnnxParser.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

class NetworkDefinition;

/// A tensor inside a network under construction (not data: a handle).
class NetworkTensor {
 public:
  /// Unique name within the network.
  const std::string& name() const;
  /// Renames the tensor (must stay unique).
  void set_name(const std::string& name);
  /// Element type.
  DataType dtype() const;
  /// Dims; -1 where dynamic or not yet inferred.
  Dims shape() const;

 private:
  friend class NetworkDefinition;
  NetworkTensor(NetworkDefinition* net, std::string name) : net_(net), name_(std::move(name)) {}
  NetworkDefinition* net_;
  std::string name_;
};

/// One layer (one or more IR nodes) of a network.
class Layer {
 public:
  /// Layer name.
  const std::string& name() const { return name_; }
  /// Number of outputs.
  int num_outputs() const { return static_cast<int>(outputs_.size()); }
  /// Output i, or nullptr if out of range.
  NetworkTensor* get_output(int i) const;

  // Per-layer settings. Each applies to the layer's main node.
  /// Convolution/pooling stride.
  void set_stride(const Dims& stride);
  /// Symmetric padding per spatial dim.
  void set_padding(const Dims& padding);
  /// Dilation per spatial dim.
  void set_dilation(const Dims& dilation);
  /// Convolution groups.
  void set_num_groups(int64_t groups);
  /// Shuffle: the reshape dims (0 copies the input dim, -1 is inferred).
  void set_reshape_dims(const Dims& dims);
  /// Shuffle: transpose applied before the reshape.
  void set_first_transpose(const std::vector<int64_t>& perm);
  /// Softmax: the axis (default: last).
  void set_axis(int64_t axis);
  /// Forces a compute precision for this layer (kFloat32/kFloat16/...).
  void set_precision(DataType precision);

 private:
  friend class NetworkDefinition;
  NetworkDefinition* net_ = nullptr;
  std::string name_;
  std::vector<std::string> node_names_;
  std::vector<NetworkTensor*> outputs_;
  std::string kind_;
};

enum class ActivationType { kRelu, kSigmoid, kTanh, kLeakyRelu, kElu, kSelu, kSoftplus, kGelu, kSilu, kClip, kHardSigmoid };
enum class PoolingType { kMax, kAverage };
enum class ElementWiseOperation { kSum, kSub, kProd, kDiv, kMax, kMin, kPow, kEqual, kLess, kGreater };
enum class MatrixOperation { kNone, kTranspose };

/// A network: inputs, layers, outputs. Owns the IR graph kiln optimizes.
class NetworkDefinition {
 public:
  NetworkDefinition();
  ~NetworkDefinition();
  NetworkDefinition(const NetworkDefinition&) = delete;
  NetworkDefinition& operator=(const NetworkDefinition&) = delete;

  /// Adds an input. Dims of -1 are dynamic; give them a profile at build time.
  NetworkTensor* add_input(const std::string& name, DataType dtype, const Dims& dims);
  /// Marks a tensor as a network output.
  void mark_output(NetworkTensor* tensor);
  /// Convolution over NCHW (2-D) or NCDHW input; weights [K, C/groups, kh, kw].
  Layer* add_convolution(NetworkTensor* input, int64_t num_output_maps, const Dims& kernel_shape,
                         const Tensor& kernel, const Tensor& bias = Tensor());
  /// Max or average pooling.
  Layer* add_pooling(NetworkTensor* input, PoolingType type, const Dims& window_size);
  /// Y = op(A) x op(B), batched and broadcast like numpy.matmul.
  Layer* add_matrix_multiply(NetworkTensor* a, MatrixOperation op_a, NetworkTensor* b,
                             MatrixOperation op_b);
  /// Flattens all but the first dim, then Y = X W^T + b; kernel [num_outputs, K].
  Layer* add_fully_connected(NetworkTensor* input, int64_t num_outputs, const Tensor& kernel,
                             const Tensor& bias = Tensor());
  /// Pointwise activation; alpha/beta as in TensorRT (leaky slope, clip bounds, ...).
  Layer* add_activation(NetworkTensor* input, ActivationType type, float alpha = 0.f,
                        float beta = 0.f);
  /// Softmax over the last axis (change with Layer::set_axis).
  Layer* add_softmax(NetworkTensor* input);
  /// Optional transpose then reshape (configure through the Layer).
  Layer* add_shuffle(NetworkTensor* input);
  /// Binary elementwise op with numpy broadcasting.
  Layer* add_elementwise(NetworkTensor* a, NetworkTensor* b, ElementWiseOperation op);
  /// Concatenation along `axis`.
  Layer* add_concatenation(const std::vector<NetworkTensor*>& inputs, int64_t axis = 0);
  /// A constant tensor.
  Layer* add_constant(const Tensor& value);

  /// Number of inputs / outputs / layers.
  int num_inputs() const;
  int num_outputs() const;
  int num_layers() const;
  /// Input or output tensor by index.
  NetworkTensor* get_input(int i) const;
  NetworkTensor* get_output(int i) const;
  /// Finds a tensor by name (nullptr if none).
  NetworkTensor* find_tensor(const std::string& name);
  /// Errors from API misuse collected while building (wrong ranks, bad weights).
  const std::vector<std::string>& errors() const;

  struct Impl;
  /// Internal: the IR behind this network.
  Impl& impl() { return *impl_; }

 private:
  friend class NetworkTensor;
  friend class Layer;
  Layer* add_layer_(const std::string& kind, const std::vector<std::string>& node_names,
                    const std::vector<std::string>& output_names);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
