// PUT /v1/jobs/{id}/stdin in the supervisor: the upload's open, its frames and its close, fed
// into the job's stdin pipe without ever blocking the event loop. Flow control: each StdinWrite
// is answered only once its bytes are in the pipe, and the frontend may leave at most
// kStdinWindow unanswered (more is a protocol violation), so a job that does not read holds the
// upload with at most that many frames here. Runs in jobworkerd.
#include <sys/epoll.h>

#include <cstring>

#include "common/log.h"
#include "supervisor/core/supervisor.h"

namespace jw::supervisor {

using protocol::ErrorCode;
using protocol::Role;

void Supervisor::handleStdinOpen(uint32_t id, const protocol::StdinOpenRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  if (u->role == Role::kViewer) {
    refuse(id, {*u, r.remote_address, "job_stdin"},
           {ErrorCode::kForbidden, "role viewer cannot write to a job's stdin"});
    return;
  }
  Job* job = accessibleJob(id, *u, r.job_id, Access::kWrite);
  if (job == nullptr) return;
  if (!job->stdin_feed) {
    replyError(id, ErrorCode::kConflict,
               "job " + job->id() +
                   " was started without \"stdin\": \"pipe\"; its stdin is "
                   "/dev/null");
    return;
  }
  if (job->stdin_feed->phase() != StdinFeed::Phase::kWaiting) {
    replyError(id, ErrorCode::kConflict,
               job->stdin_feed->phase() == StdinFeed::Phase::kUploading
                   ? "job " + job->id() + " is receiving its stdin already (one upload per job)"
                   : "job " + job->id() + "'s stdin is closed (one upload per job, or it ended)");
    return;
  }
  job->stdin_feed->begin(u->name);
  log::info("job " + job->id() + " of " + job->owner() + ": stdin upload by " + u->name + " from " +
            log::quote(r.remote_address));
  frontend_->send(protocol::encodeOk(id, protocol::Empty{}));
}

// The job whose upload the frames of `user` feed, or null after replying the error.
Job* Supervisor::uploadTarget(uint32_t id, const UserRecord& user, const std::string& job_id) {
  Job* job = jobs_.find(job_id);
  if (job == nullptr || !job->stdin_feed || job->stdin_feed->uploader() != user.name) {
    replyError(id, ErrorCode::kNotFound, "no stdin upload of yours to job " + log::quote(job_id));
    return nullptr;
  }
  return job;
}

Status Supervisor::handleStdinWrite(uint32_t id, protocol::StdinWriteRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return okStatus();
  Job* job = uploadTarget(id, *u, r.job_id);
  if (job == nullptr) return okStatus();
  StdinFeed& feed = *job->stdin_feed;
  if (feed.phase() != StdinFeed::Phase::kUploading) {
    // The job ended or closed its stdin while this frame was on its way: the frontend learns it
    // from this answer and ends the upload.
    replyError(
        id, ErrorCode::kConflict,
        "job " + job->id() + "'s stdin is closed after " + std::to_string(feed.bytes()) + " bytes");
    return okStatus();
  }
  // The window is the protocol's flow control: a frontend that ignores it would make this
  // process hold an unbounded upload.
  if (feed.unwritten() >= protocol::kStdinWindow) {
    return Error{"StdinWrite beyond the window of " + std::to_string(protocol::kStdinWindow) +
                 " unanswered frames (job " + job->id() + ")"};
  }
  feed.queue(id, std::move(r.data));
  feedStdin(*job);
  return okStatus();
}

void Supervisor::feedStdin(Job& job) {
  StdinFeed& feed = *job.stdin_feed;
  std::vector<uint32_t> written;
  int err = 0;
  StdinFeed::Drain d = feed.drain(&written, &err);
  for (uint32_t request : written) frontend_->send(protocol::encodeOk(request, protocol::Empty{}));
  if (d == StdinFeed::Drain::kBroken) {
    // EPIPE: the job closed its stdin (`head -1`), like a shell pipeline's writer would learn.
    endStdin(job, false,
             err == EPIPE ? "the job closed its stdin" : std::string("write: ") + strerror(err));
    return;
  }
  const bool blocked = d == StdinFeed::Drain::kBlocked;
  if (blocked && feed.watch == 0) {
    std::string jid = job.id();
    auto w = loop_.watch(feed.fd(), EPOLLOUT, [this, jid](uint32_t) {
      if (Job* j = jobs_.find(jid); j != nullptr && j->stdin_feed) feedStdin(*j);
    });
    if (!w) {
      endStdin(job, false, "watch the stdin pipe: " + w.error().message);
      return;
    }
    feed.watch = w.value();
  } else if (!blocked && feed.watch != 0) {
    loop_.unwatch(feed.watch);
    feed.watch = 0;
  }
}

void Supervisor::endStdin(Job& job, bool complete, const std::string& why) {
  if (!job.stdin_feed || job.stdin_feed->phase() == StdinFeed::Phase::kClosed) return;
  StdinFeed& feed = *job.stdin_feed;
  if (feed.watch != 0) loop_.unwatch(feed.watch);
  feed.watch = 0;
  const bool uploaded = feed.phase() == StdinFeed::Phase::kUploading;
  for (uint32_t request : feed.close(complete)) {
    replyError(request, ErrorCode::kConflict,
               "job " + job.id() + "'s stdin is closed after " + std::to_string(feed.bytes()) +
                   " bytes: " + why);
  }
  if (uploaded) {
    log::info("job " + job.id() + ": stdin closed after " + std::to_string(feed.bytes()) +
              " bytes (" + (feed.complete() ? "complete" : "cut short: " + why) + ")");
  }
}

void Supervisor::handleStdinClose(uint32_t id, const protocol::StdinCloseRequest& r) {
  const UserRecord* u = authenticate(id, r.token);
  if (u == nullptr) return;
  Job* job = uploadTarget(id, *u, r.job_id);
  if (job == nullptr) return;
  // A complete upload's frames were all answered before its close; any still queued belong to
  // one cut short, whose bytes are not delivered.
  endStdin(*job, r.complete, r.complete ? "" : "the upload was cut short");
  replyStatus(id, *job);
}

void Supervisor::endUploads(const std::string& why) {
  for (Job* j : jobs_.all()) {
    if (j->stdin_feed && j->stdin_feed->phase() == StdinFeed::Phase::kUploading) {
      endStdin(*j, false, why);
    }
  }
}

}  // namespace jw::supervisor
