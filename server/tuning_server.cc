#include "server/tuning_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "proto/channel.h"

namespace ktune {

namespace {

// Binds each address `listen` names as gRPC will (SO_REUSEADDR, no SO_REUSEPORT), then lets go.
// When none binds (gRPC then fails; one is enough for it: localhost's ::1 where IPv6 is off), a
// port in use, an address of another machine or a privileged port is said in words, before gRPC
// logs its own error tree. The bind gRPC does next still decides (a port taken in between fails
// there). A host name other than localhost is left to gRPC.
absl::Status ProbeListenAddress(const std::string& listen) {
  const std::optional<int64_t> port = AddressPort(listen);
  if (absl::StartsWith(listen, "unix:") || !port || *port == 0) return absl::OkStatus();
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  // Addresses and localhost only: a name would cost a DNS lookup more (one that may hang where
  // DNS does not answer), and gRPC resolves it anyway.
  hints.ai_flags = AI_PASSIVE | (host == "localhost" ? 0 : AI_NUMERICHOST);
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(*port).c_str(), &hints,
                    &found) != 0) {
    return absl::OkStatus();
  }
  int error = 0;  // the first address's failure
  bool bound = false;
  for (const addrinfo* a = found; a != nullptr && !bound; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;  // a family this machine lacks (IPv6): gRPC skips it too
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0) {
      bound = true;
    } else if (error == 0) {
      error = errno;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (bound) return absl::OkStatus();
  switch (error) {
    case 0:
      return absl::OkStatus();
    case EADDRINUSE:
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", listen, ": port ", *port,
          " is in use (another ktune serve? `ss -ltnp 'sport = :", *port, "'` names it)"));
    case EADDRNOTAVAIL:
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", listen, ": ", host,
                       " is not an address of this machine (0.0.0.0 listens on all of them)"));
    case EACCES:
      return absl::PermissionDeniedError(
          absl::StrCat("cannot listen on ", listen, ": port ", *port,
                       " needs privileges (it is below net.ipv4.ip_unprivileged_port_start, "
                       "1024 unless set)"));
    default:
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", listen, ": ", std::strerror(error)));
  }
}

}  // namespace

absl::Status CheckListenAddress(const std::string& listen) {
  // gRPC takes a port past 65535 modulo 65536 (99999 listened on 34463): refuse it here.
  if (absl::StartsWith(listen, "unix:")) return absl::OkStatus();
  const std::optional<int64_t> port = AddressPort(listen);
  if (!port || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on ", listen,
                     ": give HOST:PORT with a port from 0 (any free one) to 65535"));
  }
  return absl::OkStatus();
}

