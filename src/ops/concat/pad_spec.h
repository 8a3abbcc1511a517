// Pad's parameters resolved from its attributes and value inputs (mode, pads per
// axis, the constant), shared by the reference (pad.cc) and the CUDA kernel
// (concat_cuda.cu) so both read a node the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ops/common.h"
#include "ops/host_device.h"

namespace kiln::ops::movement {

enum class PadMode : int { kConstant, kReflect, kEdge, kWrap };

/// Begin/end pads for every input dim (0 for axes the node does not list).
struct PadSpec {
  PadMode mode = PadMode::kConstant;
  std::vector<int64_t> begin, end;
};

/// The `mode` attribute.
Result<PadMode> pad_mode(const ir::Node& n);

/// Resolves mode, pads and axes for an input of rank `rank`. `pads_value` and
/// `axes_value` are the values of inputs 1 and 3 (opset 11+); returns nullopt when
/// one that is needed is not known.
Result<std::optional<PadSpec>> pad_spec(const ir::Node& n, size_t rank, const Tensor* pads_value, bool has_axes,
                                        const Tensor* axes_value);

/// The padded shape; errors on an axis cropped below zero or an empty axis padded
/// in a mode other than constant.
Result<Shape> padded_shape(const ir::Node& n, const Shape& in, const PadSpec& p);

/// Where constant mode's border value comes from.
struct PadFill {
  bool from_input = false;  ///< true: the first element of input 2 (constant_value)
  Tensor value;             ///< otherwise this scalar of the input's dtype (attribute `value`, or 0)
};

/// Opset 11 moved the constant from the `value` attribute to input 2 (`constant`:
/// that input, or nullptr when absent); an empty input 2 means 0.
Result<PadFill> pad_fill(const ir::Node& n, DataType dtype, const Tensor* constant);

/// Input index that output position i (already shifted by the begin pad) reads
/// along an axis of n elements; -1 = the constant.
KILN_HOST_DEVICE inline int64_t pad_source_index(int64_t i, int64_t n, PadMode mode) {
  if (i >= 0 && i < n) return i;
  if (n == 0) return -1;
  switch (mode) {
    case PadMode::kConstant:
      return -1;
    case PadMode::kEdge:
      return i < 0 ? 0 : n - 1;
    case PadMode::kWrap:
      return ((i % n) + n) % n;
    case PadMode::kReflect: {
      if (n == 1) return 0;
      int64_t period = 2 * (n - 1);
      int64_t m = ((i % period) + period) % period;
      return m < n ? m : period - m;
    }
  }
  return -1;
}

}  // namespace kiln::ops::movement
