#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <random>
#include <thread>

#include "backends/cuda/api.h"
#include "backends/cuda/tactic_sink.h"
#include "builder/network_impl.h"
#include "harness/op_harness.h"
#include "kiln/kiln.h"
#include "plan/engine_file.h"
#include "runtime/engine_data.h"

namespace kiln {

namespace {

// y = Relu(x @ W + b), x:[batch, 8], W:[8, 5]; a second output z = y * 2.
struct DynamicNet {
  std::unique_ptr<NetworkDefinition> net = std::make_unique<NetworkDefinition>();
  Tensor w, b;
  DynamicNet() {
    std::mt19937 rng(3);
    w = test::random_tensor(DataType::kFloat32, {8, 5}, rng);
    b = test::random_tensor(DataType::kFloat32, {5}, rng);
    ir::Graph& g = network_graph(*net);
    g.opset_imports[""] = 17;
    ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 8}).value();
    g.inputs.push_back(x);
    ir::Value* wv = g.add_constant("W", w);
    ir::Value* bv = g.add_constant("b", b);
    ir::Value* two = g.add_constant("minus_two", Tensor::from_vector<float>(DataType::kFloat32, {}, {-2.f}));
    ir::Value* m = g.add_unique_value("m");
    ir::Value* a = g.add_unique_value("a");
    ir::Value* y = g.add_value("y").value();
    ir::Value* z = g.add_value("z").value();
    g.add_node("MatMul", {x, wv}, {m}, "mm");
    g.add_node("Add", {m, bv}, {a}, "bias");
    g.add_node("Relu", {a}, {y}, "relu");
    // z = -2 * -y: an intermediate that CPU engines keep (MatMul+Add+Relu fuse into one node).
    ir::Value* n = g.add_unique_value("n");
    g.add_node("Neg", {y}, {n}, "negate");
    g.add_node("Mul", {n, two}, {z}, "double");
    g.outputs = {y, z};
  }
  Tensor reference(const Tensor& x) const {
    int64_t n = x.dim(0);
    Tensor y = Tensor::empty(DataType::kFloat32, {n, 5});
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < 5; ++j) {
        double s = b.data_as<float>()[j];
        for (int64_t k = 0; k < 8; ++k) s += double(x.data_as<float>()[i * 8 + k]) * w.data_as<float>()[k * 5 + j];
        y.data_as<float>()[i * 5 + j] = s > 0 ? static_cast<float>(s) : 0.f;
      }
    return y;
  }
};

Result<std::unique_ptr<Engine>> build(DynamicNet& d, const std::vector<std::array<Dims, 3>>& profiles,
                                      DeviceType device = DeviceType::kCPU) {
  Logger logger(Logger::Severity::kError);
  Builder builder(logger);
  auto config = builder.create_builder_config();
  config->set_device(device);
  config->clear_flag(BuilderFlag::kTF32);
  for (auto& p : profiles) {
    OptimizationProfile prof;
    Status s = prof.set_shape("x", p[0], p[1], p[2]);
    if (!s.ok()) return s;
    config->add_optimization_profile(prof);
  }
  KILN_ASSIGN_OR_RETURN(auto bytes, builder.build_serialized_network(*d.net, *config));
  Runtime runtime(logger);
  return runtime.deserialize(bytes.data(), bytes.size());
}

}  // namespace

TEST(Engine, DynamicBatchTwoProfilesMatchReference) {
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{2, 8}, Dims{4, 8}}, {Dims{5, 8}, Dims{8, 8}, Dims{16, 8}}});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  Engine& e = **engine;
  ASSERT_EQ(e.num_io_tensors(), 3);
  EXPECT_EQ(e.get_tensor_name(0), "x");
  EXPECT_EQ(e.get_tensor_mode("x"), TensorIOMode::kInput);
  EXPECT_EQ(e.get_tensor_mode("z"), TensorIOMode::kOutput);
  EXPECT_EQ(e.get_tensor_shape("x"), (Dims{-1, 8}));
  EXPECT_EQ(e.get_tensor_dim_names("x")[0], "batch");
  EXPECT_EQ(e.num_optimization_profiles(), 2);
  EXPECT_EQ(e.get_tensor_profile_shape("x", 1)[2], (Dims{16, 8}));
  EXPECT_GT(e.activation_bytes(), 0u);

  auto ctx = e.create_execution_context();
  std::mt19937 rng(11);
  for (int64_t batch : {3, 1, 4}) {
    Tensor x = test::random_tensor(DataType::kFloat32, {batch, 8}, rng);
    ASSERT_TRUE(ctx->set_input_shape("x", x.dims()).ok());
    EXPECT_EQ(ctx->get_tensor_shape("y"), (Dims{batch, 5}));
    auto out = ctx->infer({{"x", x}});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    Tensor ref = d.reference(x);
    EXPECT_TRUE(test::tensors_close(out->at("y"), ref, 1e-5, 1e-6));
    for (int64_t i = 0; i < ref.numel(); ++i) ref.data_as<float>()[i] *= 2.f;
    EXPECT_TRUE(test::tensors_close(out->at("z"), ref, 1e-5, 1e-6));
  }
  // Batch 12 is outside profile 0; the message names the dim and the range.
  Status s = ctx->set_input_shape("x", {12, 8});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kOutOfRange);
  EXPECT_NE(s.message().find("dim 0 (batch) = 12"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("[1, 4]"), std::string::npos) << s.message();
  ASSERT_TRUE(ctx->set_optimization_profile(1).ok());
  Tensor x = test::random_tensor(DataType::kFloat32, {12, 8}, rng);
  auto out = ctx->infer({{"x", x}});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(test::tensors_close(out->at("y"), d.reference(x), 1e-5, 1e-6));
}

