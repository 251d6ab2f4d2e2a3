// TuningService's telemetry methods: ReportTelemetry and ListDrift (server/telemetry_intake.h).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "db/device_family.h"
#include "proto/convert.h"
#include "server/services.h"

namespace ktune {
namespace {

constexpr int kMaxSamples = 1000;
constexpr int kMaxTimes = 10'000;
constexpr int kMaxBuckets = 1000;

v1::DriftKind ToProto(DriftKind kind) {
  switch (kind) {
    case DriftKind::kRegression:
      return v1::DRIFT_KIND_REGRESSION;
    case DriftKind::kNewEnvironment:
      return v1::DRIFT_KIND_NEW_ENVIRONMENT;
    case DriftKind::kUntunedHotProblem:
      return v1::DRIFT_KIND_UNTUNED_HOT_PROBLEM;
  }
  return v1::DRIFT_KIND_UNSPECIFIED;
}

}  // namespace

v1::DriftFlag ToProto(const DriftFlag& f) {
  v1::DriftFlag out;
  out.set_id(f.id);
  out.set_kind(ToProto(f.kind));
  *out.mutable_task() = ktune::ToProto(f.task);
  out.set_fingerprint_hash(f.fingerprint_hash);
  ktune::ToProto(f.config, out.mutable_config()->mutable_params());
  out.mutable_raised_at()->set_seconds(f.raised_at_us / 1'000'000);
  out.mutable_raised_at()->set_nanos(static_cast<int32_t>(f.raised_at_us % 1'000'000) * 1000);
  out.set_reports(f.reports);
  out.set_calls(f.calls);
  out.set_reference_ms(f.reference_ms);
  out.set_recent_ms(f.recent_ms);
  if (f.lab_ms) out.set_lab_ms(*f.lab_ms);
  out.set_message(f.message);
  out.set_action(f.action);
  if (f.retune_job > 0) out.set_retune_job_id(std::to_string(f.retune_job));
  return out;
}

namespace {

// Count, mean and standard deviation of a histogram, each bucket's calls at its midpoint.
absl::Status SummariseHistogram(const v1::TimeHistogram& h, TelemetryReport* r) {
  if (h.upper_bounds_ms_size() != h.counts_size() || h.counts_size() == 0 ||
      h.counts_size() > kMaxBuckets) {
    return absl::InvalidArgumentError(absl::StrCat(
        "histogram: ", h.upper_bounds_ms_size(), " bounds and ", h.counts_size(),
        " counts; as many of each, 1 to ", kMaxBuckets));
  }
  double lower = 0, sum = 0, sum_sq = 0;
  int64_t count = 0;
  for (int i = 0; i < h.counts_size(); ++i) {
    const double upper = h.upper_bounds_ms(i);
    if (!std::isfinite(upper) || upper <= lower) {
      return absl::InvalidArgumentError(
          "histogram: bounds must be positive, finite and increasing");
    }
    if (h.counts(i) < 0 || h.counts(i) > 1'000'000'000'000) {
      return absl::InvalidArgumentError("histogram: counts must be between 0 and 1e12");
    }
    const double mid = (lower + upper) / 2;
    count += h.counts(i);
    sum += mid * static_cast<double>(h.counts(i));
    sum_sq += mid * mid * static_cast<double>(h.counts(i));
    lower = upper;
  }
  if (count < 1) return absl::InvalidArgumentError("histogram: no calls");
  r->count = count;
  r->mean_ms = sum / static_cast<double>(count);
  r->stddev_ms = count > 1 ? std::sqrt(std::max(0.0, (sum_sq - sum * r->mean_ms) /
                                                         static_cast<double>(count - 1)))
                           : 0.0;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TelemetryReport> TuningServiceImpl::TelemetryFromProto(
    const v1::TelemetrySample& s) {
  TelemetryReport r;
  KTUNE_ASSIGN_OR_RETURN(BestQuery q, ParseBestQuery(s.kernel(), s.problem(), s.device()));
  if (q.device_class.empty()) return absl::InvalidArgumentError("device.device_class is required");
  if (!KernelKnown(q.kernel)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown kernel '", q.kernel,
        "': telemetry is for kernels the server knows (its registry, or kernels with records)"));
  }
  r.kernel = q.kernel;
  r.kernel_version = q.kernel_version;
  r.problem = q.problem;
  // A registry kernel's telemetry names a problem it can tune and only its parameters: a flag on
  // anything else could never be retuned (and "act" queued a job for it all the same).
  if (const KernelDefinition* kernel = spaces_->registry().Find(q.kernel)) {
    // Any version: a deployed program may run an older one than the registry's, and its
    // telemetry is stored as before.
    absl::StatusOr<TaskKey> canonical =
        spaces_->Canonical({q.kernel, "", q.problem, q.device_class});
    if (!canonical.ok()) return absl::InvalidArgumentError(canonical.status().message());
    // The registry's version (or none named): a value must be one of the parameter's (999 for
    // a tile size was stored, and no record could ever match its flags). An older version's
    // values may differ, and are not checked.
    const bool this_version = q.kernel_version.empty() || q.kernel_version == kernel->Version();
    for (const auto& [name, value] : s.config().params()) {
      const auto param = std::find_if(kernel->parameters.begin(), kernel->parameters.end(),
                                      [&](const KernelParameter& p) { return p.name == name; });
      if (param == kernel->parameters.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config: kernel '", q.kernel, "' has no parameter '", name, "'"));
      }
      // A core count joins its values on each worker: any positive integer may be one.
      if (!this_version || param->add_cores) continue;
      const bool listed = value.kind_case() == v1::ParamValue::kIntValue &&
                          std::find(param->values.begin(), param->values.end(),
                                    value.int_value()) != param->values.end();
      if (!listed) {
        // A value of another type is said to be one ("has no value 6; its values: 1, 2, 4, 6"
        // for the string "6" read as a contradiction).
        const char* kind = value.kind_case() == v1::ParamValue::kStringValue ? " (a string)"
                           : value.kind_case() == v1::ParamValue::kFloatValue
                               ? " (a floating-point number)"
                               : "";
        return absl::InvalidArgumentError(absl::StrCat(
            "config: parameter '", name, "' of kernel '", q.kernel, "' has no value ",
            value.kind_case() == v1::ParamValue::kStringValue ? "\"" + value.string_value() + "\""
                                                              : FormatProtoValue(value),
            kind, "; its values are the integers ", absl::StrJoin(param->values, ", ")));
      }
    }
  }
  auto fingerprint = s.device().extra().find("fingerprint_json");
  r.device = DeviceInfo::FromName(q.device_class);
  if (fingerprint != s.device().extra().end()) {
    // Facts given as null are not facts, and a fingerprint of none names only the class: `{}`
    // and {"driver": null} each read as a device never tuned (a new_environment flag).
    nlohmann::json facts = nlohmann::json::parse(fingerprint->second, nullptr, false);
    if (facts.is_object()) {
      for (auto it = facts.begin(); it != facts.end();) {
        it = it->is_null() ? facts.erase(it) : std::next(it);
      }
      if (!facts.empty()) r.device.fingerprint_json = facts.dump();
    } else {
      r.device.fingerprint_json = fingerprint->second;
    }
  }
  if (!q.family.empty()) r.device.family = q.family;
  KTUNE_ASSIGN_OR_RETURN(r.config, FromProto(s.config().params(), "config"));
  // A kernel known from a recorded space this server replays: the configuration is one of that
  // space's (a made-up parameter, or 18.5 for a tile size, was stored).
  if (spaces_->registry().Find(q.kernel) == nullptr) {
    absl::StatusOr<std::shared_ptr<const SearchSpace>> recorded =
        spaces_->Space({q.kernel, "", q.problem, q.device_class}, /*cores=*/1, /*threads=*/0);
    if (recorded.ok()) {
      if (absl::Status fits = (*recorded)->ToPoint(r.config).status(); !fits.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config: ", fits.message(), " (in the recorded space of ", q.kernel,
                         " on ", q.device_class, " this server replays)"));
      }
    } else {
      // A kernel known only from records (an import): the configuration names parameters its
      // records of the task (the version asked, if any) name (a misspelt parameter was stored,
      // and its flag could never be compared with a record). A task without ok records takes
      // any.
      KTUNE_RETURN_IF_ERROR(SameParametersAsRecords(q, r.config));
    }
  }
  const int forms = (s.times_ms_size() > 0) + (s.count() != 0 || s.mean_ms() != 0) +
                    s.has_histogram();
  if (forms > 1) {
    return absl::InvalidArgumentError(
        "give one of times_ms, count and mean_ms, or histogram");
  }
  // stddev_ms belongs to count and mean_ms; with the other forms it was dropped without a word.
  if (s.stddev_ms() != 0 && (s.times_ms_size() > 0 || s.has_histogram())) {
    return absl::InvalidArgumentError(
        "stddev_ms goes with count and mean_ms (times_ms and histogram give their own spread)");
  }
  if (s.has_histogram()) {
    KTUNE_RETURN_IF_ERROR(SummariseHistogram(s.histogram(), &r));
  } else if (s.times_ms_size() > 0) {
    if (s.times_ms_size() > kMaxTimes) {
      return absl::InvalidArgumentError(
          absl::StrCat("times_ms has ", s.times_ms_size(), " times; at most ", kMaxTimes));
    }
    double sum = 0, sum_sq = 0;
    for (double t : s.times_ms()) {
      if (!std::isfinite(t) || t <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("times_ms holds ", t, "; every time must be a positive number"));
      }
      sum += t;
      sum_sq += t * t;
    }
    r.count = s.times_ms_size();
    r.mean_ms = sum / r.count;
    r.stddev_ms = r.count > 1 ? std::sqrt(std::max(0.0, (sum_sq - sum * r.mean_ms) / (r.count - 1)))
                              : 0.0;
  } else {
    r.count = s.count();
    r.mean_ms = s.mean_ms();
    r.stddev_ms = s.stddev_ms();
  }
  if (s.has_window_start() != s.has_window_end()) {
    return absl::InvalidArgumentError("window_start and window_end go together");
  }
  if (s.has_window_start()) {
    KTUNE_ASSIGN_OR_RETURN(r.window_start_us, MicrosFromProto(s.window_start(), "window_start"));
    KTUNE_ASSIGN_OR_RETURN(r.window_end_us, MicrosFromProto(s.window_end(), "window_end"));
    // A report is of calls that ran: a window in the future (9999 was stored) is a wrong clock
    // or a wrong field. A day of clock skew is let through.
    const int64_t latest = absl::ToUnixMicros(absl::Now() + absl::Hours(24));
    if (r.window_end_us > latest) {
      return absl::InvalidArgumentError(
          absl::StrCat("window_end is ",
                       absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(r.window_end_us),
                                        absl::UTCTimeZone()),
                       ", more than a day after now: a report is of calls that ran"));
    }
  }
  r.reporter = "client";
  KTUNE_RETURN_IF_ERROR(ValidateTelemetry(r));
  return r;
}

