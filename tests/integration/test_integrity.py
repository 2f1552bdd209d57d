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


# ------------------------------------------------- trees: folders move too

def tree_snapshot(root):
    """{relative path: bytes or None for a folder} of everything below root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for n in filenames:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def tree_step(rng, mnt, model):
    dirs = [p for p, v in model.items() if v is None]
    files = [p for p, v in model.items() if v is not None]
    parent = rng.choice([""] + dirs)
    new = os.path.join(parent, "n%d" % rng.randrange(8))
    op = rng.random()
    if op < 0.25:
        if new not in model:
            data = os.urandom(rng.randrange(0, 20000))
            with open(mnt.guest(new), "wb") as f:
                f.write(data)
            model[new] = data
    elif op < 0.4:
        if new not in model:
            os.mkdir(mnt.guest(new))
            model[new] = None
    elif op < 0.55 and files:
        p = rng.choice(files)
        data = os.urandom(rng.randrange(1, 5000))
        with open(mnt.guest(p), "ab") as f:
            f.write(data)
        model[p] = model[p] + data
    elif op < 0.65 and files:
        p = rng.choice(files)
        os.unlink(mnt.guest(p))
        del model[p]
    elif op < 0.72 and dirs:
        p = rng.choice(dirs)
        if not any(k.startswith(p + "/") for k in model):
            os.rmdir(mnt.guest(p))
            del model[p]
    elif op < 1.0 and (files or dirs):
        src = rng.choice(files + dirs)
        if new == src or new.startswith(src + "/") or new in model:
            return
        os.rename(mnt.guest(src), mnt.guest(new))
        moved = {k: v for k, v in model.items() if k == src or k.startswith(src + "/")}
        for k, v in moved.items():
            del model[k]
            model[new + k[len(src):]] = v


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [11, 12, 13, 14])
@pytest.mark.parametrize("delay", [0, 600000])
def test_random_tree_operations(mount_factory, mounter, seed, delay, timing):
    """delay 0: the flusher races the guest's changes (and listings), on
    four flush connections; delay 600000: everything is replayed from the
    journal at once."""
    rng = random.Random(seed)
    opts = ["writeback_delay=%d" % delay, "attr_timeout=0.2"]
    if delay == 0:
        opts.append("flush_connections=4")
    mnt = mount_factory(options=opts if mounter == "hostshare" else [])
    model = {}
    for i in range(300):
        tree_step(rng, mnt, model)
        if i % 50 == 49:
            assert tree_snapshot(mnt.guest("")) == model, "guest tree differs at step %d" % i
        if i % 100 == 99:
            mnt.flush()
            assert tree_snapshot(mnt.host()) == model, "host tree differs at step %d" % i
        if i == 149 and mounter == "hostshare":
            assert mnt.unmount() == 0
            mnt.mount()
    mnt.flush()
    assert tree_snapshot(mnt.host()) == model
    timing("random tree operations (seed %d)" % seed, "%d names at the end" % len(model))


# ------------------------------------------------- threads at once

@pytest.mark.timeout(300)
def test_concurrent_writers(mnt):
    """Four threads write interleaved, unaligned pieces of one file and of
    a file each, while a fifth keeps reading; the result is exact in the
    guest and on the host."""
    import threading

    size = 2 << 20
    shared = bytearray(size)
    own = {}
    errors = []
    with open(mnt.guest("shared"), "wb") as f:
        f.truncate(size)

    def writer(k):
        try:
            rng = random.Random(k)
            mine = bytearray()
            fd = os.open(mnt.guest("shared"), os.O_WRONLY)
            with open(mnt.guest("own%d" % k), "wb") as f:
                for i in range(200):
                    piece = os.urandom(rng.randrange(1, 9000))
                    f.write(piece)
                    mine += piece
                    # stripes of 1000 bytes belong to writer k
                    off = (i * 4 + k) * 1000 % (size - 1000)
                    os.pwrite(fd, piece[:1000].ljust(1000, b"\1"), off)
                    shared[off:off + 1000] = piece[:1000].ljust(1000, b"\1")
            os.close(fd)
            own[k] = bytes(mine)
        except Exception as e:  # reported below
            errors.append(e)

    def reader(stop):
        while not stop.is_set():
            with open(mnt.guest("shared"), "rb") as f:
                assert len(f.read()) == size

    stop = threading.Event()
    rd = threading.Thread(target=reader, args=(stop,))
    rd.start()
    ts = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    rd.join()
    assert not errors, errors
    with open(mnt.guest("shared"), "rb") as f:
        assert f.read() == bytes(shared)
    mnt.flush()
    with open(mnt.host("shared"), "rb") as f:
        assert f.read() == bytes(shared)
    for k, data in own.items():
        with open(mnt.host("own%d" % k), "rb") as f:
            assert f.read() == data, "own%d" % k


# ------------------------------------------------- the same, on a bad link

@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [21, 22])
def test_random_operations_with_faults(mount_factory, mounter, make_proxy, host_server,
                                       test_dir, seed, timing):
    """The random-operation run with the link reset every 0.15 s and
    stalled for 1 s every 1.2 s, for at least 6 s and 300 steps, while the
    flusher works: 0 mismatches in the guest, and on the host once the
    link is left alone."""
    import threading
    import time

    from harness import via_proxy

    if mounter != "hostshare":
        pytest.skip("sshfs does not survive a reset link")
    proxy = make_proxy()
    stop = threading.Event()
    faults = {"resets": 0, "stalls": 0}

    def saboteur():
        k = 0
        while not stop.wait(0.15):
            k += 1
            if k % 8 == 0:
                proxy.stall()
                faults["stalls"] += 1
                stop.wait(1)
                proxy.resume()
            else:
                proxy.reset()
                faults["resets"] += 1
    try:
        mnt = mount_factory(**via_proxy(proxy, host_server, test_dir, [
            "writeback_delay=0", "op_timeout=3", "ConnectTimeout=2"]))
        os.mkdir(mnt.guest("d"))
        t = threading.Thread(target=saboteur, daemon=True)
        t.start()
        rng = random.Random(seed)
        model = {}
        log = []
        t0 = time.monotonic()
        i = 0
        while i < 300 or time.monotonic() - t0 < 6:
            step(rng, mnt, model, log)
            if i % 25 == 0:
                check_guest(mnt, model)
            i += 1
        check_guest(mnt, model)
        stop.set()
        t.join()
        proxy.resume()
        check_host(mnt, model)
        timing("random operations with faults (seed %d)" % seed,
               "%d steps, %d resets, %d stalls of 1 s, 0 mismatches" %
               (i, faults["resets"], faults["stalls"]))
    finally:
        stop.set()
        proxy.resume()
        proxy.stop()
