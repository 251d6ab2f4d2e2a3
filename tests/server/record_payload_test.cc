// Records of a client-defined kernel that carry the client's opaque payload (as ktune.tvm stores
// TVM MetaSchedule's records), over real gRPC on loopback against real servers and files: a kernel
// the registry does not know is imported without a worker, and its payload comes back byte for
// byte from QueryBest and ExportRecords, through `ktune db export`'s JSONL into a second server,
// and out of it again; an oversize payload is refused whole, saying why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "db/interchange/record_files.h"
#include "db/sqlite_tuning_database.h"
#include "grpcpp/create_channel.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "proto/convert.h"
#include "server/tuning_server.h"
#include "tests/server/local_stub.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

// A server on its own database file, with a stub to it.
struct RunningServer {
  explicit RunningServer(const std::string& db_path) {
    TuningServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = db_path;
    auto started = TuningServer::Start(options);
    EXPECT_TRUE(started.ok()) << started.status();
    server = *std::move(started);
    stub = testing::LocalStub<v1::TuningService>(server->port());
  }

  grpc::Status Import(const std::vector<v1::Record>& records,
                      v1::ImportRecordsResponse* response) {
    auto ctx = Context();
    auto writer = stub->ImportRecords(ctx.get(), response);
    for (const v1::Record& r : records) writer->Write(r);
    writer->WritesDone();
    return writer->Finish();
  }

  std::vector<v1::Record> ExportAll() {
    auto ctx = Context();
    auto reader = stub->ExportRecords(ctx.get(), v1::ExportRecordsRequest());
    std::vector<v1::Record> out;
    v1::Record r;
    while (reader->Read(&r)) out.push_back(r);
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  }

  v1::QueryBestResponse Best(const v1::DeviceFingerprint& device, int top) {
    v1::QueryBestRequest q;
    q.mutable_kernel()->set_name(kKernel);
    *q.mutable_device() = device;
    q.set_top_k(top);
    v1::QueryBestResponse answer;
    grpc::Status s = stub->QueryBest(Context().get(), q, &answer);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return answer;
  }

  static constexpr char kKernel[] = "tvm_0123456789abcdef";  // in no registry
  std::unique_ptr<TuningServer> server;
  std::unique_ptr<v1::TuningService::Stub> stub;
};

// A TVM-like record as ktune.tvm writes it: no worker, a source, one trace hash as the config.
v1::Record TvmRecord(const std::string& trace_hash, double ms, const std::string& payload) {
  v1::Record r;
  r.mutable_task()->mutable_kernel()->set_name(RunningServer::kKernel);
  r.mutable_task()->set_device_class("tvm:llvm -mcpu=skylake-avx512");
  r.mutable_device()->set_device_class("tvm:llvm -mcpu=skylake-avx512");
  r.mutable_device()->set_family("tvm:llvm");
  (*r.mutable_device()->mutable_extra())["fingerprint_json"] =
      R"({"device":"cpu:test","target":{"kind":"llvm","mcpu":"skylake-avx512"}})";
  (*r.mutable_config()->mutable_params())["trace"].set_string_value(trace_hash);
  r.set_status(v1::MEASUREMENT_STATUS_OK);
  r.set_time_ms(ms);
  r.add_repeat_times_ms(ms);
  r.set_source("tvm");
  r.set_payload(payload);
  return r;
}

v1::DeviceFingerprint ClassOnly() {
  v1::DeviceFingerprint d;
  d.set_device_class("tvm:llvm -mcpu=skylake-avx512");
  return d;
}

