/* SPDX-License-Identifier: MIT
 * fs/ops.c - the FUSE low-level operations: each request becomes one call
 * into the cache (cache/cache.h) and exactly one reply.
 *
 * Shape of every op: take the deadline (op_timeout from now), call ONE
 * cache function, reply once; errors go out through hs_reply_errno() and
 * nowhere else.  Inode numbers are the cache's own (1 = root = FUSE_ROOT_ID),
 * fi->fh holds a struct hs_handle * (files) or struct hs_dir * (folders).
 *
 * Lookup references: every reply that hands the kernel an inode (lookup,
 * mknod, mkdir, symlink, link, create, each readdirplus entry but "." and
 * "..") matches one reference the cache took; if such a reply cannot be
 * delivered (the request was interrupted: fuse_reply_* returns -ENOENT) the
 * reference is dropped again, and an open handle is released, as the kernel
 * will never forget or release what it never got.
 *
 * Threads: called by the libfuse worker pool (max_threads workers) and
 * nothing else.  No lock is held here at all, so none is ever held across
 * a fuse_reply_*().  The cache answers cached requests without the network;
 * the rest wait at most op_timeout, so a worker is never stuck for longer.
 *
 * Deliberately not done: the kernel's writeback cache (write() must have
 * reached the cache when it returns), xattrs (answered ENOSYS so the kernel
 * stops asking, which callers see as ENOTSUP; listxattr is an empty list),
 * access (default_permissions does permission checks), locks (left to the
 * kernel), fallocate (EOPNOTSUPP; glibc's posix_fallocate falls back to
 * writing), copy_file_range (the kernel falls back to read + write), splice.
 */
#include "fs_i.h"
#include "reply.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* d_ino of ".." where the parent is not known (libfuse's high-level API
 * uses the same value). */
#define HS_UNKNOWN_INO 0xffffffffu

static struct hs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static hs_deadline_t op_deadline(const struct hs_fs *fs)
{
	return hs_deadline_in_ms(fs->op_timeout_ms);
}

static struct hs_handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct hs_handle *)(uintptr_t)fi->fh;
}

static struct hs_dir *dir_of(const struct fuse_file_info *fi)
{
	return (struct hs_dir *)(uintptr_t)fi->fh;
}

static void reply_err(fuse_req_t req, int r)
{
	fuse_reply_err(req, hs_reply_errno(r));
}

/* The umask= option applies to every mode the kernel is told. */
static void fix_attr(const struct hs_fs *fs, struct stat *st)
{
	st->st_mode &= ~fs->umask;
}

/* Entry and attribute timeouts: what is left of the cache's trust in the
 * listing the answer came from (hs_cache_dir_ttl_ms), so the kernel never
 * keeps an answer longer than the cache itself would (DESIGN.md,
 * contract 4). */
static void fill_entry(const struct hs_fs *fs, struct fuse_entry_param *e,
		       const struct stat *st, int64_t ttl_ms)
{
	memset(e, 0, sizeof(*e));
	e->attr = *st;
	fix_attr(fs, &e->attr);
	e->ino = st->st_ino;
	e->attr_timeout = (double)ttl_ms / 1000.0;
	e->entry_timeout = (double)ttl_ms / 1000.0;
}

/* Replies with the inode the cache just referenced (a name in folder
 * @parent), or gives the reference back if the kernel will never see it. */
static void reply_entry(fuse_req_t req, struct hs_fs *fs, uint64_t parent,
			const struct stat *st)
{
	struct fuse_entry_param e;

	fill_entry(fs, &e, st, hs_cache_dir_ttl_ms(fs->cache, parent));
	if (fuse_reply_entry(req, &e) < 0)
		hs_cache_forget(fs->cache, e.ino, 1);
}

/* ---- the replayer's requests (hostev.c) ----
 * A change the host made is made again through the mount by the
 * replayer thread, so the kernel emits inotify events; its requests are
 * answered from the cache as it already is, and change nothing. */

static int replaying(fuse_req_t req)
{
	return hs_hostev_mine(fs_of(req), req);
}

/* mknod, mkdir, symlink in @parent: the inode the host created. */
static void replay_entry(fuse_req_t req, uint64_t parent)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r = hs_hostev_target(fs, &st);

	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, parent, &st);
}

/* Replies with the attributes of @ino. */
static void reply_attr(fuse_req_t req, struct hs_fs *fs, uint64_t ino,
		       struct stat *st)
{
	fix_attr(fs, st);
	fuse_reply_attr(req, st,
			(double)hs_cache_attr_ttl_ms(fs->cache, ino) / 1000.0);
}

