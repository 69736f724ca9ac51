// The frontend's end of the SEQPACKET channel to jobworkerd (fd 3): the blocking start-up
// exchange, then thread-safe request/reply multiplexing: any worker thread sends a request with
// a fresh id and waits; one reader thread routes replies by id. The supervisor sends nothing
// unasked. Runs in jobworker-frontend.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/protocol/codec.h"
#include "common/result.h"

namespace jw::frontend {

// A supervisor answer: the reply payload, or an ErrorReply (from the supervisor, or made up
// here as kUnavailable when the supervisor did not answer in time).
template <typename T>
class [[nodiscard]] Reply {
 public:
  Reply(T value) : v_(std::move(value)) {}                     // NOLINT
  Reply(protocol::ErrorReply error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const protocol::ErrorReply& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, protocol::ErrorReply> v_;
};

// One page of a job list: the statuses, and whether more match after the last.
struct JobPage {
  std::vector<protocol::JobStatus> jobs;
  bool more = false;
};

class SupervisorChannel {
 public:
  explicit SupervisorChannel(int fd) : fd_(fd) {}
  ~SupervisorChannel();
  SupervisorChannel(const SupervisorChannel&) = delete;
  SupervisorChannel& operator=(const SupervisorChannel&) = delete;

  Status sendReady();

  // Starts the reader thread. When the channel closes or breaks, `on_closed` runs on it (the
  // frontend exits: the supervisor respawns it, and a frontend without its supervisor cannot
  // serve anything).
  void start(std::function<void(const std::string& why)> on_closed);

  // Typed requests; each waits for its whole reply up to `timeout`.
  Reply<protocol::JobStatus> jobStart(const protocol::JobStartRequest& r);
  Reply<protocol::JobStatus> jobStop(const protocol::JobStopRequest& r);
  Reply<protocol::JobStatus> jobGet(const protocol::JobRef& r);
  Reply<JobPage> jobList(const protocol::JobListRequest& r);
  // Waits up to kFollowTimeout: jobworkerd parks it for at most its parked-read time.
  Reply<protocol::JobStatus> jobWait(const protocol::JobWaitRequest& r);
  Reply<protocol::Empty> jobDelete(const protocol::JobDeleteRequest& r);
  Reply<protocol::ServerInfoReply> serverInfo(const protocol::SessionRef& s);
  Reply<protocol::OutputChunk> outputRead(const protocol::OutputReadRequest& r);
  // The same in two halves, so a log stream can ask for the next chunk before it writes the
  // current one to its client (the supervisor reads while the frontend encrypts).
  uint32_t outputReadSend(const protocol::OutputReadRequest& r, std::string* why);
  Reply<protocol::OutputChunk> outputReadWait(uint32_t id, bool follow, const std::string& why);
  // A stdin upload: open, each frame sent without waiting (at most protocol::kStdinWindow
  // unanswered) and its Ok collected once the bytes are in the job's pipe, then close.
  Reply<protocol::Empty> stdinOpen(const protocol::StdinOpenRequest& r);
  uint32_t stdinWriteSend(const protocol::StdinWriteRequest& r, std::string* why);
  // The frame's answer if it came within `timeout`, else nullopt (still pending: ask again).
  std::optional<Reply<protocol::Empty>> stdinWriteWait(uint32_t id,
                                                       std::chrono::milliseconds timeout,
                                                       const std::string& send_error);
  Reply<protocol::JobStatus> stdinClose(const protocol::StdinCloseRequest& r);
  // Job events after r.since; a follow read waits up to kFollowTimeout (parked in jobworkerd).
  Reply<protocol::EventBatch> eventsRead(const protocol::EventsReadRequest& r);
  // Nobody will wait for request `id`: its reply is dropped when it comes.
  void forget(uint32_t id);
  Reply<protocol::HealthReply> health(std::chrono::milliseconds timeout);
  // The password check happens in the supervisor; the request's password is the caller's to
  // wipe (the encoded frame is wiped by call()).
  Reply<protocol::LoginReply> login(const protocol::LoginRequest& r);
  Reply<protocol::SessionInfo> sessionGet(const protocol::SessionRef& s);
  Reply<protocol::Empty> sessionRevoke(const protocol::SessionEnd& s);
  // jobworkerd's figures for GET /metrics (role admin or metrics).
  Reply<protocol::MetricsReply> metricsGet(const protocol::SessionRef& s);

  static constexpr std::chrono::milliseconds kDefaultTimeout{30'000};
  // A parked follow read is answered within 15 s; leave room on top.
  static constexpr std::chrono::milliseconds kFollowTimeout{45'000};

 private:
  struct Frame {
    protocol::FrameHeader header;
    std::string bytes;  // the whole frame
    std::string_view payload() const {
      return std::string_view(bytes).substr(protocol::kHeaderSize);
    }
  };
  struct Pending {
    std::vector<Frame> frames;
    bool done = false;
    bool discard = false;  // nobody waits: drop the reply when it comes
    // Its one waiter's: a reply wakes the thread that waits for it, not every waiting thread
    // (a hundred followers each woken for every chunk of the others).
    std::unique_ptr<std::condition_variable> ready = std::make_unique<std::condition_variable>();
  };

  // Sends encode(id) and collects frames up to one without kFlagMore. Empty: timed out or
  // the send failed (`*why` says which).
  std::vector<Frame> call(const std::function<std::string(uint32_t)>& encode,
                          std::chrono::milliseconds timeout, std::string* why);
  // call() in two halves: send returns the id (0 when the send failed), wait collects.
  uint32_t send(const std::function<std::string(uint32_t)>& encode, std::string* why);
  std::vector<Frame> wait(uint32_t id, std::chrono::milliseconds timeout, std::string* why);
  template <typename P>
  using Encoder = std::string (*)(uint32_t request_id, const P& payload, uint16_t flags);
  template <typename T>
  using Decoder = Result<T> (*)(std::string_view payload);
  // The one reply frame of `frames`: an ErrorReply, or `expected` decoded.
  template <typename T>
  Reply<T> single(std::vector<Frame> frames, const std::string& why, protocol::MsgType expected,
                  Decoder<T> decode);
  // A request whose answer is one frame: encode(id, payload) out, then single().
  template <typename T, typename P>
  Reply<T> request(Encoder<P> encode, const P& payload, protocol::MsgType expected,
                   Decoder<T> decode, std::chrono::milliseconds timeout = kDefaultTimeout);
  void readerLoop();

  int fd_;
  std::mutex mu_;
  uint32_t next_id_ = 1;
  std::map<uint32_t, Pending> pending_;
  std::function<void(const std::string&)> on_closed_;
  std::thread reader_;
};

}  // namespace jw::frontend
