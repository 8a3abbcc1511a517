// OnnxParser::supports_model: which nodes kiln can build and why not, judged from the
// importer's errors and each node's own type inference; CUDA kernel coverage; runs.
#include <gtest/gtest.h>

#include "onnx/onnx_test_util.h"
#include "ops/op.h"

namespace kiln::test {
namespace {

using Runs = std::vector<std::pair<std::vector<int>, bool>>;

SupportReport report_of(const onnx::ModelProto& m, Parsed& p) {
  std::string bytes = m.SerializeAsString();
  return p.parser.supports_model(bytes.data(), bytes.size());
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

bool cuda_backend_built() {
  for (const ops::OpDef* d : ops::OpRegistry::global().all())
    if (!d->cuda.empty()) return true;
  return false;
}

void add_int_attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  add_attr(n, name, onnx::AttributeProto::INT)->set_i(v);
}

// x[2,3] -> Relu -> a -> <middle> -> b -> Relu -> y
onnx::ModelProto sandwich(const std::string& middle_op, int opset = 17) {
  onnx::ModelProto m = make_model(opset);
  auto* g = m.mutable_graph();
  add_input(g, "x");
  add_node(g, "Relu", {"x"}, {"a"}, "first");
  add_node(g, middle_op, {"a"}, {"b"}, "middle");
  add_node(g, "Relu", {"b"}, {"y"}, "last");
  add_output(g, "y");
  return m;
}

TEST(SupportsModel, FullySupportedModel) {
  onnx::ModelProto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x");
  auto* w = g->add_initializer();
  w->set_name("w");
  w->set_data_type(1);
  w->add_dims(3);
  w->add_dims(3);
  for (int i = 0; i < 9; ++i) w->add_float_data(static_cast<float>(i));
  // Reshape's shape comes from a Constant node: known only by evaluating it.
  auto* c = add_node(g, "Constant", {}, {"shape"}, "shape_const");
  auto* t = add_attr(c, "value", onnx::AttributeProto::TENSOR)->mutable_t();
  t->set_data_type(7);
  t->add_dims(2);
  t->add_int64_data(3);
  t->add_int64_data(2);
  add_node(g, "Relu", {"x"}, {"a"});
  add_node(g, "Reshape", {"a", "shape"}, {"r"});
  add_node(g, "Transpose", {"r"}, {"rt"});
  add_node(g, "MatMul", {"rt", "w"}, {"y"});
  add_output(g, "y");

  Parsed p;
  SupportReport r = report_of(m, p);
  EXPECT_TRUE(r.supported);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_EQ(p.parser.num_errors(), 0) << p.all_errors();
  EXPECT_EQ(r.num_unsupported(), 0);
  ASSERT_EQ(r.nodes.size(), 5u);
  for (const NodeSupport& n : r.nodes) {
    EXPECT_TRUE(n.supported) << n.index << " " << n.reason;
    EXPECT_EQ(n.reason, "");
    EXPECT_EQ(n.domain, "");
    EXPECT_EQ(n.opset, 17);
  }
  EXPECT_EQ(r.nodes[1].index, 1);
  EXPECT_EQ(r.nodes[1].name, "");
  EXPECT_EQ(r.nodes[1].op_type, "Relu");
  EXPECT_EQ(r.nodes[0].name, "shape_const");
  EXPECT_EQ(r.subgraphs, (Runs{{{0, 1, 2, 3, 4}, true}}));
  // The parser's own network is left alone.
  EXPECT_TRUE(p.graph().nodes().empty());
  EXPECT_TRUE(p.graph().inputs.empty());

  // The same model parses and the flags agree with what parse() accepts.
  auto q = parse_model(m);
  EXPECT_TRUE(q->ok) << q->all_errors();
}

TEST(SupportsModel, UnknownOperator) {
  Parsed p;
  SupportReport r = report_of(sandwich("NoSuchOp"), p);
  EXPECT_FALSE(r.supported);
  EXPECT_TRUE(r.errors.empty());
  ASSERT_EQ(r.nodes.size(), 3u);
  EXPECT_TRUE(r.nodes[0].supported);
  EXPECT_FALSE(r.nodes[1].supported);
  EXPECT_EQ(r.nodes[1].name, "middle");
  EXPECT_EQ(r.nodes[1].op_type, "NoSuchOp");
  EXPECT_TRUE(contains(r.nodes[1].reason, "operator NoSuchOp (domain ai.onnx, opset 17) is not supported by kiln"))
      << r.nodes[1].reason;
  EXPECT_FALSE(r.nodes[1].cuda);
  // The node after it sees unknown input types: not blamed.
  EXPECT_TRUE(r.nodes[2].supported) << r.nodes[2].reason;
  EXPECT_EQ(r.num_unsupported(), 1);
  EXPECT_EQ(r.subgraphs, (Runs{{{0}, true}, {{1}, false}, {{2}, true}}));
  // The problems are the parser's errors too.
  EXPECT_TRUE(p.has_error({"'middle'", "NoSuchOp"})) << p.all_errors();

  // A custom domain nobody registered.
  onnx::ModelProto m = sandwich("Thing");
  m.mutable_graph()->mutable_node(1)->set_domain("com.example");
  auto* o = m.add_opset_import();
  o->set_domain("com.example");
  o->set_version(3);
  Parsed p2;
  SupportReport r2 = report_of(m, p2);
  EXPECT_FALSE(r2.nodes[1].supported);
  EXPECT_EQ(r2.nodes[1].domain, "com.example");
  EXPECT_EQ(r2.nodes[1].opset, 3);
  EXPECT_TRUE(contains(r2.nodes[1].reason, "domain com.example, opset 3")) << r2.nodes[1].reason;
}

TEST(SupportsModel, OpsetOutsideTheOperatorsRange) {
  // GridSample exists from opset 16.
  onnx::ModelProto m = make_model(15);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {"1", "1", "4", "4"});
  add_input(g, "grid", 1, {"1", "2", "2", "2"});
  add_node(g, "GridSample", {"x", "grid"}, {"s"}, "sample");
  add_node(g, "Relu", {"s"}, {"y"});
  add_output(g, "y", 1, {"1", "1", "2", "2"});
  Parsed p;
  SupportReport r = report_of(m, p);
  EXPECT_FALSE(r.supported);
  ASSERT_EQ(r.nodes.size(), 2u);
  EXPECT_FALSE(r.nodes[0].supported);
  EXPECT_EQ(r.nodes[0].opset, 15);
  EXPECT_TRUE(contains(r.nodes[0].reason, "opset 15) is not supported by kiln (it covers opsets 16.."))
      << r.nodes[0].reason;
  EXPECT_TRUE(r.nodes[1].supported);
  EXPECT_EQ(r.subgraphs, (Runs{{{0}, false}, {{1}, true}}));

