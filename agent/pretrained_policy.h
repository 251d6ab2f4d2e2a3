// The policy shipped with ktune: agent/pretrained/policy.json, compiled into the binary, as
// `ktune agent train` wrote it (agent/README.md says on which spaces and how). Empty if the file
// was missing at build time (PPO then starts from random weights).
#ifndef KTUNE_AGENT_PRETRAINED_POLICY_H_
#define KTUNE_AGENT_PRETRAINED_POLICY_H_

#include <string_view>

namespace ktune {

std::string_view PretrainedPolicyJson();

}  // namespace ktune

#endif  // KTUNE_AGENT_PRETRAINED_POLICY_H_
