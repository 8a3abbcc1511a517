// Build progress: the phases a build reports to a ProgressMonitor, and cancelling.
#include "builder/build_progress.h"

#include <gtest/gtest.h>

#include <random>

#include "harness/op_harness.h"
#include "kiln/kiln.h"
#include "passes/pass.h"

namespace kiln {
namespace {

// Records every call as text; returns false from step_complete at `cancel_at` (phase, step).
class Recorder : public ProgressMonitor {
 public:
  void phase_start(const char* name, const char* parent, int steps) override {
    events.push_back(std::string("start ") + name + " < " + (parent ? parent : "-") + " " + std::to_string(steps));
    open.push_back(name);
  }
  bool step_complete(const char* name, int step) override {
    events.push_back(std::string("step ") + name + " " + std::to_string(step));
    return !(cancel_phase == name && cancel_step == step);
  }
  void phase_finish(const char* name) override {
    events.push_back(std::string("finish ") + name);
    EXPECT_FALSE(open.empty());
    if (!open.empty()) {
      EXPECT_EQ(open.back(), name) << "phases finish innermost first";
      open.pop_back();
    }
  }
  int count(const std::string& prefix) const {
    int n = 0;
    for (const auto& e : events) n += e.rfind(prefix, 0) == 0;
    return n;
  }
  std::vector<std::string> events, open;
  std::string cancel_phase;
  int cancel_step = -1;
};

std::unique_ptr<NetworkDefinition> small_network(Builder& b) {
  auto net = b.create_network();
  std::mt19937 rng(1);
  NetworkTensor* x = net->add_input("x", DataType::kFloat32, {1, 2, 5, 5});
  Layer* c = net->add_convolution(x, 3, {3, 3}, test::random_tensor(DataType::kFloat32, {3, 2, 3, 3}, rng),
                                  test::random_tensor(DataType::kFloat32, {3}, rng));
  Layer* r = net->add_activation(c->get_output(0), ActivationType::kRelu);
  net->mark_output(r->get_output(0));
  return net;
}

TEST(BuildProgress, ReportsEveryPhaseAndOneStepPerPass) {
  Logger logger(Logger::Severity::kError);
  Builder builder(logger);
  auto net = small_network(builder);
  auto config = builder.create_builder_config();
  Recorder rec;
  config->set_progress_monitor(&rec);
  auto bytes = builder.build_serialized_network(*net, *config);
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  ASSERT_FALSE(rec.events.empty());
  EXPECT_EQ(rec.events.front(), std::string("start ") + kPhaseBuild + " < - " + std::to_string(kBuildPhaseSteps));
  EXPECT_EQ(rec.events.back(), std::string("finish ") + kPhaseBuild);
  EXPECT_TRUE(rec.open.empty());
  for (const char* phase : {kPhasePasses, kPhaseKernels, kPhaseMemory, kPhaseSerialize}) {
    SCOPED_TRACE(phase);
    EXPECT_EQ(rec.count(std::string("start ") + phase + " < " + kPhaseBuild), 1);
    EXPECT_EQ(rec.count(std::string("finish ") + phase), 1);
  }
  EXPECT_EQ(rec.count(std::string("step ") + kPhasePasses + " "), passes::pipeline_size());
  EXPECT_EQ(rec.count(std::string("step ") + kPhaseBuild + " "), kBuildPhaseSteps);
  EXPECT_EQ(rec.count(std::string("step ") + kPhaseSerialize + " "), 1);
}

TEST(BuildProgress, FalseFromStepCompleteCancelsTheBuild) {
  for (const char* phase : {kPhasePasses, kPhaseKernels, kPhaseSerialize, kPhaseBuild}) {
    SCOPED_TRACE(phase);
    Logger logger(Logger::Severity::kInternalError);
    Builder builder(logger);
    auto net = small_network(builder);
    auto config = builder.create_builder_config();
    Recorder rec;
    rec.cancel_phase = phase;
    rec.cancel_step = 0;
    config->set_progress_monitor(&rec);
    auto bytes = builder.build_serialized_network(*net, *config);
    ASSERT_FALSE(bytes.ok());
    EXPECT_NE(bytes.status().message().find("build cancelled"), std::string::npos) << bytes.status().to_string();
    EXPECT_NE(bytes.status().message().find(phase), std::string::npos) << bytes.status().to_string();
    EXPECT_TRUE(rec.open.empty()) << "every started phase is finished";
    EXPECT_EQ(rec.events.back(), std::string("finish ") + kPhaseBuild);
  }
}

TEST(BuildProgress, PhaseWithoutMonitorDoesNothing) {
  BuildPhase p(nullptr, "x", nullptr, 2);
  EXPECT_TRUE(p.step().ok());
  EXPECT_TRUE(p.step().ok());
  EXPECT_EQ(p.steps_done(), 2);
}

}  // namespace
}  // namespace kiln
