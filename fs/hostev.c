/* SPDX-License-Identifier: MIT
 * fs/hostev.c - changes made on the host, told to the guest kernel: its
 * caches are invalidated, and the change is replayed through the mount so
 * inotify watchers in the guest see it.
 *
 * The cache reports a host change after it applied it (cache.h,
 * hs_host_change).  This file queues it and one thread of its own, the
 * replayer, does two things per change:
 *
 *   1. FUSE notifications, so the kernel forgets what it cached: the
 *      entry (inval_entry) for a name created, removed or moved, the
 *      attributes and page cache (inval_inode) of a changed file.
 *   2. The same change made through the mount by the replayer itself,
 *      which is what makes the kernel emit inotify events: mknod/mkdir/
 *      symlink for a creation (IN_CREATE), unlink/rmdir for a removal
 *      (IN_DELETE), rename for a move (IN_MOVED_FROM/IN_MOVED_TO with one
 *      cookie), and open for writing + ftruncate to the same size + close
 *      for a changed file (IN_MODIFY, IN_CLOSE_WRITE), chmod for new
 *      attributes (IN_ATTRIB).  FUSE requests
 *      carry the calling thread's id; ops.c recognises the replayer's and
 *      answers them from the cache as it now is, without changing
 *      anything or journaling anything (hs_hostev_*() below): the creation
 *      names the inode the host made, a removal or move just succeeds,
 *      and a lookup of a name it touches sees the name as it was before.
 *
 * A new mode, owner or times alone are replayed as a chmod to the mode
 * the file has (IN_ATTRIB); fs/ops.c answers a setattr of the replayer's
 * with the attributes the cache holds.
 *
 * Not delivered: the events of names inside a host folder the guest never
 * listed, events the host's inotify lost (queue overflow: the cache
 * checks everything again, silently), and IN_ACCESS/IN_OPEN of host
 * readers.
 *
 * The replayer works through a descriptor of the mount's root, checked to
 * be this very FUSE mount, so a replay never lands on the folder beneath
 * an unmounted mountpoint.  An open descriptor on the mount would make
 * the user's umount fail as busy, so (with CAP_SYS_ADMIN) the replayer
 * holds a detached clone of the mount instead (open_tree(2) with
 * OPEN_TREE_CLONE: a mount of the same file system attached nowhere, in
 * no namespace and no propagation group): the user's mount is never busy
 * because of it.  The clone keeps the FUSE connection alive, so the
 * replayer watches the mount table (poll on /proc/self/mountinfo) and,
 * once no mount of this file system is left, closes the clone: the
 * connection ends and the daemon exits as after any unmount.  Without the
 * privilege the root is opened for each burst and closed after it (a
 * umount at that very moment reports busy).
 *
 * A daemon waiting on its own mount cannot finish dying while that
 * request is unanswered: a SIGKILL that lands while a replay is in flight
 * leaves the process exiting until its FUSE connection is aborted
 * (/sys/fs/fuse/connections/N/abort).  So nothing touches the mount before
 * the first host change (SFTP mounts never do), and replays are short.
 */
#include "fs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/mount.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FUSE_MAGIC 0x65735546
#define HOSTEV_MAX 4096 /* changes queued; more are only invalidated later */

struct hev {
	struct hs_host_change hc;
	char *name, *newname;
};

struct hs_hostev {
	struct hs_fs *fs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct hev *q;
	size_t n, cap;
	int started, stop, busy;
	pthread_t thr;
	atomic_int tid;     /* the replayer's thread id, 0 before it runs */
	int efd;            /* eventfd: something queued, or stop */

	/* the replayer's own (thread only) */
	int minfo;          /* the mount table, watched while rfd is held */
	int rfd;            /* root of a detached clone of the mount, or -1 */
	dev_t dev;          /* this file system's device */
	int gone;           /* unmounted: nothing is replayed any more */
	int viewed;         /* clone_view() was tried */

	/* how the replayer's own requests are answered (lock) */
	struct {
		uint64_t parent;
		const char *name;
		uint64_t ino;     /* 0: the name does not exist */
		mode_t mode;
	} ov[2];
	int nov;
	uint64_t target;  /* what a replayed creation names */
};

static void hev_free(struct hev *e)
{
	free(e->name);
	free(e->newname);
}

static void wake(struct hs_hostev *h)
{
	uint64_t one = 1;

	if (write(h->efd, &one, sizeof(one)) < 0) {
		/* the counter is full: the replayer is awake anyway */
	}
}

