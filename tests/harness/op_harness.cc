#include "harness/op_harness.h"

#include "backends/cuda/device.h"
#include "backends/cuda/node_runner.h"

#include <cmath>
#include <sstream>

namespace kiln::test {

Tensor random_tensor(DataType dtype, const Dims& dims, std::mt19937& rng, double lo, double hi) {
  Tensor t = Tensor::empty(dtype, dims);
  std::uniform_real_distribution<double> u(lo, hi);
  bool any_nonzero = false;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = u(rng);
    if (dtype == DataType::kBool)
      v = (rng() & 1) ? 1.0 : 0.0;
    else if (!dtype_is_float(dtype))
      v = std::round(v);
    t.set_from_double(i, v);
    if (t.get_as_double(i) != 0.0) any_nonzero = true;
  }
  if (!any_nonzero && t.numel() > 0) t.set_from_double(0, hi != 0.0 ? hi : lo);
  return t;
}

double tolerance_ratio(const Tensor& a, const Tensor& b, double rtol, double atol) {
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double x = a.get_as_double(i), y = b.get_as_double(i);
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::isinf(x) && x == y) continue;
    double r = std::fabs(x - y) / (atol + rtol * std::fabs(y));
    if (std::isnan(r)) r = 1e30;
    worst = std::max(worst, r);
  }
  return worst;
}

::testing::AssertionResult tensors_close(const Tensor& actual, const Tensor& expected, double rtol, double atol) {
  if (actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure() << "dtype " << dtype_name(actual.dtype()) << " != expected "
                                         << dtype_name(expected.dtype());
  if (actual.dims() != expected.dims())
    return ::testing::AssertionFailure() << "dims " << dims_to_string(actual.dims()) << " != expected "
                                         << dims_to_string(expected.dims());
  for (int64_t i = 0; i < actual.numel(); ++i) {
    double x = actual.get_as_double(i), y = expected.get_as_double(i);
    if (std::isnan(x) && std::isnan(y)) continue;
    if (std::isinf(x) && x == y) continue;
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y)))
      return ::testing::AssertionFailure()
             << "element " << i << ": " << x << " vs expected " << y << " (rtol " << rtol << ", atol " << atol << ")";
  }
  return ::testing::AssertionSuccess();
}

OpCase::OpCase(std::string op_type, int opset, std::string domain) : graph_(std::make_unique<ir::Graph>()) {
  graph_->opset_imports[domain] = opset;
  node_ = graph_->add_node(op_type, {}, {}, "case_" + op_type);
  node_->domain = domain;
  node_->opset = opset;
}

OpCase& OpCase::attr(const std::string& name, ir::Attribute a) {
  node_->attrs.set(name, std::move(a));
  return *this;
}

OpCase& OpCase::input(DataType dtype, Dims dims, double lo, double hi) {
  Spec s;
  s.dtype = dtype;
  s.dims = std::move(dims);
  s.lo = lo;
  s.hi = hi;
  specs_.push_back(std::move(s));
  built_ = false;
  return *this;
}

OpCase& OpCase::input(Tensor value) {
  Spec s;
  s.dtype = value.dtype();
  s.dims = value.dims();
  s.value = std::move(value);
  specs_.push_back(std::move(s));
  built_ = false;
  return *this;
}

OpCase& OpCase::no_input() {
  Spec s;
  s.omitted = true;
  specs_.push_back(std::move(s));
  built_ = false;
  return *this;
}

OpCase& OpCase::outputs(int n) {
  num_outputs_ = n;
  built_ = false;
  return *this;
}

OpCase& OpCase::allow_tf32(bool on) {
  allow_tf32_ = on;
  return *this;
}

OpCase& OpCase::seed(unsigned s) {
  seed_ = s;
  built_ = false;
  return *this;
}

