#include "cli/agent_front.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "cli/command.h"

namespace ktune::cli {

bool CommandRunsTheAgent(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "--help-all") return false;
  }
  if (argc < 2) return false;
  const std::string command = argv[1];
  if (command == "serve" || command == "tune" || command == "agent") return true;
  if (command == "bench" && argc >= 3) {
    const std::string sub = argv[2];
    return sub == "search" || sub == "kernel" || sub == "service";
  }
  return false;
}

int RunInAgentBinary(char** argv) {
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) {
    std::cerr << "ktune: cannot find this executable's folder (/proc/self/exe: "
              << error.message() << "), and with it ktune-agent\n";
    return kExitFailure;
  }
  const std::string agent = (self.parent_path() / "ktune-agent").string();
  execv(agent.c_str(), argv);
  std::cerr << "ktune: this command runs the PPO agent, which lives in " << agent
            << ", and that could not be started: " << std::strerror(errno)
            << " (install ktune-agent beside ktune)\n";
  return kExitFailure;
}

}  // namespace ktune::cli
