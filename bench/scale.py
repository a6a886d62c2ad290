#!/usr/bin/env python3
"""How cost grows with work (issue 15, requirement 5), one run, printed as Markdown tables:

1. RPC calls on RabbitMQ with 1, 16, 128 and 1,024 concurrent callers: throughput, p50/p99
   latency and the client's peak RSS (from the kernel's accounting of the exited process).
2. 100,000 notifications queued in an outbox whose broker does not answer (in memory and
   spooled): enqueue rate, RSS and the spool's size on disk (examples/outbox_backlog.rs).

    bench/scale.py [--quick]

Needs the release binaries (`bench/compare.py` builds them, or `cargo build --release -p omsg
&& cargo build --release --example outbox_backlog`) and RabbitMQ on 127.0.0.1:5672.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the same command lines and brokers as the side-by-side run)

CALLERS = [1, 16, 128, 1024]


def measured(cmd):
    """Run `cmd` to its end; its last JSON line and its peak RSS in MiB."""
    with tempfile.TemporaryFile(mode="w+") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError("%s exited with %s" % (cmd[0], child.returncode))
    return json.loads(lines[-1]), usage.ru_maxrss / 1024


def calls(clients, count):
    topic = "scale_%s" % uuid.uuid4().hex[:8]
    server = subprocess.Popen(compare.command("rust", compare.RABBIT, "server", "rpc-call", topic, count, clients),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        compare.json_line(server.stdout, lambda o: o.get("event") == "ready", 120)
        client, rss = measured(compare.command("rust", compare.RABBIT, "client", "rpc-call", topic, count, clients))
    finally:
        server.kill()
        server.wait()
    return client, rss


def backlog(mode, count):
    binary = os.path.join(compare.ROOT, "target/release/examples/outbox_backlog")
    report, rss = measured([binary, mode, str(count)])
    return report, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    print("# Scale (%s, load average %.1f)\n" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                os.getloadavg()[0]))
    print("| concurrent callers | calls | calls/s | p50 ms | p99 ms | client peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for clients in CALLERS:
        count = max(40_000 // scale, clients * 4)
        client, rss = calls(clients, count)
        print("| %d | %d | %s | %.1f | %.1f | %.0f MiB |" % (
            clients, count, compare.fmt(client["msgs_per_s"]), client["p50_ms"], client["p99_ms"], rss), flush=True)
    count = 100_000 // scale
    print("\n| outbox, broker away | queued | queued/s | RSS before → after | peak RSS | spool on disk |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode in ("memory", "spool"):
        report, rss = backlog(mode, count)
        spool = report["spool_bytes"]
        print("| %s | %d | %s | %.0f → %.0f MiB | %.0f MiB | %s |" % (
            mode, count, compare.fmt(report["queue_per_s"]), report["rss_before_kib"] / 1024,
            report["rss_after_kib"] / 1024, rss,
            "—" if spool is None else "%.1f MiB (%d B each)" % (spool / 2**20, spool // count)), flush=True)


if __name__ == "__main__":
    main()
