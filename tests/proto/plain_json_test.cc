// PlainJson: the CLI's one --json style for API messages (proto/plain_json.h), rule by rule.
#include "proto/plain_json.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ktune/v1/tuning_service.pb.h"
#include "proto/convert.h"

namespace ktune {
namespace {

using Json = nlohmann::ordered_json;

TEST(PlainJsonTest, NumbersAreNumbersAndEnumsAreShortNames) {
  v1::DriftFlag flag;
  flag.set_id(7);
  flag.set_kind(v1::DRIFT_KIND_UNTUNED_HOT_PROBLEM);
  flag.set_calls(int64_t{1} << 40);
  flag.mutable_task()->mutable_kernel()->set_name(
      "gemm");  // protobuf's mapping wrote every int64 as a string
  flag.mutable_task()->mutable_problem()->mutable_params()->insert(
      {"M", ToProto(ParamValue(int64_t{64}))});
  flag.mutable_task()->mutable_problem()->mutable_params()->insert(
      {"dtype", ToProto(ParamValue(std::string("f16")))});
  (*flag.mutable_config()->mutable_params())["alpha"] = ToProto(ParamValue(0.5));
  flag.mutable_raised_at()->set_seconds(1'700'000'000);
  const Json j = PlainJson(flag);
  EXPECT_EQ(j["id"], 7);
  EXPECT_EQ(j["kind"], "untuned_hot_problem");
  EXPECT_EQ(j["calls"], int64_t{1} << 40);
  EXPECT_EQ(j["task"]["problem"], Json({{"M", 64}, {"dtype", "f16"}}));
  EXPECT_EQ(j["task"]["kernel"], Json({{"name", "gemm"}, {"version", ""}}));
  EXPECT_EQ(j["task"]["device_class"], "");
  EXPECT_EQ(j["config"], Json({{"alpha", 0.5}}));
  EXPECT_EQ(j["raised_at"], "2023-11-14T22:13:20+00:00");
  // Every field, defaults too; what has presence and is unset is null.
  EXPECT_EQ(j["reports"], 0);
  EXPECT_EQ(j["message"], "");
  EXPECT_EQ(j["lab_ms"], nullptr);
  EXPECT_EQ(static_cast<int>(j.size()), v1::DriftFlag::descriptor()->field_count());
}

TEST(PlainJsonTest, ARecordIsAnInterchangeLineAndAnUnsetOneIsNull) {
  Record r;
  r.kernel = "gemm";
  r.problem = {{"M", int64_t{64}}};
  r.device = DeviceInfo::FromName("cpu:x");
  r.config = {{"MR", int64_t{4}}};
  r.repeat_times_ms = {1.0, 1.5, 2.0};
  r.time_ms = 1.5;
  FillRepeatStatistics(r);
  r.measured_at_us = 1'700'000'000'250'000;
  v1::ExplainResponse e;
  e.set_level(v1::MATCH_LEVEL_DEVICE_CLASS);
  *e.mutable_served() = ToProto(r);
  e.set_records(3);
  const Json j = PlainJson(e);
  EXPECT_EQ(j["level"], "device_class");
  EXPECT_EQ(j["served"], Json::parse(RecordToJsonLine(r)));
  EXPECT_EQ(j["served"]["measured_at"], "2023-11-14T22:13:20.25+00:00");
  EXPECT_EQ(j["runner_up"], nullptr);
  EXPECT_EQ(j["records"], 3);
  EXPECT_EQ(j["best_so_far_ms"], Json::array());
}

TEST(PlainJsonTest, AOneofShowsOnlyItsMemberAndMapsAreObjects) {
  v1::ParameterInfo info;
  info.set_name("MR");
  *info.add_values() = ToProto(ParamValue(int64_t{4}));
  *info.add_values() = ToProto(ParamValue(std::string("x")));
  info.add_values();  // no member set
  EXPECT_EQ(PlainJson(info), Json::parse(R"({"name":"MR","values":[4,"x",null]})"));
  v1::DeviceFingerprint device;
  (*device.mutable_extra())["fingerprint_json"] = R"({"name":"x"})";
  EXPECT_EQ(PlainJson(device)["extra"], Json({{"fingerprint_json", R"({"name":"x"})"}}));
  EXPECT_EQ(PlainJson(device)["kind"], "unspecified");
}

// What a newer server may send, and what the core would refuse, still prints: an enum value this
// build does not know as its number (it printed "unknown_enum_value_matchlevel_9"), a record's
// stale boundary kept, a time outside 1970-9999 as its fields, NaN as null.
TEST(PlainJsonTest, TheUnknownAndTheOutOfRangePrintAsWhatTheyAre) {
  v1::ExplainResponse e;
  e.set_level(static_cast<v1::MatchLevel>(9));
  e.set_gap(std::nan(""));
  Record r;
  r.kernel = "gemm";
  r.device = DeviceInfo::FromName("cpu:x");
  r.config = {{"MR", int64_t{4}}};
  r.status = MeasurementStatus::kCompileError;
  *e.mutable_served() = ToProto(r);
  e.mutable_served()->set_stale_before_us(1'700'000'000'000'000);
  const Json j = PlainJson(e);
  EXPECT_EQ(j["level"], 9);
  EXPECT_NE(PlainJsonText(e).find("\"gap\":null"), std::string::npos);
  EXPECT_EQ(j["served"]["stale_before_us"], 1'700'000'000'000'000);
  EXPECT_EQ(j["served"]["status"], "compile_error");

  v1::DriftFlag flag;
  flag.mutable_raised_at()->set_seconds(-5);
  EXPECT_EQ(PlainJson(flag)["raised_at"], Json({{"seconds", -5}, {"nanos", 0}}));
  flag.mutable_raised_at()->set_seconds(1'700'000'000);
  flag.mutable_raised_at()->set_nanos(999'999'999);  // truncated to the microsecond, as stored
  EXPECT_EQ(PlainJson(flag)["raised_at"], "2023-11-14T22:13:20.999999+00:00");
}

}  // namespace
}  // namespace ktune
