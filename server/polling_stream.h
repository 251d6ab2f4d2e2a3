// Server-streaming reactors for the callback API.
//
// PollingStream<T>: a thread of its own polls `poll` four times a second and writes the event it
// returns when the event changed and a second has passed since the last write, or at once when
// the event is final; then the stream finishes OK. A poll error finishes the stream with that
// error; a client that goes away (cancel, broken write) stops it. open() counts the streams of a
// type alive now, so that a service can cap the threads they hold.
//
// PreparedStream<T>: prepares its messages on a thread pool, writes them one by one, then
// finishes OK (or with the error of preparing them); open() counts them too.
// FailedStream<T>: finishes at once with a status.
#ifndef KTUNE_SERVER_POLLING_STREAM_H_
#define KTUNE_SERVER_POLLING_STREAM_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/support/server_callback.h"
#include "server/thread_pool.h"

namespace ktune {

grpc::Status ToGrpc(const absl::Status& s);

template <typename T>
class PollingStream final : public grpc::ServerWriteReactor<T> {
 public:
  // The event now, and whether it is the last one.
  using Poll = std::function<absl::StatusOr<std::pair<T, bool>>()>;

  // `on_client_gone`, when given, runs once if the stream ends because the client went away
  // (cancelled, disconnected or past its deadline), before the stream finishes.
  explicit PollingStream(Poll poll, std::function<void()> on_client_gone = nullptr)
      : poll_(std::move(poll)), on_client_gone_(std::move(on_client_gone)) {
    ++open_;
    std::thread([this] { Loop(); }).detach();
  }
  ~PollingStream() override { --open_; }
  // Streams of this type open now (each holds a thread): callers cap it.
  static int open() { return open_.load(); }
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) cancelled_ = true;
    cv_.notify_all();
  }
  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  void OnDone() override { delete this; }

 private:
  // Finish is the last use of `this`: OnDone may delete the stream at once, so it is called
  // after the loop has released mu_ (finishing under the lock unlocked a deleted mutex).
  void Loop() {
    grpc::Status end = Stream();
    if (end.error_code() == grpc::StatusCode::CANCELLED && on_client_gone_) on_client_gone_();
    this->Finish(end);
  }

  // Polls and writes until the last event, an error or a cancel; the status to finish with.
  grpc::Status Stream() {
    std::string last;
    auto last_sent = std::chrono::steady_clock::now() - std::chrono::seconds(1);
    while (true) {
      absl::StatusOr<std::pair<T, bool>> polled = poll_();
      if (!polled.ok()) return ToGrpc(polled.status());
      auto& [event, final] = *polled;
      const std::string progress = event.SerializeAsString();
      const auto now = std::chrono::steady_clock::now();
      if (progress != last && (final || now - last_sent >= std::chrono::seconds(1))) {
        last = progress;
        last_sent = now;
        std::unique_lock<std::mutex> lock(mu_);
        if (cancelled_) return grpc::Status::CANCELLED;
        event_ = std::move(event);
        writing_ = true;
        this->StartWrite(&event_);
        cv_.wait(lock, [&] { return !writing_ || cancelled_; });
      }
      if (final) return grpc::Status::OK;
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return cancelled_; });
      if (cancelled_) return grpc::Status::CANCELLED;
    }
  }

  static inline std::atomic<int> open_{0};
  Poll poll_;
  std::function<void()> on_client_gone_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool writing_ = false, cancelled_ = false;
  T event_;
};

template <typename T>
class PreparedStream final : public grpc::ServerWriteReactor<T> {
 public:
  using Prepare = std::function<absl::StatusOr<std::vector<T>>()>;
  // `prepare` runs on `pool` (a read of the database that may take seconds holds no gRPC
  // thread); its messages are then written in order, or its error finishes the stream.
  PreparedStream(ThreadPool& pool, Prepare prepare) {
    ++open_;
    pool.Run([this, prepare = std::move(prepare)] {
      absl::StatusOr<std::vector<T>> made = prepare();
      if (!made.ok()) return this->Finish(ToGrpc(made.status()));
      messages_ = *std::move(made);
      Next();
    });
  }
  ~PreparedStream() override { --open_; }
  // Streams of this type open now (each holds its messages in memory): callers cap it.
  static int open() { return open_.load(); }
  void OnWriteDone(bool ok) override {
    if (!ok) return this->Finish(grpc::Status::CANCELLED);
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ == messages_.size()) return this->Finish(grpc::Status::OK);
    this->StartWrite(&messages_[next_++]);
  }
  std::vector<T> messages_;
  size_t next_ = 0;
  static inline std::atomic<int> open_{0};
};

template <typename T>
class FailedStream final : public grpc::ServerWriteReactor<T> {
 public:
  explicit FailedStream(const absl::Status& status) { this->Finish(ToGrpc(status)); }
  void OnDone() override { delete this; }
};

}  // namespace ktune

#endif  // KTUNE_SERVER_POLLING_STREAM_H_
