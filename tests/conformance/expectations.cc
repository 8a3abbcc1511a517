#include "expectations.h"

#include <algorithm>
#include <fstream>
#include <set>

namespace kiln::conformance {

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

}  // namespace

bool Expectations::load(const std::string& path, std::string* err) {
  std::ifstream in(path);
  if (!in) {
    *err = "cannot read expectations file '" + path + "'";
    return false;
  }
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string reason;
    size_t hash = line.find('#');
    if (hash != std::string::npos) {
      reason = trim(line.substr(hash + 1));
      line = line.substr(0, hash);
    }
    line = trim(line);
    if (line.empty()) continue;
    if (line.find_first_of(" \t") != std::string::npos) {
      *err = path + ":" + std::to_string(lineno) + ": expected 'test_name  # reason', got '" + line + "'";
      return false;
    }
    entries_[line] = reason;
  }
  return true;
}

bool Expectations::update(const std::string& path, const std::map<std::string, std::string>& failing,
                          const std::vector<std::string>& ran, std::string* err) {
  std::map<std::string, std::string> out;
  if (!ran.empty()) {
    std::set<std::string> ran_set(ran.begin(), ran.end());
    for (const auto& [name, reason] : entries_)
      if (!ran_set.count(name)) out[name] = reason;
  }
  for (const auto& [name, reason] : failing) out[name] = reason;
  std::ofstream f(path, std::ios::trunc);
  if (!f) {
    *err = "cannot write expectations file '" + path + "'";
    return false;
  }
  f << "# ONNX backend node tests not expected to pass on this backend, one per line:\n"
       "#   test_name  # outcome: reason\n"
       "# A test failing that is not listed here fails the run (a regression). Regenerate after\n"
       "# checking the changes with: kiln_conformance --update-expectations\n";
  for (const auto& [name, reason] : out) {
    std::string r = reason;
    std::replace(r.begin(), r.end(), '\n', ' ');
    f << name << "  # " << r << "\n";
  }
  entries_ = out;
  return static_cast<bool>(f);
}

}  // namespace kiln::conformance
