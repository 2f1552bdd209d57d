/* SPDX-License-Identifier: MIT
 * tools/nullfs.c - the cost of FUSE itself, for tools/bench.
 *
 *   nullfs MOUNTPOINT
 *
 * A file system that keeps names, attributes and sizes in memory and
 * throws data away (reads give zeros), mounted with the FUSE settings
 * hostshare uses: the same capabilities (no kernel writeback cache,
 * readdirplus, 1 MiB writes), the same multithreaded loop and 20 s
 * attribute and entry timeouts.  What a workload costs on it is what any
 * FUSE file system that answers at once must cost on this machine: the
 * requests the kernel sends and the switches between the caller and the
 * daemon.  The bench shows it beside hostshare (the "fuse-null" system)
 * so the gap to the local disk splits into FUSE's part and hostshare's.
 * Not installed.  Stays in the foreground; unmount to stop it.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define TTL 20.0

struct node {
	struct node *parent, *next, *kids; /* siblings in parent->kids */
	char *name;
	char *target;                       /* symlinks */
	struct stat st;
	uint64_t lookups;
	int unlinked;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct node root;
static uint64_t next_ino = 2;

static struct node *node_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &root : (struct node *)(uintptr_t)ino;
}

static fuse_ino_t ino_of(struct node *n)
{
	return n == &root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct node *find(struct node *dir, const char *name)
{
	struct node *n;

	for (n = dir->kids; n; n = n->next)
		if (!strcmp(n->name, name))
			return n;
	return NULL;
}

static void detach(struct node *n)
{
	struct node **pp;

	for (pp = &n->parent->kids; *pp; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	n->parent = NULL;
	n->next = NULL;
}

static void attach(struct node *dir, struct node *n)
{
	n->parent = dir;
	n->next = dir->kids;
	dir->kids = n;
}

static void node_free(struct node *n)
{
	free(n->name);
	free(n->target);
	free(n);
}

static void stamp(struct stat *st, int m, int c)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (m)
		st->st_mtim = now;
	if (c)
		st->st_ctim = now;
}

/* The entry of @n (lock held); counts the lookup the reply gives. */
static void fill_entry(struct node *n, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	n->lookups++;
	e->ino = ino_of(n);
	e->attr = n->st;
	e->attr.st_ino = e->ino;
	e->attr_timeout = TTL;
	e->entry_timeout = TTL;
}

static void reply_entry(fuse_req_t req, struct node *n)
{
	struct fuse_entry_param e;

	fill_entry(n, &e);
	fuse_reply_entry(req, &e);
}

static struct node *new_node(struct node *dir, const char *name, mode_t mode,
			     const struct fuse_ctx *ctx)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n || !(n->name = strdup(name))) {
		free(n);
		return NULL;
	}
	n->st.st_mode = mode;
	n->st.st_nlink = S_ISDIR(mode) ? 2 : 1;
	n->st.st_uid = ctx->uid;
	n->st.st_gid = ctx->gid;
	n->st.st_blksize = 4096;
	n->st.st_ino = next_ino++;
	stamp(&n->st, 1, 1);
	n->st.st_atim = n->st.st_mtim;
	attach(dir, n);
	stamp(&dir->st, 1, 1);
	return n;
}

static void nf_init(void *userdata, struct fuse_conn_info *conn)
{
	unsigned want = FUSE_CAP_ASYNC_READ | FUSE_CAP_READDIRPLUS |
			FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_PARALLEL_DIROPS |
			FUSE_CAP_AUTO_INVAL_DATA;

	(void)userdata;
	conn->want |= conn->capable & want;
	conn->want &= ~(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_WRITEBACK_CACHE |
			FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_SPLICE_READ |
			FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	conn->max_write = 1024 * 1024;
	conn->time_gran = 1;
}

static void nf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *n;

	pthread_mutex_lock(&lock);
	n = find(node_of(parent), name);
	if (n) {
		reply_entry(req, n);
	} else {
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.entry_timeout = TTL; /* a negative entry */
		fuse_reply_entry(req, &e);
	}
	pthread_mutex_unlock(&lock);
}

