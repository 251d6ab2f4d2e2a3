// ktune-cuda-runner: the isolated child process a CUDA worker compiles and measures candidates
// in; the only ktune binary that loads the NVIDIA driver, NVRTC and cuBLAS (at run time, with
// dlopen). It reads Request frames on stdin and answers Response frames on stdout until stdin
// closes. An illegal address or a hang kills this process, never the worker, which starts a new
// one. See measurer/cuda/cuda_runner.proto.
//
// Anything a kernel prints (printf) goes to stderr: stdout is reserved for the protocol.
#include <cstdio>
#include <cstdlib>

#include "measurer/cuda/cuda_runner_session.h"
#include "measurer/runner/framing.h"

int main(int argc, char** argv) {
  if (argc > 1) {
    std::fprintf(stderr,
                 "usage: ktune-cuda-runner  (started by a ktune CUDA worker; speaks a private "
                 "protocol on stdin/stdout)\n");
    return 2;
  }
  // NVRTC honours the driver's compute cache (~/.nv/ComputeCache, where a driver is installed):
  // a program compiled before, by any process, comes back from it without ptxas's report, so its
  // registers and shared memory would read 0 (seen on an H100 machine). ktune keeps its own cubin
  // cache with the reports (nvrtc_compiler.h), and the runner loads cubins, never PTX, so the
  // driver's cache is of no use here.
  ::setenv("CUDA_CACHE_DISABLE", "1", 1);
  int in = -1, out = -1;
  if (!ktune::runner::TakeProtocolPipes(&in, &out)) return 1;
  ktune::runner::DieWithParent();

  ktune::cuda::CudaRunnerSession session;
  ktune::cuda_runner::Request request;
  while (ktune::runner::ReadFrame(in, request)) {
    ktune::cuda_runner::Response response = session.Handle(request);
    if (!ktune::runner::WriteFrame(out, response)) return 1;
    if (response.restart()) return 3;  // the CUDA context is poisoned: start afresh
  }
  return 0;
}
