// Importer tests: graph structure, symbolic dims, initializer encodings, subgraphs,
// functions, and the errors malformed graphs must produce.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "harness/op_harness.h"
#include "onnx/onnx_test_util.h"
#include "ops/op.h"

namespace kiln::test {
namespace {

using AP = onnx::AttributeProto;

TEST(OnnxImporter, SymbolicDimsTypesAndNodeNames) {
  onnx::ModelProto m = make_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {"N", "3", "?", "5"});
  add_node(g, "Identity", {"x"}, {"a"});
  add_node(g, "Identity", {"a"}, {"y"}, "named");
  add_output(g, "y", 1, {"N", "3", "?", "5"});
  auto p = parse_model(m);
  ASSERT_TRUE(p->ok) << p->all_errors();
  ir::Graph& ig = p->graph();
  ASSERT_EQ(ig.inputs.size(), 1u);
  const ir::Value* x = ig.inputs[0];
  EXPECT_EQ(x->dtype, DataType::kFloat32);
  ASSERT_TRUE(x->shape);
  ASSERT_EQ(x->shape->size(), 4u);
  EXPECT_EQ((*x->shape)[0].name, "N");
  EXPECT_FALSE((*x->shape)[0].known());
  EXPECT_EQ((*x->shape)[1].value, 3);
  EXPECT_FALSE((*x->shape)[2].known());
  EXPECT_TRUE((*x->shape)[2].name.empty());
  EXPECT_EQ((*x->shape)[3].value, 5);
  ASSERT_EQ(ig.nodes().size(), 2u);
  EXPECT_EQ(ig.nodes()[0]->name, "Identity_0");
  EXPECT_EQ(ig.nodes()[1]->name, "named");
  EXPECT_EQ(ig.nodes()[0]->opset, 17);
  EXPECT_EQ(ig.nodes()[0]->domain, "");
  EXPECT_EQ(ig.opset_imports.at(""), 17);
  ASSERT_EQ(ig.outputs.size(), 1u);
  EXPECT_EQ(ig.outputs[0]->name, "y");
  EXPECT_EQ((*ig.outputs[0]->shape)[0].name, "N");
  EXPECT_TRUE(ir::verify(ig).ok());
  // The network view sees the same inputs and outputs.
  EXPECT_EQ(p->net.num_inputs(), 1);
  EXPECT_EQ(p->net.get_input(0)->name(), "x");
  EXPECT_EQ(p->net.get_output(0)->name(), "y");
  EXPECT_EQ(p->net.get_input(0)->shape(), (Dims{-1, 3, -1, 5}));
}

TEST(OnnxImporter, NodesOutOfOrderAreSortedAndDuplicateNamesMadeUnique) {
  onnx::ModelProto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x");
  add_node(g, "Identity", {"a"}, {"y"}, "n");
  add_node(g, "Identity", {"x"}, {"a"}, "n");
  add_output(g, "y");
  auto p = parse_model(m);
  ASSERT_TRUE(p->ok) << p->all_errors();
  ASSERT_EQ(p->graph().nodes().size(), 2u);
  EXPECT_EQ(p->graph().nodes()[0]->outputs[0]->name, "a");
  EXPECT_NE(p->graph().nodes()[0]->name, p->graph().nodes()[1]->name);
}

// Encodes `t` into the typed field ONNX uses for its dtype.
void encode_typed(const Tensor& t, onnx::TensorProto& p) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DataType::kFloat32: p.add_float_data(t.data_as<float>()[i]); break;
      case DataType::kFloat64: p.add_double_data(t.data_as<double>()[i]); break;
      case DataType::kInt64: p.add_int64_data(t.data_as<int64_t>()[i]); break;
      case DataType::kUInt64: p.add_uint64_data(t.data_as<uint64_t>()[i]); break;
      case DataType::kUInt32: p.add_uint64_data(t.data_as<uint32_t>()[i]); break;
      case DataType::kInt32: p.add_int32_data(t.data_as<int32_t>()[i]); break;
      case DataType::kInt16: p.add_int32_data(t.data_as<int16_t>()[i]); break;
      case DataType::kInt8: p.add_int32_data(t.data_as<int8_t>()[i]); break;
      case DataType::kUInt16:
      case DataType::kFloat16:
      case DataType::kBFloat16: p.add_int32_data(t.data_as<uint16_t>()[i]); break;
      case DataType::kUInt8:
      case DataType::kBool: p.add_int32_data(t.data_as<uint8_t>()[i]); break;
      default: FAIL() << "no typed field for " << dtype_name(t.dtype());
    }
  }
}

