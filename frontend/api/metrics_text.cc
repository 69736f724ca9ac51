// Renders /metrics in the Prometheus text format (see metrics_text.h); runs in
// jobworker-frontend's HTTP workers.
#include "frontend/api/metrics_text.h"

#include <charconv>
#include <span>

namespace jw::frontend {

namespace {

// The text format's label value escapes: backslash, double quote and newline.
std::string labelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// The shortest text that reads back as v: "0.0025", not "0.0025000000000000001".
std::string number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // labels: already rendered ("a=\"b\",c=\"d\""), or empty.
  void sample(std::string_view name, std::string_view labels, uint64_t value) {
    line(name, labels, std::to_string(value));
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    line(name, labels, number(value));
  }
  // Buckets not cumulative on input, the last being +Inf; rendered cumulative with _sum/_count.
  void histogram(std::string_view name, std::string_view labels, std::span<const double> bounds,
                 const std::vector<uint64_t>& buckets, uint64_t sum_us) {
    std::string prefix = labels.empty() ? "" : std::string(labels) + ",";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < buckets.size(); i++) {
      cumulative += buckets[i];
      std::string le = i < bounds.size() ? number(bounds[i]) : "+Inf";
      sample(std::string(name) + "_bucket", prefix + "le=\"" + le + "\"", cumulative);
    }
    sample(std::string(name) + "_sum", labels, static_cast<double>(sum_us) / 1e6);
    sample(std::string(name) + "_count", labels, cumulative);
  }
  std::string take() { return std::move(out_); }

 private:
  void line(std::string_view name, std::string_view labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  std::string out_;
};

std::string label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + labelValue(value) + "\"";
}

// The user label of the job counters; the entry of everyone past the cap has an empty name,
// shown as a value no user name can take (names start with a lowercase letter or '_').
std::string userLabel(const std::string& user) {
  return label("user", user.empty() ? "(other)" : user);
}

void jobFamilies(Exposition& e, const protocol::MetricsReply& m) {
  e.family("jobworker_jobs", "gauge",
           "Jobs jobworkerd knows, by state (finished ones until retention drops them).");
  for (auto s : {protocol::JobState::kRunning, protocol::JobState::kExited,
                 protocol::JobState::kKilled, protocol::JobState::kFailed}) {
    e.sample("jobworker_jobs", label("state", protocol::jobStateName(s)),
             m.jobs_by_state.at(static_cast<size_t>(s) - 1));
  }
  e.family("jobworker_job_starts_total", "counter", "Jobs started (running), by owner.");
  for (const auto& u : m.users) e.sample("jobworker_job_starts_total", userLabel(u.user), u.starts);
  e.family("jobworker_job_ends_total", "counter",
           "Jobs ended, by owner and outcome (oom: the kernel's OOM killer hit the job).");
  for (const auto& u : m.users) {
    for (size_t o = 0; o < protocol::kJobOutcomes; o++) {
      e.sample("jobworker_job_ends_total",
               userLabel(u.user) + "," +
                   label("outcome", protocol::jobOutcomeName(static_cast<protocol::JobOutcome>(o))),
               u.ends.at(o));
    }
  }
  e.family("jobworker_user_memory_bytes", "gauge",
           "Memory of each owner's running jobs' cgroups together, now.");
  for (const auto& u : m.users)
    e.sample("jobworker_user_memory_bytes", userLabel(u.user), u.memory_bytes);
  e.family("jobworker_job_start_latency_seconds", "histogram",
           "From the start request reaching jobworkerd to the job running.");
  e.histogram("jobworker_job_start_latency_seconds", "", protocol::kStartLatencyBuckets,
              m.start_latency.buckets, m.start_latency.sum_us);
  e.family("jobworker_output_stored_bytes_total", "counter", "Job output bytes stored.");
  e.sample("jobworker_output_stored_bytes_total", "", m.output_stored_bytes);
  e.family("jobworker_output_dropped_bytes_total", "counter",
           "Job output bytes read but not stored (over output_cap, or a storage error).");
  e.sample("jobworker_output_dropped_bytes_total", "", m.output_dropped_bytes);
}

