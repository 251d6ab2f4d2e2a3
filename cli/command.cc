#include "cli/command.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/interrupts.h"
#include "common/event_log.h"
#include "grpc/support/log.h"
#include "grpcpp/client_context.h"
#include "proto/channel.h"

namespace ktune::cli {

namespace {

// With --log-format json (serve, worker), stderr holds one JSON object a line: a command's failure
// is a `command_failed` event. Whether it was written so.
bool FailedAsEvent(const std::string& command, const std::string& message, int exit_code) {
  if (CurrentLogFormat() != LogFormat::kJson) return false;
  LogEvent("command_failed",
           {{"command", command}, {"reason", message}, {"exit_code", std::to_string(exit_code)}});
  return true;
}

}  // namespace

int Fail(const std::string& command, const absl::Status& status) {
  if (FailedAsEvent(command, std::string(status.message()), kExitFailure)) return kExitFailure;
  std::cerr << "ktune " << command << ": " << status.message() << "\n";
  return kExitFailure;
}

int UsageOrFail(const std::string& command, const absl::Status& status) {
  return absl::IsInvalidArgument(status) || absl::IsNotFound(status)
             ? UsageError(command, std::string(status.message()))
             : Fail(command, status);
}

int FailOrInterrupted(const std::string& command, const absl::Status& status) {
  Fail(command, status);
  return absl::IsCancelled(status) && InterruptSignal() != 0 ? 128 + InterruptSignal()
                                                             : kExitFailure;
}

int ChannelFailure(const std::string& command, const absl::Status& status) {
  return absl::IsInvalidArgument(status) ? UsageError(command, std::string(status.message()))
                                         : Fail(command, status);
}

int UsageError(const std::string& command, const std::string& message) {
  if (FailedAsEvent(command, message, kExitUsage)) return kExitUsage;
  std::cerr << "ktune " << command << ": " << message << "\nRun 'ktune " << command
            << " --help' for usage.\n";
  return kExitUsage;
}

namespace {

// gRPC's own log lines, as events: with --log-format json a text line of gRPC's broke the one
// object a line. gRPC has filtered them by its verbosity already (GRPC_VERBOSITY: errors unless
// set).
void GrpcLogAsEvent(gpr_log_func_args* args) {
  LogEvent("grpc_log", {{"severity", gpr_log_severity_string(args->severity)},
                        {"file", absl::StrCat(args->file, ":", args->line)},
                        {"message", args->message}});
}

}  // namespace

void UseLogFormat(LogFormat format) {
  SetLogFormat(format);
  if (format == LogFormat::kJson) gpr_set_log_function(GrpcLogAsEvent);
}

void AddDbOption(CLI::App* sub, std::string* path) {
  *path = "ktune.db";
  sub->add_option("--db", *path, "Tuning database file (SQLite)")->capture_default_str();
}

absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> OpenDatabase(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> db = SqliteTuningDatabase::Open(path);
  if (db.ok()) return db;
  // Why, in words, where it is the file system (SQLite said "unable to open database file
  // (sqlite code 14)" of a file on a read-only mount, as `ktune serve` does not).
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path file(path);
  const fs::path folder = file.has_parent_path() ? file.parent_path() : fs::path(".");
  if (fs::exists(file, ec) && ::access(path.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the database ", path, " is not writable by this process (", std::strerror(errno),
        "): this command stores into it; copy it somewhere writable, or give another --db"));
  }
  if (fs::is_directory(folder, ec) && ::access(folder.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("the folder of the database ", path, " is not writable by this process (",
                     std::strerror(errno), "): SQLite keeps its journal beside the file"));
  }
  return db;
}

void CheckNumberOptions(CLI::App& app) {
  static const CLI::Validator kFinite(
      [](std::string& text) -> std::string {
        double value = 0;
        if (absl::SimpleAtod(text, &value) && !std::isfinite(value)) {
          return "must be a finite number";
        }
        return "";
      },
      "", "FINITE");
  static const CLI::Validator kUnsigned(
      [](std::string& text) -> std::string {
        uint64_t value = 0;
        return absl::SimpleAtoi(text, &value) ? "" : "must be a whole number from 0 to 2^64-1";
      },
      "", "UNSIGNED");
  for (CLI::Option* option : app.get_options()) {
    const std::string type = option->get_type_name();
    if (type.find("FLOAT") != std::string::npos) option->check(kFinite);
    if (type == "UINT") option->check(kUnsigned);
  }
  for (CLI::App* sub : app.get_subcommands({})) CheckNumberOptions(*sub);
}

std::string UnknownCommand(CLI::App& app, int argc, char** argv) {
  CLI::App* group = &app;
  std::string path = app.get_name();
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return "";      // options: CLI11 judges them
    if (group->get_subcommands({}).empty()) return "";  // a command's own arguments
    const auto options = group->get_options();
    if (std::any_of(options.begin(), options.end(),
                    [](const CLI::Option* o) { return o->get_positional(); })) {
      return "";  // a group that takes an argument too (ktune kernels NAME)
    }
    CLI::App* next = nullptr;
    for (CLI::App* sub : group->get_subcommands({})) {
      if (sub->check_name(word)) next = sub;
    }
    if (next == nullptr) {
      return absl::StrCat("unknown command '", path, " ", word, "' (run '", path,
                          " --help' for the commands)");
    }
    group = next;
    path = absl::StrCat(path, " ", word);
  }
  return "";
}

