# SPDX-License-Identifier: MIT
"""Fixtures of the integration suite (see tests/lib/harness.py).

  --mounter hostshare|sshfs   what the `mnt` fixture mounts (default
                              hostshare, from $HS_BUILD_DIR or ./build)
  --transport sftp|agent-tcp|agent-unix|agent-ssh
                              how hostshare reaches the host (default sftp):
                              agent-* start one hostshare-agent for the
                              session and mount tcp://, unix: or vsock://
                              sources, agent-ssh mounts the sshd with
                              -o agent.  Tests marked sftp_only(reason)
                              (SSH's own matters: host keys, identities,
                              its messages) are skipped on the agent; the
                              fault proxy sits in front of whatever the
                              mount dials (sshd, the agent's TCP port or
                              unix socket) and skips only on vsock

Discipline (STYLE.md section 8):
 - each test gets its own host folder, mountpoint, cache folder and daemon
   log under one per-test folder, removed when the test passes and kept
   (path printed) when it fails;
 - every test has a wall-clock budget (marker `timeout(seconds)`, default
   120 s): SIGALRM fails the test; if the main thread is stuck in a FUSE
   call, a watchdog thread aborts the connection, kills the recorded daemon
   and tool PIDs and detaches the mount so the run continues;
 - hostshare runs with -f as a child process by default, so its stderr and
   exit status are ours: teardown requires a clean unmount, exit status 0,
   and no sanitizer report in the log;
 - on failure the daemon log and a one-line repro command are printed.
"""

import faulthandler
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))

import harness  # noqa: E402
from harness import Agent, AgentOverSsh, Mount, Sshd  # noqa: E402

DEFAULT_TIMEOUT = 120     # s, per test (setup + call)
TEARDOWN_TIMEOUT = 90     # s, unmount and daemon exit included
WATCHDOG_GRACE = 15       # s after SIGALRM before the hard abort
TIMINGS_FILE = os.path.join(HERE, "last-timings.txt")

_timings = []             # (test, name, value, unit)


# ---------------------------------------------------------------- options

def pytest_addoption(parser):
    g = parser.getgroup("hostshare")
    g.addoption("--mounter", choices=("hostshare", "sshfs"), default="hostshare",
                help="file system the tests mount (default: hostshare)")
    g.addoption("--transport", choices=("sftp", "agent-tcp", "agent-unix",
                                          "agent-ssh", "agent-vsock"),
                default="sftp", help="how hostshare reaches the host "
                "(default: sftp)")
    g.addoption("--timeout-factor", type=float, default=float(
        os.environ.get("HS_TEST_TIMEOUT_FACTOR", "1")),
        help="multiply every test's wall-clock budget (slow machines)")


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): wall-clock budget of the test")
    config.addinivalue_line("markers", "hostshare_only: needs hostshare (skipped with --mounter sshfs)")
    config.addinivalue_line("markers", "sftp_only(reason): about SSH itself; skipped "
                            "with an agent --transport")
    config.addinivalue_line("markers", "sshfs_deviation(reason): a documented sshfs "
                            "shortcoming; strict xfail with --mounter sshfs")


def pytest_report_header(config):
    m = config.getoption("--mounter")
    if m == "hostshare":
        return "mounter: hostshare (%s), transport: %s" % (
            harness.hostshare_bin(), config.getoption("--transport"))
    return "mounter: sshfs"


def pytest_collection_modifyitems(config, items):
    mounter = config.getoption("--mounter")
    transport = config.getoption("--transport")
    if transport != "sftp" and mounter != "hostshare":
        raise pytest.UsageError("--transport %s needs --mounter hostshare" % transport)
    no_vsock = harness.vsock_loopback_missing() if transport == "agent-vsock" else None
    for item in items:
        if no_vsock:
            item.add_marker(pytest.mark.skip(reason="vsock: " + no_vsock))
            continue
        sftp_only = item.get_closest_marker("sftp_only")
        if transport != "sftp" and sftp_only:
            item.add_marker(pytest.mark.skip(
                reason="sftp only: " + (sftp_only.args[0] if sftp_only.args
                                        else "about SSH itself")))
        if mounter != "hostshare" and item.get_closest_marker("hostshare_only"):
            item.add_marker(pytest.mark.skip(
                reason="hostshare-only: checks hostshare's own messages/options"))
        dev = item.get_closest_marker("sshfs_deviation")
        if mounter == "sshfs" and dev:
            item.add_marker(pytest.mark.xfail(strict=True, reason="sshfs: " + dev.args[0]))


