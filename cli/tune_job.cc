#include "cli/tune_job.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "proto/channel.h"
#include "proto/convert.h"
#include "server/job_spec.h"

namespace ktune::cli {

void WatchStopper::Watching(grpc::ClientContext* watch) {
  absl::MutexLock lock(&mu_);
  watch_ = watch;
  if (watch_ != nullptr && !why_.ok()) watch_->TryCancel();
}

void WatchStopper::Stop(absl::Status why) {
  absl::MutexLock lock(&mu_);
  why_ = std::move(why);
  if (watch_ != nullptr) watch_->TryCancel();
}

absl::Status WatchStopper::reason() {
  absl::MutexLock lock(&mu_);
  return why_;
}

absl::StatusOr<v1::Job> RunTuneJob(v1::TuningService::StubInterface& stub, const TuneJobRequest& r,
                                   const std::function<void(const std::string&)>& on_submitted,
                                   const std::function<void(int64_t, double)>& on_progress) {
  v1::SubmitJobRequest submit;
  v1::JobSpec* spec = submit.mutable_spec();
  spec->set_name(absl::StrCat("tune ", r.task.kernel));
  v1::KernelRef* kernel = spec->add_kernels();
  kernel->set_name(r.task.kernel);
  kernel->set_version(r.task.kernel_version);
  ToProto(r.task.problem, spec->add_problems()->mutable_params());
  spec->add_device_classes(r.task.device_class);
  spec->set_budget_measurements(r.budget);
  absl::StatusOr<v1::Strategy> strategy = ParseStrategy(r.strategy);
  if (!strategy.ok()) return strategy.status();
  spec->set_strategy(*strategy);
  spec->set_seed(r.seed);
  spec->set_batch_size(r.batch_size);
  spec->set_threads(r.threads);
  if (r.agent_share) spec->set_agent_share(*r.agent_share);
  if (r.max_rel_error) spec->set_max_rel_error(*r.max_rel_error);
  for (const Configuration& c : r.initial)
    ToProto(c, spec->add_initial_configs()->mutable_params());
  v1::Job job;
  if (absl::Status s = FromGrpc(stub.SubmitJob(ClientContextFor(r.token).get(), submit, &job));
      !s.ok()) {
    return s;
  }
  if (on_submitted) on_submitted(job.job_id());

  v1::WatchJobRequest watch;
  watch.set_job_id(job.job_id());
  watch.set_with_tasks(true);
  auto watch_context = ClientContextFor(r.token, 7 * 24 * 3600);
  auto reader = stub.WatchJob(watch_context.get(), watch);
  if (r.stopper != nullptr) r.stopper->Watching(watch_context.get());
  v1::JobEvent event;
  std::optional<double> default_ms;  // the last event's (WatchJob sets it there, GetJob never)
  while (reader->Read(&event)) {
    if (event.job().tasks_size() == 1 && event.job().tasks(0).has_default_config_time_ms()) {
      default_ms = event.job().tasks(0).default_config_time_ms();
    }
    if (!on_progress) continue;
    const v1::Job& now = event.job();
    const double best =
        now.tasks_size() == 1 && now.tasks(0).has_best_time_ms() ? now.tasks(0).best_time_ms() : 0;
    on_progress(now.measurements_done(), best);
  }
  absl::Status finished = FromGrpc(reader->Finish());
  if (r.stopper != nullptr) {
    r.stopper->Watching(nullptr);
    KTUNE_RETURN_IF_ERROR(r.stopper->reason());
  }
  KTUNE_RETURN_IF_ERROR(finished);
  v1::GetJobRequest get;
  get.set_job_id(job.job_id());
  if (absl::Status s = FromGrpc(stub.GetJob(ClientContextFor(r.token).get(), get, &job)); !s.ok()) {
    return s;
  }
  if (job.tasks_size() != 1) {
    return absl::InternalError(
        absl::StrCat("job ", job.job_id(), " has ", job.tasks_size(), " tasks, not one"));
  }
  if (default_ms) job.mutable_tasks(0)->set_default_config_time_ms(*default_ms);
  return job;
}

absl::StatusOr<v1::Job> GetJobWithAllTasks(v1::TuningService::StubInterface& stub,
                                           const std::string& token, const std::string& job_id) {
  v1::GetJobRequest get;
  get.set_job_id(job_id);
  v1::Job job;
  KTUNE_RETURN_IF_ERROR(FromGrpc(stub.GetJob(ClientContextFor(token).get(), get, &job)));
  while (!job.next_task_page_token().empty()) {
    get.set_task_page_token(job.next_task_page_token());
    v1::Job page;
    KTUNE_RETURN_IF_ERROR(FromGrpc(stub.GetJob(ClientContextFor(token).get(), get, &page)));
    if (page.tasks().empty()) break;  // the job has fewer tasks than it had (cannot happen)
    for (v1::TaskProgress& t : *page.mutable_tasks()) *job.add_tasks() = std::move(t);
    job.set_next_task_page_token(page.next_task_page_token());
  }
  return job;
}

std::vector<std::string> ClassesWithoutWorker(v1::TuningService::StubInterface& stub,
                                              const std::string& token,
                                              const std::vector<std::string>& device_classes) {
  v1::ListWorkersResponse workers;
  if (!stub.ListWorkers(ClientContextFor(token).get(), {}, &workers).ok()) return {};
  std::set<std::string> served;
  for (const v1::WorkerInfo& w : workers.workers()) {
    if (w.state() != "lost") served.insert(w.device().device_class());
  }
  std::vector<std::string> missing;
  std::set<std::string> seen;
  for (const std::string& c : device_classes) {
    if (served.count(c) || !seen.insert(c).second) continue;
    // A class named in another case ("cpu:amd epyc") waited for good beside its workers.
    const auto near = std::find_if(served.begin(), served.end(), [&](const std::string& s) {
      return absl::EqualsIgnoreCase(s, c);
    });
    missing.push_back(near == served.end() ? c
                                           : absl::StrCat(c, " (did you mean '", *near,
                                                          "'? classes match exactly)"));
  }
  return missing;
}

}  // namespace ktune::cli
