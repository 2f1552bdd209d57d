# SPDX-License-Identifier: MIT
"""Smoke test of tools/bench: one tiny round over every system; every
workload x system row of medians.csv must hold positive times (no failed
cell; fuse-null, FUSE's own floor, runs the write workloads' return times
only), and the chart must be well-formed SVG."""

import csv
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import harness

BENCH = os.path.join(harness.REPO_ROOT, "tools", "bench")
SYSTEMS = ("local", "hostshare", "sshfs", "rclone", "hs-agent", "hs-agent-nolz4")
WORKLOADS = ("copy-1g", "tree", "find-cold", "find-warm", "ls-cold", "ls-warm",
             "git-status", "read-cold", "read-warm", "randwrite", "copy-4x", "read-4x")
WRITES = ("copy-1g", "tree", "randwrite", "copy-4x")


@pytest.mark.timeout(180)
@pytest.mark.hostshare_only
def test_bench_quick(test_dir):
    out = os.path.join(test_dir, "out")
    cmd = [sys.executable, BENCH, "--quick", "--rounds", "1", "--size-mb", "4",
           "--tree-files", "100", "--writes", "256", "--cache-limit", "4M",
           "--build-dir", harness.build_dir(),
           "--workdir", test_dir, "--out", out]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    harness.register_proc(p)
    try:
        log = p.communicate(timeout=170)[0].decode(errors="replace")
    finally:
        harness.unregister_proc(p)
    assert p.returncode == 0, "tools/bench exited %d:\n%s" % (p.returncode, log[-4000:])

    with open(os.path.join(out, "medians.csv")) as f:
        rows = list(csv.DictReader(f))
    got = {(r["workload"], r["system"]): r for r in rows}
    for w in WORKLOADS:
        r = got.get((w, "fuse-null"))
        assert r is not None, "no row for %s on fuse-null:\n%s" % (w, log[-3000:])
        if w in ("copy-1g", "tree", "copy-4x"):
            assert not r["error"] and float(r["returns_s"]) > 0, r
            assert not r["on_host_s"], r   # nothing reaches a host
        else:
            assert r["error"] == "n/a", r
        for s in SYSTEMS:
            r = got.get((w, s))
            assert r is not None, "no row for %s on %s:\n%s" % (w, s, log[-3000:])
            assert not r["error"], "%s on %s failed: %s" % (w, s, r["error"])
            assert float(r["returns_s"]) > 0, r
            if w in WRITES:
                assert float(r["on_host_s"]) >= float(r["returns_s"]) > 0, r
            assert float(r["cpu_daemon_s"]) >= 0 and float(r["cpu_client_s"]) > 0, r
            if w in WRITES and s != "local":
                # bytes on the wire, counted in the bench's own network
                # namespace: at least the data written
                assert float(r["wire_mb"]) > 0, r
    with open(os.path.join(out, "results.csv")) as f:
        assert len(list(csv.DictReader(f))) == len(WORKLOADS) * (len(SYSTEMS) + 1)

    root = ET.parse(os.path.join(out, "bench.svg")).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(root.findall("{http://www.w3.org/2000/svg}rect")) > len(SYSTEMS) * 10
    report = open(os.path.join(out, "report.md")).read()
    assert "| copy-1g | returns |" in report
    # nothing left behind: no mount and no work folder under test_dir
    assert not any(test_dir in harness._unescape_mountinfo(line.split()[4])
                   for line in open("/proc/self/mountinfo"))
    assert sorted(os.listdir(test_dir)) == ["out"]
