// ktune-runner: the isolated child process a CPU worker measures candidates in. It reads
// RunRequest frames on stdin and answers RunResponse frames on stdout until stdin closes. The
// worker kills it on a timeout and starts another after a crash; see measurer/cpu_measurer.h.
//
// Anything a kernel prints goes to stderr: stdout is reserved for the protocol.
#include <cstdio>

#include "measurer/runner/framing.h"
#include "measurer/runner/runner_session.h"

int main(int argc, char** argv) {
  if (argc > 1) {
    std::fprintf(stderr,
                 "usage: ktune-runner  (started by a ktune CPU worker; speaks a private "
                 "protocol on stdin/stdout)\n");
    return 2;
  }
  int in = -1, out = -1;
  if (!ktune::runner::TakeProtocolPipes(&in, &out)) return 1;
  ktune::runner::DieWithParent();

  ktune::runner::RunnerSession session;
  ktune::runner::RunRequest request;
  while (ktune::runner::ReadFrame(in, request)) {
    ktune::runner::RunResponse response = session.Handle(request);
    if (!ktune::runner::WriteFrame(out, response)) return 1;
    if (response.restart()) return 3;  // memory may be corrupt: let the worker start afresh
  }
  return 0;
}
