# SPDX-License-Identifier: MIT
"""The mount program's own failures: one clear line on stderr, a non-zero
exit, nothing mounted and no process left behind.  hostshare only: the
messages are hostshare's."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

import harness
from harness import Sshd, free_port, hostshare_bin, is_mounted, pid_cmdline

pytestmark = pytest.mark.hostshare_only

# The failures of an SSH source (host keys, identities, an unreachable
# sshd), with command lines built here: the session's --transport does not
# apply to them.
SSH_SOURCE = pytest.mark.sftp_only("the mount program's failures on an SSH "
                                   "source, its own ssh options")


def hs(args, timeout=30):
    """Runs the mount program as a user would (no -f); returns
    (exit status, stdout, stderr, seconds)."""
    exe = hostshare_bin()
    assert os.access(exe, os.X_OK), "%s is not built" % exe
    t0 = time.monotonic()
    p = subprocess.Popen([exe] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    harness.register_proc(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("hostshare %s did not return within %ds" % (" ".join(args), timeout))
    finally:
        harness.unregister_proc(p)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), \
        time.monotonic() - t0


def opts(sshd, cache_dir, key=None, known_hosts=None, port=None, extra=()):
    o = ["IdentityFile=" + (key or sshd.key),
         "UserKnownHostsFile=" + (known_hosts or sshd.known_hosts),
         "StrictHostKeyChecking=yes",
         "cache_dir=" + cache_dir,
         "port=%d" % (port or sshd.port)] + list(extra)
    return ["-o", ",".join(o)]


def leftover_daemons(mountpoint):
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            argv = pid_cmdline(int(name))
            if argv and os.path.basename(argv[0]) == "hostshare" and mountpoint in argv:
                found.append(int(name))
    return found


def one_line_failure(result, mountpoint, *needles):
    rc, out, err, secs = result
    assert rc != 0, "expected a failure, got exit 0 (stdout %r, stderr %r)" % (out, err)
    for m in harness.SANITIZER_MARKERS:
        assert m not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, "expected one line on stderr, got %d:\n%s" % (len(lines), err)
    line = lines[0].lower()
    if needles:
        assert any(n.lower() in line for n in needles), \
            "%r mentions none of %r" % (lines[0], needles)
    if os.path.isdir(mountpoint):
        assert not is_mounted(mountpoint), "%s is mounted after a failure" % mountpoint
    stray = leftover_daemons(mountpoint)
    for pid in stray:
        harness.stop_pid(pid, mountpoint)
    assert not stray, "hostshare processes left behind: %r" % stray
    return lines[0]


@pytest.fixture
def where(test_dir):
    mnt = os.path.join(test_dir, "mnt")
    cache = os.path.join(test_dir, "cache")
    host = os.path.join(test_dir, "host")
    for d in (mnt, cache, host):
        os.makedirs(d)
    return mnt, cache, host


def populate_cache(sshd, where):
    """Mounts once, writes a file, unmounts and waits for the daemon to
    exit: the cache folder then holds data and a database."""
    mnt, cache, host = where
    ok = hs(opts(sshd, cache) + [sshd.source(host), mnt])
    assert ok[0] == 0, ok
    with open(os.path.join(mnt, "kept"), "wb") as f:
        f.write(b"x")
    subprocess.run(["fusermount3", "-u", mnt], check=True)
    for _ in range(100):                   # the daemon exits after unmount
        if not leftover_daemons(mnt):
            break
        time.sleep(0.1)


@SSH_SOURCE
def test_unreachable_host(sshd, where):
    mnt, cache, host = where
    port = free_port()                       # nothing listens there
    r = hs(opts(sshd, cache, port=port) + [sshd.source(host), mnt])
    one_line_failure(r, mnt, "connect", "refused")
    assert r[3] < 15, "took %.1fs to report an unreachable host" % r[3]


@SSH_SOURCE
def test_wrong_host_key(sshd, where, test_dir):
    mnt, cache, host = where
    other = os.path.join(test_dir, "other_host_key")
    pub = Sshd.keygen(other, "not-the-server")
    kh = os.path.join(test_dir, "known_hosts")
    with open(kh, "w") as f:
        f.write(sshd.known_hosts_line(pub) + "\n")
    r = hs(opts(sshd, cache, known_hosts=kh) + [sshd.source(host), mnt])
    one_line_failure(r, mnt, "host key")
    # the same with a cache that could serve offline: still one line and
    # no mount, never an offline mount that says nothing
    populate_cache(sshd, where)
    r = hs(opts(sshd, cache, known_hosts=kh) + [sshd.source(host), mnt])
    one_line_failure(r, mnt, "host key")


@SSH_SOURCE
def test_bad_identity(sshd, where, test_dir):
    mnt, cache, host = where
    key = os.path.join(test_dir, "stranger_key")
    Sshd.keygen(key, "not-authorized")
    r = hs(opts(sshd, cache, key=key) + [sshd.source(host), mnt])
    one_line_failure(r, mnt, "authentication")


@SSH_SOURCE
def test_missing_remote_dir(sshd, where):
    mnt, cache, host = where
    missing = os.path.join(host, "no", "such", "dir")
    r = hs(opts(sshd, cache) + [sshd.source(missing), mnt])
    one_line_failure(r, mnt, "does not exist")


@SSH_SOURCE
def test_missing_mountpoint(sshd, where):
    mnt, cache, host = where
    missing = os.path.join(mnt, "not-there")
    r = hs(opts(sshd, cache) + [sshd.source(host), missing])
    one_line_failure(r, missing, missing, "mountpoint", "mount point")


@SSH_SOURCE
def test_unknown_option(sshd, where):
    mnt, cache, host = where
    r = hs(opts(sshd, cache, extra=["no_such_option_xyz=1"]) + [sshd.source(host), mnt])
    one_line_failure(r, mnt, "no_such_option_xyz")


def test_version():
    rc, out, err, _ = hs(["--version"])
    assert rc == 0, err
    assert re.search(r"\d+\.\d+", out + err), "no version number in %r" % (out + err)


def test_help():
    rc, out, err, _ = hs(["--help"])
    assert rc == 0, err
    text = (out + err).lower()
    assert "usage" in text and "mountpoint" in text.replace(" ", ""), text[:2000]


def leave_pending(sshd, where, names):
    """Mounts with writeback held back, writes @names, SIGKILLs the daemon
    (an unmount would send them) and detaches the mount: the journal then
    owes the host one create each; its WAL is checkpointed into meta.db."""
    mnt, cache, host = where
    ok = hs(opts(sshd, cache, extra=["writeback_delay=60000"]) + [sshd.source(host), mnt])
    assert ok[0] == 0, ok
    for n in names:
        with open(os.path.join(mnt, n), "wb") as f:
            f.write(b"p" * 1000)
    for pid in leftover_daemons(mnt):
        os.kill(pid, signal.SIGKILL)
        harness.wait_pid_gone(pid, 10)
    harness.fusermount(mnt, lazy=True)
    db = [os.path.join(d, "meta.db") for d, _, fs in os.walk(cache) if "meta.db" in fs][0]
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def damage_index_page(db):
    """Garbage over the root page of an index the journal listing does not
    read: the mount's integrity check fails, the journal stays readable."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    page = con.execute("SELECT rootpage FROM sqlite_master WHERE name='dentry_ino'").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(db, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xa5" * size)


