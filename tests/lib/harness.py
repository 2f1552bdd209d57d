# SPDX-License-Identifier: MIT
"""tests/lib/harness.py - what the integration tests stand on.

  Sshd   a private sshd on a free loopback port, with its own host key, a
         user key in authorized_keys and a known_hosts line for it.  A
         missing sshd binary is an error, never a skip: the harness owns
         the service.
  Mount  one mount of a host folder with hostshare or sshfs, in the
         foreground (-f, a child process whose stderr and exit status we
         keep) or as users run it (the command daemonises and returns 0
         once the mount is ready).  unmount() waits for the daemon and
         returns its exit status, kill9() simulates a crash.
  Proxy  a pure-python TCP forwarder that can stall, reset, and add
         latency, for fault tests.

Every process the harness starts is recorded by PID and only that PID is
ever signalled.  Nothing here depends on where the repository lives: paths
are derived from this file or from the environment (HS_BUILD_DIR).
"""

import json
import random
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

SSHD_BIN = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
FUSERMOUNT = shutil.which("fusermount3") or "/usr/bin/fusermount3"

SANITIZER_MARKERS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")


class HarnessError(Exception):
    """The harness itself could not do what a test needs (not a skip)."""


# ---------------------------------------------------------------- helpers

def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (never
    2024, which the machine reserves)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 2024:
            return port
    raise HarnessError("no free port found")


def wait_port(port, timeout, proc=None, host="127.0.0.1"):
    """Waits until @port accepts a connection; False on timeout or when
    @proc exits first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def pid_alive(pid):
    """True while @pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    # state is the field after the parenthesised command name
    return stat[stat.rindex(")") + 2] not in "ZX"


