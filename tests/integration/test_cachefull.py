# SPDX-License-Identifier: MIT
"""A full cache: with -o cache_size= reached and nothing clean left to
drop, new writes fail with ENOSPC; every write already acknowledged still
reaches the host; once flushed, clean data is dropped to make room again.
The same when the cache's own disk fills up (a small tmpfs)."""

import errno
import os
import subprocess
import tempfile

import pytest

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


@pytest.mark.timeout(180)
def test_cache_size_limit(hostshare_only, mount_factory, timing):
    mnt = mount_factory(options=["cache_size=64M", "writeback_delay=600000"])
    a, err = fill(mnt.guest("a.bin"), 40 * MiB)
    assert err == 0
    b, err = fill(mnt.guest("b.bin"), 40 * MiB)
    assert err == errno.ENOSPC, "a write past cache_size with nothing clean must fail"
    assert 10 * MiB <= len(b) < 30 * MiB, len(b)
    # overwriting cached blocks needs no room
    with open(mnt.guest("a.bin"), "r+b") as f:
        f.write(b"X" * 4096)
    a = b"X" * 4096 + a[4096:]
    timing("writes acknowledged before ENOSPC", "%d MiB + %.1f MiB" % (40, len(b) / MiB))

    mnt.flush()
    assert read(mnt.host("a.bin")) == a
    assert read(mnt.host("b.bin")) == b, "an acknowledged write did not reach the host"

    # everything is clean now: new data pushes old data out
    c, err = fill(mnt.guest("c.bin"), 50 * MiB)
    assert err == 0, "clean data should have been dropped to make room"
    st = status(mnt)
    assert st["cache_bytes"] <= 64 * MiB + 4 * MiB, st
    mnt.flush()
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
    assert read(mnt.guest("a.bin")) == a      # read back from the host
    assert read(mnt.host("c.bin")) == c


@pytest.mark.timeout(180)
def test_cache_disk_full(hostshare_only, mount_factory, test_dir, timing):
    """The cache folder on a 48 MiB tmpfs: ENOSPC to the writer, never a
    crash, and what was acknowledged reaches the host."""
    small = tempfile.mkdtemp(dir=test_dir, prefix="smallfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs", small],
                   check=True)
    try:
        mnt = mount_factory(options=["cache_dir=" + small, "writeback_delay=600000"])
        a, err = fill(mnt.guest("a.bin"), 80 * MiB)
        assert err == errno.ENOSPC, err
        assert len(a) >= 20 * MiB, len(a)
        # small metadata changes may still fit; the mount keeps answering
        assert os.path.getsize(mnt.guest("a.bin")) == len(a)
        mnt.flush()
        assert read(mnt.host("a.bin")) == a, "an acknowledged write did not reach the host"
        assert "was lost" not in mnt.log_text()
        # once on the host it can be dropped, and there is room again
        cp = mnt.ctl("evict", mnt.path)
        assert cp.returncode == 0, cp.stderr
        b, err = fill(mnt.guest("b.bin"), 20 * MiB)
        assert err == 0
        mnt.flush()
        assert read(mnt.host("b.bin")) == b
        timing("cache disk full", "%.1f MiB acknowledged of 80 MiB, all on the host" %
               (len(a) / MiB))
        assert mnt.unmount() == 0
    finally:
        subprocess.run(["umount", "-l", small], check=False)