// y = x * batch through Shape -> Gather -> Cast -> Mul: a profile that pins the batch
// (min = max) lets the passes fold the shape arithmetic into a constant; a batch range
// keeps it. Both engines give x * batch.
TEST(Engine, PinnedDimsFoldShapeArithmetic) {
  auto make = [] {
    auto net = std::make_unique<NetworkDefinition>();
    ir::Graph& g = network_graph(*net);
    g.opset_imports[""] = 17;
    ir::Value* x = g.add_value("x", DataType::kFloat32, Shape{Dim::symbol("batch"), 8}).value();
    g.inputs.push_back(x);
    ir::Value* shape = g.add_unique_value("shape");
    ir::Value* n = g.add_unique_value("n");
    ir::Value* nf = g.add_unique_value("nf");
    ir::Value* y = g.add_value("y").value();
    g.add_node("Shape", {x}, {shape}, "shape");
    g.add_node("Gather", {shape, g.add_constant("zero", Tensor::from_vector<int64_t>(DataType::kInt64, {}, {0}))}, {n},
               "batch");
    g.add_node("Cast", {n}, {nf}, "to_float")->attrs.set("to", ir::Attribute::from_int(1));
    g.add_node("Mul", {x, nf}, {y}, "scale");
    g.outputs = {y};
    return net;
  };
  auto build_with = [](NetworkDefinition& net, const Dims& min, const Dims& max) -> Result<std::unique_ptr<Engine>> {
    Logger logger(Logger::Severity::kError);
    Builder builder(logger);
    auto config = builder.create_builder_config();
    OptimizationProfile prof;
    KILN_RETURN_IF_ERROR(prof.set_shape("x", min, min, max));
    config->add_optimization_profile(prof);
    KILN_ASSIGN_OR_RETURN(auto bytes, builder.build_serialized_network(net, *config));
    return Runtime(logger).deserialize(bytes.data(), bytes.size());
  };
  auto has_shape_op = [](const Engine& e) {
    for (auto& n : e.data()->model.graph->nodes())
      if (n->op_type == "Shape") return true;
    return false;
  };
  std::mt19937 rng(5);
  auto pinned_net = make(), range_net = make();
  auto pinned = build_with(*pinned_net, {3, 8}, {3, 8});
  auto range = build_with(*range_net, {1, 8}, {4, 8});
  ASSERT_TRUE(pinned.ok()) << pinned.status().to_string();
  ASSERT_TRUE(range.ok()) << range.status().to_string();
  EXPECT_FALSE(has_shape_op(**pinned));
  EXPECT_TRUE(has_shape_op(**range));
  for (auto* e : {pinned->get(), range->get()}) {
    Tensor x = test::random_tensor(DataType::kFloat32, {3, 8}, rng);
    auto ctx = e->create_execution_context();
    ASSERT_TRUE(ctx->set_input_shape("x", x.dims()).ok());
    auto out = ctx->infer({{"x", x}});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    Tensor want = x;
    for (int64_t i = 0; i < want.numel(); ++i) want.data_as<float>()[i] *= 3.f;
    EXPECT_TRUE(test::tensors_close(out->at("y"), want, 1e-6, 1e-6));
  }
}

