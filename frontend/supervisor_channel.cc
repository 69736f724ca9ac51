// Request/reply multiplexing over the supervisor channel (see supervisor_channel.h); runs in
// jobworker-frontend: call() on HTTP worker threads, readerLoop() on its own thread.
#include "frontend/supervisor_channel.h"

#include <sodium.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/protocol/channel.h"
#include "common/protocol/messages.h"

namespace jw::frontend {

using protocol::ErrorCode;
using protocol::ErrorReply;
using protocol::MsgType;

namespace {

ErrorReply unavailable(const std::string& why) {
  return ErrorReply{ErrorCode::kUnavailable, 0, "supervisor unavailable: " + why};
}

}  // namespace

SupervisorChannel::~SupervisorChannel() {
  if (reader_.joinable()) {
    ::shutdown(fd_, SHUT_RDWR);  // wakes the reader's recv
    reader_.join();
  }
}

Status SupervisorChannel::sendReady() {
  return protocol::sendFrame(fd_, protocol::encodeReady(0, protocol::Empty{}));
}

void SupervisorChannel::start(std::function<void(const std::string&)> on_closed) {
  on_closed_ = std::move(on_closed);
  reader_ = std::thread([this] { readerLoop(); });
}

void SupervisorChannel::readerLoop() {
  // Received into once-allocated storage, then copied out at its exact size: no 192 KiB
  // allocation and zero-fill per frame.
  std::vector<char> storage(protocol::kMaxFrame + 1);
  size_t size = 0;
  std::string why;
  for (;;) {
    auto r = protocol::recvFrameInto(fd_, storage, &size);
    if (!r) {
      why = r.error().message;
      break;
    }
    if (r.value() == protocol::RecvStatus::kClosed) {
      why = "channel closed by the supervisor";
      break;
    }
    if (r.value() != protocol::RecvStatus::kFrame) continue;
    std::string bytes(storage.data(), size);
    // A LoginReply carries a fresh token: the storage keeps no copy of any frame.
    explicit_bzero(storage.data(), size);
    std::string_view payload;
    auto h = protocol::decodeHeader(bytes, &payload);
    if (!h) {
      why = "malformed frame from the supervisor: " + h.error().message;
      break;
    }
    uint16_t type = static_cast<uint16_t>(h->type);
    if (!protocol::isPermitted(type, protocol::Direction::kSupervisorToFrontend)) {
      why = "frame of type " + std::string(protocol::msgTypeName(type)) + " from the supervisor";
      break;
    }
    if (h->request_id == 0) {
      // Every supervisor message answers a request: one that does not is a broken stream.
      why = "unsolicited " + std::string(protocol::msgTypeName(type)) + " from the supervisor";
      break;
    }
    std::lock_guard lock(mu_);
    auto it = pending_.find(h->request_id);
    if (it == pending_.end()) {
      log::warning("reply for unknown request id " + std::to_string(h->request_id));
      continue;
    }
    it->second.frames.push_back(Frame{h.value(), std::move(bytes)});
    if ((h->flags & protocol::kFlagMore) == 0) {
      it->second.done = true;
      if (it->second.discard) {
        pending_.erase(it);
      } else {
        it->second.ready->notify_one();
      }
    }
  }
  if (on_closed_) on_closed_(why);
}

uint32_t SupervisorChannel::send(const std::function<std::string(uint32_t)>& encode,
                                 std::string* why) {
  uint32_t id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    if (next_id_ == 0) next_id_ = 1;  // 0 is reserved for unsolicited frames
    pending_[id] = Pending{};
  }
  std::string frame = encode(id);
  Status sent = protocol::sendFrame(fd_, frame);
  // Every request carries a token, and Login a password: neither outlives its send here.
  sodium_memzero(frame.data(), frame.size());
  if (!sent) {
    std::lock_guard lock(mu_);
    pending_.erase(id);
    *why = sent.error().message;
    return 0;
  }
  return id;
}

std::vector<SupervisorChannel::Frame> SupervisorChannel::wait(uint32_t id,
                                                              std::chrono::milliseconds timeout,
                                                              std::string* why) {
  if (id == 0) return {};
  std::unique_lock lock(mu_);
  Pending& waited = pending_[id];  // a map node: stays put while others come and go
  bool done = waited.ready->wait_for(lock, timeout, [&] { return waited.done; });
  if (!done) {
    auto& p = pending_[id];
    p.discard = true;
    p.frames.clear();
    *why = "no answer within " + std::to_string(timeout.count()) + " ms";
    return {};
  }
  std::vector<Frame> frames = std::move(pending_[id].frames);
  pending_.erase(id);
  return frames;
}

