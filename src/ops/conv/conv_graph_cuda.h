// Convolutions through cuDNN's graph (backend) API: the engines cuDNN 9 ranks
// with its heuristics, including Hopper's implicit-GEMM kernels that the legacy
// cudnnConvolutionForward does not reach, and conv + bias (+ residual) +
// activation as one fused graph where an engine takes it. conv_cuda.cu offers
// these as tactics ahead of the legacy algorithms (docs/tactics.md).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "ops/op.h"

namespace kiln::ops::cudnn_graph {

/// Activation applied after bias and residual (the FusedConv kinds a graph can express).
enum class GraphAct { kNone, kRelu, kSigmoid, kTanh, kSilu };

/// One convolution problem, in the logical NCHW / OIHW order (4-D or 5-D; 1-D already
/// expanded to 2-D). `nhwc`: tensors stored channels-last and the filter OHWI.
struct ConvProblem {
  Dims x, w, y;
  std::vector<int> pads, strides, dilations;
  bool nhwc = false;
  DataType dtype = DataType::kFloat32;
  bool allow_tf32 = true;
  bool bias = false, residual = false;
  GraphAct act = GraphAct::kNone;
};

/// Device buffers of one run (b and z null when the problem has none).
struct ConvBuffers {
  const void* x = nullptr;
  const void* w = nullptr;
  const void* b = nullptr;
  const void* z = nullptr;
  void* y = nullptr;
};

/// Tactic IDs of graph candidates: at or above kTacticBase (legacy cuDNN IDs are small).
/// Bit kFusedBit marks an engine of the fused graph (epilogue included).
constexpr int64_t kTacticBase = int64_t(1) << 48;
constexpr int64_t kFusedBit = int64_t(1) << 47;
inline bool is_graph_tactic(int64_t id) { return id >= kTacticBase; }
inline bool is_fused_tactic(int64_t id) { return is_graph_tactic(id) && (id & kFusedBit) != 0; }
/// The tactic of kiln's own direct conv for few input channels (conv_direct_cuda.h):
/// below the graph IDs, above every legacy one.
constexpr int64_t kDirectTactic = int64_t(1) << 40;
/// The tactic of kiln's tensor-core conv over 16 input channels (conv_tc16_cuda.h: the
/// space-to-depth stems). (+ 1 and + 2 named the unmerged Hopper conv of wip/gpu-next.)
constexpr int64_t kTc16Tactic = kDirectTactic + 3;
/// The tactics of a channels-last 1x1 conv run as one cuBLASLt GEMM over its pixels
/// (matmul::lt_gemm_nt: bias, residual and ReLU in the GEMM's epilogue): + r for the
/// heuristic's r-th configuration, r < kLtGemmRanks.
constexpr int64_t kLtGemmTactic = kDirectTactic + 4, kLtGemmRanks = 4;
inline bool is_lt_gemm_tactic(int64_t id) { return id >= kLtGemmTactic && id < kLtGemmTactic + kLtGemmRanks; }
/// The tactics of kiln's conv + shortcut GEMM (conv_shortcut_cuda.h; FusedConv with
/// kiln.shortcut_strides): + v for its variant v < conv_shortcut::kVariants.
constexpr int64_t kShortcutTactic = kLtGemmTactic + kLtGemmRanks, kShortcutVariants = 4;
inline bool is_shortcut_tactic(int64_t id) { return id >= kShortcutTactic && id < kShortcutTactic + kShortcutVariants; }
/// The tactics of kiln's bottleneck chain (conv_chain_cuda.h; FusedConv with
/// kiln.chain_activation): + 0 the Hopper kernel, + 1 the two convs one after the other.
constexpr int64_t kChainTactic = kShortcutTactic + kShortcutVariants, kChainVariants = 2;
inline bool is_chain_tactic(int64_t id) { return id >= kChainTactic && id < kChainTactic + kChainVariants; }

/// Where convs get graph engines (env KILN_CUDNN_GRAPH): 0 nowhere; 1 (default) where
/// the legacy path cannot fuse the whole epilogue into one call (SiLU, Sigmoid, Tanh,
/// ...; a legacy conv then needs an extra pass) and in FP32 channels-last with TF32
/// (conv_cuda.cu: the legacy calls run FMA kernels there); "all" every forward conv.
/// Measured on the H100: ResNet-50 (ReLU, fused by the legacy call) ran 0.386 instead of
/// 0.317 ms at bs1 and 1.39 instead of 1.34 ms at bs32 with graph engines; YOLOv8n (SiLU)
/// ran 1.3% faster with them at bs32 (4.19 vs 4.25 GPU ms; 3.62 with runtime fusion).
enum class Mode { kOff, kUnfused, kAll };
/// Tests set this to force a mode (empty: the environment's).
inline std::optional<Mode>& mode_override() {
  static std::optional<Mode> m;
  return m;
}
inline Mode mode() {
  if (mode_override()) return *mode_override();
  static const Mode m = [] {
    const char* v = std::getenv("KILN_CUDNN_GRAPH");
    if (v && std::strcmp(v, "0") == 0) return Mode::kOff;
    if (v && std::strcmp(v, "all") == 0) return Mode::kAll;
    return Mode::kUnfused;
  }();
  return m;
}
inline bool enabled() { return mode() != Mode::kOff; }

/// The graph candidates for `p`: fused-graph and plain-conv engines interleaved,
/// cuDNN's ranking within each; empty when cuDNN's graph API offers nothing.
Result<std::vector<int64_t>> candidates(KernelContext& ctx, const ConvProblem& p);

/// Runs candidate `tactic` (one of candidates(p); otherwise the first that runs).
/// A plain-conv tactic writes only the convolution into `y`: the caller applies
/// bias/residual/activation. Returns whether the epilogue is already applied;
/// an error when no graph engine could run (the caller then takes the legacy path).
Result<bool> run(KernelContext& ctx, const ConvProblem& p, int64_t tactic, const ConvBuffers& buf);

/// Runtime-compiled plans finalized from a node's kept state (cuda::kKernelStateAttr: the
/// engine carries the builder's compiled plan) instead of compiling, since the process began.
int64_t plans_from_state();

/// Drops every graph and plan (tests: the next run builds and finalizes afresh, as a process
/// loading an engine does). Nothing may be running or hold a plan.
void forget_plans_for_test();

}  // namespace kiln::ops::cudnn_graph