@SSH_SOURCE
@pytest.mark.parametrize("damage", ["garbage", "truncated", "unreadable",
                                    "emptied", "missing", "index"])
def test_corrupt_cache_database(sshd, where, damage):
    """A damaged cache database: one line naming the file, saying what the
    folder still owes the host (how many changes and 'hostsharectl
    pending', or that it may hold some when the journal cannot be read)
    and how to recover, never a crash, and nothing mounted."""
    mnt, cache, host = where
    if damage == "index":
        leave_pending(sshd, where, ["a", "b", "c"])
    else:
        populate_cache(sshd, where)
    dbs = [os.path.join(d, "meta.db") for d, _, fs in os.walk(cache) if "meta.db" in fs]
    assert len(dbs) == 1, dbs
    db = dbs[0]
    for extra in ("-wal", "-shm"):
        if os.path.exists(db + extra):
            os.unlink(db + extra)
    if damage == "index":
        damage_index_page(db)
    elif damage == "garbage":
        with open(db, "r+b") as f:
            f.seek(0)
            f.write(os.urandom(4096))
    elif damage == "truncated":
        with open(db, "r+b") as f:
            f.truncate(1000)
    elif damage in ("emptied", "missing"):
        # beside cached data: a fresh database would forget what the
        # host is owed without a word
        if damage == "emptied":
            open(db, "wb").close()
        else:
            os.unlink(db)
    else:
        os.chmod(db, 0)
        os.chmod(os.path.dirname(db), 0o500)   # root ignores modes: take the folder too
        os.rename(db, db + ".moved")
        os.mkdir(db)                           # a folder where the file should be
    line = one_line_failure(hs(opts(sshd, cache) + [sshd.source(host), mnt]), mnt,
                            "cache database")
    assert db in line, line
    assert "move the folder '%s' aside" % os.path.dirname(db) in line, line
    if damage == "index":
        folder = os.path.dirname(db)
        assert "the folder still holds 3 changes not on the host (see " \
            "'hostsharectl pending %s')" % folder in line, line
        cp = subprocess.run([harness.hostsharectl_bin(), "pending", "--json", folder],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, cp
        assert [(r["op"], r["path"]) for r in json.loads(cp.stdout)] == \
            [("create", "/a"), ("create", "/b"), ("create", "/c")], cp.stdout
    else:
        assert "the folder may hold changes the host has not got" in line, line
