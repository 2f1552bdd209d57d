# SPDX-License-Identifier: MIT
"""Changes made on the host reach the guest at once over the agent: the
agent watches the folder, the cache applies what it reports, the kernel's
caches are invalidated, and the change is replayed so that inotify
watchers in the guest (`inotifywait -m -r`, what hot-reload tools use) see
the matching events.

Each test starts an agent of its own serving its folder, so it runs in the
SFTP pass of the suite too.  The mounts trust what they cached for an hour
(attr_timeout=3600): without the notifications none of these changes
would show up in time.
"""

import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

import harness

pytestmark = [
    pytest.mark.hostshare_only,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)"),
]

SEEN_WITHIN = 1.0   # s: the bound for a host edit seen in the guest
EVENT_WITHIN = 3.0  # s: generous bound for an inotify event (loaded CI)


@pytest.fixture
def agent(test_dir):
    a = harness.Agent(os.path.join(test_dir, "agent"), test_dir,
                      listen="tcp").start()
    yield a
    a.stop()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def until(cond, within, what):
    """Polls @cond every 10 ms; returns the seconds it took, or fails."""
    t0 = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            pytest.fail("%s: not seen in the guest within %.1f s" % (what, within))
        time.sleep(0.01)


def test_host_changes_seen_at_once(mount_factory, agent, timing):
    host = os.path.join(mount_factory.host_dir)
    write(os.path.join(host, "a.txt"), b"one")
    os.mkdir(os.path.join(host, "d"))
    m = mount_factory(sshd=agent, options=["attr_timeout=3600"])
    assert read(m.guest("a.txt")) == b"one"
    assert sorted(os.listdir(m.path)) == ["a.txt", "d"]
    assert not os.path.exists(m.guest("new.txt"))   # a cached miss

    write(m.host("a.txt"), b"two, longer")
    dt = until(lambda: read(m.guest("a.txt")) == b"two, longer", SEEN_WITHIN,
               "a host edit")
    timing("host edit seen in the guest after", dt, "s")

    write(m.host("new.txt"), b"new")
    dt = until(lambda: "new.txt" in os.listdir(m.path) and
               os.path.exists(m.guest("new.txt")), SEEN_WITHIN, "a host create")
    timing("host create seen after", dt, "s")
    assert read(m.guest("new.txt")) == b"new"

    os.rename(m.host("new.txt"), m.host("d", "moved.txt"))
    dt = until(lambda: not os.path.exists(m.guest("new.txt")) and
               os.path.exists(m.guest("d", "moved.txt")), SEEN_WITHIN,
               "a host rename")
    timing("host rename seen after", dt, "s")
    assert read(m.guest("d", "moved.txt")) == b"new"

    os.unlink(m.host("a.txt"))
    dt = until(lambda: not os.path.exists(m.guest("a.txt")) and
               "a.txt" not in os.listdir(m.path), SEEN_WITHIN, "a host delete")
    timing("host delete seen after", dt, "s")

    # the guest's own changes still reach the host, and are not undone
    write(m.guest("d", "moved.txt"), b"guest edit")
    m.flush()
    assert read(m.host("d", "moved.txt")) == b"guest edit"
    time.sleep(0.5)
    assert read(m.guest("d", "moved.txt")) == b"guest edit"


