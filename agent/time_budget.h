// How much time a search strategy may spend, as a share of the time spent measuring: the
// accounting behind SearchStrategy::SetTimeAllowance. A driver (the tuning loop, the server's
// scheduler) reports every measurement's and every strategy call's wall time; the allowance
// for the next proposal is share x measurement time so far - agent time so far.
//
// Why: a learning step of PPO costs tens of milliseconds. When a measurement takes seconds (a
// GPU kernel's compile and runs) that is noise; when it takes 1 ms it would dominate the run. The
// strategy, not the user, adapts: it learns as often as its share allows.
#ifndef KTUNE_AGENT_TIME_BUDGET_H_
#define KTUNE_AGENT_TIME_BUDGET_H_

#include <limits>

namespace ktune {

class AgentTimeBudget {
 public:
  // `share` of the measurement time; 0 or less: no limit (the allowance is +infinity).
  explicit AgentTimeBudget(double share) : share_(share) {}

  void AddMeasurementMs(double ms) { measured_ms_ += ms; }
  void AddAgentMs(double ms) { agent_ms_ += ms; }

  double AllowanceMs() const {
    if (share_ <= 0) return std::numeric_limits<double>::infinity();
    return share_ * measured_ms_ - agent_ms_;
  }
  double measured_ms() const { return measured_ms_; }
  double agent_ms() const { return agent_ms_; }

 private:
  double share_;
  double measured_ms_ = 0, agent_ms_ = 0;
};

}  // namespace ktune

#endif  // KTUNE_AGENT_TIME_BUDGET_H_
