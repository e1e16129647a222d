"""Prints the side-by-side table (Markdown) from criterion's medians, the scale program's JSON and the Python JSON.

Usage: table.py CRITERION_DIR OUT_DIR [--splice BENCHMARKS.md]
(OUT_DIR holds scale-*.json, python.json, criterion.txt, machine.txt)
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
rows.append(("execute, safe tool, chained audit file (line rides the next batch)", t(sa), "n/a: no line for safe calls",
             "-", "≤ 1.5 µs", verdict(sa, 1500)))
rows.append(("  the same against their safe call, which writes no line", t(sa), t(PY.get("execute_safe_ns")),
             ratio(sa, PY.get("execute_safe_ns")), "", ""))
g = median_ns("execute/gated_auto_approved_audit_chained_file")
rows.append(("execute, gated, auto-approved callback, audited", t(g), t(PY.get("execute_gated_ns")) + " (unchained log)",
             ratio(g, PY.get("execute_gated_ns")), "≤ 3 µs", verdict(g, 3000)))
gf = median_ns("execute/gated_auto_approved_audit_fsync_per_batch")
rows.append(("  the same with `Fsync::PerBatch` (waits for fdatasync)", t(gf), "-", "-", "", ""))
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
             "-" if pbpp is None else f"{pbpp:,.0f} B", ratio(bpp, pbpp), "≤ 1 KiB",
             "-" if bpp is None else ("met" if bpp <= 1024 else "**missed**")))
tpp = s("park_task.bytes_per_parked")
rows.append(("  the same, the calls spawned by a task (`park-task`)", "-" if tpp is None else f"{tpp:,.0f} B", "-", "-",
             "≤ 1 KiB", "-" if tpp is None else ("met" if tpp <= 1024 else "**missed**")))
for key, label in (("park_million", "a million parked, timeout 10 s"),
                   ("park_million_mimalloc", "a million parked, timeout 10 s, on mimalloc")):
    mb, mh, ml = s(f"{key}.bytes_per_parked"), s(f"{key}.heap_bytes_per_parked"), s(f"{key}.lateness_max_ms")
    rows.append((f"  {label}: RSS (live heap) per parked approval",
                 "-" if mb is None else f"{mb:,.0f} B ({mh:,.0f} B)", "-", "-", "≤ 1 KiB",
                 "-" if mb is None else ("met" if mb <= 1024 else "**missed**")))
    rows.append((f"  {label}: latest past its own deadline", t(ms_ns(ml)), "-", "-", "within 50 ms",
                 "-" if ml is None else ("met" if ml <= 50 else "**missed**")))
hpp = s("park.heap_bytes_per_parked")
rows.append(("  live heap per parked approval", "-" if hpp is None else f"{hpp:,.0f} B", "-", "-", "≤ 1 KiB",
             "-" if hpp is None else ("met" if hpp <= 1024 else "**missed**")))
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
for key, label, pykey, target in (
        ("one_writer", "1 writer, waiting for each line (gated)", "audit_one_writer_per_s", None),
        ("eight_threads_one_sink", "8 threads, waiting for each line (gated)", "audit_eight_threads_per_s", None),
        ("one_writer_deferred", "1 writer, lines queued (safe calls)", "audit_one_writer_per_s", None),
        ("eight_threads_deferred", "8 threads, lines queued (safe calls)", "audit_eight_threads_per_s", 1_000_000),
        ("eight_sinks_one_file", "8 sinks on one file (as 8 processes)", None, None)):
    v = s(f"audit.{key}.records_per_s")
    ok = s(f"audit.{key}.chain_ok")
    theirs = PY.get(pykey) if pykey else None
    rows.append((f"audit append, {label}", "-" if v is None else f"{v:,.0f}/s" + ("" if ok else " (CHAIN NOT OK)"),
                 "-" if theirs is None else f"{theirs:,.0f}/s (unchained)", ratio(v, theirs, higher_is_better=True),
                 "" if target is None else f"≥ {target:,}/s",
                 "" if target is None or v is None else ("met" if v >= target and ok else "**missed**")))
sm = s("stall.method")
if sm is not None:
    for key, label in (("sleeper_late", "a task sleeping 1 ms: lateness"), ("spawn_delay", "a task spawned from outside: start delay")):
        p99v, mx = s(f"stall.{key}_p99_ms"), s(f"stall.{key}_max_ms")
        # The same load without stalls (the control): what the stalls add is the difference. Met when the p99 is
        # under 5 ms and the maximum is under the control's maximum + 5 ms. A run without the control phase (an older
        # scale program) is judged on its maximum alone.
        cp99, cmx = s(f"stall.control.{key}_p99_ms"), s(f"stall.control.{key}_max_ms")
        if cmx is None:
            ours, target = f"{t(ms_ns(p99v))} / {t(ms_ns(mx))}", "< 5 ms"
            verdict = "-" if mx is None else ("met" if mx < 5 else "**missed**")
        else:
            ours = f"{t(ms_ns(p99v))} / {t(ms_ns(mx))} (without stalls: {t(ms_ns(cp99))} / {t(ms_ns(cmx))})"
            target = "< 5 ms added"
            verdict = "met" if p99v < 5 and mx - cmx < 5 else "**missed**"
        rows.append((f"100 ms audit disk stalls ({s('stall.stalls')}×), {label} p99 / max", ours,
                     "n/a", "-", target, verdict))
    rows.append(("  slowest gated call meanwhile (it waits for the disk, off the workers)", t(ms_ns(s("stall.slowest_gated_ms"))),
                 "-", "-", "", ""))
cr = s("crash.runs")
if cr is not None:
    rows.append((f"kill -9 mid-stream ({cr} runs): safe calls' lines lost, worst", f"{s('crash.lost_lines_max'):,} lines, "
                 f"returned ≤ {t(ms_ns(s('crash.lost_age_max_ms')))} before the kill", "-", "-", "", ""))
    rows.append(("  gated calls' lines lost; every log verifies", f"{s('crash.gated_lost')}; {'yes' if s('crash.all_verify') else 'NO'}",
                 "-", "-", "0; yes", "met" if s('crash.gated_lost') == 0 and s('crash.all_verify') else "**missed**"))

out = ["| workload | agentguard (Rust) | agentguard-hitl 0.2.0 | ours vs theirs | target | |",
       "|---|---|---|---|---|---|"]
for r in rows:
    out.append("| " + " | ".join(str(x) for x in r) + " |")
try:
    with open(os.path.join(OUT, "machine.txt"), encoding="utf-8") as fh:
        out.append("")
        for line in fh:
            out.append("    " + line.rstrip())
except OSError:
    pass
text = "\n".join(out)
print(text)

# `table.py CRITERION_DIR OUT_DIR --splice BENCHMARKS.md`: also puts the table into that file, between its
# `<!-- table:begin -->` and `<!-- table:end -->` lines, so the document's table is never typed by hand.
if len(sys.argv) > 4 and sys.argv[3] == "--splice":
    doc = sys.argv[4]
    with open(doc, encoding="utf-8") as fh:
        body = fh.read()
    begin, end = "<!-- table:begin -->", "<!-- table:end -->"
    if begin not in body or end not in body:
        sys.exit(f"{doc}: no {begin} ... {end} section to replace")
    head, rest = body.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = head + begin + "\n" + text + "\n" + end + tail
    # `<!-- raw:NAME:begin -->` ... `<!-- raw:NAME:end -->`: the run's own output file OUT_DIR/NAME, verbatim.
    for name in re.findall(r"<!-- raw:([\w.-]+):begin -->", body):
        try:
            with open(os.path.join(OUT, name), encoding="utf-8") as fh:
                raw = "".join("    " + line.rstrip() + "\n" for line in fh if line.strip())
        except OSError:
            raw = f"    ({name}: not produced by this run)\n"
        b, e = f"<!-- raw:{name}:begin -->", f"<!-- raw:{name}:end -->"
        head, rest = body.split(b, 1)
        _, tail = rest.split(e, 1)
        body = head + b + "\n\n" + raw + "\n" + e + tail
    with open(doc, "w", encoding="utf-8") as fh:
        fh.write(body)
    print(f"(table and raw outputs spliced into {doc})", file=sys.stderr)
