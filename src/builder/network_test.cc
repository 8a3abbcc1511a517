// Network definition API tests: layers become the expected IR nodes and verify.
#include <gtest/gtest.h>

#include <random>

#include "builder/network_impl.h"
#include "harness/op_harness.h"
#include "ops/op.h"

namespace kiln {
namespace {

std::vector<std::string> op_types(const ir::Graph& g) {
  std::vector<std::string> r;
  for (auto& n : g.nodes()) r.push_back(n->op_type);
  return r;
}

bool registered(std::initializer_list<const char*> ops) {
  for (const char* op : ops)
    if (!ops::OpRegistry::global().find("", op)) return false;
  return true;
}

Tensor weights(Dims dims, unsigned seed) {
  std::mt19937 rng(seed);
  return test::random_tensor(DataType::kFloat32, std::move(dims), rng);
}

TEST(NetworkDefinition, LeNetBuildsTheExpectedGraph) {
  NetworkDefinition net;
  NetworkTensor* x = net.add_input("data", DataType::kFloat32, {1, 1, 28, 28});
  ASSERT_NE(x, nullptr);
  Layer* c1 = net.add_convolution(x, 20, {5, 5}, weights({20, 1, 5, 5}, 1), weights({20}, 2));
  ASSERT_NE(c1, nullptr);
  Layer* p1 = net.add_pooling(c1->get_output(0), PoolingType::kMax, {2, 2});
  ASSERT_NE(p1, nullptr);
  p1->set_stride({2, 2});
  Layer* c2 = net.add_convolution(p1->get_output(0), 50, {5, 5}, weights({50, 20, 5, 5}, 3), weights({50}, 4));
  ASSERT_NE(c2, nullptr);
  Layer* p2 = net.add_pooling(c2->get_output(0), PoolingType::kMax, {2, 2});
  p2->set_stride({2, 2});
  Layer* f1 = net.add_fully_connected(p2->get_output(0), 500, weights({500, 800}, 5), weights({500}, 6));
  ASSERT_NE(f1, nullptr);
  Layer* r = net.add_activation(f1->get_output(0), ActivationType::kRelu);
  Layer* f2 = net.add_fully_connected(r->get_output(0), 10, weights({10, 500}, 7), weights({10}, 8));
  ASSERT_NE(f2, nullptr);
  Layer* sm = net.add_softmax(f2->get_output(0));
  sm->get_output(0)->set_name("prob");
  net.mark_output(sm->get_output(0));

  EXPECT_TRUE(net.errors().empty()) << net.errors()[0];
  ir::Graph& g = net.impl().graph;
  EXPECT_TRUE(ir::verify(g).ok()) << ir::verify(g).message();
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Conv", "MaxPool", "Conv", "MaxPool", "Flatten", "Gemm", "Relu",
                                                   "Flatten", "Gemm", "Softmax"}));
  for (auto& n : g.nodes()) EXPECT_EQ(n->opset, 17);
  EXPECT_EQ(g.opset_imports.at(""), 17);
  EXPECT_EQ(net.num_layers(), 8);
  EXPECT_EQ(net.num_inputs(), 1);
  ASSERT_EQ(net.num_outputs(), 1);
  EXPECT_EQ(net.get_output(0)->name(), "prob");
  EXPECT_EQ(net.find_tensor("prob"), net.get_output(0));
  // Weights are copied into initializers with ONNX layouts.
  const ir::Node& conv2 = *g.nodes()[2];
  ASSERT_EQ(conv2.inputs.size(), 3u);
  ASSERT_TRUE(conv2.inputs[1]->is_constant());
  EXPECT_EQ(conv2.inputs[1]->initializer->dims(), (Dims{50, 20, 5, 5}));
  EXPECT_EQ(conv2.attrs.get_ints("kernel_shape"), (std::vector<int64_t>{5, 5}));
  EXPECT_EQ(g.nodes()[1]->attrs.get_ints("strides"), (std::vector<int64_t>{2, 2}));
  const ir::Node& gemm = *g.nodes()[5];
  EXPECT_EQ(gemm.attrs.get_int("transB", 0), 1);
  EXPECT_EQ(gemm.inputs[1]->initializer->dims(), (Dims{500, 800}));
  EXPECT_EQ(g.nodes()[4]->attrs.get_int("axis", 0), 1);
  EXPECT_EQ(c1->num_outputs(), 1);
  EXPECT_EQ(c1->get_output(1), nullptr);
  if (registered({"Conv", "MaxPool", "Flatten", "Gemm", "Relu", "Softmax"})) {
    EXPECT_EQ(c1->get_output(0)->shape(), (Dims{1, 20, 24, 24}));
    EXPECT_EQ(p2->get_output(0)->shape(), (Dims{1, 50, 4, 4}));
    EXPECT_EQ(net.get_output(0)->shape(), (Dims{1, 10}));
    EXPECT_EQ(net.get_output(0)->dtype(), DataType::kFloat32);
  }
}

