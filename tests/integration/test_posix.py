# SPDX-License-Identifier: MIT
"""POSIX behaviour through the mount, written from the Linux man pages of
each call.  Every test checks what the guest sees and then, after
mnt.flush(), what landed on the host."""

import ctypes
import errno
import os
import stat
import tempfile
import time

import pytest

from harness import sha256_file


# ---------------------------------------------------------------- helpers

def put(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def get(path):
    with open(path, "rb") as f:
        return f.read()


def expect_errno(allowed, fn, *args, **kw):
    """Calls fn and requires an OSError whose errno is in @allowed;
    returns that errno."""
    if isinstance(allowed, int):
        allowed = (allowed,)
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    got = ei.value.errno
    assert got in allowed, "%s: expected %s, got %s (%s)" % (
        getattr(fn, "__name__", fn), "/".join(errno.errorcode[e] for e in allowed),
        errno.errorcode.get(got, got), ei.value)
    return got


_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1


def renameat2(old, new, flags):
    r = _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new),
                        ctypes.c_uint(flags))
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), old, None, new)


def listing(path):
    names = os.listdir(path)
    assert len(names) == len(set(names)), "duplicate names in %s: %r" % (path, names)
    return sorted(names)


# ------------------------------------------------------------ create/write

def test_create_write_read(mnt):
    data = os.urandom(300 * 1024 + 17)
    put(mnt.guest("f"), data)
    assert os.stat(mnt.guest("f")).st_size == len(data)
    assert get(mnt.guest("f")) == data
    # partial reads at odd offsets
    with open(mnt.guest("f"), "rb") as f:
        f.seek(4093)
        assert f.read(10000) == data[4093:14093]
    mnt.flush()
    assert get(mnt.host("f")) == data
    assert os.stat(mnt.host("f")).st_size == len(data)


def test_append(mnt):
    put(mnt.guest("a"), b"first\n")
    put(mnt.guest("a"), b"second\n", "ab")
    fd = os.open(mnt.guest("a"), os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)            # O_APPEND ignores the offset
    os.write(fd, b"third\n")
    os.close(fd)
    want = b"first\nsecond\nthird\n"
    assert get(mnt.guest("a")) == want
    mnt.flush()
    assert get(mnt.host("a")) == want


def test_truncate_grow_and_shrink(mnt):
    data = os.urandom(10000)
    put(mnt.guest("t"), data)
    os.truncate(mnt.guest("t"), 20000)                   # grow: zeros
    assert os.stat(mnt.guest("t")).st_size == 20000
    assert get(mnt.guest("t")) == data + bytes(10000)
    with open(mnt.guest("t"), "r+b") as f:               # shrink via fd
        os.ftruncate(f.fileno(), 3000)
        assert os.fstat(f.fileno()).st_size == 3000
    assert get(mnt.guest("t")) == data[:3000]
    os.truncate(mnt.guest("t"), 0)
    os.truncate(mnt.guest("t"), 5000)
    assert get(mnt.guest("t")) == bytes(5000)
    put(mnt.guest("u"), data)
    os.truncate(mnt.guest("u"), 4097)                    # not block aligned
    mnt.flush()
    assert get(mnt.host("t")) == bytes(5000)
    assert get(mnt.host("u")) == data[:4097]


