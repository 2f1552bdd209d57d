# SPDX-License-Identifier: MIT
"""Installing and diagnosing hostshare as a user would: `meson install`
into a temporary DESTDIR (the file list), the man pages rendered by man(1)
without a warning, --version of every program, `hostsharectl doctor`
against a healthy mount and against broken ones (a stalled link, a stopped
sshd, a wrong host key, a refused key, a nested "hypervisor" folder), and
the Debian package built from the tree, installed with apt and used for a
real mount.

The package test builds the whole tree once more (about a minute on the
development machine) and installs the package system-wide; it removes it
again with `dpkg -r` when done.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import harness
from harness import Agent, Mount, Sshd, via_proxy

REPO = harness.REPO_ROOT
MAN_PAGES = ["hostshare.1", "hostsharectl.1", "hostshare-agent.8"]
LINK_CHECKS = ["connect", "hostkey", "auth", "folder", "rtt", "upload",
               "download", "clock", "host_space"]


@pytest.fixture
def hostshare_only(mounter):
    if mounter != "hostshare":
        pytest.skip("installs and diagnoses hostshare")


def ctl(*args, timeout=120):
    return harness.run([harness.hostsharectl_bin()] + list(args),
                       timeout=timeout, check=False)


def doctor_json(*args, timeout=120):
    cp = ctl("doctor", "--json", *args, timeout=timeout)
    assert cp.returncode in (0, 1), (cp.returncode, cp.stdout, cp.stderr)
    rep = json.loads(cp.stdout)
    checks = {c["name"]: c for c in rep["checks"]}
    failed = [c["name"] for c in rep["checks"] if c["verdict"] == "fail"]
    assert rep["failed"] == failed
    assert rep["ok"] == (not failed)
    assert cp.returncode == (1 if failed else 0), cp.stdout
    for c in rep["checks"]:
        assert c["verdict"] in ("ok", "warn", "fail", "skip"), c
        assert c["detail"], c
        # every check that is not ok says what to do
        if c["verdict"] in ("warn", "fail"):
            assert c["fix"], c
    return rep, checks


@pytest.fixture
def transport(pytestconfig):
    return pytestconfig.getoption("--transport")


def agent_net(transport):
    """tcp://, unix:, vsock:// agents: no SSH between guest and host."""
    return transport in ("agent-tcp", "agent-unix", "agent-vsock")


def expected_link_checks(transport):
    """{check: verdict} of a healthy link as the doctor sees it over
    @transport (tools/doctor.c dials the way the mount does): the agent
    has no host key (not applicable: skip), its auth is the token; -o
    agent adds the 'agent' check to the SSH ones."""
    want = {name: "ok" for name in LINK_CHECKS}
    if agent_net(transport):
        want["hostkey"] = "skip"
        if transport == "agent-vsock":
            want["auth"] = "skip"
    if transport == "agent-ssh":
        want["agent"] = "ok"
    return want


def server_fix_word(transport):
    """What the fix of a failed connect names: the host's server."""
    return "hostshare-agent" if agent_net(transport) else "sshd"


def meson_prefix(build):
    cp = harness.run(["meson", "introspect", "--buildoptions", build],
                     timeout=60)
    opts = {o["name"]: o["value"] for o in json.loads(cp.stdout)}
    return opts["prefix"], opts["bindir"], opts["sbindir"], opts["mandir"], \
        opts["datadir"]


# ------------------------------------------------------------ meson install

