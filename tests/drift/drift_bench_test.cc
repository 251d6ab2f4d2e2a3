// The drift benchmark's command line (bench/drift/drift_benchmark.cc): the figures that issue
// 22's goals are read from, per run and summed up, and its refusal of bad options.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace ktune {
namespace {

using ::testing::HasSubstr;
using testing::RunProgram;
using testing::SpaceFile;

testing::CommandResult RunDriftBench(const std::vector<std::string>& args) {
  return RunProgram(KTUNE_DRIFT_BENCH, args);
}

TEST(DriftBenchTest, BadOptionsExitWithTwoAndSayWhich) {
  const std::string space = SpaceFile("dedispersion_A100_T4.json.gz");
  const struct {
    std::vector<std::string> args;
    const char* says;
  } cases[] = {
      {{"--seeds", "0", space}, "--seeds takes an integer of at least 1"},
      {{"--seeds", "three", space}, "--seeds takes an integer"},
      {{"--budget"}, "--budget takes an integer"},
      {{"--strategy", "nosuch", space}, "unknown strategy 'nosuch'"},
      {{"--agent-share", "-1", space}, "--agent-share takes a number"},
      {{"--colour", space}, "unknown option --colour"},
      {{}, "name at least one recorded space file"},
  };
  for (const auto& c : cases) {
    const testing::CommandResult r = RunDriftBench(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.says;
    EXPECT_THAT(r.err, HasSubstr(c.says));
    EXPECT_THAT(r.err, HasSubstr("usage: ktune-drift-bench"));
    EXPECT_EQ(r.out, "") << c.says;  // nothing ran
  }
  const testing::CommandResult help = RunDriftBench({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--json"));
}

TEST(DriftBenchTest, JsonHasOneObjectPerRunAndASummaryThatAddsThemUp) {
  // Two seeds of a recorded space, the retuning by the `model` strategy (no LibTorch needed).
  const testing::CommandResult r =
      RunDriftBench({"--json", "--seeds", "2", "--stable", "150", "--budget", "40", "--strategy",
                     "model", SpaceFile("dedispersion_A100_T4.json.gz")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u) << r.out;  // two runs, then the summary
  int within = 0, flags = 0;
  for (int i = 0; i < 2; ++i) {
    const nlohmann::json& row = lines[i];
    EXPECT_EQ(row["space"], "dedispersion_A100_T4.json.gz");
    EXPECT_EQ(row["seed"], i + 1);
    EXPECT_EQ(row["stable_reports"], 200);  // sent in hundreds
    // The simulated regression is flagged, within the goal's 50 reports.
    EXPECT_GE(row["delay"].get<int>(), 1);
    EXPECT_LE(row["delay"].get<int>(), 50);
    // A best over the optimum is at least 1: these are times of the recorded space.
    for (const char* ratio : {"first_over_optimum", "retuned_over_new_optimum",
                              "earlier_over_new_optimum", "fresh_over_new_optimum"}) {
      EXPECT_GE(row[ratio].get<double>(), 1.0) << ratio;
    }
    within += row["retuned_over_new_optimum"].get<double>() <= 1.02;
    flags += row["false_flags"].get<int>();
  }
  const nlohmann::json& summary = lines[2]["summary"];
  EXPECT_EQ(summary["runs"], 2);
  EXPECT_EQ(summary["failed_runs"], 0);
  EXPECT_EQ(summary["flagged"], 2);
  EXPECT_EQ(summary["retuned_within_2pct"], within);
  EXPECT_EQ(summary["false_flags"], flags);
  EXPECT_EQ(summary["stable_reports"], 400);
  EXPECT_EQ(summary["max_delay"],
            std::max(lines[0]["delay"].get<int>(), lines[1]["delay"].get<int>()));
}

TEST(DriftBenchTest, AFileThatCannotBeReadFailsItsRunsAndTheExitCode) {
  const testing::CommandResult r =
      RunDriftBench({"--seeds", "1", "--strategy", "model", "/nonexistent/space.json.gz"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/space.json.gz"));
  EXPECT_THAT(r.out, HasSubstr("0 runs (1 failed to run)"));
}

}  // namespace
}  // namespace ktune
