/* SPDX-License-Identifier: MIT
 * transport/sftp.c - the SFTP wire: struct hs_transport over libssh2 1.10
 * talking to any sshd's sftp subsystem (SFTP v3, as OpenSSH speaks it).
 *
 * Non-blocking state machine.  The session is in libssh2's non-blocking
 * mode; no libssh2 call ever blocks.  A call that cannot finish returns
 * LIBSSH2_ERROR_EAGAIN with its progress kept inside libssh2, and must be
 * repeated with the very same arguments (for libssh2_sftp_write: the same
 * buffer) until it completes.  Between repeats wait_socket() poll()s the
 * socket in the directions libssh2_session_block_directions() names,
 * bounded by the caller's deadline.  EAGAIN never leaves this file.
 *
 * Lock.  struct sftp_tr.lock serialises every use of the session: one
 * request is in flight at a time per transport (libssh2 keeps one state
 * machine per request kind in the LIBSSH2_SFTP, so two interleaved requests
 * would corrupt each other).  It is taken with pthread_mutex_clocklock()
 * against the caller's deadline: a caller that cannot get it in time gets
 * -ETIMEDOUT and the connection stays healthy.  Parallelism comes from
 * several transports (sessions), not from one.  The slots on one path
 * share on_path(): resolve the path, lock, run the slot's req_*, unlock.
 * Directory listings are read completely under the lock and handed to the
 * callback after it is dropped, so the callback may call back into the
 * transport.  olock guards the lists of open and orphaned files only and
 * is never held across I/O.  Lock order: lock before olock.
 *
 * Broken.  If a deadline passes while a request is half done, or the
 * socket or SSH layer fails, the session's state is unknown: base.broken
 * is set, last_error says why, the call returns -ETIMEDOUT / -ECONNRESET /
 * -EPIPE / -EPROTO, and every later call returns -ENOTCONN (checked by the
 * transport.h wrappers and again under the lock).  The owner closes the
 * transport and dials anew.  A server's refusal (an SFTP status) never
 * breaks the connection.
 *
 * Memory.  libssh2 gets an allocator that links each of its blocks into
 * sftp_tr.mem (guarded by lock: libssh2 only allocates inside calls on the
 * session).  A broken session cannot close its handles cleanly, and libssh2
 * 1.10 then keeps their memory; close frees whatever is left after
 * libssh2_session_free(), so a broken link never leaks.
 *
 * Rename.  SFTP v3 rename refuses an existing target and libssh2 1.10 has
 * no posix-rename@openssh.com call, so replacing is emulated:
 *   1. rename(from, to); done unless the target exists;
 *   2. check types (dir over non-dir -> ENOTDIR, non-dir over dir ->
 *      EISDIR, non-empty dir target -> ENOTEMPTY, nothing touched);
 *   3. rename(to, "<dir of to>/.hs-replaced.<hash>") (sftp_i.h:
 *      hs_sftp_aside_name(): the same for every try of this rename; one an
 *      earlier try left there is removed first);
 *   4. rename(from, to); on failure rename the aside name back;
 *   5. unlink (or rmdir) the aside name.
 * Between 3 and 4 the target name is missing for one round trip; if the
 * link dies there, `to` stays missing and the old target survives under
 * the .hs-replaced.* name; cut between 4 and 5, the aside file stays.
 * The flusher sends every row that was cut (a link failure or a crash)
 * again, its renames with HS_RENAME_RESEND: such a rename first removes
 * what its aside name holds (drop_aside()).  HS_TR_CAP_POSIX_RENAME is
 * therefore not offered.
 *
 * Reads.  libssh2_sftp_read() pipelines read-ahead requests (4x the buffer
 * size) on the handle.  pread keeps that pipeline across sequential calls
 * (it seeks only when the offset is not where the last read stopped) and
 * fills the whole buffer unless it reaches end of file.  Writes slide a
 * WRITE_WINDOW-sized window over the caller's buffer so that many 30 kB
 * SFTP writes are in flight while libssh2 still sees "the same buffer"
 * after EAGAIN.
 *
 * libssh2 1.10 quirks worked around here: the status of SYMLINK, READLINK
 * and REALPATH replies is lost (libssh2_sftp_last_error() gives the request
 * id), so symlink refuses an existing name with an lstat first and checks
 * a "failed" reply with readlink, and the errno of the other two comes
 * from an lstat probe (sftp_errno.c).  OpenSSH's sftp-server reads the
 * SYMLINK arguments as (target, link), the reverse of the draft.
 *
 * Not handled: hard links (libssh2 1.10 has no hardlink@openssh.com:
 * link is NULL), nanosecond times (v3 carries whole seconds), opening a
 * directory O_RDONLY succeeds on OpenSSH and fails at read, umask of the
 * server applies to created files and directories, setattr follows a final
 * symlink (sftp-server uses chmod/chown/utimes), the fsync extension
 * cannot be detected up front (HS_TR_CAP_FSYNC is set; an unsupporting
 * server makes fsync return -ENOTSUP), host key algorithms are not steered
 * towards the types already in known_hosts, encrypted identity files (no
 * passphrase prompt), password and keyboard-interactive authentication.
 */
#include "sftp_i.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "dial.h"

#define PATH_BUF 8192                 /* joined remote path, with NUL */
/* Bytes of a pwrite in flight.  Not more: OpenSSH's sftp server packs
 * its input buffer as it consumes each request, so with 4 MiB queued it
 * spent 44 % of its time in memmove and a 1 GiB upload took 5.5 s; with
 * 1 MiB 3.3 s (2 MiB: 4.7 s, 512 KiB and 256 KiB: as 1 MiB). */
#define WRITE_WINDOW (1u << 20)
#define CLOSE_GRACE_MS 200            /* polite disconnect budget */

/* Header of each libssh2 allocation (see "Memory" above). */
struct mblk {
	struct mblk *prev, *next;
	size_t cap; /* usable bytes after the header */
} __attribute__((aligned(16)));
struct hs_tr_file {
	LIBSSH2_SFTP_HANDLE *h;
	struct hs_tr_file *prev, *next; /* on files or orphans; olock */
	uint64_t rd_next; /* offset libssh2's read-ahead continues at; lock */
	int rd_valid;     /* rd_next is meaningful; lock */
};

struct sftp_tr {
	struct hs_transport base;
	pthread_mutex_t lock;   /* serialises all session use (see above) */
	LIBSSH2_SESSION *sess;  /* lock */
	LIBSSH2_SFTP *sftp;     /* lock */
	int fd;                 /* the TCP socket, -1 before dialing */
	int keepalive;          /* keepalive_s > 0 was configured */
	char *root;             /* resolved remote folder, no trailing '/' */
	size_t rootlen;         /* strlen(root); 0 when root is "/" */
	char where[300];        /* "host:port" for messages */
	pthread_mutex_t olock;  /* guards files and orphans; never across I/O */
	struct hs_tr_file files;   /* list head: open files */
	struct hs_tr_file orphans; /* closed by a caller without the lock */
	struct mblk mem;        /* list head of libssh2's blocks; lock */
};

static inline struct sftp_tr *to_sftp(struct hs_transport *t)
{
	return container_of(t, struct sftp_tr, base);
}

/* ---- allocator handed to libssh2 ---- */

static void mem_link(struct sftp_tr *s, struct mblk *b)
{
	b->prev = &s->mem;
	b->next = s->mem.next;
	s->mem.next->prev = b;
	s->mem.next = b;
}

static void mem_unlink(struct mblk *b)
{
	b->prev->next = b->next;
	b->next->prev = b->prev;
}

static void *mem_alloc(size_t n, void **abstract)
{
	struct sftp_tr *s = *abstract;
	struct mblk *b = malloc(sizeof(*b) + n);

	if (!b)
		return NULL;
	b->cap = n;
	mem_link(s, b);
	return b + 1;
}

static void mem_free(void *p, void **abstract)
{
	struct mblk *b;

	if (!p)
		return;
	b = (struct mblk *)p - 1;
	mem_unlink(b);
	free(b);
}

static void *mem_realloc(void *p, size_t n, void **abstract)
{
	struct sftp_tr *s = *abstract;
	struct mblk *b, *nb;

	if (!p)
		return mem_alloc(n, abstract);
	b = (struct mblk *)p - 1;
	if (n <= b->cap)
		return p;
	mem_unlink(b);
	nb = realloc(b, sizeof(*nb) + n);
	if (!nb) {
		mem_link(s, b); /* still valid: put it back */
		return NULL;
	}
	nb->cap = n;
	mem_link(s, nb);
	return nb + 1;
}

/* Frees what libssh2 left behind; only after libssh2_session_free(). */
static void mem_release_all(struct sftp_tr *s)
{
	while (s->mem.next != &s->mem) {
		struct mblk *b = s->mem.next;

		s->mem.next = b->next;
		free(b);
	}
	s->mem.prev = &s->mem;
}

/* ---- file lists (olock) ---- */

static void flist_init(struct hs_tr_file *head)
{
	head->next = head->prev = head;
}

static void flist_add(struct hs_tr_file *head, struct hs_tr_file *f)
{
	f->next = head->next;
	f->prev = head;
	head->next->prev = f;
	head->next = f;
}

static void flist_del(struct hs_tr_file *f)
{
	f->prev->next = f->next;
	f->next->prev = f->prev;
	f->next = f->prev = f;
}

/* ---- failure bookkeeping ---- */