def test_meson_install_file_list(hostshare_only, test_dir):
    """`meson install` puts the programs, the man pages and the example
    units where the prefix says, and the installed programs run."""
    build = harness.build_dir()
    dest = os.path.join(test_dir, "dest")
    harness.run(["meson", "install", "-C", build, "--no-rebuild",
                 "--destdir", dest], timeout=300)
    prefix, bindir, sbindir, mandir, datadir = meson_prefix(build)

    def p(d, *rest):
        return os.path.join(dest + os.path.join(prefix, d), *rest)

    want = {
        p(bindir, "hostshare"), p(bindir, "hostsharectl"),
        p(mandir, "man1", "hostshare.1"), p(mandir, "man1", "hostsharectl.1"),
        p(datadir, "doc", "hostshare", "examples", "mnt-hostshare.mount"),
        p(datadir, "doc", "hostshare", "examples", "hostshare-flush.service"),
        p(datadir, "doc", "hostshare", "examples", "hostshare-agent.service"),
    }
    # parts other programs bring: installed when the tree has them
    if os.path.exists(os.path.join(REPO, "tools", "mount.hostshare")):
        want.add(p(sbindir, "mount.hostshare"))
    if os.path.exists(os.path.join(REPO, "tools", "agent", "meson.build")):
        want.add(p(mandir, "man8", "hostshare-agent.8"))
    got = set()
    for root, _dirs, files in os.walk(dest):
        for f in files:
            got.add(os.path.join(root, f))
    missing = sorted(want - got)
    assert not missing, "not installed: %s" % missing
    # nothing of the tests, no static library
    rel = [os.path.relpath(f, dest) for f in got]
    extra = [f for f in rel if "/test" in f or f.endswith(".a")]
    assert not extra, "installed but should not be: %s" % extra
    for f in (p(bindir, "hostshare"), p(bindir, "hostsharectl")):
        assert os.access(f, os.X_OK), f
        cp = harness.run([f, "--version"], timeout=30)
        assert cp.stdout.startswith(os.path.basename(f) + " "), cp.stdout


# ---------------------------------------------------------------- man pages

@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_without_warnings(page):
    path = os.path.join(REPO, "docs", "man", page)
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    cp = subprocess.run(["man", "--warnings", "-l", path], env=env,
                        stdin=subprocess.DEVNULL, capture_output=True,
                        text=True, timeout=60)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr
    assert len(cp.stdout.splitlines()) > 40
    cp = subprocess.run(["groff", "-man", "-ww", "-z", path],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and cp.stderr == "", cp.stderr


def rendered(page):
    cp = subprocess.run(["man", "-l", os.path.join(REPO, "docs", "man", page)],
                        env=dict(os.environ, MANWIDTH="200", LC_ALL="C.UTF-8",
                                 MAN_KEEP_FORMATTING=""),
                        capture_output=True, text=True, timeout=60, check=True)
    # undo hyphenation and the Unicode hyphen man may print
    return cp.stdout.replace("\u2010", "-").replace("\u2212", "-")


def test_man_page_has_every_option(hostshare_only):
    """Every -o option of `hostshare --help`, and every hostsharectl
    command, is in its man page."""
    helptext = harness.run([harness.hostshare_bin(), "--help"], timeout=30).stdout
    names = set()
    for line in helptext.splitlines():
        m = re.match(r"^  ([A-Za-z_]+)(=|\s|,|$)", line)
        if m:
            names.add(m.group(1))
    assert {"port", "IdentityFile", "op_timeout", "fsync", "idmap",
            "loglevel", "max_threads"} <= names, names
    page = rendered("hostshare.1")
    missing = [n for n in sorted(names) if not re.search(r"\b%s\b" % n, page)]
    assert not missing, "hostshare.1 lacks: %s" % missing
    for word in ("EXIT STATUS", "fstab", "fuse.hostshare", "attr_timeout"):
        assert word in page
    page = rendered("hostsharectl.1")
    usage = harness.run([harness.hostsharectl_bin(), "--help"], timeout=30).stdout
    for cmd in re.findall(r"hostsharectl (\w+)", usage):
        assert re.search(r"\b%s\b" % cmd, page), cmd
    for check in LINK_CHECKS + ["link", "cache_space", "cache_limit", "memory", "swap",
                                "shared_folders", "journal", "errors"]:
        assert re.search(r"\b%s\b" % check, page), check


def test_version_names_the_libraries(hostshare_only):
    out = harness.run([harness.hostshare_bin(), "--version"], timeout=30).stdout
    for lib in ("hostshare ", "libfuse ", "libssh2 ", "sqlite ", "lz4 "):
        assert re.search(r"^%s\S+$" % lib, out, re.M), out
    out = harness.run([harness.hostsharectl_bin(), "--version"], timeout=30).stdout
    for lib in ("hostsharectl ", "libssh2 ", "sqlite ", "lz4 "):
        assert re.search(r"^%s\S+$" % lib, out, re.M), out


# ------------------------------------------------------------------- doctor

@pytest.mark.timeout(180)
def test_doctor_healthy_mount(hostshare_only, mount_factory, timing, transport):
    """Against a working mount every link check is ok (the host key is not
    applicable to a tcp/unix agent), nothing fails, the probe file is gone
    afterwards, and the text output has one line per check."""
    mnt = mount_factory(options=["attr_timeout=1"])
    with open(mnt.guest("f"), "w") as f:
        f.write("hello\n")
    mnt.flush()
    # the probe name is reserved: the guest can neither make nor see one
    with pytest.raises(PermissionError):
        open(mnt.guest(".hs-doctor.mine"), "w")
    with open(mnt.host(".hs-doctor.left-over"), "w") as f:
        f.write("x")
    time.sleep(1.2)                          # past attr_timeout
    assert sorted(os.listdir(mnt.guest())) == ["f"]
    os.unlink(mnt.host(".hs-doctor.left-over"))
    t0 = time.monotonic()
    rep, checks = doctor_json(mnt.path)
    took = time.monotonic() - t0
    assert rep["ok"], rep
    want = expected_link_checks(transport)
    for name in ["link", "journal", "errors", "shared_folders", "cache_limit"]:
        want[name] = "ok"
    for name, verdict in want.items():
        assert checks[name]["verdict"] == verdict, checks[name]
    if agent_net(transport):
        assert checks["hostkey"]["detail"].startswith("not applicable"), \
            checks["hostkey"]
        assert "token" in checks["auth"]["detail"], checks["auth"]
    if transport == "sftp":
        assert "agent" not in checks, checks["agent"]
    # the machine's own state may warn, never fail
    for name in ("cache_space", "memory", "swap"):
        assert checks[name]["verdict"] in ("ok", "warn"), checks[name]
    assert abs(checks["clock"]["value"]) < 2, checks["clock"]
    assert checks["upload"]["value"] > 0 and checks["download"]["value"] > 0
    assert not glob.glob(mnt.host(".hs-doctor.*")), os.listdir(mnt.host())
    assert sorted(os.listdir(mnt.guest())) == ["f"]
    timing("doctor: whole run", took, "s")
    timing("doctor: rtt median", checks["rtt"]["value"], "ms")
    timing("doctor: upload", checks["upload"]["value"], "MiB/s")
    timing("doctor: download", checks["download"]["value"], "MiB/s")

    cp = ctl("doctor", mnt.path)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0].startswith(mnt.path + ": "), lines[0]
    for name in checks:
        assert re.search(r"^(ok|warn|FAIL|skip)\s+%s\s" % name, cp.stdout,
                         re.M), (name, cp.stdout)

    # --no-write: no probe file, its checks skipped
    rep, checks = doctor_json("--no-write", mnt.path)
    for name in ("upload", "download", "clock"):
        assert checks[name]["verdict"] == "skip"
    assert checks["rtt"]["verdict"] == "ok"