const DataType kAllTypes[] = {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kBFloat16,
                              DataType::kInt8,    DataType::kInt16,   DataType::kInt32,   DataType::kInt64,
                              DataType::kUInt8,   DataType::kUInt16,  DataType::kUInt32,  DataType::kUInt64,
                              DataType::kBool};

// Imports one initializer per dtype (typed or raw) and compares the bytes.
void check_initializers_round_trip(bool raw) {
  std::mt19937 rng(raw ? 11 : 7);
  onnx::ModelProto m = identity_model();
  std::vector<Tensor> expected;
  for (DataType dt : kAllTypes) {
    bool is_unsigned = dt == DataType::kUInt8 || dt == DataType::kUInt16 || dt == DataType::kUInt32 ||
                       dt == DataType::kUInt64 || dt == DataType::kBool;
    Tensor t = random_tensor(dt, {2, 3, 4}, rng, is_unsigned ? 0 : -100, 100);
    auto* p = m.mutable_graph()->add_initializer();
    p->set_name(std::string("w_") + dtype_name(dt));
    p->set_data_type(static_cast<int>(dt));
    for (int64_t d : t.dims()) p->add_dims(d);
    if (raw)
      p->set_raw_data(std::string(static_cast<const char*>(t.data()), t.nbytes()));
    else
      encode_typed(t, *p);
    expected.push_back(t);
  }
  // A scalar and an empty tensor too.
  Tensor scalar = Tensor::from_vector<double>(DataType::kFloat32, {}, {2.5});
  auto* ps = m.mutable_graph()->add_initializer();
  ps->set_name("w_scalar");
  ps->set_data_type(1);
  if (raw)
    ps->set_raw_data(std::string(static_cast<const char*>(scalar.data()), 4));
  else
    ps->add_float_data(2.5f);
  auto* pe = m.mutable_graph()->add_initializer();
  pe->set_name("w_empty");
  pe->set_data_type(7);
  pe->add_dims(3);
  pe->add_dims(0);

  auto parsed = parse_model(m);
  ASSERT_TRUE(parsed->ok) << parsed->all_errors();
  for (size_t i = 0; i < expected.size(); ++i) {
    const Tensor& e = expected[i];
    const ir::Value* v = parsed->graph().find_value(std::string("w_") + dtype_name(e.dtype()));
    ASSERT_TRUE(v && v->initializer) << dtype_name(e.dtype());
    EXPECT_EQ(v->dtype, e.dtype());
    EXPECT_EQ(v->initializer->dims(), e.dims());
    EXPECT_EQ(shape_to_dims(*v->shape), e.dims());
    ASSERT_EQ(v->initializer->nbytes(), e.nbytes());
    EXPECT_EQ(std::memcmp(v->initializer->data(), e.data(), e.nbytes()), 0) << dtype_name(e.dtype());
  }
  const ir::Value* s = parsed->graph().find_value("w_scalar");
  ASSERT_TRUE(s && s->initializer);
  EXPECT_EQ(s->initializer->rank(), 0);
  EXPECT_FLOAT_EQ(s->initializer->data_as<float>()[0], 2.5f);
  const ir::Value* z = parsed->graph().find_value("w_empty");
  ASSERT_TRUE(z && z->initializer);
  EXPECT_EQ(z->initializer->dims(), (Dims{3, 0}));
  EXPECT_EQ(z->initializer->numel(), 0);
}

