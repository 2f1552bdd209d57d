# SPDX-License-Identifier: MIT
"""hostshare mounted the way the system mounts it: mount(8) with an fstab
line (through mount.fuse3 for type fuse.hostshare, through
/sbin/mount.hostshare for type hostshare), `mount -a`, `umount`, the
options mount(8) and systemd pass, and a host that is down at boot.

mount(8) runs helpers with a minimal environment: mount.fuse3 finds
`hostshare` in the shell's default PATH, and mount(8) looks for
/sbin/mount.TYPE only.  The `installed` fixture therefore puts two
symlinks in place for the duration of a test, /usr/local/bin/hostshare
(to the build under test) and /sbin/mount.hostshare (to tools/
mount.hostshare laid out as `meson install` does: PREFIX/sbin next to
PREFIX/bin), and removes them afterwards.  It refuses to touch a real
file of the same name (the test is skipped then).
"""

import json
import os
import shutil
import time

import pytest

import harness
from harness import run, via_proxy

pytestmark = pytest.mark.hostshare_only

REPO = harness.REPO_ROOT
HELPER_SRC = os.path.join(REPO, "tools", "mount.hostshare")
SBIN_HELPER = "/sbin/mount.hostshare"
BIN_LINK = "/usr/local/bin/hostshare"

# What mount(8), mount.fuse3 and systemd put in the option string of an
# fstab line; each must be accepted (or ignored), never rejected.
SYSTEM_OPTIONS = ["_netdev", "nofail", "noauto", "auto", "user", "users",
                  "nouser", "rw", "exec", "noexec", "dev", "nodev", "suid",
                  "nosuid", "defaults", "comment=systemd.automount",
                  "x-systemd.automount", "x-systemd.idle-timeout=60",
                  "x-systemd.mount-timeout=30", "x-systemd.requires=network-online.target",
                  "x-systemd.after=network-online.target", "x-gvfs-show",
                  "x-gvfs-name=Host", "atime", "noatime", "relatime",
                  "strictatime", "nodiratime", "sync", "async", "ro"]


def _ours(link, want_target_prefix):
    """True if @link is absent, or a symlink we may replace: one into
    @want_target_prefix or one whose target is gone (left over)."""
    if not os.path.lexists(link):
        return True
    if not os.path.islink(link):
        return False
    target = os.readlink(link)
    return target.startswith(want_target_prefix) or not os.path.exists(link)


@pytest.fixture
def installed(test_dir):
    """hostshare and mount.hostshare where mount(8) finds them."""
    prefix = os.path.join(test_dir, "prefix")
    os.makedirs(os.path.join(prefix, "sbin"))
    os.makedirs(os.path.join(prefix, "bin"))
    helper = os.path.join(prefix, "sbin", "mount.hostshare")
    shutil.copy2(HELPER_SRC, helper)
    os.symlink(harness.hostshare_bin(), os.path.join(prefix, "bin", "hostshare"))
    build_prefix = os.path.dirname(os.path.dirname(harness.hostshare_bin()))
    for link, mine in ((SBIN_HELPER, os.path.dirname(test_dir)),
                       (BIN_LINK, build_prefix)):
        if not _ours(link, mine) and not _ours(link, REPO):
            pytest.skip("%s exists and is not a link of this test suite; "
                        "not replacing it" % link)
    made = []
    try:
        for link, target in ((SBIN_HELPER, helper),
                             (BIN_LINK, harness.hostshare_bin())):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(target, link)
            made.append((link, target))
        yield prefix
    finally:
        for link, target in made:
            if os.path.islink(link) and os.readlink(link) == target:
                os.unlink(link)


