// Activation memory planning: one arena per context, offsets reused by lifetime.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kiln::plan {

inline constexpr uint64_t kAlignment = 64;

struct Slot {
  uint64_t offset = 0;
  uint64_t size = 0;  ///< bytes reserved (at the profiles' max shapes)
};

struct MemoryPlan {
  uint64_t arena_bytes = 0;             ///< the arena a context allocates
  uint64_t naive_bytes = 0;             ///< sum of all slots (no reuse), for reporting
  std::map<std::string, Slot> slots;    ///< value name -> slot
};

/// Plans every activation of `g` that has a positive size in `bytes` (value
/// name -> bytes at the largest shapes). Graph inputs, outputs and constants are
/// not planned: they live in user buffers and the weight blob. Lifetimes are
/// node indices from the producer to the last consumer; placement is greedy
/// best fit by decreasing size, so buffers whose lifetimes do not overlap share memory.
/// Outputs of reshape-like ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity)
/// share their input's slot (no copy), which then lives until the last reader of either.
MemoryPlan plan_memory(const ir::Graph& g, const std::map<std::string, uint64_t>& bytes);

}  // namespace kiln::plan
