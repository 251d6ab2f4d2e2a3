// WriteFileAtomically's contract for what `path` already names: a file is replaced whole, a
// symbolic link is written through (the link kept), a pipe or device is written in place (never
// replaced: `db export --out /dev/null` as root used to turn /dev/null into a regular file).
#include "common/file_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>

#include "tests/testing/test_util.h"

namespace ktune {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(WriteFileAtomicallyTest, ReplacesAFileWholeAndRoundTripsGzip) {
  TempDir dir;
  const std::string path = dir.File("out.jsonl");
  ASSERT_TRUE(WriteFileAtomically(path, "old contents, longer than the new\n").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "new\n").ok());
  EXPECT_EQ(Slurp(path), "new\n");
  ASSERT_TRUE(WriteFileAtomically(dir.File("out.gz"), "zipped\n", /*gzip=*/true).ok());
  EXPECT_EQ(ReadFileMaybeGzip(dir.File("out.gz")).value(), "zipped\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2)
      << "no temporary file is left behind";
}

TEST(WriteFileAtomicallyTest, WritesThroughASymbolicLinkAndKeepsIt) {
  TempDir dir;
  fs::create_directory(dir.File("real"));
  const std::string target = dir.File("real/export.jsonl");
  ASSERT_TRUE(WriteFileAtomically(target, "before\n").ok());
  fs::create_symlink(target, dir.File("latest.jsonl"));
  ASSERT_TRUE(WriteFileAtomically(dir.File("latest.jsonl"), "after\n").ok());
  EXPECT_TRUE(fs::is_symlink(dir.File("latest.jsonl")));
  EXPECT_EQ(Slurp(target), "after\n");
}

TEST(WriteFileAtomicallyTest, WritesIntoAPipeInPlace) {
  TempDir dir;
  const std::string fifo = dir.File("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = Slurp(fifo); });
  const absl::Status written = WriteFileAtomically(fifo, "through the pipe\n");
  reader.join();
  ASSERT_TRUE(written.ok()) << written;
  EXPECT_EQ(received, "through the pipe\n");
  EXPECT_TRUE(fs::is_fifo(fifo)) << "the pipe was replaced by a file";
}

// Ctrl-C or SIGTERM during the write ends the process as before and leaves neither the file nor
// its temporary (`db export --out` left FILE.tmp.PID behind).
TEST(WriteFileAtomicallyTest, ASignalThatEndsTheProcessRemovesTheTemporaryFile) {
  TempDir dir;
  const std::string path = dir.File("export.jsonl.gz");
  std::string contents(96 << 20, '\0');  // incompressible: gzip takes seconds
  uint64_t x = 88172645463325252ull;
  for (char& c : contents) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    (void)WriteFileAtomically(path, contents, /*gzip=*/true);
    _exit(0);
  }
  const std::string tmp = path + ".tmp." + std::to_string(child);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!std::filesystem::exists(tmp) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a poll for the write to begin
  }
  ASSERT_TRUE(std::filesystem::exists(tmp)) << "the child never began writing";
  kill(child, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the write ended before the signal came; status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(WriteFileAtomicallyTest, RefusesADirectory) {
  TempDir dir;
  const absl::Status s = WriteFileAtomically(dir.path(), "x");
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("is a directory"));
  EXPECT_TRUE(fs::is_directory(dir.path()));
}

}  // namespace
}  // namespace ktune

namespace ktune {
namespace {

// Gzip data that decompresses past the limit (a bomb) or a stream that never ends (/dev/zero:
// the process grew to 6 GB without a word) is refused, saying why; a regular file is read whole
// whatever its size (a large export imports back).
TEST(ReadFileMaybeGzipTest, StopsAtItsLimitOnABombAndAnEndlessStream) {
  testing::TempDir dir;
  constexpr size_t kLimit = 1 << 20;
  ASSERT_TRUE(WriteFileAtomically(dir.File("big.txt"), std::string(kLimit + 1, 'x'), false).ok());
  ASSERT_TRUE(WriteFileAtomically(dir.File("bomb.gz"), std::string(4 * kLimit, 'x'), true).ok());
  ASSERT_TRUE(WriteFileAtomically(dir.File("fits.gz"), std::string(kLimit, 'x'), true).ok());
  EXPECT_EQ(ReadFileMaybeGzip(dir.File("big.txt"), kLimit).value().size(), kLimit + 1);
  for (const std::string& path : {dir.File("bomb.gz"), std::string("/dev/zero")}) {
    absl::StatusOr<std::string> read = ReadFileMaybeGzip(path, kLimit);
    EXPECT_TRUE(absl::IsResourceExhausted(read.status())) << path << ": " << read.status();
    EXPECT_THAT(std::string(read.status().message()), ::testing::HasSubstr("larger than 1 MiB"));
  }
  EXPECT_EQ(ReadFileMaybeGzip(dir.File("fits.gz"), kLimit).value().size(), kLimit);
}

// `cat a.gz b.gz > ab.gz` (and rotated logs) hold several gzip members; gzip(1) reads them all,
// and so must an import: reading only the first silently dropped the rest.
TEST(ReadFileMaybeGzipTest, ReadsEveryMemberOfAConcatenatedGzipFile) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomically(dir.File("a.gz"), "first\n", /*gzip=*/true).ok());
  ASSERT_TRUE(WriteFileAtomically(dir.File("b.gz"), std::string(200'000, 'b') + "\n", true).ok());
  std::string both;
  for (const char* part : {"a.gz", "b.gz"}) {
    std::ifstream in(dir.File(part), std::ios::binary);
    both += std::string(std::istreambuf_iterator<char>(in), {});
  }
  {
    std::ofstream out(dir.File("ab.gz"), std::ios::binary);
    out << both;
  }
  EXPECT_EQ(ReadFileMaybeGzip(dir.File("ab.gz")).value(),
            "first\n" + std::string(200'000, 'b') + "\n");
  {
    std::ofstream out(dir.File("junk.gz"), std::ios::binary);
    out << both << "not gzip";
  }
  absl::StatusOr<std::string> junk = ReadFileMaybeGzip(dir.File("junk.gz"));
  ASSERT_FALSE(junk.ok());
  EXPECT_TRUE(absl::IsDataLoss(junk.status())) << junk.status();
  {
    std::ofstream out(dir.File("cut.gz"), std::ios::binary);
    out << both.substr(0, both.size() - 10);
  }
  EXPECT_TRUE(absl::IsDataLoss(ReadFileMaybeGzip(dir.File("cut.gz")).status()));
}

}  // namespace
}  // namespace ktune
