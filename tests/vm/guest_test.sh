#!/bin/bash
# In the test VM (run once after boot by jw-vm-test.service): installs jobworker by the README's
# production steps (the files came from `meson install`), checks the shipped unit (verify,
# security, watchdog, reload, journald events) and, on the full cgroup v2 hierarchy, the v2
# backend's placement, limits, kill and removal.
# Prints "JWVM PASS|FAIL <check>: <detail>" lines, "JWVM SUMMARY ..." and "JWVM DONE" on the
# console for tests/vm/run; its unit then powers the VM off.
set -u

readonly SHARE=/usr/local/share/jw-vm
readonly CA_DIR=/root/jwvm-ca
readonly URL=https://127.0.0.1:8443
# The README's example user: a Unix account its jobs run as, and a jobworker user of role user.
readonly USER_NAME=alice
readonly USER_PASSWORD=alice-vm-password
readonly ID_LOGIN_FAILED=5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a61
readonly ID_JOB_START=5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a62
readonly ID_JOB_STOP=5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a63
readonly ID_JOB_EXIT=5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a64
readonly ID_REFUSED=5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a69
readonly ID_ACCESS=5b0e3a7f1c2d4e8f9a6b3c1d2e4f5a90
readonly IO_DIR=/var/tmp/jwvm-io
pass=0
fail=0
TOKEN=
CG=
INST=
# Set by api(): the reply's status and body (globals, so api() runs in this shell).
HTTP_CODE=
BODY=

say() { echo "JWVM $*"; }
ok() {
  pass=$((pass + 1))
  say "PASS $1: $2"
}
ko() {
  fail=$((fail + 1))
  say "FAIL $1: $2"
}
# check NAME DETAIL COMMAND...: PASS when COMMAND succeeds.
check() {
  local name=$1 detail=$2
  shift 2
  if "$@"; then ok "$name" "$detail"; else ko "$name" "$detail"; fi
}
now() { date +%s.%N; }
# Floating-point comparisons and arithmetic without bc: awk is in every Debian.
calc() { awk "BEGIN { print $* }"; }
between() { awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; }

