# SPDX-License-Identifier: MIT
"""What a GNOME file manager does to a hostshare mount, through the real
`gio` tool: copy and move files and trees (with progress), save/replace,
trash (the .Trash-UID folder at the top of the mount), list and restore
the trash, filesystem info (free space, type), the mount list, and a copy
cancelled half way.  The bytes are checked on the host side after
`hostsharectl flush --wait`.

gio reaches gvfs (trash://, volume monitors) over a D-Bus session bus:
those commands run under `dbus-run-session`, with HOME and
XDG_RUNTIME_DIR inside the test folder (so the user's own trash and
settings are never touched, and the mount, being below HOME, is one GIO
shows).  Plain file operations run with GIO_USE_VFS=local, as gio then
needs no bus.
"""

import os
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest

import harness
from harness import run, tree_manifest, manifest_diff

pytestmark = [
    pytest.mark.hostshare_only,
    pytest.mark.skipif(shutil.which("gio") is None, reason="gio (libglib2.0-bin) not installed"),
]


@pytest.fixture
def genv(test_dir):
    run_dir = os.path.join(test_dir, "xdg-run")
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    env = dict(os.environ)
    for k in ("DBUS_SESSION_BUS_ADDRESS", "GIO_USE_VFS", "GIO_USE_VOLUME_MONITOR"):
        env.pop(k, None)
    env.update(HOME=test_dir, XDG_RUNTIME_DIR=run_dir,
               XDG_DATA_HOME=os.path.join(test_dir, "xdg-data"),
               XDG_CONFIG_HOME=os.path.join(test_dir, "xdg-config"),
               XDG_CACHE_HOME=os.path.join(test_dir, "xdg-cache"),
               LC_ALL="C.UTF-8")
    return env


def gio(env, *args, bus=False, check=True, timeout=60):
    """Runs `gio ARGS`; with @bus under its own session bus (gvfs)."""
    e = dict(env)
    cmd = ["gio"] + list(args)
    if bus:
        cmd = ["dbus-run-session", "--"] + cmd
    else:
        e["GIO_USE_VFS"] = "local"
    cp = run(cmd, env=e, check=False, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(cmd), cp.returncode,
                                                   cp.stderr[-2000:]))
    return cp


def gio_info(env, path, *flags):
    """`gio info` attributes as a dict of strings."""
    out = gio(env, "info", *flags, path, bus=True).stdout
    attrs = {}
    for line in out.splitlines():
        line = line.strip()
        if "::" in line and ": " in line:
            k, v = line.split(": ", 1)
            attrs[k] = v
    return attrs


def make_tree(root, spec):
    """spec: {relative path: bytes}; folders are created as needed."""
    for rel, data in spec.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


def host_names(m):
    out = []
    for d, dirs, files in os.walk(m.host()):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), m.host()))
    return sorted(out)


