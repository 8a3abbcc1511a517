// narrow_rows: golden graphs (which nodes run on fewer rows, where the Slices go) and the
// same outputs as the unoptimized graph on random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>

#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::context_for;
using testing::op_types;
using testing::run_graph;

struct G {
  ir::Graph g;
  std::mt19937 rng{7};
  G() { g.opset_imports[""] = 17; }
  ir::Value* input(const std::string& name, const Dims& d) {
    ir::Value* v = g.add_value(name, DataType::kFloat32, shape_from_dims(d)).value();
    g.inputs.push_back(v);
    return v;
  }
  ir::Value* weight(const Dims& d) { return g.add_constant("w", test::random_tensor(DataType::kFloat32, d, rng)); }
  ir::Value* ints(const std::vector<int64_t>& v, bool scalar = false) {
    Tensor t = Tensor::empty(DataType::kInt64, scalar ? Dims{} : Dims{int64_t(v.size())});
    std::copy(v.begin(), v.end(), t.data_as<int64_t>());  // (INT64_MAX has no exact double)
    return g.add_constant("i", std::move(t));
  }
  ir::Value* op(const std::string& type, const std::vector<ir::Value*>& ins, const ir::Attributes& a = {}) {
    ir::Value* o = g.add_unique_value(type);
    ir::Node* n = g.add_node(type, ins, {o}, g.unique_name(type));
    n->attrs = a;
    return o;
  }
  static ir::Attributes attr(const std::string& k, int64_t v) {
    ir::Attributes a;
    a.set(k, ir::Attribute::from_int(v));
    return a;
  }
  static ir::Attributes perm(std::vector<int64_t> p) {
    ir::Attributes a;
    a.set("perm", ir::Attribute::from_ints(std::move(p)));
    return a;
  }
  ir::Value* gather(ir::Value* x, int64_t axis, std::vector<int64_t> idx, bool scalar = true) {
    return op("Gather", {x, ints(idx, scalar)}, attr("axis", axis));
  }
  ir::Value* slice(ir::Value* x, int64_t b, int64_t e, int64_t axis) {
    return op("Slice", {x, ints({b}), ints({e}), ints({axis})});
  }
};

// Runs the pass; checks every output against the graph before it on random inputs.
void narrow_and_check(ir::Graph& g) {
  auto before = g.clone();
  PassContext ctx = context_for(g);
  testing::run_pass(g, infer_shapes, ctx);
  testing::run_pass(g, narrow_rows, ctx);
  std::mt19937 rng(11);
  std::map<std::string, Tensor> in;
  for (ir::Value* v : g.inputs) in[v->name] = test::random_tensor(v->dtype, shape_to_dims(*v->shape), rng);
  testing::expect_outputs_close(*before, run_graph(g, in), run_graph(*before, in), 1e-6, 1e-6);
}

const ir::Node* producer_of(const ir::Graph& g, const std::string& op, int which = 0) {
  for (auto& n : g.nodes())
    if (n->op_type == op && which-- == 0) return n.get();
  return nullptr;
}

Dims out_dims(const ir::Node* n) { return shape_to_dims(*n->outputs[0]->shape); }

// A transformer block's tail as ViT exports it, read at the class token:
//   h = LN(x); m = Erf(MatMul(h, W1) + b1); y = MatMul(m, W2) + x; t = Gather(LN(y), 0, axis=1)
TEST(NarrowRows, ViTClassTokenRunsTheBlockTailOnOneRow) {
  G b;
  ir::Value* x = b.input("x", {2, 5, 8});
  ir::Value* h = b.op("LayerNormalization", {x, b.weight({8}), b.weight({8})}, G::attr("axis", -1));
  ir::Value* m = b.op("Erf", {b.op("Add", {b.op("MatMul", {h, b.weight({8, 12})}), b.weight({12})})});
  ir::Value* y = b.op("Add", {b.op("MatMul", {m, b.weight({12, 8})}), x});
  ir::Value* ln = b.op("LayerNormalization", {y, b.weight({8}), b.weight({8})}, G::attr("axis", -1));
  b.g.outputs.push_back(b.gather(ln, 1, {0}));
  narrow_and_check(b.g);
  // One Slice of x (read by the first LayerNorm and the residual Add) and every op on [2, 1, *].
  EXPECT_EQ(op_types(b.g), (std::vector<std::string>{"Slice", "LayerNormalization", "MatMul", "Add", "Erf", "MatMul",
                                                     "Add", "LayerNormalization", "Gather"}));
  for (auto& n : b.g.nodes())
    if (n->op_type != "Gather") {
      EXPECT_EQ(shape_to_dims(*n->outputs[0]->shape)[1], 1) << n->op_type;
    }
}

