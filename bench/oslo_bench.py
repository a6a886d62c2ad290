#!/usr/bin/env python3
"""The workloads of `omsg bench` on Python oslo.messaging, for bench/compare.py.

    oslo_bench.py --url rabbit://... --mode rpc-call|rpc-cast|notify --role server|client
                  --topic T [--count N] [--clients C] [--size BYTES]

The server prints {"event": "ready"} once a warm-up message went through, then a JSON
summary when it received --count casts/notifications, or on SIGINT for calls. The client
prints one JSON report. Keys match `omsg bench --role ... --json`.
"""
import argparse
import json
import resource
import signal
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging

CTX = {"user_id": "bench"}


def unix_ns():
    return time.time_ns()


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentile_ms(samples, p):
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-p / 100.0 * len(ordered) // 1))))
    return ordered[rank - 1] * 1e3


def emit(obj):
    print(json.dumps(obj), flush=True)


class Receipts:
    """Counts received messages and their send-to-receipt latency."""

    def __init__(self, expected):
        self.expected = expected
        self.latencies = []
        self.warm_ups = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.warm = threading.Event()

    def record(self, sent_ns):
        with self.lock:
            if not sent_ns:
                self.warm_ups += 1
                self.warm.set()
                return
            self.latencies.append((unix_ns() - sent_ns) / 1e9)
            if len(self.latencies) >= self.expected:
                self.done.set()


class RpcEndpoint:
    def __init__(self, receipts):
        self.receipts = receipts
        self.served = 0

    def echo(self, ctxt, value, sent_ns=None):
        self.served += 1
        return value

    def record(self, ctxt, value, sent_ns=None):
        self.receipts.record(sent_ns)


class NotifyEndpoint:
    def __init__(self, receipts):
        self.receipts = receipts

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.receipts.record(payload.get("sent_ns"))


def server(args, transport):
    receipts = Receipts(args.count)
    if args.mode == "notify":
        # Kafka consumers do not notice a topic created after they subscribed (metadata is
        # refreshed every few minutes): create it with one notification first.
        first = Sender(args, transport)
        first.send(0)
        first.close()
        notify_transport = oslo_messaging.get_notification_transport(cfg.CONF, url=args.url)
        endpoint = NotifyEndpoint(receipts)
        service = oslo_messaging.get_notification_listener(
            notify_transport, [oslo_messaging.Target(topic=args.topic)], [endpoint])
    else:
        endpoint = RpcEndpoint(receipts)
        service = oslo_messaging.get_rpc_server(
            transport, oslo_messaging.Target(topic=args.topic, server="bench-0"), [endpoint])
    service.start()
    if args.mode != "rpc-call":
        sender = Sender(args, transport)
        deadline = time.time() + 60
        while not receipts.warm.is_set() and time.time() < deadline:
            sender.send(0)
            if args.mode == "notify":
                sender.close()  # flush: the kafka driver only sends on cleanup or poll
                sender = Sender(args, transport)
            receipts.warm.wait(1.0)
        if not receipts.warm.is_set():
            emit({"event": "failed", "reason": "no warm-up message arrived within 60 s"})
            return
    emit({"event": "ready", "topic": args.topic})
    cpu_before, started = cpu_seconds(), time.time()
    if args.mode == "rpc-call":
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(0.2):
            pass
        count = endpoint.served
        summary = {"served": count}
    else:
        receipts.done.wait(600)
        count = len(receipts.latencies)
        summary = {
            "received": count,
            "seconds": time.time() - started,
            "last_receipt_unix_ns": unix_ns(),
            "p50_ms": percentile_ms(receipts.latencies, 50),
            "p99_ms": percentile_ms(receipts.latencies, 99),
            "max_ms": percentile_ms(receipts.latencies, 100),
        }
    summary.update({
        "role": "server",
        "cpu_ms_per_msg": (cpu_seconds() - cpu_before) * 1e3 / max(count, 1),
        "peak_rss_mib": peak_rss_mib(),
    })
    service.stop()
    service.wait()
    emit(summary)


class Sender:
    def __init__(self, args, transport):
        self.args = args
        self.notify_transport = None
        if args.mode == "notify":
            self.notify_transport = oslo_messaging.get_notification_transport(cfg.CONF, url=args.url)
            self.notifier = oslo_messaging.Notifier(
                self.notify_transport, publisher_id="oslo.bench", driver="messagingv2", topics=[args.topic])
        else:
            self.client = oslo_messaging.get_rpc_client(
                transport, oslo_messaging.Target(topic=args.topic), timeout=60)
        self.value = "x" * args.size

    def close(self):
        # The kafka driver only flushes its producer here: without it, queued records are lost.
        if self.notify_transport is not None:
            self.notify_transport.cleanup()

    def send(self, sent_ns):
        mode = self.args.mode
        if mode == "rpc-call":
            self.client.call(CTX, "echo", value=self.value, sent_ns=sent_ns)
        elif mode == "rpc-cast":
            self.client.cast(CTX, "record", value=self.value, sent_ns=sent_ns)
        else:
            self.notifier.info(CTX, "omsg.bench", {"value": self.value, "sent_ns": sent_ns})


def client(args, transport):
    sender = Sender(args, transport)
    if args.mode == "rpc-call":
        sender.send(0)
    clients = max(args.clients, 1)
    shares = [args.count // clients + (1 if i < args.count % clients else 0) for i in range(clients)]
    latencies = []
    lock = threading.Lock()

    def run(share):
        mine = []
        for _ in range(share):
            started = time.perf_counter()
            sender.send(unix_ns())
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    cpu_before, started, start_unix_ns = cpu_seconds(), time.perf_counter(), unix_ns()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sender.close()
    seconds = time.perf_counter() - started
    report = {
        "mode": args.mode, "role": "client", "clients": clients, "size": args.size,
        "count": args.count, "seconds": seconds, "msgs_per_s": args.count / seconds,
        "start_unix_ns": start_unix_ns,
        "cpu_ms_per_msg": (cpu_seconds() - cpu_before) * 1e3 / max(args.count, 1),
        "peak_rss_mib": peak_rss_mib(),
    }
    if args.mode == "rpc-call":
        report.update({"p50_ms": percentile_ms(latencies, 50), "p99_ms": percentile_ms(latencies, 99),
                       "max_ms": percentile_ms(latencies, 100)})
    emit(report)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=["rpc-call", "rpc-cast", "notify"], required=True)
    parser.add_argument("--role", choices=["server", "client"], required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    cfg.CONF([], project="oslo_bench")
    transport = oslo_messaging.get_rpc_transport(cfg.CONF, url=args.url)
    (server if args.role == "server" else client)(args, transport)
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