def test_gio_copy_move_files_and_trees(mnt, genv, test_dir, timing):
    src = os.path.join(test_dir, "local")
    spec = {
        "tree/a.txt": b"alpha\n",
        "tree/big.bin": os.urandom(3 << 20),
        "tree/sub/b.txt": b"beta\n" * 1000,
        "tree/sub/deeper/c.bin": os.urandom(70000),
        "tree/empty.txt": b"",
        "single.bin": os.urandom(1 << 20),
        "moved-in.txt": b"moved from the local disk\n",
    }
    make_tree(src, spec)
    os.makedirs(os.path.join(src, "tree", "emptydir"))

    # one file, with progress
    t0 = time.monotonic()
    cp = gio(genv, "copy", "-p", os.path.join(src, "single.bin"), mnt.guest("single.bin"))
    timing("gio copy -p 1 MiB", time.monotonic() - t0, "s")
    assert "Transferred" in cp.stdout, cp.stdout

    # a tree the way a file manager copies one: make each folder, copy the
    # files of a folder in one call into it (gio does not recurse itself)
    t0 = time.monotonic()
    for d, dirs, files in os.walk(os.path.join(src, "tree")):
        rel = os.path.relpath(d, src)
        gio(genv, "mkdir", "-p", mnt.guest(rel))
        if files:
            gio(genv, "copy", "-p", *[os.path.join(d, f) for f in sorted(files)],
                mnt.guest(rel))
    timing("gio tree copy (6 files, 5 folders)", time.monotonic() - t0, "s")

    # move within the mount (a rename) and from the local disk (copy+delete)
    gio(genv, "move", mnt.guest("tree"), mnt.guest("tree-moved"))
    gio(genv, "move", os.path.join(src, "moved-in.txt"), mnt.guest("tree-moved", "moved-in.txt"))
    assert not os.path.exists(os.path.join(src, "moved-in.txt"))
    gio(genv, "move", mnt.guest("single.bin"), mnt.guest("tree-moved", "sub", "single.bin"))

    mnt.flush()
    want_root = os.path.join(test_dir, "want")
    make_tree(want_root, {
        "tree-moved/a.txt": spec["tree/a.txt"],
        "tree-moved/big.bin": spec["tree/big.bin"],
        "tree-moved/sub/b.txt": spec["tree/sub/b.txt"],
        "tree-moved/sub/deeper/c.bin": spec["tree/sub/deeper/c.bin"],
        "tree-moved/empty.txt": b"",
        "tree-moved/moved-in.txt": spec["moved-in.txt"],
        "tree-moved/sub/single.bin": spec["single.bin"],
    })
    os.makedirs(os.path.join(want_root, "tree-moved", "emptydir"))
    want = tree_manifest(want_root, mtimes=False)
    got = tree_manifest(mnt.host(), mtimes=False)
    assert want == got, manifest_diff(want, got)
    assert tree_manifest(mnt.guest(), mtimes=False) == want