@pytest.mark.timeout(120)
def test_doctor_cache_limit_small(hostshare_only, mount_factory):
    """More pending than half the room the cache may use (cache_size=
    here): a warning saying so and what to do; once it is on the host, ok."""
    mnt = mount_factory(options=["writeback_delay=60000", "cache_size=4M"])
    with open(mnt.guest("big"), "wb") as f:
        f.write(os.urandom(3 << 20))
    rep, checks = doctor_json("--no-write", mnt.path)
    c = checks["cache_limit"]
    assert c["verdict"] == "warn", c
    assert "3.0 MiB pending of the 4.0 MiB the cache may use (cache_size=4.0 MiB)" \
        in c["detail"], c
    assert "cache_size=" in c["fix"] and "min_free=" in c["fix"] and \
        "bigger disk" in c["fix"], c
    assert 74 < c["value"] < 76, c
    mnt.flush()
    rep, checks = doctor_json("--no-write", mnt.path)
    assert checks["cache_limit"]["verdict"] == "ok", checks["cache_limit"]
    assert checks["cache_limit"]["detail"].startswith("0 B pending"), checks["cache_limit"]


@pytest.mark.timeout(180)
def test_doctor_stalled_link(hostshare_only, make_proxy, host_server, test_dir,
                             mount_factory, timing, transport):
    """A link that stalls (the proxy holds the sockets and moves nothing):
    the doctor names the failing check within its deadlines, and the
    mount itself keeps answering."""
    proxy = make_proxy()
    try:
        mnt = mount_factory(**via_proxy(proxy, host_server, test_dir,
                                        ["ConnectTimeout=2", "op_timeout=3"]))
        with open(mnt.guest("f"), "w") as f:
            f.write("cached\n")
        mnt.flush()
        proxy.stall()
        t0 = time.monotonic()
        rep, checks = doctor_json("--timeout", "3", mnt.path, timeout=60)
        took = time.monotonic() - t0
        timing("doctor on a stalled link", took, "s")
        assert not rep["ok"]
        assert "connect" in rep["failed"], rep
        fix = checks["connect"]["fix"]
        if agent_net(transport):
            assert "hostshare-agent" in fix and "stall" in fix, fix
            assert "sshd" not in fix and "SSH" not in fix, fix
        else:
            assert "SSH" in fix or "stall" in fix, fix
        names = ["hostkey", "auth", "rtt", "upload", "host_space"]
        if transport == "agent-ssh":
            names.append("agent")
        for name in names:
            assert checks[name]["verdict"] == "skip", checks[name]
        # local checks still ran
        assert checks["memory"]["verdict"] in ("ok", "warn")
        assert checks["journal"]["verdict"] in ("ok", "warn")
        assert took < 20, took
        with open(mnt.guest("f")) as f:
            assert f.read() == "cached\n"
        proxy.resume()
        rep, checks = doctor_json(mnt.path, timeout=60)
        assert checks["connect"]["verdict"] == "ok", checks["connect"]
    finally:
        proxy.resume()
        mount_factory.teardown()
        mount_factory.mounts.clear()
        proxy.stop()


