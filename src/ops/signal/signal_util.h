// Shared helpers of the signal ops: twiddle tables and scalar inputs.
#pragma once

#include <cmath>
#include <numbers>
#include <vector>

#include "ops/op.h"

namespace kiln::ops {

/// cos/sin of 2*pi*m/n for m in [0, n).
inline void twiddles(int64_t n, std::vector<double>& cs, std::vector<double>& sn) {
  cs.resize(static_cast<size_t>(n));
  sn.resize(static_cast<size_t>(n));
  for (int64_t m = 0; m < n; ++m) {
    double a = 2.0 * std::numbers::pi * static_cast<double>(m) / static_cast<double>(n);
    cs[m] = std::cos(a);
    sn[m] = std::sin(a);
  }
}

void add_dft_ops(OpRegistry& r);

}  // namespace kiln::ops
