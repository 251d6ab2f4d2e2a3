// BestCache: answers from memory, dropped when records of their task arrive; the front keyed by
// request bytes is emptied by every Invalidate and never keeps an answer computed before one.
#include "server/best_cache.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "db/memory_tuning_database.h"

namespace ktune {
namespace {

Record GemmRecord(int64_t tile, double time_ms) {
  Record r;
  r.kernel = "gemm_test";
  r.kernel_version = "v1";
  r.problem = {{"M", int64_t{64}}};
  r.device.fingerprint_json = R"({"name":"A100"})";
  r.device.device_class = "A100";
  r.device.family = "ampere";
  r.config = {{"tile", tile}};
  r.status = MeasurementStatus::kOk;
  r.time_ms = time_ms;
  r.repeat_times_ms = {time_ms};
  FillRepeatStatistics(r);
  r.source = "worker";
  return r;
}

BestQuery Query() {
  BestQuery q;
  q.kernel = "gemm_test";
  q.problem = {{"M", int64_t{64}}};
  q.device_class = "A100";
  return q;
}

class BestCacheTest : public ::testing::Test {
 protected:
  void Store(const Record& r) {
    ASSERT_TRUE(db_.AddRecords({r}).ok());
    cache_.Invalidate({r});
  }
  MemoryTuningDatabase db_;
  KernelRegistry registry_ = KernelRegistry::WithBuiltins();
  BestCache cache_{&db_, &registry_};
};

TEST_F(BestCacheTest, AnswersAreServedFromMemoryUntilTheirTaskGetsRecords) {
  Store(GemmRecord(8, 2.0));
  auto first = cache_.Query(Query());
  ASSERT_TRUE(first.ok());
  ASSERT_EQ((*first)->message.best_size(), 1);
  EXPECT_EQ((*first)->message.best(0).time_ms(), 2.0);
  v1::QueryBestResponse parsed;  // the wire form is the message
  ASSERT_TRUE(parsed.ParseFromString((*first)->wire));
  EXPECT_EQ(parsed.best(0).time_ms(), 2.0);

  auto again = cache_.Query(Query());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), first->get());  // the same answer: no database read
  EXPECT_EQ(cache_.hits(), 1);

  Store(GemmRecord(16, 1.0));
  auto after = cache_.Query(Query());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)->message.best(0).time_ms(), 1.0);
}

TEST_F(BestCacheTest, TheRequestFrontIsEmptiedByNewRecordsAndRefusesStaleAnswers) {
  Store(GemmRecord(8, 2.0));
  uint64_t generation;
  EXPECT_EQ(cache_.FindByRequest("request-bytes", &generation), nullptr);
  auto answer = cache_.Query(Query());
  ASSERT_TRUE(answer.ok());
  cache_.RememberRequest("request-bytes", *answer, generation);
  uint64_t now;
  EXPECT_EQ(cache_.FindByRequest("request-bytes", &now).get(), answer->get());

  // Records arrive: the front forgets, and an answer computed before them is not kept.
  Store(GemmRecord(16, 1.0));
  EXPECT_EQ(cache_.FindByRequest("request-bytes", &now), nullptr);
  cache_.RememberRequest("request-bytes", *answer, generation);  // stale generation
  EXPECT_EQ(cache_.FindByRequest("request-bytes", &now), nullptr);
  auto fresh = cache_.Query(Query());
  ASSERT_TRUE(fresh.ok());
  cache_.RememberRequest("request-bytes", *fresh, now);
  auto found = cache_.FindByRequest("request-bytes", &now);
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->message.best(0).time_ms(), 1.0);

  // A request padded past kMaxFrontRequestBytes is answered but not remembered: 65,536 of 4 MiB
  // each would have held 256 GiB.
  const std::string padded(BestCache::kMaxFrontRequestBytes + 1, 'x');
  cache_.RememberRequest(padded, *fresh, now);
  EXPECT_EQ(cache_.FindByRequest(padded, &now), nullptr);
  const std::string largest(BestCache::kMaxFrontRequestBytes, 'x');
  cache_.RememberRequest(largest, *fresh, now);
  EXPECT_NE(cache_.FindByRequest(largest, &now), nullptr);
}

TEST_F(BestCacheTest, TheCacheHoldsAtMostItsLimitOfAnswersAndCountsWhatItDrops) {
  Store(GemmRecord(8, 2.0));
  BestQuery q = Query();
  for (size_t i = 0; i < BestCache::kMaxAnswers; ++i) {
    q.device_class = absl::StrCat("class ", i);  // each query a distinct answer
    ASSERT_TRUE(cache_.Query(q).ok());
  }
  EXPECT_EQ(cache_.size(), BestCache::kMaxAnswers);
  q.device_class = "one more";
  ASSERT_TRUE(cache_.Query(q).ok());
  EXPECT_EQ(cache_.size(), 1u);  // full: it started again
  // It still answers, from the database.
  auto answer = cache_.Query(Query());
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ((*answer)->message.best(0).time_ms(), 2.0);
  EXPECT_EQ(cache_.size(), 2u);
  Store(GemmRecord(16, 1.0));  // both answers were of this task
  EXPECT_EQ(cache_.size(), 0u);
}

}  // namespace
}  // namespace ktune
