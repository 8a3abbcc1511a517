// kiln_conformance: runs the ONNX backend node tests on the CPU or CUDA in child
// processes with a per-test timeout, and checks the results against an
// expectations file. A child runs a batch of tests (--batch, default 16: a process
// per test cost ~3 s a test of CUDA context and library-handle start-up on a shared
// GPU, and made the CPU run 8.8 instead of 2.7 s here);
// when it crashes or hangs, the test it was running gets that outcome and the
// tests it had not started run again in fresh children, and every test a batch
// did not pass runs again alone, so state one test leaves in a process never
// decides another's outcome.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "expectations.h"
#include "node_test.h"

namespace fs = std::filesystem;
using namespace kiln::conformance;

namespace {

constexpr int kSkipCode = 77;  // ctest SKIP_RETURN_CODE

struct Options {
  std::string node_dir;
  std::string expectations;
  std::string report;
  std::vector<std::string> filters;
  int jobs = 2;
  int batch = 16;  ///< tests per child process
  double timeout_s = 60;
  double min_pass_rate = 60;
  int64_t mem_limit_mb = 8192;
  int opt_level = -1;
  std::string device = "cpu";
  bool update = false;
  bool verbose = false;
};

struct Child {
  pid_t pid = -1;
  int result_fd = -1, log_fd = -1;
  std::vector<std::string> tests;  ///< the batch, in order
  size_t started = 0;              ///< tests the child has begun (the last one may be running)
  size_t parsed = 0;               ///< bytes of `result` already read as records
  std::map<std::string, TestResult> done;
  std::chrono::steady_clock::time_point start;  ///< when the running test began
  std::string result, log;
};

// Child -> parent records on the result pipe, each ended by kRecordEnd:
//   "S" kFieldSep name                                        the child begins a test
//   "R" kFieldSep name kFieldSep outcome kFieldSep message    its result
constexpr char kFieldSep = '\x1f', kRecordEnd = '\x1e';

void write_all(int fd, const std::string& msg) {
  const char* p = msg.data();
  size_t left = msg.size();
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w <= 0) break;
    p += w;
    left -= static_cast<size_t>(w);
  }
}

// A result message may not contain the record separators.
std::string clean(std::string m) {
  std::replace(m.begin(), m.end(), kFieldSep, ' ');
  std::replace(m.begin(), m.end(), kRecordEnd, ' ');
  return m;
}

// Runs in the child: the batch's tests in order, each announced and then reported on `fd`.
[[noreturn]] void child_main(const Options& o, const std::vector<std::string>& tests, int fd) {
  if (o.mem_limit_mb > 0) {
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(o.mem_limit_mb) * 1024 * 1024;
    setrlimit(RLIMIT_AS, &lim);
  }
  NodeTestOptions nt;
  nt.opt_level = o.opt_level;
  nt.cuda = o.device == "cuda";
  nt.verbose = o.verbose;
  for (const std::string& name : tests) {
    write_all(fd, std::string("S") + kFieldSep + name + kRecordEnd);
    TestResult r;
    try {
      r = run_node_test((fs::path(o.node_dir) / name).string(), nt);
    } catch (const std::exception& e) {
      r = {Outcome::kCrash, std::string("exception: ") + e.what()};
    } catch (...) {
      r = {Outcome::kCrash, "unknown exception"};
    }
    std::fflush(nullptr);
    write_all(fd, std::string("R") + kFieldSep + name + kFieldSep + outcome_name(r.outcome) + kFieldSep +
                      clean(r.message) + kRecordEnd);
  }
  std::fflush(nullptr);
  _exit(0);
}

bool start_child(const Options& o, const std::vector<std::string>& tests, Child* c) {
  int rp[2], lp[2];
  if (pipe(rp) != 0) return false;
  if (pipe(lp) != 0) {
    close(rp[0]);
    close(rp[1]);
    return false;
  }
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {rp[0], rp[1], lp[0], lp[1]}) close(fd);
    return false;
  }
  if (pid == 0) {
    close(rp[0]);
    close(lp[0]);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(lp[1], 1);
    dup2(lp[1], 2);
    close(lp[1]);
    child_main(o, tests, rp[1]);
  }
  close(rp[1]);
  close(lp[1]);
  c->pid = pid;
  c->result_fd = rp[0];
  c->log_fd = lp[0];
  c->tests = tests;
  c->start = std::chrono::steady_clock::now();
  return true;
}