class SysMount:
    """A mount made by mount(8), tracked through a harness Mount object so
    the fixtures' teardown and the watchdog can clean it up."""

    def __init__(self, mount_factory, options=(), name=None, cache_dir=None, sshd=None):
        self.m = mount_factory(options=list(options), foreground=False,
                               mount=False, name=name, cache_dir=cache_dir, sshd=sshd)
        cmd = self.m.command(foreground=False)
        assert cmd[1] == "-o"
        self.opts = cmd[2]
        self.source = cmd[-2]
        self.path = self.m.path

    def fstab_line(self, fstype="fuse.hostshare", extra=()):
        opts = ",".join(list(extra) + [self.opts])
        return "%s %s %s %s 0 0\n" % (self.source, self.path, fstype, opts)

    def adopt(self):
        """After mount(8) returned 0: record the daemon's PID."""
        assert harness.is_mounted(self.path), "%s is not mounted" % self.path
        self.m.pid = self.m.find_daemon_pid()
        assert self.m.pid, "no hostshare daemon found for %s" % self.path
        with harness._live_lock:
            harness._live_mounts.add(self.m)
        return self.m.pid

    def umount(self):
        """umount(8), then the daemon must exit by itself."""
        pid = self.m.pid
        cp = run(["umount", self.path], check=False, timeout=30)
        assert cp.returncode == 0, "umount failed: %s" % cp.stderr
        assert not harness.is_mounted(self.path)
        if pid:
            assert harness.wait_pid_gone(pid, 20), \
                "daemon %d still running after umount" % pid
        self.m._forget()


def write_fstab(test_dir, lines, name="fstab"):
    p = os.path.join(test_dir, name)
    with open(p, "w") as f:
        f.write("# hostshare test fstab\n")
        f.writelines(lines)
    return p


def fs_type(path):
    """The mountinfo line of @path as a dict: fstype, source, mount_opts
    (per mount point) and super_opts (per file system)."""
    f = harness.mountinfo_entry(path)
    assert f, "%s not in mountinfo" % path
    sep = f.index("-", 6)
    return {"mount_opts": f[5], "fstype": f[sep + 1],
            "source": harness._unescape_mountinfo(f[sep + 2]),
            "super_opts": f[sep + 3]}


def test_system_options_each_accepted():
    """Every option mount(8)/systemd pass is accepted on its own (the
    parser runs before -h prints the usage, so a rejected option fails)."""
    for opt in SYSTEM_OPTIONS + ["allow_other", "default_permissions",
                                 "uid=1000", "gid=1000", "umask=022"]:
        cp = run([harness.hostshare_bin(), "-o", opt, "-h"], check=False)
        assert cp.returncode == 0, "option %r rejected: %s" % (opt, cp.stderr)
    cp = run([harness.hostshare_bin(), "-o", "no_such_option", "-h"], check=False)
    assert cp.returncode == 1 and "unknown option 'no_such_option'" in cp.stderr


def test_fstab_fuse_type_mount_umount(installed, mount_factory, test_dir, timing):
    """fstab type fuse.hostshare: `mount DIR` and `umount DIR` through
    mount.fuse3, with every option systemd writes into such a line."""
    sm = SysMount(mount_factory)
    extra = [o for o in SYSTEM_OPTIONS if o not in ("ro", "noexec")] + ["allow_other"]
    fstab = write_fstab(test_dir, [sm.fstab_line(extra=extra)])
    t0 = time.monotonic()
    cp = run(["mount", "-T", fstab, sm.path], check=False, timeout=60)
    timing("mount -T (fuse.hostshare) returns", time.monotonic() - t0, "s")
    assert cp.returncode == 0, "mount failed: %s %s" % (cp.stdout, cp.stderr)
    sm.adopt()
    e = fs_type(sm.path)
    assert e["fstype"] == "fuse.hostshare", e
    assert e["source"] == sm.source, e
    assert "allow_other" in e["super_opts"] and "default_permissions" in e["super_opts"], e

    data = os.urandom(300000)
    with open(sm.m.guest("via-fstab.bin"), "wb") as f:
        f.write(data)
    sm.m.flush()
    with open(sm.m.host("via-fstab.bin"), "rb") as f:
        assert f.read() == data
    sm.umount()


