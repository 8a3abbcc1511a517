// A fatal signal in kiln_tests prints the stack (raw addresses, symbolized where
// the dynamic symbol table allows; `addr2line -e kiln_tests ADDR` does the rest)
// before the process dies, so a crash on a CI or GPU machine names its place.
#include <execinfo.h>
#include <unistd.h>

#include <signal.h>

#include <csignal>
#include <initializer_list>

namespace {

void on_fatal(int sig) {
  static const char msg[] = "\n*** kiln_tests: fatal signal; stack:\n";
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
  void* frames[64];
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

struct InstallOnce {
  InstallOnce() {
    // Only where nobody else handles it: sanitizers install better reporters.
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
      struct sigaction old {};
      if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO))
        std::signal(sig, on_fatal);
    }
  }
} install_once;

}  // namespace