// Reads the complete records the child has written so far.
void parse_records(Child& c) {
  for (;;) {
    size_t end = c.result.find(kRecordEnd, c.parsed);
    if (end == std::string::npos) return;
    std::string rec = c.result.substr(c.parsed, end - c.parsed);
    c.parsed = end + 1;
    std::vector<std::string> f;
    size_t at = 0;
    for (size_t sep; (sep = rec.find(kFieldSep, at)) != std::string::npos; at = sep + 1)
      f.push_back(rec.substr(at, sep - at));
    f.push_back(rec.substr(at));
    if (f.size() == 2 && f[0] == "S") {
      c.started = std::min(c.started + 1, c.tests.size());
      c.start = std::chrono::steady_clock::now();
    } else if (f.size() == 4 && f[0] == "R") {
      Outcome out;
      c.done[f[1]] = outcome_from_name(f[2], &out) ? TestResult{out, f[3]}
                                                   : TestResult{Outcome::kCrash, "unreadable result: " + f[2]};
    }
  }
}

// Reads what is available; false at EOF.
bool drain(int fd, std::string* into, size_t cap) {
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n <= 0) return false;
  if (into->size() < cap) into->append(buf, static_cast<size_t>(std::min<size_t>(n, cap - into->size())));
  return true;
}

std::string last_line(const std::string& log) {
  size_t end = log.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  size_t start = log.rfind('\n', end);
  return log.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// Reaps the child. Returns the outcome of the test it was running when it
// stopped without reporting (crash, timeout, silent exit); nullopt when every
// test it began has a result.
std::optional<TestResult> finish(Child& c, bool timed_out, double timeout_s) {
  if (timed_out) {
    kill(c.pid, SIGKILL);
    waitpid(c.pid, nullptr, 0);
    // What the child wrote before it was killed says which test hung.
    if (c.result_fd >= 0)
      while (drain(c.result_fd, &c.result, 1 << 24)) {
      }
    parse_records(c);
    return TestResult{Outcome::kTimeout, "timed out after " + std::to_string(static_cast<int>(timeout_s)) + " s"};
  }
  int status = 0;
  waitpid(c.pid, &status, 0);
  parse_records(c);
  const bool running = c.started > 0 && !c.done.count(c.tests[c.started - 1]);
  std::string tail = last_line(c.log);
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return TestResult{Outcome::kCrash, std::string("killed by signal ") + std::to_string(sig) + " (" + strsignal(sig) +
                                           ")" + (tail.empty() ? "" : ": " + tail)};
  }
  if (running || c.started < c.tests.size())
    return TestResult{Outcome::kCrash, "exited with status " + std::to_string(WEXITSTATUS(status)) +
                                           " without a result" + (tail.empty() ? "" : ": " + tail)};
  return std::nullopt;
}

