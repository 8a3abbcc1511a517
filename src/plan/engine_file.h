// The engine file: a checked header, JSON metadata, and an aligned weight blob.
// Layout is documented in docs/engine-format.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "plan/memory_plan.h"

namespace kiln::plan {

inline constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'E', 'N', 'G', '\0'};
inline constexpr uint32_t kFormatVersion = 2;  ///< 2: the lane checksum (1: byte-wise FNV-1a)
inline constexpr uint64_t kHeaderBytes = 64;

/// min/opt/max dims per input name.
using ProfileRanges = std::map<std::string, std::array<Dims, 3>>;

/// Everything an engine holds.
struct EngineModel {
  std::shared_ptr<ir::Graph> graph;  ///< planned graph; node->kernel/precision set; weights are initializers
  std::vector<ProfileRanges> profiles;
  MemoryPlan memory;
  std::map<std::string, std::string> metadata;  ///< user metadata
  std::string device = "cpu";                   ///< "cpu" or "cuda"
  std::string device_arch;                      ///< "x86_64" / "aarch64" / "sm_90"
  std::string kiln_version;
  /// Build choices the runtime honours, e.g. "no_tf32"; "device_name", "libraries" for inspect.
  std::map<std::string, std::string> options;
  std::map<std::string, int> build_stats;
  double build_seconds = 0;
};

/// This machine's CPU architecture name.
std::string host_arch();
/// Serializes to the engine file format.
std::vector<uint8_t> serialize_engine(const EngineModel& m);
/// Checks and parses an engine file; the weights are copied into one shared buffer.
/// Refuses wrong magic, truncation, another format or kiln version, a checksum
/// mismatch, or another device, saying what differs.
Result<EngineModel> deserialize_engine(const uint8_t* data, size_t size);
/// Parses only the metadata JSON (for tools), after the same checks.
Result<std::string> engine_metadata_json(const uint8_t* data, size_t size);

}  // namespace kiln::plan
