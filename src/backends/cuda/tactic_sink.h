// How a CUDA kernel with several algorithms tells the builder its candidates
// (docs/tactics.md): the kernel's `tactics` function runs the kernel once with a
// sink set, and the plan the kernel builds reports its candidate IDs into it.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/op.h"

namespace kiln::cuda {

namespace detail {
inline thread_local std::vector<int64_t>* tactic_sink = nullptr;
}  // namespace detail

/// Called by a kernel's plan: the first plan built or found while collecting wins.
inline void report_tactics(const std::vector<int64_t>& ids) {
  if (detail::tactic_sink && detail::tactic_sink->empty()) *detail::tactic_sink = ids;
}

/// A `KernelTactics` for kernel F: runs F once and returns what its plan reported
/// (empty when it launched nothing, e.g. an empty tensor).
template <ops::KernelFn F>
Result<std::vector<int64_t>> collect_tactics(ops::KernelContext& ctx) {
  std::vector<int64_t> ids;
  detail::tactic_sink = &ids;
  Status s = F(ctx);
  detail::tactic_sink = nullptr;
  if (!s.ok()) return s;
  return ids;
}

}  // namespace kiln::cuda
