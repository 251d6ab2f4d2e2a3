// ktune-cuda-runner: the isolated child process a CUDA worker compiles and measures candidates
// in; the only ktune binary that loads the NVIDIA driver, NVRTC and cuBLAS (at run time, with
// dlopen). It reads Request frames on stdin and answers Response frames on stdout until stdin
// closes. An illegal address or a hang kills this process, never the worker, which starts a new
// one. See measurer/cuda/cuda_runner.proto.
//
// Anything a kernel prints (printf) goes to stderr: stdout is reserved for the protocol.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "measurer/cuda/cuda_runner_session.h"
#include "measurer/runner/framing.h"

int main(int argc, char** argv) {
  if (argc > 1) {
    std::fprintf(stderr,
                 "usage: ktune-cuda-runner  (started by a ktune CUDA worker; speaks a private "
                 "protocol on stdin/stdout)\n");
    return 2;
  }
  const int in = ::dup(0);
  const int out = ::dup(1);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (in < 0 || out < 0 || null_fd < 0) return 1;
  ::dup2(null_fd, 0);
  ::dup2(2, 1);
  ::close(null_fd);

  ktune::cuda::CudaRunnerSession session;
  ktune::cuda_runner::Request request;
  while (ktune::runner::ReadFrame(in, request)) {
    ktune::cuda_runner::Response response = session.Handle(request);
    if (!ktune::runner::WriteFrame(out, response)) return 1;
    if (response.restart()) return 3;  // the CUDA context is poisoned: start afresh
  }
  return 0;
}
