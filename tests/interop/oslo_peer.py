#!/usr/bin/env python3
"""Python oslo.messaging peer for the interop tests.

Run it with the venv made by `.ci/brokers setup python` ($OSLO_PYTHON):

  oslo_peer.py server --url U --topic T --server S [--exchange E]
  oslo_peer.py call   --url U --topic T [--server S] [--method M] [--args JSON]
                      [--ctxt JSON] [--namespace N] [--version V] [--timeout SECS]
                      [--call-monitor-timeout N] [--cast] [--fanout]
                      [--allowed-remote-exmods MOD,...]
  oslo_peer.py notify --url U --topic T --publisher-id P --event-type E
                      --payload JSON [--priority info] [--ctxt JSON]
                      [--driver messagingv2|messaging] [--count N]
  oslo_peer.py listen --url U --topic T [--pool P] [--count N] [--timeout SECS]
                      [--requeue-first]

Every command takes --rabbit-option NAME=VALUE (repeatable): an
[oslo_messaging_rabbit] option, e.g. kombu_compression=gzip.

stdout carries only JSON objects, one per line (flushed); logs go to stderr.
`server` prints {"event": "ready"}, then {"event": "cast", ...} for every
record() call, and runs until SIGTERM/SIGINT or until its stdin closes (so
start it with a pipe as stdin, or pass --ignore-stdin). `call` prints
{"result": ...} or {"error": {...}} and exits 0 either way. `listen` prints
{"event": "ready"}, one line per notification, exits 0 after --count of them
or 3 (after {"event": "timeout"|"interrupted", ...}) when --timeout runs out
or a signal stops it. With kafka, "ready" waits for the consumer group's
partition assignment and lists the assigned topics ("assigned": [...]); a
topic that does not exist yet is not assigned: produce to it first.
--exchange sets Target.exchange and the default control_exchange (which the
notifier uses).

--ctxt-kind (call, notify): how the --ctxt dict is handed to oslo.messaging.
"dict" (default) is a plain dict: RPC flattens it into _context_* keys, the
notifier DROPS it (oslo-wire.md §6). "object" wraps it in an object with
to_dict()/redacted_copy(), so notifications carry the keys verbatim.
"request-context" builds an oslo.context RequestContext from it.
"""
import argparse
import json
import logging
import signal
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging

import peer_exceptions

LOG = logging.getLogger("oslo_peer")
_out_lock = threading.Lock()
PRIORITIES = ("audit", "debug", "info", "warn", "error", "critical", "sample")


def emit(obj):
    """One JSON object per line on stdout, flushed at once."""
    line = json.dumps(obj, default=repr, sort_keys=False)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def init_conf(args):
    # oslo.messaging 18.x reads [oslo_messaging_tracing] from the conf it is
    # given but registers it only on the global cfg.CONF (oslo-wire.md §10.2).
    conf = cfg.CONF
    conf([], project="oslo_peer", default_config_files=[], default_config_dirs=[])
    if getattr(args, "rabbit_option", None):
        # The rabbit driver registers its options when it starts: register them
        # first, to set them.
        from oslo_messaging._drivers import impl_rabbit
        conf.register_opts(impl_rabbit.rabbit_opts, group="oslo_messaging_rabbit")
        for option in args.rabbit_option:
            name, _, value = option.partition("=")
            conf.set_override(name, value, group="oslo_messaging_rabbit")
    if getattr(args, "exchange", None):
        # also the notifier's exchange (a Notifier takes no Target)
        oslo_messaging.set_transport_defaults(control_exchange=args.exchange)
    return conf


def stop_event(watch_stdin):
    """An Event set on SIGTERM/SIGINT and (optionally) when stdin closes."""
    ev = threading.Event()

    def on_signal(signum, _frame):
        LOG.info("signal %s: stopping", signum)
        ev.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if watch_stdin:
        def watch():
            try:
                while sys.stdin.buffer.read1(4096):
                    pass
            except (OSError, ValueError):
                pass
            LOG.info("stdin closed: stopping")
            ev.set()
        threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
    return ev


class PassThroughContext(dict):
    """A context object the notifier does not drop: keys go out verbatim."""

    def to_dict(self):
        return dict(self)

    def redacted_copy(self):
        return PassThroughContext(self)


def make_ctxt(args):
    ctxt = json.loads(args.ctxt)
    if args.ctxt_kind == "object":
        return PassThroughContext(ctxt)
    if args.ctxt_kind == "request-context":
        from oslo_context import context
        return context.RequestContext.from_dict(ctxt)
    return ctxt


# ------------------------------------------------------------------ server --

class DefaultEndpoint:
    target = oslo_messaging.Target(version="1.3")

    def __init__(self, server_name):
        self.server_name = server_name

    def echo(self, ctxt, value):
        return value

    def fail(self, ctxt):
        raise ValueError("fail() was called: this is the remote ValueError")

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds

    def whoami(self, ctxt):
        return {"server": self.server_name, "ctxt": ctxt}

    def record(self, ctxt, value):
        emit({"event": "cast", "value": value, "ctxt": ctxt})


