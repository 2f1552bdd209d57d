/* SPDX-License-Identifier: MIT
 * tests/lib/faulty.c - fault-injecting wrapper transport (see faulty.h).
 *
 * A struct hs_transport stacked on another one, in the manner of a test VFS:
 * each slot runs begin() (count the call, then apply the fault settings),
 * calls the inner transport through its hs_tr_*() wrapper unless a fault
 * answered, then finish() (copy the inner error message, log the line).
 *
 * Fault order inside begin(), first match wins:
 *   1. wrapper broken              -> -ENOTCONN
 *   2. stall on                    -> wait; at the deadline: broken, -ETIMEDOUT
 *   3. fail_after countdown at 0,
 *      or persistent failure active -> the injected error (link-class: broken)
 *   4. otherwise                   -> pass through (lose_answer_after at 0:
 *                                     pass() then answers the injected error).
 * An inner call that leaves the inner transport broken breaks the wrapper.
 *
 * Thread model: any thread.  ft->lock guards every field marked below and is
 * held only inside begin()/finish() and the controls, never across a call to
 * the inner transport; stalled calls wait on ft->cond (CLOCK_MONOTONIC).
 * base.broken is written under the lock and read without it by the hs_tr_*()
 * wrappers (a volatile flag, as in every transport).
 *
 * Not handled: faults inside a call (a partial pwrite, a readdir cut short)
 * - an injected error answers before the inner transport is reached, or
 * (a lost answer) once the whole call is done.
 */
#include "faulty.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum slot {
	S_LSTAT,
	S_READDIR,
	S_OPEN,
	S_PREAD,
	S_PWRITE,
	S_FSYNC,
	S_FCLOSE,
	S_SETATTR,
	S_MKDIR,
	S_RMDIR,
	S_UNLINK,
	S_RENAME,
	S_SYMLINK,
	S_READLINK,
	S_LINK,
	S_STATVFS,
	S_PING,
	S_BATCH,
	S_COUNT
};

static const char *const slot_names[S_COUNT] = {
	[S_LSTAT] = "lstat",	 [S_READDIR] = "readdir",
	[S_OPEN] = "open",	 [S_PREAD] = "pread",
	[S_PWRITE] = "pwrite",	 [S_FSYNC] = "fsync",
	[S_FCLOSE] = "fclose",	 [S_SETATTR] = "setattr",
	[S_MKDIR] = "mkdir",	 [S_RMDIR] = "rmdir",
	[S_UNLINK] = "unlink",	 [S_RENAME] = "rename",
	[S_SYMLINK] = "symlink", [S_READLINK] = "readlink",
	[S_LINK] = "link",	 [S_STATVFS] = "statvfs",
	[S_PING] = "ping",	 [S_BATCH] = "batch",
};

struct faulty {
	struct hs_transport base;
	struct hs_transport *inner; /* owned */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when stall or broken changes */
	long calls;          /* protected by lock */
	long per_slot[S_COUNT]; /* protected by lock */
	long countdown;      /* protected by lock; calls to let through before
			      * the failing one, -1: none pending */
	int fail_err;        /* protected by lock; -errno to inject */
	int fail_persistent; /* protected by lock; keep failing after it */
	int failing;         /* protected by lock; persistent failure active */
	int lose;            /* protected by lock; the countdown loses an answer */
	int losing;          /* protected by lock; the next answer is lost */
	int stall;           /* protected by lock */
	FILE *log;           /* protected by lock; borrowed */
};

static const struct hs_transport_ops faulty_ops;

static struct faulty *to_faulty(struct hs_transport *t)
{
	if (t->ops != &faulty_ops) {
		hs_err("faulty: '%s' is not a faulty wrapper", t->ops->name);
		abort();
	}
	return container_of(t, struct faulty, base);
}

static void set_broken(struct faulty *ft)
{
	ft->base.broken = 1;
	pthread_cond_broadcast(&ft->cond);
}

/* Counts the call and applies the fault settings.  Returns 0 to pass the
 * call through, or the error that answers it. */
