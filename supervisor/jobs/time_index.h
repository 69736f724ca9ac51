// When a log's bytes arrived: the compact time index kept beside each output log
// (<state-dir>/jobs/<id>/output.times, stderr.times), and the line arithmetic that `tail_lines`,
// `since` and `timestamps` reads need. Runs in jobworkerd.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace jw::supervisor {

// Wall-clock milliseconds since the epoch (CLOCK_REALTIME): job times and log arrival times.
int64_t realtimeMs();

// "Every byte before `end` had arrived by `unix_ms`": the bytes between the previous mark's end
// and this one's arrived in the interval that ends at its time.
struct TimeMark {
  uint64_t end = 0;
  int64_t unix_ms = 0;
  bool operator==(const TimeMark&) const = default;
};

// The marks of one log, in memory while the log grows, appended to its file at most once a
// second. A mark covers at most `spacingMs()` of arrivals (10 ms to start with), so a byte's time
// is at most that late. When a log reaches kMaxMarks marks the index coarsens: it keeps every
// other mark and doubles the spacing, so it never grows past kMaxMarks * 16 bytes and its
// precision is max(10 ms, about 2 x the log's writing time / kMaxMarks): 10 ms for a job that
// writes for 20 s, about 42 s for one that writes for a day.
class TimeIndex {
 public:
  static constexpr int64_t kMinSpacingMs = 10;
  static constexpr size_t kMaxMarks = 4096;
  static constexpr int64_t kFlushEveryMs = 1000;

  // An index for a log being written, kept at `path` (written on the first flush).
  explicit TimeIndex(std::string path) : path_(std::move(path)) {}

  // The log holds `size` bytes at `now_ms` (Unix ms). Flushes when a second has passed.
  void note(uint64_t size, int64_t now_ms);
  // Writes what the file lacks (the log ended, or the flush is due). A failed write (a full
  // disk) costs the index its precision, never the log: the marks stay in memory, and the next
  // flush retries.
  void flush(int64_t now_ms);

  const std::vector<TimeMark>& marks() const { return marks_; }
  int64_t spacingMs() const { return spacing_ms_; }

  // A log's marks from its file: empty when the file is missing; a damaged tail (a torn last
  // entry, a mark that goes back) ends the list there.
  static std::vector<TimeMark> load(const std::string& path);

 private:
  void coarsen();

  std::string path_;
  std::vector<TimeMark> marks_;
  int64_t spacing_ms_ = kMinSpacingMs;
  int64_t open_mark_since_ms_ = 0;  // when the last mark began taking arrivals
  size_t on_disk_ = 0;              // marks_[0, on_disk_) are in the file as they are now
  bool rewrite_ = false;            // the file holds marks that coarsening removed
  int64_t last_flush_ms_ = 0;
};

// The time the byte at `offset` arrived: the first mark that ends past it; none when the marks
// end before it (bytes that arrived after the last mark).
std::optional<int64_t> arrivalOf(const std::vector<TimeMark>& marks, uint64_t offset);

// The first offset of a byte that arrived at or after `since_ms`: where a `since` read starts
// before it is moved to a line start. `log_size` when every stored byte is older.
uint64_t firstOffsetSince(const std::vector<TimeMark>& marks, int64_t since_ms, uint64_t log_size);

// "2026-12-02T03:31:07.123Z": RFC 3339, UTC, milliseconds; always kTimestampWidth characters
// (years 0000-9999), so a client strips a fixed-width prefix.
constexpr size_t kTimestampWidth = 24;
std::string rfc3339Ms(int64_t unix_ms);

// `data` read from `offset`, each line that begins in it prefixed with the time its first byte
// arrived and a space. `at_line_start`: offset is 0 or follows a newline (else the first partial
// line gets no prefix: its prefix went out with its beginning). Bytes past the marks take
// `unmarked_ms`. At most `max_out` bytes come out; `*consumed` says how many of `data` they
// carry (whole lines, unless one line alone exceeds max_out).
std::string withTimestamps(std::string_view data, uint64_t offset, bool at_line_start,
                           const std::vector<TimeMark>& marks, int64_t unmarked_ms, size_t max_out,
                           size_t* consumed);

// Reads backwards from `size` in `path` to the start of the `lines`-th last line (a final line
// without its newline counts). Scans at most `max_scan` bytes: a log whose last `lines` lines are
// longer than that starts where the scan stopped, moved to the line start after it if any.
Result<uint64_t> tailStart(const std::string& path, uint64_t size, uint64_t lines,
                           uint64_t max_scan);

// The first line start at or after `offset` (offset itself when it is 0 or follows a newline),
// scanning at most `max_scan` bytes; `size` when none is found.
Result<uint64_t> nextLineStart(const std::string& path, uint64_t offset, uint64_t size,
                               uint64_t max_scan);

}  // namespace jw::supervisor
