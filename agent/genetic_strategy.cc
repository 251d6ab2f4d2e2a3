#include "agent/genetic_strategy.h"

#include <algorithm>

namespace ktune {

void GeneticStrategy::Mutate(Point& p, double rate) {
  std::uniform_real_distribution<double> u(0, 1);
  for (size_t k = 0; k < p.size(); ++k) {
    int count = static_cast<int>(space().parameters()[k].values.size());
    if (count < 2 || u(rng()) >= rate) continue;
    if (u(rng()) < 0.5) {  // step to a neighbouring value
      int v = p[k] + (u(rng()) < 0.5 ? -1 : 1);
      p[k] = static_cast<uint16_t>(std::clamp(v, 0, count - 1));
    } else {  // jump anywhere
      p[k] = static_cast<uint16_t>(std::uniform_int_distribution<int>(0, count - 1)(rng()));
    }
  }
}

absl::StatusOr<std::vector<Point>> GeneticStrategy::Generate(int n) {
  std::vector<const Observation*> ok;
  for (const Observation& o : history()) {
    if (o.ok) ok.push_back(&o);
  }
  if (ok.size() < 2) return std::vector<Point>();  // random until there are parents
  std::sort(ok.begin(), ok.end(),
            [](const Observation* a, const Observation* b) { return a->time_ms < b->time_ms; });
  if (static_cast<int>(ok.size()) > options_.population) ok.resize(options_.population);
  const size_t width = space().parameters().size();
  const double rate = options_.mutation_rate > 0 ? options_.mutation_rate : 1.0 / width;
  std::uniform_int_distribution<size_t> any(0, ok.size() - 1);
  auto select = [&]() {
    const Observation* winner = ok[any(rng())];
    for (int t = 1; t < options_.tournament; ++t) {
      const Observation* c = ok[any(rng())];
      if (c->time_ms < winner->time_ms) winner = c;
    }
    return winner;
  };
  std::vector<Point> out;
  std::bernoulli_distribution coin(0.5);
  for (int i = 0; i < n * 2 && static_cast<int>(out.size()) < n; ++i) {
    const Point& a = select()->point;
    const Point& b = select()->point;
    Point child(width);
    for (size_t k = 0; k < width; ++k) child[k] = coin(rng()) ? a[k] : b[k];
    Mutate(child, rate);
    for (int r = 0; r < options_.repair_attempts && (!space().IsValid(child) || Visited(child));
         ++r) {
      Mutate(child, std::max(rate, 0.5));
    }
    if (space().IsValid(child) && !Visited(child)) out.push_back(std::move(child));
  }
  return out;
}

}  // namespace ktune