absl::Status TuningServiceImpl::SameParametersAsRecords(const BestQuery& task,
                                                        const Configuration& config) {
  BestQuery q = task;
  q.fingerprint_hash.clear();
  q.family = "-";  // the task's own class: another device's kernel of the name may differ
  q.top_k = 1;
  KTUNE_ASSIGN_OR_RETURN(std::shared_ptr<const BestAnswer> best, best_->Query(q));
  if (best->message.best_size() == 0) return absl::OkStatus();
  const auto& params = best->message.best(0).config().params();
  std::vector<std::string> named;
  for (const auto& [name, value] : params) named.push_back(name);
  std::sort(named.begin(), named.end());
  // Some of them, as a registry kernel's telemetry may name some of its parameters.
  std::vector<std::string> unknown;
  for (const auto& [name, value] : config) {
    if (!std::binary_search(named.begin(), named.end(), name)) unknown.push_back(name);
  }
  if (unknown.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "config: the records of ", task.kernel, " on ", task.device_class, " name the parameters ",
      absl::StrJoin(named, ", "), ", not ", absl::StrJoin(unknown, ", ")));
}

bool TuningServiceImpl::KernelKnown(const std::string& kernel) {
  if (spaces_->registry().Find(kernel) != nullptr) return true;
  absl::MutexLock lock(&known_kernels_mu_);
  if (known_kernels_.count(kernel)) return true;
  // Kernels with records (recorded spaces, imports): looked up again at most every 10 s.
  if (absl::Now() - known_kernels_at_ < absl::Seconds(10)) return false;
  known_kernels_at_ = absl::Now();
  absl::StatusOr<std::vector<TaskKey>> tasks = db_->ListTasks();
  if (!tasks.ok()) return false;
  for (const TaskKey& t : *tasks) known_kernels_.insert(t.kernel);
  return known_kernels_.count(kernel) > 0;
}

