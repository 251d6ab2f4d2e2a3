// Record files are read from the shared recorded spaces and from small files the tests write,
// broken in the ways real files break (truncated gzip, truncated JSON, a bad field); every
// failure must name the file and the place, and store nothing.
#include "db/interchange/record_files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "db/memory_tuning_database.h"
#include "db/sqlite_tuning_database.h"
#include "kernels/kernel_registry.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;
using testing::ReadWholeFile;
using testing::SpaceFile;
using testing::TempDir;

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

std::string Gunzipped(const std::string& path) { return testing::ReadGzipFile(path); }

TEST(RecordFilesTest, ReadsT4AndKernelTunerFilesOfTheSameMeasurementsAlike) {
  auto t4 = ReadRecordFile(SpaceFile("convolution_A100_T4.json.gz"), {});
  auto kt = ReadRecordFile(SpaceFile("convolution_A100_kernel_tuner_cache.json.gz"), {});
  ASSERT_TRUE(t4.ok()) << t4.status();
  ASSERT_TRUE(kt.ok()) << kt.status();
  EXPECT_EQ(t4->format, RecordFileFormat::kT4);
  EXPECT_EQ(kt->format, RecordFileFormat::kKernelTuner);
  ASSERT_EQ(t4->records.size(), 4362u);
  ASSERT_EQ(kt->records.size(), 4362u);
  std::map<std::string, const Record*> by_config;
  for (const Record& r : kt->records) by_config[r.ConfigHash()] = &r;
  int failed = 0;
  for (const Record& r : t4->records) {
    const Record* other = by_config.at(r.ConfigHash());
    EXPECT_EQ(r.status, other->status);
    EXPECT_EQ(r.time_ms, other->time_ms);
    EXPECT_EQ(r.repeat_times_ms, other->repeat_times_ms);
    EXPECT_EQ(r.kernel, "convolution");
    EXPECT_EQ(r.device.device_class, "A100");
    EXPECT_EQ(r.device.family, "ampere");
    failed += r.status != MeasurementStatus::kOk;
  }
  EXPECT_EQ(failed, 161);  // as the datasets README lists
}

TEST(RecordFilesTest, ImportingTheSameFileTwiceAddsNothing) {
  MemoryTuningDatabase db;
  auto first = ImportRecordFile(db, SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->records_added, 4092);
  auto second = ImportRecordFile(db, SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->records_read, 4092);
  EXPECT_EQ(second->records_added, 0);
  EXPECT_EQ(db.Stats()->records_by_status.at("runtime_error"), 330);
}