TEST(Engine, BoundBuffersExecuteAndMissingInputIsNamed) {
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{2, 8}, Dims{4, 8}}});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto ctx = (*engine)->create_execution_context();
  Status s = ctx->execute();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'x'"), std::string::npos) << s.message();
  std::mt19937 rng(5);
  Tensor x = test::random_tensor(DataType::kFloat32, {2, 8}, rng);
  std::vector<float> y(10, -1.f), z(10, -1.f);
  ASSERT_TRUE(ctx->set_input_shape("x", {2, 8}).ok());
  ASSERT_TRUE(ctx->set_tensor_address("x", x.data()).ok());
  ASSERT_TRUE(ctx->set_tensor_address("y", y.data()).ok());
  ASSERT_TRUE(ctx->set_tensor_address("z", z.data()).ok());
  ASSERT_TRUE(ctx->execute().ok());
  Tensor ref = d.reference(x);
  for (int i = 0; i < 10; ++i) EXPECT_NEAR(y[i], ref.data_as<float>()[i], 1e-5);
  EXPECT_FALSE(ctx->set_tensor_address("nope", y.data()).ok());
  auto missing = ctx->infer({});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("missing input 'x'"), std::string::npos);
  auto wrong = ctx->infer({{"x", Tensor::zeros(DataType::kInt64, {2, 8})}});
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("expects float32, got int64"), std::string::npos);
}

TEST(Engine, ContextsShareWeightsAndRunConcurrently) {
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{4, 8}, Dims{8, 8}}});
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto ctx = (*engine)->create_execution_context();
      std::mt19937 rng(100 + t);
      for (int it = 0; it < 20; ++it) {
        Tensor x = test::random_tensor(DataType::kFloat32, {1 + (it + t) % 8, 8}, rng);
        auto out = ctx->infer({{"x", x}});
        if (!out.ok() || !test::tensors_close(out->at("y"), d.reference(x), 1e-5, 1e-6)) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

TEST(Engine, DynamicInputWithoutProfileIsABuildError) {
  DynamicNet d;
  Logger logger(Logger::Severity::kError);
  Builder builder(logger);
  auto config = builder.create_builder_config();
  auto r = builder.build_serialized_network(*d.net, *config);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("input 'x' has dynamic dims [batch,8]"), std::string::npos)
      << r.status().message();
}

TEST(Runtime, RefusesEngineForAnotherDevice) {
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{1, 8}, Dims{1, 8}}});
  ASSERT_TRUE(engine.ok());
  plan::EngineModel m = (*engine)->data()->model;
  m.device = "cuda";
  m.device_arch = "sm_10";  // no such GPU: refused with or without one here
  auto bytes = plan::serialize_engine(m);
  Logger logger(Logger::Severity::kError);
  auto r = Runtime(logger).deserialize(bytes.data(), bytes.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kDeviceMismatch);
  EXPECT_NE(r.status().message().find("sm_10"), std::string::npos) << r.status().message();
  if (cuda::device_count() > 0) {
    auto info = cuda::device_info(0);
    ASSERT_TRUE(info.ok());
    // Both capabilities are named.
    EXPECT_NE(r.status().message().find(cuda::arch_name(info->cc_major, info->cc_minor)), std::string::npos)
        << r.status().message();
  }
}

// inspect_json gives each layer's kept compiled plan (kiln.kernel_state) size and their sum.
TEST(Engine, InspectCountsKeptCompiledPlans) {
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{1, 8}, Dims{1, 8}}});
  ASSERT_TRUE(engine.ok());
  plan::EngineModel m = (*engine)->data()->model;
  ASSERT_FALSE(m.graph->nodes().empty());
  const std::string plan_text = "kiln-cudnn-plan 1 2 3\n{\"compiled\": true}";
  m.graph->nodes().front()->attrs.set(cuda::kKernelStateAttr, ir::Attribute::from_string(plan_text));
  auto bytes = plan::serialize_engine(m);
  Logger logger(Logger::Severity::kError);
  auto r = Runtime(logger).deserialize(bytes.data(), bytes.size());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const nlohmann::json j = nlohmann::json::parse((*r)->inspect_json());
  EXPECT_EQ(j["memory"]["kept_plan_bytes"], plan_text.size());
  EXPECT_EQ(j["layers"][0]["kept_plan_bytes"], plan_text.size());
  for (size_t i = 1; i < j["layers"].size(); ++i) EXPECT_EQ(j["layers"][i]["kept_plan_bytes"], 0u) << i;
  // The plan survives the engine file byte for byte.
  EXPECT_EQ((*r)->data()->model.graph->nodes().front()->attrs.get_string(cuda::kKernelStateAttr, ""), plan_text);
}

