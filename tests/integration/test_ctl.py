# SPDX-License-Identifier: MIT
"""hostsharectl against a real mount: status (one mount and all of them),
flush --wait with its live progress line under a pseudo-terminal,
conflicts (list and --clear), pending, evict, and the control socket
refusing another user.  JSON output is parsed; the human form is checked
for its fields."""

import json
import os
import pty
import re
import select
import subprocess
import time

import pytest

from harness import hostsharectl_bin, run

STATUS_KEYS = {
    "mountpoint": str, "source": str, "transport": str, "link": str,
    "link_since": str, "pending_ops": int, "pending_bytes": int,
    "flushed_ops": int, "flushed_bytes": int, "sent_bytes": int,
    "inflight_bytes": int, "failed_ops": int, "rate_bps": int, "eta_s": int, "cache_bytes": int,
    "cache_limit": int, "cache_dir": str, "conflicts": int,
    "oldest_pending_s": int, "current": str, "last_error": str, "pid": int,
}


@pytest.fixture
def hostshare_only(mounter):
    if mounter != "hostshare":
        pytest.skip("hostsharectl talks to hostshare mounts only")


def ctl(*args, check=True, timeout=120):
    cp = run([hostsharectl_bin()] + list(args), timeout=timeout, check=False)
    if check and cp.returncode != 0:
        raise AssertionError("hostsharectl %s: exit %d\n%s%s" % (
            " ".join(args), cp.returncode, cp.stdout, cp.stderr))
    return cp


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.timeout(120)
def test_status_fields(hostshare_only, mount_factory, request):
    mnt = mount_factory(options=["writeback_delay=60000", "cache_size=2G"])
    write(mnt.guest("a"), b"x" * 100000)
    os.mkdir(mnt.guest("d"))

    st = json.loads(ctl("status", "--json", mnt.path).stdout)
    for key, typ in STATUS_KEYS.items():
        assert key in st, key
        assert isinstance(st[key], typ), (key, st[key])
    assert st["link"] == "connected"
    assert st["transport"] == (
        "sftp" if request.config.getoption("--transport") == "sftp" else "agent")
    assert st["pending_ops"] == 2
    assert st["pending_bytes"] == 100000
    assert st["cache_limit"] == 2 << 30
    assert st["pid"] == mnt.pid
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", st["link_since"])

    human = ctl("status", mnt.path).stdout
    for label in ("Mountpoint:", "Source:", "Transport:", "Link:", "Pending:",
                  "Flushed:", "Failed:", "Conflicts:", "Cache:", "Last error:",
                  "Daemon:"):
        assert label in human, (label, human)
    assert "2 ops, 97.7 KiB" in human, human
    assert "of 2.0 GiB" in human, human

    # no MOUNTPOINT: every hostshare mount, this one among them
    everyone = [json.loads(line) for line in
                ctl("status", "--json").stdout.splitlines()]
    assert mnt.path in [s["mountpoint"] for s in everyone]
    assert mnt.path in ctl("status").stdout

    mnt.flush()
    st = json.loads(ctl("status", "--json", mnt.path).stdout)
    assert st["pending_ops"] == 0 and st["pending_bytes"] == 0
    assert st["sent_bytes"] >= 100000
    assert st["flushed_ops"] == 2


@pytest.mark.timeout(180)
@pytest.mark.sftp_only("the agent on loopback uploads the 600 MiB before the "
                       "first progress line, 0.5 s in")
