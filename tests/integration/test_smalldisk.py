# SPDX-License-Identifier: MIT
"""The guest's disk is finite: a cache on a small file system, with default
options, must not make the share smaller than the host, must give back the
space of deleted data at once, and must never stop a mount when its disk
is full.  Each cache lives on a tmpfs of the test's own; every step says
how long it took and what reached the host."""

import hashlib
import os
import random
import subprocess
import tempfile
import threading
import time

import pytest

from harness import Peak, fs_used, manifest_diff, patterned_file, tree_manifest
from harness import sha256_file as sha_file

MiB = 1 << 20


@pytest.fixture
def hostshare_only(mounter):
    if mounter != "hostshare":
        pytest.skip("sshfs has no cache")


@pytest.fixture
def small_fs(test_dir):
    """small_fs(size_mib): a fresh tmpfs of that size, unmounted after."""
    made = []

    def make(size_mib):
        d = tempfile.mkdtemp(dir=test_dir, prefix="smallfs-")
        subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=%dm,mode=0700" % size_mib, "tmpfs", d], check=True)
        made.append(d)
        return d
    yield make
    for d in made:
        subprocess.run(["umount", "-l", d], check=False)


def write_random(path, size, chunk=MiB):
    """Writes @size random bytes to @path; returns their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            piece = os.urandom(min(chunk, left))
            f.write(piece)
            h.update(piece)
            left -= len(piece)
    return h.hexdigest()


def drop_page_cache():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def rm_and_wait(mnt, fs, base, name, timing):
    """Removes @name from the mount and requires the cache disk @fs back
    within 8 MiB of @base in under a second."""
    t0 = time.monotonic()
    os.unlink(mnt.guest(name))
    while fs_used(fs) - base > 8 * MiB and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    took = time.monotonic() - t0
    timing("space of 100 MiB back after rm %s" % name, "%.2f" % took, "s")
    assert fs_used(fs) - base <= 8 * MiB, "%.1f MiB still used %.1f s after rm" % (
        (fs_used(fs) - base) / MiB, took)
    assert took < 1.0


@pytest.mark.timeout(120)
def test_rm_gives_space_back(hostshare_only, mount_factory, small_fs, timing):
    """Deleting a file frees its cached blocks within a second: a file
    whose upload is still pending, and one already on the host."""
    fs = small_fs(256)
    mnt = mount_factory(options=["cache_dir=" + fs, "writeback_delay=600000"])
    base = fs_used(fs)
    st = mnt.status()
    sv = os.statvfs(fs)
    # the default floor: a tenth of the disk
    assert st["disk_min_free"] == sv.f_blocks * sv.f_frsize // 10, st
    assert abs(st["disk_free"] - sv.f_bavail * sv.f_frsize) < 16 * MiB, st
    write_random(mnt.guest("pending.bin"), 100 * MiB)
    assert fs_used(fs) - base >= 90 * MiB
    rm_and_wait(mnt, fs, base, "pending.bin", timing)

    write_random(mnt.guest("sent.bin"), 100 * MiB)
    mnt.flush()
    assert os.path.getsize(mnt.host("sent.bin")) == 100 * MiB
    rm_and_wait(mnt, fs, base, "sent.bin", timing)
    mnt.flush()
    assert not os.path.exists(mnt.host("sent.bin"))
    assert not os.path.exists(mnt.host("pending.bin"))


@pytest.mark.timeout(180)
def test_mount_on_full_cache_disk(hostshare_only, mount_factory, small_fs, timing):
    """A cache whose file system is 100 % full: the next mount starts,
    serves what is cached and sends what is pending."""
    fs = small_fs(64)
    opts = ["cache_dir=" + fs, "writeback_delay=600000"]
    mnt = mount_factory(options=opts)
    want = write_random(mnt.guest("pending.bin"), 8 * MiB)
    with open(mnt.guest("note.txt"), "w") as f:
        f.write("kept\n")
    assert mnt.unmount() == 0
    assert not os.path.exists(mnt.host("pending.bin"))
    # another program fills the cache's disk to the last block
    filler = os.path.join(fs, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    for chunk in (MiB, 4096):
        try:
            while True:
                os.write(fd, b"\0" * chunk)
        except OSError:
            pass
    os.close(fd)
    assert os.statvfs(fs).f_bavail == 0
    t0 = time.monotonic()
    mnt.mount()
    timing("mount with the cache disk 100 % full", "%.2f" % (time.monotonic() - t0), "s")
    with open(mnt.guest("note.txt")) as f:
        assert f.read() == "kept\n"
    assert sha_file(mnt.guest("pending.bin")) == want
    t0 = time.monotonic()
    mnt.flush()
    timing("pending 8 MiB sent from a full cache disk", "%.2f" % (time.monotonic() - t0), "s")
    assert sha_file(mnt.host("pending.bin")) == want
    assert open(mnt.host("note.txt")).read() == "kept\n"
    cp = mnt.ctl("pending", mnt.path)
    assert cp.returncode == 0, cp.stderr
    os.unlink(filler)


@pytest.mark.timeout(300)
def test_cold_read_larger_than_cache(hostshare_only, mount_factory, small_fs, timing):
    """A host file 4x the cache's disk reads cold, byte-identical, and the
    cache never fills its disk."""
    fs = small_fs(128)
    mnt = mount_factory(options=["cache_dir=" + fs])
    size = 512 * MiB
    want = write_random(mnt.host("big.iso"), size, chunk=4 * MiB)
    drop_page_cache()
    peak = 0
    h = hashlib.sha256()
    t0 = time.monotonic()
    with open(mnt.guest("big.iso"), "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
            peak = max(peak, fs_used(fs))
    took = time.monotonic() - t0
    timing("cold read of 512 MiB through a 128 MiB cache disk",
           "%.2f s, %.0f MiB/s, disk peak %.0f MiB" % (took, size / MiB / took, peak / MiB))
    assert h.hexdigest() == want
    sv = os.statvfs(fs)
    assert peak < sv.f_blocks * sv.f_frsize, "the cache filled its disk"


def cp(src, dst, timing, what):
    t0 = time.monotonic()
    r = subprocess.run(["cp", "-r", src, dst], capture_output=True, text=True)
    took = time.monotonic() - t0
    timing(what, "%.2f s" % took)
    return r, took


@pytest.mark.timeout(900)
def test_copy_larger_than_cache(hostshare_only, mount_factory, small_fs, test_dir,
                                timing):
    """Default options, the cache on a 256 MiB disk: cp of a 1 GiB file
    returns, flush --wait succeeds, the host copy is byte-identical, the
    disk never went below its floor; the file then reads back cold."""
    fs = small_fs(256)
    src = os.path.join(test_dir, "src.bin")
    want = patterned_file(src, 1024 * MiB)
    mnt = mount_factory(options=["cache_dir=" + fs])
    st = mnt.status()
    total = os.statvfs(fs).f_blocks * os.statvfs(fs).f_frsize
    limit = total - st["disk_min_free"]
    with Peak(lambda: fs_used(fs)) as p:
        r, _ = cp(src, mnt.guest("big.bin"), timing, "cp 1 GiB into a 256 MiB cache disk")
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        mnt.flush()
        timing("... and on the host after", "%.2f s more" % (time.monotonic() - t0))
    timing("cache disk peak during the copy", "%.0f MiB of a %.0f MiB limit" %
           (p.peak / MiB, limit / MiB))
    assert p.peak <= limit + 4 * MiB, "the cache went past its disk's floor"
    assert sha_file(mnt.host("big.bin")) == want
    assert mnt.ctl("evict", mnt.path).returncode == 0
    drop_page_cache()
    t0 = time.monotonic()
    assert sha_file(mnt.guest("big.bin")) == want
    timing("cold read of it back", "%.2f s" % (time.monotonic() - t0))
    assert mnt.unmount() == 0


def small_tree(root, files, seed=15):
    """@files small files (0-16 KiB) in 50 folders below @root."""
    rng = random.Random(seed)
    for i in range(files):
        d = os.path.join(root, "d%02d" % (i % 50))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(rng.randbytes(rng.randrange(0, 16384)))


@pytest.mark.timeout(900)
def test_tree_and_big_file_with_cache_size(hostshare_only, mount_factory, test_dir,
                                           timing):
    """cache_size=128M: a 5,000-file tree and a 1 GiB file copied in; the
    cache stays within its size and the host gets both, identical."""
    src = os.path.join(test_dir, "src")
    small_tree(os.path.join(src, "tree"), 5000)
    want = patterned_file(os.path.join(src, "big.bin"), 1024 * MiB)
    mnt = mount_factory(options=["cache_size=128M"])
    with Peak(lambda: mnt.status()["cache_bytes"], every=0.25) as p:
        r, _ = cp(os.path.join(src, "tree"), mnt.guest("tree"), timing,
                  "cp -r of 5,000 files, cache_size=128M")
        assert r.returncode == 0, r.stderr
        r, _ = cp(os.path.join(src, "big.bin"), mnt.guest("big.bin"), timing,
                  "cp of 1 GiB, cache_size=128M")
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        mnt.flush(timeout=600)
        timing("... both on the host after", "%.2f s more" % (time.monotonic() - t0))
    timing("cache peak", "%.0f MiB (cache_size 128 MiB)" % (p.peak / MiB))
    assert p.peak <= 128 * MiB + 16 * MiB, "the cache grew past cache_size"
    diff = manifest_diff(tree_manifest(os.path.join(src, "tree"), mtimes=False),
                         tree_manifest(mnt.host("tree"), mtimes=False))
    assert not diff, diff
    assert sha_file(mnt.host("big.bin")) == want


@pytest.mark.timeout(600)
def test_kill9_during_write_behind(hostshare_only, mount_factory, small_fs, timing):
    """kill -9 while a big file is written behind (staged on the host under
    its temporary name): after a remount every file closed before is on
    the host intact, and no partial file ever appears under a final name."""
    fs = small_fs(256)
    mnt = mount_factory(options=["cache_dir=" + fs])
    closed = {}
    for name in ("a.bin", "b.bin"):
        closed[name] = write_random(mnt.guest(name), 16 * MiB)
    written = [0]
    base = os.urandom(MiB)

    def writer():
        try:
            with open(mnt.guest("big.bin"), "wb") as f:
                while written[0] < 1024 * MiB:
                    f.write(base)
                    written[0] += MiB
        except OSError:
            pass                            # the daemon is gone
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    host = mnt.host()
    t0 = time.monotonic()
    staged = []
    while not staged and time.monotonic() - t0 < 60:
        staged = [n for n in os.listdir(host) if n.startswith(".hs-tmp.big.bin")]
        time.sleep(0.02)
    assert staged, "nothing written behind within 60 s"
    time.sleep(0.3)                          # mid-send
    mnt.kill9()
    t.join(30)
    timing("kill -9 during write-behind", "after %d MiB written, %.1f MiB staged" %
           (written[0] // MiB, sum(os.path.getsize(os.path.join(host, n))
                                   for n in staged) / MiB))
    assert not os.path.exists(mnt.host("big.bin")), "a partial file under its final name"
    t0 = time.monotonic()
    mnt.mount()
    mnt.flush(timeout=300)
    timing("remount and flush after the kill", "%.2f s" % (time.monotonic() - t0))
    for name, want in closed.items():
        assert sha_file(mnt.host(name)) == want, name
    left = sorted(os.listdir(host))
    assert [n for n in left if n.startswith(".hs-tmp.")] == [], left
    if os.path.exists(mnt.host("big.bin")):
        # the file open at the kill: what the guest has now, all of it
        assert sha_file(mnt.host("big.bin")) == sha_file(mnt.guest("big.bin"))
    assert mnt.unmount() == 0