void OpCase::materialize() {
  if (built_) return;
  std::mt19937 rng(seed_);
  inputs_.clear();
  node_->inputs.clear();
  node_->outputs.clear();
  for (size_t i = 0; i < specs_.size(); ++i) {
    const Spec& s = specs_[i];
    if (s.omitted) {
      inputs_.push_back(std::nullopt);
      node_->inputs.push_back(nullptr);
      continue;
    }
    Tensor t = s.value ? *s.value : random_tensor(s.dtype, s.dims, rng, s.lo, s.hi);
    std::string name = "in" + std::to_string(i);
    ir::Value* v = graph_->find_value(name);
    if (!v) v = graph_->add_value(name, t.dtype(), shape_from_dims(t.dims())).value();
    node_->inputs.push_back(v);
    inputs_.push_back(std::move(t));
  }
  for (int i = 0; i < num_outputs_; ++i) {
    std::string name = "out" + std::to_string(i);
    ir::Value* v = graph_->find_value(name);
    if (!v) v = graph_->add_value(name).value();
    v->producer = node_;
    node_->outputs.push_back(v);
  }
  built_ = true;
}

ir::Node& OpCase::node() {
  materialize();
  return *node_;
}

const std::vector<std::optional<Tensor>>& OpCase::inputs() {
  materialize();
  return inputs_;
}

Result<std::vector<Tensor>> OpCase::run(const std::string& kernel) {
  materialize();
  std::vector<const Tensor*> ins;
  for (auto& t : inputs_) ins.push_back(t ? &*t : nullptr);
  node_->kernel = kernel;
  std::vector<Tensor> outs;
  Status s = ops::run_node(*node_, ins, outs, nullptr, 2);
  node_->kernel.clear();
  if (!s.ok()) return s;
  return outs;
}

int gpu_kernels() { return cuda::device_count() > 0 ? 1 : 0; }

int OpCase::expect_all_kernels_match(double rtol, double atol) {
  materialize();
  const ops::OpDef* def = ops::OpRegistry::global().find(node_->domain, node_->op_type);
  EXPECT_NE(def, nullptr) << node_->op_type << " is not registered";
  if (!def) return 0;
  auto ref = run("ref");
  EXPECT_TRUE(ref.ok()) << ref.status().to_string();
  if (!ref.ok()) return 0;
  std::vector<ops::TensorType> types;
  for (auto& t : inputs_)
    types.push_back(t ? ops::TensorType{t->dtype(), shape_from_dims(t->dims())} : ops::TensorType{});
  int compared = 0;
  for (const ops::FastKernel& k : def->fast) {
    if (k.applies && !k.applies(*node_, types)) continue;
    auto got = run(k.name);
    EXPECT_TRUE(got.ok()) << k.name << ": " << got.status().to_string();
    if (!got.ok()) continue;
    for (size_t i = 0; i < ref->size(); ++i)
      EXPECT_TRUE(tensors_close((*got)[i], (*ref)[i], rtol, atol)) << "kernel " << k.name << " output " << i;
    ++compared;
  }
  // CUDA kernels run on the GPU when one is present (TF32 off unless allow_tf32():
  // FP32 is compared exactly).
  if (!def->cuda.empty() && cuda::device_count() > 0) {
    std::vector<const Tensor*> ins;
    for (auto& t : inputs_) ins.push_back(t ? &*t : nullptr);
    cuda::NodeRunOptions opts;
    opts.allow_tf32 = allow_tf32_;
    for (const ops::FastKernel& k : def->cuda) {
      if (k.applies && !k.applies(*node_, types)) continue;
      auto got = cuda::run_node_on_device(*node_, k.name, ins, *ref, opts);
      EXPECT_TRUE(got.ok()) << k.name << ": " << got.status().to_string();
      if (!got.ok()) continue;
      for (size_t i = 0; i < ref->size(); ++i)
        if (!(*ref)[i].is_null()) {
          EXPECT_TRUE(tensors_close((*got)[i], (*ref)[i], rtol, atol)) << "kernel " << k.name << " output " << i;
        }
      ++compared;
    }
  }
  return compared;
}

}  // namespace kiln::test