void hs_hostev_push(void *arg, const struct hs_host_change *hc)
{
	struct hs_hostev *h = arg;
	struct hev *e;

	pthread_mutex_lock(&h->lock);
	if (!h->started || h->stop || h->n >= HOSTEV_MAX)
		goto out;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 32;

		e = realloc(h->q, cap * sizeof(*e));
		if (!e)
			goto out;
		h->q = e;
		h->cap = cap;
	}
	e = &h->q[h->n];
	e->hc = *hc;
	e->name = hc->name ? strdup(hc->name) : NULL;
	e->newname = hc->newname ? strdup(hc->newname) : NULL;
	if ((hc->name && !e->name) || (hc->newname && !e->newname)) {
		hev_free(e);
		goto out;
	}
	e->hc.name = e->name;
	e->hc.newname = e->newname;
	h->n++;
	wake(h);
out:
	pthread_mutex_unlock(&h->lock);
}

/* ---- answers to the replayer's own requests (ops.c) ---- */

int hs_hostev_mine(struct hs_fs *fs, fuse_req_t req)
{
	int tid;

	if (!fs->hostev)
		return 0;
	tid = atomic_load(&fs->hostev->tid);
	return tid && fuse_req_ctx(req)->pid == tid;
}

int hs_hostev_lookup(struct hs_fs *fs, uint64_t parent, const char *name,
		     struct stat *ret)
{
	struct hs_hostev *h = fs->hostev;
	uint64_t ino = 0;
	mode_t mode = 0;
	int i, found = 0;

	pthread_mutex_lock(&h->lock);
	for (i = 0; i < h->nov && !found; i++)
		if (h->ov[i].parent == parent && !strcmp(h->ov[i].name, name)) {
			found = 1;
			ino = h->ov[i].ino;
			mode = h->ov[i].mode;
		}
	pthread_mutex_unlock(&h->lock);
	if (!found)
		return 0;
	if (!ino)
		return -ENOENT;
	if (hs_cache_getattr(fs->cache, ino, ret) < 0) {
		/* gone from the cache already: the kernel only needs the
		 * inode number and type to remove or move the name */
		memset(ret, 0, sizeof(*ret));
		ret->st_ino = ino;
		ret->st_mode = mode;
		ret->st_nlink = 1;
	}
	hs_cache_ref(fs->cache, ino);
	return 1;
}

int hs_hostev_target(struct hs_fs *fs, struct stat *ret)
{
	struct hs_hostev *h = fs->hostev;
	uint64_t ino;
	int r;

	pthread_mutex_lock(&h->lock);
	ino = h->target;
	pthread_mutex_unlock(&h->lock);
	if (!ino)
		return -EEXIST;
	r = hs_cache_getattr(fs->cache, ino, ret);
	if (r == 0)
		hs_cache_ref(fs->cache, ino);
	return r;
}

/* ---- the replayer ---- */

static void set_overrides(struct hs_hostev *h, uint64_t p1, const char *n1,
			  uint64_t i1, mode_t m1, uint64_t p2, const char *n2,
			  uint64_t i2, mode_t m2, uint64_t target)
{
	pthread_mutex_lock(&h->lock);
	h->nov = 0;
	if (n1) {
		h->ov[h->nov].parent = p1;
		h->ov[h->nov].name = n1;
		h->ov[h->nov].ino = i1;
		h->ov[h->nov].mode = m1;
		h->nov++;
	}
	if (n2) {
		h->ov[h->nov].parent = p2;
		h->ov[h->nov].name = n2;
		h->ov[h->nov].ino = i2;
		h->ov[h->nov].mode = m2;
		h->nov++;
	}
	h->target = target;
	pthread_mutex_unlock(&h->lock);
}

/* "dir/name" relative to the mount's root for entry @name of @parent (or
 * @parent itself when @name is NULL); NULL when it has no name (any
 * more).  Never absolute: the replay works beneath the mount's root. */
static char *rel_path(struct hs_fs *fs, uint64_t parent, const char *name)
{
	const char *d;
	char *dir, *p;

	if (hs_cache_path(fs->cache, parent, &dir) < 0)
		return NULL;
	for (d = dir; *d == '/'; d++)
		;
	if (!name)
		p = d[0] ? strdup(d) : NULL;
	else if (asprintf(&p, "%s%s%s", d, d[0] ? "/" : "", name) < 0)
		p = NULL;
	free(dir);
	return p;
}

/* The root of this mount, or -1 (not mounted, or something else is
 * mounted there now). */
