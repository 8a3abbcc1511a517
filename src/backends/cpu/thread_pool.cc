#include "backends/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::cpu {

namespace {
// Set while a thread runs loop bodies, so nested loops run inline instead of deadlocking.
thread_local bool t_in_loop = false;

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
  uint64_t generation = 0;
  Job* job = nullptr;
  int job_workers = 0;
  bool stop = false;
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
  uint64_t seen = 0;
  for (;;) {
    Job* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(state_->mu);
      state_->work_cv.wait(lock, [&] { return state_->stop || state_->generation != seen; });
      if (state_->stop) return;
      seen = state_->generation;
      if (index >= state_->job_workers) continue;
      job = state_->job;
    }
    t_in_loop = true;
    job->run_chunks();
    t_in_loop = false;
    if (job->active.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->done_cv.notify_all();
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
  std::unique_lock<std::mutex> busy(state_->busy, std::try_to_lock);
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
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->job = &job;
    state_->job_workers = threads - 1;
    ++state_->generation;
  }
  state_->work_cv.notify_all();
  t_in_loop = true;
  job.run_chunks();
  t_in_loop = false;
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->done_cv.wait(lock, [&] { return job.active.load(std::memory_order_acquire) == 0; });
  state_->job = nullptr;
  state_->job_workers = 0;
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
