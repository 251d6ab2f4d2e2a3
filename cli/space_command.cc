// ktune space: inspect a search space (a T1 definition or a recorded space).
#include <iostream>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "db/interchange/record_files.h"
#include "db/interchange/recorded_landscape.h"
#include "kernels/t1_definition.h"

namespace ktune::cli {
namespace {

struct SpaceArgs {
  std::string definition, recorded;
  int sample = 0;
  uint64_t seed = 1;
  bool json = false;
};

int RunSpace(const SpaceArgs& a) {
  const std::string cmd = "space";
  if (a.definition.empty() == a.recorded.empty()) {
    return UsageError(cmd, "give exactly one of --definition FILE or --recorded FILE");
  }
  absl::Time start = absl::Now();
  absl::StatusOr<SearchSpace> space = absl::UnknownError("unset");
  std::string name;
  std::optional<RecordedLandscape> landscape;  // --recorded
  int64_t duplicates_merged = 0;               // --recorded
  if (!a.definition.empty()) {
    auto def = LoadT1Definition(a.definition);
    if (!def.ok()) return Fail(cmd, def.status());
    name = def->benchmark_name;
    space = std::move(def->space);
  } else {
    auto rec = LoadRecordedSpace(a.recorded);
    if (!rec.ok()) return Fail(cmd, rec.status());
    name = a.recorded;
    space = std::move(rec->space);
    landscape = DescribeLandscape(rec->records);
    duplicates_merged = rec->duplicates_merged;
  }
  double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  std::mt19937_64 rng(a.seed);
  std::vector<Configuration> samples;
  for (int i = 0; i < a.sample && space->size() > 0; ++i) {
    samples.push_back(space->ToConfiguration(space->SampleUniform(rng)));
  }
  if (a.json) {
    nlohmann::json params = nlohmann::json::array();
    for (const Parameter& p : space->parameters()) {
      nlohmann::json values = nlohmann::json::array();
      for (const ParamValue& v : p.values)
        std::visit([&](const auto& x) { values.push_back(x); }, v);
      params.push_back({{"name", p.name}, {"values", values}});
    }
    nlohmann::json sample_json = nlohmann::json::array();
    for (const Configuration& c : samples)
      sample_json.push_back(nlohmann::json::parse(CanonicalJson(c)));
    nlohmann::json out{{"name", name},
                       {"parameters", params},
                       {"constraints", space->constraints()},
                       {"unconstrained_size", space->unconstrained_size()},
                       {"size", space->size()},
                       {"load_ms", ms},
                       {"samples", sample_json}};
    if (landscape) {
      nlohmann::json& j = out["recorded"];
      j = {{"configurations", landscape->configurations},
           {"failed", landscape->failed},
           {"within_2pct_of_optimum", landscape->within_2pct},
           {"duplicates_merged", duplicates_merged}};
      if (landscape->optimum_ms) {
        j["optimum_ms"] = *landscape->optimum_ms;
        j["median_over_optimum"] = *landscape->median_ms / *landscape->optimum_ms;
        j["random_draws_to_cutoff"] = *landscape->random_draws_to_cutoff;
      }
    }
    std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    return kExitOk;
  }
  // A recorded space's valid set is the configurations the file lists, failed ones included
  // ("4092 valid configurations" beside "330 failed" read as a contradiction).
  std::cout << name << ": " << space->size()
            << (landscape ? " recorded configurations of " : " valid configurations of ")
            << absl::StrFormat("%.0f", space->unconstrained_size())
            << (landscape ? " combinations of the values" : "") << " (loaded in "
            << absl::StrFormat("%.1f", ms) << " ms)\n";
  for (const Parameter& p : space->parameters()) {
    std::string values;
    for (const ParamValue& v : p.values)
      absl::StrAppend(&values, values.empty() ? "" : " ", FormatParamValue(v));
    std::cout << "  " << p.name << ": " << values << "\n";
  }
  for (const std::string& c : space->constraints()) std::cout << "  constraint: " << c << "\n";
  if (landscape) {
    std::cout << "  recorded: " << landscape->configurations << " configurations, "
              << landscape->failed << " of them failed";
    if (landscape->optimum_ms) {
      std::cout << absl::StrFormat(
          "; optimum %.4g ms, median %.2fx the optimum; %.1f random draws expected to come "
          "within 5%% of the way from the optimum to the median; %d within 2%% of the optimum",
          *landscape->optimum_ms, *landscape->median_ms / *landscape->optimum_ms,
          *landscape->random_draws_to_cutoff, landscape->within_2pct);
    }
    std::cout << "\n";
    if (duplicates_merged > 0) {
      std::cout << "  note: " << duplicates_merged
                << (duplicates_merged == 1 ? " entry repeats" : " entries repeat")
                << " a configuration listed before: each configuration is replayed as its "
                   "fastest ok entry (or its first failure)\n";
    }
  }
  for (const Configuration& c : samples)
    std::cout << "  sample: " << FormatParamMapAssignments(c) << "\n";
  return kExitOk;
}

}  // namespace

void RegisterSpaceCommand(CLI::App& app, Action* action) {
  auto args = std::make_shared<SpaceArgs>();
  CLI::App* sub = app.add_subcommand(
      "space", "Enumerate a search space: a T1 definition or a recorded T4/Kernel Tuner file");
  sub->add_option("--definition", args->definition, "T1 definition file (JSON)");
  sub->add_option("--recorded", args->recorded, "Recorded space (T4 or Kernel Tuner cache)");
  sub->add_option("--sample", args->sample, "Print N configurations drawn uniformly")
      ->check(CLI::Range(0, 1000000));
  sub->add_option("--seed", args->seed, "Seed for --sample")->capture_default_str();
  sub->add_flag("--json", args->json, "Print as JSON");
  sub->callback([=] { *action = [=] { return RunSpace(*args); }; });
}

}  // namespace ktune::cli
