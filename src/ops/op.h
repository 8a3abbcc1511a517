// The operator interface: each op supplies shape/type inference and a reference
// kernel (plus optional fast kernels). Ops live in src/ops/<family>/ and register
// themselves through a function the build collects (see cmake/ops.cmake).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/shape.h"
#include "ir/graph.h"
#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::cuda {
struct Env;  // backends/cuda/env.h: stream, library handles, workspace
}

namespace kiln::ops {

/// dtype + (maybe unknown) shape of a tensor during inference.
struct TensorType {
  DataType dtype = DataType::kUndefined;
  std::optional<Shape> shape;
};

/// What an op's inference function sees and fills.
class InferContext {
 public:
  InferContext(const ir::Node& node, std::vector<TensorType> inputs, std::vector<const Tensor*> values)
      : node_(node), inputs_(std::move(inputs)), values_(std::move(values)), outputs_(node.outputs.size()) {}

  const ir::Node& node() const { return node_; }
  const ir::Attributes& attrs() const { return node_.attrs; }
  /// Opset version of the node's domain.
  int opset() const { return node_.opset; }
  /// Number of input slots (omitted optional inputs count).
  size_t num_inputs() const { return inputs_.size(); }
  /// True if input i is present.
  bool has_input(size_t i) const { return i < inputs_.size() && node_.inputs[i] != nullptr; }
  /// Type of input i (undefined if absent).
  const TensorType& input(size_t i) const { return i < inputs_.size() ? inputs_[i] : kNone; }
  DataType input_dtype(size_t i) const { return input(i).dtype; }
  /// Shape of input i, or nullptr if the rank is unknown.
  const Shape* input_shape(size_t i) const { return input(i).shape ? &*input(i).shape : nullptr; }
  /// Value of input i if known (constant, or always at run time on the CPU).
  const Tensor* value(size_t i) const { return i < values_.size() ? values_[i] : nullptr; }
  /// Number of output slots.
  size_t num_outputs() const { return outputs_.size(); }
  /// True if output i is wanted.
  bool has_output(size_t i) const { return i < node_.outputs.size() && node_.outputs[i] != nullptr; }
  /// Sets output i's type. Pass nullopt as shape when the rank is unknown.
  void set_output(size_t i, DataType dtype, std::optional<Shape> shape) {
    if (i < outputs_.size()) outputs_[i] = TensorType{dtype, std::move(shape)};
  }
  const std::vector<TensorType>& outputs() const { return outputs_; }
  /// An error that names the node: kInvalidModel by default.
  Status error(const std::string& msg, ErrorCode code = ErrorCode::kInvalidModel) const {
    return Status(code, "node " + node_.describe() + ": " + msg);
  }
  Status unsupported(const std::string& msg) const { return error(msg, ErrorCode::kUnsupported); }