TEST(RecordFilesTest, JsonlExportReimportsToIdenticalRecords) {
  TempDir dir;
  auto db = SqliteTuningDatabase::Open(dir.File("a.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(ImportRecordFile(**db, SpaceFile("convolution_A4000_T4.json.gz"), {}).ok());
  ASSERT_TRUE(ImportRecordFile(**db, SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {}).ok());
  std::ostringstream first;
  ASSERT_EQ(*ExportJsonl(**db, first), 4362 + 4092);
  WriteFile(dir.File("export.jsonl"), first.str());

  auto copy = SqliteTuningDatabase::Open(dir.File("b.db"));
  ASSERT_TRUE(copy.ok());
  auto imported = ImportRecordFile(**copy, dir.File("export.jsonl"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->format, RecordFileFormat::kJsonl);
  EXPECT_EQ(imported->records_added, 4362 + 4092);
  std::ostringstream second;
  ASSERT_TRUE(ExportJsonl(**copy, second).ok());
  EXPECT_EQ(first.str(), second.str());
  // And into the original: all present already.
  EXPECT_EQ(ImportRecordFile(**db, dir.File("export.jsonl"), {})->records_added, 0);
}

// Records a regression retired (MarkStale) stay retired in a copy made by export and import:
// the export had no word of it, and the copy answered with the old fast times again.
TEST(RecordFilesTest, JsonlExportKeepsRecordsStaleInTheCopy) {
  TempDir dir;
  auto db = SqliteTuningDatabase::Open(dir.File("a.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(ImportRecordFile(**db, SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {}).ok());
  ASSERT_TRUE(ImportRecordFile(**db, SpaceFile("convolution_A4000_T4.json.gz"), {}).ok());
  auto tasks = (*db)->ListTasks();
  ASSERT_TRUE(tasks.ok());
  const TaskKey* pnpoly = nullptr;
  for (const TaskKey& t : *tasks) pnpoly = t.kernel == "pnpoly" ? &t : pnpoly;
  ASSERT_NE(pnpoly, nullptr);
  const TaskKey stale_task{pnpoly->kernel, "", pnpoly->problem, pnpoly->device_class};
  ASSERT_TRUE((*db)->MarkStale(stale_task, 1'800'000'000'000'000).ok());  // all its records
  std::ostringstream out;
  ASSERT_EQ(*ExportJsonl(**db, out), 4362 + 4092);
  size_t marked = 0;
  for (size_t at = out.str().find("\"stale_before_us\":1800000000000000"); at != std::string::npos;
       at = out.str().find("\"stale_before_us\":1800000000000000", at + 1)) {
    ++marked;
  }
  EXPECT_EQ(marked, 4092u);  // pnpoly's lines, not convolution's
  WriteFile(dir.File("export.jsonl"), out.str());

  for (const char* name : {"sqlite", "memory"}) {
    SCOPED_TRACE(name);
    std::unique_ptr<TuningDatabase> copy;
    if (std::string(name) == "sqlite") {
      copy = *SqliteTuningDatabase::Open(dir.File("b.db"));
    } else {
      copy = std::make_unique<MemoryTuningDatabase>();
    }
    auto imported = ImportRecordFile(*copy, dir.File("export.jsonl"), {});
    ASSERT_TRUE(imported.ok()) << imported.status();
    EXPECT_EQ(imported->records_added, 4362 + 4092);
    EXPECT_EQ(imported->stale_tasks, 1);
    EXPECT_TRUE(copy->TaskRecords(stale_task)->empty());
    EXPECT_EQ(copy->StaleTaskRecords(stale_task)->size(), 4092u);
    BestQuery q;
    q.kernel = stale_task.kernel;
    q.problem = stale_task.problem;
    q.device_class = stale_task.device_class;
    EXPECT_TRUE(copy->QueryBest(q)->stale);
    // The other task's records answer as before, and exporting the copy gives the same text.
    std::ostringstream again;
    ASSERT_TRUE(ExportJsonl(*copy, again).ok());
    EXPECT_EQ(again.str(), out.str());
  }
}

TEST(RecordFilesTest, T4ExportReimportsWithTheSameBest) {
  TempDir dir;
  MemoryTuningDatabase db;
  ASSERT_TRUE(ImportRecordFile(db, SpaceFile("convolution_A100_T4.json.gz"), {}).ok());
  TaskKey task{"convolution", "", {}, "A100"};
  std::ostringstream out;
  ASSERT_EQ(*ExportT4(db, task, out), 4362);
  WriteFile(dir.File("convolution_A100copy_T4.json"), out.str());

  MemoryTuningDatabase copy;
  auto imported = ImportRecordFile(copy, dir.File("convolution_A100copy_T4.json"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->records_added, 4362);
  BestQuery q{"convolution", "", {}, "", "A100", "", 3};
  BestQuery q_copy{"convolution", "", {}, "", "A100copy", "", 3};
  auto best = db.QueryBest(q), best_copy = copy.QueryBest(q_copy);
  ASSERT_EQ(best->records.size(), 3u);
  ASSERT_EQ(best_copy->records.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(best->records[i].config, best_copy->records[i].config);
    EXPECT_EQ(best->records[i].time_ms, best_copy->records[i].time_ms);
    EXPECT_EQ(best->records[i].repeat_times_ms, best_copy->records[i].repeat_times_ms);
    EXPECT_EQ(best->records[i].measured_at_us, best_copy->records[i].measured_at_us);
  }
  EXPECT_EQ(copy.Stats()->records_by_status.at("runtime_error"), 155);
  EXPECT_EQ(copy.Stats()->records_by_status.at("compile_error"), 6);
}

// A gemm record on cpu:x, MR=4, measured at `repeats`.
Record GemmRecord(std::vector<double> repeats) {
  Record r;
  r.kernel = "gemm";
  r.problem = {{"M", int64_t{64}}, {"N", int64_t{32}}, {"dtype", std::string("f32")}};
  r.device = DeviceInfo::FromName("cpu:x");
  r.config = {{"MR", int64_t{4}}};
  r.repeat_times_ms = std::move(repeats);
  FillRepeatStatistics(r);
  r.time_ms = r.median_ms;
  return r;
}

// ktune's T4 export carries its kernel, device and problem in the metadata: under any file name
// it imports back into the same task (it needed --kernel and --device, and lost the problem).
TEST(RecordFilesTest, T4ExportCarriesItsTaskUnderAnyName) {
  TempDir dir;
  MemoryTuningDatabase db;
  const Record r = GemmRecord({1.5, 1.25});
  ASSERT_TRUE(db.AddRecords({r}).ok());
  std::ostringstream out;
  ASSERT_EQ(*ExportT4(db, {"gemm", "", r.problem, "cpu:x"}, out), 1);
  WriteFile(dir.File("backup.json"), out.str());
  MemoryTuningDatabase copy;
  auto imported = ImportRecordFile(copy, dir.File("backup.json"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->records_added, 1);
  auto tasks = copy.ListTasks();
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].kernel, "gemm");
  EXPECT_EQ((*tasks)[0].problem, r.problem);
  EXPECT_EQ((*tasks)[0].device_class, "cpu:x");
}

// ktune's own T4 or Kernel Tuner export imported back where it came from adds nothing: neither
// format carries a record's id, and every measurement was stored again (a user trial's explain
// then counted 300 records for 100 measurements). Into another database it adds every one.
TEST(RecordFilesTest, AnExportImportedBackWhereItCameFromAddsNothing) {
  TempDir dir;
  MemoryTuningDatabase db;
  Record r = GemmRecord({1.5, 1.25, 1.1000000000000001});
  r.worker = "w1";
  r.source = "job:1";
  r.measured_at_us = 1'700'000'000'000'000;
  // A registry-like kernel's version and a CPU's fingerprint, which the T4 copy lost (its records
  // came back under another kernel version and device).
  r.kernel_version = "0123456789abcdef";
  r.device.fingerprint_json = R"({"cores":2,"name":"x"})";
  r.device.family = "x86-64-v3";
  Record failed = r;
  failed.config = {{"MR", int64_t{8}}};
  failed.status = MeasurementStatus::kCompileError;
  failed.message = "no";
  failed.repeat_times_ms.clear();
  FillRepeatStatistics(failed);
  failed.time_ms.reset();
  // The same configuration measured again, slower: a Kernel Tuner cache keeps the fastest.
  Record slower = r;
  slower.repeat_times_ms = {2.5, 2.25};
  FillRepeatStatistics(slower);
  slower.time_ms = slower.median_ms;
  slower.measured_at_us = *r.measured_at_us + 1;
  ASSERT_TRUE(db.AddRecords({slower, r, failed}).ok());
  const TaskKey task{"gemm", r.kernel_version, r.problem, "cpu:x"};
  std::ostringstream t4, kt;
  ASSERT_EQ(*ExportT4(db, task, t4), 3);
  ASSERT_EQ(*ExportKernelTuner(db, task, kt), 2);  // one entry a configuration
  EXPECT_NE(kt.str().find("1.25"), std::string::npos) << "the fastest record's times";
  EXPECT_EQ(kt.str().find("2.25"), std::string::npos) << kt.str();
  WriteFile(dir.File("back_t4.json"), t4.str());
  WriteFile(dir.File("back_kt.json"), kt.str());
  for (const char* file : {"back_t4.json", "back_kt.json"}) {
    auto imported = ImportRecordFile(db, dir.File(file), {});
    ASSERT_TRUE(imported.ok()) << file << ": " << imported.status();
    EXPECT_EQ(imported->records_added, 0) << file;
    EXPECT_GE(imported->records_read, 1) << file;
    MemoryTuningDatabase other;
    imported = ImportRecordFile(other, dir.File(file), {});
    ASSERT_TRUE(imported.ok()) << file << ": " << imported.status();
    EXPECT_EQ(imported->records_added, imported->records_read) << file;
  }
  EXPECT_EQ(db.Stats()->records, 3);
  MemoryTuningDatabase copy;
  ASSERT_TRUE(ImportRecordFile(copy, dir.File("back_t4.json"), {}).ok());
  ASSERT_EQ(copy.ListTasks()->size(), 1u);
  EXPECT_EQ(copy.ListTasks()->front().kernel_version, r.kernel_version);
  const std::vector<Record> copied = *copy.TaskRecords(task);
  ASSERT_EQ(copied.size(), 3u);
  EXPECT_EQ(copied.front().device.fingerprint_json, r.device.fingerprint_json);
  EXPECT_EQ(copied.front().device.family, r.device.family);
  // A measurement that differs (another repeat time) is another record.
  Record again = r;
  again.repeat_times_ms.back() = 1.2;
  FillRepeatStatistics(again);
  MemoryTuningDatabase one;
  ASSERT_TRUE(one.AddRecords({again}).ok());
  std::ostringstream other_t4;
  ASSERT_EQ(*ExportT4(one, task, other_t4), 1);
  WriteFile(dir.File("other_t4.json"), other_t4.str());
  auto imported = ImportRecordFile(db, dir.File("other_t4.json"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->records_added, 1);
}

// Entries without repeat times (another tool's T4 file) are told apart by their times, not taken
// for a stored record of the configuration; and records of several machines come back under
// their class alone, not all under the first one's fingerprint.
TEST(RecordFilesTest, AnImportTellsMeasurementsApartByTimeAndKeepsNoOneMachinesFingerprint) {
  TempDir dir;
  MemoryTuningDatabase db, other;
  Record stored = GemmRecord({});
  stored.time_ms = 1.0;
  Record later = stored;
  later.time_ms = 2.0;
  ASSERT_TRUE(db.AddRecords({stored}).ok());
  ASSERT_TRUE(other.AddRecords({later}).ok());
  const TaskKey task{"gemm", "", stored.problem, "cpu:x"};
  std::ostringstream t4;
  ASSERT_EQ(*ExportT4(other, task, t4), 1);
  WriteFile(dir.File("later.json"), t4.str());
  auto imported = ImportRecordFile(db, dir.File("later.json"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->records_added, 1);  // it was "already present"

  MemoryTuningDatabase two_hosts;
  Record a = GemmRecord({1.0}), b = GemmRecord({2.0});
  a.device.fingerprint_json = R"({"host":"a","name":"x"})";
  b.device.fingerprint_json = R"({"host":"b","name":"x"})";
  a.device.family = b.device.family = "x86-64-v3";  // shared: kept (it was wiped)
  b.config = {{"MR", int64_t{8}}};
  ASSERT_TRUE(two_hosts.AddRecords({a, b}).ok());
  std::ostringstream both;
  ASSERT_EQ(*ExportT4(two_hosts, task, both), 2);
  WriteFile(dir.File("both.json"), both.str());
  MemoryTuningDatabase copy;
  ASSERT_TRUE(ImportRecordFile(copy, dir.File("both.json"), {}).ok());
  const std::vector<Record> copied = *copy.TaskRecords(task);
  ASSERT_EQ(copied.size(), 2u);
  for (const Record& r : copied) {
    EXPECT_EQ(r.device.fingerprint_json, DeviceInfo::FromName("cpu:x").fingerprint_json);
    EXPECT_EQ(r.device.family, "x86-64-v3");
  }
  // Either file, imported back where it came from, adds nothing: records that know only their
  // class match any device of it (a Kernel Tuner export named the first host, and its round
  // trip stored both records again).
  EXPECT_EQ(ImportRecordFile(two_hosts, dir.File("both.json"), {})->records_added, 0);
  std::ostringstream both_kt;
  ASSERT_EQ(*ExportKernelTuner(two_hosts, task, both_kt), 2);
  WriteFile(dir.File("both_kt.json"), both_kt.str());
  auto kt_back = ImportRecordFile(two_hosts, dir.File("both_kt.json"), {});
  ASSERT_TRUE(kt_back.ok()) << kt_back.status();
  EXPECT_EQ(kt_back->records_read, 2);
  EXPECT_EQ(kt_back->records_added, 0);
  // The export's own names win over a file name that splits otherwise: a kernel with an
  // underscore under KERNEL_DEVICE_T4.json (my_kern_A100_T4.json read as kernel my, class
  // kern_A100).
  MemoryTuningDatabase named;
  Record k = GemmRecord({1.0});
  k.kernel = "my_kern";
  k.device = DeviceInfo::FromName("A100");
  ASSERT_TRUE(named.AddRecords({k}).ok());
  std::ostringstream named_t4;
  ASSERT_EQ(*ExportT4(named, {"my_kern", "", k.problem, "A100"}, named_t4), 1);
  WriteFile(dir.File("my_kern_A100_T4.json"), named_t4.str());
  MemoryTuningDatabase back;
  ASSERT_TRUE(ImportRecordFile(back, dir.File("my_kern_A100_T4.json"), {}).ok());
  ASSERT_EQ(back.ListTasks()->size(), 1u);
  EXPECT_EQ(back.ListTasks()->front().kernel, "my_kern");
  EXPECT_EQ(back.ListTasks()->front().device_class, "A100");
}

// Two devices of one class are two devices: equal times on another fingerprint are another
// measurement (an A100 SXM file after an A100 PCIe file lost every failure and every equal time
// as "already present"), while a file that names only the class matches any fingerprint of it,
// and a failure is that failure only at the same second (or when the file does not say when).
TEST(RecordFilesTest, AnImportKeepsAnotherDevicesMeasurementsOfTheSameClass) {
  MemoryTuningDatabase db;
  Record pcie = GemmRecord({1.0, 1.5});
  pcie.device.fingerprint_json = R"({"name":"A100-PCIE"})";
  pcie.measured_at_us = int64_t{1700000000} * 1000000;
  Record failed = pcie;
  failed.config = {{"MR", int64_t{8}}};
  failed.status = MeasurementStatus::kRuntimeError;
  failed.message = "launch failed";
  failed.time_ms.reset();
  failed.repeat_times_ms.clear();
  FillRepeatStatistics(failed);
  ASSERT_EQ(*db.AddRecords({pcie, failed}), 2);

  Record sxm = pcie, sxm_failed = failed;
  sxm.device.fingerprint_json = sxm_failed.device.fingerprint_json = R"({"name":"A100-SXM"})";
  EXPECT_EQ(*AddImportedRecords(db, {sxm, sxm_failed}, nullptr, /*by_measurement=*/true), 2);

  Record spaced = pcie;  // the same fingerprint as a client may write it
  spaced.device.fingerprint_json = R"({ "name": "A100-PCIE" })";
  EXPECT_EQ(*AddImportedRecords(db, {spaced}, nullptr, true), 0);

  Record class_only = pcie, class_only_failed = failed;
  class_only.device = class_only_failed.device = DeviceInfo::FromName("cpu:x");
  class_only_failed.measured_at_us.reset();
  EXPECT_EQ(*AddImportedRecords(db, {class_only, class_only_failed}, nullptr, true), 0);

  Record same_second = failed, next_day = failed;
  *same_second.measured_at_us += 400000;
  *next_day.measured_at_us += int64_t{86400} * 1000000;
  EXPECT_EQ(*AddImportedRecords(db, {same_second}, nullptr, true), 0);
  EXPECT_EQ(*AddImportedRecords(db, {next_day}, nullptr, true), 1);
}

// Two databases that imported the same file under two names hold the same measurements with two
// sources: merged through JSONL, they are stored once (the records doubled, and explain's counts
// with them).
TEST(RecordFilesTest, AJsonlMergeStoresMeasurementsImportedUnderAnotherNameOnce) {
  TempDir dir;
  WriteFile(dir.File("pnpoly_copy_T4.json.gz"),
            ReadWholeFile(SpaceFile("pnpoly_RTX_3090_T4.json.gz")));
  MemoryTuningDatabase x, y;
  ReadOptions as_3090;
  as_3090.kernel = "pnpoly";
  as_3090.device = "RTX_3090";
  ASSERT_TRUE(ImportRecordFile(x, SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {}).ok());
  ASSERT_TRUE(ImportRecordFile(y, dir.File("pnpoly_copy_T4.json.gz"), as_3090).ok());
  std::ostringstream jsonl;
  ASSERT_EQ(*ExportJsonl(x, jsonl), 4092);
  WriteFile(dir.File("x.jsonl"), jsonl.str());
  auto merged = ImportRecordFile(y, dir.File("x.jsonl"), {});
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->records_read, 4092);
  EXPECT_EQ(merged->records_added, 0);
  EXPECT_EQ(y.Stats()->records, 4092);
}

// A T4 measurement's own unit wins over metadata.timeunit (a time in seconds was stored as
// milliseconds, 1000x off).
TEST(RecordFilesTest, AT4MeasurementsOwnUnitIsRead) {
  TempDir dir;
  WriteFile(dir.File("tu_d_T4.json"),
            R"({"metadata":{"timeunit":"microseconds"},"results":[{"configuration":{"a":1},)"
            R"("measurements":[{"name":"time","value":0.002,"unit":"s"}]},)"
            R"({"configuration":{"a":2},"measurements":[{"name":"time","value":500}]}]})");
  MemoryTuningDatabase db;
  ASSERT_TRUE(ImportRecordFile(db, dir.File("tu_d_T4.json"), {}).ok());
  std::map<int64_t, double> times;
  for (const Record& r : *db.TaskRecords({"tu", "", {}, "d"})) {
    times[std::get<int64_t>(r.config.at("a"))] = *r.time_ms;
  }
  EXPECT_DOUBLE_EQ(times.at(1), 2.0);
  EXPECT_DOUBLE_EQ(times.at(2), 0.5);
  WriteFile(dir.File("bad_d_T4.json"),
            R"({"results":[{"configuration":{"a":1},)"
            R"("measurements":[{"name":"time","value":2,"unit":"fortnights"}]}]})");
  auto bad = ImportRecordFile(db, dir.File("bad_d_T4.json"), {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown time unit 'fortnights'"));
}

// The format is the whole document's: a T4 file whose "results" follow a large "environment"
// (past the first 4 KiB) was read as a broken Kernel Tuner cache. And Infinity, which Python's
// json.dump writes, is named in the error (nlohmann said "invalid literal" alone).
TEST(RecordFilesTest, AT4FileIsKnownByItsResultsWhereverTheyAreAndInfinityIsNamed) {
  TempDir dir;
  const std::string late = R"({"environment":{"notes":")" + std::string(8000, 'x') +
                           R"("},"metadata":{},"results":[{"configuration":{"a":1},)"
                           R"("measurements":[{"name":"time","value":2}]}]})";
  WriteFile(dir.File("late_d_T4.json"), late);
  MemoryTuningDatabase db;
  auto imported = ImportRecordFile(db, dir.File("late_d_T4.json"), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->format, RecordFileFormat::kT4);
  EXPECT_EQ(imported->records_added, 1);
  WriteFile(
      dir.File("inf_d_kernel_tuner_cache.json"),
      R"({"tune_params_keys":["a"],"cache":{"1":{"a":1,"time":2.0,"times":[2.0,Infinity]}}})");
  auto inf = ImportRecordFile(db, dir.File("inf_d_kernel_tuner_cache.json"), {});
  ASSERT_FALSE(inf.ok());
  EXPECT_THAT(inf.status().message(), HasSubstr("NaN and Infinity are not JSON numbers"));
}

// An empty measured_at is not known, as a T4 file's empty timestamp is (it was refused with
// "bad timestamp '': Failed to parse input").
TEST(RecordFilesTest, AJsonlRecordsEmptyMeasuredAtIsUnknown) {
  auto r = RecordFromJsonLine(
      R"({"kernel":"k","device":{"class":"c","fingerprint":{}},"config":{"a":1},"status":"ok",)"
      R"("time_ms":1.5,)"
      R"("measured_at":""})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->measured_at_us.has_value());
}

TEST(RecordFilesTest, TruncatedGzipNamesTheFileAndStoresNothing) {
  TempDir dir;
  std::string whole = ReadWholeFile(SpaceFile("pnpoly_RTX_3090_T4.json.gz"));
  std::string path = dir.File("pnpoly_RTX_3090_T4.json.gz");
  WriteFile(path, whole.substr(0, whole.size() / 2));
  MemoryTuningDatabase db;
  auto st = ImportRecordFile(db, path, {});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.status().message(), HasSubstr(path));
  EXPECT_THAT(st.status().message(), HasSubstr("truncated"));
  EXPECT_EQ(db.Stats()->records, 0);
}

TEST(RecordFilesTest, TruncatedJsonNamesTheLineAndStoresNothing) {
  TempDir dir;
  std::string json = Gunzipped(SpaceFile("convolution_W6600_T4.json.gz"));
  std::string path = dir.File("convolution_W6600_T4.json");
  WriteFile(path, json.substr(0, json.size() * 2 / 3));
  auto db = SqliteTuningDatabase::Open(dir.File("k.db"));
  ASSERT_TRUE(db.ok());
  auto st = ImportRecordFile(**db, path, {});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.status().message(), HasSubstr(path));
  EXPECT_THAT(st.status().message(), HasSubstr("truncated at line"));
  EXPECT_EQ((*db)->Stats()->records, 0);
}

// Kernel Tuner leaves its cache open while it tunes (each entry followed by a comma, the closing
// braces written at the end) and reads such a file back: one left by an interrupted run imports
// whole, saying so. One cut inside an entry is still refused as truncated.
TEST(RecordFilesTest, AKernelTunerCacheLeftOpenImportsAsKernelTunerReadsIt) {
  TempDir dir;
  const std::string closed = Gunzipped(SpaceFile("pnpoly_RTX_2080_Ti_kernel_tuner_cache.json.gz"));
  const std::string stripped(absl::StripTrailingAsciiWhitespace(closed));
  ASSERT_TRUE(absl::EndsWith(stripped, "}\n}"));
  const std::string open = stripped.substr(0, stripped.size() - 3) + ",\n";
  WriteFile(dir.File("closed.json"), closed);
  WriteFile(dir.File("open.json"), open);
  ReadOptions options;
  options.kernel = "pnpoly";
  options.device = "RTX_2080_Ti";
  auto whole = ReadRecordFile(dir.File("closed.json"), options);
  auto read = ReadRecordFile(dir.File("open.json"), options);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_TRUE(read->left_open);
  EXPECT_FALSE(whole->left_open);
  EXPECT_EQ(read->records.size(), whole->records.size());
  EXPECT_GT(read->records.size(), 1000u);

  const size_t last_entry = open.rfind("\n\"");
  WriteFile(dir.File("cut.json"), open.substr(0, last_entry + 20));
  auto cut = ReadRecordFile(dir.File("cut.json"), options);
  ASSERT_FALSE(cut.ok());
  EXPECT_THAT(cut.status().message(), HasSubstr("truncated"));
}

TEST(RecordFilesTest, ABadFieldNamesTheEntryAndStoresNothing) {
  TempDir dir;
  std::string path = dir.File("tiny_GPU_T4.json");
  WriteFile(path, R"({"schema_version": "1.0.0", "metadata": {"timeunit": "milliseconds"},
    "results": [
      {"configuration": {"x": 1}, "invalidity": "correct",
       "measurements": [{"name": "time", "value": 1.5}], "times": {"runtimes": [1.5]}},
      {"configuration": {"x": 2}, "invalidity": "exploded",
       "measurements": [{"name": "time", "value": "RuntimeFailedConfig"}]}]})");
  MemoryTuningDatabase db;
  auto st = ImportRecordFile(db, path, {});
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.status().message(), HasSubstr("results[1].invalidity"));
  EXPECT_THAT(st.status().message(), HasSubstr("exploded"));
  EXPECT_EQ(db.Stats()->records, 0);
}

// A T4 entry of a configuration listed before: the space keeps one record of it, its fastest
// ok entry. (The optimum came from the faster entry while replay served the later, failed one,
// so no search could reach it.)
std::string T4Entry(int x, const std::string& time, const std::string& invalidity = "correct") {
  return absl::StrCat(R"({"configuration": {"x": )", x, R"(}, "invalidity": ")", invalidity,
                      R"(", "measurements": [{"name": "time", "value": )", time, "}]}");
}

std::string T4File(const std::vector<std::string>& entries) {
  return absl::StrCat(R"({"schema_version": "1.0.0", "metadata": {"timeunit": "milliseconds"},
    "results": [)",
                      absl::StrJoin(entries, ","), "]}");
}

TEST(RecordFilesTest, ARecordedSpaceKeepsTheFastestOkEntryOfAConfigurationListedTwice) {
  TempDir dir;
  std::string path = dir.File("dup_GPU_T4.json");
  WriteFile(path, T4File({T4Entry(1, "2.0"), T4Entry(2, "1.0"), T4Entry(3, "3.0"),
                          T4Entry(2, R"("RuntimeFailedConfig")", "runtime"), T4Entry(3, "2.5")}));
  absl::StatusOr<RecordedSpace> recorded = LoadRecordedSpace(path);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->duplicates_merged, 2);
  ASSERT_EQ(recorded->records.size(), 3u);
  EXPECT_EQ(recorded->space.size(), 3);
  std::vector<double> times;
  for (const Record& r : recorded->records) {
    ASSERT_EQ(r.status, MeasurementStatus::kOk) << CanonicalJson(r.config);
    times.push_back(*r.time_ms);
  }
  EXPECT_EQ(times, (std::vector<double>{2.0, 1.0, 2.5})) << "first entries' order, fastest ok";
}

TEST(RecordFilesTest, ARecordedSpaceWithNoOkConfigurationOrATimeOfZeroIsRefused) {
  TempDir dir;
  std::string failed = dir.File("failed_GPU_T4.json");
  WriteFile(failed, T4File({T4Entry(1, R"("CompileFailedConfig")", "compile"),
                            T4Entry(2, R"("RuntimeFailedConfig")", "runtime")}));
  absl::StatusOr<RecordedSpace> none_ok = LoadRecordedSpace(failed);
  ASSERT_FALSE(none_ok.ok());
  EXPECT_THAT(none_ok.status().message(), HasSubstr("none of its 2 configurations ran ok"));
  std::string zero = dir.File("zero_GPU_T4.json");
  WriteFile(zero, T4File({T4Entry(1, "2.0"), T4Entry(2, "0")}));
  absl::StatusOr<RecordedSpace> zero_time = LoadRecordedSpace(zero);
  ASSERT_FALSE(zero_time.ok());
  EXPECT_THAT(zero_time.status().message(), HasSubstr("results[1]"));
  EXPECT_THAT(zero_time.status().message(), HasSubstr("time is not a positive number"));
  std::string kt = dir.File("zero_GPU_kernel_tuner_cache.json");
  WriteFile(kt, R"({"device_name": "GPU", "kernel_name": "zero", "tune_params_keys": ["x"],
    "cache": {"1": {"x": 1, "time": 2.0}, "2": {"x": 2, "time": 0}}})");
  absl::StatusOr<RecordedSpace> kt_zero = LoadRecordedSpace(kt);
  ASSERT_FALSE(kt_zero.ok());
  EXPECT_THAT(kt_zero.status().message(), HasSubstr("not a positive number"));
}

TEST(RecordFilesTest, AnEmptyT4TimestampImportsAsUnknownAndABadOneIsRefused) {
  // Real T4 files from the Benchmark Hub carry "timestamp": "" for results of unknown time.
  TempDir dir;
  auto entry = [](int x, const std::string& timestamp) {
    return absl::StrCat(R"({"configuration": {"x": )", x, R"(}, "invalidity": "correct",
       "measurements": [{"name": "time", "value": 1.5}], "times": {"runtimes": [1.5]},
       "timestamp": ")",
                        timestamp, R"("})");
  };
  auto file = [&](const std::string& name, const std::string& second_timestamp) {
    std::string path = dir.File(name);
    WriteFile(path, absl::StrCat(
                        R"({"schema_version": "1.0.0", "metadata": {"timeunit": "milliseconds"},
                            "results": [)",
                        entry(1, "2023-12-22 09:54:05.502007+00:00"), ",",
                        entry(2, second_timestamp), "]}"));
    return path;
  };
  MemoryTuningDatabase db;
  auto imported = ImportRecordFile(db, file("tiny_GPU_T4.json", ""), {});
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->records_added, 2);
  int with_time = 0, without = 0;
  ASSERT_TRUE(db.ForEachRecord([&](const Record& r) {
                  (r.measured_at_us ? with_time : without) += 1;
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(with_time, 1);
  EXPECT_EQ(without, 1);

  MemoryTuningDatabase other;
  auto bad = ImportRecordFile(other, file("bad_GPU_T4.json", "yesterday"), {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("results[1].timestamp"));
  EXPECT_EQ(other.Stats()->records, 0);
}

// Fields of the wrong type, numbers beyond double's range and integers beyond int64_t made
// nlohmann throw (an abort) or wrapped silently (18446744073709551615 served as -1): each must be
// an error that names the file, and store nothing.
TEST(RecordFilesTest, WrongTypesAndOutOfRangeNumbersAreErrorsNotAbortsOrWraps) {
  TempDir dir;
  auto t4 = [&](const std::string& name, const std::string& metadata, const std::string& result) {
    std::string path = dir.File(name);
    WriteFile(path, absl::StrCat(R"({"schema_version": "1.0.0", "metadata": )", metadata,
                                 R"(, "results": [)", result, "]}"));
    return path;
  };
  const std::string ok_metadata = R"({"timeunit": "milliseconds"})";
  const std::string ok_result = R"({"configuration": {"x": 1}, "invalidity": "correct",
       "measurements": [{"name": "time", "value": 1.5}]})";
  struct Case {
    std::string path, expect;
  };
  const std::vector<Case> cases = {
      {t4("unit_GPU_T4.json", R"({"timeunit": 3})", ok_result), "\"timeunit\" is not a string"},
      {t4("inv_GPU_T4.json", ok_metadata,
          R"({"configuration": {"x": 1}, "invalidity": 0,
              "measurements": [{"name": "time", "value": 1.5}]})"),
       "results[0]: \"invalidity\" is not a string"},
      {t4("huge_GPU_T4.json", ok_metadata,
          R"({"configuration": {"x": 1e999}, "invalidity": "correct",
              "measurements": [{"name": "time", "value": 1.5}]})"),
       "number overflow"},
      {t4("wrap_GPU_T4.json", ok_metadata,
          R"({"configuration": {"x": 18446744073709551615}, "invalidity": "correct",
              "measurements": [{"name": "time", "value": 1.5}]})"),
       "above the largest 64-bit integer"},
  };
  for (const Case& c : cases) {
    MemoryTuningDatabase db;
    auto st = ImportRecordFile(db, c.path, {});
    ASSERT_FALSE(st.ok()) << c.path;
    EXPECT_THAT(st.status().message(), HasSubstr(c.path));
    EXPECT_THAT(st.status().message(), HasSubstr(c.expect));
    EXPECT_EQ(db.Stats()->records, 0);
  }
  // A measurement's name that is not a string is not the time, and the entry says so.
  MemoryTuningDatabase db;
  auto named = ImportRecordFile(db,
                                t4("name_GPU_T4.json", ok_metadata,
                                   R"({"configuration": {"x": 1}, "invalidity": "correct",
             "measurements": [{"name": 7, "value": 1.5}]})"),
                                {});
  ASSERT_FALSE(named.ok());
  EXPECT_THAT(named.status().message(), HasSubstr("without a numeric \"time\""));

  // One file is one space: every configuration sets the same parameters, at least one.
  auto mixed = ImportRecordFile(db,
                                t4("mixed_GPU_T4.json", ok_metadata,
                                   R"({"configuration": {"x": 1}, "invalidity": "correct",
             "measurements": [{"name": "time", "value": 1.5}]},
            {"configuration": {"y": 1}, "invalidity": "correct",
             "measurements": [{"name": "time", "value": 1.5}]})"),
                                {});
  ASSERT_FALSE(mixed.ok());
  EXPECT_THAT(mixed.status().message(), HasSubstr("entry 1"));
  EXPECT_THAT(mixed.status().message(), HasSubstr("sets the parameters {y}, the first entry {x}"));
  std::string keyless = dir.File("keyless_GPU_kernel_tuner_cache.json");
  WriteFile(keyless, R"({"device_name": "GPU", "kernel_name": "k", "tune_params_keys": [],
      "cache": {"1": {"time": 1.5}}})");
  auto no_parameters = ImportRecordFile(db, keyless, {});
  ASSERT_FALSE(no_parameters.ok());
  EXPECT_THAT(no_parameters.status().message(), HasSubstr("a configuration without parameters"));
  EXPECT_EQ(db.Stats()->records, 0);

  std::string kt = dir.File("wrap_GPU_kernel_tuner_cache.json");
  WriteFile(kt, R"({"device_name": "GPU", "kernel_name": "k", "tune_params_keys": ["x"],
      "cache": {"1": {"x": 18446744073709551615, "time": 1.5}}})");
  auto wrapped = ImportRecordFile(db, kt, {});
  ASSERT_FALSE(wrapped.ok());
  EXPECT_THAT(wrapped.status().message(), HasSubstr("above the largest 64-bit integer"));
  EXPECT_EQ(db.Stats()->records, 0);
}

