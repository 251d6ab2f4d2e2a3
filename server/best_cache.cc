#include "server/best_cache.h"

#include "absl/strings/str_cat.h"

namespace ktune {

std::string BestCache::TaskPart(const std::string& kernel, const Problem& problem) {
  return absl::StrCat(kernel, "\n", CanonicalJson(problem));
}

absl::StatusOr<BestResult> BestCache::Query(const BestQuery& q) {
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
  absl::StatusOr<BestResult> answer = db_->QueryBest(q);
  if (!answer.ok()) return answer.status();
  absl::MutexLock lock(&mu_);
  answers_[task][rest] = *answer;
  return answer;
}

void BestCache::Invalidate(const std::vector<Record>& records) {
  absl::MutexLock lock(&mu_);
  for (const Record& r : records) answers_.erase(TaskPart(r.kernel, r.problem));
}

}  // namespace ktune
