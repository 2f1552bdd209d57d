/* SPDX-License-Identifier: MIT
 * transport/transport.h - the one interface between the cache and a host.
 *
 * A struct hs_transport is one connection to one host folder.  Each wire
 * (SFTP over libssh2 today, the hostshare agent protocol later) embeds the
 * base struct as its first member and fills in a const ops table.  Callers
 * use the hs_tr_*() inline wrappers at the bottom, never the slots directly:
 * the wrappers check the deadline first and turn a NULL slot into -ENOTSUP.
 *
 * Paths are relative to the served folder, always absolute-looking: "/" is
 * the folder itself, "/a/b" a file in it.  The transport joins them with the
 * remote directory named in the source.
 *
 * Contract of every slot:
 *   - returns 0 (or a count where said) on success, -errno on failure;
 *   - never blocks past @dl: it then returns -ETIMEDOUT;
 *   - after a wire failure (-ETIMEDOUT mid-request, -ECONNRESET, -EPROTO) the
 *     connection is broken: hs_tr_broken() becomes true and every later call
 *     returns -ENOTCONN.  The owner (cache/link.c) closes it and dials anew;
 *   - a host-side refusal (-ENOENT, -EACCES, -EEXIST, ...) leaves the
 *     connection usable.
 *
 * Thread model: a transport may be called from any thread; calls on one
 * transport are serialised inside it (a caller waits for its turn at most
 * until its own deadline, then gets -ETIMEDOUT without breaking the
 * connection).  hs_tr_close() only once no other thread uses it.
 */
#ifndef HS_TRANSPORT_H
#define HS_TRANSPORT_H

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/common.h"

/* Which fields of struct hs_attr are meaningful (in answers) or are to be
 * changed (in setattr). */
enum hs_attr_valid {
	HS_ATTR_SIZE = 1 << 0,
	HS_ATTR_MODE = 1 << 1, /* permission bits; type bits always valid in answers */
	HS_ATTR_UID = 1 << 2,
	HS_ATTR_GID = 1 << 3,
	HS_ATTR_ATIME = 1 << 4,
	HS_ATTR_MTIME = 1 << 5,
};

struct hs_attr {
	uint32_t valid; /* enum hs_attr_valid */
	uint32_t mode;  /* S_IFMT type | permission bits */
	uint32_t uid, gid; /* host ids, unmapped */
	uint32_t nlink; /* 1 when the wire does not say */
	uint64_t size;  /* bytes */
	int64_t atime_ns, mtime_ns; /* ns since the epoch (SFTP v3: whole s) */
};

struct hs_statvfs {
	uint64_t bsize, frsize; /* bytes */
	uint64_t blocks, bfree, bavail; /* in frsize units */
	uint64_t files, ffree, favail;
	uint64_t namemax;
};

/* Capabilities, fixed once the connection is open. */
enum hs_tr_caps {
	HS_TR_CAP_POSIX_RENAME = 1 << 0, /* rename replaces the target atomically */
	HS_TR_CAP_HARDLINK = 1 << 1,
	HS_TR_CAP_FSYNC = 1 << 2,
	HS_TR_CAP_STATVFS = 1 << 3,
	HS_TR_CAP_NS_TIMES = 1 << 4, /* times carry sub-second precision */
	HS_TR_CAP_PIPELINE = 1 << 5, /* calls of many threads at once are all
				      * in flight together on the connection */
	HS_TR_CAP_SEQ = 1 << 6, /* hs_tr_batch(): many changes, in order,
				 * in one exchange */
};

/* One change of hs_tr_batch(). */
enum hs_tr_op_kind {
	HS_TROP_MKDIR = 1, /* as hs_tr_mkdir(): path, mode */
	HS_TROP_PUT,       /* as hs_tr_put_file() without flags: path, mode,
			    * times, data */
};

struct hs_tr_op {
	int kind;                   /* enum hs_tr_op_kind */
	const char *path;
	uint32_t mode;              /* permission bits */
	int64_t atime_ns, mtime_ns; /* PUT */
	const void *data;           /* PUT: the whole file */
	size_t len;
	int r;                      /* out: this one's 0 or -errno */
};