std::vector<SupervisorChannel::Frame> SupervisorChannel::call(
    const std::function<std::string(uint32_t)>& encode, std::chrono::milliseconds timeout,
    std::string* why) {
  return wait(send(encode, why), timeout, why);
}

namespace {

// The ErrorReply a frame of that type carries (or, undecodable, an internal error).
ErrorReply errorFrom(std::string_view payload) {
  auto e = protocol::decodeErrorReplyPayload(payload);
  if (!e) return ErrorReply{ErrorCode::kInternal, 0, "bad ErrorReply: " + e.error().message};
  return e.value();
}

}  // namespace

template <typename T>
Reply<T> SupervisorChannel::single(std::vector<Frame> frames, const std::string& why,
                                   MsgType expected, Decoder<T> decode) {
  if (frames.empty()) return unavailable(why);
  if (frames.size() != 1)
    return ErrorReply{ErrorCode::kInternal, 0, "unexpected multi-frame reply"};
  Frame& f = frames.front();
  // A reply may carry a secret (LoginReply: a fresh token); the decoded copy is the caller's to
  // wipe, the raw frame is wiped here whatever happens to it.
  struct WipeOnExit {
    std::string& bytes;
    ~WipeOnExit() { sodium_memzero(bytes.data(), bytes.size()); }
  } wipe{f.bytes};
  if (f.header.type == MsgType::kErrorReply) return errorFrom(f.payload());
  if (f.header.type != expected) {
    return ErrorReply{ErrorCode::kInternal, 0,
                      "unexpected reply " +
                          std::string(protocol::msgTypeName(static_cast<uint16_t>(f.header.type)))};
  }
  auto v = decode(f.payload());
  if (!v) return ErrorReply{ErrorCode::kInternal, 0, "bad reply: " + v.error().message};
  return std::move(v.value());
}

template <typename T, typename P>
Reply<T> SupervisorChannel::request(Encoder<P> encode, const P& payload, MsgType expected,
                                    Decoder<T> decode, std::chrono::milliseconds timeout) {
  std::string why;
  auto frames = call([&](uint32_t id) { return encode(id, payload, 0); }, timeout, &why);
  return single(std::move(frames), why, expected, decode);
}

Reply<protocol::JobStatus> SupervisorChannel::jobStart(const protocol::JobStartRequest& r) {
  return request(&protocol::encodeJobStart, r, MsgType::kJobStatus,
                 &protocol::decodeJobStatusPayload);
}

Reply<protocol::JobStatus> SupervisorChannel::jobStop(const protocol::JobStopRequest& r) {
  return request(&protocol::encodeJobStop, r, MsgType::kJobStatus,
                 &protocol::decodeJobStatusPayload);
}

Reply<protocol::JobStatus> SupervisorChannel::jobGet(const protocol::JobRef& r) {
  return request(&protocol::encodeJobGet, r, MsgType::kJobStatus,
                 &protocol::decodeJobStatusPayload);
}

Reply<JobPage> SupervisorChannel::jobList(const protocol::JobListRequest& r) {
  std::string why;
  auto frames =
      call([&](uint32_t id) { return protocol::encodeJobList(id, r); }, kDefaultTimeout, &why);
  if (frames.empty()) return unavailable(why);
  JobPage page;
  for (const auto& f : frames) {
    if (f.header.type == MsgType::kErrorReply) return errorFrom(f.payload());
    if (f.header.type != MsgType::kJobListReply) {
      return ErrorReply{ErrorCode::kInternal, 0, "unexpected reply to JobList"};
    }
    auto part = protocol::decodeJobListReplyPayload(f.payload());
    if (!part)
      return ErrorReply{ErrorCode::kInternal, 0, "bad JobListReply: " + part.error().message};
    for (auto& j : part->jobs) page.jobs.push_back(std::move(j));
    page.more = part->more;  // the last frame's says it
  }
  return page;
}

Reply<protocol::JobStatus> SupervisorChannel::jobWait(const protocol::JobWaitRequest& r) {
  return request(&protocol::encodeJobWait, r, MsgType::kJobStatus,
                 &protocol::decodeJobStatusPayload, kFollowTimeout);
}

Reply<protocol::Empty> SupervisorChannel::jobDelete(const protocol::JobDeleteRequest& r) {
  return request(&protocol::encodeJobDelete, r, MsgType::kOk, &protocol::decodeOkPayload);
}

