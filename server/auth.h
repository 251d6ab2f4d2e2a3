// Bearer-token authentication with roles. A token file holds one token per line with its roles:
//
//   # token                         roles (comma-separated)
//   7f3c...e1                       admin
//   0a9b...44                       worker
//   c2d8...19                       query,submit
//
// Roles: query (read jobs, best-known queries), submit (jobs: submit, cancel, pause, resume;
// includes query), worker (the WorkerService), telemetry (ReportTelemetry: deployed programs
// report how configurations ran), admin (everything, including kernels that are not in the
// registry). Clients send `authorization: Bearer <token>`. Without a token file the server
// accepts every call (a local, single-user setup).
#ifndef KTUNE_SERVER_AUTH_H_
#define KTUNE_SERVER_AUTH_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"

namespace ktune {

enum class Role { kQuery, kSubmit, kWorker, kTelemetry, kAdmin };

class Authenticator {
 public:
  // Accepts every call.
  Authenticator() = default;
  // InvalidArgument naming the line for an unknown role or a short token (< 16 characters).
  static absl::StatusOr<Authenticator> FromFile(const std::string& path);

  bool enabled() const { return !tokens_.empty(); }
  // OK, UNAUTHENTICATED (no or unknown token) or PERMISSION_DENIED (the token lacks the role).
  // A refusal is logged (`auth_refused`: the caller's address, the role, why; never the token),
  // at most one event a second, saying how many were not logged since.
  absl::Status Check(const grpc::CallbackServerContext* ctx, Role needed) const;
  // Who is calling, for a call that Check let in: a hash of its token (never the token), the
  // same for every call with that token; empty without a token file.
  std::string CallerOf(const grpc::CallbackServerContext* ctx) const;

 private:
  absl::Status CheckToken(const grpc::CallbackServerContext* ctx, Role needed) const;

  // The refusals' log limit, this server's own (shared by the copies of one Authenticator).
  struct RefusalLog {
    std::atomic<int64_t> last_logged_ms{std::numeric_limits<int64_t>::min() / 2};
    std::atomic<int64_t> unlogged{0};  // refusals since the last event
  };
  std::shared_ptr<RefusalLog> refusals_ = std::make_shared<RefusalLog>();
  std::map<std::string, std::set<Role>> tokens_;
};

}  // namespace ktune

#endif  // KTUNE_SERVER_AUTH_H_
