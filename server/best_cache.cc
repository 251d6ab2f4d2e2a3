#include "server/best_cache.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "proto/convert.h"
#include "server/prediction.h"

namespace ktune {

std::string BestCache::TaskPart(const std::string& kernel, const Problem& problem) {
  return absl::StrCat(kernel, "\n", CanonicalJson(problem));
}

absl::StatusOr<std::shared_ptr<const BestAnswer>> BestCache::Query(const BestQuery& q) {
  const std::string task = TaskPart(q.kernel, q.problem);
  const std::string rest =
      absl::StrCat(q.kernel_version, "\n", q.fingerprint_hash, "\n", q.device_class, "\n", q.family,
                   "\n", q.family_only, "\n", q.top_k, "\n",
                   q.max_rel_error ? absl::StrFormat("%a", *q.max_rel_error) : "");
  uint64_t generation;
  {
    absl::ReaderMutexLock lock(&mu_);
    generation = generation_;
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
  auto filled = std::make_shared<BestAnswer>();
  v1::QueryBestResponse* answer = &filled->message;
  answer->set_level(best->level == MatchLevel::kNone
                        ? v1::MATCH_LEVEL_NONE
                        : static_cast<v1::MatchLevel>(static_cast<int>(best->level) + 1));
  for (const Record& r : best->records) *answer->add_best() = ToProto(r);
  answer->set_stale(best->stale);
  if (best->level == MatchLevel::kNone) {
    KTUNE_ASSIGN_OR_RETURN(std::optional<Record> predicted, PredictBest(*db_, *registry_, q));
    if (predicted) {
      answer->set_level(v1::MATCH_LEVEL_PREDICTED);
      *answer->add_best() = ToProto(*predicted);
    } else {
      KTUNE_ASSIGN_OR_RETURN(bool known, KernelKnown(q.kernel));
      answer->set_kernel_unknown(!known);
    }
  }
  if (!answer->SerializeToString(&filled->wire)) {
    return absl::InternalError("could not serialise the QueryBest answer");
  }
  absl::MutexLock lock(&mu_);
  if (generation != generation_) return filled;  // records came in meanwhile: don't keep it
  if (answer_count_ >= kMaxAnswers) {
    answers_.clear();
    speculative_.clear();
    answer_count_ = 0;
  }
  if (answers_[task].insert_or_assign(rest, filled).second) ++answer_count_;
  if (best->level == MatchLevel::kNone) speculative_[q.kernel].push_back(task);
  return filled;
}

absl::StatusOr<bool> BestCache::KernelKnown(const std::string& kernel) {
  if (registry_->Find(kernel) != nullptr) return true;
  KTUNE_ASSIGN_OR_RETURN(std::vector<TaskKey> tasks, db_->ListTasks());
  for (const TaskKey& t : tasks) {
    if (t.kernel == kernel) return true;
  }
  return false;
}

std::shared_ptr<const BestAnswer> BestCache::FindByRequest(const std::string& request_bytes,
                                                           uint64_t* generation) {
  absl::ReaderMutexLock lock(&mu_);
  *generation = generation_;
  auto it = front_.find(request_bytes);
  if (it == front_.end()) return nullptr;
  ++hits_;
  return it->second;
}

void BestCache::RememberRequest(const std::string& request_bytes,
                                std::shared_ptr<const BestAnswer> answer, uint64_t generation) {
  if (request_bytes.size() > kMaxFrontRequestBytes) return;
  absl::MutexLock lock(&mu_);
  if (generation != generation_) return;
  if (front_.size() >= kMaxFrontEntries) front_.clear();
  front_[request_bytes] = std::move(answer);
}

void BestCache::Invalidate(const std::vector<Record>& records) {
  absl::MutexLock lock(&mu_);
  if (records.empty()) return;
  ++generation_;
  front_.clear();
  auto drop = [&](const std::string& task) {
    auto it = answers_.find(task);
    if (it == answers_.end()) return;
    answer_count_ -= it->second.size();
    answers_.erase(it);
  };
  for (const Record& r : records) {
    drop(TaskPart(r.kernel, r.problem));
    auto it = speculative_.find(r.kernel);
    if (it == speculative_.end()) continue;
    for (const std::string& task : it->second) drop(task);
    speculative_.erase(it);
  }
}

void BestCache::KernelRegistered(const std::string& kernel) {
  Record named;  // what Invalidate reads: the kernel (and an empty problem, which drops nothing)
  named.kernel = kernel;
  Invalidate({named});
}

}  // namespace ktune