@pytest.mark.timeout(180)
def test_doctor_host_gone(hostshare_only, make_proxy, host_server, test_dir,
                          mount_factory, transport):
    """What the mount dials (the host's SSH port, the agent's port or
    socket) goes away under a mount (every connection closed, new ones
    refused): connect fails as refused (a unix socket: gone), its fix
    names the server to start, link fails once the mount noticed, and the
    journal shows the work waiting for it with its real age; mounted again
    while the host is still gone, the journal warns of the work an earlier
    mount left."""
    proxy = make_proxy()
    try:
        mnt = mount_factory(**via_proxy(proxy, host_server, test_dir,
                                        ["ServerAliveInterval=1", "ConnectTimeout=2",
                                         "op_timeout=2", "writeback_delay=50"]))
        with open(mnt.guest("before"), "w") as f:
            f.write("x\n")
        mnt.flush()
        proxy.stop()
        with open(mnt.guest("after"), "w") as f:
            f.write("y\n")
        written = time.monotonic()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and mnt.status()["link"] == "connected":
            time.sleep(0.3)
        rep, checks = doctor_json(mnt.path, timeout=60)
        assert "connect" in rep["failed"], rep
        gone = "no such file" if transport == "agent-unix" else "refused"
        assert gone in checks["connect"]["detail"], checks["connect"]
        assert server_fix_word(transport) in checks["connect"]["fix"], \
            checks["connect"]
        assert "link" in rep["failed"], checks["link"]
        pending = mnt.status()["pending_ops"]
        assert pending >= 1
        assert checks["journal"]["detail"].startswith(
            "%d operations pending" % pending), checks["journal"]
        time.sleep(max(0.0, written + 2.5 - time.monotonic()))
        rep, checks = doctor_json("--no-write", mnt.path, timeout=60)
        age = time.monotonic() - written
        j = checks["journal"]
        m = re.search(r"the oldest (\d+) s old", j["detail"])
        assert m, j
        assert 2 <= int(m.group(1)) <= age + 1, (j, age)
        assert j["value"] == int(m.group(1)), j
        assert "earlier mount" not in j["detail"], j

        assert mnt.unmount() == 0       # the work stays in the cache
        mnt.mount()                     # offline: the host is still gone
        rep, checks = doctor_json("--no-write", mnt.path, timeout=60)
        j = checks["journal"]
        assert j["detail"].startswith("%d operations pending" % pending), j
        assert ", %d from an earlier mount" % pending in j["detail"], j
        assert j["verdict"] == "warn", j
        assert "hostsharectl flush --wait" in j["fix"], j
    finally:
        mount_factory.teardown()
        mount_factory.mounts.clear()
        proxy.stop()