static void nf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n = node_of(ino);

	pthread_mutex_lock(&lock);
	if (n != &root) {
		n->lookups -= nlookup;
		if (n->lookups == 0 && n->unlinked)
			node_free(n);
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_none(req);
}

static void nf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	pthread_mutex_lock(&lock);
	st = node_of(ino)->st;
	pthread_mutex_unlock(&lock);
	st.st_ino = ino;
	fuse_reply_attr(req, &st, TTL);
}

static void nf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct node *n = node_of(ino);
	struct stat st;

	(void)fi;
	pthread_mutex_lock(&lock);
	if (to_set & FUSE_SET_ATTR_MODE)
		n->st.st_mode = (n->st.st_mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID)
		n->st.st_uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		n->st.st_gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		n->st.st_size = attr->st_size;
		stamp(&n->st, 1, 0);
	}
	if (to_set & FUSE_SET_ATTR_ATIME)
		n->st.st_atim = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME)
		n->st.st_mtim = attr->st_mtim;
	if (to_set & (FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))
		stamp(&n->st, 1, 0);
	stamp(&n->st, 0, 1);
	st = n->st;
	pthread_mutex_unlock(&lock);
	st.st_ino = ino;
	fuse_reply_attr(req, &st, TTL);
}

static void make(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, const char *target, struct fuse_file_info *fi)
{
	struct node *dir = node_of(parent), *n;

	pthread_mutex_lock(&lock);
	if (find(dir, name)) {
		pthread_mutex_unlock(&lock);
		fuse_reply_err(req, EEXIST);
		return;
	}
	n = new_node(dir, name, mode, fuse_req_ctx(req));
	if (n && target && !(n->target = strdup(target))) {
		detach(n);
		node_free(n);
		n = NULL;
	}
	if (!n) {
		pthread_mutex_unlock(&lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (target)
		n->st.st_size = (off_t)strlen(target);
	if (S_ISDIR(mode))
		dir->st.st_nlink++;
	if (fi) {
		struct fuse_entry_param e;

		fill_entry(n, &e);
		fi->fh = 0;
		fuse_reply_create(req, &e, fi);
	} else {
		reply_entry(req, n);
	}
	pthread_mutex_unlock(&lock);
}

static void nf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	(void)rdev;
	make(req, parent, name, mode, NULL, NULL);
}

static void nf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	make(req, parent, name, S_IFDIR | (mode & 07777), NULL, NULL);
}

static void nf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	make(req, parent, name, S_IFLNK | 0777, link, NULL);
}

static void nf_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	make(req, parent, name, S_IFREG | (mode & 07777), NULL, fi);
}

static void nf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char *t;

	pthread_mutex_lock(&lock);
	t = node_of(ino)->target ? strdup(node_of(ino)->target) : NULL;
	pthread_mutex_unlock(&lock);
	if (t)
		fuse_reply_readlink(req, t);
	else
		fuse_reply_err(req, EINVAL);
	free(t);
}

static void drop(fuse_req_t req, fuse_ino_t parent, const char *name, int dir)
{
	struct node *d = node_of(parent), *n;
	int err = 0;

	pthread_mutex_lock(&lock);
	n = find(d, name);
	if (!n)
		err = ENOENT;
	else if (dir && !S_ISDIR(n->st.st_mode))
		err = ENOTDIR;
	else if (!dir && S_ISDIR(n->st.st_mode))
		err = EISDIR;
	else if (dir && n->kids)
		err = ENOTEMPTY;
	if (!err) {
		detach(n);
		if (dir)
			d->st.st_nlink--;
		stamp(&d->st, 1, 1);
		n->unlinked = 1;
		if (n->lookups == 0)
			node_free(n);
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_err(req, err);
}

static void nf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	drop(req, parent, name, 0);
}

static void nf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	drop(req, parent, name, 1);
}

static void nf_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct node *d = node_of(parent), *nd = node_of(newparent), *n, *old;
	char *nn = NULL;
	int err = 0;

	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&lock);
	n = find(d, name);
	old = find(nd, newname);
	if (!n)
		err = ENOENT;
	else if (old && old != n && S_ISDIR(old->st.st_mode) && old->kids)
		err = ENOTEMPTY;
	else if (!(nn = strdup(newname)))
		err = ENOMEM;
	if (!err && old != n) {
		if (old) {
			detach(old);
			old->unlinked = 1;
			if (old->lookups == 0)
				node_free(old);
		}
		detach(n);
		free(n->name);
		n->name = nn;
		attach(nd, n);
		stamp(&d->st, 1, 1);
		stamp(&nd->st, 1, 1);
	} else if (!err) {
		free(nn);
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_err(req, err);
}

