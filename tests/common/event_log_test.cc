// The server's event log: one line per event, whatever a client put in a field.
#include "common/event_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace ktune {
namespace {

// The text the event log writes to stderr for one event.
std::string Logged(std::initializer_list<LogField> fields) {
  SetLogFormat(LogFormat::kText);
  ::testing::internal::CaptureStderr();
  LogEvent("worker_registered", fields);
  return ::testing::internal::GetCapturedStderr();
}

TEST(EventLogTest, PlainValuesAreBareAndOthersQuoted) {
  const std::string line = Logged({{"worker_id", "w1-42"}, {"host", "node a"}, {"empty", ""}});
  EXPECT_THAT(
      line, ::testing::EndsWith(" worker_registered worker_id=w1-42 host=\"node a\" empty=\"\"\n"));
}

// A host name with a newline wrote a second line that read as another event.
TEST(EventLogTest, AFieldCannotForgeAnotherLine) {
  const std::string line =
      Logged({{"host", "evil\n2026-12-06T11:50:00.000Z worker_left worker_id=w1"},
              {"device_class", "a\"b\\c\x01"}});
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
  EXPECT_THAT(line, ::testing::HasSubstr(
                        "host=\"evil\\n2026-12-06T11:50:00.000Z worker_left worker_id=w1\""));
  EXPECT_THAT(line, ::testing::HasSubstr("device_class=\"a\\\"b\\\\c\\x01\""));
}

}  // namespace
}  // namespace ktune
