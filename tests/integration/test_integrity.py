# SPDX-License-Identifier: MIT
"""Random-operation data integrity: a seeded stream of writes at random
offsets and sizes, truncates (shrink and grow), appends, renames, unlinks
and re-creations over a handful of files, checked after every step against
an in-memory model through the mount, and on the host after each flush.
Midway the mount is unmounted and mounted again with the same cache (and,
for hostshare, once with nothing flushed before the unmount, and once after
a SIGKILL of the daemon), so the journal's replay is part of what is
checked."""

import os
import random

import pytest

NAMES = ["a", "b", "c", "d/e", "d/f"]
MAXSIZE = 3 << 20


def check_guest(mnt, model):
    for name, data in model.items():
        with open(mnt.guest(name), "rb") as f:
            got = f.read()
        assert len(got) == len(data), "%s: size %d, want %d" % (name, len(got), len(data))
        assert got == bytes(data), "%s: content differs" % name
    for name in NAMES:
        if name not in model:
            assert not os.path.lexists(mnt.guest(name)), name


def check_host(mnt, model):
    mnt.flush()
    for name, data in model.items():
        with open(mnt.host(name), "rb") as f:
            got = f.read()
        assert got == bytes(data), "host %s differs (size %d, want %d)" % (
            name, len(got), len(data))
    for name in NAMES:
        if name not in model:
            assert not os.path.lexists(mnt.host(name)), "host still has " + name


def step(rng, mnt, model, log):
    name = rng.choice(NAMES)
    path = mnt.guest(name)
    op = rng.random()
    log.append("%s op=%.3f sizes=%s" % (name, op, {k: len(v) for k, v in model.items()}))
    if name not in model or op < 0.05:
        data = bytearray(os.urandom(rng.randrange(0, 200000)))
        with open(path, "wb") as f:
            f.write(data)
        model[name] = data
    elif op < 0.55:
        data = model[name]
        off = rng.randrange(0, min(len(data) + 10000, MAXSIZE))
        if rng.random() < 0.3:
            off -= off % 4096          # aligned writes too
        n = rng.choice([1, 100, 4095, 4096, 4097, 65536, 200000])
        buf = os.urandom(n)
        with open(path, "r+b") as f:
            f.seek(off)
            f.write(buf)
        if off > len(data):
            data.extend(b"\0" * (off - len(data)))
        data[off:off + n] = buf
    elif op < 0.7:
        size = rng.randrange(0, MAXSIZE // 2)
        os.truncate(path, size)
        data = model[name]
        if size < len(data):
            del data[size:]
        else:
            data.extend(b"\0" * (size - len(data)))
    elif op < 0.8:
        buf = os.urandom(rng.randrange(1, 30000))
        with open(path, "ab") as f:
            f.write(buf)
        model[name].extend(buf)
    elif op < 0.9:
        other = rng.choice(NAMES)
        if other != name:
            os.rename(path, mnt.guest(other))
            model[other] = model.pop(name)
    else:
        os.unlink(path)
        del model[name]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_operations(mount_factory, mounter, seed, timing):
    rng = random.Random(seed)
    mnt = mount_factory(options=["writeback_delay=0"] if mounter == "hostshare" else [])
    os.mkdir(mnt.guest("d"))
    model = {}
    log = []
    for i in range(400):
        step(rng, mnt, model, log)
        if os.environ.get("HS_TRACE"):
            print(i, log[-1])
        if i % 25 == 0:
            check_guest(mnt, model)
        if i % 100 == 99:
            check_host(mnt, model)
        if i == 199:
            assert mnt.unmount() == 0
            if mounter == "hostshare":
                # this time nothing may reach the host before the remount
                mnt.options = ["writeback_delay=600000"]
            mnt.mount()
            check_guest(mnt, model)
        if i == 259 and mounter == "hostshare":
            assert mnt.unmount() == 0
            mnt.options = ["writeback_delay=0"]
            mnt.mount()
        if i == 329 and mounter == "hostshare":
            # every file is closed: a SIGKILL now must lose nothing
            mnt.kill9()
            mnt.mount()
            check_guest(mnt, model)
    check_guest(mnt, model)
    check_host(mnt, model)
    timing("random operations (seed %d)" % seed, "400 steps, %d files at the end" % len(model))
