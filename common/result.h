// Result<T>: expected failures as values, shared by every process (no exceptions cross a boundary).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace jw {

struct Error {
  std::string message;
  int sys_errno = 0;  // errno when the failure came from a syscall, else 0
};

// E is the error type: Error everywhere but the CLI, whose errors carry a retry kind.
template <typename T, typename E = Error>
// NOLINTNEXTLINE(bugprone-exception-escape): moving the T and E we use does not throw.
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(E error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// Result<void> equivalent.
struct Ok {};
using Status = Result<Ok>;
inline Status okStatus() { return Ok{}; }

// Error from errno with context: "what: strerror(errno)".
Error sysError(const std::string& what, int err);
Error sysError(const std::string& what);  // uses the current errno

}  // namespace jw
