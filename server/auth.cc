#include "server/auth.h"

#include <atomic>
#include <chrono>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/event_log.h"
#include "common/hash.h"

namespace ktune {
namespace {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kQuery:
      return "query";
    case Role::kSubmit:
      return "submit";
    case Role::kWorker:
      return "worker";
    case Role::kTelemetry:
      return "telemetry";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

// Equal strings, in time that does not depend on where they differ.
bool SameSecret(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

absl::StatusOr<Authenticator> Authenticator::FromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the token file ", path));
  Authenticator auth;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2 || fields[0].size() < 16) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " line ", number, ": expected 'TOKEN ROLES' with a token of 16+ characters"));
    }
    // A token given twice had both lines' roles: one "downgraded" by a line added below the old
    // one kept admin (an operator trial).
    if (auth.tokens_.count(std::string(fields[0]))) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " line ", number,
          ": a token given on an earlier line too; give each token once, with all its roles "
          "comma-separated"));
    }
    std::set<Role>& roles = auth.tokens_[std::string(fields[0])];
    for (absl::string_view name : absl::StrSplit(fields[1], ',')) {
      bool known = false;
      for (Role r : {Role::kQuery, Role::kSubmit, Role::kWorker, Role::kTelemetry, Role::kAdmin}) {
        if (name == RoleName(r)) roles.insert(r), known = true;
      }
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " line ", number, ": unknown role '", name,
                         "' (query, submit, worker, telemetry, admin)"));
      }
    }
  }
  if (auth.tokens_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds no tokens"));
  }
  return auth;
}

std::string Authenticator::CallerOf(const grpc::CallbackServerContext* ctx) const {
  if (!enabled()) return "";
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return "";
  return StableHashHex(absl::string_view(it->second.data(), it->second.size()));
}

absl::Status Authenticator::Check(const grpc::CallbackServerContext* ctx, Role needed) const {
  if (!enabled()) return absl::OkStatus();
  absl::Status s = CheckToken(ctx, needed);
  if (s.ok()) return s;
  // Refusals are an operator's to follow up (a worker with a revoked token, someone guessing),
  // but a client retrying in a loop must not flood the log: one event a second at most, on a
  // clock no wall-clock step moves.
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  int64_t last = refusals_->last_logged_ms.load();
  if (now_ms - last >= 1000 && refusals_->last_logged_ms.compare_exchange_strong(last, now_ms)) {
    LogEvent("auth_refused",
             {{"peer", ctx->peer()},
              {"role", RoleName(needed)},
              {"reason", std::string(s.message())},
              {"not_logged_before", std::to_string(refusals_->unlogged.exchange(0))}});
  } else {
    ++refusals_->unlogged;
  }
  return s;
}

absl::Status Authenticator::CheckToken(const grpc::CallbackServerContext* ctx, Role needed) const {
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "missing 'authorization: Bearer <token>' metadata (ktune's commands send --token or "
        "$KTUNE_TOKEN)");
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    return absl::UnauthenticatedError("authorization metadata must be 'Bearer <token>'");
  }
  for (const auto& [token, roles] : tokens_) {
    if (!SameSecret(token, value)) continue;
    const bool allowed = roles.count(Role::kAdmin) || roles.count(needed) ||
                         (needed == Role::kQuery && roles.count(Role::kSubmit));
    if (allowed) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("this token does not have the ", RoleName(needed), " role"));
  }
  return absl::UnauthenticatedError("unknown token");
}

}  // namespace ktune
