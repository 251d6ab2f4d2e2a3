// Best-known answers served from memory. The first query for a task reads the database (and,
// when nothing was measured for it, predicts from the nearest tuned problem: prediction.h);
// later ones are answered from the cache until records of that kernel and problem are stored
// through the server, which drops the cached answers for them (and every predicted or empty
// answer of the kernel, which other problems' records can change). Records written to the database
// file by another process (ktune db import beside a running server) are seen after the server
// restarts.
//
// Thread-safe; lookups share a reader lock.
#ifndef KTUNE_SERVER_BEST_CACHE_H_
#define KTUNE_SERVER_BEST_CACHE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "db/tuning_database.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.pb.h"

namespace ktune {

// One cached answer: the message, and its wire form, serialised once, which the QueryBest handler
// sends as it is (no copy of the message, no serialisation per call).
struct BestAnswer {
  v1::QueryBestResponse message;
  std::string wire;
};

class BestCache {
 public:
  BestCache(TuningDatabase* db, const KernelRegistry* registry) : db_(db), registry_(registry) {}

  // The answer as the API sends it, built and serialised once per cache fill: a hit costs a
  // lookup and a reference count.
  absl::StatusOr<std::shared_ptr<const BestAnswer>> Query(const BestQuery& query);
  // New records were stored: answers for their kernels and problems are stale.
  void Invalidate(const std::vector<Record>& records);
  // A kernel was registered: its empty answers (which say the kernel is unknown) are stale.
  void KernelRegistered(const std::string& kernel);

  // A front for Query keyed by a request's exact bytes (QueryBest's wire form), so that a
  // repeated request skips parsing, validation and key building. Find returns null on a miss;
  // Remember stores the answer for those bytes (call only for requests without side effects),
  // unless an Invalidate came after the Find that set `generation`. Every Invalidate empties the
  // front; it holds at most kMaxFrontEntries, each at most kMaxFrontRequestBytes (a real query
  // is about a hundred bytes; a client padding requests with megabytes must not fill the
  // server's memory with them: a larger request is answered, not remembered).
  std::shared_ptr<const BestAnswer> FindByRequest(const std::string& request_bytes,
                                                  uint64_t* generation);
  void RememberRequest(const std::string& request_bytes, std::shared_ptr<const BestAnswer> answer,
                       uint64_t generation);
  static constexpr size_t kMaxFrontEntries = 65536;
  static constexpr size_t kMaxFrontRequestBytes = 4096;
  // The cache itself holds at most this many answers: when full, it starts again empty (the
  // database still has everything), so that clients asking for many distinct tasks cannot grow
  // the server's memory without bound.
  static constexpr size_t kMaxAnswers = 65536;

  int64_t hits() const { return hits_.load(); }
  int64_t misses() const { return misses_.load(); }
  size_t size() const {  // answers cached now
    absl::ReaderMutexLock lock(&mu_);
    return answer_count_;
  }

 private:
  static std::string TaskPart(const std::string& kernel, const Problem& problem);
  // Whether the registry or a stored record names `kernel` (QueryBestResponse.kernel_unknown).
  absl::StatusOr<bool> KernelKnown(const std::string& kernel);

  TuningDatabase* db_;
  const KernelRegistry* registry_;
  mutable absl::Mutex mu_;
  // kernel -> task parts holding predicted or empty answers
  absl::flat_hash_map<std::string, std::vector<std::string>> speculative_ ABSL_GUARDED_BY(mu_);
  // kernel + problem -> (the rest of the query -> answer)
  absl::flat_hash_map<
      std::string, absl::flat_hash_map<std::string, std::shared_ptr<const BestAnswer>>>
      answers_ ABSL_GUARDED_BY(mu_);
  size_t answer_count_ ABSL_GUARDED_BY(mu_) = 0;  // answers in answers_
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // Invalidate calls so far
  // request bytes -> answer (the front)
  absl::flat_hash_map<std::string, std::shared_ptr<const BestAnswer>> front_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> hits_{0}, misses_{0};
};

}  // namespace ktune

#endif  // KTUNE_SERVER_BEST_CACHE_H_