class Watcher:
    """inotifywait -m -r on the mount; lines "EVENTS PATH" with the time
    each arrived."""

    def __init__(self, path):
        self.root = path
        self.lines = queue.Queue()
        self.all = []
        self.p = subprocess.Popen(
            ["inotifywait", "-m", "-r", "--format", "%e %w%f", path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        harness.register_proc(self.p)
        while True:
            line = self.p.stderr.readline()
            if not line:
                raise AssertionError("inotifywait failed to start")
            if "Watches established" in line:
                break
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.lines.put((time.monotonic(), line.strip()))

    def expect(self, events, name, since=None, within=EVENT_WITHIN):
        """Waits for an event line with all of @events (e.g. "CREATE",
        "ISDIR") about @name (relative to the mount); returns the seconds
        since @since (monotonic; default: now)."""
        want = set(events.split(","))
        path = os.path.join(self.root, name)
        t0 = time.monotonic() if since is None else since
        while True:
            left = within - (time.monotonic() - t0)
            if left <= 0:
                pytest.fail("no %s for %s within %.1f s; got: %s" %
                            (events, name, within,
                             [l for _, l in self.all][-20:]))
            try:
                at, line = self.lines.get(timeout=max(0.01, left))
            except queue.Empty:
                continue
            self.all.append((at, line))
            ev, _, p = line.partition(" ")
            if p == path and want <= set(ev.split(",")):
                return at - t0

    def drain(self, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            try:
                self.all.append(self.lines.get(timeout=max(0.01, end - time.monotonic())))
            except queue.Empty:
                pass
        return [l for _, l in self.all]

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        harness.unregister_proc(self.p)


@pytest.mark.skipif(shutil.which("inotifywait") is None,
                    reason="inotifywait (inotify-tools) is not installed")
def test_guest_inotify_sees_host_changes(mount_factory, agent, timing):
    os.mkdir(os.path.join(mount_factory.host_dir, "w"))
    m = mount_factory(sshd=agent, options=["attr_timeout=3600"])
    w = Watcher(m.path)
    try:
        t = time.monotonic()
        write(m.host("a.txt"), b"hello")
        timing("host create: guest IN_CREATE after", w.expect("CREATE", "a.txt", t), "s")
        timing("host write: guest IN_MODIFY after", w.expect("MODIFY", "a.txt", t), "s")
        w.expect("CLOSE_WRITE", "a.txt")
        assert read(m.guest("a.txt")) == b"hello"

        t = time.monotonic()
        write(m.host("a.txt"), b", world", mode="ab")
        timing("host append: guest IN_MODIFY after", w.expect("MODIFY", "a.txt", t), "s")
        until(lambda: read(m.guest("a.txt")) == b"hello, world", SEEN_WITHIN,
              "the appended bytes")

        t = time.monotonic()
        os.chmod(m.host("a.txt"), 0o600)
        timing("host chmod: guest IN_ATTRIB after", w.expect("ATTRIB", "a.txt", t), "s")
        until(lambda: os.stat(m.guest("a.txt")).st_mode & 0o777 == 0o600,
              SEEN_WITHIN, "the new mode")

        t = time.monotonic()
        os.rename(m.host("a.txt"), m.host("w", "b.txt"))
        timing("host rename: guest IN_MOVED_FROM after",
               w.expect("MOVED_FROM", "a.txt", t), "s")
        w.expect("MOVED_TO", "w/b.txt")
        assert read(m.guest("w", "b.txt")) == b"hello, world"

        t = time.monotonic()
        os.mkdir(m.host("sub"))
        timing("host mkdir: guest IN_CREATE,IN_ISDIR after",
               w.expect("CREATE,ISDIR", "sub", t), "s")
        time.sleep(0.3)   # inotifywait adds its watch on sub/
        write(m.host("sub", "c.txt"), b"c")
        w.expect("CREATE", "sub/c.txt")

        t = time.monotonic()
        os.unlink(m.host("w", "b.txt"))
        timing("host delete: guest IN_DELETE after",
               w.expect("DELETE", "w/b.txt", t), "s")
        os.unlink(m.host("sub", "c.txt"))
        w.expect("DELETE", "sub/c.txt")
        os.rmdir(m.host("sub"))
        w.expect("DELETE,ISDIR", "sub")
        assert sorted(os.listdir(m.path)) == ["w"]

        # The guest's own changes: one event each, the host's echo of
        # them when the flusher sends them adds none.
        write(m.guest("own.txt"), b"mine")
        os.rename(m.guest("own.txt"), m.guest("w", "own2.txt"))
        m.flush()
        lines = w.drain(1.5)
        own = [l for l in lines if "own" in l]
        assert sum(1 for l in own if l.startswith("CREATE ")) == 1, own
        assert sum(1 for l in own if l.startswith("MOVED_TO ")) == 1, own
        assert not [l for l in own if l.startswith("DELETE")], own
        assert read(m.host("w", "own2.txt")) == b"mine"
    finally:
        w.stop()


@pytest.mark.timeout(120)
def test_stalled_subscriber_holds_up_no_one(mount_factory, agent, test_dir, timing):
    """One mount's link stalls (the proxy holds its sockets, nothing
    moves) while the host keeps changing that mount's folder: the agent
    cannot hand that mount its notifications, and must not let that hold
    up the others.  Another mount of the same agent still sees a host
    edit at once, and a new mount comes up."""
    a_dir = os.path.join(test_dir, "a")
    os.mkdir(a_dir)
    proxy = harness.proxy_for(agent)
    try:
        va = harness.via_proxy(proxy, agent, test_dir, ["attr_timeout=3600",
                                                       "op_timeout=3"])
        mount_factory(remote_dir=a_dir, **va)
        mb = mount_factory(sshd=agent, options=["attr_timeout=3600"])
        write(mb.host("x"), b"one")
        assert read(mb.guest("x")) == b"one"
        proxy.stall()
        # tens of MB of events for the stalled mount: more than the
        # socket buffers between the agent and it hold
        with open(os.path.join(a_dir, "n" * 200), "wb", buffering=0) as f:
            for _ in range(100000):
                f.write(b"x")
        write(mb.host("x"), b"two, longer")
        dt = until(lambda: read(mb.guest("x")) == b"two, longer", 10,
                   "a host edit beside a stalled mount")
        timing("host edit seen beside a stalled mount after", dt, "s")
        t0 = time.monotonic()
        mc = mount_factory(sshd=agent, remote_dir=mount_factory.host_dir)
        timing("a new mount beside a stalled one came up after",
               time.monotonic() - t0, "s")
        assert read(mc.guest("x")) == b"two, longer"
    finally:
        proxy.resume()
        proxy.stop()
