// The time index of an output log and the line arithmetic of tail/since/timestamps reads (see
// time_index.h). Runs in jobworkerd, on its event loop: every file access is bounded.
#include "supervisor/jobs/time_index.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "common/fd.h"
#include "common/io.h"

namespace jw::supervisor {
namespace {

// The file: this magic (format version 1), then 16-byte little-endian {end, unix_ms} entries.
constexpr std::string_view kMagic = "JWTIME1\n";
constexpr size_t kEntrySize = 16;

void putLe(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t getLe(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string encodeMarks(const std::vector<TimeMark>& marks, size_t from) {
  std::string out;
  out.reserve((marks.size() - from) * kEntrySize);
  for (size_t i = from; i < marks.size(); i++) {
    putLe(out, marks[i].end);
    putLe(out, static_cast<uint64_t>(marks[i].unix_ms));
  }
  return out;
}

Result<UniqueFd> openLog(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError("open " + path);
  return fd;
}

// pread of exactly len bytes at off (fewer only at the end of the file).
Result<std::string> readAt(int fd, uint64_t off, size_t len) {
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, buf.data() + got, len - got, static_cast<off_t>(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("pread");
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

constexpr size_t kScanBlock = size_t{64} * 1024;

}  // namespace

int64_t realtimeMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

void TimeIndex::note(uint64_t size, int64_t now_ms) {
  uint64_t last_end = marks_.empty() ? 0 : marks_.back().end;
  if (size > last_end) {
    // The open mark takes arrivals for one spacing; after it, a new mark begins. A mark already
    // in the file is never changed in place: a new one begins instead.
    bool open = !marks_.empty() && on_disk_ < marks_.size() &&
                now_ms - open_mark_since_ms_ < spacing_ms_ && now_ms >= marks_.back().unix_ms;
    if (open) {
      marks_.back() = TimeMark{size, now_ms};
    } else {
      if (marks_.size() >= kMaxMarks) coarsen();
      marks_.push_back(
          TimeMark{size, std::max(now_ms, marks_.empty() ? now_ms : marks_.back().unix_ms)});
      open_mark_since_ms_ = now_ms;
    }
  }
  if (last_flush_ms_ == 0)
    last_flush_ms_ = now_ms;  // the first flush a second after the first byte
  if (now_ms - last_flush_ms_ >= kFlushEveryMs) flush(now_ms);
}

void TimeIndex::coarsen() {
  // Keep marks 1, 3, 5, ...: the last one stays (an even count), so the index still ends where
  // the log did; every byte's time moves later by at most one old spacing.
  std::vector<TimeMark> kept;
  kept.reserve(marks_.size() / 2 + 1);
  for (size_t i = marks_.size() % 2 == 0 ? 1 : 0; i < marks_.size(); i += 2)
    kept.push_back(marks_[i]);
  marks_ = std::move(kept);
  spacing_ms_ *= 2;
  rewrite_ = true;
  on_disk_ = 0;
}

void TimeIndex::flush(int64_t now_ms) {
  last_flush_ms_ = now_ms;
  if (!rewrite_ && on_disk_ == marks_.size()) return;
  if (rewrite_ || on_disk_ == 0) {
    // A new file (or one that coarsening made stale): written aside, then renamed over.
    std::string tmp = path_ + ".tmp";
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) return;
    std::string bytes = std::string(kMagic) + encodeMarks(marks_, 0);
    if (!writeAll(fd.get(), bytes, tmp) || rename(tmp.c_str(), path_.c_str()) != 0) {
      unlink(tmp.c_str());
      return;
    }
    rewrite_ = false;
  } else {
    UniqueFd fd(open(path_.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return;
    // All or nothing per entry: a short write leaves a torn entry, which load() drops, and the
    // next flush rewrites the file.
    if (!writeAll(fd.get(), encodeMarks(marks_, on_disk_), path_)) {
      rewrite_ = true;
      return;
    }
  }
  on_disk_ = marks_.size();
}

std::vector<TimeMark> TimeIndex::load(const std::string& path) {
  auto bytes = readFile(path, kMagic.size() + kMaxMarks * kEntrySize, O_NOFOLLOW);
  std::vector<TimeMark> marks;
  if (!bytes || bytes->compare(0, kMagic.size(), kMagic) != 0) return marks;
  const std::string& b = bytes.value();
  for (size_t at = kMagic.size(); at + kEntrySize <= b.size(); at += kEntrySize) {
    TimeMark m{getLe(b.data() + at), static_cast<int64_t>(getLe(b.data() + at + 8))};
    if (!marks.empty() && (m.end < marks.back().end || m.unix_ms < marks.back().unix_ms)) break;
    marks.push_back(m);
  }
  return marks;
}

std::optional<int64_t> arrivalOf(const std::vector<TimeMark>& marks, uint64_t offset) {
  auto it = std::upper_bound(marks.begin(), marks.end(), offset,
                             [](uint64_t o, const TimeMark& m) { return o < m.end; });
  if (it == marks.end()) return std::nullopt;
  return it->unix_ms;
}

uint64_t firstOffsetSince(const std::vector<TimeMark>& marks, int64_t since_ms, uint64_t log_size) {
  // Mark i covers [marks[i-1].end, marks[i].end) with time marks[i].unix_ms: the first mark at
  // or after since_ms starts where its predecessor ended.
  auto it = std::lower_bound(marks.begin(), marks.end(), since_ms,
                             [](const TimeMark& m, int64_t t) { return m.unix_ms < t; });
  if (it == marks.end()) return marks.empty() ? 0 : std::min(marks.back().end, log_size);
  return it == marks.begin() ? 0 : std::prev(it)->end;
}

std::string rfc3339Ms(int64_t unix_ms) {
  int64_t secs = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
  auto ms = static_cast<int>(unix_ms - secs * 1000);
  time_t t = static_cast<time_t>(secs);
  tm utc{};
  gmtime_r(&t, &utc);
  int year = std::clamp(utc.tm_year + 1900, 0, 9999);
  char buf[64];  // room for any int the compiler cannot bound; the clamps keep it at 24
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, ms);
  return buf;
}

std::string withTimestamps(std::string_view data, uint64_t offset, bool at_line_start,
                           const std::vector<TimeMark>& marks, int64_t unmarked_ms, size_t max_out,
                           size_t* consumed) {
  constexpr size_t kPrefix = kTimestampWidth + 1;
  std::string out;
  bool line_start = at_line_start;
  size_t i = 0;
  while (i < data.size()) {
    size_t nl = data.find('\n', i);
    size_t piece = (nl == std::string_view::npos ? data.size() : nl + 1) - i;
    size_t prefix = line_start ? kPrefix : 0;
    if (out.size() + prefix + piece > max_out) {
      // What does not fit waits for the next chunk; a line longer than a whole chunk is split,
      // its continuation without a prefix. A prefix never goes out without a byte after it.
      if (!out.empty() || max_out <= prefix) break;
      piece = max_out - prefix;
      nl = std::string_view::npos;
    }
    if (line_start) {
      out += rfc3339Ms(arrivalOf(marks, offset + i).value_or(unmarked_ms));
      out.push_back(' ');
    }
    out.append(data.substr(i, piece));
    i += piece;
    line_start = nl != std::string_view::npos && i == nl + 1;
  }
  *consumed = i;
  return out;
}

Result<uint64_t> tailStart(const std::string& path, uint64_t size, uint64_t lines,
                           uint64_t max_scan) {
  if (lines == 0 || size == 0) return size;
  auto fd = openLog(path);
  if (!fd) return fd.error();
  uint64_t pos = size;
  uint64_t floor = size > max_scan ? size - max_scan : 0;
  uint64_t newlines = 0;
  bool first_byte = true;  // the log's last byte: a newline there ends the last line
  while (pos > floor) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kScanBlock, pos - floor));
    auto block = readAt(fd->get(), pos - len, len);
    if (!block) return block.error();
    if (block->size() != len) return Error{"log " + path + " is shorter than its size"};
    for (size_t i = len; i-- > 0;) {
      uint64_t at = pos - len + i;
      if ((*block)[i] != '\n') {
        first_byte = false;
        continue;
      }
      if (first_byte) {
        first_byte = false;
        continue;
      }
      if (++newlines == lines) return at + 1;
    }
    pos -= len;
  }
  if (floor == 0) return uint64_t{0};
  return nextLineStart(path, floor, size, max_scan);
}

Result<uint64_t> nextLineStart(const std::string& path, uint64_t offset, uint64_t size,
                               uint64_t max_scan) {
  if (offset == 0 || offset >= size) return std::min(offset, size);
  auto fd = openLog(path);
  if (!fd) return fd.error();
  uint64_t pos = offset - 1;  // the byte before: a newline there makes offset a line start
  uint64_t limit = std::min(size, offset + max_scan);
  while (pos < limit) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kScanBlock, limit - pos));
    auto block = readAt(fd->get(), pos, len);
    if (!block) return block.error();
    if (block->empty()) break;
    size_t nl = block->find('\n');
    if (nl != std::string::npos) return pos + nl + 1;
    pos += block->size();
  }
  return size;
}

}  // namespace jw::supervisor
