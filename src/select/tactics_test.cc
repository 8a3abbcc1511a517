#include "select/tactics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>

#include "backends/cuda/api.h"
#include "backends/cuda/node_runner.h"
#include "backends/cuda/tactic_sink.h"
#include "builder/network_impl.h"
#include "harness/op_harness.h"
#include "harness/scoped_env.h"
#include "kiln/kiln.h"
#include "ops/attention/fused_attention.h"
#include "ops/conv/conv_graph_cuda.h"
#include "ops/matmul/gemm_splitk.h"
#include "ops/matmul/lt_config.h"
#include "plan/engine_file.h"

namespace kiln::select {
namespace {

namespace fs = std::filesystem;

class CaptureLogger : public Logger {
 public:
  explicit CaptureLogger(Severity s = Severity::kVerbose) : Logger(s) {}
  void log(Severity s, const std::string& m) override { lines.push_back({s, m}); }
  std::string find(const std::string& prefix) const {
    for (auto& [s, m] : lines)
      if (m.rfind(prefix, 0) == 0) return m;
    return "";
  }
  std::string all() const {
    std::string a;
    for (auto& [s, m] : lines) a += m + "\n";
    return a;
  }
  std::vector<std::pair<Severity, std::string>> lines;
};

// ---------------------------------------------------------------- choose_tactics with a fake timer

// Says MatMul nodes have `candidates` tactics 100, 101, ...; times come from `ms` (default 1 ms).
class FakeTimer : public TacticTimer {
 public:
  int candidates = 10;
  std::map<int64_t, float> ms;
  std::set<int64_t> failing;
  std::vector<std::string> prepared;
  std::vector<std::pair<std::string, int64_t>> timed;
  std::set<std::string> compiling;                               ///< nodes whose kernel compiles on a first run
  std::vector<std::pair<std::vector<std::string>, int>> warmed;  ///< each warm(): node names and budget

  bool has_tactics(const ir::Node& node) override { return node.op_type == "MatMul"; }
  bool compiles(const ir::Node& node) override { return compiling.count(node.name) > 0; }
  int warm(const std::vector<WarmItem>& items, int budget) override {
    EXPECT_TRUE(timed.empty()) << "warm() must come before any timing";
    std::vector<std::string> names;
    for (const WarmItem& w : items) {
      names.push_back(w.node->name);
      for (const auto& t : w.inputs) EXPECT_TRUE(t.shape && shape_is_concrete(*t.shape)) << w.node->name;
    }
    warmed.push_back({names, budget});
    return static_cast<int>(items.size());
  }
  Result<std::vector<int64_t>> prepare(const ir::Node& node, const std::vector<ops::TensorType>& inputs,
                                       const std::vector<ops::TensorType>& outputs) override {
    prepared.push_back(node.name);
    for (const auto& t : inputs) EXPECT_TRUE(t.shape && shape_is_concrete(*t.shape)) << node.name;
    for (const auto& t : outputs) EXPECT_TRUE(t.shape && shape_is_concrete(*t.shape)) << node.name;
    std::vector<int64_t> ids;
    for (int i = 0; i < candidates; ++i) ids.push_back(100 + i);
    return ids;
  }
  Result<float> time(const ir::Node& node, int64_t tactic) override {
    timed.push_back({node.name, tactic});
    if (failing.count(tactic)) return Status(ErrorCode::kInternal, "tactic " + std::to_string(tactic) + " broke");
    auto it = ms.find(tactic);
    return it == ms.end() ? 1.f : it->second;
  }
  Result<std::string> state(const ir::Node& node, int64_t tactic) override {
    if (!compiling.count(node.name)) return std::string();
    return "compiled " + node.name + " #" + std::to_string(tactic);
  }
  int times_of(const std::string& node) const {
    int n = 0;
    for (auto& [name, t] : timed) n += name == node;
    return n;
  }
};

// x[batch, 16] -> mm1 (16x32) -> mm2 (32x32) -> mm3 (32x32, same signature as mm2) -> relu -> y.
struct MatMulChain {
  ir::Graph g;
  Propagation opt;
  explicit MatMulChain(bool concrete = true) {
    g.opset_imports[""] = 17;
    std::mt19937 rng(1);
    ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 16}).value();
    g.inputs.push_back(x);
    ir::Value* w1 = g.add_constant("w1", test::random_tensor(DataType::kFloat32, {16, 32}, rng));
    ir::Value* w2 = g.add_constant("w2", test::random_tensor(DataType::kFloat32, {32, 32}, rng));
    ir::Value* w3 = g.add_constant("w3", test::random_tensor(DataType::kFloat32, {32, 32}, rng));
    ir::Value* a = g.add_unique_value("a");
    ir::Value* b = g.add_unique_value("b");
    ir::Value* c = g.add_unique_value("c");
    ir::Value* y = g.add_value("y").value();
    g.add_node("MatMul", {x, w1}, {a}, "mm1");
    g.add_node("MatMul", {a, w2}, {b}, "mm2");
    g.add_node("MatMul", {b, w3}, {c}, "mm3");
    g.add_node("Relu", {c}, {y}, "relu");
    g.outputs = {y};
    for (auto& n : g.nodes()) {
      n->kernel = n->op_type == "MatMul" ? "cuda.cublaslt" : "cuda.relu";
      n->device = ir::Device::kCUDA;
    }
    Shape xs = concrete ? Shape{4, 16} : Shape{Dim::symbol("batch"), 16};
    Status s = propagate(g, {{"x", xs}}, opt, /*strict=*/false);
    EXPECT_TRUE(s.ok()) << s.to_string();
  }
  ir::Node* node(const std::string& name) {
    for (auto& n : g.nodes())
      if (n->name == name) return n.get();
    return nullptr;
  }
  int64_t tactic(const std::string& name) { return node(name)->attrs.get_int(ops::kTacticAttr, -1); }
  bool has_tactic(const std::string& name) { return node(name)->attrs.has(ops::kTacticAttr); }
};