def test_gio_save_replace(mnt, genv):
    """`gio save` writes to a temporary name and renames it over the old
    file; the host ends with the last content and no temporary files."""
    p = mnt.guest("doc.txt")
    run(["gio", "save", p], env=dict(genv, GIO_USE_VFS="local"),
        stdin=subprocess.DEVNULL)
    assert os.path.getsize(p) == 0
    for i, text in enumerate([b"first version\n", b"second, longer version\n" * 100,
                              b"third\n"]):
        cp = subprocess.run(["gio", "save", p] + (["--backup"] if i == 2 else []),
                            input=text, env=dict(genv, GIO_USE_VFS="local"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert cp.returncode == 0, cp.stderr
        with open(p, "rb") as f:
            assert f.read() == text
    mnt.flush()
    with open(mnt.host("doc.txt"), "rb") as f:
        assert f.read() == b"third\n"
    with open(mnt.host("doc.txt~"), "rb") as f:
        assert f.read() == b"second, longer version\n" * 100
    assert host_names(mnt) == ["doc.txt", "doc.txt~"], host_names(mnt)


def _trash_uri_for(listing, original):
    for line in listing.splitlines():
        if "\t" in line:
            uri, orig = line.split("\t", 1)
            if orig == original:
                return uri
    return None


@pytest.mark.timeout(180)
def test_gio_trash_list_restore_empty(mnt, genv, test_dir):
    spec = {"keep.txt": b"stays\n", "doomed.bin": os.urandom(200000),
            "folder/x.txt": b"in a folder\n", "folder/sub/y.bin": os.urandom(5000)}
    make_tree(mnt.guest(), spec)
    mnt.flush()
    uid = os.getuid()

    info = gio_info(genv, mnt.guest("doomed.bin"), "-a", "access::can-trash")
    assert info.get("access::can-trash") == "TRUE", info

    gio(genv, "trash", mnt.guest("doomed.bin"), mnt.guest("folder"), bus=True)
    assert not os.path.exists(mnt.guest("doomed.bin"))
    trash = ".Trash-%d" % uid
    tdir = mnt.guest(trash)
    st = os.lstat(tdir)
    assert st.st_uid == uid and (st.st_mode & 0o777) == 0o700
    assert sorted(os.listdir(os.path.join(tdir, "files"))) == ["doomed.bin", "folder"]
    with open(os.path.join(tdir, "info", "doomed.bin.trashinfo")) as f:
        ti = f.read()
    assert ti.startswith("[Trash Info]\n") and "Path=doomed.bin\n" in ti, ti

    mnt.flush()
    with open(mnt.host(trash, "files", "doomed.bin"), "rb") as f:
        assert f.read() == spec["doomed.bin"]
    with open(mnt.host(trash, "files", "folder", "sub", "y.bin"), "rb") as f:
        assert f.read() == spec["folder/sub/y.bin"]
    assert not os.path.exists(mnt.host("doomed.bin"))
    assert not os.path.exists(mnt.host("folder"))

    listing = gio(genv, "trash", "--list", bus=True).stdout
    uri_f = _trash_uri_for(listing, mnt.guest("doomed.bin"))
    uri_d = _trash_uri_for(listing, mnt.guest("folder"))
    assert uri_f and uri_d, listing
    # the same through trash:// as a file manager shows it
    names = gio(genv, "list", "trash:///", bus=True).stdout.split()
    assert urllib.parse.unquote(uri_f[len("trash:///"):]) in names, names

    gio(genv, "trash", "--restore", uri_f, bus=True)
    gio(genv, "trash", "--restore", uri_d, bus=True)
    mnt.flush()
    want = tree_manifest(mnt.guest(), mtimes=False)
    for rel, data in spec.items():
        with open(mnt.host(rel), "rb") as f:
            assert f.read() == data, rel
    assert os.listdir(mnt.host(trash, "files")) == []
    assert os.listdir(mnt.host(trash, "info")) == []
    assert tree_manifest(mnt.host(), mtimes=False) == want

    gio(genv, "trash", mnt.guest("keep.txt"), bus=True)
    gio(genv, "trash", "--empty", bus=True)
    mnt.flush()
    assert os.listdir(mnt.host(trash, "files")) == []
    assert not os.path.exists(mnt.host("keep.txt"))


def test_gio_info_filesystem_and_mount_list(mnt, genv):
    """Free space and size are the host's (so a file manager does not
    refuse a big copy), the file system type is FUSE's, and GIO lists the
    mount (it lies below HOME, where GIO shows user mounts)."""
    info = gio_info(genv, mnt.guest(), "-f")
    sv = os.statvfs(mnt.host())
    size = sv.f_blocks * sv.f_frsize
    free = sv.f_bavail * sv.f_frsize
    assert int(info["filesystem::size"]) == size, (info, size)
    # the host disk is shared with whatever else runs here: allow drift
    assert abs(int(info["filesystem::free"]) - free) <= max(free // 20, 256 << 20), (info, free)
    assert info["filesystem::type"] == "fuse", info
    assert info.get("filesystem::readonly", "FALSE") == "FALSE", info

    out = gio(genv, "mount", "-l", bus=True).stdout
    assert "-> file://%s\n" % mnt.path in out + "\n", out


@pytest.mark.timeout(180)
def test_gio_copy_cancelled_half_way(mnt, genv, test_dir, timing):
    """A copy killed with SIGINT half way: while it runs the host never
    holds the file under its name; what the guest keeps (gio leaves the
    partial file; a file manager deletes it) is exactly what the host gets
    after flushing, and a deleted partial file never reaches the host."""
    src = os.path.join(test_dir, "big-source.bin")
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for _ in range(300):
            f.write(block)
    total = os.path.getsize(src)

    for name, clean_up in (("abandoned.bin", True), ("kept-partial.bin", False)):
        dst = mnt.guest(name)
        # gio runs in slices of 2 ms between SIGSTOPs, so that the copy
        # cannot end between two looks at its size however the machine's
        # scheduler treats this process; and it takes SIGINT as from a
        # terminal even when the suite was started in the background (a
        # shell without job control starts those with SIGINT ignored).
        for attempt in range(3):
            p = subprocess.Popen(["gio", "copy", "-p", src, dst],
                                 env=dict(genv, GIO_USE_VFS="local"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                  signal.SIG_DFL))
            harness.register_proc(p)
            try:
                seen_on_host = False
                end = time.monotonic() + 60
                while time.monotonic() < end and p.poll() is None:
                    p.send_signal(signal.SIGSTOP)
                    seen_on_host |= os.path.exists(mnt.host(name))
                    try:
                        if os.path.getsize(dst) >= 24 << 20:
                            break
                    except FileNotFoundError:
                        pass
                    p.send_signal(signal.SIGCONT)
                    time.sleep(0.002)
                p.send_signal(signal.SIGINT)
                p.send_signal(signal.SIGCONT)
                rc = p.wait(30)
            finally:
                harness.unregister_proc(p)
            if rc != 0:
                break
            timing("%s: copy finished before the signal, attempt" % name, attempt + 1)
            os.unlink(dst)
            mnt.flush()
        assert rc == -signal.SIGINT, "gio copy finished before the signal (rc %d)" % rc
        assert not seen_on_host, "host showed %s while it was being written" % name
        size = os.path.getsize(dst)
        timing("%s: guest size when cancelled" % name, size / 1048576.0, "MiB")
        assert 0 < size < total
        if clean_up:
            gio(genv, "remove", dst)
        mnt.flush()
        if clean_up:
            assert not os.path.exists(mnt.host(name))
        else:
            with open(mnt.host(name), "rb") as h, open(dst, "rb") as g:
                assert h.read() == g.read()
    assert host_names(mnt) == ["kept-partial.bin"], host_names(mnt)


@pytest.mark.skipif(shutil.which("kioclient5") is None,
                    reason="kioclient5 (kde-cli-tools) not installed")
def test_kio_copy_move_trash(mnt, genv, test_dir):
    """KDE's KIO (what Dolphin uses), headless: a tree copied in (KIO
    recurses itself), moved, one file overwritten, one deleted to the
    trash.  KIO keeps top-folder trashes only for devices Solid knows, so a
    file trashed from a hostshare mount goes to the home trash and leaves
    the mount (and the host) entirely; KIO may leave an empty .Trash-UID
    behind while it decides."""
    env = dict(genv, QT_QPA_PLATFORM="offscreen")

    def kio(*args):
        cp = run(["dbus-run-session", "--", "kioclient5", "--noninteractive"] +
                 list(args), env=env, check=False, timeout=90)
        assert cp.returncode == 0, "kioclient5 %s: %s" % (" ".join(args), cp.stderr[-2000:])
        return cp

    src = os.path.join(test_dir, "kde")
    spec = {"tree/a.txt": b"a\n", "tree/sub/b.bin": os.urandom(2 << 20),
            "tree/sub/c.txt": b"c\n" * 999, "over.txt": b"new content\n"}
    make_tree(src, spec)
    with open(mnt.guest("over.txt"), "wb") as f:
        f.write(b"old\n")
    kio("copy", os.path.join(src, "tree"), mnt.guest("tree"))
    kio("move", mnt.guest("tree"), mnt.guest("tree2"))
    kio("copy", "--overwrite", os.path.join(src, "over.txt"), mnt.guest("over.txt"))
    kio("move", mnt.guest("tree2", "a.txt"), "trash:/")
    trashed = os.path.join(test_dir, "xdg-data", "Trash", "files", "a.txt")
    with open(trashed, "rb") as f:
        assert f.read() == spec["tree/a.txt"]
    mnt.flush()
    want_root = os.path.join(test_dir, "kde-want")
    make_tree(want_root, {"tree2/sub/b.bin": spec["tree/sub/b.bin"],
                          "tree2/sub/c.txt": spec["tree/sub/c.txt"],
                          "over.txt": spec["over.txt"]})
    want = tree_manifest(want_root, mtimes=False)
    got = tree_manifest(mnt.host(), mtimes=False)
    trash = ".Trash-%d" % os.getuid()
    if trash in got:
        assert sorted(k for k in got if k.startswith(trash + "/")) == \
            [trash + "/files", trash + "/info"], got
        got = {k: v for k, v in got.items() if k.split("/")[0] != trash}
    assert want == got, manifest_diff(want, got)
