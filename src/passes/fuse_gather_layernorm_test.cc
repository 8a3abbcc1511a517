// fuse_gather_layernorm: BERT's embedding lookup + SkipLayerNormalization becomes one
// GatherSkipLayerNormalization (golden graph, same outputs on the reference kernels);
// CPU engines, a gathered tensor read elsewhere and a used sum output stay as they are.
#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "passes/pass.h"
#include "passes/pass_test_util.h"

namespace kiln::passes {
namespace {

using testing::fused_from;
using testing::op_types;
using testing::run_graph;

constexpr int64_t kVocab = 13, kSeq = 5, kHidden = 8;

struct Net {
  ir::Graph g;
  ir::Node* gather = nullptr;
  ir::Node* norm = nullptr;
};

// ids [2, kSeq] int64 -> Gather(table) -> SkipLayerNormalization(., pos [kSeq, kHidden], gamma, beta) -> y.
// `extra_reader`: the gathered tensor is a graph output too; `sum_out`: the norm's sum output is read.
void build(Net& n, std::mt19937& rng, bool extra_reader = false, bool sum_out = false) {
  ir::Graph& g = n.g;
  g.opset_imports[""] = 17;
  g.opset_imports["com.microsoft"] = 1;
  ir::Value* ids = g.add_value("ids", DataType::kInt64, Shape{2, kSeq}).value();
  g.inputs.push_back(ids);
  ir::Value* table = g.add_constant("table", test::random_tensor(DataType::kFloat32, {kVocab, kHidden}, rng));
  ir::Value* pos = g.add_constant("pos", test::random_tensor(DataType::kFloat32, {kSeq, kHidden}, rng));
  ir::Value* gamma = g.add_constant("gamma", test::random_tensor(DataType::kFloat32, {kHidden}, rng, 0.5, 1.5));
  ir::Value* beta = g.add_constant("beta", test::random_tensor(DataType::kFloat32, {kHidden}, rng));
  ir::Value* e = g.add_value("e", DataType::kFloat32, Shape{2, kSeq, kHidden}).value();
  n.gather = g.add_node("Gather", {table, ids}, {e}, "word_embeddings");
  n.gather->opset = 13;
  ir::Value* y = g.add_value("y", DataType::kFloat32, Shape{2, kSeq, kHidden}).value();
  std::vector<ir::Value*> outs = {y};
  if (sum_out) outs = {y, nullptr, nullptr, g.add_value("s", DataType::kFloat32, Shape{2, kSeq, kHidden}).value()};
  n.norm = g.add_node("SkipLayerNormalization", {e, pos, gamma, beta}, outs, "LayerNorm");
  n.norm->domain = "com.microsoft";
  n.norm->opset = 1;
  n.norm->attrs.set("epsilon", ir::Attribute::from_float(1e-5f));
  for (ir::Value* o : outs)
    if (o) g.outputs.push_back(o);
  if (extra_reader) g.outputs.push_back(e);
}

Status run(ir::Graph& g, DeviceType device = DeviceType::kCUDA) {
  return testing::run_for_device(fuse_gather_layernorm, g, device);
}

std::map<std::string, Tensor> random_ids(std::mt19937& rng) {
  Tensor ids = Tensor::empty(DataType::kInt64, {2, kSeq});
  std::uniform_int_distribution<int64_t> pick(-kVocab, kVocab - 1);
  for (int64_t i = 0; i < ids.numel(); ++i) ids.set_from_double(i, static_cast<double>(pick(rng)));
  return {{"ids", ids}};
}

TEST(FuseGatherLayerNorm, EmbeddingLookupAndNormBecomeOneNode) {
  std::mt19937 rng(1);
  Net n;
  build(n, rng);
  std::unique_ptr<ir::Graph> before(n.g.clone());
  ASSERT_TRUE(run(n.g).ok());
  ASSERT_TRUE(ir::verify(n.g).ok());
  EXPECT_EQ(op_types(n.g), (std::vector<std::string>{"GatherSkipLayerNormalization"}));
  const ir::Node& f = *n.g.nodes()[0];
  EXPECT_EQ(f.domain, "kiln");
  ASSERT_EQ(f.inputs.size(), 5u);
  EXPECT_EQ(f.inputs[0]->name, "table");
  EXPECT_EQ(f.inputs[1]->name, "ids");
  EXPECT_EQ(f.inputs[2]->name, "pos");
  EXPECT_EQ(f.outputs.size(), 1u);
  EXPECT_FLOAT_EQ(f.attrs.get_float("epsilon", 0), 1e-5f);
  EXPECT_EQ(fused_from(f), (std::vector<std::string>{"word_embeddings", "LayerNorm"}));
  for (int trial = 0; trial < 3; ++trial) {
    auto in = random_ids(rng);
    testing::expect_outputs_close(*before, run_graph(n.g, in), run_graph(*before, in), 1e-6, 1e-6);
  }
}

TEST(FuseGatherLayerNorm, LeavesCpuEnginesSharedLookupsAndUsedSums) {
  std::mt19937 rng(2);
  const std::vector<std::string> unfused = {"Gather", "SkipLayerNormalization"};
  Net cpu, shared, sum;
  build(cpu, rng);
  ASSERT_TRUE(run(cpu.g, DeviceType::kCPU).ok());
  EXPECT_EQ(op_types(cpu.g), unfused);
  build(shared, rng, /*extra_reader=*/true);
  ASSERT_TRUE(run(shared.g).ok());
  EXPECT_EQ(op_types(shared.g), unfused);
  build(sum, rng, false, /*sum_out=*/true);
  ASSERT_TRUE(run(sum.g).ok());
  EXPECT_EQ(op_types(sum.g), unfused);
}

}  // namespace
}  // namespace kiln::passes