const CLI::Validator& ServerAddress() {
  static const CLI::Validator kServerAddress(
      [](std::string& text) -> std::string {
        absl::Status s = CheckServerAddress(text);
        return s.ok() ? "" : std::string(s.message());
      },
      "HOST:PORT", "SERVER_ADDRESS");
  return kServerAddress;
}

namespace {

// A validator of a finite number that `min` bounds (from above when `strict`), saying `what`.
CLI::Validator FiniteNumberFrom(double min, bool strict, std::string what, std::string name) {
  return CLI::Validator(
      [min, strict, what](std::string& text) -> std::string {
        double value = 0;
        if (!absl::SimpleAtod(text, &value)) return "must be a number";
        const bool ok = std::isfinite(value) && (strict ? value > min : value >= min);
        return ok ? "" : what;
      },
      "", std::move(name));
}

}  // namespace

const CLI::Validator& ZeroOrMore() {
  static const CLI::Validator kZeroOrMore =
      FiniteNumberFrom(0, /*strict=*/false, "must be 0 or more", "ZERO_OR_MORE");
  return kZeroOrMore;
}

const CLI::Validator& AboveZero() {
  static const CLI::Validator kAboveZero =
      FiniteNumberFrom(0, /*strict=*/true, "must be a finite number above 0", "ABOVE_ZERO");
  return kAboveZero;
}

const CLI::Validator& SvgPath() {
  static const CLI::Validator kSvgPath(
      [](const std::string& path) -> std::string {
        // --plot "" drew nothing and said nothing.
        if (path.empty()) return "name the SVG file (or /dev/stdout)";
        const std::string ext =
            absl::AsciiStrToLower(std::filesystem::path(path).extension().string());
        if (ext.empty() || ext == ".svg") return "";
        return absl::StrCat("the plot is SVG: name the file .svg (", path,
                            " would hold SVG under another format's name)");
      },
      "FILE.svg", "SVG_PATH");
  return kSvgPath;
}

absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> OpenExistingDatabase(
    const std::string& path) {
  std::error_code ec;
  if (path != ":memory:" && !std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(
        absl::StrCat("no tuning database at ", path, " (give --db FILE, or tune first)"));
  }
  // SQLite takes an empty file for a new database and would write the schema into it: a command
  // that only reads must leave the file as it found it.
  if (std::filesystem::is_regular_file(path, ec) && std::filesystem::file_size(path, ec) == 0 &&
      !ec) {
    return absl::NotFoundError(absl::StrCat("no tuning database at ", path,
                                            " (an empty file; give --db FILE, or tune first)"));
  }
  // A file this process may not write, or in a folder where SQLite cannot create its -wal and
  // -shm files (a shared, read-only copy of the tuning results): read it read-only. Without a
  // -wal file beside it no writer has the file open (a WAL writer keeps one while connected), so
  // SQLite may read it as immutable; with one (a server of another user writing it), read-only.
  const std::filesystem::path folder = std::filesystem::absolute(path, ec).parent_path();
  if (path != ":memory:" &&
      (::access(path.c_str(), W_OK) != 0 || ::access(folder.c_str(), W_OK) != 0)) {
    SqliteTuningDatabase::Options options;
    options.read_only = true;
    options.immutable = !std::filesystem::exists(path + "-wal", ec);
    absl::StatusOr<std::unique_ptr<SqliteTuningDatabase>> db =
        SqliteTuningDatabase::Open(path, options);
    if (!db.ok() && !options.immutable) {
      return absl::Status(db.status().code(),
                          absl::StrCat(db.status().message(), "; ", path,
                                       "-wal exists (a writer has the database open, or stopped "
                                       "without closing it) and SQLite cannot create its -shm "
                                       "file in a folder this process may not write"));
    }
    return db;
  }
  SqliteTuningDatabase::Options options;
  options.upgrade = false;  // a command that reads changes no file (ktune db migrate does)
  // One thread reads: a read connection beside the writer's only costs its opening (a few ms
  // of every `best` and `explain`).
  options.read_connections = 0;
  return SqliteTuningDatabase::Open(path, options);
}

bool IsSqliteFile(const std::string& path) {
  // Only a regular file can be a database; opening a pipe (--out /dev/stdout into `| head`) to
  // read its header would wait for the export's own output, forever.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char header[16] = {};
  return in.read(header, sizeof(header)) && std::string(header, 15) == "SQLite format 3";
}

}  // namespace ktune::cli

namespace ktune::cli {

std::string StateName(v1::JobState s) {
  std::string name = v1::JobState_Name(s);
  return absl::AsciiStrToLower(absl::StripPrefix(name, "JOB_STATE_"));
}

std::string TokenOr(const std::string& token) {
  const char* env = std::getenv("KTUNE_TOKEN");
  // A token from a file or a Kubernetes Secret ends in a newline, which gRPC refused by aborting
  // and printing the whole header, token included: surrounding whitespace is no part of a token.
  std::string t(absl::StripAsciiWhitespace(!token.empty() ? token : env ? env : ""));
  if (std::any_of(t.begin(), t.end(), [](char c) { return c < 0x20 || c == 0x7f; })) {
    std::cerr << "ktune: the token (--token or $KTUNE_TOKEN) holds a control character; it is "
                 "not sent (the server will refuse the call as unauthenticated)\n";
    return "";
  }
  return t;
}

std::unique_ptr<grpc::ClientContext> ClientContextFor(const std::string& token, int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  if (const std::string t = TokenOr(token); !t.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + t);
  }
  return ctx;
}

int ConnectIfServer(const std::string& command, const std::string& server, const ClientTls& tls,
                    std::shared_ptr<grpc::Channel>* channel) {
  channel->reset();
  if (server.empty()) {
    if (tls.ca_file.empty() && tls.cert_file.empty() && tls.key_file.empty()) return kExitOk;
    return UsageError(command,
                      "--tls-ca, --tls-cert and --tls-key are for --server; without it "
                      "the command reads the local --db");
  }
  if (absl::Status address = CheckServerAddress(server); !address.ok()) {
    return UsageError(command, std::string(address.message()));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> made = MakeChannel(server, tls);
  if (!made.ok()) return ChannelFailure(command, made.status());
  *channel = *std::move(made);
  return kExitOk;
}

void AddClientTlsOptions(CLI::App* sub, ClientTls* tls) {
  // Which options go together is the command line's to check (exit 2, before any file is read).
  CLI::Option* ca =
      sub->add_option("--tls-ca", tls->ca_file, "Connect with TLS, trusting this CA (PEM)");
  CLI::Option* cert =
      sub->add_option("--tls-cert", tls->cert_file, "Client certificate for mutual TLS (PEM)");
  CLI::Option* key = sub->add_option("--tls-key", tls->key_file, "Its private key (PEM)");
  cert->needs(ca);
  cert->needs(key);
  key->needs(cert);
}

}  // namespace ktune::cli
