// What jobworker-verifier does with each frame from jobworkerd: one password checked against one
// argon2id hash, the password wiped, the answer encoded. Runs in jobworker-verifier, after its
// privilege drop.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace jw::verifier {

// Decodes a VerifyPassword frame, runs crypto_pwhash_str_verify and returns the VerifyResult
// frame. Any frame that is not a well-formed VerifyPassword with a non-zero request id is an
// error: the supervisor sent something it never sends, and the verifier exits rather than guess.
// The password is never copied out of `frame`; the caller wipes `frame`.
Result<std::string> answerFrame(std::string_view frame);

// Reads frames from `fd` until the supervisor closes it (returns ok) or a frame is malformed or
// the socket fails (returns the error). Every received frame is wiped after its answer.
Status serve(int fd);

}  // namespace jw::verifier
