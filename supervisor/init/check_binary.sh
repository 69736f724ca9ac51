#!/bin/sh
# What docs/threat-model.md promises of the jobworker-init binary that start.cc runs without a C
# library (x86-64): position-independent, so the kernel loads it at a random address; static, no
# interpreter; a RELRO segment; a stack and segments never both writable and executable; only the
# R_X86_64_RELATIVE relocations start.cc applies. Usage: check_binary.sh READELF BINARY
set -eu
readelf=$1
bin=$2
fail() {
  echo "$bin: $*" >&2
  exit 1
}
"$readelf" -hW "$bin" | grep -Eq 'Type:[[:space:]]+DYN' || fail "not position-independent"
segments=$("$readelf" -lW "$bin")
printf '%s\n' "$segments" | grep -q 'INTERP' && fail "has a program interpreter"
printf '%s\n' "$segments" | grep -q 'GNU_RELRO' || fail "has no RELRO segment"
printf '%s\n' "$segments" | grep -Eq 'GNU_STACK .* RW +0x' || fail "stack not RW-only"
printf '%s\n' "$segments" | grep -Eq 'LOAD .* RWE +0x' && fail "a segment is writable and executable"
others=$("$readelf" -rW "$bin" | grep -oE 'R_X86_64_[A-Z0-9_]+' | grep -v '^R_X86_64_RELATIVE$' |
  sort -u | tr '\n' ' ' || true)
[ -z "$others" ] || fail "relocations start.cc cannot apply: $others"
echo "$bin: static-pie, RELRO, W^X, relative relocations only"
