"""The predecessor's side of the side-by-side: agentguard-hitl 0.2.0 (Python) on the same workloads as ours.

Run by bench/peer/run.sh inside a venv that has `agentguard-hitl==0.2.0`; prints progress on stderr and writes the
figures as JSON to the path given as the first argument.

Workloads (the closest equivalents the Python API has; see BENCHMARKS.md for what differs):
- classify: the 368 names of tests/data/tool_names.tsv, one call per name, ns per name;
- execute of a safe tool ("read_customer") with an auto-approving callback: ns per call (it writes no audit line
  for safe calls, so there is nothing to compare with our audited figure);
- execute of a gated tool ("update_email") with an auto-approving callback: ns per call, with its (unchained) JSONL
  audit line written to a temp file;
- `@guard.gate` wrapper vs the same body called directly (auto-approving callback; the wrapper writes a log line);
- its audit writer (`_log`) appending lines, 1 thread and 8 threads;
- in-process resolve -> executor-running latency (external mode, aexecute parked, another coroutine resolves);
- N approvals parked with aexecute in external mode, timeout 0.5 s, nobody answering: when each actually fails
  closed (lateness past its own deadline), when all have, and the latency of an unrelated asyncio.to_thread call
  made while they are parked.
"""

import asyncio
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

# The audit log must point at a temp file before the module is imported (it reads AGENTGUARD_LOG at import).
_LOG_DIR = tempfile.mkdtemp(prefix="agentguard-peer-")
atexit.register(shutil.rmtree, _LOG_DIR, ignore_errors=True)
os.environ["AGENTGUARD_LOG"] = os.path.join(_LOG_DIR, "agentguard.log")

import agentguard  # noqa: E402  (after AGENTGUARD_LOG is set)
from agentguard import ActionDenied, AgentGuard, classify  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS = {"id": 7, "email": "jane@example.com"}


def rss_kib():
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def log(msg):
    print(f"  [python] {msg}", file=sys.stderr, flush=True)