// ---- CUDA engines (skipped without a GPU)

#define KILN_NEED_GPU() \
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason()

TEST(CudaEngine, BuildWithoutGpuSaysWhy) {
  if (cuda::device_count() > 0) GTEST_SKIP() << "a GPU is present";
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{2, 8}, Dims{4, 8}}}, DeviceType::kCUDA);
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("cannot build a CUDA engine"), std::string::npos)
      << engine.status().message();
}

TEST(CudaEngine, DynamicBatchMatchesReferenceWithAndWithoutGraphs) {
  KILN_NEED_GPU();
  DynamicNet d;
  auto engine =
      build(d, {{Dims{1, 8}, Dims{2, 8}, Dims{4, 8}}, {Dims{5, 8}, Dims{8, 8}, Dims{16, 8}}}, DeviceType::kCUDA);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  EXPECT_EQ((*engine)->device(), "cuda");
  for (bool graph : {false, true}) {
    auto ctx = (*engine)->create_execution_context();
    ctx->set_use_cuda_graph(graph);
    std::mt19937 rng(11);
    for (int64_t batch : {3, 1, 4, 3, 3, 2}) {
      Tensor x = test::random_tensor(DataType::kFloat32, {batch, 8}, rng);
      auto out = ctx->infer({{"x", x}});
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      Tensor ref = d.reference(x);
      EXPECT_TRUE(test::tensors_close(out->at("y"), ref, 1e-5, 1e-6)) << "graph " << graph << " batch " << batch;
      EXPECT_EQ(ctx->last_fallback_count(), 0);
    }
    ASSERT_TRUE(ctx->set_optimization_profile(1).ok());
    Tensor x = test::random_tensor(DataType::kFloat32, {12, 8}, rng);
    auto out = ctx->infer({{"x", x}});
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(test::tensors_close(out->at("y"), d.reference(x), 1e-5, 1e-6));
  }
}

TEST(CudaEngine, DeviceBuffersEnqueueOnCallerStream) {
  KILN_NEED_GPU();
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{2, 8}, Dims{4, 8}}}, DeviceType::kCUDA);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto ctx = (*engine)->create_execution_context();
  auto dx = cuda::device_alloc(2 * 8 * sizeof(float), "x");
  auto dy = cuda::device_alloc(10 * sizeof(float), "y");
  auto dz = cuda::device_alloc(10 * sizeof(float), "z");
  ASSERT_TRUE(dx.ok() && dy.ok() && dz.ok());
  void* stream = nullptr;
  ASSERT_TRUE(cuda::stream_create(&stream).ok());
  ASSERT_TRUE(ctx->set_input_shape("x", {2, 8}).ok());
  ASSERT_TRUE(ctx->set_tensor_address("x", dx->get()).ok());
  ASSERT_TRUE(ctx->set_tensor_address("y", dy->get()).ok());
  ASSERT_TRUE(ctx->set_tensor_address("z", dz->get()).ok());
  // Several runs with new inputs: y is an output that z = 2 * y also reads, so a
  // stale copy anywhere shows up from the second run on.
  std::mt19937 rng(5);
  for (int run = 0; run < 3; ++run) {
    Tensor x = test::random_tensor(DataType::kFloat32, {2, 8}, rng);
    ASSERT_TRUE(cuda::copy_async(dx->get(), x.data(), x.nbytes(), cuda::CopyKind::kHostToDevice, stream).ok());
    ASSERT_TRUE(ctx->enqueue(stream).ok());
    std::vector<float> y(10), z(10);
    ASSERT_TRUE(cuda::copy_async(y.data(), dy->get(), 40, cuda::CopyKind::kDeviceToHost, stream).ok());
    ASSERT_TRUE(cuda::copy_async(z.data(), dz->get(), 40, cuda::CopyKind::kDeviceToHost, stream).ok());
    ASSERT_TRUE(cuda::stream_synchronize(stream).ok());
    Tensor ref = d.reference(x);
    for (int i = 0; i < 10; ++i) {
      EXPECT_NEAR(y[i], ref.data_as<float>()[i], 1e-5) << "run " << run;
      EXPECT_NEAR(z[i], 2 * ref.data_as<float>()[i], 1e-5) << "run " << run;
    }
  }
  cuda::stream_destroy(stream);
}

