// The ktune binary as users run it: exit codes (0 ok, 1 failure, 2 bad usage), --help
// everywhere, --json that parses, and the acceptance check of the foundation: each shared
// recorded space imported, then `ktune best` answering its optimum, which the test finds by
// reading the file itself.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/file_lock.h"
#include "db/interchange/record_files.h"
#include "db/sqlite_schema.h"
#include "db/sqlite_tuning_database.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunKtune;
using testing::SpaceFile;
using testing::TempDir;

// Every command and subcommand, found by walking the "Subcommands:" lists of `--help` itself
// (a hand-written list missed seven commands as they were added), answers --help with its usage.
TEST(CliTest, EveryCommandHasHelp) {
  std::vector<std::vector<std::string>> pending = {{}};
  std::set<std::string> seen;
  while (!pending.empty()) {
    std::vector<std::string> command = pending.back();
    pending.pop_back();
    std::vector<std::string> args = command;
    args.push_back("--help");
    auto r = RunKtune(args);
    const std::string name = absl::StrJoin(command, " ");
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("Usage")) << name;
    seen.insert(name);
    const size_t list = r.out.find("\nSubcommands:\n");
    if (list == std::string::npos) continue;
    std::istringstream lines(r.out.substr(list + strlen("\nSubcommands:\n")));
    for (std::string line; std::getline(lines, line) && absl::StartsWith(line, "  ");) {
      std::vector<std::string> sub = command;
      sub.push_back(std::string(absl::StripAsciiWhitespace(line.substr(0, line.find(' ', 2)))));
      if (!sub.back().empty()) pending.push_back(sub);
    }
  }
  // The walk reached every command the README's table lists.
  for (const char* expected : {"serve",        "worker",
                               "tune",         "submit",
                               "jobs",         "watch",
                               "cancel",       "pause",
                               "resume",       "workers",
                               "best",         "explain",
                               "kernels",      "kernels register",
                               "telemetry",    "telemetry report",
                               "drift",        "db",
                               "db import",    "db export",
                               "db stats",     "db check",
                               "db migrate",   "space",
                               "bench",        "bench import",
                               "bench space",  "bench search",
                               "bench kernel", "bench service",
                               "agent",        "agent train"}) {
    EXPECT_TRUE(seen.count(expected))
        << expected << " not reached; reached " << absl::StrJoin(seen, ", ");
  }
}

TEST(CliTest, BadUsageExitsWithTwo) {
  TempDir dir;
  std::string db = dir.File("k.db");
  EXPECT_EQ(RunKtune({}).exit_code, 2);
  auto unknown = RunKtune({"frobnicate"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command 'ktune frobnicate'"));
  auto unknown_sub = RunKtune({"db", "frobnicate"});
  EXPECT_EQ(unknown_sub.exit_code, 2);
  EXPECT_THAT(unknown_sub.err, HasSubstr("unknown command 'ktune db frobnicate'"));
  EXPECT_EQ(RunKtune({"kernels", "gemm"}).exit_code, 0);  // a group's own argument, not a command
  EXPECT_EQ(RunKtune({"best", "--device", "A100"}).exit_code, 2);  // --kernel missing
  EXPECT_EQ(RunKtune({"db", "stats", "--db", db, "--colour"}).exit_code, 2);
  auto bad_problem =
      RunKtune({"best", "--db", db, "--kernel", "gemm", "--device", "A100", "--problem", "M1024"});
  EXPECT_EQ(bad_problem.exit_code, 2);
  EXPECT_THAT(bad_problem.err, HasSubstr("NAME=VALUE"));
  auto bad_format = RunKtune({"db", "import", "x.json", "--db", db, "--format", "csv"});
  EXPECT_EQ(bad_format.exit_code, 2);
  EXPECT_THAT(bad_format.err, HasSubstr("unknown format 'csv'"));
  // Range checks compare, and NaN compares false with everything: every floating-point option
  // refuses nan and inf itself (`bench service --seconds nan` used to spin forever).
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"bench", "service", "--seconds", "nan"},
        {"bench", "search", "--space", "x", "--measure-ms", "nan"},
        {"worker", "--server", "127.0.0.1:1", "--idle-exit", "inf"}}) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 2) << args[1] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("finite")) << args[1];
  }
  // TLS options without --server would be ignored by the commands that then read --db.
  for (const char* command : {"best", "explain"}) {
    auto tls_alone = RunKtune(
        {command, "--kernel", "gemm", "--device", "x", "--db", db, "--tls-ca", dir.File("ca.pem")});
    EXPECT_EQ(tls_alone.exit_code, 2) << command << ": " << tls_alone.err;
    EXPECT_THAT(tls_alone.err, HasSubstr("are for --server")) << command;
  }
  auto no_strategy = RunKtune(
      {"bench", "search", "--space", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--strategies", ","});
  EXPECT_EQ(no_strategy.exit_code, 2);
  EXPECT_THAT(no_strategy.err, HasSubstr("--strategies names no strategy"));
  // A replay device's file fixes the problem: --problem and --dtype would be ignored.
  auto replay_problem =
      RunKtune({"tune", "--device", "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db,
                "--budget", "2", "--dtype", "f64"});
  EXPECT_EQ(replay_problem.exit_code, 2);
  EXPECT_THAT(replay_problem.err, HasSubstr("--dtype does not apply to a replay device"));
  for (const char* seed : {"-1", "18446744073709551616"}) {  // CLI11 saturated both to 2^64-1
    auto bad_seed = RunKtune({"agent", "train", "--seed", seed, "--out", dir.File("p.json")});
    EXPECT_EQ(bad_seed.exit_code, 2) << seed;
    EXPECT_THAT(bad_seed.err, HasSubstr("--seed: must be a whole number")) << seed;
  }
  // An accuracy budget is a finite number above 0, for every command that takes one: `best`
  // took 0 for "no budget" and served the least accurate configuration, and `inf` was accepted
  // until the job failed (exit 1).
  for (const std::string command : {"tune", "best", "explain"}) {
    for (const std::string budget : {"0", "inf"}) {
      auto bad_budget = RunKtune({command, "--kernel", "gemm", "--max-rel-error", budget});
      EXPECT_EQ(bad_budget.exit_code, 2) << command << " " << budget;
      EXPECT_THAT(bad_budget.err, HasSubstr("--max-rel-error: must be a finite number above 0"))
          << command << " " << budget;
    }
  }
  // A mistyped option is named, not reported as a missing required one ("A subcommand is
  // required", "--space is required").
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--bogus"}, {"bench", "search", "--bogus"}}) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 2) << args.back();
    EXPECT_THAT(r.err, HasSubstr("The following argument was not expected: --bogus")) << r.err;
  }
  // Numbers a command cannot mean: a negative or zero time, a port past 65535 (gRPC took 99999
  // modulo 65536 and called another port).
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"worker", "--device", "cpu", "--idle-exit", "-1"},
        {"worker", "--device", "cpu", "--max-measurements", "-1"},
        {"worker", "--device", "cpu", "--metrics-listen", "garbage"},
        {"worker", "--device", "cpu", "--metrics-listen", "127.0.0.1:99999"},
        {"watch", "1", "--timeout", "0"},
        {"bench", "service", "--seconds", "-1"},
        {"best", "--kernel", "gemm", "--device", "x", "--server", "127.0.0.1:99999"},
        // A server without a port (gRPC tried port 443 by DNS and failed with exit 1), for
        // commands that read --db too and for those that only ask a server.
        {"jobs", "--server", "garbage"},
        {"watch", "1", "--server", "garbage"},
        {"drift", "--server", "garbage"},
        {"cancel", "1", "--server", "garbage"},
        // A port that is no number (-1 reached port 65535), and an empty address given (an unset
        // $SERVER: best and tune read the local database or tuned here instead, without a word).
        {"best", "--kernel", "gemm", "--device", "x", "--server", "127.0.0.1:-1"},
        {"best", "--kernel", "gemm", "--device", "x", "--server", ""},
        {"tune", "--kernel", "gemm", "--problem", "M=8,N=8,K=8", "--budget", "2", "--server", ""},
        {"jobs", "--server", ""},
        // A budget out of range, found before the tune (the in-process tune exited 1 on it).
        {"tune", "--kernel", "gemm", "--problem", "M=8,N=8,K=8", "--budget", "2000000"},
        // A CUDA kernel on the CPU (it stored a failure for every measurement).
        {"tune", "--kernel", "cuda_gemm", "--device", "cpu", "--budget", "4"},
        // An accuracy budget on a recorded space without measured errors (the same).
        {"tune", "--device", "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--budget", "4",
         "--max-rel-error", "1e-3"}}) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args.back() << ": " << r.err;
  }
  // Said in a line a person reads (CLI11's own check printed the largest double, 309 digits),
  // named with its command as every other usage error (CLI11's said the option alone).
  auto negative = RunKtune({"worker", "--device", "cpu", "--max-measurements", "-1"});
  EXPECT_THAT(negative.err, HasSubstr("ktune worker: --max-measurements: must be 0 or more\n"
                                      "Run 'ktune worker --help' for usage."));
  EXPECT_LT(negative.err.size(), 200u) << negative.err;
}

// Options a command would have ignored, and values it found wrong only after work: usage (2),
// before anything runs or is written.
TEST(CliTest, OptionsThatWouldBeIgnoredOrFailLateAreUsage) {
  TempDir dir;
  const std::string db = dir.File("b.db");
  for (const auto& [args, says] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"kernels", "--samples", "3"}, "--samples is the number of configurations --compile"},
           {{"kernels", "cuda_gemm", "--problem", "M=64,N=64,K=64", "--compile", "sm_xx"},
            "not a GPU architecture"},
           {{"kernels", "--tls-ca", dir.File("ca.pem")}, "are for --server"},
           {{"kernels", "--json", "register", dir.File("k.json")}, "options go after `register`"},
           {{"kernels", "gemm", "register", dir.File("k.json")}, "options go after `register`"},
           {{"bench", "kernel", "--problem", "M=64,N=64,K=64", "--config", "MR=4"},
            "--config chooses the configuration of --repeatability"},
           {{"bench", "kernel", "--problem", "M=64,N=64,K=64", "--budget", "0"}, "--budget"},
           // One replay worker per recorded space: with fewer, tasks never ran.
           {{"bench", "service", "--workers", "1"}, "--workers: Value 1 not in range 4"},
           {{"bench", "kernel", "--problem", "M=64,N=64,K=64", "--strategy", "bogus"},
            "unknown strategy 'bogus'"},
           {{"bench", "kernel", "--kernel", "nosuch", "--problem", "M=64", "--vs", "openblas"},
            "unknown kernel 'nosuch'"},
           // The second problem is wrong: refused before the first is tuned.
           {{"bench", "kernel", "--problem", "M=64,N=64,K=64", "--problem", "M=64,N=64", "--budget",
             "8", "--db", db},
            "needs problem parameter K"},
           // PPO's ablations are `bench search`'s; a job refused them after creating the file.
           {{"tune", "--kernel", "gemm", "--problem", "M=64,N=64,K=64", "--strategy",
             "ppo-nopolicy", "--db", db},
            "unknown strategy 'ppo-nopolicy'"},
           // An empty value where one was meant (an unset shell variable): refused, not read as
           // "nothing known on <blank>", a plot not drawn, or a job's field (exit 1).
           {{"best", "--kernel", "gemm", "--problem", "M=64,N=64,K=64", "--device", "", "--db", db},
            "--device is empty"},
           {{"best", "--kernel", "gemm", "--problem", "M=64,N=64,K=64", "--device", "cpu",
             "--pareto", "--plot", "", "--db", db},
            "name the SVG file"},
           {{"tune", "--kernel", "gemm", "--problem", "M=64,N=64,K=64", "--start-from", "", "--db",
             db},
            "--start-from is empty"},
           // Leave-one-kernel-out's options under the plain protocol were ignored.
           {{"bench", "search", "--space", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--train-seeds",
             "3"},
            "--train-seeds: only --protocol leave-one-kernel-out trains policies"}}) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(says)) << args[0] << " " << args[1];
    EXPECT_THAT(r.out, ::testing::IsEmpty()) << args[0] << " " << args[1];
  }
  EXPECT_FALSE(std::filesystem::exists(db));  // nothing tuned, no database made
}

// Commands that write a file never destroy what is there by mistake: `agent train --out` on a
// tuning database (it replaced it with a policy) or on a file that is not a policy, and an
// export that matched nothing (it emptied the backup --out named, exit 0).
TEST(CliTest, WritingCommandsKeepWhatAMistakeWouldDestroy) {
  TempDir dir;
  const std::string db = dir.File("k.db");
  ASSERT_EQ(
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db}).exit_code, 0);
  const std::vector<std::string> train = {
      "agent",        "train", "--space",     SpaceFile("pnpoly_RTX_3090_T4.json.gz"),
      "--iterations", "1",     "--episodes",  "1",
      "--budget",     "17",    "--synthetic", "0",
      "--out"};
  auto onto_db = train;
  onto_db.push_back(db);
  auto refused = RunKtune(onto_db);
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("is a SQLite database"));
  EXPECT_EQ(RunKtune({"db", "stats", "--db", db}).exit_code, 0);  // still the database
  const std::string notes = dir.File("notes.txt");
  std::ofstream(notes) << "my notes\n";
  auto onto_notes = train;
  onto_notes.push_back(notes);
  auto kept = RunKtune(onto_notes);
  EXPECT_EQ(kept.exit_code, 2) << kept.err;
  EXPECT_THAT(kept.err, HasSubstr("is not a ktune policy; give another --out, or --force"));
  EXPECT_EQ(testing::ReadWholeFile(notes), "my notes\n");
  onto_notes.push_back("--force");
  if (KTUNE_WITH_AGENT_BINARY) {
    EXPECT_EQ(RunKtune(onto_notes).exit_code, 0);
    EXPECT_THAT(testing::ReadWholeFile(notes), HasSubstr("ktune-acquisition-policy/"));
    EXPECT_EQ(RunKtune(onto_notes).exit_code, 0);  // a policy is replaced without --force
  } else {  // no policy to train without LibTorch: it fails, and the notes stay
    EXPECT_EQ(RunKtune(onto_notes).exit_code, 1);
    EXPECT_EQ(testing::ReadWholeFile(notes), "my notes\n");
  }

  const std::string backup = dir.File("backup.jsonl");
  ASSERT_EQ(RunKtune({"db", "export", "--db", db, "--out", backup}).exit_code, 0);
  const std::string exported = testing::ReadWholeFile(backup);
  ASSERT_FALSE(exported.empty());
  auto typo = RunKtune({"db", "export", "--db", db, "--kernel", "pnpolyy", "--out", backup});
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_THAT(typo.err, HasSubstr("no record matches --kernel/--device/--problem; " + backup +
                                  " is left as it was"));
  EXPECT_EQ(testing::ReadWholeFile(backup), exported);
  auto to_stdout = RunKtune({"db", "export", "--db", db, "--kernel", "nosuch"});
  EXPECT_EQ(to_stdout.exit_code, 1);
  EXPECT_THAT(to_stdout.err, HasSubstr("no record matches"));
}