def test_flush_progress_on_a_terminal(hostshare_only, mount_factory, timing):
    """A big file waiting to be sent: flush --wait on a terminal draws a
    progress line (done / total, rate, ETA, file) and ends with a final
    line; without a terminal it says nothing and exits 0."""
    mnt = mount_factory(options=["writeback_delay=600000"])
    size = 600 << 20
    with open(mnt.guest("big.bin"), "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)

    master, slave = pty.openpty()
    t0 = time.monotonic()
    p = subprocess.Popen([hostsharectl_bin(), "flush", "--wait", mnt.path],
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 1)
        if r:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        elif p.poll() is not None:
            break
    rc = p.wait(timeout=120)
    os.close(master)
    took = time.monotonic() - t0
    text = out.decode(errors="replace")
    assert rc == 0, text
    progress = [s for s in text.split("\r") if s.startswith("flushing:")]
    assert progress, "no progress line in %r" % text[:500]
    assert any(re.search(r"flushing: [\d.]+ \w*B / 600\.0 MiB, [\d.]+ \w*B/s, ETA "
                         r"[\d:-]+, \d+ ops, big\.bin", s) for s in progress), progress[:5]
    assert "flushed: everything is on the host" in text
    assert os.path.getsize(mnt.host("big.bin")) == size
    timing("flush --wait of 600 MiB on a pty", "%.1f s, %d progress lines" % (took, len(progress)))

    # not a terminal: quiet, exit 0
    write(mnt.guest("small"), b"1")
    cp = ctl("flush", "--wait", mnt.path)
    assert cp.stdout == "" and cp.stderr == ""


@pytest.mark.timeout(120)
def test_conflicts_list_and_clear(hostshare_only, mount_factory):
    mnt = mount_factory(options=["writeback_delay=60000", "attr_timeout=1"])
    write(mnt.guest("plan.txt"), b"base\n")
    mnt.flush()
    assert json.loads(ctl("conflicts", "--json", mnt.path).stdout) == []
    assert ctl("conflicts", mnt.path).stdout == "no conflicts\n"

    with open(mnt.guest("plan.txt"), "ab") as f:
        f.write(b"guest\n")
    write(mnt.host("plan.txt"), b"host edit, longer\n")
    os.utime(mnt.host("plan.txt"), (1_000_000_000, 1_000_000_000))
    mnt.flush()

    got = json.loads(ctl("conflicts", "--json", mnt.path).stdout)
    assert len(got) == 1, got
    k = got[0]
    assert k["path"] == "/plan.txt"
    assert re.match(r"/plan\.conflict-.+-\d{8}-\d{6}\.txt$", k["copy"]), k
    assert k["reason"] == "changed on both sides"
    with open(mnt.host(k["copy"].lstrip("/")), "rb") as f:
        assert f.read() == b"base\nguest\n"
    assert json.loads(ctl("status", "--json", mnt.path).stdout)["conflicts"] == 1
    human = ctl("conflicts", mnt.path).stdout
    assert "/plan.txt" in human and k["copy"] in human, human
    # logged once, with the path
    assert mnt.log_text().count("conflict: '/plan.txt'") == 1

    # it survives a remount (it is in the cache database)
    assert mnt.unmount() == 0
    mnt.mount()
    assert len(json.loads(ctl("conflicts", "--json", mnt.path).stdout)) == 1

    cleared = json.loads(ctl("conflicts", "--clear", "--json", mnt.path).stdout)
    assert cleared["count"] == 1
    assert json.loads(ctl("conflicts", "--json", mnt.path).stdout) == []
    assert os.path.exists(mnt.host(k["copy"].lstrip("/"))), "clear must not delete files"


@pytest.mark.timeout(120)
def test_pending_lists_the_journal(hostshare_only, mount_factory):
    mnt = mount_factory(options=["writeback_delay=60000"])
    os.mkdir(mnt.guest("dir"))
    write(mnt.guest("dir/new.txt"), b"z" * 5000)
    write(mnt.guest("old"), b"o")
    mnt.flush()
    os.rename(mnt.guest("old"), mnt.guest("older"))
    write(mnt.guest("dir/second"), b"s" * 12345)
    os.symlink("dir/second", mnt.guest("link"))

    rows = json.loads(ctl("pending", "--json", mnt.path).stdout)
    ops = [(r["op"], r["path"], r.get("path2")) for r in rows]
    assert ops == [("rename", "/old", "/older"),
                   ("create", "/dir/second", None),
                   ("symlink", "/link", None)], ops
    assert rows[1]["bytes"] == 12345
    assert all(r["state"] == "pending" for r in rows)
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    human = ctl("pending", mnt.path).stdout.splitlines()
    assert human[0].split() == ["OP", "STATE", "BYTES", "AGE", "PATH"]
    assert "/old -> /older" in human[1] and human[1].startswith("rename")
    assert "12.1 KiB" in human[2] and "/dir/second" in human[2]
    mnt.flush()
    assert json.loads(ctl("pending", "--json", mnt.path).stdout) == []


def one_error_line(cp):
    """A failure of hostsharectl: exit 1 and one line on stderr."""
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostsharectl: "), cp.stderr
    return lines[0]


@pytest.mark.timeout(150)
def test_pending_of_a_mount_not_running(hostshare_only, mount_factory):
    """`pending` works without a daemon (a mount that refuses to start
    must still show what its cache owes the host): on the cache folder and
    on the source, after a SIGKILL and after an unmount, the same rows as
    the live listing, text and JSON, and one line on stderr saying the
    mount is not running and its next mount sends them.  A folder that is
    no cache, a damaged database and a cache in use: one line, exit 1."""
    mnt = mount_factory(options=["writeback_delay=60000"])
    os.mkdir(mnt.guest("dir"))
    write(mnt.guest("dir/new.txt"), b"z" * 5000)
    os.rename(mnt.guest("dir/new.txt"), mnt.guest("dir/renamed.txt"))
    os.symlink("dir/renamed.txt", mnt.guest("link"))
    folder = mnt.status()["cache_dir"]
    live = json.loads(ctl("pending", "--json", mnt.path).stdout)
    live_text = ctl("pending", mnt.path).stdout.splitlines()
    assert len(live) >= 3, live

    # the running mount holds its database: the folder says where to ask
    line = one_error_line(ctl("pending", folder, check=False))
    assert "in use by a running hostshare" in line and \
        "'hostsharectl pending' on its mountpoint" in line, line

    cmd = mnt.command()
    source = cmd[-2]
    mount_opts = cmd[cmd.index("-o") + 1]
    mnt.kill9()

    def same_rows(rows):
        key = lambda r: (r["seq"], r["op"], r["path"], r.get("path2"), r["bytes"], r["state"])
        assert [key(r) for r in rows] == [key(r) for r in live], (rows, live)
        for r, l in zip(rows, live):
            assert set(r) == set(l), (r, l)
            assert l["age_ms"] <= r["age_ms"] < l["age_ms"] + 60000, (r, l)

    # the source with the mount's options; with only cache_dir= (no port,
    # as a dead mount's line in the mount table gives it) the folder of
    # that source for the port its name carries
    only_root = "cache_dir=" + mnt.cache_dir
    for target in ([folder], ["-o", mount_opts, source], ["-o", only_root, source]):
        cp = ctl("pending", "--json", *target)
        same_rows(json.loads(cp.stdout))
        assert cp.stderr.count("\n") == 1, cp.stderr
        assert "the mount is not running" in cp.stderr and folder in cp.stderr and \
            "next mount sends these %d changes" % len(live) in cp.stderr, cp.stderr
        text = ctl("pending", *target).stdout.splitlines()
        assert len(text) == len(live_text), (text, live_text)
        for t, l in zip(text, live_text):   # the same rows, the ages aside
            assert t.split()[:2] == l.split()[:2] and \
                t.split("  ")[-1] == l.split("  ")[-1], (t, l)

    # the killed mount's mountpoint is a plain folder now, in no fstab
    line = one_error_line(ctl("pending", mnt.path, check=False))
    assert "not a running hostshare mount" in line.replace("neither a", "not a") and \
        "give its source or its cache folder" in line, line
    line = one_error_line(ctl("pending", mnt.path + "-none", check=False))
    assert "does not exist" in line, line
    empty = os.path.join(os.path.dirname(folder), "empty")
    os.mkdir(empty)
    line = one_error_line(ctl("pending", "-o", "cache_dir=" + empty, "nobody@nowhere:/x",
                              check=False))
    assert "no cache of" in line and "no meta.db" in line, line

    # a damaged copy of the database: one line, never a crash
    damaged = os.path.join(os.path.dirname(folder), "damaged")
    os.mkdir(damaged)
    with open(os.path.join(damaged, "meta.db"), "wb") as f:
        f.write(os.urandom(8192))
    line = one_error_line(ctl("pending", damaged, check=False))
    assert "cannot read the cache database '%s/meta.db'" % damaged in line, line

    # the next mount sends them; then the folder owes nothing
    mnt.mount()
    mnt.flush()
    assert os.path.islink(mnt.host("link"))
    assert os.path.getsize(mnt.host("dir/renamed.txt")) == 5000
    mnt.unmount()
    cp = ctl("pending", "--json", folder)
    assert json.loads(cp.stdout) == [] and "owes the host nothing" in cp.stderr, cp


@pytest.mark.timeout(120)
def test_evict_drops_clean_data_only(hostshare_only, mount_factory):
    mnt = mount_factory(options=["writeback_delay=60000"])
    data = os.urandom(8 << 20)
    write(mnt.host("clean.bin"), data)
    os.mkdir(mnt.host("sub"))
    write(mnt.host("sub/also.bin"), data[:1 << 20])
    with open(mnt.guest("clean.bin"), "rb") as f:
        assert f.read() == data                     # now cached
    with open(mnt.guest("sub/also.bin"), "rb") as f:
        f.read()
    write(mnt.guest("dirty.bin"), b"d" * 300000)    # not on the host yet

    # one folder only
    res = json.loads(ctl("evict", "--json", mnt.path, mnt.guest("sub")).stdout)
    assert res["files"] == 1 and res["bytes"] == 1 << 20, res
    # the whole mount: the clean file goes, the unsent one stays
    res = json.loads(ctl("evict", "--json", mnt.path).stdout)
    assert res["files"] == 1 and res["bytes"] == 8 << 20, res
    assert res["kept"] == 1, res
    human = ctl("evict", mnt.path).stdout
    assert human.startswith("dropped 0 B of cached data from 0 files; 1 files"), human

    # read again from the host, same bytes; the unsent file intact
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
    with open(mnt.guest("clean.bin"), "rb") as f:
        assert f.read() == data
    with open(mnt.guest("dirty.bin"), "rb") as f:
        assert f.read() == b"d" * 300000
    mnt.flush()
    with open(mnt.host("dirty.bin"), "rb") as f:
        assert f.read() == b"d" * 300000

    cp = ctl("evict", mnt.path, "/etc", check=False)
    assert cp.returncode == 1 and "is not inside the mount" in cp.stderr


@pytest.mark.timeout(60)
def test_other_users_are_refused(hostshare_only, mnt):
    """The control socket is private to the mounting user (root here)."""
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           hostsharectl_bin(), "status", mnt.path]
    cp = run(cmd, timeout=30, check=False)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stderr.strip() == ("hostsharectl: permission denied: the mount at "
                                 "'%s' belongs to another user" % mnt.path), cp.stderr
    assert cp.stdout == ""

    # the same when the folders above the mountpoint are open to everyone
    # (as /mnt is): the socket is found, and the daemon's folder refuses
    parent = os.path.dirname(mnt.path)
    modes = {}
    for d in (parent, os.path.dirname(parent)):
        modes[d] = os.stat(d).st_mode & 0o7777
        os.chmod(d, modes[d] | 0o011)
    try:
        cp = run(cmd, timeout=30, check=False)
    finally:
        for d, m in modes.items():
            os.chmod(d, m)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "permission denied" in cp.stderr, cp.stderr