@pytest.mark.sftp_only("doctor of an SSH source, its own sshd stopped")
@pytest.mark.timeout(120)
def test_doctor_sshd_stopped_source(hostshare_only, test_dir):
    """Doctor of a SOURCE whose sshd was stopped: connect fails, refused."""
    own = Sshd(os.path.join(test_dir, "sshd")).start()
    port = own.port
    src = own.source(own.host_dir("share"))
    opts = "IdentityFile=%s,UserKnownHostsFile=%s,cache_dir=%s" % (
        own.key, own.known_hosts, os.path.join(test_dir, "cache"))
    try:
        rep, _ = doctor_json("-p", str(port), "-o", opts, src)
        assert rep["ok"], rep
    finally:
        own.stop()
    rep, checks = doctor_json("-p", str(port), "-o", opts, src)
    assert rep["failed"] == ["connect"], rep
    assert "refused" in checks["connect"]["detail"]


@pytest.mark.parametrize("listen", ["tcp", "unix"])
@pytest.mark.timeout(120)
def test_doctor_agent_source(hostshare_only, test_dir, listen):
    """Doctor of an agent SOURCE (not mounted, an agent of its own; the
    same on every --transport): the right token passes with the host key
    not applicable; a wrong token fails auth, one line, with a fix about
    the token file; with no agent listening, connect fails with a fix that
    names hostshare-agent and where it should listen, never sshd."""
    root = os.path.join(test_dir, "root")
    os.makedirs(os.path.join(root, "share"))
    agent = Agent(os.path.join(test_dir, "agent"), root, listen=listen).start()
    src = agent.source(os.path.join(root, "share"))
    cache = "cache_dir=" + os.path.join(test_dir, "cache")
    wrong = os.path.join(test_dir, "wrong.token")
    with open(wrong, "w") as f:
        f.write("not-the-token\n")
    try:
        rep, checks = doctor_json("-o", cache + ",token_file=" + agent.token_file,
                                  src)
        assert rep["ok"], rep
        assert checks["hostkey"]["verdict"] == "skip"
        assert checks["hostkey"]["detail"].startswith("not applicable"), checks
        assert checks["auth"]["verdict"] == "ok", checks["auth"]
        assert not glob.glob(os.path.join(root, "share", ".hs-doctor.*"))

        rep, checks = doctor_json("-o", cache + ",token_file=" + wrong, src)
        assert rep["failed"] == ["auth"], rep
        assert checks["auth"]["detail"] == "the agent refused the token", checks
        assert "token" in checks["auth"]["fix"], checks["auth"]
        assert checks["connect"]["verdict"] == "ok"
        cp = ctl("doctor", "-o", cache + ",token_file=" + wrong, src)
        assert cp.returncode == 1
        assert re.search(r"^FAIL  auth +the agent refused the token\n +fix: .*token",
                         cp.stdout, re.M), cp.stdout
    finally:
        agent.stop()

    rep, checks = doctor_json("-o", cache + ",token_file=" + agent.token_file,
                              src)
    assert rep["failed"] == ["connect"], rep
    c = checks["connect"]
    # a stopped agent may leave its socket file: refused, else gone
    assert "refused" in c["detail"] or (
        listen == "unix" and "no such file" in c["detail"]), c
    assert "no hostshare-agent is listening at" in c["fix"], c
    assert "--listen " + agent._spec() in c["fix"], c
    assert "sshd" not in c["fix"] and "ssh" not in c["detail"], c
    for name in ("hostkey", "auth", "folder", "rtt", "upload"):
        assert checks[name]["verdict"] == "skip", checks[name]
    cp = ctl("doctor", "-o", cache + ",token_file=" + agent.token_file, src)
    assert cp.returncode == 1
    assert re.search(r"^FAIL  connect +cannot connect to .*\n +fix: no hostshare-agent",
                     cp.stdout, re.M), cp.stdout