Status choose(MatMulChain& m, int level, TimingCache& cache, FakeTimer& timer, TacticStats& stats, Logger& logger) {
  return choose_tactics(m.g, m.opt, level, "tf32=0", cache, timer, logger, stats);
}

TEST(Tactics, BudgetPerOptimizationLevel) {
  EXPECT_EQ(tactic_budget(0), 0);
  EXPECT_EQ(tactic_budget(1), 2);
  EXPECT_EQ(tactic_budget(2), 4);
  EXPECT_EQ(tactic_budget(3), 32);
  EXPECT_EQ(tactic_budget(4), 64);
  EXPECT_EQ(tactic_budget(5), -1);
}

TEST(Tactics, OptLevelZeroAddsNoTactics) {
  MatMulChain m;
  FakeTimer timer;
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 0, cache, timer, st, log).ok());
  for (auto& n : m.g.nodes()) EXPECT_FALSE(n->attrs.has(ops::kTacticAttr)) << n->name;
  EXPECT_TRUE(timer.prepared.empty());
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(st.timed + st.cached + st.single, 0);
}

TEST(Tactics, LevelOneTimesTheTopTwoAndKeepsTheFastest) {
  MatMulChain m;
  FakeTimer timer;
  timer.ms = {{100, 2.f}, {101, 1.5f}, {105, 0.1f}};  // 105 is faster but outside the top two
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 1, cache, timer, st, log).ok());
  EXPECT_EQ(m.tactic("mm1"), 101);
  EXPECT_EQ(m.tactic("mm2"), 101);
  EXPECT_EQ(m.tactic("mm3"), 101);
  EXPECT_FALSE(m.has_tactic("relu"));
  EXPECT_EQ(timer.times_of("mm1"), 2 * 3);  // 3 rounds over the candidates
  // mm3 has mm2's signature: answered by the in-memory cache, not timed again.
  EXPECT_EQ(timer.prepared, (std::vector<std::string>{"mm1", "mm2"}));
  EXPECT_EQ(st.timed, 2);
  EXPECT_EQ(st.cached, 1);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_DOUBLE_EQ(st.picked_ms, 3 * 1.5);  // every node with tactics, the cached one included
}

TEST(Tactics, LevelFiveTimesEveryCandidate) {
  MatMulChain m;
  FakeTimer timer;
  timer.candidates = 20;
  timer.ms = {{100, 2.f}, {119, 0.3f}};
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 5, cache, timer, st, log).ok());
  EXPECT_EQ(m.tactic("mm1"), 119);
  EXPECT_EQ(timer.times_of("mm1"), 20 * 3);
}

// -v lists what each pick was chosen over: every timed candidate, in the library's order,
// with its median (or "failed").
TEST(Tactics, VerboseListsEveryTimedCandidate) {
  MatMulChain m;
  FakeTimer timer;
  timer.candidates = 3;
  timer.ms = {{100, 2.f}, {102, 0.5f}};
  timer.failing = {101};
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 5, cache, timer, st, log).ok());
  const std::string line = log.find("candidates of ");
  ASSERT_FALSE(line.empty()) << log.all();
  EXPECT_NE(line.find("heuristic order: 100 2.0000 ms; 101 failed; 102 0.5000 ms"), std::string::npos) << line;
  EXPECT_EQ(m.tactic("mm1"), 102);
}

TEST(Tactics, HeuristicChoiceKeptUnlessClearlyBeaten) {
  MatMulChain m;
  FakeTimer timer;
  timer.ms = {{100, 1.0f}, {101, 0.98f}};  // 2% faster: noise, the heuristic's first stays
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 1, cache, timer, st, log).ok());
  EXPECT_EQ(m.tactic("mm1"), 100);
}

TEST(Tactics, CacheAnswersARebuildWithoutTiming) {
  TimingCache cache("k");
  std::map<std::string, int64_t> first;
  {
    MatMulChain m;
    FakeTimer timer;
    timer.ms = {{103, 0.5f}};
    TacticStats st;
    CaptureLogger log;
    ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
    for (const char* n : {"mm1", "mm2", "mm3"}) first[n] = m.tactic(n);
    EXPECT_EQ(first["mm1"], 103);
  }
  // Through the file format, as a second build would see it.
  auto reread = TimingCache::parse(cache.serialize(), "mem");
  ASSERT_TRUE(reread.ok()) << reread.status().to_string();
  MatMulChain m;
  FakeTimer timer;
  timer.ms = {{104, 0.1f}};  // would change the choice if anything were timed
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 3, *reread, timer, st, log).ok());
  EXPECT_TRUE(timer.prepared.empty());
  EXPECT_EQ(st.timed, 0);
  EXPECT_EQ(st.cached, 3);
  for (const char* n : {"mm1", "mm2", "mm3"}) EXPECT_EQ(m.tactic(n), first[n]) << n;
}

TEST(Tactics, NarrowCacheEntriesAreRetimedAtAHigherLevel) {
  TimingCache cache("k");
  {
    MatMulChain m;
    FakeTimer timer;
    TacticStats st;
    CaptureLogger log;
    ASSERT_TRUE(choose(m, 1, cache, timer, st, log).ok());
  }
  MatMulChain m;
  FakeTimer timer;
  timer.ms = {{106, 0.1f}};
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
  EXPECT_EQ(st.timed, 2) << "entries that timed 2 candidates must not answer a level that times 8";
  EXPECT_EQ(m.tactic("mm1"), 106);
  // ... and the wider entries now answer level 1.
  MatMulChain again;
  FakeTimer timer2;
  TacticStats st2;
  ASSERT_TRUE(choose(again, 1, cache, timer2, st2, log).ok());
  EXPECT_EQ(st2.cached, 3);
  EXPECT_EQ(again.tactic("mm1"), 106);
}