# api METHOD PATH [JSON]: sets HTTP_CODE and BODY.
api() {
  local body=/run/jwvm-body
  local args=(-sS --max-time 30 --cacert "$CA_DIR/ca.pem" -X "$1" -o "$body" -w '%{http_code}')
  [[ -n $TOKEN ]] && args+=(-H "Authorization: Bearer $TOKEN")
  [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  HTTP_CODE=$(curl "${args[@]}" "$URL$2" 2>/run/jwvm-curl-err) || HTTP_CODE=000
  BODY=$(cat "$body" 2>/dev/null)
  rm -f "$body"
}

# startJob JSON: sets JOB to the new job's id; false (the reply on the console) when refused.
JOB=
startJob() {
  JOB=
  api POST /v1/jobs "$1"
  if [[ $HTTP_CODE != 201 ]]; then
    say "INFO start refused ($HTTP_CODE): $BODY"
    return 1
  fi
  JOB=$(jq -r .id <<<"$BODY")
}

# jobStatus ID: prints the status object.
jobStatus() {
  api GET "/v1/jobs/$1"
  echo "$BODY"
}

# waitJob ID SECONDS: prints the final status once the job is no longer running.
waitJob() {
  local id=$1 deadline=$((SECONDS + $2))
  while :; do
    api GET "/v1/jobs/$id"
    if [[ $(jq -r .state <<<"$BODY" 2>/dev/null) != running ]] || ((SECONDS >= deadline)); then
      echo "$BODY"
      return
    fi
    sleep 0.2
  done
}

# jobOutput ID: prints the job's whole output.
jobOutput() {
  api GET "/v1/jobs/$1/logs?offset=0"
  echo "$BODY"
}

# waitOutput ID TEXT SECONDS: true once the job's output contains TEXT.
waitOutput() {
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    jobOutput "$1" | grep -q -- "$2" && return 0
    sleep 0.2
  done
  return 1
}

# waitGone PATH SECONDS: true once PATH no longer exists.
waitGone() {
  local deadline=$((SECONDS + $2))
  while [[ -e $1 ]]; do
    ((SECONDS >= deadline)) && return 1
    sleep 0.1
  done
}

stopJob() { api POST "/v1/jobs/$1/stop" '{"grace_s":1}' >/dev/null; }

# Under systemd the layout <root>/<instance>/<user>/<job> is jobworker.slice, the instance's
# slice, the user's slice and the job's transient scope, whose delegated `job` leaf holds the job
# and its limits (every job here is the README user's).
readonly JOBS_ROOT=/sys/fs/cgroup/jobworker.slice
jobScope() { echo "jobworker-job-$1.scope"; }
jobScopeDir() { echo "$JOBS_ROOT/$INST.slice/${INST}-$USER_NAME.slice/$(jobScope "$1")"; }
jobDir() { echo "$(jobScopeDir "$1")/job"; }

# Host pids of every process in a job's cgroup subtree (its scope).
jobPids() { find "$(jobScopeDir "$1")" -name cgroup.procs -exec cat {} + 2>/dev/null; }

dumpLogs() {
  journalctl -u jobworkerd --no-pager -o short-monotonic 2>/dev/null | tail -n 60 |
    sed 's/^/JWVM LOG /'
}

# The production TLS files, as the README asks for them: a CA of the test's own and a server
# certificate for 127.0.0.1 signed by it, in /etc/jobworker/server.pem and server.key (0600 root).
makeTls() {
  mkdir -p "$CA_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=jwvm-ca \
    -keyout "$CA_DIR/ca.key" -out "$CA_DIR/ca.pem" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -keyout /etc/jobworker/server.key -out "$CA_DIR/server.csr" 2>/dev/null &&
    openssl x509 -req -in "$CA_DIR/server.csr" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" \
      -CAcreateserial -days 2 -out /etc/jobworker/server.pem \
      -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') \
      2>/dev/null &&
    chmod 0600 /etc/jobworker/server.pem /etc/jobworker/server.key
}

# typeOnTerminal LINE: runs LINE on a terminal (`script` makes one) and types the password at
# each prompt once it is shown (typed ahead, it would be flushed when the prompt turns echo off).
typeOnTerminal() {
  # Bounded: a prompt that never gets its answer must fail the step, not hang the VM.
  coproc TTY { timeout 300 script -qec "$1" /dev/null; }
  local pid=$TTY_PID chunk
  while IFS= read -r -d ':' -t 60 chunk <&"${TTY[0]}"; do
    printf '%s:' "$chunk" >>/run/jwvm-step
    [[ $chunk == *password* ]] && printf '%s\n' "$USER_PASSWORD" >&"${TTY[1]}"
  done
  wait "$pid"
}

# runStep LINE: one README line (as root: `sudo ` dropped). Its `jobworker-admin user add` asks
# for the password on a terminal.
runStep() {
  local line=${1//sudo /}
  : >/run/jwvm-step
  if [[ $line == *"jobworker-admin user add"* ]]; then
    typeOnTerminal "$line"
  else
    bash -c "$line" >/run/jwvm-step 2>&1
  fi
}

# The README's production steps after `meson install`, in order, exactly as written (the TLS
# line is a comment there: the test places its certificate where it says).
checkInstallSteps() {
  # The README's `--run-as alice` names an existing Unix account.
  useradd --create-home --shell /bin/sh "$USER_NAME"
  local line n=0 failed="" t0 t1
  t0=$(now)
  while IFS= read -r line; do
    [[ -z $line ]] && continue
    n=$((n + 1))
    if [[ $line == "# TLS:"* ]]; then
      makeTls || failed+="[TLS] "
      continue
    fi
    say "INFO README step: $line"
    if ! runStep "$line"; then
      failed+="[$line] "
      sed 's/^/JWVM INFO   /' /run/jwvm-step
    fi
  done <"$SHARE/readme-steps"
  t1=$(now)
  check install-steps "$n README steps in $(calc "$t1 - $t0") s; failed: ${failed:-none}" test -z "$failed"
  local frag dropins sum want
  frag=$(systemctl show -p FragmentPath --value jobworkerd)
  dropins=$(systemctl show -p DropInPaths --value jobworkerd)
  sum=$(sha256sum <"$frag" | cut -d' ' -f1)
  want=$(cat "$SHARE/unit.sha256")
  check unit-unmodified "unit $frag as meson installed it (sha256 ${sum:0:12}, want ${want:0:12}), drop-ins: [${dropins}]" \
    test "$sum" = "$want" -a -z "$dropins"
  local verify
  verify=$(systemd-analyze verify jobworkerd.service 2>&1)
  check unit-verify "systemd-analyze verify jobworkerd.service: ${verify:-clean}" test -z "$verify"
  local score
  score=$(systemd-analyze security --no-pager jobworkerd.service 2>/dev/null | tail -n 1)
  say "INFO systemd-analyze security: $score"
  local value
  value=$(sed -n 's/.*: \([0-9.]*\) .*/\1/p' <<<"$score")
  check unit-security "systemd-analyze security jobworkerd: ${value:-?} (below 6)" between "${value:-99}" 0 5.99
}

checkStart() {
  local active restarts
  active=$(systemctl show -p ActiveState --value jobworkerd)
  restarts=$(systemctl show -p NRestarts --value jobworkerd)
  CG=$(systemctl show -p ControlGroup --value jobworkerd)
  if [[ $active != active ]]; then
    ko start "after systemctl enable --now: $active"
    return 1
  fi
  ok start "systemctl enable --now jobworkerd: active (Type=notify: READY=1 once the frontend serves), $restarts restarts"
  say "INFO unit cgroup $CG; $(systemctl show -p Delegate -p DelegateControllers jobworkerd | tr '\n' ' ')"
  local status
  status=$(systemctl show -p StatusText --value jobworkerd)
  check status-text "StatusText \"$status\"" test "$status" = "serving; 0 jobs running"
  local wd
  wd=$(systemctl show -p WatchdogUSec --value jobworkerd)
  check watchdog-armed "WatchdogUSec=$wd" test "$wd" = 30s
  if ! loginAs "$USER_NAME" "$USER_PASSWORD"; then
    ko login "POST /v1/login as $USER_NAME: $HTTP_CODE $BODY $(cat /run/jwvm-curl-err)"
    return 1
  fi
  ok login "$USER_NAME (the README's user) logged in over HTTPS with the production certificate"
}

# loginAs NAME PASSWORD: sets TOKEN; false when refused.
loginAs() {
  TOKEN=
  api POST /v1/login "$(jq -cn --arg u "$1" --arg p "$2" '{username: $u, password: $p}')"
  TOKEN=$(jq -r '.token // empty' <<<"$BODY")
  [[ -n $TOKEN ]]
}

# journalWait SECONDS JOURNALCTL-ARGS... : the matching entries as JSON lines, once there are any.
journalWait() {
  local deadline=$((SECONDS + $1)) out
  shift
  while :; do
    out=$(journalctl --no-pager -o json "$@" 2>/dev/null)
    if [[ -n $out ]] || ((SECONDS >= deadline)); then
      echo "$out"
      return
    fi
    sleep 0.3
  done
}

# The start, stop request and end of the job checkKill stopped, by JOB_ID=, with their fields.
checkJournalJob() {
  local id=$KILLED_JOB entries
  local deadline=$((SECONDS + 15))
  while :; do
    entries=$(journalctl --no-pager -o json -u jobworkerd "JOB_ID=$id" 2>/dev/null)
    [[ $(grep -c . <<<"$entries") -ge 3 ]] || ((SECONDS >= deadline)) && break
    sleep 0.3
  done
  local start stop end
  start=$(jq -c --arg m "$ID_JOB_START" 'select(.MESSAGE_ID == $m)' <<<"$entries")
  stop=$(jq -c --arg m "$ID_JOB_STOP" 'select(.MESSAGE_ID == $m)' <<<"$entries")
  end=$(jq -c --arg m "$ID_JOB_EXIT" 'select(.MESSAGE_ID == $m)' <<<"$entries")
  # Repeated fields (one JOB_ARGV per argument) come out of journalctl -o json as an array.
  local argv want
  argv=$(jq -c '.JOB_ARGV' <<<"$start")
  want=$(jq -c '.command' <<<"$KILLED_SPEC")
  say "INFO journal JOB_ID=$id: start $(jq -c '{JOB_USER, REMOTE_ADDR, JOB_RUN_AS, JOB_ARGV}' <<<"$start"); stop $(jq -c '{JOB_STOPPED_BY, REMOTE_ADDR, JOB_STOP_GRACE_MS}' <<<"$stop"); end $(jq -c '{JOB_STATE, JOB_SIGNAL, JOB_EXIT_CODE, JOB_STOPPED_BY, JOB_OOM_KILLED}' <<<"$end")"
  check journal-job-events "journalctl -u jobworkerd JOB_ID=$id: $(grep -c . <<<"$entries") entries; JOB_ARGV $argv" \
    test "$argv" = "$want" \
    -a "$(jq -r .REMOTE_ADDR <<<"$start")" = 127.0.0.1 \
    -a "$(jq -r .JOB_USER <<<"$start")" = "$USER_NAME" \
    -a "$(jq -r .JOB_STOPPED_BY <<<"$stop")" = "$USER_NAME" \
    -a "$(jq -r .REMOTE_ADDR <<<"$stop")" = 127.0.0.1 \
    -a "$(jq -r .JOB_STATE <<<"$end")" = killed \
    -a "$(jq -r .JOB_OOM_KILLED <<<"$end")" = 0
}

checkJournalFailedLogin() {
  local saved=$TOKEN
  TOKEN=
  api POST /v1/login "$(jq -cn --arg u "$USER_NAME" '{username: $u, password: "not-the-password"}')"
  local code=$HTTP_CODE
  TOKEN=$saved
  local entry
  entry=$(journalWait 15 "MESSAGE_ID=$ID_LOGIN_FAILED" "USER=$USER_NAME" | tail -n 1)
  check journal-failed-login "login with a wrong password: $code; journalctl MESSAGE_ID=$ID_LOGIN_FAILED: $(jq -c '{USER, REMOTE_ADDR, LOGIN_RESULT}' <<<"${entry:-null}" 2>/dev/null)" \
    test "$code" = 401 -a "$(jq -r .REMOTE_ADDR <<<"${entry:-null}")" = 127.0.0.1 \
    -a "$(jq -r .LOGIN_RESULT <<<"${entry:-null}")" = wrong_password
}

# A users-file change (jobworker-admin) applies on `systemctl reload`, not before.
checkReload() {
  local saved=$TOKEN before after="" rc
  printf 'bob-vm-password\n' | jobworker-admin user add --users-file /etc/jobworker/users bob \
    --role viewer --password-stdin >/dev/null
  rc=$?
  loginAs bob bob-vm-password
  before=$HTTP_CODE
  systemctl reload jobworkerd
  local deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)); do
    loginAs bob bob-vm-password && break
    sleep 0.3
  done
  after=$HTTP_CODE
  TOKEN=$saved
  check reload-users "jobworker-admin user add bob: rc $rc; bob's login before reload: $before, after systemctl reload: $after" \
    test "$rc" = 0 -a "$before" = 401 -a "$after" = 201
}