void supervisorFamilies(Exposition& e, const protocol::MetricsReply& m) {
  e.family("jobworker_logins_total", "counter", "Login attempts by result.");
  for (size_t r = 0; r < protocol::kLoginResults; r++) {
    e.sample("jobworker_logins_total",
             label("result", protocol::loginResultName(static_cast<protocol::LoginResult>(r))),
             m.logins.at(r));
  }
  e.family("jobworker_frontend_restarts_total", "counter",
           "Times jobworkerd restarted the HTTPS frontend.");
  e.sample("jobworker_frontend_restarts_total", "", m.frontend_restarts);
  e.family("jobworker_protocol_violations_total", "counter",
           "Frames from the frontend jobworkerd refused (the frontend was killed each time).");
  e.sample("jobworker_protocol_violations_total", "", m.protocol_violations);
  e.family("jobworker_event_loop_lag_seconds", "histogram",
           "How late jobworkerd's event loop ran a probe timer (its responsiveness).");
  e.histogram("jobworker_event_loop_lag_seconds", "", protocol::kLoopLagBuckets, m.loop_lag.buckets,
              m.loop_lag.sum_us);
  if (m.has_state_free) {
    e.family("jobworker_state_filesystem_free_bytes", "gauge",
             "Bytes jobworkerd may still use on the state directory's filesystem.");
    e.sample("jobworker_state_filesystem_free_bytes", "", m.state_free_bytes);
  }
  if (m.has_jobs_memory) {
    e.family("jobworker_jobs_memory_bytes", "gauge", "Memory of all jobs' cgroups together.");
    e.sample("jobworker_jobs_memory_bytes", "", m.jobs_memory_bytes);
  }
  if (m.has_jobs_cpu) {
    e.family("jobworker_jobs_cpu_seconds_total", "counter",
             "CPU time used by all jobs' cgroups together.");
    e.sample("jobworker_jobs_cpu_seconds_total", "", static_cast<double>(m.jobs_cpu_us) / 1e6);
  }
  if (m.has_jobs_pids) {
    e.family("jobworker_jobs_pids", "gauge", "Processes and threads in all jobs' cgroups.");
    e.sample("jobworker_jobs_pids", "", m.jobs_pids);
  }
}

void httpFamilies(Exposition& e, const FrontendFigures& f) {
  e.family("jobworker_http_requests_total", "counter",
           "HTTP requests answered, by route template, method and status class.");
  for (const auto& r : f.routes) {
    for (size_t m = 0; m < RequestMetrics::kMethods.size(); m++) {
      for (size_t c = 0; c < RequestMetrics::kStatusClasses.size(); c++) {
        uint64_t n = r.requests.at(m).at(c);
        if (n == 0) continue;  // a series appears with its first request
        e.sample("jobworker_http_requests_total",
                 label("route", r.route) + "," + label("method", RequestMetrics::kMethods.at(m)) +
                     "," + label("status_class", RequestMetrics::kStatusClasses.at(c)),
                 n);
      }
    }
  }
  e.family("jobworker_http_request_duration_seconds", "histogram",
           "From a complete request to the end of its answer, by route template.");
  for (const auto& r : f.routes) {
    e.histogram("jobworker_http_request_duration_seconds", label("route", r.route),
                kRequestDurationBuckets, r.duration_buckets, r.duration_sum_us);
  }
  e.family("jobworker_http_connections", "gauge", "Client connections open now.");
  e.sample("jobworker_http_connections", "", f.open_connections);
  e.family("jobworker_log_followers", "gauge", "Log streams following a running job now.");
  e.sample("jobworker_log_followers", "", f.log_followers);
  e.family("jobworker_http_intake_refusals_total", "counter",
           "Connections or requests the HTTP intake refused or cut, by reason.");
  for (const auto& [reason, n] : f.intake_refusals) {
    e.sample("jobworker_http_intake_refusals_total", label("reason", reason), n);
  }
}

}  // namespace

std::string renderMetrics(const protocol::MetricsReply& supervisor,
                          const FrontendFigures& frontend) {
  Exposition e;
  jobFamilies(e, supervisor);
  supervisorFamilies(e, supervisor);
  httpFamilies(e, frontend);
  return e.take();
}

}  // namespace jw::frontend
