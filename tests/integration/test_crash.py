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
