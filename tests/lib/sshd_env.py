#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""tests/lib/sshd_env.py - a private sshd for the C unit tests.

  python3 tests/lib/sshd_env.py start DIR   starts sshd rooted in DIR and
                                            prints `export HS_TEST_...` lines
  python3 tests/lib/sshd_env.py stop DIR    stops the sshd started in DIR

Use it as:  eval "$(python3 tests/lib/sshd_env.py start "$dir")"
The sshd keeps running after this program exits; `stop` kills exactly the
PID that `start` recorded in DIR.
"""

import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Sshd, HarnessError  # noqa: E402


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        sys.stderr.write("usage: %s start|stop DIR\n" % argv[0])
        return 2
    workdir = os.path.abspath(argv[2])
    if argv[1] == "stop":
        if not Sshd.stop_dir(workdir):
            sys.stderr.write("sshd_env: no running sshd recorded in '%s'\n" % workdir)
            return 1
        return 0
    os.makedirs(workdir, exist_ok=True)
    sshd = Sshd(workdir)
    try:
        sshd.start()
    except HarnessError as e:
        sys.stderr.write("sshd_env: %s\n" % e)
        return 1
    host_dir = os.path.join(workdir, "host")
    os.makedirs(host_dir, exist_ok=True)
    # Detach: the Popen object must not reap or kill sshd when we exit.
    sshd.proc = None
    for k, v in sshd.env(host_dir).items():
        print("export %s=%s" % (k, shlex.quote(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
