// The fork-join pool: every index exactly once, any grain and thread count, nested and concurrent
// calls run inline, exceptions reach the caller and the pool stays usable.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rq/threads/thread_pool.hpp"

namespace rq {
namespace {

TEST(ThreadPool, EveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{100003}}) {
      for (size_t grain : {size_t{0}, size_t{1}, size_t{3}, size_t{64}, size_t{5000}}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, grain, [&](size_t begin, size_t end) {
          ASSERT_LT(begin, end);
          ASSERT_LE(end, n);
          ASSERT_LE(end - begin, grain == 0 ? size_t{1} : grain);
          for (size_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n << " i " << i;
      }
    }
  }
}

TEST(ThreadPool, ManyJobsInARowAndMaxThreads) {
  ThreadPool pool(4);
  std::vector<long> sums;
  for (int job = 0; job < 3000; ++job) {
    std::atomic<long> sum{0};
    pool.parallel_for(257, 5, [&](size_t b, size_t e) {
      long s = 0;
      for (size_t i = b; i < e; ++i) s += static_cast<long>(i);
      sum += s;
    }, job % 5);  // max_threads 0 (all) .. 4
    ASSERT_EQ(sum.load(), 256L * 257 / 2) << "job " << job;
  }
}

TEST(ThreadPool, UsesMoreThanOneThread) {
  ThreadPool pool(2);
  std::atomic<int> distinct{0};
  std::atomic<std::thread::id> first{};
  // Chunks that wait a little, so that the worker gets to claim some.
  pool.parallel_for(64, 1, [&](size_t, size_t) {
    std::thread::id none{};
    const auto me = std::this_thread::get_id();
    if (!first.compare_exchange_strong(none, me) && first.load() != me) distinct = 1;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  });
  EXPECT_EQ(distinct.load(), 1);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(3);
  std::atomic<long> total{0};
  pool.parallel_for(10, 1, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) {
      pool.parallel_for(100, 7, [&](size_t b2, size_t e2) { total += static_cast<long>(e2 - b2); });
    }
  });
  EXPECT_EQ(total.load(), 1000);
}

TEST(ThreadPool, ConcurrentCallersBothFinish) {
  ThreadPool pool(2);
  std::atomic<long> a{0}, b{0};
  std::thread other([&] {
    for (int k = 0; k < 200; ++k) pool.parallel_for(1000, 10, [&](size_t s, size_t e) { a += static_cast<long>(e - s); });
  });
  for (int k = 0; k < 200; ++k) pool.parallel_for(1000, 10, [&](size_t s, size_t e) { b += static_cast<long>(e - s); });
  other.join();
  EXPECT_EQ(a.load(), 200000);
  EXPECT_EQ(b.load(), 200000);
}

TEST(ThreadPool, ExceptionReachesCallerAndPoolStaysUsable) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(1000, 1, [&](size_t b, size_t) {
    if (b == 500) throw std::runtime_error("chunk 500");
  }), std::runtime_error);
  std::atomic<long> n{0};
  pool.parallel_for(1000, 3, [&](size_t b, size_t e) { n += static_cast<long>(e - b); });
  EXPECT_EQ(n.load(), 1000);
}

TEST(ThreadPool, RejectsBadThreadCounts) {
  EXPECT_THROW(ThreadPool(0), std::invalid_argument);
  EXPECT_THROW(ThreadPool::set_global_threads(-1), std::invalid_argument);
  ThreadPool::set_global_threads(2);
  EXPECT_EQ(ThreadPool::global().threads(), 2);
  std::atomic<long> n{0};
  parallel_for(100, 1, [&](size_t b, size_t e) { n += static_cast<long>(e - b); });
  EXPECT_EQ(n.load(), 100);
}

}  // namespace
}  // namespace rq
