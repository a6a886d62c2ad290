#!/usr/bin/env python3
"""Scale table: this library with many concurrent callers, and with an outbox holding a backlog.

    bench/scale.py [--quick] [--json FILE]

Two parts, each in its own processes, on the shared local RabbitMQ (compare.py's binaries and
broker checks; run `python3 bench/compare.py` once first, or let this script build them):

- calls with 1, 16, 128 and 1,024 concurrent callers in one client process: calls/s, p50 and
  p99 round trip, and the client's and the server's peak RSS (VmHWM);
- 100,000 notifications queued in an outbox while the broker is unreachable (an unused
  loopback port): queueing rate and peak RSS, in memory and spooled, and the spool's size on
  disk once everything is queued.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the same binaries, commands and runs as the comparison)

CALLERS = [1, 16, 128, 1024]
BACKLOG = 100_000


def calls(callers, quick):
    """One calls run with `callers` in flight, at least 20 calls each."""
    count = max(callers * 20, 2000 if quick else 20000)
    print("… calls, %d callers, %d calls" % (callers, count), file=sys.stderr, flush=True)
    result = compare.run_one("rust", compare.RABBIT, "rpc-call", callers, count)
    return {"callers": callers, "count": count, **result}


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def backlog(outbox, count):
    """Queue `count` notifications in an outbox whose broker never answers."""
    url = "rabbit://guest:guest@127.0.0.1:%d/" % unused_port()
    spool = tempfile.mkdtemp(prefix="scale_spool_")
    arg = "memory" if outbox == "memory" else "spool:" + spool
    print("… outbox %s, %d notifications queued" % (outbox, count), file=sys.stderr, flush=True)
    try:
        command = compare.command("rust", url, "client", "notify", "scale_backlog", count, 1,
                                  ["--outbox", arg, "--queue-only"])
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError("omsg bench failed: %s" % done.stderr.strip()[-500:])
        client = json.loads(lines[-1])
        spool_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(spool) for f in fs)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    return {"outbox": outbox, "count": count, "spool_bytes": spool_bytes, "client": client}


def tables(call_rows, backlog_rows):
    out = ["| callers | calls | calls/s | p50 ms | p99 ms | client peak RSS MiB | server peak RSS MiB |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in call_rows:
        out.append("| %d | %d | %.0f | %.2f | %.2f | %.1f | %.1f |" % (
            r["callers"], r["count"], r["rate"], r["p50_ms"], r["p99_ms"],
            r["client"]["peak_rss_mib"], r["server"]["peak_rss_mib"]))
    out += ["", "| outbox | notifications queued | queued/s | client peak RSS MiB | spool on disk MiB |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for r in backlog_rows:
        out.append("| %s | %d | %.0f | %.1f | %s |" % (
            r["outbox"], r["client"]["confirmed"], r["client"]["msgs_per_s"], r["client"]["peak_rss_mib"],
            "%.1f" % (r["spool_bytes"] / 2**20) if r["outbox"] != "memory" else "—"))
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and a 10,000 backlog")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    compare.build()
    compare.check_brokers(os.environ.get("OSLO_PYTHON", os.path.join(compare.ROOT, "target/oslo-venv/bin/python")))
    load_before, started = os.getloadavg(), time.time()
    call_rows = [calls(n, args.quick) for n in CALLERS]
    count = BACKLOG // (10 if args.quick else 1)
    backlog_rows = [backlog(outbox, count) for outbox in ("memory", "spool")]
    print("Measured %s, load average before %s, after %s, %.0f s.\n" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), " ".join("%.2f" % l for l in load_before),
        " ".join("%.2f" % l for l in os.getloadavg()), time.time() - started))
    print(tables(call_rows, backlog_rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"calls": call_rows, "backlog": backlog_rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
