// TuningService's record, worker and one-task calls: ListRecords, ExportRecords, ImportRecords,
// ListWorkers and Tune. (services.cc has jobs, queries and kernels.)
#include <algorithm>
#include <map>
#include <memory>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "db/record_checks.h"
#include "proto/convert.h"
#include "server/job_spec.h"
#include "server/polling_stream.h"
#include "server/services.h"

namespace ktune {
namespace {

constexpr size_t kMaxStreamRecords = 1'000'000;  // per export or import stream
// An import holds its records until the stream ends (one transaction): at most this many bytes
// on the wire, or 1,000 records of 1 MiB payload each would hold a gigabyte of server memory.
constexpr size_t kMaxImportBytes = size_t{256} << 20;

// A page of records and the token of the next (empty on the last page). Of `task`: from the
// offset `token` on, in TaskRecords' order (the task is read whole: a task's records). Of every
// task (`task` null): after the position `token` (TuningDatabase::RecordsAfter), so that paging
// through a million records reads each once (by offset, every page read all before it again,
// holding the database).
absl::StatusOr<std::vector<Record>> RecordsPage(TuningDatabase& db, const TaskKey* task,
                                                uint64_t token, size_t limit,
                                                std::string* next_token) {
  std::vector<Record> page;
  next_token->clear();
  if (task != nullptr) {
    absl::StatusOr<std::vector<Record>> all = db.TaskRecords(*task);
    if (!all.ok()) return all.status();
    for (size_t i = token; i < all->size() && page.size() < limit; ++i) {
      page.push_back(std::move((*all)[i]));
    }
    if (token + page.size() < all->size()) *next_token = std::to_string(token + page.size());
    return page;
  }
  const int64_t after = static_cast<int64_t>(std::min<uint64_t>(token, INT64_MAX));
  absl::StatusOr<TuningDatabase::RecordPage> read = db.RecordsAfter(after, limit);
  if (!read.ok()) return read.status();
  if (read->records.size() == limit) {
    // Another page only if a record follows (one record read): the last page has no token.
    absl::StatusOr<TuningDatabase::RecordPage> next = db.RecordsAfter(read->last, 1);
    if (!next.ok()) return next.status();
    if (!next->records.empty()) *next_token = std::to_string(read->last);
  }
  return std::move(read->records);
}

// A request's task filter. A registry kernel's problem is taken as its tasks store it (defaults
// such as dtype filled in), as QueryBest takes it: a filter without dtype found nothing where
// QueryBest answered. As given when that names no record (records imported under a registry
// kernel's name keep the file's problem) or the kernel refuses it (a filter, not a task).
absl::StatusOr<std::unique_ptr<TaskKey>> OptionalTask(bool has_task, const v1::TaskKey& proto,
                                                      const KernelRegistry& registry,
                                                      TuningDatabase& db) {
  if (!has_task) return std::unique_ptr<TaskKey>();
  absl::StatusOr<TaskKey> task = FromProto(proto);
  if (!task.ok()) return task.status();
  if (const KernelDefinition* k = registry.Find(task->kernel);
      k != nullptr && !task->problem.empty()) {
    if (absl::StatusOr<Problem> stored = k->ValidateProblem(task->problem);
        stored.ok() && *stored != task->problem) {
      TaskKey filled = *task;
      filled.problem = *std::move(stored);
      absl::StatusOr<std::vector<Record>> found = db.TaskRecords(filled);
      if (!found.ok()) return found.status();
      if (!found->empty()) *task = std::move(filled);
    }
  }
  return std::make_unique<TaskKey>(*std::move(task));
}

// Collects a client stream of records, then stores them in one transaction.
class RecordImport final : public grpc::ServerReadReactor<v1::Record> {
 public:
  RecordImport(grpc::CallbackServerContext* ctx, TuningDatabase* db, BestCache* best,
               const KernelRegistry* registry, ThreadPool* pool,
               v1::ImportRecordsResponse* response)
      : ctx_(ctx), db_(db), best_(best), registry_(registry), pool_(pool), response_(response) {
    StartRead(&incoming_);
  }
  void OnReadDone(bool ok) override {
    // A failed read ends the stream: complete when the client closed its side, abandoned when
    // it cancelled the call (then nothing is stored).
    if (!ok && ctx_->IsCancelled()) {
      return Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                 "the import stream was cancelled; nothing was stored"));
    }
    if (!ok) return pool_->Run([this] { Store(); });  // one transaction: seconds, off gRPC's thread
    ++received_;
    bytes_ += incoming_.ByteSizeLong();
    if (bytes_ > kMaxImportBytes) {
      return Finish(ToGrpc(absl::ResourceExhaustedError(
          absl::StrCat("more than ", kMaxImportBytes >> 20,
                       " MiB of records in one import stream; nothing was stored: split it"))));
    }
    if (records_.size() >= kMaxStreamRecords) {
      return Finish(ToGrpc(absl::ResourceExhaustedError(
          absl::StrCat("more than ", kMaxStreamRecords,
                       " records in one import stream; nothing was stored: split it"))));
    }
    absl::StatusOr<Record> r = FromProto(incoming_);
    // Checked here, where records come in, not in FromProto: a client reading a server's answer
    // converts the same message, and must still read one that an older import stored.
    if (r.ok()) {
      if (absl::Status s = CheckImportedNumbers(*r); !s.ok()) {
        r = absl::InvalidArgumentError(absl::StrCat("record.", s.message()));
      }
    }
    if (!r.ok()) {
      return Finish(ToGrpc(absl::InvalidArgumentError(
          absl::StrCat("record ", received_, ": ", r.status().message(), "; nothing was stored"))));
    }
    if (incoming_.has_stale_before_us() && incoming_.stale_before_us() <= 0) {
      return Finish(ToGrpc(absl::InvalidArgumentError(
          absl::StrCat("record ", received_,
                       ": stale_before_us must be a time after 1970 (Unix "
                       "microseconds), not ",
                       incoming_.stale_before_us(), "; nothing was stored"))));
    }
    stale_before_us_.push_back(incoming_.has_stale_before_us()
                                   ? std::optional<int64_t>(incoming_.stale_before_us())
                                   : std::nullopt);
    records_.push_back(*std::move(r));
    StartRead(&incoming_);
  }
  void OnDone() override { delete this; }