# A restart keeps finished jobs (status and output unchanged) and sessions (the token in use).
checkRestartKeeps() {
  local id before out_before after code out_after
  startJob '{"command":["sh","-c","seq 1 1000; echo done"]}' || return
  id=$JOB
  before=$(waitJob "$id" 30)
  out_before=$(jobOutput "$id" | sha256sum)
  systemctl restart jobworkerd
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    api GET /v1/healthz
    [[ $HTTP_CODE == 200 ]] && break
    sleep 0.2
  done
  api GET "/v1/jobs/$id"
  after=$BODY
  code=$HTTP_CODE
  out_after=$(jobOutput "$id" | sha256sum)
  check restart-keeps-jobs "systemctl restart: job $id answers $code with the old token, status unchanged: $([[ $before == "$after" ]] && echo yes || echo no), output sha256 ${out_before:0:12} -> ${out_after:0:12}" \
    test "$code" = 200 -a "$before" = "$after" -a "$out_before" = "$out_after"
}

# A wedged event loop (SIGSTOP) is restarted by the watchdog. A runtime drop-in shortens
# WatchdogSec= (and the abort's timeout) for the test, and is removed afterwards.
checkWatchdog() {
  local dir=/run/systemd/system/jobworkerd.service.d
  mkdir -p "$dir"
  printf '[Service]\nWatchdogSec=5s\nTimeoutAbortSec=5s\n' >"$dir/jwvm-watchdog.conf"
  systemctl daemon-reload
  systemctl restart jobworkerd
  local before old new="" t0 t1
  before=$(systemctl show -p NRestarts --value jobworkerd)
  old=$(systemctl show -p MainPID --value jobworkerd)
  t0=$(now)
  kill -STOP "$old"
  local deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    new=$(systemctl show -p MainPID --value jobworkerd)
    [[ $new != "$old" && $new != 0 && $(systemctl is-active jobworkerd) == active ]] && break
    sleep 0.5
  done
  t1=$(now)
  local after logged
  after=$(systemctl show -p NRestarts --value jobworkerd)
  logged=$(journalctl --no-pager -o cat -u jobworkerd | grep -m 1 -i 'watchdog timeout')
  check watchdog-restart "SIGSTOP of pid $old under WatchdogSec=5s: new pid $new after $(calc "$t1 - $t0") s, NRestarts $before -> $after, journal: \"$logged\"" \
    test "$new" != "$old" -a "$new" != 0 -a "$after" -gt "$before" -a -n "$logged"
  rm -f "$dir/jwvm-watchdog.conf"
  systemctl daemon-reload
  systemctl restart jobworkerd
  loginAs "$USER_NAME" "$USER_PASSWORD" || say "INFO login after the watchdog test: $HTTP_CODE $BODY"
}

