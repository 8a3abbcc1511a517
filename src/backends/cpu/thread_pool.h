// A small CPU thread pool: parallel_for over [0, n) split into contiguous chunks,
// with the calling thread taking part. Shared by CPU kernels (GEMM, conv, pooling).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace kiln::cpu {

/// Body of a parallel loop: handles indices [begin, end).
using RangeFn = std::function<void(int64_t begin, int64_t end)>;

class ThreadPool {
 public:
  /// A pool that runs loops on `num_threads` threads in all (the caller counts as one).
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// The process-wide pool: KILN_NUM_THREADS, else std::thread::hardware_concurrency().
  static ThreadPool& global();
  /// Threads a loop may use, the caller included.
  int size() const { return size_; }

  /// Calls fn on disjoint sub-ranges covering [0, n) on up to max_threads threads
  /// (0 = all) and returns when all are done. Ranges hold at least `grain` indices.
  /// A call made from inside a pool loop, or while another thread's loop is
  /// running, runs serially on the caller instead of waiting.
  void parallel_for(int64_t n, const RangeFn& fn, int max_threads = 0, int64_t grain = 1);

 private:
  struct State;
  void worker_loop(int index);
  int size_;
  std::unique_ptr<State> state_;
};

/// ThreadPool::global().parallel_for(...).
void parallel_for(int64_t n, const RangeFn& fn, int max_threads = 0, int64_t grain = 1);

/// Threads the global pool offers (>= 1).
int hardware_threads();

}  // namespace kiln::cpu
