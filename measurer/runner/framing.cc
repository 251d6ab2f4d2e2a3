#include "measurer/runner/framing.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

namespace ktune::runner {
namespace {

bool WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads exactly n bytes, waiting at most until deadline_ms. Bytes already there are read even
// past the deadline: it times out only when nothing came. A caller that was itself stopped
// (SIGSTOP, a paused VM) past the deadline while the runner went on and answered gets the
// answer (it stored the candidate as a timeout, for good, though the kernel ran in time).
bool ReadAll(int fd, char* data, size_t n, int64_t deadline_ms, bool* timed_out) {
  while (n > 0) {
    if (deadline_ms >= 0) {
      const int64_t left = std::max<int64_t>(deadline_ms - SteadyNowMs(), 0);
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
      if (r == 0 && left == 0) {
        if (timed_out) *timed_out = true;
        return false;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return false;
      if (r == 0) continue;  // loop re-checks the deadline
    }
    ssize_t got = ::read(fd, data, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    data += got;
    n -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool WriteFrame(int fd, const google::protobuf::MessageLite& message) {
  std::string body;
  if (!message.SerializeToString(&body) || body.size() > kMaxFrameBytes) return false;
  const uint32_t n = static_cast<uint32_t>(body.size());
  // One write of header and body: a reader past its deadline reads what is there (ReadAll), and
  // a header without its body, between two writes, read as a timeout.
  std::string frame = {static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                       static_cast<char>((n >> 16) & 0xff), static_cast<char>(n >> 24)};
  frame += body;
  return WriteAll(fd, frame.data(), frame.size());
}

bool ReadFrame(int fd, google::protobuf::MessageLite& message, int64_t deadline_ms,
               bool* timed_out) {
  if (timed_out) *timed_out = false;
  unsigned char header[4];
  if (!ReadAll(fd, reinterpret_cast<char*>(header), 4, deadline_ms, timed_out)) return false;
  const uint32_t n =
      header[0] | (header[1] << 8) | (header[2] << 16) | (static_cast<uint32_t>(header[3]) << 24);
  if (n > kMaxFrameBytes) return false;
  std::string body(n, '\0');
  if (!ReadAll(fd, body.data(), n, deadline_ms, timed_out)) return false;
  return message.ParseFromString(body);
}

bool TakeProtocolPipes(int* in, int* out) {
  *in = ::dup(0);
  *out = ::dup(1);
  const int null_fd = ::open("/dev/null", O_RDONLY);
  if (*in < 0 || *out < 0 || null_fd < 0) return false;
  ::dup2(null_fd, 0);
  ::dup2(2, 1);
  ::close(null_fd);
  return true;
}

void DieWithParent() {
  const pid_t parent = ::getppid();
  std::thread([parent] {
    // Reparented (to init or a subreaper) once the worker dies: its process id changes.
    while (::getppid() == parent) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    // The runner's own process group, when it leads one (RunnerProcess starts it so); else
    // itself alone.
    ::kill(::getpgrp() == ::getpid() ? 0 : ::getpid(), SIGKILL);
  }).detach();
}

}  // namespace ktune::runner
