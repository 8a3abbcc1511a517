#include "backends/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define KILN_CPU_RELAX() _mm_pause()
#else
#define KILN_CPU_RELAX() std::this_thread::yield()
#endif

namespace kiln::cpu {

namespace {
// Set while a thread runs loop bodies, so nested loops run inline instead of deadlocking.
thread_local bool t_in_loop = false;

// Waking a sleeping thread costs tens to hundreds of microseconds (more in VMs),
// as long as a GEMM's whole packing step; so threads poll this long before they
// block. KILN_SPIN_US=0 turns polling off, which suits machines shared with other
// busy processes (a polling thread loses its scheduling priority there).
std::chrono::microseconds spin_budget() {
  static const std::chrono::microseconds us = [] {
    const char* env = std::getenv("KILN_SPIN_US");
    return std::chrono::microseconds(env ? std::max(0, std::atoi(env)) : 200);
  }();
  return us;
}

// Polls `ready` for up to the spin budget; true when it became true.
template <typename Pred>
bool spin_until(Pred ready) {
  const auto budget = spin_budget();
  if (ready()) return true;
  if (budget.count() == 0) return false;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (ready()) return true;
    KILN_CPU_RELAX();
    if ((i & 255) == 0 && std::chrono::steady_clock::now() - start > budget) return false;
  }
}

struct Job {
  const RangeFn* fn = nullptr;
  int64_t n = 0;
  int64_t chunk = 1;
  int64_t num_chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int> active{0};

  void run_chunks() {
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= num_chunks) return;
      int64_t b = c * chunk;
      (*fn)(b, std::min(n, b + chunk));
    }
  }
};
}  // namespace

struct ThreadPool::State {
  std::mutex mu;
  std::condition_variable work_cv;
  std::condition_variable done_cv;
  std::mutex busy;  // held by the thread whose loop owns the workers
  std::atomic<uint64_t> generation{0};
  Job* job = nullptr;    // written before generation is bumped
  int job_workers = 0;
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
};

ThreadPool::ThreadPool(int num_threads) : size_(std::max(1, num_threads)), state_(std::make_unique<State>()) {
  for (int i = 0; i + 1 < size_; ++i) state_->threads.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->work_cv.notify_all();
  for (auto& t : state_->threads) t.join();
}

void ThreadPool::worker_loop(int index) {
  State& st = *state_;
  uint64_t seen = 0;
  for (;;) {
    auto fresh = [&] { return st.stop.load(std::memory_order_acquire) ||
                              st.generation.load(std::memory_order_acquire) != seen; };
    if (!spin_until(fresh)) {
      std::unique_lock<std::mutex> lock(st.mu);
      st.work_cv.wait(lock, fresh);
    }
    if (st.stop.load(std::memory_order_acquire)) return;
    Job* job = nullptr;
    {
      std::lock_guard<std::mutex> lock(st.mu);
      seen = st.generation.load(std::memory_order_acquire);
      if (index < st.job_workers) job = st.job;
    }
    if (!job) continue;
    t_in_loop = true;
    job->run_chunks();
    t_in_loop = false;
    if (job->active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(st.mu);
      st.done_cv.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const RangeFn& fn, int max_threads, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int threads = max_threads > 0 ? std::min(max_threads, size_) : size_;
  int64_t max_chunks = (n + grain - 1) / grain;
  threads = static_cast<int>(std::min<int64_t>(threads, max_chunks));
  if (threads <= 1 || t_in_loop) {
    fn(0, n);
    return;
  }
  State& st = *state_;
  std::unique_lock<std::mutex> busy(st.busy, std::try_to_lock);
  if (!busy.owns_lock()) {  // another thread's loop holds the workers
    fn(0, n);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  job.num_chunks = std::min<int64_t>(max_chunks, int64_t{threads} * 4);
  job.chunk = (n + job.num_chunks - 1) / job.num_chunks;
  job.num_chunks = (n + job.chunk - 1) / job.chunk;
  job.active.store(threads - 1);
  {
    std::lock_guard<std::mutex> lock(st.mu);
    st.job = &job;
    st.job_workers = threads - 1;
    st.generation.fetch_add(1, std::memory_order_release);
  }
  st.work_cv.notify_all();
  t_in_loop = true;
  job.run_chunks();
  t_in_loop = false;
  auto done = [&] { return job.active.load(std::memory_order_acquire) == 0; };
  std::unique_lock<std::mutex> lock(st.mu, std::defer_lock);
  if (!spin_until(done)) {
    lock.lock();
    st.done_cv.wait(lock, done);
  } else {
    lock.lock();
  }
  // Workers read job / job_workers under the mutex, so clearing them here is safe.
  st.job = nullptr;
  st.job_workers = 0;
}

ThreadPool& ThreadPool::global() {
  static ThreadPool* pool = [] {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("KILN_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) n = v;
    }
    return new ThreadPool(std::max(1, n));
  }();
  return *pool;
}

void parallel_for(int64_t n, const RangeFn& fn, int max_threads, int64_t grain) {
  ThreadPool::global().parallel_for(n, fn, max_threads, grain);
}

int hardware_threads() { return ThreadPool::global().size(); }

}  // namespace kiln::cpu