static int begin(struct faulty *ft, enum slot s, hs_deadline_t dl)
{
	struct timespec ts = hs_deadline_ts(dl);
	int r = 0;

	pthread_mutex_lock(&ft->lock);
	ft->calls++;
	ft->per_slot[s]++;
	while (!ft->base.broken && ft->stall) {
		if (dl == HS_DEADLINE_NEVER) {
			pthread_cond_wait(&ft->cond, &ft->lock);
			continue;
		}
		if (hs_now_ns() >= dl) {
			snprintf(ft->base.last_error,
				 sizeof(ft->base.last_error),
				 "%s: timed out (link stalled by the test)",
				 slot_names[s]);
			set_broken(ft);
			r = -ETIMEDOUT;
			goto out;
		}
		pthread_cond_timedwait(&ft->cond, &ft->lock, &ts);
	}
	if (ft->base.broken) {
		r = -ENOTCONN;
		goto out;
	}
	if (ft->failing) {
		r = ft->fail_err;
	} else if (ft->countdown == 0 && ft->lose) {
		ft->losing = 1; /* passed through; pass() answers */
		ft->countdown = -1;
	} else if (ft->countdown == 0) {
		r = ft->fail_err;
		ft->countdown = -1;
		ft->failing = ft->fail_persistent;
	} else if (ft->countdown > 0) {
		ft->countdown--;
	}
	if (r) {
		snprintf(ft->base.last_error, sizeof(ft->base.last_error),
			 "%s: injected failure: %s", slot_names[s],
			 strerror(-r));
		if (hs_tr_err_is_link(r))
			set_broken(ft);
	}
out:
	pthread_mutex_unlock(&ft->lock);
	return r;
}

/* After a pass-through call: take over the inner error message and broken
 * flag.  Returns @r, or the injected error when the answer is lost. */
static ssize_t pass(struct faulty *ft, ssize_t r)
{
	pthread_mutex_lock(&ft->lock);
	if (ft->losing) {
		ft->losing = 0;
		r = ft->fail_err;
		snprintf(ft->base.last_error, sizeof(ft->base.last_error),
			 "answer lost (injected): %s", strerror((int)-r));
		if (hs_tr_err_is_link((int)r))
			set_broken(ft);
		pthread_mutex_unlock(&ft->lock);
		return r;
	}
	if (r >= 0) {
		pthread_mutex_unlock(&ft->lock);
		return r;
	}
	memcpy(ft->base.last_error, ft->inner->last_error,
	       sizeof(ft->base.last_error));
	ft->base.last_error[sizeof(ft->base.last_error) - 1] = '\0';
	if (ft->inner->broken)
		set_broken(ft);
	pthread_mutex_unlock(&ft->lock);
	return r;
}

/* Logs "<slot> <args> -> <result>" if a log is set. */
static void note(struct faulty *ft, ssize_t r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void note(struct faulty *ft, ssize_t r, const char *fmt, ...)
{
	const char *ename = r < 0 ? strerrorname_np((int)-r) : NULL;
	char line[1024];
	va_list ap;

	pthread_mutex_lock(&ft->lock);
	if (ft->log) {
		va_start(ap, fmt);
		vsnprintf(line, sizeof(line), fmt, ap);
		va_end(ap);
		if (ename)
			fprintf(ft->log, "%s -> -%s\n", line, ename);
		else
			fprintf(ft->log, "%s -> %zd\n", line, r);
		fflush(ft->log);
	}
	pthread_mutex_unlock(&ft->lock);
}

static void f_close(struct hs_transport *t)
{
	struct faulty *ft = to_faulty(t);

	hs_tr_close(ft->inner);
	pthread_cond_destroy(&ft->cond);
	pthread_mutex_destroy(&ft->lock);
	free(ft);
}

static int f_lstat(struct hs_transport *t, const char *path,
		   struct hs_attr *ret, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_LSTAT, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_lstat(ft->inner, path, ret, dl));
	note(ft, r, "lstat %s", path);
	return r;
}

static int f_readdir(struct hs_transport *t, const char *path,
		     hs_tr_dirent_fn fn, void *arg, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_READDIR, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_readdir(ft->inner, path, fn, arg, dl));
	note(ft, r, "readdir %s", path);
	return r;
}

static int f_open(struct hs_transport *t, const char *path, int flags,
		  uint32_t mode, struct hs_tr_file **ret, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_OPEN, dl);

	/* The inner file is handed out as is: the wrapper keeps no per-file
	 * state, so every file slot passes @f straight down. */
	if (!r) {
		int r0 = hs_tr_fopen(ft->inner, path, flags, mode, ret, dl);

		r = (int)pass(ft, r0);
		if (r0 == 0 && r < 0) {
			/* answer lost: the handle goes, as with its connection */
			hs_tr_fclose(ft->inner, *ret, dl);
			*ret = NULL;
		}
	}
	note(ft, r, "open %s 0%o 0%o", path, (unsigned)flags, mode);
	return r;
}

