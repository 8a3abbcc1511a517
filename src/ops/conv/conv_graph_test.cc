// GPU tests of the conv family's tactics: every candidate the CUDA conv kernels
// offer (cuDNN graph engines, fused and plain, and the legacy algorithms) runs
// and is checked against a double-precision reference written here, in NCHW and
// in the channels-last layout nhwc_layout gives FP16/BF16 convs.
#include <cmath>
#include <random>

#include "backends/cuda/api.h"
#include "backends/cuda/node_runner.h"
#include "backends/cuda/tactic_sink.h"
#include "harness/op_harness.h"
#include "ops/conv/conv_graph_cuda.h"

namespace kiln::test {
namespace {

using ir::Attribute;

struct Problem {
  int64_t n, c, h, w, m, k, stride, pad, group;
  std::string act;  // FusedConv activation ("" = none); "conv" = a plain Conv node
  bool bias, residual, nhwc;
  DataType dtype;
  bool tf32 = false;  // FP32 allowed to run as TF32 (as built engines do by default)
};

double act_ref(const std::string& a, double v) {
  if (a == "Relu") return v > 0 ? v : 0;
  if (a == "Sigmoid") return 1 / (1 + std::exp(-v));
  if (a == "Tanh") return std::tanh(v);
  if (a == "Silu") return v / (1 + std::exp(-v));
  if (a == "LeakyRelu") return v >= 0 ? v : 0.01 * v;
  return v;
}

// Element offset of logical (n, c, i, j) in a [N, C, H, W] tensor stored NCHW or NHWC.
int64_t at(bool nhwc, int64_t C, int64_t H, int64_t W, int64_t n, int64_t c, int64_t i, int64_t j) {
  return nhwc ? ((n * H + i) * W + j) * C + c : ((n * C + c) * H + i) * W + j;
}

Tensor reference(const Problem& p, const std::vector<std::optional<Tensor>>& in, int64_t oh, int64_t ow) {
  const Tensor &x = *in[0], &w = *in[1];
  const int64_t cg = p.c / p.group, mg = p.m / p.group;
  Tensor y = Tensor::zeros(DataType::kFloat32, p.nhwc ? Dims{p.n, oh, ow, p.m} : Dims{p.n, p.m, oh, ow});
  for (int64_t n = 0; n < p.n; ++n)
    for (int64_t m = 0; m < p.m; ++m)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = p.bias ? in[2]->get_as_double(m) : 0;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t a = 0; a < p.k; ++a)
              for (int64_t e = 0; e < p.k; ++e) {
                const int64_t ih = i * p.stride - p.pad + a, iw = j * p.stride - p.pad + e;
                if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
                const int64_t ci = (m / mg) * cg + c;
                // The filter is [M, C/g, k, k] (NCHW) or [M, k, k, C/g] (NHWC: OHWI).
                const int64_t wi = p.nhwc ? ((m * p.k + a) * p.k + e) * cg + c : ((m * cg + c) * p.k + a) * p.k + e;
                s += x.get_as_double(at(p.nhwc, p.c, p.h, p.w, n, ci, ih, iw)) * w.get_as_double(wi);
              }
          const int64_t o = at(p.nhwc, p.m, oh, ow, n, m, i, j);
          if (p.residual) s += in[3]->get_as_double(o);
          y.set_from_double(o, act_ref(p.act, s));
        }
  return y;
}

OpCase make_case(const Problem& p) {
  const bool plain = p.act == "conv";
  OpCase c(plain ? "Conv" : "FusedConv", plain ? 17 : 1, plain ? "" : "com.microsoft");
  c.attr("kernel_shape", Attribute::from_ints({p.k, p.k}))
      .attr("strides", Attribute::from_ints({p.stride, p.stride}))
      .attr("pads", Attribute::from_ints({p.pad, p.pad, p.pad, p.pad}))
      .attr("group", Attribute::from_int(p.group));
  if (!plain && !p.act.empty()) c.attr("activation", Attribute::from_string(p.act));
  if (p.nhwc) c.attr("kiln.nhwc", Attribute::from_int(1));
  const int64_t cg = p.c / p.group;
  c.input(p.dtype, p.nhwc ? Dims{p.n, p.h, p.w, p.c} : Dims{p.n, p.c, p.h, p.w});
  c.input(p.dtype, p.nhwc ? Dims{p.m, p.k, p.k, cg} : Dims{p.m, cg, p.k, p.k}, -0.5, 0.5);
  if (p.bias)
    c.input(p.dtype, {p.m});
  else if (p.residual)
    c.no_input();
  return c;
}