/* Marks the connection broken with @fmt as last_error; returns @r. */
static int __attribute__((format(printf, 3, 4)))
broke(struct sftp_tr *s, int r, const char *fmt, ...)
{
	va_list ap;

	if (!s->base.broken) {
		va_start(ap, fmt);
		vsnprintf(s->base.last_error, sizeof(s->base.last_error), fmt,
			  ap);
		va_end(ap);
		s->base.broken = 1;
		hs_info("sftp: %s", s->base.last_error);
	}
	return r;
}

static const char *sess_msg(struct sftp_tr *s)
{
	char *msg = NULL;

	if (s->sess)
		libssh2_session_last_error(s->sess, &msg, NULL, 0);
	return msg && *msg ? msg : "unknown error";
}

/* Waits until libssh2 can make progress, or @dl.  0 or -errno (broken). */
static int wait_socket(struct sftp_tr *s, hs_deadline_t dl)
{
	struct pollfd pfd = { .fd = s->fd };
	int dir = libssh2_session_block_directions(s->sess);
	int ms, r;

	if (hs_deadline_passed(dl))
		return broke(s, -ETIMEDOUT, "connection to '%s' timed out",
			     s->where);
	ms = hs_deadline_ms_left(dl);
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		pfd.events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		pfd.events |= POLLOUT;
	if (!pfd.events) {
		/* libssh2 did not say what it waits for: retry soon */
		pfd.events = POLLIN;
		ms = HS_MIN(ms, 10);
	}
	r = poll(&pfd, 1, ms);
	if (r < 0 && errno != EINTR)
		return broke(s, -errno, "connection to '%s' failed: %s",
			     s->where, strerror(errno));
	if (r == 0 && hs_deadline_passed(dl))
		return broke(s, -ETIMEDOUT, "connection to '%s' timed out",
			     s->where);
	return 0;
}

/* Repeats the libssh2 call @expr (an int result) until it is not EAGAIN.
 * On a failed wait it *returns* the -errno from the enclosing function,
 * which therefore holds nothing that needs undoing.  Needs s and dl. */
#define NB_INT(rc, expr)                                              \
	do {                                                          \
		while (((rc) = (expr)) == LIBSSH2_ERROR_EAGAIN) {     \
			int w_ = wait_socket(s, dl);                  \
			if (w_ < 0)                                   \
				return w_;                            \
		}                                                     \
	} while (0)

/* Same for calls returning a pointer (NULL + last_errno EAGAIN). */
#define NB_PTR(p, expr)                                                   \
	do {                                                              \
		while (!((p) = (expr)) &&                                 \
		       libssh2_session_last_errno(s->sess) ==             \
			       LIBSSH2_ERROR_EAGAIN) {                    \
			int w_ = wait_socket(s, dl);                      \
			if (w_ < 0)                                       \
				return w_;                                \
		}                                                         \
	} while (0)

static int do_lstat(struct sftp_tr *s, const char *full, int type,
		    struct hs_attr *ret, hs_deadline_t dl);

/* Turns the failed libssh2 call (@rc) of @op into -errno, after an lstat of
 * @probe_path when the answer depends on it (see sftp_errno.c). */
static int fail(struct sftp_tr *s, enum hs_sftp_op op, int rc,
		const char *probe_path, hs_deadline_t dl)
{
	struct hs_sftp_probe pr = { .err = -ENOENT }, *prp = NULL;
	unsigned long fx = 0;
	struct hs_attr a;
	int r;

	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL)
		fx = libssh2_sftp_last_error(s->sftp);
	if (hs_sftp_breaks_link(rc))
		return broke(s, hs_sftp_errno(op, rc, fx, NULL),
			     "connection to '%s' lost during %s: %s", s->where,
			     hs_sftp_op_name(op), sess_msg(s));
	if (probe_path && hs_sftp_wants_probe(op, rc, fx)) {
		pr.err = do_lstat(s, probe_path, LIBSSH2_SFTP_LSTAT, &a, dl);
		if (s->base.broken)
			return pr.err;
		pr.mode = pr.err == 0 ? a.mode : 0;
		prp = &pr;
	}
	r = hs_sftp_errno(op, rc, fx, prp);
	if (r == -ECONNRESET)
		return broke(s, r, "connection to '%s' lost: server says %s",
			     s->where, hs_sftp_fx_name(fx));
	return r;
}

/* ---- lock ---- */

/* Closes orphaned handles; called with lock held. */
static int reap_orphans(struct sftp_tr *s, hs_deadline_t dl)
{
	struct hs_tr_file *f;
	int rc;

	for (;;) {
		pthread_mutex_lock(&s->olock);
		f = s->orphans.next;
		if (f == &s->orphans) {
			pthread_mutex_unlock(&s->olock);
			return 0;
		}
		pthread_mutex_unlock(&s->olock);
		NB_INT(rc, libssh2_sftp_close_handle(f->h));
		if (rc < 0 && hs_sftp_breaks_link(rc))
			return fail(s, HS_SOP_CLOSE, rc, NULL, dl);
		pthread_mutex_lock(&s->olock);
		flist_del(f);
		pthread_mutex_unlock(&s->olock);
		free(f);
	}
}

/* Takes the session lock before @dl.  0, or -ETIMEDOUT (not broken),
 * -ENOTCONN (broken), or what finishing orphaned closes returned. */