TEST(RecordPayloadTest, APayloadSurvivesImportQueryExportAndReimport) {
  testing::TempDir dir;
  // Two traces measured alike, and a third: three records, since the config (the trace hash)
  // and the payload differ. Payloads with quotes, newlines, non-ASCII text, and 300 KB.
  const std::string fast = std::string("[[\"trace\", \"é\"],\n[0.001]]") + std::string(300'000, 'f');
  const std::string twin = "[[\"another trace\"], [0.002]]";
  const std::string slow = "[[\"a slow trace\"], [0.003]]";
  std::vector<v1::Record> sent = {TvmRecord("aaaaaaaaaaaaaaaa", 1.0, fast),
                                  TvmRecord("bbbbbbbbbbbbbbbb", 2.0, twin),
                                  TvmRecord("cccccccccccccccc", 3.0, slow)};
  std::vector<v1::Record> exported;
  {
    RunningServer a(dir.File("a.db"));
    // Asked before the import (a TVM database's lookup, then its commit): the answer NONE is
    // cached, and the import must drop it (the server kept answering NONE until it restarted).
    EXPECT_EQ(a.Best(ClassOnly(), 3).level(), v1::MATCH_LEVEL_NONE);
    v1::ImportRecordsResponse imported;
    ASSERT_TRUE(a.Import({sent[0]}, &imported).ok());
    EXPECT_EQ(a.Best(ClassOnly(), 3).best_size(), 1);
    ASSERT_TRUE(a.Import(sent, &imported).ok());
    EXPECT_EQ(imported.records_added(), 2);

    v1::QueryBestResponse best = a.Best(ClassOnly(), 3);
    EXPECT_EQ(best.level(), v1::MATCH_LEVEL_DEVICE_CLASS);
    ASSERT_EQ(best.best_size(), 3);
    EXPECT_EQ(best.best(0).payload(), fast);
    EXPECT_EQ(best.best(1).payload(), twin);
    EXPECT_EQ(best.best(2).payload(), slow);
    EXPECT_EQ(best.best(0).source(), "tvm");
    EXPECT_EQ(a.Best(sent[0].device(), 1).level(), v1::MATCH_LEVEL_EXACT);
    v1::DeviceFingerprint same_kind;
    same_kind.set_device_class("tvm:llvm -mcpu=znver3");
    same_kind.set_family("tvm:llvm");
    v1::QueryBestResponse by_family = a.Best(same_kind, 1);
    EXPECT_EQ(by_family.level(), v1::MATCH_LEVEL_FAMILY);
    EXPECT_EQ(by_family.best(0).payload(), fast);
    v1::DeviceFingerprint other_kind;
    other_kind.set_device_class("tvm:cuda -arch=sm_80");
    other_kind.set_family("tvm:cuda");
    EXPECT_EQ(a.Best(other_kind, 1).level(), v1::MATCH_LEVEL_NONE);

    exported = a.ExportAll();
    ASSERT_EQ(exported.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(exported[i].payload(), sent[i].payload());
  }

  // `ktune db export` (JSONL) of the first server's file, imported into a second server's file.
  {
    auto a_db = SqliteTuningDatabase::Open(dir.File("a.db"));
    ASSERT_TRUE(a_db.ok()) << a_db.status();
    // T4 and Kernel Tuner files cannot hold a payload: such an export is refused, not written
    // without it (TVM then got nothing from the copy while `best` still showed the records).
    const TaskKey task{RunningServer::kKernel, "", {}, "tvm:llvm -mcpu=skylake-avx512"};
    std::ostringstream t4, kt;
    for (const absl::Status& refused :
         {ExportT4(**a_db, task, t4).status(), ExportKernelTuner(**a_db, task, kt).status()}) {
      EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_THAT(refused.message(),
                  HasSubstr("3 of the task's 3 records carry a client's payload"));
      EXPECT_THAT(refused.message(), HasSubstr("export --format jsonl"));
    }
    std::ofstream out(dir.File("a.jsonl"));
    ASSERT_EQ(*ExportJsonl(**a_db, out), 3);
    auto b_db = SqliteTuningDatabase::Open(dir.File("b.db"));
    ASSERT_TRUE(b_db.ok()) << b_db.status();
    out.close();
    auto imported = ImportRecordFile(**b_db, dir.File("a.jsonl"), {});
    ASSERT_TRUE(imported.ok()) << imported.status();
    EXPECT_EQ(imported->records_added, 3);
  }
  RunningServer b(dir.File("b.db"));
  std::vector<v1::Record> again = b.ExportAll();
  ASSERT_EQ(again.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(again[i].SerializeAsString(), exported[i].SerializeAsString()) << i;
  }
  EXPECT_EQ(b.Best(ClassOnly(), 1).best(0).payload(), fast);
  // The first server's export, streamed into the second: all present already.
  v1::ImportRecordsResponse reimported;
  ASSERT_TRUE(b.Import(exported, &reimported).ok());
  EXPECT_EQ(reimported.records_received(), 3);
  EXPECT_EQ(reimported.records_added(), 0);
}

// A record a regression retired stays retired in a copy made through the API: ExportRecords
// carries its task's boundary and ImportRecords marks the task again (the copy served it as live).
TEST(RecordPayloadTest, ARetiredRecordStaysRetiredThroughExportAndImport) {
  testing::TempDir dir;
  const std::vector<v1::Record> sent = {TvmRecord("aaaaaaaaaaaaaaaa", 1.0, "[1]"),
                                        TvmRecord("bbbbbbbbbbbbbbbb", 2.0, "[2]")};
  {
    RunningServer a(dir.File("a.db"));
    v1::ImportRecordsResponse imported;
    ASSERT_TRUE(a.Import(sent, &imported).ok());
  }
  const int64_t boundary = 1'790'000'000'000'000;  // 2026-09-21: after both (undated) records
  {
    auto a_db = SqliteTuningDatabase::Open(dir.File("a.db"));
    ASSERT_TRUE(a_db.ok()) << a_db.status();
    ASSERT_TRUE(
        (*a_db)
            ->MarkStale({RunningServer::kKernel, "", {}, "tvm:llvm -mcpu=skylake-avx512"}, boundary)
            .ok());
  }
  RunningServer a(dir.File("a.db"));
  EXPECT_TRUE(a.Best(ClassOnly(), 1).stale());
  std::vector<v1::Record> exported = a.ExportAll();
  ASSERT_EQ(exported.size(), 2u);
  for (const v1::Record& r : exported) EXPECT_EQ(r.stale_before_us(), boundary);

  RunningServer b(dir.File("b.db"));
  v1::ImportRecordsResponse imported;
  // The same records without their boundary first, asked about (a cached, live answer) ...
  ASSERT_TRUE(b.Import(sent, &imported).ok());
  EXPECT_FALSE(b.Best(ClassOnly(), 1).stale());
  // ... then the export: nothing new is stored, the task is marked, and the answer follows
  // (the cache kept the live answer when the import added no record).
  ASSERT_TRUE(b.Import(exported, &imported).ok());
  EXPECT_EQ(imported.records_added(), 0);
  v1::QueryBestResponse copy = b.Best(ClassOnly(), 1);
  EXPECT_EQ(copy.best_size(), 1);
  EXPECT_TRUE(copy.stale());
  // A boundary that is not a time is refused whole.
  v1::Record bad = TvmRecord("cccccccccccccccc", 3.0, "[3]");
  bad.set_stale_before_us(-5);
  grpc::Status refused = b.Import({bad}, &imported);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("stale_before_us must be a time after 1970"));
}

TEST(RecordPayloadTest, AnOversizePayloadIsRefusedAndNothingIsStored) {
  testing::TempDir dir;
  RunningServer server(dir.File("k.db"));
  std::vector<v1::Record> batch = {
      TvmRecord("aaaaaaaaaaaaaaaa", 1.0, std::string(kMaxRecordPayloadBytes, 'x')),
      TvmRecord("bbbbbbbbbbbbbbbb", 2.0, std::string(kMaxRecordPayloadBytes + 1, 'x'))};
  v1::ImportRecordsResponse response;
  grpc::Status s = server.Import(batch, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("record 2: record.payload is 1048577 bytes; at most 1048576 (1 MiB)"));
  EXPECT_THAT(s.error_message(), HasSubstr("nothing was stored"));
  EXPECT_TRUE(server.ExportAll().empty());
  // An infinite time is refused as it comes in (it was stored, and ranked as a real one).
  v1::Record infinite = batch[0];
  infinite.set_time_ms(std::numeric_limits<double>::infinity());
  s = server.Import({infinite}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("record 1: record.time_ms is inf"));
  EXPECT_TRUE(server.ExportAll().empty());
  // The limit itself is accepted.
  ASSERT_TRUE(server.Import({batch[0]}, &response).ok());
  EXPECT_EQ(response.records_added(), 1);
  EXPECT_EQ(server.Best(ClassOnly(), 1).best(0).payload().size(), kMaxRecordPayloadBytes);
}

// An import holds its records until the stream ends: past 256 MiB on the wire it is refused whole
// (300 records of 1 MiB each held the server's memory until then; thousands would exhaust it).
TEST(RecordPayloadTest, AnImportStreamPastItsByteLimitIsRefusedAndNothingIsStored) {
  testing::TempDir dir;
  RunningServer server(dir.File("k.db"));
  std::vector<v1::Record> batch;
  for (int i = 0; i < 260; ++i) {
    batch.push_back(TvmRecord(absl::StrCat("trace", i), 1.0 + i, std::string(1 << 20, 'x')));
  }
  v1::ImportRecordsResponse response;
  grpc::Status s = server.Import(batch, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("more than 256 MiB of records in one import stream"));
  EXPECT_TRUE(server.ExportAll().empty());
}

}  // namespace
}  // namespace ktune