// A CUDA graph reads and writes the caller's device buffers in place: one set bound for
// several runs, then new sets each run (recaptures, and past a few rebinds the graph
// stages I/O through its own buffers). Every run's outputs land in the buffers bound for
// it, and the buffers bound before keep what they had.
TEST(CudaEngine, GraphFollowsReboundDeviceBuffers) {
  KILN_NEED_GPU();
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{2, 8}, Dims{4, 8}}}, DeviceType::kCUDA);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  auto ctx = (*engine)->create_execution_context();
  ctx->set_use_cuda_graph(true);
  ASSERT_TRUE(ctx->set_input_shape("x", {2, 8}).ok());
  struct Set {
    cuda::DeviceBuffer x, y, z;
  };
  std::vector<Set> sets;
  for (int i = 0; i < 8; ++i) {
    auto x = cuda::device_alloc(2 * 8 * sizeof(float), "x");
    auto y = cuda::device_alloc(10 * sizeof(float), "y");
    auto z = cuda::device_alloc(10 * sizeof(float), "z");
    ASSERT_TRUE(x.ok() && y.ok() && z.ok());
    sets.push_back({std::move(*x), std::move(*y), std::move(*z)});
  }
  void* stream = nullptr;
  ASSERT_TRUE(cuda::stream_create(&stream).ok());
  std::mt19937 rng(8);
  std::vector<Tensor> refs(sets.size());
  auto fetch = [&](const cuda::DeviceBuffer& b) {
    std::vector<float> h(10);
    EXPECT_TRUE(cuda::copy_async(h.data(), b.get(), 40, cuda::CopyKind::kDeviceToHost, stream).ok());
    EXPECT_TRUE(cuda::stream_synchronize(stream).ok());
    return h;
  };
  // Set 0 for three runs, then sets 1..7, one run each.
  const int order[] = {0, 0, 0, 1, 2, 3, 4, 5, 6, 7};
  for (int run = 0; run < 10; ++run) {
    const int k = order[run];
    Set& s = sets[static_cast<size_t>(k)];
    Tensor x = test::random_tensor(DataType::kFloat32, {2, 8}, rng);
    refs[static_cast<size_t>(k)] = d.reference(x);
    ASSERT_TRUE(cuda::copy_async(s.x.get(), x.data(), x.nbytes(), cuda::CopyKind::kHostToDevice, stream).ok());
    ASSERT_TRUE(ctx->set_tensor_address("x", s.x.get()).ok());
    ASSERT_TRUE(ctx->set_tensor_address("y", s.y.get()).ok());
    ASSERT_TRUE(ctx->set_tensor_address("z", s.z.get()).ok());
    ASSERT_TRUE(ctx->enqueue(stream).ok()) << "run " << run;
    for (int j = 0; j <= k; ++j) {  // this run's set and every set bound before it
      std::vector<float> y = fetch(sets[static_cast<size_t>(j)].y), z = fetch(sets[static_cast<size_t>(j)].z);
      for (int i = 0; i < 10; ++i) {
        ASSERT_NEAR(y[i], refs[static_cast<size_t>(j)].data_as<float>()[i], 1e-5) << "run " << run << " set " << j;
        ASSERT_NEAR(z[i], 2 * refs[static_cast<size_t>(j)].data_as<float>()[i], 1e-5) << "run " << run << " set " << j;
      }
    }
  }
  cuda::stream_destroy(stream);
}

TEST(CudaEngine, ContextsRunConcurrentlyOnTheirStreams) {
  KILN_NEED_GPU();
  DynamicNet d;
  auto engine = build(d, {{Dims{1, 8}, Dims{4, 8}, Dims{8, 8}}}, DeviceType::kCUDA);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  std::vector<std::string> first_error(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto ctx = (*engine)->create_execution_context();
      ctx->set_use_cuda_graph(t % 2 == 1);
      std::mt19937 rng(100 + t);
      for (int it = 0; it < 20; ++it) {
        Tensor x = test::random_tensor(DataType::kFloat32, {1 + (it + t) % 8, 8}, rng);
        auto out = ctx->infer({{"x", x}});
        std::string why;
        if (!out.ok())
          why = out.status().to_string();
        else if (auto c = test::tensors_close(out->at("y"), d.reference(x), 1e-5, 1e-6); !c)
          why = c.message();
        if (why.empty()) continue;
        if (failures[t]++ == 0) first_error[t] = "run " + std::to_string(it) + ": " + why;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t << ", first: " << first_error[t];
}

TEST(CudaEngine, OutOfMemoryNamesTheSize) {
  KILN_NEED_GPU();
  auto r = cuda::device_alloc(size_t(1) << 50, "a test buffer");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfMemory);
  EXPECT_NE(r.status().message().find("1125899906842624 bytes"), std::string::npos) << r.status().message();
}

}  // namespace kiln