// Nodes whose kernel compiles on a first run are handed to warm() together, once per
// signature, with the level's budget, before any timing; cached ones are not.
TEST(Tactics, CompilingNodesAreWarmedTogetherBeforeTiming) {
  TimingCache cache("k");
  {
    MatMulChain m;
    FakeTimer timer;
    timer.compiling = {"mm1", "mm2", "mm3"};
    TacticStats st;
    CaptureLogger log;
    ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
    ASSERT_EQ(timer.warmed.size(), 1u);
    // mm3 has mm2's signature: warming mm2 warms it.
    EXPECT_EQ(timer.warmed[0].first, (std::vector<std::string>{"mm1", "mm2"}));
    EXPECT_EQ(timer.warmed[0].second, 32);
    EXPECT_EQ(st.warmed, 2);
    EXPECT_EQ(st.timed, 2);  // warming does not replace timing
    EXPECT_NE(log.find("ran the candidates of 2 layers"), "") << log.all();
  }
  {
    // A rebuild answered by the cache warms nothing; nodes that do not compile never are.
    MatMulChain m;
    FakeTimer timer;
    timer.compiling = {"mm1", "mm2", "mm3"};
    TacticStats st;
    CaptureLogger log;
    ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
    EXPECT_TRUE(timer.warmed.empty());
    MatMulChain fresh;
    FakeTimer plain;
    TimingCache empty("k");
    ASSERT_TRUE(choose(fresh, 5, empty, plain, st, log).ok());
    EXPECT_TRUE(plain.warmed.empty());
  }
}

// What a timed pick compiled goes onto its node (the engine keeps it) and into the timing
// cache, which gives it back on a rebuild; once per signature (mm3 shares mm2's plan when
// the engine loads), and nodes that compile nothing keep none.
TEST(Tactics, TimedCompilingPicksKeepTheirState) {
  MatMulChain m;
  FakeTimer timer;
  timer.compiling = {"mm1", "mm2", "mm3"};
  timer.ms = {{104, 0.5f}};
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
  auto state = [&](const std::string& name) -> std::string {
    for (auto& n : m.g.nodes())
      if (n->name == name) return n->attrs.get_string(cuda::kKernelStateAttr, "");
    return "?";
  };
  EXPECT_EQ(state("mm1"), "compiled mm1 #104");
  EXPECT_EQ(state("mm2"), "compiled mm2 #104");
  EXPECT_EQ(state("mm3"), "");  // mm2's signature: the plan is shared at load
  EXPECT_EQ(st.states, 2);
  // A rebuild from the cache (through its file) times nothing and keeps the same states.
  auto reread = TimingCache::parse(cache.serialize(), "mem");
  ASSERT_TRUE(reread.ok()) << reread.status().to_string();
  MatMulChain again;
  FakeTimer timer2;
  timer2.compiling = timer.compiling;
  TacticStats st2;
  ASSERT_TRUE(choose(again, 3, *reread, timer2, st2, log).ok());
  EXPECT_TRUE(timer2.timed.empty());
  EXPECT_EQ(st2.states, 2);
  for (auto& n : again.g.nodes())
    EXPECT_EQ(n->attrs.get_string(cuda::kKernelStateAttr, ""), n->name == "mm3" ? "" : state(n->name)) << n->name;
}

TEST(Tactics, SingleCandidateNodesGetNoTacticButAreCached) {
  MatMulChain m;
  FakeTimer timer;
  timer.candidates = 1;
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
  for (auto& n : m.g.nodes()) EXPECT_FALSE(n->attrs.has(ops::kTacticAttr)) << n->name;
  EXPECT_TRUE(timer.timed.empty());
  EXPECT_EQ(st.single, 2);
  EXPECT_EQ(st.cached, 1);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(Tactics, FailingTacticsAreSkipped) {
  MatMulChain m;
  FakeTimer timer;
  timer.failing = {100};
  timer.ms = {{101, 3.f}, {102, 2.f}};
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
  EXPECT_EQ(m.tactic("mm1"), 103) << "103..107 take the default 1 ms";

  MatMulChain all_fail;
  FakeTimer broken;
  broken.candidates = 3;
  broken.failing = {100, 101, 102};
  TimingCache cache2("k");
  TacticStats st2;
  CaptureLogger log2;
  ASSERT_TRUE(choose(all_fail, 3, cache2, broken, st2, log2).ok());
  EXPECT_FALSE(all_fail.has_tactic("mm1"));
  EXPECT_NE(log2.all().find("no tactic of 'mm1'"), std::string::npos) << log2.all();
  EXPECT_EQ(cache2.size(), 0u) << "a node nothing ran for must not be cached";
}

TEST(Tactics, NodesWithoutConcreteShapesAreLeftToTheHeuristic) {
  MatMulChain m(/*concrete=*/false);
  m.node("mm1")->attrs.set(ops::kTacticAttr, ir::Attribute::from_int(5));  // stale: removed
  FakeTimer timer;
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose(m, 3, cache, timer, st, log).ok());
  EXPECT_TRUE(timer.prepared.empty());
  EXPECT_FALSE(m.has_tactic("mm1"));
}

// ---------------------------------------------------------------- engines

// Networks for the build tests; `dims` of x give the profile (min, opt, max batch).
struct Net {
  std::unique_ptr<NetworkDefinition> net = std::make_unique<NetworkDefinition>();
  std::string input = "x";
  Dims opt_dims;
};