/* Flags of hs_tr_rename(). */
enum hs_tr_rename_flags {
	HS_RENAME_NOREPLACE = 1 << 0, /* fail with -EEXIST if the target exists */
	HS_RENAME_RESEND = 1 << 1,    /* this rename may have been tried before
				       * and cut short (a link failure, a
				       * crash): a wire that replaces a name in
				       * steps first clears what such a try
				       * left (sftp.c); others ignore it */
};

/* Flags of hs_tr_open(): a subset of open(2) flags with their usual
 * meaning: O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND. */

struct hs_transport;
struct hs_tr_file; /* an open remote file; owned by the transport */

/* Called once per directory entry by readdir ("." and ".." are skipped).
 * @name and @attr are borrowed for the call.  Returning non-zero stops the
 * listing and readdir returns that value. */
typedef int (*hs_tr_dirent_fn)(void *arg, const char *name,
			       const struct hs_attr *attr);

/* Host change notifications of the agent wire (docs/protocol.md, NOTIFY):
 * @kind is enum hs_proto_notify_kind, @path relative to the mounted folder
 * ("/a/b"), @path2 the new name of a move (else NULL).  Called on the
 * transport's reader thread; must not call into the transport and should
 * return quickly. */
typedef void (*hs_tr_notify_fn)(void *arg, unsigned kind, const char *path,
				const char *path2);

struct hs_transport_ops {
	const char *name; /* "sftp", "agent" */

	/* Frees the connection and everything it owns, including open
	 * hs_tr_files.  Never fails, never blocks longer than a short grace
	 * period (a polite disconnect is attempted only if it cannot hang). */
	void (*close)(struct hs_transport *t);

	/* Attributes of @path without following a final symlink.
	 * -ENOENT, -ENOTDIR, -EACCES. */
	int (*lstat)(struct hs_transport *t, const char *path,
		     struct hs_attr *ret, hs_deadline_t dl);

	/* Lists @path with attributes (lstat semantics), calling @fn per
	 * entry.  -ENOENT, -ENOTDIR, -EACCES, or what @fn returned. */
	int (*readdir)(struct hs_transport *t, const char *path,
		       hs_tr_dirent_fn fn, void *arg, hs_deadline_t dl);

	/* Opens @path.  @mode applies when O_CREAT creates the file.
	 * -ENOENT, -EEXIST (O_CREAT|O_EXCL), -EISDIR, -EACCES. */
	int (*open)(struct hs_transport *t, const char *path, int flags,
		    uint32_t mode, struct hs_tr_file **ret, hs_deadline_t dl);

	/* Reads up to @len bytes at @off.  Returns the count (short reads
	 * allowed; 0 only at end of file) or -errno.  Move >= 1 MiB a call. */
	ssize_t (*pread)(struct hs_transport *t, struct hs_tr_file *f,
			 void *buf, size_t len, uint64_t off,
			 hs_deadline_t dl);

	/* Writes all @len bytes at @off; returns @len or -errno (-ENOSPC,
	 * -EDQUOT, -EIO).  A failure may leave a prefix written. */
	ssize_t (*pwrite)(struct hs_transport *t, struct hs_tr_file *f,
			  const void *buf, size_t len, uint64_t off,
			  hs_deadline_t dl);

	/* Asks the host to make @f durable.  May be NULL (-ENOTSUP). */
	int (*fsync)(struct hs_transport *t, struct hs_tr_file *f,
		     hs_deadline_t dl);

	/* Closes @f.  @f is freed whatever the result; a non-zero result means
	 * the host reported an error on close (treat written data as suspect). */
	int (*fclose)(struct hs_transport *t, struct hs_tr_file *f,
		      hs_deadline_t dl);

	/* Changes the fields of @attr selected by attr->valid (size truncates
	 * or extends).  -ENOENT, -EPERM, -EACCES. */
	int (*setattr)(struct hs_transport *t, const char *path,
		       const struct hs_attr *attr, hs_deadline_t dl);

	/* -EEXIST, -ENOENT (parent missing), -EACCES. */
	int (*mkdir)(struct hs_transport *t, const char *path, uint32_t mode,
		     hs_deadline_t dl);
	/* -ENOENT, -ENOTEMPTY, -ENOTDIR. */
	int (*rmdir)(struct hs_transport *t, const char *path,
		     hs_deadline_t dl);
	/* -ENOENT, -EISDIR. */
	int (*unlink)(struct hs_transport *t, const char *path,
		      hs_deadline_t dl);

