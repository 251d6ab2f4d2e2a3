// The ktune server as one object: database, scheduler, gRPC services (with the standard health
// service and reflection), and the thread that takes back expired leases. `ktune serve` runs
// one; `ktune tune` without --server runs one in-process with no port (the embedded default);
// tests start one in-process on a free loopback port.
#ifndef KTUNE_SERVER_TUNING_SERVER_H_
#define KTUNE_SERVER_TUNING_SERVER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/file_lock.h"
#include "db/sqlite_tuning_database.h"
#include "grpcpp/server.h"
#include "kernels/kernel_registry.h"
#include "server/auth.h"
#include "server/best_cache.h"
#include "server/client_kernels.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/services.h"
#include "server/task_spaces.h"
#include "server/telemetry_intake.h"

namespace ktune {

struct TuningServerOptions {
  // Port 0 picks a free one (see port()); empty: no port, only InProcessChannel().
  std::string listen = "127.0.0.1:7470";
  std::string db_path = "ktune.db";
  std::vector<std::string> replay_files;  // recorded spaces served for replay workers
  std::string auth_file;                  // bearer tokens with roles (server/auth.h); empty: none
  // TLS: the server's PEM certificate chain and key (both or neither); with client_ca, clients
  // must present a certificate that CA signed (mutual TLS, for workers).
  std::string tls_cert, tls_key, tls_client_ca;
  std::string metrics_listen;  // HOST:PORT for Prometheus' /metrics; empty: none
  SchedulerOptions scheduler;
  // What drift detection over production telemetry does (server/telemetry_intake.h).
  RetunePolicy retune;
  DriftMonitorOptions drift;
  // Resume the file's unfinished jobs (Scheduler::Recover). The embedded default does not: it
  // runs only the job it submits, and leaves other jobs for `ktune serve`.
  bool resume_jobs = true;
  // How long a server that resumes jobs waits for another one to let go of the database (a
  // restart's old process finishing its last calls) before it refuses to start.
  absl::Duration db_lock_wait = absl::Seconds(10);
  int64_t max_message_bytes = 4 << 20;
};

// OK when `listen` is an address the server can listen on: HOST:PORT with a port from 0 (any
// free one) to 65535, or unix:PATH; InvalidArgument, saying so, otherwise (gRPC itself takes a
// port past 65535 modulo 65536). Start checks it; the CLI checks it first, as bad usage.
absl::Status CheckListenAddress(const std::string& listen);

// Whether `listen` (HOST:PORT, or unix:PATH) takes connections from this machine only: a Unix
// socket, localhost, 127.0.0.0/8 or [::1]. 0.0.0.0, [::], a host name or another address is
// reachable from elsewhere.
bool IsLoopbackAddress(const std::string& listen);

class TuningServer {
 public:
  // Opens the database, recovers unfinished jobs (resume_jobs) and starts serving.
  static absl::StatusOr<std::unique_ptr<TuningServer>> Start(TuningServerOptions options);
  ~TuningServer();

  int port() const { return port_; }  // 0 without a port
  // Where /metrics is served, the port bound ("127.0.0.1:9464"); empty: nowhere.
  std::string metrics_address() const;
  // A channel to this server inside the process (no network, no credentials): the embedded
  // default's client and worker use it. Valid until Shutdown.
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // Stops accepting calls, finishes those in flight, stops the lease thread.
  void Shutdown();
  // Blocks until Shutdown (from another thread or a signal handler's thread).
  void Wait();

 private:
  TuningServer() = default;

  TuningServerOptions options_;
  // A server that resumes jobs holds DB_PATH.lock: two such servers on one database would each
  // run the other's jobs (measured twice, past their budget).
  std::unique_ptr<ExclusiveFileLock> db_lock_;
  std::unique_ptr<SqliteTuningDatabase> db_;  // thread-safe on its own (one connection, a mutex)
  KernelRegistry registry_ = KernelRegistry::WithBuiltins();
  std::unique_ptr<TaskSpaces> spaces_;
  std::unique_ptr<ClientKernels> client_kernels_;
  Authenticator auth_;
  Metrics metrics_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  std::unique_ptr<BestCache> best_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<TelemetryIntake> telemetry_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<TuningServiceImpl> tuning_service_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stop_;
  std::thread expiry_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_TUNING_SERVER_H_
