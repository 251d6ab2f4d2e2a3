// The ktune.v1 API as clients and workers rely on it: the services and their streaming shapes
// (read from the generated descriptors), messages that round-trip through the wire format, and a
// lint over the .proto sources that every RPC and every field carries a comment.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "db/record_checks.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "proto/channel.h"
#include "proto/convert.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;

const google::protobuf::MethodDescriptor* Method(const google::protobuf::ServiceDescriptor* s,
                                                 const std::string& name) {
  const auto* m = s->FindMethodByName(name);
  EXPECT_NE(m, nullptr) << s->name() << "." << name;
  return m;
}

TEST(ApiTest, TuningServiceOffersTheDesignedCalls) {
  const auto* s = v1::SubmitJobRequest::descriptor()->file()->FindServiceByName("TuningService");
  ASSERT_NE(s, nullptr);
  for (const char* name : {"SubmitJob", "GetJob", "ListJobs", "WatchJob", "CancelJob", "PauseJob",
                           "ResumeJob", "QueryBest", "Tune", "ListRecords", "ExportRecords",
                           "ImportRecords", "ListKernels", "RegisterKernel", "ListWorkers"}) {
    Method(s, name);
  }
  EXPECT_TRUE(Method(s, "WatchJob")->server_streaming());
  EXPECT_TRUE(Method(s, "Tune")->server_streaming());
  EXPECT_TRUE(Method(s, "ExportRecords")->server_streaming());
  EXPECT_TRUE(Method(s, "ImportRecords")->client_streaming());
  EXPECT_FALSE(Method(s, "QueryBest")->server_streaming());
}

TEST(ApiTest, WorkerServiceOffersTheDesignedCalls) {
  const auto* s = v1::RegisterRequest::descriptor()->file()->FindServiceByName("WorkerService");
  ASSERT_NE(s, nullptr);
  for (const char* name : {"Register", "LeaseBatch", "ReportResults", "Heartbeat", "Leave"}) {
    const auto* m = Method(s, name);
    ASSERT_NE(m, nullptr);
    EXPECT_FALSE(m->server_streaming() || m->client_streaming()) << name;
  }
}

TEST(ApiTest, RecordsRoundTripThroughTheWire) {
  v1::Record r;
  r.set_record_id("0123456789abcdef");
  r.mutable_task()->mutable_kernel()->set_name("gemm");
  (*r.mutable_task()->mutable_problem()->mutable_params())["M"].set_int_value(4096);
  (*r.mutable_config()->mutable_params())["MWG"].set_int_value(64);
  r.set_status(v1::MEASUREMENT_STATUS_OK);
  r.set_time_ms(1.25);
  r.add_repeat_times_ms(1.2);
  r.add_repeat_times_ms(1.3);
  std::string wire = r.SerializeAsString();
  v1::Record back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.task().problem().params().at("M").int_value(), 4096);
  EXPECT_TRUE(back.has_time_ms());
  EXPECT_DOUBLE_EQ(back.time_ms(), 1.25);
  v1::Record failed;
  failed.set_status(v1::MEASUREMENT_STATUS_TIMEOUT);
  EXPECT_FALSE(failed.has_time_ms());  // a failure has no time, not a sentinel
}