Reply<protocol::ServerInfoReply> SupervisorChannel::serverInfo(const protocol::SessionRef& s) {
  return request(&protocol::encodeServerInfo, s, MsgType::kServerInfoReply,
                 &protocol::decodeServerInfoReplyPayload);
}

Reply<protocol::OutputChunk> SupervisorChannel::outputRead(const protocol::OutputReadRequest& r) {
  return request(&protocol::encodeOutputRead, r, MsgType::kOutputChunk,
                 &protocol::decodeOutputChunkPayload, r.follow ? kFollowTimeout : kDefaultTimeout);
}

uint32_t SupervisorChannel::outputReadSend(const protocol::OutputReadRequest& r, std::string* why) {
  return send([&](uint32_t id) { return protocol::encodeOutputRead(id, r); }, why);
}

Reply<protocol::OutputChunk> SupervisorChannel::outputReadWait(uint32_t id, bool follow,
                                                               const std::string& send_error) {
  std::string why = send_error;
  auto frames = wait(id, follow ? kFollowTimeout : kDefaultTimeout, &why);
  return single(std::move(frames), why, MsgType::kOutputChunk, &protocol::decodeOutputChunkPayload);
}

Reply<protocol::HealthReply> SupervisorChannel::health(std::chrono::milliseconds timeout) {
  return request(&protocol::encodeHealth, protocol::Empty{}, MsgType::kHealthReply,
                 &protocol::decodeHealthReplyPayload, timeout);
}

Reply<protocol::LoginReply> SupervisorChannel::login(const protocol::LoginRequest& r) {
  return request(&protocol::encodeLogin, r, MsgType::kLoginReply,
                 &protocol::decodeLoginReplyPayload);
}

Reply<protocol::SessionInfo> SupervisorChannel::sessionGet(const protocol::SessionRef& s) {
  return request(&protocol::encodeSessionGet, s, MsgType::kSessionInfo,
                 &protocol::decodeSessionInfoPayload);
}

Reply<protocol::MetricsReply> SupervisorChannel::metricsGet(const protocol::SessionRef& s) {
  return request(&protocol::encodeMetricsGet, s, MsgType::kMetrics, &protocol::decodeMetricsPayload,
                 std::chrono::milliseconds(5000));
}

Reply<protocol::Empty> SupervisorChannel::sessionRevoke(const protocol::SessionEnd& s) {
  return request(&protocol::encodeSessionRevoke, s, MsgType::kOk, &protocol::decodeOkPayload);
}

Reply<protocol::Empty> SupervisorChannel::stdinOpen(const protocol::StdinOpenRequest& r) {
  return request(&protocol::encodeStdinOpen, r, MsgType::kOk, &protocol::decodeOkPayload);
}

uint32_t SupervisorChannel::stdinWriteSend(const protocol::StdinWriteRequest& r, std::string* why) {
  return send([&](uint32_t id) { return protocol::encodeStdinWrite(id, r); }, why);
}

std::optional<Reply<protocol::Empty>> SupervisorChannel::stdinWriteWait(
    uint32_t id, std::chrono::milliseconds timeout, const std::string& send_error) {
  if (id == 0) return Reply<protocol::Empty>(unavailable(send_error));
  {
    std::unique_lock lock(mu_);
    // A job that does not read holds its upload for as long as it likes: no timeout here.
    Pending& waited = pending_[id];  // a map node: stays put while others come and go
    if (!waited.ready->wait_for(lock, timeout, [&] { return waited.done; })) return std::nullopt;
  }
  std::string why;
  auto frames = wait(id, timeout, &why);
  return single(std::move(frames), why, MsgType::kOk, &protocol::decodeOkPayload);
}

Reply<protocol::JobStatus> SupervisorChannel::stdinClose(const protocol::StdinCloseRequest& r) {
  return request(&protocol::encodeStdinClose, r, MsgType::kJobStatus,
                 &protocol::decodeJobStatusPayload);
}

Reply<protocol::EventBatch> SupervisorChannel::eventsRead(const protocol::EventsReadRequest& r) {
  return request(&protocol::encodeEventsRead, r, MsgType::kEventBatch,
                 &protocol::decodeEventBatchPayload, r.follow ? kFollowTimeout : kDefaultTimeout);
}

void SupervisorChannel::forget(uint32_t id) {
  std::lock_guard lock(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  if (it->second.done) {
    pending_.erase(it);  // answered already
  } else {
    it->second.discard = true;
  }
}

}  // namespace jw::frontend
