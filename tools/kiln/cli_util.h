// Small helpers shared by the kiln subcommands: files, formatting, name sanitising.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::cli {

/// Reads a whole file (clear error naming the path if it cannot).
Result<std::vector<uint8_t>> read_file(const std::string& path);
/// Writes bytes to a file, replacing it.
Status write_file(const std::string& path, const void* data, size_t size);
/// Replaces every character outside [A-Za-z0-9._-] with '_' (empty -> "_").
std::string safe_file_name(const std::string& name);
/// "12.3 MiB" style byte count.
std::string format_bytes(uint64_t bytes);
/// "[1, 3, 224, 224]" (dynamic dims as -1, scalar as []).
std::string format_dims(const Dims& d);
/// Up to `count` leading values of a tensor, comma separated ("..." appended if more).
std::string format_values(const Tensor& t, int64_t count);
/// Joins strings with a separator.
std::string join(const std::vector<std::string>& parts, const std::string& sep);

}  // namespace kiln::cli
