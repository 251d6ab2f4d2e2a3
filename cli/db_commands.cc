// ktune db import | export | stats | check
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "cli/task_query.h"
#include "common/file_lock.h"
#include "common/file_util.h"
#include "db/interchange/record_files.h"
#include "db/task_columns.h"
#include "google/protobuf/util/json_util.h"
#include "kernels/kernel_registry.h"
#include "measurer/cpu_device.h"
#include "proto/convert.h"
#include "server/client_kernels.h"

namespace ktune::cli {
namespace {

// `word` as one shell word: as it is when it is plain, else in single quotes.
std::string ShellWord(const std::string& word) {
  const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return absl::ascii_isalnum(c) || (c != '\0' && std::strchr("_@%+=:,./-", c) != nullptr);
  });
  if (plain) return word;
  return absl::StrCat("'", absl::StrReplaceAll(word, {{"'", "'\\''"}}), "'");
}

struct ImportArgs {
  std::string db, file, format = "auto", kernel, device, problem;
  bool json = false;
};

int RunImport(const ImportArgs& a) {
  const std::string cmd = "db import";
  auto format = ParseRecordFileFormat(a.format);
  if (!format.ok()) return UsageError(cmd, std::string(format.status().message()));
  auto problem = ParseParamMapAssignments(a.problem);
  if (!problem.ok())
    return UsageError(cmd, absl::StrCat("--problem: ", problem.status().message()));
  // The file first: a missing one left a new, empty database behind.
  if (std::error_code ec; !std::filesystem::exists(a.file, ec)) {
    return Fail(cmd, absl::NotFoundError(absl::StrCat("cannot read ", a.file, ": no such file")));
  }
  std::error_code ec;
  const bool existed = std::filesystem::exists(a.db, ec);
  auto db = OpenDatabase(a.db);
  if (!db.ok()) return Fail(cmd, db.status());
  ReadOptions options;
  options.format = *format;
  options.kernel = a.kernel;
  options.device = a.device;
  options.problem = *problem;
  absl::Time start = absl::Now();
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  AddClientKernels(**db, &registry);
  // A client kernel's spec the file carries (ktune's own JSONL export of one) is registered in
  // this database first, as `kernels register` would: the copy's best and explain read its
  // problems as the original did (without it, R=1024,C=1024 missed records of dtype=f32).
  ClientKernels client_kernels(db->get(), &registry);
  const auto register_kernel = [&](const std::string& json) -> absl::Status {
    v1::KernelSpec spec;
    if (auto parsed = google::protobuf::util::JsonStringToMessage(json, &spec); !parsed.ok()) {
      return absl::InvalidArgumentError(parsed.message().ToString());
    }
    absl::Status registered = client_kernels.Register(spec).status();
    if (absl::IsAlreadyExists(registered)) {
      // Another kernel holds the name here (a name is kept for good): the records still come in,
      // as before specs travelled with them.
      std::cerr << "ktune " << cmd << ": note: the file's kernel '" << spec.name()
                << "' is not registered here: " << registered.message() << "\n";
      return absl::OkStatus();
    }
    return registered;
  };
  auto summary = ImportRecordFile(**db, a.file, options, &registry, register_kernel);
  // A file that could not be imported leaves no new, empty database behind (a renamed copy
  // that does not name its kernel did).
  const auto forget_new_database = [&] {
    if (existed) return;
    db->reset();
    for (const char* suffix : {"", "-wal", "-shm", ".lock"}) {
      std::filesystem::remove(a.db + suffix, ec);
    }
  };
  if (!summary.ok()) {
    forget_new_database();
    return Fail(cmd, summary.status());
  }
  // An empty file is almost always the wrong file (or a pipe whose producer failed); saying
  // "0 records added" with exit 0 would hide it (kubectl apply and git apply refuse it too).
  if (summary->records_read == 0) {
    forget_new_database();
    return Fail(cmd, absl::InvalidArgumentError(absl::StrCat(a.file, " holds no records")));
  }
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  // A server serving the file answers best and explain from its cache, which another process's
  // records do not reach until it restarts (server/best_cache.h): said, not refused (an import
  // beside a server is an expected writer: docs/operations.md).
  if (summary->records_added > 0) {
    std::error_code canonical_ec;
    const std::filesystem::path real = std::filesystem::canonical(a.db, canonical_ec);
    auto lock = ExclusiveFileLock::Acquire((canonical_ec ? a.db : real.string()) + ".lock",
                                           absl::ZeroDuration());
    if (!lock.ok() && absl::IsFailedPrecondition(lock.status())) {
      std::cerr << "ktune " << cmd << ": note: a ktune server is serving " << a.db << " ("
                << lock.status().message()
                << "): it answers best and explain from its cache, and serves these records "
                   "once it restarts\n";
    }
  }
  if (a.json) {
    std::cout << nlohmann::json{{"file", a.file},
                                {"format", RecordFileFormatName(summary->format)},
                                {"records_read", summary->records_read},
                                {"records_added", summary->records_added},
                                {"already_present", summary->records_read - summary->records_added},
                                {"seconds", seconds},
                                {"stale_tasks", summary->stale_tasks},
                                {"kernels_registered", summary->kernels_registered},
                                {"left_open", summary->left_open},
                                {"problem_size_not_kept", summary->problem_size_not_kept}}
                     .dump(-1, ' ', false, kReplaceInvalidUtf8)
              << "\n";
  } else {
    std::cout << "imported " << a.file << " (" << RecordFileFormatName(summary->format)
              << "): " << summary->records_added << " records added, "
              << summary->records_read - summary->records_added << " already present, in "
              << absl::StrFormat("%.2f", seconds) << " s\n";
    if (summary->kernels_registered > 0) {
      std::cout << "  " << summary->kernels_registered
                << " client kernel specs registered (or already there), as the exporting "
                   "database had them\n";
    }
    if (summary->stale_tasks > 0) {
      std::cout << "  " << summary->stale_tasks
                << " tasks' records from before a regression stay stale, as in the exporting "
                   "database\n";
    }
  }
  if (summary->left_open) {
    std::cerr << "ktune " << cmd
              << ": note: a Kernel Tuner cache left open by an interrupted run (no closing "
                 "braces): read up to its last whole entry, as Kernel Tuner reads it\n";
  }
  if (!summary->problem_size_not_kept.empty()) {
    std::cerr << "ktune " << cmd << ": note: the file's problem_size "
              << summary->problem_size_not_kept
              << " is not kept (ktune cannot name its dimensions): its records are filed under "
                 "the problem {}, with any other file of this kernel and device; give --problem "
                 "NAME=VALUE,... to keep problem sizes apart\n";
  }
  return kExitOk;
}

