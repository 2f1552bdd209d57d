# SPDX-License-Identifier: MIT
"""A mount shared with other users: root mounts (as at boot) with
allow_other, the kernel checks permissions (default_permissions is always
on with allow_other), uid=/gid=/umask= hand the files to a desktop user,
and that user may use the control socket (hostsharectl) while others may
not.

The other users are real: throwaway accounts made with useradd for the
test and removed afterwards; their commands run through runuser.
"""

import json
import os
import shutil
import stat
import uuid

import pytest

import harness
from harness import run

pytestmark = [
    pytest.mark.hostshare_only,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, mounts)"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="no useradd"),
]


RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


class User:
    def __init__(self, name):
        self.name = name
        cp = run(["useradd", "--no-create-home", "--user-group",
                  "--shell", "/usr/sbin/nologin", name], check=False)
        if cp.returncode != 0:
            raise AssertionError("useradd %s: %s" % (name, cp.stderr))
        import pwd
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid

    def run(self, args, check=False, **kw):
        """@args as this user (no shell, no login) with exactly the
        environment @env (runuser itself would set HOME to the user's)."""
        env = kw.pop("env", None) or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                      "HOME": "/", "LC_ALL": "C.UTF-8"}
        return run([RUNUSER, "-u", self.name, "--", "/usr/bin/env", "-i"] +
                   ["%s=%s" % kv for kv in sorted(env.items())] + list(args),
                   check=check, **kw)

    def py(self, code, *args):
        """Runs a python snippet as this user; returns (rc, stdout)."""
        cp = self.run(["/usr/bin/python3", "-c", code] + list(args))
        return cp.returncode, cp.stdout.strip(), cp.stderr

    def remove(self):
        run(["userdel", self.name], check=False)


@pytest.fixture
def users():
    made = []

    def make():
        u = User("hsdk%s" % uuid.uuid4().hex[:8])
        made.append(u)
        return u
    yield make
    for u in made:
        u.remove()


@pytest.fixture
def shared_dir(test_dir):
    """Other users must reach the mountpoint: open the test's folders for
    traversal (no listing)."""
    os.chmod(os.path.dirname(test_dir), 0o711)
    os.chmod(test_dir, 0o711)
    return test_dir


# Tries an operation as the calling user and prints OK or the errno name.
PROBE = r"""
import errno, os, sys
op, path = sys.argv[1], sys.argv[2]
try:
    if op == "read":
        open(path, "rb").read()
    elif op == "write":
        with open(path, "ab") as f:
            f.write(b"more\n")
    elif op == "create":
        with open(path, "xb") as f:
            f.write(sys.argv[3].encode())
    elif op == "list":
        os.listdir(path)
    elif op == "stat":
        os.stat(path)
    elif op == "mkdir":
        os.mkdir(path)
    elif op == "unlink":
        os.unlink(path)
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
"""


def probe(user, op, path, *extra):
    rc, out, err = user.py(PROBE, op, path, *extra)
    assert rc == 0, err
    return out


def host_tree(m, spec):
    """spec: {rel: (mode, bytes or None for a folder)} created on the host."""
    for rel, (mode, data) in sorted(spec.items()):
        p = m.host(rel)
        if data is None:
            os.makedirs(p, exist_ok=True)
        else:
            with open(p, "wb") as f:
                f.write(data)
        os.chmod(p, mode)


def test_allow_other_enforces_permissions(mount_factory, shared_dir, users):
    other = users()
    plain = mount_factory(name="private")           # no allow_other
    m = mount_factory(options=["allow_other"], name="shared")
    host_tree(m, {"public.txt": (0o644, b"for everyone\n"),
                  "secret.txt": (0o600, b"root only\n"),
                  "private": (0o700, None),
                  "private/inner.txt": (0o644, b"inner\n"),
                  "open": (0o777, None)})
    e = harness.mountinfo_entry(m.path)
    assert "default_permissions" in e[-1] and "allow_other" in e[-1], e

    # without allow_other nobody but root gets in
    assert probe(other, "stat", plain.path) == "EACCES"
    assert probe(other, "list", plain.path) == "EACCES"

    assert probe(other, "list", m.path) == "OK"
    assert probe(other, "read", m.guest("public.txt")) == "OK"
    assert probe(other, "read", m.guest("secret.txt")) == "EACCES"
    assert probe(other, "write", m.guest("public.txt")) == "EACCES"
    assert probe(other, "list", m.guest("private")) == "EACCES"
    assert probe(other, "read", m.guest("private", "inner.txt")) == "EACCES"
    assert probe(other, "create", m.guest("intruder.txt"), "x") == "EACCES"
    assert probe(other, "unlink", m.guest("public.txt")) == "EACCES"
    # where the modes allow it, the other user may write, and it arrives
    assert probe(other, "create", m.guest("open", "hello.txt"), "from another user\n") == "OK"

    # root (the mounting user) is not limited by the modes
    with open(m.guest("secret.txt"), "rb") as f:
        assert f.read() == b"root only\n"
    m.flush()
    with open(m.host("open", "hello.txt"), "rb") as f:
        assert f.read() == b"from another user\n"
    assert not os.path.exists(m.host("intruder.txt"))
    with open(m.host("public.txt"), "rb") as f:
        assert f.read() == b"for everyone\n"


