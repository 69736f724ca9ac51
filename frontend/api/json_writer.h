// Compact JSON output (JsonWriter) and strict UTF-8 checking for jobworker-frontend's REST API;
// runs in its HTTP worker threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jw::frontend {

// Compact JSON text built in order; strings are escaped, and bytes that are not valid UTF-8
// (a job's argv comes from a user and need not be) become U+FFFD so the output is always JSON.
class JsonWriter {
 public:
  JsonWriter& beginObject();
  JsonWriter& endObject();
  JsonWriter& beginArray();
  JsonWriter& endArray();
  JsonWriter& key(std::string_view k);
  JsonWriter& str(std::string_view v);
  JsonWriter& num(int64_t v);
  JsonWriter& unum(uint64_t v);
  JsonWriter& real(double v);
  JsonWriter& raw(std::string_view json_number);  // an already formatted JSON number
  JsonWriter& boolean(bool v);
  JsonWriter& null();
  std::string take() { return std::move(out_); }
  // Room for n more bytes: a list of thousands of jobs is written without regrowing the buffer.
  void reserve(size_t n) { out_.reserve(out_.size() + n); }

 private:
  void separate();
  JsonWriter& open(char bracket);  // '{' or '['
  JsonWriter& close(char bracket);
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written in it yet
  bool after_key_ = false;
};

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool validUtf8(std::string_view s);

}  // namespace jw::frontend