static int tr_lock(struct sftp_tr *s, hs_deadline_t dl)
{
	struct timespec ts = hs_deadline_ts(dl);
	int r, next;

	r = pthread_mutex_clocklock(&s->lock, CLOCK_MONOTONIC, &ts);
	if (r)
		return r == ETIMEDOUT ? -ETIMEDOUT : -r;
	if (s->base.broken) {
		r = -ENOTCONN;
		goto out_unlock;
	}
	if (hs_deadline_passed(dl)) {
		r = -ETIMEDOUT; /* nothing sent yet: still healthy */
		goto out_unlock;
	}
	if (s->keepalive) {
		r = libssh2_keepalive_send(s->sess, &next);
		if (r && r != LIBSSH2_ERROR_EAGAIN) {
			r = broke(s, -EPIPE, "connection to '%s' lost: %s",
				  s->where, sess_msg(s));
			goto out_unlock;
		}
	}
	r = reap_orphans(s, dl);
	if (r < 0)
		goto out_unlock;
	return 0;

out_unlock:
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void tr_unlock(struct sftp_tr *s)
{
	pthread_mutex_unlock(&s->lock);
}

/* ---- paths and attributes ---- */

/* Joins the served folder and @path ("/" or "/a/b") into @buf. */
static int full_path(struct sftp_tr *s, const char *path, char *buf,
		     size_t size)
{
	const char *p, *rel;
	size_t len, n;

	if (!path || path[0] != '/')
		return -EINVAL;
	rel = path;
	while (*rel == '/')
		rel++;
	len = strlen(rel);
	while (len && rel[len - 1] == '/')
		len--;
	/* refuse "." and ".." components: nothing may escape the root */
	for (p = rel; p < rel + len;) {
		n = strcspn(p, "/");
		if (n > (size_t)(rel + len - p))
			n = (size_t)(rel + len - p);
		if ((n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		p += n;
		while (p < rel + len && *p == '/')
			p++;
	}
	if (s->rootlen + 1 + len + 1 > size)
		return -ENAMETOOLONG;
	if (!len) {
		if (s->rootlen)
			memcpy(buf, s->root, s->rootlen + 1);
		else
			strcpy(buf, "/");
		return 0;
	}
	memcpy(buf, s->root, s->rootlen);
	buf[s->rootlen] = '/';
	memcpy(buf + s->rootlen + 1, rel, len);
	buf[s->rootlen + 1 + len] = '\0';
	return 0;
}

static void attr_from_sftp(const LIBSSH2_SFTP_ATTRIBUTES *a,
			   struct hs_attr *r)
{
	memset(r, 0, sizeof(*r));
	r->nlink = 1;
	r->mode = S_IFREG; /* the type is always valid in answers */
	if (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) {
		r->mode = (uint32_t)a->permissions;
		if (!(r->mode & S_IFMT))
			r->mode |= S_IFREG;
		r->valid |= HS_ATTR_MODE;
	}
	if (a->flags & LIBSSH2_SFTP_ATTR_SIZE) {
		r->size = a->filesize;
		r->valid |= HS_ATTR_SIZE;
	}
	if (a->flags & LIBSSH2_SFTP_ATTR_UIDGID) {
		r->uid = (uint32_t)a->uid;
		r->gid = (uint32_t)a->gid;
		r->valid |= HS_ATTR_UID | HS_ATTR_GID;
	}
	if (a->flags & LIBSSH2_SFTP_ATTR_ACMODTIME) {
		r->atime_ns = (int64_t)a->atime * HS_NSEC_PER_SEC;
		r->mtime_ns = (int64_t)a->mtime * HS_NSEC_PER_SEC;
		r->valid |= HS_ATTR_ATIME | HS_ATTR_MTIME;
	}
}

/* ns since the epoch to the whole seconds SFTP v3 carries (floor). */
static unsigned long ns_to_s(int64_t ns)
{
	int64_t sec = ns / HS_NSEC_PER_SEC;

	if (ns < 0 && sec * HS_NSEC_PER_SEC != ns)
		sec--;
	/* SFTP v3 carries 32-bit unsigned seconds: times beyond its range
	 * reach the host as its nearest end, never wrapped */
	return sec < 0 ? 0 : sec > UINT32_MAX ? UINT32_MAX : (unsigned long)sec;
}

/* ---- requests; all with lock held ---- */

static int do_lstat(struct sftp_tr *s, const char *full, int type,
		    struct hs_attr *ret, hs_deadline_t dl)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	int rc;

	memset(&a, 0, sizeof(a));
	NB_INT(rc, libssh2_sftp_stat_ex(s->sftp, full,
					(unsigned)strlen(full), type, &a));
	if (rc < 0)
		return fail(s, type == LIBSSH2_SFTP_LSTAT ? HS_SOP_LSTAT :
							    HS_SOP_STAT,
			    rc, NULL, dl);
	attr_from_sftp(&a, ret);
	return 0;
}

static int do_close_handle(struct sftp_tr *s, LIBSSH2_SFTP_HANDLE *h,
			   hs_deadline_t dl)
{
	int rc;

	NB_INT(rc, libssh2_sftp_close_handle(h));
	return rc < 0 ? fail(s, HS_SOP_CLOSE, rc, NULL, dl) : 0;
}

/* The READLINK or REALPATH (@type) reply for @path, into @buf: its length,
 * or what libssh2 returned (fail() not applied), or -errno from waiting. */
static int readlink_raw(struct sftp_tr *s, const char *path, int type,
			char *buf, unsigned size, hs_deadline_t dl)
{
	int rc;

	NB_INT(rc, libssh2_sftp_symlink_ex(s->sftp, path,
					   (unsigned)strlen(path), buf, size,
					   type));
	return rc;
}

/* Reads the target of link @path (@type LIBSSH2_SFTP_READLINK) or the
 * canonical form of @path (LIBSSH2_SFTP_REALPATH) into @buf
 * (NUL-terminated).  Length or -errno (-ENAMETOOLONG when @size is too
 * small for it). */
static int do_readlink(struct sftp_tr *s, const char *path, int type,
		       char *buf, unsigned size, hs_deadline_t dl)
{
	int rc = readlink_raw(s, path, type, buf, size, dl);

	if (s->base.broken)
		return rc;
	if (rc >= 0)
		return rc;
	return fail(s, type == LIBSSH2_SFTP_REALPATH ? HS_SOP_REALPATH :
						       HS_SOP_READLINK,
		    rc, path, dl);
}

static int do_fsync(struct sftp_tr *s, LIBSSH2_SFTP_HANDLE *h,
		    hs_deadline_t dl)
{
	int rc;

	NB_INT(rc, libssh2_sftp_fsync(h));
	return rc < 0 ? fail(s, HS_SOP_FSYNC, rc, NULL, dl) : 0;
}

static int do_rename_raw(struct sftp_tr *s, const char *from, const char *to,
			 const char *probe, hs_deadline_t dl)
{
	int rc;

	NB_INT(rc, libssh2_sftp_rename_ex(s->sftp, from, (unsigned)strlen(from),
					  to, (unsigned)strlen(to),
					  LIBSSH2_SFTP_RENAME_OVERWRITE |
						  LIBSSH2_SFTP_RENAME_ATOMIC |
						  LIBSSH2_SFTP_RENAME_NATIVE));
	return rc < 0 ? fail(s, HS_SOP_RENAME, rc, probe, dl) : 0;
}

static int do_remove(struct sftp_tr *s, const char *full, int dir,
		     hs_deadline_t dl)
{
	int rc;
	unsigned len = (unsigned)strlen(full);

	if (dir)
		NB_INT(rc, libssh2_sftp_rmdir_ex(s->sftp, full, len));
	else
		NB_INT(rc, libssh2_sftp_unlink_ex(s->sftp, full, len));
	if (rc < 0)
		return fail(s, dir ? HS_SOP_RMDIR : HS_SOP_UNLINK, rc, full,
			    dl);
	return 0;
}

/* 1 if directory @full has no entries, 0 if it has, or -errno. */
static int do_dir_empty(struct sftp_tr *s, const char *full,
			hs_deadline_t dl)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	LIBSSH2_SFTP_HANDLE *h;
	char name[512];
	int rc, r, empty = 1;

	NB_PTR(h, libssh2_sftp_open_ex(s->sftp, full, (unsigned)strlen(full),
				       0, 0, LIBSSH2_SFTP_OPENDIR));
	if (!h)
		return fail(s, HS_SOP_OPENDIR, libssh2_session_last_errno(s->sess),
			    NULL, dl);
	for (;;) {
		NB_INT(rc, libssh2_sftp_readdir_ex(h, name, sizeof(name), NULL,
						   0, &a));
		if (rc == LIBSSH2_ERROR_BUFFER_TOO_SMALL) {
			empty = 0;
			break;
		}
		if (rc < 0) {
			r = fail(s, HS_SOP_READDIR, rc, NULL, dl);
			if (s->base.broken)
				return r;
			do_close_handle(s, h, dl);
			return r;
		}
		if (rc == 0)
			break;
		if (strcmp(name, ".") && strcmp(name, "..")) {
			empty = 0;
			break;
		}
	}
	r = do_close_handle(s, h, dl);
	return r < 0 ? r : empty;
}

int hs_sftp_aside_name(const char *from, const char *to, char *buf, size_t size)
{
	const char *fs = strrchr(from, '/'), *ts = strrchr(to, '/');
	const char *names[2] = { fs ? fs + 1 : from, ts ? ts + 1 : to };
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	const char *p;
	int i, n;

	if (!ts)
		return -EINVAL;
	for (i = 0; i < 2; i++)
		for (p = names[i];; p++) {
			h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
			if (!*p)
				break; /* the NUL separates the two names */
		}
	n = snprintf(buf, size, "%.*s/.hs-replaced.%016llx", (int)(ts - to), to,
		     (unsigned long long)h);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Random hex for aside names. */
static void rand_hex(char *buf, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t i;

	if (nbytes > sizeof(b))
		nbytes = sizeof(b);
	if (getrandom(b, nbytes, GRND_NONBLOCK) != (ssize_t)nbytes) {
		uint64_t x = (uint64_t)hs_now_ns() ^ ((uint64_t)getpid() << 32);

		for (i = 0; i < nbytes; i++, x = x * 6364136223846793005ULL + 1)
			b[i] = (unsigned char)(x >> 56);
	}
	for (i = 0; i < nbytes; i++) {
		buf[2 * i] = hex[b[i] >> 4];
		buf[2 * i + 1] = hex[b[i] & 15];
	}
	buf[2 * nbytes] = '\0';
}

/* A resent rename: an earlier try cut between steps 3 and 5 left the old
 * target under this rename's aside name.  It was on its way out: it goes
 * now (a folder the host has filled since stays; step 3 then takes a name
 * of its own).  Only a broken link fails the rename. */
static int drop_aside(struct sftp_tr *s, const char *from, const char *to,
		      hs_deadline_t dl)
{
	char aside[PATH_BUF];
	struct hs_attr a;
	int r;

	if (hs_sftp_aside_name(from, to, aside, sizeof(aside)) < 0)
		return 0; /* the rename itself will say what is wrong */
	r = do_lstat(s, aside, LIBSSH2_SFTP_LSTAT, &a, dl);
	if (r == 0)
		r = do_remove(s, aside, S_ISDIR(a.mode), dl);
	if (r == 0)
		hs_info("sftp: removed '%s', which a cut rename of '%s' left",
			aside, to);
	else if (r != -ENOENT && !s->base.broken)
		hs_warn("sftp: could not remove '%s', which a cut rename of "
			"'%s' left (%s)", aside, to, strerror(-r));
	return s->base.broken ? r : 0;
}

/* Steps 2-5 of the rename emulation (see the file header). */
static int do_replace(struct sftp_tr *s, const char *from, const char *to,
		      hs_deadline_t dl)
{
	struct hs_attr fa, ta;
	char aside[PATH_BUF];
	int r, r2, dir;

	r = do_lstat(s, from, LIBSSH2_SFTP_LSTAT, &fa, dl);
	if (r < 0)
		return r;
	r = do_lstat(s, to, LIBSSH2_SFTP_LSTAT, &ta, dl);
	if (r == -ENOENT) /* the target went away meanwhile */
		return do_rename_raw(s, from, to, NULL, dl);
	if (r < 0)
		return r;
	dir = S_ISDIR(ta.mode);
	if (dir && !S_ISDIR(fa.mode))
		return -EISDIR;
	if (!dir && S_ISDIR(fa.mode))
		return -ENOTDIR;
	if (dir) {
		r = do_dir_empty(s, to, dl);
		if (r < 0)
			return r;
		if (!r)
			return -ENOTEMPTY;
	}

	r = hs_sftp_aside_name(from, to, aside, sizeof(aside));
	if (r < 0)
		return r;
	r = do_rename_raw(s, to, aside, aside, dl);
	if (r == -EEXIST) {
		/* an earlier try of this rename was cut after step 3 */
		r = drop_aside(s, from, to, dl);
		if (r == 0)
			r = do_rename_raw(s, to, aside, aside, dl);
		if (r < 0 && !s->base.broken) {
			/* it will not go (a folder the host filled since):
			 * a name of its own for this try */
			char *dot = strrchr(aside, '.');

			rand_hex(dot + 1, 8);
			r = do_rename_raw(s, to, aside, NULL, dl);
		}
	}
	if (r < 0)
		return r;
	r = do_rename_raw(s, from, to, NULL, dl);
	if (r < 0) {
		if (s->base.broken)
			return r;
		r2 = do_rename_raw(s, aside, to, NULL, dl);
		if (r2 < 0)
			hs_warn("sftp: rename: could not move '%s' back to '%s' (%s)",
				aside, to, strerror(-r2));
		return r;
	}
	r2 = do_remove(s, aside, dir, dl);
	if (r2 < 0 && !s->base.broken)
		hs_warn("sftp: rename: could not remove '%s' (%s)", aside,
			strerror(-r2));
	return 0;
}

static int do_rename(struct sftp_tr *s, const char *from, const char *to,
		     unsigned flags, hs_deadline_t dl)
{
	struct hs_attr a;
	int r;

	if (!strcmp(from, to)) /* rename(2): same file, nothing to do */
		return do_lstat(s, from, LIBSSH2_SFTP_LSTAT, &a, dl);
	if (flags & HS_RENAME_RESEND) {
		r = drop_aside(s, from, to, dl);
		if (r < 0)
			return r;
	}
	r = do_rename_raw(s, from, to, to, dl);
	if (r != -EEXIST || (flags & HS_RENAME_NOREPLACE))
		return r;
	return do_replace(s, from, to, dl);
}

/* ---- slots ---- */

struct dirent_buf;

/* What a slot on one path passes to its request besides the path; each
 * req_* reads the fields of its own slot. */
struct path_args {
	uint32_t mode;              /* open, mkdir: permission bits */
	unsigned long fxf;          /* open: LIBSSH2_FXF_* */
	int dir;                    /* remove: rmdir, not unlink */
	const char *target;         /* symlink: what the link points to */
	const struct hs_attr *attr; /* setattr: what to change */
	struct hs_attr *stat;       /* lstat: the answer */
	struct hs_statvfs *vfs;     /* statvfs: the answer */
	struct dirent_buf *db;      /* readdir: the entries */
	struct hs_tr_file *file;    /* open: gets the handle */
	char *buf;                  /* readlink: the target, cut to @size */
	size_t size;
};

/* A request on @full, the resolved remote path; runs with lock held. */
typedef int (*path_req_fn)(struct sftp_tr *s, const char *full,
			   const struct path_args *a, hs_deadline_t dl);

/* What every slot on one path does: resolve @path against the served
 * folder (nothing is sent for a bad one), then run @req under the lock. */
static int on_path(struct hs_transport *t, const char *path,
		   path_req_fn req, const struct path_args *a, hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	char full[PATH_BUF];
	int r;

	r = full_path(s, path, full, sizeof(full));
	if (r < 0)
		return r;
	r = tr_lock(s, dl);
	if (r < 0)
		return r;
	r = req(s, full, a, dl);
	tr_unlock(s);
	return r;
}

static int req_lstat(struct sftp_tr *s, const char *full,
		     const struct path_args *a, hs_deadline_t dl)
{
	return do_lstat(s, full, LIBSSH2_SFTP_LSTAT, a->stat, dl);
}

static int sftp_lstat(struct hs_transport *t, const char *path,
		      struct hs_attr *ret, hs_deadline_t dl)
{
	struct path_args a = { .stat = ret };

	return on_path(t, path, req_lstat, &a, dl);
}

struct dirent_buf {
	struct dent {
		char *name;
		struct hs_attr attr;
		int need_stat; /* the reply had no attributes */
	} *v;
	size_t n, cap;
};

static void dirent_buf_release(struct dirent_buf *db)
{
	size_t i;

	for (i = 0; i < db->n; i++)
		free(db->v[i].name);
	free(db->v);
}

static int dirent_buf_add(struct dirent_buf *db, const char *name,
			  const LIBSSH2_SFTP_ATTRIBUTES *a)
{
	struct dent *d;

	if (db->n == db->cap) {
		size_t cap = db->cap ? db->cap * 2 : 64;
		struct dent *v = realloc(db->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		db->v = v;
		db->cap = cap;
	}
	d = &db->v[db->n];
	d->name = strdup(name);
	if (!d->name)
		return -ENOMEM;
	attr_from_sftp(a, &d->attr);
	d->need_stat = !(a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS);
	db->n++;
	return 0;
}

/* Reads directory @full into @pa->db. */
static int req_readdir(struct sftp_tr *s, const char *full,
		       const struct path_args *pa, hs_deadline_t dl)
{
	struct dirent_buf *db = pa->db;
	LIBSSH2_SFTP_ATTRIBUTES a;
	LIBSSH2_SFTP_HANDLE *h;
	char name[4096], child[PATH_BUF];
	size_t i, flen = strlen(full);
	int rc, r = 0;

	NB_PTR(h, libssh2_sftp_open_ex(s->sftp, full, (unsigned)flen, 0, 0,
				       LIBSSH2_SFTP_OPENDIR));
	if (!h)
		return fail(s, HS_SOP_OPENDIR,
			    libssh2_session_last_errno(s->sess), full, dl);
	for (;;) {
		memset(&a, 0, sizeof(a));
		NB_INT(rc, libssh2_sftp_readdir_ex(h, name, sizeof(name), NULL,
						   0, &a));
		if (rc == 0)
			break;
		if (rc < 0) {
			r = fail(s, HS_SOP_READDIR, rc, NULL, dl);
			break;
		}
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		r = dirent_buf_add(db, name, &a);
		if (r < 0)
			break;
	}
	if (s->base.broken)
		return r;
	rc = do_close_handle(s, h, dl);
	if (r == 0)
		r = rc;
	for (i = 0; r == 0 && i < db->n; i++) {
		if (!db->v[i].need_stat)
			continue;
		if (flen + 1 + strlen(db->v[i].name) + 1 > sizeof(child))
			return -ENAMETOOLONG;
		snprintf(child, sizeof(child), "%s%s%s", full,
			 strcmp(full, "/") ? "/" : "", db->v[i].name);
		r = do_lstat(s, child, LIBSSH2_SFTP_LSTAT, &db->v[i].attr, dl);
		if (r == -ENOENT) { /* gone meanwhile: report what we have */
			db->v[i].attr.mode = S_IFREG;
			r = 0;
		}
	}
	return r;
}

static int sftp_readdir(struct hs_transport *t, const char *path,
			hs_tr_dirent_fn fn, void *arg, hs_deadline_t dl)
{
	struct dirent_buf db = { 0 };
	struct path_args a = { .db = &db };
	size_t i;
	int r;

	r = on_path(t, path, req_readdir, &a, dl);
	/* the callback runs unlocked: it may call this transport */
	for (i = 0; r == 0 && i < db.n; i++)
		r = fn(arg, db.v[i].name, &db.v[i].attr);
	dirent_buf_release(&db);
	return r;
}

static int req_open(struct sftp_tr *s, const char *full,
		    const struct path_args *a, hs_deadline_t dl)
{
	LIBSSH2_SFTP_HANDLE **h = &a->file->h;

	NB_PTR(*h, libssh2_sftp_open_ex(s->sftp, full, (unsigned)strlen(full),
					a->fxf, (long)(a->mode & 07777),
					LIBSSH2_SFTP_OPENFILE));
	if (!*h)
		return fail(s, a->fxf & LIBSSH2_FXF_EXCL ? HS_SOP_OPEN_EXCL :
							   HS_SOP_OPEN,
			    libssh2_session_last_errno(s->sess), full, dl);
	return 0;
}

static int sftp_open(struct hs_transport *t, const char *path, int flags,
		     uint32_t mode, struct hs_tr_file **ret, hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	struct path_args a = { .mode = mode };
	struct hs_tr_file *f;
	unsigned long fxf = 0;
	int r;

	*ret = NULL;
	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		fxf = LIBSSH2_FXF_READ;
		break;
	case O_WRONLY:
		fxf = LIBSSH2_FXF_WRITE;
		break;
	default:
		fxf = LIBSSH2_FXF_READ | LIBSSH2_FXF_WRITE;
		break;
	}
	if (flags & O_APPEND)
		fxf |= LIBSSH2_FXF_APPEND | LIBSSH2_FXF_WRITE;
	if (flags & O_CREAT)
		fxf |= LIBSSH2_FXF_CREAT;
	if (flags & O_TRUNC)
		fxf |= LIBSSH2_FXF_TRUNC;
	if ((flags & O_EXCL) && (flags & O_CREAT))
		fxf |= LIBSSH2_FXF_EXCL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	flist_init(f);
	a.fxf = fxf;
	a.file = f;
	r = on_path(t, path, req_open, &a, dl);
	if (r < 0) {
		free(f);
		return r;
	}
	pthread_mutex_lock(&s->olock);
	flist_add(&s->files, f);
	pthread_mutex_unlock(&s->olock);
	*ret = f;
	return 0;
}

/* After a read or write on a handle returned @n < 0: on EAGAIN waits for
 * the socket (0: call again with the same arguments), else -errno of @op.
 * The caller keeps the lock and its progress, so it cannot use NB_INT. */
static int io_again(struct sftp_tr *s, ssize_t n, enum hs_sftp_op op,
		    hs_deadline_t dl)
{
	if (n == LIBSSH2_ERROR_EAGAIN)
		return wait_socket(s, dl);
	return fail(s, op, (int)n, NULL, dl);
}

static ssize_t sftp_pread(struct hs_transport *t, struct hs_tr_file *f,
			  void *buf, size_t len, uint64_t off,
			  hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	size_t got = 0;
	ssize_t n;
	int r;

	if (!len)
		return 0;
	r = tr_lock(s, dl);
	if (r < 0)
		return r;
	if (!f->rd_valid || f->rd_next != off)
		libssh2_sftp_seek64(f->h, off);
	f->rd_valid = 0;
	while (got < len) {
		/* a short read is allowed: never run past the deadline while
		 * data keeps flowing */
		if (got && hs_deadline_passed(dl))
			break;
		n = libssh2_sftp_read(f->h, (char *)buf + got, len - got);
		if (n < 0) {
			r = io_again(s, n, HS_SOP_READ, dl);
			if (r < 0)
				break;
			continue;
		}
		if (n == 0) /* end of file: seek next time, it may grow */
			goto out_unlock;
		got += (size_t)n;
	}
	if (r == 0) {
		f->rd_valid = 1;
		f->rd_next = off + got;
	}
out_unlock:
	tr_unlock(s);
	/* data that arrived before a failure is still good */
	return got ? (ssize_t)got : r;
}

static ssize_t sftp_pwrite(struct hs_transport *t, struct hs_tr_file *f,
			   const void *buf, size_t len, uint64_t off,
			   hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	size_t done = 0, win;
	ssize_t n;
	int r;

	if (!len)
		return 0;
	r = tr_lock(s, dl);
	if (r < 0)
		return r;
	libssh2_sftp_seek64(f->h, off);
	f->rd_valid = 0;
	while (done < len) {
		/* after EAGAIN libssh2 needs the same buffer: done and win
		 * only change when bytes were acknowledged */
		win = HS_MIN(len - done, (size_t)WRITE_WINDOW);
		n = libssh2_sftp_write(f->h, (const char *)buf + done, win);
		if (n < 0) {
			r = io_again(s, n, HS_SOP_WRITE, dl);
			if (r < 0)
				break;
			continue;
		}
		done += (size_t)n;
	}
	tr_unlock(s);
	return r < 0 ? r : (ssize_t)len;
}

static int sftp_fsync(struct hs_transport *t, struct hs_tr_file *f,
		      hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	int r;

	r = tr_lock(s, dl);
	if (r < 0)
		return r;
	r = do_fsync(s, f->h, dl);
	tr_unlock(s);
	return r;
}

static int sftp_fclose(struct hs_transport *t, struct hs_tr_file *f,
		       hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	int r;

	if (!f)
		return 0;
	r = tr_lock(s, dl);
	if (r == 0) {
		r = do_close_handle(s, f->h, dl);
		tr_unlock(s);
	}
	pthread_mutex_lock(&s->olock);
	flist_del(f);
	if (r == -ETIMEDOUT && !s->base.broken) {
		/* no turn before the deadline: the next call closes it */
		flist_add(&s->orphans, f);
		f = NULL;
	}
	pthread_mutex_unlock(&s->olock);
	/* on a broken link the libssh2 handle is freed with the session */
	free(f);
	return r;
}

static int req_setattr(struct sftp_tr *s, const char *full,
		       const struct path_args *pa, hs_deadline_t dl)
{
	const struct hs_attr *attr = pa->attr;
	LIBSSH2_SFTP_ATTRIBUTES a;
	struct hs_attr cur;
	uint32_t v = attr->valid;
	int rc, r, need;

	memset(&a, 0, sizeof(a));
	/* SFTP v3 sets uid+gid and atime+mtime in pairs: fill a missing half */
	need = (!!(v & HS_ATTR_UID) != !!(v & HS_ATTR_GID)) ||
	       (!!(v & HS_ATTR_ATIME) != !!(v & HS_ATTR_MTIME));
	if (need) {
		r = do_lstat(s, full, LIBSSH2_SFTP_LSTAT, &cur, dl);
		if (r < 0)
			return r;
	} else {
		memset(&cur, 0, sizeof(cur));
	}
	if (v & HS_ATTR_SIZE) {
		a.flags |= LIBSSH2_SFTP_ATTR_SIZE;
		a.filesize = attr->size;
	}
	if (v & HS_ATTR_MODE) {
		a.flags |= LIBSSH2_SFTP_ATTR_PERMISSIONS;
		a.permissions = attr->mode & 07777;
	}
	if (v & (HS_ATTR_UID | HS_ATTR_GID)) {
		a.flags |= LIBSSH2_SFTP_ATTR_UIDGID;
		a.uid = v & HS_ATTR_UID ? attr->uid : cur.uid;
		a.gid = v & HS_ATTR_GID ? attr->gid : cur.gid;
	}
	if (v & (HS_ATTR_ATIME | HS_ATTR_MTIME)) {
		a.flags |= LIBSSH2_SFTP_ATTR_ACMODTIME;
		a.atime = ns_to_s(v & HS_ATTR_ATIME ? attr->atime_ns :
						      cur.atime_ns);
		a.mtime = ns_to_s(v & HS_ATTR_MTIME ? attr->mtime_ns :
						      cur.mtime_ns);
	}
	if (!a.flags)
		return 0;
	NB_INT(rc, libssh2_sftp_stat_ex(s->sftp, full, (unsigned)strlen(full),
					LIBSSH2_SFTP_SETSTAT, &a));
	return rc < 0 ? fail(s, HS_SOP_SETSTAT, rc, NULL, dl) : 0;
}

static int sftp_setattr(struct hs_transport *t, const char *path,
			const struct hs_attr *attr, hs_deadline_t dl)
{
	struct path_args a = { .attr = attr };

	return on_path(t, path, req_setattr, &a, dl);
}

static int req_mkdir(struct sftp_tr *s, const char *full,
		     const struct path_args *a, hs_deadline_t dl)
{
	int rc;

	NB_INT(rc, libssh2_sftp_mkdir_ex(s->sftp, full, (unsigned)strlen(full),
					 (long)(a->mode & 07777)));
	return rc < 0 ? fail(s, HS_SOP_MKDIR, rc, full, dl) : 0;
}

static int sftp_mkdir(struct hs_transport *t, const char *path, uint32_t mode,
		      hs_deadline_t dl)
{
	struct path_args a = { .mode = mode };

	return on_path(t, path, req_mkdir, &a, dl);
}

static int req_remove(struct sftp_tr *s, const char *full,
		      const struct path_args *a, hs_deadline_t dl)
{
	if (a->dir && !strcmp(full, s->rootlen ? s->root : "/"))
		return -EBUSY; /* never remove the served folder itself */
	return do_remove(s, full, a->dir, dl);
}

static int sftp_rmdir(struct hs_transport *t, const char *path,
		      hs_deadline_t dl)
{
	struct path_args a = { .dir = 1 };

	return on_path(t, path, req_remove, &a, dl);
}

static int sftp_unlink(struct hs_transport *t, const char *path,
		       hs_deadline_t dl)
{
	struct path_args a = { .dir = 0 };

	return on_path(t, path, req_remove, &a, dl);
}

static int sftp_rename(struct hs_transport *t, const char *from,
		       const char *to, unsigned flags, hs_deadline_t dl)
{
	struct sftp_tr *s = to_sftp(t);
	char ffull[PATH_BUF], tfull[PATH_BUF];
	int r;

	r = full_path(s, from, ffull, sizeof(ffull));
	if (r == 0)
		r = full_path(s, to, tfull, sizeof(tfull));
	if (r < 0)
		return r;
	r = tr_lock(s, dl);
	if (r < 0)
		return r;
	r = do_rename(s, ffull, tfull, flags, dl);
	tr_unlock(s);
	return r;
}

static int req_symlink(struct sftp_tr *s, const char *full,
		       const struct path_args *pa, hs_deadline_t dl)
{
	const char *target = pa->target;
	char cur[PATH_MAX + 1];
	struct hs_attr a;
	int rc, r;

	/* libssh2 1.10 loses the status of the reply (sftp_errno.c), so the
	 * outcome is read off the host: refuse an existing name up front,
	 * and after a "failure" see whether the link is there as asked. */
	r = do_lstat(s, full, LIBSSH2_SFTP_LSTAT, &a, dl);
	if (r == 0)
		return -EEXIST;
	if (r != -ENOENT)
		return r;
	/* OpenSSH's sftp-server reads the SYMLINK arguments in the opposite
	 * order to the draft: the first string is the link's target, the
	 * second the link to create.  libssh2 sends its "path" first. */
	NB_INT(rc, libssh2_sftp_symlink_ex(s->sftp, target,
					   (unsigned)strlen(target),
					   (char *)full, (unsigned)strlen(full),
					   LIBSSH2_SFTP_SYMLINK));
	if (rc == 0)
		return 0;
	if (rc == LIBSSH2_ERROR_SFTP_PROTOCOL) {
		r = readlink_raw(s, full, LIBSSH2_SFTP_READLINK, cur,
				 sizeof(cur), dl);
		if (r >= 0 && !strcmp(cur, target))
			return 0;
		if (s->base.broken)
			return r;
	}
	return fail(s, HS_SOP_SYMLINK, rc, full, dl);
}

static int sftp_symlink(struct hs_transport *t, const char *target,
			const char *path, hs_deadline_t dl)
{
	struct path_args a = { .target = target };

	if (!target || !*target)
		return -ENOENT;
	return on_path(t, path, req_symlink, &a, dl);
}

/* Copies the target of @full, cut to fit, into @a->buf; the length is
 * the whole target's. */
static int req_readlink(struct sftp_tr *s, const char *full,
			const struct path_args *a, hs_deadline_t dl)
{
	char small[PATH_MAX + 1], *tmp = small;
	unsigned tsize = sizeof(small);
	int r;

	r = do_readlink(s, full, LIBSSH2_SFTP_READLINK, tmp, tsize, dl);
	if (r == -ENAMETOOLONG) { /* longer than PATH_MAX: ask once more */
		tsize = 1u << 16;
		tmp = malloc(tsize);
		r = tmp ? do_readlink(s, full, LIBSSH2_SFTP_READLINK, tmp,
				      tsize, dl) :
			  -ENOMEM;
	}
	if (r >= 0 && a->size) {
		size_t n = HS_MIN((size_t)r, a->size - 1);

		memcpy(a->buf, tmp, n);
		a->buf[n] = '\0';
	}
	if (tmp != small)
		free(tmp);
	return r;
}

static int sftp_readlink(struct hs_transport *t, const char *path, char *buf,
			 size_t size, hs_deadline_t dl)
{
	struct path_args a = { .buf = buf, .size = size };

	return on_path(t, path, req_readlink, &a, dl);
}

static int do_statvfs(struct sftp_tr *s, const char *full,
		      struct hs_statvfs *ret, hs_deadline_t dl)
{
	LIBSSH2_SFTP_STATVFS st;
	int rc;

	memset(&st, 0, sizeof(st));
	NB_INT(rc, libssh2_sftp_statvfs(s->sftp, full, strlen(full), &st));
	if (rc < 0)
		return fail(s, HS_SOP_STATVFS, rc, NULL, dl);
	ret->bsize = st.f_bsize;
	ret->frsize = st.f_frsize ? st.f_frsize : st.f_bsize;
	ret->blocks = st.f_blocks;
	ret->bfree = st.f_bfree;
	ret->bavail = st.f_bavail;
	ret->files = st.f_files;
	ret->ffree = st.f_ffree;
	ret->favail = st.f_favail;
	ret->namemax = st.f_namemax;
	return 0;
}

static int req_statvfs(struct sftp_tr *s, const char *full,
		       const struct path_args *a, hs_deadline_t dl)
{
	return do_statvfs(s, full, a->vfs, dl);
}

static int sftp_statvfs(struct hs_transport *t, const char *path,
			struct hs_statvfs *ret, hs_deadline_t dl)
{
	struct path_args a = { .vfs = ret };

	return on_path(t, path, req_statvfs, &a, dl);
}

static int sftp_ping(struct hs_transport *t, hs_deadline_t dl)
{
	struct hs_attr a;

	return sftp_lstat(t, "/", &a, dl);
}

/* ---- teardown ---- */

/* Closes open and orphaned handles, the sftp channel and the session
 * politely, all within @dl; returns -errno (and leaves the rest to the
 * hard path) at the first thing that does not finish in time. */
static int polite_close(struct sftp_tr *s, hs_deadline_t dl)
{
	struct hs_tr_file *heads[] = { &s->files, &s->orphans };
	struct hs_tr_file *f;
	size_t i;
	int rc;

	for (i = 0; i < HS_ARRAY_SIZE(heads); i++) {
		while ((f = heads[i]->next) != heads[i]) {
			rc = do_close_handle(s, f->h, dl);
			if (s->base.broken)
				return rc;
			flist_del(f);
			free(f);
		}
	}
	if (s->sftp) {
		NB_INT(rc, libssh2_sftp_shutdown(s->sftp));
		s->sftp = NULL;
	}
	NB_INT(rc, libssh2_session_disconnect(s->sess, "closing"));
	return 0;
}

static void sftp_close(struct hs_transport *t)
{
	struct sftp_tr *s = to_sftp(t);
	struct hs_tr_file *heads[] = { &s->files, &s->orphans };
	hs_deadline_t dl = hs_deadline_in_ms(CLOSE_GRACE_MS);
	struct hs_tr_file *f;
	size_t i;

	/* no other thread uses @t any more (transport.h) */
	if (s->sess && s->fd >= 0 && !s->base.broken)
		polite_close(s, dl);
	/* whatever is left must not talk: a shut socket fails every libssh2
	 * call at once instead of letting it wait */
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR);
	if (s->sess) {
		if (s->sftp)
			for (dl = hs_deadline_in_ms(50);
			     libssh2_sftp_shutdown(s->sftp) ==
				     LIBSSH2_ERROR_EAGAIN &&
			     !hs_deadline_passed(dl);)
				;
		for (dl = hs_deadline_in_ms(50);
		     libssh2_session_free(s->sess) == LIBSSH2_ERROR_EAGAIN &&
		     !hs_deadline_passed(dl);)
			;
	}
	mem_release_all(s);
	if (s->fd >= 0)
		close(s->fd);
	for (i = 0; i < HS_ARRAY_SIZE(heads); i++) {
		while ((f = heads[i]->next) != heads[i]) {
			flist_del(f);
			free(f);
		}
	}
	pthread_mutex_destroy(&s->olock);
	pthread_mutex_destroy(&s->lock);
	free(s->root);
	free(s);
}

static const struct hs_transport_ops sftp_ops = {
	.name = "sftp",
	.close = sftp_close,
	.lstat = sftp_lstat,
	.readdir = sftp_readdir,
	.open = sftp_open,
	.pread = sftp_pread,
	.pwrite = sftp_pwrite,
	.fsync = sftp_fsync,
	.fclose = sftp_fclose,
	.setattr = sftp_setattr,
	.mkdir = sftp_mkdir,
	.rmdir = sftp_rmdir,
	.unlink = sftp_unlink,
	.rename = sftp_rename,
	.symlink = sftp_symlink,
	.readlink = sftp_readlink,
	.link = NULL, /* libssh2 1.10 has no hardlink@openssh.com */
	.statvfs = sftp_statvfs,
	.ping = sftp_ping,
};

/* ---- connecting ---- */

/* Everything hs_sftp_open() needs besides @s. */
struct conn {
	const struct hs_tr_config *cfg;
	const char *user;
	const char *home;   /* $HOME, else the passwd entry's */
	struct passwd pw;   /* the local user; strings live in pwbuf */
	char pwbuf[4096];
	char hostspec[300]; /* known_hosts name: "host" or "[host]:port" */
	char *err;
	size_t errlen;
};

static int __attribute__((format(printf, 3, 4)))
conn_err(struct conn *c, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return r;
}

/* Fills c->pw for the effective user (getpwuid_r: any thread). */
static int local_user(struct conn *c)
{
	struct passwd *res = NULL;
	const char *h = getenv("HOME");

	if (getpwuid_r(geteuid(), &c->pw, c->pwbuf, sizeof(c->pwbuf), &res) ||
	    !res)
		memset(&c->pw, 0, sizeof(c->pw));
	c->home = h && *h ? h : c->pw.pw_dir ? c->pw.pw_dir : "/";
	return res ? 0 : -ENOENT;
}

static int handshake(struct sftp_tr *s, struct conn *c, hs_deadline_t dl)
{
	int rc;

	while ((rc = libssh2_session_handshake(s->sess, s->fd)) ==
	       LIBSSH2_ERROR_EAGAIN) {
		if (wait_socket(s, dl) < 0)
			return conn_err(c, -ETIMEDOUT,
					"ssh handshake with '%s' timed out",
					s->where);
	}
	if (rc < 0)
		return conn_err(c, rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
					   rc == LIBSSH2_ERROR_SOCKET_RECV ?
				   -ECONNRESET : -EPROTO,
				"ssh handshake with '%s' failed: %s", s->where,
				sess_msg(s));
	return 0;
}

/* Feeds @path to @kh line by line, skipping lines libssh2 cannot parse
 * (markers, certificates, unknown key types) instead of giving up on the
 * whole file as libssh2_knownhost_readfile() does.  A missing file is an
 * empty one. */
static void load_known_hosts(LIBSSH2_KNOWNHOSTS *kh, const char *path)
{
	char line[8192];
	FILE *fp = fopen(path, "re");

	if (!fp)
		return;
	while (fgets(line, sizeof(line), fp)) {
		const char *p = line + strspn(line, " \t");

		if (*p == '#' || *p == '\n' || !*p)
			continue;
		if (libssh2_knownhost_readline(kh, line, strlen(line),
					       LIBSSH2_KNOWNHOST_FILE_OPENSSH))
			hs_debug("sftp: %s: skipping a line libssh2 cannot read",
				 path);
	}
	fclose(fp);
}

/* Appends @line to known_hosts file @path (created 0600, its folder 0700). */
static int append_known_host(const char *path, const char *line)
{
	char dir[PATH_MAX], last = '\n';
	const char *slash;
	struct stat st;
	int fd, r = 0;

	fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT && (slash = strrchr(path, '/')) &&
	    slash != path && (size_t)(slash - path) < sizeof(dir)) {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
		if (mkdir(dir, 0700) == 0 || errno == EEXIST)
			fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC,
				  0600);
	}
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) == 0 && st.st_size > 0 &&
	    pread(fd, &last, 1, st.st_size - 1) != 1)
		last = '\n';
	if ((last != '\n' && write(fd, "\n", 1) != 1) ||
	    write(fd, line, strlen(line)) != (ssize_t)strlen(line))
		r = -errno ? -errno : -EIO;
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

