#!/usr/bin/env python3
"""Side-by-side benchmark: this library (omsg bench), Python oslo.messaging and the raw
clients (lapin, rdkafka, fe2o3-amqp), the same workloads on the same local brokers, each server and client
in its own process.

    bench/compare.py [--quick] [--json FILE] [--only TITLE] [--kafka-url HOST:PORT]

Builds the release binaries, checks that RabbitMQ, nisshi and the Python venv are up (start
them with `.ci/brokers up`; this script never starts or restarts a broker),
runs every workload for every implementation and prints a Markdown table (and the raw
results as JSON with --json). Figures are what this machine measured in this run; ratios
come from one run so that machine noise mostly cancels.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RABBIT = "rabbit://guest:guest@127.0.0.1:5672/"
RAW_AMQP = "amqp://guest:guest@127.0.0.1:5672/%2f"  # lapin's URI for the same broker
# --kafka-url HOST:PORT points the Kafka section at another nisshi (e.g. a release build).
KAFKA_HOST = "127.0.0.1:9092"
AMQP1 = "amqp://guest:guest@127.0.0.1:5672/"
RAW_AMQP1 = "127.0.0.1:5672"  # fe2o3-amqp's host for the same broker's AMQP 1.0 endpoint

# 64 KiB payloads, for every implementation.
LARGE = {impl: {"args": ["--size", "65536"]} for impl in ("python", "rust", "raw-lapin", "raw-fe2o3")}
# The notifier's outbox (omsg bench --outbox), in memory or spooled to a fresh directory, of
# the default capacity (10,000), a notify call waiting for room when it is full
# (`Overflow::Wait`): what a service emitting faster than the broker takes would run.
OUTBOX_CAPACITY = ["--outbox-capacity", "10000"]
OUTBOX_MEMORY = {"rust": {"args": ["--outbox", "memory"] + OUTBOX_CAPACITY}}
OUTBOX_SPOOL = {"rust": {"args": ["--outbox", "spool:{spool}"] + OUTBOX_CAPACITY}}
# name, mode, concurrent senders, count per implementation[, per implementation: "clients"
# instead of the row's, extra client "args", extra "server_args"]. An implementation named
# "raw-X+oslo" is raw client X speaking oslo's wire (`--envelope oslo`: its envelope, and for
# lapin its exchange, properties and reply correlation too): it takes raw-X's
# count, and raw-X's settings where the row gives it none of its own. Python's notifier has
# no outbox: its outbox rows run its single sender, the aim for ours.
WORKLOADS = [
    ("sequential calls", "rpc-call", 1, {"python": 3000, "rust": 10000, "raw-lapin": 10000}),
    ("casts (1 sender)", "rpc-cast", 1, {"python": 3000, "rust": 10000, "raw-lapin": 10000}),
    ("concurrent calls (16 in flight)", "rpc-call", 16, {"python": 6000, "rust": 40000, "raw-lapin": 40000}),
    ("casts (16 senders)", "rpc-cast", 16, {"python": 6000, "rust": 40000, "raw-lapin": 40000}),
    ("notifications (1 sender)", "notify", 1, {"python": 3000, "rust": 10000, "raw-lapin": 10000}),
    ("notifications (16 senders)", "notify", 16, {"python": 6000, "rust": 40000, "raw-lapin": 40000}),
    ("notifications (16 senders, 64 KiB)", "notify", 16, {"python": 1000, "rust": 4000, "raw-lapin": 4000}, LARGE),
    # raw lapin: 16 senders, the broker's wall on this machine.
    ("notifications (1 sender, outbox in memory; raw: 16 senders)", "notify", 1,
     {"python": 3000, "rust": 40000, "raw-lapin": 40000}, dict(OUTBOX_MEMORY, **{"raw-lapin": {"clients": 16}})),
    ("notifications (1 sender, outbox spooled; raw: 16 senders)", "notify", 1,
     {"python": 3000, "rust": 40000, "raw-lapin": 40000}, dict(OUTBOX_SPOOL, **{"raw-lapin": {"clients": 16}})),
]
# raw rdkafka: every sender waits for each delivery report, except in the outbox rows where
# its one sender keeps everything in flight (librdkafka at full speed), with librdkafka's
# defaults. raw rdkafka with the oslo envelope also has the driver's timing: its listener's
# broker holds a fetch at most 20 ms (fetch_wait_max_ms, for low latency; librdkafka's 500 ms
# costs nisshi less CPU but delivers up to ~250 ms late), and its producer lingers 1 ms
# (producer_batch_timeout), or not at all with one sender awaiting each report, as the
# driver sends such a record at once.
def raw_kafka(window=1, linger_ms=1):
    return {"raw-rdkafka": {"args": ["--window", str(window)]},
            "raw-rdkafka+oslo": {"args": ["--window", str(window), "--set", "linger.ms=%s" % linger_ms],
                                 "server_args": ["--set", "fetch.wait.max.ms=20"]}}
KAFKA_WORKLOADS = [
    ("notifications (1 sender)", "notify", 1, {"python": 3000, "rust": 5000, "raw-rdkafka": 5000},
     raw_kafka(linger_ms=0)),
    ("notifications (16 senders)", "notify", 16, {"python": 6000, "rust": 40000, "raw-rdkafka": 40000},
     raw_kafka()),
    ("notifications (1 sender, outbox in memory; raw: all in flight)", "notify", 1,
     {"python": 3000, "rust": 40000, "raw-rdkafka": 40000}, dict(OUTBOX_MEMORY, **raw_kafka(window=100000))),
    ("notifications (1 sender, outbox spooled; raw: all in flight)", "notify", 1,
     {"python": 3000, "rust": 40000, "raw-rdkafka": 40000}, dict(OUTBOX_SPOOL, **raw_kafka(window=100000))),
]
# AMQP 1.0: calls against no raw baseline; casts and notifications against raw fe2o3-amqp.
AMQP1_CALLS = [(name, mode, clients, {"rust": counts["rust"]}, *extra)
               for name, mode, clients, counts, *extra in WORKLOADS if mode == "rpc-call"]
AMQP1_SENDS = [(name, mode, clients, {"rust": counts["rust"], "raw-fe2o3": counts["rust"]}, *extra)
               for name, mode, clients, counts, *extra in WORKLOADS if mode != "rpc-call" and extra in ([], [LARGE])]

# title, transport URL, workloads, implementations compared
SECTIONS = [
    ("RabbitMQ (AMQP 0-9-1)", RABBIT, WORKLOADS, ["python", "rust", "raw-lapin", "raw-lapin+oslo"]),
    ("Kafka (nisshi 0.8.1)", "kafka://{kafka}/", KAFKA_WORKLOADS,
     ["python", "rust", "raw-rdkafka", "raw-rdkafka+oslo"]),
    ("AMQP 1.0 calls (RabbitMQ's AMQP 1.0 endpoint; Python oslo.messaging has no AMQP 1.0 driver any more)",
     AMQP1, AMQP1_CALLS, ["rust"]),
    ("AMQP 1.0 casts and notifications (RabbitMQ's AMQP 1.0 endpoint)", AMQP1, AMQP1_SENDS, ["rust", "raw-fe2o3"]),
]
NAMES = {"python": "Python oslo.messaging", "rust": "Rust (this library)", "raw-lapin": "raw lapin",
         "raw-lapin+oslo": "raw lapin, oslo's wire", "raw-rdkafka": "raw rdkafka",
         "raw-rdkafka+oslo": "raw rdkafka, oslo envelope", "raw-fe2o3": "raw fe2o3-amqp"}


def command(impl, url, role, mode, topic, count, clients, extra=()):
    """The server or client command line, with this role's `extra` arguments."""
    impl, _, envelope = impl.partition("+")
    extra = list(extra) + (["--envelope", envelope] if envelope else [])
    if impl == "rust":
        return [os.path.join(ROOT, "target/release/omsg"), "--url", url, "bench", mode, "--role", role,
                "--topic", topic, "--count", str(count), "--clients", str(clients), "--json"] + extra
    if impl == "raw-rdkafka":
        return [os.path.join(ROOT, "target/release/examples/raw_rdkafka_bench"), "--bootstrap", KAFKA_HOST,
                "--role", role, "--topic", topic, "--count", str(count), "--clients", str(clients)] + extra
    if impl == "raw-fe2o3":
        return [os.path.join(ROOT, "target/release/examples/raw_fe2o3_bench"), "--host", RAW_AMQP1,
                "--role", role, "--mode", mode, "--topic", topic, "--count", str(count), "--clients", str(clients)] + extra
    if impl == "python":
        python = os.environ.get("OSLO_PYTHON", os.path.join(ROOT, "target/oslo-venv/bin/python"))
        return [python, os.path.join(ROOT, "bench/oslo_bench.py"), "--url", url, "--mode", mode,
                "--role", role, "--topic", topic, "--count", str(count), "--clients", str(clients)] + extra
    return [os.path.join(ROOT, "target/release/examples/raw_lapin_bench"), "--url", RAW_AMQP, "--role", role,
            "--mode", mode, "--topic", topic, "--count", str(count), "--clients", str(clients)] + extra


