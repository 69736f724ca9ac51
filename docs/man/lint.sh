#!/bin/sh
# The manual pages given as arguments must lint clean: no message from mandoc -Tlint (but the
# cross-references to each other, which mandoc looks up among installed pages only) and nothing
# on stderr from groff -ww -z.
set -eu
status=0
for page in "$@"; do
  out=$(mandoc -Tlint "$page" 2>&1 | grep -v -E \
    'STYLE: referenced manual not found: Xr (jobworker|jobworkerd|jobworkerd\.conf|jobworker-admin) [158]' || true)
  if [ -n "$out" ]; then
    printf '%s\n' "$out"
    status=1
  fi
  err=$(groff -ww -z -mandoc "$page" 2>&1 >/dev/null)
  if [ -n "$err" ]; then
    printf 'groff %s: %s\n' "$page" "$err"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "man pages lint clean: $*"
exit "$status"