def test_no_default_permissions_opt_out(mount_factory, shared_dir, users):
    """Only an explicit no_default_permissions drops the kernel's checks:
    then another user reads what the modes forbid (the documented risk)."""
    other = users()
    m = mount_factory(options=["allow_other", "no_default_permissions"])
    host_tree(m, {"secret.txt": (0o600, b"root only\n")})
    e = harness.mountinfo_entry(m.path)
    assert "allow_other" in e[-1] and "default_permissions" not in e[-1], e
    assert probe(other, "read", m.guest("secret.txt")) == "OK"


def test_desktop_user_uid_gid_umask(mount_factory, shared_dir, users, test_dir):
    """Root mounts for desktop user U (uid=, gid=, umask=027): U owns every
    file, may write and create; another user is kept out by the umask."""
    desk, other = users(), users()
    m = mount_factory(options=["allow_other", "uid=%d" % desk.uid,
                               "gid=%d" % desk.gid, "umask=027"], name="desk")
    host_tree(m, {"notes.txt": (0o644, b"notes\n"),
                  "Music": (0o755, None),
                  "Music/song.ogg": (0o644, b"\x00" * 5000),
                  "script.sh": (0o755, b"#!/bin/sh\necho hi\n")})
    for rel, want in (("", 0o750), ("notes.txt", 0o640), ("Music", 0o750),
                      ("Music/song.ogg", 0o640), ("script.sh", 0o750)):
        st = os.stat(m.guest(rel))
        assert (st.st_uid, st.st_gid) == (desk.uid, desk.gid), (rel, st)
        assert stat.S_IMODE(st.st_mode) == want, (rel, oct(st.st_mode))

    assert probe(desk, "read", m.guest("Music", "song.ogg")) == "OK"
    assert probe(desk, "write", m.guest("notes.txt")) == "OK"
    assert probe(desk, "create", m.guest("Music", "new.txt"), "made by the desktop user\n") == "OK"
    assert probe(desk, "mkdir", m.guest("Pictures")) == "OK"
    st = os.stat(m.guest("Music", "new.txt"))
    assert st.st_uid == desk.uid and stat.S_IMODE(st.st_mode) & 0o027 == 0

    # another user: group/other bits are masked off
    assert probe(other, "stat", m.guest("notes.txt")) == "EACCES"
    assert probe(other, "list", m.path) == "EACCES"

    # the desktop user's trash works on the mount (GIO's .Trash-UID)
    if shutil.which("gio"):
        home = os.path.join(test_dir, "desk-home")
        os.makedirs(home)
        os.chown(home, desk.uid, desk.gid)
        cp = desk.run(["gio", "trash", m.guest("script.sh")],
                      env={"PATH": "/usr/bin:/bin", "HOME": home, "GIO_USE_VFS": "local",
                           "LC_ALL": "C.UTF-8"})
        assert cp.returncode == 0, cp.stderr
        tdir = m.guest(".Trash-%d" % desk.uid)
        assert os.stat(tdir).st_uid == desk.uid
        assert os.listdir(os.path.join(tdir, "files")) == ["script.sh"]

    m.flush()
    with open(m.host("notes.txt"), "rb") as f:
        assert f.read() == b"notes\nmore\n"
    with open(m.host("Music", "new.txt"), "rb") as f:
        assert f.read() == b"made by the desktop user\n"
    assert os.path.isdir(m.host("Pictures"))
    if shutil.which("gio"):
        assert os.path.exists(m.host(".Trash-%d" % desk.uid, "files", "script.sh"))
        assert not os.path.exists(m.host("script.sh"))


def test_control_socket_for_uid_user(mount_factory, shared_dir, users, test_dir):
    """hostsharectl works for the uid= user of a root mount and for nobody
    else; a root mount without uid= stays root's."""
    desk, other = users(), users()
    ctl = os.path.join(test_dir, "hostsharectl")
    shutil.copy2(harness.hostsharectl_bin(), ctl)
    os.chmod(ctl, 0o755)
    m = mount_factory(options=["allow_other", "uid=%d" % desk.uid,
                               "gid=%d" % desk.gid], name="desk")
    plain = mount_factory(options=["allow_other"], name="rootonly")

    cp = desk.run([ctl, "status", "--json", m.path])
    assert cp.returncode == 0, cp.stderr
    st = json.loads(cp.stdout)
    assert st["pid"] == m.pid and st["mountpoint"] == m.path, st

    # a flush from the desktop user, of a file it wrote
    assert probe(desk, "create", m.guest("from-desk.txt"), "desk\n") == "OK"
    cp = desk.run([ctl, "flush", "--wait", "--timeout", "60", m.path], timeout=90)
    assert cp.returncode == 0, cp.stderr
    with open(m.host("from-desk.txt"), "rb") as f:
        assert f.read() == b"desk\n"

    cp = other.run([ctl, "status", m.path])
    assert cp.returncode == 1 and "permission denied" in cp.stderr, (cp.stdout, cp.stderr)
    cp = desk.run([ctl, "status", plain.path])
    assert cp.returncode == 1 and "permission denied" in cp.stderr, (cp.stdout, cp.stderr)
    # root still may
    assert m.status()["pid"] == m.pid

    # the run folder lists nothing to other users
    sock_dir = "/run/hostshare"
    if os.path.isdir(sock_dir):
        assert stat.S_IMODE(os.stat(sock_dir).st_mode) & 0o066 == 0
        assert probe(other, "list", sock_dir) == "EACCES"
