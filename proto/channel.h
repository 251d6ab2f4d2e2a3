// Client channels to a ktune server: plaintext, TLS (the server's certificate checked against a
// CA file), or mutual TLS (the client presents its own certificate too).
#ifndef KTUNE_PROTO_CHANNEL_H_
#define KTUNE_PROTO_CHANNEL_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"

namespace ktune {

struct ClientTls {
  std::string ca_file;    // PEM roots that sign the server's certificate; empty: plaintext
  std::string cert_file;  // PEM client certificate chain, for mutual TLS
  std::string key_file;   // its private key
};

// The port of "HOST:PORT" (the digits after the last ':'), or nullopt when there are none.
std::optional<int64_t> AddressPort(const std::string& address);
// InvalidArgument for an address gRPC would misread: empty, or a port past 65535 (gRPC takes it
// modulo 65536).
absl::Status CheckServerAddress(const std::string& address);

// NotFound naming the file when a PEM file cannot be read; CheckServerAddress's errors.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientTls& tls);

// A call's status as an absl::Status: the same code and message ("the server did not say why"
// when it sent none); where the message is gRPC's own (the server unreachable, a deadline, a
// server shutting down, a message too large), one that says what to do.
absl::Status FromGrpc(const grpc::Status& status);

// Whether a call FromGrpc converted got no answer from the server: it could not be reached, the
// connection dropped or the server shut down during the call (FromGrpc's words for these), or no
// reply came before the deadline, or the call was cancelled. An error the server answered with
// (UNAVAILABLE from its failing disk, ABORTED from a busy database, a refusal) is an answer.
bool NoAnswerFromServer(const absl::Status& status);

// The contents of a PEM file; NotFound naming it, FailedPrecondition when it is not PEM, or
// when `holds` is given ("CERTIFICATE", "PRIVATE KEY") and no block of that kind is in it.
absl::StatusOr<std::string> ReadPem(const std::string& path, const char* holds = nullptr);

}  // namespace ktune

#endif  // KTUNE_PROTO_CHANNEL_H_
