// Reading and writing record files: T4 and Kernel Tuner cache files (as in
// ../shared/datasets/spaces, gzip or plain) and ktune's own JSONL.
//
// Reading never touches a database: it returns records, or an error that names the file and
// where it broke (line and column for JSON syntax, the entry for a bad field).
#ifndef KTUNE_DB_INTERCHANGE_RECORD_FILES_H_
#define KTUNE_DB_INTERCHANGE_RECORD_FILES_H_

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "db/record.h"
#include "db/tuning_database.h"
#include "kernels/search_space.h"

namespace ktune {

enum class RecordFileFormat { kAuto, kT4, kKernelTuner, kJsonl };
absl::string_view RecordFileFormatName(RecordFileFormat f);  // "t4", "kernel-tuner", "jsonl"
// "t4", "kernel-tuner" (or "kernel_tuner"), "jsonl", "auto".
absl::StatusOr<RecordFileFormat> ParseRecordFileFormat(absl::string_view name);

struct ReadOptions {
  RecordFileFormat format = RecordFileFormat::kAuto;  // kAuto: from the content
  // T4 and Kernel Tuner files only. Empty kernel/device: taken from a file name of the form
  // <kernel>_<device>_(T4|kernel_tuner_cache).json[.gz], else from the file (Kernel Tuner's
  // kernel_name and device_name), else an error that asks for --kernel / --device.
  std::string kernel;
  std::string device;
  Problem problem;  // the problem the file's measurements were taken on; default {}
};

struct RecordFile {
  RecordFileFormat format = RecordFileFormat::kAuto;
  std::vector<Record> records;  // in file order
  // A Kernel Tuner cache's problem_size (as JSON) when the records do not keep it: their problem
  // is ReadOptions::problem, and files of one kernel and device with other problem sizes land in
  // the same task unless the caller names each file's problem. Empty otherwise.
  std::string problem_size_not_kept;
  // JSONL: the stale boundaries its lines carry ("stale_before_us"), the latest per task: an
  // import marks them again (TuningDatabase::MarkStale), so that a backup restored does not
  // answer with records a regression retired.
  std::vector<std::pair<TaskKey, int64_t>> stale;
  // A Kernel Tuner cache left open by an interrupted run (no closing braces), read as Kernel
  // Tuner reads it.
  bool left_open = false;
  // JSONL: the client kernels' specs the file carries (lines {"ktune_kernel_spec": {...}}, a
  // v1.KernelSpec as protobuf JSON), so that a copy knows its kernels as the original did.
  std::vector<std::string> kernel_specs;
};

// A JSONL line that carries a client kernel's spec: {"ktune_kernel_spec": SPEC}.
inline constexpr char kKernelSpecKey[] = "ktune_kernel_spec";
inline constexpr char kKernelSpecLinePrefix[] = "{\"ktune_kernel_spec\":";

absl::StatusOr<RecordFile> ReadRecordFile(const std::string& path, const ReadOptions& options);

// A recorded space: the search space whose valid set is the file's configurations, with the
// file's records (ReplayMeasurer answers from them).
// A file that lists a configuration more than once keeps one record of it: its fastest ok
// entry, or its first failure (duplicates_merged counts the others). A file none of whose
// configurations ran ok is refused (InvalidArgument).
struct RecordedSpace {
  SearchSpace space;
  std::vector<Record> records;  // one a configuration
  int64_t duplicates_merged = 0;
};
absl::StatusOr<RecordedSpace> LoadRecordedSpace(const std::string& path,
                                                const ReadOptions& options = {});

// The "language" a recorded space's task is measured in, as a replay worker of its file says it
// can measure (WorkerCapabilities::languages) and the scheduler leases its task: only to such a
// worker. "replay:" and 16 hex digits of a hash of the kernel and the canonical problem (a
// worker's language names are at most 32 bytes). (A replay worker of another file of the same
// device class answered every candidate of this one invalid_config, stored for good.)
std::string RecordedSpaceLanguage(const std::string& kernel, const Problem& problem);

struct ImportSummary {
  RecordFileFormat format = RecordFileFormat::kAuto;
  int64_t records_read = 0;
  int64_t records_added = 0;  // the rest were already stored
  std::string problem_size_not_kept;  // RecordFile::problem_size_not_kept
  int64_t stale_tasks = 0;            // tasks whose stale boundary the file carried, marked again
  bool left_open = false;             // RecordFile::left_open
  int64_t kernels_registered = 0;     // RecordFile::kernel_specs given to register_kernel
};

// Reads `path` and stores its records in one transaction: all of the file or nothing. The stale
// boundaries a JSONL file carries are marked after that commit; an error there says that the
// records were stored.
// With `registry`, records of its kernels are fitted to it (FitRecordToRegistry). With
// `register_kernel`, the kernel specs the file carries are given to it first (the spec's JSON);
// its error stops the import before any record is stored.
absl::StatusOr<ImportSummary> ImportRecordFile(
    TuningDatabase& db, const std::string& path, const ReadOptions& options,
    const KernelRegistry* registry = nullptr,
    const std::function<absl::Status(const std::string&)>& register_kernel = nullptr);

// Every record (that `keep` keeps, when given), one JSON object a line, in insertion order; a
// stale record (MarkStale) with its task's boundary ("stale_before_us", RecordToJsonLine).
// Returns how many were written.
absl::StatusOr<int64_t> ExportJsonl(TuningDatabase& db, std::ostream& out,
                                    const std::function<bool(const Record&)>& keep = nullptr);

// One task's records as a T4 file (a T4 file holds one kernel on one device). Neither this nor
// ExportKernelTuner writes a task whose records carry a client payload (FailedPrecondition): the
// formats cannot hold it. ok -> "correct";
// compile_error -> "compile"; runtime_error and lost -> "runtime"; timeout -> "timeout";
// wrong_result -> "correctness"; invalid_config -> "constraints".
absl::StatusOr<int64_t> ExportT4(TuningDatabase& db, const TaskKey& task, std::ostream& out);

// One task's records as a Kernel Tuner cache file (the JSON of `tune_kernel(cache=...)`), which
// Kernel Tuner reuses for the same kernel name, device name, problem size and parameters (in
// simulation mode, on any device) and `ktune db import` reads back. Keys are "v1,v2,..." over
// the sorted parameter names; ok records carry `time` (time_ms) and `times` (the repeats);
// failures carry Kernel Tuner's error name (InvalidConfig, CompilationFailedConfig,
// RuntimeFailedConfig) in `time` and `__error__`. The same format as the Python client's
// ktune.kernel_tuner.cache_document, "cache" last as Kernel Tuner needs. Kernel Tuner compares
// tune_params_keys with its call's parameter order: this file's is sorted by name (the Python
// bridge's export_cache writes the run's own order). The device name of a Kernel Tuner C or
// Fortran device is empty, as Kernel Tuner names it. Returns the number of entries.
// One entry per configuration: of one measured more than once, its fastest ok record, else its
// latest. Returns the number of entries.
absl::StatusOr<int64_t> ExportKernelTuner(TuningDatabase& db, const TaskKey& task,
                                          std::ostream& out);

}  // namespace ktune

#endif  // KTUNE_DB_INTERCHANGE_RECORD_FILES_H_