struct ExportArgs {
  std::string db, format = "jsonl", out, kernel, device, problem;
};

int RunExport(const ExportArgs& a) {
  const std::string cmd = "db export";
  auto format = ParseRecordFileFormat(a.format);
  if (!format.ok() || *format == RecordFileFormat::kAuto) {
    return UsageError(cmd, "--format must be jsonl, t4 or kernel-tuner");
  }
  auto problem = ParseParamMapAssignments(a.problem);
  if (!problem.ok())
    return UsageError(cmd, absl::StrCat("--problem: ", problem.status().message()));
  // The filters as best and explain read them: a registry kernel's problem as its tasks store it
  // (dtype filled in: M=64,N=64,K=64 matched nothing), and cpu as this machine's class.
  // The problem as given matches too: records of another kernel imported under a registry
  // kernel's name keep the file's problem when the kernel does not take it, and records imported
  // before imports filled in the defaults keep theirs.
  const std::string device_class =
      a.device == "cpu" ? DescribeThisCpu(/*measure_clock=*/false).ToDeviceInfo().device_class
                        : a.device;
  // An export replaces --out: never a database (`--out` = `--db` would destroy what it exports).
  if (!a.out.empty() && a.out != "-" && IsSqliteFile(a.out)) {
    return UsageError(cmd, absl::StrCat("--out ", a.out,
                                        " is a SQLite database; an export does not overwrite one"));
  }
  auto db = OpenExistingDatabase(a.db);
  if (!db.ok()) return Fail(cmd, db.status());
  // Kernels registered in the database too (a client kernel's problem as its tasks store it).
  KernelRegistry registry = KernelRegistry::WithBuiltins();
  AddClientKernels(**db, &registry);
  // Without --kernel, the problem is filled in as each record's kernel stores it (--problem
  // M=64,N=64,K=64 alone matched no gemm record).
  // Filled in once a kernel: a JSONL export tests every record.
  absl::flat_hash_map<std::string, std::optional<Problem>> filled_for;
  const auto problem_matches = [&](const std::string& kernel, const Problem& p) {
    if (a.problem.empty() || p == *problem) return true;
    auto [it, added] = filled_for.try_emplace(kernel);
    if (added) it->second = RegistryProblem(registry, kernel, *problem);
    return it->second.has_value() && p == *it->second;
  };
  std::ostringstream out;
  absl::StatusOr<int64_t> written;
  int64_t task_records = 0;  // of a T4 or Kernel Tuner export's task
  if (*format == RecordFileFormat::kJsonl) {
    // --kernel, --device and --problem keep the records that match all that are given.
    std::set<std::string> kernels;
    written = ExportJsonl(**db, out, [&](const Record& r) {
      const bool keep = (a.kernel.empty() || r.kernel == a.kernel) &&
                        (device_class.empty() || r.device.device_class == device_class) &&
                        problem_matches(r.kernel, r.problem);
      if (keep) kernels.insert(r.kernel);
      return keep;
    });
    // The client kernels of the records come first, as specs an import registers (a copy of a
    // client kernel's records did not know the kernel, and missed them).
    std::string specs;
    for (const std::string& name : kernels) {
      const KernelDefinition* k = registry.Find(name);
      if (k == nullptr || k->builtin) continue;
      std::string json;
      google::protobuf::util::JsonPrintOptions print;
      print.preserve_proto_field_names = true;
      if (!google::protobuf::util::MessageToJsonString(ToProto(*k), &json, print).ok()) continue;
      absl::StrAppend(&specs, nlohmann::json{{kKernelSpecKey, nlohmann::json::parse(json)}}.dump(),
                      "\n");
    }
    if (!specs.empty()) out.str(specs + out.str());
  } else {
    // A T4 or Kernel Tuner file holds one task: pick it from the flags, or the only one there is.
    auto tasks = (*db)->ListTasks();
    if (!tasks.ok()) return Fail(cmd, tasks.status());
    std::vector<TaskKey> matching;
    for (const TaskKey& t : *tasks) {
      if ((a.kernel.empty() || t.kernel == a.kernel) &&
          (device_class.empty() || t.device_class == device_class) &&
          problem_matches(t.kernel, t.problem)) {
        matching.push_back(t);
      }
    }
    if (matching.size() != 1) {
      std::string list;  // lines to paste: a class with a space ("cpu:AMD EPYC") quoted
      for (const TaskKey& t : matching) {
        absl::StrAppend(&list, "\n  --kernel ", ShellWord(t.kernel), " --device ",
                        ShellWord(t.device_class), t.problem.empty() ? "" : " --problem ",
                        ShellWord(FormatParamMapAssignments(t.problem)));
      }
      // Nothing to export is a result, as for a JSONL export (exit 1); several tasks need the
      // command line to say which (usage).
      if (matching.empty()) {
        return Fail(cmd, absl::NotFoundError(tasks->empty()
                                                 ? absl::StrCat(a.db, " holds no records")
                                                 : "no task matches --kernel/--device/--problem"));
      }
      return UsageError(cmd,
                        absl::StrCat("a ", RecordFileFormatName(*format), " file holds one task; ",
                                     matching.size(), " match, choose one:", list));
    }
    written = *format == RecordFileFormat::kT4 ? ExportT4(**db, matching.front(), out)
                                               : ExportKernelTuner(**db, matching.front(), out);
    // Neither format holds a measured error: the copy answers no accuracy budget, and a record
    // refused by one reads back as a wrong result. Said, not refused (every CPU measurement has
    // an error, and the times are still worth exporting).
    // Nor more than one device: the records of several fingerprints of the class come back
    // under the class alone (an A100 PCIe's and an A100 SXM's best became one).
    absl::StatusOr<std::vector<Record>> records =
        written.ok() ? (*db)->TaskRecords(matching.front()) : written.status();
    if (records.ok()) {
      std::set<std::string> devices;
      for (const Record& r : *records) devices.insert(r.device.fingerprint_json);
      if (devices.size() > 1) {
        std::cerr << "ktune: note: the records are of " << devices.size() << " devices of class "
                  << matching.front().device_class << " (fingerprints), and a "
                  << RecordFileFormatName(*format)
                  << " file names one: they import back under the class alone; --format jsonl "
                     "keeps each device\n";
      }
    }
    if (absl::StatusOr<TaskColumns> c = (*db)->TaskRecordColumns(matching.front());
        written.ok() && c.ok()) {
      task_records = static_cast<int64_t>(c->size());
      const int64_t with_error = std::count_if(c->max_rel_error.begin(), c->max_rel_error.end(),
                                               [](double e) { return !std::isnan(e); });
      const int64_t refused =
          std::count(c->status.begin(), c->status.end(), MeasurementStatus::kTooInaccurate);
      if (with_error > 0) {
        std::cerr << "ktune: note: " << with_error << " of the " << c->size()
                  << " records have a measured error, which a " << RecordFileFormatName(*format)
                  << " file cannot hold (the copy answers no --max-rel-error"
                  << (refused > 0
                          ? absl::StrCat(
                                ", and its ", refused, " too_inaccurate records read back as ",
                                *format == RecordFileFormat::kT4 ? "wrong_result" : "runtime_error")
                          : "")
                  << "); --format jsonl keeps them\n";
      }
    }
  }
  if (!written.ok()) return Fail(cmd, written.status());
  // Nothing to export never replaces --out (a mistyped --kernel emptied the backup it named).
  if (*written == 0) {
    const bool filtered = !a.kernel.empty() || !a.device.empty() || !a.problem.empty();
    const std::string kept =
        a.out.empty() || a.out == "-" ? "" : absl::StrCat("; ", a.out, " is left as it was");
    return Fail(cmd,
                absl::NotFoundError(
                    filtered ? absl::StrCat("no record matches --kernel/--device/--problem", kept)
                             : absl::StrCat(a.db, " holds no records", kept)));
  }
  if (a.out.empty() || a.out == "-") {
    std::cout << out.str();
  } else {
    bool gzip = absl::EndsWith(a.out, ".gz");
    absl::Status st = WriteFileAtomically(a.out, out.str(), gzip);
    if (!st.ok()) return Fail(cmd, st);
    if (*format == RecordFileFormat::kKernelTuner) {
      // A cache has one entry a configuration: say so where records were merged (32 records
      // came out as 31 without a word).
      std::cerr << "exported " << *written << " configurations to " << a.out;
      if (task_records > *written) {
        std::cerr << " (" << task_records << " records: a Kernel Tuner cache keeps one entry a "
                  << "configuration, the fastest ok record of one measured more than once)";
      }
      std::cerr << "\n";
    } else {
      std::cerr << "exported " << *written << " records to " << a.out << "\n";
    }
  }
  return kExitOk;
}