static int open_root(struct hs_fs *fs)
{
	struct statfs sfs;
	struct stat st;
	int fd = open(fs->mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || st.st_ino != FUSE_ROOT_ID ||
	    fstatfs(fd, &sfs) < 0 || sfs.f_type != FUSE_MAGIC) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Opens the folder of @rel ("a/b/name": "a/b") beneath the mount's root
 * @rfd without following any symbolic link or leaving the mount, and
 * points *@last at "name".  A replay acts on that descriptor and the
 * last name only, so a host symlink can never point it elsewhere. */
static int open_parent(int rfd, const char *rel, const char **last)
{
	const char *slash = strrchr(rel, '/');
	char *dir, *comp, *save = NULL;
	int fd, next;

	*last = slash ? slash + 1 : rel;
	if (!slash)
		return fcntl(rfd, F_DUPFD_CLOEXEC, 0);
	dir = strndup(rel, (size_t)(slash - rel));
	if (!dir)
		return -1;
#ifdef SYS_openat2
	{
		struct open_how how = {
			.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
				   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
		};

		fd = (int)syscall(SYS_openat2, rfd, dir, &how, sizeof(how));
		if (fd >= 0 || errno != ENOSYS) {
			free(dir);
			return fd;
		}
	}
#endif
	/* without openat2: one component at a time, none followed */
	fd = fcntl(rfd, F_DUPFD_CLOEXEC, 0);
	for (comp = strtok_r(dir, "/", &save); comp && fd >= 0;
	     comp = strtok_r(NULL, "/", &save)) {
		if (!strcmp(comp, "..") || !strcmp(comp, ".")) {
			close(fd);
			fd = -1;
			errno = EACCES;
			break;
		}
		next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW |
					O_CLOEXEC);
		close(fd);
		fd = next;
	}
	free(dir);
	return fd;
}

static void replay_created(struct hs_fs *fs, int rfd, const struct hs_host_change *hc)
{
	struct hs_hostev *h = fs->hostev;
	char *p = rel_path(fs, hc->parent, hc->name);
	const char *name;
	int dfd = -1, r;

	fuse_lowlevel_notify_inval_entry(fs->se, hc->parent, hc->name,
					 strlen(hc->name));
	if (!p || rfd < 0 || (dfd = open_parent(rfd, p, &name)) < 0)
		goto out;
	set_overrides(h, hc->parent, hc->name, 0, 0, 0, NULL, 0, 0, hc->ino);
	if (S_ISDIR(hc->mode))
		r = mkdirat(dfd, name, hc->mode & 07777);
	else if (S_ISLNK(hc->mode))
		r = symlinkat("-", dfd, name);
	else
		r = mknodat(dfd, name, (hc->mode & S_IFMT) | (hc->mode & 07777), 0);
	if (r < 0 && errno != EEXIST)
		hs_debug("replay: create '%s': %s", p, strerror(errno));
	set_overrides(h, 0, NULL, 0, 0, 0, NULL, 0, 0, 0);
out:
	if (dfd >= 0)
		close(dfd);
	free(p);
}

static void replay_removed(struct hs_fs *fs, int rfd, const struct hs_host_change *hc)
{
	struct hs_hostev *h = fs->hostev;
	char *p = rel_path(fs, hc->parent, hc->name);
	const char *name;
	int dfd;

	if (p && rfd >= 0 && (dfd = open_parent(rfd, p, &name)) >= 0) {
		set_overrides(h, hc->parent, hc->name, hc->ino, hc->mode, 0,
			      NULL, 0, 0, 0);
		if (unlinkat(dfd, name, S_ISDIR(hc->mode) ? AT_REMOVEDIR : 0) < 0 &&
		    errno != ENOENT)
			hs_debug("replay: remove '%s': %s", p, strerror(errno));
		set_overrides(h, 0, NULL, 0, 0, 0, NULL, 0, 0, 0);
		close(dfd);
	}
	/* whatever the replay did, the kernel must not keep the name */
	fuse_lowlevel_notify_inval_entry(fs->se, hc->parent, hc->name,
					 strlen(hc->name));
	free(p);
}

