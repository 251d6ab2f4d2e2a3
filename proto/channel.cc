#include "proto/channel.h"

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace ktune {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* holds) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    // The file's content, not the command line, is wrong (ChannelFailure: exit 1, not 2).
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a PEM file"));
  }
  // A key given as the CA (or the other way round) is PEM too, and gRPC then failed with "empty
  // address list" and lines of its own (an operator trial).
  if (holds != nullptr && text.str().find(absl::StrCat(holds, "-----")) == std::string::npos) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " holds no ", holds, " (-----BEGIN ... ", holds,
                     "-----): a certificate and a private key go in different options"));
  }
  return text.str();
}

std::optional<int64_t> AddressPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  const std::string port = address.substr(colon + 1);
  int64_t n = 0;
  if (port.empty() || port.size() > 12 ||
      port.find_first_not_of("0123456789") != std::string::npos || !absl::SimpleAtoi(port, &n)) {
    return std::nullopt;
  }
  return n;
}

absl::Status CheckServerAddress(const std::string& address) {
  // gRPC takes an empty target (and logs errors on every call) and a port past 65535 modulo
  // 65536 (99999 reached port 34463): refuse both here.
  if (address.empty()) {
    return absl::InvalidArgumentError("the server address is empty; give HOST:PORT");
  }
  // A bare name reached port 443 by DNS (gRPC's default), a failure much later.
  if (address.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server address ", address, " has no port; give HOST:PORT (ktune serve listens on 7470)"));
  }
  // A Unix socket's address has a path where the port would be.
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return absl::OkStatus();
  }
  // A port that is no number (127.0.0.1:-1 reached port 65535) or past 65535.
  if (std::optional<int64_t> port = AddressPort(address); !port || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("server address ", address, ": the port must be a number from 0 to 65535"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientTls& tls) {
  KTUNE_RETURN_IF_ERROR(CheckServerAddress(address));
  // A job of 65,536 tasks (the most a spec may give) is a 5.7 MB answer to SubmitJob or GetJob:
  // past gRPC's default of 4 MiB a client receives, so ktune's clients take up to 64 MiB.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  if (tls.ca_file.empty()) {
    if (!tls.cert_file.empty()) {
      return absl::InvalidArgumentError("a client certificate needs --tls-ca too");
    }
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  grpc::SslCredentialsOptions options;
  KTUNE_ASSIGN_OR_RETURN(options.pem_root_certs, ReadPem(tls.ca_file, "CERTIFICATE"));
  if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    KTUNE_ASSIGN_OR_RETURN(options.pem_cert_chain, ReadPem(tls.cert_file, "CERTIFICATE"));
    KTUNE_ASSIGN_OR_RETURN(options.pem_private_key, ReadPem(tls.key_file, "PRIVATE KEY"));
  }
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

namespace {

// How FromGrpc's messages for a call that got no answer begin (NoAnswerFromServer reads them).
constexpr char kUnreachable[] = "cannot reach the ktune server";
constexpr char kConnectionLost[] = "the connection to the ktune server was lost during the call";
constexpr char kShutDownDuringCall[] = "the server shut down during the call";

}  // namespace

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const std::string& said = status.error_message();
  std::string message = said.empty() ? "the server did not say why" : said;
  // gRPC's own words for what went wrong on the way (not the server's answer) say what happened
  // to the call, not what to do: say that too.
  if (said == "Cancelling all calls") {  // a server shutting down; the code varies by call kind
    message = absl::StrCat(kShutDownDuringCall,
                           "; run the command again once it is back (jobs resume when it "
                           "restarts)");
  }
  // An HTTP server or proxy at the address, not gRPC (gRPC maps its 404 to UNIMPLEMENTED, a 502
  // to UNAVAILABLE): the address is wrong, which gRPC's words did not say.
  if (absl::StartsWith(said, "Received http2 header with status")) {
    message = absl::StrCat("something answers at that address, but not a ktune server (", said,
                           "): is it the address `ktune serve` listens on?");
  }
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      for (absl::string_view unreachable :
           {"failed to connect to all addresses", "Connection refused", "DNS resolution failed",
            "empty address list"}) {
        if (absl::StrContains(said, unreachable)) {
          message = absl::StrCat(kUnreachable, " (", said,
                                 "): is `ktune serve` running at that address, and reachable "
                                 "from here?");
          break;
        }
      }
      for (absl::string_view lost : {"Socket closed", "Connection reset", "Broken pipe"}) {
        if (absl::StrContains(said, lost)) {
          // A plaintext client of a TLS server (or the other way round) sees the same words.
          message = absl::StrCat(kConnectionLost, " (", said,
                                 "): run it again once the server is back. A server that "
                                 "was up may use TLS where this client does not (--tls-ca), "
                                 "or the other way round");
          break;
        }
      }
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (said == "Deadline Exceeded") {
        message = "the server did not answer before the call's deadline passed";
      }
      break;
    case grpc::StatusCode::CANCELLED:
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (absl::StartsWith(said, "Sent message larger than max")) {
        message = absl::StrCat("the request is larger than the server accepts (", said,
                               " bytes): send less at once");
      } else if (absl::StartsWith(said, "Received message larger than max")) {
        message = absl::StrCat("a message was larger than its receiver accepts (", said,
                               " bytes): send less at once, or ask for less");
      }
      break;
    default:
      break;
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

bool NoAnswerFromServer(const absl::Status& status) {
  if (absl::IsDeadlineExceeded(status) || absl::IsCancelled(status)) return true;
  if (!absl::IsUnavailable(status)) return false;
  for (const char* prefix : {kUnreachable, kConnectionLost, kShutDownDuringCall}) {
    if (absl::StartsWith(status.message(), prefix)) return true;
  }
  return false;
}

}  // namespace ktune
