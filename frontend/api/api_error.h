// The REST API's error value (HTTP status + stable code + message) and a result type carrying
// it; used by every request-handling module of jobworker-frontend.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace jw::frontend {

// Answered to the client as {"error":{"code":...,"message":...}} with `status`.
struct ApiError {
  int status = 500;
  std::string code = "internal";
  std::string message;
  int retry_after_s = 0;  // > 0: sent as Retry-After (429, 503)
};

inline ApiError badRequest(std::string message) { return {400, "bad_request", std::move(message)}; }
inline ApiError notFound(std::string message) { return {404, "not_found", std::move(message)}; }
inline ApiError forbidden(std::string message) { return {403, "forbidden", std::move(message)}; }
inline ApiError tooLarge(std::string message) { return {413, "too_large", std::move(message)}; }

template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  ApiResult(ApiError error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace jw::frontend