  // A model opset kiln does not read at all: a model-level error, and no node was imported.
  Parsed p2;
  SupportReport r2 = report_of(sandwich("Relu", 99), p2);
  EXPECT_FALSE(r2.supported);
  ASSERT_EQ(r2.errors.size(), 1u);
  EXPECT_TRUE(contains(r2.errors[0].message, "opset 99 is newer than kiln supports")) << r2.errors[0].message;
  ASSERT_EQ(r2.nodes.size(), 3u);
  for (const NodeSupport& n : r2.nodes) {
    EXPECT_FALSE(n.supported);
    EXPECT_TRUE(contains(n.reason, "not imported: opset 99")) << n.reason;
  }
  EXPECT_EQ(r2.subgraphs, (Runs{{{0, 1, 2}, false}}));
}

TEST(SupportsModel, AttributeValuesAndTypes) {
  // Cast to STRING: a valid ONNX target that kiln's Cast rejects.
  onnx::ModelProto m = sandwich("Cast");
  add_int_attr(m.mutable_graph()->mutable_node(1), "to", 8);
  Parsed p;
  SupportReport r = report_of(m, p);
  EXPECT_FALSE(r.supported);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_TRUE(r.nodes[0].supported);
  EXPECT_FALSE(r.nodes[1].supported);
  EXPECT_EQ(r.nodes[1].reason, "target dtype string is not supported by Cast");
  EXPECT_EQ(r.nodes[1].cuda_reason, "not supported");
  EXPECT_TRUE(r.nodes[2].supported) << r.nodes[2].reason;
  // Inference problems are not parse errors: parse() itself accepts the model.
  EXPECT_EQ(p.parser.num_errors(), 0) << p.all_errors();

  // An attribute of the wrong type is refused by the importer.
  onnx::ModelProto m2 = sandwich("Transpose");
  auto* perm = add_attr(m2.mutable_graph()->mutable_node(1), "perm", onnx::AttributeProto::FLOATS);
  perm->add_floats(1);
  perm->add_floats(0);
  Parsed p2;
  SupportReport r2 = report_of(m2, p2);
  EXPECT_FALSE(r2.nodes[1].supported);
  EXPECT_TRUE(contains(r2.nodes[1].reason, "attribute 'perm' has type FLOATS but Transpose expects INTS"))
      << r2.nodes[1].reason;
  EXPECT_TRUE(r2.nodes[0].supported);
  EXPECT_TRUE(r2.nodes[2].supported);
}

TEST(SupportsModel, InputDtypes) {
  // Softmax takes floats only; int32 reaches it through a supported Abs.
  onnx::ModelProto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", 6);
  add_node(g, "Abs", {"x"}, {"a"});
  add_node(g, "Softmax", {"a"}, {"s"}, "soft");
  add_node(g, "Cast", {"s"}, {"y"});
  add_int_attr(g->mutable_node(2), "to", 1);
  add_output(g, "y");
  Parsed p;
  SupportReport r = report_of(m, p);
  ASSERT_EQ(r.nodes.size(), 3u);
  EXPECT_TRUE(r.nodes[0].supported) << r.nodes[0].reason;
  EXPECT_FALSE(r.nodes[1].supported);
  EXPECT_EQ(r.nodes[1].reason, "Softmax on int32");
  EXPECT_TRUE(r.nodes[2].supported);
  EXPECT_EQ(r.subgraphs, (Runs{{{0}, true}, {{1}, false}, {{2}, true}}));
}

TEST(SupportsModel, SubgraphBodiesCountAgainstTheirNode) {
  onnx::ModelProto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "cond", 9, {});
  add_input(g, "n", 6);
  add_node(g, "Abs", {"n"}, {"a"});
  auto* iff = add_node(g, "If", {"cond"}, {"r"}, "branch");
  auto body = [&](const char* attr, const char* op, const char* out) {
    auto* a = add_attr(iff, attr, onnx::AttributeProto::GRAPH);
    auto* b = a->mutable_g();
    b->set_name(attr);
    add_node(b, op, {"a"}, {out}, std::string(attr) + "_node");  // reads 'a' of the outer graph
    add_output(b, out, 6);
  };
  body("then_branch", "Softmax", "t");
  body("else_branch", "Identity", "e");
  add_node(g, "Neg", {"r"}, {"y"});
  add_output(g, "y", 6);
  Parsed p;
  SupportReport r = report_of(m, p);
  ASSERT_EQ(r.nodes.size(), 3u);
  EXPECT_TRUE(r.nodes[0].supported);
  EXPECT_FALSE(r.nodes[1].supported);
  EXPECT_EQ(r.nodes[1].reason,
            "in subgraph 'then_branch' of node 'branch' (If): node 'then_branch_node' (Softmax): Softmax on int32");
  EXPECT_TRUE(r.nodes[2].supported);