def json_line(stream, want, timeout):
    """Read lines until one is a JSON object accepted by `want`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = stream.readline()
        if not line:
            raise RuntimeError("the process ended early")
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if want(obj):
            return obj
    raise RuntimeError("timed out")


def run_one(impl, url, mode, clients, count, extra=(), server_extra=()):
    """One run; `extra` arguments go to the client, `server_extra` ones to the server."""
    topic = "bench_%s_%s" % (impl.replace("-", "_").replace("+", "_"), uuid.uuid4().hex[:8])
    spool = tempfile.mkdtemp(prefix="bench_spool_")
    extra = [arg.replace("{spool}", spool) for arg in extra]
    server = subprocess.Popen(command(impl, url, "server", mode, topic, count, clients, server_extra),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        json_line(server.stdout, lambda o: o.get("event") == "ready", 120)
        done = subprocess.run(command(impl, url, "client", mode, topic, count, clients, extra),
                              capture_output=True, text=True, timeout=900)
        client = json.loads([l for l in done.stdout.splitlines() if l.startswith("{")][-1])
        if mode == "rpc-call":
            server.send_signal(signal.SIGINT)
        summary = json_line(server.stdout, lambda o: o.get("role") == "server", 300)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        shutil.rmtree(spool, ignore_errors=True)
    if mode == "rpc-call":
        rate, p50, p99 = client["msgs_per_s"], client["p50_ms"], client["p99_ms"]
    else:
        seconds = (summary["last_receipt_unix_ns"] - client["start_unix_ns"]) / 1e9
        rate, p50, p99 = summary["received"] / seconds, summary["p50_ms"], summary["p99_ms"]
        if summary["received"] < count:
            raise RuntimeError("%s %s: only %s of %s arrived" % (impl, mode, summary["received"], count))
    return {"rate": rate, "p50_ms": p50, "p99_ms": p99, "client": client, "server": summary}


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "omsg"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "driver-rabbit", "--example", "raw_lapin_bench"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "driver-kafka", "--example", "raw_rdkafka_bench"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "driver-amqp1", "--example", "raw_fe2o3_bench"],
                   cwd=ROOT, check=True)


def port_open(host_port):
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def check_brokers(python):
    """Only look: the brokers are shared with tests, so starting or restarting them is not ours."""
    missing = [what for what, up in (("RabbitMQ on 127.0.0.1:5672", port_open("127.0.0.1:5672")),
                                     ("nisshi on %s" % KAFKA_HOST, port_open(KAFKA_HOST)),
                                     ("the oslo.messaging venv (%s)" % python, os.access(python, os.X_OK)))
               if not up]
    if missing:
        sys.exit("not running: %s (start them with .ci/brokers up)" % ", ".join(missing))


def listener_exe(host_port):
    """The executable listening on `host_port` (from ss -ltnp and /proc), or "unknown"."""
    try:
        out = subprocess.run(["ss", "-Hltnp", "sport = :%s" % host_port.rsplit(":", 1)[1]],
                             capture_output=True, text=True, timeout=10).stdout
        pid = out.split("pid=")[1].split(",")[0]
        return os.readlink("/proc/%s/exe" % pid)
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def fmt(value, digits=0):
    return "%.*f" % (digits, value)


def table(workloads, impls, results):
    """One Markdown table: a column per implementation, ratios to Python and the raw client."""
    ratios = [other for other in impls if other == "python" or other.startswith("raw-")]
    ratios = ratios if "rust" in impls else []
    head = ["workload", "metric"] + [NAMES[i] for i in impls] + ["Rust ÷ Python" if o == "python"
                                                                 else "Rust ÷ " + NAMES[o] for o in ratios]
    rows = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(impls) + len(ratios))]
    for name, mode, *_ in workloads:
        r = results[name]
        metrics = [("msgs/s" + (" (end to end)" if mode != "rpc-call" else ""), "rate", 0, True),
                   ("p50 ms", "p50_ms", 2, False), ("p99 ms", "p99_ms", 2, False)]
        for label, key, digits, ratio in metrics:
            cells = [fmt(r[i][key], digits) for i in impls]
            cells += [(fmt(r["rust"][key] / r[o][key], 1) + "×" if o == "python"
                       else fmt(100 * r["rust"][key] / r[o][key]) + " %") if ratio else "" for o in ratios]
            rows.append("| %s | %s | %s |" % (name, label, " | ".join(cells)))
        for side in ("client", "server"):
            for label, key, digits in (("CPU ms/msg", "cpu_ms_per_msg", 3), ("peak RSS MiB", "peak_rss_mib", 1)):
                cells = [fmt(r[i][side][key], digits) for i in impls] + [""] * len(ratios)
                rows.append("| %s | %s, %s | %s |" % (name, label, side, " | ".join(cells)))
    return "\n".join(rows)


def main():
    global KAFKA_HOST
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the messages")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--only", help="run only the sections whose title contains this")
    parser.add_argument("--kafka-url", default=KAFKA_HOST,
                        help="HOST:PORT of the nisshi (Kafka protocol) broker, default %(default)s")
    args = parser.parse_args()
    KAFKA_HOST = args.kafka_url
    build()
    check_brokers(os.environ.get("OSLO_PYTHON", os.path.join(ROOT, "target/oslo-venv/bin/python")))
    load_before = os.getloadavg()
    started = time.time()
    results = {}
    sections = [s for s in SECTIONS if not args.only or args.only in s[0]]
    for title, url, workloads, impls in sections:
        url = url.replace("{kafka}", KAFKA_HOST)
        results[title] = {}
        for name, mode, clients, counts, *extra in workloads:
            results[title][name] = {}
            for impl in impls:
                base = impl.partition("+")[0]
                count = max(counts.get(impl, counts.get(base, 0)) // (10 if args.quick else 1), 100)
                own = extra[0].get(impl, extra[0].get(base, {})) if extra else {}
                print("… %s, %s: %s, %d messages" % (title, name, impl, count), file=sys.stderr, flush=True)
                results[title][name][impl] = run_one(impl, url, mode, own.get("clients", clients), count,
                                                     own.get("args", ()), own.get("server_args", ()))
    print("Measured %s on %s (%s, %d CPUs), load average before %s, %.0f s of benchmarking.\n" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), platform.node() or "this machine",
        platform.platform(), os.cpu_count(), " ".join("%.2f" % l for l in load_before), time.time() - started))
    print("Load average after: %s. Kafka: nisshi at %s, %s.\n" % (
        " ".join("%.2f" % l for l in os.getloadavg()), KAFKA_HOST, listener_exe(KAFKA_HOST)))
    for title, _, workloads, impls in sections:
        print("### %s\n\n%s\n" % (title, table(workloads, impls, results[title])))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
