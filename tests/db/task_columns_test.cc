#include "db/task_columns.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace ktune {
namespace {

using ::testing::HasSubstr;

Record MakeRecord(Configuration config, std::optional<double> time_ms) {
  Record r;
  r.config = std::move(config);
  r.status = time_ms ? MeasurementStatus::kOk : MeasurementStatus::kTimeout;
  r.time_ms = time_ms;
  return r;
}

TaskColumns ThreeRecords() {
  TaskColumnsBuilder b;
  b.Add(7, MakeRecord({{"tile", int64_t{16}}, {"mode", std::string("fast")}}, 2.0),
        "00000000000000ff");
  Record late = MakeRecord({{"tile", int64_t{32}}, {"scale", 0.5}}, std::nullopt);
  late.measured_at_us = 5;
  b.Add(9, late, "0000000000000001");
  Record inaccurate = MakeRecord({{"tile", int64_t{16}}, {"mode", std::string("fast")}}, 1.0);
  inaccurate.max_rel_error = 0.25;
  b.Add(8, inaccurate, "0000000000000002");
  return b.Take();
}

TEST(TaskColumnsTest, KeepsEachRecordsConfigurationAndFields) {
  TaskColumns c = ThreeRecords();
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c.params.size(), 3u);  // a parameter first seen on the second record widens the rows
  EXPECT_EQ(c.ConfigOf(1), (Configuration{{"tile", int64_t{32}}, {"scale", 0.5}}));
  EXPECT_EQ(c.ConfigOf(0), c.ConfigOf(2));
  EXPECT_TRUE(std::isnan(c.time_ms[1]));
  EXPECT_EQ(c.status[1], MeasurementStatus::kTimeout);
  EXPECT_EQ(c.max_rel_error[2], 0.25);
  auto row = c.IndicesOf(c.ConfigOf(0));
  ASSERT_TRUE(row.has_value());
  EXPECT_TRUE(c.HasConfig(2, *row));
  EXPECT_FALSE(c.HasConfig(1, *row));
  EXPECT_FALSE(c.IndicesOf({{"tile", int64_t{64}}}).has_value());       // a value none has
  EXPECT_FALSE(c.IndicesOf({{"unroll", int64_t{16}}}).has_value());     // a parameter none has
  EXPECT_FALSE(c.IndicesOf({{"tile", 16.0}}).has_value());              // 16.0 is not 16
}

TEST(TaskColumnsTest, SortsAsTaskRecordsOrdersRecords) {
  TaskColumns c = ThreeRecords();
  c.SortIntoTaskOrder();  // unknown times first, ties by record id, then known times
  EXPECT_EQ(c.handles, (std::vector<int64_t>{8, 7, 9}));
  EXPECT_EQ(c.ConfigOf(2), (Configuration{{"tile", int64_t{32}}, {"scale", 0.5}}));
}

TEST(TaskColumnsTest, AppendMapsValuesOntoItsOwnLists) {
  TaskColumns a = ThreeRecords();
  TaskColumnsBuilder b;
  b.Add(1, MakeRecord({{"tile", int64_t{32}}, {"unroll", int64_t{4}}}, 3.0), "0000000000000003");
  TaskColumns other = b.Take();
  a.Append(other);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a.ConfigOf(3), (Configuration{{"tile", int64_t{32}}, {"unroll", int64_t{4}}}));
  EXPECT_EQ(a.ConfigOf(1), (Configuration{{"tile", int64_t{32}}, {"scale", 0.5}}));
  const size_t tile = std::find(a.params.begin(), a.params.end(), "tile") - a.params.begin();
  ASSERT_LT(tile, a.params.size());
  EXPECT_EQ(a.values[tile].size(), 2u);  // 16 and 32, once each
  std::vector<bool> keep = {true, false, true, true};
  a.KeepRows(keep);
  EXPECT_EQ(a.handles, (std::vector<int64_t>{7, 8, 1}));
  EXPECT_EQ(a.ConfigOf(2), (Configuration{{"tile", int64_t{32}}, {"unroll", int64_t{4}}}));
}

TEST(TaskColumnsTest, EncodingRoundTrips) {
  TaskColumns c = ThreeRecords();
  auto back = DecodeTaskColumns(EncodeTaskColumns(c));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->params, c.params);
  EXPECT_EQ(back->values, c.values);
  EXPECT_EQ(back->handles, c.handles);
  EXPECT_EQ(back->status, c.status);
  EXPECT_EQ(back->value_index, c.value_index);
  EXPECT_EQ(back->uid, c.uid);
  EXPECT_EQ(back->measured_at_us, c.measured_at_us);
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(back->ConfigOf(i), c.ConfigOf(i));
  auto empty = DecodeTaskColumns(EncodeTaskColumns(TaskColumns()));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->size(), 0u);
}

TEST(TaskColumnsTest, ADamagedBlobIsDataLossNeverACrash) {
  const std::string blob = EncodeTaskColumns(ThreeRecords());
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    auto truncated = DecodeTaskColumns(blob.substr(0, cut));
    ASSERT_FALSE(truncated.ok()) << "cut at " << cut;
    EXPECT_EQ(truncated.status().code(), absl::StatusCode::kDataLoss);
  }
  std::string bad_magic = blob;
  bad_magic.replace(0, 4, "KTC9");  // another format's header
  EXPECT_THAT(DecodeTaskColumns(bad_magic).status().message(), HasSubstr("KTC1"));
  std::string bad_index = blob;
  bad_index[bad_index.size() - 1] = 0x7f;  // the last value index, far out of range
  EXPECT_EQ(DecodeTaskColumns(bad_index).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace ktune
