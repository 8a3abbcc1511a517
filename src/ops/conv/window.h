// Sliding-window geometry shared by Conv, ConvTranspose and the pooling ops:
// reads kernel_shape/strides/dilations/pads/auto_pad and computes output sizes
// and the effective begin/end padding per spatial dim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ops/common.h"

namespace kiln::ops::window {

enum class AutoPad { kNotSet, kValid, kSameUpper, kSameLower };

struct WindowAttrs {
  int64_t spatial = 0;
  std::vector<int64_t> kernel, strides, dilations;
  std::vector<int64_t> pads;  ///< begins then ends (2 * spatial), as given (auto_pad NOTSET)
  AutoPad auto_pad = AutoPad::kNotSet;
  bool ceil_mode = false;
};

/// Reads the window attributes for `spatial` dims. `kernel` (from W's shape for
/// convs, nullptr for pools) fills kernel_shape when the attribute is absent.
/// On error returns a message (without the node name).
inline std::string read_window_attrs(const ir::Attributes& attrs, int64_t spatial, const std::vector<int64_t>* kernel,
                                     WindowAttrs& w) {
  w.spatial = spatial;
  w.kernel = attrs.get_ints("kernel_shape");
  if (w.kernel.empty()) {
    if (!kernel) return "kernel_shape is required";
    w.kernel = *kernel;
  }
  if (static_cast<int64_t>(w.kernel.size()) != spatial)
    return "kernel_shape has " + std::to_string(w.kernel.size()) + " entries for " + std::to_string(spatial) +
           " spatial dims";
  if (kernel && !kernel->empty()) {
    for (int64_t i = 0; i < spatial; ++i)
      if ((*kernel)[i] >= 0 && (*kernel)[i] != w.kernel[i]) return "kernel_shape disagrees with the weight's shape";
  }
  w.strides = attrs.get_ints("strides", std::vector<int64_t>(spatial, 1));
  w.dilations = attrs.get_ints("dilations", std::vector<int64_t>(spatial, 1));
  w.pads = attrs.get_ints("pads", std::vector<int64_t>(2 * spatial, 0));
  if (static_cast<int64_t>(w.strides.size()) != spatial) return "strides must have one entry per spatial dim";
  if (static_cast<int64_t>(w.dilations.size()) != spatial) return "dilations must have one entry per spatial dim";
  if (static_cast<int64_t>(w.pads.size()) != 2 * spatial) return "pads must have two entries per spatial dim";
  for (int64_t i = 0; i < spatial; ++i) {
    if (w.kernel[i] < 1) return "kernel_shape entries must be >= 1";
    if (w.strides[i] < 1) return "strides must be >= 1";
    if (w.dilations[i] < 1) return "dilations must be >= 1";
  }
  for (int64_t p : w.pads)
    if (p < 0) return "pads must be >= 0";
  std::string ap = attrs.get_string("auto_pad", "NOTSET");
  if (ap == "NOTSET" || ap.empty()) w.auto_pad = AutoPad::kNotSet;
  else if (ap == "VALID") w.auto_pad = AutoPad::kValid;
  else if (ap == "SAME_UPPER") w.auto_pad = AutoPad::kSameUpper;
  else if (ap == "SAME_LOWER") w.auto_pad = AutoPad::kSameLower;
  else return "unknown auto_pad '" + ap + "'";
  w.ceil_mode = attrs.get_int("ceil_mode", 0) != 0;
  return "";
}

/// Extent of the dilated kernel along dim i.
inline int64_t window_extent(const WindowAttrs& w, int64_t i) { return (w.kernel[i] - 1) * w.dilations[i] + 1; }

/// Output size and effective pads of dim i for input size `in`. Returns -1 as
/// output when the window does not fit (caller reports the error).
inline int64_t output_size(const WindowAttrs& w, int64_t i, int64_t in, int64_t* pad_begin = nullptr,
                           int64_t* pad_end = nullptr) {
  const int64_t k = window_extent(w, i), s = w.strides[i];
  int64_t pb = 0, pe = 0, out;
  switch (w.auto_pad) {
    case AutoPad::kValid:
      out = in >= k ? (in - k) / s + 1 : -1;
      break;
    case AutoPad::kSameUpper:
    case AutoPad::kSameLower: {
      out = (in + s - 1) / s;
      int64_t total = std::max<int64_t>(0, (out - 1) * s + k - in);
      // SAME_UPPER puts the odd pixel of padding at the end, SAME_LOWER at the beginning.
      pb = w.auto_pad == AutoPad::kSameUpper ? total / 2 : total - total / 2;
      pe = total - pb;
      break;
    }
    default: {
      pb = w.pads[i];
      pe = w.pads[i + w.spatial];
      int64_t span = in + pb + pe - k;
      if (span < 0) {
        out = -1;
      } else if (w.ceil_mode) {
        out = (span + s - 1) / s + 1;
        // The last window must start inside the input or the leading padding.
        if ((out - 1) * s >= in + pb) --out;
      } else {
        out = span / s + 1;
      }
    }
  }
  if (pad_begin) *pad_begin = pb;
  if (pad_end) *pad_end = pe;
  return out;
}

/// Symbolic output dim (unknown when the input dim is).
inline Dim output_dim(const WindowAttrs& w, int64_t i, const Dim& in) {
  if (!in.known()) return Dim::unknown();
  int64_t o = output_size(w, i, in.value);
  return o >= 0 ? Dim(o) : Dim::unknown();
}

/// Concrete per-dim geometry of a windowed op on one input.
struct Geometry {
  Dims in, out;                   ///< spatial sizes
  std::vector<int64_t> pad_begin;  ///< effective leading pads
  std::vector<int64_t> pad_end;
};

/// Computes the geometry; returns an error message when a window does not fit.
inline std::string compute_geometry(const WindowAttrs& w, const Dims& in_spatial, Geometry& g) {
  g.in = in_spatial;
  g.out.assign(w.spatial, 0);
  g.pad_begin.assign(w.spatial, 0);
  g.pad_end.assign(w.spatial, 0);
  for (int64_t i = 0; i < w.spatial; ++i) {
    int64_t o = output_size(w, i, in_spatial[i], &g.pad_begin[i], &g.pad_end[i]);
    if (o < 0)
      return "window of extent " + std::to_string(window_extent(w, i)) + " does not fit spatial dim " +
             std::to_string(i) + " of size " + std::to_string(in_spatial[i]) + " (with padding)";
    g.out[i] = o;
  }
  return "";
}

}  // namespace kiln::ops::window