  // An unknown op inside a body: the importer names it, on the If.
  iff->mutable_attribute(0)->mutable_g()->mutable_node(0)->set_op_type("NoSuchOp");
  Parsed p2;
  SupportReport r2 = report_of(m, p2);
  EXPECT_FALSE(r2.nodes[1].supported);
  EXPECT_TRUE(contains(r2.nodes[1].reason, "in subgraph 'then_branch'")) << r2.nodes[1].reason;
  EXPECT_TRUE(contains(r2.nodes[1].reason, "NoSuchOp")) << r2.nodes[1].reason;
  EXPECT_EQ(r2.num_unsupported(), 1);
}

TEST(SupportsModel, FunctionBodiesNameTheInnerNode) {
  onnx::ModelProto m = make_model();
  auto* f = m.add_functions();
  f->set_name("Twice");
  f->set_domain("local");
  f->add_input("i");
  f->add_output("o");
  f->add_opset_import()->set_version(17);
  auto* n1 = f->add_node();
  n1->set_op_type("Abs");
  n1->add_input("i");
  n1->add_output("t");
  auto* n2 = f->add_node();
  n2->set_op_type("Softmax");
  n2->add_input("t");
  n2->add_output("o");
  auto* o = m.add_opset_import();
  o->set_domain("local");
  o->set_version(1);
  auto* g = m.mutable_graph();
  add_input(g, "x", 6);
  add_node(g, "Twice", {"x"}, {"y"}, "call")->set_domain("local");
  add_node(g, "Neg", {"y"}, {"z"});
  add_output(g, "z", 6);
  Parsed p;
  SupportReport r = report_of(m, p);
  ASSERT_EQ(r.nodes.size(), 2u);
  EXPECT_FALSE(r.nodes[0].supported);
  EXPECT_EQ(r.nodes[0].op_type, "Twice");
  EXPECT_EQ(r.nodes[0].domain, "local");
  EXPECT_TRUE(contains(r.nodes[0].reason, "(Softmax): Softmax on int32")) << r.nodes[0].reason;
  EXPECT_TRUE(r.nodes[1].supported);
}