def test_fstab_mount_all_skips_noauto(installed, mount_factory, test_dir):
    """`mount -a` mounts the auto line and leaves the noauto one alone."""
    a = SysMount(mount_factory, name="auto")
    b = SysMount(mount_factory, name="manual")
    fstab = write_fstab(test_dir, [
        a.fstab_line(extra=["_netdev", "nofail", "x-systemd.automount"]),
        b.fstab_line(extra=["_netdev", "noauto"])])
    cp = run(["mount", "-a", "-T", fstab], check=False, timeout=60)
    assert cp.returncode == 0, cp.stderr
    a.adopt()
    assert not harness.is_mounted(b.path), "noauto line was mounted by mount -a"
    os.listdir(a.path)
    # a second mount -a is a no-op for what is mounted already
    cp = run(["mount", "-a", "-T", fstab], check=False, timeout=60)
    assert cp.returncode == 0, cp.stderr
    cp = run(["mount", "-T", fstab, b.path], check=False, timeout=60)
    assert cp.returncode == 0, cp.stderr
    b.adopt()
    a.umount()
    b.umount()


def test_mount_t_hostshare_helper(installed, mount_factory, test_dir):
    """`mount -t hostshare` and fstab type hostshare go through
    /sbin/mount.hostshare; -v shows the hostshare command; -o ro works."""
    sm = SysMount(mount_factory)
    cp = run(["mount", "-v", "-t", "hostshare", "-o",
              "_netdev,nofail,noauto,x-systemd.automount,defaults," + sm.opts,
              sm.source, sm.path], check=False, timeout=60)
    assert cp.returncode == 0, "mount -t hostshare failed: %s %s" % (cp.stdout, cp.stderr)
    assert "mount.hostshare:" in cp.stderr and "/bin/hostshare -o" in cp.stderr, cp.stderr
    sm.adopt()
    assert fs_type(sm.path)["fstype"] == "fuse.hostshare"
    with open(sm.m.guest("t.txt"), "w") as f:
        f.write("via mount -t hostshare\n")
    sm.m.flush()
    with open(sm.m.host("t.txt")) as f:
        assert f.read() == "via mount -t hostshare\n"
    sm.umount()

    # the same through an fstab line of type hostshare, read-only
    fstab = write_fstab(test_dir, [sm.fstab_line(fstype="hostshare",
                                                 extra=["ro", "nofail", "user"])])
    cp = run(["mount", "-T", fstab, sm.path], check=False, timeout=60)
    assert cp.returncode == 0, cp.stderr
    sm.adopt()
    e = fs_type(sm.path)
    assert e["fstype"] == "fuse.hostshare" and "ro" in e["mount_opts"].split(","), e
    with open(sm.m.guest("t.txt")) as f:
        assert f.read() == "via mount -t hostshare\n"
    with pytest.raises(OSError) as ei:
        open(sm.m.guest("new.txt"), "w")
    assert ei.value.errno == 30  # EROFS
    sm.umount()

    # bad use of the helper: one line, exit 1
    cp = run([SBIN_HELPER, sm.source], check=False)
    assert cp.returncode == 1 and "usage" in cp.stderr
    cp = run([SBIN_HELPER, sm.source, sm.path, "-x"], check=False)
    assert cp.returncode == 1 and "unknown option '-x'" in cp.stderr
    # -f (fake) mounts nothing
    cp = run([SBIN_HELPER, sm.source, sm.path, "-f", "-o", sm.opts], check=False)
    assert cp.returncode == 0 and not harness.is_mounted(sm.path)