static int knownhost_keybit(int hostkey_type)
{
	switch (hostkey_type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

static int check_hostkey(struct sftp_tr *s, struct conn *c)
{
	const struct hs_tr_config *cfg = c->cfg;
	struct libssh2_knownhost *added;
	LIBSSH2_KNOWNHOSTS *kh;
	const char *key, *path = cfg->known_hosts;
	char defpath[PATH_MAX], line[4096];
	size_t klen, llen;
	int ktype, typemask, r = 0;

	if (cfg->hostkey_policy == HS_HOSTKEY_NO)
		return 0;
	key = libssh2_session_hostkey(s->sess, &klen, &ktype);
	if (!key)
		return conn_err(c, -EPROTO, "cannot read the host key of '%s'",
				s->where);
	if (!path || !*path) {
		snprintf(defpath, sizeof(defpath), "%s/.ssh/known_hosts",
			 c->home);
		path = defpath;
	}
	kh = libssh2_knownhost_init(s->sess);
	if (!kh)
		return conn_err(c, -ENOMEM, "out of memory");
	load_known_hosts(kh, path);
	typemask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
		   knownhost_keybit(ktype);
	switch (libssh2_knownhost_checkp(kh, cfg->host, c->cfg->port, key, klen,
					 typemask, NULL)) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		break;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		r = conn_err(c, -EPERM,
			     "host key for '%s' does not match known_hosts",
			     c->hostspec);
		break;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		if (cfg->hostkey_policy != HS_HOSTKEY_ACCEPT_NEW) {
			r = conn_err(c, -EPERM,
				     "host '%s' is not in known_hosts (StrictHostKeyChecking=yes)",
				     c->hostspec);
			break;
		}
		if (libssh2_knownhost_addc(kh, c->hostspec, NULL, key, klen,
					   NULL, 0, typemask, &added) ||
		    libssh2_knownhost_writeline(kh, added, line, sizeof(line),
						&llen,
						LIBSSH2_KNOWNHOST_FILE_OPENSSH)) {
			hs_warn("sftp: cannot format the host key of '%s'",
				c->hostspec);
			break;
		}
		r = append_known_host(path, line);
		if (r < 0)
			hs_warn("sftp: cannot add '%s' to %s: %s", c->hostspec,
				path, strerror(-r));
		else
			hs_notice("sftp: added host key of '%s' to %s",
				  c->hostspec, path);
		r = 0;
		break;
	default:
		r = conn_err(c, -EPROTO, "cannot check the host key of '%s'",
			     c->hostspec);
		break;
	}
	libssh2_knownhost_free(kh);
	return r;
}

static void tried_add(char *buf, size_t size, const char *what)
{
	size_t n = strlen(buf), w = strlen(what);

	if (n && n + 2 < size) {
		memcpy(buf + n, ", ", 2);
		n += 2;
	}
	if (n + w >= size) /* keep the message one short line */
		w = size - n - 1;
	memcpy(buf + n, what, w);
	buf[n + w] = '\0';
}

/* Tries each identity of ssh-agent.  0, -EACCES, or a link -errno. */
static int auth_agent(struct sftp_tr *s, struct conn *c, hs_deadline_t dl)
{
	struct libssh2_agent_publickey *id = NULL;
	LIBSSH2_AGENT *agent;
	int rc, r = -EACCES;

	agent = libssh2_agent_init(s->sess);
	if (!agent)
		return -EACCES;
	if (libssh2_agent_connect(agent) || libssh2_agent_list_identities(agent))
		goto out_free;
	while (libssh2_agent_get_identity(agent, &id, id) == 0) {
		while ((rc = libssh2_agent_userauth(agent, c->user, id)) ==
		       LIBSSH2_ERROR_EAGAIN) {
			r = wait_socket(s, dl);
			if (r < 0)
				goto out_disconnect;
		}
		if (rc == 0) {
			r = 0;
			break;
		}
		if (hs_sftp_breaks_link(rc) &&
		    rc != LIBSSH2_ERROR_AGENT_PROTOCOL) {
			r = hs_sftp_errno(HS_SOP_CONNECT, rc, 0, NULL);
			break;
		}
		r = -EACCES;
	}
out_disconnect:
	libssh2_agent_disconnect(agent);
out_free:
	libssh2_agent_free(agent);
	return r;
}

/* One identity file: with libssh2 deriving the public key, then with
 * "@path.pub".  0, -EACCES, or a link -errno. */
static int auth_file(struct sftp_tr *s, struct conn *c, const char *path,
		     hs_deadline_t dl)
{
	char pub[PATH_MAX];
	const char *pubs[2] = { NULL, pub };
	unsigned ulen = (unsigned)strlen(c->user);
	size_t i;
	int rc = LIBSSH2_ERROR_AUTHENTICATION_FAILED;

	snprintf(pub, sizeof(pub), "%s.pub", path);
	for (i = 0; i < HS_ARRAY_SIZE(pubs); i++) {
		if (pubs[i] && access(pubs[i], R_OK))
			break;
		NB_INT(rc, libssh2_userauth_publickey_fromfile_ex(
				   s->sess, c->user, ulen, pubs[i], path, NULL));
		if (rc == 0)
			return 0;
		if (hs_sftp_breaks_link(rc))
			return hs_sftp_errno(HS_SOP_CONNECT, rc, 0, NULL);
		/* a server refusal will not change with the .pub file */
		if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED)
			break;
	}
	return -EACCES;
}

