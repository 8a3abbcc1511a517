#include <functional>
#include <map>

#include "harness/op_harness.h"
#include "ops/control/outer_types.h"

namespace kiln::test {
namespace {

using ir::Attribute;
using ops::TensorType;

// Runs a body graph node by node (the executor's job, done plainly here).
Result<std::vector<Tensor>> run_body(const ir::Graph& body, const std::vector<Tensor>& inputs) {
  std::map<const ir::Value*, Tensor> env;
  for (size_t i = 0; i < body.inputs.size() && i < inputs.size(); ++i) env[body.inputs[i]] = inputs[i];
  for (auto& n : body.nodes()) {
    std::vector<const Tensor*> ins;
    for (ir::Value* v : n->inputs) ins.push_back(v ? &env.at(v) : nullptr);
    std::vector<Tensor> outs;
    KILN_RETURN_IF_ERROR(ops::run_node(*n, ins, outs));
    for (size_t i = 0; i < n->outputs.size(); ++i)
      if (n->outputs[i]) env[n->outputs[i]] = outs[i];
  }
  std::vector<Tensor> result;
  for (ir::Value* o : body.outputs) result.push_back(env.at(o));
  return result;
}

// Opset-8 Scan body: sum_out = sum_in + next; scan_out = sum_out * next.
std::shared_ptr<ir::Graph> running_sum_body() {
  auto body = std::make_shared<ir::Graph>();
  auto f32 = [](int64_t n) { return std::optional<Shape>(shape_from_dims({n})); };
  ir::Value* sum_in = body->add_value("sum_in", DataType::kFloat32, f32(2)).value();
  ir::Value* next = body->add_value("next", DataType::kFloat32, f32(2)).value();
  ir::Value* sum_out = body->add_value("sum_out", DataType::kFloat32, f32(2)).value();
  ir::Value* scan_out = body->add_value("scan_out", DataType::kFloat32, f32(2)).value();
  body->inputs = {sum_in, next};
  body->outputs = {sum_out, scan_out};
  for (auto [op, ins, out] : {std::tuple{"Add", std::vector<ir::Value*>{sum_in, next}, sum_out},
                              std::tuple{"Mul", std::vector<ir::Value*>{sum_out, next}, scan_out}}) {
    ir::Node* n = body->add_node(op, ins, {out});
    n->opset = 8;
  }
  return body;
}

// Scan (opset 8) over one state and one scan input, with sequence_lens.
ir::Node* make_scan8(ir::Graph& g, std::vector<int64_t> directions) {
  ir::Node* node =
      g.add_node("Scan", {g.add_value("lens").value(), g.add_value("init").value(), g.add_value("x").value()},
                 {g.add_value("y").value(), g.add_value("z").value()});
  node->opset = 8;
  node->attrs.set("num_scan_inputs", Attribute::from_int(1));
  node->attrs.set("directions", Attribute::from_ints(std::move(directions)));
  Attribute body;
  body.kind = Attribute::Kind::kGraph;
  body.g = running_sum_body();
  node->attrs.set("body", body);
  return node;
}

// If branches whose values are untyped (as function bodies leave them) and that read an
// outer value by name: the output dtype comes from the enclosing graph's types
// (ops::OuterTypes), also for an If nested in a branch; without them it is unsupported.
TEST(Control, IfOutputDtypeFromOuterValuesTheBranchesRead) {
  // A branch: y = Neg(outer `s`), or (nested) y = the inner If over the same kind of branch.
  std::function<std::shared_ptr<ir::Graph>(int)> branch = [&](int depth) {
    auto body = std::make_shared<ir::Graph>();
    ir::Value* s = body->add_value("s").value();  // captured: no producer, no dtype
    ir::Value* y = body->add_value("y" + std::to_string(depth)).value();
    body->outputs = {y};
    if (depth == 0) {
      body->add_node("Neg", {s}, {y})->opset = 13;
    } else {
      ir::Value* c = body->add_value("c").value();
      ir::Node* inner = body->add_node("If", {c}, {y});
      inner->opset = 16;
      for (const char* b : {"then_branch", "else_branch"}) {
        Attribute a;
        a.kind = Attribute::Kind::kGraph;
        a.g = branch(depth - 1);
        inner->attrs.set(b, a);
      }
    }
    return body;
  };
  for (int depth : {0, 1}) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    ir::Graph g;
    ir::Node* node = g.add_node("If", {g.add_value("cond").value()}, {g.add_value("out").value()});
    node->opset = 16;
    for (const char* b : {"then_branch", "else_branch"}) {
      Attribute a;
      a.kind = Attribute::Kind::kGraph;
      a.g = branch(depth);
      node->attrs.set(b, a);
    }
    const std::vector<TensorType> in{{DataType::kBool, Shape{}}};
    auto alone = ops::infer_node(*node, in, {nullptr});
    EXPECT_FALSE(alone.ok()) << "no enclosing types: the branch output's dtype is unknown";
    const TensorType s_type{DataType::kFloat16, Shape{3}}, c_type{DataType::kBool, Shape{}};
    ops::OuterTypes scope([&](const std::string& name) -> const TensorType* {
      return name == "s" ? &s_type : name == "c" ? &c_type : nullptr;
    });
    auto typed = ops::infer_node(*node, in, {nullptr});
    ASSERT_TRUE(typed.ok()) << typed.status().to_string();
    EXPECT_EQ((*typed)[0].dtype, DataType::kFloat16);
  }
}

// kiln has no optional type: OptionalHasElement says whether its input is given, and
// OptionalGetElement of a tensor is the tensor; of nothing, an error.
TEST(Control, OptionalQueriesOnPlainTensors) {
  for (bool given : {true, false}) {
    OpCase c("OptionalHasElement", 18);
    if (given)
      c.input(DataType::kFloat32, {2, 3});
    else
      c.no_input();
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ((*out)[0].dtype(), DataType::kBool);
    EXPECT_EQ((*out)[0].rank(), 0);
    EXPECT_EQ((*out)[0].get_as_double(0), given ? 1.0 : 0.0);
  }
  OpCase get("OptionalGetElement", 18);
  get.input(DataType::kInt64, {4}, -5, 5);
  auto out = get.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], *get.inputs()[0], 0, 0));
  OpCase none("OptionalGetElement", 18);
  none.no_input();
  auto bad = none.run();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no element"), std::string::npos) << bad.status().to_string();
}

