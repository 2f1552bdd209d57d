/* SPDX-License-Identifier: MIT
 * transport/sftp_errno.c - the one place where libssh2 return codes
 * (LIBSSH2_ERROR_*) and SFTP status codes (LIBSSH2_FX_*) become -errno.
 *
 * Two families of failures reach here:
 *   - session failures (socket, crypto, protocol): the session's state is
 *     then unknown, hs_sftp_breaks_link() is true and sftp.c marks the
 *     transport broken.  They map to the "link is down" errnos of
 *     hs_tr_err_is_link() (-ECONNRESET, -EPIPE, -EPROTO, -ETIMEDOUT);
 *   - a status reply of the server (rc == LIBSSH2_ERROR_SFTP_PROTOCOL plus
 *     an LIBSSH2_FX_* code): the connection stays usable.
 *
 * OpenSSH's sftp-server (SFTP v3) sends only NO_SUCH_FILE (ENOENT, ENOTDIR,
 * ELOOP, EBADF), PERMISSION_DENIED (EPERM, EACCES), BAD_MESSAGE (EINVAL,
 * ENAMETOOLONG), OP_UNSUPPORTED (ENOSYS) and FAILURE for everything else
 * (EEXIST, ENOTEMPTY, EISDIR, ENOSPC, EXDEV, ...).  FAILURE is therefore read
 * in the context of the operation, helped by an lstat of the path that
 * sftp.c makes when hs_sftp_wants_probe() asks for it:
 *
 *   op          FAILURE means                       without a usable probe
 *   mkdir       path exists -> EEXIST               EIO
 *   open excl   path exists -> EEXIST               EIO
 *   open        path is a directory -> EISDIR       EIO
 *   rmdir       directory -> ENOTEMPTY, else ENOTDIR  EIO
 *   unlink      directory -> EISDIR                 EIO
 *   rename      target exists -> EEXIST (sftp.c then emulates replace)
 *   others                                          EIO
 *
 * rmdir and opendir of a non-directory fail with ENOTDIR, which OpenSSH
 * reports as NO_SUCH_FILE; a probe that finds the path turns it back into
 * ENOTDIR.  Newer servers that send the SFTP v5+ codes (DIR_NOT_EMPTY,
 * FILE_ALREADY_EXISTS, ...) are mapped directly.
 *
 * libssh2 1.10 quirk: for SYMLINK, READLINK and REALPATH (all sent by
 * libssh2_sftp_symlink_ex()) a STATUS reply is misread, and
 * libssh2_sftp_last_error() returns the request id instead of the status
 * (measured against OpenSSH 9.2).  For these three the status is ignored
 * and the answer comes from the probe alone:
 *   symlink   path exists -> EEXIST, else the probe's error (ENOENT ...)
 *   readlink  not a symlink -> EINVAL, missing -> the probe's error
 *   realpath  missing -> the probe's error
 * (sftp.c also checks a "failed" symlink with readlink: the link is often
 * there, made as asked.)
 *
 * Thread model: pure functions, any thread.
 */
#include "sftp_i.h"

#include <errno.h>
#include <sys/stat.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

int hs_sftp_breaks_link(int rc)
{
	switch (rc) {
	case LIBSSH2_ERROR_NONE:
	case LIBSSH2_ERROR_SFTP_PROTOCOL:
	case LIBSSH2_ERROR_BUFFER_TOO_SMALL:
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
	case LIBSSH2_ERROR_FILE:
	case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
		return 0;
	default:
		return rc < 0;
	}
}

