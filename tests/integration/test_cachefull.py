# SPDX-License-Identifier: MIT
"""A full cache: with -o cache_size= reached, or the cache's own disk (a
small tmpfs) full, a writer waits while the host takes the data (the
flusher writes behind it) and its copy succeeds; only while the host takes
nothing for op_timeout does a write fail, with ENOSPC, and every write
already acknowledged still reaches the host."""

import errno
import os
import subprocess
import tempfile
import threading
import time

import pytest

from harness import Peak, fs_used, via_proxy

MiB = 1 << 20


@pytest.fixture
def hostshare_only(mounter):
    if mounter != "hostshare":
        pytest.skip("sshfs has no cache to fill")


def fill(path, total, chunk=MiB):
    """Writes random data until @total bytes or ENOSPC; returns what was
    acknowledged and the errno (0: all written)."""
    done = bytearray()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while len(done) < total:
            piece = os.urandom(min(chunk, total - len(done)))
            try:
                n = os.write(fd, piece)
            except OSError as e:
                return bytes(done), e.errno
            done += piece[:n]
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    return bytes(done), 0


def read(path):
    with open(path, "rb") as f:
        return f.read()


def status(mnt):
    return mnt.status()


def cache_bytes(mnt):
    return status(mnt)["cache_bytes"]


@pytest.mark.timeout(180)
def test_cache_size_limit(hostshare_only, mount_factory, timing):
    """Writes past cache_size wait for the flusher, not for the write-back
    delay (10 min here), and succeed; the cache stays within its size."""
    mnt = mount_factory(options=["cache_size=64M", "writeback_delay=600000"])
    t0 = time.monotonic()
    with Peak(lambda: cache_bytes(mnt)) as p:
        a, err = fill(mnt.guest("a.bin"), 40 * MiB)
        assert err == 0
        b, err = fill(mnt.guest("b.bin"), 40 * MiB)
        assert err == 0, "a write past cache_size failed while the host takes data"
    took = time.monotonic() - t0
    timing("80 MiB written through a 64 MiB cache_size", "%.2f s, cache peak %.1f MiB" %
           (took, p.peak / MiB))
    assert p.peak <= 64 * MiB + 16 * MiB, "the cache grew past cache_size"
    # overwriting cached or evicted blocks alike
    with open(mnt.guest("a.bin"), "r+b") as f:
        f.write(b"X" * 4096)
    a = b"X" * 4096 + a[4096:]

    mnt.flush()
    assert read(mnt.host("a.bin")) == a
    assert read(mnt.host("b.bin")) == b, "an acknowledged write did not reach the host"
    c, err = fill(mnt.guest("c.bin"), 50 * MiB)
    assert err == 0, "clean data should have been dropped to make room"
    assert cache_bytes(mnt) <= 64 * MiB + 16 * MiB
    mnt.flush()
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
    assert read(mnt.guest("a.bin")) == a      # read back from the host
    assert read(mnt.host("c.bin")) == c


@pytest.mark.timeout(180)
def test_cache_disk_full(hostshare_only, mount_factory, test_dir, timing):
    """The cache folder on a 48 MiB tmpfs: an 80 MiB file is written through
    it, never a crash, the disk never full, and all of it reaches the host."""
    small = tempfile.mkdtemp(dir=test_dir, prefix="smallfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", small],
                   check=True)
    try:
        mnt = mount_factory(options=["cache_dir=" + small, "writeback_delay=600000"])
        base = fs_used(small)
        t0 = time.monotonic()
        with Peak(lambda: fs_used(small)) as p:
            a, err = fill(mnt.guest("a.bin"), 80 * MiB)
        took = time.monotonic() - t0
        assert err == 0, os.strerror(err)
        assert os.path.getsize(mnt.guest("a.bin")) == len(a)
        timing("80 MiB through a 48 MiB cache disk", "%.2f s, disk peak %.1f MiB" %
               (took, p.peak / MiB))
        assert p.peak < 48 * MiB, "the cache disk filled up"
        mnt.flush()
        assert read(mnt.host("a.bin")) == a, "an acknowledged write did not reach the host"
        assert "was lost" not in mnt.log_text()
        b, err = fill(mnt.guest("b.bin"), 20 * MiB)
        assert err == 0
        mnt.flush()
        assert read(mnt.host("b.bin")) == b
        assert fs_used(small) - base < 40 * MiB
        assert mnt.unmount() == 0
    finally:
        subprocess.run(["umount", "-l", small], check=False)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("limit", ["cache_size", "disk"])
def test_cache_full_link_stalled(hostshare_only, proxy, host_server, test_dir,
                                 mount_factory, limit, timing):
    """The link stalls while a 1 GiB copy fills the cache (cache_size=32M,
    or a 256 MiB cache disk): what is cached still answers at once, the
    writer waits op_timeout for the host and then gets ENOSPC; when the link
    moves, every acknowledged byte reaches the host."""
    opts = ["op_timeout=3", "ConnectTimeout=2", "writeback_delay=600000"]
    small = None
    if limit == "disk":
        small = tempfile.mkdtemp(dir=test_dir, prefix="smallfs-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs",
                        small], check=True)
        opts.append("cache_dir=" + small)
    else:
        opts.append("cache_size=32M")
    try:
        mnt = mount_factory(**via_proxy(proxy, host_server, test_dir, opts))
        warm = os.urandom(MiB)
        with open(mnt.guest("warm"), "wb") as f:
            f.write(warm)
        mnt.flush()
        proxy.stall()
        errs = {}

        def copy():
            t0 = time.monotonic()
            errs["data"], errs["err"] = fill(mnt.guest("big.bin"), 1024 * MiB)
            errs["took"] = time.monotonic() - t0
        t = threading.Thread(target=copy)
        t.start()
        time.sleep(1.5)                     # the cache is full by now
        cached = []
        for what, op in (("cat", lambda: read(mnt.guest("warm")) == warm),
                         ("stat", lambda: os.stat(mnt.guest("warm")).st_size == MiB),
                         ("ls", lambda: "warm" in os.listdir(mnt.path))):
            t0 = time.monotonic()
            assert op(), what
            cached.append((what, time.monotonic() - t0))
        t.join(60)
        assert not t.is_alive(), "the writer hangs on a stalled link"
        data, err = errs["data"], errs["err"]
        for what, took in cached:
            timing("stalled, %s full: %s of a cached file" % (limit, what),
                   "%.3f s" % took)
        timing("stalled, %s full: writer got %s after" % (limit, errno.errorcode.get(err)),
               "%.1f s, %.1f MiB acknowledged" % (errs["took"], len(data) / MiB))
        for what, took in cached:
            assert took < 0.1, "a cached %s waited on the stalled link" % what
        assert err == errno.ENOSPC, err
        assert len(data) >= 8 * MiB
        assert errs["took"] < 3 + 2 + 15, "the writer waited far past op_timeout"
        proxy.resume()
        t0 = time.monotonic()
        mnt.flush()
        timing("stalled, %s full: on the host after the link came back" % limit,
               "%.1f s" % (time.monotonic() - t0))
        assert read(mnt.host("big.bin")) == data, "an acknowledged write was lost"
        assert mnt.unmount() == 0
    finally:
        if small:
            subprocess.run(["umount", "-l", small], check=False)
