/* SPDX-License-Identifier: MIT
 * tests/lib/localtr.c - struct hs_transport over a local directory.
 *
 * Sits where transport/sftp.c sits in the stack, but every slot is one or two
 * POSIX calls relative to an O_PATH directory fd of the root (openat,
 * fstatat, renameat2, ...).  Two slots need a full path because Linux has no
 * "at" variant that works on any file type: setattr's size (truncate(2)) and
 * statvfs(3); those join the root's absolute path with the request path.
 *
 * Errors are the syscall's errno, negated, which is what the transport
 * contract asks of a real host (the sftp transport maps its status codes to
 * the same values).
 *
 * Thread model: any thread, any number at once.  The only mutable state is
 * the delay knob, an atomic int.  Nothing here ever blocks except the delay
 * sleep, which is bounded by the call's deadline.
 *
 * Not handled: confinement (a path with ".." or a symlink may leave the
 * root; this is a test fixture, not a sandbox), and remote-id mapping.
 */
#include "localtr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct localtr {
	struct hs_transport base;
	int rootfd;  /* O_PATH|O_DIRECTORY of the root */
	char *root;  /* absolute path of the root (truncate, statvfs) */
	int delay_us; /* atomic: per-call latency, 0: none */
};

/* An open remote file: just the local fd.  Other transports define their own
 * struct hs_tr_file in their own file; the type is opaque outside. */
struct hs_tr_file {
	int fd;
};

static struct localtr *to_local(struct hs_transport *t)
{
	return container_of(t, struct localtr, base);
}

