// How a CUDA kernel with several algorithms tells the builder its candidates
// (docs/tactics.md): the kernel's `tactics` function runs the kernel once with a
// sink set, and the plan the kernel builds reports its candidate IDs into it. Likewise
// a kernel whose first run compiles code reports what it compiled (report_state), which
// the engine keeps on the node (kKernelStateAttr).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ops/op.h"

namespace kiln::cuda {

namespace detail {
inline thread_local std::vector<int64_t>* tactic_sink = nullptr;
inline thread_local std::string* state_sink = nullptr;
}  // namespace detail

/// Node attribute (string) with what a kernel's first run prepared and the engine file
/// keeps, so that loading the engine need not prepare it again: a runtime-compiled cuDNN
/// plan (conv_graph_cuda.cu). The builder sets it from report_state; kernels that find it
/// check that it is theirs (library version, problem, tactic) before using it.
inline constexpr char kKernelStateAttr[] = "kiln.kernel_state";

/// True while the builder collects a kernel's state (node_state_on_device).
inline bool collecting_state() { return detail::state_sink != nullptr; }

/// Called by a kernel that ran with a prepared state worth keeping; the first report wins.
inline void report_state(std::string state) {
  if (detail::state_sink && detail::state_sink->empty()) *detail::state_sink = std::move(state);
}

/// True while the builder collects a kernel's candidates (collect_tactics): a plan may
/// then look for candidates that cost something to find.
inline bool collecting_tactics() { return detail::tactic_sink != nullptr; }

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
