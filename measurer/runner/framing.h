// Length-prefixed protobuf messages over file descriptors: a 4-byte little-endian length, then
// the serialised message. Used by both ends of the runner protocol.
#ifndef KTUNE_MEASURER_RUNNER_FRAMING_H_
#define KTUNE_MEASURER_RUNNER_FRAMING_H_

#include <cstdint>

#include "google/protobuf/message_lite.h"

namespace ktune::runner {

inline constexpr uint32_t kMaxFrameBytes = 64 << 20;

// Writes one frame; false when the pipe is closed or broken.
bool WriteFrame(int fd, const google::protobuf::MessageLite& message);

// Reads one frame into `message`. Returns false at end of file, on a read error or a malformed
// or oversized frame. `deadline_ms` < 0 waits forever; otherwise `*timed_out` is set when the
// deadline passed with nothing to read (milliseconds of a steady clock, from SteadyNowMs()); a
// frame already there is read, however late the call.
bool ReadFrame(int fd, google::protobuf::MessageLite& message, int64_t deadline_ms = -1,
               bool* timed_out = nullptr);

int64_t SteadyNowMs();

// For a runner's main: keeps private copies of stdin and stdout for the protocol in `*in` and
// `*out`, then points fd 0 at /dev/null and fd 1 at stderr, so that nothing a kernel prints can
// corrupt a frame. False when a descriptor could not be duplicated or opened.
bool TakeProtocolPipes(int* in, int* out);

// For a runner's main: a thread that kills the runner's process group (the runner and anything
// its kernel started) once the worker that started it is gone. A worker killed with SIGKILL
// left its runner spinning on a hung kernel for good, an orphan nobody waits for.
void DieWithParent();

}  // namespace ktune::runner

#endif  // KTUNE_MEASURER_RUNNER_FRAMING_H_