static void replay_moved(struct hs_fs *fs, int rfd, const struct hs_host_change *hc)
{
	struct hs_hostev *h = fs->hostev;
	char *from = rel_path(fs, hc->parent, hc->name);
	char *to = rel_path(fs, hc->newparent, hc->newname);
	const char *fname, *tname;
	int fdfd = -1, tdfd = -1;

	if (from && to && rfd >= 0 &&
	    (fdfd = open_parent(rfd, from, &fname)) >= 0 &&
	    (tdfd = open_parent(rfd, to, &tname)) >= 0) {
		set_overrides(h, hc->parent, hc->name, hc->ino, hc->mode,
			      hc->newparent, hc->newname, hc->replaced,
			      hc->mode & S_IFMT, 0);
		if (renameat(fdfd, fname, tdfd, tname) < 0)
			hs_debug("replay: move '%s' to '%s': %s", from, to,
				 strerror(errno));
		set_overrides(h, 0, NULL, 0, 0, 0, NULL, 0, 0, 0);
	}
	if (fdfd >= 0)
		close(fdfd);
	if (tdfd >= 0)
		close(tdfd);
	fuse_lowlevel_notify_inval_entry(fs->se, hc->parent, hc->name,
					 strlen(hc->name));
	fuse_lowlevel_notify_inval_entry(fs->se, hc->newparent, hc->newname,
					 strlen(hc->newname));
	free(from);
	free(to);
}

static void replay_changed(struct hs_fs *fs, int rfd, const struct hs_host_change *hc)
{
	const char *name;
	struct stat st;
	char *p = NULL;
	int fd, dfd = -1;

	fuse_lowlevel_notify_inval_inode(fs->se, hc->ino, 0, 0);
	if (rfd < 0 || !S_ISREG(hc->mode) ||
	    hs_cache_getattr(fs->cache, hc->ino, &st) < 0 ||
	    !(p = rel_path(fs, hc->ino, NULL)) ||
	    (dfd = open_parent(rfd, p, &name)) < 0)
		goto out;
	fd = openat(dfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		hs_debug("replay: change '%s': %s", p, strerror(errno));
		goto out;
	}
	if (ftruncate(fd, st.st_size) < 0)
		hs_debug("replay: change '%s': %s", p, strerror(errno));
	close(fd);
out:
	if (dfd >= 0)
		close(dfd);
	free(p);
}

/* New mode, owner or times: a chmod to the mode it has (IN_ATTRIB). */
static void replay_attrib(struct hs_fs *fs, int rfd, const struct hs_host_change *hc)
{
	const char *name;
	char *p = NULL;
	int dfd = -1;

	fuse_lowlevel_notify_inval_inode(fs->se, hc->ino, -1, 0);
	if (rfd < 0 || S_ISLNK(hc->mode) || !(p = rel_path(fs, hc->ino, NULL)) ||
	    (dfd = open_parent(rfd, p, &name)) < 0)
		goto out;
	if (fchmodat(dfd, name, hc->mode & 07777, 0) < 0)
		hs_debug("replay: attributes of '%s': %s", p, strerror(errno));
out:
	if (dfd >= 0)
		close(dfd);
	free(p);
}

static void replay(struct hs_fs *fs, int rfd, const struct hs_host_change *hc)
{
	switch (hc->kind) {
	case HS_HC_CREATED:
		replay_created(fs, rfd, hc);
		break;
	case HS_HC_REMOVED:
		replay_removed(fs, rfd, hc);
		break;
	case HS_HC_MOVED:
		replay_moved(fs, rfd, hc);
		break;
	case HS_HC_CHANGED:
		replay_changed(fs, rfd, hc);
		break;
	case HS_HC_ATTRIB:
		replay_attrib(fs, rfd, hc);
		break;
	}
}

/* Takes a detached clone of the mount to work through (see the top of
 * the file); keeps the per-burst descriptor scheme when that is not
 * possible. */
static void clone_view(struct hs_hostev *h)
{
	struct statfs sfs;
	struct stat st;
	int fd;

	h->minfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (h->minfo < 0)
		return;
	fd = (int)syscall(SYS_open_tree, AT_FDCWD, h->fs->mountpoint,
			  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0) {
		hs_debug("replay: no detached clone of the mount (%s); its "
			 "root is opened per burst", strerror(errno));
		close(h->minfo);
		h->minfo = -1;
		return;
	}
	if (fstat(fd, &st) < 0 || st.st_ino != FUSE_ROOT_ID ||
	    fstatfs(fd, &sfs) < 0 || sfs.f_type != FUSE_MAGIC) {
		/* not (or no longer) this file system there */
		close(fd);
		close(h->minfo);
		h->minfo = -1;
		h->gone = 1;
		return;
	}
	h->rfd = fd;
	h->dev = st.st_dev;
}