TEST(OnnxImporter, InitializersFromTypedFieldsRoundTrip) { check_initializers_round_trip(false); }
TEST(OnnxImporter, InitializersFromRawDataRoundTrip) { check_initializers_round_trip(true); }

TEST(OnnxImporter, InitializersListedAsInputsStayConstants) {
  onnx::ModelProto m = identity_model();
  m.set_ir_version(3);
  add_input(m.mutable_graph(), "w", 1, {"2"});
  auto* w = m.mutable_graph()->add_initializer();
  w->set_name("w");
  w->set_data_type(1);
  w->add_dims(2);
  w->add_float_data(1.f);
  w->add_float_data(-3.f);
  auto p = parse_model(m);
  ASSERT_TRUE(p->ok) << p->all_errors();
  ASSERT_EQ(p->graph().inputs.size(), 1u);
  EXPECT_EQ(p->graph().inputs[0]->name, "x");
  EXPECT_TRUE(p->graph().find_value("w")->is_constant());
}

onnx::TensorProto* add_float_init(onnx::ModelProto& m, const std::string& name, const std::vector<int64_t>& dims) {
  auto* t = m.mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(1);
  for (auto d : dims) t->add_dims(d);
  return t;
}

TEST(OnnxImporter, BadInitializersAreReportedByName) {
  onnx::ModelProto m = identity_model();
  add_float_init(m, "neg", {2, -1});
  add_float_init(m, "huge", {1ll << 40, 1ll << 40});
  auto* count = add_float_init(m, "count", {2, 2});
  count->add_float_data(1.f);
  auto* raw = add_float_init(m, "raw", {3});
  raw->set_raw_data(std::string(11, 'x'));
  auto* str = m.mutable_graph()->add_initializer();
  str->set_name("strings");
  str->set_data_type(8);
  str->add_string_data("hello");
  auto* cplx = add_float_init(m, "cplx", {1});
  cplx->set_data_type(14);
  auto* undef = add_float_init(m, "undef", {1});
  undef->set_data_type(0);
  auto* bogus = add_float_init(m, "bogus", {1});
  bogus->set_data_type(999);
  auto* sp = m.mutable_graph()->add_sparse_initializer();
  sp->mutable_values()->set_name("sparse_w");
  auto p = parse_model(m);
  EXPECT_FALSE(p->ok);
  EXPECT_TRUE(p->has_error({"'neg'", "negative"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'huge'", "overflow"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'count'", "float_data holds 1 values", "4 elements"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'raw'", "raw_data has 11 bytes", "needs 12"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'strings'", "string is not supported"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'cplx'", "complex64"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'undef'", "no element type"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'bogus'", "unknown element type"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"sparse initializer 'sparse_w'"})) << p->all_errors();
  EXPECT_EQ(p->parser.num_errors(), 9) << p->all_errors();
}

TEST(OnnxImporter, UnsupportedOpsAreAllReportedWithNodeNames) {
  onnx::ModelProto m = make_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x");
  add_node(g, "NoSuchOp", {"x"}, {"a"}, "first_bad");
  add_node(g, "Identity", {"a"}, {"b"});
  add_node(g, "NoSuchOp", {"b"}, {"y"});
  add_output(g, "y");
  auto p = parse_model(m);
  EXPECT_FALSE(p->ok);
  ASSERT_EQ(p->parser.num_errors(), 2) << p->all_errors();
  const ParserError& e0 = p->parser.error(0);
  EXPECT_EQ(e0.node_index, 0);
  EXPECT_EQ(e0.node_name, "first_bad");
  EXPECT_EQ(e0.op_type, "NoSuchOp");
  EXPECT_NE(e0.message.find("operator NoSuchOp (domain ai.onnx, opset 17) is not supported by kiln"), std::string::npos)
      << e0.message;
  EXPECT_EQ(p->parser.error(1).node_index, 2);
  EXPECT_EQ(p->parser.error(1).node_name, "NoSuchOp_2");
  EXPECT_EQ(e0.to_string().rfind("node 'first_bad' (NoSuchOp): ", 0), 0u) << e0.to_string();
  // Errors are echoed to the logger.
  EXPECT_TRUE(p->logger.saw(Logger::Severity::kError, "first_bad"));
}

TEST(OnnxImporter, OpsetRangeOfTheRegistryIsChecked) {
  // Any default-domain op whose implementation starts above opset 1 will do: the
  // importer checks the range before anything looks at the node's inputs.
  const ops::OpDef* def = nullptr;
  for (const ops::OpDef* d : ops::OpRegistry::global().all())
    if (d->domain.empty() && d->min_opset > 1) def = d;
  if (!def) GTEST_SKIP() << "no registered op starts above opset 1";
  onnx::ModelProto m = identity_model(def->min_opset - 1);
  m.mutable_graph()->mutable_node(0)->set_op_type(def->name);
  auto p = parse_model(m);
  EXPECT_FALSE(p->ok);
  EXPECT_TRUE(p->has_error({def->name, "opset " + std::to_string(def->min_opset - 1), "covers opsets"}))
      << p->all_errors();
}

TEST(OnnxImporter, DomainsAndOpsetVersions) {
  {
    onnx::ModelProto m = identity_model();
    m.mutable_graph()->mutable_node(0)->set_domain("com.example");
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"domain 'com.example' is not listed in the model's opset_import"})) << p->all_errors();
  }
  {
    onnx::ModelProto m = identity_model();
    auto* o = m.add_opset_import();
    o->set_domain("com.example");
    o->set_version(3);
    m.mutable_graph()->mutable_node(0)->set_domain("com.example");
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"operator Identity (domain com.example, opset 3) is not supported"})) << p->all_errors();
  }
  {
    onnx::ModelProto m = identity_model();
    m.mutable_opset_import(0)->set_domain("ai.onnx");  // the same as ""
    auto p = parse_model(m);
    EXPECT_TRUE(p->ok) << p->all_errors();
  }
  {
    auto p = parse_model(identity_model(29));
    EXPECT_TRUE(p->has_error({"opset 29 is newer than kiln supports"})) << p->all_errors();
  }
  {
    auto p = parse_model(identity_model(1));
    EXPECT_TRUE(p->ok) << p->all_errors();
    EXPECT_TRUE(p->logger.saw(Logger::Severity::kWarning, "opset 1 is older"));
  }
  {
    onnx::ModelProto m = identity_model();
    m.clear_opset_import();
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"no opset_import"})) << p->all_errors();
  }
  {
    onnx::ModelProto m = identity_model();
    *m.add_opset_import() = m.opset_import(0);
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"listed twice in opset_import"})) << p->all_errors();
  }
  {
    onnx::ModelProto m = identity_model();
    m.clear_ir_version();
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"ir_version is missing"})) << p->all_errors();
  }
}