// The wire's edge refuses what cannot be stored and read back: a float parameter that is not
// finite, a timestamp past year 9999 (its microseconds overflowed), a task filed under one device
// class with a device of another.
TEST(ApiTest, RecordsFromTheWireWithImpossibleValuesAreRefused) {
  v1::Record r;
  r.mutable_task()->mutable_kernel()->set_name("gemm");
  r.mutable_device()->set_device_class("A100");
  (*r.mutable_config()->mutable_params())["MWG"].set_int_value(64);
  r.set_status(v1::MEASUREMENT_STATUS_OK);
  r.set_time_ms(1.25);
  ASSERT_TRUE(FromProto(r).ok()) << FromProto(r).status();
  v1::Record nan_param = r;
  (*nan_param.mutable_config()->mutable_params())["alpha"].set_float_value(std::nan(""));
  EXPECT_THAT(FromProto(nan_param).status().message(), HasSubstr("record.config.alpha is nan"));
  v1::Record far = r;
  far.mutable_measured_at()->set_seconds(1'000'000'000'000'000);
  EXPECT_THAT(FromProto(far).status().message(),
              HasSubstr("record.measured_at is out of range (from 1970-01-01"));
  v1::Record before_1970 = r;  // stored, then hidden: the database took it for "no time"
  before_1970.mutable_measured_at()->set_seconds(-315'619'200);
  EXPECT_THAT(FromProto(before_1970).status().message(),
              HasSubstr("record.measured_at is out of range (from 1970-01-01"));
  v1::Record bad_fingerprint = r;  // stored, then broke explain and the Python client's reads
  (*bad_fingerprint.mutable_device()->mutable_extra())["fingerprint_json"] = "{not json";
  EXPECT_THAT(FromProto(bad_fingerprint).status().message(), HasSubstr("must be a JSON object"));
  // Infinite or negative times and spreads were stored by an import: an infinite time ranked
  // as a real one, and no JSON export could hold it. Imports check them (CheckImportedNumbers);
  // FromProto still reads them, as a client reads a server's answer.
  auto imported = [](const v1::Record& wire) {
    absl::StatusOr<Record> read = FromProto(wire);
    EXPECT_TRUE(read.ok()) << read.status();
    return read.ok() ? CheckImportedNumbers(*read) : read.status();
  };
  EXPECT_TRUE(imported(r).ok());
  v1::Record infinite = r;
  infinite.set_time_ms(std::numeric_limits<double>::infinity());
  EXPECT_THAT(imported(infinite).message(), HasSubstr("time_ms is inf; a finite time above 0"));
  v1::Record negative_repeat = r;
  negative_repeat.add_repeat_times_ms(-1);
  EXPECT_THAT(imported(negative_repeat).message(), HasSubstr("repeat_times_ms holds -1"));
  v1::Record nan_spread = r;
  nan_spread.set_stddev_ms(std::nan(""));
  EXPECT_THAT(imported(nan_spread).message(), HasSubstr("stddev_ms is nan"));
  v1::Record long_source = r;
  long_source.set_source(std::string(5000, 's'));
  EXPECT_THAT(imported(long_source).message(), HasSubstr("at most 4096 bytes"));
  v1::Record elsewhere = r;
  elsewhere.mutable_task()->set_device_class("H100");
  EXPECT_THAT(FromProto(elsewhere).status().message(),
              HasSubstr("is not record.device.device_class"));
}

// The error measure travels with a kernel spec and is part of its version (errors of the two
// measures do not compare); a CUDA kernel cannot ask for it.
TEST(ApiTest, KernelSpecsCarryTheirErrorMeasureAndItIsPartOfTheVersion) {
  const KernelDefinition lowp = GemmLowpDefinition();
  ASSERT_TRUE(lowp.componentwise_error);
  const v1::KernelSpec wire = ToProto(lowp);
  EXPECT_TRUE(wire.componentwise_error());
  absl::StatusOr<KernelDefinition> back = FromProto(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->componentwise_error);
  EXPECT_EQ(back->Version(), lowp.Version());
  KernelDefinition normwise = lowp;
  normwise.componentwise_error = false;
  EXPECT_NE(normwise.Version(), lowp.Version());
  EXPECT_FALSE(GemmDefinition().componentwise_error) << "fp32 kernels keep their versions";

  v1::KernelSpec cuda = ToProto(CudaGemmDefinition());
  cuda.set_componentwise_error(true);
  EXPECT_THAT(FromProto(cuda).status().message(), HasSubstr("CPU runner only"));
}

// gRPC's own failures say what to do ("failed to connect to all addresses" alone did not); the
// server's answers pass unchanged.
TEST(ApiTest, TransportFailuresSayWhatToDoAndServerAnswersPassAsThey) {
  const absl::Status down = FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                  "failed to connect to all addresses; last error: "
                                                  "UNKNOWN: ipv4:127.0.0.1:1: Connection refused"));
  EXPECT_TRUE(absl::IsUnavailable(down));
  EXPECT_THAT(down.message(), ::testing::HasSubstr("cannot reach the ktune server"));
  EXPECT_THAT(down.message(), ::testing::HasSubstr("Connection refused"));
  EXPECT_THAT(
      FromGrpc(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded")).message(),
      ::testing::HasSubstr("did not answer before the call's deadline passed"));
  // An HTTP server, not gRPC, at the address (a user trial got gRPC's words alone).
  const absl::Status http = FromGrpc(
      grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Received http2 header with status: 404"));
  EXPECT_EQ(http.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(http.message(), HasSubstr("something answers at that address, but not a ktune "
                                        "server (Received http2 header with status: 404)"));
  EXPECT_FALSE(NoAnswerFromServer(http));
  EXPECT_THAT(FromGrpc(grpc::Status(grpc::StatusCode::CANCELLED, "Cancelling all calls")).message(),
              ::testing::HasSubstr("the server shut down during the call"));
  // A stream's call gets the same words with another code (ktune watch printed them bare).
  EXPECT_THAT(
      FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Cancelling all calls")).message(),
      HasSubstr("the server shut down during the call"));
  EXPECT_THAT(FromGrpc(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                    "Received message larger than max (10485865 vs. 4194304)"))
                  .message(),
              ::testing::HasSubstr("larger than its receiver accepts"));
  EXPECT_THAT(FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Socket closed")).message(),
              ::testing::HasSubstr("the connection to the ktune server was lost"));
  const absl::Status answer =
      FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no worker of class cpu:x"));
  EXPECT_EQ(answer.message(), "no worker of class cpu:x");
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, "")).message(),
            "the server did not say why");
}

// Every rpc has a comment line above it; every field has a comment on its line or just above.
TEST(ApiTest, EveryRpcAndFieldIsCommented) {
  const std::regex field(R"(^\s*(repeated |optional )?(map<[^>]+>|[A-Za-z_.][\w.]*) \w+ = \d+;)");
  const std::regex rpc(R"(^\s*rpc \w+)");
  for (const char* file : {"types.proto", "tuning_service.proto", "worker_service.proto"}) {
    std::ifstream in(std::string(KTUNE_PROTO_DIR) + "/ktune/v1/" + file);
    ASSERT_TRUE(in) << file;
    std::string line, previous;
    int line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      bool commented_above = previous.find("//") != std::string::npos &&
                             previous.find_first_not_of(" ") == previous.find("//");
      bool commented_here = line.find("//") != std::string::npos;
      if (std::regex_search(line, rpc)) {
        EXPECT_TRUE(commented_above) << file << ":" << line_no << ": rpc without a comment";
      } else if (std::regex_search(line, field)) {
        EXPECT_TRUE(commented_above || commented_here)
            << file << ":" << line_no << ": field without a comment: " << line;
      }
      if (line.find_first_not_of(" ") != std::string::npos) previous = line;
    }
  }
}

}  // namespace
}  // namespace ktune