checkHealthz() {
  local h details saved=$TOKEN anonymous
  # Anonymous callers get the state alone; the details need a session.
  TOKEN=
  api GET /v1/healthz
  anonymous=$BODY
  TOKEN=$saved
  check healthz-anonymous "anonymous healthz $HTTP_CODE: $anonymous" \
    test "$HTTP_CODE" = 200 -a "$(jq -c 'keys' <<<"$anonymous")" = '["status"]'
  api GET /v1/healthz
  h=$BODY
  details=$(jq -r '.details | join("; ")' <<<"$h" 2>/dev/null)
  say "INFO healthz $HTTP_CODE: $details"
  check healthz-v2 "healthz 200 with \"cgroups: v2\"" \
    test "$HTTP_CODE" = 200 -a "$(jq '.details | index("cgroups: v2") != null' <<<"$h")" = true
  check healthz-controllers "no \"missing controller\" in healthz details" \
    test -n "$details" -a "${details/missing controller/}" = "$details"
}

# The access log and a refusal, queried by field: the entry of one job's GET (route template,
# job id, user, status), and the audit event of a start over the memory maximum.
checkJournalAccessAndRefusal() {
  local id entry
  startJob '{"command":["true"]}' || true
  id=$JOB
  api GET "/v1/jobs/$id"
  entry=$(journalWait 15 -u jobworkerd "MESSAGE_ID=$ID_ACCESS" "JOB_ID=$id" "ROUTE=/v1/jobs/{id}" | tail -n 1)
  check journal-access "GET /v1/jobs/$id: journalctl MESSAGE_ID=$ID_ACCESS JOB_ID=$id ROUTE=/v1/jobs/{id}: $(jq -c '{USER, METHOD, STATUS, DURATION_MS, BYTES_OUT, REMOTE_ADDR}' <<<"${entry:-null}" 2>/dev/null)" \
    test -n "$id" -a "$(jq -r .USER <<<"${entry:-null}")" = "$USER_NAME" \
    -a "$(jq -r .STATUS <<<"${entry:-null}")" = 200 -a "$(jq -r .METHOD <<<"${entry:-null}")" = GET
  api POST /v1/jobs '{"command":["true"],"limits":{"memory":"1T"}}'
  local code=$HTTP_CODE
  entry=$(journalWait 15 -u jobworkerd "MESSAGE_ID=$ID_REFUSED" "USER=$USER_NAME" "ACTION=job_start" | tail -n 1)
  check journal-refusal "start over the memory maximum (host RAM): $code; journalctl MESSAGE_ID=$ID_REFUSED USER=$USER_NAME ACTION=job_start: $(jq -c '{REFUSAL, REASON, REMOTE_ADDR}' <<<"${entry:-null}" 2>/dev/null)" \
    test "$code" = 403 -a "$(jq -r .REFUSAL <<<"${entry:-null}")" = limit_exceeded
}

# A scraper as operations.md sets it up: a role-metrics account, a token from jobworker-admin,
# /metrics with it (and refused elsewhere), the running job counted.
checkMetrics() {
  local token saved=$TOKEN metrics jobs_code
  printf 'unused-scraper-password\n' | jobworker-admin user add --users-file /etc/jobworker/users \
    prometheus --role metrics --run-as nobody --password-stdin >/dev/null 2>&1
  systemctl reload jobworkerd
  local deadline=$((SECONDS + 15))
  while ((SECONDS < deadline)); do
    token=$(jobworker-admin token create prometheus --expires 1d 2>/dev/null) && break
    sleep 0.3
  done
  TOKEN=$token
  api GET /metrics
  metrics=$BODY
  local code=$HTTP_CODE
  api GET /v1/jobs
  jobs_code=$HTTP_CODE
  TOKEN=$saved
  check metrics-scrape "GET /metrics with a scrape token: $code, $(grep -c '^# TYPE' <<<"$metrics") families; GET /v1/jobs with it: $jobs_code; $(grep -m 1 '^jobworker_jobs_memory_bytes' <<<"$metrics")" \
    test "$code" = 200 -a "$jobs_code" = 403 \
    -a -n "$(grep "^jobworker_job_starts_total{user=\"$USER_NAME\"} [1-9]" <<<"$metrics")" \
    -a -n "$(grep '^jobworker_jobs_memory_bytes ' <<<"$metrics")"
}