class OtherNsEndpoint:
    target = oslo_messaging.Target(namespace="otherns", version="2.1")

    def __init__(self, server_name):
        self.server_name = server_name

    def whoami(self, ctxt):
        return {"server": self.server_name, "namespace": "otherns"}


class SchedulerEndpoint:
    """The typed `Scheduler` service of the interop tests, written in Python."""
    target = oslo_messaging.Target(namespace="sched", version="1.2")

    def __init__(self, server_name):
        self.server_name = server_name

    def select_hosts(self, ctxt, flavor, count, zone=None):
        if flavor == "m1.huge":
            raise peer_exceptions.NoValidHost(
                reason="no host has room for %s" % flavor)
        return ["%s-%s-%d" % (zone or "nova", self.server_name, i)
                for i in range(count)]

    def ping(self, ctxt):
        emit({"event": "ping", "ctxt": ctxt})


def cmd_server(args):
    conf = init_conf(args)
    stop = stop_event(watch_stdin=not args.ignore_stdin)
    transport = oslo_messaging.get_rpc_transport(conf, url=args.url)
    target = oslo_messaging.Target(topic=args.topic, server=args.server,
                                   exchange=args.exchange)
    endpoints = [DefaultEndpoint(args.server), OtherNsEndpoint(args.server),
                 SchedulerEndpoint(args.server)]
    # threading is the default (and only non-deprecated) executor in 18.x
    server = oslo_messaging.get_rpc_server(transport, target, endpoints)
    server.start()
    emit({"event": "ready"})
    stop.wait()
    server.stop()
    server.wait()
    transport.cleanup()
    emit({"event": "stopped"})
    return 0


# -------------------------------------------------------------------- call --

def error_json(exc):
    return {"error": {"class": exc.__class__.__name__,
                      "exc_type": getattr(exc, "exc_type", None),
                      "message": str(exc),
                      "kwargs": getattr(exc, "kwargs", None)}}


def cmd_call(args):
    conf = init_conf(args)
    exmods = [m for m in (args.allowed_remote_exmods or "").split(",") if m]
    transport = oslo_messaging.get_rpc_transport(
        conf, url=args.url, allowed_remote_exmods=exmods)
    cast = args.cast or args.fanout
    target = oslo_messaging.Target(topic=args.topic, server=args.server,
                                   exchange=args.exchange,
                                   namespace=args.namespace,
                                   version=args.version, fanout=args.fanout)
    kwargs = {}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    if args.call_monitor_timeout is not None:
        kwargs["call_monitor_timeout"] = args.call_monitor_timeout
    try:
        client = oslo_messaging.get_rpc_client(transport, target, **kwargs)
        ctxt = make_ctxt(args)
        method_args = json.loads(args.args)
        if cast:
            client.cast(ctxt, args.method, **method_args)
            emit({"result": None})
        else:
            emit({"result": client.call(ctxt, args.method, **method_args)})
    except Exception as exc:  # the JSON tells what happened
        LOG.info("call failed: %r", exc)
        emit(error_json(exc))
    finally:
        transport.cleanup()
    return 0


# ------------------------------------------------------------------ notify --

def cmd_notify(args):
    conf = init_conf(args)
    transport = oslo_messaging.get_notification_transport(conf, url=args.url)
    notifier = oslo_messaging.Notifier(transport, publisher_id=args.publisher_id,
                                       driver=args.driver, topics=[args.topic])
    send = getattr(notifier, args.priority)
    ctxt = make_ctxt(args)
    payload = json.loads(args.payload)
    try:
        for _ in range(args.count):
            send(ctxt, args.event_type, payload)
    finally:
        transport.cleanup()  # kafka: flushes the producer
    emit({"sent": args.count})
    return 0


# ------------------------------------------------------------------ listen --

class NotificationEndpoint:
    def __init__(self, on_notification):
        for prio in PRIORITIES:
            setattr(self, prio, self._handler(prio, on_notification))

    @staticmethod
    def _handler(priority, on_notification):
        def handle(ctxt, publisher_id, event_type, payload, metadata):
            return on_notification(priority, ctxt, publisher_id, event_type,
                                   payload, metadata)
        return handle


def kafka_assignment(listener, deadline, stop):
    """Kafka only: wait until the consumer group gave us partitions.

    auto.offset.reset=latest, so whatever is produced before the assignment
    is never seen. A topic that does not exist yet when the listener
    subscribes is picked up only at librdkafka's next metadata refresh:
    create it first (e.g. send one notification). Returns the sorted assigned
    topics, or None for other drivers (rabbit queues exist once start()
    returns).
    """
    conn = getattr(getattr(getattr(listener, "listener", None),
                           "_poll_style_listener", None), "conn", None)
    if not hasattr(conn, "assignment_dict"):
        return None
    while not conn.assignment_dict and time.monotonic() < deadline:
        if stop.wait(0.1):
            break
    return sorted({a.topic for a in list(conn.assignment_dict.values())})