// The graph of `n` (opset 17) with its float32 input "x" of `shape`.
ir::Graph& start_net(Net& n, Shape shape, ir::Value** x) {
  ir::Graph& g = network_graph(*n.net);
  g.opset_imports[""] = 17;
  *x = g.add_value("x", DataType::kFloat32, std::move(shape)).value();
  g.inputs.push_back(*x);
  return g;
}

// x[N, 8, 16, 16] -> Conv 3x3 + bias -> Relu -> Conv 3x3 stride 2 -> ConvTranspose 2x2 stride 2 -> y[N, 8, 16, 16]
Net conv_net() {
  Net n;
  std::mt19937 rng(7);
  ir::Value* x = nullptr;
  ir::Graph& g = start_net(n, Shape{Dim::symbol("N"), 8, 16, 16}, &x);
  auto w = [&](const char* name, Dims d) {
    return g.add_constant(name, test::random_tensor(DataType::kFloat32, d, rng, -0.5, 0.5));
  };
  ir::Value* c1 = g.add_unique_value("c1");
  ir::Value* r1 = g.add_unique_value("r1");
  ir::Value* c2 = g.add_unique_value("c2");
  ir::Value* y = g.add_value("y").value();
  ir::Node* conv1 = g.add_node("Conv", {x, w("w1", {16, 8, 3, 3}), w("b1", {16})}, {c1}, "conv1");
  conv1->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  g.add_node("Relu", {c1}, {r1}, "relu1");
  ir::Node* conv2 = g.add_node("Conv", {r1, w("w2", {16, 16, 3, 3})}, {c2}, "conv2");
  conv2->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
  conv2->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
  ir::Node* up = g.add_node("ConvTranspose", {c2, w("w3", {16, 8, 2, 2}), w("b3", {8})}, {y}, "up");
  up->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
  g.outputs = {y};
  n.opt_dims = {2, 8, 16, 16};
  return n;
}

// x[N, 64] -> MatMul 64x128 + bias -> Relu -> MatMul 128x48 -> Gemm (transB, C) -> y[N, 16]
Net matmul_net() {
  Net n;
  std::mt19937 rng(9);
  ir::Value* x = nullptr;
  ir::Graph& g = start_net(n, Shape{Dim::symbol("N"), 64}, &x);
  auto w = [&](const char* name, Dims d) {
    return g.add_constant(name, test::random_tensor(DataType::kFloat32, d, rng, -0.5, 0.5));
  };
  ir::Value* m1 = g.add_unique_value("m1");
  ir::Value* a1 = g.add_unique_value("a1");
  ir::Value* r1 = g.add_unique_value("r1");
  ir::Value* m2 = g.add_unique_value("m2");
  ir::Value* y = g.add_value("y").value();
  g.add_node("MatMul", {x, w("w1", {64, 128})}, {m1}, "mm1");
  g.add_node("Add", {m1, w("b1", {128})}, {a1}, "bias1");
  g.add_node("Relu", {a1}, {r1}, "relu1");
  g.add_node("MatMul", {r1, w("w2", {128, 48})}, {m2}, "mm2");
  ir::Node* gemm = g.add_node("Gemm", {m2, w("w3", {16, 48}), w("c3", {16})}, {y}, "gemm");
  gemm->attrs.set("transB", ir::Attribute::from_int(1));
  g.outputs = {y};
  n.opt_dims = {32, 64};
  return n;
}

// x[N, 16, 16, 16] -> three Conv + bias -> SiLU (x * Sigmoid(x)) layers of different
// shapes -> y: FusedConv SiLU nodes, whose FP16 candidates include runtime-fusion engines.
Net silu_net() {
  Net n;
  std::mt19937 rng(11);
  ir::Value* x = nullptr;
  ir::Graph& g = start_net(n, Shape{Dim::symbol("N"), 16, 16, 16}, &x);
  ir::Value* cur = x;
  const int64_t chans[] = {16, 32, 32, 16};
  for (int i = 0; i < 3; ++i) {
    const std::string k = std::to_string(i);
    const int64_t ksize = i == 2 ? 1 : 3;
    ir::Value* w = g.add_constant(
        "w" + k, test::random_tensor(DataType::kFloat32, {chans[i + 1], chans[i], ksize, ksize}, rng, -0.3, 0.3));
    ir::Value* b = g.add_constant("b" + k, test::random_tensor(DataType::kFloat32, {chans[i + 1]}, rng, -0.3, 0.3));
    ir::Value* c = g.add_unique_value("c" + k);
    ir::Value* s = g.add_unique_value("s" + k);
    ir::Value* out = i == 2 ? g.add_value("y").value() : g.add_unique_value("a" + k);
    ir::Node* conv = g.add_node("Conv", {cur, w, b}, {c}, "conv" + k);
    if (ksize == 3) conv->attrs.set("pads", ir::Attribute::from_ints({1, 1, 1, 1}));
    if (i == 1) conv->attrs.set("strides", ir::Attribute::from_ints({2, 2}));
    g.add_node("Sigmoid", {c}, {s}, "sig" + k);
    g.add_node("Mul", {c, s}, {out}, "silu" + k);
    cur = out;
  }
  g.outputs = {cur};
  n.opt_dims = {4, 16, 16, 16};
  return n;
}

struct Built {
  std::vector<uint8_t> bytes;
  plan::EngineModel model;
  std::string log;
  std::string tactics_line;
  int stat(const std::string& k) const { return model.build_stats.count(k) ? model.build_stats.at(k) : 0; }
  std::map<std::string, int64_t> tactics() const {
    std::map<std::string, int64_t> t;
    for (auto& n : model.graph->nodes())
      if (n->attrs.has(ops::kTacticAttr)) t[n->name] = n->attrs.get_int(ops::kTacticAttr, -1);
    return t;
  }
};

