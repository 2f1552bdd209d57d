# SPDX-License-Identifier: MIT
"""No silent overwrite (DESIGN.md contract 3): when the host copy of a
file changed while the guest held unflushed changes to it, the host's
version stays under the name and the guest's is saved beside it as
NAME.conflict-<guest hostname>-<YYYYmmdd-HHMMSS>[.ext]."""

import glob
import os
import socket
import time

import pytest


@pytest.fixture
def hostshare_only(mounter):
    if mounter != "hostshare":
        pytest.skip("sshfs writes through: it has no unflushed changes to keep")


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.timeout(120)
def test_changed_on_both_sides_keeps_both(hostshare_only, mount_factory, timing):
    mnt = mount_factory(options=["writeback_delay=60000", "attr_timeout=1"])
    with open(mnt.guest("report.txt"), "wb") as f:
        f.write(b"base content\n")
    with open(mnt.guest("notes"), "wb") as f:
        f.write(b"notes base\n")
    mnt.flush()

    # the guest changes both files; nothing is sent yet (writeback_delay)
    with open(mnt.guest("report.txt"), "r+b") as f:
        f.write(b"GUEST")
    with open(mnt.guest("notes"), "ab") as f:
        f.write(b"guest line\n")
    # meanwhile someone on the host edits them too
    host_report = b"the host's version, longer than the base\n"
    with open(mnt.host("report.txt"), "wb") as f:
        f.write(host_report)
    os.utime(mnt.host("report.txt"), (1_000_000_000, 1_000_000_000))
    os.unlink(mnt.host("notes"))

    mnt.flush()
    assert read(mnt.host("report.txt")) == host_report, "the host's edit was overwritten"
    name = socket.gethostname()
    copies = glob.glob(mnt.host("report.conflict-%s-*.txt" % name))
    assert len(copies) == 1, os.listdir(mnt.host())
    assert read(copies[0]) == b"GUESTcontent\n"
    notes = glob.glob(mnt.host("notes.conflict-%s-*" % name))
    assert len(notes) == 1, os.listdir(mnt.host())
    assert read(notes[0]) == b"notes base\nguest line\n"
    assert not os.path.exists(mnt.host("notes")), "a host deletion was undone"
    timing("conflict copies", ", ".join(sorted(os.path.basename(p) for p in copies + notes)))

    time.sleep(1.5)                          # past attr_timeout
    assert read(mnt.guest("report.txt")) == host_report
    assert read(mnt.guest(os.path.basename(copies[0]))) == b"GUESTcontent\n"
    assert not os.path.exists(mnt.guest("notes"))


@pytest.mark.timeout(120)
def test_deleted_in_guest_edited_on_host_keeps_the_edit(hostshare_only, mount_factory, timing):
    """The guest deletes a file while someone edits it on the host: the
    host's edit stays, comes back in the guest, and is listed."""
    import json

    mnt = mount_factory(options=["writeback_delay=60000", "attr_timeout=1"])
    with open(mnt.guest("draft.md"), "wb") as f:
        f.write(b"first draft\n")
    with open(mnt.guest("scratch"), "wb") as f:
        f.write(b"nobody edits this\n")
    mnt.flush()

    os.unlink(mnt.guest("draft.md"))
    os.unlink(mnt.guest("scratch"))
    edited = b"first draft\nedited on the host\n"
    with open(mnt.host("draft.md"), "wb") as f:
        f.write(edited)
    mnt.flush()

    assert read(mnt.host("draft.md")) == edited, "the host's edit was deleted"
    assert not os.path.exists(mnt.host("scratch")), "a plain delete did not reach the host"
    time.sleep(1.5)                          # past attr_timeout
    assert read(mnt.guest("draft.md")) == edited
    got = json.loads(mnt.ctl("conflicts", "--json", mnt.path).stdout)
    assert [(k["path"], k["reason"]) for k in got] == [
        ("/draft.md", "changed on the host while deleted in the guest")], got
    timing("delete vs host edit", "host edit kept, back in the guest, listed")
