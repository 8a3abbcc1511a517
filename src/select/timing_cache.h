// The timing cache: measured tactic choices reused across CUDA builds, keyed by
// the device and library versions they were measured with. Plain C++ (no CUDA);
// the file format is described in docs/tactics.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/logger.h"
#include "kiln/status.h"
#include "ops/op.h"

namespace kiln::select {

inline constexpr char kTimingCacheMagic[] = "KILN-TIMING-CACHE";
/// Bump when the file layout or the meaning of a kernel's tactic IDs changes.
// 2: conv tactics include cuDNN graph engines; 3: samples are GPU time (CUDA graph
// replay) and FP32 channels-last convs offer graph engines, so older timings mislead.
// 4: an entry may carry a sixth field, what its pick compiled (kiln.kernel_state);
// version 3 files are still read (their entries carry none).
inline constexpr int kTimingCacheVersion = 4;
inline constexpr int kTimingCacheOldestRead = 3;

/// One node signature's outcome.
struct TimingEntry {
  int64_t tactic = -1;  ///< chosen tactic; -1 = the kernel offers nothing to choose
  float ms = 0;         ///< median time of the chosen tactic (0 when not timed)
  int timed = 0;        ///< candidates timed
  int total = 0;        ///< candidates the kernel offered
  /// What the chosen tactic compiled, for the engine (cuda::kKernelStateAttr); empty when nothing.
  std::string state;
  bool operator==(const TimingEntry&) const = default;
};

/// Signature -> entry, for one device key.
class TimingCache {
 public:
  explicit TimingCache(std::string key = "") : key_(std::move(key)) {}
  /// The device this cache's timings hold for (GPU, compute capability, driver, libraries).
  const std::string& key() const { return key_; }
  /// The entry for `signature`, or nullptr.
  const TimingEntry* find(const std::string& signature) const;
  /// Adds or replaces an entry. Signatures must not contain tabs or newlines.
  void put(const std::string& signature, const TimingEntry& e);
  size_t size() const { return entries_.size(); }
  const std::map<std::string, TimingEntry>& entries() const { return entries_; }

  /// The file contents: header (magic, version, key), entries, checksummed footer.
  std::string serialize() const;
  /// Parses file contents; errors name `file` and what is wrong (kInvalidModel).
  static Result<TimingCache> parse(const std::string& text, const std::string& file);
  /// Reads `path`. A missing file gives an empty cache for `key` (the save creates it);
  /// a file for another key gives an empty cache and a warning naming both keys; an
  /// unreadable, truncated or corrupt file is an error naming it.
  static Result<TimingCache> load(const std::string& path, const std::string& key, Logger& logger);
  /// Writes `path` atomically (a temporary file beside it, then rename).
  Status save(const std::string& path) const;

 private:
  std::string key_;
  std::map<std::string, TimingEntry> entries_;
};

/// What identifies a node's timing problem: op type, domain, kernel, precision,
/// input dtypes and dims (concrete), every attribute but kiln.tactic, the kernel's kept
/// state and kiln.fused_from (layout included: kiln.nhwc), and `build` (build-wide
/// settings such as TF32).
/// Printable ASCII without tabs or newlines.
std::string node_signature(const ir::Node& node, const std::vector<ops::TensorType>& inputs, const std::string& build);

}  // namespace kiln::select