# --------------------------------------------------------------- timeouts

class WallClockTimeout(Exception):
    pass


class _Watchdog:
    """SIGALRM fails a test that overruns; if the main thread is stuck in
    the kernel (a FUSE request nobody answers), the signal cannot be
    delivered to Python, so this thread cleans up from outside after a
    grace period, which makes the stuck call return."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deadline = None
        self.label = ""
        self.fired = False
        signal.signal(signal.SIGALRM, self._on_alarm)
        t = threading.Thread(target=self._run, name="hs-watchdog", daemon=True)
        t.start()

    def _on_alarm(self, signum, frame):
        raise WallClockTimeout("%s exceeded its wall-clock budget" % self.label)

    def arm(self, seconds, label):
        with self.lock:
            self.deadline = time.monotonic() + seconds
            self.label = label
            self.fired = False
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))

    def disarm(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        with self.lock:
            self.deadline = None

    def _run(self):
        while True:
            time.sleep(0.25)
            with self.lock:
                late = (self.deadline is not None and not self.fired and
                        time.monotonic() > self.deadline + WATCHDOG_GRACE)
                if late:
                    self.fired = True
                    label = self.label
            if late:
                sys.stderr.write("\n[hs-watchdog] %s is stuck %ds past its budget: "
                                 "aborting mounts and killing started processes\n"
                                 % (label, WATCHDOG_GRACE))
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                harness.emergency_cleanup()


_watchdog = None


def _budget(item):
    m = item.get_closest_marker("timeout")
    secs = m.args[0] if m else DEFAULT_TIMEOUT
    return secs * item.config.getoption("--timeout-factor")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _watchdog
    if _watchdog is None:
        _watchdog = _Watchdog()
    item._hs_start = time.monotonic()
    item._hs_mounts = []
    item._hs_failed = False
    yield


def _phase(item, budget, what):
    _watchdog.arm(budget, "%s (%s)" % (item.nodeid, what))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _phase(item, _budget(item), "setup")
    try:
        yield
    finally:
        _watchdog.disarm()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    left = _budget(item) - (time.monotonic() - item._hs_start)
    _phase(item, max(left, 1), "call")
    try:
        yield
    finally:
        _watchdog.disarm()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    _phase(item, TEARDOWN_TIMEOUT, "teardown")
    try:
        yield
    finally:
        _watchdog.disarm()


# ---------------------------------------------------------------- reports

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or getattr(rep, "wasxfail", None) is not None:
        return
    item._hs_failed = True
    for m in getattr(item, "_hs_mounts", []):
        log = m.log_text()
        if len(log) > 20000:
            log = "[... %d bytes cut ...]\n" % (len(log) - 20000) + log[-20000:]
        rep.sections.append(("%s log %s" % (m.mounter, m.log), log or "(empty)"))
        rep.sections.append(("repro", m.repro()))
    d = getattr(item, "_hs_dir", None)
    if d:
        rep.sections.append(("kept", "test files kept in %s" % d))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _timings:
        return
    mounter = config.getoption("--mounter")
    lines = ["mounter=%s  %s" % (mounter, time.strftime("%Y-%m-%d %H:%M:%S"))]
    for test, name, value, unit in _timings:
        if isinstance(value, float):
            value = "%.2f" % value
        lines.append("%-28s %-44s %s %s" % (test, name, value, unit))
    terminalreporter.write_sep("=", "hostshare timings and observations")
    for ln in lines:
        terminalreporter.write_line(ln)
    try:
        with open(TIMINGS_FILE, "w") as f:
            f.write("\n".join(lines) + "\n")
    except OSError:
        pass


# --------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def mounter(pytestconfig):
    return pytestconfig.getoption("--mounter")


@pytest.fixture(scope="session")
def base_dir():
    d = os.environ.get("HS_TEST_TMPDIR")
    if d:
        os.makedirs(d, exist_ok=True)
        d = tempfile.mkdtemp(prefix="run-", dir=d)
    else:
        d = tempfile.mkdtemp(prefix="hostshare-it-")
    yield d
    # per-test folders of failed tests are kept; the rest is gone already
    leftovers = [e for e in os.listdir(d) if e != "sshd"]
    if not leftovers:
        shutil.rmtree(d, ignore_errors=True)
    else:
        sys.stderr.write("\nhostshare tests: files of failed tests kept in %s\n" % d)


@pytest.fixture(scope="session")
def sshd(base_dir):
    s = Sshd(os.path.join(base_dir, "sshd")).start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def host_server(pytestconfig, base_dir, sshd):
    """What mounts connect to: the sshd, or one agent serving base_dir."""
    transport = pytestconfig.getoption("--transport")
    if transport == "sftp":
        yield sshd
        return
    if transport == "agent-ssh":
        yield AgentOverSsh(sshd)
        return
    a = Agent(os.path.join(base_dir, "sshd", "agent"), base_dir,
              listen=transport.split("-")[1]).start()
    yield a
    a.stop()


@pytest.fixture
def test_dir(request, base_dir):
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:80]
    d = tempfile.mkdtemp(prefix=name + "-", dir=base_dir)
    request.node._hs_dir = d
    yield d
    if not request.node._hs_failed:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def timing(request):
    """timing(name, value, unit): records a measurement or observation;
    all of them are printed at the end of the run and written to
    tests/integration/last-timings.txt."""
    def record(name, value, unit=""):
        _timings.append((request.node.name, name, value, unit))
    return record


class MountFactory:
    def __init__(self, request, sshd, test_dir, mounter):
        self.request = request
        self.sshd = sshd
        self.dir = test_dir
        self.mounter = mounter
        self.mounts = []
        self.host_dir = os.path.join(test_dir, "host")
        os.makedirs(self.host_dir, exist_ok=True)

    def __call__(self, options=(), foreground=True, mounter=None, name=None,
                 remote_dir=None, cache_dir=None, mount=True, sshd=None):
        """A new Mount of this test's host folder (or @remote_dir) on the
        session's sshd (or @sshd); mounted unless mount=False.  Foreground
        (-f) by default."""
        mounter = mounter or self.mounter
        n = len(self.mounts)
        name = name or ("mnt" if n == 0 else "mnt%d" % n)
        m = Mount(mounter, sshd or self.sshd,
                  remote_dir or self.host_dir,
                  os.path.join(self.dir, name),
                  cache_dir or os.path.join(self.dir, "cache" if n == 0 else "cache%d" % n),
                  os.path.join(self.dir, name + ".log"),
                  options=options, foreground=foreground)
        self.mounts.append(m)
        self.request.node._hs_mounts.append(m)
        if mount:
            m.mount()
        return m

    def teardown(self):
        problems = []
        for m in self.mounts:
            try:
                if m.pid is not None or m.mounted:
                    status = m.unmount()
                    if m.foreground and m.mounter == "hostshare" and status != 0:
                        problems.append("%s -f exited with status %s after unmount "
                                        "(a sanitizer exit, a crash or a leak)" %
                                        (m.mounter, status))
            except BaseException as e:   # includes the watchdog's WallClockTimeout
                # A test that failed half-way may still hold a file open in
                # the mount; that busy unmount is not a second failure.
                if not (self.request.node._hs_failed and "busy" in str(e)):
                    problems.append("unmount of %s failed: %s" % (m.path, e))
            finally:
                m.force_cleanup()
            marker = m.sanitizer_report()
            if marker:
                problems.append("%s found in %s" % (marker, m.log))
        if problems:
            self.request.node._hs_failed = True
            pytest.fail("mount teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def make_proxy(host_server):
    """make_proxy(listen=None): a new fault-injecting proxy (harness.Proxy)
    in front of what the mounts dial (harness.proxy_for): the sshd for
    sftp and agent-ssh, the agent's TCP port or unix socket; @listen takes
    over an earlier proxy's port or socket.  Stopped after the test.
    harness.via_proxy() makes a mount go through one.  Skips the test
    where the link cannot be proxied (vsock)."""
    if harness.proxy_target(host_server) is None:
        pytest.skip("no fault proxy for %s (the proxy forwards TCP and unix "
                    "sockets)" % getattr(host_server, "listen", "this transport"))
    made = []

    def make(listen=None):
        p = harness.proxy_for(host_server, listen)
        made.append(p)
        return p
    yield make
    for p in made:
        p.resume()
        p.stop()


@pytest.fixture
def proxy(make_proxy):
    """A fault-injecting proxy in front of what the mounts dial (see
    make_proxy); mount through it with
    mount_factory(**harness.via_proxy(proxy, host_server, test_dir, options))."""
    return make_proxy()


@pytest.fixture
def mount_factory(request, host_server, test_dir, mounter):
    f = MountFactory(request, host_server, test_dir, mounter)
    yield f
    f.teardown()


@pytest.fixture
def mnt(mount_factory):
    """The test's mount, with default options, in the foreground."""
    return mount_factory()