struct MigrateArgs {
  std::string db;
  bool json = false;
};

// What `db migrate` did, as text or JSON.
void PrintMigration(const MigrateArgs& a, int schema_version, bool migrated) {
  if (a.json) {
    std::cout << nlohmann::json{{"db", a.db},
                                {"schema_version", schema_version},
                                {"migrated", migrated}}
                     .dump(-1, ' ', false, kReplaceInvalidUtf8)
              << "\n";
  } else if (migrated) {
    std::cout << a.db << ": upgraded to schema version " << schema_version << "\n";
  } else {
    std::cout << a.db << ": schema version " << schema_version << ", this build's; nothing to do\n";
  }
}

// Upgrades an older file to this build's schema, on purpose: commands that only read refuse one
// (OpenExistingDatabase), writing ones upgrade it as they open it.
int RunMigrate(const MigrateArgs& a) {
  const std::string cmd = "db migrate";
  auto current = OpenExistingDatabase(a.db);
  if (current.ok()) {
    PrintMigration(a, (*current)->schema_version(), /*migrated=*/false);
    return kExitOk;
  }
  if (!absl::IsFailedPrecondition(current.status()) ||
      !absl::StrContains(current.status().message(), "older ktune")) {
    return Fail(cmd, current.status());
  }
  // Not under a running server (it holds FILE.lock): an older server would go on writing the
  // file without what the new schema keeps. A server upgrades the file itself when it starts.
  std::error_code ec;
  const std::filesystem::path real = std::filesystem::canonical(a.db, ec);
  auto lock =
      ExclusiveFileLock::Acquire((ec ? a.db : real.string()) + ".lock", absl::ZeroDuration());
  if (!lock.ok()) {
    return Fail(cmd, absl::FailedPreconditionError(absl::StrCat(
                         "a ktune server is serving ", a.db, " (", lock.status().message(),
                         "): stop it first; a server of the new version upgrades the file itself "
                         "when it starts")));
  }
  auto upgraded = OpenDatabase(a.db);
  if (!upgraded.ok()) return Fail(cmd, upgraded.status());
  PrintMigration(a, (*upgraded)->schema_version(), /*migrated=*/true);
  return kExitOk;
}