/* ---- session ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	unsigned want_on = FUSE_CAP_ASYNC_READ | FUSE_CAP_READDIRPLUS |
			   FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_PARALLEL_DIROPS |
			   FUSE_CAP_AUTO_INVAL_DATA;

	conn->want |= conn->capable & want_on;
	/* Always readdirplus: one listing fills the dentry cache, which is
	 * what makes `ls -l` and `find` cheap. */
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	/* write() must reach the cache before it returns (DESIGN.md,
	 * contract 2), so no kernel writeback cache. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* The kernel clears suid/sgid itself with an explicit setattr; the
	 * cache does not second-guess modes. */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/* Not handled: replies are plain buffers. */
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
			FUSE_CAP_SPLICE_MOVE);
	/* Large requests: the flusher and the transport move >= 1 MiB at a
	 * time best.  libfuse lowers this to what its buffer and the kernel
	 * (max_pages) allow. */
	conn->max_write = 1024 * 1024;
	/* max_readahead: keep what the kernel offered, its upper bound. */
	conn->time_gran = 1;
	hs_debug("FUSE protocol %u.%u, max_write %u, max_readahead %u",
		 conn->proto_major, conn->proto_minor, conn->max_write,
		 conn->max_readahead);
	(void)userdata;
}

static void op_destroy(void *userdata)
{
	/* The cache outlives the session: main() closes it after the loop,
	 * once the control socket is gone too. */
	hs_debug("FUSE session ends");
	(void)userdata;
}