static int authenticate(struct sftp_tr *s, struct conn *c, hs_deadline_t dl)
{
	static const char *const defaults[] = { "id_ed25519", "id_ecdsa",
						"id_rsa" };
	const struct hs_tr_config *cfg = c->cfg;
	char tried[512] = "", path[PATH_MAX];
	const char *methods;
	size_t i;
	int r;

	NB_PTR(methods, libssh2_userauth_list(s->sess, c->user,
					      (unsigned)strlen(c->user)));
	if (!methods) {
		if (libssh2_userauth_authenticated(s->sess))
			return 0; /* "none" was accepted */
		r = libssh2_session_last_errno(s->sess);
		return conn_err(c, hs_sftp_errno(HS_SOP_CONNECT, r, 0, NULL),
				"ssh authentication with '%s' failed: %s",
				s->where, sess_msg(s));
	}
	if (!strstr(methods, "publickey"))
		return conn_err(c, -EACCES,
				"authentication failed for '%s@%s' (server offers only: %s)",
				c->user, cfg->host, methods);

	if (cfg->use_agent && getenv("SSH_AUTH_SOCK")) {
		r = auth_agent(s, c, dl);
		if (r == 0)
			return 0;
		if (r != -EACCES)
			goto out_link;
		tried_add(tried, sizeof(tried), "agent");
	}
	if (cfg->identity_files) {
		for (i = 0; cfg->identity_files[i]; i++) {
			r = auth_file(s, c, cfg->identity_files[i], dl);
			if (r == 0)
				return 0;
			if (r != -EACCES)
				goto out_link;
			tried_add(tried, sizeof(tried), cfg->identity_files[i]);
		}
	} else {
		for (i = 0; i < HS_ARRAY_SIZE(defaults); i++) {
			snprintf(path, sizeof(path), "%s/.ssh/%s", c->home,
				 defaults[i]);
			if (access(path, R_OK))
				continue;
			r = auth_file(s, c, path, dl);
			if (r == 0)
				return 0;
			if (r != -EACCES)
				goto out_link;
			tried_add(tried, sizeof(tried), path);
		}
	}
	return conn_err(c, -EACCES, "authentication failed for '%s@%s' (%s%s)",
			c->user, cfg->host, *tried ? "tried: " : "",
			*tried ? tried : "no agent and no identity file");

out_link:
	if (r == -ETIMEDOUT)
		return conn_err(c, r, "ssh authentication with '%s' timed out",
				s->where);
	return conn_err(c, r, "ssh authentication with '%s' failed: %s",
			s->where, sess_msg(s));
}