/* A session-level libssh2 code, independent of the operation. */
static int session_errno(int rc)
{
	switch (rc) {
	case LIBSSH2_ERROR_SOCKET_SEND:
		return -EPIPE;
	case LIBSSH2_ERROR_SOCKET_NONE:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_BAD_SOCKET:
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
	case LIBSSH2_ERROR_CHANNEL_FAILURE:
	case LIBSSH2_ERROR_CHANNEL_UNKNOWN:
		return -ECONNRESET;
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
		return -ETIMEDOUT;
	case LIBSSH2_ERROR_ALLOC:
		return -ENOMEM;
	case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
	case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
	case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
		return -EACCES;
	case LIBSSH2_ERROR_FILE:
		return -ENOENT;
	case LIBSSH2_ERROR_METHOD_NOT_SUPPORTED:
		return -ENOTSUP;
	case LIBSSH2_ERROR_INVAL:
	case LIBSSH2_ERROR_BAD_USE:
		return -EINVAL;
	default:
		/* banner, kex, mac, decrypt, protocol, channel window, and
		 * EAGAIN (which never gets here): the session is unusable. */
		return -EPROTO;
	}
}

static int is_dir(const struct hs_sftp_probe *p)
{
	return p && p->err == 0 && S_ISDIR(p->mode);
}

static int exists(const struct hs_sftp_probe *p)
{
	return p && p->err == 0;
}

int hs_sftp_wants_probe(enum hs_sftp_op op, int rc, unsigned long fx)
{
	if (rc != LIBSSH2_ERROR_SFTP_PROTOCOL)
		return 0;
	switch (op) {
	case HS_SOP_SYMLINK:
	case HS_SOP_READLINK:
	case HS_SOP_REALPATH:
		return 1; /* the status is unreliable, see above */
	case HS_SOP_MKDIR:
	case HS_SOP_OPEN:
	case HS_SOP_OPEN_EXCL:
	case HS_SOP_UNLINK:
	case HS_SOP_RENAME:
		return fx == LIBSSH2_FX_FAILURE;
	case HS_SOP_RMDIR:
		return fx == LIBSSH2_FX_FAILURE ||
		       fx == LIBSSH2_FX_NO_SUCH_FILE;
	case HS_SOP_OPENDIR:
		return fx == LIBSSH2_FX_NO_SUCH_FILE;
	default:
		return 0;
	}
}

/* SSH_FX_FAILURE in the context of @op. */
static int failure_errno(enum hs_sftp_op op, const struct hs_sftp_probe *p)
{
	switch (op) {
	case HS_SOP_MKDIR:
	case HS_SOP_OPEN_EXCL:
	case HS_SOP_RENAME:
		return exists(p) ? -EEXIST : -EIO;
	case HS_SOP_OPEN:
		return is_dir(p) ? -EISDIR : -EIO;
	case HS_SOP_RMDIR:
		if (!exists(p))
			return -EIO;
		return is_dir(p) ? -ENOTEMPTY : -ENOTDIR;
	case HS_SOP_UNLINK:
		return is_dir(p) ? -EISDIR : -EIO;
	default:
		return -EIO;
	}
}

