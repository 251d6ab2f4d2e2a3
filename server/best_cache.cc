#include "server/best_cache.h"

#include "absl/strings/str_cat.h"
#include "proto/convert.h"

namespace ktune {

std::string BestCache::TaskPart(const std::string& kernel, const Problem& problem) {
  return absl::StrCat(kernel, "\n", CanonicalJson(problem));
}

absl::StatusOr<std::shared_ptr<const v1::QueryBestResponse>> BestCache::Query(
    const BestQuery& q) {
  const std::string task = TaskPart(q.kernel, q.problem);
  const std::string rest = absl::StrCat(q.kernel_version, "\n", q.fingerprint_hash, "\n",
                                        q.device_class, "\n", q.family, "\n", q.top_k);
  {
    absl::ReaderMutexLock lock(&mu_);
    auto t = answers_.find(task);
    if (t != answers_.end()) {
      auto a = t->second.find(rest);
      if (a != t->second.end()) {
        ++hits_;
        return a->second;
      }
    }
  }
  ++misses_;
  absl::StatusOr<BestResult> best = db_->QueryBest(q);
  if (!best.ok()) return best.status();
  auto answer = std::make_shared<v1::QueryBestResponse>();
  answer->set_level(best->level == MatchLevel::kNone
                        ? v1::MATCH_LEVEL_NONE
                        : static_cast<v1::MatchLevel>(static_cast<int>(best->level) + 1));
  for (const Record& r : best->records) *answer->add_best() = ToProto(r);
  absl::MutexLock lock(&mu_);
  answers_[task][rest] = answer;
  return answer;
}

void BestCache::Invalidate(const std::vector<Record>& records) {
  absl::MutexLock lock(&mu_);
  for (const Record& r : records) answers_.erase(TaskPart(r.kernel, r.problem));
}

}  // namespace ktune