def cmd_listen(args):
    conf = init_conf(args)
    stop = stop_event(watch_stdin=False)
    done = threading.Event()
    state = {"received": 0, "requeue_pending": args.requeue_first}
    lock = threading.Lock()

    def on_notification(priority, ctxt, publisher_id, event_type, payload,
                        metadata):
        line = {"priority": priority, "ctxt": ctxt,
                "publisher_id": publisher_id, "event_type": event_type,
                "payload": payload, "metadata": metadata}
        with lock:
            if state["requeue_pending"]:
                state["requeue_pending"] = False
                emit(dict(line, requeued=True))
                return oslo_messaging.NotificationResult.REQUEUE
            if done.is_set():  # extra deliveries past --count: leave them
                return oslo_messaging.NotificationResult.REQUEUE
            emit(line)
            state["received"] += 1
            if state["received"] >= args.count:
                done.set()
                stop.set()
        return oslo_messaging.NotificationResult.HANDLED

    transport = oslo_messaging.get_notification_transport(conf, url=args.url)
    targets = [oslo_messaging.Target(topic=args.topic, exchange=args.exchange)]
    listener = oslo_messaging.get_notification_listener(
        transport, targets, [NotificationEndpoint(on_notification)],
        allow_requeue=True, pool=args.pool)
    deadline = time.monotonic() + args.timeout
    listener.start()
    ready = {"event": "ready"}
    assigned = kafka_assignment(listener, deadline, stop)
    if assigned is not None:
        ready["assigned"] = assigned
    emit(ready)
    stop.wait(max(0.0, deadline - time.monotonic()))
    listener.stop()
    listener.wait()
    transport.cleanup()
    if done.is_set():
        return 0
    # not all --count notifications arrived: timeout, or stopped by a signal
    emit({"event": "timeout" if not stop.is_set() else "interrupted",
          "received": state["received"]})
    return 3


# -------------------------------------------------------------------- main --

def parse_args(argv):
    p = argparse.ArgumentParser(description="oslo.messaging interop peer")
    p.add_argument("--debug", action="store_true", help="DEBUG logs on stderr")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("--url", required=True, help="transport URL")
        sp.add_argument("--topic", required=True)
        sp.add_argument("--exchange", default=None,
                        help="Target.exchange (default: control_exchange 'openstack')")
        sp.add_argument("--rabbit-option", action="append", metavar="NAME=VALUE",
                        help="an [oslo_messaging_rabbit] option (repeatable)")

    def ctxt_opts(sp):
        sp.add_argument("--ctxt", default="{}", help="context, JSON object")
        sp.add_argument("--ctxt-kind", default="dict",
                        choices=["dict", "object", "request-context"])

    s = sub.add_parser("server", help="RPC server")
    common(s)
    s.add_argument("--server", required=True)
    s.add_argument("--ignore-stdin", action="store_true",
                   help="do not stop when stdin closes")

    c = sub.add_parser("call", help="one RPC call or cast")
    common(c)
    ctxt_opts(c)
    c.add_argument("--server", default=None)
    c.add_argument("--method", default="echo")
    c.add_argument("--args", default="{}", help="keyword args, JSON object")
    c.add_argument("--namespace", default=None)
    c.add_argument("--version", default=None)
    c.add_argument("--timeout", type=float, default=None,
                   help="reply timeout in s (oslo default: 60)")
    c.add_argument("--call-monitor-timeout", type=float, default=None)
    c.add_argument("--cast", action="store_true")
    c.add_argument("--fanout", action="store_true", help="fanout cast")
    c.add_argument("--allowed-remote-exmods", default=None,
                   help="comma-separated modules whose remote exceptions are rebuilt")

    n = sub.add_parser("notify", help="send notifications")
    common(n)
    ctxt_opts(n)
    n.add_argument("--publisher-id", required=True)
    n.add_argument("--event-type", required=True)
    n.add_argument("--payload", required=True, help="JSON value")
    n.add_argument("--priority", default="info",
                   choices=list(PRIORITIES) + ["warning"])
    n.add_argument("--driver", default="messagingv2",
                   choices=["messagingv2", "messaging"])
    n.add_argument("--count", type=int, default=1)

    li = sub.add_parser("listen", help="notification listener")
    common(li)
    li.add_argument("--pool", default=None)
    li.add_argument("--count", type=int, default=1)
    li.add_argument("--timeout", type=float, default=30.0)
    li.add_argument("--requeue-first", action="store_true",
                    help="requeue the first notification (printed with requeued: true);"
                         " rabbit only: kafka cannot requeue")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(stream=sys.stderr,
                        level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return {"server": cmd_server, "call": cmd_call,
            "notify": cmd_notify, "listen": cmd_listen}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
