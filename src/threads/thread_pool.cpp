// ThreadPool: see include/rq/threads/thread_pool.hpp.
//
// A job is published by writing its fields and then the `claim` word, (generation, chunk count,
// next chunk) packed in 64 bits, and bumping `generation`. A thread takes chunk i by a
// compare-exchange of the claim word from (g, chunks, i) to (g, chunks, i + 1): it can succeed only
// while job g is open, so a worker that wakes late, or reads a later job's fields, never runs a chunk
// of the wrong job. The caller returns once `done` counts every chunk; workers that never woke up
// are not waited for.
#include "rq/threads/thread_pool.hpp"

#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rq {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Waiting between jobs: a short busy spin (the next job of a decode step usually follows within
// microseconds), then spinning with sched_yield (the core goes to any other runnable thread, e.g.
// the worker everybody waits for), then sleeping on the generation counter.
constexpr int kPauseSpins = 16;
constexpr int kYieldSpins = 20000;

constexpr int kGenBits = 16, kCountBits = 24;
constexpr uint64_t kCountMask = (uint64_t{1} << kCountBits) - 1;
constexpr size_t kMaxChunks = size_t{1} << kCountBits;

constexpr uint64_t pack_claim(uint32_t gen, uint64_t chunks, uint64_t next) {
  return (static_cast<uint64_t>(gen & ((1u << kGenBits) - 1)) << (2 * kCountBits)) | (chunks << kCountBits) | next;
}

thread_local bool tl_in_task = false;  // inside a chunk (nested calls run inline)

}  // namespace

struct ThreadPool::State {
  int threads = 1;
  std::vector<std::thread> workers;
  std::mutex submit;  // one job at a time; a second caller runs inline
  // The open job (atomics: a late worker may read them while the next job is being written).
  std::atomic<Body> body{nullptr};
  std::atomic<void*> ctx{nullptr};
  std::atomic<size_t> n{0}, grain{1};
  std::atomic<int> participants{1};
  std::atomic<uint64_t> claim{0};
  std::atomic<size_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::exception_ptr error;
  std::atomic<uint32_t> generation{0};
  std::atomic<bool> stop{false};

  // Runs chunks of job `gen` until none is left.
  void work(uint32_t gen) {
    for (;;) {
      uint64_t c = claim.load(std::memory_order_acquire);
      // Fields first (possibly of a later job: then the exchange below fails).
      const Body b = body.load(std::memory_order_relaxed);
      void* const x = ctx.load(std::memory_order_relaxed);
      const size_t total = n.load(std::memory_order_relaxed), g = grain.load(std::memory_order_relaxed);
      if ((c >> (2 * kCountBits)) != (gen & ((1u << kGenBits) - 1))) return;
      const uint64_t chunks = (c >> kCountBits) & kCountMask, next = c & kCountMask;
      if (next >= chunks) return;
      if (!claim.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
      if (!failed.load(std::memory_order_relaxed)) {
        const size_t begin = static_cast<size_t>(next) * g;
        const size_t end = begin + g < total ? begin + g : total;
        tl_in_task = true;
        try {
          b(x, begin, end);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mu);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
        tl_in_task = false;
      }
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void worker_loop(int index) {
    uint32_t seen = 0;  // the generation at construction (not at thread start: a job may already be open)
    for (;;) {
      uint32_t g = seen;
      for (int i = 0;; ++i) {
        if (stop.load(std::memory_order_acquire)) return;
        g = generation.load(std::memory_order_acquire);
        if (g != seen) break;
        if (i < kPauseSpins) {
          cpu_relax();
        } else if (i < kPauseSpins + kYieldSpins) {
          std::this_thread::yield();
        } else {
          generation.wait(seen, std::memory_order_acquire);
          i = 0;
        }
      }
      seen = g;
      if (index < participants.load(std::memory_order_relaxed)) work(g);
    }
  }
};

ThreadPool::ThreadPool(int threads) : state_(std::make_unique<State>()) {
  if (threads < 1) throw std::invalid_argument("ThreadPool: threads must be >= 1, got " + std::to_string(threads));
  state_->threads = threads;
  state_->workers.reserve(static_cast<size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) state_->workers.emplace_back([s = state_.get(), i] { s->worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  state_->stop.store(true, std::memory_order_release);
  state_->generation.fetch_add(1, std::memory_order_acq_rel);
  state_->generation.notify_all();
  for (auto& t : state_->workers) t.join();
}

int ThreadPool::threads() const noexcept { return state_->threads; }

void ThreadPool::run(size_t n, size_t grain, int max_threads, Body body, void* ctx) {
  if (n == 0) return;
  if (grain == 0) grain = 1;
  if ((n + grain - 1) / grain > kMaxChunks) grain = (n + kMaxChunks - 1) / kMaxChunks;
  State& s = *state_;
  const int want = max_threads > 0 && max_threads < s.threads ? max_threads : s.threads;
  std::unique_lock<std::mutex> lock(s.submit, std::defer_lock);
  if (want == 1 || n <= grain || tl_in_task || !lock.try_lock()) {
    for (size_t b = 0; b < n; b += grain) body(ctx, b, b + grain < n ? b + grain : n);
    return;
  }
  const size_t chunks = (n + grain - 1) / grain;
  const uint32_t gen = s.generation.load(std::memory_order_relaxed) + 1;
  s.body.store(body, std::memory_order_relaxed);
  s.ctx.store(ctx, std::memory_order_relaxed);
  s.n.store(n, std::memory_order_relaxed);
  s.grain.store(grain, std::memory_order_relaxed);
  s.participants.store(want, std::memory_order_relaxed);
  s.done.store(0, std::memory_order_relaxed);
  s.failed.store(false, std::memory_order_relaxed);
  s.error = nullptr;
  s.claim.store(pack_claim(gen, chunks, 0), std::memory_order_release);
  s.generation.store(gen, std::memory_order_release);
  s.generation.notify_all();
  s.work(gen);
  for (int i = 0; s.done.load(std::memory_order_acquire) < chunks; ++i) {
    if (i < kPauseSpins) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  if (s.failed.load(std::memory_order_acquire)) {
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> guard(s.error_mu);
      e = s.error;
    }
    std::rethrow_exception(e);
  }
}

namespace {
std::mutex g_global_mu;
std::unique_ptr<ThreadPool> g_global;

int default_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}
}  // namespace

ThreadPool& ThreadPool::global() {
  std::lock_guard<std::mutex> lock(g_global_mu);
  if (!g_global) g_global = std::make_unique<ThreadPool>(default_threads());
  return *g_global;
}

void ThreadPool::set_global_threads(int threads) {
  if (threads < 1) throw std::invalid_argument("ThreadPool: threads must be >= 1, got " + std::to_string(threads));
  std::lock_guard<std::mutex> lock(g_global_mu);
  if (g_global && g_global->threads() == threads) return;
  g_global = std::make_unique<ThreadPool>(threads);
}

}  // namespace rq