# jobworkerd and its frontend are the unit's (no Delegate=, no leaf of their own); jobs are not.
checkPlacement() {
  local main own procs
  main=$(systemctl show -p MainPID --value jobworkerd)
  own=$(sed -n 's/^0:://p' "/proc/$main/cgroup")
  check placement-daemon "jobworkerd (pid $main) in $own, Delegate=$(systemctl show -p Delegate --value jobworkerd)" \
    test "$own" = "$CG"
  procs=$(tr '\n' ' ' <"/sys/fs/cgroup$CG/cgroup.procs")
  local front
  front=$(pgrep -P "$main" -x jobworker-front | head -n 1)
  check placement-frontend "frontend (pid ${front:-none}) in $CG (procs: $procs)" \
    test -n "$front" -a "$(sed -n 's/^0:://p' "/proc/${front:-0}/cgroup" 2>/dev/null)" = "$CG"
}

# The layout <root>/<instance>/<user>/<job> as units: the instance's slice of /var/lib/jobworker
# carries the host-default aggregate caps (systemd writes them from the properties jobworkerd
# set), a running job is in the `job` leaf of its own scope, whose subtree jobworkerd was handed.
checkLayout() {
  INST=$(find "$JOBS_ROOT" -mindepth 1 -maxdepth 1 -type d -name 'jobworker-*.slice' -printf '%f\n' |
    head -n 1)
  INST=${INST%.slice}
  check layout-instance "instance slice of /var/lib/jobworker: ${INST:-none} ($(systemctl is-active "$INST.slice" 2>&1))" \
    grep -qxE 'jobworker-jobworker_[0-9a-f]{8}' <<<"$INST"
  local inst="$JOBS_ROOT/$INST.slice" pid_max want_pids pids cpu mem
  pid_max=$(cat /proc/sys/kernel/pid_max)
  want_pids=$((pid_max - pid_max / 10))
  pids=$(cat "$inst/pids.max" 2>/dev/null)
  cpu=$(cat "$inst/cpu.max" 2>/dev/null)
  mem=$(cat "$inst/memory.max" 2>/dev/null)
  check layout-instance-caps "instance pids.max $pids (want $want_pids), cpu.max \"$cpu\" ($(nproc) cpus), memory.max $mem" \
    test "$pids" = "$want_pids" -a "$cpu" = "$(nproc)00000 100000" -a "${mem:-max}" != max
  local policy
  policy=$(systemctl show -p DevicePolicy --value jobworker.slice)
  check layout-devices "jobworker.slice DevicePolicy=$policy (the jobs' device policy)" test "$policy" = closed
  local id path main
  startJob '{"command":["sleep","600"]}' || {
    ko layout-job "job refused"
    return
  }
  id=$JOB
  for _ in $(seq 50); do
    main=$(jobPids "$id" | head -n 1)
    [[ -n $main ]] && break
    sleep 0.1
  done
  local user_dir="$inst/${INST}-$USER_NAME.slice" want_rel
  want_rel=${JOBS_ROOT#/sys/fs/cgroup}/$INST.slice/${INST}-$USER_NAME.slice/$(jobScope "$id")/job
  path=$(sed -n 's/^0:://p' "/proc/${main:-0}/cgroup" 2>/dev/null)
  check layout-job "job $id (pid ${main:-none}) in $path, user slice pids.max $(cat "$user_dir/pids.max" 2>/dev/null)" \
    test "$path" = "$want_rel" -a "$(cat "$user_dir/pids.max" 2>/dev/null)" = "$want_pids"
  local scope show
  scope=$(jobScope "$id")
  show=$(systemctl show -p ActiveState -p Delegate -p Slice -p ControlGroup "$scope" | sort | tr '\n' ' ')
  check layout-scope "systemctl show $scope: $show" \
    test "$show" = "ActiveState=active ControlGroup=${want_rel%/job} Delegate=yes Slice=${INST}-$USER_NAME.slice "
  local handed
  handed=$(cat "$(jobScopeDir "$id")/cgroup.subtree_control" 2>/dev/null)
  local c all=0
  for c in cpu io memory pids; do [[ " $handed " == *" $c "* ]] || all=1; done
  check placement-controllers "the scope hands [$handed] to its job leaf" test "$all" = 0
  local unit_procs="" p
  while read -r p; do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == jobworker* ]] || unit_procs+="$p "
  done <"/sys/fs/cgroup$CG/cgroup.procs"
  check placement-unit-jobs "no job process in the unit's cgroup $CG (others: [${unit_procs}])" \
    test -z "$unit_procs"
  stopJob "$id"
  waitJob "$id" 30 >/dev/null
}

checkMemory() {
  local id st
  startJob '{"command":["tail","/dev/zero"],"limits":{"memory":"64M"}}' || {
    ko memory-oom "job refused"
    return
  }
  id=$JOB
  st=$(waitJob "$id" 60)
  local state oom signal peak
  state=$(jq -r .state <<<"$st")
  oom=$(jq -r .oom_killed <<<"$st")
  signal=$(jq -r .signal <<<"$st")
  peak=$(jq -r '.usage.memory_peak_bytes // "n/a"' <<<"$st")
  local limit
  limit=$(jq -r .limits.memory <<<"$st")
  check memory-oom "tail /dev/zero under memory 64M: state $state, oom_killed $oom, signal $signal, memory_peak_bytes $peak, limits.memory $limit" \
    test "$state" = killed -a "$oom" = true
  check memory-cgroup-removed "job scope of $id removed" waitGone "$(jobScopeDir "$id")" 5
  check memory-daemon-alive "jobworkerd still active after the job's OOM kill (OOMPolicy=continue)" \
    systemctl is-active --quiet jobworkerd
}

