// ktune: the command line of the kernel autotuning service. See ../shared/DESIGN.md.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli/command.h"
#if KTUNE_AGENT_FRONT
#include "cli/agent_front.h"
#endif

int main(int argc, char** argv) {
  using namespace ktune::cli;
#if KTUNE_AGENT_FRONT
  // The light front: commands that can run PPO continue in ktune-agent (cli/agent_front.h).
  if (CommandRunsTheAgent(argc, argv)) return RunInAgentBinary(argv);
#endif
  // Debian's Abseil is built with Mutex deadlock detection on: every lock then updates a global
  // lock graph (absl::synchronization_internal::GraphCycles, a few percent of the server's CPU
  // under load, gRPC's own mutexes included). Lock order is the code's contract, not a run-time
  // check.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"ktune: reinforcement-learning kernel autotuning", "ktune"};
  app.require_subcommand(1);
  app.set_version_flag("--version", absl::StrCat("ktune ", kVersion));
  app.footer("Run 'ktune COMMAND --help' for a command's options.");
  Action action;
  // Bench first: the service commands add bench search|kernel|service to it.
  RegisterBenchCommands(app, &action);
  RegisterServiceCommands(app, &action);
  RegisterTuneCommand(app, &action);
  RegisterKernelsCommand(app, &action);
  RegisterAgentCommands(app, &action);
  RegisterQueryCommands(app, &action);
  RegisterExplainCommand(app, &action);
  RegisterTelemetryCommands(app, &action);
  RegisterDbCommands(app, &action);
  RegisterSpaceCommand(app, &action);
  CheckNumberOptions(app);
  if (const std::string unknown = UnknownCommand(app, argc, argv); !unknown.empty()) {
    std::cerr << unknown << "\n";
    return kExitUsage;
  }
  // `serve` and `worker` with --log-format json write every line of stderr as a JSON object: an
  // option they cannot parse too (its failure comes before the option is read).
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--log-format=json" ||
        (arg == "--log-format" && i + 1 < argc && std::string(argv[i + 1]) == "json")) {
      ktune::SetLogFormat(ktune::LogFormat::kJson);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 checks required options and subcommands before it looks at arguments it did not
    // match, so a mistyped option said "--space is required" or "A subcommand is required":
    // name what was not understood first.
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      std::vector<std::string> unexpected;
      for (const CLI::App* sub = &app; sub != nullptr;) {
        for (const std::string& arg : sub->remaining()) unexpected.push_back(arg);
        const auto chosen = sub->get_subcommands();
        sub = chosen.empty() ? nullptr : chosen.front();
      }
      if (!unexpected.empty()) {
        if (ktune::CurrentLogFormat() == ktune::LogFormat::kJson) {
          return UsageError(argc > 1 ? argv[1] : "",
                            "The following argument was not expected: " + unexpected.front());
        }
        std::cerr << "The following argument was not expected: " << unexpected.front()
                  << "\nRun with --help for more information.\n";
        return kExitUsage;
      }
    }
    // Named as every other usage error is ("ktune best: --max-rel-error: must be ..."): CLI11
    // said the option alone, and which command it was of only the command line showed.
    std::string command;
    for (const CLI::App* sub = &app; sub != nullptr;) {
      const auto chosen = sub->get_subcommands();
      sub = chosen.empty() ? nullptr : chosen.front();
      if (sub != nullptr) command += (command.empty() ? "" : " ") + sub->get_name();
    }
    if (command.empty()) {
      app.exit(e);
      return kExitUsage;
    }
    return UsageError(command, e.what());
  }
  if (!action) return UsageError("", "no command given");
  const int rc = action();
  // Output that could not be written (a full disk or a closed pipe behind a shell redirect) must
  // not end as a success: `ktune db export > backup.jsonl` on a full disk once exited 0.
  std::cout.flush();
  if (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::cerr << "ktune: could not write the output: " << std::strerror(errno) << "\n";
    return rc == kExitOk ? kExitFailure : rc;
  }
  return rc;
}
