# SPDX-License-Identifier: MIT
"""Link faults through a proxy of our own (no netem here) in front of
whatever the mount dials (sshd, or the agent's TCP port or unix socket):
a link that stalls (sockets open, nothing moves), a link that resets, a
host that goes away, the host server stopped and restarted.  Each test
prints how long the user's operations took and checks what reached the
host once the link came back (DESIGN.md: never hang, nothing lost)."""

import errno
import os
import time

import pytest

from harness import Agent, AgentOverSsh, MountError, Sshd, via_proxy

MIB = 1 << 20


@pytest.fixture
def hostshare_only(mounter):
    if mounter != "hostshare":
        pytest.skip("fault tests measure hostshare's cache (sshfs has none)")





def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.timeout(240)
def test_stall_cached_work_goes_on(hostshare_only, proxy, host_server, test_dir,
                                   mount_factory, timing):
    """While the link is stalled, everything the cache holds answers at
    once, new writes land, and what needs the host fails with EIO after
    op_timeout; when the link moves again, everything reaches the host."""
    cold = os.urandom(3 * MIB)
    mnt = mount_factory(**via_proxy(proxy, host_server, test_dir,
                                    ["op_timeout=3", "attr_timeout=60",
                                     "ConnectTimeout=2"]),
                        mount=False)
    write(mnt.host("cold"), cold)           # on the host, never read
    mnt.mount()
    os.mkdir(mnt.guest("tree"))
    for i in range(20):
        write(mnt.guest("tree", "f%d" % i), b"file %d\n" % i * 100)
    warm = os.urandom(2 * MIB)
    write(mnt.guest("warm"), warm)
    os.stat(mnt.guest("cold"))              # name known, data not fetched
    mnt.flush()

    proxy.stall()
    names, t_ls = timed(lambda: sorted(os.listdir(mnt.guest("tree"))))
    assert len(names) == 20
    _, t_stat = timed(lambda: [os.stat(mnt.guest("tree", n)) for n in names])
    data, t_cat = timed(lambda: read(mnt.guest("warm")))
    assert data == warm
    new = os.urandom(4 * MIB)
    _, t_write = timed(lambda: write(mnt.guest("new"), new))
    t0 = time.monotonic()
    with pytest.raises(OSError) as ei:
        read(mnt.guest("cold"))
    t_cold = time.monotonic() - t0
    assert ei.value.errno == errno.EIO
    timing("stall: ls of 20 cached names", "%.3f s" % t_ls)
    timing("stall: stat of 20 cached files", "%.3f s" % t_stat)
    timing("stall: read 2 MiB cached file", "%.3f s" % t_cat)
    timing("stall: write 4 MiB new file", "%.3f s" % t_write)
    timing("stall: cold read gave EIO after", "%.2f s (op_timeout=3)" % t_cold)
    for t in (t_ls, t_stat, t_cat, t_write):
        assert t < 1.5, "a cached operation waited on the stalled link"
    # the read waits op_timeout (3 s); the kernel's retry of it waits for
    # the one reconnect attempt already under way (ConnectTimeout, 2 s);
    # after that the link is offline and needs-the-host fails at once
    assert t_cold < 3 + 2 + 2, "a cold read outlived op_timeout + ConnectTimeout"

    r = mnt.ctl("flush", "--wait", "--timeout", "2", mnt.path)
    assert r.returncode != 0, "flush claimed success while the link is stalled"
    # never a half-written file under its final name
    assert not os.path.exists(mnt.host("new")) or read(mnt.host("new")) == new

    proxy.resume()
    t0 = time.monotonic()
    mnt.flush()
    timing("after the stall: everything on the host after", "%.1f s" % (time.monotonic() - t0))
    assert read(mnt.host("new")) == new
    assert read(mnt.guest("cold")) == cold


@pytest.mark.timeout(240)
def test_reset_mid_copy_loses_nothing(hostshare_only, proxy, host_server, test_dir,
                                      mount_factory, timing):
    """Connections reset with RST in the middle of the flush: the flusher
    reconnects and every file arrives intact, nothing half-written under a
    final name."""
    mnt = mount_factory(**via_proxy(proxy, host_server, test_dir,
                                    ["writeback_delay=0", "ConnectTimeout=3"]))
    want = {}
    for i in range(30):
        data = os.urandom(256 * 1024 + i)
        write(mnt.guest("f%d" % i), data)
        want["f%d" % i] = data
        if i in (10, 20):
            proxy.reset()
    proxy.reset()
    t0 = time.monotonic()
    mnt.flush()
    timing("reset x3: everything on the host after", "%.1f s" % (time.monotonic() - t0))
    for name, data in want.items():
        assert read(mnt.host(name)) == data, name
    leftovers = [n for n in os.listdir(mnt.host()) if n.startswith(".hs-tmp.")]
    timing("reset x3: temporary files left on the host", str(len(leftovers)))
    timing("reset x3: connections through the proxy", str(proxy.accepted))
    assert sorted(n for n in os.listdir(mnt.host()) if not n.startswith(".hs-")) == \
        sorted(want)


