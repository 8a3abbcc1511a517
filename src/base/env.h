// kiln's KILN_* environment switches, read the same way everywhere.
#pragma once

#include <cstdlib>
#include <cstring>

namespace kiln {

/// True when environment variable `name` is set to exactly `value` (e.g. "0" to turn
/// a default off, "1" to turn an experiment on).
inline bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

}  // namespace kiln