grpc::ServerUnaryReactor* TuningServiceImpl::ReportTelemetry(
    grpc::CallbackServerContext* ctx, const v1::ReportTelemetryRequest* request,
    v1::ReportTelemetryResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kTelemetry); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    if (request->samples_size() == 0) {
      return absl::InvalidArgumentError("no samples");
    }
    if (request->samples_size() > kMaxSamples) {
      return absl::ResourceExhaustedError(
          absl::StrCat(request->samples_size(), " samples in one call; at most ", kMaxSamples));
    }
    std::vector<TelemetryReport> reports;
    for (int i = 0; i < request->samples_size(); ++i) {
      absl::StatusOr<TelemetryReport> r = TelemetryFromProto(request->samples(i));
      if (!r.ok()) {
        return absl::Status(r.status().code(),
                            absl::StrCat("samples[", i, "]: ", r.status().message()));
      }
      reports.push_back(*std::move(r));
    }
    absl::StatusOr<TelemetryIntake::ReportOutcome> outcome = telemetry_->Report(std::move(reports));
    if (!outcome.ok()) return outcome.status();
    response->set_accepted(request->samples_size());
    response->set_duplicates(outcome->duplicates);
    response->set_late(outcome->late);
    for (const DriftFlag& f : outcome->raised) *response->add_raised() = ToProto(f);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TuningServiceImpl::ListDrift(grpc::CallbackServerContext* ctx,
                                                       const v1::ListDriftRequest*,
                                                       v1::ListDriftResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    for (const DriftFlag& f : telemetry_->Flags()) *response->add_flags() = ToProto(f);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TuningServiceImpl::RetuneDriftFlag(
    grpc::CallbackServerContext* ctx, const v1::RetuneDriftFlagRequest* request,
    v1::DriftFlag* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kAdmin); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    absl::StatusOr<DriftFlag> flag = telemetry_->Retune(request->flag_id());
    if (!flag.ok()) return flag.status();
    *response = ToProto(*flag);
    return absl::OkStatus();
  });
}

}  // namespace ktune
