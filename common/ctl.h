/* SPDX-License-Identifier: MIT
 * common/ctl.h - where a mount's control socket lives, shared by the mount
 * program (fs/ctl.c) and hostsharectl (tools/).
 *
 * The socket is <rundir>/<16 hex digits of fnv1a64(realpath(mountpoint))>.sock
 * with <rundir> = /run/hostshare for root, $XDG_RUNTIME_DIR/hostshare (or
 * /tmp/hostshare-<uid>) for other users; folder mode 0700, socket 0600.
 *
 * Protocol: the client sends one request line, the server answers with
 * lines of JSON and closes the connection.
 *   "status\n"            -> one JSON object (see docs/architecture.md)
 *   "flush <timeout_ms>\n" -> progress objects {"event":"progress",...}
 *                            then {"event":"done","ok":true|false,
 *                                  "error":"..."}
 *   "doctor\n"            -> one JSON object: how the mount reaches its
 *                            host (fs/ctl_doctor.c), for hostsharectl doctor
 */
#ifndef HS_CTL_H
#define HS_CTL_H

#include <stddef.h>
#include <sys/types.h>

/* Writes the run folder for @uid into @buf.  0 or -ENAMETOOLONG. */
int hs_ctl_rundir(uid_t uid, char *buf, size_t size);
/* Writes the socket path of @mountpoint (made absolute and canonical) for
 * a daemon running as @uid.  0 or -errno (-ENOENT: no such mountpoint). */
int hs_ctl_socket_path(const char *mountpoint, uid_t uid, char *buf,
		       size_t size);

#endif
