// ktune telemetry report | ktune drift: production telemetry in, drift flags out
// (server/telemetry_intake.h).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/command.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "proto/channel.h"
#include "proto/convert.h"
#include "proto/plain_json.h"

namespace ktune::cli {
namespace {

constexpr int kSamplesPerCall = 1000;

struct ClientArgs {
  std::string server = kDefaultServer, token;
  ClientTls tls;
  bool json = false;
};

void AddClientOptions(CLI::App* sub, ClientArgs* a) {
  sub->add_option("--server", a->server, "Server address HOST:PORT")
      ->check(ServerAddress())
      ->capture_default_str();
  sub->add_option("--token", a->token, "Bearer token (or $KTUNE_TOKEN)");
  AddClientTlsOptions(sub, &a->tls);
  sub->add_flag("--json", a->json, "Print as JSON");
}

absl::Status SetTimestamp(const nlohmann::json& line, const char* key,
                          google::protobuf::Timestamp* out) {
  if (!line.contains(key)) return absl::OkStatus();
  if (!line[key].is_string()) return absl::InvalidArgumentError(absl::StrCat(key, " must be a string"));
  KTUNE_ASSIGN_OR_RETURN(int64_t us, ParseTimestampUs(line[key].get<std::string>()));
  out->set_seconds(us / 1'000'000);
  out->set_nanos(static_cast<int32_t>(us % 1'000'000) * 1000);
  return absl::OkStatus();
}

absl::StatusOr<ParamMap> MapOf(const nlohmann::json& line, const char* key) {
  if (!line.contains(key)) return ParamMap();
  if (!line[key].is_object()) return absl::InvalidArgumentError(absl::StrCat(key, " must be an object"));
  return ParseParamMapJson(line[key].dump());
}

// One JSONL line: {"kernel", "problem", "device" (a class, or {"class", "fingerprint"}),
// "config", "times_ms" | "count" + "mean_ms" [+ "stddev_ms"], ["window_start", "window_end"]}.
absl::StatusOr<v1::TelemetrySample> SampleFromJson(const std::string& text) {
  nlohmann::json line;
  try {
    line = nlohmann::json::parse(text);  // NaN and Infinity are not JSON
  } catch (const nlohmann::json::exception& e) {
    // parse_error, or out_of_range for a number past a double's range (1e400): that one aborted
    // the program.
    return absl::InvalidArgumentError(absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!line.is_object()) return absl::InvalidArgumentError("not a JSON object");
  // A misspelt key (stdev_ms) was ignored, and what it meant was stored as its default. The
  // Python client's _TELEMETRY_KEYS (python/ktune/client.py) are the same keys.
  static const std::set<std::string> kKeys = {"kernel",    "problem",      "device",    "config",
                                              "times_ms",  "count",        "mean_ms",   "stddev_ms",
                                              "histogram", "window_start", "window_end"};
  for (const auto& [key, value] : line.items()) {
    if (!kKeys.count(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown key '", key, "' (", absl::StrJoin(kKeys, ", "), ")"));
    }
  }
  v1::TelemetrySample s;
  if (!line.contains("kernel") || !line["kernel"].is_string()) {
    return absl::InvalidArgumentError("kernel (a string) is required");
  }
  s.mutable_kernel()->set_name(line["kernel"].get<std::string>());
  KTUNE_ASSIGN_OR_RETURN(ParamMap problem, MapOf(line, "problem"));
  ToProto(problem, s.mutable_problem()->mutable_params());
  KTUNE_ASSIGN_OR_RETURN(ParamMap config, MapOf(line, "config"));
  ToProto(config, s.mutable_config()->mutable_params());
  const nlohmann::json device = line.value("device", nlohmann::json());
  if (device.is_string()) {
    s.mutable_device()->set_device_class(device.get<std::string>());
  } else if (device.is_object() && device.contains("class") && device["class"].is_string()) {
    s.mutable_device()->set_device_class(device["class"].get<std::string>());
    if (device.contains("fingerprint")) {
      (*s.mutable_device()->mutable_extra())["fingerprint_json"] = device["fingerprint"].dump();
    }
  } else {
    return absl::InvalidArgumentError("device: a device class, or {\"class\", \"fingerprint\"}");
  }
  // One form per sample: a line with two (times_ms beside count and mean_ms) lost one of them.
  const int forms = static_cast<int>(line.contains("histogram")) +
                    static_cast<int>(line.contains("times_ms")) +
                    static_cast<int>(line.contains("count") || line.contains("mean_ms"));
  if (forms > 1) {
    return absl::InvalidArgumentError(
        "give one of times_ms, count and mean_ms, or histogram; this sample has more than one");
  }
  if (line.contains("histogram")) {
    const nlohmann::json& h = line["histogram"];
    if (!h.is_object() || !h.value("upper_bounds_ms", nlohmann::json()).is_array() ||
        !h.value("counts", nlohmann::json()).is_array()) {
      return absl::InvalidArgumentError(
          "histogram must be {\"upper_bounds_ms\": [...], \"counts\": [...]}");
    }
    for (const nlohmann::json& b : h["upper_bounds_ms"]) {
      if (!b.is_number()) return absl::InvalidArgumentError("histogram: a bound is not a number");
      s.mutable_histogram()->add_upper_bounds_ms(b.get<double>());
    }
    for (const nlohmann::json& c : h["counts"]) {
      if (!c.is_number_integer()) return absl::InvalidArgumentError("histogram: a count is not an integer");
      s.mutable_histogram()->add_counts(c.get<int64_t>());
    }
  } else if (line.contains("times_ms")) {
    if (!line["times_ms"].is_array()) return absl::InvalidArgumentError("times_ms must be an array");
    if (line["times_ms"].empty()) return absl::InvalidArgumentError("times_ms is empty");
    for (const nlohmann::json& t : line["times_ms"]) {
      if (!t.is_number()) return absl::InvalidArgumentError("times_ms holds a non-number");
      s.add_times_ms(t.get<double>());
    }
  } else {
    if (!line.contains("count") || !line.contains("mean_ms")) {
      return absl::InvalidArgumentError("times_ms, count and mean_ms, or histogram is required");
    }
    const nlohmann::json& count = line["count"];
    // A whole number too large for the API is said to be too large (it was "not a whole
    // number"): 1e12 calls is the server's bound.
    const bool too_large =
        (count.is_number_unsigned() &&
         count.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) ||
        (count.is_number_float() && count.get<double>() >= 9.2e18 &&
         count.get<double>() == std::floor(count.get<double>()));
    if (too_large) {
      return absl::InvalidArgumentError(
          absl::StrCat("count is ", count.dump(), "; it must be between 1 and 1e12"));
    }
    // A whole number written with an exponent (2e13) is a whole number; the server says its range.
    const bool whole_float = count.is_number_float() && std::isfinite(count.get<double>()) &&
                             count.get<double>() == std::floor(count.get<double>());
    if (!count.is_number_integer() && !whole_float) {
      return absl::InvalidArgumentError(
          absl::StrCat("count must be a whole number of calls, not ", count.dump()));
    }
    if (!line["mean_ms"].is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("mean_ms must be a number, not ", line["mean_ms"].dump()));
    }
    s.set_count(whole_float ? static_cast<int64_t>(count.get<double>()) : count.get<int64_t>());
    s.set_mean_ms(line["mean_ms"].get<double>());
    if (line.contains("stddev_ms")) {
      if (!line["stddev_ms"].is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat("stddev_ms must be a number, not ", line["stddev_ms"].dump()));
      }
      s.set_stddev_ms(line["stddev_ms"].get<double>());
    }
  }
  KTUNE_RETURN_IF_ERROR(SetTimestamp(line, "window_start", s.mutable_window_start()));
  KTUNE_RETURN_IF_ERROR(SetTimestamp(line, "window_end", s.mutable_window_end()));
  if (!line.contains("window_start")) s.clear_window_start();
  if (!line.contains("window_end")) s.clear_window_end();
  return s;
}

std::string KindName(v1::DriftKind kind) {
  switch (kind) {
    case v1::DRIFT_KIND_REGRESSION:
      return "regression";
    case v1::DRIFT_KIND_NEW_ENVIRONMENT:
      return "new_environment";
    case v1::DRIFT_KIND_UNTUNED_HOT_PROBLEM:
      return "untuned_hot_problem";
    default:
      return "?";
  }
}

// The server's suggested commands leave its address to the reader ("--server ADDR"): the address
// this command reached it at goes in, so that the command runs as printed.
void NameServer(const std::string& server, v1::DriftFlag* f) {
  f->set_action(absl::StrReplaceAll(f->action(), {{"--server ADDR", "--server " + server}}));
}

// What the server made of the samples a report sent (ReportTelemetryResponse's counts).
struct ReportCounts {
  int64_t accepted = 0, duplicates = 0, late = 0;
};

// report --json: what was stored and raised, on success and on a refusal part-way.
nlohmann::ordered_json ReportJson(const ReportCounts& counts,
                                  const std::vector<v1::DriftFlag>& raised) {
  nlohmann::ordered_json out = {{"accepted", counts.accepted},
                                {"duplicates", counts.duplicates},
                                {"late", counts.late},
                                {"raised", nlohmann::ordered_json::array()}};
  for (const v1::DriftFlag& f : raised) out["raised"].push_back(PlainJson(f));
  return out;
}

void PrintFlag(const v1::DriftFlag& f) {
  std::map<std::string, std::string> problem;
  for (const auto& [k, v] : f.task().problem().params()) {
    problem[k] = FormatProtoValue(v);
  }
  std::string problem_text;
  for (const auto& [k, v] : problem) absl::StrAppend(&problem_text, problem_text.empty() ? "" : ",", k, "=", v);
  // When it was raised too (only --json said it).
  const int64_t raised_us = f.raised_at().seconds() * 1'000'000 + f.raised_at().nanos() / 1000;
  std::cout << absl::StrFormat(
      "#%d %s  %s%s on %s  (raised %s)\n    %s\n    action: %s\n", f.id(), KindName(f.kind()),
      f.task().kernel().name(), problem_text.empty() ? "" : " " + problem_text,
      f.task().device_class(), FormatTimestampUs(raised_us), f.message(), f.action());
}

struct ReportArgs {
  ClientArgs client;
  std::string file;
  int64_t skip = 0;
};

// The server refuses a call's samples as "samples[K]: why"; the user needs the file's line.
std::string OnFileLine(const std::string& file, absl::string_view message,
                       const std::vector<int>& line_of, size_t first_of_call) {
  int k = -1, consumed = 0;
  const std::string text(message);
  if (std::sscanf(text.c_str(), "samples[%d]: %n", &k, &consumed) == 1 && consumed > 0 && k >= 0 &&
      first_of_call + k < line_of.size()) {
    return absl::StrCat(file, ":", line_of[first_of_call + k], ": ", text.substr(consumed));
  }
  return text;
}

int RunReport(const ReportArgs& a) {
  const std::string cmd = "telemetry report";
  std::istringstream file_stream;
  std::istream* in = &std::cin;
  if (a.file != "-") {  // a file may be gzip, as every file ktune reads
    absl::StatusOr<std::string> text = ReadFileMaybeGzip(a.file);
    if (!text.ok()) return Fail(cmd, text.status());
    file_stream.str(*std::move(text));
    in = &file_stream;
  }
  // Every line's form is checked before anything is sent; what needs the server (a known kernel,
  // ranges) is checked by it, a call of kSamplesPerCall samples at a time, each call's samples
  // all before any is stored. A refused call says which were stored, and --skip resumes.
  std::vector<v1::TelemetrySample> samples;
  std::vector<int> line_of;  // samples[i] is on line line_of[i]
  std::string line;
  int64_t skipped = 0;
  for (int n = 1; std::getline(*in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (skipped < a.skip) {
      ++skipped;
      continue;
    }
    absl::StatusOr<v1::TelemetrySample> s = SampleFromJson(line);
    if (!s.ok()) {
      return Fail(cmd, absl::InvalidArgumentError(
                           absl::StrCat(a.file, ":", n, ": ", s.status().message())));
    }
    samples.push_back(*std::move(s));
    line_of.push_back(n);
  }
  if (samples.empty()) {
    return Fail(
        cmd, absl::InvalidArgumentError(absl::StrCat(a.file, " holds no samples",
                                                     a.skip > 0 ? " after the skipped ones" : "")));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.client.server, a.client.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  auto stub = v1::TuningService::NewStub(*channel);
  ReportCounts counts;
  std::vector<v1::DriftFlag> raised;
  for (size_t start = 0; start < samples.size(); start += kSamplesPerCall) {
    v1::ReportTelemetryRequest request;
    for (size_t i = start; i < std::min(samples.size(), start + kSamplesPerCall); ++i) {
      *request.add_samples() = samples[i];
    }
    v1::ReportTelemetryResponse response;
    absl::Status st = FromGrpc(stub->ReportTelemetry(ClientContextFor(a.client.token).get(), request, &response));
    if (!st.ok()) {
      const std::string why = OnFileLine(a.file, st.message(), line_of, start);
      if (a.client.json) {  // a script learns what was stored, and where to resume
        nlohmann::ordered_json out = ReportJson(counts, raised);
        out["error"] = why;
        out["resume_skip"] = a.skip + static_cast<int64_t>(start);
        std::cout << out.dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
      }
      std::cerr << "ktune " << cmd << ": "
                << (start == 0
                        ? (a.skip > 0 ? absl::StrCat("nothing more was stored; after fixing, "
                                                     "run again with --skip ",
                                                     a.skip)
                                      : std::string("nothing was stored"))
                        : absl::StrCat("the first ", a.skip + start,
                                       " samples were stored (through line ", line_of[start - 1],
                                       "); after fixing, resume with --skip ", a.skip + start))
                << "\n";
      return Fail(cmd, absl::Status(st.code(), why));
    }
    counts.accepted += response.accepted();
    counts.duplicates += response.duplicates();
    counts.late += response.late();
    for (v1::DriftFlag& f : *response.mutable_raised()) {
      NameServer(a.client.server, &f);
      raised.push_back(std::move(f));
    }
  }
  if (a.client.json) {
    std::cout << ReportJson(counts, raised).dump(-1, ' ', false, kReplaceInvalidUtf8) << "\n";
    return kExitOk;
  }
  std::cout << "accepted " << counts.accepted << " samples";
  if (counts.duplicates > 0) {
    std::cout << " (" << counts.duplicates
              << " sent before, with the same window and times: not counted again)";
  }
  std::cout << "; " << raised.size() << (raised.size() == 1 ? " drift flag" : " drift flags")
            << " raised\n";
  if (counts.late > 0) {
    std::cout << counts.late
              << " samples are older than the newest window of their configuration: stored, "
                 "not taken for recent times\n";
  }
  for (const v1::DriftFlag& f : raised) PrintFlag(f);
  return kExitOk;
}

int RunDrift(const ClientArgs& a) {
  const std::string cmd = "drift";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(a.server, a.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  v1::ListDriftResponse response;
  absl::Status st = FromGrpc(v1::TuningService::NewStub(*channel)->ListDrift(
      ClientContextFor(a.token).get(), v1::ListDriftRequest(), &response));
  if (!st.ok()) return Fail(cmd, st);
  for (v1::DriftFlag& f : *response.mutable_flags()) NameServer(a.server, &f);
  if (a.json) {
    std::cout << PlainJsonText(response) << "\n";
    return kExitOk;
  }
  if (response.flags().empty()) {
    std::cout << "no drift flagged by " << a.server << "\n";
    return kExitOk;
  }
  for (const v1::DriftFlag& f : response.flags()) PrintFlag(f);
  return kExitOk;
}

struct RetuneArgs {
  ClientArgs client;
  int64_t flag_id = 0;
};

// ktune drift retune ID: the operator's go-ahead for a suggested flag (RetuneDriftFlag).
int RunRetune(const RetuneArgs& a) {
  const std::string cmd = "drift retune";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel(a.client.server, a.client.tls);
  if (!channel.ok()) return ChannelFailure(cmd, channel.status());
  v1::RetuneDriftFlagRequest request;
  request.set_flag_id(a.flag_id);
  v1::DriftFlag flag;
  absl::Status st = FromGrpc(v1::TuningService::NewStub(*channel)->RetuneDriftFlag(
      ClientContextFor(a.client.token).get(), request, &flag));
  if (absl::IsNotFound(st)) return UsageError(cmd, std::string(st.message()));
  if (!st.ok()) return Fail(cmd, st);
  NameServer(a.client.server, &flag);
  if (a.client.json) {
    std::cout << PlainJsonText(flag) << "\n";
    return kExitOk;
  }
  PrintFlag(flag);
  std::cout << "follow it: ktune watch " << flag.retune_job_id() << " --server " << a.client.server
            << "\n";
  return kExitOk;
}

}  // namespace

void RegisterTelemetryCommands(CLI::App& app, Action* action) {
  CLI::App* telemetry = app.add_subcommand(
      "telemetry", "Production telemetry: how tuned configurations run in deployed programs");
  telemetry->require_subcommand(1);
  auto report_args = std::make_shared<ReportArgs>();
  CLI::App* report = telemetry->add_subcommand(
      "report",
      "Send telemetry samples (JSONL, one per line: kernel, problem, device, config, times_ms, "
      "count+mean_ms[+stddev_ms] or histogram {upper_bounds_ms, counts}, optional "
      "window_start/window_end) and print the drift flags they raise");
  report->add_option("file", report_args->file, "JSONL file of samples, or - for stdin")->required();
  report
      ->add_option("--skip", report_args->skip,
                   "Skip the file's first N samples (stored by an earlier report that stopped)")
      ->check(ZeroOrMore());
  AddClientOptions(report, &report_args->client);
  report->callback([=] { *action = [=] { return RunReport(*report_args); }; });

  auto drift_args = std::make_shared<ClientArgs>();
  CLI::App* drift = app.add_subcommand(
      "drift", "What drift detection flagged from production telemetry, and what was done");
  AddClientOptions(drift, drift_args.get());
  drift->callback([=] {
    if (!*action) *action = [=] { return RunDrift(*drift_args); };
  });
  auto retune_args = std::make_shared<RetuneArgs>();
  CLI::App* retune = drift->add_subcommand(
      "retune",
      "Retune what a flag found, as --retune act would (admin role): a job that measures the old "
      "best configurations again beside new candidates, the old records no longer served as "
      "current");
  retune->add_option("ID", retune_args->flag_id, "The flag's number (ktune drift lists them)")
      ->required()
      ->check(CLI::PositiveNumber);
  AddClientOptions(retune, &retune_args->client);
  retune->callback([=] {
    *action = [=] {
      // `drift`'s own options before `retune` were taken by `drift` and dropped: the go-ahead
      // went to the default server.
      const bool parents = drift_args->server != kDefaultServer || !drift_args->token.empty() ||
                           drift_args->json || !drift_args->tls.ca_file.empty() ||
                           !drift_args->tls.cert_file.empty() || !drift_args->tls.key_file.empty();
      return parents ? UsageError("drift retune",
                                  "options go after `retune` (ktune drift retune ID --server ADDR "
                                  "[--token T] [--json])")
                     : RunRetune(*retune_args);
    };
  });
}

}  // namespace ktune::cli