def pid_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def wait_pid_gone(pid, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def _unescape_mountinfo(s):
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mountinfo_entry(path):
    """The /proc/self/mountinfo fields of the topmost mount at @path
    (a list of strings), or None.  Reads only /proc, never the mount, so it
    cannot hang on a stuck FUSE daemon."""
    path = os.path.abspath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if _unescape_mountinfo(fields[4]) == path:
                found = fields
    return found


def is_mounted(path):
    return mountinfo_entry(path) is not None


FUSECTL = "/sys/fs/fuse/connections"


def fuse_abort(path):
    """Aborts the FUSE connection behind @path through fusectl (mounted
    first where the machine has not: as root, which the suite is): every
    request waiting on the daemon fails at once."""
    ent = mountinfo_entry(path)
    if ent is None:
        return False
    if os.path.isdir(FUSECTL) and not os.path.ismount(FUSECTL):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", FUSECTL],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
    minor = ent[2].split(":")[1]
    ctl = "%s/%s/abort" % (FUSECTL, minor)
    try:
        with open(ctl, "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def fusermount(path, lazy=False, timeout=20):
    args = [FUSERMOUNT, "-uz" if lazy else "-u", path]
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "fusermount3 timed out"
    return p.returncode, p.stdout.decode(errors="replace")


# Processes and mounts that a watchdog may have to kill or detach when a
# test hangs.  Guarded by _live_lock.
_live_lock = threading.Lock()
_live_mounts = set()
_live_procs = set()


def register_proc(p):
    with _live_lock:
        _live_procs.add(p)


def unregister_proc(p):
    with _live_lock:
        _live_procs.discard(p)


def emergency_cleanup():
    """Called by the watchdog (any thread) when a test overran its time:
    aborts FUSE connections, kills recorded daemons and child processes,
    detaches mounts.  Only PIDs that the harness started are signalled."""
    with _live_lock:
        mounts = list(_live_mounts)
        procs = list(_live_procs)
    for m in mounts:
        m.force_cleanup()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except OSError:
                pass


def run(args, timeout=300, check=True, **kw):
    """subprocess.run for test tools (tar, cp, git...): the child is
    recorded so a watchdog can kill it.  Returns CompletedProcess with
    text output."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(args, **kw)
    register_proc(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException:
        p.kill()
        p.communicate()
        raise
    finally:
        unregister_proc(p)
    cp = subprocess.CompletedProcess(args, p.returncode,
                                     out.decode(errors="replace") if out is not None else None,
                                     err.decode(errors="replace") if err is not None else None)
    if check and cp.returncode != 0:
        raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s" % (
            shlex.join(str(a) for a in args) if not isinstance(args, str) else args,
            cp.returncode, (cp.stdout or "")[-4000:], (cp.stderr or "")[-4000:]))
    return cp


# ------------------------------------------------------------ file checks

def sha256_file(path, bufsize=1 << 20):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                return h.hexdigest()
            h.update(b)


def fs_used(path):
    """Bytes in use on the file system holding @path."""
    sv = os.statvfs(path)
    return (sv.f_blocks - sv.f_bfree) * sv.f_frsize


def patterned_file(path, size, chunk=1 << 20):
    """Writes @size bytes to @path (a multiple of 4 KiB), random but for
    the first 8 bytes of each 4 KiB block, its number: a block that lands
    in the wrong place shows.  Cheap for big files.  Returns the sha256."""
    import hashlib
    import struct
    base = os.urandom(chunk)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for off in range(0, size, chunk):
            b = bytearray(base[:min(chunk, size - off)])
            for k in range(0, len(b), 4096):
                b[k:k + 8] = struct.pack("<Q", (off + k) // 4096)
            f.write(b)
            h.update(b)
    return h.hexdigest()


class Peak:
    """with Peak(measure) as p: ... -- samples measure() every @every
    seconds in a thread while the block runs; p.peak is the largest value
    seen (sampled once more at the end)."""

    def __init__(self, measure, every=0.05):
        self.measure, self.every, self.peak = measure, every, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.peak = max(self.peak, self.measure())
            if self._stop.wait(self.every):
                return

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        return False


def tree_manifest(root, mtimes=True):
    """{relative path: description} of every entry below @root (root
    itself excluded): type, permission bits, and for files size, sha256 and
    mtime seconds; for symlinks the target.  Directory mtimes are left out
    (any later change in them moves it)."""
    import stat as st
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            s = os.lstat(p)
            mode = st.S_IMODE(s.st_mode)
            if st.S_ISLNK(s.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif st.S_ISDIR(s.st_mode):
                out[rel] = ("dir", oct(mode))
            elif st.S_ISREG(s.st_mode):
                out[rel] = ("file", oct(mode), s.st_size, sha256_file(p),
                            int(s.st_mtime) if mtimes else None)
            else:
                out[rel] = ("other", oct(s.st_mode))
    return out


def manifest_diff(want, got, limit=20):
    """Human-readable differences between two manifests ('' if equal)."""
    lines = []
    for k in sorted(set(want) | set(got)):
        a, b = want.get(k), got.get(k)
        if a != b:
            lines.append("%s: expected %r, got %r" % (k, a, b))
            if len(lines) >= limit:
                lines.append("...")
                break
    return "\n".join(lines)


# ------------------------------------------------------------------- sshd

class Sshd:
    """A private sshd for root on 127.0.0.1:<free port>, rooted in
    @workdir (created).  start() returns once the port accepts."""

    def __init__(self, workdir):
        self.workdir = os.path.abspath(workdir)
        self.user = "root"
        self.host = "127.0.0.1"
        self.port = None
        self.pid = None
        self.proc = None
        d = self.workdir
        self.host_key = os.path.join(d, "ssh_host_ed25519_key")
        self.key = os.path.join(d, "id_ed25519")
        self.authorized_keys = os.path.join(d, "authorized_keys")
        self.known_hosts = os.path.join(d, "known_hosts")
        self.config = os.path.join(d, "sshd_config")
        self.log = os.path.join(d, "sshd.log")
        self.pidfile = os.path.join(d, "sshd.pid")       # sshd's own
        self.harness_pidfile = os.path.join(d, "harness-sshd.pid")

    # keys ------------------------------------------------------------
    @staticmethod
    def keygen(path, comment="hostshare-test"):
        """A fresh ed25519 key pair at @path (overwrites)."""
        for p in (path, path + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "",
                        "-C", comment, "-f", path], check=True,
                       stdin=subprocess.DEVNULL)
        with open(path + ".pub") as f:
            return f.read().strip()

    def known_hosts_line(self, pubkey_line=None):
        """`[127.0.0.1]:PORT ssh-ed25519 AAAA...` for the host key or for
        @pubkey_line (another key, for the wrong-host-key test)."""
        if pubkey_line is None:
            with open(self.host_key + ".pub") as f:
                pubkey_line = f.read()
        kind, blob = pubkey_line.split()[:2]
        return "[%s]:%d %s %s" % (self.host, self.port, kind, blob)

    def _write_files(self):
        os.makedirs(self.workdir, exist_ok=True)
        self.keygen(self.host_key, "hostshare-test-host")
        user_pub = self.keygen(self.key, "hostshare-test-user")
        with open(self.authorized_keys, "w") as f:
            f.write(user_pub + "\n")
        os.chmod(self.authorized_keys, 0o600)

    def _write_config(self):
        with open(self.config, "w") as f:
            f.write("\n".join([
                "Port %d" % self.port,
                "ListenAddress 127.0.0.1",
                "HostKey %s" % self.host_key,
                "AuthorizedKeysFile %s" % self.authorized_keys,
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                "PidFile %s" % self.pidfile,
                "Subsystem sftp internal-sftp",
                "MaxStartups 100",
                "MaxSessions 100",
                "LogLevel INFO",
                "",
            ]))
        with open(self.known_hosts, "w") as f:
            f.write(self.known_hosts_line() + "\n")

    def start(self, timeout=15):
        if not os.access(SSHD_BIN, os.X_OK):
            raise HarnessError("%s is missing: install openssh-server "
                               "(tests never skip for a missing sshd)" % SSHD_BIN)
        # privilege separation needs this empty folder
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self._write_files()
        last = ""
        for _attempt in range(3):   # the port may be taken between probe and bind
            self.port = free_port()
            self._write_config()
            self._spawn()
            if wait_port(self.port, timeout, self.proc):
                with open(self.harness_pidfile, "w") as f:
                    f.write("%d\n" % self.pid)
                return self
            self.stop()
            with open(self.log, errors="replace") as f:
                last = f.read()[-2000:]
        raise HarnessError("sshd did not start; log:\n" + last)

    def _spawn(self):
        """Starts sshd on the written config; its output goes to the log."""
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [SSHD_BIN, "-D", "-e", "-f", self.config],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
            start_new_session=True)
        logf.close()
        self.pid = self.proc.pid

    def restart(self, timeout=15):
        """Starts sshd again on the same port with the same keys (after
        stop()), as a host's sshd comes back after a restart."""
        assert self.pid is None and self.port, "restart() needs a stopped sshd"
        self._spawn()
        if not wait_port(self.port, timeout, self.proc):
            self.stop()
            raise HarnessError("sshd did not come back on port %d" % self.port)
        with open(self.harness_pidfile, "w") as f:
            f.write("%d\n" % self.pid)
        return self

    def host_dir(self, name):
        """A fresh folder the tests use as the remote side (under
        workdir/host)."""
        p = os.path.join(self.workdir, "host", name)
        os.makedirs(p, exist_ok=True)
        return p

    def source(self, remote_dir):
        return "%s@%s:%s" % (self.user, self.host, remote_dir)

    def env(self, host_dir):
        return {
            "HS_TEST_SSH_HOST": self.host,
            "HS_TEST_SSH_PORT": str(self.port),
            "HS_TEST_SSH_USER": self.user,
            "HS_TEST_SSH_KEY": self.key,
            "HS_TEST_SSH_KNOWN_HOSTS": self.known_hosts,
            "HS_TEST_HOST_DIR": host_dir,
            "HS_TEST_SSHD_PID": str(self.pid),
        }

    def stop(self):
        """Kills exactly the sshd this object started."""
        if self.pid is None:
            return
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        else:
            stop_pid(self.pid, self.config)
        self.pid = None
        self.proc = None

    @classmethod
    def stop_dir(cls, workdir):
        """Stops the sshd that `sshd_env.py start @workdir` left running."""
        s = cls(workdir)
        try:
            with open(s.harness_pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return False
        stopped = stop_pid(pid, s.config)
        os.unlink(s.harness_pidfile)
        return stopped


def stop_pid(pid, must_contain):
    """SIGTERM then SIGKILL @pid, but only if its command line still
    mentions @must_contain (guards against a recycled PID)."""
    if not any(must_contain in a for a in pid_cmdline(pid)):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if not wait_pid_gone(pid, 5):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_pid_gone(pid, 5)
    return True


# ------------------------------------------------------------------ agent

def agent_bin():
    return os.path.join(build_dir(), "tools", "agent", "hostshare-agent")


def vsock_loopback_missing():
    """None when this machine can talk vsock to itself (the vsock_loopback
    transport, CID 1), else why not."""
    if not hasattr(socket, "AF_VSOCK"):
        return "python has no AF_VSOCK"
    try:
        srv = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    except OSError as e:
        return "no AF_VSOCK in this kernel (%s)" % e.strerror
    try:
        srv.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
        srv.listen(1)
        port = srv.getsockname()[1]
        cli = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        cli.settimeout(2)
        try:
            cli.connect((1, port))
        finally:
            cli.close()
    except OSError as e:
        return ("no vsock loopback (connecting to CID 1: %s; modprobe vsock_loopback)"
                % (e.strerror or "timed out"))
    finally:
        srv.close()
    return None


class Agent:
    """A hostshare-agent serving @root on 127.0.0.1:<free port> (listen
    "tcp"), on a unix socket in @workdir (listen "unix") or on vsock port
    <random> reached through the local loopback CID 1 (listen "vsock"),
    with a token file (tcp, unix).  Plays the part of Sshd for Mount: source() and mount_options().
    Started and stopped by PID."""

    def __init__(self, workdir, root, listen="tcp", extra=()):
        if listen not in ("tcp", "unix", "vsock"):
            raise ValueError("unknown agent listener %r" % listen)
        self.workdir = os.path.abspath(workdir)
        self.root = os.path.abspath(root)
        self.listen = listen
        self.extra = list(extra)
        self.host = "127.0.0.1"
        self.port = None
        self.pid = None
        self.proc = None
        self.token_file = os.path.join(self.workdir, "agent.token")
        self.socket = os.path.join(self.workdir, "agent.sock")
        self.log = os.path.join(self.workdir, "agent.log")

    def _spec(self):
        if self.listen == "tcp":
            return "tcp:%s:%d" % (self.host, self.port)
        if self.listen == "vsock":
            return "vsock:%d" % self.port
        return "unix:" + self.socket

    def _spawn(self, timeout):
        """Starts the agent on the listener _spec() names; True once it
        listens, False (stopped again) if it did not."""
        spec = self._spec()
        logf = open(self.log, "ab")
        seen = logf.tell()          # look for the line of this start only
        self.proc = subprocess.Popen(
            [agent_bin(), "--root", self.root, "--listen", spec,
             "--token-file", self.token_file] + self.extra,
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
            start_new_session=True)
        logf.close()
        self.pid = self.proc.pid
        register_proc(self.proc)
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            with open(self.log, "rb") as f:
                f.seek(seen)
                if b"listening on " + spec.encode() in f.read():
                    return True
            time.sleep(0.02)
        self.stop()
        return False

    def start(self, timeout=15):
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.token_file, "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        os.chmod(self.token_file, 0o600)
        if not os.access(agent_bin(), os.X_OK):
            raise HarnessError("%s is missing: build first" % agent_bin())
        last = ""
        for _attempt in range(3):   # the port may be taken between probe and bind
            if self.listen == "tcp":
                self.port = free_port()
            elif self.listen == "vsock":
                self.port = random.randrange(20000, 60000)
            if self._spawn(timeout):
                return self
            with open(self.log, errors="replace") as f:
                last = f.read()[-2000:]
        raise HarnessError("hostshare-agent did not start; log:\n" + last)

    def restart(self, timeout=15):
        """Starts the agent again on the same port or socket with the same
        token (after stop()), as a host's agent comes back after a
        restart."""
        assert self.proc is None and (self.port or self.listen == "unix"), \
            "restart() needs a stopped agent"
        if not self._spawn(timeout):
            with open(self.log, errors="replace") as f:
                raise HarnessError("hostshare-agent did not come back on %s; log:\n%s"
                                   % (self._spec(), f.read()[-2000:]))
        return self

    def via(self, port=None, socket=None):
        """A view of this agent for Mount that dials @port (tcp) or
        @socket (unix) instead, e.g. a fault proxy's; same root and token.
        The view owns no process: stop() on it does nothing."""
        import copy
        v = copy.copy(self)
        v.proc = v.pid = None
        if port is not None:
            v.port = port
        if socket is not None:
            v.socket = socket
        return v

    def source(self, remote_dir):
        rel = os.path.relpath(os.path.abspath(remote_dir), self.root)
        if rel == ".":
            rel = ""
        if rel.startswith(".."):
            raise HarnessError("%s is not below the agent root %s"
                               % (remote_dir, self.root))
        if self.listen == "tcp":
            return "tcp://%s:%d/%s" % (self.host, self.port, rel)
        if self.listen == "vsock":
            return "vsock://1:%d/%s" % (self.port, rel)
        return "unix:%s:/%s" % (self.socket, rel)

    def mount_options(self):
        return ["token_file=" + self.token_file]

    def stop(self):
        """Stops exactly the agent this object started."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unregister_proc(self.proc)
        self.pid = None
        self.proc = None


class AgentOverSsh:
    """Mounts through @sshd with `-o agent`: hostshare logs in as for SFTP
    and runs the built hostshare-agent --stdio in an exec channel."""

    def __init__(self, sshd):
        self.sshd = sshd

    def source(self, remote_dir):
        return self.sshd.source(remote_dir)

    def mount_options(self):
        s = self.sshd
        return ["IdentityFile=" + s.key, "UserKnownHostsFile=" + s.known_hosts,
                "StrictHostKeyChecking=yes", "port=%d" % s.port,
                "agent", "agent_command=" + agent_bin()]


# ------------------------------------------------------------------ mount

def build_dir():
    return os.environ.get("HS_BUILD_DIR") or os.path.join(REPO_ROOT, "build")


def hostshare_bin():
    return os.path.join(build_dir(), "fs", "hostshare")


def hostsharectl_bin():
    return os.path.join(build_dir(), "tools", "hostsharectl")


class MountError(Exception):
    pass


class Mount:
    """One mount of @remote_dir (on @sshd) at @mountpoint.

    mounter      "hostshare" or "sshfs"
    foreground   False (default): run the command as users do and require
                 that it returns 0 with the mount ready; True: start it
                 with -f as a child process (stderr to @log, exit status
                 kept), which is what the test fixtures use.
    options      extra -o options (list of "k=v" strings)
    """

    def __init__(self, mounter, sshd, remote_dir, mountpoint, cache_dir,
                 log, options=(), foreground=False):
        if mounter not in ("hostshare", "sshfs"):
            raise ValueError("unknown mounter %r" % mounter)
        self.mounter = mounter
        self.sshd = sshd
        self.remote_dir = remote_dir
        self.path = os.path.abspath(mountpoint)
        self.cache_dir = os.path.abspath(cache_dir)
        self.log = log
        self.options = list(options)
        self.foreground = foreground
        self.proc = None          # foreground child
        self.pid = None           # daemon pid (either mode)
        self.exit_status = None   # last daemon exit status, if known
        self.killed = False       # kill9() was used on the current daemon
        self.mount_count = 0
        os.makedirs(self.path, exist_ok=True)
        os.makedirs(self.cache_dir, exist_ok=True)

    # command ---------------------------------------------------------
    def command(self, foreground=None):
        fg = self.foreground if foreground is None else foreground
        s = self.sshd
        if self.mounter == "hostshare" and hasattr(s, "mount_options"):
            opts = ["cache_dir=" + self.cache_dir] + s.mount_options() + \
                self.options
            cmd = [hostshare_bin(), "-o", ",".join(opts)]
        elif self.mounter == "hostshare":
            opts = ["IdentityFile=" + s.key,
                    "UserKnownHostsFile=" + s.known_hosts,
                    "StrictHostKeyChecking=yes",
                    "cache_dir=" + self.cache_dir,
                    "port=%d" % s.port] + self.options
            cmd = [hostshare_bin(), "-o", ",".join(opts)]
        else:
            # ssh keeps the first value of an option: a port= among the
            # test's options (a proxy) must be the -p, not come after it
            port = s.port
            extra = []
            for o in self.options:
                if o.startswith("port="):
                    port = int(o[5:])
                else:
                    extra.append(o)
            opts = ["IdentityFile=" + s.key,
                    "StrictHostKeyChecking=yes",
                    "BatchMode=yes"] + extra
            if not any(o.startswith("UserKnownHostsFile=") for o in extra):
                opts.insert(1, "UserKnownHostsFile=" + s.known_hosts)
            cmd = ["sshfs", "-F", "/dev/null", "-p", str(port),
                   "-o", ",".join(opts)]
        if fg:
            cmd.append("-f")
        cmd += [s.source(self.remote_dir), self.path]
        return cmd

    def repro(self):
        """The one-line command that reproduces this mount."""
        env = ""
        if self.mounter == "hostshare":
            for k in ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
                if os.environ.get(k):
                    env += "%s=%s " % (k, shlex.quote(os.environ[k]))
        return env + shlex.join(self.command())

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def sanitizer_report(self):
        """The first sanitizer marker found in the daemon log, or None."""
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            if m in text:
                return m
        return None

    # mount / unmount -------------------------------------------------
    def mount(self, timeout=30):
        if self.mounter == "hostshare" and not os.access(hostshare_bin(), os.X_OK):
            raise MountError("%s is not built (HS_BUILD_DIR=%s)" %
                             (hostshare_bin(), build_dir()))
        if is_mounted(self.path):
            raise MountError("%s is already mounted" % self.path)
        self.killed = False
        self.exit_status = None
        self.mount_count += 1
        with _live_lock:
            _live_mounts.add(self)
        logf = open(self.log, "ab")
        logf.write(("==== mount #%d: %s\n" % (self.mount_count, self.repro())).encode())
        logf.flush()
        cmd = self.command()
        if self.foreground:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf,
                                         start_new_session=True)
            logf.close()
            self.pid = self.proc.pid
            end = time.monotonic() + timeout
            while not is_mounted(self.path):
                if self.proc.poll() is not None:
                    self.exit_status = self.proc.returncode
                    self.pid = None
                    raise MountError("%s exited %d before mounting:\n%s" % (
                        self.mounter, self.proc.returncode, self.log_text()[-4000:]))
                if time.monotonic() > end:
                    self.force_cleanup()
                    raise MountError("%s did not mount within %ds:\n%s" % (
                        self.mounter, timeout, self.log_text()[-4000:]))
                time.sleep(0.02)
        else:
            # As users run it: the command returns once the mount is ready.
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=logf, start_new_session=True)
            logf.close()
            register_proc(p)
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise MountError("%s (daemon mode) did not return within %ds:\n%s"
                                 % (self.mounter, timeout, self.log_text()[-4000:]))
            finally:
                unregister_proc(p)
            if rc != 0:
                raise MountError("%s exited %d:\n%s" % (self.mounter, rc,
                                                         self.log_text()[-4000:]))
            if not is_mounted(self.path):
                raise MountError("%s returned 0 but %s is not mounted" %
                                 (self.mounter, self.path))
            self.pid = self.find_daemon_pid()
            if self.pid is None:
                raise MountError("cannot find the %s daemon of %s" %
                                 (self.mounter, self.path))
        return self

    def find_daemon_pid(self):
        """The daemon's PID: `hostsharectl status --json` "pid" for
        hostshare, else the process whose command line holds the
        mountpoint."""
        if self.mounter == "hostshare":
            try:
                pid = int(self.status().get("pid", 0))
                if pid > 0 and pid_alive(pid):
                    return pid
            except (AssertionError, ValueError, TypeError, OSError,
                    subprocess.TimeoutExpired):
                pass
        want = os.path.basename(self.command()[0])
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            argv = pid_cmdline(int(name))
            if argv and os.path.basename(argv[0]) == want and \
                    any(os.path.abspath(a) == self.path for a in argv[1:]
                        if a.startswith("/")):
                return int(name)
        return None

    def _wait_exit(self, timeout):
        """Waits for the daemon; returns its exit status (None if unknown,
        e.g. a daemonised process that is not our child)."""
        if self.proc is not None:
            try:
                self.exit_status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
            return self.exit_status
        if self.pid is not None and wait_pid_gone(self.pid, timeout):
            return 0 if self.exit_status is None else self.exit_status
        return None

    def unmount(self, timeout=20):
        """fusermount3 -u (retried while busy), then waits up to @timeout
        for the daemon to exit.  Returns the daemon's exit status (0 for a
        daemonised process that exited, as its status is not ours to
        read).  Raises MountError if it does not unmount or exit."""
        end = time.monotonic() + timeout
        while True:
            rc, out = fusermount(self.path)
            if rc == 0 or not is_mounted(self.path):
                break
            if time.monotonic() > end:
                raise MountError("fusermount3 -u %s failed: %s" % (self.path, out))
            time.sleep(0.2)
        if self.pid is None:
            return self.exit_status
        status = self._wait_exit(max(1.0, end - time.monotonic()))
        if self.proc is not None and self.proc.poll() is None or \
                self.proc is None and pid_alive(self.pid):
            raise MountError("%s daemon %d did not exit within %ds of unmount"
                             % (self.mounter, self.pid, timeout))
        self._forget()
        return status

    def kill9(self):
        """Crash: SIGKILL the daemon, then detach the mount lazily."""
        assert self.pid is not None, "no daemon to kill"
        os.kill(self.pid, signal.SIGKILL)
        self.killed = True
        if self._wait_exit(5) is None and fuse_abort(self.path):
            # a replay of a host change was in flight: the daemon waits
            # on its own mount and cannot finish dying until its FUSE
            # connection is aborted (fs/hostev.c), as a user would
            sys.stderr.write("harness: %s: the killed daemon waited on its "
                             "own mount; FUSE connection aborted\n" % self.path)
            self._wait_exit(10)
        fusermount(self.path, lazy=True)
        self._forget()

    def _forget(self):
        self.pid = None
        self.proc = None
        with _live_lock:
            _live_mounts.discard(self)

    def force_cleanup(self):
        """Last resort (teardown, watchdog): abort the connection, kill the
        recorded daemon PID, lazy-unmount.  Safe to call repeatedly."""
        if is_mounted(self.path):
            fuse_abort(self.path)
        if self.pid is not None and pid_alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(5)
        if is_mounted(self.path):
            fusermount(self.path, lazy=True)
        self._forget()

    @property
    def mounted(self):
        return is_mounted(self.path)

    def guest(self, *parts):
        """A path inside the mount (what the guest sees)."""
        return os.path.join(self.path, *parts)

    def host(self, *parts):
        """The same path on the host side (the remote folder itself)."""
        return os.path.join(self.remote_dir, *parts)

    # control ---------------------------------------------------------
    def ctl(self, *args, timeout=150):
        return run([hostsharectl_bin()] + list(args), timeout=timeout, check=False)

    def flush(self, timeout=120, check=True):
        """Waits until everything written so far is on the host.  sshfs
        writes through on close(), so for it this is a no-op.  check=False:
        a flush that ends with rows the host (or the cache) refused is not
        an error; returns hostsharectl's exit status."""
        if self.mounter != "hostshare":
            return 0
        cp = self.ctl("flush", "--wait", "--timeout", str(timeout), self.path,
                      timeout=timeout + 30)
        if cp.returncode != 0 and check:
            raise AssertionError("hostsharectl flush failed (exit %d): %s %s" %
                                 (cp.returncode, cp.stdout, cp.stderr))
        return cp.returncode

    def status(self):
        if self.mounter != "hostshare":
            return {"mounter": self.mounter, "pid": self.pid}
        cp = self.ctl("status", "--json", self.path, timeout=30)
        if cp.returncode != 0:
            raise AssertionError("hostsharectl status failed (exit %d): %s %s" %
                                 (cp.returncode, cp.stdout, cp.stderr))
        return json.loads(cp.stdout)


# ------------------------------------------------------------------ proxy

class _Conn:
    __slots__ = ("a", "b", "ab", "ba", "a_eof", "b_eof", "a_shut", "b_shut")

    def __init__(self, a, b):
        self.a, self.b = a, b        # a: accepted client, b: upstream
        self.ab, self.ba = [], []    # pending (deliver_at, bytes)
        self.a_eof = self.b_eof = False
        self.a_shut = self.b_shut = False


class Proxy:
    """TCP forwarder 127.0.0.1:@listen_port -> @target_host:@target_port
    (listen_port 0: any free port; read it back from .port).  Either end
    may be a unix socket instead: a str @listen_port is the path to listen
    on (.path; .port is None), a str @target_port the socket to forward to.
    On a unix socket reset() cannot send a RST: the peer sees the
    connection closed (end of stream) at once, which is what a reset does
    to a reader.

    One event-loop thread owns every socket; control calls are queued to
    it, so stall()/resume()/reset() act between two loop iterations.
      stall()       no byte moves either way; connections stay open
      resume()      bytes move again
      reset()       every open connection is closed with RST (SO_LINGER 0)
      latency_ms    delay added to each chunk, each way
      rate_bps      bandwidth cap in bytes/s, each way, shared by all
                    connections (0: none)
      stop()        closes the listener and all connections
    """

    BUF_LIMIT = 4 << 20   # per direction, before reading pauses

    def __init__(self, listen_port, target_port, target_host="127.0.0.1"):
        self.target = target_port if isinstance(target_port, str) else \
            (target_host, target_port)
        self.latency_ms = 0
        self.rate_bps = 0
        self._free_at = {"up": 0.0, "down": 0.0}  # when each way is idle
        self._stalled = False
        self._ctl = []
        self._ctl_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        if isinstance(listen_port, str):
            self.path = listen_port
            if os.path.exists(self.path):      # left by an earlier proxy
                os.unlink(self.path)
            self._lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._lsock.bind(self.path)
            self.port = None
        else:
            self.path = None
            self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._lsock.bind(("127.0.0.1", listen_port))
            self.port = self._lsock.getsockname()[1]
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self._conns = []
        self.accepted = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._running = True
        self._thread = threading.Thread(target=self._loop,
                                        name="proxy-%s" % (self.port or self.path),
                                        daemon=True)
        self._thread.start()

    # control (any thread) -------------------------------------------
    def _post(self, fn):
        if not self._running:
            return               # stopped: nothing left to act on
        done = threading.Event()
        with self._ctl_lock:
            self._ctl.append((fn, done))
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            done.wait(5)

    def stall(self):
        self._post(lambda: setattr(self, "_stalled", True))

    def resume(self):
        self._post(lambda: setattr(self, "_stalled", False))

    @property
    def stalled(self):
        return self._stalled

    def reset(self):
        self._post(self._reset_all)

    def connections(self):
        return len(self._conns)

    def stop(self):
        if not self._running:
            return
        self._post(self._stop)
        self._thread.join(5)
        self._wake_w.close()
        self._wake_r.close()

    # loop thread -----------------------------------------------------
    @staticmethod
    def _rst_close(s):
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        s.close()

    def _reset_all(self):
        for c in self._conns:
            self._rst_close(c.a)
            self._rst_close(c.b)
        self._conns = []

    def _stop(self):
        self._reset_all()
        self._lsock.close()
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)               # new connections: refused
        self._running = False

    def _drop(self, c):
        c.a.close()
        c.b.close()
        self._conns.remove(c)

    def _accept(self):
        while True:
            try:
                a, _ = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            try:
                if isinstance(self.target, str):
                    b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    b.settimeout(5)
                    try:
                        b.connect(self.target)
                    except OSError:
                        b.close()
                        raise
                else:
                    b = socket.create_connection(self.target, timeout=5)
            except OSError:
                self._rst_close(a)
                continue
            for s in (a, b):
                s.setblocking(False)
                if s.family != socket.AF_UNIX:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(_Conn(a, b))
            self.accepted += 1

    def _loop(self):
        while self._running:
            now = time.monotonic()
            rl, wl = [self._wake_r, self._lsock], []
            timeout = 0.5
            if not self._stalled:
                for c in self._conns:
                    if not c.a_eof and sum(len(d) for _, d in c.ab) < self.BUF_LIMIT:
                        rl.append(c.a)
                    if not c.b_eof and sum(len(d) for _, d in c.ba) < self.BUF_LIMIT:
                        rl.append(c.b)
                    for q, dst in ((c.ab, c.b), (c.ba, c.a)):
                        if q:
                            if q[0][0] <= now:
                                wl.append(dst)
                            else:
                                timeout = min(timeout, q[0][0] - now)
            try:
                r, w, _ = select.select(rl, wl, [], max(0.0, timeout))
            except (OSError, ValueError):
                r, w = [], []
            if self._wake_r in r:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            with self._ctl_lock:
                ctl, self._ctl = self._ctl, []
            for fn, done in ctl:
                fn()
                done.set()
            if not self._running:
                break
            if self._lsock in r:
                self._accept()
            if self._stalled:
                continue
            delay = self.latency_ms / 1000.0
            for c in list(self._conns):
                try:
                    self._pump(c, r, w, delay)
                except OSError:
                    # one side failed (RST from a peer): pass it on as RST
                    self._rst_close(c.a)
                    self._rst_close(c.b)
                    self._conns.remove(c)

    def _pump(self, c, r, w, delay):
        now = time.monotonic()
        for src, q, eof_attr in ((c.a, c.ab, "a_eof"), (c.b, c.ba, "b_eof")):
            if src in r:
                try:
                    data = src.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                if data:
                    at = now + delay
                    if self.rate_bps:
                        way = "up" if src is c.a else "down"
                        start = max(now, self._free_at[way])
                        self._free_at[way] = start + len(data) / float(self.rate_bps)
                        at = max(at, self._free_at[way])
                    q.append((at, data))
                    if src is c.a:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                else:
                    setattr(c, eof_attr, True)
        for q, dst in ((c.ab, c.b), (c.ba, c.a)):
            if dst in w:
                while q and q[0][0] <= now:
                    at, data = q[0]
                    try:
                        n = dst.send(data)
                    except (BlockingIOError, InterruptedError):
                        break
                    if n < len(data):
                        q[0] = (at, data[n:])
                        break
                    q.pop(0)
        # half-close forwarding once the queue behind an EOF is drained
        if c.a_eof and not c.ab and not c.b_shut:
            c.b.shutdown(socket.SHUT_WR)
            c.b_shut = True
        if c.b_eof and not c.ba and not c.a_shut:
            c.a.shutdown(socket.SHUT_WR)
            c.a_shut = True
        if c.a_eof and c.b_eof and not c.ab and not c.ba:
            self._drop(c)


__all__ = ["Sshd", "Mount", "MountError", "Proxy", "HarnessError", "run",
           "proxy_for", "proxy_target", "via_proxy",
           "free_port", "is_mounted", "mountinfo_entry", "fusermount",
           "emergency_cleanup", "hostshare_bin", "hostsharectl_bin",
           "build_dir", "REPO_ROOT", "SANITIZER_MARKERS"]


def _proxy_known_hosts(proxy, sshd, workdir):
    """A known_hosts file (in @workdir) naming @sshd's host key under the
    proxy's port, as ssh looks it up."""
    kh = os.path.join(workdir, "known_hosts.proxy")
    with open(kh, "w") as f:
        f.write(sshd.known_hosts_line().replace("]:%d " % sshd.port,
                                                "]:%d " % proxy.port) + "\n")
    return kh


def proxy_options(proxy, sshd, workdir, extra=()):
    """Mount options that reach @sshd through @proxy: its port, and a
    known_hosts file (in @workdir) that names the host key under the
    proxy's port.  SFTP only; tests use via_proxy(), which knows every
    transport."""
    kh = _proxy_known_hosts(proxy, sshd, workdir)
    return ["port=%d" % proxy.port, "UserKnownHostsFile=" + kh] + list(extra)


class SshdVia:
    """A view of @sshd for Mount that dials @port (a fault proxy's) and
    checks the host key against @known_hosts; it owns no process."""

    def __init__(self, sshd, port, known_hosts):
        self.real = sshd
        self.user, self.host, self.key = sshd.user, sshd.host, sshd.key
        self.pid = sshd.pid
        self.port = port
        self.known_hosts = known_hosts

    def source(self, remote_dir):
        return self.real.source(remote_dir)


def proxy_target(server):
    """Where a fault proxy in front of @server (what mounts connect to:
    Sshd, AgentOverSsh or Agent) forwards to: a TCP port (sshd, also for
    the agent over ssh; an agent's tcp listener) or the path of an agent's
    unix socket.  None where the link cannot be proxied (vsock)."""
    if isinstance(server, AgentOverSsh):
        return server.sshd.port
    if isinstance(server, Agent):
        if server.listen == "tcp":
            return server.port
        if server.listen == "unix":
            return server.socket
        return None
    return server.port


_proxy_socks = [0]


def proxy_for(server, listen=None):
    """A Proxy in front of @server (see proxy_target()); @listen: the port
    or socket path of an earlier proxy to take over (a host that comes
    back on the same address), else a fresh one.  Raises HarnessError for
    a server whose link cannot be proxied."""
    target = proxy_target(server)
    if target is None:
        raise HarnessError("no fault proxy for %r" % (server,))
    if listen is None:
        if isinstance(target, str):
            # short: sun_path holds 108 bytes, test folders are long
            _proxy_socks[0] += 1
            listen = os.path.join(tempfile.gettempdir(), "hs-proxy-%d-%d.sock"
                                  % (os.getpid(), _proxy_socks[0]))
        else:
            listen = 0
    return Proxy(listen, target)


def via_proxy(proxy, server, workdir, extra=()):
    """What a mount of @server through @proxy needs, as keyword arguments
    of the tests' mount_factory: {"sshd": a view of the server that dials
    the proxy, "options": @extra}.  SFTP and the agent over ssh get the
    proxy's port and a known_hosts file for it (in @workdir); an agent
    gets its source rewritten to the proxy's port or socket, token kept."""
    if isinstance(server, Agent):
        view = server.via(port=proxy.port) if proxy.port else \
            server.via(socket=proxy.path)
    elif isinstance(server, AgentOverSsh):
        view = AgentOverSsh(SshdVia(server.sshd, proxy.port,
                                    _proxy_known_hosts(proxy, server.sshd, workdir)))
    else:
        view = SshdVia(server, proxy.port,
                       _proxy_known_hosts(proxy, server, workdir))
    return {"sshd": view, "options": list(extra)}