TEST(NetworkDefinition, MisuseIsRecordedAsErrors) {
  NetworkDefinition net;
  NetworkTensor* x = net.add_input("x", DataType::kFloat32, {1, 3, 8, 8});
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(net.add_input("x", DataType::kFloat32, {1}), nullptr);  // duplicate name
  EXPECT_EQ(net.add_input("s", DataType::kString, {1}), nullptr);
  EXPECT_EQ(net.add_input("neg", DataType::kFloat32, {-2}), nullptr);
  EXPECT_EQ(net.add_convolution(nullptr, 4, {3, 3}, weights({4, 3, 3, 3}, 1)), nullptr);
  // 4*3*3*3 = 108 values expected; 107 cannot be any grouping.
  EXPECT_EQ(net.add_convolution(x, 4, {3, 3}, weights({107}, 1)), nullptr);
  EXPECT_EQ(net.add_convolution(x, 4, {3, 3}, weights({4, 3, 3, 3}, 1), weights({5}, 2)), nullptr);
  EXPECT_EQ(net.add_convolution(x, 4, {3}, weights({4, 3, 3}, 1)), nullptr);  // rank mismatch
  EXPECT_EQ(net.add_fully_connected(x, 10, weights({10, 7}, 3)), nullptr);    // 3*8*8 features
  NetworkDefinition other;
  NetworkTensor* foreign = other.add_input("x", DataType::kFloat32, {1});
  EXPECT_EQ(net.add_activation(foreign, ActivationType::kRelu), nullptr);
  Layer* relu = net.add_activation(x, ActivationType::kRelu);
  ASSERT_NE(relu, nullptr);
  relu->set_stride({2, 2});
  relu->set_reshape_dims({1, -1});
  net.mark_output(nullptr);
  const auto& e = net.errors();
  auto has = [&](const std::string& part) {
    for (auto& s : e)
      if (s.find(part) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(has("add_input 'x': the name is already used"));
  EXPECT_TRUE(has("dtype string is not supported"));
  EXPECT_TRUE(has("negative size"));
  EXPECT_TRUE(has("input is null"));
  EXPECT_TRUE(has("the kernel has 107 values; expected num_output_maps*C/groups*kernel = 4*3/groups*3x3"));
  EXPECT_TRUE(has("the bias has 5 values; expected 4"));
  EXPECT_TRUE(has("needs a rank-3 input, got rank 4"));
  EXPECT_TRUE(has("192 features per row"));
  EXPECT_TRUE(has("is not a tensor of this network"));
  EXPECT_TRUE(has("set_stride applies to convolution and pooling layers"));
  EXPECT_TRUE(has("set_reshape_dims applies to shuffle layers"));
  EXPECT_TRUE(has("mark_output: the tensor is null"));
  EXPECT_EQ(e.size(), 12u);
  // Failed layers left nothing behind.
  EXPECT_EQ(op_types(net.impl().graph), (std::vector<std::string>{"Relu"}));
  EXPECT_TRUE(ir::verify(net.impl().graph).ok());
}

TEST(NetworkDefinition, GroupedConvolution) {
  NetworkDefinition net;
  NetworkTensor* x = net.add_input("x", DataType::kFloat32, {1, 8, 6, 6});
  Layer* c = net.add_convolution(x, 4, {3, 3}, weights({4, 2, 3, 3}, 1));
  ASSERT_NE(c, nullptr);
  c->set_num_groups(3);  // 3 * 2 != 8
  EXPECT_EQ(net.errors().size(), 1u);
  c->set_num_groups(4);
  c->set_padding({1, 1});
  c->set_dilation({1, 1});
  EXPECT_EQ(net.errors().size(), 1u) << net.errors().back();
  const ir::Node& n = *net.impl().graph.nodes()[0];
  EXPECT_EQ(n.attrs.get_int("group", 1), 4);
  EXPECT_EQ(n.attrs.get_ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(n.inputs[1]->initializer->dims(), (Dims{4, 2, 3, 3}));
  if (registered({"Conv"})) EXPECT_EQ(c->get_output(0)->shape(), (Dims{1, 4, 6, 6}));
}

TEST(NetworkDefinition, ShuffleBecomesTransposeAndReshape) {
  for (bool reshape_first : {false, true}) {
    NetworkDefinition net;
    NetworkTensor* x = net.add_input("x", DataType::kFloat32, {2, 3, 4});
    Layer* s = net.add_shuffle(x);
    ASSERT_NE(s, nullptr);
    Layer* after = net.add_activation(s->get_output(0), ActivationType::kRelu);
    net.mark_output(after->get_output(0));
    EXPECT_EQ(op_types(net.impl().graph), (std::vector<std::string>{"Identity", "Relu"}));
    if (reshape_first) {
      s->set_reshape_dims({0, -1});
      s->set_first_transpose({2, 0, 1});
    } else {
      s->set_first_transpose({2, 0, 1});
      s->set_reshape_dims({0, -1});
    }
    EXPECT_TRUE(net.errors().empty()) << net.errors()[0];
    ir::Graph& g = net.impl().graph;
    EXPECT_TRUE(ir::verify(g).ok()) << ir::dump(g);
    EXPECT_EQ(op_types(g), (std::vector<std::string>{"Transpose", "Reshape", "Relu"})) << ir::dump(g);
    EXPECT_EQ(g.nodes()[0]->attrs.get_ints("perm"), (std::vector<int64_t>{2, 0, 1}));
    EXPECT_EQ(g.nodes()[1]->inputs[1]->initializer->to_int64_vector(), (std::vector<int64_t>{0, -1}));
    // The layer's output is still the tensor the Relu reads.
    EXPECT_EQ(g.nodes()[2]->inputs[0]->name, s->get_output(0)->name());
    if (registered({"Transpose", "Reshape", "Relu"})) EXPECT_EQ(after->get_output(0)->shape(), (Dims{4, 6}));
    s->set_first_transpose({0, 0, 1});
    EXPECT_EQ(net.errors().size(), 1u);
  }
}

TEST(NetworkDefinition, ActivationsMapToOnnxOps) {
  struct Case {
    ActivationType type;
    float alpha, beta;
    std::vector<std::string> ops;
  };
  std::vector<Case> cases = {
      {ActivationType::kRelu, 0, 0, {"Relu"}},
      {ActivationType::kSigmoid, 0, 0, {"Sigmoid"}},
      {ActivationType::kTanh, 0, 0, {"Tanh"}},
      {ActivationType::kLeakyRelu, 0.2f, 0, {"LeakyRelu"}},
      {ActivationType::kElu, 0, 0, {"Elu"}},
      {ActivationType::kSelu, 0, 0, {"Selu"}},
      {ActivationType::kSoftplus, 0, 0, {"Softplus"}},
      {ActivationType::kSoftplus, 2.f, 3.f, {"Mul", "Softplus", "Mul"}},
      {ActivationType::kGelu, 0, 0, {"Div", "Erf", "Add", "Mul", "Mul"}},
      {ActivationType::kSilu, 0, 0, {"Sigmoid", "Mul"}},
      {ActivationType::kClip, -1.f, 6.f, {"Clip"}},
      {ActivationType::kHardSigmoid, 0, 0, {"HardSigmoid"}},
  };
  for (const auto& c : cases) {
    NetworkDefinition net;
    NetworkTensor* x = net.add_input("x", DataType::kFloat16, {2, 5});
    Layer* l = net.add_activation(x, c.type, c.alpha, c.beta);
    ASSERT_NE(l, nullptr);
    net.mark_output(l->get_output(0));
    ir::Graph& g = net.impl().graph;
    EXPECT_EQ(op_types(g), c.ops) << static_cast<int>(c.type);
    EXPECT_TRUE(ir::verify(g).ok()) << ir::dump(g);
    EXPECT_EQ(net.num_layers(), 1);
    // Helper constants follow the input's float type.
    for (auto& [name, v] : g.values())
      if (v->initializer) EXPECT_EQ(v->initializer->dtype(), DataType::kFloat16) << name;
    const ir::Node& n = *g.nodes()[0];
    if (c.type == ActivationType::kLeakyRelu) EXPECT_FLOAT_EQ(n.attrs.get_float("alpha", 0), 0.2f);
    if (c.type == ActivationType::kHardSigmoid) EXPECT_FLOAT_EQ(n.attrs.get_float("alpha", 0), 0.2f);
    if (c.type == ActivationType::kClip) {
      EXPECT_DOUBLE_EQ(n.inputs[1]->initializer->get_as_double(0), -1.0);
      EXPECT_DOUBLE_EQ(n.inputs[2]->initializer->get_as_double(0), 6.0);
    }
  }
}

TEST(NetworkDefinition, MatrixMultiplyElementwiseConcatConstant) {
  NetworkDefinition net;
  NetworkTensor* a = net.add_input("a", DataType::kFloat32, {2, 4, 3});
  NetworkTensor* b = net.add_input("b", DataType::kFloat32, {2, 5, 4});
  Layer* mm = net.add_matrix_multiply(a, MatrixOperation::kTranspose, b, MatrixOperation::kTranspose);
  ASSERT_NE(mm, nullptr);
  Layer* k = net.add_constant(weights({1, 3, 5}, 9));
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(net.impl().graph.find_value(k->get_output(0)->name())->is_constant());
  Layer* sum = net.add_elementwise(mm->get_output(0), k->get_output(0), ElementWiseOperation::kSum);
  Layer* less = net.add_elementwise(sum->get_output(0), k->get_output(0), ElementWiseOperation::kLess);
  Layer* cat = net.add_concatenation({sum->get_output(0), mm->get_output(0)}, 1);
  ASSERT_TRUE(sum && less && cat);
  cat->set_axis(-1);
  net.mark_output(cat->get_output(0));
  net.mark_output(less->get_output(0));
  net.mark_output(less->get_output(0));  // once is enough
  EXPECT_TRUE(net.errors().empty()) << net.errors()[0];
  ir::Graph& g = net.impl().graph;
  EXPECT_TRUE(ir::verify(g).ok()) << ir::dump(g);
  EXPECT_EQ(op_types(g), (std::vector<std::string>{"Transpose", "Transpose", "MatMul", "Add", "Less", "Concat"}));
  EXPECT_EQ(g.nodes()[0]->attrs.get_ints("perm"), (std::vector<int64_t>{0, 2, 1}));
  EXPECT_EQ(g.nodes()[5]->attrs.get_int("axis", 0), -1);
  EXPECT_EQ(net.num_outputs(), 2);
  if (registered({"Transpose", "MatMul", "Add", "Less", "Concat"})) {
    EXPECT_EQ(mm->get_output(0)->shape(), (Dims{2, 3, 5}));
    EXPECT_EQ(less->get_output(0)->dtype(), DataType::kBool);
    EXPECT_EQ(cat->get_output(0)->shape(), (Dims{2, 3, 10}));
  }
  // Transposing needs the rank.
  NetworkDefinition net2;
  NetworkTensor* u = net2.add_input("u", DataType::kFloat32, {2, 2});
  Layer* c = net2.add_constant(weights({2, 2}, 1));
  net2.impl().graph.find_value(u->name())->shape.reset();
  EXPECT_EQ(net2.add_matrix_multiply(u, MatrixOperation::kTranspose, c->get_output(0), MatrixOperation::kNone),
            nullptr);
  EXPECT_TRUE(net2.impl().graph.nodes().empty());
  EXPECT_EQ(net2.errors().size(), 1u);
}

std::string g_outputs_name(NetworkDefinition& net) { return net.impl().graph.outputs.at(0)->name; }

TEST(NetworkDefinition, RenamingKeepsTheGraphConsistent) {
  NetworkDefinition net;
  NetworkTensor* x = net.add_input("x", DataType::kFloat32, {4});
  Layer* r = net.add_activation(x, ActivationType::kRelu);
  Layer* t = net.add_activation(r->get_output(0), ActivationType::kTanh);
  net.mark_output(t->get_output(0));
  r->get_output(0)->set_name("hidden");
  x->set_name("input");
  t->get_output(0)->set_name("x");  // the name the input gave up
  EXPECT_TRUE(net.errors().empty()) << net.errors()[0];
  EXPECT_EQ(t->get_output(0)->name(), "x");
  EXPECT_EQ(g_outputs_name(net), "x");
  ir::Graph& g = net.impl().graph;
  EXPECT_EQ(x->name(), "input");
  EXPECT_EQ(g.inputs[0]->name, "input");
  EXPECT_EQ(g.nodes()[0]->inputs[0]->name, "input");
  EXPECT_EQ(g.nodes()[0]->outputs[0]->name, "hidden");
  EXPECT_EQ(g.nodes()[1]->inputs[0]->name, "hidden");
  EXPECT_EQ(net.find_tensor("hidden"), r->get_output(0));
  r->get_output(0)->set_name("input");  // taken
  ASSERT_EQ(net.errors().size(), 1u);
  EXPECT_NE(net.errors()[0].find("the name is taken"), std::string::npos);
  EXPECT_TRUE(ir::verify(g).ok()) << ir::dump(g);
  EXPECT_EQ(net.get_output(0), t->get_output(0));
  r->set_precision(DataType::kFloat16);
  EXPECT_EQ(g.nodes()[0]->precision, DataType::kFloat16);
}

}  // namespace
}  // namespace kiln