int hs_sftp_errno(enum hs_sftp_op op, int rc, unsigned long fx,
		  const struct hs_sftp_probe *probe)
{
	if (rc == LIBSSH2_ERROR_BUFFER_TOO_SMALL)
		return op == HS_SOP_READLINK || op == HS_SOP_REALPATH ?
			       -ENAMETOOLONG : -ERANGE;
	if (rc != LIBSSH2_ERROR_SFTP_PROTOCOL)
		return session_errno(rc);

	switch (op) {
	case HS_SOP_SYMLINK:
		if (!probe)
			return -EIO;
		return exists(probe) ? -EEXIST : probe->err;
	case HS_SOP_READLINK:
		if (!probe)
			return -EIO;
		if (!exists(probe))
			return probe->err;
		return S_ISLNK(probe->mode) ? -EIO : -EINVAL;
	case HS_SOP_REALPATH:
		if (!probe || exists(probe))
			return -EIO;
		return probe->err;
	default:
		break;
	}

	switch (fx) {
	case LIBSSH2_FX_NO_SUCH_FILE:
	case LIBSSH2_FX_NO_SUCH_PATH:
		/* rmdir(2) and opendir(3) say ENOTDIR, sftp-server folds it
		 * into ENOENT */
		if ((op == HS_SOP_RMDIR || op == HS_SOP_OPENDIR) &&
		    exists(probe) && !is_dir(probe))
			return -ENOTDIR;
		return -ENOENT;
	case LIBSSH2_FX_PERMISSION_DENIED:
		return -EACCES;
	case LIBSSH2_FX_FAILURE:
		return failure_errno(op, probe);
	case LIBSSH2_FX_BAD_MESSAGE:
		/* sftp-server's EINVAL and ENAMETOOLONG */
		return -EINVAL;
	case LIBSSH2_FX_NO_CONNECTION:
	case LIBSSH2_FX_CONNECTION_LOST:
		return -ECONNRESET;
	case LIBSSH2_FX_OP_UNSUPPORTED:
		return -ENOTSUP;
	case LIBSSH2_FX_INVALID_HANDLE:
		return -EBADF;
	case LIBSSH2_FX_FILE_ALREADY_EXISTS:
		return -EEXIST;
	case LIBSSH2_FX_WRITE_PROTECT:
		return -EROFS;
	case LIBSSH2_FX_NO_MEDIA:
		return -ENOMEDIUM;
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
		return -ENOSPC;
	case LIBSSH2_FX_QUOTA_EXCEEDED:
		return -EDQUOT;
	case LIBSSH2_FX_UNKNOWN_PRINCIPAL:
		return -EINVAL;
	case LIBSSH2_FX_LOCK_CONFLICT:
		return -EBUSY;
	case LIBSSH2_FX_DIR_NOT_EMPTY:
		return -ENOTEMPTY;
	case LIBSSH2_FX_NOT_A_DIRECTORY:
		return -ENOTDIR;
	case LIBSSH2_FX_INVALID_FILENAME:
		return -EINVAL;
	case LIBSSH2_FX_LINK_LOOP:
		return -ELOOP;
	case LIBSSH2_FX_EOF:
	case LIBSSH2_FX_OK: /* a failed call with an OK status: bad reply */
	default:
		return -EIO;
	}
}

const char *hs_sftp_fx_name(unsigned long fx)
{
	static const char *const names[] = {
		"ok", "end of file", "no such file", "permission denied",
		"failure", "bad message", "no connection", "connection lost",
		"operation unsupported", "invalid handle", "no such path",
		"file already exists", "write protected", "no media",
		"no space on filesystem", "quota exceeded", "unknown principal",
		"lock conflict", "directory not empty", "not a directory",
		"invalid filename", "link loop",
	};

	return fx < HS_ARRAY_SIZE(names) ? names[fx] : "unknown status";
}

const char *hs_sftp_op_name(enum hs_sftp_op op)
{
	switch (op) {
	case HS_SOP_CONNECT: return "connect";
	case HS_SOP_LSTAT: return "lstat";
	case HS_SOP_STAT: return "stat";
	case HS_SOP_REALPATH: return "realpath";
	case HS_SOP_OPENDIR: return "opendir";
	case HS_SOP_READDIR: return "readdir";
	case HS_SOP_OPEN: return "open";
	case HS_SOP_OPEN_EXCL: return "open";
	case HS_SOP_READ: return "read";
	case HS_SOP_WRITE: return "write";
	case HS_SOP_FSYNC: return "fsync";
	case HS_SOP_CLOSE: return "close";
	case HS_SOP_SETSTAT: return "setstat";
	case HS_SOP_MKDIR: return "mkdir";
	case HS_SOP_RMDIR: return "rmdir";
	case HS_SOP_UNLINK: return "unlink";
	case HS_SOP_RENAME: return "rename";
	case HS_SOP_SYMLINK: return "symlink";
	case HS_SOP_READLINK: return "readlink";
	case HS_SOP_STATVFS: return "statvfs";
	}
	return "request";
}
