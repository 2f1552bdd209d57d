/* SPDX-License-Identifier: MIT
 * transport/sftp_i.h - private interface of the SFTP transport, shared by
 * open.c (the dispatcher), sftp.c (the wire) and sftp_errno.c (the one place
 * libssh2 and SFTP status codes become -errno).
 *
 * Error mapping happens in two steps because SFTP v3, as OpenSSH's
 * sftp-server speaks it, folds most errnos into SSH_FX_FAILURE:
 *
 *   1. hs_sftp_wants_probe() says whether the answer depends on the state of
 *      the path the request failed on (does it exist, is it a directory);
 *   2. if so sftp.c lstats the path and fills a struct hs_sftp_probe, and
 *      hs_sftp_errno() picks the errno from the operation, the libssh2
 *      return code, the SFTP status and the probe.
 *
 * Both are pure functions (no I/O), so tests/unit/test_sftp_errno.c covers
 * them without a server.  LIBSSH2_ERROR_EAGAIN is never passed in: it never
 * leaves sftp.c's wait loop.
 */
#ifndef HS_SFTP_I_H
#define HS_SFTP_I_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

/* Where the rename emulation (sftp.c) sets an existing @to aside while it
 * renames @from over it: "<folder of to>/.hs-replaced.<16 hex digits>", the
 * digits a hash of the two final names, so every try of one rename uses
 * the same name and a resend (HS_RENAME_RESEND) can clear what a cut try
 * left.  0, or -ENAMETOOLONG when it does not fit @size, -EINVAL when @to
 * has no '/'.  Pure; test_sftp plants such leftovers with it. */
int hs_sftp_aside_name(const char *from, const char *to, char *buf, size_t size);

/* The request that failed: gives SSH_FX_FAILURE its meaning. */
enum hs_sftp_op {
	HS_SOP_CONNECT = 1, /* handshake, auth, sftp subsystem start */
	HS_SOP_LSTAT,
	HS_SOP_STAT,
	HS_SOP_REALPATH,
	HS_SOP_OPENDIR,
	HS_SOP_READDIR,
	HS_SOP_OPEN,        /* open without O_EXCL */
	HS_SOP_OPEN_EXCL,   /* open with O_CREAT|O_EXCL */
	HS_SOP_READ,
	HS_SOP_WRITE,
	HS_SOP_FSYNC,
	HS_SOP_CLOSE,
	HS_SOP_SETSTAT,
	HS_SOP_MKDIR,
	HS_SOP_RMDIR,
	HS_SOP_UNLINK,
	HS_SOP_RENAME,      /* probe: the *target* path */
	HS_SOP_SYMLINK,     /* probe: the link path */
	HS_SOP_READLINK,
	HS_SOP_STATVFS,
};

/* What a follow-up lstat learned about the path a request failed on. */
struct hs_sftp_probe {
	int err;       /* 0: the path exists and @mode is valid; else -errno */
	uint32_t mode; /* S_IFMT bits (and permissions) of the path */
};

/* Non-zero when the answer to a failed @op depends on the path's state:
 * the caller should lstat it and pass the result to hs_sftp_errno(). */
int hs_sftp_wants_probe(enum hs_sftp_op op, int rc, unsigned long fx);

/* Maps a failed libssh2 call to -errno.  @rc is the libssh2 return code
 * (LIBSSH2_ERROR_*, < 0); @fx is libssh2_sftp_last_error() and is read only
 * when @rc is LIBSSH2_ERROR_SFTP_PROTOCOL.  @probe may be NULL (not probed).
 * Never returns 0. */
int hs_sftp_errno(enum hs_sftp_op op, int rc, unsigned long fx,
		  const struct hs_sftp_probe *probe);

/* Non-zero when @rc (a libssh2 return code) leaves the session unusable:
 * socket and protocol errors, anything but a server's SFTP status reply. */
int hs_sftp_breaks_link(int rc);

/* Short lowercase names for messages: "no such file", "failure", ... */
const char *hs_sftp_fx_name(unsigned long fx);
const char *hs_sftp_op_name(enum hs_sftp_op op);

/* sftp.c: hs_tr_open() for HS_TR_SFTP (see transport.h for the contract). */
int hs_sftp_open(const struct hs_tr_config *cfg, hs_deadline_t dl,
		 struct hs_transport **ret, char *err, size_t errlen);

/* Logs in as for SFTP (same host key and authentication rules), runs @cmd
 * in an exec channel and returns a local stream socket (non-blocking,
 * close-on-exec) connected to the command's stdin/stdout by a helper
 * thread (*ret); the command's stderr goes to the log.  The command ending
 * shows as end of stream.  The owner shuts the socket down, then calls
 * hs_ssh_stream_free(), which waits for the helper to end the session,
 * then closes the socket.  Used by the agent wire for "-o agent".
 * Returns the socket or -errno with a line in @err. */
struct hs_ssh_stream;
int hs_ssh_exec_stream(const struct hs_tr_config *cfg, const char *cmd,
		       hs_deadline_t dl, char *err, size_t errlen,
		       struct hs_ssh_stream **ret);
void hs_ssh_stream_free(struct hs_ssh_stream *p);

#endif