/* 1 while the mount table still has a mount of this file system. */
static int still_mounted(struct hs_hostev *h)
{
	char want[32], *buf = NULL, *line, *save = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;
	int found = 0;

	snprintf(want, sizeof(want), " %u:%u ", major(h->dev), minor(h->dev));
	if (lseek(h->minfo, 0, SEEK_SET) < 0)
		return 1;
	for (;;) {
		if (len + 4096 > cap) {
			char *b = realloc(buf, cap = cap ? cap * 2 : 65536);

			if (!b) {
				free(buf);
				return 1; /* cannot tell: keep serving */
			}
			buf = b;
		}
		n = read(h->minfo, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (n < 0) {
		free(buf);
		return 1;
	}
	buf[len] = '\0';
	/* "ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ..." */
	for (line = strtok_r(buf, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');

		sp = sp ? strchr(sp + 1, ' ') : NULL;
		found = sp && !strncmp(sp, want, strlen(want));
	}
	free(buf);
	return found;
}

/* The user unmounted the file system: drop the clone so the FUSE
 * connection ends. */
static void leave(struct hs_hostev *h)
{
	if (h->rfd >= 0)
		close(h->rfd);
	h->rfd = -1;
	h->gone = 1;
}

static void *replayer(void *arg)
{
	struct hs_hostev *h = arg;

	atomic_store(&h->tid, (int)gettid());
	for (;;) {
		struct pollfd pf[2] = { { .fd = h->efd, .events = POLLIN },
					{ .fd = h->minfo, .events = POLLPRI } };
		struct hev *q;
		uint64_t cnt;
		size_t n, i;
		int rfd;

		if (poll(pf, h->minfo >= 0 && !h->gone ? 2 : 1, -1) < 0 &&
		    errno != EINTR)
			break;
		if ((pf[0].revents & POLLIN) &&
		    read(h->efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			break;
		if ((pf[1].revents & (POLLPRI | POLLERR)) && !h->gone &&
		    !still_mounted(h))
			leave(h);
		pthread_mutex_lock(&h->lock);
		if (h->stop) {
			pthread_mutex_unlock(&h->lock);
			break;
		}
		q = h->q;
		n = h->n;
		h->q = NULL;
		h->n = h->cap = 0;
		h->busy = n > 0;
		pthread_mutex_unlock(&h->lock);
		if (!n)
			continue;
		/* not before the first host change: until then the daemon
		 * never waits on its own mount */
		if (!h->viewed) {
			h->viewed = 1;
			clone_view(h);
		}
		rfd = h->gone ? -1 : h->rfd >= 0 ? h->rfd : open_root(h->fs);
		for (i = 0; i < n; i++) {
			if (!h->stop && !h->gone)
				replay(h->fs, rfd, &q[i].hc);
			hev_free(&q[i]);
		}
		free(q);
		if (rfd >= 0 && rfd != h->rfd)
			close(rfd);
		pthread_mutex_lock(&h->lock);
		h->busy = 0;
		pthread_cond_broadcast(&h->cond);
		pthread_mutex_unlock(&h->lock);
	}
	leave(h);
	if (h->minfo >= 0)
		close(h->minfo);
	h->minfo = -1;
	return NULL;
}

struct hs_hostev *hs_hostev_new(struct hs_fs *fs)
{
	struct hs_hostev *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->fs = fs;
	h->minfo = h->rfd = -1;
	h->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->efd < 0) {
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	hs_cond_init_monotonic(&h->cond);
	return h;
}

int hs_hostev_start(struct hs_hostev *h)
{
	int r;

	pthread_mutex_lock(&h->lock);
	r = pthread_create(&h->thr, NULL, replayer, h);
	if (r == 0)
		h->started = 1;
	pthread_mutex_unlock(&h->lock);
	return -r;
}

void hs_hostev_stop(struct hs_hostev *h, int fuse_fd)
{
	struct timespec ts;
	int busy = 0;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = 1;
	wake(h);
	if (h->started) {
		/* A replay waits on the mount; with the FUSE loop gone
		 * nobody answers it, so after a while the connection is
		 * cut (the device descriptor becomes /dev/null), which
		 * fails the replay's call. */
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 2;
		while (h->busy && pthread_cond_timedwait(&h->cond, &h->lock, &ts) == 0)
			;
		busy = h->busy;
	}
	pthread_mutex_unlock(&h->lock);
	if (busy && fuse_fd >= 0) {
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);

		hs_warn("a replay of a host change is stuck; cutting the FUSE connection");
		if (nul >= 0) {
			dup2(nul, fuse_fd);
			close(nul);
		}
	}
	if (h->started)
		pthread_join(h->thr, NULL);
	h->started = 0;
}

void hs_hostev_free(struct hs_hostev *h)
{
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->n; i++)
		hev_free(&h->q[i]);
	free(h->q);
	close(h->efd);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h);
}