/* Request path -> path relative to the root fd: "/" -> ".", "/a" -> "a". */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* Root path joined with @path into @buf; -ENAMETOOLONG if it does not fit. */
static int join(struct localtr *lt, const char *path, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/%s", lt->root, rel(path));

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The start of every call: sleep the configured delay, bounded by @dl.
 * Returns 0 to go on or -ETIMEDOUT (deadline passed, or would pass during
 * the delay; then the sleep lasts until the deadline). */
static int enter(struct localtr *lt, hs_deadline_t dl)
{
	int delay_us = __atomic_load_n(&lt->delay_us, __ATOMIC_RELAXED);
	int64_t now = hs_now_ns(), until;
	int timed_out = 0;
	struct timespec ts;

	if (dl != HS_DEADLINE_NEVER && now >= dl)
		return -ETIMEDOUT;
	if (delay_us <= 0)
		return 0;
	until = now + (int64_t)delay_us * 1000;
	if (dl != HS_DEADLINE_NEVER && until > dl) {
		until = dl;
		timed_out = 1;
	}
	ts.tv_sec = until / HS_NSEC_PER_SEC;
	ts.tv_nsec = until % HS_NSEC_PER_SEC;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
	return timed_out ? -ETIMEDOUT : 0;
}

static void fill_attr(const struct stat *st, struct hs_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->valid = HS_ATTR_SIZE | HS_ATTR_MODE | HS_ATTR_UID | HS_ATTR_GID |
		   HS_ATTR_ATIME | HS_ATTR_MTIME;
	a->mode = st->st_mode;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->nlink = (uint32_t)st->st_nlink;
	a->size = (uint64_t)st->st_size;
	a->atime_ns = (int64_t)st->st_atim.tv_sec * HS_NSEC_PER_SEC +
		      st->st_atim.tv_nsec;
	a->mtime_ns = (int64_t)st->st_mtim.tv_sec * HS_NSEC_PER_SEC +
		      st->st_mtim.tv_nsec;
}

static void lt_close(struct hs_transport *t)
{
	struct localtr *lt = to_local(t);

	close(lt->rootfd);
	free(lt->root);
	free(lt);
}

static int lt_lstat(struct hs_transport *t, const char *path,
		    struct hs_attr *ret, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	struct stat st;
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	if (fstatat(lt->rootfd, rel(path), &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	fill_attr(&st, ret);
	return 0;
}

static int lt_readdir(struct hs_transport *t, const char *path,
		      hs_tr_dirent_fn fn, void *arg, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	struct dirent *de;
	struct hs_attr a;
	struct stat st;
	DIR *d;
	int fd, r = enter(lt, dl);

	if (r < 0)
		return r;
	fd = openat(lt->rootfd, rel(path),
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		r = -errno;
		close(fd);
		return r;
	}
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (!de) {
			r = -errno; /* 0 at the end */
			break;
		}
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		/* An entry removed since readdir saw it is simply skipped. */
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		fill_attr(&st, &a);
		r = fn(arg, de->d_name, &a);
		if (r)
			break;
	}
	closedir(d);
	return r;
}

static int lt_open(struct hs_transport *t, const char *path, int flags,
		   uint32_t mode, struct hs_tr_file **ret, hs_deadline_t dl)
{
	const int allowed = O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND;
	struct localtr *lt = to_local(t);
	struct hs_tr_file *f;
	int fd, r = enter(lt, dl);

	if (r < 0)
		return r;
	if (flags & ~allowed)
		return -EINVAL;
	f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	fd = openat(lt->rootfd, rel(path), flags | O_CLOEXEC | O_NOCTTY,
		    (mode_t)(mode & 07777));
	if (fd < 0) {
		r = -errno;
		free(f);
		return r;
	}
	f->fd = fd;
	*ret = f;
	return 0;
}

static ssize_t lt_pread(struct hs_transport *t, struct hs_tr_file *f,
			void *buf, size_t len, uint64_t off, hs_deadline_t dl)
{
	ssize_t n;
	int r = enter(to_local(t), dl);

	if (r < 0)
		return r;
	if (off > (uint64_t)INT64_MAX)
		return -EINVAL;
	do
		n = pread(f->fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t lt_pwrite(struct hs_transport *t, struct hs_tr_file *f,
			 const void *buf, size_t len, uint64_t off,
			 hs_deadline_t dl)
{
	const char *p = buf;
	size_t done = 0;
	ssize_t n;
	int r = enter(to_local(t), dl);

	if (r < 0)
		return r;
	if (off > (uint64_t)INT64_MAX || len > (size_t)SSIZE_MAX)
		return -EINVAL;
	/* pwrite(2) may write short (signals, quota); the slot writes all. */
	while (done < len) {
		n = pwrite(f->fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)len;
}

static int lt_fsync(struct hs_transport *t, struct hs_tr_file *f,
		    hs_deadline_t dl)
{
	int r = enter(to_local(t), dl);

	if (r < 0)
		return r;
	return fsync(f->fd) < 0 ? -errno : 0;
}

/* Releases @f whatever happens, as the contract requires. */
static int lt_fclose(struct hs_transport *t, struct hs_tr_file *f,
		     hs_deadline_t dl)
{
	int r = enter(to_local(t), dl);

	/* close(2) on Linux releases the fd even when it fails (EINTR too),
	 * so it is never retried. */
	if (close(f->fd) < 0 && r == 0)
		r = -errno;
	free(f);
	return r;
}

/* Applies size, then owner, then mode (chown may clear set-id bits), then
 * times (truncate and chmod touch mtime/ctime).  Stops at the first error;
 * the fields before it stay changed, as with SFTP SETSTAT. */
static int lt_setattr(struct hs_transport *t, const char *path,
		      const struct hs_attr *attr, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	const char *p = rel(path);
	char full[PATH_MAX];
	struct stat st;
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	if (attr->valid & HS_ATTR_SIZE) {
		if (attr->size > (uint64_t)INT64_MAX)
			return -EFBIG;
		r = join(lt, path, full, sizeof(full));
		if (r < 0)
			return r;
		if (truncate(full, (off_t)attr->size) < 0)
			return -errno;
	}
	if (attr->valid & (HS_ATTR_UID | HS_ATTR_GID)) {
		uid_t uid = attr->valid & HS_ATTR_UID ? attr->uid : (uid_t)-1;
		gid_t gid = attr->valid & HS_ATTR_GID ? attr->gid : (gid_t)-1;

		if (fchownat(lt->rootfd, p, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	if (attr->valid & HS_ATTR_MODE) {
		/* Symlinks have no mode on Linux, and fchmodat() would follow
		 * one; refuse rather than change the target. */
		if (fstatat(lt->rootfd, p, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (S_ISLNK(st.st_mode))
			return -EOPNOTSUPP;
		if (fchmodat(lt->rootfd, p, (mode_t)(attr->mode & 07777), 0) < 0)
			return -errno;
	}
	if (attr->valid & (HS_ATTR_ATIME | HS_ATTR_MTIME)) {
		struct timespec ts[2] = {
			{ .tv_nsec = UTIME_OMIT },
			{ .tv_nsec = UTIME_OMIT },
		};

		if (attr->valid & HS_ATTR_ATIME) {
			ts[0].tv_sec = attr->atime_ns / HS_NSEC_PER_SEC;
			ts[0].tv_nsec = attr->atime_ns % HS_NSEC_PER_SEC;
			if (ts[0].tv_nsec < 0) { /* before 1970 */
				ts[0].tv_sec--;
				ts[0].tv_nsec += HS_NSEC_PER_SEC;
			}
		}
		if (attr->valid & HS_ATTR_MTIME) {
			ts[1].tv_sec = attr->mtime_ns / HS_NSEC_PER_SEC;
			ts[1].tv_nsec = attr->mtime_ns % HS_NSEC_PER_SEC;
			if (ts[1].tv_nsec < 0) {
				ts[1].tv_sec--;
				ts[1].tv_nsec += HS_NSEC_PER_SEC;
			}
		}
		if (utimensat(lt->rootfd, p, ts, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
	}
	return 0;
}

static int lt_mkdir(struct hs_transport *t, const char *path, uint32_t mode,
		    hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	return mkdirat(lt->rootfd, rel(path), (mode_t)(mode & 07777)) < 0 ?
		       -errno : 0;
}

static int lt_rmdir(struct hs_transport *t, const char *path,
		    hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	return unlinkat(lt->rootfd, rel(path), AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int lt_unlink(struct hs_transport *t, const char *path,
		     hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	return unlinkat(lt->rootfd, rel(path), 0) < 0 ? -errno : 0;
}

static int lt_rename(struct hs_transport *t, const char *from, const char *to,
		     unsigned flags, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	unsigned sysflags = 0;
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	if (flags & ~(unsigned)(HS_RENAME_NOREPLACE | HS_RENAME_RESEND))
		return -EINVAL;
	if (flags & HS_RENAME_NOREPLACE)
		sysflags |= RENAME_NOREPLACE;
	return renameat2(lt->rootfd, rel(from), lt->rootfd, rel(to),
			 sysflags) < 0 ? -errno : 0;
}

static int lt_symlink(struct hs_transport *t, const char *target,
		      const char *path, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	/* @target is stored verbatim: it is not a request path. */
	return symlinkat(target, lt->rootfd, rel(path)) < 0 ? -errno : 0;
}

static int lt_readlink(struct hs_transport *t, const char *path, char *buf,
		       size_t size, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	char tmp[PATH_MAX + 1];
	ssize_t n;
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	/* Linux symlink targets are at most PATH_MAX - 1 bytes, so a read
	 * of sizeof(tmp) is never truncated and n is the full length. */
	n = readlinkat(lt->rootfd, rel(path), tmp, sizeof(tmp));
	if (n < 0)
		return -errno;
	if (size > 0) {
		size_t k = HS_MIN((size_t)n, size - 1);

		memcpy(buf, tmp, k);
		buf[k] = '\0';
	}
	return (int)n;
}

static int lt_link(struct hs_transport *t, const char *oldpath,
		   const char *newpath, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	return linkat(lt->rootfd, rel(oldpath), lt->rootfd, rel(newpath), 0) <
			       0 ? -errno : 0;
}

static int lt_statvfs(struct hs_transport *t, const char *path,
		      struct hs_statvfs *ret, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	char full[PATH_MAX];
	struct statvfs sv;
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	r = join(lt, path, full, sizeof(full));
	if (r < 0)
		return r;
	if (statvfs(full, &sv) < 0)
		return -errno;
	memset(ret, 0, sizeof(*ret));
	ret->bsize = sv.f_bsize;
	ret->frsize = sv.f_frsize;
	ret->blocks = sv.f_blocks;
	ret->bfree = sv.f_bfree;
	ret->bavail = sv.f_bavail;
	ret->files = sv.f_files;
	ret->ffree = sv.f_ffree;
	ret->favail = sv.f_favail;
	ret->namemax = sv.f_namemax;
	return 0;
}

/* One "round trip": the root must still be there. */
static int lt_ping(struct hs_transport *t, hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	struct stat st;
	int r = enter(lt, dl);

	if (r < 0)
		return r;
	return fstatat(lt->rootfd, "", &st, AT_EMPTY_PATH) < 0 ? -errno : 0;
}

/* A whole new file: a temporary name beside @path, the data, mode and
 * times, then renamed onto @path. */
static int put_one(struct localtr *lt, const struct hs_tr_op *o)
{
	const char *p = rel(o->path);
	char tmp[PATH_MAX];
	struct timespec ts[2];
	size_t off = 0;
	int fd, r = 0, n;

	n = snprintf(tmp, sizeof(tmp), "%s.lt-put", p);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(lt->rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	while (r == 0 && off < o->len) {
		ssize_t w = write(fd, (const char *)o->data + off, o->len - off);

		if (w < 0)
			r = -errno;
		else
			off += (size_t)w;
	}
	ts[0].tv_sec = o->atime_ns / HS_NSEC_PER_SEC;
	ts[0].tv_nsec = o->atime_ns % HS_NSEC_PER_SEC;
	ts[1].tv_sec = o->mtime_ns / HS_NSEC_PER_SEC;
	ts[1].tv_nsec = o->mtime_ns % HS_NSEC_PER_SEC;
	if (r == 0 && fchmod(fd, (mode_t)(o->mode & 07777)) < 0)
		r = -errno;
	if (r == 0 && futimens(fd, ts) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && renameat(lt->rootfd, tmp, lt->rootfd, p) < 0)
		r = -errno;
	if (r < 0)
		unlinkat(lt->rootfd, tmp, 0);
	return r;
}

/* In order, as the agent's BATCH: a refused one does not stop the rest. */
static int lt_batch(struct hs_transport *t, struct hs_tr_op *ops, int n,
		    hs_deadline_t dl)
{
	struct localtr *lt = to_local(t);
	int k, r = enter(lt, dl);

	if (r < 0)
		return r;
	for (k = 0; k < n; k++)
		ops[k].r = ops[k].kind == HS_TROP_MKDIR ?
			(mkdirat(lt->rootfd, rel(ops[k].path),
				 (mode_t)(ops[k].mode & 07777)) < 0 ? -errno : 0) :
			ops[k].kind == HS_TROP_PUT ? put_one(lt, &ops[k]) :
			-EINVAL;
	return 0;
}

static const struct hs_transport_ops localtr_ops = {
	.name = "local",
	.close = lt_close,
	.lstat = lt_lstat,
	.readdir = lt_readdir,
	.open = lt_open,
	.pread = lt_pread,
	.pwrite = lt_pwrite,
	.fsync = lt_fsync,
	.fclose = lt_fclose,
	.setattr = lt_setattr,
	.mkdir = lt_mkdir,
	.rmdir = lt_rmdir,
	.unlink = lt_unlink,
	.rename = lt_rename,
	.symlink = lt_symlink,
	.readlink = lt_readlink,
	.link = lt_link,
	.statvfs = lt_statvfs,
	.ping = lt_ping,
	.batch = lt_batch,
};

int hs_localtr_open(const char *root, struct hs_transport **ret, char *err,
		    size_t errlen)
{
	struct localtr *lt;
	int r;

	if (errlen)
		err[0] = '\0';
	lt = calloc(1, sizeof(*lt));
	if (!lt) {
		snprintf(err, errlen, "cannot open local folder: out of memory");
		return -ENOMEM;
	}
	lt->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (lt->rootfd < 0) {
		r = -errno;
		if (r == -ENOENT)
			snprintf(err, errlen, "local folder '%s' does not exist",
				 root);
		else if (r == -ENOTDIR)
			snprintf(err, errlen,
				 "local folder '%s' is not a directory", root);
		else
			snprintf(err, errlen, "cannot open local folder '%s': %s",
				 root, strerror(-r));
		goto out_free;
	}
	lt->root = realpath(root, NULL);
	if (!lt->root) {
		r = -errno;
		snprintf(err, errlen, "cannot resolve local folder '%s': %s",
			 root, strerror(-r));
		goto out_close;
	}
	lt->base.ops = &localtr_ops;
	lt->base.caps = HS_TR_CAP_POSIX_RENAME | HS_TR_CAP_HARDLINK |
			HS_TR_CAP_FSYNC | HS_TR_CAP_STATVFS |
			HS_TR_CAP_NS_TIMES |
			/* stateless: calls of many threads may overlap */
			HS_TR_CAP_PIPELINE | HS_TR_CAP_SEQ;
	lt->base.remote_uid = (uint32_t)getuid();
	lt->base.remote_gid = (uint32_t)getgid();
	*ret = &lt->base;
	return 0;

out_close:
	close(lt->rootfd);
out_free:
	free(lt);
	return r;
}

int hs_localtr_dial(void *root_path, hs_deadline_t dl,
		    struct hs_transport **ret, char *err, size_t errlen)
{
	const char *root = root_path;

	if (hs_deadline_passed(dl)) {
		snprintf(err, errlen, "cannot open local folder '%s': timed out",
			 root);
		return -ETIMEDOUT;
	}
	return hs_localtr_open(root, ret, err, errlen);
}

void hs_localtr_set_delay(struct hs_transport *t, int delay_us)
{
	if (t->ops != &localtr_ops) {
		hs_err("hs_localtr_set_delay: '%s' is not a local transport",
		       t->ops->name);
		abort();
	}
	__atomic_store_n(&to_local(t)->delay_us, delay_us < 0 ? 0 : delay_us,
			 __ATOMIC_RELAXED);
}