Result<Built> build(Net& n, DeviceType device, int level, const std::string& cache_path, bool fp16 = false) {
  CaptureLogger logger(Logger::Severity::kVerbose);
  Builder builder(logger);
  auto config = builder.create_builder_config();
  config->set_device(device);
  config->clear_flag(BuilderFlag::kTF32);
  if (fp16) config->set_flag(BuilderFlag::kFP16);
  config->set_optimization_level(level);
  config->set_timing_cache_path(cache_path);
  Dims lo = n.opt_dims, hi = n.opt_dims;
  lo[0] = 1;
  hi[0] = n.opt_dims[0] * 2;
  OptimizationProfile p;
  KILN_RETURN_IF_ERROR(p.set_shape(n.input, lo, n.opt_dims, hi));
  config->add_optimization_profile(p);
  Built b;
  KILN_ASSIGN_OR_RETURN(b.bytes, builder.build_serialized_network(*n.net, *config));
  KILN_ASSIGN_OR_RETURN(b.model, plan::deserialize_engine(b.bytes.data(), b.bytes.size()));
  b.log = logger.all();
  b.tactics_line = logger.find("tactics: ");
  return b;
}

std::string tactic_text(const std::map<std::string, int64_t>& t) {
  std::string s;
  for (auto& [n, v] : t) s += n + "=" + std::to_string(v) + " ";
  return s.empty() ? "(none)" : s;
}

TEST(TacticsEngine, CpuEnginesGetNoTactics) {
  Net n = matmul_net();
  auto b = build(n, DeviceType::kCPU, 5, "");
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_TRUE(b->tactics().empty()) << tactic_text(b->tactics());
  EXPECT_EQ(b->stat("tactics_timed"), 0);
}

TEST(Tactics, DescribedInWordsForInspect) {
  EXPECT_EQ(describe_tactic("cuda.cudnn", -1), "");
  EXPECT_EQ(describe_tactic("cuda.cudnn", 1 * 4 + 1), "cuDNN legacy algo 1, math 1");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kShortcutTactic + 1),
            "kiln conv + shortcut GEMM, 64 pixels a CTA");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kShortcutTactic + 3),
            "kiln conv + shortcut GEMM, Hopper (TMA + wgmma), weights resident");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kChainTactic),
            "kiln bottleneck chain, Hopper (TMA + wgmma), one kernel");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kChainTactic + 1),
            "kiln bottleneck chain, two GEMMs one after the other");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kTacticBase | 12345), "cuDNN graph engine");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kTacticBase | ops::cudnn_graph::kFusedBit | 7),
            "cuDNN graph engine, fused epilogue");
  EXPECT_EQ(describe_tactic("cuda.cudnn", ops::cudnn_graph::kDirectTactic), "kiln direct conv");
  EXPECT_EQ(describe_tactic("cuda.cublaslt", 1234567890123), "#1234567890123");
  EXPECT_EQ(describe_tactic("cuda.cublaslt", ops::matmul::splitk::tactic_id(64, 2)),
            "kiln split-K GEMM, 64-row tiles, 2 CTA(s) per SM");
  // BERT bs128's QKV pick in session 20's walk: nvjet (algo 66) with 128 x 152 tiles.
  namespace ltc = ops::matmul::lt_config;
  ltc::Config qkv;
  qkv.algo = 66, qkv.tile = 407, qkv.stages = 35, qkv.cluster = 3, qkv.custom = 1;
  int64_t id = 0;
  ASSERT_TRUE(ltc::encode(qkv, id));
  EXPECT_EQ(describe_tactic("cuda.cublaslt", id),
            "cuBLASLt algo 66, tile 128x152, stages #35, cluster #3, custom 1 (not in the heuristic's list)");
  // ViT-B/16 bs256's pick on the H100 (cuDNN 9.14).
  EXPECT_EQ(describe_tactic("cuda.flash_attention", 328759942185250), "cuDNN fused attention engine");
  EXPECT_EQ(describe_tactic("cuda.flash_attention", 1), "kiln flash attention, variant 1");
  EXPECT_EQ(describe_tactic("cuda.flash_attention", ops::attn::kHopperTacticBase),
            "kiln Hopper attention (TMA + wgmma), 1 warp group a CTA");
  EXPECT_EQ(describe_tactic("cuda.flash_attention", ops::attn::kHopperTacticBase + 1),
            "kiln Hopper attention (TMA + wgmma), 2 warp groups a CTA");
  EXPECT_EQ(describe_tactic("cuda.flash_attention", ops::attn::kHopperTacticBase + 2),
            "kiln Hopper attention (TMA + wgmma), 2 warp groups a CTA, 32-key chunks");
  EXPECT_EQ(describe_tactic("cuda.flash_attention", ops::attn::kHopperTacticBase + 3),
            "kiln flash attention, variant " + std::to_string(ops::attn::kHopperTacticBase + 3));
}

// A timing cache names the candidate sets' revision in its key: a file written before a kernel
// gained candidates is set aside (a key mismatch: warned about, then rewritten), not read.
TEST(Tactics, TimingCacheKeyNamesTheCandidateRevision) {
  const std::string key = timing_cache_key_for("NVIDIA H100 80GB HBM3", "sm_90", "cudart 13000");
  EXPECT_EQ(key, "NVIDIA H100 80GB HBM3, sm_90, cudart 13000, kiln tactics r" + std::to_string(kTacticsRevision));
  const std::string before = "NVIDIA H100 80GB HBM3, sm_90, cudart 13000";  // a session-20 file's key
  TimingCache old(before);
  old.put("::sig", TimingEntry{7, 0.5f, 5, 5, ""});
  const std::string path = ::testing::TempDir() + "/kiln_tactics_revision.cache";
  ASSERT_TRUE(old.save(path).ok());
  CaptureLogger log;
  auto loaded = TimingCache::load(path, key, log);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  EXPECT_EQ(loaded->find("::sig"), nullptr) << "an older revision's entries must not answer";
  EXPECT_NE(log.all().find(before), std::string::npos) << log.all();
  std::remove(path.c_str());
}

