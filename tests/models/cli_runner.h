// Helpers for tests that drive the `kiln` command: run it, capture output and exit
// code, make scratch folders.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backends/cuda/device.h"

namespace kiln::testing {

/// True when a CUDA device is usable (tests that need one skip otherwise).
inline bool cuda_available() { return kiln::cuda::device_count() > 0; }
inline std::string no_cuda_reason() { return "no GPU: " + kiln::cuda::no_device_reason(); }

struct CliResult {
  int code = -1;       ///< exit status; 128 + signal when killed
  std::string output;  ///< stdout and stderr together
};

/// Quotes one argument for /bin/sh.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  q += '\'';
  return q;
}

/// Runs `kiln` with `args`.
inline CliResult run_cli(const std::vector<std::string>& args) {
  std::string cmd = shell_quote(KILN_CLI);
  for (const auto& a : args) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  cmd += " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = pclose(p);
  if (WIFEXITED(status))
    r.code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    r.code = 128 + WTERMSIG(status);
  return r;
}

/// Expects a clean failure: exit code 1 (or `code`), "kiln: error:" in the output, no crash.
inline void expect_cli_error(const CliResult& r, const std::string& must_contain = "", int code = 1) {
  EXPECT_EQ(r.code, code) << r.output;
  EXPECT_NE(r.output.find("kiln: error:"), std::string::npos) << r.output;
  if (!must_contain.empty()) {
    EXPECT_NE(r.output.find(must_contain), std::string::npos) << r.output;
  }
}

/// A fresh scratch folder under the build tree, unique to this process and test.
inline std::filesystem::path scratch_dir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = tag + "_" + (info ? std::string(info->test_suite_name()) + "." + info->name() : "x") + "_" +
                     std::to_string(getpid());
  for (char& c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  std::filesystem::path d = std::filesystem::path(KILN_BINARY_DIR) / "tests" / "scratch" / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace kiln::testing
