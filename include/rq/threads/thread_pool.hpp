// A small fork-join thread pool for the CPU paths (matvec, attention): persistent workers that,
// between jobs, spin briefly, then spin while yielding the core (sched_yield), then sleep. Why not
// OpenMP's default barriers: on a machine where other processes compete for the cores, spinning
// workers take the core from the one thread everybody waits for (docs/decisions.md has the numbers).
//
// parallel_for splits [0, n) into chunks of `grain` indices that the caller and the workers claim
// dynamically, so a descheduled thread delays at most the chunk it holds. Calls from inside a task,
// from a second thread while the pool is busy, or with one thread run inline (serially).
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>

namespace rq {

class ThreadPool {
 public:
  /// threads >= 1 (the calling thread counts as one; threads - 1 workers are started).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const noexcept;

  /// fn(begin, end) for consecutive chunks [begin, end) of [0, n), at most `grain` indices each
  /// (grain 0 is taken as 1), on up to max_threads threads (0: all). Returns when every chunk has
  /// run. If fn throws, the remaining chunks are skipped and the first exception is rethrown here.
  template <class Fn>
  void parallel_for(size_t n, size_t grain, Fn&& fn, int max_threads = 0) {
    run(n, grain, max_threads, &call<std::remove_reference_t<Fn>>, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  /// The process-wide pool (created on first use with the machine's hardware threads).
  static ThreadPool& global();
  /// Replaces the process-wide pool by one with `threads` threads (>= 1). Not while it is in use.
  static void set_global_threads(int threads);

 private:
  using Body = void (*)(void* ctx, size_t begin, size_t end);
  template <class F>
  static void call(void* ctx, size_t begin, size_t end) {
    (*static_cast<F*>(ctx))(begin, end);
  }
  void run(size_t n, size_t grain, int max_threads, Body body, void* ctx);

  struct State;
  std::unique_ptr<State> state_;
};

/// Shorthand: ThreadPool::global().parallel_for(n, grain, fn, max_threads).
template <class Fn>
void parallel_for(size_t n, size_t grain, Fn&& fn, int max_threads = 0) {
  ThreadPool::global().parallel_for(n, grain, static_cast<Fn&&>(fn), max_threads);
}

}  // namespace rq