	/* Renames @from to @to, replacing a non-directory or empty-directory
	 * target unless HS_RENAME_NOREPLACE.  -ENOENT, -EEXIST, -ENOTEMPTY,
	 * -EISDIR, -ENOTDIR. */
	int (*rename)(struct hs_transport *t, const char *from, const char *to,
		      unsigned flags, hs_deadline_t dl);

	/* Creates symlink @path pointing to @target.  -EEXIST, -ENOENT. */
	int (*symlink)(struct hs_transport *t, const char *target,
		       const char *path, hs_deadline_t dl);

	/* Copies the target of symlink @path into @buf (NUL-terminated,
	 * truncated to @size - 1).  Returns the target's full length or
	 * -errno (-EINVAL: not a symlink). */
	int (*readlink)(struct hs_transport *t, const char *path, char *buf,
			size_t size, hs_deadline_t dl);

	/* Hard link.  May be NULL (-ENOTSUP) or fail with -EPERM. */
	int (*link)(struct hs_transport *t, const char *oldpath,
		    const char *newpath, hs_deadline_t dl);

	/* Free space of the filesystem holding @path.  May be NULL. */
	int (*statvfs)(struct hs_transport *t, const char *path,
		       struct hs_statvfs *ret, hs_deadline_t dl);

	/* Checks the link is alive with one round trip (keepalive probe). */
	int (*ping)(struct hs_transport *t, hs_deadline_t dl);

	/* Uploads a whole new file in one exchange: creates a temporary
	 * file beside @path, writes @len bytes of @data, sets the permission
	 * bits of @mode and both times, and renames it onto @path
	 * (HS_RENAME_NOREPLACE: -EEXIST if @path exists).  Readers see the
	 * old file or the whole new one.  Fills @ret (may be NULL) with the
	 * new file's attributes.  May be NULL (-ENOTSUP); -EFBIG when @len
	 * is beyond what one exchange carries (use open/pwrite then). */
	int (*put_file)(struct hs_transport *t, const char *path,
			uint32_t mode, int64_t atime_ns, int64_t mtime_ns,
			unsigned flags, const void *data, size_t len,
			struct hs_attr *ret, hs_deadline_t dl);

	/* Makes @n changes (HS_TR_CAP_SEQ) one after the other on the host
	 * in one exchange, each as its own call would; a refused one does
	 * not stop the rest.  0 once every op's r is set; -errno (a wire
	 * failure, -E2BIG beyond one exchange) when none is known: then
	 * any prefix of them may have been made.  May be NULL (-ENOTSUP). */
	int (*batch)(struct hs_transport *t, struct hs_tr_op *ops, int n,
		     hs_deadline_t dl);

	/* Asks the host to report its changes below the mounted folder from
	 * now on: @fn is called for each (see hs_tr_notify_fn) until the
	 * connection closes.  May be NULL (-ENOTSUP): SFTP cannot. */
	int (*subscribe)(struct hs_transport *t, hs_tr_notify_fn fn,
			 void *arg, hs_deadline_t dl);
};

struct hs_transport {
	const struct hs_transport_ops *ops;
	unsigned caps;            /* enum hs_tr_caps */
	uint32_t remote_uid;      /* ids the host gives the login user; */
	uint32_t remote_gid;      /* (uint32_t)-1 when unknown */
	volatile int broken;      /* set once the wire failed; see above */
	char last_error[256];     /* one user-facing line about the last failure */
};

/* How to reach a host folder.  Strings are borrowed by hs_tr_open(). */
enum hs_tr_kind {
	HS_TR_SFTP = 1,
	HS_TR_AGENT_TCP = 2,   /* host, port */
	HS_TR_AGENT_UNIX = 3,  /* host = socket path */
	HS_TR_AGENT_VSOCK = 4, /* host = CID in decimal, port */
	HS_TR_AGENT_SSH = 5,   /* as HS_TR_SFTP, then "hostshare-agent --stdio
				* --root ROOT" in an ssh exec channel */
};