@pytest.mark.timeout(120)
def test_doctor_agent_over_ssh_source(hostshare_only, sshd, test_dir):
    """Doctor of an ssh SOURCE with -o agent (the same on every
    --transport): the SSH checks stay and 'agent' says whether
    hostshare-agent --stdio runs on the host; a missing agent program
    fails 'agent' (host key and login ok), with a fix naming
    agent_command=."""
    host = sshd.host_dir(os.path.basename(test_dir))
    src = sshd.source(host)
    base = "cache_dir=%s,IdentityFile=%s,UserKnownHostsFile=%s,agent" % (
        os.path.join(test_dir, "cache"), sshd.key, sshd.known_hosts)
    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              base + ",agent_command=" + harness.agent_bin(), src)
    assert rep["ok"], rep
    for name in ("connect", "hostkey", "auth", "agent", "folder", "rtt",
                 "upload"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert not glob.glob(os.path.join(host, ".hs-doctor.*"))

    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              base + ",agent_command=/nonexistent/hostshare-agent",
                              src)
    assert rep["failed"] == ["agent"], rep
    assert checks["hostkey"]["verdict"] == "ok"
    assert checks["auth"]["verdict"] == "ok"
    assert "agent_command=" in checks["agent"]["fix"], checks["agent"]
    assert checks["folder"]["verdict"] == "skip"

    # the agent stops at once on a missing folder: that is the folder's
    # failure (asked over SFTP), not the agent's
    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              base + ",agent_command=" + harness.agent_bin(),
                              src + "/nonexistent")
    assert rep["failed"] == ["folder"], rep
    assert "does not exist" in checks["folder"]["detail"], checks["folder"]
    assert checks["agent"]["verdict"] == "skip", checks["agent"]


@pytest.mark.sftp_only("SSH host keys and identities")
def test_doctor_source_host_key_and_auth(hostshare_only, sshd, test_dir):
    """Doctor of a SOURCE (no mount): a known_hosts with another key fails
    hostkey, a key the host does not accept fails auth, and the right
    settings pass; fstab-only options are accepted."""
    host = sshd.host_dir(os.path.basename(test_dir))
    src = sshd.source(host)
    other = Sshd.keygen(os.path.join(test_dir, "other_key"))
    bad_kh = os.path.join(test_dir, "bad_known_hosts")
    with open(bad_kh, "w") as f:
        f.write(sshd.known_hosts_line(other) + "\n")
    cache = os.path.join(test_dir, "cache")
    base = "_netdev,nofail,cache_dir=%s,IdentityFile=%s" % (cache, sshd.key)

    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              base + ",UserKnownHostsFile=" + bad_kh, src)
    assert rep["failed"] == ["hostkey"], rep
    assert "does not match" in checks["hostkey"]["detail"]

    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              "cache_dir=%s,IdentityFile=%s,UserKnownHostsFile=%s"
                              % (cache, os.path.join(test_dir, "other_key"),
                                 sshd.known_hosts), src)
    assert rep["failed"] == ["auth"], rep
    assert checks["hostkey"]["verdict"] == "ok"

    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              base + ",UserKnownHostsFile=" + sshd.known_hosts,
                              src + "/nonexistent")
    assert rep["failed"] == ["folder"], rep

    rep, checks = doctor_json("-p", str(sshd.port), "-o",
                              base + ",UserKnownHostsFile=" + sshd.known_hosts,
                              src)
    assert rep["ok"], rep
    assert checks["journal"]["verdict"] == "ok"     # never mounted
    assert not os.path.exists(cache), "the doctor created the cache root"
    assert not glob.glob(os.path.join(host, ".hs-doctor.*"))

    cp = ctl("doctor", "-o", "port=notanumber", src)
    assert cp.returncode == 2 and "port" in cp.stderr, cp.stderr
    cp = ctl("doctor", os.path.join(test_dir, "nothing-here"))
    assert cp.returncode == 1 and "does not exist" in cp.stderr, cp.stderr


@pytest.mark.timeout(180)
def test_doctor_nested_shared_folder(hostshare_only, sshd, test_dir,
                                     mount_factory):
    """A filesystem of a hypervisor type (here a second FUSE mount that
    registers as fuse.vmhgfs-fuse, as vmhgfs-fuse does) nested inside the
    mount: shared_folders warns and names it."""
    mnt = mount_factory()
    inner = os.path.join(mnt.path, "hgfs")
    os.mkdir(inner)
    other_host = sshd.host_dir(os.path.basename(test_dir) + "-hgfs")
    m2 = Mount("hostshare", sshd, other_host, inner,
               os.path.join(test_dir, "cache-hgfs"),
               os.path.join(test_dir, "hgfs.log"),
               options=["subtype=vmhgfs-fuse"], foreground=True)
    m2.mount()
    try:
        assert harness.mountinfo_entry(inner)[-3] == "fuse.vmhgfs-fuse"
        rep, checks = doctor_json("--no-write", mnt.path)
        sf = checks["shared_folders"]
        assert sf["verdict"] == "warn", sf
        assert "fuse.vmhgfs-fuse on %s" % inner in sf["detail"], sf
    finally:
        assert m2.unmount() == 0


# ------------------------------------------------------------ Debian package