@pytest.mark.timeout(150)
def test_fstab_host_down_at_boot(installed, mount_factory, make_proxy, host_server,
                                 test_dir, timing):
    """With a cache, a host that is down does not hold the fstab mount up:
    it comes up offline at once.  Without a cache it fails fast with one
    clear line."""
    proxy = make_proxy()
    via = via_proxy(proxy, host_server, test_dir, ["ConnectTimeout=5"])
    try:
        sm = SysMount(mount_factory, **via)
        fstab = write_fstab(test_dir, [sm.fstab_line(extra=["_netdev", "nofail"])])
        cp = run(["mount", "-T", fstab, sm.path], check=False, timeout=60)
        assert cp.returncode == 0, cp.stderr
        sm.adopt()
        with open(sm.m.guest("seen.txt"), "w") as f:
            f.write("cached before the host went down\n")
        sm.m.flush()
        sm.umount()
    finally:
        proxy.stop()     # the host is gone: its port refuses connections

    t0 = time.monotonic()
    cp = run(["mount", "-T", fstab, sm.path], check=False, timeout=60)
    took = time.monotonic() - t0
    timing("fstab mount with host down, cache present", took, "s")
    assert cp.returncode == 0, "offline mount failed: %s" % cp.stderr
    assert took < 10, "mount with the host down took %.1f s" % took
    sm.adopt()
    with open(sm.m.guest("seen.txt")) as f:
        assert f.read() == "cached before the host went down\n"
    st = sm.m.status()
    assert st["link"] in ("offline", "reconnecting"), st
    with open(sm.m.guest("while-down.txt"), "w") as f:
        f.write("written offline\n")
    sm.umount()

    # no cache for this mount (a cache folder of its own): fails fast,
    # one line
    fresh = SysMount(mount_factory, name="fresh", **via)
    fstab2 = write_fstab(test_dir, [fresh.fstab_line(extra=["_netdev", "nofail"])],
                         name="fstab2")
    t0 = time.monotonic()
    cp = run(["mount", "-T", fstab2, fresh.path], check=False, timeout=60)
    took = time.monotonic() - t0
    timing("fstab mount with host down, no cache: fails after", took, "s")
    assert cp.returncode != 0
    assert took < 10, "failing mount took %.1f s" % took
    # '127.0.0.1:PORT' over TCP, 'unix:PATH' to an agent's unix socket
    assert "hostshare: cannot connect to '" in cp.stderr, cp.stderr
    assert not harness.is_mounted(fresh.path)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_examples_verify(tmp_path):
    """The shipped .mount/.automount examples load in systemd (offline
    `systemd-analyze verify`) and name the same mount point."""
    d = os.path.join(REPO, "tools", "systemd")
    units = sorted(os.path.join(d, n) for n in os.listdir(d)
                   if n.endswith((".mount", ".automount")))
    assert len(units) == 2, units
    cp = run(["systemd-analyze", "verify"] + units, check=False, cwd=str(tmp_path))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    for u in units:
        with open(u) as f:
            where = [ln.split("=", 1)[1].strip() for ln in f if ln.startswith("Where=")]
        esc = run(["systemd-escape", "-p", "--suffix=" + u.rsplit(".", 1)[1], where[0]]).stdout
        assert esc.strip() == os.path.basename(u), (u, esc)


def test_meson_install_layout(tmp_path):
    """`meson install` puts mount.hostshare in PREFIX/sbin and, unless that
    is /sbin or /usr/sbin, a symlink to it in /sbin, where mount(8) looks;
    the installed helper runs the installed hostshare (PREFIX/bin)."""
    dest = str(tmp_path / "dest")
    cp = run(["meson", "install", "-C", harness.build_dir(), "--no-rebuild",
              "--destdir", dest], check=False, timeout=120)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    installed = json.loads(run(["meson", "introspect", "--installed",
                                harness.build_dir()]).stdout).values()
    prog = [v for v in installed if v.endswith("/bin/hostshare")]
    helper = [v for v in installed if v.endswith("/sbin/mount.hostshare")
              and v != "/sbin/mount.hostshare"]
    assert len(prog) == 1 and len(helper) == 1, installed
    assert os.stat(dest + helper[0]).st_mode & 0o111
    if helper[0] != "/usr/sbin/mount.hostshare":
        assert os.readlink(dest + "/sbin/mount.hostshare") == helper[0]
    # -f -v: print the command, mount nothing
    cp = run([dest + helper[0], "me@host:/x", str(tmp_path), "-f", "-v",
              "-o", "rw,nofail"], check=False)
    assert cp.returncode == 0, cp.stderr
    words = cp.stderr.split()
    assert words[0] == "mount.hostshare:", cp.stderr
    assert os.path.realpath(words[1]) == os.path.realpath(dest + prog[0]), cp.stderr
    assert words[2:] == ["-o", "rw,nofail", "--", "me@host:/x", str(tmp_path)], cp.stderr