static int start_sftp(struct sftp_tr *s, hs_deadline_t dl)
{
	NB_PTR(s->sftp, libssh2_sftp_init(s->sess));
	return s->sftp ? 0 : libssh2_session_last_errno(s->sess);
}

/* Resolves the served folder, learns the login user's remote ids and
 * probes the statvfs extension. */
static int resolve_root(struct sftp_tr *s, struct conn *c, hs_deadline_t dl)
{
	const char *want = c->cfg->root && *c->cfg->root ? c->cfg->root : ".";
	const char *shown = want;
	struct hs_statvfs sv;
	char buf[PATH_BUF];
	struct hs_attr a;
	size_t len;
	int r;

	/* the login folder belongs to the login user: its ids are ours */
	r = do_lstat(s, ".", LIBSSH2_SFTP_STAT, &a, dl);
	if (s->base.broken)
		goto out_link;
	if (r == 0 && (a.valid & HS_ATTR_UID)) {
		s->base.remote_uid = a.uid;
		s->base.remote_gid = a.gid;
	}

	r = do_readlink(s, want, LIBSSH2_SFTP_REALPATH, buf, sizeof(buf), dl);
	if (s->base.broken)
		goto out_link;
	if (r >= 0 && !strcmp(want, "."))
		shown = buf;
	if (r >= 0)
		r = do_lstat(s, buf, LIBSSH2_SFTP_STAT, &a, dl);
	if (s->base.broken)
		goto out_link;
	if (r == -ENOENT)
		return conn_err(c, r, "remote folder '%s' does not exist",
				shown);
	if (r < 0)
		return conn_err(c, r, "cannot access remote folder '%s': %s",
				shown, strerror(-r));
	if (!S_ISDIR(a.mode))
		return conn_err(c, -ENOTDIR, "remote folder '%s' is not a folder",
				shown);
	len = strlen(buf);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	s->root = strdup(buf);
	if (!s->root)
		return conn_err(c, -ENOMEM, "out of memory");
	s->rootlen = strcmp(buf, "/") ? len : 0;

	s->base.caps = HS_TR_CAP_FSYNC; /* see "Not handled" above */
	r = do_statvfs(s, buf, &sv, dl);
	if (s->base.broken)
		goto out_link;
	if (r == 0)
		s->base.caps |= HS_TR_CAP_STATVFS;
	return 0;

out_link:
	return conn_err(c, r, "%s", s->base.last_error);
}