// Attention read at rows 2..3 of the queries: Q's chain narrows, K and V stay whole.
TEST(NarrowRows, AttentionNarrowsTheQueriesOnly) {
  G b;
  ir::Value* q = b.input("q", {2, 3, 6, 4});
  ir::Value* k = b.input("k", {2, 3, 6, 4});
  ir::Value* v = b.input("v", {2, 3, 6, 4});
  ir::Value* qs = b.op("Mul", {q, b.weight({})});
  ir::Value* s = b.op("MatMul", {qs, b.op("Transpose", {k}, G::perm({0, 1, 3, 2}))});
  ir::Value* p = b.op("Softmax", {s}, G::attr("axis", -1));
  ir::Value* o = b.op("MatMul", {p, v});
  ir::Value* t = b.op("Transpose", {o}, G::perm({0, 2, 1, 3}));  // [2, 6, 3, 4]
  ir::Value* r = b.op("Reshape", {t, b.ints({2, 6, 12})});
  b.g.outputs.push_back(b.slice(r, 2, 4, 1));
  narrow_and_check(b.g);
  EXPECT_EQ(out_dims(producer_of(b.g, "Softmax")), (Dims{2, 3, 2, 6}));
  EXPECT_EQ(out_dims(producer_of(b.g, "Transpose", 0)), (Dims{2, 3, 4, 6}));  // K^T whole
  EXPECT_EQ(out_dims(producer_of(b.g, "Reshape")), (Dims{2, 2, 12}));
  // The output Slice now takes all its (rebased) input.
  const ir::Node* last = b.g.nodes().back().get();
  EXPECT_EQ(last->op_type, "Slice");
  EXPECT_EQ(last->input(1)->initializer->get_as_int64(0), 0);
}

// Rows of a flattened [S*B, E] GEMM read as [S, B, E], then batch-first: a block of the merged
// axis, and the Gather's index rebased.
TEST(NarrowRows, ReshapeSplitAndMergeMapRowBlocks) {
  G b;
  ir::Value* x = b.input("x", {5, 2, 3, 4});                 // [S, B, H, D]
  ir::Value* flat = b.op("Reshape", {x, b.ints({10, 12})});  // [S*B, E]
  ir::Value* y = b.op("Gemm", {flat, b.weight({6, 12}), b.weight({6})}, G::attr("transB", 1));
  ir::Value* sbe = b.op("Reshape", {y, b.ints({5, 2, 6})});
  ir::Value* bse = b.op("Transpose", {sbe}, G::perm({1, 0, 2}));
  b.g.outputs.push_back(b.gather(bse, 1, {3}));
  narrow_and_check(b.g);
  EXPECT_EQ(out_dims(producer_of(b.g, "Gemm")), (Dims{2, 6}));
  EXPECT_EQ(out_dims(producer_of(b.g, "Slice")), (Dims{1, 2, 3, 4}));
  EXPECT_EQ(b.g.nodes().back()->input(1)->initializer->get_as_int64(0), 0);  // index 3 -> 0
}

// A decoder's next-token logits: the LM head and the last block's MLP and attention rows run
// for the last position only (a causal mask [S, S] constant sliced to its last row; K and V
// whole); Slice(-1, INT64_MAX) reads it.
TEST(NarrowRows, LastTokenLogitsNarrowTheHeadAndTheCausalAttention) {
  G b;
  constexpr int64_t S = 6, E = 8, V = 20;
  ir::Value* x = b.input("x", {2, S, E});
  ir::Value* h = b.op("LayerNormalization", {x, b.weight({E}), b.weight({E})}, G::attr("axis", -1));
  ir::Value* q = b.op("MatMul", {h, b.weight({E, E})});
  ir::Value* k = b.op("MatMul", {h, b.weight({E, E})});
  ir::Value* v = b.op("MatMul", {h, b.weight({E, E})});
  Tensor mask = Tensor::empty(DataType::kFloat32, {S, S});
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j) mask.set_from_double(i * S + j, j > i ? -1e9 : 0.0);
  ir::Value* sc =
      b.op("Add", {b.op("MatMul", {q, b.op("Transpose", {k}, G::perm({0, 2, 1}))}), b.g.add_constant("m", mask)});
  ir::Value* att = b.op("MatMul", {b.op("Softmax", {sc}, G::attr("axis", -1)), v});
  ir::Value* y = b.op("Add", {x, att});
  ir::Value* logits = b.op("MatMul", {y, b.weight({E, V})});
  b.g.outputs.push_back(b.slice(logits, -1, std::numeric_limits<int64_t>::max(), 1));
  narrow_and_check(b.g);
  EXPECT_EQ(out_dims(producer_of(b.g, "Softmax")), (Dims{2, 1, S}));
  EXPECT_EQ(out_dims(b.g.nodes().back().get()), (Dims{2, 1, V}));
  int whole = 0, one = 0;  // K and V's projections whole; Q's, the scores', P V's and the head's on one row
  for (auto& n : b.g.nodes())
    if (n->op_type == "MatMul") (out_dims(n.get())[1] == S ? whole : one) += 1;
  EXPECT_EQ(whole, 2);
  EXPECT_EQ(one, 4);
}