TEST(RecordFilesTest, ABadJsonlLineNamesItsNumber) {
  TempDir dir;
  std::string path = dir.File("records.jsonl");
  MemoryTuningDatabase source;
  ASSERT_TRUE(ImportRecordFile(source, SpaceFile("pnpoly_RTX_3090_T4.json.gz"), {}).ok());
  std::ostringstream out;
  ASSERT_TRUE(ExportJsonl(source, out).ok());
  std::string text = out.str();
  // Edit the time on line 3: the record no longer matches its record_id.
  size_t line3 = text.find('\n', text.find('\n') + 1) + 1;
  size_t time = text.find("\"time_ms\":", line3);
  text.insert(time + 10, "9");
  WriteFile(path, text);
  MemoryTuningDatabase db;
  auto st = ImportRecordFile(db, path, {});
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.status().message(), HasSubstr("line 3"));
  EXPECT_THAT(st.status().message(), HasSubstr("record_id"));
  EXPECT_EQ(db.Stats()->records, 0);

  // A negative time was stored as given (the wire refused it; a file did not).
  std::string negative = out.str();
  size_t t = negative.find("\"time_ms\":");
  while (t != std::string::npos && !std::isdigit(static_cast<unsigned char>(negative[t + 10]))) {
    t = negative.find("\"time_ms\":", t + 1);
  }
  ASSERT_NE(t, std::string::npos);
  negative.insert(t + 10, "-");
  WriteFile(path, negative);
  auto negative_time = ImportRecordFile(db, path, {});
  ASSERT_FALSE(negative_time.ok());
  EXPECT_THAT(negative_time.status().message(), HasSubstr("a finite time above 0"));
  EXPECT_EQ(db.Stats()->records, 0);

  // A broken first line is still read as JSONL, so the error names it (it was taken for a
  // Kernel Tuner file that "does not name its kernel").
  size_t line1_config = text.find("\"config\":");
  text.replace(line1_config, 9, "\"config\":[],\"x\":");
  WriteFile(path, text);
  auto first = ImportRecordFile(db, path, {});
  ASSERT_FALSE(first.ok());
  EXPECT_THAT(first.status().message(), HasSubstr("line 1"));
  EXPECT_THAT(first.status().message(), HasSubstr("config"));
  EXPECT_EQ(db.Stats()->records, 0);
}