static void nf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (fi->flags & O_TRUNC) {
		pthread_mutex_lock(&lock);
		node_of(ino)->st.st_size = 0;
		pthread_mutex_unlock(&lock);
	}
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

static void nf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	static const char zeros[65536];
	off_t end;

	(void)fi;
	pthread_mutex_lock(&lock);
	end = node_of(ino)->st.st_size;
	pthread_mutex_unlock(&lock);
	if (off >= end)
		size = 0;
	else if ((off_t)size > end - off)
		size = (size_t)(end - off);
	if (size > sizeof(zeros))
		size = sizeof(zeros);
	fuse_reply_buf(req, zeros, size);
}

static void nf_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct node *n = node_of(ino);

	(void)buf;
	(void)fi;
	pthread_mutex_lock(&lock);
	if (off + (off_t)size > n->st.st_size)
		n->st.st_size = off + (off_t)size;
	stamp(&n->st, 1, 1);
	pthread_mutex_unlock(&lock);
	fuse_reply_write(req, size);
}

static void nf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void nf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void nf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct node *d = node_of(ino), *n;
	char *buf = malloc(size);
	size_t used = 0;
	off_t i = 0;

	(void)fi;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&lock);
	for (n = d->kids; n; n = n->next, i++) {
		struct fuse_entry_param e;
		size_t k;

		if (i < off)
			continue;
		fill_entry(n, &e);
		k = fuse_add_direntry_plus(req, buf + used, size - used, n->name,
					   &e, i + 1);
		if (k > size - used) {
			n->lookups--; /* not given: no room */
			break;
		}
		used += k;
	}
	pthread_mutex_unlock(&lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void nf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = sv.f_bfree = sv.f_bavail = 1u << 30;
	sv.f_files = sv.f_ffree = 1u << 30;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
	.init = nf_init,
	.lookup = nf_lookup,
	.forget = nf_forget,
	.getattr = nf_getattr,
	.setattr = nf_setattr,
	.readlink = nf_readlink,
	.mknod = nf_mknod,
	.mkdir = nf_mkdir,
	.symlink = nf_symlink,
	.unlink = nf_unlink,
	.rmdir = nf_rmdir,
	.rename = nf_rename,
	.create = nf_create,
	.open = nf_open,
	.read = nf_read,
	.write = nf_write,
	.flush = nf_flush,
	.release = nf_release,
	.readdirplus = nf_readdirplus,
	.statfs = nf_statfs,
};

int main(int argc, char **argv)
{
	static char o[] = "-o", names[] = "fsname=nullfs,subtype=nullfs";
	char *fargv[] = { argv[0], o, names, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_loop_config *cfg;
	struct fuse_session *se;
	int r = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: nullfs MOUNTPOINT\n");
		return 2;
	}
	root.st.st_mode = S_IFDIR | 0755;
	root.st.st_nlink = 2;
	root.st.st_uid = getuid();
	root.st.st_gid = getgid();
	root.st.st_ino = FUSE_ROOT_ID;
	stamp(&root.st, 1, 1);
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		return 1;
	if (fuse_set_signal_handlers(se) == 0) {
		if (fuse_session_mount(se, argv[1]) == 0) {
			cfg = fuse_loop_cfg_create();
			if (cfg) {
				fuse_loop_cfg_set_max_threads(cfg, 10);
				fuse_loop_cfg_set_clone_fd(cfg, 0);
				r = fuse_session_loop_mt(se, cfg) ? 1 : 0;
				fuse_loop_cfg_destroy(cfg);
			}
			fuse_session_unmount(se);
		} else {
			fprintf(stderr, "nullfs: cannot mount on %s\n", argv[1]);
		}
		fuse_remove_signal_handlers(se);
	}
	fuse_session_destroy(se);
	return r;
}
