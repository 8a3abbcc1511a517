// kiln's KILN_* environment switches, read the same way everywhere.
#pragma once

#include <cstdlib>
#include <cstring>
#include <optional>

namespace kiln {

/// True when environment variable `name` is set to exactly `value` (e.g. "0" to turn
/// a default off, "1" to turn an experiment on).
inline bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

/// The integer environment variable `name` holds; empty when it is unset, empty, or
/// not a whole decimal integer (so "2x" or "abc" leave the default in place).
inline std::optional<long long> env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  if (!end || *end != 0) return std::nullopt;
  return n;
}

}  // namespace kiln