TEST(CliTest, FailuresExitWithOneAndSayWhy) {
  TempDir dir;
  auto missing = RunKtune({"db", "import", dir.File("nope.json"), "--db", dir.File("k.db")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope.json"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("k.db"))) << "an empty database was left behind";
  // A file that is read but cannot be imported (a renamed copy that does not name its kernel):
  // no new database either.
  std::filesystem::copy_file(SpaceFile("pnpoly_RTX_3090_T4.json.gz"), dir.File("mine.json.gz"));
  auto unnamed = RunKtune({"db", "import", dir.File("mine.json.gz"), "--db", dir.File("k.db")});
  EXPECT_EQ(unnamed.exit_code, 1);
  EXPECT_THAT(unnamed.err, HasSubstr("does not name its kernel"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("k.db"))) << "an empty database was left behind";
  auto serve = RunKtune(
      {"serve", "--listen", "999.1.1.1:7", "--db", dir.File("s.db"), "--allow-unauthenticated"});
  EXPECT_EQ(serve.exit_code, 1);
  EXPECT_THAT(serve.err, HasSubstr("cannot listen on 999.1.1.1:7"));
  // A token file every user of the machine may read is said to be one (group may: a Kubernetes
  // secret mounted with fsGroup is 0440); the server starts all the same.
  std::ofstream(dir.File("tokens")) << "0123456789abcdef0123 admin\n";
  for (const auto& [mode, said] : std::vector<std::pair<std::filesystem::perms, bool>>{
           {std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                std::filesystem::perms::group_read | std::filesystem::perms::others_read,
            true},
           {std::filesystem::perms::owner_read | std::filesystem::perms::group_read, false}}) {
    std::filesystem::permissions(dir.File("tokens"), mode);
    auto secret = RunKtune({"serve", "--listen", "999.1.1.1:7", "--db", dir.File("s.db"), "--auth",
                            dir.File("tokens")});
    EXPECT_EQ(secret.exit_code, 1);  // it went on to listen
    EXPECT_EQ(secret.err.find("secret_readable_by_others") != std::string::npos, said)
        << secret.err;
    if (said) {
      EXPECT_THAT(secret.err, HasSubstr("every user of this machine (mode 0644): chmod o-r"));
    }
  }
  // /metrics takes no token: one open to other machines is said to be.
  auto open_metrics = RunKtune({"serve", "--listen", "999.1.1.1:7", "--db", dir.File("s.db"),
                                "--allow-unauthenticated", "--metrics-listen", "0.0.0.0:0"});
  EXPECT_THAT(open_metrics.err, HasSubstr("metrics_open metrics_listen=0.0.0.0:0"));
  auto local_metrics = RunKtune({"serve", "--listen", "999.1.1.1:7", "--db", dir.File("s.db"),
                                 "--allow-unauthenticated", "--metrics-listen", "127.0.0.1:0"});
  EXPECT_THAT(local_metrics.err, Not(HasSubstr("metrics_open")));
  // Without tokens every caller is admin (and may register kernels that workers build and run):
  // a port open to the network needs --auth, or the flag that accepts it.
  for (const std::string open : {"0.0.0.0:0", "[::]:0", "10.1.2.3:7470", "myhost:7470"}) {
    auto unauthenticated = RunKtune({"serve", "--listen", open, "--db", dir.File("s.db")});
    EXPECT_EQ(unauthenticated.exit_code, 2) << open;
    EXPECT_THAT(unauthenticated.err, HasSubstr("without --auth every caller may register kernels"))
        << open;
  }
  // Mutual TLS admits only clients with a certificate from the CA: no refusal (the missing
  // certificate files are what fails here).
  auto mutual_tls = RunKtune({"serve", "--listen", "0.0.0.0:0", "--db", dir.File("m.db"),
                              "--tls-cert", dir.File("c.pem"), "--tls-key", dir.File("k.pem"),
                              "--tls-client-ca", dir.File("ca.pem")});
  EXPECT_NE(mutual_tls.exit_code, 0);
  EXPECT_THAT(mutual_tls.err, Not(HasSubstr("without --auth"))) << mutual_tls.err;
  auto no_address = RunKtune({"serve", "--listen", "", "--db", dir.File("s.db")});
  EXPECT_EQ(no_address.exit_code, 2);
  EXPECT_THAT(no_address.err, HasSubstr("--listen needs HOST:PORT"));
  auto big_port = RunKtune({"serve", "--listen", "127.0.0.1:99999", "--db", dir.File("s.db")});
  EXPECT_EQ(big_port.exit_code, 2);  // a value out of range (gRPC alone listened on 99999 % 65536)
  EXPECT_THAT(big_port.err, HasSubstr("a port from 0 (any free one) to 65535"));
  // The server's other option mistakes are bad usage too, found before anything starts.
  auto metrics = RunKtune({"serve", "--metrics-listen", "garbage", "--db", dir.File("s.db")});
  EXPECT_EQ(metrics.exit_code, 2) << metrics.err;
  EXPECT_THAT(metrics.err, HasSubstr("is not IPV4:PORT"));
  auto cert_alone = RunKtune({"serve", "--tls-cert", dir.File("c.pem"), "--db", dir.File("s.db")});
  EXPECT_EQ(cert_alone.exit_code, 2) << cert_alone.err;
  EXPECT_THAT(cert_alone.err, HasSubstr("--tls-cert requires --tls-key"));
  auto client_ca_alone =
      RunKtune({"serve", "--tls-client-ca", dir.File("c.pem"), "--db", dir.File("s.db")});
  EXPECT_EQ(client_ca_alone.exit_code, 2) << client_ca_alone.err;
  EXPECT_THAT(client_ca_alone.err, HasSubstr("--tls-client-ca requires --tls-cert"));
  auto watch = RunKtune({"watch", "1", "--server", "127.0.0.1:1", "--reconnect", "0"});
  EXPECT_EQ(watch.exit_code, 1);  // nobody there, and no wait asked for
  EXPECT_THAT(watch.err, HasSubstr("ktune watch:"));
  // A server not listening yet (restarting as the watch starts) is waited for, as one that
  // went away is, up to 15 s (the watch failed at once, whatever --reconnect said).
  auto patient = RunKtune({"watch", "1", "--server", "127.0.0.1:1", "--reconnect", "1"});
  EXPECT_EQ(patient.exit_code, 1);
  EXPECT_THAT(patient.err, HasSubstr("cannot reach the server yet"));
  EXPECT_THAT(patient.err, HasSubstr("waiting up to 1 s for it"));
  EXPECT_THAT(patient.err, HasSubstr("it could not be reached within 1 s"));
  EXPECT_THAT(patient.err, Not(HasSubstr("run the command again once it is back (")));
  auto submit = RunKtune({"submit", dir.File("nope.yaml"), "--server", "127.0.0.1:1"});
  EXPECT_EQ(submit.exit_code, 1);
  EXPECT_THAT(submit.err, HasSubstr("cannot read"));
  // A directory is not read as an empty file.
  auto directory = RunKtune({"db", "import", dir.path(), "--db", dir.File("k.db")});
  EXPECT_EQ(directory.exit_code, 1);
  EXPECT_THAT(directory.err, HasSubstr("is a directory, not a file"));
  // An empty file imports nothing, and says so instead of "0 records added".
  std::ofstream(dir.File("empty.jsonl")).flush();
  auto empty = RunKtune({"db", "import", dir.File("empty.jsonl"), "--db", dir.File("k.db")});
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_THAT(empty.err, HasSubstr("empty.jsonl holds no records"));
  // A binary file is not sent as a job spec.
  {
    std::ofstream binary(dir.File("spec.bin"), std::ios::binary);
    binary << std::string("\xff\xfe\x00\x01kernels: [gemm]", 19);
  }
  auto not_text = RunKtune({"submit", dir.File("spec.bin"), "--server", "127.0.0.1:1"});
  EXPECT_EQ(not_text.exit_code, 1);
  EXPECT_THAT(not_text.err, HasSubstr("is not a YAML or JSON text file"));
  // `-` is the standard input (it was a file named "-"): the binary one is read from there.
  const std::string from_stdin = dir.File("stdin.err");
  std::system((testing::KtuneBinary() + " submit - --server 127.0.0.1:1 < '" + dir.File("spec.bin") +
               "' 2> '" + from_stdin + "'")
                  .c_str());
  EXPECT_THAT(testing::ReadWholeFile(from_stdin), HasSubstr("- is not a YAML or JSON text file"));
  // Every command that reads a file says what is wrong with it and exits 1 (a failure), not 2
  // (bad usage, which asks for --help); a table is not begun for a file that cannot be read.
  {
    std::ofstream garbage(dir.File("garbage.json"));
    garbage << "garbage {{{\n";
  }
  const std::string garbage = dir.File("garbage.json");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"tune", "--device", "replay:" + garbage, "--db", dir.File("k.db")},
        {"tune", "--device", "replay:" + dir.File("missing.json"), "--db", dir.File("k.db")},
        {"tune", "--kernel", "gemm", "--device", "cpu", "--problem", "M=8,N=8,K=8", "--inputs",
         dir.File("missing.bin"), "--db", dir.File("k.db")},
        {"kernels", "register", garbage, "--server", "127.0.0.1:1"},
        {"telemetry", "report", garbage, "--server", "127.0.0.1:1"},
        {"bench", "search", "--space", garbage, "--seeds", "1", "--budget", "2", "--strategies",
         "random"}}) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("--help"))) << args[0] << " " << args[1];
    EXPECT_THAT(r.out, Not(HasSubstr("strategy"))) << args[0] << " " << args[1];
  }
  auto telemetry_dir = RunKtune({"telemetry", "report", dir.path(), "--server", "127.0.0.1:1"});
  EXPECT_EQ(telemetry_dir.exit_code, 1);
  EXPECT_THAT(telemetry_dir.err, HasSubstr("is a directory, not a file"));  // not "no samples"
  // The client's TLS files are files too: missing or not PEM exits 1 from every client command;
  // a certificate without --tls-ca is the command line's mistake (2).
  {
    std::ofstream not_pem(dir.File("ca.pem"));
    not_pem << "not a certificate\n";
    // A private key given as the CA is PEM, but no certificate (gRPC said "empty address list").
    std::ofstream key(dir.File("key.pem"));
    key << "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
  }
  auto key_as_ca = RunKtune({"jobs", "--server", "127.0.0.1:1", "--tls-ca", dir.File("key.pem")});
  EXPECT_EQ(key_as_ca.exit_code, 1) << key_as_ca.err;
  EXPECT_THAT(key_as_ca.err, HasSubstr("key.pem holds no CERTIFICATE"));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"best", "--kernel", "gemm", "--device", "x"},
        {"jobs"},
        {"explain", "--kernel", "gemm", "--device", "x"},
        {"watch", "1"},
        {"drift"},
        {"tune", "--kernel", "gemm", "--device", "x", "--problem", "M=8,N=8,K=8"}}) {
    for (const std::string& ca : {dir.File("missing.pem"), dir.File("ca.pem")}) {
      std::vector<std::string> with_ca = args;
      with_ca.insert(with_ca.end(), {"--server", "127.0.0.1:1", "--tls-ca", ca});
      if (args[0] == "watch") with_ca.insert(with_ca.end(), {"--reconnect", "0"});
      auto r = RunKtune(with_ca);
      EXPECT_EQ(r.exit_code, 1) << args[0] << " " << ca << ": " << r.err;
      EXPECT_THAT(r.err, HasSubstr(ca)) << args[0];
    }
    std::vector<std::string> cert_only = args;
    cert_only.insert(cert_only.end(),
                     {"--server", "127.0.0.1:1", "--tls-cert", dir.File("ca.pem")});
    auto r = RunKtune(cert_only);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("--tls-cert requires --tls-ca")) << args[0];
  }
  // A worker with --idle-exit gives up on a server it cannot reach, and says why (it retried
  // forever, silently).
  auto worker = RunKtune({"worker", "--server", "127.0.0.1:1", "--device",
                          "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--idle-exit", "1"});
  EXPECT_EQ(worker.exit_code, 1);
  EXPECT_THAT(worker.err, HasSubstr("server_unreachable"));
  EXPECT_THAT(worker.err, HasSubstr("no server to lease from for 1s"));
  // A worker's metrics port that is taken fails at once, saying so (not after a day unscraped).
  const int taken = testing::FreePort();
  testing::KtuneProcess first({"worker", "--server", "127.0.0.1:1", "--device",
                               "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"),
                               "--metrics-listen", absl::StrCat("127.0.0.1:", taken)});
  ASSERT_TRUE(first.WaitForError("worker_started")) << first.Err();
  auto second = RunKtune({"worker", "--server", "127.0.0.1:1", "--device",
                          "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--metrics-listen",
                          absl::StrCat("127.0.0.1:", taken)});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr(absl::StrCat("cannot serve metrics on 127.0.0.1:", taken)));
  // Port 0 is a free one, and the log says which (it said 0, where nobody can scrape).
  testing::KtuneProcess any_port({"worker", "--server", "127.0.0.1:1", "--device",
                                  "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"),
                                  "--metrics-listen", "127.0.0.1:0"});
  ASSERT_TRUE(any_port.WaitForError("worker_started")) << any_port.Err();
  std::smatch bound;
  const std::string started = any_port.Err();
  ASSERT_TRUE(
      std::regex_search(started, bound, std::regex("metrics_listen=127\\.0\\.0\\.1:([0-9]+)")))
      << started;
  EXPECT_NE(bound[1].str(), "0");
}

// `ktune agent train` on one small space and two synthetic landscapes: it writes a policy that
// `ktune tune` then starts from (as the shipped one is built in), and refuses what it cannot use.
TEST(CliTest, AgentTrainWritesAPolicyAndRefusesBadInput) {
  if (!KTUNE_WITH_AGENT_BINARY) GTEST_SKIP() << "built without LibTorch: no policy to train";
  TempDir dir;
  const std::string policy = dir.File("policy.json");
  const std::string space = SpaceFile("convolution2442_MI50_kernel_tuner_cache.json.gz");
  auto r = RunKtune({"agent", "train", "--space", space, "--synthetic", "2", "--iterations", "2",
                     "--episodes", "2", "--budget", "40", "--out", policy, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["policy"], policy);
  EXPECT_EQ(summary["iterations"], 2);
  auto written = nlohmann::json::parse(testing::ReadWholeFile(policy));
  EXPECT_EQ(written["format"], "ktune-acquisition-policy/1");
  EXPECT_EQ(written["parameters"].size(), 8u);  // two hidden layers, the policy and value heads

  auto excluded = RunKtune({"agent", "train", "--space", space, "--synthetic", "0",
                            "--exclude-kernel", "convolution", "--out", policy});
  EXPECT_EQ(excluded.exit_code, 2);
  EXPECT_THAT(excluded.err, HasSubstr("nothing to train on"));
  // A kernel to leave out that no space has is a typo, not a request to leave out nothing.
  auto typo = RunKtune(
      {"agent", "train", "--space", space, "--exclude-kernel", "convolutoin", "--out", policy});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("--exclude-kernel convolutoin: no space of that kernel"));
  // An output that cannot be written is refused before the training, not after it.
  auto unwritable = RunKtune({"agent", "train", "--space", space, "--synthetic", "0", "--out",
                              dir.File("no/such/dir/p.json")});
  EXPECT_EQ(unwritable.exit_code, 1);
  EXPECT_THAT(unwritable.err, HasSubstr("cannot write " + dir.File("no/such/dir/p.json") + ": "));
  EXPECT_THAT(unwritable.err, Not(HasSubstr("iteration")));
  auto missing = RunKtune({"agent", "train", "--space", dir.File("nope.json.gz"), "--out", policy});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nope.json.gz"));
  EXPECT_EQ(RunKtune({"agent", "train", "--iterations", "0"}).exit_code, 2);
}

// Leave-one-kernel-out's options make no sense in a plain run, and a fold must name a kernel
// among the spaces: both are refused as usage (2), saying why, before any space is tuned; a
// file that cannot be read is a failure (1).
TEST(CliTest, BenchSearchRefusesFoldsOutsideLeaveOneKernelOut) {
  const std::string a = SpaceFile("convolution2442_MI50_kernel_tuner_cache.json.gz");
  const std::string b = SpaceFile("pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz");
  auto plain = RunKtune({"bench", "search", "--space", a, b, "--fold", "pnpoly"});
  EXPECT_EQ(plain.exit_code, 2);
  EXPECT_THAT(plain.err, HasSubstr("--fold: only --protocol leave-one-kernel-out"));
  auto train_only = RunKtune({"bench", "search", "--space", a, "--train-space", b});
  EXPECT_EQ(train_only.exit_code, 2);
  auto unknown = RunKtune({"bench", "search", "--protocol", "leave-one-kernel-out", "--space", a,
                           b, "--fold", "gemm", "--strategies", "random", "--seeds", "1"});
  EXPECT_EQ(unknown.exit_code, 2) << "a fold is a name on the command line";
  EXPECT_THAT(unknown.err, HasSubstr("no space of kernel 'gemm' to hold out"));
  EXPECT_THAT(unknown.out, Not(HasSubstr(".json.gz"))) << "no row";
  auto one_kernel = RunKtune({"bench", "search", "--protocol", "leave-one-kernel-out", "--space", a,
                              "--strategies", "random", "--seeds", "1"});
  EXPECT_EQ(one_kernel.exit_code, 2);
  EXPECT_THAT(one_kernel.err, HasSubstr("at least two kernels"));
  auto missing = RunKtune({"bench", "search", "--protocol", "leave-one-kernel-out", "--space", a,
                           "nope.json.gz", "--fold", "gemm"});
  EXPECT_EQ(missing.exit_code, 1) << "a missing file is a failure, whatever the fold";
  EXPECT_THAT(missing.err, HasSubstr("nope.json.gz"));
}

TEST(CliTest, StatsAndJobsSpeakJson) {
  TempDir dir;
  std::string db = dir.File("k.db");
  auto import =
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db, "--json"});
  ASSERT_EQ(import.exit_code, 0) << import.err;
  auto summary = nlohmann::json::parse(import.out);
  EXPECT_EQ(summary["records_added"], 4092);
  auto stats = RunKtune({"db", "stats", "--db", db, "--json"});
  ASSERT_EQ(stats.exit_code, 0);
  auto s = nlohmann::json::parse(stats.out);
  EXPECT_EQ(s["records"], 4092);
  EXPECT_EQ(s["records_by_status"]["runtime_error"], 330);
  auto jobs = RunKtune({"jobs", "--db", db, "--json"});
  ASSERT_EQ(jobs.exit_code, 0);
  EXPECT_TRUE(nlohmann::json::parse(jobs.out).is_array());
}

// `ktune space --recorded` says how hard the recorded space is, in JSON as in text.
TEST(CliTest, SpaceDescribesARecordedLandscape) {
  auto r = RunKtune({"space", "--recorded", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["size"], 4092);
  EXPECT_EQ(j["recorded"]["configurations"], 4092);
  EXPECT_EQ(j["recorded"]["failed"], 330);
  EXPECT_NEAR(j["recorded"]["random_draws_to_cutoff"].get<double>(), 179, 0.5);
  auto text = RunKtune({"space", "--recorded", SpaceFile("pnpoly_RTX_3090_T4.json.gz")});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("4092 recorded configurations of 4092 combinations"));
  EXPECT_THAT(text.out, HasSubstr("recorded: 4092 configurations, 330 of them failed"));
}