TEST(ConvTactics, EveryCandidateMatchesTheReference) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  const DataType f16 = DataType::kFloat16, bf16 = DataType::kBFloat16, f32 = DataType::kFloat32;
  const std::vector<Problem> problems = {
      // n, c, h, w, m, k, stride, pad, group, act, bias, residual, nhwc, dtype
      {2, 16, 20, 20, 32, 3, 1, 1, 1, "Silu", true, false, true, f16},        // YOLO conv + SiLU
      {2, 32, 14, 14, 64, 1, 1, 0, 1, "Relu", true, true, true, f16},         // ResNet 1x1 + residual + ReLU
      {1, 8, 33, 31, 16, 3, 2, 1, 1, "Silu", true, false, true, f16},         // stride 2, padded stem channels
      {2, 32, 9, 11, 32, 3, 1, 1, 32, "Relu", true, false, true, f16},        // depthwise
      {2, 16, 12, 12, 24, 3, 1, 1, 1, "Sigmoid", true, false, true, bf16},    // bf16
      {2, 16, 12, 12, 24, 3, 1, 1, 1, "LeakyRelu", true, false, true, f16},   // activation outside the graph
      {2, 16, 12, 12, 24, 3, 1, 1, 1, "", false, false, true, f16},           // no epilogue at all
      {2, 8, 15, 13, 16, 3, 1, 1, 1, "conv", true, false, false, f32},        // plain Conv + bias, NCHW fp32
      {2, 16, 10, 10, 32, 3, 2, 1, 1, "Relu", true, true, false, f32},        // NCHW fp32 fused
      {1, 24, 8, 8, 16, 1, 1, 0, 1, "Tanh", true, false, false, f32},         // 1x1 fp32
      {2, 16, 12, 12, 32, 3, 1, 1, 1, "Relu", true, true, true, f32, true},   // channels-last TF32 (ResNet FP32)
      {2, 32, 10, 10, 16, 1, 1, 0, 1, "conv", true, false, true, f32, true},  // plain Conv, channels-last TF32
  };
  using ops::cudnn_graph::Mode;
  if (ops::cudnn_graph::mode() == Mode::kOff) GTEST_SKIP() << "KILN_CUDNN_GRAPH=0";
  // The default (graph engines only where the legacy call cannot fuse the epilogue),
  // then every forward conv (KILN_CUDNN_GRAPH=all).
  for (Mode mode : {Mode::kUnfused, Mode::kAll}) {
    ops::cudnn_graph::mode_override() = mode;
    int graph_total = 0, fused_total = 0;
    for (size_t pi = 0; pi < problems.size(); ++pi) {
      const Problem& p = problems[pi];
      SCOPED_TRACE("problem " + std::to_string(pi) + (mode == Mode::kAll ? " (all)" : " (default)"));
      OpCase c = make_case(p);
      if (p.residual) {
        const int64_t oh = (p.h + 2 * p.pad - p.k) / p.stride + 1, ow = (p.w + 2 * p.pad - p.k) / p.stride + 1;
        c.input(p.dtype, p.nhwc ? Dims{p.n, oh, ow, p.m} : Dims{p.n, p.m, oh, ow});
      }
      const auto& in = c.inputs();
      const int64_t oh = (p.h + 2 * p.pad - p.k) / p.stride + 1, ow = (p.w + 2 * p.pad - p.k) / p.stride + 1;
      const Tensor ref = reference(p, in, oh, ow);
      std::vector<const Tensor*> ins;
      for (const auto& t : in) ins.push_back(t ? &*t : nullptr);
      const std::vector<Tensor> outs{Tensor::zeros(p.dtype, ref.dims())};
      auto io = cuda::upload_node_io(c.node(), ins, outs);
      ASSERT_TRUE(io.ok()) << io.status().to_string();
      cuda::NodeRunOptions base;
      base.allow_tf32 = p.tf32;
      auto ids = cuda::node_tactics_on_device(c.node(), "cuda.cudnn", **io, base);
      ASSERT_TRUE(ids.ok()) << ids.status().to_string();
      ASSERT_FALSE(ids->empty());
      int graph = 0, fused = 0;
      for (int64_t id : *ids) {
        graph += ops::cudnn_graph::is_graph_tactic(id);
        fused += ops::cudnn_graph::is_fused_tactic(id);
      }
      graph_total += graph;
      fused_total += fused;
      // Every problem here has channel counts the graph engines take; cuDNN 9 ranks
      // engines for each, so an empty list means the graph path broke.
      // Channels-last TF32 always gets them (the legacy calls run it on FMA engines).
      const bool legacy_fuses = p.act.empty() || p.act == "Relu" || p.act == "conv";
      if (mode == Mode::kAll || !legacy_fuses || p.tf32) {
        EXPECT_GT(graph, 0);
        if (p.tf32) {
          EXPECT_TRUE(ops::cudnn_graph::is_graph_tactic((*ids)[0])) << "graph engines lead in TF32";
        }
      } else {
        EXPECT_EQ(graph, 0) << "the legacy call fuses this epilogue: no graph engines by default";
      }
      std::vector<int64_t> run_ids = *ids;
      run_ids.push_back(-1);  // the heuristic's choice
      // TF32 rounds both operands to 10 mantissa bits (relative 2^-11 each).
      const double tol = p.dtype == f32 ? (p.tf32 ? 4e-3 : 1e-4) : p.dtype == f16 ? 1e-2 : 3e-2;
      for (int64_t id : run_ids) {
        cuda::NodeRunOptions o = base;
        o.tactic = id;
        auto got = cuda::run_node_on_device(c.node(), "cuda.cudnn", ins, outs, o);
        ASSERT_TRUE(got.ok()) << "tactic " << id << ": " << got.status().to_string();
        const Tensor out = (*got)[0];
        double worst = 0;
        for (int64_t i = 0; i < ref.numel(); ++i) {
          const double r = ref.get_as_double(i), g = out.get_as_double(i);
          worst = std::max(worst, std::abs(g - r) / (tol + tol * std::abs(r)));
        }
        EXPECT_LE(worst, 1.0) << "tactic " << id
                              << (ops::cudnn_graph::is_fused_tactic(id)   ? " (fused graph)"
                                  : ops::cudnn_graph::is_graph_tactic(id) ? " (graph)"
                                                                          : " (legacy)");
      }
      std::printf("[ conv tactics ] problem %zu: %zu candidates, %d graph (%d fused)\n", pi, ids->size(), graph, fused);
    }
    std::printf("[ conv tactics ] %s: %d graph candidates, %d of them fused\n", mode == Mode::kAll ? "all" : "default",
                graph_total, fused_total);
  }
  ops::cudnn_graph::mode_override().reset();
}