 private:
  void Store() {
    // Cancelled while it waited for the pool: the client was told nothing is stored.
    if (ctx_->IsCancelled()) {
      return Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                 "the import stream was cancelled; nothing was stored"));
    }
    // Fitted here, not by AddImportedRecords, so that the cache forgets the tasks as stored.
    RegistryFitter fitter(registry_);
    for (size_t i = 0; i < records_.size(); ++i) {
      if (absl::Status s = fitter.Fit(records_[i]); !s.ok()) {
        return Finish(ToGrpc(absl::Status(
            s.code(), absl::StrCat("record ", i + 1, ": ", s.message(), "; nothing was stored"))));
      }
    }
    absl::StatusOr<int64_t> added = AddImportedRecords(*db_, records_);
    if (!added.ok()) return Finish(ToGrpc(added.status()));
    // The boundaries the records carried, marked again (by the tasks as fitted).
    StaleBoundaryCollector stale;
    for (size_t i = 0; i < records_.size(); ++i) {
      if (stale_before_us_[i]) stale.Add(records_[i], *stale_before_us_[i]);
    }
    const absl::Status marked = stale.MarkAll(*db_);
    // Answers cached before the import are stale for its tasks (QueryBest kept answering NONE
    // for a task a client had asked about before importing its records), and so are those of a
    // task marked stale again (records already stored, a boundary new).
    if (*added > 0 || stale.size() > 0) best_->Invalidate(records_);
    if (!marked.ok()) {
      return Finish(ToGrpc(absl::Status(
          marked.code(), absl::StrCat("the records were stored, but not ", marked.message()))));
    }
    response_->set_records_received(received_);
    response_->set_records_added(*added);
    Finish(grpc::Status::OK);
  }

  grpc::CallbackServerContext* ctx_;
  TuningDatabase* db_;
  BestCache* best_;
  const KernelRegistry* registry_;  // fits its kernels' records (FitRecordToRegistry)
  ThreadPool* pool_;                // where the records are stored
  v1::ImportRecordsResponse* response_;
  v1::Record incoming_;
  std::vector<Record> records_;
  std::vector<std::optional<int64_t>> stale_before_us_;  // each record's, as received
  int64_t received_ = 0;
  size_t bytes_ = 0;  // of the records received, as on the wire
};