static ssize_t f_pread(struct hs_transport *t, struct hs_tr_file *f,
		       void *buf, size_t len, uint64_t off, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	ssize_t r = begin(ft, S_PREAD, dl);

	if (!r)
		r = pass(ft, hs_tr_pread(ft->inner, f, buf, len, off, dl));
	note(ft, r, "pread %zu@%" PRIu64, len, off);
	return r;
}

static ssize_t f_pwrite(struct hs_transport *t, struct hs_tr_file *f,
			const void *buf, size_t len, uint64_t off,
			hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	ssize_t r = begin(ft, S_PWRITE, dl);

	if (!r)
		r = pass(ft, hs_tr_pwrite(ft->inner, f, buf, len, off, dl));
	note(ft, r, "pwrite %zu@%" PRIu64, len, off);
	return r;
}

static int f_fsync(struct hs_transport *t, struct hs_tr_file *f,
		   hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_FSYNC, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_fsync(ft->inner, f, dl));
	note(ft, r, "fsync");
	return r;
}

/* Releases @f whatever was injected: the inner fclose always runs. */
static int f_fclose(struct hs_transport *t, struct hs_tr_file *f,
		    hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_FCLOSE, dl);
	int r2 = hs_tr_fclose(ft->inner, f, dl);

	if (!r)
		r = (int)pass(ft, r2);
	note(ft, r, "fclose");
	return r;
}

static int f_setattr(struct hs_transport *t, const char *path,
		     const struct hs_attr *attr, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_SETATTR, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_setattr(ft->inner, path, attr, dl));
	note(ft, r, "setattr %s 0x%x", path, attr->valid);
	return r;
}

static int f_mkdir(struct hs_transport *t, const char *path, uint32_t mode,
		   hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_MKDIR, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_mkdir(ft->inner, path, mode, dl));
	note(ft, r, "mkdir %s 0%o", path, mode);
	return r;
}

static int f_rmdir(struct hs_transport *t, const char *path, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_RMDIR, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_rmdir(ft->inner, path, dl));
	note(ft, r, "rmdir %s", path);
	return r;
}

static int f_unlink(struct hs_transport *t, const char *path,
		    hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_UNLINK, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_unlink(ft->inner, path, dl));
	note(ft, r, "unlink %s", path);
	return r;
}

static int f_rename(struct hs_transport *t, const char *from, const char *to,
		    unsigned flags, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_RENAME, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_rename(ft->inner, from, to, flags, dl));
	note(ft, r, "rename %s %s%s%s", from, to,
	     flags & HS_RENAME_NOREPLACE ? " noreplace" : "",
	     flags & HS_RENAME_RESEND ? " resend" : "");
	return r;
}

static int f_symlink(struct hs_transport *t, const char *target,
		     const char *path, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_SYMLINK, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_symlink(ft->inner, target, path, dl));
	note(ft, r, "symlink %s %s", target, path);
	return r;
}

static int f_readlink(struct hs_transport *t, const char *path, char *buf,
		      size_t size, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_READLINK, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_readlink(ft->inner, path, buf, size,
						 dl));
	note(ft, r, "readlink %s", path);
	return r;
}

static int f_link(struct hs_transport *t, const char *oldpath,
		  const char *newpath, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_LINK, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_link(ft->inner, oldpath, newpath, dl));
	note(ft, r, "link %s %s", oldpath, newpath);
	return r;
}

static int f_statvfs(struct hs_transport *t, const char *path,
		     struct hs_statvfs *ret, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_STATVFS, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_statvfs(ft->inner, path, ret, dl));
	note(ft, r, "statvfs %s", path);
	return r;
}

static int f_ping(struct hs_transport *t, hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_PING, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_ping(ft->inner, dl));
	note(ft, r, "ping");
	return r;
}

/* One call however many changes it carries: a lost answer loses them all
 * (made on the host, or some of them). */
static int f_batch(struct hs_transport *t, struct hs_tr_op *ops, int n,
		   hs_deadline_t dl)
{
	struct faulty *ft = to_faulty(t);
	int r = begin(ft, S_BATCH, dl);

	if (!r)
		r = (int)pass(ft, hs_tr_batch(ft->inner, ops, n, dl));
	note(ft, r, "batch %s +%d", n ? ops[0].path : "", n - 1);
	return r;
}