checkCpu() {
  local id
  startJob '{"command":["sh","-c","while :; do :; done"],"limits":{"cpu":0.2}}' || {
    ko cpu-share "job refused"
    return
  }
  id=$JOB
  local max
  max=$(cat "$(jobDir "$id")/cpu.max" 2>/dev/null)
  sleep 1
  local t1 u1 t2 u2
  t1=$(now)
  u1=$(jobStatus "$id" | jq -r '.usage.cpu_seconds // empty')
  sleep 6
  t2=$(now)
  u2=$(jobStatus "$id" | jq -r '.usage.cpu_seconds // empty')
  stopJob "$id"
  local st
  st=$(waitJob "$id" 30)
  if [[ -z $u1 || -z $u2 ]]; then
    ko cpu-share "usage.cpu_seconds missing: $st"
    return
  fi
  local share
  share=$(calc "($u2 - $u1) / ($t2 - $t1)")
  check cpu-share "busy loop under cpu 0.2 (cpu.max \"$max\"): $(calc "$share * 100")% of a core over $(calc "$t2 - $t1") s (band 10-35%)" \
    between "$share" 0.10 0.35
  check cpu-cgroup-removed "job scope of $id removed after stop ($(jq -r .state <<<"$st"))" \
    waitGone "$(jobScopeDir "$id")" 5
}

checkPids() {
  # A bounded fork loop (60 children), not an unbounded bomb: harmless if the limit failed.
  # shellcheck disable=SC2016 # expanded by the job's shell
  local script='(i=0; while [ $i -lt 60 ]; do (echo ok; exec sleep 4) & i=$((i+1)); done); echo loop-ended; sleep 3; echo end'
  local id
  startJob "$(jq -cn --arg s "$script" '{command: ["sh", "-c", $s], limits: {pids: 20}}')" || {
    ko pids-fork-fails "job refused"
    return
  }
  id=$JOB
  waitOutput "$id" loop-ended 20
  api GET /v1/healthz
  local health=$HTTP_CODE
  local other ost
  startJob '{"command":["true"]}'
  other=$JOB
  ost=$(waitJob "$other" 30)
  check pids-daemon-healthy "healthz $health and another job exits $(jq -r .exit_code <<<"$ost") while the job is at its pids limit" \
    test "$health" = 200 -a "$(jq -r .exit_code <<<"$ost")" = 0
  local st out oks peak
  st=$(waitJob "$id" 30)
  out=$(jobOutput "$id")
  oks=$(grep -c '^ok$' <<<"$out")
  peak=$(jq -r '.usage.pids_peak // "n/a"' <<<"$st")
  local failure
  failure=$(grep -i -m 1 'fork\|resource temporarily' <<<"$out")
  check pids-fork-fails "pids 20: $oks of 60 children started, pids_peak $peak, inside the job: \"$failure\"" \
    test -n "$failure" -a "$oks" -ge 1 -a "$oks" -le 20
  check pids-cgroup-removed "job scope of $id removed" waitGone "$(jobScopeDir "$id")" 5
}

