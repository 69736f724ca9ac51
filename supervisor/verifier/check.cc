// The verifier's request loop (see check.h); runs in jobworker-verifier, unprivileged, under its
// seccomp allowlist.
#include "supervisor/verifier/check.h"

#include <sodium.h>

#include "common/protocol/channel.h"
#include "common/protocol/verifier_codec.h"

namespace jw::verifier {

namespace pv = protocol::verifier;

Result<std::string> answerFrame(std::string_view frame) {
  std::string_view payload;
  auto h = pv::decodeHeader(frame, &payload);
  if (!h) return h.error();
  auto type = static_cast<uint16_t>(h->type);
  if (!pv::isPermitted(type, pv::Direction::kSupervisorToVerifier)) {
    return Error{"message " + std::string(pv::msgTypeName(type)) +
                 " does not flow from the supervisor to the verifier"};
  }
  if (h->type != pv::MsgType::kVerifyPassword) return Error{"not a VerifyPassword"};
  if (h->request_id == 0) return Error{"VerifyPassword with request id 0"};
  // The password stays a view into `frame`, which the caller wipes: it is never copied.
  auto req = pv::decodeVerifyPasswordPayload(payload);
  if (!req) return req.error();
  std::string hash(req->hash);  // crypto_pwhash_str_verify wants it NUL-terminated
  // -1 for a mismatch and for a hash it cannot parse alike: either way the answer is "no".
  bool match =
      crypto_pwhash_str_verify(hash.c_str(), req->password.data(), req->password.size()) == 0;
  return pv::encodeVerifyResult(h->request_id, pv::VerifyResult{match});
}

Status serve(int fd) {
  protocol::ReceiveBuffer buffer;  // wipes each frame (password and hash) after its answer
  for (;;) {
    auto r = buffer.receive(fd);
    if (!r) return r.error();
    if (r.value() == protocol::RecvStatus::kClosed) return okStatus();
    if (r.value() == protocol::RecvStatus::kWouldBlock) continue;  // a blocking fd: not expected
    auto reply = answerFrame(buffer.frame());
    buffer.wipe();
    if (!reply) return Error{"from jobworkerd: " + reply.error().message};
    if (Status s = protocol::sendFrame(fd, reply.value()); !s) return s;
  }
}

}  // namespace jw::verifier
