#include "server/prediction.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "common/status_macros.h"

namespace ktune {

double ProblemDistance(const Problem& a, const Problem& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double d = 0;
  for (const auto& [name, va] : a) {
    auto it = b.find(name);
    if (it == b.end()) return std::numeric_limits<double>::infinity();
    const auto* ia = std::get_if<int64_t>(&va);
    const auto* ib = std::get_if<int64_t>(&it->second);
    if (ia && ib && *ia > 0 && *ib > 0) {
      d += std::fabs(std::log2(static_cast<double>(*ia)) - std::log2(static_cast<double>(*ib)));
    } else if (va != it->second) {
      return std::numeric_limits<double>::infinity();
    }
  }
  return d;
}

absl::StatusOr<std::optional<Record>> PredictBest(TuningDatabase& db,
                                                  const KernelRegistry& registry,
                                                  const BestQuery& query) {
  const KernelDefinition* def = registry.Find(query.kernel);
  if (def == nullptr) return std::optional<Record>();
  std::string family = query.family;
  if (family.empty()) {
    KTUNE_ASSIGN_OR_RETURN(family, db.FamilyOfClass(query.device_class));
  }
  KTUNE_ASSIGN_OR_RETURN(std::vector<TaskKey> tasks, db.ListTasks());
  struct Candidate {
    bool same_class;
    double distance;
    const TaskKey* task;
  };
  // The family of each other class with a candidate task, as the database stores it.
  std::map<std::string, std::string> family_of_class;
  auto in_family = [&](const TaskKey& t) -> absl::StatusOr<bool> {
    if (family.empty()) return false;
    auto it = family_of_class.find(t.device_class);
    if (it == family_of_class.end()) {
      KTUNE_ASSIGN_OR_RETURN(std::string f, db.FamilyOfClass(t.device_class));
      it = family_of_class.emplace(t.device_class, std::move(f)).first;
    }
    return it->second == family;
  };
  std::vector<Candidate> near;
  for (const TaskKey& t : tasks) {
    if (t.kernel != query.kernel || t.problem == query.problem) continue;
    if (!query.kernel_version.empty() && t.kernel_version != query.kernel_version) continue;
    const double d = ProblemDistance(t.problem, query.problem);
    if (!std::isfinite(d)) continue;
    const bool same_class = t.device_class == query.device_class;
    if (!same_class) {
      KTUNE_ASSIGN_OR_RETURN(bool related, in_family(t));
      if (!related) continue;
    }
    near.push_back({same_class, d, &t});
  }
  std::sort(near.begin(), near.end(), [](const Candidate& a, const Candidate& b) {
    return a.same_class != b.same_class ? a.same_class : a.distance < b.distance;
  });
  for (size_t i = 0; i < near.size() && i < 4; ++i) {
    BestQuery source = query;
    source.problem = near[i].task->problem;
    source.device_class = near[i].task->device_class;
    source.fingerprint_hash.clear();
    source.top_k = 16;
    KTUNE_ASSIGN_OR_RETURN(BestResult best, db.QueryBest(source));
    for (const Record& r : best.records) {
      absl::StatusOr<SearchSpace> space =
          def->Space(query.problem, MachineVariables{r.device.Cores()});
      if (!space.ok()) break;
      absl::StatusOr<Point> point = space->ToPoint(r.config);
      if (point.ok() && space->IsValid(*point)) return std::optional<Record>(r);
    }
  }
  return std::optional<Record>();
}

}  // namespace ktune