// A runtime-compiled plan the builder keeps on its node (kiln.kernel_state) is finalized
// from that state by a process that has not compiled it (forget_plans_for_test stands in
// for a fresh process loading the engine) and computes the same; a state that is not this
// problem's, or broken JSON, is ignored and the plan compiles as before.
TEST(ConvTactics, KeptRuntimeCompiledPlanLoadsWithoutCompiling) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no GPU: " << cuda::no_device_reason();
  if (ops::cudnn_graph::mode() == ops::cudnn_graph::Mode::kOff) GTEST_SKIP() << "KILN_CUDNN_GRAPH=0";
  const Problem p{2, 16, 20, 20, 32, 3, 1, 1, 1, "Silu", true, false, true, DataType::kFloat16};
  OpCase c = make_case(p);
  const auto& in = c.inputs();
  const Tensor ref = reference(p, in, 20, 20);
  std::vector<const Tensor*> ins;
  for (const auto& t : in) ins.push_back(t ? &*t : nullptr);
  const std::vector<Tensor> outs{Tensor::zeros(p.dtype, ref.dims())};
  auto io = cuda::upload_node_io(c.node(), ins, outs);
  ASSERT_TRUE(io.ok()) << io.status().to_string();
  auto ids = cuda::node_tactics_on_device(c.node(), "cuda.cudnn", **io);
  ASSERT_TRUE(ids.ok()) << ids.status().to_string();
  std::string state;
  int64_t tactic = -1;
  for (int64_t id : *ids) {
    cuda::NodeRunOptions o;
    o.tactic = id;
    auto st = cuda::node_state_on_device(c.node(), "cuda.cudnn", **io, o);
    ASSERT_TRUE(st.ok()) << st.status().to_string();
    if (!st->empty()) {
      state = *st;
      tactic = id;
      break;
    }
  }
  if (state.empty()) GTEST_SKIP() << "cuDNN offered no runtime-compiled engine for this conv";
  EXPECT_EQ(state.rfind("kiln-cudnn-plan ", 0), 0u) << state.substr(0, 80);
  io->reset();
  auto check = [&](const std::string& kept, int64_t want_from_state) {
    ops::cudnn_graph::forget_plans_for_test();
    ir::Node node = c.node();
    node.attrs.set(cuda::kKernelStateAttr, Attribute::from_string(kept));
    const int64_t before = ops::cudnn_graph::plans_from_state();
    cuda::NodeRunOptions o;
    o.tactic = tactic;
    auto got = cuda::run_node_on_device(node, "cuda.cudnn", ins, outs, o);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(ops::cudnn_graph::plans_from_state() - before, want_from_state);
    double worst = 0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      const double r = ref.get_as_double(i), g = (*got)[0].get_as_double(i);
      worst = std::max(worst, std::abs(g - r) / (1e-2 + 1e-2 * std::abs(r)));
    }
    EXPECT_LE(worst, 1.0);
  };
  {
    SCOPED_TRACE("the kept plan");
    check(state, 1);
  }
  const size_t eol = state.find('\n');
  ASSERT_NE(eol, std::string::npos);
  {
    SCOPED_TRACE("another problem's header");
    std::string other = state;
    other[eol - 1] = other[eol - 1] == '7' ? '8' : '7';  // the candidate ID's last digit
    check(other, 0);
  }
  {
    SCOPED_TRACE("broken JSON");
    check(state.substr(0, eol + 1) + "{\"not\": \"a plan\"}", 0);
  }
}

}  // namespace
}  // namespace kiln::test