def names():
    out = []
    with open(os.path.join(REPO, "tests", "data", "tool_names.tsv"), encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                out.append(line.split("\t")[0])
    return out


def per_op_ns(run_batch, ops_per_batch, repeats=25):
    """Median over `repeats` batches of the time per operation, in ns (after one warm-up batch)."""
    run_batch()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        run_batch()
        samples.append((time.perf_counter_ns() - t0) / ops_per_batch)
    return statistics.median(samples)


def bench_classify(figures):
    corpus = names()
    assert len(corpus) > 300, "the name corpus is missing"

    def batch():
        for n in corpus:
            classify(n)

    figures["classify_ns"] = per_op_ns(batch, len(corpus), repeats=50)
    log(f"classify: {figures['classify_ns']:.0f} ns/name over {len(corpus)} names")


def executor(name, params):
    return len(name) + len(params)


def bench_execute(figures):
    guard = AgentGuard(confirm=lambda req: True)
    n = 5_000

    def safe():
        for _ in range(n):
            guard.execute("read_customer", dict(PARAMS), executor=executor)

    figures["execute_safe_ns"] = per_op_ns(safe, n)
    log(f"safe execute: {figures['execute_safe_ns']:.0f} ns/call (no audit line: 0.2.0 logs only gated calls)")

    n = 1_000

    def gated():
        for _ in range(n):
            out = guard.execute("update_email", dict(PARAMS), executor=executor, agent_id="bench")
            assert not isinstance(out, ActionDenied), out

    figures["execute_gated_ns"] = per_op_ns(gated, n, repeats=15)
    with open(os.environ["AGENTGUARD_LOG"], encoding="utf-8") as fh:
        lines = sum(1 for _ in fh)
    figures["execute_gated_log_lines"] = lines
    log(f"gated auto-approved execute: {figures['execute_gated_ns']:.0f} ns/call ({lines} unchained log lines)")


def bench_gate(figures):
    guard = AgentGuard(confirm=lambda req: True)

    def body(path, force):
        return len(path) + int(force)

    @guard.gate
    def delete_file(path, force):
        return body(path, force)

    n = 1_000

    def gated():
        for _ in range(n):
            delete_file("notes.txt", True)

    def direct():
        for _ in range(n):
            body("notes.txt", True)

    figures["gate_wrapper_ns"] = per_op_ns(gated, n, repeats=15)
    figures["gate_direct_ns"] = per_op_ns(direct, n)
    log(f"@guard.gate wrapper: {figures['gate_wrapper_ns']:.0f} ns/call; direct body {figures['gate_direct_ns']:.0f} ns")


def bench_audit(figures):
    """Their audit writer (`_log`: json.dumps, open, append, close under a lock) for 1 and 8 threads."""
    import threading

    from agentguard import core

    n = 20_000
    t0 = time.perf_counter()
    for i in range(n):
        core._log("update_email", dict(PARAMS), "APPROVED", agent_id="scale")
    figures["audit_one_writer_per_s"] = n / (time.perf_counter() - t0)

    def writer():
        for i in range(n // 8):
            core._log("update_email", dict(PARAMS), "APPROVED", agent_id="scale")

    threads = [threading.Thread(target=writer) for _ in range(8)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures["audit_eight_threads_per_s"] = (n // 8 * 8) / (time.perf_counter() - t0)
    log(
        f"audit append: {figures['audit_one_writer_per_s']:.0f}/s (1 writer), "
        f"{figures['audit_eight_threads_per_s']:.0f}/s (8 threads); unchained, no lock across processes"
    )


async def resolve_latency(figures, samples=300):
    """In-process: aexecute parked in external mode, another coroutine resolves; time to the executor running."""
    queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    guard = AgentGuard(mode="external", timeout=30, on_request=lambda req: loop.call_soon_threadsafe(queue.put_nowait, req))
    latencies = []
    for _ in range(samples):
        agent = asyncio.create_task(guard.aexecute("delete_row", {"row": 1}, executor=lambda n, p: time.perf_counter()))
        req = await queue.get()
        await asyncio.sleep(0.00005)  # let it settle into its wait, like our bench's 50 us
        t0 = time.perf_counter()
        guard.resolve(req.request_id, True, actor="bench")
        ran = await agent
        latencies.append(ran - t0)
    latencies.sort()
    figures["resolve_p50_us"] = latencies[len(latencies) // 2] * 1e6
    figures["resolve_p99_us"] = latencies[min(int(len(latencies) * 0.99), len(latencies) - 1)] * 1e6
    log(f"in-process resolve -> executor: p50 {figures['resolve_p50_us']:.0f} us, p99 {figures['resolve_p99_us']:.0f} us")


async def parked(figures, n, timeout):
    guard = AgentGuard(mode="external", timeout=timeout)
    starts = [0.0] * n
    ends = [0.0] * n
    denied = 0
    t0 = time.perf_counter()

    async def one(i):
        nonlocal denied
        starts[i] = time.perf_counter() - t0
        out = await guard.aexecute("delete_row", {}, executor=executor)
        ends[i] = time.perf_counter() - t0
        if isinstance(out, ActionDenied) and out.reason == "approval_timeout":
            denied += 1

    rss_before = rss_kib()
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0.1)  # all have parked by now (each on its way into the default thread pool's queue)
    rss_parked = rss_kib()
    # An unrelated blocking call while they are parked: how long until it is served?
    asked = time.perf_counter()
    await asyncio.to_thread(lambda: 17)
    to_thread_s = time.perf_counter() - asked
    await asyncio.gather(*tasks)
    lateness = sorted(e - (s + timeout) for s, e in zip(starts, ends))

    def q(p):
        return lateness[min(int(len(lateness) * p), len(lateness) - 1)]

    figures.update(
        {
            "park_n": n,
            "park_timeout_s": timeout,
            "park_timed_out": denied,
            "park_all_failed_closed_s": max(ends),
            "park_lateness_p50_s": q(0.5),
            "park_lateness_p99_s": q(0.99),
            "park_lateness_max_s": lateness[-1],
            "park_to_thread_s": to_thread_s,
            "park_bytes_per_parked": (rss_parked - rss_before) * 1024 / n,
            "park_executor_threads": getattr(asyncio.get_running_loop()._default_executor, "_max_workers", None),
        }
    )
    log(
        f"parked {n} (timeout {timeout} s): all failed closed after {max(ends):.2f} s; lateness p50 {q(0.5):.2f} s, "
        f"p99 {q(0.99):.2f} s; asyncio.to_thread while parked: {to_thread_s:.2f} s; "
        f"RSS per parked approval {figures['park_bytes_per_parked']:.0f} B"
    )


def main():
    out_path = sys.argv[1]
    park_n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    figures = {
        "python": sys.version.split()[0],
        "agentguard_hitl": getattr(agentguard, "__version__", "0.2.0"),
    }
    bench_classify(figures)
    bench_execute(figures)
    bench_gate(figures)
    bench_audit(figures)
    asyncio.run(resolve_latency(figures))
    asyncio.run(parked(figures, park_n, 0.5))
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
