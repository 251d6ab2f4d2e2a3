// TLS and mutual TLS on the server, with certificates made by the openssl command for the test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "ktune/v1/tuning_service.grpc.pb.h"
#include "proto/channel.h"
#include "server/tuning_server.h"
#include "tests/testing/test_util.h"

namespace ktune {
namespace {

// A CA, a server certificate for localhost signed by it, and a client certificate signed by it.
void MakeCertificates(const testing::TempDir& dir) {
  const std::string d = dir.path();
  const std::string script = absl::StrCat(
      "set -e; cd ", d, "; exec >openssl.log 2>&1\n",
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
      "-subj /CN=ktune-test-ca\n",
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "
      "/CN=localhost\n",
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san.ext\n",
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
      "-days 2 -extfile san.ext\n",
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=worker\n",
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
      "-days 2\n");
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0)
      << testing::ReadWholeFile(dir.File("openssl.log"));
}

grpc::Status ListJobs(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::TuningService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListJobsResponse jobs;
  return stub->ListJobs(&ctx, v1::ListJobsRequest(), &jobs);
}

TEST(TlsTest, MutualTlsAdmitsOnlyClientsWithACertificateFromTheCa) {
  testing::TempDir dir;
  MakeCertificates(dir);
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("tls.db");
  options.tls_cert = dir.File("server.pem");
  options.tls_key = dir.File("server.key");
  options.tls_client_ca = dir.File("ca.pem");
  auto server = TuningServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("localhost:", (*server)->port());

  auto plain = MakeChannel(address, {});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(ListJobs(*plain).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto no_client_cert = MakeChannel(address, {dir.File("ca.pem"), "", ""});
  ASSERT_TRUE(no_client_cert.ok());
  EXPECT_FALSE(ListJobs(*no_client_cert).ok());
  auto mutual =
      MakeChannel(address, {dir.File("ca.pem"), dir.File("client.pem"), dir.File("client.key")});
  ASSERT_TRUE(mutual.ok());
  grpc::Status s = ListJobs(*mutual);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// `ktune serve` without tokens listens only where this machine alone reaches it, unless told.
TEST(TlsTest, OnlyLoopbackAddressesCountAsThisMachineOnly) {
  for (const char* local :
       {"127.0.0.1:0", "127.1.2.3:7470", "localhost:7470", "[::1]:1", "unix:/tmp/ktune.sock"}) {
    EXPECT_TRUE(IsLoopbackAddress(local)) << local;
  }
  for (const char* open :
       {"0.0.0.0:7470", "[::]:7470", "10.0.0.1:7470", "myhost:7470", "127.example.com:7470",
        "127.0.0.1.1:80", "127.300.0.1:80", "localhost.evil:1", ":7470"}) {
    EXPECT_FALSE(IsLoopbackAddress(open)) << open;
  }
}

TEST(TlsTest, MissingOrBadPemFilesAreClearErrors) {
  testing::TempDir dir;
  TuningServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("tls.db");
  options.tls_cert = dir.File("nope.pem");
  options.tls_key = dir.File("nope.key");
  auto server = TuningServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(server.status().message(), ::testing::HasSubstr("nope.pem"));
  auto channel = MakeChannel("localhost:1", {"", dir.File("c.pem"), ""});
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ktune