struct StatsArgs {
  std::string db;
  bool json = false;
};

int RunStats(const StatsArgs& a) {
  auto db = OpenExistingDatabase(a.db);
  if (!db.ok()) return Fail("db stats", db.status());
  auto stats = (*db)->Stats();
  if (!stats.ok()) return Fail("db stats", stats.status());
  if (a.json) {
    std::cout << nlohmann::json{{"db", a.db},
                                {"schema_version", (*db)->schema_version()},
                                {"kernels", stats->kernels},
                                {"workloads", stats->workloads},
                                {"devices", stats->devices},
                                {"records", stats->records},
                                {"records_by_status", stats->records_by_status},
                                {"jobs", stats->jobs}}
                     .dump(-1, ' ', false, kReplaceInvalidUtf8)
              << "\n";
    return kExitOk;
  }
  std::cout << a.db << " (schema version " << (*db)->schema_version() << ")\n"
            << "  kernels    " << stats->kernels << "\n"
            << "  workloads  " << stats->workloads << "\n"
            << "  devices    " << stats->devices << "\n"
            << "  records    " << stats->records << "\n";
  for (const auto& [status, count] : stats->records_by_status) {
    std::cout << "    " << status << std::string(16 - std::min<size_t>(status.size(), 15), ' ')
              << count << "\n";
  }
  std::cout << "  jobs       " << stats->jobs << "\n";
  return kExitOk;
}