 private:
  static inline const TensorType kNone{};
  const ir::Node& node_;
  std::vector<TensorType> inputs_;
  std::vector<const Tensor*> values_;
  std::vector<TensorType> outputs_;
};

/// Runs a subgraph (If/Loop/Scan bodies); given by the executor.
using SubgraphRunner = std::function<Result<std::vector<Tensor>>(
    const ir::Graph& body, const std::vector<Tensor>& inputs)>;

/// What a kernel sees: inputs, preallocated outputs, attributes.
class KernelContext {
 public:
  KernelContext(const ir::Node& node, std::vector<const Tensor*> inputs, std::vector<Tensor*> outputs)
      : node_(node), inputs_(std::move(inputs)), outputs_(std::move(outputs)) {}
  const ir::Node& node() const { return node_; }
  const ir::Attributes& attrs() const { return node_.attrs; }
  int opset() const { return node_.opset; }
  size_t num_inputs() const { return inputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  /// Input i; only call when has_input(i).
  const Tensor& input(size_t i) const { return *inputs_[i]; }
  size_t num_outputs() const { return outputs_.size(); }
  bool has_output(size_t i) const { return i < outputs_.size() && outputs_[i] != nullptr; }
  /// Output i, already allocated with the inferred dtype and dims.
  Tensor& output(size_t i) { return *outputs_[i]; }
  /// Replaces output i with a new allocation (for data-dependent shapes).
  Tensor& allocate_output(size_t i, DataType dtype, Dims dims) {
    *outputs_[i] = Tensor::empty(dtype, std::move(dims));
    return *outputs_[i];
  }
  /// Threads the kernel may use (1 = serial).
  int num_threads() const { return num_threads_; }
  void set_num_threads(int n) { num_threads_ = n; }
  /// Subgraph runner for control-flow ops (may be empty).
  const SubgraphRunner& subgraph_runner() const { return runner_; }
  void set_subgraph_runner(SubgraphRunner r) { runner_ = std::move(r); }
  Status error(const std::string& msg, ErrorCode code = ErrorCode::kInvalidArgument) const {
    return Status(code, "node " + node_.describe() + ": " + msg);
  }

  // ---- CUDA kernels only. Their inputs and outputs hold device pointers (never
  // dereference them on the host); outputs are preallocated with final dims.
  /// The device environment (stream, cuBLASLt/cuDNN handles, workspace); null on the CPU.
  const cuda::Env* cuda_env() const { return cuda_env_; }
  void set_cuda_env(const cuda::Env* env) { cuda_env_ = env; }
  /// Host copy of input i when its value is known at plan time (value inputs such
  /// as Reshape's shape, Slice's starts; small constants), else nullptr. On the
  /// CPU it is the input itself.
  const Tensor* host_value(size_t i) const {
    if (!cuda_env_) return has_input(i) ? inputs_[i] : nullptr;
    return i < host_values_.size() ? host_values_[i] : nullptr;
  }
  void set_host_values(std::vector<const Tensor*> v) { host_values_ = std::move(v); }

 private:
  const ir::Node& node_;
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor*> outputs_;
  int num_threads_ = 1;
  SubgraphRunner runner_;
  const cuda::Env* cuda_env_ = nullptr;
  std::vector<const Tensor*> host_values_;
};

using InferFn = Status (*)(InferContext&);
using KernelFn = Status (*)(KernelContext&);
/// Says whether a fast kernel handles this node (dtype, attributes); nullptr = always.
using KernelApplies = bool (*)(const ir::Node&, const std::vector<TensorType>& inputs);
/// CUDA kernels with several algorithms: the tactic IDs the kernel can run for
/// the context's inputs (device buffers; it may launch once to find out), the
/// library's best guess first. Empty or one: nothing to choose (docs/tactics.md).
using KernelTactics = Result<std::vector<int64_t>> (*)(KernelContext&);
/// Node attribute (int) naming the tactic a kernel runs; absent = its heuristic
/// default, which is also what runs when the tactic is not valid for a run's shapes.
inline constexpr char kTacticAttr[] = "kiln.tactic";
/// Set to 1 on an FP32 node that must not run on TF32 tensor cores even where the
/// engine allows TF32 (a GEMM that stands in for a conv whose TF32 form costs accuracy).
inline constexpr char kExactFp32Attr[] = "kiln.exact_fp32";

/// A non-reference kernel, tried before the reference in registration order.
struct FastKernel {
  std::string name;  ///< e.g. "cpu.onednn", "cpu.gemm"
  KernelFn fn = nullptr;
  KernelApplies applies = nullptr;
  KernelTactics tactics = nullptr;  ///< CUDA kernels only; nullptr = one algorithm
  /// A tactic's first run may compile code (cuDNN's runtime fusion): the builder runs
  /// such nodes' candidates once on parallel threads before it times them one by one.
  bool compiles = false;
};

/// Everything kiln knows about one operator.
struct OpDef {
  std::string name;         ///< ONNX op_type
  std::string domain;       ///< "" for the default ONNX domain, or e.g. "com.microsoft"
  InferFn infer = nullptr;  ///< shape and dtype inference (required)
  KernelFn ref = nullptr;   ///< scalar reference kernel (required; the test oracle)
  std::vector<FastKernel> fast;  ///< optional faster CPU kernels
  /// CUDA kernels ("cuda.<name>"), tried in order; attached by <family>/*_cuda.cu
  /// through register_<family>_cuda_kernels (see docs/adding-an-op.md).
  std::vector<FastKernel> cuda;
  /// Inputs whose values inference needs (e.g. Reshape's shape). The builder
  /// keeps these on the host; at run time on the CPU they are always known.
  std::vector<int> value_inputs;
  /// Opset versions the implementation covers (inclusive); nodes outside are rejected.
  int min_opset = 1;
  int max_opset = 1000;
};

/// All registered ops. Filled once from the build-generated registration list.
class OpRegistry {
 public:
  static const OpRegistry& global();
  void add(OpDef def);
  /// Appends a CUDA kernel to a registered op (an error names a missing op).
  Status add_cuda_kernel(const std::string& domain, const std::string& name, FastKernel k);
  /// The op, or nullptr. `domain` "" and "ai.onnx" are the same.
  const OpDef* find(const std::string& domain, const std::string& name) const;
  std::vector<const OpDef*> all() const;

 private:
  std::map<std::pair<std::string, std::string>, std::unique_ptr<OpDef>> ops_;
};

/// Calls every op family's register function (generated by the build).
void register_all_ops(OpRegistry& r);

/// Infers a node's output types from input types and any known input values.
Result<std::vector<TensorType>> infer_node(const ir::Node& node, const std::vector<TensorType>& inputs,
                                           const std::vector<const Tensor*>& values);

/// Runs one node on host tensors: infers output dims from the concrete inputs,
/// allocates outputs (or reuses `outputs` entries whose dtype/dims already match),
/// and calls the kernel named by node.kernel ("" or "ref" = reference).
/// `alloc`, if given, provides each output's storage (the executor's arena).
using OutputAllocator = std::function<Tensor(size_t index, DataType dtype, const Dims& dims)>;
Status run_node(const ir::Node& node, const std::vector<const Tensor*>& inputs, std::vector<Tensor>& outputs,
                const SubgraphRunner& runner = nullptr, int num_threads = 1,
                const OutputAllocator& alloc = nullptr);

}  // namespace kiln::ops