KILLED_JOB=
KILLED_SPEC=
checkKill() {
  # The inner shell backgrounds a sleep in a new session and exits: the sleep is orphaned, in no
  # process group of the job. The main shell sleeps too.
  local id
  KILLED_SPEC=$(jq -cn '{command: ["sh", "-c", "setsid sh -c '"'"'sleep 1000 & echo escaped $!'"'"'; echo main $$; sleep 1000"]}')
  startJob "$KILLED_SPEC" || {
    ko kill-setsid "job refused"
    return
  }
  id=$JOB
  KILLED_JOB=$id
  waitOutput "$id" main 10
  local pids="" p deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do
    pids=""
    for p in $(jobPids "$id"); do
      [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") == "sleep 1000 " ]] && pids+="$p "
    done
    [[ $(wc -w <<<"$pids") -ge 2 ]] && break
    sleep 0.2
  done
  local dir
  dir=$(jobScopeDir "$id")
  local before=absent
  [[ -d $dir ]] && before=present
  stopJob "$id"
  local code=$HTTP_CODE st
  st=$(waitJob "$id" 30)
  local alive="" deadline2=$((SECONDS + 5))
  while :; do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive+="$p "; done
    [[ -z $alive ]] || ((SECONDS >= deadline2)) && break
    sleep 0.1
  done
  check kill-setsid "stop ($code) of a job with a setsid'd, double-forked sleep: state $(jq -r .state <<<"$st"), sleep pids [$pids] before, alive after: [${alive}]" \
    test "$code" = 202 -a "$(wc -w <<<"$pids")" -ge 2 -a -z "$alive" -a "$(jq -r .state <<<"$st")" = killed
  check kill-cgroup-removed "job scope $dir ($before while running) removed after the stop" \
    test "$before" = present -a "$(waitGone "$dir" 5 && echo gone)" = gone
  for p in $alive; do kill -9 "$p"; done
}

# 4 MiB at 1 MiB/s: about 3 to 4 s (the throttle lets the first slice through); the unlimited
# copy must be fast enough for that to mean something.
ioBand() {
  [[ -n $1 && -n $2 ]] && between "$1" 0 1.5 && between "$2" 2 10
}

# Seconds dd reported for its copy, from its last line ("... copied, 3.99 s, 1.0 MB/s").
ddSeconds() { sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p' | tail -n 1; }

checkIo() {
  mkdir -p "$IO_DIR" && chmod 1777 "$IO_DIR"
  local dd='dd if=/dev/zero of=f bs=1M count=4 oflag=direct 2>&1; rm -f f'
  local job
  job=$(jq -cn --arg s "$dd" --arg d "$IO_DIR" '{command: ["sh", "-c", $s], cwd: $d}')
  local id st base lim
  startJob "$job" || {
    ko io-write-bps "baseline job refused"
    return
  }
  id=$JOB
  st=$(waitJob "$id" 60)
  base=$(jobOutput "$id" | ddSeconds)
  local limited
  limited=$(jq -c '. + {limits: {io: [{device: "/dev/vda", write_bps: "1M"}]}}' <<<"$job")
  startJob "$limited" || {
    ko io-write-bps "limited job refused"
    return
  }
  id=$JOB
  local io_max
  io_max=$(cat "$(jobDir "$id")/io.max" 2>/dev/null)
  st=$(waitJob "$id" 60)
  local out
  out=$(jobOutput "$id")
  lim=$(ddSeconds <<<"$out")
  check io-write-bps "4 MiB dd oflag=direct on /dev/vda: ${base:-?} s unlimited, ${lim:-?} s under write_bps 1M (io.max \"$io_max\"; band 2-10 s), io_write_bytes $(jq -r '.usage.io_write_bytes // "n/a"' <<<"$st")" \
    ioBand "$base" "$lim"
  [[ -z $lim ]] && say "INFO limited dd output: $out"
}

checkNoLeftovers() {
  local left units
  left=$(find "$JOBS_ROOT" -type d -name 'jobworker-job-*.scope' -printf '%P ')
  units=$(systemctl list-units --all --plain --no-legend 'jobworker-job-*' | awk '{ printf "%s ", $1 }')
  check no-leftovers "no job scope left in jobworker.slice (${left:-empty}), none loaded (${units:-none})" \
    test -z "$left" -a -z "$units"
}

# SIGKILL of jobworkerd: its running job lives in its own scope, so the crash leaves it running
# and the restart does not fail on it (219/CGROUP when jobs were in the unit's cgroup). The new
# jobworkerd takes the job over (its journal says so) and serves it as running.
checkCrash() {
  local id scope pids
  # Its processes (shim, shell, sleep) are all long-lived: each one must outlive the crash.
  startJob '{"command":["sh","-c","echo tick; sleep 600"]}' || {
    ko crash-job-survives "job refused"
    return
  }
  id=$JOB
  scope=$(jobScope "$id")
  waitOutput "$id" tick 10
  pids=$(jobPids "$id" | tr '\n' ' ')
  local old before t0
  old=$(systemctl show -p MainPID --value jobworkerd)
  before=$(systemctl show -p NRestarts --value jobworkerd)
  t0=$(date '+%Y-%m-%d %H:%M:%S')
  kill -9 "$old"
  # Within RestartSec=2s: the daemon is gone, its frontend killed with its unit, the job not.
  local deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)) && kill -0 "$old" 2>/dev/null; do sleep 0.1; done
  sleep 0.5
  local alive="" p state
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive+="$p "; done
  state=$(systemctl show -p ActiveState -p SubState --value jobworkerd | tr '\n' '/')
  check crash-job-survives "kill -9 of jobworkerd $old (unit $state): job pids [$pids], alive: [$alive], $scope $(systemctl is-active "$scope")" \
    test -n "$pids" -a "$alive" = "$pids" -a "$(systemctl is-active "$scope")" = active
  local new="" deadline2=$((SECONDS + 60))
  while ((SECONDS < deadline2)); do
    new=$(systemctl show -p MainPID --value jobworkerd)
    [[ $new != "$old" && $new != 0 && $(systemctl is-active jobworkerd) == active ]] && break
    sleep 0.3
  done
  local after cgroup_errors
  after=$(systemctl show -p NRestarts --value jobworkerd)
  cgroup_errors=$(journalctl --no-pager -o cat -u jobworkerd --since "$t0" | grep -c '219/CGROUP\|step CGROUP')
  check crash-restart "restarted: pid $old -> $new, NRestarts $before -> $after, $cgroup_errors 219/CGROUP errors" \
    test "$new" != "$old" -a "$new" != 0 -a "$after" -gt "$before" -a "$cgroup_errors" = 0
  loginAs "$USER_NAME" "$USER_PASSWORD" || true
  local outcome="" logged="" deadline3=$((SECONDS + 30))
  while ((SECONDS < deadline3)); do
    logged=$(journalctl --no-pager -o cat -u jobworkerd --since "$t0" | grep -m 1 "job $id of .* taken over")
    if [[ -n $logged ]] && api GET "/v1/jobs/$id" && [[ $(jq -r .state <<<"$BODY" 2>/dev/null) == running ]]; then
      outcome="taken over, running, scope $(systemctl is-active "$scope")"
      break
    fi
    sleep 0.3
  done
  check crash-job-adopted "after the restart, job $id: ${outcome:-not taken over (journal: \"$logged\", state $(jq -r .state <<<"$BODY" 2>/dev/null))}" \
    test -n "$outcome"
  stopJob "$id"
  local st
  st=$(waitJob "$id" 30)
  check crash-adopted-stop "the taken-over job stops: $(jq -c '{state, stopped_by, signal}' <<<"$st" 2>/dev/null)" \
    test "$(jq -r .state <<<"$st" 2>/dev/null)" != running -a "$(jq -r .stopped_by <<<"$st" 2>/dev/null)" = "$USER_NAME"
}

# waitServing SECONDS: true once the unit is active under a new main PID (other than $1) and
# healthz answers 200.
waitServing() {
  local old=$1 deadline=$((SECONDS + $2)) pid
  while ((SECONDS < deadline)); do
    pid=$(systemctl show -p MainPID --value jobworkerd)
    if [[ $pid != 0 && $pid != "$old" && $(systemctl is-active jobworkerd) == active ]]; then
      api GET /v1/healthz
      [[ $HTTP_CODE == 200 ]] && return 0
    fi
    sleep 0.3
  done
  return 1
}