// A line `ktune db export` wrote before records had payloads (made by the build before the
// payload field existed): it still imports under its record_id and exports the same bytes, so
// adding payloads changed no existing record's id.
TEST(RecordFilesTest, AJsonlLineFromBeforePayloadsKeepsItsIdAndBytes) {
  const std::string line =
      R"({"record_id":"0de2ac1c0de3a542","kernel":"tvm_0123456789abcdef","kernel_version":"",)"
      R"("problem":{},"device":{"fingerprint":{"device":"cpu:Intel(R) Xeon(R) Processor",)"
      R"("target":{"kind":"llvm"}},"class":"tvm:llvm","family":"tvm:llvm"},)"
      R"("config":{"trace":"00112233aabbccdd"},"status":"ok","message":"","time_ms":1.25,)"
      R"("repeat_times_ms":[1.25,1.5],"median_ms":1.375,"min_ms":1.25,)"
      R"("stddev_ms":0.1767766952966369,"worker":"","measured_at":"2023-11-14T22:13:20+00:00",)"
      R"("source":"tvm"})";
  auto r = RecordFromJsonLine(line);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "");
  EXPECT_EQ(r->RecordId(), "0de2ac1c0de3a542");
  EXPECT_EQ(RecordToJsonLine(*r), line);
}