// A record removed behind ktune's back: `db check` finds the columns out of step and exits 1;
// --repair rebuilds them and explain answers from the records that are left.
TEST(CliTest, DbCheckFindsColumnsOutOfStepAndRepairsThem) {
  TempDir dir;
  std::string db = dir.File("k.db");
  ASSERT_EQ(RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db}).exit_code,
            0);
  auto sound = RunKtune({"db", "check", "--db", db, "--json"});
  ASSERT_EQ(sound.exit_code, 0) << sound.err;
  EXPECT_EQ(nlohmann::json::parse(sound.out)["ok"], true);
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "DELETE FROM records WHERE id = (SELECT MAX(id) FROM records)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  auto broken = RunKtune({"db", "check", "--db", db});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_THAT(broken.err, HasSubstr("4092 in its columns"));
  EXPECT_THAT(broken.err, HasSubstr("--repair"));
  auto repaired = RunKtune({"db", "check", "--db", db, "--repair", "--json"});
  ASSERT_EQ(repaired.exit_code, 0) << repaired.err;
  EXPECT_EQ(nlohmann::json::parse(repaired.out)["repaired"], true);
  auto explain =
      RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090", "--json"});
  ASSERT_EQ(explain.exit_code, 0) << explain.err;
  EXPECT_EQ(nlohmann::json::parse(explain.out)["records"], 4091);
}

// --json output naming a file whose name is not UTF-8 (a byte a Latin-1 shell wrote): written with
// U+FFFD. `db stats --json` aborted (exit 134, nlohmann's invalid UTF-8 exception).
TEST(CliTest, JsonOutputTakesFileNamesThatAreNotUtf8) {
  testing::TempDir dir;
  const std::string db = dir.File("\xff.db");
  ASSERT_EQ(
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db}).exit_code, 0);
  auto stats = RunKtune({"db", "stats", "--db", db, "--json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const auto json = nlohmann::json::parse(stats.out);
  EXPECT_EQ(json["records"], 4092);
  EXPECT_NE(stats.out.find("\xef\xbf\xbd.db"), std::string::npos) << stats.out;  // U+FFFD
}

TEST(CliTest, ExportWritesJsonlAndT4Files) {
  TempDir dir;
  std::string db = dir.File("k.db");
  ASSERT_EQ(
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db}).exit_code, 0);
  ASSERT_EQ(RunKtune({"db", "export", "--db", db, "--out", dir.File("all.jsonl.gz")}).exit_code, 0);
  ASSERT_EQ(RunKtune({"db", "export", "--db", db, "--format", "t4", "--out",
                      dir.File("pnpoly_copy_T4.json")})
                .exit_code,
            0);
  // JSONL keeps only the records that match --kernel/--device/--problem (they were ignored).
  // A filter that matches nothing writes nothing, and fails (exit 1, as a lookup that finds
  // nothing).
  auto other = RunKtune({"db", "export", "--db", db, "--kernel", "gemm"});
  EXPECT_EQ(other.exit_code, 1) << other.err;
  EXPECT_EQ(other.out, "");
  auto same = RunKtune({"db", "export", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090"});
  ASSERT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(std::count(same.out.begin(), same.out.end(), '\n'), 4092);
  // Records of another kernel under a registry kernel's name, with a problem the kernel takes,
  // are refused (pnpoly's configurations are not gemm's); with a problem it does not take, they
  // are another kernel's and keep the file's problem: --problem as given finds them.
  const std::string named = dir.File("named.db");
  auto refused = RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", named,
                           "--kernel", "gemm", "--problem", "M=64,N=64,K=64"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("is not in the kernel's space"));
  ASSERT_EQ(RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", named,
                      "--kernel", "gemm", "--problem", "points=20000000"})
                .exit_code,
            0);
  auto as_given =
      RunKtune({"db", "export", "--db", named, "--kernel", "gemm", "--problem", "points=20000000"});
  ASSERT_EQ(as_given.exit_code, 0) << as_given.err;
  EXPECT_EQ(std::count(as_given.out.begin(), as_given.out.end(), '\n'), 4092);
  std::string db2 = dir.File("k2.db");
  // A JSONL file's records name their own task: --kernel was ignored without a word.
  auto jsonl_kernel =
      RunKtune({"db", "import", dir.File("all.jsonl.gz"), "--db", db2, "--kernel", "x"});
  EXPECT_EQ(jsonl_kernel.exit_code, 1);
  EXPECT_THAT(jsonl_kernel.err, HasSubstr("--problem are for T4 and Kernel Tuner files"));
  auto back = RunKtune({"db", "import", dir.File("all.jsonl.gz"), "--db", db2, "--json"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(nlohmann::json::parse(back.out)["records_added"], 4092);
  auto t4 = RunKtune({"db", "import", dir.File("pnpoly_copy_T4.json"), "--db", db2, "--json"});
  ASSERT_EQ(t4.exit_code, 0) << t4.err;
  EXPECT_EQ(nlohmann::json::parse(t4.out)["format"], "t4");
  // A T4 export under any name imports back by itself: the kernel and device are in its metadata
  // (it asked for --kernel and --device unless the file was named KERNEL_DEVICE_T4.json).
  ASSERT_EQ(
      RunKtune({"db", "export", "--db", db, "--format", "t4", "--out", dir.File("backup.json")})
          .exit_code,
      0);
  auto renamed =
      RunKtune({"db", "import", dir.File("backup.json"), "--db", dir.File("k3.db"), "--json"});
  ASSERT_EQ(renamed.exit_code, 0) << renamed.err;
  EXPECT_EQ(nlohmann::json::parse(renamed.out)["records_added"], 4092);
  auto best_back = RunKtune(
      {"best", "--db", dir.File("k3.db"), "--kernel", "pnpoly", "--device", "RTX_3090", "--json"});
  auto best_first =
      RunKtune({"best", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090", "--json"});
  ASSERT_EQ(best_back.exit_code, 0) << best_back.err;
  EXPECT_EQ(nlohmann::json::parse(best_back.out)["best"][0]["config"],
            nlohmann::json::parse(best_first.out)["best"][0]["config"]);

  // An export into a pipe (a shell's `--out /dev/stdout | ...`, here a named pipe) streams into
  // it: the check that --out is not a database read the pipe and waited forever.
  const std::string pipe = dir.File("pipe");
  ASSERT_EQ(::mkfifo(pipe.c_str(), 0600), 0);
  std::string piped;
  std::thread reader([&] {
    std::ifstream in(pipe);
    std::stringstream text;
    text << in.rdbuf();
    piped = text.str();
  });
  auto into_pipe = RunKtune({"db", "export", "--db", db, "--out", pipe});
  reader.join();
  EXPECT_EQ(into_pipe.exit_code, 0) << into_pipe.err;
  EXPECT_EQ(std::count(piped.begin(), piped.end(), '\n'), 4092);
  EXPECT_TRUE(std::filesystem::is_fifo(pipe));

  // An export never overwrites a database: `--out` naming `--db` used to replace the database
  // with its own JSONL.
  for (const char* format : {"jsonl", "t4"}) {
    auto onto_itself = RunKtune({"db", "export", "--db", db, "--format", format, "--out", db});
    EXPECT_EQ(onto_itself.exit_code, 2) << onto_itself.err;
    EXPECT_THAT(onto_itself.err, HasSubstr("is a SQLite database"));
  }
  auto still = RunKtune({"db", "stats", "--db", db, "--json"});
  ASSERT_EQ(still.exit_code, 0) << still.err;
  EXPECT_EQ(nlohmann::json::parse(still.out)["records"], 4092);

  // A backup through a shell redirect onto a full disk fails loudly (it used to exit 0 with the
  // file cut short); /dev/full refuses every write with ENOSPC.
  if (std::filesystem::exists("/dev/full")) {
    for (const char* format : {"jsonl", "t4"}) {
      auto full = testing::RunProgram(
          "/bin/sh", {"-c", absl::StrCat("'", testing::KtuneBinary(), "' db export --db '", db,
                                         "' --format ", format, " > /dev/full")});
      EXPECT_EQ(full.exit_code, 1) << format << ": " << full.err;
      EXPECT_THAT(full.err, HasSubstr("could not write the output")) << format;
    }
  }
}

// Commands that only read refuse a database that does not exist (a mistyped --db used to create
// an empty one and answer "nothing known"), and create nothing.
TEST(CliTest, ReadingCommandsRefuseAMissingDatabase) {
  TempDir dir;
  const std::string missing = dir.File("typo.db");
  const std::vector<std::vector<std::string>> commands = {
      {"best", "--db", missing, "--kernel", "pnpoly", "--device", "RTX_3090"},
      {"explain", "--db", missing, "--kernel", "pnpoly", "--device", "RTX_3090"},
      {"db", "stats", "--db", missing},
      {"db", "export", "--db", missing},
      {"db", "check", "--db", missing},
      {"jobs", "--db", missing}};
  for (const auto& args : commands) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("no tuning database at " + missing)) << args[0];
  }
  EXPECT_FALSE(std::filesystem::exists(missing));
  // An empty file is no database either, and stays empty (SQLite wrote the schema into it).
  std::ofstream(missing).close();
  for (const auto& args : commands) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("an empty file")) << args[0];
    EXPECT_EQ(std::filesystem::file_size(missing), 0u) << args[0];
  }
  // A problem value must be stored as JSON: inf and nan cannot be, so they are refused.
  auto inf = RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db",
                       dir.File("k.db"), "--problem", "M=inf"});
  EXPECT_EQ(inf.exit_code, 2) << inf.err;
  EXPECT_THAT(inf.err, HasSubstr("finite"));
}

// A file of an older ktune: commands that only read refuse it and leave it as it was (they
// upgraded it, one way, without a word, and the older server then refused the file); `db
// migrate` upgrades it on purpose.
TEST(CliTest, ReadingCommandsLeaveAnOlderDatabaseAsItIsAndDbMigrateUpgradesIt) {
  TempDir dir;
  const std::string path = dir.File("old.db");
  {
    SqliteTuningDatabase::Options old;
    old.target_version = CurrentSqliteSchemaVersion() - 1;
    ASSERT_TRUE(SqliteTuningDatabase::Open(path, old).ok());
  }
  const auto version = [&] {
    return testing::ReadOnlyQuery(path, "SELECT value FROM meta WHERE key = 'version'");
  };
  const std::string older = std::to_string(CurrentSqliteSchemaVersion() - 1);
  ASSERT_EQ(version(), older);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"best", "--db", path, "--kernel", "pnpoly", "--device", "RTX_3090"},
           {"explain", "--db", path, "--kernel", "pnpoly", "--device", "RTX_3090"},
           {"db", "stats", "--db", path},
           {"db", "export", "--db", path},
           {"jobs", "--db", path}}) {
    auto r = RunKtune(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("ktune db migrate --db " + path)) << args[0];
    EXPECT_EQ(version(), older) << args[0];
  }
  auto migrated = RunKtune({"db", "migrate", "--db", path});
  EXPECT_EQ(migrated.exit_code, 0) << migrated.err;
  EXPECT_THAT(migrated.out, HasSubstr("upgraded to schema version " +
                                      std::to_string(CurrentSqliteSchemaVersion())));
  EXPECT_EQ(version(), std::to_string(CurrentSqliteSchemaVersion()));
  auto again = RunKtune({"db", "migrate", "--db", path, "--json"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("\"migrated\":false"));
  EXPECT_EQ(RunKtune({"db", "stats", "--db", path}).exit_code, 0);
}