/* Dials, shakes hands, checks the host key and logs in: the part of
 * connecting that the SFTP wire and the agent's ssh exec channel share.
 * On success *ret owns a logged-in session; on failure it is NULL. */
static int ssh_connect(const struct hs_tr_config *cfg, hs_deadline_t dl,
		       struct conn *c, struct sftp_tr **ret)
{
	hs_deadline_t cdl = dl;
	struct sftp_tr *s;
	int r, port;

	*ret = NULL;
	if (!cfg->host || !*cfg->host)
		return conn_err(c, -EINVAL, "no host given");
	port = cfg->port > 0 ? cfg->port : 22;
	if (cfg->connect_timeout_ms > 0)
		cdl = HS_MIN(dl, hs_deadline_in_ms(cfg->connect_timeout_ms));
	r = local_user(c);
	c->user = cfg->user && *cfg->user ? cfg->user : c->pw.pw_name;
	if (!c->user)
		return conn_err(c, r < 0 ? r : -EINVAL,
				"cannot find the local user name");
	if (port == 22)
		snprintf(c->hostspec, sizeof(c->hostspec), "%s", cfg->host);
	else
		snprintf(c->hostspec, sizeof(c->hostspec), "[%s]:%d", cfg->host,
			 port);

	s = calloc(1, sizeof(*s));
	if (!s)
		return conn_err(c, -ENOMEM, "out of memory");
	s->base.ops = &sftp_ops;
	s->base.remote_uid = (uint32_t)-1;
	s->base.remote_gid = (uint32_t)-1;
	s->fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->olock, NULL);
	flist_init(&s->files);
	flist_init(&s->orphans);
	s->mem.next = s->mem.prev = &s->mem;
	hs_dial_hostport(s->where, sizeof(s->where), cfg->host, port);

	r = hs_dial_tcp(cfg->host, port, cdl, c->err, c->errlen);
	if (r < 0)
		goto out_close;
	s->fd = r;
	s->sess = libssh2_session_init_ex(mem_alloc, mem_free, mem_realloc, s);
	if (!s->sess) {
		r = conn_err(c, -ENOMEM, "out of memory");
		goto out_close;
	}
	libssh2_session_set_blocking(s->sess, 0);

	r = handshake(s, c, cdl);
	if (r < 0)
		goto out_broken;
	r = check_hostkey(s, c);
	if (r < 0)
		goto out_close;
	r = authenticate(s, c, cdl);
	if (r < 0)
		goto out_broken;
	if (cfg->keepalive_s > 0) {
		libssh2_keepalive_config(s->sess, 1, (unsigned)cfg->keepalive_s);
		s->keepalive = 1;
	}
	*ret = s;
	return 0;