// With a payload, the JSONL line carries it (last, as "payload") and reads back to the same
// record and id; a payload that is not a string is refused.
TEST(RecordFilesTest, JsonlKeepsAPayloadVerbatim) {
  auto r = RecordFromJsonLine(
      R"({"kernel":"tvm_x","device":{"class":"tvm:llvm","fingerprint":{}},"config":{},)"
      R"("status":"runtime_error","payload":"[\"tvm\", {\"a\": 1}]\n"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload, "[\"tvm\", {\"a\": 1}]\n");
  const std::string line = RecordToJsonLine(*r);
  EXPECT_THAT(line, HasSubstr(R"("payload":"[\"tvm\", {\"a\": 1}]\n"})"));
  auto back = RecordFromJsonLine(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->payload, r->payload);
  EXPECT_EQ(back->RecordId(), r->RecordId());
  auto bad = RecordFromJsonLine(
      R"({"kernel":"k","device":{"class":"c","fingerprint":{}},"config":{},)"
      R"("status":"runtime_error","payload":{"not":"a string"}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'payload'"));
}

TEST(RecordFilesTest, KernelAndDeviceComeFromFlagsThenNameThenFile) {
  TempDir dir;
  std::string json = Gunzipped(SpaceFile("gemm_RTX_Titan_kernel_tuner_cache.json.gz"));
  std::string odd_name = dir.File("cache.json");
  WriteFile(odd_name, json);
  auto from_file = ReadRecordFile(odd_name, {});
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->records[0].kernel, "Xgemm");
  EXPECT_EQ(from_file->records[0].device.device_class, "NVIDIA TITAN RTX");
  EXPECT_EQ(from_file->records[0].device.family, "turing");
  ReadOptions flags;
  flags.kernel = "clblast_gemm";
  flags.device = "titan";
  flags.problem = {{"M", int64_t{4096}}};
  auto from_flags = ReadRecordFile(odd_name, flags);
  ASSERT_TRUE(from_flags.ok());
  EXPECT_EQ(from_flags->records[0].kernel, "clblast_gemm");
  EXPECT_EQ(from_flags->records[0].device.device_class, "titan");
  EXPECT_EQ(from_flags->records[0].problem, flags.problem);

  // A T4 file does not name its device: without a telling file name, ask for --device.
  std::string t4 = Gunzipped(SpaceFile("pnpoly_RTX_3090_T4.json.gz"));
  WriteFile(dir.File("results.json"), t4);
  auto nameless = ReadRecordFile(dir.File("results.json"), {});
  ASSERT_FALSE(nameless.ok());
  EXPECT_THAT(nameless.status().message(), HasSubstr("--kernel"));
}

