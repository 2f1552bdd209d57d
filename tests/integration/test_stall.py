# SPDX-License-Identifier: MIT
"""The figures of "never hang": a 60 s stall of the link (sockets open,
nothing moves; the fault proxy sits in front of sshd or the agent) in the middle of copying a large tree in.  A prober keeps
doing what a user does to cached files - stat, ls of cached folders,
reading cached files, writing new files - and the test prints the longest
any of them took, how long an uncached read took to fail, whether the copy
finished during the stall, and, once the link is back and flushed, that
the host tree equals the source byte for byte.

Run with --mounter sshfs it measures sshfs in the same stall (how long
ls and stat block) and asserts nothing about it.  HS_STALL_S shortens or
lengthens the stall (default 60)."""

import os
import shutil
import subprocess
import threading
import time

import pytest

from harness import manifest_diff, tree_manifest, via_proxy

STALL_S = float(os.environ.get("HS_STALL_S", "60"))





def make_source(root):
    """A tree of ~3,000 files (a copy of /usr/include's largest parts) plus
    a few MiB-sized files, built once per test."""
    src = os.path.join(root, "src")
    os.makedirs(src)
    for sub in ("linux", "x86_64-linux-gnu", "c++"):
        p = os.path.join("/usr/include", sub)
        if os.path.isdir(p):
            shutil.copytree(p, os.path.join(src, sub), symlinks=True)
    os.makedirs(os.path.join(src, "blobs"))
    for i in range(8):
        with open(os.path.join(src, "blobs", "b%d" % i), "wb") as f:
            f.write(os.urandom((2 << 20) + i))
    return src


class Prober(threading.Thread):
    """Does cached work in a loop and records how long each kind took."""

    def __init__(self, mnt):
        super().__init__(daemon=True)
        self.mnt = mnt
        self.worst = {}
        self.count = 0
        self.errors = []
        self.stop = threading.Event()

    def timed(self, kind, fn):
        t0 = time.monotonic()
        try:
            fn()
        except OSError as e:
            self.errors.append("%s: %s" % (kind, e))
        dt = time.monotonic() - t0
        self.worst[kind] = max(self.worst.get(kind, 0), dt)
        self.count += 1

    def run(self):
        g = self.mnt.guest
        i = 0
        while not self.stop.is_set():
            self.timed("stat", lambda: [os.stat(g("cached", "f%d" % k)) for k in range(20)])
            self.timed("ls", lambda: os.listdir(g("cached")))
            self.timed("read", lambda: open(g("cached", "big"), "rb").read())
            self.timed("write new", lambda: open(g("new-%d" % i), "wb").write(b"n" * 65536))
            i += 1
            time.sleep(0.05)


def run_copy(src, dst, out):
    t0 = time.monotonic()
    cp = subprocess.run(["cp", "-a", src, dst], capture_output=True, text=True)
    out["rc"] = cp.returncode
    out["err"] = cp.stderr[-500:]
    out["took"] = time.monotonic() - t0


@pytest.mark.timeout(600)
def test_stall_during_tree_copy(mounter, proxy, host_server, test_dir, mount_factory,
                                timing):
    src = make_source(test_dir)
    opts = ["op_timeout=5", "ConnectTimeout=3"] if mounter == "hostshare" else \
        ["ServerAliveInterval=15", "ServerAliveCountMax=3"]
    mnt = mount_factory(**via_proxy(proxy, host_server, test_dir, opts), mount=False)
    with open(mnt.host("cold"), "wb") as f:
        f.write(os.urandom(1 << 20))           # on the host, never read
    mnt.mount()
    os.mkdir(mnt.guest("cached"))
    for k in range(20):
        with open(mnt.guest("cached", "f%d" % k), "wb") as f:
            f.write(b"%d\n" % k * 100)
    with open(mnt.guest("cached", "big"), "wb") as f:
        f.write(os.urandom(4 << 20))
    os.stat(mnt.guest("cold"))
    mnt.flush()

    copy = {}
    copier = threading.Thread(target=run_copy, args=(src, mnt.guest("tree"), copy),
                              daemon=True)
    copier.start()
    time.sleep(0.5)                            # the copy is under way
    proxy.stall()
    t_stall = time.monotonic()
    prober = Prober(mnt)
    prober.start()

    # an uncached read must fail, in bounded time
    t0 = time.monotonic()
    cold = {}

    def cold_read():
        try:
            with open(mnt.guest("cold"), "rb") as f:
                f.read()
            cold["result"] = "read"
        except OSError as e:
            cold["result"] = e.strerror
        cold["took"] = time.monotonic() - t0
    reader = threading.Thread(target=cold_read, daemon=True)
    reader.start()

    copier.join(max(0.0, STALL_S - (time.monotonic() - t_stall)))
    copy_done_in_stall = not copier.is_alive()
    time.sleep(max(0.0, STALL_S - (time.monotonic() - t_stall)))
    prober.stop.set()
    proxy.resume()
    t_resume = time.monotonic()
    prober.join(120)
    reader.join(120)
    copier.join(300)

    for kind in ("stat", "ls", "read", "write new"):
        timing("%.0f s stall: longest %s" % (STALL_S, kind),
               "%.3f s" % prober.worst.get(kind, float("nan")))
    timing("%.0f s stall: cached operations done" % STALL_S, str(prober.count))
    timing("%.0f s stall: uncached read" % STALL_S,
           "%s after %.2f s" % (cold.get("result"), cold.get("took", float("nan"))))
    timing("%.0f s stall: the tree copy" % STALL_S,
           "finished in %.1f s, %s the stall" % (copy.get("took", float("nan")),
                                                 "during" if copy_done_in_stall else "after"))

    if mounter != "hostshare":
        # sshfs: figures only (its connection may not survive the stall)
        ok = copy.get("rc") == 0 and os.path.isdir(mnt.host("tree")) and not \
            manifest_diff(tree_manifest(src, mtimes=False),
                          tree_manifest(mnt.host("tree"), mtimes=False))
        timing("%.0f s stall: the host tree equals the source" % STALL_S,
               "yes" if ok else "no (copy exit %s: %s)" % (copy.get("rc"),
                                                            copy.get("err", "")[-120:]))
        return
    mnt.flush(timeout=300)
    timing("%.0f s stall: on the host after the link came back" % STALL_S,
           "%.1f s" % (time.monotonic() - t_resume))
    assert copy.get("rc") == 0, copy
    diff = manifest_diff(tree_manifest(src, mtimes=False),
                         tree_manifest(mnt.host("tree"), mtimes=False))
    assert not diff, diff
    assert not prober.errors, prober.errors[:5]
    assert copy_done_in_stall, "the copy waited on the stalled link"
    for kind, worst in prober.worst.items():
        # the target is 0.1 s; CI machines are noisy, so the suite allows more
        assert worst < 1.0, "%s took %.2f s during the stall" % (kind, worst)
    assert cold.get("result") != "read"
    assert cold["took"] < 5 + 3 + 1.5, "the uncached read outlived op_timeout"