TEST(SupportsModel, CudaCoverage) {
  onnx::ModelProto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {"3", "3"});
  add_node(g, "Relu", {"x"}, {"a"});
  add_node(g, "Det", {"a"}, {"y"});
  add_output(g, "y", 1, {});
  Parsed p;
  SupportReport r = report_of(m, p);
  ASSERT_TRUE(r.supported) << (r.nodes.size() > 1 ? r.nodes[1].reason : "");
  ASSERT_EQ(r.nodes.size(), 2u);
  const ops::OpDef* det = ops::OpRegistry::global().find("", "Det");
  ASSERT_NE(det, nullptr);
  if (!cuda_backend_built()) {
    for (const NodeSupport& n : r.nodes) {
      EXPECT_FALSE(n.cuda);
      EXPECT_EQ(n.cuda_reason, "kiln was built without the CUDA backend");
    }
    return;
  }
  EXPECT_TRUE(r.nodes[0].cuda) << r.nodes[0].cuda_reason;
  EXPECT_EQ(r.nodes[0].cuda_reason, "");
  if (det->cuda.empty()) {
    EXPECT_FALSE(r.nodes[1].cuda);
    EXPECT_EQ(r.nodes[1].cuda_reason, "no CUDA kernel for Det");
  }
}

TEST(SupportsModel, FilesAndBrokenBytes) {
  TempDir dir;
  std::string path = dir.write("m.onnx", sandwich("NoSuchOp").SerializeAsString());
  Parsed p;
  SupportReport r = p.parser.supports_model_file(path);
  EXPECT_FALSE(r.supported);
  ASSERT_EQ(r.nodes.size(), 3u);
  EXPECT_FALSE(r.nodes[1].supported);

  std::string junk = dir.write("junk.onnx", std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8));
  SupportReport j = p.parser.supports_model_file(junk);
  EXPECT_FALSE(j.supported);
  EXPECT_TRUE(j.nodes.empty());
  ASSERT_EQ(j.errors.size(), 1u);
  EXPECT_TRUE(contains(j.errors[0].message, "not a valid ONNX ModelProto")) << j.errors[0].message;
  EXPECT_TRUE(contains(j.errors[0].message, "junk.onnx")) << j.errors[0].message;

  SupportReport missing = p.parser.supports_model_file((dir.path / "none.onnx").string());
  EXPECT_FALSE(missing.supported);
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_TRUE(contains(missing.errors[0].message, "cannot open model file")) << missing.errors[0].message;

  SupportReport empty = p.parser.supports_model(nullptr, 0);
  EXPECT_FALSE(empty.supported);
  EXPECT_EQ(empty.errors.size(), 1u);
}

}  // namespace
}  // namespace kiln::test