TEST(OnnxImporter, MalformedGraphsGiveClearErrors) {
  struct Case {
    const char* what;
    std::function<void(onnx::GraphProto*)> edit;
    std::vector<std::string> expect;
  };
  std::vector<Case> cases = {
      {"undefined input",
       [](onnx::GraphProto* g) { g->mutable_node(0)->set_input(0, "nowhere"); },
       {"'Identity_0' (Identity)", "input 0 'nowhere' is not defined"}},
      {"output produced twice",
       [](onnx::GraphProto* g) { add_node(g, "Identity", {"x"}, {"y"}, "again"); },
       {"'again'", "output 'y' is already produced by node 'Identity_0'"}},
      {"output overwrites an input",
       [](onnx::GraphProto* g) { add_node(g, "Identity", {"y"}, {"x"}, "back"); },
       {"'back'", "output 'x' is already produced by a graph input"}},
      {"cycle",
       [](onnx::GraphProto* g) {
         g->mutable_node(0)->set_input(0, "z");
         add_node(g, "Identity", {"y"}, {"z"}, "loop_back");
       },
       {"cycle"}},
      {"graph output never produced",
       [](onnx::GraphProto* g) { add_output(g, "ghost"); },
       {"graph output 'ghost' is not produced"}},
      {"graph output twice", [](onnx::GraphProto* g) { add_output(g, "y"); }, {"graph output 'y' is listed twice"}},
      {"no outputs", [](onnx::GraphProto* g) { g->clear_output(); }, {"no outputs"}},
      {"empty graph",
       [](onnx::GraphProto* g) {
         g->clear_output();
         g->clear_node();
       },
       {"empty"}},
      {"input twice", [](onnx::GraphProto* g) { add_input(g, "x"); }, {"graph input 'x' is listed twice"}},
      {"input without type",
       [](onnx::GraphProto* g) { g->mutable_input(0)->clear_type(); },
       {"graph input 'x' has no element type"}},
      {"sequence input",
       [](onnx::GraphProto* g) { g->mutable_input(0)->mutable_type()->mutable_sequence_type(); },
       {"graph input 'x' is a sequence", "only tensor"}},
      {"string input",
       [](onnx::GraphProto* g) { set_type(g->mutable_input(0), 8, {"2"}); },
       {"graph input 'x'", "string is not supported"}},
      {"no op_type", [](onnx::GraphProto* g) { g->mutable_node(0)->clear_op_type(); }, {"no op_type"}},
  };
  for (auto& c : cases) {
    onnx::ModelProto m = identity_model();
    c.edit(m.mutable_graph());
    auto p = parse_model(m);
    EXPECT_FALSE(p->ok) << c.what;
    EXPECT_TRUE(p->has_error(c.expect)) << c.what << ":\n" << p->all_errors();
  }
  // A model without a graph at all.
  onnx::ModelProto m = identity_model();
  m.clear_graph();
  auto p = parse_model(m);
  EXPECT_TRUE(p->has_error({"no graph"})) << p->all_errors();
}