// `ktune explain` on a recorded space: the same answer from the database and from a server, as
// text and JSON, with an SVG plot; bad input is a usage error, an unknown task an answer.
TEST(CliTest, ExplainAnswersFromTheDatabaseAndAServerWithJsonAndAPlot) {
  TempDir dir;
  const std::string db = dir.File("e.db");
  ASSERT_EQ(
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db}).exit_code, 0);
  auto text = RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090",
                        "--plot", dir.File("e.svg")});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("(match: device class)"));
  EXPECT_THAT(text.out, HasSubstr("what matters"));
  EXPECT_THAT(text.out, HasSubstr("plot: " + dir.File("e.svg")));
  const std::string svg = testing::ReadWholeFile(dir.File("e.svg"));
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find(">pnpoly on RTX_3090<"), std::string::npos);  // the title, as written
  EXPECT_NE(svg.find("Tuning progress"), std::string::npos);
  EXPECT_NE(svg.find(">tile_size<"), std::string::npos);  // the largest effect
  // A plot that cannot be written says so in one line (gnuplot wrote the whole SVG to stderr).
  auto unwritable = RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090",
                              "--plot", dir.File("no/such/dir/e.svg")});
  EXPECT_EQ(unwritable.exit_code, 1);
  EXPECT_THAT(unwritable.err, HasSubstr("cannot write " + dir.File("no/such/dir/e.svg")));
  EXPECT_LT(unwritable.err.size(), 300u) << unwritable.err;
  auto unwritable_json = RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device",
                                   "RTX_3090", "--json", "--plot", dir.File("no/such/dir/e.svg")});
  EXPECT_EQ(unwritable_json.exit_code, 1);
  EXPECT_EQ(unwritable_json.out, "");  // no answer printed by a command that failed
  // The plot is SVG: another format's name is a usage error (x.png got SVG without a word).
  auto png = RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090",
                       "--plot", dir.File("e.png")});
  EXPECT_EQ(png.exit_code, 2);
  EXPECT_THAT(png.err, HasSubstr("the plot is SVG: name the file .svg"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("e.png")));
  // A kernel name found nowhere (a typo, most often) is still an answer, and says so.
  for (const char* command : {"best", "explain"}) {
    auto typo = RunKtune({command, "--db", db, "--kernel", "pnpolly", "--device", "RTX_3090"});
    EXPECT_EQ(typo.exit_code, 0) << typo.err;
    EXPECT_THAT(typo.out, HasSubstr("no kernel named 'pnpolly' in the registry or in " + db +
                                    " (it holds pnpoly;"))
        << command;
  }
  auto known = RunKtune({"best", "--db", db, "--kernel", "pnpoly", "--device", "nowhere"});
  EXPECT_THAT(known.out, Not(HasSubstr("no kernel named")));

  auto local = RunKtune(
      {"explain", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090", "--json"});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  const auto json = nlohmann::json::parse(local.out);
  // The CLI's one JSON style (best's, export's): enums as best names them, numbers as numbers,
  // the served record as best --json prints it. It printed protobuf's mapping:
  // "MATCH_LEVEL_DEVICE_CLASS", "4092", {"params":{"tile_size":{"int_value":"20"}}}.
  EXPECT_EQ(json["level"], "device_class");
  EXPECT_EQ(json["records"], 4092);
  EXPECT_EQ(json["parameters"][0]["name"], "tile_size");
  EXPECT_EQ(json["parameters"][0]["served_value"], 20);
  EXPECT_EQ(json["predicted_from"], nullptr);
  auto best =
      RunKtune({"best", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090", "--json"});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  EXPECT_EQ(json["served"], nlohmann::json::parse(best.out)["best"][0]);

  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server({"serve", "--listen", address, "--db", db});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  // A second server on the port in use fails; it used to share the port (SO_REUSEPORT) and take
  // every other client's calls into its own database.
  auto second = RunKtune({"serve", "--listen", address, "--db", dir.File("second.db")});
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_THAT(second.err, HasSubstr("cannot listen on " + address + ": port " +
                                    address.substr(address.rfind(':') + 1) + " is in use"));
  // Said in words, not by gRPC's error tree first.
  EXPECT_THAT(second.err, Not(HasSubstr("chttp2_server")));
  // With --log-format json every line of stderr is a JSON object, the failure too.
  auto second_json = RunKtune(
      {"serve", "--listen", address, "--db", dir.File("second.db"), "--log-format", "json"});
  EXPECT_EQ(second_json.exit_code, 1);
  std::istringstream lines(second_json.err);
  bool failure_logged = false;
  for (std::string line; std::getline(lines, line);) {
    const auto event = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(event.is_object()) << line;
    failure_logged |= event.value("event", "") == "command_failed" &&
                      event.value("exit_code", "") == "1" &&
                      event.value("reason", "").find("is in use") != std::string::npos;
  }
  EXPECT_TRUE(failure_logged) << second_json.err;
  // An option it cannot parse too (it was a text line).
  auto bad_option = RunKtune({"serve", "--log-format", "json", "--lease-timeout-ms", "5"});
  EXPECT_EQ(bad_option.exit_code, 2);
  const auto parse_failure = nlohmann::json::parse(bad_option.err, nullptr, false);
  ASSERT_TRUE(parse_failure.is_object()) << bad_option.err;
  EXPECT_EQ(parse_failure.value("event", ""), "command_failed");
  EXPECT_THAT(parse_failure.value("reason", ""), HasSubstr("--lease-timeout-ms"));
  auto remote = RunKtune(
      {"explain", "--server", address, "--kernel", "pnpoly", "--device", "RTX_3090", "--json"});
  ASSERT_EQ(remote.exit_code, 0) << remote.err;
  EXPECT_EQ(nlohmann::json::parse(remote.out), json);

  auto unknown = RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device", "MI250X"});
  EXPECT_EQ(unknown.exit_code, 0) << unknown.err;
  EXPECT_THAT(unknown.out, ::testing::HasSubstr("nothing known"));
  auto bad = RunKtune({"explain", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090",
                       "--problem", "N"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, ::testing::HasSubstr("--problem"));
  auto refused = RunKtune({"explain", "--server", address, "--kernel", "", "--device", "x"});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, ::testing::HasSubstr("kernel.name is required"));
}

// `ktune telemetry report` and `ktune drift` against a server: a hot problem never tuned is
// flagged with the suggested retune; a bad line refuses the file and sends nothing.
TEST(CliTest, TelemetryReportRaisesDriftFlagsThatDriftLists) {
  TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server(
      {"serve", "--listen", address, "--db", dir.File("t.db"), "--hot-calls", "5000"});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  {
    std::ofstream bad(dir.File("bad.jsonl"));
    bad << R"({"kernel":"gemm","problem":{"M":64,"N":64,"K":64},"device":"cpu:x","config":{"MR":4},"count":10,"mean_ms":1.0})"
        << "\n"
        << R"({"kernel":"gemm","device":"cpu:x","config":{"MR":4}})" << "\n";
  }
  // A kernel spec the server refuses names the file, as a refused telemetry line does.
  {
    std::ofstream spec(dir.File("kernel.json"));
    spec << R"({"name":"k","source":"int k;"})";
  }
  auto kernel = RunKtune({"kernels", "register", dir.File("kernel.json"), "--server", address});
  EXPECT_EQ(kernel.exit_code, 1);
  EXPECT_THAT(kernel.err, HasSubstr(dir.File("kernel.json") + ": "));
  // A spec without a source is refused before it reaches the server: the kernel would fail every
  // measurement, and a registered name is never free again.
  {
    std::ofstream spec(dir.File("nosource.json"));
    spec << R"({"name":"scale2","language":"cpp","problem":[{"name":"n"}]})";
  }
  auto nosource = RunKtune({"kernels", "register", dir.File("nosource.json"), "--server", address});
  EXPECT_EQ(nosource.exit_code, 2);
  EXPECT_THAT(nosource.err, HasSubstr("has no \"source\": give --source FILE"));
  // The largest job a spec may give (65,536 tasks): listing its tasks takes 5.9 MB, past gRPC's
  // default 4 MiB a client receives (the submit was stored but the command failed, and a client
  // that retried made it twice). The reply counts them and lists none.
  {
    nlohmann::json spec{{"name", "largest"}, {"kernels", {"gemm"}}, {"budget", 4}};
    for (int i = 1; i <= 1024; ++i)
      spec["problems"].push_back({{"M", 16 * i}, {"N", 64}, {"K", 64}});
    for (int i = 0; i < 64; ++i) spec["device_classes"].push_back(absl::StrCat("cpu:c", i));
    std::ofstream(dir.File("largest.json")) << spec.dump();
    auto largest = RunKtune({"submit", dir.File("largest.json"), "--server", address, "--json"});
    ASSERT_EQ(largest.exit_code, 0) << largest.err;
    EXPECT_EQ(nlohmann::json::parse(largest.out)["task_count"], 65536);
    EXPECT_FALSE(nlohmann::json::parse(largest.out).contains("tasks"));
    // No worker serves those classes: submit says the tasks wait (they waited without a word).
    EXPECT_THAT(largest.err, HasSubstr("no worker of device class cpu:c0, cpu:c1, "));
    EXPECT_THAT(largest.err, HasSubstr("those tasks wait until one joins"));
    const std::string largest_id = nlohmann::json::parse(largest.out)["job_id"];
    // A watch's own --timeout is said to be its own (it blamed the server for not answering).
    auto timed_out = RunKtune({"watch", largest_id, "--server", address, "--timeout", "1"});
    EXPECT_EQ(timed_out.exit_code, 1);
    EXPECT_THAT(timed_out.err, HasSubstr("--timeout 1 s ran out before job " + largest_id +
                                         " ended; the job goes on"));
    // pause and resume, as cancel (only the API and Python had them).
    auto paused = RunKtune({"pause", largest_id, "--server", address, "--json"});
    EXPECT_EQ(paused.exit_code, 0) << paused.err;
    EXPECT_EQ(nlohmann::json::parse(paused.out)["state"], "paused");
    auto resumed = RunKtune({"resume", largest_id, "--server", address});
    EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
    EXPECT_THAT(resumed.out, HasSubstr("job " + largest_id + " "));
    EXPECT_THAT(resumed.out, Not(HasSubstr("paused")));
    auto cancelled = RunKtune({"cancel", largest_id, "--server", address});
    EXPECT_EQ(cancelled.exit_code, 0) << cancelled.err;
    auto too_late = RunKtune({"resume", largest_id, "--server", address});
    EXPECT_EQ(too_late.exit_code, 1);  // a cancelled job cannot be resumed: said, not usage
    EXPECT_THAT(too_late.err, HasSubstr("cancelled"));
    // watch ends with the job and every task, read from GetJob's pages of 4,096.
    auto watched = RunKtune({"watch", largest_id, "--server", address, "--json"});
    EXPECT_EQ(watched.exit_code, 1) << watched.err;  // cancelled, not done
    EXPECT_THAT(watched.err, HasSubstr("job " + largest_id + " ended cancelled"));  // said
    const std::string last =
        watched.out.substr(watched.out.rfind('\n', watched.out.size() - 2) + 1);
    EXPECT_EQ(nlohmann::json::parse(last)["tasks"].size(), 65536u);
  }
  // A job no connected worker can measure says why it waits (it sat at 0/4 without a word).
  {
    testing::KtuneProcess waiting({"tune", "--server", address, "--kernel", "gemm", "--problem",
                                   "M=64,N=64,K=64", "--device", "cpu:x", "--budget", "4"});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (waiting.Err().find("no worker of device class cpu:x") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_THAT(waiting.Err(), HasSubstr("no worker of device class cpu:x is connected"));
    EXPECT_THAT(waiting.Err(), HasSubstr("waits until one joins"));
  }
  // The kernels a server knows (`kernels register` added some a build's registry lacks, and
  // nothing listed them): one line each, or their KernelInfo as JSON; an unknown name is usage.
  auto served = RunKtune({"kernels", "--server", address, "--json"});
  ASSERT_EQ(served.exit_code, 0) << served.err;
  bool has_gemm = false;
  for (const auto& k : nlohmann::json::parse(served.out)) {
    if (k["name"] != "gemm") continue;
    has_gemm = true;
    // Name and version at the top level (they were under "kernel"), values as numbers.
    EXPECT_EQ(k["parameters"][0]["name"], "MR") << served.out;
    EXPECT_EQ(k["parameters"][0]["values"][0], 1) << served.out;
    EXPECT_EQ(k["language"], "cpp") << served.out;
  }
  EXPECT_TRUE(has_gemm) << served.out;
  auto one = RunKtune({"kernels", "gemm", "--server", address});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("gemm  (version "));
  EXPECT_EQ(RunKtune({"kernels", "fft", "--server", address}).exit_code, 2);
  EXPECT_EQ(RunKtune({"kernels", "gemm", "--server", address, "--problem", "M=8"}).exit_code, 2);
  // With a problem, a server's kernel is described as the local registry describes it: its
  // space for that problem and its default (--problem was refused with --server, and the JSON
  // said space_size 0 with the default's threads missing).
  auto sized = RunKtune(
      {"kernels", "gemm", "--server", address, "--problem", "M=64,N=64,K=64", "--json"});
  ASSERT_EQ(sized.exit_code, 0) << sized.err;
  auto local = RunKtune({"kernels", "gemm", "--problem", "M=64,N=64,K=64", "--json"});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  EXPECT_GT(nlohmann::json::parse(sized.out)[0]["space_size"], 1000) << sized.out;
  EXPECT_EQ(nlohmann::json::parse(sized.out), nlohmann::json::parse(local.out));
  // Nothing flagged yet: the JSON still has its list, empty.
  auto none = RunKtune({"drift", "--server", address, "--json"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_EQ(nlohmann::json::parse(none.out)["flags"], nlohmann::json::array());
  auto refused = RunKtune({"telemetry", "report", dir.File("bad.jsonl"), "--server", address});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("bad.jsonl:2: times_ms, count and mean_ms, or histogram is required"));
  {
    std::ofstream two(dir.File("two.jsonl"));  // times_ms and count + mean_ms: one was dropped
    two << R"({"kernel":"gemm","problem":{"M":64,"N":64,"K":64},"device":"cpu:x","config":{"MR":4},"count":10,"mean_ms":1.0,"times_ms":[1.0]})"
        << "\n";
  }
  auto two_forms = RunKtune({"telemetry", "report", dir.File("two.jsonl"), "--server", address});
  EXPECT_EQ(two_forms.exit_code, 1);
  EXPECT_THAT(two_forms.err, HasSubstr("two.jsonl:1: give one of times_ms, count and mean_ms"));
  // Each line's fault is named: a misspelt key was ignored (its value stored as the default),
  // NaN read "not a JSON object", 2.5 calls "count and mean_ms ... is required", and 1e19 calls
  // "count is -8446744073709551616".
  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {R"("count":1,"mean_ms":0.5,"stdev_ms":0.1)", "unknown key 'stdev_ms'"},
           {R"("count":1,"mean_ms":NaN)", "not valid JSON: "},
           {R"("times_ms":[1e400])", "not valid JSON: "},  // past a double: it aborted (134)
           {R"("count":2.5,"mean_ms":0.5)", "count must be a whole number of calls, not 2.5"},
           // Whole but too many: said so (it read "not a whole number").
           {R"("count":10000000000000000000,"mean_ms":0.5)",
            "count is 10000000000000000000; it must be between 1 and 1e12"},
           {R"("count":1e30,"mean_ms":0.5)", "count is 1e+30; it must be between 1 and 1e12"},
           {R"("times_ms":[])", "times_ms is empty"}}) {
    std::ofstream(dir.File("one.jsonl"))
        << R"({"kernel":"gemm","device":"cpu:x","config":{"MR":4},)" << text << "}\n";
    auto refused_line =
        RunKtune({"telemetry", "report", dir.File("one.jsonl"), "--server", address});
    EXPECT_EQ(refused_line.exit_code, 1) << text;
    EXPECT_THAT(refused_line.err, HasSubstr("one.jsonl:1: " + says)) << text;
  }
  {
    std::ofstream good(dir.File("good.jsonl"));
    for (int i = 0; i < 6; ++i) {
      good << R"({"kernel":"gemm","problem":{"M":64,"N":64,"K":64},"device":"cpu:x","config":{"MR":4},"count":1000,"mean_ms":0.5,"stddev_ms":0.01})"
           << "\n";
    }
  }
  // Gzip, as every file ktune reads may be.
  ASSERT_EQ(std::system(("gzip -k '" + dir.File("good.jsonl") + "'").c_str()), 0);
  auto sent =
      RunKtune({"telemetry", "report", dir.File("good.jsonl.gz"), "--server", address, "--json"});
  ASSERT_EQ(sent.exit_code, 0) << sent.err;
  const auto report = nlohmann::json::parse(sent.out);
  EXPECT_EQ(report["accepted"], 6);
  ASSERT_EQ(report["raised"].size(), 1u);
  EXPECT_EQ(report["raised"][0]["kind"], "untuned_hot_problem");
  EXPECT_EQ(report["raised"][0]["task"]["problem"],
            nlohmann::json({{"K", 64}, {"M", 64}, {"N", 64}, {"dtype", "f32"}}));
  EXPECT_EQ(report["raised"][0]["calls"], 5000);
  EXPECT_TRUE(report["raised"][0]["raised_at"].is_string()) << sent.out;
  // The action is a command the operator can run as printed (it said "ktune submit a job for
  // ...", then "--server ADDR"): the address the command reached the server at is in it. It is
  // the command that retunes as --retune act does (a plain `ktune tune` was suggested, which
  // measured none of the stored configurations again).
  const std::string suggested = "suggested: ktune drift retune 1 --server " + address +
                                " (a retuning job of 100 measurements)";
  EXPECT_THAT(report["raised"][0]["action"].get<std::string>(), HasSubstr(suggested));

  EXPECT_THAT(server.Err(), HasSubstr("drift_flag_raised flag_id=1 kind=untuned_hot_problem "
                                      "kernel=gemm device_class=cpu:x"));
  auto listed = RunKtune({"drift", "--server", address});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("#1 untuned_hot_problem  gemm"));
  EXPECT_THAT(listed.out, HasSubstr(" on cpu:x  (raised 20"));  // when (only --json said)
  EXPECT_THAT(listed.out, HasSubstr("called 5000 times but never tuned on cpu:x"));
  EXPECT_THAT(listed.out, HasSubstr(suggested));
  auto json = RunKtune({"drift", "--server", address, "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["flags"].size(), 1u);
  EXPECT_THAT(nlohmann::json::parse(json.out)["flags"][0]["action"].get<std::string>(),
              HasSubstr(suggested));
  // The go-ahead: refused while no worker of cpu:x could measure the job (it would wait), and an
  // unknown flag is the command line's mistake.
  auto go = RunKtune({"drift", "retune", "1", "--server", address});
  EXPECT_EQ(go.exit_code, 1) << go.out;
  EXPECT_THAT(go.err, HasSubstr("flag 1: not retuned: no worker of device class cpu:x is "
                                "connected; start one, then ktune drift retune 1"));
  // `drift`'s options before `retune` are refused (taken by `drift`, they were dropped and the
  // go-ahead went to the default server).
  auto misplaced = RunKtune({"drift", "--server", address, "retune", "1"});
  EXPECT_EQ(misplaced.exit_code, 2) << misplaced.err;
  EXPECT_THAT(misplaced.err, HasSubstr("options go after `retune`"));
  auto no_such = RunKtune({"drift", "retune", "7", "--server", address});
  EXPECT_EQ(no_such.exit_code, 2) << no_such.err;
  EXPECT_THAT(no_such.err, HasSubstr("no drift flag 7 (1 raised; ktune drift lists them)"));

  // A sample only the server can refuse (a problem out of range) on line 1201 of 1300: the
  // first call's 1000 samples are stored, the message names the file's line and how to resume,
  // and --skip 1000 on the mended file sends the remaining 300 once.
  auto write = [&](const std::string& name, int bad_line) {
    std::ofstream out(dir.File(name));
    for (int line = 1; line <= 1300; ++line) {
      out << R"({"kernel":"gemm","problem":{"M":)" << (line == bad_line ? -1 : 32)
          << R"(,"N":32,"K":32},"device":"cpu:x","config":{"MR":4},"count":1,"mean_ms":0.5})"
          << "\n";
    }
  };
  write("partial.jsonl", 1201);
  auto partial = RunKtune({"telemetry", "report", dir.File("partial.jsonl"), "--server", address});
  EXPECT_EQ(partial.exit_code, 1) << partial.err;
  EXPECT_THAT(partial.err, HasSubstr("partial.jsonl:1201: "));
  EXPECT_THAT(partial.err, HasSubstr("the first 1000 samples were stored (through line 1000)"));
  EXPECT_THAT(partial.err, HasSubstr("--skip 1000"));
  // --json says the same on stdout, for a script (it printed nothing).
  auto partial_json =
      RunKtune({"telemetry", "report", dir.File("partial.jsonl"), "--server", address, "--json"});
  EXPECT_EQ(partial_json.exit_code, 1) << partial_json.err;
  const auto partial_out = nlohmann::json::parse(partial_json.out);
  EXPECT_EQ(partial_out["accepted"], 1000);
  EXPECT_EQ(partial_out["resume_skip"], 1000);
  EXPECT_THAT(partial_out["error"].get<std::string>(), HasSubstr("partial.jsonl:1201: "));
  write("mended.jsonl", 0);
  auto resumed = RunKtune({"telemetry", "report", dir.File("mended.jsonl"), "--server", address,
                           "--skip", "1000", "--json"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(nlohmann::json::parse(resumed.out)["accepted"], 300);
}

// A Kernel Tuner cache file out of ktune: Kernel Tuner's own format, which imports back to the
// same records and the same best configuration.
// Records with measured errors (as a precision-tuned kernel leaves them), imported as JSONL:
// A tune whose every measurement misses its accuracy budget still answers --json (stdout was
// empty, and a script had nothing to parse): what was done, best null, exit 1.
TEST(CliTest, ATuneWithNothingWithinItsBudgetStillAnswersJson) {
  TempDir dir;
  auto tune = RunKtune({"tune", "--kernel", "gemm", "--problem", "M=16,N=16,K=16", "--device",
                        "cpu", "--budget", "2", "--strategy", "random", "--max-rel-error", "1e-12",
                        "--json", "--db", dir.File("t.db")});
  EXPECT_EQ(tune.exit_code, 1) << tune.err;
  EXPECT_THAT(tune.err, HasSubstr("no configuration measured ok within --max-rel-error 1e-12"));
  const nlohmann::json out = nlohmann::json::parse(tune.out, nullptr, false);
  ASSERT_TRUE(out.is_object()) << tune.out;
  EXPECT_TRUE(out["best"].is_null());
  EXPECT_EQ(out["measurements"], 2);
  EXPECT_EQ(out["records_stored"], 2);
  EXPECT_EQ(out["failures"]["too_inaccurate"], 2);
  EXPECT_FALSE(out["job_id"].get<std::string>().empty());
  // jobs --json from the file has the keys it has from a server (what only a server knows, null).
  auto jobs = RunKtune({"jobs", "--db", dir.File("t.db"), "--json"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  const nlohmann::json listed = nlohmann::json::parse(jobs.out, nullptr, false);
  ASSERT_TRUE(listed.is_array() && listed.size() == 1) << jobs.out;
  EXPECT_TRUE(listed[0].contains("waiting") && listed[0]["waiting"].is_null()) << jobs.out;
  EXPECT_TRUE(listed[0]["estimated_seconds_left"].is_null()) << jobs.out;
}

// A watch follows its job through a server restart (an upgrade): it exited 1 when the server
// stopped, as for a failed job, and a script could not tell the two apart.
TEST(CliTest, AWatchFollowsItsJobThroughAServerRestart) {
  testing::TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  auto server = std::make_unique<testing::KtuneProcess>(
      std::vector<std::string>{"serve", "--listen", address, "--db", dir.File("s.db")});
  ASSERT_TRUE(server->WaitForOutput("listening on port")) << server->Err();
  // A job no worker measures: it stays queued through the restart.
  std::ofstream(dir.File("job.yaml")) << "kernels: [gemm]\nproblems: [{M: 8, N: 8, K: 8}]\n"
                                         "device_classes: [cpu:nobody]\nbudget: 2\n";
  auto submitted = RunKtune({"submit", dir.File("job.yaml"), "--server", address, "--json"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  const std::string id = nlohmann::json::parse(submitted.out)["job_id"];
  testing::KtuneProcess watch({"watch", id, "--server", address});
  ASSERT_TRUE(watch.WaitForOutput("job " + id + " queued")) << watch.Err();
  server->Signal(SIGTERM);
  server->Wait();
  server.reset();
  ASSERT_TRUE(watch.WaitForError("the server went away")) << watch.Err();
  testing::KtuneProcess again({"serve", "--listen", address, "--db", dir.File("s.db")});
  ASSERT_TRUE(again.WaitForOutput("listening on port")) << again.Err();
  ASSERT_TRUE(watch.WaitForError("the server is back; following job " + id)) << watch.Err();
  ASSERT_EQ(RunKtune({"cancel", id, "--server", address}).exit_code, 0);
  EXPECT_EQ(watch.Wait(), 1);  // the job ended cancelled: its own exit, not the restart's
  EXPECT_THAT(watch.Err(), HasSubstr("job " + id + " ended cancelled"));
}

// A job whose class has workers, none of which can measure it (a CPU kernel for a class of replay
// workers), is said to wait at submit, as a class without any worker is (it waited in silence).
TEST(CliTest, SubmitSaysAJobWaitsWhenItsClassesWorkersCannotMeasureIt) {
  testing::TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server({"serve", "--listen", address, "--db", dir.File("s.db")});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  testing::KtuneProcess worker({"worker", "--server", address, "--device",
                                "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz")});
  ASSERT_TRUE(worker.WaitForError("worker_registered")) << worker.Err();
  std::ofstream(dir.File("job.yaml")) << "kernels: [gemm]\nproblems: [{M: 8, N: 8, K: 8}]\n"
                                         "device_classes: [RTX_3090]\nbudget: 2\n";
  auto submitted = RunKtune({"submit", dir.File("job.yaml"), "--server", address});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  EXPECT_THAT(submitted.err, HasSubstr("waits: 1 task waits for a worker of device class "
                                       "'RTX_3090': of its 1 worker, 1 does not build cpp"));
}

// A job that failed says why in the jobs table (only --json and watch said it).
TEST(CliTest, TheJobsTableSaysWhyAJobFailed) {
  testing::TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server({"serve", "--listen", address, "--db", dir.File("s.db")});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  testing::KtuneProcess worker({"worker", "--server", address, "--device", "cpu"});
  // More threads than the worker's cores: the task fails when its search starts.
  auto tune =
      RunKtune({"tune", "--server", address, "--kernel", "gemm", "--problem", "M=16,N=16,K=16",
                "--device", "cpu", "--budget", "2", "--strategy", "random", "--threads", "1024"});
  EXPECT_EQ(tune.exit_code, 1) << tune.err;
  auto jobs = RunKtune({"jobs", "--server", address});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  EXPECT_THAT(jobs.out, ::testing::ContainsRegex("failed +1 "));
  EXPECT_THAT(jobs.out, HasSubstr("       why: ")) << jobs.out;
  EXPECT_THAT(jobs.out, HasSubstr("threads 1024 is more than the")) << jobs.out;
  // A tune through the server says what the untuned default took and the speedup, as the
  // embedded default does (it said neither): the default is the search's first measurement.
  auto tuned =
      RunKtune({"tune", "--server", address, "--kernel", "gemm", "--problem", "M=16,N=16,K=16",
                "--device", "cpu", "--budget", "3", "--strategy", "random"});
  ASSERT_EQ(tuned.exit_code, 0) << tuned.err;
  EXPECT_THAT(tuned.out, ::testing::ContainsRegex("default   [0-9.]+ ms  -> tuned is [0-9.]+x "
                                                  "faster"))
      << tuned.out;
  auto tuned_json =
      RunKtune({"tune", "--server", address, "--kernel", "gemm", "--problem", "M=16,N=16,K=16",
                "--device", "cpu", "--budget", "2", "--strategy", "random", "--json"});
  ASSERT_EQ(tuned_json.exit_code, 0) << tuned_json.err;
  const nlohmann::json out = nlohmann::json::parse(tuned_json.out);
  ASSERT_TRUE(out.contains("default_time_ms")) << tuned_json.out;
  // This job's best against the default, which the first job measured.
  EXPECT_NEAR(out["speedup_over_default"].get<double>(),
              out["default_time_ms"].get<double>() / out["best_time_ms"].get<double>(), 1e-9);
  // A job for the worker's class written in another case waits for good: submit says which
  // class was meant (it said only that no worker of it was connected).
  auto workers = RunKtune({"workers", "--server", address, "--json"});
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  const std::string cpu_class = nlohmann::json::parse(workers.out)[0]["device_class"];
  const nlohmann::json spec{{"name", "case"},
                            {"kernels", {"gemm"}},
                            {"problems", {{{"M", 16}, {"N", 16}, {"K", 16}}}},
                            {"device_classes", {absl::AsciiStrToUpper(cpu_class)}},
                            {"budget", 1}};
  std::ofstream(dir.File("case.json")) << spec.dump();
  auto submitted = RunKtune({"submit", dir.File("case.json"), "--server", address});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  EXPECT_THAT(submitted.err, HasSubstr("(did you mean '" + cpu_class + "'?"));
}

// `best --max-rel-error` serves the fastest within the budget, `best --pareto` shows the front
// as text, JSON and an SVG, and bad combinations are usage errors.
TEST(CliTest, BestHonoursAnAccuracyBudgetAndShowsTheParetoFront) {
  TempDir dir;
  const std::string db = dir.File("p.db");
  {
    std::ofstream jsonl(dir.File("lowp.jsonl"));
    auto line = [&](int precision, double ms, double error, const char* status) {
      // A client's kernel (a registry kernel's records must hold its whole configurations).
      nlohmann::json r{{"kernel", "my_lowp_gemm"},
                       {"problem", {{"M", 32}, {"N", 4096}, {"K", 4096}, {"dtype", "f32"}}},
                       {"device", {{"class", "cpu:test"}, {"fingerprint", {{"name", "test"}}}}},
                       {"config", {{"precision", precision}}},
                       {"status", status},
                       {"repeat_times_ms", {ms}},
                       {"median_ms", ms},
                       {"max_rel_error", error}};
      if (std::string(status) == "ok") r["time_ms"] = ms;
      jsonl << r.dump() << "\n";
    };
    line(32, 9.0, 2e-7, "ok");
    line(16, 6.0, 4e-4, "ok");
    line(8, 3.0, 8e-3, "ok");
    line(4, 2.0, 9e-2, "too_inaccurate");
  }
  ASSERT_EQ(RunKtune({"db", "import", dir.File("lowp.jsonl"), "--db", db, "--format", "jsonl"})
                .exit_code,
            0);
  const std::vector<std::string> task = {"--db", db, "--kernel", "my_lowp_gemm", "--problem",
                                         "M=32,N=4096,K=4096,dtype=f32", "--device", "cpu:test"};
  auto best = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"best"};
    args.insert(args.end(), task.begin(), task.end());
    args.insert(args.end(), extra.begin(), extra.end());
    return RunKtune(args);
  };
  auto precision_of = [](const testing::CommandResult& r) {
    return nlohmann::json::parse(r.out)["best"][0]["config"]["precision"].get<int>();
  };
  EXPECT_EQ(precision_of(best({"--json"})), 8) << "no budget: the fastest ok record";
  // --dtype is the problem's dtype, as `tune --dtype` takes it (best and explain had no such
  // option: --dtype f16 was an unknown option).
  const std::vector<std::string> by_flag = {"best",
                                            "--db",
                                            db,
                                            "--kernel",
                                            "my_lowp_gemm",
                                            "--problem",
                                            "M=32,N=4096,K=4096",
                                            "--device",
                                            "cpu:test",
                                            "--json"};
  std::vector<std::string> f32 = by_flag;
  f32.insert(f32.end(), {"--dtype", "f32"});
  EXPECT_EQ(precision_of(RunKtune(f32)), 8);
  auto clash = best({"--dtype", "f16"});
  EXPECT_EQ(clash.exit_code, 2);
  EXPECT_THAT(clash.err, HasSubstr("--dtype f16 and --problem's dtype=f32 disagree"));
  EXPECT_EQ(precision_of(best({"--json", "--max-rel-error", "1e-3"})), 16);
  EXPECT_EQ(precision_of(best({"--json", "--max-rel-error", "1e-6"})), 32);
  auto none = best({"--max-rel-error", "1e-9"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_THAT(none.out, HasSubstr("within a max relative error of 1e-09"));
  // explain names the budget that nothing met (it said "none within the asked limits").
  std::vector<std::string> explain_args = {"explain"};
  explain_args.insert(explain_args.end(), task.begin(), task.end());
  explain_args.insert(explain_args.end(), {"--max-rel-error", "1e-9"});
  auto unexplained = RunKtune(explain_args);
  EXPECT_EQ(unexplained.exit_code, 0) << unexplained.err;
  EXPECT_THAT(unexplained.out, HasSubstr("nothing to serve within a max relative error of 1e-09: "
                                         "4 records"));
  auto text = best({"--max-rel-error", "1e-3"});
  EXPECT_THAT(text.out, HasSubstr("max rel error 0.0004"));
  EXPECT_THAT(text.out, Not(HasSubstr("trades precision")));
  // Without a budget the int8 answer is served, and said to trade precision (the kernel's own
  // tolerance is no accuracy budget: gemm_lowp's is 0.5).
  auto traded = best({});
  EXPECT_THAT(traded.out, HasSubstr("max rel error 0.008"));
  EXPECT_THAT(traded.out, HasSubstr("note: the served configuration trades precision"));

  auto front = best({"--pareto", "--json", "--plot", dir.File("front.svg")});
  ASSERT_EQ(front.exit_code, 0) << front.err;
  auto f = nlohmann::json::parse(front.out);
  // The front is what `best` serves, budget by budget: a too_inaccurate record is not on it (it
  // listed precision 4 as the answer to budgets from 0.09, where `best` answers precision 8),
  // and is listed apart as what a looser job would measure again.
  ASSERT_EQ(f["front"].size(), 3u) << "each is faster than every more accurate one";
  EXPECT_EQ(f["front"][0]["config"]["precision"], 8);
  EXPECT_EQ(f["front"][0]["served"], true);
  EXPECT_EQ(f["front"][2]["max_rel_error"], 2e-7);
  ASSERT_EQ(f["not_served"].size(), 1u);
  EXPECT_EQ(f["not_served"][0]["config"]["precision"], 4);
  EXPECT_EQ(f["not_served"][0]["served"], false);
  std::ifstream svg(dir.File("front.svg"));
  std::string content((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_THAT(content, HasSubstr("<svg"));
  const std::string front_text = best({"--pareto"}).out;
  EXPECT_THAT(front_text, HasSubstr("3 on the front; 0 of 3 served configurations are dominated"));
  EXPECT_THAT(front_text, HasSubstr("; 1 not served"));
  EXPECT_THAT(front_text, HasSubstr("not served (only measured as too inaccurate"));
  // A T4 copy holds no measured error: the export says so (it dropped them without a word).
  auto t4 = RunKtune({"db", "export", "--db", db, "--format", "t4", "--out", dir.File("l.json")});
  EXPECT_EQ(t4.exit_code, 0) << t4.err;
  EXPECT_THAT(t4.err, HasSubstr("4 of the 4 records have a measured error, which a t4 file"));
  EXPECT_THAT(t4.err, HasSubstr("its 1 too_inaccurate records read back as wrong_result"));

  EXPECT_EQ(best({"--max-rel-error", "-1"}).exit_code, 2);
  EXPECT_EQ(best({"--plot", dir.File("x.svg")}).exit_code, 2) << "--plot needs --pareto";
  EXPECT_EQ(best({"--pareto", "--max-rel-error", "1e-3"}).exit_code, 2);
}

// The real thing: gemm_lowp tuned on this CPU under a budget its int8 path cannot meet. Every
// int8 measurement is stored as too_inaccurate with its measured error, and neither the tuning's
// answer nor `best` (with or without a budget) is ever an int8 configuration.
TEST(CliTest, TuningGemmLowpUnderABudgetNeverServesTheInt8Path) {
  TempDir dir;
  const std::string db = dir.File("lowp.db");
  const std::string problem = "M=8,N=256,K=256";
  auto tune = RunKtune({"tune", "--db", db, "--kernel", "gemm_lowp", "--problem", problem,
                        "--device", "cpu", "--threads", "1", "--budget", "24", "--strategy",
                        "random", "--max-rel-error", "1e-3", "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  auto result = nlohmann::json::parse(tune.out);
  EXPECT_NE(result["best"]["config"]["precision"], 8);
  EXPECT_LE(result["best"]["max_rel_error"].get<double>(), 1e-3);
  EXPECT_GE(result["failures"]["too_inaccurate"].get<int>(), 1) << tune.out;

  auto exported = RunKtune({"db", "export", "--db", db});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  std::istringstream lines(exported.out);
  int int8 = 0;
  for (std::string line; std::getline(lines, line);) {
    auto r = nlohmann::json::parse(line);
    if (r["config"]["precision"] != 8 || r["status"] == "invalid_config") continue;
    ++int8;
    EXPECT_EQ(r["status"], "too_inaccurate") << line;
    EXPECT_GT(r["max_rel_error"].get<double>(), 1e-3) << line;
    EXPECT_TRUE(r["time_ms"].is_null());
  }
  EXPECT_GE(int8, 1);
  for (std::vector<std::string> extra : {std::vector<std::string>{},
                                         std::vector<std::string>{"--max-rel-error", "1e-3"}}) {
    std::vector<std::string> args = {"best", "--db", db, "--kernel", "gemm_lowp", "--problem",
                                     problem, "--device", "cpu", "--top", "100", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto best = RunKtune(args);
    ASSERT_EQ(best.exit_code, 0) << best.err;
    for (const auto& r : nlohmann::json::parse(best.out)["best"]) {
      EXPECT_NE(r["config"]["precision"], 8);
      EXPECT_LE(r["max_rel_error"].get<double>(), 1e-3);
    }
  }
}

// A server serving the file answers from its cache, which an import beside it does not reach
// until it restarts: the import says so (it printed only "N records added", and best --server
// went on answering the old best). The JSON names what was skipped as present.
TEST(CliTest, AnImportBesideARunningServerSaysItsAnswersWaitForARestart) {
  TempDir dir;
  const std::string db = dir.File("served.db");
  auto first = RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.err, "");
  auto lock = ExclusiveFileLock::Acquire(std::filesystem::canonical(db).string() + ".lock",
                                         absl::ZeroDuration());
  ASSERT_TRUE(lock.ok()) << lock.status();  // as `ktune serve` holds it
  auto beside =
      RunKtune({"db", "import", SpaceFile("convolution_A4000_T4.json.gz"), "--db", db, "--json"});
  ASSERT_EQ(beside.exit_code, 0) << beside.err;
  EXPECT_THAT(beside.err, HasSubstr("a ktune server is serving"));
  EXPECT_THAT(beside.err, HasSubstr("serves these records once it restarts"));
  EXPECT_EQ(nlohmann::json::parse(beside.out)["already_present"], 0);
  auto again =
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--db", db, "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(again.out)["records_added"], 0);
  EXPECT_EQ(nlohmann::json::parse(again.out)["already_present"], 4092);
  EXPECT_EQ(again.err, "") << "nothing added: nothing for the server to miss";
}

// A T4 export of a class with a space lists the tasks to choose from as lines to paste (the
// class was not quoted), and says when the task's records are of several devices of the class,
// which a T4 file cannot tell apart (they came back under one fingerprint, without a word).
TEST(CliTest, AT4ExportQuotesItsChoicesAndSaysWhenItMergesDevices) {
  TempDir dir;
  {
    std::ofstream jsonl(dir.File("two.jsonl"));
    for (int n : {1, 2}) {
      for (const char* host : {"a", "b"}) {
        jsonl << nlohmann::json{{"kernel", "k"},
                                {"problem", {{"n", n}}},
                                {"device",
                                 {{"class", "cpu:My CPU"}, {"fingerprint", {{"name", host}}}}},
                                {"config", {{"x", 1}}},
                                {"status", "ok"},
                                {"time_ms", 1.0},
                                {"repeat_times_ms", {1.0}}}
                     .dump()
              << "\n";
      }
    }
  }
  const std::string db = dir.File("two.db");
  auto imported = RunKtune({"db", "import", dir.File("two.jsonl"), "--db", db, "--json"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(nlohmann::json::parse(imported.out)["records_added"], 4);  // two devices: 4, not 2
  auto ambiguous = RunKtune({"db", "export", "--db", db, "--format", "t4", "--kernel", "k"});
  EXPECT_EQ(ambiguous.exit_code, 2) << ambiguous.err;
  EXPECT_THAT(ambiguous.err, HasSubstr("--kernel k --device 'cpu:My CPU' --problem n=1"));
  auto one = RunKtune({"db", "export", "--db", db, "--format", "t4", "--kernel", "k", "--problem",
                       "n=2", "--out", dir.File("k.json")});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.err, HasSubstr("the records are of 2 devices of class cpu:My CPU"));
  EXPECT_THAT(one.err, HasSubstr("--format jsonl keeps each device"));
}

TEST(CliTest, ExportWritesAKernelTunerCacheThatImportsBack) {
  TempDir dir;
  const std::string db = dir.File("k.db");
  auto imported =
      RunKtune({"db", "import", SpaceFile("pnpoly_RTX_Titan_kernel_tuner_cache.json.gz"), "--db",
                db, "--json"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  const int64_t records = nlohmann::json::parse(imported.out)["records_added"];
  // The cache's problem_size has no names ktune could keep: the import says so (files of other
  // sizes were merged into the same task without a word), and --problem keeps them apart.
  EXPECT_NE(nlohmann::json::parse(imported.out)["problem_size_not_kept"], "");
  EXPECT_THAT(imported.err, HasSubstr("give --problem NAME=VALUE,... to keep problem sizes apart"));
  auto named = RunKtune({"db", "import", SpaceFile("pnpoly_RTX_Titan_kernel_tuner_cache.json.gz"),
                         "--db", dir.File("named.db"), "--problem", "n=20000000", "--json"});
  ASSERT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(nlohmann::json::parse(named.out)["problem_size_not_kept"], "");
  EXPECT_EQ(named.err, "");
  const std::string file = dir.File("pnpoly_RTX_Titan_kernel_tuner_cache.json");
  auto exported = RunKtune({"db", "export", "--db", db, "--format", "kernel-tuner", "--out", file});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  auto cache = nlohmann::json::parse(testing::ReadWholeFile(file));
  EXPECT_EQ(cache["kernel_name"], "pnpoly");
  EXPECT_EQ(cache["cache"].size(), static_cast<size_t>(records));
  EXPECT_FALSE(cache["tune_params_keys"].empty());

  const std::string db2 = dir.File("k2.db");
  auto back = RunKtune({"db", "import", file, "--db", db2, "--format", "kernel-tuner", "--json"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(nlohmann::json::parse(back.out)["records_added"], records);
  auto best = [](const std::string& path) {
    auto r = RunKtune({"best", "--db", path, "--kernel", "pnpoly", "--device", "RTX_Titan", "--json"});
    return nlohmann::json::parse(r.out)["best"][0];
  };
  EXPECT_EQ(best(db)["config"], best(db2)["config"]);
  EXPECT_DOUBLE_EQ(best(db)["time_ms"].get<double>(), best(db2)["time_ms"].get<double>());
  // A task with a problem comes back as the same task: ktune's names travel beside Kernel
  // Tuner's (the records landed under the problem {}, and best found nothing).
  const std::string sized = dir.File("sized_cache.json");
  ASSERT_EQ(RunKtune({"db", "export", "--db", dir.File("named.db"), "--format", "kernel-tuner",
                      "--out", sized})
                .exit_code,
            0);
  EXPECT_EQ(nlohmann::json::parse(testing::ReadWholeFile(sized))["ktune"]["problem"],
            nlohmann::json::parse(R"({"n":20000000})"));
  auto sized_back = RunKtune({"db", "import", sized, "--db", dir.File("k3.db"), "--json"});
  ASSERT_EQ(sized_back.exit_code, 0) << sized_back.err;
  EXPECT_EQ(nlohmann::json::parse(sized_back.out)["problem_size_not_kept"], "");
  auto found = RunKtune({"best", "--db", dir.File("k3.db"), "--kernel", "pnpoly", "--problem",
                         "n=20000000", "--device", "RTX_Titan", "--json"});
  ASSERT_EQ(found.exit_code, 0) << found.err;
  EXPECT_EQ(nlohmann::json::parse(found.out)["level"], "device_class");
  EXPECT_EQ(nlohmann::json::parse(found.out)["best"][0]["config"], best(db)["config"]);

  ASSERT_TRUE(SqliteTuningDatabase::Open(dir.File("empty.db")).ok());
  auto nothing =
      RunKtune({"db", "export", "--db", dir.File("empty.db"), "--format", "kernel-tuner"});
  EXPECT_EQ(nothing.exit_code, 1) << nothing.err;  // no task to export
  EXPECT_THAT(nothing.err, HasSubstr("holds no records"));
}

// The light front (cli/agent_front.h) without ktune-agent beside it: the commands that run the
// agent say what is missing and exit 1; the others work.
TEST(CliTest, WithoutKtuneAgentTheFrontSaysWhatIsMissing) {
  if (!KTUNE_WITH_AGENT_BINARY) GTEST_SKIP() << "built without LibTorch: ktune has no front";
  TempDir dir;
  const std::string alone = dir.File("ktune");
  std::filesystem::copy_file(testing::KtuneBinary(), alone);
  std::filesystem::permissions(alone, std::filesystem::perms::owner_all);
  auto run = [&](const std::string& args) {
    const std::string cmd = alone + " " + args + " > " + dir.File("out") + " 2> " + dir.File("err");
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(run("tune --db " + dir.File("k.db") + " --device replay:" +
                SpaceFile("pnpoly_RTX_3090_T4.json.gz") + " --budget 2"),
            1);
  EXPECT_THAT(testing::ReadWholeFile(dir.File("err")), HasSubstr("ktune-agent"));
  EXPECT_EQ(run("tune --help"), 0);  // help comes from the front itself
  EXPECT_THAT(testing::ReadWholeFile(dir.File("out")), HasSubstr("--strategy"));
  EXPECT_EQ(
      run("db import --db " + dir.File("k.db") + " " + SpaceFile("pnpoly_RTX_3090_T4.json.gz")), 0);
  EXPECT_EQ(run("db stats --db " + dir.File("k.db")), 0);
}

TEST(CliTest, TuneOnAReplayDeviceStoresEveryMeasurement) {
  TempDir dir;
  std::string db = dir.File("k.db");
  auto tune =
      RunKtune({"tune", "--db", db, "--device", "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"),
                "--budget", "40", "--strategy", "random", "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  auto result = nlohmann::json::parse(tune.out);
  EXPECT_EQ(result["measurements"], 40);
  EXPECT_EQ(result["records_stored"], 40);
  EXPECT_GE(result["best_over_optimum"].get<double>(), 1.0);
  auto stats = nlohmann::json::parse(RunKtune({"db", "stats", "--db", db, "--json"}).out);
  EXPECT_EQ(stats["records"], 40);
  auto best = nlohmann::json::parse(
      RunKtune({"best", "--db", db, "--kernel", "pnpoly", "--device", "RTX_3090", "--json"}).out);
  EXPECT_EQ(best["best"][0]["time_ms"], result["best"]["time_ms"]);

  // Tuning the same task again measures only new configurations.
  auto again =
      RunKtune({"tune", "--db", db, "--device", "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"),
                "--budget", "40", "--strategy", "random", "--seed", "2", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto second = nlohmann::json::parse(again.out);
  EXPECT_EQ(second["prior_records"], 40);
  EXPECT_EQ(second["records_stored"], 40);
  EXPECT_LE(second["best"]["time_ms"].get<double>(), result["best"]["time_ms"].get<double>());
  stats = nlohmann::json::parse(RunKtune({"db", "stats", "--db", db, "--json"}).out);
  EXPECT_EQ(stats["records"], 80);

  // PPO on a replay device learns (its time is not held to a share of replay's none, which left
  // it about 0.01 s a run) and saves its policy: the next run starts from it.
  const std::string ppo_db = dir.File("ppo.db");
  std::vector<std::string> ppo = {"tune",
                                  "--db",
                                  ppo_db,
                                  "--device",
                                  "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"),
                                  "--budget",
                                  "32",
                                  "--strategy",
                                  "ppo",
                                  "--json"};
  auto first_ppo = RunKtune(ppo);
  if (!KTUNE_WITH_AGENT_BINARY) {  // a build without LibTorch says it has no PPO
    EXPECT_EQ(first_ppo.exit_code, 1);
    EXPECT_THAT(first_ppo.err, HasSubstr("built without LibTorch"));
    return;
  }
  ASSERT_EQ(first_ppo.exit_code, 0) << first_ppo.err;
  EXPECT_EQ(nlohmann::json::parse(first_ppo.out)["warm_started"], false);
  ppo.insert(ppo.end(), {"--seed", "2"});
  auto second_ppo = RunKtune(ppo);
  ASSERT_EQ(second_ppo.exit_code, 0) << second_ppo.err;
  EXPECT_EQ(nlohmann::json::parse(second_ppo.out)["warm_started"], true) << second_ppo.out;
}

// --start-from: a configuration known to be good is measured first (JobSpec.initial_configs):
// with a budget of one, the recorded optimum given is the answer. One the space does not have is
// said, not skipped.
TEST(CliTest, TuneStartsFromTheConfigurationsGiven) {
  TempDir dir;
  const std::string space = SpaceFile("pnpoly_RTX_3090_T4.json.gz");
  absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(space);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  const Record* optimum = nullptr;
  for (const Record& r : recorded->records) {
    if (r.time_ms && (optimum == nullptr || *r.time_ms < *optimum->time_ms)) optimum = &r;
  }
  ASSERT_NE(optimum, nullptr);
  auto tune = RunKtune({"tune", "--db", dir.File("k.db"), "--device", "replay:" + space, "--budget",
                        "1", "--strategy", "random", "--json", "--start-from",
                        FormatParamMapAssignments(optimum->config)});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  auto result = nlohmann::json::parse(tune.out);
  EXPECT_EQ(result["measurements"], 1);
  EXPECT_EQ(result["best_over_optimum"].get<double>(), 1.0);

  // A few parameters of a registry kernel: the others are the default's (budget one: the one
  // measured is the given one, before the default).
  auto partial = RunKtune({"tune", "--db", dir.File("cpu.db"), "--kernel", "gemm", "--problem",
                           "M=64,N=64,K=64", "--budget", "1", "--strategy", "random", "--json",
                           "--start-from", "MR=8,NR=16"});
  ASSERT_EQ(partial.exit_code, 0) << partial.err;
  auto best = nlohmann::json::parse(partial.out)["best"]["config"];
  EXPECT_EQ(best["MR"], 8);
  EXPECT_EQ(best["NR"], 16);

  Configuration outside = optimum->config;
  outside.begin()->second = int64_t{987654321};
  auto refused = RunKtune({"tune", "--db", dir.File("k.db"), "--device", "replay:" + space,
                           "--start-from", FormatParamMapAssignments(outside)});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.err, HasSubstr("--start-from"));
  EXPECT_THAT(refused.err, HasSubstr("is not a configuration of pnpoly here"));
}

TEST(CliTest, TuneOnThisCpuReportsSpeedupAndStoresRecords) {
  testing::TempDir dir;
  const std::string db = dir.File("k.db");
  auto tune = RunKtune({"tune", "--db", db, "--kernel", "gemm", "--problem", "M=96,N=80,K=64",
                        "--device", "cpu", "--budget", "12", "--strategy", "random", "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  auto result = nlohmann::json::parse(tune.out);
  EXPECT_EQ(result["measurements"], 12);  // the default configuration counts against the budget
  EXPECT_EQ(result["records_stored"], 12);
  EXPECT_EQ(result["problem"]["dtype"], "f32");
  EXPECT_GT(result["best_gflops"].get<double>(), 0);
  EXPECT_GT(result["best_percent_of_peak"].get<double>(), 0);
  // Never more than the machine can do, even when the clock probe shared a busy core.
  EXPECT_LE(result["best_percent_of_peak"].get<double>(), 100);
  EXPECT_GE(result["speedup_over_default"].get<double>(), 1.0);  // the default was a candidate
  EXPECT_EQ(result["default"]["config"]["MR"], 6);
  // A compiler's question: the best known configuration on this CPU, exact fingerprint.
  auto best = RunKtune({"best", "--db", db, "--kernel", "gemm", "--problem", "M=96,N=80,K=64",
                        "--device", "cpu", "--json"});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  auto answer = nlohmann::json::parse(best.out);
  EXPECT_EQ(answer["level"], "exact");
  EXPECT_EQ(answer["best"][0]["config"], result["best"]["config"]);
  // Again: the 12 are reused, 4 new ones measured.
  auto again = RunKtune({"tune", "--db", db, "--kernel", "gemm", "--problem", "M=96,N=80,K=64",
                         "--device", "cpu", "--budget", "4", "--strategy", "random", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  auto second = nlohmann::json::parse(again.out);
  EXPECT_EQ(second["prior_records"], 12);
  EXPECT_EQ(second["measurements"], 4);
  // db export reads --problem and --device as best does: dtype filled in, cpu as this machine
  // (the same words matched nothing).
  auto exported = RunKtune({"db", "export", "--db", db, "--kernel", "gemm", "--problem",
                            "M=96,N=80,K=64", "--device", "cpu"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(std::count(exported.out.begin(), exported.out.end(), '\n'), 16);
  // And without --kernel: the problem filled in as each record's kernel stores it (matched none).
  auto any_kernel =
      RunKtune({"db", "export", "--db", db, "--problem", "M=96,N=80,K=64", "--device", "cpu"});
  ASSERT_EQ(any_kernel.exit_code, 0) << any_kernel.err;
  EXPECT_EQ(any_kernel.out, exported.out);
  // A forgotten --problem is said to be one (it read as "nothing was tuned").
  auto no_problem = RunKtune({"best", "--db", db, "--kernel", "gemm", "--device", "cpu"});
  ASSERT_EQ(no_problem.exit_code, 0) << no_problem.err;
  EXPECT_THAT(no_problem.out, HasSubstr("(no --problem was given, and gemm's problems have M, N, "
                                        "K)"));
  // Every kernel with problem parameters, text and JSON, and explain too (the hint read a freed
  // registry: std::bad_alloc or length_error, exit 134, for conv2d and --json).
  for (const char* kernel : {"gemm", "conv2d", "softmax", "gemm_openblas"}) {
    for (bool json : {false, true}) {
      std::vector<std::string> args = {"best", "--db", db, "--kernel", kernel, "--device", "cpu"};
      if (json) args.push_back("--json");
      auto r = RunKtune(args);
      EXPECT_EQ(r.exit_code, 0) << kernel << " " << r.err;
      if (json) {
        EXPECT_EQ(nlohmann::json::parse(r.out)["level"], "none") << r.out;
      }
    }
  }
  auto no_problem_explained =
      RunKtune({"explain", "--db", db, "--kernel", "softmax", "--device", "cpu"});
  ASSERT_EQ(no_problem_explained.exit_code, 0) << no_problem_explained.err;
  EXPECT_THAT(no_problem_explained.out,
              HasSubstr("no --problem was given, and softmax's problems have rows, cols"));
  // The front of a problem with no record says so (it said no record had a measured error).
  auto no_front = RunKtune({"best", "--db", db, "--kernel", "gemm", "--problem", "M=8,N=8,K=8",
                            "--device", "cpu", "--pareto"});
  ASSERT_EQ(no_front.exit_code, 0) << no_front.err;
  EXPECT_THAT(no_front.out, HasSubstr("nothing known for gemm K=8,M=8,N=8,dtype=f32"));
  EXPECT_THAT(no_front.out, Not(HasSubstr("measured error")));
  // A server predicts for a problem never tuned; the answer says from which problem, and that
  // it was measured on another device class of the family than the one asked for (it did not
  // say). A class of no known family gets no prediction.
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server({"serve", "--listen", address, "--db", db});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  auto unrelated = RunKtune({"best", "--server", address, "--kernel", "gemm", "--problem",
                             "M=128,N=80,K=64", "--device", "cpu:elsewhere"});
  ASSERT_EQ(unrelated.exit_code, 0) << unrelated.err;
  EXPECT_THAT(unrelated.out, HasSubstr("nothing known"));
  EXPECT_THAT(unrelated.out, Not(HasSubstr("knows no kernel")));
  // A misspelt kernel name is said to be one (the server's answer was only "nothing known").
  auto misspelt = RunKtune({"best", "--server", address, "--kernel", "gemn", "--problem",
                            "M=128,N=80,K=64", "--device", "cpu:elsewhere"});
  ASSERT_EQ(misspelt.exit_code, 0) << misspelt.err;
  EXPECT_THAT(misspelt.out, HasSubstr("the server knows no kernel named 'gemn'"));
  const std::string family =
      nlohmann::json::parse(
          RunKtune({"best", "--db", db, "--kernel", "gemm", "--problem", "M=96,N=80,K=64",
                    "--device", "cpu", "--json"})
              .out)["best"][0]["device"]["family"]
          .get<std::string>();
  auto predicted = RunKtune({"best", "--server", address, "--kernel", "gemm", "--problem",
                             "M=128,N=80,K=64", "--device", "cpu:elsewhere", "--family", family});
  ASSERT_EQ(predicted.exit_code, 0) << predicted.err;
  EXPECT_THAT(predicted.out, HasSubstr("(match: predicted)"));
  EXPECT_THAT(predicted.out, HasSubstr("predicted from a tuned problem (K=64,M=96,N=80"));
  // Its error too is the tuned problem's, and says so.
  EXPECT_THAT(predicted.out, HasSubstr("(measured on the tuned problem)"));
  EXPECT_THAT(predicted.out, HasSubstr(", another device class"));
}

// A CPU tune of n x n x n multiplications long enough to be interrupted (4,000 measurements).
std::vector<std::string> LongCpuTune(const std::string& db, int n) {
  return {"tune",
          "--db",
          db,
          "--kernel",
          "gemm",
          "--problem",
          absl::StrCat("M=", n, ",N=", n, ",K=", n),
          "--device",
          "cpu",
          "--budget",
          "4000",
          "--strategy",
          "random"};
}

// The state `ktune jobs --json` gives the database's newest job.
std::string FirstJobState(const std::string& db) {
  auto jobs = RunKtune({"jobs", "--db", db, "--json"});
  EXPECT_EQ(jobs.exit_code, 0) << jobs.err;
  const nlohmann::json listed = nlohmann::json::parse(jobs.out, nullptr, false);
  return listed.is_array() && !listed.empty() ? listed[0].value("state", "") : jobs.out;
}

// Polls ReadOnlyQuery every 100 ms until it returns `until` or 120 s pass; its last answer.
std::string WaitForQuery(const std::string& db, const std::string& sql, const std::string& until) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (testing::ReadOnlyQuery(db, sql) != until && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return testing::ReadOnlyQuery(db, sql);
}

// Ctrl-C stops a tuning after the measurements in flight, keeps what was measured, and exits as
// shells expect of an interrupted command: 128 + SIGINT (it exited 1, like any failure).
TEST(CliTest, AnInterruptedTuneKeepsItsRecordsAndExits130) {
  testing::TempDir dir;
  const std::string db = dir.File("i.db");
  testing::KtuneProcess tune(LongCpuTune(db, 256));
  // Interrupt once records are stored (polled, never assumed after a fixed delay).
  ASSERT_EQ(WaitForQuery(db, "SELECT COUNT(*) > 0 FROM records", "1"), "1") << tune.Err();
  tune.Signal(SIGINT);
  EXPECT_EQ(tune.Wait(), 130) << tune.Err();
  EXPECT_THAT(tune.Err(), HasSubstr("interrupted: job 1 cancelled after"));
  EXPECT_EQ(FirstJobState(db), "cancelled");
  // The count it gives is what the file holds, measurements in flight included (it gave the
  // count at the cancel: "after 25" where 33 were stored).
  const std::string stored =
      testing::ReadOnlyQuery(db, "SELECT COUNT(*) FROM records WHERE source = 'job:1'");
  EXPECT_THAT(tune.Err(),
              HasSubstr("cancelled after " + stored + " measurements, which are stored"));
  auto check = RunKtune({"db", "check", "--db", db});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

// bench kernel compares the tuned configuration and the vendor library at one thread count, the
// one it prints: a 1-thread finalist that won the re-measurement was compared with a 2-thread
// OpenBLAS and the line said "1 thread" (a helper's review).
TEST(CliTest, BenchKernelComparesAtOneThreadCount) {
  testing::TempDir dir;
  auto bench =
      RunKtune({"bench", "kernel", "--kernel", "gemm", "--problem", "M=64,N=64,K=64", "--vs",
                "openblas", "--budget", "8", "--rounds", "1", "--db", dir.File("b.db"), "--json"});
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  const nlohmann::json out = nlohmann::json::parse(bench.out.substr(0, bench.out.find('\n')));
  const int threads = out["threads"].get<int>();
  EXPECT_EQ(out["tuned_config"]["threads"].get<int>(), threads) << out.dump();
  EXPECT_EQ(out["vs_threads"].get<int>(), threads) << out.dump();
  for (const nlohmann::json& f : out["finalists"]) {
    if (!f.value("default", false)) {
      EXPECT_EQ(f["config"]["threads"].get<int>(), threads);
    }
  }
}

// A second Ctrl-C ends the process at once; the first has already cancelled the job in the file
// (it stayed "running" for ever, the cancel coming only after the measurements in flight).
TEST(CliTest, ASecondInterruptLeavesTheJobCancelledNotRunning) {
  testing::TempDir dir;
  const std::string db = dir.File("i.db");
  testing::KtuneProcess tune(LongCpuTune(db, 512));
  ASSERT_EQ(WaitForQuery(db, "SELECT COUNT(*) > 0 FROM records", "1"), "1") << tune.Err();
  tune.Signal(SIGINT);
  // The first says at once that the job is cancelled, while a lease of large multiplications is
  // still being measured; the second stops the process there.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (tune.Err().find("Ctrl-C again to stop now") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_THAT(tune.Err(), HasSubstr("interrupted: job 1 cancelled; storing the measurements"));
  // A person's second Ctrl-C: later than 300 ms (sooner is the same signal sent twice).
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  tune.Signal(SIGINT);
  tune.Wait();
  EXPECT_EQ(FirstJobState(db), "cancelled");
}

// Through a server, Ctrl-C cancels the job on the server (it went on tuning for nobody: the signal
// ended the client alone), keeps what was measured there, and exits 130.
TEST(CliTest, AnInterruptedTuneThroughAServerCancelsItsJobThere) {
  testing::TempDir dir;
  const std::string db = dir.File("s.db");
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server({"serve", "--listen", address, "--db", db});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  testing::KtuneProcess worker({"worker", "--server", address, "--device", "cpu"});
  std::vector<std::string> args = LongCpuTune(db, 256);
  args.erase(args.begin() + 1, args.begin() + 3);  // --db: the server's
  args.insert(args.end(), {"--server", address});
  testing::KtuneProcess tune(args);
  ASSERT_EQ(WaitForQuery(db, "SELECT COUNT(*) > 0 FROM records", "1"), "1") << tune.Err();
  tune.Signal(SIGINT);
  EXPECT_EQ(tune.Wait(), 130) << tune.Err();
  EXPECT_THAT(tune.Err(), HasSubstr("interrupted: job 1 cancelled on " + address));
  EXPECT_THAT(tune.Err(), HasSubstr("which are stored on the server"));
  // The same signal twice at once (`timeout` sends SIGTERM to the command, then to its process
  // group) is one interrupt: the job is cancelled too (it was left queued, the process ended).
  testing::KtuneProcess twice(args);
  ASSERT_EQ(WaitForQuery(db, "SELECT COUNT(*) FROM jobs", "2"), "2") << twice.Err();
  twice.Signal(SIGTERM);
  twice.Signal(SIGTERM);
  EXPECT_EQ(twice.Wait(), 143) << twice.Err();
  EXPECT_THAT(twice.Err(), HasSubstr("interrupted: job 2 cancelled on " + address));
  auto jobs = RunKtune({"jobs", "--server", address, "--json"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.err;
  nlohmann::json listed = nlohmann::json::parse(jobs.out, nullptr, false);
  ASSERT_TRUE(listed.is_array() && listed.size() == 2) << jobs.out;
  EXPECT_EQ(listed[0].value("state", ""), "cancelled") << jobs.out;  // newest first
  listed.erase(0);
  EXPECT_EQ(listed[0].value("state", ""), "cancelled") << jobs.out;
  // Its task count, as from the database (the server's list showed "-", the file's 1).
  EXPECT_EQ(listed[0].value("task_count", 0), 1) << jobs.out;
  // What only the server knows, under watch's names: why it waits and the time left, null as
  // from a database file when there is none (it ended; 0 read as "about to finish").
  EXPECT_TRUE(listed[0].contains("waiting") && listed[0]["waiting"].is_null()) << jobs.out;
  EXPECT_TRUE(listed[0].contains("estimated_seconds_left") &&
              listed[0]["estimated_seconds_left"].is_null())
      << jobs.out;
  // watch --json gives each task's best configuration with its time (a script asked best after).
  auto watched = RunKtune({"watch", "1", "--server", address, "--json"});
  const std::string last = watched.out.substr(watched.out.rfind('\n', watched.out.size() - 2) + 1);
  const nlohmann::json task = nlohmann::json::parse(last, nullptr, false)["tasks"][0];
  ASSERT_TRUE(task.contains("best_time_ms")) << last;
  EXPECT_TRUE(task["best_config"].is_object() && task["best_config"].contains("MR")) << last;
  EXPECT_THAT(RunKtune({"jobs", "--server", address}).out,
              ::testing::ContainsRegex("cancelled +1 "));
  // workers --json gives its times as every --json does (RFC 3339), the seconds beside them.
  auto workers = RunKtune({"workers", "--server", address, "--json"});
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  const nlohmann::json listed_workers = nlohmann::json::parse(workers.out, nullptr, false);
  ASSERT_TRUE(listed_workers.is_array() && listed_workers.size() == 1) << workers.out;
  EXPECT_THAT(listed_workers[0].value("last_heartbeat", ""),
              ::testing::MatchesRegex("20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T.*"))
      << workers.out;
  EXPECT_GT(listed_workers[0].value("last_heartbeat_unix", int64_t{0}), 0) << workers.out;
  // Without --seed the server drew the job's seed: two tunes of one task at once with the
  // default seed 1 proposed the same configurations (a fleet trial: 1,000 records, 500 distinct).
  const std::string seed =
      testing::ReadOnlyQuery(db, "SELECT json_extract(spec_json, '$.seed') FROM jobs WHERE id = 1");
  EXPECT_FALSE(seed.empty());
  EXPECT_NE(seed, "1");
}

// Through a server, a tune where nothing measures ok says why, as the embedded default does (it
// printed "4 measurements, 4 failed" and exited 1, the reason nowhere).
TEST(CliTest, ATuneThroughAServerWithNothingOkSaysWhy) {
  testing::TempDir dir;
  const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
  testing::KtuneProcess server({"serve", "--listen", address, "--db", dir.File("s.db")});
  ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
  // A client kernel whose library exports neither ktune_kernel nor ktune_reference.
  std::ofstream(dir.File("k.json")) << R"({"name":"noexport","language":"cpp",
      "source":"extern \"C\" int nothing = 0;",
      "parameters":[{"name":"unroll","values":[1,2,4,8],"compile_time":true}],
      "problem":[{"name":"n","min":1,"max":4096}],
      "buffers":[{"name":"x","elements":"n"},{"name":"y","elements":"n","output":true}],
      "flops":"n","bytes":"8 * n","default_config":{"unroll":"1"}})";
  auto registered = RunKtune({"kernels", "register", dir.File("k.json"), "--server", address});
  ASSERT_EQ(registered.exit_code, 0) << registered.err;
  EXPECT_EQ(registered.err, "");
  // The same spec with another description: a no-op that says the description is kept (it said
  // only "registered", and the old description stayed).
  std::ifstream spec_in(dir.File("k.json"));
  std::string spec((std::istreambuf_iterator<char>(spec_in)), std::istreambuf_iterator<char>());
  std::ofstream(dir.File("k2.json")) << "{\"description\":\"new words\"," << spec.substr(1);
  auto again = RunKtune({"kernels", "register", dir.File("k2.json"), "--server", address});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("noexport was registered before, with the same spec; its "
                                   "description stays \"\""));
  // The server's file knows it too, without the server (kernels --db: no way but a server).
  auto listed = RunKtune({"kernels", "noexport", "--db", dir.File("s.db")});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("noexport"));
  EXPECT_THAT(listed.out, HasSubstr("unroll"));
  EXPECT_EQ(RunKtune({"kernels", "noexport"}).exit_code, 2);  // this build's registry lacks it
  // A client kernel without problem parameters (as the Kernel Tuner bridge registers) is listed
  // by a server (its missing "problem_parameters" was read past).
  std::ofstream(dir.File("fixed.json")) << R"({"name":"fixed8","language":"cpp",
      "source":"extern \"C\" int nothing = 0;",
      "parameters":[{"name":"unroll","values":[1,2],"compile_time":true}],
      "buffers":[{"name":"x","elements":"8"},{"name":"y","elements":"8","output":true}],
      "flops":"8","bytes":"64","default_config":{"unroll":"1"}})";
  auto fixed = RunKtune({"kernels", "register", dir.File("fixed.json"), "--server", address});
  ASSERT_EQ(fixed.exit_code, 0) << fixed.err;
  auto served_kernels = RunKtune({"kernels", "--server", address});
  ASSERT_EQ(served_kernels.exit_code, 0) << served_kernels.err;
  EXPECT_THAT(served_kernels.out, HasSubstr("fixed8  (version "));
  EXPECT_EQ(RunKtune({"kernels", "--db", dir.File("s.db"), "--server", address}).exit_code, 2);
  testing::KtuneProcess worker({"worker", "--server", address, "--device", "cpu"});
  auto tune = RunKtune({"tune", "--server", address, "--kernel", "noexport", "--problem", "n=1024",
                        "--device", "cpu", "--budget", "3", "--strategy", "random"});
  EXPECT_EQ(tune.exit_code, 1) << tune.err;
  EXPECT_THAT(tune.err, HasSubstr("no configuration measured ok in 3 measurements; 3 x "));
  EXPECT_THAT(tune.err, HasSubstr("ktune_kernel")) << tune.err;
  // watch says the failures in text too (a job whose every measurement failed read "done, 3
  // measurements" there; only --json counted the failures).
  auto watched = RunKtune({"watch", "1", "--server", address});
  EXPECT_THAT(watched.out, HasSubstr("3 measurements, no configuration ran (all 3 failed)"))
      << watched.out;
  // A compile error of every configuration is one reason, though each configuration was built
  // from a file of its own (it was listed as reasons of 1 or 2 each, and the rest went unsaid).
  std::ofstream(dir.File("bad.json")) << R"({"name":"badcc","language":"cpp",
      "source":"extern \"C\" int ktune_kernel(const ktune_cpu_call* c) { undeclared_thing += KT_unroll; return 0; }",
      "parameters":[{"name":"unroll","values":[1,2,4,8],"compile_time":true}],
      "problem":[{"name":"n","min":1,"max":4096}],
      "buffers":[{"name":"x","elements":"n"},{"name":"y","elements":"n","output":true}],
      "flops":"n","bytes":"8 * n","default_config":{"unroll":"1"}})";
  ASSERT_EQ(RunKtune({"kernels", "register", dir.File("bad.json"), "--server", address}).exit_code,
            0);
  auto bad = RunKtune({"tune", "--server", address, "--kernel", "badcc", "--problem", "n=1024",
                       "--device", "cpu", "--budget", "4", "--strategy", "random"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("no configuration measured ok in 4 measurements; 4 x "
                                 "compile_error: "))
      << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("undeclared_thing"));
}

// A kernel registered with a server on a database is tuned by the embedded default on that file,
// and best, explain and db export find it with the problem as tuned (the local tune refused it
// as unknown, and the offline commands missed it without dtype=f32: a helper's review).
TEST(CliTest, AKernelRegisteredInTheDatabaseIsTunedAndQueriedLocally) {
  testing::TempDir dir;
  const std::string db = dir.File("k.db");
  // docs/operations.md's example kernel, y = 2x.
  std::ofstream(dir.File("k.json")) << R"({"name": "scale2", "language": "cpp",
      "parameters": [{"name": "unroll", "values": [1, 2, 4, 8], "compile_time": true}],
      "problem": [{"name": "n", "min": 1, "max": 16777216}],
      "buffers": [{"name": "x", "elements": "n"}, {"name": "y", "elements": "n", "output": true}],
      "flops": "n", "bytes": "8 * n", "default_config": {"unroll": "1"}})";
  std::ofstream(dir.File("k.cc")) << testing::kScale2KernelSource;
  {
    const std::string address = "127.0.0.1:" + std::to_string(testing::FreePort());
    testing::KtuneProcess server({"serve", "--listen", address, "--db", db});
    ASSERT_TRUE(server.WaitForOutput("listening on port")) << server.Err();
    auto registered = RunKtune({"kernels", "register", dir.File("k.json"), "--source",
                                dir.File("k.cc"), "--server", address});
    ASSERT_EQ(registered.exit_code, 0) << registered.err;
    // The server describes its client kernel in full: the space and default for a problem, and
    // the constraints, as `kernels --db` does.
    auto described = RunKtune(
        {"kernels", "scale2", "--server", address, "--problem", "n=1000", "--json"});
    ASSERT_EQ(described.exit_code, 0) << described.err;
    const nlohmann::json k = nlohmann::json::parse(described.out)[0];
    EXPECT_EQ(k["space_size"], 4) << described.out;
    EXPECT_EQ(k["default_config"], nlohmann::json({{"unroll", 1}})) << described.out;
    EXPECT_EQ(k["problem_parameters"][0]["max"], 16777216) << described.out;
    auto from_file = RunKtune({"kernels", "scale2", "--db", db, "--json"});
    ASSERT_EQ(from_file.exit_code, 0) << from_file.err;
    EXPECT_EQ(k["version"], nlohmann::json::parse(from_file.out)[0]["version"]);
    auto text = RunKtune({"kernels", "scale2", "--server", address, "--problem", "n=1000"});
    EXPECT_THAT(text.out, HasSubstr("space:       4 valid configurations for n=1000"));
    // A server gives no client kernel's source: --compile says so (it compiled an empty
    // program, and blamed the toolchain).
    auto compiled = RunKtune(
        {"kernels", "scale2", "--server", address, "--problem", "n=1000", "--compile", "sm_90"});
    EXPECT_EQ(compiled.exit_code, 2) << compiled.err;
    EXPECT_THAT(compiled.err, HasSubstr("--compile needs the kernel's source"));
  }
  auto tune = RunKtune({"tune", "--db", db, "--kernel", "scale2", "--problem", "n=1024", "--device",
                        "cpu", "--budget", "4", "--strategy", "random", "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err << tune.out;
  EXPECT_EQ(nlohmann::json::parse(tune.out)["measurements"], 4);
  auto best = RunKtune({"best", "--db", db, "--kernel", "scale2", "--problem", "n=1024", "--device",
                        "cpu", "--json"});
  ASSERT_EQ(best.exit_code, 0) << best.err;
  EXPECT_EQ(nlohmann::json::parse(best.out)["level"], "exact") << best.out;
  auto explain = RunKtune({"explain", "--db", db, "--kernel", "scale2", "--problem", "n=1024",
                           "--device", "cpu", "--json"});
  ASSERT_EQ(explain.exit_code, 0) << explain.err;
  EXPECT_EQ(nlohmann::json::parse(explain.out)["records"], 4) << explain.out;
  auto exported =
      RunKtune({"db", "export", "--db", db, "--kernel", "scale2", "--problem", "n=1024"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  // The kernel's spec, then its 4 records: a copy knows the kernel as the original does (one
  // without it read n=1024 as no task, its records being of n=1024,dtype=f32).
  EXPECT_EQ(std::count(exported.out.begin(), exported.out.end(), '\n'), 5);
  EXPECT_EQ(nlohmann::json::parse(
                exported.out.substr(0, exported.out.find('\n')))["ktune_kernel_spec"]["name"],
            "scale2");
  std::ofstream(dir.File("copy.jsonl")) << exported.out;
  const std::string copy = dir.File("copy.db");
  auto imported = RunKtune({"db", "import", dir.File("copy.jsonl"), "--db", copy, "--json"});
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  EXPECT_EQ(nlohmann::json::parse(imported.out)["records_added"], 4);
  EXPECT_EQ(nlohmann::json::parse(imported.out)["kernels_registered"], 1);
  auto best_in_copy = RunKtune({"best", "--db", copy, "--kernel", "scale2", "--problem", "n=1024",
                                "--device", "cpu", "--json"});
  ASSERT_EQ(best_in_copy.exit_code, 0) << best_in_copy.err;
  EXPECT_EQ(nlohmann::json::parse(best_in_copy.out)["level"], "exact") << best_in_copy.out;
  auto again = RunKtune({"db", "import", dir.File("copy.jsonl"), "--db", copy, "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;  // the same spec again registers nothing new
  EXPECT_EQ(nlohmann::json::parse(again.out)["records_added"], 0);
}

// Without its measurement runner, `tune` says so, naming the runner and the fix, before it
// measures anything: it failed every measurement alike and stored each as a runtime_error record.
TEST(CliTest, TuneWithoutTheRunnerSaysSoBeforeMeasuring) {
  testing::TempDir dir;
  ASSERT_EQ(setenv("KTUNE_RUNNER", dir.File("no-such-runner").c_str(), 1), 0);
  auto tune = RunKtune({"tune", "--db", dir.File("k.db"), "--kernel", "gemm", "--problem",
                        "M=96,N=80,K=64", "--device", "cpu", "--budget", "4", "--strategy",
                        "random"});
  auto worker = RunKtune({"worker", "--device", "cpu", "--server", "127.0.0.1:1"});
  unsetenv("KTUNE_RUNNER");
  EXPECT_EQ(tune.exit_code, 1) << tune.err;
  EXPECT_THAT(tune.err, HasSubstr("no-such-runner"));
  EXPECT_THAT(tune.err, HasSubstr("set KTUNE_RUNNER"));
  EXPECT_FALSE(std::filesystem::exists(dir.File("k.db")));  // nothing was written
  // A worker says it at start, before it leases (it failed every candidate it was given).
  EXPECT_EQ(worker.exit_code, 1) << worker.err;
  EXPECT_THAT(worker.err, HasSubstr("no-such-runner"));
}

// The embedded default is the server: `ktune tune` without --server runs the task as a job of
// an in-process server, measured by an in-process worker, so the database holds the job and
// every record carries the job and the worker's id; the default configuration is measured first.
TEST(CliTest, PpoWithoutATimeLimitGivesTheSameRunForTheSameSeed) {
  // --agent-share 0: PPO learns every batch whatever the measurements cost, so the run depends on
  // the seed only (with the default 5% it depends on the wall clock as well).
  TempDir dir;
  std::vector<std::set<std::string>> measured;
  for (const char* name : {"a.db", "b.db"}) {
    const std::string db = dir.File(name);
    auto tune = RunKtune({"tune", "--db", db, "--device",
                          "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--budget", "40",
                          "--seed", "3", "--agent-share", "0", "--json"});
    ASSERT_EQ(tune.exit_code, 0) << tune.err;
    auto exported = RunKtune({"db", "export", "--db", db});
    ASSERT_EQ(exported.exit_code, 0) << exported.err;
    std::istringstream lines(exported.out);
    std::set<std::string> configs;
    for (std::string line; std::getline(lines, line);) {
      configs.insert(nlohmann::json::parse(line)["config"].dump());
    }
    EXPECT_EQ(configs.size(), 40u);
    measured.push_back(configs);
  }
  EXPECT_EQ(measured[0], measured[1]);
  // The default limit reaches the server's search too, and a limited run still measures its whole
  // budget. (How the allowance shrinks the agent's work is TuningLoopTest's, on a fake clock:
  // comparing wall times here failed on a fast machine, where a whole PPO run takes 20 ms.)
  auto limited = RunKtune({"tune", "--db", dir.File("d.db"), "--device",
                           "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--budget", "40",
                           "--seed", "3", "--json"});
  ASSERT_EQ(limited.exit_code, 0) << limited.err;
  EXPECT_EQ(nlohmann::json::parse(limited.out)["measurements"], 40);
  auto bad = RunKtune({"tune", "--db", dir.File("c.db"), "--device",
                       "replay:" + SpaceFile("pnpoly_RTX_3090_T4.json.gz"), "--agent-share", "-1"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_THAT(bad.err, ::testing::HasSubstr("--agent-share"));
}

TEST(CliTest, EmbeddedTuneRunsAsAJobOfAnInProcessServer) {
  TempDir dir;
  const std::string db = dir.File("k.db");
  auto tune =
      RunKtune({"tune", "--db", db, "--kernel", "gemm", "--problem", "M=64,N=48,K=32", "--device",
                "cpu", "--budget", "5", "--batch-size", "2", "--strategy", "random", "--json"});
  ASSERT_EQ(tune.exit_code, 0) << tune.err;
  auto result = nlohmann::json::parse(tune.out);
  EXPECT_EQ(result["measurements"], 5);
  EXPECT_EQ(result["best"]["source"], "job:1");
  auto jobs = nlohmann::json::parse(RunKtune({"jobs", "--db", db, "--json"}).out);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]["name"], "tune gemm");
  EXPECT_EQ(jobs[0]["state"], "done");
  EXPECT_EQ(jobs[0]["task_count"], 1);
  EXPECT_EQ(jobs[0]["job_id"], result["best"]["source"].get<std::string>().substr(4));
  EXPECT_EQ(jobs[0]["measurements_done"], 5);
  auto exported = RunKtune({"db", "export", "--db", db});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  std::istringstream lines(exported.out);
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(lines, line);) records.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[0]["config"], result["default"]["config"]);  // measured first
  for (const auto& r : records) {
    EXPECT_EQ(r["source"], "job:1");
    EXPECT_EQ(r["worker"], records[0]["worker"]);  // the worker the server registered
    EXPECT_EQ(r["worker"].get<std::string>().substr(0, 1), "w");
  }

  // Without --json: progress on stderr, the summary on stdout; a second job.
  auto again = RunKtune({"tune", "--db", db, "--kernel", "gemm", "--problem", "M=64,N=48,K=32",
                         "--device", "cpu", "--budget", "2", "--strategy", "random"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("2/2"));
  EXPECT_THAT(again.out, HasSubstr("5 earlier measurements reused"));
  EXPECT_THAT(again.out, HasSubstr("stored    2 records"));
  jobs = nlohmann::json::parse(RunKtune({"jobs", "--db", db, "--json"}).out);
  EXPECT_EQ(jobs.size(), 2u);
}

TEST(CliTest, TuneRefusesBadInputWithClearMessages) {
  auto no_kernel = RunKtune({"tune", "--device", "cpu", "--problem", "M=8"});
  EXPECT_EQ(no_kernel.exit_code, 2);
  EXPECT_THAT(no_kernel.err, HasSubstr("--kernel is required"));
  auto unknown = RunKtune({"tune", "--kernel", "fft", "--device", "cpu", "--problem", "N=8"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("known kernels: gemm"));
  auto missing = RunKtune({"tune", "--kernel", "gemm", "--device", "cpu", "--problem", "M=8,N=8"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("needs problem parameter K"));
  auto huge =
      RunKtune({"tune", "--kernel", "gemm", "--device", "cpu", "--problem", "M=8,N=8,K=999999999"});
  EXPECT_EQ(huge.exit_code, 2);
  EXPECT_THAT(huge.err, HasSubstr("out of range"));
  auto dtype = RunKtune({"tune", "--kernel", "gemm", "--device", "cpu", "--problem", "M=8,N=8,K=8",
                         "--dtype", "f64"});
  EXPECT_EQ(dtype.exit_code, 2);
  EXPECT_THAT(dtype.err, HasSubstr("supports dtype f32"));
  auto device = RunKtune({"tune", "--kernel", "gemm", "--device", "tpu", "--problem", "M=8"});
  EXPECT_EQ(device.exit_code, 2);
  auto cpu_kernel_on_gpu =
      RunKtune({"tune", "--kernel", "gemm", "--device", "cuda", "--problem", "M=8,N=8,K=8"});
  EXPECT_EQ(cpu_kernel_on_gpu.exit_code, 2);
  EXPECT_THAT(cpu_kernel_on_gpu.err, HasSubstr("is cpp code; --device cuda runs cuda kernels"));
  auto ordinal =
      RunKtune({"tune", "--kernel", "cuda_gemm", "--device", "cuda:x", "--problem", "M=8,N=8,K=8"});
  EXPECT_EQ(ordinal.exit_code, 2);
  EXPECT_THAT(ordinal.err, HasSubstr("use cuda or cuda:N"));
  // A mistyped kernel is refused before --inputs stores a copy of the file (it printed
  // "inputs: FILE is data=file:<hash>", then refused the kernel).
  TempDir dir;
  {
    std::ofstream inputs(dir.File("in.f32"), std::ios::binary);
    const float values[2] = {1.f, 2.f};
    inputs.write(reinterpret_cast<const char*>(values), sizeof values);
  }
  auto typo = RunKtune({"tune", "--kernel", "gem", "--device", "cpu", "--problem", "M=8,N=8,K=8",
                        "--inputs", dir.File("in.f32"), "--db", dir.File("t.db")});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_THAT(typo.err, HasSubstr("unknown kernel 'gem'"));
  EXPECT_THAT(typo.err, Not(HasSubstr("is data=file:")));
  auto bad = RunKtune({"tune", "--device", "replay:x.json", "--strategy", "hillclimb"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("unknown strategy"));
}

TEST(CliTest, KernelsListsTheRegistry) {
  auto all = RunKtune({"kernels", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  auto kernels = nlohmann::json::parse(all.out);
  std::set<std::string> names;
  for (const auto& k : kernels) names.insert(k["name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"gemm", "conv2d", "softmax", "gemm_openblas", "gemm_lowp",
                                          "gemm_onednn", "gemm_onednn_int8", "cuda_gemm",
                                          "cuda_gemm_cublas", "cuda_conv2d", "cuda_reduce_rows",
                                          "cuda_softmax"}));
  auto cuda_gemm =
      RunKtune({"kernels", "cuda_gemm", "--problem", "M=4096,N=4096,K=4096", "--json"});
  ASSERT_EQ(cuda_gemm.exit_code, 0) << cuda_gemm.err;
  auto cg = nlohmann::json::parse(cuda_gemm.out)[0];
  EXPECT_EQ(cg["language"], "cuda");
  EXPECT_GT(cg["space_size"].get<int64_t>(), 10000);
  auto f16 =
      RunKtune({"kernels", "cuda_gemm", "--problem", "M=4096,N=4096,K=4096,dtype=f16", "--json"});
  ASSERT_EQ(f16.exit_code, 0) << f16.err;
  EXPECT_GT(nlohmann::json::parse(f16.out)[0]["space_size"].get<int64_t>(), 100);
  auto gemm = RunKtune({"kernels", "gemm", "--problem", "M=512,N=512,K=512", "--json"});
  ASSERT_EQ(gemm.exit_code, 0) << gemm.err;
  auto g = nlohmann::json::parse(gemm.out)[0];
  EXPECT_GT(g["space_size"].get<int64_t>(), 10000);
  EXPECT_EQ(g["default_config"]["MR"], 6);
  EXPECT_EQ(g["version"].get<std::string>().size(), 16u);
  auto text = RunKtune({"kernels"});
  EXPECT_THAT(text.out, HasSubstr("MR in {1, 2, 4, 6, 8, 12, 16} [compile-time]"));
}

// ktune starts and works on a machine without the NVIDIA driver: GPU commands say why they
// cannot run (exit 1), everything else works (this whole suite runs on such machines).
TEST(CliTest, GpuCommandsWithoutAGpuSayWhy) {
  TempDir dir;
  auto tune = RunKtune({"tune", "--kernel", "cuda_gemm", "--device", "cuda", "--problem",
                        "M=64,N=64,K=64", "--budget", "2", "--db", dir.File("k.db")});
  if (tune.exit_code == 0) GTEST_SKIP() << "a GPU is present: tuning on it ran";
  EXPECT_EQ(tune.exit_code, 1) << tune.err;
  EXPECT_THAT(tune.err, HasSubstr("no usable CUDA device cuda:0"));
  auto worker = RunKtune({"worker", "--device", "cuda", "--server", "localhost:1"});
  EXPECT_EQ(worker.exit_code, 1);
  EXPECT_THAT(worker.err, HasSubstr("no usable CUDA device cuda:0"));
  auto best =
      RunKtune({"best", "--kernel", "cuda_gemm", "--device", "cuda", "--db", dir.File("k.db")});
  EXPECT_EQ(best.exit_code, 1);
  EXPECT_THAT(best.err, HasSubstr("name the GPU model with --device"));
}

struct Optimum {
  std::string config_json;
  double time_ms;
};

// The fastest correct configuration, read straight from the file with no ktune code.
Optimum FileOptimum(const std::string& path) {
  auto doc = nlohmann::json::parse(testing::ReadGzipFile(path));
  Optimum best{"", 1e300};
  if (doc.contains("results")) {
    for (const auto& r : doc["results"]) {
      if (r["invalidity"] != "correct") continue;
      for (const auto& m : r["measurements"]) {
        if (m["name"] == "time" && m["value"].is_number() &&
            m["value"].get<double>() < best.time_ms) {
          best = {r["configuration"].dump(), m["value"].get<double>()};
        }
      }
    }
  } else {
    for (const auto& [key, e] : doc["cache"].items()) {
      if (!e["time"].is_number() || e["time"].get<double>() >= 1e20) continue;
      if (e["time"].get<double>() < best.time_ms) {
        nlohmann::json config;
        for (const auto& k : doc["tune_params_keys"])
          config[k.get<std::string>()] = e[k.get<std::string>()];
        best = {config.dump(), e["time"].get<double>()};
      }
    }
  }
  return best;
}

TEST(CliTest, BestReturnsTheOptimumOfEverySharedSpace) {
  std::vector<std::string> files = testing::AllSpaceFiles();
  ASSERT_EQ(files.size(), 17u) << "expected the 17 recorded spaces in " << KTUNE_DATASETS_DIR;
  TempDir dir;
  for (const std::string& name : files) {
    std::string db = dir.File(name + ".db");
    auto imported = RunKtune({"db", "import", SpaceFile(name), "--db", db});
    ASSERT_EQ(imported.exit_code, 0) << name << ": " << imported.err;
    // <kernel>_<device>_<format>.json.gz
    std::string kernel = name.substr(0, name.find('_'));
    size_t fmt =
        name.find(name.find("_T4.") != std::string::npos ? "_T4." : "_kernel_tuner_cache.");
    std::string device = name.substr(kernel.size() + 1, fmt - kernel.size() - 1);
    auto best = RunKtune({"best", "--db", db, "--kernel", kernel, "--device", device, "--json"});
    ASSERT_EQ(best.exit_code, 0) << name << ": " << best.err;
    auto answer = nlohmann::json::parse(best.out);
    ASSERT_EQ(answer["level"], "device_class") << name;
    ASSERT_EQ(answer["best"].size(), 1u) << name;
    Optimum want = FileOptimum(SpaceFile(name));
    EXPECT_EQ(answer["best"][0]["config"].dump(), want.config_json) << name;
    EXPECT_EQ(answer["best"][0]["time_ms"].get<double>(), want.time_ms) << name;
  }
}

}  // namespace
}  // namespace ktune
