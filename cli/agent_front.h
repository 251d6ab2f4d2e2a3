// The `ktune` front (cli/CMakeLists.txt): every command runs in this light executable, without
// LibTorch, except those that can run the PPO agent, which it hands to `ktune-agent`.
//
// Contract: `ktune ARGS...` behaves exactly as `ktune-agent ARGS...` for every ARGS; only the
// start-up cost differs (ktune-agent loads LibTorch: about 1.5 s and 175 MB before the first
// line of work on the 2-core development machine).
#ifndef KTUNE_CLI_AGENT_FRONT_H_
#define KTUNE_CLI_AGENT_FRONT_H_

namespace ktune::cli {

// True when argv names a command that can run the PPO agent: serve, tune, agent ..., and bench
// search|kernel|service. False for everything else, and for any request for help (-h, --help),
// which the front answers itself from the same command definitions.
bool CommandRunsTheAgent(int argc, char** argv);

// Replaces this process (same pid, environment and arguments) with the ktune-agent executable in
// this executable's folder. Returns only on failure, after printing why: kExitFailure.
int RunInAgentBinary(char** argv);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_AGENT_FRONT_H_