TEST(OnnxImporter, AttributesOfEveryKind) {
  onnx::ModelProto m = identity_model();
  auto* n = m.mutable_graph()->mutable_node(0);
  add_attr(n, "f", AP::FLOAT)->set_f(1.5f);
  add_attr(n, "i", AP::INT)->set_i(-7);
  add_attr(n, "s", AP::STRING)->set_s("text");
  auto* fs = add_attr(n, "fs", AP::FLOATS);
  fs->add_floats(0.25f);
  fs->add_floats(-2.f);
  auto* is = add_attr(n, "is", AP::INTS);
  is->add_ints(3);
  is->add_ints(-1);
  auto* ss = add_attr(n, "ss", AP::STRINGS);
  ss->add_strings("a");
  ss->add_strings("b");
  auto* t = add_attr(n, "t", AP::TENSOR)->mutable_t();
  t->set_data_type(7);
  t->add_dims(2);
  t->add_int64_data(5);
  t->add_int64_data(-6);
  auto* ts = add_attr(n, "ts", AP::TENSORS);
  auto* t0 = ts->add_tensors();
  t0->set_data_type(1);
  t0->add_float_data(4.f);
  // Old IR versions leave `type` unset; the kind comes from the field.
  auto* old = n->add_attribute();
  old->set_name("old_style");
  old->add_ints(9);
  auto p = parse_model(m);
  ASSERT_TRUE(p->ok) << p->all_errors();
  const ir::Attributes& a = p->graph().nodes()[0]->attrs;
  EXPECT_FLOAT_EQ(a.get_float("f", 0), 1.5f);
  EXPECT_EQ(a.get_int("i", 0), -7);
  EXPECT_EQ(a.get_string("s", ""), "text");
  EXPECT_EQ(a.get_floats("fs"), (std::vector<float>{0.25f, -2.f}));
  EXPECT_EQ(a.get_ints("is"), (std::vector<int64_t>{3, -1}));
  EXPECT_EQ(a.find("ss")->strings, (std::vector<std::string>{"a", "b"}));
  ASSERT_NE(a.get_tensor("t"), nullptr);
  EXPECT_EQ(a.get_tensor("t")->to_int64_vector(), (std::vector<int64_t>{5, -6}));
  ASSERT_EQ(a.find("ts")->tensors.size(), 1u);
  EXPECT_EQ(a.find("ts")->tensors[0].rank(), 0);
  EXPECT_EQ(a.find("ts")->kind, ir::Attribute::Kind::kTensors);
  EXPECT_EQ(a.find("old_style")->kind, ir::Attribute::Kind::kInts);
  EXPECT_EQ(a.get_ints("old_style"), (std::vector<int64_t>{9}));
}