struct CheckArgs {
  std::string db;
  bool repair = false, json = false;
};

// Exit 0 when the file is sound (or was repaired), 1 when it is not.
int RunCheck(const CheckArgs& a) {
  const std::string cmd = "db check";
  auto db = OpenExistingDatabase(a.db);
  if (!db.ok()) return Fail(cmd, db.status());
  absl::Status found = (*db)->CheckIntegrity();
  bool repaired = false;
  if (!found.ok() && a.repair && absl::StrContains(found.message(), "task columns")) {
    std::cerr << "ktune db check: " << found.message() << "\nrebuilding the task columns...\n";
    absl::Status rebuilt = (*db)->RebuildTaskColumns();
    if (!rebuilt.ok()) return Fail(cmd, rebuilt);
    found = (*db)->CheckIntegrity();
    repaired = found.ok();
  }
  if (a.json) {
    std::cout << nlohmann::json{{"db", a.db},
                                {"ok", found.ok()},
                                {"repaired", repaired},
                                {"problem", std::string(found.message())}}
                     .dump(-1, ' ', false, kReplaceInvalidUtf8)
              << "\n";
    return found.ok() ? kExitOk : kExitFailure;
  }
  if (!found.ok()) return Fail(cmd, found);
  std::cout << a.db << ": ok (SQLite integrity check; task columns in step with the records"
            << (repaired ? ", after rebuilding them" : "") << ")\n";
  return kExitOk;
}

}  // namespace

