// Shared plumbing of the `ktune` subcommands: exit codes, error printing, JSON output, and the
// --db option.
//
// Exit codes (../shared/DESIGN.md, "Command line"): 0 success, 1 failure, 2 bad usage. Bad usage is
// the command line itself: an unknown, missing or conflicting option, a value out of range, a name
// (kernel, strategy, device) that does not exist. A file the command line names that is missing,
// unreadable or malformed is a failure (1), as is what the server or the machine refuses: the
// command was right, its input or its environment was not (kubectl's and git's convention).
#ifndef KTUNE_CLI_COMMAND_H_
#define KTUNE_CLI_COMMAND_H_

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/policy_training.h"
#include "common/event_log.h"
#include "db/sqlite_tuning_database.h"
#include "ktune/v1/tuning_service.pb.h"

namespace grpc {
class Channel;
class ClientContext;
}
namespace ktune {
struct ClientTls;
}

namespace ktune::cli {

inline constexpr char kVersion[] = "0.1.0";  // `ktune --version`, the server's start event

// Where clients and workers find the server unless told (--server).
inline constexpr char kDefaultServer[] = "127.0.0.1:7470";

// How every --json output is dumped: text that is not UTF-8 (a file name, a path) is written with
// U+FFFD. A plain dump() threw, and the command aborted (exit 134): `db stats --db $'\xff.db'`.
inline constexpr auto kReplaceInvalidUtf8 = nlohmann::json::error_handler_t::replace;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What the chosen subcommand runs once parsing succeeded; set by each subcommand's callback.
using Action = std::function<int()>;

// Prints "ktune <command>: <message>" to stderr and returns kExitFailure, or kExitUsage for
// InvalidArgument statuses that come from the command line itself (use UsageError for those).
int Fail(const std::string& command, const absl::Status& status);
int UsageError(const std::string& command, const std::string& message);
// Fail and UsageError write a `command_failed` event instead of text when the log format is
// json. UseLogFormat sets it (serve, worker), and in json sends gRPC's own error lines through
// LogEvent too (`grpc_log`).
void UseLogFormat(LogFormat format);
// A target that could not be set up: UsageError for InvalidArgument and NotFound (a bad flag,
// an unknown kernel), Fail otherwise (no GPU, no runner).
int UsageOrFail(const std::string& command, const absl::Status& status);
// Fail, except for work a signal interrupted (Cancelled while InterruptSignal() is set,
// cli/interrupts.h): the message, and 128 + the signal (130 for Ctrl-C), as shells expect.
int FailOrInterrupted(const std::string& command, const absl::Status& status);
// A channel MakeChannel could not make: a bad --server (no port, a port past 65535) or TLS option
// combination is a usage error (exit 2), a PEM file that cannot be read a failure (exit 1).
int ChannelFailure(const std::string& command, const absl::Status& status);

// Adds --tls-ca, --tls-cert and --tls-key (a client's view of the server's TLS) to `sub`; a
// certificate needs the CA and its key (and a key its certificate), checked as usage.
void AddClientTlsOptions(CLI::App* sub, ClientTls* tls);
// For commands that either read --db or ask --server: with a server, makes `*channel`
// (MakeChannel) and returns kExitOk, or a failure for a TLS file missing or not PEM, reported as
// the file's before any call (not as the answer's, which may be bad usage). Without one, leaves
// `*channel` null: kExitOk, or bad usage when a TLS option was given (it would be ignored). The
// options' combination is checked earlier, by AddClientTlsOptions.
int ConnectIfServer(const std::string& command, const std::string& server, const ClientTls& tls,
                    std::shared_ptr<grpc::Channel>* channel);

// "queued", "running", ...: a job state as the CLI prints it.
std::string StateName(v1::JobState s);

// `token`, else $KTUNE_TOKEN, else empty; surrounding whitespace removed. A token with a control
// character inside is said on stderr (never printed) and not sent: empty.
std::string TokenOr(const std::string& token);
// A client context with a deadline `seconds` away and the bearer token (TokenOr), if any.
std::unique_ptr<grpc::ClientContext> ClientContextFor(const std::string& token, int seconds = 10);

// Makes every floating-point option of `app` and its subcommands refuse nan and inf: CLI11's
// range checks compare, and every comparison with NaN is false, so `--seconds nan` passed them
// (and made `bench service` spin forever). Unsigned options refuse what an unsigned 64-bit
// integer cannot hold (CLI11 saturated `--seed -1`, `2^64` and `1e23` alike).
void CheckNumberOptions(CLI::App& app);
// "unknown command 'x'" when argv names a command that `app` (or the command group argv names
// before it) does not have; empty otherwise. CLI11 says only "A subcommand is required".
std::string UnknownCommand(CLI::App& app, int argc, char** argv);
// A check that a number is above 0, saying so (CLI::PositiveNumber prints the largest double).
const CLI::Validator& AboveZero();
// A check that a number is 0 or more, saying so (CLI::NonNegativeNumber printed the largest
// double, 309 digits).
const CLI::Validator& ZeroOrMore();
// A check of --server's HOST:PORT (CheckServerAddress): an empty one given (an unset $SERVER)
// fell back to the local database and an in-process tune, without a word.
const CLI::Validator& ServerAddress();

// A --plot FILE: named .svg, or with no extension (/dev/stdout); x.png got SVG without a word.
const CLI::Validator& SvgPath();

// Adds --db PATH (default ktune.db in the current directory) to `sub`.
void AddDbOption(CLI::App* sub, std::string* path);
absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> OpenDatabase(const std::string& path);
// For commands that only read: NotFound when `path` does not exist, so that a mistyped --db is
// an error rather than a new, empty database that knows nothing.
absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> OpenExistingDatabase(const std::string& path);
// True when `path` exists and starts with SQLite's header: a file an export must not overwrite.
bool IsSqliteFile(const std::string& path);

// Registration of each command group; each adds its subcommands to `app` and sets `*action`
// when one of them is chosen.
void RegisterDbCommands(CLI::App& app, Action* action);
void RegisterQueryCommands(CLI::App& app, Action* action);
void RegisterExplainCommand(CLI::App& app, Action* action);
void RegisterTelemetryCommands(CLI::App& app, Action* action);
void RegisterSpaceCommand(CLI::App& app, Action* action);
void RegisterBenchCommands(CLI::App& app, Action* action);
void RegisterServiceCommands(CLI::App& app, Action* action);
void RegisterTuneCommand(CLI::App& app, Action* action);
void RegisterKernelsCommand(CLI::App& app, Action* action);
void RegisterAgentCommands(CLI::App& app, Action* action);
// The options of PPO's offline training (iterations, episodes, budget, synthetic landscapes),
// named `prefix` + "iterations" and so on: `ktune agent train` and the folds of `bench search`.
void AddPolicyTrainingOptions(CLI::App* sub, const std::string& prefix,
                              const std::string& help_prefix, PolicyTrainingOptions* training,
                              int* synthetic);
// `ktune bench kernel`, added to the bench command group.
void RegisterBenchKernelCommand(CLI::App& bench, Action* action);
void RegisterBenchServiceCommand(CLI::App& bench, Action* action);

}  // namespace ktune::cli

#endif  // KTUNE_CLI_COMMAND_H_