TEST(OnnxImporter, WrongAttributeTypesAreErrors) {
  {
    // Flatten's axis is an INT in every opset.
    onnx::ModelProto m = identity_model();
    auto* n = m.mutable_graph()->mutable_node(0);
    n->set_op_type("Flatten");
    add_attr(n, "axis", AP::STRING)->set_s("one");
    auto p = parse_model(m);
    EXPECT_FALSE(p->ok);
    EXPECT_TRUE(p->has_error({"attribute 'axis' has type STRING but Flatten expects INT"})) << p->all_errors();
  }
  {
    // Declared INTS, value in `floats`.
    onnx::ModelProto m = identity_model();
    auto* a = add_attr(m.mutable_graph()->mutable_node(0), "odd", AP::INTS);
    a->add_floats(1.f);
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"attribute 'odd' declares type INTS", "another field"})) << p->all_errors();
  }
  {
    // TENSOR without a tensor; GRAPH without a graph; no name; sparse; given twice.
    onnx::ModelProto m = identity_model();
    auto* n = m.mutable_graph()->mutable_node(0);
    add_attr(n, "t", AP::TENSOR);
    add_attr(n, "g", AP::GRAPH);
    add_attr(n, "", AP::INT)->set_i(1);
    add_attr(n, "sp", AP::SPARSE_TENSOR)->mutable_sparse_tensor();
    add_attr(n, "dup", AP::INT)->set_i(1);
    add_attr(n, "dup", AP::INT)->set_i(2);
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"attribute 't' declares type TENSOR"})) << p->all_errors();
    EXPECT_TRUE(p->has_error({"attribute 'g' declares type GRAPH"})) << p->all_errors();
    EXPECT_TRUE(p->has_error({"an attribute has no name"})) << p->all_errors();
    EXPECT_TRUE(p->has_error({"attribute 'sp' of type SPARSE_TENSOR is not supported"})) << p->all_errors();
    EXPECT_TRUE(p->has_error({"attribute 'dup' is given twice"})) << p->all_errors();
  }
  {
    // ref_attr_name only means something inside a function.
    onnx::ModelProto m = identity_model();
    add_attr(m.mutable_graph()->mutable_node(0), "r", AP::INT)->set_ref_attr_name("outer");
    auto p = parse_model(m);
    EXPECT_TRUE(p->has_error({"ref_attr_name"})) << p->all_errors();
  }
  {
    // A whole number where ONNX wants a float is read as that float, with a warning.
    onnx::ModelProto m = identity_model();
    auto* n = m.mutable_graph()->mutable_node(0);
    n->set_op_type("LeakyRelu");
    add_attr(n, "alpha", AP::INT)->set_i(2);
    auto p = parse_model(m);
    EXPECT_FALSE(p->has_error({"alpha"})) << p->all_errors();
    EXPECT_TRUE(p->logger.saw(Logger::Severity::kWarning, "reading it as a float"));
    ASSERT_FALSE(p->graph().nodes().empty());
    const ir::Attribute* a = p->graph().nodes()[0]->attrs.find("alpha");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->kind, ir::Attribute::Kind::kFloat);
    EXPECT_FLOAT_EQ(a->f, 2.f);
  }
}

