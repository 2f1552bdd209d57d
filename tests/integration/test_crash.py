# SPDX-License-Identifier: MIT
"""Nothing lost across a daemon kill (DESIGN.md contract 2): once close()
returns, the data and its journal entry survive SIGKILL of the daemon and
reach the host on the next mount of the same cache; the host never shows a
half-written file under its final name."""

import os

import pytest

from harness import sha256_file

MIB = 1 << 20
HOLD = ["writeback_delay=60000"]   # nothing may be flushed before the kill


@pytest.fixture
def cached(mounter):
    if mounter != "hostshare":
        pytest.skip("sshfs has no cache")


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def host_names(root):
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def check_no_half_files(mnt, want):
    """Every name of @want that exists on the host holds either nothing
    of ours yet or exactly the expected bytes."""
    seen = 0
    for name, digest in want.items():
        p = mnt.host(name)
        if os.path.lexists(p):
            seen += 1
            assert sha256_file(p) == digest, \
                "%s is on the host under its final name but not intact" % name
    return seen


@pytest.mark.timeout(300)
def test_kill9_after_close_loses_nothing(cached, mount_factory, timing):
    mnt = mount_factory(options=HOLD)
    want = {}
    os.mkdir(mnt.guest("d"))
    sizes = [0, 1, 4095, 4096, 4097, 100000, 1 * MIB + 3]
    for i, size in enumerate(sizes):
        name = "f%d" % i if i % 2 else os.path.join("d", "f%d" % i)
        data = os.urandom(size)
        write(mnt.guest(name), data)
        want[name] = sha256_file(mnt.guest(name))
    big = os.urandom(50 * MIB)
    write(mnt.guest("big"), big)
    want["big"] = sha256_file(mnt.guest("big"))
    del big

    mnt.kill9()                         # right after the last close()
    assert not mnt.mounted
    timing("files on host before replay", "%d of %d" % (check_no_half_files(mnt, want),
                                                        len(want)))

    mnt.mount()                         # same cache_dir
    for name, digest in want.items():   # the guest sees everything at once
        assert sha256_file(mnt.guest(name)) == digest, name
    mnt.flush()
    for name, digest in want.items():
        assert sha256_file(mnt.host(name)) == digest, name
    assert host_names(mnt.host()) == set(want) | {"d"}


@pytest.mark.timeout(300)
def test_kill9_replays_overwrite_rename_unlink(cached, mount_factory):
    mnt = mount_factory()
    write(mnt.guest("old"), b"old content " * 1000)
    write(mnt.guest("doomed"), b"to be deleted")
    write(mnt.guest("moved-src"), b"moving")
    mnt.flush()
    assert mnt.unmount() == 0

    mnt.options = list(HOLD)
    mnt.mount()
    new_old = os.urandom(3000)           # shorter than before: must truncate
    write(mnt.guest("old"), new_old)
    os.unlink(mnt.guest("doomed"))
    os.rename(mnt.guest("moved-src"), mnt.guest("moved-dst"))
    write(mnt.guest("fresh"), b"fresh")
    os.rename(mnt.guest("fresh"), mnt.guest("fresh-renamed"))
    mnt.kill9()

    old = open(mnt.host("old"), "rb").read()
    assert old in (b"old content " * 1000, new_old), "host 'old' is a mix of versions"

    mnt.mount()
    mnt.flush()
    assert open(mnt.host("old"), "rb").read() == new_old
    assert open(mnt.host("moved-dst"), "rb").read() == b"moving"
    assert open(mnt.host("fresh-renamed"), "rb").read() == b"fresh"
    assert host_names(mnt.host()) == {"old", "moved-dst", "fresh-renamed"}


@pytest.mark.timeout(600)
def test_kill9_at_random_points(cached, mount_factory, timing):
    """20 rounds: a copy of files of random sizes runs while the daemon is
    SIGKILLed at a random moment (with the flusher idle, busy, or holding
    back); the next mount of the same cache must deliver every file that
    was closed before the kill, byte for byte, and nothing half-written.
    The file open at the kill may arrive as a prefix of what was written
    (the guest had written that much) or not at all."""
    import random
    import threading
    import time

    rng = random.Random(2024)
    mnt = mount_factory()
    closed = {}                          # name -> bytes, closed before a kill
    late = {}                            # name -> bytes, closed as the kill came
    cut = {}                             # name -> bytes written, open at the kill
    kills = 0
    for rnd in range(20):
        mnt.options = ["writeback_delay=%d" % rng.choice([0, 200, 60000])]
        if not mnt.mounted:
            mnt.mount()
        stop = threading.Event()
        progress = {}

        def copier(rnd=rnd):
            i = 0
            while not stop.is_set():
                name = "r%02d-f%03d" % (rnd, i)
                size = rng.choice([0, 100, 5000, 65536, 300000, 2 * MIB + 17])
                data = os.urandom(size)
                progress["open"] = (name, data)
                try:
                    with open(mnt.guest(name), "wb") as f:
                        for off in range(0, max(size, 1), 65536):
                            f.write(data[off:off + 65536])
                        if i % 5 == 4:
                            f.flush()
                            os.fsync(f.fileno())
                except OSError:
                    return                   # the daemon is gone
                # after the kill the lazily detached mountpoint is a plain
                # folder: only what closed before the kill counts
                done_at = time.monotonic()
                progress.pop("open", None)
                if done_at >= kill_at[0]:
                    late[name] = data        # raced the kill: may or may not be kept
                    return
                closed[name] = data
                i += 1
        kill_at = [float("inf")]
        t = threading.Thread(target=copier, daemon=True)
        t.start()
        time.sleep(rng.uniform(0.05, 1.2))
        kill_at[0] = time.monotonic()
        mnt.kill9()
        kills += 1
        stop.set()
        t.join(30)
        if "open" in progress:
            cut[progress["open"][0]] = progress["open"][1]
        # half the rounds remount at once, the others only next round
        if rnd % 2 == 0:
            mnt.mount()

    if not mnt.mounted:
        mnt.mount()
    mnt.flush(timeout=300)
    lost = [n for n, data in closed.items()
            if not os.path.exists(mnt.host(n)) or open(mnt.host(n), "rb").read() != data]
    lost_bytes = sum(len(closed[n]) for n in lost)
    timing("SIGKILL x%d: files closed before a kill" % kills,
           "%d (%.1f MiB)" % (len(closed), sum(map(len, closed.values())) / MIB))
    timing("SIGKILL x%d: closed files lost or damaged" % kills,
           "%d (%d bytes)" % (len(lost), lost_bytes))
    assert not lost, lost[:5]
    for name, data in list(cut.items()) + list(late.items()):
        p = mnt.host(name)
        if os.path.exists(p):
            got = open(p, "rb").read()
            assert data.startswith(got), "%s: not a prefix of what was written" % name
    tmp = [n for n in os.listdir(mnt.host()) if n.startswith(".hs-tmp.")]
    assert not tmp, tmp
    extra = set(os.listdir(mnt.host())) - set(closed) - set(cut) - set(late)
    assert not extra, extra