@pytest.mark.timeout(240)
def test_stall_stale_listing_answers_from_cache(hostshare_only, proxy, host_server,
                                                test_dir, mount_factory, timing):
    """Listings older than attr_timeout are refreshed when the link allows;
    on a stalled link the first refresh gives up after a quarter of
    op_timeout and the cached listing answers, later ones answer at once."""
    mnt = mount_factory(**via_proxy(proxy, host_server, test_dir,
                                    ["op_timeout=8", "attr_timeout=0.5",
                                     "ConnectTimeout=2"]))
    os.mkdir(mnt.guest("d"))
    for i in range(10):
        write(mnt.guest("d", "f%d" % i), b"x" * i)
    mnt.flush()
    proxy.stall()
    time.sleep(1)                            # every listing is stale now
    names1, t1 = timed(lambda: sorted(os.listdir(mnt.guest("d"))))
    names2, t2 = timed(lambda: sorted(os.listdir(mnt.guest("d"))))
    data, t3 = timed(lambda: read(mnt.guest("d", "f7")))
    timing("stall, stale listing: first ls", "%.2f s (op_timeout=8)" % t1)
    timing("stall, stale listing: second ls", "%.3f s" % t2)
    timing("stall, stale listing: open+read of a cached file", "%.3f s" % t3)
    assert names1 == names2 == ["f%d" % i for i in range(10)]
    assert data == b"x" * 7
    assert t1 < 8 / 4 + 1.5
    assert t2 < 1 and t3 < 1
    proxy.resume()
    mnt.flush()


@pytest.mark.timeout(240)
def test_offline_mount_and_catch_up(hostshare_only, make_proxy, host_server, test_dir,
                                    mount_factory, timing):
    """With the host unreachable, a mount of a folder this cache already
    holds comes up, serves it and takes writes; when the host is back the
    writes reach it.  Without a cache, the mount fails with one line."""
    p1 = make_proxy()
    where = p1.port or p1.path
    via = via_proxy(p1, host_server, test_dir, ["ConnectTimeout=2", "op_timeout=3"])
    mnt = mount_factory(**via)
    write(mnt.guest("kept"), b"cached content")
    mnt.flush()
    assert mnt.unmount() == 0
    p1.stop()                                # the host is gone

    t0 = time.monotonic()
    mnt.mount()
    timing("offline mount came up after", "%.1f s (ConnectTimeout=2)" % (time.monotonic() - t0))
    assert read(mnt.guest("kept")) == b"cached content"
    write(mnt.guest("offline-new"), b"written while offline")
    st = mnt.status()
    timing("offline status: link", st.get("link"))
    assert st.get("link") != "connected"

    other = mount_factory(**via, mount=False)   # a cache of its own
    t0 = time.monotonic()
    with pytest.raises(MountError) as ei:
        other.mount()
    timing("no cache, host gone: mount failed after", "%.1f s" % (time.monotonic() - t0))
    assert "refused" in str(ei.value) or "connect" in str(ei.value)

    p2 = make_proxy(where)                   # the host is back
    try:
        t0 = time.monotonic()
        mnt.flush()
        timing("after the host came back: on the host after",
               "%.1f s" % (time.monotonic() - t0))
        assert read(mnt.host("offline-new")) == b"written while offline"
    finally:
        assert mnt.unmount() == 0
        p2.stop()


def tree_of(n_files, seed):
    """@n_files files of 1..300 KiB in a few folders; {relpath: bytes}."""
    import random
    rng = random.Random(seed)
    want = {}
    for i in range(n_files):
        rel = os.path.join("d%d" % (i % 7), "f%03d" % i)
        want[rel] = os.urandom(rng.randrange(1024, 300 * 1024))
    return want


def write_tree(root, want, during=None):
    for k, (rel, data) in enumerate(sorted(want.items())):
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        write(os.path.join(root, rel), data)
        if during:
            during(k)


def check_tree(root, want):
    bad = [rel for rel, data in want.items()
           if not os.path.exists(os.path.join(root, rel)) or
           read(os.path.join(root, rel)) != data]
    assert not bad, "%d files missing or different on the host: %s" % (len(bad), bad[:5])
    half = [n for d, _, fs in os.walk(root) for n in fs if n.startswith(".hs-tmp.")]
    return half


@pytest.mark.timeout(300)
def test_reset_repeatedly_during_a_copy(hostshare_only, proxy, host_server, test_dir,
                                        mount_factory, timing):
    """The link is reset every half second while a tree is copied in and
    flushed: the copy never notices, and every byte arrives."""
    import threading

    mnt = mount_factory(**via_proxy(proxy, host_server, test_dir,
                                    ["writeback_delay=0", "ConnectTimeout=3"]))
    want = tree_of(150, 7)
    stop = threading.Event()
    resets = [0]

    def resetter():
        while not stop.wait(0.5):
            proxy.reset()
            resets[0] += 1
    t = threading.Thread(target=resetter, daemon=True)
    t.start()
    _, t_copy = timed(lambda: write_tree(mnt.guest(), want))
    time.sleep(3)                       # more resets while it flushes
    stop.set()
    t.join()
    t0 = time.monotonic()
    mnt.flush()
    timing("reset every 0.5 s: copy of 150 files took", "%.2f s (%d resets)" %
           (t_copy, resets[0]))
    timing("reset every 0.5 s: on the host after the resets stopped",
           "%.1f s" % (time.monotonic() - t0))
    timing("reset every 0.5 s: connections through the proxy", str(proxy.accepted))
    check_tree(mnt.host(), want)
    # the mount did go through the proxy, and redialed after resets
    assert proxy.accepted >= 2, proxy.accepted