class FailedImport final : public grpc::ServerReadReactor<v1::Record> {
 public:
  explicit FailedImport(const absl::Status& status) { Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

std::optional<double> DefaultConfigTime(TuningDatabase& db, const TaskSpaces& spaces,
                                        const TaskKey& task) {
  const KernelDefinition* kernel = spaces.registry().Find(task.kernel);
  if (kernel == nullptr) return std::nullopt;
  std::string threads_parameter;
  for (const KernelParameter& p : kernel->parameters) {
    if (p.add_cores) threads_parameter = p.name;
  }
  absl::StatusOr<std::vector<Record>> records = db.TaskRecords(task);
  if (!records.ok()) return std::nullopt;
  std::map<int64_t, std::optional<Configuration>> defaults;  // by cores
  std::optional<double> best;
  for (const Record& r : *records) {
    if (r.status != MeasurementStatus::kOk || !r.time_ms) continue;
    int64_t cores = r.device.Cores();
    if (auto t = r.config.find(threads_parameter); t != r.config.end()) {
      if (const int64_t* n = std::get_if<int64_t>(&t->second); n != nullptr && *n > 0) cores = *n;
    }
    auto it = defaults.find(cores);
    if (it == defaults.end()) {
      absl::StatusOr<std::optional<Configuration>> d =
          spaces.DefaultConfiguration(task, static_cast<int>(cores), /*threads=*/0);
      it = defaults.emplace(cores, d.ok() ? *d : std::nullopt).first;
    }
    if (it->second && r.config == *it->second && (!best || *r.time_ms < *best)) {
      best = *r.time_ms;
    }
  }
  return best;
}

grpc::ServerUnaryReactor* TuningServiceImpl::ListRecords(grpc::CallbackServerContext* ctx,
                                                         const v1::ListRecordsRequest* request,
                                                         v1::ListRecordsResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    const int32_t page_size = request->page_size() == 0 ? 1000 : request->page_size();
    if (page_size < 1 || page_size > 10'000) {
      return absl::InvalidArgumentError("page_size must be between 1 and 10000");
    }
    uint64_t token = 0;
    if (!request->page_token().empty() && !absl::SimpleAtoi(request->page_token(), &token)) {
      return absl::InvalidArgumentError(
          "page_token is not one this server gave (use next_page_token)");
    }
    absl::StatusOr<std::unique_ptr<TaskKey>> task =
        OptionalTask(request->has_task(), request->task(), spaces_->registry(), *db_);
    if (!task.ok()) return task.status();
    std::string next_token;
    absl::StatusOr<std::vector<Record>> page =
        RecordsPage(*db_, task->get(), token, static_cast<size_t>(page_size), &next_token);
    if (!page.ok()) return page.status();
    for (const Record& r : *page) *response->add_records() = ToProto(r);
    response->set_next_page_token(next_token);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::Record>* TuningServiceImpl::ExportRecords(
    grpc::CallbackServerContext* ctx, const v1::ExportRecordsRequest* request) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) {
    return new FailedStream<v1::Record>(a);
  }
  // Each export holds up to a million records in memory until the client has read them.
  if (PreparedStream<v1::Record>::open() >= kMaxExportStreams) {
    return new FailedStream<v1::Record>(absl::ResourceExhaustedError(
        absl::StrCat(kMaxExportStreams,
                     " exports are running on this server; try again when one "
                     "has ended, or page with ListRecords")));
  }
  return new PreparedStream<v1::Record>(
      pool_, [this, request]() -> absl::StatusOr<std::vector<v1::Record>> {
        absl::StatusOr<std::unique_ptr<TaskKey>> task =
            OptionalTask(request->has_task(), request->task(), spaces_->registry(), *db_);
        if (!task.ok()) return task.status();
        // Read in one go (the database is not held while a slow client reads), up to a limit.
        std::string more;  // a next page's token: more than the limit
        absl::StatusOr<std::vector<Record>> records =
            RecordsPage(*db_, task->get(), 0, kMaxStreamRecords, &more);
        if (!records.ok()) return records.status();
        if (!more.empty()) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "more than ", kMaxStreamRecords,
              " records: export per task, or page with ListRecords, or run `ktune db export` on "
              "the server's host"));
        }
        // A record a regression retired carries its task's boundary, which an import marks again.
        absl::StatusOr<StaleBoundaryIndex> stale = StaleBoundaryIndex::Of(*db_);
        if (!stale.ok()) return stale.status();
        std::vector<v1::Record> out;
        out.reserve(records->size());
        for (Record& r : *records) {
          out.push_back(ToProto(r));
          if (std::optional<int64_t> before = stale->For(r))
            out.back().set_stale_before_us(*before);
          r = Record();  // freed as it is converted: one copy of the export at a time, not two
        }
        return out;
      });
}

grpc::ServerReadReactor<v1::Record>* TuningServiceImpl::ImportRecords(
    grpc::CallbackServerContext* ctx, v1::ImportRecordsResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kAdmin); !a.ok()) return new FailedImport(a);
  return new RecordImport(ctx, db_, best_, &spaces_->registry(), &pool_, response);
}