std::map<std::string, TestResult> run_all(const Options& o, const std::vector<std::string>& names) {
  const auto batch = static_cast<size_t>(o.batch);
  std::map<std::string, TestResult> results;
  std::deque<std::string> queue(names.begin(), names.end());
  std::deque<std::string> alone;  // tests to (re)run in a child of their own
  std::vector<Child> running;
  size_t done = 0, total = names.size();
  auto t0 = std::chrono::steady_clock::now();
  auto last_progress = t0;
  auto record = [&](const std::string& name, const TestResult& r) {
    if (o.verbose || r.outcome == Outcome::kCrash || r.outcome == Outcome::kTimeout)
      std::cout << outcome_name(r.outcome) << "  " << name << (r.message.empty() ? "" : "  " + r.message) << std::endl;
    results[name] = r;
    ++done;
  };
  while (!queue.empty() || !alone.empty() || !running.empty()) {
    while ((!queue.empty() || !alone.empty()) && static_cast<int>(running.size()) < o.jobs) {
      std::vector<std::string> tests;
      if (!alone.empty()) {
        tests.push_back(alone.front());
        alone.pop_front();
      } else {
        while (tests.size() < batch && !queue.empty()) {
          tests.push_back(queue.front());
          queue.pop_front();
        }
      }
      Child c;
      if (!start_child(o, tests, &c)) {
        for (const auto& t : tests)
          record(t, {Outcome::kCrash, std::string("cannot start a child: ") + std::strerror(errno)});
      } else {
        running.push_back(std::move(c));
      }
    }
    std::vector<pollfd> fds;
    for (auto& c : running) {
      if (c.result_fd >= 0) fds.push_back({c.result_fd, POLLIN, 0});
      if (c.log_fd >= 0) fds.push_back({c.log_fd, POLLIN, 0});
    }
    if (!fds.empty()) poll(fds.data(), fds.size(), 100);
    for (const auto& p : fds) {
      if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (auto& c : running) {
        if (p.fd == c.result_fd) {
          if (!drain(c.result_fd, &c.result, 1 << 24)) {
            close(c.result_fd);
            c.result_fd = -1;
          }
          parse_records(c);
        } else if (p.fd == c.log_fd && !drain(c.log_fd, &c.log, 1 << 16)) {
          close(c.log_fd);
          c.log_fd = -1;
        }
      }
    }
    auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < running.size();) {
      Child& c = running[i];
      // The timeout runs per test: from the child's start, then from each test it begins.
      bool timed_out = std::chrono::duration<double>(now - c.start).count() > o.timeout_s;
      if ((c.result_fd < 0 && c.log_fd < 0) || timed_out) {
        std::optional<TestResult> stopped = finish(c, timed_out, o.timeout_s);
        if (stopped && c.started == 0) c.started = 1;  // stopped before announcing: its first test is to blame
        if (c.result_fd >= 0) close(c.result_fd);
        if (c.log_fd >= 0) close(c.log_fd);
        const bool batched = c.tests.size() > 1;
        std::vector<std::string> not_started;
        for (size_t k = 0; k < c.tests.size(); ++k) {
          const std::string& name = c.tests[k];
          auto it = c.done.find(name);
          if (it == c.done.end() && k >= c.started) {
            not_started.push_back(name);
            continue;
          }
          TestResult r = it != c.done.end() ? it->second
                         : stopped          ? *stopped
                                            : TestResult{Outcome::kCrash, "no result"};
          // Only a test's own process decides a failure: a batch's non-passes run again alone.
          if (batched && r.outcome != Outcome::kPass)
            alone.push_back(name);
          else
            record(name, r);
        }
        queue.insert(queue.begin(), not_started.begin(), not_started.end());
        running.erase(running.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
    if (!o.verbose && std::chrono::duration<double>(now - last_progress).count() > 30) {
      last_progress = now;
      std::cout << "  ... " << done << "/" << total << " tests done ("
                << static_cast<int>(std::chrono::duration<double>(now - t0).count()) << " s)" << std::endl;
    }
  }
  return results;
}

std::string short_reason(const TestResult& r) {
  std::string m = r.message;
  size_t nl = m.find('\n');
  if (nl != std::string::npos) m = m.substr(0, nl);
  if (m.size() > 150) m = m.substr(0, 147) + "...";
  return std::string(outcome_name(r.outcome)) + (m.empty() ? "" : ": " + m);
}

int run(const Options& o, const std::vector<std::string>& positional) {
  if (!fs::is_directory(o.node_dir)) {
    std::cout << "SKIP: node-test folder '" << o.node_dir
              << "' not found; generate it with: python3 scripts/gen_onnx_node_tests.py " << o.node_dir << std::endl;
    return kSkipCode;
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(o.node_dir))
    if (e.is_directory() && fs::exists(e.path() / "model.onnx")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  bool subset = !positional.empty() || !o.filters.empty();
  if (subset) {
    std::vector<std::string> keep;
    for (const auto& n : names) {
      bool k = std::find(positional.begin(), positional.end(), n) != positional.end();
      for (const auto& f : o.filters) k = k || n.find(f) != std::string::npos;
      if (k) keep.push_back(n);
    }
    names.swap(keep);
  }
  if (names.empty()) {
    std::cerr << "kiln_conformance: error: no node tests selected in " << o.node_dir << std::endl;
    return 1;
  }

  Expectations exp;
  if (!o.expectations.empty() && fs::exists(o.expectations)) {
    std::string err;
    if (!exp.load(o.expectations, &err)) {
      std::cerr << "kiln_conformance: error: " << err << std::endl;
      return 1;
    }
  }

  auto t0 = std::chrono::steady_clock::now();
  std::map<std::string, TestResult> results = run_all(o, names);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::map<Outcome, int> count;
  std::vector<std::string> regressions, now_passing, hard;
  for (const auto& [name, r] : results) {
    count[r.outcome]++;
    if (r.outcome == Outcome::kCrash || r.outcome == Outcome::kTimeout) hard.push_back(name);
    if (r.outcome == Outcome::kPass && exp.contains(name)) now_passing.push_back(name);
    if (r.outcome != Outcome::kPass && !exp.contains(name)) regressions.push_back(name);
  }

  if (!o.report.empty()) {
    std::ofstream rep(o.report);
    for (const auto& [name, r] : results) {
      std::string m = r.message;
      std::replace(m.begin(), m.end(), '\n', ' ');
      std::replace(m.begin(), m.end(), '\t', ' ');
      rep << name << "\t" << outcome_name(r.outcome) << "\t" << m << "\n";
    }
  }

  if (o.update) {
    std::map<std::string, std::string> failing;
    for (const auto& [name, r] : results)
      if (r.outcome != Outcome::kPass) failing[name] = short_reason(r);
    // A subset run only rewrites the entries of the tests it ran.
    std::string err;
    if (!exp.update(o.expectations, failing, subset ? names : std::vector<std::string>{}, &err)) {
      std::cerr << "kiln_conformance: error: " << err << std::endl;
      return 1;
    }
    std::cout << "wrote " << o.expectations << " (" << failing.size() << " tests not passing)" << std::endl;
  }

  if (!o.update)
    for (const auto& name : regressions)
      std::cout << "REGRESSION " << name << "  " << short_reason(results[name]) << std::endl;
  if (!now_passing.empty() && !o.update) {
    std::cout << "note: " << now_passing.size() << " tests now pass; remove them from " << o.expectations
              << " (or run --update-expectations):";
    for (size_t i = 0; i < now_passing.size() && i < 30; ++i) std::cout << " " << now_passing[i];
    if (now_passing.size() > 30) std::cout << " ...";
    std::cout << std::endl;
  }

  int total = static_cast<int>(results.size());
  double rate = total ? 100.0 * count[Outcome::kPass] / total : 0;
  char pct[16];
  std::snprintf(pct, sizeof pct, "%.1f", rate);
  std::cout << "conformance (" << o.device << "): " << count[Outcome::kPass] << " passed, " << count[Outcome::kFail]
            << " failed, " << count[Outcome::kError] << " errors, " << count[Outcome::kUnsupported] << " unsupported, "
            << count[Outcome::kCrash] << " crashed, " << count[Outcome::kTimeout] << " timed out of " << total
            << " node tests (" << pct << "%) in " << static_cast<int>(secs) << " s" << std::endl;

  int rc = 0;
  if (!hard.empty()) {
    std::cout << "FAILED: " << hard.size() << " tests crashed or timed out" << std::endl;
    rc = 1;
  }
  if (!regressions.empty() && !o.update) {
    std::cout << "FAILED: " << regressions.size() << " tests fail that are not in " << o.expectations
              << " (fix them, or run with --update-expectations after checking)" << std::endl;
    rc = 1;
  }
  if (!subset && rate < o.min_pass_rate) {
    std::cout << "FAILED: pass rate " << pct << "% is below --min-pass-rate " << o.min_pass_rate << "%" << std::endl;
    rc = 1;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
#ifdef KILN_SOURCE_DIR
  o.node_dir = std::string(KILN_SOURCE_DIR) + "/third_party_data/onnx-node-tests";
  o.expectations = std::string(KILN_SOURCE_DIR) + "/tests/conformance/expected_failures_cpu.txt";
#endif
  CLI::App app{"Runs the ONNX backend node tests through kiln on the CPU", "kiln_conformance"};
  app.add_option("tests", positional, "Run only these tests (folder names)");
  app.add_option("--node-dir", o.node_dir, "Folder of generated node tests")->capture_default_str();
  app.add_option("--expectations", o.expectations, "Expected-failures file")->capture_default_str();
  app.add_option("--filter", o.filters, "Run only tests whose name contains this (repeatable)");
  app.add_option("-j,--jobs", o.jobs, "Parallel child processes")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--timeout", o.timeout_s, "Seconds per test")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--batch", o.batch, "Tests per child process (a test a batch does not pass is run again alone)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--min-pass-rate", o.min_pass_rate, "Fail below this pass percentage (full runs only)")
      ->capture_default_str();
  app.add_option("--mem-limit-mb", o.mem_limit_mb, "Address-space limit per test (0: none)")->capture_default_str();
  app.add_option("--opt-level", o.opt_level, "Builder optimization level (default: the builder's)");
  app.add_option("--device", o.device, "cpu or cuda (the expectations default to expected_failures_<device>.txt)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--report", o.report, "Write name<TAB>outcome<TAB>message for every test");
  app.add_flag("--update-expectations", o.update, "Rewrite the expectations file with the current failures");
  app.add_flag("-v,--verbose", o.verbose, "Print every result, and kiln's messages");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (o.device == "cuda") {
#ifdef KILN_SOURCE_DIR
    if (app.get_option("--expectations")->count() == 0)
      o.expectations = std::string(KILN_SOURCE_DIR) + "/tests/conformance/expected_failures_cuda.txt";
#endif
    o.mem_limit_mb = 0;  // CUDA reserves far more address space than it uses
  }
  try {
    return run(o, positional);
  } catch (const std::exception& e) {
    std::cerr << "kiln_conformance: error: " << e.what() << std::endl;
    return 1;
  }
}