def test_open_excl(mount_factory):
    # Host-side files are made before mounting: a change the host makes
    # behind a running mount is only promised within attr_timeout.
    mnt = mount_factory(mount=False)
    put(mnt.host("hostmade"), b"from host")               # known only to the host
    mnt.mount()
    fd = os.open(mnt.guest("x"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"one")
    os.close(fd)
    expect_errno(errno.EEXIST, os.open, mnt.guest("x"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.EEXIST, os.open, mnt.guest("hostmade"),
                 os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.mkdir(mnt.guest("d"))
    expect_errno(errno.EEXIST, os.open, mnt.guest("d"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert get(mnt.guest("x")) == b"one"
    mnt.flush()
    assert get(mnt.host("x")) == b"one"
    assert get(mnt.host("hostmade")) == b"from host"


def test_open_trunc(mnt):
    put(mnt.guest("f"), os.urandom(1 << 20))
    mnt.flush()
    fd = os.open(mnt.guest("f"), os.O_WRONLY | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0
    os.write(fd, b"new content")
    os.close(fd)
    assert get(mnt.guest("f")) == b"new content"
    assert os.stat(mnt.guest("f")).st_size == 11
    with open(mnt.guest("f"), "wb"):                      # O_CREAT|O_TRUNC, no write
        pass
    assert os.stat(mnt.guest("f")).st_size == 0
    put(mnt.guest("g"), b"0123456789")
    put(mnt.guest("g"), b"ab")                            # "w" truncates
    mnt.flush()
    assert get(mnt.host("f")) == b""
    assert get(mnt.host("g")) == b"ab"


def test_sparse_write_at_large_offset(mnt):
    off = 100 * (1 << 20) + 123
    fd = os.open(mnt.guest("sparse"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.pwrite(fd, b"head", 0)
    os.pwrite(fd, b"tail", off)
    os.close(fd)
    size = off + 4
    assert os.stat(mnt.guest("sparse")).st_size == size
    with open(mnt.guest("sparse"), "rb") as f:
        assert f.read(4) == b"head"
        assert f.read(1 << 20) == bytes(1 << 20)          # the hole reads as zeros
        f.seek(50 << 20)
        assert f.read(1 << 20) == bytes(1 << 20)
        f.seek(off - 4096)
        assert f.read() == bytes(4096) + b"tail"
    mnt.flush()
    import hashlib
    h = hashlib.sha256(b"head")
    zeros = bytes(1 << 20)
    left = off - 4
    while left:
        n = min(left, len(zeros))
        h.update(zeros[:n])
        left -= n
    h.update(b"tail")
    assert os.stat(mnt.host("sparse")).st_size == size
    assert sha256_file(mnt.host("sparse")) == h.hexdigest()


def test_many_small_appends(mnt):
    want = bytearray()
    fd = os.open(mnt.guest("log"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    for i in range(3000):
        line = b"line %d %s\n" % (i, b"x" * (i % 37))
        assert os.write(fd, line) == len(line)
        want += line
    os.close(fd)
    for i in range(200):                                  # open/append/close cycles
        line = b"cycle %d\n" % i
        put(mnt.guest("log"), line, "ab")
        want += line
    assert os.stat(mnt.guest("log")).st_size == len(want)
    assert get(mnt.guest("log")) == bytes(want)
    mnt.flush()
    assert get(mnt.host("log")) == bytes(want)


def test_read_file_written_on_host(mount_factory):
    mnt = mount_factory(mount=False)
    data = os.urandom((1 << 20) + 333)
    put(mnt.host("fromhost"), data)
    os.makedirs(mnt.host("hd", "sub"))
    put(mnt.host("hd", "sub", "leaf"), b"leaf data")
    mnt.mount()
    assert os.stat(mnt.guest("fromhost")).st_size == len(data)
    assert get(mnt.guest("fromhost")) == data
    assert get(mnt.guest("hd", "sub", "leaf")) == b"leaf data"
    assert listing(mnt.guest("hd")) == ["sub"]
    assert "fromhost" in listing(mnt.path)
    mnt.flush()
    assert get(mnt.host("fromhost")) == data              # reading changed nothing


# --------------------------------------------------------- directories

def test_mkdir_rmdir(mnt):
    os.mkdir(mnt.guest("d"))
    assert stat.S_ISDIR(os.stat(mnt.guest("d")).st_mode)
    expect_errno(errno.EEXIST, os.mkdir, mnt.guest("d"))
    put(mnt.guest("d", "f"), b"x")
    expect_errno(errno.ENOTEMPTY, os.rmdir, mnt.guest("d"))
    expect_errno(errno.ENOTDIR, os.rmdir, mnt.guest("d", "f"))
    expect_errno(errno.ENOENT, os.rmdir, mnt.guest("missing"))
    expect_errno(errno.ENOENT, os.mkdir, mnt.guest("missing", "sub"))
    expect_errno(errno.ENOTDIR, os.mkdir, mnt.guest("d", "f", "sub"))
    os.mkdir(mnt.guest("d", "nested"))
    os.mkdir(mnt.guest("gone"))
    os.rmdir(mnt.guest("gone"))
    expect_errno(errno.ENOENT, os.stat, mnt.guest("gone"))
    mnt.flush()
    assert sorted(os.listdir(mnt.host("d"))) == ["f", "nested"]
    assert not os.path.lexists(mnt.host("gone"))
    os.unlink(mnt.guest("d", "f"))
    os.rmdir(mnt.guest("d", "nested"))
    os.rmdir(mnt.guest("d"))
    mnt.flush()
    assert not os.path.lexists(mnt.host("d"))
    assert listing(mnt.path) == []


def test_unlink(mnt):
    os.mkdir(mnt.guest("dir"))
    put(mnt.guest("f"), b"data")
    expect_errno(errno.EISDIR, os.unlink, mnt.guest("dir"))
    expect_errno(errno.ENOENT, os.unlink, mnt.guest("missing"))
    expect_errno(errno.ENOTDIR, os.unlink, mnt.guest("f", "x"))
    mnt.flush()
    assert os.path.exists(mnt.host("f"))
    os.unlink(mnt.guest("f"))
    expect_errno(errno.ENOENT, os.stat, mnt.guest("f"))
    expect_errno(errno.ENOENT, os.unlink, mnt.guest("f"))
    mnt.flush()
    assert not os.path.lexists(mnt.host("f"))
    assert os.path.isdir(mnt.host("dir"))


def test_readdir_lists_exactly(mnt):
    names = {"plain", "with space", "ünïcödé", ".hidden", "a" * 200, "x.y.z",
             "dir", "link"}
    for n in names - {"dir", "link"}:
        put(mnt.guest(n), n.encode())
    os.mkdir(mnt.guest("dir"))
    os.symlink("plain", mnt.guest("link"))
    assert listing(mnt.path) == sorted(names)
    kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink())
             for e in os.scandir(mnt.path)}
    assert kinds["dir"] == (True, False)
    assert kinds["link"] == (False, True)
    assert kinds["plain"] == (False, False)
    # a big folder: listing spans several readdir replies
    os.mkdir(mnt.guest("big"))
    many = {"entry-%04d-%s" % (i, "y" * (i % 50)) for i in range(1500)}
    for n in many:
        put(mnt.guest("big", n), b"")
    assert listing(mnt.guest("big")) == sorted(many)
    os.unlink(mnt.guest("plain"))
    os.unlink(mnt.guest("big", "entry-0007-" + "y" * 7))
    names.discard("plain")
    many.discard("entry-0007-" + "y" * 7)
    assert listing(mnt.path) == sorted(names | {"big"})
    assert listing(mnt.guest("big")) == sorted(many)
    mnt.flush()
    assert listing(mnt.host()) == sorted(names | {"big"})
    assert listing(mnt.host("big")) == sorted(many)
    assert os.readlink(mnt.host("link")) == "plain"


# --------------------------------------------------------------- rename

def test_rename_plain(mnt):
    put(mnt.guest("a"), b"content of a")
    os.rename(mnt.guest("a"), mnt.guest("b"))
    expect_errno(errno.ENOENT, os.stat, mnt.guest("a"))
    assert get(mnt.guest("b")) == b"content of a"
    os.mkdir(mnt.guest("sub"))
    os.rename(mnt.guest("b"), mnt.guest("sub", "c"))        # into another folder
    assert get(mnt.guest("sub", "c")) == b"content of a"
    expect_errno(errno.ENOENT, os.rename, mnt.guest("nope"), mnt.guest("x"))
    mnt.flush()
    assert listing(mnt.host()) == ["sub"]
    assert get(mnt.host("sub", "c")) == b"content of a"


def test_rename_over_existing_file(mnt):
    put(mnt.guest("a"), b"AAAA")
    put(mnt.guest("b"), b"B")
    mnt.flush()
    os.rename(mnt.guest("a"), mnt.guest("b"))
    assert get(mnt.guest("b")) == b"AAAA"
    assert listing(mnt.path) == ["b"]
    mnt.flush()
    assert listing(mnt.host()) == ["b"]
    assert get(mnt.host("b")) == b"AAAA"


def test_rename_directory(mnt):
    os.makedirs(mnt.guest("d1", "inner"))
    put(mnt.guest("d1", "inner", "f"), b"deep")
    put(mnt.guest("d1", "g"), b"shallow")
    os.rename(mnt.guest("d1"), mnt.guest("d2"))
    expect_errno(errno.ENOENT, os.stat, mnt.guest("d1"))
    assert get(mnt.guest("d2", "inner", "f")) == b"deep"
    assert get(mnt.guest("d2", "g")) == b"shallow"
    put(mnt.guest("d2", "inner", "after"), b"written after the rename")
    mnt.flush()
    assert listing(mnt.host()) == ["d2"]
    assert get(mnt.host("d2", "inner", "f")) == b"deep"
    assert get(mnt.host("d2", "inner", "after")) == b"written after the rename"


def test_rename_dir_over_empty_dir(mnt):
    os.mkdir(mnt.guest("src"))
    put(mnt.guest("src", "f"), b"payload")
    os.mkdir(mnt.guest("dst"))
    os.rename(mnt.guest("src"), mnt.guest("dst"))
    assert listing(mnt.path) == ["dst"]
    assert get(mnt.guest("dst", "f")) == b"payload"
    mnt.flush()
    assert listing(mnt.host()) == ["dst"]
    assert get(mnt.host("dst", "f")) == b"payload"


@pytest.mark.sshfs_deviation("SFTP reports a non-empty target as a generic failure (EPERM)")
def test_rename_dir_onto_nonempty_dir(mnt):
    os.mkdir(mnt.guest("src"))
    put(mnt.guest("src", "s"), b"s")
    os.mkdir(mnt.guest("dst"))
    put(mnt.guest("dst", "d"), b"d")
    expect_errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, mnt.guest("src"), mnt.guest("dst"))
    assert listing(mnt.guest("src")) == ["s"]
    assert listing(mnt.guest("dst")) == ["d"]
    mnt.flush()
    assert listing(mnt.host("src")) == ["s"]
    assert listing(mnt.host("dst")) == ["d"]


def test_rename_type_mismatch(mnt):
    put(mnt.guest("file"), b"f")
    os.mkdir(mnt.guest("dir"))
    expect_errno(errno.EISDIR, os.rename, mnt.guest("file"), mnt.guest("dir"))
    expect_errno(errno.ENOTDIR, os.rename, mnt.guest("dir"), mnt.guest("file"))
    assert get(mnt.guest("file")) == b"f"
    assert os.path.isdir(mnt.guest("dir"))
    mnt.flush()
    assert get(mnt.host("file")) == b"f"
    assert os.path.isdir(mnt.host("dir"))


@pytest.mark.sshfs_deviation("sshfs rejects every renameat2 flag with EINVAL")
def test_rename_noreplace(mnt):
    put(mnt.guest("a"), b"A")
    put(mnt.guest("b"), b"B")
    expect_errno(errno.EEXIST, renameat2, mnt.guest("a"), mnt.guest("b"), RENAME_NOREPLACE)
    assert get(mnt.guest("a")) == b"A"
    assert get(mnt.guest("b")) == b"B"
    renameat2(mnt.guest("a"), mnt.guest("c"), RENAME_NOREPLACE)
    assert listing(mnt.path) == ["b", "c"]
    mnt.flush()
    assert listing(mnt.host()) == ["b", "c"]
    assert get(mnt.host("b")) == b"B"
    assert get(mnt.host("c")) == b"A"


def test_rename_across_mounts_is_exdev(mnt):
    put(mnt.guest("inside"), b"inside")
    with tempfile.TemporaryDirectory() as outside:
        put(os.path.join(outside, "o"), b"outside")
        expect_errno(errno.EXDEV, os.rename, mnt.guest("inside"), os.path.join(outside, "x"))
        expect_errno(errno.EXDEV, os.rename, os.path.join(outside, "o"), mnt.guest("o"))
        assert get(os.path.join(outside, "o")) == b"outside"
        assert not os.path.lexists(os.path.join(outside, "x"))
    assert listing(mnt.path) == ["inside"]
    mnt.flush()
    assert listing(mnt.host()) == ["inside"]


# ----------------------------------------------------- links and metadata

def test_symlink_readlink(mnt):
    put(mnt.guest("target.txt"), b"target")
    os.symlink("target.txt", mnt.guest("rel"))
    os.symlink("no-such-target", mnt.guest("dangling"))
    assert os.readlink(mnt.guest("rel")) == "target.txt"
    assert os.readlink(mnt.guest("dangling")) == "no-such-target"
    assert stat.S_ISLNK(os.lstat(mnt.guest("rel")).st_mode)
    assert os.lstat(mnt.guest("rel")).st_size == len("target.txt")
    assert get(mnt.guest("rel")) == b"target"
    expect_errno(errno.ENOENT, os.stat, mnt.guest("dangling"))
    expect_errno(errno.EEXIST, os.symlink, "x", mnt.guest("rel"))
    expect_errno(errno.EINVAL, os.readlink, mnt.guest("target.txt"))
    os.unlink(mnt.guest("rel"))                       # removes the link only
    assert get(mnt.guest("target.txt")) == b"target"
    mnt.flush()
    assert listing(mnt.host()) == ["dangling", "target.txt"]
    assert os.readlink(mnt.host("dangling")) == "no-such-target"


@pytest.mark.sshfs_deviation("readlink of a target that contains '/' fails with EPERM")
def test_symlink_paths(mount_factory):
    mnt = mount_factory(mount=False)
    os.symlink("/another/absolute", mnt.host("hostabs"))
    mnt.mount()
    put(mnt.guest("target.txt"), b"target")
    os.mkdir(mnt.guest("d"))
    os.symlink("../target.txt", mnt.guest("d", "up"))
    os.symlink("/nonexistent/absolute/path", mnt.guest("abs"))
    os.symlink("/", mnt.guest("root"))
    mnt.flush()
    assert os.readlink(mnt.host("d", "up")) == "../target.txt"
    assert os.readlink(mnt.host("abs")) == "/nonexistent/absolute/path"
    assert os.readlink(mnt.host("root")) == "/"
    assert get(mnt.guest("d", "up")) == b"target"
    expect_errno(errno.ENOENT, os.stat, mnt.guest("abs"))
    assert os.readlink(mnt.guest("hostabs")) == "/another/absolute"
    assert os.readlink(mnt.guest("d", "up")) == "../target.txt"
    assert os.readlink(mnt.guest("abs")) == "/nonexistent/absolute/path"
    assert os.readlink(mnt.guest("root")) == "/"


def test_chmod(mnt):
    put(mnt.guest("f"), b"x")
    os.mkdir(mnt.guest("d"))
    os.chmod(mnt.guest("f"), 0o640)
    os.chmod(mnt.guest("d"), 0o700)
    assert stat.S_IMODE(os.stat(mnt.guest("f")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(mnt.guest("d")).st_mode) == 0o700
    mnt.flush()
    assert stat.S_IMODE(os.stat(mnt.host("f")).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(mnt.host("d")).st_mode) == 0o700
    os.chmod(mnt.guest("f"), 0o755)
    with open(mnt.guest("f"), "rb") as fh:                # fchmod on an open file
        os.fchmod(fh.fileno(), 0o604)
    assert stat.S_IMODE(os.stat(mnt.guest("f")).st_mode) == 0o604
    mnt.flush()
    assert stat.S_IMODE(os.stat(mnt.host("f")).st_mode) == 0o604


def test_chown(mnt):
    assert os.geteuid() == 0, "the suite runs as root"
    put(mnt.guest("f"), b"x")
    os.chown(mnt.guest("f"), 1234, 2345)
    s = os.stat(mnt.guest("f"))
    assert (s.st_uid, s.st_gid) == (1234, 2345)
    os.chown(mnt.guest("f"), -1, 3456)                    # -1 keeps the owner
    s = os.stat(mnt.guest("f"))
    assert (s.st_uid, s.st_gid) == (1234, 3456)
    mnt.flush()
    h = os.stat(mnt.host("f"))
    assert (h.st_uid, h.st_gid) == (1234, 3456)


def test_utime(mnt):
    put(mnt.guest("f"), b"x")
    os.mkdir(mnt.guest("d"))
    mtime_ns = 1_500_000_000_123_456_789
    atime_ns = 1_400_000_000_000_000_000
    os.utime(mnt.guest("f"), ns=(atime_ns, mtime_ns))
    os.utime(mnt.guest("d"), ns=(atime_ns, mtime_ns + 10**9))
    s = os.stat(mnt.guest("f"))
    assert int(s.st_mtime) == 1_500_000_000
    assert int(s.st_atime) == 1_400_000_000
    assert int(os.stat(mnt.guest("d")).st_mtime) == 1_500_000_001
    mnt.flush()
    assert int(os.stat(mnt.host("f")).st_mtime) == 1_500_000_000
    assert int(os.stat(mnt.host("d")).st_mtime) == 1_500_000_001
    # utimensat(UTIME_NOW): now, within the clock skew of one machine
    put(mnt.guest("g"), b"y")
    os.utime(mnt.guest("g"), ns=(atime_ns, mtime_ns))
    before = time.time()
    os.utime(mnt.guest("g"))
    assert abs(os.stat(mnt.guest("g")).st_mtime - before) < 5
    mnt.flush()
    assert abs(os.stat(mnt.host("g")).st_mtime - before) < 5


def test_write_updates_mtime(mnt):
    put(mnt.guest("f"), b"x")
    os.utime(mnt.guest("f"), (1_000_000_000, 1_000_000_000))
    put(mnt.guest("f"), b"more", "ab")
    assert abs(os.stat(mnt.guest("f")).st_mtime - time.time()) < 5
    mnt.flush()
    assert abs(os.stat(mnt.host("f")).st_mtime - time.time()) < 30


@pytest.mark.sshfs_deviation("SFTP v3 carries no link count: st_nlink stays 1 after link()")
def test_hard_link(mnt, timing):
    put(mnt.guest("a"), b"shared")
    try:
        os.link(mnt.guest("a"), mnt.guest("b"))
    except OSError as e:
        assert e.errno in (errno.EPERM, errno.ENOTSUP, errno.EMLINK), e
        timing("hard link", "refused with " + errno.errorcode[e.errno])
        assert listing(mnt.path) == ["a"]
        mnt.flush()
        assert listing(mnt.host()) == ["a"]
        return
    nlink = os.stat(mnt.guest("a")).st_nlink
    timing("hard link", "link() succeeded, st_nlink %d" % nlink)
    assert nlink == 2
    assert os.stat(mnt.guest("b")).st_nlink == 2
    assert get(mnt.guest("b")) == b"shared"
    mnt.flush()
    assert get(mnt.host("b")) == b"shared"
    assert os.stat(mnt.host("a")).st_ino == os.stat(mnt.host("b")).st_ino
    os.unlink(mnt.guest("a"))
    assert os.stat(mnt.guest("b")).st_nlink == 1
    assert get(mnt.guest("b")) == b"shared"


def test_mknod_refused(mnt):
    bad = (errno.EPERM, errno.ENOTSUP, errno.EACCES)
    expect_errno(bad, os.mkfifo, mnt.guest("fifo"))
    expect_errno(bad, os.mknod, mnt.guest("null"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    assert listing(mnt.path) == []
    mnt.flush()
    assert listing(mnt.host()) == []


def test_statvfs(mnt):
    v = os.statvfs(mnt.path)
    assert v.f_blocks > 0
    assert v.f_bsize > 0 and v.f_frsize > 0
    assert 0 < v.f_bavail <= v.f_bfree <= v.f_blocks
    assert v.f_namemax >= 255
    total = v.f_blocks * v.f_frsize
    free = v.f_bavail * v.f_frsize
    assert total > 64 << 20, "total size %d is implausibly small" % total
    assert free > 16 << 20, "free space %d is implausibly small" % free


# ------------------------------------------------------- open-file cases

@pytest.mark.sshfs_deviation("libfuse's hide-on-unlink shows a .fuse_hidden file while it is open")
def test_unlink_open_file(mnt):
    put(mnt.guest("keep"), b"keep")
    fd = os.open(mnt.guest("victim"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"before unlink;")
        os.unlink(mnt.guest("victim"))
        expect_errno(errno.ENOENT, os.stat, mnt.guest("victim"))
        assert listing(mnt.path) == ["keep"]
        os.write(fd, b"after unlink")
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"before unlink;after unlink"
        assert os.fstat(fd).st_size == 26
    finally:
        os.close(fd)
    assert listing(mnt.path) == ["keep"]
    # a new file under the old name is a different file
    put(mnt.guest("victim"), b"reborn")
    assert get(mnt.guest("victim")) == b"reborn"
    mnt.flush()
    assert listing(mnt.host()) == ["keep", "victim"]
    assert get(mnt.host("victim")) == b"reborn"


# ------------------------------------------------------------ daemon mode

def test_daemon_mode_ready_on_return(mount_factory, mounter):
    """Users run the command without -f: it must return 0 only once the
    mount answers, so an immediate `ls` works."""
    host_dir = mount_factory.host_dir
    put(os.path.join(host_dir, "already-there"), b"hello")
    m = mount_factory(foreground=False)
    assert m.pid is not None and m.pid != os.getpid()
    assert listing(m.path) == ["already-there"]
    assert get(m.guest("already-there")) == b"hello"
    put(m.guest("new"), b"from guest")
    m.flush()
    assert get(m.host("new")) == b"from guest"
    if mounter == "hostshare":
        assert int(m.status()["pid"]) == m.pid
    status = m.unmount()
    assert status == 0
    assert not m.mounted


def test_dir_nlink(mnt):
    """A folder's link count is 2 plus its subfolders (stat and ls -l)."""
    os.mkdir(mnt.guest("D"))
    assert os.stat(mnt.guest("D")).st_nlink == 2
    os.mkdir(mnt.guest("D", "a"))
    os.mkdir(mnt.guest("D", "b"))
    with open(mnt.guest("D", "f"), "wb"):
        pass
    assert os.stat(mnt.guest("D")).st_nlink == 4
    os.rmdir(mnt.guest("D", "a"))
    assert os.stat(mnt.guest("D")).st_nlink == 3
    assert {e.name: e.stat().st_nlink for e in os.scandir(mnt.guest()) if e.name == "D"} == {"D": 3}


def test_nlink_of_removed_and_replaced_while_open(mnt):
    """A folder removed or replaced by a rename while a descriptor holds it
    open reports 0 links, as a file does (the kernel's own file systems)."""
    for d in ("a", "b", "c"):
        os.mkdir(mnt.guest(d))
    put(mnt.guest("f"), b"f")
    put(mnt.guest("g"), b"g")
    put(mnt.guest("h"), b"h")
    fds = {n: os.open(mnt.guest(n), os.O_RDONLY) for n in ("a", "c", "f", "g")}
    try:
        os.rename(mnt.guest("b"), mnt.guest("a"))   # a replaced
        os.rmdir(mnt.guest("c"))                    # c removed
        os.unlink(mnt.guest("f"))
        os.rename(mnt.guest("h"), mnt.guest("g"))   # g replaced
        links = {n: os.fstat(fd).st_nlink for n, fd in fds.items()}
        assert links == {"a": 0, "c": 0, "f": 0, "g": 0}, links
        assert os.stat(mnt.guest("a")).st_nlink == 2
    finally:
        for fd in fds.values():
            os.close(fd)
    mnt.flush()
    assert sorted(os.listdir(mnt.host())) == ["a", "g"]
    assert get(mnt.host("g")) == b"h"


def test_setgid_folder(mnt):
    """In a setgid folder new files take the folder's group and new
    subfolders its setgid bit too (Linux's rule for its own file systems),
    in the guest and on the host."""
    # a folder the host gave a group of its own
    os.mkdir(mnt.host("team"))
    os.chown(mnt.host("team"), -1, 4242)
    os.chmod(mnt.host("team"), 0o2775)
    st = os.stat(mnt.guest("team"))
    assert st.st_gid == 4242 and st.st_mode & stat.S_ISGID
    put(mnt.guest("team", "f"), b"x")
    os.mkdir(mnt.guest("team", "sub"))
    os.mkdir(mnt.guest("team", "sub", "deeper"))
    for p in ("f", "sub", "sub/deeper"):
        st = os.stat(mnt.guest("team", p))
        assert st.st_gid == 4242, (p, st.st_gid)
        if p != "f":
            assert st.st_mode & stat.S_ISGID, (p, oct(st.st_mode))
    # a folder the guest made setgid
    os.mkdir(mnt.guest("mine"))
    os.chmod(mnt.guest("mine"), 0o2755)
    os.mkdir(mnt.guest("mine", "sub"))
    assert os.stat(mnt.guest("mine", "sub")).st_mode & stat.S_ISGID
    mnt.flush()
    for p in ("f", "sub", "sub/deeper"):
        assert os.stat(mnt.host("team", p)).st_gid == 4242, p
    assert os.stat(mnt.host("team", "sub", "deeper")).st_mode & stat.S_ISGID
    # (a set-id bit the guest sets itself reaches the host over SFTP; the
    # agent keeps none unless its host says --allow-setid)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


UTIME_OMIT = (1 << 30) - 2


def futimens_atime_only(fd, atime_s):
    """futimens(2) that sets atime and leaves mtime (UTIME_OMIT)."""
    ts = (_Timespec * 2)(_Timespec(atime_s, 0), _Timespec(0, UTIME_OMIT))
    if _libc.futimens(fd, ts) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def ctime_rules(d):
    """Which changes move a file's ctime, in folder @d: {change: moved}."""
    out = {}

    def step(name, fn, path, after=None):
        before = os.lstat(path).st_ctime_ns
        time.sleep(0.02)
        fn()
        out[name] = os.lstat(after or path).st_ctime_ns > before

    p, q, ln = (os.path.join(d, n) for n in ("f", "g", "h"))
    put(p, b"x")
    step("chmod", lambda: os.chmod(p, 0o600), p)
    fd = os.open(p, os.O_RDWR)
    try:
        step("futimens atime only", lambda: futimens_atime_only(fd, 1000), p)
        step("futimens both", lambda: os.utime(fd, ns=(2 * 10**9, 3 * 10**9)), p)
        step("fchmod", lambda: os.fchmod(fd, 0o644), p)
        step("write", lambda: os.pwrite(fd, b"y", 0), p)
    finally:
        os.close(fd)
    step("rename", lambda: os.rename(p, q), p, q)
    try:
        step("link", lambda: os.link(q, ln), q)
        step("unlink of a link", lambda: os.unlink(ln), q)
    except PermissionError:
        pass                 # no hard links on this wire (SFTP)
    step("truncate", lambda: os.truncate(q, 0), q)
    os.unlink(q)
    return out


def test_ctime_rules_as_ext4(mnt, test_dir):
    """ctime moves on every attribute change, on rename, link and unlink
    of a link, as on the machine's own disk (taken in the same test), and
    a change through an open descriptor is not undone by its close."""
    ref_dir = os.path.join(test_dir, "local-ref")
    os.mkdir(ref_dir)
    ref = ctime_rules(ref_dir)
    assert all(ref.values()), ref          # the reference itself
    got = ctime_rules(mnt.guest())
    assert got == {k: v for k, v in ref.items() if k in got}, (got, ref)
    put(mnt.guest("k"), b"k")
    fd = os.open(mnt.guest("k"), os.O_RDWR)
    time.sleep(0.02)
    os.fchmod(fd, 0o600)
    changed = os.fstat(fd).st_ctime_ns
    os.close(fd)
    assert os.stat(mnt.guest("k")).st_ctime_ns >= changed, "close undid the ctime"


def test_times_outside_1970_to_2106(mnt, pytestconfig):
    """Times before 1970 and after 2106 are kept in the guest as set; the
    agent carries them to the host as they are, SFTP (32-bit unsigned
    seconds) as the nearest end of its range, never a wrapped date."""
    old, far = -315619200, 7258118400          # 1960-01-01, 2200-01-01
    for name, t in (("old", old), ("far", far)):
        put(mnt.guest(name), b"x")
        os.utime(mnt.guest(name), (t, t))
        st = os.stat(mnt.guest(name))
        assert (int(st.st_mtime), int(st.st_atime)) == (t, t), (name, st)
    mnt.flush()
    sftp = pytestconfig.getoption("--transport") == "sftp"
    for name, t in (("old", old), ("far", far)):
        want = min(max(t, 0), 2**32 - 1) if sftp else t
        assert int(os.stat(mnt.host(name)).st_mtime) == want, name