static const struct hs_transport_ops faulty_ops = {
	.name = "faulty",
	.close = f_close,
	.lstat = f_lstat,
	.readdir = f_readdir,
	.open = f_open,
	.pread = f_pread,
	.pwrite = f_pwrite,
	.fsync = f_fsync,
	.fclose = f_fclose,
	.setattr = f_setattr,
	.mkdir = f_mkdir,
	.rmdir = f_rmdir,
	.unlink = f_unlink,
	.rename = f_rename,
	.symlink = f_symlink,
	.readlink = f_readlink,
	.link = f_link,
	.statvfs = f_statvfs,
	.ping = f_ping,
	.batch = f_batch,
};

int hs_faulty_wrap(struct hs_transport *inner, struct hs_transport **ret)
{
	pthread_condattr_t ca;
	struct faulty *ft;

	ft = calloc(1, sizeof(*ft));
	if (!ft)
		goto out_close_inner;
	if (pthread_condattr_init(&ca))
		goto out_free;
	/* Deadlines are CLOCK_MONOTONIC, so the stall wait must be too. */
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
	    pthread_cond_init(&ft->cond, &ca)) {
		pthread_condattr_destroy(&ca);
		goto out_free;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_mutex_init(&ft->lock, NULL))
		goto out_destroy_cond;
	ft->inner = inner;
	ft->countdown = -1;
	ft->base.ops = &faulty_ops;
	ft->base.caps = inner->caps;
	ft->base.remote_uid = inner->remote_uid;
	ft->base.remote_gid = inner->remote_gid;
	ft->base.broken = inner->broken;
	*ret = &ft->base;
	return 0;

out_destroy_cond:
	pthread_cond_destroy(&ft->cond);
out_free:
	free(ft);
out_close_inner:
	hs_tr_close(inner);
	return -ENOMEM;
}

struct hs_transport *hs_faulty_inner(struct hs_transport *t)
{
	return to_faulty(t)->inner;
}

void hs_faulty_fail_after(struct hs_transport *t, int n, int err,
			  int persistent)
{
	struct faulty *ft = to_faulty(t);

	pthread_mutex_lock(&ft->lock);
	ft->countdown = n < 0 ? 0 : n;
	ft->fail_err = err > 0 ? -err : err ? err : -EIO;
	ft->fail_persistent = !!persistent;
	ft->failing = 0;
	ft->lose = 0;
	pthread_mutex_unlock(&ft->lock);
}

void hs_faulty_lose_answer_after(struct hs_transport *t, int n, int err)
{
	struct faulty *ft = to_faulty(t);

	pthread_mutex_lock(&ft->lock);
	ft->countdown = n < 0 ? 0 : n;
	ft->fail_err = err > 0 ? -err : err ? err : -ECONNRESET;
	ft->fail_persistent = 0;
	ft->failing = 0;
	ft->lose = 1;
	pthread_mutex_unlock(&ft->lock);
}

void hs_faulty_reset(struct hs_transport *t)
{
	struct faulty *ft = to_faulty(t);

	pthread_mutex_lock(&ft->lock);
	ft->countdown = -1;
	ft->failing = 0;
	ft->lose = ft->losing = 0;
	ft->stall = 0;
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
}

void hs_faulty_stall(struct hs_transport *t, int on)
{
	struct faulty *ft = to_faulty(t);

	pthread_mutex_lock(&ft->lock);
	ft->stall = !!on;
	pthread_cond_broadcast(&ft->cond);
	pthread_mutex_unlock(&ft->lock);
}

void hs_faulty_break(struct hs_transport *t)
{
	struct faulty *ft = to_faulty(t);

	pthread_mutex_lock(&ft->lock);
	if (!ft->base.broken)
		snprintf(ft->base.last_error, sizeof(ft->base.last_error),
			 "connection broken by the test");
	set_broken(ft);
	pthread_mutex_unlock(&ft->lock);
}

long hs_faulty_calls(struct hs_transport *t)
{
	struct faulty *ft = to_faulty(t);
	long n;

	pthread_mutex_lock(&ft->lock);
	n = ft->calls;
	pthread_mutex_unlock(&ft->lock);
	return n;
}

long hs_faulty_count(struct hs_transport *t, const char *slot)
{
	struct faulty *ft = to_faulty(t);
	long n = -1;
	size_t i;

	pthread_mutex_lock(&ft->lock);
	for (i = 0; i < S_COUNT; i++)
		if (!strcmp(slot_names[i], slot))
			n = ft->per_slot[i];
	pthread_mutex_unlock(&ft->lock);
	return n;
}

void hs_faulty_log(struct hs_transport *t, FILE *f)
{
	struct faulty *ft = to_faulty(t);

	pthread_mutex_lock(&ft->lock);
	ft->log = f;
	pthread_mutex_unlock(&ft->lock);
}