out_broken:
	s->base.broken = 1; /* mid-protocol: no polite goodbye */
out_close:
	snprintf(s->base.last_error, sizeof(s->base.last_error), "%s", c->err);
	sftp_close(&s->base);
	return r;
}

int hs_sftp_open(const struct hs_tr_config *cfg, hs_deadline_t dl,
		 struct hs_transport **ret, char *err, size_t errlen)
{
	struct conn c = { .cfg = cfg, .err = err, .errlen = errlen };
	struct sftp_tr *s;
	int r;

	*ret = NULL;
	r = ssh_connect(cfg, dl, &c, &s);
	if (r < 0)
		return r;
	r = start_sftp(s, dl);
	if (r < 0) {
		r = conn_err(&c, s->base.broken ? -ETIMEDOUT : -EPROTO,
			     "cannot start sftp on '%s': %s", s->where,
			     s->base.broken ? "timed out" : sess_msg(s));
		goto out_broken;
	}
	r = resolve_root(s, &c, dl);
	if (r < 0)
		goto out_close;
	*ret = &s->base;
	return 0;

out_broken:
	s->base.broken = 1; /* mid-protocol: no polite goodbye */
out_close:
	snprintf(s->base.last_error, sizeof(s->base.last_error), "%s", err);
	sftp_close(&s->base);
	return r;
}

/* ---- a command's stdin/stdout as a local stream ---- */

struct hs_ssh_stream {
	struct sftp_tr *s;
	LIBSSH2_CHANNEL *ch;
	int fd; /* our end of the socketpair */
	pthread_t th;
};

/* Moves bytes between the exec channel and the socketpair until either
 * side ends, then frees the session.  The remote command's stderr is
 * logged line by line. */
static void *pump_main(void *arg)
{
	struct hs_ssh_stream *p = arg;
	struct sftp_tr *s = p->s;
	char up[65536], down[65536], errbuf[1024];
	size_t up_len = 0, up_off = 0, err_len = 0;
	int local_eof = 0, done = 0;

	while (!done) {
		struct pollfd pfd[2] = {
			{ .fd = s->fd, .events = POLLIN },
			{ .fd = p->fd, .events = 0 },
		};
		int dir = libssh2_session_block_directions(s->sess);
		ssize_t n;
		int next;

		if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
			pfd[0].events |= POLLOUT;
		if (!local_eof && up_len == up_off)
			pfd[1].events = POLLIN;
		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			break;
		if (s->keepalive)
			libssh2_keepalive_send(s->sess, &next);
		/* local -> remote */
		if (!local_eof && up_len == up_off && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			n = read(p->fd, up, sizeof(up));
			if (n > 0) {
				up_len = (size_t)n;
				up_off = 0;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				local_eof = 1; /* the transport closed */
				break;
			}
		}
		while (up_off < up_len) {
			n = libssh2_channel_write(p->ch, up + up_off,
						  up_len - up_off);
			if (n == LIBSSH2_ERROR_EAGAIN)
				break;
			if (n < 0) {
				done = 1;
				break;
			}
			up_off += (size_t)n;
		}
		if (up_off == up_len)
			up_len = up_off = 0;
		/* remote -> local (blocking writes: the reader always reads) */
		for (;;) {
			n = libssh2_channel_read(p->ch, down, sizeof(down));
			if (n == LIBSSH2_ERROR_EAGAIN)
				break;
			if (n <= 0) {
				done = 1;
				break;
			}
			if (send(p->fd, down, (size_t)n, MSG_NOSIGNAL) != n) {
				done = 1;
				break;
			}
		}
		for (;;) {
			char *nl;

			n = libssh2_channel_read_stderr(
				p->ch, errbuf + err_len, sizeof(errbuf) - 1 - err_len);
			if (n <= 0)
				break;
			err_len += (size_t)n;
			errbuf[err_len] = '\0';
			while ((nl = strchr(errbuf, '\n'))) {
				*nl = '\0';
				hs_warn("%s: %s", s->where, errbuf);
				err_len -= (size_t)(nl + 1 - errbuf);
				memmove(errbuf, nl + 1, err_len + 1);
			}
			if (err_len == sizeof(errbuf) - 1)
				err_len = 0;
		}
		if (libssh2_channel_eof(p->ch))
			done = 1;
	}
	if (err_len) {
		errbuf[err_len] = '\0';
		hs_warn("%s: %s", s->where, errbuf);
	}
	/* wakes the transport's reader with end of stream */
	shutdown(p->fd, SHUT_RDWR);
	close(p->fd);
	{
		hs_deadline_t dl = hs_deadline_in_ms(CLOSE_GRACE_MS);

		while (libssh2_channel_free(p->ch) == LIBSSH2_ERROR_EAGAIN &&
		       !hs_deadline_passed(dl))
			;
	}
	s->base.broken = 1; /* the session goes away without a goodbye */
	sftp_close(&s->base);
	return NULL;
}

void hs_ssh_stream_free(struct hs_ssh_stream *p)
{
	if (!p)
		return;
	pthread_join(p->th, NULL);
	free(p);
}

static int open_exec(struct sftp_tr *s, const char *cmd, hs_deadline_t dl,
		     LIBSSH2_CHANNEL **ret)
{
	LIBSSH2_CHANNEL *ch;
	int rc;

	NB_PTR(ch, libssh2_channel_open_session(s->sess));
	if (!ch)
		return -EPROTO;
	for (;;) {
		rc = libssh2_channel_process_startup(ch, "exec", 4, cmd,
						     (unsigned)strlen(cmd));
		if (rc != LIBSSH2_ERROR_EAGAIN)
			break;
		rc = wait_socket(s, dl);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		libssh2_channel_free(ch);
		return rc == -ETIMEDOUT ? rc : -EPROTO;
	}
	*ret = ch;
	return 0;
}

int hs_ssh_exec_stream(const struct hs_tr_config *cfg, const char *cmd,
		       hs_deadline_t dl, char *err, size_t errlen,
		       struct hs_ssh_stream **ret)
{
	struct conn c = { .cfg = cfg, .err = err, .errlen = errlen };
	struct hs_ssh_stream *p = NULL;
	struct sftp_tr *s;
	LIBSSH2_CHANNEL *ch = NULL;
	int sp[2], r;

	*ret = NULL;
	r = ssh_connect(cfg, dl, &c, &s);
	if (r < 0)
		return r;
	r = open_exec(s, cmd, dl, &ch);
	if (r < 0) {
		conn_err(&c, r, "cannot start '%s' on '%s': %s", cmd, s->where,
			 r == -ETIMEDOUT ? "timed out" : sess_msg(s));
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		r = conn_err(&c, -errno, "cannot create a socket pair: %s",
			     strerror(errno));
		goto fail;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(sp[0]);
		close(sp[1]);
		r = conn_err(&c, -ENOMEM, "out of memory");
		goto fail;
	}
	p->s = s;
	p->ch = ch;
	p->fd = sp[1];
	if (pthread_create(&p->th, NULL, pump_main, p)) {
		close(sp[0]);
		close(sp[1]);
		free(p);
		r = conn_err(&c, -EAGAIN, "cannot start a thread");
		goto fail;
	}
	fcntl(sp[0], F_SETFL, O_NONBLOCK);
	*ret = p;
	return sp[0];

fail:
	if (ch)
		libssh2_channel_free(ch);
	s->base.broken = 1;
	sftp_close(&s->base);
	return r;
}
