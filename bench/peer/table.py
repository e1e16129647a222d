"""Prints the side-by-side table (Markdown) from criterion's medians, the scale program's JSON and the Python JSON.

Usage: table.py CRITERION_DIR OUT_DIR   (OUT_DIR holds scale-*.json, python.json, criterion.txt, machine.txt)
Every figure is read from files the run just wrote; a missing one prints as "-".
"""

import json
import os
import re
import sys

CRIT, OUT = sys.argv[1], sys.argv[2]


def load(name):
    try:
        with open(os.path.join(OUT, name), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


PY = load("python.json")
SCALE = {}
for name in sorted(os.listdir(OUT)) if os.path.isdir(OUT) else []:
    if name.startswith("scale-") and name.endswith(".json"):
        SCALE.update(load(name))


def median_ns(bench):
    """Criterion's median (ns) for `group/function`, or None."""
    try:
        with open(os.path.join(CRIT, bench, "new", "estimates.json"), encoding="utf-8") as fh:
            return json.load(fh)["median"]["point_estimate"]
    except (OSError, ValueError, KeyError):
        return None


def resolve_percentiles():
    try:
        with open(os.path.join(OUT, "criterion.txt"), encoding="utf-8") as fh:
            m = re.search(r"resolve_latency: p50 ([\d.]+) us, p99 ([\d.]+) us", fh.read())
            return (float(m.group(1)), float(m.group(2))) if m else (None, None)
    except OSError:
        return (None, None)


def t(ns):
    """A duration given in ns, in a readable unit."""
    if ns is None:
        return "-"
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def ratio(ours, theirs, higher_is_better=False):
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return "-"
    r = ours / theirs if higher_is_better else theirs / ours
    return f"{r:,.1f}× better" if r >= 1 else f"{1 / r:,.1f}× worse"


def verdict(value, limit):
    if value is None:
        return "-"
    return "met" if value <= limit else "**missed**"


def s(key):
    return SCALE.get(key)


def ms_ns(v):
    return None if v is None else v * 1e6


rows = []
c = median_ns("classify/per_name_mixed_368")
rows.append(("classify, per name (368 real names)", t(c), t(PY.get("classify_ns")), ratio(c, PY.get("classify_ns")),
             "≤ 200 ns", verdict(c, 200)))
base = median_ns("execute/direct_executor_baseline")
safe = median_ns("execute/safe_no_audit")
rows.append(("execute, safe tool, no audit", t(safe), t(PY.get("execute_safe_ns")),
             ratio(safe, PY.get("execute_safe_ns")), "≤ 100 ns", verdict(safe, 100)))
rows.append(("  same executor called directly (the floor: building and dropping the call's data)", t(base), "-", "-", "",
             ""))
nul = median_ns("execute/safe_no_audit_null_params")
rows.append(("  safe tool, no audit, params that own no memory", t(nul), "-", "-", "≤ 100 ns", verdict(nul, 100)))
sa = median_ns("execute/safe_audit_chained_file")
rows.append(("execute, safe tool, chained audit file", t(sa), "n/a: no line for safe calls", "-", "≤ 2 µs",
             verdict(sa, 2000)))
g = median_ns("execute/gated_auto_approved_audit_chained_file")
rows.append(("execute, gated, auto-approved callback, audited", t(g), t(PY.get("execute_gated_ns")) + " (unchained log)",
             ratio(g, PY.get("execute_gated_ns")), "≤ 5 µs", verdict(g, 5000)))
gd = median_ns("gate/direct_body")
gw = median_ns("gate/wrapper_auto_approved_no_audit")
gwa = median_ns("gate/wrapper_auto_approved_audit_chained_file")
rows.append(("#[gate] wrapper, auto-approved, no audit", t(gw), "-", "-", "", ""))
rows.append(("#[gate] wrapper, auto-approved, audited", t(gwa), t(PY.get("gate_wrapper_ns")) + " (@guard.gate, logs)",
             ratio(gwa, PY.get("gate_wrapper_ns")), "", ""))
rows.append(("  same body called directly", t(gd), t(PY.get("gate_direct_ns")), ratio(gd, PY.get("gate_direct_ns")), "", ""))
p50, p99 = resolve_percentiles()
rows.append(("in-process resolve → executor running, p50", t(None if p50 is None else p50 * 1e3),
             t(None if PY.get("resolve_p50_us") is None else PY["resolve_p50_us"] * 1e3),
             ratio(p50, PY.get("resolve_p50_us")), "", ""))
rows.append(("in-process resolve → executor running, p99", t(None if p99 is None else p99 * 1e3),
             t(None if PY.get("resolve_p99_us") is None else PY["resolve_p99_us"] * 1e3),
             ratio(p99, PY.get("resolve_p99_us")), "", ""))
tp = median_ns("tool_parse/from_arguments_text")
rows.append(("derive(Tool) parse of an LLM call (JSON text)", t(tp), "n/a: no typed tools", "-", "", ""))

pn, ppn = s("park.n"), PY.get("park_n")
rows.append((f"parked approvals, timeout 0.5 s: how many", f"{pn or '-':,}" if pn else "-", f"{ppn:,}" if ppn else "-",
             "", "100,000", ""))
rows.append(("  last call parked, after the first call", t(ms_ns(s("park.last_parked_ms"))), "-", "-", "", ""))
all_ours = s("park.all_failed_closed_ms")
all_theirs = PY.get("park_all_failed_closed_s")
rows.append(("  all failed closed, after the first call", t(ms_ns(all_ours)), t(None if all_theirs is None else all_theirs * 1e9),
             "-", "", ""))
late_ours = s("park.lateness_p99_ms")
late_max = s("park.lateness_max_ms")
late_theirs = PY.get("park_lateness_p99_s")
rows.append(("  p99 lateness past each call's own deadline", t(ms_ns(late_ours)),
             t(None if late_theirs is None else late_theirs * 1e9), ratio(late_ours, None if late_theirs is None else late_theirs * 1e3),
             "all by 0.55 s", "-" if late_max is None else ("met" if late_max <= 50 else "**missed**")))
bpp = s("park.bytes_per_parked")
pbpp = PY.get("park_bytes_per_parked")
rows.append(("  RSS per parked approval", "-" if bpp is None else f"{bpp:,.0f} B",
             "-" if pbpp is None else f"{pbpp:,.0f} B", ratio(bpp, pbpp), "≤ 2 KiB",
             "-" if bpp is None else ("met" if bpp <= 2048 else "**missed**")))
hpp = s("park.heap_bytes_per_parked")
rows.append(("  live heap per parked approval", "-" if hpp is None else f"{hpp:,.0f} B", "-", "-", "≤ 2 KiB",
             "-" if hpp is None else ("met" if hpp <= 2048 else "**missed**")))
bl = s("park.blocking_max_ms")
th = PY.get("park_to_thread_s")
rows.append(("  unrelated blocking call while parked (max)", t(ms_ns(bl)), t(None if th is None else th * 1e9) + " (to_thread)",
             ratio(bl, None if th is None else th * 1e3), "< 10 ms", "-" if bl is None else ("met" if bl < 10 else "**missed**")))
drift = s("cycles.rss_end_vs_middle_pct")
rows.append(("1M park/resolve cycles: RSS end vs middle", "-" if drift is None else f"{drift:+.1f}%", "n/a", "-", "within 5%",
             "-" if drift is None else ("met" if abs(drift) <= 5 else "**missed**")))
for key, label, limit in (("postgres_notify", "PostgreSQL NOTIFY", 20), ("sqlite", "SQLite", 100),
                          ("postgres_killed", "PostgreSQL, LISTEN killed (1 s polling)", None)):
    p50v, v = s(f"wake.{key}.p50_ms"), s(f"wake.{key}.p99_ms")
    skipped = s(f"wake.{key}.skipped")
    shown = "skipped" if skipped else f"{t(ms_ns(p50v))} / {t(ms_ns(v))}"
    rows.append((f"cross-process resolve → wake p50 / p99, {label}", shown, "n/a: one process only", "-",
                 "" if limit is None else f"p99 < {limit} ms",
                 "" if limit is None or v is None else ("met" if v < limit else "**missed**")))
for key, label, pykey in (("one_writer", "1 writer", "audit_one_writer_per_s"),
                          ("eight_threads_one_sink", "8 threads", "audit_eight_threads_per_s"),
                          ("eight_sinks_one_file", "8 sinks on one file (as 8 processes)", None)):
    v = s(f"audit.{key}.records_per_s")
    theirs = PY.get(pykey) if pykey else None
    rows.append((f"audit append, {label}", "-" if v is None else f"{v:,.0f}/s",
                 "-" if theirs is None else f"{theirs:,.0f}/s (unchained)", ratio(v, theirs, higher_is_better=True), "", ""))

print("| workload | agentguard (Rust) | agentguard-hitl 0.2.0 | ours vs theirs | target | |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")
try:
    with open(os.path.join(OUT, "machine.txt"), encoding="utf-8") as fh:
        print()
        for line in fh:
            print("    " + line.rstrip())
except OSError:
    pass
