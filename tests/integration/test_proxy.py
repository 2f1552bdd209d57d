# SPDX-License-Identifier: MIT
"""Self-test of harness.Proxy against a local echo server: the fault tests
rely on stall/resume/reset/latency doing exactly what they say."""

import os
import socket
import threading
import time

import pytest

from harness import Proxy


class EchoServer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.peers = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.peers.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    c.shutdown(socket.SHUT_WR)
                    return
                c.sendall(d)
        except OSError:
            return

    def stop(self):
        self.running = False
        self.sock.close()
        for c in self.peers:
            c.close()


@pytest.fixture
def echo_proxy():
    echo = EchoServer()
    proxy = Proxy(0, echo.port)
    yield echo, proxy
    proxy.stop()
    echo.stop()


def connect(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


def test_forwards_bytes_both_ways(echo_proxy):
    _, proxy = echo_proxy
    payload = os.urandom(3 << 20)
    with connect(proxy) as s:
        t = threading.Thread(target=s.sendall, args=(payload,))
        t.start()
        got = recv_exact(s, len(payload))
        t.join()
        assert got == payload
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""          # half-close travels both ways
    assert proxy.bytes_up == len(payload)
    assert proxy.bytes_down == len(payload)


def test_stall_and_resume(echo_proxy):
    _, proxy = echo_proxy
    with connect(proxy) as s:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        proxy.stall()
        s.sendall(b"during-stall")
        s.settimeout(0.7)
        with pytest.raises(socket.timeout):
            s.recv(100)
        assert proxy.connections() == 1   # sockets stay open while stalled
        proxy.resume()
        s.settimeout(5)
        assert recv_exact(s, 12) == b"during-stall"


def test_reset_sends_rst(echo_proxy):
    _, proxy = echo_proxy
    with connect(proxy) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            s.sendall(b"y")
            s.recv(10)
    assert proxy.connections() == 0
    with connect(proxy) as s:             # new connections still work
        s.sendall(b"again")
        assert recv_exact(s, 5) == b"again"


def test_latency_each_way(echo_proxy):
    _, proxy = echo_proxy
    with connect(proxy) as s:
        s.sendall(b"a")
        recv_exact(s, 1)
        t0 = time.monotonic()
        s.sendall(b"b")
        recv_exact(s, 1)
        base = time.monotonic() - t0
        proxy.latency_ms = 100
        t0 = time.monotonic()
        s.sendall(b"c")
        assert recv_exact(s, 1) == b"c"
        rtt = time.monotonic() - t0
    assert rtt >= 0.2, "round trip %.3fs is less than 2 x 100 ms" % rtt
    assert rtt < 0.2 + base + 0.5


def test_bandwidth_cap(echo_proxy):
    _, proxy = echo_proxy
    proxy.rate_bps = 1 << 20                 # 1 MiB/s each way
    payload = os.urandom(2 << 20)
    with connect(proxy) as s:
        t0 = time.monotonic()
        t = threading.Thread(target=s.sendall, args=(payload,))
        t.start()
        got = recv_exact(s, len(payload))
        t.join()
        took = time.monotonic() - t0
    assert got == payload
    assert took >= 1.8, "2 MiB through a 1 MiB/s cap took %.2f s" % took
    assert took < 6


def test_stop_refuses_new_connections(echo_proxy):
    _, proxy = echo_proxy
    port = proxy.port
    with connect(proxy) as s:
        proxy.stop()
        s.settimeout(5)
        with pytest.raises((ConnectionResetError, EOFError)):
            s.sendall(b"z")
            recv_exact(s, 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_unix_sockets_stall_reset_stop(tmp_path):
    """The same proxy between unix sockets (the agent's unix listener):
    bytes move, a stall holds them, a reset closes the connection, a
    stopped proxy refuses (its socket file is gone)."""
    target = str(tmp_path / "echo.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(target)
    srv.listen(4)

    def echo():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
    threading.Thread(target=echo, daemon=True).start()
    path = str(tmp_path / "proxy.sock")
    proxy = Proxy(path, target)
    try:
        assert proxy.port is None and proxy.path == path
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        proxy.stall()
        s.sendall(b"held")
        s.settimeout(0.7)
        with pytest.raises(socket.timeout):
            s.recv(10)
        assert proxy.connections() == 1
        proxy.resume()
        s.settimeout(5)
        assert recv_exact(s, 4) == b"held"
        proxy.reset()
        with pytest.raises((ConnectionResetError, EOFError, BrokenPipeError)):
            s.sendall(b"y")
            recv_exact(s, 1)
        s.close()
        assert proxy.connections() == 0
    finally:
        proxy.stop()
        srv.close()
    assert not os.path.exists(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        s.connect(path)
    s.close()