/* A source as the user writes it, split (spans point into the string):
 *   [user@]host:[dir]          SFTP (host may be "[v6 address]")
 *   tcp://HOST:PORT/dir        the agent on TCP (HOST may be "[v6]")
 *   vsock://CID:PORT/dir       the agent on vsock
 *   unix:/path/to.sock[:/dir]  the agent on a unix socket (host: the path)
 * The mount program and hostsharectl doctor read sources with it. */
struct hs_tr_source {
	enum hs_tr_kind kind;  /* HS_TR_SFTP or an HS_TR_AGENT_* */
	const char *user;      /* NULL when not given */
	size_t user_len;
	const char *host;
	size_t host_len;
	int port;              /* agents on tcp and vsock; else 0 */
	const char *dir;       /* the rest of the string, may be "" */
};

/* 0, or -EINVAL with one line about what is wrong in @err. */
int hs_tr_parse_source(const char *s, struct hs_tr_source *ret, char *err,
		       size_t errlen);

enum hs_tr_hostkey_policy {
	HS_HOSTKEY_STRICT = 0,     /* StrictHostKeyChecking=yes */
	HS_HOSTKEY_ACCEPT_NEW = 1, /* add unknown keys to known_hosts, refuse changed */
	HS_HOSTKEY_NO = 2,         /* accept anything (refuses nothing) */
};

struct hs_tr_config {
	enum hs_tr_kind kind;
	const char *host;        /* name or address */
	int port;                /* 22 by default */
	const char *user;        /* NULL: the local user name */
	const char *root;        /* remote folder; "" or NULL: login dir */
	const char *const *identity_files; /* NULL-terminated; NULL: ~/.ssh defaults */
	const char *known_hosts; /* NULL: ~/.ssh/known_hosts */
	enum hs_tr_hostkey_policy hostkey_policy;
	int connect_timeout_ms;  /* TCP connect + handshake + auth */
	int keepalive_s;         /* SSH keepalive interval, 0: off */
	int use_agent;           /* try ssh-agent ($SSH_AUTH_SOCK) first */

	/* agent kinds */
	const char *token_file;  /* token for tcp/unix agents; NULL: none */
	const char *agent_command; /* HS_TR_AGENT_SSH: the agent program on
				    * the host; NULL: "hostshare-agent" */
	int no_compression;      /* do not offer lz4 */
};

/* Opens a connection as @cfg says, within @dl.  On failure returns -errno and
 * writes one lowercase line for the user into @err, e.g.
 * "cannot connect to '10.0.0.2:22': connection refused",
 * "host key for '[127.0.0.1]:2222' does not match known_hosts",
 * "authentication failed for 'me@host'",
 * "remote folder '/srv/x' does not exist".
 * The remote folder is checked to exist and be a directory. */
int hs_tr_open(const struct hs_tr_config *cfg, hs_deadline_t dl,
	       struct hs_transport **ret, char *err, size_t errlen);

/* Global library init/exit (libssh2_init); call once per process. */
int hs_tr_global_init(void);
void hs_tr_global_exit(void);

/* Maps a transport error to the "link is down" class: the connection is not
 * usable and a reconnect is needed. */
static inline int hs_tr_err_is_link(int r)
{
	return hs_errno_is_link(r); /* the list is in common/common.h */
}

/* ---- calling wrappers: check the deadline, map a NULL slot to -ENOTSUP ---- */

#define HS_TR_CALL(t, slot, dl, ...)                                       \
	(hs_deadline_passed(dl) ? -ETIMEDOUT :  \
	 (t)->broken ? -ENOTCONN :                                          \
	 !(t)->ops->slot ? -ENOTSUP : (t)->ops->slot((t), __VA_ARGS__, (dl)))

static inline int hs_tr_subscribe(struct hs_transport *t, hs_tr_notify_fn fn,
				  void *arg, hs_deadline_t dl)
{
	return HS_TR_CALL(t, subscribe, dl, fn, arg);
}