bool IsLoopbackAddress(const std::string& listen) {
  if (absl::StartsWith(listen, "unix:")) return true;
  const size_t colon = listen.rfind(':');
  const std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host == "localhost" || host == "[::1]") return true;
  // An IPv4 literal in 127.0.0.0/8 (127.example.com, or 127.0.0.1.1, would be resolved as a
  // name: anywhere).
  in_addr address{};
  return ::inet_pton(AF_INET, host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

namespace {

// The file a served database's path leads to (symbolic links resolved), once it is known to be
// one this process can write: a server on a database it cannot write started, then failed every
// worker's registration and every submit with SQLite's text.
absl::StatusOr<std::string> ServedDatabasePath(const std::string& db_path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path path(db_path);
  const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
  if (!fs::is_directory(folder, error)) {
    if (error && error != std::errc::no_such_file_or_directory) {
      return absl::FailedPreconditionError(absl::StrCat("cannot look at the folder ",
                                                        folder.string(), " of --db ", db_path, ": ",
                                                        error.message()));
    }
    return absl::NotFoundError(absl::StrCat("the folder ", folder.string(), " of --db ", db_path,
                                            " does not exist: create it, or give another path"));
  }
  // Absolute first: a relative name with no folder ("t.db") stays relative, without a parent.
  const fs::path real = fs::weakly_canonical(fs::absolute(path, error), error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resolve the path ", db_path, ": ", error.message()));
  }
  // A file with another name (a hard link) would be served under each name with a lock and a
  // write-ahead log of its own: two servers, two WALs, one file (an operator trial).
  if (struct stat st; ::stat(real.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the database ", db_path, " has ", st.st_nlink,
        " names (hard links): each name would get its own lock and write-ahead log, and two "
        "servers could run it; serve one copy (cp, or sqlite3 .backup), and remove the other "
        "names"));
  }
  // The file, and its folder: SQLite's journal and the lock file are made beside it.
  if (fs::exists(real, error) && ::access(real.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("the database ", db_path,
                     " is not writable by this process: a server stores every measurement in it"));
  }
  if (::access(real.parent_path().c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the folder of the database ", db_path,
        " is not writable by this process: SQLite keeps its journal there, and ktune its lock"));
  }
  return real.string();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TuningServer>> TuningServer::Start(TuningServerOptions options) {
  std::unique_ptr<TuningServer> s(new TuningServer());
  s->options_ = std::move(options);
  if (s->options_.resume_jobs && s->options_.db_path != ":memory:") {
    // The lock belongs to the file the path leads to: a second server given a symbolic link to a
    // served database took a lock of its own and ran the same jobs.
    KTUNE_ASSIGN_OR_RETURN(const std::string real_path, ServedDatabasePath(s->options_.db_path));
    // Waits a little: a server being restarted may still be finishing its last calls.
    const std::string lock_path = real_path + ".lock";
    absl::StatusOr<std::unique_ptr<ExclusiveFileLock>> lock =
        ExclusiveFileLock::Acquire(lock_path, s->options_.db_lock_wait);
    if (absl::IsFailedPrecondition(lock.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("the database ", s->options_.db_path, " is served by another ktune server (",
                       lock.status().message(),
                       "); one server per database, or both would run its jobs: "
                       "stop that server, or give this one another --db"));
    }
    KTUNE_RETURN_IF_ERROR(lock.status());
    s->db_lock_ = *std::move(lock);
  }
  KTUNE_ASSIGN_OR_RETURN(s->db_, SqliteTuningDatabase::Open(s->options_.db_path));
  s->spaces_ = std::make_unique<TaskSpaces>(&s->registry_);
  // Client kernels first: recovered jobs may use them.
  s->client_kernels_ = std::make_unique<ClientKernels>(s->db_.get(), &s->registry_);
  KTUNE_RETURN_IF_ERROR(s->client_kernels_->Load());
  for (const std::string& file : s->options_.replay_files) {
    KTUNE_RETURN_IF_ERROR(s->spaces_->AddRecordedFile(file));
  }
  s->best_ = std::make_unique<BestCache>(s->db_.get(), &s->registry_);
  SchedulerOptions scheduler_options = s->options_.scheduler;
  // Job states are stored by a writer thread whatever --agent-threads says: a cancel answers
  // within its bound, and no RPC or tick waits for the database.
  scheduler_options.writer_threads = 1;
  // A server that resumes no jobs lives in one session (the embedded default): its jobs are the
  // session's, which no other server resumes while it lives.
  if (!s->options_.resume_jobs && scheduler_options.session.empty()) {
    scheduler_options.session = ThisProcessSession();
  }
  BestCache* best = s->best_.get();
  Metrics* metrics = &s->metrics_;
  scheduler_options.on_stored = [best, metrics](const std::vector<Record>& records,
                                                double commit_seconds) {
    best->Invalidate(records);
    metrics->ObserveCommit(commit_seconds);
    for (const Record& r : records) metrics->CountMeasurement(std::string(StatusName(r.status)));
  };
  scheduler_options.on_not_stored = [metrics](const absl::Status& why) {
    metrics->CountCommitFailure(std::string(absl::StatusCodeToString(why.code())));
  };
  scheduler_options.on_job_ended = [metrics](const std::string& state, absl::Duration lived) {
    metrics->ObserveJobEnd(state, absl::ToDoubleSeconds(lived));
  };
  scheduler_options.on_agent_work = [metrics](const std::string& kind, absl::Duration took) {
    metrics->ObserveAgentWork(kind, absl::ToDoubleSeconds(took));
  };
  s->scheduler_ = std::make_unique<Scheduler>(s->db_.get(), s->spaces_.get(), scheduler_options);
  if (s->options_.resume_jobs) {
    KTUNE_RETURN_IF_ERROR(s->scheduler_->Recover());
  } else if (s->options_.db_path != ":memory:") {
    KTUNE_RETURN_IF_ERROR(s->scheduler_->EndAbandonedSessions());
  }
  s->telemetry_ = std::make_unique<TelemetryIntake>(
      s->db_.get(), s->scheduler_.get(), s->best_.get(), s->spaces_.get(), s->options_.retune,
      s->options_.drift, /*store_flags=*/s->db_lock_ != nullptr);
  KTUNE_RETURN_IF_ERROR(s->telemetry_->Recover());
  if (!s->options_.auth_file.empty()) {
    KTUNE_ASSIGN_OR_RETURN(s->auth_, Authenticator::FromFile(s->options_.auth_file));
  }
  s->worker_service_ =
      std::make_unique<WorkerServiceImpl>(s->scheduler_.get(), &s->registry_, &s->auth_);
  s->tuning_service_ = std::make_unique<TuningServiceImpl>(
      s->scheduler_.get(), s->db_.get(), s->spaces_.get(), s->best_.get(),
      s->client_kernels_.get(), s->telemetry_.get(), &s->auth_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  const TuningServerOptions& o = s->options_;
  if (!o.tls_cert.empty() || !o.tls_key.empty()) {
    grpc::SslServerCredentialsOptions tls(
        o.tls_client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    KTUNE_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(o.tls_cert, "CERTIFICATE"));
    KTUNE_ASSIGN_OR_RETURN(pair.private_key, ReadPem(o.tls_key, "PRIVATE KEY"));
    tls.pem_key_cert_pairs.push_back(pair);
    if (!o.tls_client_ca.empty()) {
      KTUNE_ASSIGN_OR_RETURN(tls.pem_root_certs, ReadPem(o.tls_client_ca, "CERTIFICATE"));
    }
    credentials = grpc::SslServerCredentials(tls);
  } else if (!o.tls_client_ca.empty()) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  grpc::ServerBuilder builder;
  // No SO_REUSEPORT: a second server on a port in use must fail ("in use"), not share it and
  // split the clients' jobs between two databases.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (!s->options_.listen.empty()) {
    KTUNE_RETURN_IF_ERROR(CheckListenAddress(s->options_.listen));
    KTUNE_RETURN_IF_ERROR(ProbeListenAddress(s->options_.listen));
    builder.AddListeningPort(s->options_.listen, credentials, &s->port_);
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(s->options_.max_message_bytes));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(s->metrics_.InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(s->worker_service_.get());
  builder.RegisterService(s->tuning_service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || (!s->options_.listen.empty() && s->port_ == 0)) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", s->options_.listen,
                     " (in use, a bad address, or TLS files that do not go together; gRPC's "
                     "log above says which)"));
  }
  if (!s->options_.metrics_listen.empty()) {
    KTUNE_ASSIGN_OR_RETURN(
        s->metrics_http_, MetricsHttpServer::Start(s->options_.metrics_listen, [raw = s.get()] {
          const Scheduler::Counts c = raw->scheduler_->CountNow();
          Metrics::Gauges g{c.queued_candidates, c.active_leases,    c.workers,           c.jobs,
                            c.jobs_ended,        raw->best_->hits(), raw->best_->misses()};
          const auto flags = raw->telemetry_->FlagCounts();
          for (int k = 0; k < kDriftKindCount; ++k) {
            g.drift_flags[DriftKindName(static_cast<DriftKind>(k))] = flags[k];
          }
          g.retune_jobs = raw->telemetry_->retune_jobs_started();
          g.leases_expired = c.leases_expired;
          g.leases_revived = c.leases_revived;
          g.earlier_leases_stored = c.earlier_leases_stored;
          g.job_writes_pending = c.job_writes_pending;
          g.agent_work_queued = c.agent_work_queued;
          g.tasks_without_worker = c.tasks_without_worker;
          return raw->metrics_.Collect(g);
        }));
  }
  // Leases are checked a few times per lease timeout.
  const absl::Duration tick =
      std::max(absl::Milliseconds(20), s->options_.scheduler.lease_timeout / 10);
  TuningServer* raw = s.get();
  // A tick late by more than a quarter of a lease (and a tick): the process did not run (SIGSTOP,
  // a paused VM, a machine asleep), and the workers' heartbeats of that time are still queued.
  // The lateness is read on both clocks, the wall's and the scheduler's (tests set their own:
  // frozen, it stands still through a slow tick; moved on, a lease expires as it should).
  const absl::Duration stall_threshold = std::max(tick, s->options_.scheduler.lease_timeout / 4);
  s->expiry_ = std::thread([raw, tick, stall_threshold] {
    const std::function<absl::Time()>& clock = raw->options_.scheduler.now;
    absl::Time due = absl::Now() + tick, clock_due = clock() + tick;
    while (!raw->stop_.WaitForNotificationWithTimeout(tick)) {
      const absl::Duration late = std::min(absl::Now() - due, clock() - clock_due);
      if (late > stall_threshold) raw->scheduler_->ExtendLeases(late);
      raw->scheduler_->ExpireLeases();
      due = absl::Now() + tick;
      clock_due = clock() + tick;
    }
  });
  return s;
}

std::shared_ptr<grpc::Channel> TuningServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  return server_->InProcessChannel(args);
}

void TuningServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // Scrapes read the scheduler and the caches, destroyed before this member (declared first).
  metrics_http_.reset();
  stop_.Notify();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  if (expiry_.joinable()) expiry_.join();
}

void TuningServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

TuningServer::~TuningServer() { Shutdown(); }

std::string TuningServer::metrics_address() const {
  return metrics_http_ != nullptr ? metrics_http_->address() : "";
}

}  // namespace ktune