// Opt-in candidates change what a node's timing chose among: such builds get their own
// timing-cache signatures.
TEST(Tactics, OptInCandidatesArePartOfTheSignature) {
  {
    test::ScopedEnv off("KILN_SPLITK_GEMM", nullptr);
    EXPECT_EQ(tactic_build_settings(false), "tf32=0");
    EXPECT_EQ(tactic_build_settings(true), "tf32=1");
  }
  test::ScopedEnv on("KILN_SPLITK_GEMM", "1");
  EXPECT_EQ(tactic_build_settings(true), "tf32=1 splitk=1");
  test::ScopedEnv variants("KILN_ATTENTION_WGMMA_VARIANTS", "0");
  EXPECT_EQ(tactic_build_settings(true), "tf32=1 splitk=1 attn_variants=0");
}

TEST(TacticsEngine, EngineFileKeepsTheTacticAttribute) {
  Net n = matmul_net();
  auto b = build(n, DeviceType::kCPU, 3, "");
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  plan::EngineModel m = b->model;
  ASSERT_FALSE(m.graph->nodes().empty());
  std::map<std::string, int64_t> want;
  int64_t v = 1234567890123;  // wider than 32 bits, as cuBLASLt config IDs are
  for (auto& node : m.graph->nodes()) {
    node->attrs.set(ops::kTacticAttr, ir::Attribute::from_int(v));
    want[node->name] = v++;
  }
  std::vector<uint8_t> bytes = plan::serialize_engine(m);
  auto back = plan::deserialize_engine(bytes.data(), bytes.size());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  std::map<std::string, int64_t> got;
  for (auto& node : back->graph->nodes()) {
    const ir::Attribute* a = node->attrs.find(ops::kTacticAttr);
    ASSERT_NE(a, nullptr) << node->name << " lost kiln.tactic";
    EXPECT_EQ(a->kind, ir::Attribute::Kind::kInt) << node->name;
    got[node->name] = a->i;
  }
  EXPECT_EQ(got, want) << "after: " << tactic_text(got) << "\nbefore: " << tactic_text(want);
}

// ---- CUDA (skipped without a GPU)

#define KILN_NEED_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason()

class TacticsGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kiln_tactics_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Builds `make()` twice with a timing cache at level 3 and checks outputs, the cache and the rebuild.
  void check_net(Net (*make)(), const char* what) {
    const std::string cache_path = (dir_ / "timing.cache").string();
    Net n = make();
    auto first = build(n, DeviceType::kCUDA, 3, cache_path);
    ASSERT_TRUE(first.ok()) << what << ": first CUDA build failed: " << first.status().to_string();
    Net cpu_net = make();
    auto cpu = build(cpu_net, DeviceType::kCPU, 3, "");
    ASSERT_TRUE(cpu.ok()) << what << ": CPU reference build failed: " << cpu.status().to_string();
    EXPECT_NE(first->tactics_line, "") << what << ": no 'tactics: ...' info line; log:\n" << first->log;
    const int timed = first->stat("tactics_timed"), cached = first->stat("tactics_cached"),
              single = first->stat("tactics_single");
    EXPECT_GE(timed, 1) << what << ": no layer had more than one candidate to time (cached " << cached << ", single "
                        << single << "); log:\n"
                        << first->log;
    // The cache file exists, is for this GPU, and holds one entry per distinct layer signature.
    auto key = timing_cache_key(0);
    ASSERT_TRUE(key.ok()) << key.status().to_string();
    CaptureLogger log;
    auto file = TimingCache::load(cache_path, *key, log);
    ASSERT_TRUE(file.ok()) << what << ": " << file.status().to_string();
    EXPECT_EQ(static_cast<int>(file->size()), timed + single)
        << what << ": cache entries vs timed + single-candidate layers; warnings: " << log.all();
    // Every chosen tactic is in the file.
    std::set<int64_t> in_file;
    for (auto& [sig, e] : file->entries()) in_file.insert(e.tactic);
    for (auto& [node, t] : first->tactics())
      EXPECT_TRUE(in_file.count(t)) << what << ": tactic " << t << " of '" << node << "' is not in the cache file";

    // Outputs against the CPU engine, at the opt batch (the timed shape) and another batch.
    Logger quiet(Logger::Severity::kError);
    Runtime rt(quiet);
    auto gpu_engine = rt.deserialize(first->bytes.data(), first->bytes.size());
    auto cpu_engine = rt.deserialize(cpu->bytes.data(), cpu->bytes.size());
    ASSERT_TRUE(gpu_engine.ok() && cpu_engine.ok()) << what;
    auto gctx = (*gpu_engine)->create_execution_context();
    auto cctx = (*cpu_engine)->create_execution_context();
    std::mt19937 rng(3);
    for (int64_t batch : {n.opt_dims[0], int64_t{1}, n.opt_dims[0] + 1}) {
      Dims d = n.opt_dims;
      d[0] = batch;
      Tensor x = test::random_tensor(DataType::kFloat32, d, rng);
      auto gy = gctx->infer({{"x", x}});
      auto cy = cctx->infer({{"x", x}});
      ASSERT_TRUE(gy.ok()) << what << " batch " << batch << ": " << gy.status().to_string();
      ASSERT_TRUE(cy.ok()) << what << " batch " << batch << ": " << cy.status().to_string();
      const Tensor& a = gy->at("y");
      const Tensor& b = cy->at("y");
      ASSERT_EQ(a.dims(), b.dims()) << what << " batch " << batch;
      EXPECT_LE(test::tolerance_ratio(a, b, 1e-3, 1e-3), 1.0)
          << what << " batch " << batch << ": CUDA output differs from the CPU engine beyond rtol 1e-3 / atol 1e-3 "
          << "(ratio " << test::tolerance_ratio(a, b, 1e-3, 1e-3) << ") with tactics " << tactic_text(first->tactics());
    }

    // A rebuild takes every tactic from the file and chooses the same ones.
    Net again = make();
    auto second = build(again, DeviceType::kCUDA, 3, cache_path);
    ASSERT_TRUE(second.ok()) << what << ": rebuild failed: " << second.status().to_string();
    EXPECT_EQ(second->stat("tactics_timed"), 0) << what << ": the rebuild timed layers again; log:\n" << second->log;
    EXPECT_EQ(second->stat("tactics_cached"), timed + cached + single)
        << what << ": the rebuild should answer every layer with tactics from the cache; log:\n"
        << second->log;
    EXPECT_EQ(second->tactics(), first->tactics())
        << what << ": first build " << tactic_text(first->tactics()) << "\nrebuild " << tactic_text(second->tactics());
  }

  fs::path dir_;
};