static inline void hs_tr_close(struct hs_transport *t)
{
	if (t)
		t->ops->close(t);
}
static inline int hs_tr_broken(const struct hs_transport *t)
{
	return t->broken;
}
static inline int hs_tr_lstat(struct hs_transport *t, const char *p,
			      struct hs_attr *ret, hs_deadline_t dl)
{
	return HS_TR_CALL(t, lstat, dl, p, ret);
}
static inline int hs_tr_readdir(struct hs_transport *t, const char *p,
				hs_tr_dirent_fn fn, void *arg, hs_deadline_t dl)
{
	return HS_TR_CALL(t, readdir, dl, p, fn, arg);
}
static inline int hs_tr_fopen(struct hs_transport *t, const char *p, int flags,
			      uint32_t mode, struct hs_tr_file **ret,
			      hs_deadline_t dl)
{
	return HS_TR_CALL(t, open, dl, p, flags, mode, ret);
}
static inline ssize_t hs_tr_pread(struct hs_transport *t, struct hs_tr_file *f,
				  void *buf, size_t len, uint64_t off,
				  hs_deadline_t dl)
{
	return HS_TR_CALL(t, pread, dl, f, buf, len, off);
}
static inline ssize_t hs_tr_pwrite(struct hs_transport *t,
				   struct hs_tr_file *f, const void *buf,
				   size_t len, uint64_t off, hs_deadline_t dl)
{
	return HS_TR_CALL(t, pwrite, dl, f, buf, len, off);
}
static inline int hs_tr_fsync(struct hs_transport *t, struct hs_tr_file *f,
			      hs_deadline_t dl)
{
	return HS_TR_CALL(t, fsync, dl, f);
}
/* Always releases @f, even when the deadline has passed or the link broke. */
static inline int hs_tr_fclose(struct hs_transport *t, struct hs_tr_file *f,
			       hs_deadline_t dl)
{
	return t->ops->fclose(t, f, dl);
}
static inline int hs_tr_setattr(struct hs_transport *t, const char *p,
				const struct hs_attr *a, hs_deadline_t dl)
{
	return HS_TR_CALL(t, setattr, dl, p, a);
}
static inline int hs_tr_mkdir(struct hs_transport *t, const char *p,
			      uint32_t mode, hs_deadline_t dl)
{
	return HS_TR_CALL(t, mkdir, dl, p, mode);
}
static inline int hs_tr_rmdir(struct hs_transport *t, const char *p,
			      hs_deadline_t dl)
{
	return HS_TR_CALL(t, rmdir, dl, p);
}
static inline int hs_tr_unlink(struct hs_transport *t, const char *p,
			       hs_deadline_t dl)
{
	return HS_TR_CALL(t, unlink, dl, p);
}
static inline int hs_tr_rename(struct hs_transport *t, const char *from,
			       const char *to, unsigned flags, hs_deadline_t dl)
{
	return HS_TR_CALL(t, rename, dl, from, to, flags);
}
static inline int hs_tr_symlink(struct hs_transport *t, const char *target,
				const char *p, hs_deadline_t dl)
{
	return HS_TR_CALL(t, symlink, dl, target, p);
}
static inline int hs_tr_readlink(struct hs_transport *t, const char *p,
				 char *buf, size_t size, hs_deadline_t dl)
{
	return HS_TR_CALL(t, readlink, dl, p, buf, size);
}
static inline int hs_tr_link(struct hs_transport *t, const char *oldp,
			     const char *newp, hs_deadline_t dl)
{
	return HS_TR_CALL(t, link, dl, oldp, newp);
}
static inline int hs_tr_statvfs(struct hs_transport *t, const char *p,
				struct hs_statvfs *ret, hs_deadline_t dl)
{
	return HS_TR_CALL(t, statvfs, dl, p, ret);
}
static inline int hs_tr_put_file(struct hs_transport *t, const char *p,
				 uint32_t mode, int64_t atime_ns,
				 int64_t mtime_ns, unsigned flags,
				 const void *data, size_t len,
				 struct hs_attr *ret, hs_deadline_t dl)
{
	return HS_TR_CALL(t, put_file, dl, p, mode, atime_ns, mtime_ns, flags,
			  data, len, ret);
}
static inline int hs_tr_batch(struct hs_transport *t, struct hs_tr_op *ops,
			      int n, hs_deadline_t dl)
{
	return HS_TR_CALL(t, batch, dl, ops, n);
}
static inline int hs_tr_ping(struct hs_transport *t, hs_deadline_t dl)
{
	if (!t->ops->ping)
		return HS_TR_CALL(t, lstat, dl, "/", &(struct hs_attr){ 0 });
	return t->broken ? -ENOTCONN : hs_deadline_passed(dl) ? -ETIMEDOUT :
							       t->ops->ping(t, dl);
}

#endif
