# SPDX-License-Identifier: MIT
"""What a program reads is what was written: direct I/O against buffered
readers of the same file.

A database or `qemu -drive cache=none` writes with O_DIRECT (often through
kernel AIO) while other processes read the file through the page cache.
After a direct write has completed, no buffered read by any open (one
already open, or a fresh one) may return the bytes it replaced.  Each test
compares bytes after every completed write, then what reached the host."""

import ctypes
import mmap
import os
import threading
import time

import pytest

BLOCK = 64 * 1024           # one direct write
NBLOCKS = 16                # file of 1 MiB
ROUNDS = 500               # direct writes per test

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_io_setup, SYS_io_destroy, SYS_io_submit, SYS_io_getevents = 206, 207, 209, 208
IOCB_CMD_PWRITE = 1


class Iocb(ctypes.Structure):
    """struct iocb of linux/aio_abi.h (x86-64, little endian)."""
    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
                ("aio_rw_flags", ctypes.c_int32),
                ("aio_lio_opcode", ctypes.c_uint16),
                ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
                ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
                ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32)]


class IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


class Aio:
    """Kernel AIO (io_submit) on one descriptor, one write at a time."""

    def __init__(self):
        self.ctx = ctypes.c_ulong(0)
        if _libc.syscall(SYS_io_setup, 8, ctypes.byref(self.ctx)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "io_setup: " + os.strerror(e))

    def pwrite(self, fd, buf, off):
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        cb = Iocb(aio_lio_opcode=IOCB_CMD_PWRITE, aio_fildes=fd, aio_buf=addr,
                  aio_nbytes=len(buf), aio_offset=off)
        cbp = ctypes.pointer(cb)
        if _libc.syscall(SYS_io_submit, self.ctx, 1, ctypes.byref(cbp)) != 1:
            e = ctypes.get_errno()
            raise OSError(e, "io_submit: " + os.strerror(e))
        ev = IoEvent()
        got = _libc.syscall(SYS_io_getevents, self.ctx, 1, 1,
                            ctypes.byref(ev), None)
        assert got == 1, "io_getevents: %d" % got
        return ev.res

    def close(self):
        _libc.syscall(SYS_io_destroy, self.ctx)


def aligned(data):
    """A page-aligned buffer holding @data (O_DIRECT wants alignment)."""
    m = mmap.mmap(-1, len(data))
    m.write(data)
    return m


def pattern(round_, block):
    return bytes([(round_ * 7 + block) % 251 + 1]) * BLOCK


def run_direct_writer(path, use_aio, timing, label):
    """Writes every block of @path with O_DIRECT, alternating patterns,
    while two threads read it through the page cache (one descriptor kept
    open, one opened per read); after each completed write, a fresh
    open+pread and the kept descriptor must both show the new bytes."""
    with open(path, "wb") as f:
        f.write(b"".join(pattern(0, b) for b in range(NBLOCKS)))
    stop = threading.Event()
    errors = []

    def reader(fresh):
        fd = None if fresh else os.open(path, os.O_RDONLY)
        try:
            while not stop.is_set():
                if fresh:
                    with open(path, "rb") as f:
                        f.read()
                else:
                    os.pread(fd, NBLOCKS * BLOCK, 0)
        except OSError as e:
            errors.append(e)
        finally:
            if fd is not None:
                os.close(fd)

    readers = [threading.Thread(target=reader, args=(fr,)) for fr in (False, True)]
    for t in readers:
        t.start()
    kept = os.open(path, os.O_RDONLY)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    aio = Aio() if use_aio else None
    stale = []
    final = [pattern(0, b) for b in range(NBLOCKS)]
    t0 = time.monotonic()
    try:
        for r in range(1, ROUNDS + 1):
            b = r % NBLOCKS
            want = pattern(r, b)
            buf = aligned(want)
            if aio:
                n = aio.pwrite(fd, buf, b * BLOCK)
            else:
                n = os.pwrite(fd, buf, b * BLOCK)
            buf.close()
            assert n == BLOCK, "direct write returned %d" % n
            final[b] = want
            with open(path, "rb") as f:
                f.seek(b * BLOCK)
                fresh = f.read(BLOCK)
            old = os.pread(kept, BLOCK, b * BLOCK)
            if fresh != want or old != want:
                stale.append((r, b, fresh != want, old != want))
    finally:
        stop.set()
        for t in readers:
            t.join()
        if aio:
            aio.close()
        os.close(fd)
        os.close(kept)
    timing(label, "%.2f" % (time.monotonic() - t0), "s")
    assert not errors, errors
    assert not stale, ("%d of %d completed direct writes read back stale "
                       "(round, block, fresh open stale, open fd stale): %s" %
                       (len(stale), ROUNDS, stale[:8]))
    return b"".join(final)


@pytest.mark.parametrize("use_aio", [True, False], ids=["aio", "sync"])
def test_direct_write_seen_by_buffered_readers(mnt, timing, use_aio):
    expect = run_direct_writer(mnt.guest("db"), use_aio, timing,
                               "%d direct writes with readers" % ROUNDS)
    with open(mnt.guest("db"), "rb") as f:
        assert f.read() == expect
    mnt.flush()
    with open(mnt.host("db"), "rb") as f:
        assert f.read() == expect


def test_direct_read_sees_buffered_write(mnt):
    """An O_DIRECT read sees every completed buffered write."""
    path = mnt.guest("f")
    with open(path, "wb") as f:
        f.write(b"a" * (NBLOCKS * BLOCK))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        with open(path, "r+b", buffering=0) as w:
            for r in range(8):
                data = bytes([ord("b") + r]) * BLOCK
                w.seek(r * BLOCK)
                w.write(data)
                buf = aligned(b"\0" * BLOCK)
                n = os.preadv(fd, [buf], r * BLOCK)
                assert n == BLOCK
                assert buf[:] == data, "direct read %d returned older bytes" % r
                buf.close()
    finally:
        os.close(fd)


def test_mmap_reader_sees_direct_write(mnt):
    """A shared mapping of the file shows a completed direct write."""
    path = mnt.guest("m")
    with open(path, "wb") as f:
        f.write(b"x" * (NBLOCKS * BLOCK))
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        try:
            assert m[:4] == b"xxxx"      # the pages are in the page cache now
            fd = os.open(path, os.O_RDWR | os.O_DIRECT)
            try:
                for r in range(4):
                    want = bytes([ord("A") + r]) * BLOCK
                    buf = aligned(want)
                    assert os.pwrite(fd, buf, r * BLOCK) == BLOCK
                    buf.close()
                    assert m[r * BLOCK:(r + 1) * BLOCK] == want, \
                        "mapping shows older bytes after direct write %d" % r
            finally:
                os.close(fd)
        finally:
            m.close()