// x -> If(cond){ then: y = Identity(x) (x from the outer graph); else: y = Identity(w) } -> out
onnx::ModelProto if_model() {
  onnx::ModelProto m = make_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x");
  add_input(g, "cond", 9, {});
  auto* w = g->add_initializer();
  w->set_name("w");
  w->set_data_type(1);
  w->add_dims(2);
  w->add_dims(3);
  for (int i = 0; i < 6; ++i) w->add_float_data(static_cast<float>(i) + 0.5f);
  auto* n = add_node(g, "If", {"cond"}, {"out"}, "branch");
  auto* then_g = add_attr(n, "then_branch", AP::GRAPH)->mutable_g();
  then_g->set_name("then");
  add_node(then_g, "Identity", {"x"}, {"t_y"});
  add_output(then_g, "t_y");
  auto* else_g = add_attr(n, "else_branch", AP::GRAPH)->mutable_g();
  else_g->set_name("else");
  add_node(else_g, "Identity", {"w"}, {"e_y"});
  add_output(else_g, "e_y");
  add_output(g, "out");
  return m;
}

// Errors other than "If is not supported" (If may not be registered yet).
std::string errors_besides_if(const Parsed& p) {
  std::string s;
  for (int i = 0; i < p.parser.num_errors(); ++i) {
    const ParserError& e = p.parser.error(i);
    if (e.message.find("operator If ") != std::string::npos) continue;
    s += e.to_string() + "\n";
  }
  return s;
}

TEST(OnnxImporter, SubgraphsKeepOuterReferencesByName) {
  auto p = parse_model(if_model());
  EXPECT_EQ(errors_besides_if(*p), "");
  ir::Graph& g = p->graph();
  ASSERT_EQ(g.nodes().size(), 1u);
  const ir::Node& n = *g.nodes()[0];
  const ir::Attribute* then_a = n.attrs.find("then_branch");
  ASSERT_TRUE(then_a && then_a->kind == ir::Attribute::Kind::kGraph && then_a->g);
  const ir::Graph& then_g = *then_a->g;
  EXPECT_EQ(then_g.name, "then");
  EXPECT_EQ(then_g.outer_references(), (std::vector<std::string>{"x"}));
  ASSERT_EQ(then_g.nodes().size(), 1u);
  const ir::Value* x_inside = then_g.nodes()[0]->inputs[0];
  EXPECT_EQ(x_inside->name, "x");
  EXPECT_EQ(x_inside->dtype, DataType::kFloat32);  // copied from the outer value
  EXPECT_EQ(x_inside->producer, nullptr);
  EXPECT_FALSE(x_inside->is_constant());
  EXPECT_NE(x_inside, g.find_value("x"));
  EXPECT_TRUE(ir::verify(then_g).ok());
  const ir::Graph& else_g = *n.attrs.find("else_branch")->g;
  EXPECT_EQ(else_g.outer_references(), (std::vector<std::string>{"w"}));
  // The outer graph's references include what its subgraphs capture.
  EXPECT_TRUE(g.outer_references().empty());
  EXPECT_EQ(else_g.nodes()[0]->opset, 17);
}

TEST(OnnxImporter, ErrorsInsideSubgraphsNameThePath) {
  onnx::ModelProto m = if_model();
  auto* then_g = m.mutable_graph()->mutable_node(0)->mutable_attribute(0)->mutable_g();
  add_node(then_g, "NoSuchOp", {"nowhere"}, {"junk"}, "inner");
  auto p = parse_model(m);
  EXPECT_FALSE(p->ok);
  EXPECT_TRUE(p->has_error({"node 'branch' (If)", "in subgraph 'then_branch' of node 'branch' (If)",
                            "node 'inner' (NoSuchOp)", "'nowhere' is not defined", "enclosing graph"}))
      << p->all_errors();
  EXPECT_TRUE(p->has_error({"in subgraph 'then_branch'", "operator NoSuchOp"})) << p->all_errors();
  for (int i = 0; i < p->parser.num_errors(); ++i) EXPECT_EQ(p->parser.error(i).node_index, 0);
}

