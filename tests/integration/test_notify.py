# systemd notification protocol: READY=1 once serving, RELOADING=1 with
# MONOTONIC_USEC then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM,
# and STATUS= lines, all sent to the datagram socket named by NOTIFY_SOCKET.

import os
import signal
import socket
import time

import pytest

import ofharness


def _built_with_systemd():
    path = os.path.join(os.environ.get("OF_BUILDDIR", ""), "config.h")
    try:
        with open(path) as f:
            return "#define HAVE_SYSTEMD 1" in f.read()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _built_with_systemd(),
                                reason="orderflowd built without --with-systemd")


class NotifySocket:
    """A unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def drain(self, timeout):
        """Collect datagrams for up to timeout seconds."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return

    def wait(self, pred, timeout=10):
        """Wait until some message satisfies pred; return its index."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for i, m in enumerate(self.messages):
                if pred(m):
                    return i
            self.drain(0.1)
        raise AssertionError("no matching notification; got %r" % self.messages)

    def close(self):
        self.sock.close()


def test_notify_lifecycle(make_daemon):
    d = make_daemon()
    ns = NotifySocket(d.dir)
    try:
        d.start(env={"NOTIFY_SOCKET": ns.path})
        ready = ns.wait(lambda m: m == "READY=1")
        status = ns.wait(lambda m: m.startswith("STATUS="))
        assert "postgres up on 2/2" in ns.messages[status], ns.messages
        assert "redis up on 2/2" in ns.messages[status], ns.messages
        # READY=1 only after the listener is up: the daemon answers by then.
        assert d.get("/healthz").status == 200

        d.send_signal(signal.SIGHUP)
        reloading = ns.wait(lambda m: m.startswith("RELOADING=1"))
        msg = ns.messages[reloading]
        usec = int(msg.split("MONOTONIC_USEC=")[1])
        assert abs(usec / 1e6 - time.monotonic()) < 60, msg
        assert reloading > ready
        ofharness.wait_for(lambda: ns.drain(0.1) or "READY=1" in ns.messages[reloading + 1:],
                           10, 0, "READY=1 after the reload")
        assert ns.messages[reloading + 1:].count("READY=1") == 1, ns.messages

        d.send_signal(signal.SIGTERM)
        ns.wait(lambda m: m == "STOPPING=1")
        assert d.wait_exit(10) == 0
    finally:
        ns.close()


def test_notify_bad_reload_stays_ready(make_daemon):
    """A reload that fails still answers READY=1, so systemd does not hang in 'reloading'."""
    d = make_daemon()
    ns = NotifySocket(d.dir)
    try:
        d.start(env={"NOTIFY_SOCKET": ns.path})
        ns.wait(lambda m: m == "READY=1")
        d.write_config("[server]\nbogus = 1\n")
        d.send_signal(signal.SIGHUP)
        i = ns.wait(lambda m: m.startswith("RELOADING=1"))
        ns.drain(1.0)
        assert "READY=1" in ns.messages[i + 1:], ns.messages
        d.wait_log(msg="config reload failed")
        assert d.get("/healthz").status == 200
    finally:
        ns.close()