// Two readers of different rows: the hull is computed, each reads its rows from it.
TEST(NarrowRows, ReadersShareTheHullOfTheirRows) {
  G b;
  ir::Value* x = b.input("x", {3, 7, 4});
  ir::Value* y = b.op("Tanh", {b.op("Sigmoid", {x})});
  b.g.outputs.push_back(b.gather(y, 1, {1}));
  b.g.outputs.push_back(b.gather(y, 1, {4, 2}, /*scalar=*/false));
  auto i32 = [&](int32_t v) {
    return b.g.add_constant("i32", Tensor::from_vector<int32_t>(DataType::kInt32, {1}, {v}));
  };
  b.g.outputs.push_back(b.op("Slice", {y, i32(3), i32(6), i32(1)}));  // int32 bounds keep their type
  narrow_and_check(b.g);
  EXPECT_EQ(out_dims(producer_of(b.g, "Tanh")), (Dims{3, 5, 4}));  // rows 1..5
  const ir::Node* sl = b.g.nodes().back().get();
  ASSERT_EQ(sl->op_type, "Slice");
  EXPECT_EQ(sl->input(1)->initializer->dtype(), DataType::kInt32);
  EXPECT_EQ(sl->input(1)->initializer->get_as_int64(0), 2);
}

// Where a reader needs every row, or the op mixes rows, nothing narrows.
TEST(NarrowRows, LeavesWholeTensorsAlone) {
  for (int c = 0; c < 4; ++c) {
    SCOPED_TRACE(c);
    G b;
    ir::Value* x = b.input("x", {2, 5, 8});
    ir::Value* y = nullptr;
    if (c == 0) y = b.op("Softmax", {b.op("Relu", {x})}, G::attr("axis", 1));  // over the rows
    if (c == 1) y = b.op("Tanh", {b.op("Relu", {x})});
    if (c == 2) y = b.op("MatMul", {b.op("Relu", {x}), b.weight({8, 3})});    // read along N
    if (c == 3) y = b.op("Reshape", {b.op("Relu", {x}), b.ints({5, 2, 8})});  // rows across the batch
    if (c == 1) b.g.outputs.push_back(y);                                     // also a graph output
    b.g.outputs.push_back(b.gather(y, c == 2 ? 2 : 1, {0}));
    const auto types = op_types(b.g);
    narrow_and_check(b.g);
    EXPECT_EQ(op_types(b.g), types);
    EXPECT_EQ(out_dims(producer_of(b.g, "Relu")), (Dims{2, 5, 8}));
  }
}

// Through the whole pipeline on the CPU: a ViT-like model's output is unchanged.
TEST(NarrowRows, PipelineKeepsTheOutputs) {
  G b;
  ir::Value* x = b.input("x", {2, 5, 8});
  ir::Value* h = b.op("LayerNormalization", {x, b.weight({8}), b.weight({8})}, G::attr("axis", -1));
  ir::Value* y = b.op("Add", {b.op("MatMul", {h, b.weight({8, 8})}), x});
  b.g.outputs.push_back(b.op("Gemm", {b.gather(y, 1, {0}), b.weight({3, 8})}, G::attr("transB", 1)));
  auto before = b.g.clone();
  PassContext ctx = context_for(b.g);
  ASSERT_TRUE(run_pipeline(b.g, ctx).ok());
  EXPECT_EQ(ctx.stats["narrowed_rows"], 3);
  std::mt19937 rng(3);
  std::map<std::string, Tensor> in{{"x", test::random_tensor(DataType::kFloat32, {2, 5, 8}, rng)}};
  testing::expect_outputs_close(*before, testing::execute(b.g, in), testing::execute(*before, in), 1e-5, 1e-5);
}

}  // namespace
}  // namespace kiln::passes
