#!/usr/bin/env bash
# Side by side with the predecessor, in one run on one machine: agentguard (this workspace) vs agentguard-hitl 0.2.0
# (Python, from PyPI). Prints one table: ours, theirs, the ratio, and our targets.
#
#   bash bench/peer/run.sh                 # everything (about 6 minutes on 2 cores)
#   PEER_PARK_N=600 bash bench/peer/run.sh # more parked Python approvals (each batch of 6 waits 0.5 s)
#   SCALE_SECTIONS="park cycles" bash bench/peer/run.sh   # only some scale sections
#   SCALE_ARGS="--no-postgres" bash bench/peer/run.sh     # extra options for the scale program
#   PEER_SPLICE=1 bash bench/peer/run.sh   # also write the table into BENCHMARKS.md (between its table markers)
#
# Needs: cargo, python3 (with venv), network access to PyPI for the first run. PostgreSQL is optional (the scale
# program says "skipped" without it). Results go to target/peer/ (JSON) and the terminal.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}" # where cargo puts the binaries and criterion its estimates
OUT="$ROOT/target/peer"
VENV="$ROOT/target/peer-venv"
mkdir -p "$OUT"

echo "== Python venv with agentguard-hitl 0.2.0 ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "agentguard-hitl==0.2.0"
"$VENV/bin/python" -c "import agentguard, sys; print('agentguard-hitl', 'on Python', sys.version.split()[0])"

echo "== building our benches and the scale program (release; both in bench/, package agentguard-bench)"
# Only the measurement package: `--workspace` would unify features across every member and build a second copy of
# the dependency tree that the `-p agentguard-bench` runs below do not use.
cargo bench -p agentguard-bench --no-run --quiet
# The bench profile (release settings; its output also goes to target/release) so that the dependencies built for the
# benches are reused rather than built a second time.
# The scale program on mimalloc too, for the million-call park on a production allocator (kept beside the run's
# figures; the build after it puts the system allocator's back, relinking only the bench package).
cargo build --profile bench -p agentguard-bench --features mimalloc --bin scale --quiet
mkdir -p "$OUT"
cp "$TARGET/release/scale" "$OUT/scale-mimalloc"
cargo build --profile bench -p agentguard-bench --bin scale --quiet

# Compiles and test runs (ours or anyone's on this machine) skew timings: wait until, for three 5 s windows in a row,
# no rustc runs and the CPUs are at least 85% idle (from /proc/stat). Gives up waiting after 5 minutes; the load
# average is recorded next to the figures either way. PEER_QUIET_WAIT_S changes the 5 minutes.
cpu_idle_total() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat; }
quiet_machine() {
  local quiet=0 waited=0 i0 t0 i1 t1
  while [ "$quiet" -lt 3 ] && [ "$waited" -lt "${PEER_QUIET_WAIT_S:-300}" ]; do
    read -r i0 t0 < <(cpu_idle_total)
    sleep 5
    read -r i1 t1 < <(cpu_idle_total)
    waited=$((waited + 5))
    if pgrep -x rustc >/dev/null 2>&1 || [ $(((i1 - i0) * 100)) -lt $(((t1 - t0) * 85)) ]; then
      quiet=0
    else
      quiet=$((quiet + 1))
    fi
  done
  [ "$quiet" -ge 3 ] || echo "(machine still busy after ${PEER_QUIET_WAIT_S:-300} s; going on: see the load averages)"
}

# On a virtual machine the host can take CPU time from us ("steal" in /proc/stat), which no load average shows: each
# step records the share of CPU time stolen since the previous step.
steal_mark() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat > "$OUT/.steal"; }
steal_since() {
  local s0 t0 s1 t1
  read -r s0 t0 < "$OUT/.steal"
  read -r s1 t1 < <(awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat)
  awk -v ds=$((s1 - s0)) -v dt=$((t1 - t0)) 'BEGIN { printf "cpu time stolen by the host: %.1f%%", (dt > 0 ? 100 * ds / dt : 0) }'
  steal_mark
}

echo "== waiting for a quiet machine (no rustc and CPUs at least 85% idle, for 15 s)"
quiet_machine
steal_mark
{
  echo "cores: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "rustc: $(rustc --version)"
  echo "python: $("$VENV/bin/python" --version 2>&1)"
  echo "loadavg before: $(cat /proc/loadavg)"
  echo "date: $(date -u +%FT%TZ)"
} | tee "$OUT/machine.txt"

echo "== ours: criterion benches"
cargo bench --quiet -p agentguard-bench --bench classify --bench execute --bench gate --bench tool_parse --bench resolve_latency \
  2>&1 | tee "$OUT/criterion.txt" | grep -E "^[a-z_]+/|time:|resolve_latency:|chain" || true
echo "loadavg after criterion: $(cat /proc/loadavg); $(steal_since)" | tee -a "$OUT/machine.txt"

echo "== ours: scale program, one process per section (so each starts from a fresh heap)"
rm -f "$OUT"/scale-*.json
for section in ${SCALE_SECTIONS:-park park-task park-million park-million-mimalloc cycles wake audit stall crash}; do
  quiet_machine
  steal_mark
  # park-million-mimalloc: the section park-million of the mimalloc build.
  bin="$TARGET/release/scale" arg="$section"
  if [ "$section" = park-million-mimalloc ]; then bin="$OUT/scale-mimalloc" arg=park-million; fi
  # shellcheck disable=SC2086  # SCALE_ARGS is a list of words on purpose
  "$bin" "$arg" ${SCALE_ARGS:-} --json "$OUT/scale-$section.json" | tee "$OUT/scale-$section.txt"
  echo "loadavg after scale $section: $(cat /proc/loadavg); $(steal_since)" | tee -a "$OUT/machine.txt"
done

echo "== theirs: agentguard-hitl 0.2.0"
quiet_machine
steal_mark
"$VENV/bin/python" bench/peer/peer.py "$OUT/python.json" "${PEER_PARK_N:-300}"
echo "loadavg after python: $(cat /proc/loadavg); $(steal_since)" | tee -a "$OUT/machine.txt"

echo
# PEER_SPLICE=1: also replace the table in BENCHMARKS.md (between its table markers) with this run's.
if [ "${PEER_SPLICE:-0}" = 1 ]; then
  "$VENV/bin/python" bench/peer/table.py "$TARGET/criterion" "$OUT" --splice BENCHMARKS.md | tee "$OUT/table.md"
else
  "$VENV/bin/python" bench/peer/table.py "$TARGET/criterion" "$OUT" | tee "$OUT/table.md"
fi