def _sysctl(name, value=None):
    path = "/proc/sys/vm/" + name
    with open(path) as f:
        old = f.read().strip()
    if value is not None:
        with open(path, "w") as f:
            f.write(str(value))
    return old


@pytest.mark.timeout(300)
def test_power_cut(cached, mount_factory, test_dir, timing):
    """A guest power cut: the cache lives on its own ext4 (a loop device);
    periodic writeback is held off, the daemon is killed, and the disk
    image is copied as it is on the device at that moment - what was not
    written back is lost, as in a power cut.  The next mount, on that
    copy, must deliver every fsync'd file intact; a file that was only
    closed may be lost, but nothing reaches the host half-written."""
    import json
    import subprocess

    img = os.path.join(test_dir, "cachefs.img")
    snap = os.path.join(test_dir, "after-cut.img")
    fs1 = os.path.join(test_dir, "cachefs")
    fs2 = os.path.join(test_dir, "cachefs-after")
    os.makedirs(fs1)
    os.makedirs(fs2)
    with open(img, "wb") as f:
        f.truncate(256 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
    subprocess.run(["mount", "-o", "loop,commit=300", img, fs1], check=True)
    old = {k: _sysctl(k) for k in ("dirty_expire_centisecs", "dirty_writeback_centisecs")}
    synced, closed = {}, {}
    try:
        subprocess.run(["sync", "-f", fs1], check=True)
        _sysctl("dirty_expire_centisecs", 360000)
        _sysctl("dirty_writeback_centisecs", 0)
        mnt = mount_factory(options=["cache_dir=" + fs1, "writeback_delay=600000"])
        os.mkdir(mnt.guest("d"))
        for name, size in (("a", 3 * MIB + 5), ("d/b", 100000), ("c", 0)):
            data = os.urandom(size)
            with open(mnt.guest(name), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            synced[name] = data
        # closed only, then another file's fsync makes their journal rows
        # durable while their data may still be in the page cache
        for name, size in (("early1", MIB + 1), ("d/early2", 20000)):
            data = os.urandom(size)
            write(mnt.guest(name), data)
            closed[name] = data
        with open(mnt.guest("last"), "wb") as f:
            f.write(b"last")
            f.flush()
            os.fsync(f.fileno())
        synced["last"] = b"last"
        for name, size in (("late1", 2 * MIB), ("d/late2", 5000)):
            data = os.urandom(size)
            write(mnt.guest(name), data)
            closed[name] = data
        mnt.kill9()
        # the power goes: the device holds what was written back, no more
        subprocess.run(["cp", "--sparse=always", img, snap], check=True)
    finally:
        for k, v in old.items():
            _sysctl(k, v)
        subprocess.run(["umount", "-l", fs1], check=False)
    subprocess.run(["mount", "-o", "loop", snap, fs2], check=True)
    try:
        after = mount_factory(options=["cache_dir=" + fs2], name="after",
                              cache_dir=os.path.join(test_dir, "unused-cache"))
        for name, data in synced.items():
            with open(after.guest(name), "rb") as f:
                assert f.read() == data, "fsync'd %s changed in the guest" % name
        pending = json.loads(after.ctl("pending", "--json", after.path).stdout)
        lost = [p["path"] for p in pending if p["state"] == "refused"]
        after.flush(check=False)
        for name, data in synced.items():
            with open(after.host(name), "rb") as f:
                assert f.read() == data, "fsync'd %s did not reach the host intact" % name
        kept = 0
        for name, data in closed.items():
            if os.path.exists(after.host(name)):
                with open(after.host(name), "rb") as f:
                    assert f.read() == data, "%s reached the host half-written" % name
                kept += 1
        timing("power cut: fsync'd files on the host intact", "%d of %d" %
               (len(synced), len(synced)))
        timing("power cut: files only closed that survived", "%d of %d (may be lost)" %
               (kept, len(closed)))
        timing("power cut: files whose data the cut took, held back", ", ".join(lost) or "none")
        for p in lost:
            assert not os.path.exists(after.host(p.lstrip("/"))), p
        assert after.unmount() == 0
    finally:
        subprocess.run(["umount", "-l", fs2], check=False)
