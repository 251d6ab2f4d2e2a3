#include "agent/candidate_pool.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace ktune {
namespace {

int Hamming(const Point& a, const Point& b) {
  int d = 0;
  for (size_t k = 0; k < a.size(); ++k) d += a[k] != b[k];
  return d;
}

float Clamp01(double v) { return static_cast<float>(std::clamp(v, 0.0, 1.0)); }

// `reference` thinned to at most 4096 scores (a whole space can be 250,000), with `extra`, sorted:
// enough for a percentile, and its sort stays cheap.
std::vector<float> SortedReference(const std::vector<float>& reference,
                                   const std::vector<float>& extra) {
  std::vector<float> ref;
  const size_t stride = std::max<size_t>(1, reference.size() / 4096);
  for (size_t i = 0; i < reference.size(); i += stride) ref.push_back(reference[i]);
  ref.insert(ref.end(), extra.begin(), extra.end());
  std::sort(ref.begin(), ref.end());
  return ref;
}

double Percentile(const std::vector<float>& sorted, float score) {
  return static_cast<double>(std::upper_bound(sorted.begin(), sorted.end(), score) -
                             sorted.begin()) /
         std::max<size_t>(1, sorted.size());
}

}  // namespace

std::vector<float> CandidateFeatures(const SearchSpace& space,
                                     const std::vector<Candidate>& candidates,
                                     const std::vector<float>& reference,
                                     const std::vector<float>& sample_reference,
                                     float incumbent_score,
                                     const Point& incumbent, const std::vector<Point>& measured,
                                     const RunState& state) {
  std::vector<float> own, sampled;
  for (const Candidate& c : candidates) {
    own.push_back(c.score);
    sampled.push_back(c.sample_score);
  }
  const std::vector<float> ref = SortedReference(reference, own);
  const std::vector<float> sample_ref = SortedReference(sample_reference, sampled);
  const double mean = std::accumulate(ref.begin(), ref.end(), 0.0) / ref.size();
  double var = 0;
  for (float s : ref) var += (s - mean) * (s - mean);
  const double sd = std::max(1e-6, std::sqrt(var / ref.size()));
  const double top = ref.back();

  // Rank of each candidate's score within the pool, 1 for the best.
  std::vector<size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return candidates[a].score > candidates[b].score; });
  std::vector<float> pool_rank(candidates.size(), 1.f);
  const double n = static_cast<double>(std::max<size_t>(1, candidates.size() - 1));
  for (size_t r = 0; r < order.size(); ++r) pool_rank[order[r]] = static_cast<float>(1 - r / n);

  const double width = std::max<size_t>(1, space.parameters().size());
  std::vector<float> out;
  out.reserve(candidates.size() * kCandidateFeatures);
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    const Point p = space.PointAt(c.index);
    const double percentile = Percentile(ref, c.score);
    int nearest = static_cast<int>(width);
    for (const Point& m : measured) nearest = std::min(nearest, Hamming(p, m));
    out.push_back(Clamp01(percentile));
    out.push_back(Clamp01(1 + (c.score - top) / sd / 3));
    out.push_back(Clamp01(0.5 + (c.score - incumbent_score) / sd / 6));
    out.push_back(Clamp01(incumbent.empty() ? 1 : Hamming(p, incumbent) / width));
    out.push_back(Clamp01(nearest / width));
    out.push_back(pool_rank[i]);
    out.push_back((c.arms & kModelArm) ? 1.f : 0.f);
    out.push_back((c.arms & kLocalArm) ? 1.f : 0.f);
    out.push_back((c.arms & kRandomArm) ? 1.f : 0.f);
    out.push_back(Clamp01(state.budget_used));
    out.push_back(Clamp01(state.stale_batches / 8));
    out.push_back(Clamp01(state.failure_share));
    out.push_back(Clamp01(10 * state.last_gain));
    out.push_back((c.arms & kSampleArm) ? 1.f : 0.f);
    out.push_back(Clamp01(Percentile(sample_ref, c.sample_score)));
  }
  return out;
}

}  // namespace ktune