void RegisterDbCommands(CLI::App& app, Action* action) {
  CLI::App* db = app.add_subcommand("db", "Tuning database: import, export, stats, check, migrate");
  db->require_subcommand(1);

  auto import_args = std::make_shared<ImportArgs>();
  CLI::App* imp = db->add_subcommand(
      "import", "Import a T4, Kernel Tuner cache or JSONL file (gzip or plain) in one transaction");
  AddDbOption(imp, &import_args->db);
  imp->add_option("FILE", import_args->file, "File to import")->required();
  imp->add_option("--format", import_args->format,
                  "t4, kernel-tuner, jsonl or auto (from the content)")
      ->capture_default_str();
  imp->add_option(
      "--kernel", import_args->kernel,
      "Kernel name (default: from a <kernel>_<device>_<format> file name, or the file)");
  imp->add_option("--device", import_args->device, "Device name (default: as for --kernel)");
  imp->add_option("--problem", import_args->problem,
                  "Problem the file was measured on, e.g. M=4096,N=4096 (default: none)");
  imp->add_flag("--json", import_args->json, "Print the summary as JSON");
  imp->callback([=] { *action = [=] { return RunImport(*import_args); }; });

  auto export_args = std::make_shared<ExportArgs>();
  CLI::App* exp = db->add_subcommand("export", "Export records as JSONL (all), or T4 or a Kernel Tuner cache (one task)");
  AddDbOption(exp, &export_args->db);
  exp->add_option("--format", export_args->format, "jsonl, t4 or kernel-tuner")->capture_default_str();
  exp->add_option("--out", export_args->out, "Output file (.gz compresses; default: stdout)");
  exp->add_option("--kernel", export_args->kernel,
                  "The task's kernel (T4, kernel-tuner); jsonl: only this kernel's records");
  exp->add_option("--device", export_args->device,
                  "The task's device class (T4, kernel-tuner); jsonl: only this class's records");
  exp->add_option("--problem", export_args->problem,
                  "The task's problem (T4, kernel-tuner); jsonl: only this problem's records");
  exp->callback([=] { *action = [=] { return RunExport(*export_args); }; });

  auto stats_args = std::make_shared<StatsArgs>();
  CLI::App* stats =
      db->add_subcommand("stats", "Counts of kernels, workloads, devices, records, jobs");
  AddDbOption(stats, &stats_args->db);
  stats->add_flag("--json", stats_args->json, "Print as JSON");
  stats->callback([=] { *action = [=] { return RunStats(*stats_args); }; });

  auto migrate_args = std::make_shared<MigrateArgs>();
  CLI::App* migrate = db->add_subcommand(
      "migrate",
      "Upgrade a file of an older ktune to this build's schema (one way: back it up first); "
      "commands that only read refuse such a file");
  AddDbOption(migrate, &migrate_args->db);
  migrate->add_flag("--json", migrate_args->json, "Print the result as JSON");
  migrate->callback([=] { *action = [=] { return RunMigrate(*migrate_args); }; });

  auto check_args = std::make_shared<CheckArgs>();
  CLI::App* check = db->add_subcommand(
      "check",
      "Check the file: SQLite's integrity check, and that the task columns explain reads hold "
      "every record (exit 1 when not)");
  AddDbOption(check, &check_args->db);
  check->add_flag("--repair", check_args->repair,
                  "Rebuild the task columns from the records when they are out of step");
  check->add_flag("--json", check_args->json, "Print the result as JSON");
  check->callback([=] { *action = [=] { return RunCheck(*check_args); }; });
}

}  // namespace ktune::cli