# A job that counts 0..N-1, one line every 20 ms, then exits 7: its whole output is known.
readonly COUNTER_JOB='{"command":["sh","-c","i=0; while [ $i -lt 400 ]; do echo $i; i=$((i+1)); sleep 0.02; done; exit 7"]}'
counterExact() { [[ $(jobOutput "$1") == "$(seq 0 399)" ]]; }

# kill -9 of the main process: systemd restarts the unit (the job's scope is outside it), the new
# jobworkerd re-adopts the running job, which ends with its real exit code and every line once.
checkCrashSurvives() {
  startJob "$COUNTER_JOB" || return
  local id=$JOB old before
  waitOutput "$id" 20 30
  old=$(systemctl show -p MainPID --value jobworkerd)
  before=$(systemctl show -p NRestarts --value jobworkerd)
  kill -9 "$old"
  local t0 t1 served=no
  t0=$(now)
  waitServing "$old" 60 && served=yes
  t1=$(now)
  local st after exact=no
  st=$(waitJob "$id" 90)
  after=$(systemctl show -p NRestarts --value jobworkerd)
  counterExact "$id" && exact=yes
  check crash-output-exact "kill -9 of $old: serving again ($served) after $(calc "$t1 - $t0") s, NRestarts $before -> $after; job $id $(jq -c '{state, exit_code, error}' <<<"$st" 2>/dev/null), output exact: $exact" \
    test "$served" = yes -a "$after" -gt "$before" -a "$(jq -r .exit_code <<<"$st" 2>/dev/null)" = 7 -a "$exact" = yes
}

# jobworker-admin upgrade: the same main PID (systemd sees no restart), the running job goes on
# and ends with its real exit code and every line once.
checkUpgrade() {
  startJob "$COUNTER_JOB" || return
  local id=$JOB pid before out rc
  waitOutput "$id" 20 30
  pid=$(systemctl show -p MainPID --value jobworkerd)
  before=$(systemctl show -p NRestarts --value jobworkerd)
  out=$(jobworker-admin upgrade 2>&1)
  rc=$?
  local deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    api GET /v1/healthz
    [[ $HTTP_CODE == 200 ]] && break
    sleep 0.3
  done
  local st after now_pid exact=no
  st=$(waitJob "$id" 90)
  now_pid=$(systemctl show -p MainPID --value jobworkerd)
  after=$(systemctl show -p NRestarts --value jobworkerd)
  counterExact "$id" && exact=yes
  check upgrade-keeps-job "jobworker-admin upgrade: rc $rc (\"$(head -c 200 <<<"$out")\"), main pid $pid -> $now_pid, NRestarts $before -> $after; job $id $(jq -c '{state, exit_code}' <<<"$st" 2>/dev/null), output exact: $exact" \
    test "$rc" = 0 -a "$pid" = "$now_pid" -a "$before" = "$after" -a "$(jq -r .exit_code <<<"$st" 2>/dev/null)" = 7 -a "$exact" = yes
}

checkStop() {
  # A job still running at shutdown is stopped by jobworkerd itself.
  local id
  startJob '{"command":["sleep","1000"]}'
  id=$JOB
  local pids
  sleep 0.5
  pids=$(jobPids "$id" | tr '\n' ' ')
  local t0 t1 rc
  t0=$(now)
  systemctl stop jobworkerd
  rc=$?
  t1=$(now)
  local result active
  result=$(systemctl show -p Result --value jobworkerd)
  active=$(systemctl show -p ActiveState --value jobworkerd)
  local alive="" p
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive+="$p "; done
  check stop "systemctl stop jobworkerd: rc $rc in $(calc "$t1 - $t0") s, $active, Result=$result, job pids [$pids] alive after: [$alive]" \
    test "$rc" = 0 -a "$result" = success -a "$active" = inactive -a -z "$alive" -a -n "$pids"
  # jobworkerd stopped the job itself (KillMode=mixed: SIGTERM went to it alone).
  local logged="" deadline=$((SECONDS + 3))
  while [[ -z $logged ]] && ((SECONDS < deadline)); do
    logged=$(journalctl -u jobworkerd --no-pager -o cat | grep -m 1 "job $id .*stopped by shutdown")
    [[ -z $logged ]] && sleep 0.2
  done
  check stop-jobs-by-daemon "journal: \"${logged:-no shutdown stop of job $id}\"" test -n "$logged"
  local units
  units=$(systemctl list-units --all --plain --no-legend 'jobworker-*' | awk '{ printf "%s ", $1 }')
  check stop-cgroup-removed "unit cgroup $CG and the job's scope removed, no jobworkerd process left, jobworker units loaded: [${units}]" \
    test ! -e "/sys/fs/cgroup$CG" -a ! -e "$(jobScopeDir "$id")" -a -z "$(pgrep -x jobworkerd)" \
    -a -z "$(grep 'jobworker-job-' <<<"$units")"
}

main() {
  say "BEGIN kernel $(uname -r), $(systemctl --version | head -n 1), $(nproc) cpus"
  local fs
  fs=$(stat -f -c %T /sys/fs/cgroup)
  check cgroup2-host "/sys/fs/cgroup is $fs, root controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)" \
    test "$fs" = cgroup2fs
  checkInstallSteps
  if checkStart; then
    checkHealthz
    checkPlacement
    checkLayout
    checkMemory
    checkCpu
    checkPids
    checkKill
    checkIo
    checkNoLeftovers
    checkJournalJob
    checkJournalFailedLogin
    checkJournalAccessAndRefusal
    checkMetrics
    checkReload
    checkRestartKeeps
    checkWatchdog
    checkCrash
    checkCrashSurvives
    checkUpgrade
    ((fail > 0)) && dumpLogs
    checkStop
  else
    dumpLogs
  fi
  say "SUMMARY pass=$pass fail=$fail"
  say DONE
}

main
