// The measurement worker: registers with the server, then leases a batch of candidates,
// measures them with its Measurer and reports the results, again and again. It heartbeats its
// lease while measuring, registers again when the server forgets it (a restart), retries with
// exponential backoff while the server is unreachable, and on stop finishes its current lease,
// reports it (trying again for kReportGraceWhenStopping at most, not the whole lease) and leaves.
#ifndef KTUNE_MEASURER_WORKER_LOOP_H_
#define KTUNE_MEASURER_WORKER_LOOP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "kernels/kernel_registry.h"
#include "ktune/v1/worker_service.grpc.pb.h"
#include "measurer/measurer.h"
#include "measurer/worker_metrics.h"

namespace ktune {

struct WorkerLoopOptions {
  std::string host;        // reported at registration
  std::string token;       // bearer token with the worker role; empty: none
  int cores = 1;           // cores the kernels may use
  int max_candidates = 8;  // per lease
  absl::Duration rpc_deadline = absl::Seconds(10);
  absl::Duration max_backoff = absl::Seconds(5);
  // Stop once this many results were reported (0: never; leases never take more); for tests and
  // benchmarks.
  int64_t max_measurements = 0;
  // Stop after this long with nothing to lease (zero: never); for tests and benchmarks. Until
  // the server has first been reached, a server that cannot be reached counts as nothing to
  // lease (Run returns its error); after that, outages are waited out.
  absl::Duration idle_exit = absl::ZeroDuration();
  // Where kernels that clients registered with the server (their specs come with the
  // candidates) are added, so that the measurer finds them; the measurer's registry. Null: such
  // candidates are reported as failures.
  KernelRegistry* registry = nullptr;
  // False: the worker tells the server it takes no client kernels (code that a registered
  // client wrote, built and run here), and is leased built-in kernels only.
  bool client_kernels = true;
  // A report the server refuses to store (its disk full, its database failing; not a lease that
  // expired) ends Run with that error, the measurements of that lease lost: at once, or, for an
  // error a retry may get past (a database busy, a disk failing to read, past the lease), at the
  // third lease in a row so. For a worker whose server's log nobody reads (`ktune tune`'s
  // embedded one); a fleet worker goes on.
  bool stop_when_not_stored = false;
  // Languages of the registry kernels the measurer builds ("cpp", "cuda"), sent at registration
  // so that the server leases only those; empty: any (a replay worker).
  std::vector<std::string> languages;
  // The stub's channel (may be null). While the server cannot be reached, each retry first resets
  // its connection backoff, so that the retry is a connection attempt: gRPC's own backoff grows
  // apart from the loop's, and a retry in between failed at once (workers came back 8 to 10 s
  // after a restarted server listened).
  std::shared_ptr<grpc::Channel> channel;
  // Where the loop counts what it does (`ktune worker --metrics-listen`); null: counted nowhere.
  // Must outlive the loop.
  WorkerMetrics* metrics = nullptr;
};

// A client kernel that came with a lease, added to `options.registry` so that the measurer finds
// it. FailedPrecondition when the worker takes none (no registry, or client_kernels false);
// the spec's own errors otherwise.
absl::Status TakeClientKernel(const WorkerLoopOptions& options, const v1::KernelSpec& spec);

class WorkerLoop {
 public:
  // `stub` and `measurer` must outlive the loop. `stop` (may be null) ends Run gracefully.
  WorkerLoop(v1::WorkerService::StubInterface* stub, Measurer* measurer, WorkerLoopOptions options,
             const std::atomic<bool>* stop = nullptr);

  // Runs until stopped. An error only when the measurer itself fails or the server refuses the
  // worker outright (PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT).
  absl::Status Run();

  int64_t reported() const { return reported_; }
  const std::string& worker_id() const { return worker_id_; }

 private:
  absl::Status Register();
  bool Stopping() const { return stop_ != nullptr && stop_->load(); }

  v1::WorkerService::StubInterface* stub_;
  Measurer* measurer_;
  WorkerLoopOptions options_;
  const std::atomic<bool>* stop_;
  std::string worker_id_;
  std::unique_ptr<WorkerMetrics> unshown_metrics_;  // when options_.metrics is null
  WorkerMetrics* metrics_;                          // options_.metrics, else unshown_metrics_
  absl::Duration heartbeat_interval_ = absl::Seconds(5);
  int64_t reported_ = 0;
  static constexpr int kMaxNotStoredInARow = 3;  // see stop_when_not_stored
  static constexpr absl::Duration kReportGraceWhenStopping = absl::Seconds(5);
  // How long a stopping worker goes on measuring its lease before it gives the rest up.
  static constexpr absl::Duration kMeasureGraceWhenStopping = absl::Seconds(30);
  // How many lease timeouts after its expiry the server gives a lease back to its worker
  // (WorkerService.ReportResults; the server's Scheduler::kReviveWithinLeaseTimeouts).
  static constexpr int kRevivalLeaseTimeouts = 10;
  int not_stored_in_a_row_ = 0;
};

}  // namespace ktune

#endif  // KTUNE_MEASURER_WORKER_LOOP_H_
