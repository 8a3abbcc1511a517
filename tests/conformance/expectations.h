// The expected-failures file: "test_name  # reason" per line, '#' lines are comments.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace kiln::conformance {

class Expectations {
 public:
  /// Reads `path`; false with `err` set when unreadable or malformed.
  bool load(const std::string& path, std::string* err);
  /// True when `name` is listed.
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  /// Rewrites `path` with `failing` (name -> reason). When `ran` is non-empty only
  /// those tests' entries change; the rest of the file is kept.
  bool update(const std::string& path, const std::map<std::string, std::string>& failing,
              const std::vector<std::string>& ran, std::string* err);

 private:
  std::map<std::string, std::string> entries_;
};

}  // namespace kiln::conformance