TEST_F(TacticsGpu, ConvNetTimesCachesAndRebuildsIdentically) {
  KILN_NEED_GPU();
  check_net(conv_net, "conv net");
}

TEST_F(TacticsGpu, MatMulNetTimesCachesAndRebuildsIdentically) {
  KILN_NEED_GPU();
  check_net(matmul_net, "matmul net");
}

TEST_F(TacticsGpu, OptLevelZeroBuildsWithoutTactics) {
  KILN_NEED_GPU();
  const std::string cache_path = (dir_ / "timing.cache").string();
  Net n = conv_net();
  auto b = build(n, DeviceType::kCUDA, 0, cache_path);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_TRUE(b->tactics().empty()) << tactic_text(b->tactics());
  EXPECT_FALSE(fs::exists(cache_path)) << "level 0 times nothing and should not write the cache";
}

// FusedConv SiLU layers compile runtime-fusion engines on a first run: the builder runs
// their candidates on parallel threads before timing, and the engine still computes
// what the CPU engine does.
TEST_F(TacticsGpu, CompilingLayersAreWarmedInParallelAndStayCorrect) {
  KILN_NEED_GPU();
  Net n = silu_net();
  auto gpu = build(n, DeviceType::kCUDA, 3, "", /*fp16=*/true);
  ASSERT_TRUE(gpu.ok()) << gpu.status().to_string();
  const char* threads = std::getenv("KILN_TACTIC_WARM_THREADS");
  if (!threads || std::atoi(threads) > 1) {
    EXPECT_EQ(gpu->stat("tactics_warmed"), 3) << "three FusedConv layers of different shapes; log:\n" << gpu->log;
  }
  int fused = 0;
  for (auto& node : gpu->model.graph->nodes()) fused += node->op_type == "FusedConv";
  EXPECT_EQ(fused, 3) << gpu->log;
  Net cpu_net = silu_net();
  auto cpu = build(cpu_net, DeviceType::kCPU, 3, "");
  ASSERT_TRUE(cpu.ok()) << cpu.status().to_string();
  Logger quiet(Logger::Severity::kError);
  Runtime rt(quiet);
  auto ge = rt.deserialize(gpu->bytes.data(), gpu->bytes.size());
  auto ce = rt.deserialize(cpu->bytes.data(), cpu->bytes.size());
  ASSERT_TRUE(ge.ok() && ce.ok());
  auto gctx = (*ge)->create_execution_context();
  auto cctx = (*ce)->create_execution_context();
  std::mt19937 rng(5);
  Tensor x = test::random_tensor(DataType::kFloat32, n.opt_dims, rng);
  auto gy = gctx->infer({{"x", x}});
  auto cy = cctx->infer({{"x", x}});
  ASSERT_TRUE(gy.ok() && cy.ok()) << (gy.ok() ? cy.status().to_string() : gy.status().to_string());
  EXPECT_LE(test::tolerance_ratio(gy->at("y"), cy->at("y"), 2e-2, 2e-2), 1.0)
      << "FP16 engine vs CPU FP32 beyond rtol/atol 2e-2, tactics " << tactic_text(gpu->tactics());
}

// The tactic timer's large random activations travel as a short pattern that the
// device repeats; the buffer must hold the pattern over all its elements, also
// where the size is not a multiple of the pattern.
TEST(TacticsGpuUpload, RepeatedPatternFillsTheWholeInput) {
  KILN_NEED_GPU();
  test::OpCase c("Relu", 14);
  c.input(DataType::kFloat32, {3, 7});
  const Tensor pattern = Tensor::from_vector<float>(DataType::kFloat32, {5}, {1.f, -2.f, 3.f, -4.f, 5.f});
  const Dims full{4099, 7};  // 28693 elements: 5738 patterns and 3 elements
  std::vector<std::optional<Dims>> repeat_to{full};
  auto io = cuda::upload_node_io(c.node(), {&pattern}, {Tensor::zeros(DataType::kFloat32, full)}, {}, repeat_to);
  ASSERT_TRUE(io.ok()) << io.status().to_string();
  EXPECT_EQ((*io)->inputs[0].dims(), full);
  EXPECT_EQ((*io)->host_inputs[0], nullptr) << "a repeated pattern is no host value of the input";
  std::vector<float> back(static_cast<size_t>(dims_volume(full)));
  ASSERT_TRUE(cuda::copy_async(back.data(), (*io)->inputs[0].data(), back.size() * sizeof(float),
                               cuda::CopyKind::kDeviceToHost, nullptr)
                  .ok());
  ASSERT_TRUE(cuda::stream_synchronize(nullptr).ok());
  const float* want = static_cast<const float*>(pattern.data());
  for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], want[i % 5]) << "element " << i;

  const Tensor big = Tensor::zeros(DataType::kFloat32, {9});
  auto bad = cuda::upload_node_io(c.node(), {&big}, {}, {}, {Dims{2, 2}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("larger than its dims"), std::string::npos) << bad.status().to_string();
}