grpc::ServerUnaryReactor* TuningServiceImpl::ListWorkers(grpc::CallbackServerContext* ctx,
                                                         const v1::ListWorkersRequest*,
                                                         v1::ListWorkersResponse* response) {
  if (absl::Status a = auth_->Check(ctx, Role::kQuery); !a.ok()) return Done(ctx, a);
  return RunOn(pool_, ctx, [=]() -> absl::Status {
    for (const Scheduler::WorkerStatus& w : scheduler_->ListWorkers()) {
      v1::WorkerInfo* info = response->add_workers();
      info->set_worker_id(w.id);
      *info->mutable_device() = ToProto(w.device);
      info->set_state(w.lost ? "lost" : w.measuring ? "measuring" : "idle");
      info->set_active_leases(w.active_leases);
      info->mutable_last_heartbeat()->set_seconds(absl::ToUnixSeconds(w.last_seen));
      info->set_measurements_done(w.measurements);
      info->set_host(w.host);
    }
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::TuneEvent>* TuningServiceImpl::Tune(grpc::CallbackServerContext* ctx,
                                                                 const v1::TuneRequest* request) {
  using Failed = FailedStream<v1::TuneEvent>;
  if (absl::Status a = auth_->Check(ctx, Role::kSubmit); !a.ok()) return new Failed(a);
  // The same checks as a submitted job: it is one, of one task.
  v1::JobSpec spec;
  spec.set_name(absl::StrCat("tune ", request->kernel().name()));
  *spec.add_kernels() = request->kernel();
  *spec.add_problems() = request->problem();
  if (request->device().empty()) {
    return new Failed(absl::InvalidArgumentError(
        "device is required: the device class whose workers measure (see ListWorkers)"));
  }
  spec.add_device_classes(request->device());
  if (request->budget_measurements() < 1 || request->budget_measurements() > 100'000) {
    return new Failed(
        absl::InvalidArgumentError("budget_measurements must be between 1 and 100,000"));
  }
  if (PollingStream<v1::TuneEvent>::open() >= kMaxWatchStreams) {
    return new Failed(absl::ResourceExhaustedError(
        absl::StrCat("the server already streams ", kMaxWatchStreams, " tunings; retry later")));
  }
  spec.set_budget_measurements(request->budget_measurements());
  spec.set_strategy(request->strategy());
  spec.set_seed(request->seed());
  if (request->has_max_rel_error()) spec.set_max_rel_error(request->max_rel_error());
  absl::StatusOr<JobRequest> job = ToJobRequest(spec, *spaces_);
  if (!job.ok()) return new Failed(job.status());
  absl::StatusOr<int64_t> id = scheduler_->Submit(*job);
  if (!id.ok()) return new Failed(id.status());
  Scheduler* scheduler = scheduler_;
  TuningDatabase* db = db_;
  const TaskSpaces* spaces = spaces_;
  const int64_t job_id = *id;
  return new PollingStream<v1::TuneEvent>(
      [scheduler, db, spaces, job_id]() -> absl::StatusOr<std::pair<v1::TuneEvent, bool>> {
        absl::StatusOr<JobStatus> status = scheduler->GetJob(job_id);
        if (!status.ok()) return status.status();
        v1::TuneEvent event;
        event.set_job_id(absl::StrCat(job_id));
        const JobState state = status->job.state;
        event.set_state(ToProto(state));
        event.set_message(status->job.message);
        if (!status->tasks.empty()) {
          const TaskStatus& t = status->tasks.front();
          event.set_measurements_done(t.done);
          event.set_budget_measurements(t.budget);
          if (t.best_ms) {
            v1::Record* best = event.mutable_best_so_far();
            *best->mutable_task() = ToProto(t.task);
            ToProto(t.best_config, best->mutable_config()->mutable_params());
            best->set_config_hash(ParamMapHash(t.best_config));
            best->set_status(v1::MEASUREMENT_STATUS_OK);
            best->set_time_ms(*t.best_ms);
          }
        }
        const bool final =
            state == JobState::kDone || state == JobState::kFailed || state == JobState::kCancelled;
        event.set_finished(final);
        // The last event says what the untuned default took, for the speedup (read once: the
        // task's records; it was never set).
        if (final && !status->tasks.empty()) {
          if (std::optional<double> d =
                  DefaultConfigTime(*db, *spaces, status->tasks.front().task)) {
            event.set_default_config_time_ms(*d);
          }
        }
        return std::make_pair(std::move(event), final);
      },
      // The caller went away (interrupted, or past its deadline): nobody waits for the answer,
      // so the job is cancelled, as `ktune tune` cancels on Ctrl-C (what was measured is kept);
      // it stayed queued for ever, with no id given to cancel it by.
      [scheduler, job_id] { (void)scheduler->Cancel(job_id); });
}

}  // namespace ktune