TEST(OnnxImporter, ModelLocalFunctionsAreInlined) {
  onnx::ModelProto m = make_model(17);
  auto* od = m.add_opset_import();
  od->set_domain("local");
  od->set_version(1);
  auto* f = m.add_functions();
  f->set_name("Twice");
  f->set_domain("local");
  f->add_input("a");
  f->add_output("b");
  f->add_attribute("tag");
  auto* fo = f->add_opset_import();
  fo->set_domain("");
  fo->set_version(16);
  auto* n1 = f->add_node();
  n1->set_op_type("Identity");
  n1->add_input("a");
  n1->add_output("mid");
  auto* ref = n1->add_attribute();
  ref->set_name("label");
  ref->set_type(AP::STRING);
  ref->set_ref_attr_name("tag");
  auto* n2 = f->add_node();
  n2->set_op_type("Identity");
  n2->add_input("mid");
  n2->add_output("b");
  auto* g = m.mutable_graph();
  add_input(g, "x");
  auto* c1 = add_node(g, "Twice", {"x"}, {"h"}, "call1");
  c1->set_domain("local");
  add_attr(c1, "tag", AP::STRING)->set_s("first");
  auto* c2 = add_node(g, "Twice", {"h"}, {"y"}, "call2");
  c2->set_domain("local");
  add_output(g, "y");
  auto p = parse_model(m);
  ASSERT_TRUE(p->ok) << p->all_errors();
  ir::Graph& ig = p->graph();
  ASSERT_EQ(ig.nodes().size(), 4u);
  for (auto& n : ig.nodes()) {
    EXPECT_EQ(n->op_type, "Identity");
    EXPECT_EQ(n->opset, 16);  // the function's own opset_import
  }
  EXPECT_EQ(ig.nodes()[0]->inputs[0]->name, "x");
  EXPECT_EQ(ig.nodes()[1]->outputs[0]->name, "h");
  EXPECT_EQ(ig.nodes()[3]->outputs[0]->name, "y");
  // Internal values of the two calls do not clash.
  EXPECT_NE(ig.nodes()[0]->outputs[0]->name, ig.nodes()[2]->outputs[0]->name);
  EXPECT_EQ(ig.nodes()[0]->attrs.get_string("label", "?"), "first");
  EXPECT_FALSE(ig.nodes()[2]->attrs.has("label"));  // not given, no default
  EXPECT_NE(ig.nodes()[0]->name.find("call1"), std::string::npos);
  EXPECT_TRUE(ir::verify(ig).ok());
}

TEST(OnnxImporter, RecursiveFunctionsAndBadCallsAreErrors) {
  onnx::ModelProto m = make_model(17);
  auto* od = m.add_opset_import();
  od->set_domain("local");
  od->set_version(1);
  auto* f = m.add_functions();
  f->set_name("Forever");
  f->set_domain("local");
  f->add_input("a");
  f->add_output("b");
  auto* n = f->add_node();
  n->set_op_type("Forever");
  n->set_domain("local");
  n->add_input("a");
  n->add_output("b");
  auto* g = m.mutable_graph();
  add_input(g, "x");
  add_node(g, "Forever", {"x"}, {"y"}, "call")->set_domain("local");
  add_node(g, "Forever", {"x", "x"}, {"z"}, "too_many")->set_domain("local");
  add_output(g, "y");
  auto p = parse_model(m);
  EXPECT_FALSE(p->ok);
  EXPECT_TRUE(p->has_error({"'call'", "nest deeper"})) << p->all_errors();
  EXPECT_TRUE(p->has_error({"'too_many'", "with 2 inputs"})) << p->all_errors();
}

TEST(OnnxImporter, ParseIntoANetworkThatHoldsAGraphIsRefused) {
  RecordingLogger logger;
  NetworkDefinition net;
  net.add_input("taken", DataType::kFloat32, {1});
  OnnxParser parser(net, logger);
  std::string bytes = identity_model().SerializeAsString();
  EXPECT_FALSE(parser.parse(bytes.data(), bytes.size()));
  ASSERT_EQ(parser.num_errors(), 1);
  EXPECT_NE(parser.error(0).message.find("already holds a graph"), std::string::npos);
  parser.clear_errors();
  EXPECT_EQ(parser.num_errors(), 0);
}

}  // namespace
}  // namespace kiln::test