// Records of a registry kernel's task are stored as the kernel's tasks are: a problem without
// dtype gets it (stored and never found before), and a configuration outside the kernel's space
// fails the import, nothing stored. A file of another kernel sharing the name (problem {}) is
// another kernel's, taken as it comes.
TEST(RecordFilesTest, ARegistryKernelsRecordsAreFittedToItOnImport) {
  TempDir dir;
  const KernelRegistry registry = KernelRegistry::WithBuiltins();
  const KernelDefinition* gemm = registry.Find("gemm");
  ASSERT_NE(gemm, nullptr);
  const Problem asked{{"M", int64_t{128}}, {"N", int64_t{128}}, {"K", int64_t{128}}};
  Configuration config = *gemm->DefaultConfiguration(*gemm->ValidateProblem(asked), {2});
  auto line = [&](const Configuration& c) {
    Record r;
    r.kernel = "gemm";
    r.problem = asked;  // no dtype, as a client writes it
    r.device = DeviceInfo{R"({"cores":2,"name":"test"})", "cpu:test", "x86-64-v3"};
    r.config = c;
    r.status = MeasurementStatus::kOk;
    r.time_ms = 1.0;
    r.repeat_times_ms = {1.0};
    r.worker = "elsewhere";
    r.source = "import";
    return RecordToJsonLine(r);
  };
  std::ofstream(dir.File("good.jsonl")) << line(config) << "\n";
  Configuration bad = config;
  bad["MR"] = int64_t{999};
  std::ofstream(dir.File("bad.jsonl")) << line(config) << "\n" << line(bad) << "\n";

  MemoryTuningDatabase db;
  auto refused = ImportRecordFile(db, dir.File("bad.jsonl"), {}, &registry);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("record 2"));
  EXPECT_THAT(refused.status().message(), HasSubstr("'MR' has value 999"));
  EXPECT_EQ(db.Stats()->records, 0);

  // gemm's own problem parameters with a value it refuses: no query could reach the record.
  Record negative_m = *RecordFromJsonLine(line(config));
  negative_m.problem["M"] = int64_t{-5};
  std::ofstream(dir.File("negative_m.jsonl")) << RecordToJsonLine(negative_m) << "\n";
  auto bad_problem = ImportRecordFile(db, dir.File("negative_m.jsonl"), {}, &registry);
  ASSERT_FALSE(bad_problem.ok());
  EXPECT_THAT(bad_problem.status().message(), HasSubstr("M=-5 is out of range"));
  EXPECT_EQ(db.Stats()->records, 0);

  ASSERT_TRUE(ImportRecordFile(db, dir.File("good.jsonl"), {}, &registry).ok());
  BestQuery q;
  q.kernel = "gemm";
  q.problem = *gemm->ValidateProblem(asked);  // as queries take it: dtype filled in
  q.device_class = "cpu:test";
  auto best = db.QueryBest(q);
  ASSERT_TRUE(best.ok());
  EXPECT_EQ(best->level, MatchLevel::kDeviceClass);
  ASSERT_EQ(best->records.size(), 1u);
  EXPECT_EQ(best->records[0].problem.at("dtype"), ParamValue(std::string("f32")));

  // A record of another version of gemm: its values are that version's, never refused.
  Record older = *RecordFromJsonLine(line(bad));
  older.kernel_version = "00112233aabbccdd";
  std::ofstream(dir.File("older.jsonl")) << RecordToJsonLine(older) << "\n";
  auto old_version = ImportRecordFile(db, dir.File("older.jsonl"), {}, &registry);
  ASSERT_TRUE(old_version.ok()) << old_version.status();
  EXPECT_EQ(old_version->records_added, 1);
  // A stale boundary that is not a time is refused, as ImportRecords refuses it.
  std::string line_text = RecordToJsonLine(older, int64_t{-5});
  std::ofstream(dir.File("negative.jsonl")) << line_text << "\n";
  auto negative = ImportRecordFile(db, dir.File("negative.jsonl"), {}, &registry);
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(negative.status().message(),
              HasSubstr("'stale_before_us' must be a time after 1970"));

  // A recorded GPU GEMM space shares the name, with problem {}: imported as it comes.
  auto gpu =
      ImportRecordFile(db, SpaceFile("gemm_RTX_Titan_kernel_tuner_cache.json.gz"), {}, &registry);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_GT(gpu->records_added, 0);
}

}  // namespace
}  // namespace ktune