def copy_tree(dst):
    def ignore(d, names):
        if os.path.abspath(d) == REPO:
            return [n for n in names if n in (".git", "dist") or
                    n.startswith("build") or n.startswith("obj-")]
        return [n for n in names if n == "__pycache__"]
    shutil.copytree(REPO, dst, ignore=ignore, symlinks=True)


def dpkg_installed(pkg):
    cp = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                        capture_output=True, text=True)
    return cp.returncode == 0 and "install ok installed" in cp.stdout


@pytest.mark.sftp_only("packaging: the installed program mounts the test sshd's "
                       "folder once (ssh options on its command line)")
@pytest.mark.timeout(600)
def test_deb_builds_installs_and_mounts(hostshare_only, sshd, test_dir,
                                        timing):
    """dpkg-buildpackage -b makes hostshare_*.deb with the right Depends;
    apt installs it; /usr/bin/hostshare mounts the test sshd's folder and
    the data reaches the host; dpkg -r removes it all."""
    assert not dpkg_installed("hostshare"), \
        "a hostshare package is installed on this machine already; remove it first"
    src = os.path.join(test_dir, "src", "hostshare")
    copy_tree(src)
    t0 = time.monotonic()
    cp = harness.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src,
                     timeout=540, check=False,
                     env=dict(os.environ, DEB_BUILD_OPTIONS="nocheck parallel=2"))
    timing("dpkg-buildpackage -b", time.monotonic() - t0, "s")
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    debs = glob.glob(os.path.join(test_dir, "src", "hostshare_*.deb"))
    assert len(debs) == 1, debs
    deb = debs[0]
    fields = harness.run(["dpkg-deb", "-f", deb, "Package", "Depends"],
                         timeout=30).stdout
    assert "Package: hostshare" in fields
    for dep in ("libfuse3-3", "libssh2-1", "liblz4-1", "libsqlite3-0",
                "fuse3"):
        assert re.search(r"\b%s\b" % re.escape(dep), fields), fields
    listing = harness.run(["dpkg-deb", "-c", deb], timeout=30).stdout
    for f in ("./usr/bin/hostshare", "./usr/bin/hostsharectl",
              "./usr/share/man/man1/hostshare.1.gz",
              "./usr/share/man/man1/hostsharectl.1.gz",
              "./usr/share/doc/hostshare/examples/mnt-hostshare.mount"):
        assert f in listing, (f, listing)

    mnt = os.path.join(test_dir, "mnt")
    host = sshd.host_dir(os.path.basename(test_dir))
    os.makedirs(mnt)
    installed = False
    try:
        cp = harness.run(["apt-get", "install", "-y", "-q",
                          os.path.abspath(deb)], timeout=300, check=False,
                         env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        installed = dpkg_installed("hostshare")
        assert cp.returncode == 0 and installed, cp.stdout + cp.stderr
        out = harness.run(["/usr/bin/hostshare", "--version"], timeout=30).stdout
        assert out.startswith("hostshare "), out
        out = subprocess.run(["man", "-w", "hostsharectl"], capture_output=True,
                             text=True).stdout
        assert out.strip() == "/usr/share/man/man1/hostsharectl.1.gz", out
        harness.run(["/usr/bin/hostshare", "-o",
                     "IdentityFile=%s,UserKnownHostsFile=%s,port=%d,cache_dir=%s"
                     % (sshd.key, sshd.known_hosts, sshd.port,
                        os.path.join(test_dir, "cache")),
                     sshd.source(host), mnt], timeout=60)
        try:
            data = os.urandom(300000)
            with open(os.path.join(mnt, "from-deb"), "wb") as f:
                f.write(data)
            harness.run(["/usr/bin/hostsharectl", "flush", "--wait",
                         "--timeout", "60", mnt], timeout=90)
            with open(os.path.join(host, "from-deb"), "rb") as f:
                assert f.read() == data
            rep = json.loads(harness.run(["/usr/bin/hostsharectl", "doctor",
                                          "--json", "--no-write", mnt],
                                         timeout=90, check=False).stdout)
            assert rep["ok"], rep
        finally:
            harness.fusermount(mnt)
    finally:
        if installed or dpkg_installed("hostshare"):
            harness.run(["dpkg", "-r", "hostshare"], timeout=120)
    assert not os.path.exists("/usr/bin/hostshare")
    assert not dpkg_installed("hostshare")
