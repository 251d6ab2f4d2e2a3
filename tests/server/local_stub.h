// A test's client of its own server, over plaintext on this machine.
#ifndef KTUNE_TESTS_SERVER_LOCAL_STUB_H_
#define KTUNE_TESTS_SERVER_LOCAL_STUB_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace ktune::testing {

// A stub of `Service` (v1::TuningService, v1::WorkerService) on 127.0.0.1:`port`.
template <typename Service>
std::unique_ptr<typename Service::Stub> LocalStub(int port) {
  return Service::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
}

}  // namespace ktune::testing

#endif  // KTUNE_TESTS_SERVER_LOCAL_STUB_H_