class OwnServer:
    """A host server of the test's own, of the session's kind: an sshd
    (sftp, and agent-ssh with the agent run through it) or a
    hostshare-agent on a listener like the session's.  stop() takes it
    away as a host going down does: the listener and every session, by
    PID; restart() brings it back on the same port or socket."""

    def __init__(self, host_server, test_dir):
        if isinstance(host_server, Agent):
            # a short folder: a unix socket path holds 108 bytes
            self.agent = Agent(os.path.join(test_dir, "ag"), test_dir,
                               listen=host_server.listen).start()
            self.sshd = None
            self.view = self.agent
        else:
            self.agent = None
            self.sshd = Sshd(os.path.join(test_dir, "own-sshd")).start()
            self.view = AgentOverSsh(self.sshd) \
                if isinstance(host_server, AgentOverSsh) else self.sshd
        self.kind = "hostshare-agent" if self.agent else "sshd"

    def stop(self):
        if self.agent:
            self.agent.stop()      # one process: its sessions are threads
            return
        # the listener and every session it forked (with -o agent, the
        # agent --stdio under a session ends with its stdin)
        kids = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                _ppid(int(p)) == self.sshd.pid]
        self.sshd.stop()
        for p in kids:
            try:
                os.kill(p, 9)
            except OSError:
                pass

    def restart(self):
        (self.agent or self.sshd).restart()

    def cleanup(self):
        from harness import pid_alive
        if self.agent:
            self.agent.stop()
        elif self.sshd.pid is not None and pid_alive(self.sshd.pid):
            self.sshd.stop()


@pytest.mark.timeout(300)
def test_host_server_stopped_and_restarted(hostshare_only, host_server, test_dir,
                                           mount_factory, timing):
    """The host server (sshd, or the hostshare-agent) goes away (sessions
    killed, port closed) in the middle of a copy and comes back on the
    same port 8 s later: the copy goes on from the cache, the link
    reconnects by itself, and everything arrives."""
    own = OwnServer(host_server, test_dir)
    try:
        mnt = mount_factory(options=["writeback_delay=0", "ConnectTimeout=2",
                                     "ServerAliveInterval=1"], sshd=own.view)
        want = tree_of(120, 11)
        state = {}

        def during(k):
            if k == 40:
                own.stop()
                state["down"] = time.monotonic()
        _, t_copy = timed(lambda: write_tree(mnt.guest(), want, during))
        end = time.monotonic() + 10         # keepalive: the link notices
        while mnt.status()["link"] == "connected" and time.monotonic() < end:
            time.sleep(0.2)
        st = mnt.status()
        timing("%s down: copy of 120 files took" % own.kind, "%.2f s" % t_copy)
        timing("%s down: link state during the outage" % own.kind, "%s after %.1f s" %
               (st["link"], time.monotonic() - state["down"]))
        assert st["link"] in ("reconnecting", "offline"), st
        time.sleep(max(0, 8 - (time.monotonic() - state["down"])))
        own.restart()
        t0 = time.monotonic()
        mnt.flush()
        timing("%s back: everything on the host after" % own.kind,
               "%.1f s" % (time.monotonic() - t0))
        assert mnt.status()["link"] == "connected"
        check_tree(mnt.host(), want)
        assert mnt.unmount() == 0
    finally:
        own.cleanup()


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


@pytest.mark.timeout(240)
def test_slow_link_write_back(hostshare_only, proxy, host_server, test_dir, mount_factory,
                              timing):
    """A link capped at 2 MiB/s: copying 8 MiB in returns at disk speed
    (write-back), the flush takes the link's time, and the bytes arrive."""
    mnt = mount_factory(**via_proxy(proxy, host_server, test_dir, ["writeback_delay=0"]))
    proxy.rate_bps = 2 << 20
    data = os.urandom(8 * MIB)
    _, t_write = timed(lambda: write(mnt.guest("big"), data))
    t0 = time.monotonic()
    mnt.flush()
    t_flush = time.monotonic() - t0
    timing("2 MiB/s link: copy of 8 MiB returned after", "%.2f s" % t_write)
    timing("2 MiB/s link: on the host after", "%.1f s more" % t_flush)
    assert t_write < 2.0, "the copy waited for the slow link"
    assert t_write + t_flush >= 3.0, "8 MiB crossed a 2 MiB/s link too fast: cap broken?"
    assert read(mnt.host("big")) == data