TEST_F(TacticsGpu, CacheOfAnotherDeviceIsIgnoredAndRewritten) {
  KILN_NEED_GPU();
  const std::string cache_path = (dir_ / "timing.cache").string();
  TimingCache other("Some Other GPU, sm_75, cudart 1, driver 1, cudnn 1, cublasLt 1");
  other.put("whatever", {1, 1.f, 2, 2});
  ASSERT_TRUE(other.save(cache_path).ok());
  Net n = matmul_net();
  auto b = build(n, DeviceType::kCUDA, 3, cache_path);
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  EXPECT_NE(b->log.find("Some Other GPU"), std::string::npos) << b->log;
  auto key = timing_cache_key(0);
  ASSERT_TRUE(key.ok());
  CaptureLogger log;
  auto file = TimingCache::load(cache_path, *key, log);
  ASSERT_TRUE(file.ok()) << file.status().to_string();
  EXPECT_EQ(file->find("whatever"), nullptr) << "the other device's entries should be gone";
}

// lt_config.h: an enumerated cuBLASLt configuration survives its tactic ID; IDs do not
// collide with the heuristic's hashed ones (below 2^62) or split-K's; fields that do not
// fit are refused; the wave model prefers the tile that fills the last round (BERT bs128's
// QKV, 16384 x 2304 on 132 SMs: 128 x 152 in 15 rounds over 128 x 128 in 18).
TEST(Tactics, EnumeratedCublasLtConfigsRoundTrip) {
  namespace ltc = ops::matmul::lt_config;
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    ltc::Config c;
    c.algo = static_cast<int>(rng() % 65536);
    c.tile = rng() % 4096;
    c.stages = rng() % 256;
    c.cluster = static_cast<uint16_t>(rng() % 64);
    c.swizzle = rng() % 4;
    c.custom = rng() % 256;
    int64_t id = 0;
    ASSERT_TRUE(ltc::encode(c, id));
    EXPECT_TRUE(ltc::is_enumerated(id));
    const ltc::Config d = ltc::decode(id);
    EXPECT_EQ(d.algo, c.algo);
    EXPECT_EQ(d.tile, c.tile);
    EXPECT_EQ(d.stages, c.stages);
    EXPECT_EQ(d.cluster, c.cluster);
    EXPECT_EQ(d.swizzle, c.swizzle);
    EXPECT_EQ(d.custom, c.custom);
  }
  EXPECT_FALSE(ltc::is_enumerated(ltc::kEnumeratedBit - 1));  // the largest hashed ID
  EXPECT_FALSE(ltc::is_enumerated(ops::matmul::splitk::tactic_id(128, 1)));
  EXPECT_FALSE(ltc::is_enumerated(-1));
  ltc::Config wide;
  wide.tile = 4096;
  int64_t id = 0;
  EXPECT_FALSE(ltc::encode(wide, id));
  wide.tile = 1, wide.cluster = 64;
  EXPECT_FALSE(ltc::encode(wide, id));
  const ltc::Tile* t152 = ltc::tile_of(407);
  const ltc::Tile* t128 = ltc::tile_of(20);
  ASSERT_TRUE(t152 && t128);
  EXPECT_LT(ltc::wave_cost(*t152, 16384, 2304, 132), ltc::wave_cost(*t128, 16384, 2304, 132));
  EXPECT_TRUE(ltc::offered(16384, 768, 768, 1));
  EXPECT_FALSE(ltc::offered(128, 768, 768, 1));  // batch 1: the heuristic's list only
  EXPECT_FALSE(ltc::offered(16384, 768, 768, 12));
}

// A shape tensor a node reads (a FusedAttention view's Reshape target computed from Shape)
// reaches the timer with its value at the opt shapes; activations do not.
TEST(Tactics, ShapeTensorsReachTheTimerWithTheirValues) {
  struct KnownTimer : FakeTimer {
    std::vector<std::vector<int64_t>> seen;  // per prepare: input 1's value, or {-7} when none
    bool has_tactics(const ir::Node& node) override { return node.op_type == "Reshape"; }
    void set_known_inputs(std::vector<const Tensor*> values) override {
      ASSERT_EQ(values.size(), 2u);
      EXPECT_EQ(values[0], nullptr) << "an activation is timed with random data";
      seen.push_back(values[1] ? values[1]->to_int64_vector() : std::vector<int64_t>{-7});
    }
  };
  ir::Graph g;
  g.opset_imports[""] = 17;
  ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 16}).value();
  g.inputs.push_back(x);
  ir::Value* t = g.add_unique_value("t", DataType::kInt64);
  ir::Value* y = g.add_value("y").value();
  g.add_node("Shape", {x}, {t}, "shape")->opset = 17;
  g.add_node("Reshape", {x, t}, {y}, "reshape")->opset = 17;
  g.outputs = {y};
  for (auto& n : g.nodes()) n->device = ir::Device::kCUDA;
  Propagation opt;
  ASSERT_TRUE(propagate(g, {{"x", Shape{4, 16}}}, opt, /*strict=*/false).ok());
  KnownTimer timer;
  TimingCache cache("k");
  TacticStats st;
  CaptureLogger log;
  ASSERT_TRUE(choose_tactics(g, opt, 3, "tf32=0", cache, timer, log, st).ok());
  EXPECT_EQ(timer.seen, (std::vector<std::vector<int64_t>>{{4, 16}}));
}

}  // namespace
}  // namespace kiln::select