/* ---- names and attributes ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hs_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct stat st;
	int r = 0;

	if (replaying(req)) {
		r = hs_hostev_lookup(fs, parent, name, &st);
		if (r == -ENOENT)
			return reply_err(req, r); /* not remembered as missing */
		if (r == 1)
			return reply_entry(req, fs, parent, &st);
	}
	r = hs_cache_lookup(fs->cache, parent, name, &st, op_deadline(fs));
	if (r == -ENOENT) {
		/* A negative entry: the kernel remembers the miss for as
		 * long as the listing that lacks the name is trusted,
		 * instead of asking again per open(). */
		memset(&e, 0, sizeof(e));
		e.ino = 0;
		e.entry_timeout =
			(double)hs_cache_dir_ttl_ms(fs->cache, parent) / 1000.0;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, parent, &st);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	hs_cache_forget(fs_of(req)->cache, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct hs_fs *fs = fs_of(req);
	size_t i;

	for (i = 0; i < count; i++)
		hs_cache_forget(fs->cache, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r = hs_cache_getattr(fs->cache, ino, &st);

	if (r < 0)
		return reply_err(req, r);
	reply_attr(req, fs, ino, &st);
}

static unsigned setattr_flags(int to_set)
{
	static const struct {
		int fuse;
		unsigned hs;
	} map[] = {
		{ FUSE_SET_ATTR_MODE, HS_SET_MODE },
		{ FUSE_SET_ATTR_UID, HS_SET_UID },
		{ FUSE_SET_ATTR_GID, HS_SET_GID },
		{ FUSE_SET_ATTR_SIZE, HS_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, HS_SET_ATIME },
		{ FUSE_SET_ATTR_MTIME, HS_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, HS_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, HS_SET_MTIME_NOW },
		{ FUSE_SET_ATTR_CTIME, HS_SET_CTIME },
	};
	unsigned hs = 0;
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(map); i++)
		if (to_set & map[i].fuse)
			hs |= map[i].hs;
	/* The kernel sends ATIME together with ATIME_NOW for "now"; give
	 * the cache one meaning per field. */
	if (hs & HS_SET_ATIME_NOW)
		hs &= ~(unsigned)HS_SET_ATIME;
	if (hs & HS_SET_MTIME_NOW)
		hs &= ~(unsigned)HS_SET_MTIME;
	return hs;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r;

	if (replaying(req))
		r = hs_cache_getattr(fs->cache, ino, &st);
	else
		r = hs_cache_setattr(fs->cache, ino, attr, setattr_flags(to_set),
				     fi && fi->fh ? handle_of(fi) : NULL, &st,
				     op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	reply_attr(req, fs, ino, &st);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct hs_fs *fs = fs_of(req);
	char buf[PATH_MAX + 1];
	int r = hs_cache_readlink(fs->cache, ino, buf, sizeof(buf),
				  op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	buf[sizeof(buf) - 1] = '\0';
	fuse_reply_readlink(req, buf);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r;

	if (replaying(req))
		return replay_entry(req, parent);
	r = hs_cache_mknod(fs->cache, parent, name, mode, rdev, &st,
			       op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, parent, &st);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r;

	if (replaying(req))
		return replay_entry(req, parent);
	r = hs_cache_mkdir(fs->cache, parent, name, mode, &st,
			       op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, parent, &st);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
		       const char *name)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r;

	if (replaying(req))
		return replay_entry(req, parent);
	r = hs_cache_symlink(fs->cache, parent, name, target, &st,
				 op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, parent, &st);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct hs_fs *fs = fs_of(req);
	struct stat st;
	int r = hs_cache_link(fs->cache, ino, newparent, newname, &st,
			      op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	reply_entry(req, fs, newparent, &st);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hs_fs *fs = fs_of(req);

	if (replaying(req))
		return reply_err(req, 0); /* already gone on the host */
	reply_err(req, hs_cache_unlink(fs->cache, parent, name,
				       op_deadline(fs)));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hs_fs *fs = fs_of(req);

	if (replaying(req))
		return reply_err(req, 0);
	reply_err(req, hs_cache_rmdir(fs->cache, parent, name,
				      op_deadline(fs)));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct hs_fs *fs = fs_of(req);

	if (replaying(req))
		return reply_err(req, 0); /* the cache moved it already */
	/* Flags pass through: the cache takes RENAME_NOREPLACE and refuses
	 * RENAME_EXCHANGE / RENAME_WHITEOUT with -EINVAL. */
	reply_err(req, hs_cache_rename(fs->cache, parent, name, newparent,
				       newname, flags, op_deadline(fs)));
}

/* ---- file data ---- */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	struct hs_handle *h;
	int keep = 0;
	int r;

	if (replaying(req)) {
		/* no handle: the replay writes nothing */
		fi->fh = 0;
		fi->keep_cache = 0;
		fuse_reply_open(req, fi);
		return;
	}
	r = hs_cache_open_file(fs->cache, ino, fi->flags, &h, &keep,
			       op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	fi->fh = (uintptr_t)h;
	fi->keep_cache = keep ? 1 : 0;
	if (fuse_reply_open(req, fi) < 0)
		hs_cache_release(fs->cache, h); /* open() was interrupted */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct hs_handle *h = NULL;
	struct stat st;
	int r;

	if (replaying(req))
		r = hs_hostev_target(fs, &st);
	else
		r = hs_cache_create(fs->cache, parent, name, mode, fi->flags,
				    &st, &h, op_deadline(fs));
	if (r < 0)
		return reply_err(req, r);
	fill_entry(fs, &e, &st, hs_cache_dir_ttl_ms(fs->cache, parent));
	fi->fh = (uintptr_t)h;
	/* Not keep_cache: without O_EXCL this may be a file the host made
	 * behind a cached negative entry. */
	fi->keep_cache = 0;
	if (fuse_reply_create(req, &e, fi) < 0) {
		if (h)
			hs_cache_release(fs->cache, h);
		hs_cache_forget(fs->cache, e.ino, 1);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	char *buf;
	ssize_t n;

	if (!fi->fh)
		return reply_err(req, -EBADF);
	buf = malloc(size ? size : 1);
	if (!buf)
		return reply_err(req, -ENOMEM);
	n = hs_cache_read(fs->cache, handle_of(fi), buf, size, off,
			  op_deadline(fs));
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	ssize_t n;

	if (!fi->fh)
		return reply_err(req, -EBADF);
	n = hs_cache_write(fs->cache, handle_of(fi), buf, size, off,
			   op_deadline(fs));
	if (n < 0)
		return reply_err(req, (int)n);
	/* A direct write bypasses the page cache, and the kernel drops the
	 * pages it covers only for a synchronous one: an AIO direct write
	 * (io_submit) completes without that, so pages a buffered reader
	 * filled from the old bytes while the write was on its way would
	 * stay and be read back (databases, qemu cache=none).  The new bytes
	 * are in the cache now; dropping the range before the reply means
	 * that once the writer sees its write done, every read by any open
	 * comes here for it.  A read already in flight holds its page
	 * locked; the kernel waits for it and then drops that page too. */
	if ((fi->flags & O_DIRECT) && n > 0 && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, off, (off_t)n);
	fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (!fi->fh)
		return reply_err(req, 0); /* the replayer's */
	reply_err(req, hs_cache_flush(fs_of(req)->cache, handle_of(fi)));
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	if (fi->fh)
		hs_cache_release(fs_of(req)->cache, handle_of(fi));
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);

	if (!fi->fh)
		return reply_err(req, 0);
	reply_err(req, hs_cache_fsync(fs->cache, handle_of(fi), datasync,
				      op_deadline(fs)));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t offset, off_t length, struct fuse_file_info *fi)
{
	fuse_reply_err(req, EOPNOTSUPP);
}

/* ---- directories ---- */

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hs_fs *fs = fs_of(req);
	struct hs_dir *d;
	int r = hs_cache_opendir(fs->cache, ino, &d, op_deadline(fs));

	if (r < 0)
		return reply_err(req, r);
	fi->fh = (uintptr_t)d;
	/* The kernel keeps what readdir returned and answers the next
	 * getdents from it (its own changes to the folder drop it); an open
	 * after the cache merged changes from the host drops it too. */
	fi->cache_readdir = 1;
	fi->keep_cache = hs_dir_keep_cache(d) ? 1 : 0;
	if (fuse_reply_open(req, fi) < 0)
		hs_cache_releasedir(fs->cache, d);
}

/* Stream positions: 0 is ".", 1 is "..", entry i of the snapshot is i + 2.
 * The offset stored with an entry is the position of the next one. */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi, int plus)
{
	struct hs_fs *fs = fs_of(req);
	struct hs_dir *d = dir_of(fi);
	size_t count, used = 0, first_ref = 0, i;
	uint64_t pos = off < 0 ? 0 : (uint64_t)off;
	int64_t ttl = hs_dir_ttl_ms(d);
	int r = hs_cache_dir_load(fs->cache, d);
	char *buf;

	if (r < 0)
		return reply_err(req, r);
	count = hs_dir_count(d);
	buf = malloc(size ? size : 1);
	if (!buf)
		return reply_err(req, -ENOMEM);
	for (; pos < (uint64_t)count + 2; pos++) {
		const struct hs_dir_entry *de = NULL;
		struct fuse_entry_param e;
		const char *name;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (pos < 2) {
			name = pos == 0 ? "." : "..";
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = pos == 0 || ino == FUSE_ROOT_ID ?
					ino : HS_UNKNOWN_INO;
		} else {
			de = hs_dir_entry(d, (size_t)(pos - 2));
			name = de->name;
			fill_entry(fs, &e, &de->st, ttl);
		}
		if (plus) {
			/* "." and ".." carry no inode: the kernel takes no
			 * reference on them. */
			if (!de)
				e.ino = 0;
			need = fuse_add_direntry_plus(req, buf + used,
						      size - used, name, &e,
						      (off_t)(pos + 1));
		} else {
			need = fuse_add_direntry(req, buf + used, size - used,
						 name, &e.attr,
						 (off_t)(pos + 1));
		}
		if (need > size - used)
			break; /* nothing was written; the next call resumes */
		used += need;
		if (plus && de && e.ino) {
			if (!first_ref)
				first_ref = (size_t)pos;
			hs_cache_ref(fs->cache, e.ino);
		}
	}
	if (fuse_reply_buf(req, buf, used) < 0 && plus && first_ref) {
		/* The kernel never saw these entries: give their references
		 * back. */
		for (i = first_ref; i < pos; i++) {
			const struct hs_dir_entry *de =
				hs_dir_entry(d, i - 2);

			if (de->st.st_ino)
				hs_cache_forget(fs->cache, de->st.st_ino, 1);
		}
	}
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	hs_cache_releasedir(fs_of(req)->cache, dir_of(fi));
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	/* Directory changes are journaled as they happen; nothing to wait
	 * for beyond what the next file fsync makes durable. */
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	int r = hs_cache_statfs(fs_of(req)->cache, &sv);

	if (r < 0)
		return reply_err(req, r);
	fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes: not supported ----
 * ENOSYS, not ENOTSUP: the kernel then remembers that this filesystem has no
 * xattrs and answers EOPNOTSUPP (== ENOTSUP) itself.  Otherwise it would
 * ask for "security.capability" before every single write(). */

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	fuse_reply_err(req, ENOSYS);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	/* An empty list, so `cp -a` and `ls` see "no attributes". */
	if (size == 0)
		fuse_reply_xattr(req, 0);
	else
		fuse_reply_buf(req, NULL, 0);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOSYS);
}

const struct fuse_lowlevel_ops hs_fs_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
};
