// The pipe protocol between a worker and its runner (measurer/runner/framing.h).
#include "measurer/runner/framing.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "measurer/runner/runner.pb.h"

namespace ktune::runner {
namespace {

// A worker stopped (SIGSTOP, a paused VM) past a candidate's deadline while its runner went on
// and answered takes the answer: it stored the candidate as a timeout, for good, though the
// kernel ran in a few milliseconds (a fleet trial: 3 of 3 stops). Nothing to read at the
// deadline is still a timeout.
TEST(FramingTest, AnAnswerAlreadyThereIsReadHoweverLateNothingThereTimesOut) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  RunResponse sent;
  sent.set_max_rel_error(2.5e-7);
  ASSERT_TRUE(WriteFrame(fds[1], sent));
  const int64_t long_past = SteadyNowMs() - 14000;
  RunResponse got;
  bool timed_out = true;
  EXPECT_TRUE(ReadFrame(fds[0], got, long_past, &timed_out));
  EXPECT_FALSE(timed_out);
  EXPECT_EQ(got.max_rel_error(), 2.5e-7);

  timed_out = false;
  EXPECT_FALSE(ReadFrame(fds[0], got, long_past, &timed_out));
  EXPECT_TRUE(timed_out);
  const int64_t soon = SteadyNowMs() + 50;
  timed_out = false;
  EXPECT_FALSE(ReadFrame(fds[0], got, soon, &timed_out));
  EXPECT_TRUE(timed_out);
  EXPECT_GE(SteadyNowMs(), soon) << "it waited for the deadline";
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace ktune::runner