TEST(Control, Scan8BatchedWithSequenceLensAndReverseMatchesNaive) {
  const int64_t B = 3, L = 4;
  std::mt19937 rng(5);
  Tensor init = random_tensor(DataType::kFloat32, {B, 2}, rng);
  Tensor x = random_tensor(DataType::kFloat32, {B, L, 2}, rng);
  const std::vector<int64_t> lens = {4, 2, 0};
  for (int64_t reverse : {0, 1}) {
    ir::Graph g;
    ir::Node* node = make_scan8(g, {reverse});
    Tensor seq = Tensor::from_vector<int64_t>(DataType::kInt64, {B}, lens);
    std::vector<Tensor> outs;
    Status s = ops::run_node(*node, {&seq, &init, &x}, outs, run_body);
    ASSERT_TRUE(s.ok()) << s.to_string();
    ASSERT_EQ(outs[0].dims(), (Dims{B, 2}));
    ASSERT_EQ(outs[1].dims(), (Dims{B, L, 2}));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < 2; ++c) {
        double sum = init.get_as_double(b * 2 + c);
        for (int64_t t = 0; t < L; ++t) {
          double want = 0;  // padding past the row's length
          if (t < lens[b]) {
            int64_t idx = reverse ? lens[b] - 1 - t : t;
            double xv = x.get_as_double((b * L + idx) * 2 + c);
            sum += xv;
            want = sum * xv;
          }
          EXPECT_NEAR(outs[1].get_as_double((b * L + t) * 2 + c), want, 1e-5) << b << "," << t;
        }
        EXPECT_NEAR(outs[0].get_as_double(b * 2 + c), sum, 1e-5);
      }
  }
}

TEST(Control, Scan8Errors) {
  ir::Graph g;
  ir::Node* node = make_scan8(g, {0});
  std::mt19937 rng(6);
  Tensor init = random_tensor(DataType::kFloat32, {2, 2}, rng);
  Tensor x = random_tensor(DataType::kFloat32, {3, 4, 2}, rng);  // batch 3 vs the state's 2
  Tensor lens = Tensor::from_vector<int64_t>(DataType::kInt64, {2}, {4, 1});
  std::vector<Tensor> outs;
  EXPECT_FALSE(ops::run_node(*node, {&lens, &init, &x}, outs, run_body).ok());
  Tensor x2 = random_tensor(DataType::kFloat32, {2, 4, 2}, rng);
  EXPECT_TRUE(ops::run_node(*node, {&lens, &init, &x2}, outs, run_body).ok());
  Tensor too_long = Tensor::from_vector<int64_t>(DataType::kInt64, {2}, {5, 1});  // > max length 4
  EXPECT_FALSE(ops::run_node(*node, {&too_long, &init, &x2}, outs, run_body).ok());
  node->attrs.set("directions", Attribute::from_ints({0, 1}));  // one entry per scan input
  EXPECT_FALSE(ops::run_node(*node, {&lens, &init, &x2}, outs, run_body).ok());
}

}  // namespace
}  // namespace kiln::test
