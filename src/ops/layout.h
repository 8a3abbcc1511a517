// NHWC nodes. The nhwc_layout pass marks a 2-D Conv / FusedConv / MaxPool /
// AveragePool with the attribute kiln.nhwc = 1: its activations are [N, H, W, C]
// and a conv's weights [M, kH, kW, C/group]. Kernels that know the layout (the
// CUDA conv and pool kernels) read the attribute; inference and every other
// kernel see the NCHW view through this adapter (infer_node and run_node call it).
#pragma once

#include "ir/graph.h"
#include "kiln/types.h"

namespace kiln::ops {

inline constexpr const char* kNhwcAttr = "kiln.nhwc";
/// On an NHWC conv: its input X stays [N, C, H, W] while its output is NHWC. The layout
/// pass sets it on a few-channel stem conv that kiln's direct conv runs straight from the
/// model's NCHW input (no input Transpose, no channel Pad; conv_direct_cuda.h).
inline constexpr const char* kNchwInputAttr = "kiln.nchw_input";

/// True if the node's tensors are in NHWC.
bool is_nhwc(const ir::Node& node);

enum class LayoutSlot { kPlain, kActivation, kWeight };
/// True if an NHWC conv reads its input X in NCHW (kNchwInputAttr).
bool has_nchw_input(const ir::Node& node);

/// How input `i` of an NHWC node is stored (X of a has_nchw_input conv: kPlain).
LayoutSlot nhwc_input_slot(const ir::Node& node, size_t i);

/// True if output `k` of an NHWC node is an NHWC activation: output 0, and a FusedConv's chained
/// output 1 (kiln.chain_activation).
bool nhwc_output(const ir::Node& node, size_t k);

/// [N, H, W, C] -> [N, C, H, W] and back (weights [M, kH, kW, C] <-> [M, C, kH, kW] alike).
template <class D>
std::vector<D> nhwc_to_nchw(const std::vector<D>& d) {
  return d.size() == 4 ? std::vector<D>{d[0], d[3], d[1], d[2]} : d;
}
template <class D>
std::vector<D> nchw_to_nhwc(const std::vector<D>& d) {
  return d.size() == 4 ? std::vector<D>{d[0], d[2], d[3], d[1]} : d;
}

/// Host copies with the data permuted.
Tensor tensor_nhwc_to_nchw(const Tensor& t);
Tensor tensor_nchw_to_nhwc(const Tensor& t);

}  // namespace kiln::ops
