/* SPDX-License-Identifier: MIT
 * cache/cache.c - opening and closing a cache, and the namespace
 * operations of cache.h (lookup, mkdir, unlink, rename, ...).
 *
 * Every namespace change is one sqlite transaction that updates the guest
 * view (dentry/inode rows) and appends the journal row(s) the host needs, so
 * the two never disagree after a crash.  Names the guest has never seen are
 * looked up by listing the parent folder (one round trip for all its
 * entries); while the link is down, what the cache holds is the answer.
 *
 * Ownership: host ids are mapped when they enter (hs_cache_attr_in); with
 * idmap=user the login user's files appear as local_uid/local_gid, and
 * force_uid/force_gid override what getattr shows.
 *
 * Concurrency: any thread; db_lock is held for the length of one
 * transaction and never across network I/O.
 */
#include "cache_i.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define HS_FETCHERS 6

const char *hs_link_state_name(enum hs_link_state s)
{
	switch (s) {
	case HS_LINK_CONNECTED:
		return "connected";
	case HS_LINK_RECONNECTING:
		return "reconnecting";
	case HS_LINK_OFFLINE:
		return "offline";
	}
	return "unknown";
}

static uint32_t map_id_in(const struct hs_cache *c, uint32_t id, uint32_t remote,
			  uint32_t local)
{
	if (c->cfg.idmap_user && id == remote && remote != (uint32_t)-1)
		return local;
	return id;
}

static uint32_t map_id_out(const struct hs_cache *c, uint32_t id, uint32_t remote,
			   uint32_t local)
{
	if (c->cfg.idmap_user && id == local && remote != (uint32_t)-1)
		return remote;
	return id;
}

uint32_t hs_cache_id_out(struct hs_cache *c, uint32_t id, int group)
{
	return group ? map_id_out(c, id, c->remote_gid, c->cfg.local_gid) :
		       map_id_out(c, id, c->remote_uid, c->cfg.local_uid);
}

void hs_cache_attr_in(struct hs_cache *c, const struct hs_attr *a, struct hs_inode *i)
{
	i->mode = a->mode;
	i->uid = map_id_in(c, a->uid, c->remote_uid, c->cfg.local_uid);
	i->gid = map_id_in(c, a->gid, c->remote_gid, c->cfg.local_gid);
	i->nlink = a->nlink ? a->nlink : 1;
	i->size = a->size;
	i->atime = a->atime_ns;
	i->mtime = a->mtime_ns;
	i->ctime = a->mtime_ns;
}

void hs_cache_fill_stat(struct hs_cache *c, const struct hs_inode *i, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)i->ino;
	st->st_mode = i->mode;
	/* a folder removed or replaced while open keeps 0, as a file does */
	st->st_nlink = S_ISDIR(i->mode) && i->nlink ? HS_MAX(i->nlink, 2)
						     : i->nlink;
	st->st_uid = c->cfg.force_uid >= 0 ? (uid_t)c->cfg.force_uid : i->uid;
	st->st_gid = c->cfg.force_gid >= 0 ? (gid_t)c->cfg.force_gid : i->gid;
	st->st_size = (off_t)i->size;
	st->st_blksize = 1 << 20;
	st->st_blocks = (blkcnt_t)((i->size + 511) / 512);
	st->st_atim.tv_sec = i->atime / HS_NSEC_PER_SEC;
	st->st_atim.tv_nsec = i->atime % HS_NSEC_PER_SEC;
	st->st_mtim.tv_sec = i->mtime / HS_NSEC_PER_SEC;
	st->st_mtim.tv_nsec = i->mtime % HS_NSEC_PER_SEC;
	st->st_ctim.tv_sec = i->ctime / HS_NSEC_PER_SEC;
	st->st_ctim.tv_nsec = i->ctime % HS_NSEC_PER_SEC;
}

/* ---- open / close ---- */

static int default_dial(void *arg, hs_deadline_t dl, struct hs_transport **ret,
			char *err, size_t errlen)
{
	return hs_tr_open(arg, dl, ret, err, errlen);
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = strdup(path), *s;
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (s = p + 1; ; s++) {
		if (*s == '/' || !*s) {
			char save = *s;

			*s = 0;
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				r = -errno;
				break;
			}
			*s = save;
			if (!save)
				break;
		}
	}
	free(p);
	return r;
}

static int take_lock(struct hs_cache *c, char *err, size_t errlen)
{
	char path[4096 + 8], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/lock", c->dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;

		snprintf(err, errlen, "cannot open cache folder '%s': %s", c->dir,
			 strerror(e));
		return -e;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		buf[strcspn(buf, "\n")] = 0;
		snprintf(err, errlen, "cache folder '%s' is in use by another "
			 "hostshare (pid %s)", c->dir, buf[0] ? buf : "?");
		close(fd);
		return -EBUSY;
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		/* the pid is only informative */
	}
	c->lockfd = fd;
	return 0;
}

static int ensure_root(struct hs_cache *c, int online, char *err, size_t errlen)
{
	static const char sql[] =
		"INSERT OR IGNORE INTO inode(ino, mode, uid, gid, nlink, hpath, atime,"
		" mtime, ctime) VALUES(1, ?, ?, ?, 2, '/', ?, ?, ?)";
	struct hs_transport *t;
	struct hs_attr a = { 0 };
	struct hs_inode root;
	sqlite3_stmt *st;
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, HS_ROOT_INO, &root);
	pthread_mutex_unlock(&c->db_lock);
	if (r == 0) {
		int listed = root.listed_at != -2;

		hs_inode_release(&root);
		if (!online && !listed) {
			snprintf(err, errlen, "host unreachable and the cache of "
				 "this folder is empty");
			return -EHOSTUNREACH;
		}
		return 0;
	}
	if (!online)
		return -EHOSTUNREACH; /* caller reports the dial error */
	r = hs_link_get(c->link, HS_SLOT_FETCH, 0, hs_deadline_in_ms(c->cfg.op_timeout_ms), &t);
	if (r == 0) {
		r = hs_tr_lstat(t, "/", &a, hs_deadline_in_ms(c->cfg.op_timeout_ms));
		hs_link_put(c->link, t, r);
	}
	if (r < 0) {
		snprintf(err, errlen, "cannot read the remote folder: %s", strerror(-r));
		return r;
	}
	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (!st) {
		r = -EIO;
	} else {
		sqlite3_bind_int64(st, 1, S_IFDIR | (a.mode & 07777));
		sqlite3_bind_int64(st, 2, map_id_in(c, a.uid, c->remote_uid, c->cfg.local_uid));
		sqlite3_bind_int64(st, 3, map_id_in(c, a.gid, c->remote_gid, c->cfg.local_gid));
		sqlite3_bind_int64(st, 4, a.atime_ns);
		sqlite3_bind_int64(st, 5, a.mtime_ns);
		sqlite3_bind_int64(st, 6, a.mtime_ns);
		r = sqlite3_step(st) == SQLITE_DONE ? 0 : hs_meta_errno(c, sqlite3_errcode(c->db));
		sqlite3_reset(st);
	}
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		snprintf(err, errlen, "cannot write the cache database in '%s'", c->dir);
	return r;
}

/* A cache folder that holds data but no database (missing, or emptied by
 * a crash of the disk or a hand) would start afresh and forget what the
 * host is owed without a word: refused, as a corrupt one is. */
static int check_db_present(struct hs_cache *c, char *err, size_t errlen)
{
	char path[4096 + 16], note[4096 + 128];
	struct dirent *de;
	struct stat st;
	unsigned i;
	int data = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/meta.db", c->dir);
	if (stat(path, &st) == 0 && st.st_size > 0)
		return 0;
	for (i = 0; i < 256 && !data; i++) {
		snprintf(path, sizeof(path), "%s/%02x", c->datadir, i);
		d = opendir(path);
		if (!d)
			continue;
		while (!data && (de = readdir(d)))
			data = de->d_name[0] != '.';
		closedir(d);
	}
	if (!data)
		return 0;
	hs_cache_owed_note(c->dir, note, sizeof(note));
	snprintf(err, errlen, "cache database '%s/meta.db' is missing or empty "
		 "but the folder holds cached files; %s; to start over with an "
		 "empty cache, move the folder '%s' aside (its files stay in its "
		 "data/)", c->dir, note, c->dir);
	return -EIO;
}

/* Deletes unlinked inodes nothing refers to any more, and the cached data
 * of unlinked files whose removal is still to be sent (left by a crash). */
static void collect_garbage(struct hs_cache *c)
{
	static const char sql[] =
		"SELECT ino FROM inode WHERE nlink=0 AND ino<>1 AND"
		" (local=0 OR present IS NOT NULL) AND"
		" NOT EXISTS (SELECT 1 FROM dentry WHERE dentry.ino=inode.ino) AND"
		" NOT EXISTS (SELECT 1 FROM journal WHERE journal.ino=inode.ino AND"
		" op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) "))";
	sqlite3_stmt *st;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0, i;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (n == cap) {
			void *nv;

			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[n++] = (uint64_t)sqlite3_column_int64(st, 0);
	}
	if (st)
		sqlite3_reset(st);
	hs_meta_exec(c, "DELETE FROM inode WHERE nlink=0 AND local=0 AND ino<>1 AND"
		     " NOT EXISTS (SELECT 1 FROM dentry WHERE dentry.ino=inode.ino)");
	hs_meta_exec(c, "UPDATE inode SET present=NULL, dirty=NULL, trunc_min=-1"
		     " WHERE nlink=0 AND ino<>1 AND present IS NOT NULL AND"
		     " NOT EXISTS (SELECT 1 FROM dentry WHERE dentry.ino=inode.ino) AND"
		     " NOT EXISTS (SELECT 1 FROM journal WHERE journal.ino=inode.ino AND"
		     " op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) "))");
	pthread_mutex_unlock(&c->db_lock);
	for (i = 0; i < n; i++)
		hs_file_remove_data(c, v[i]);
	free(v);
}

static int ping(void *arg, struct hs_transport *t)
{
	struct hs_cache *c = arg;
	struct hs_statvfs sv;
	int r;

	hs_reserve_refill(c); /* the disk may have room again */
	if (t->caps & HS_TR_CAP_STATVFS) {
		r = hs_tr_statvfs(t, "/", &sv, hs_deadline_in_ms(c->cfg.op_timeout_ms));
		if (r == 0) {
			pthread_mutex_lock(&c->stat_lock);
			memset(&c->statfs, 0, sizeof(c->statfs));
			c->statfs.f_bsize = sv.bsize;
			c->statfs.f_frsize = sv.frsize ? sv.frsize : sv.bsize;
			c->statfs.f_blocks = sv.blocks;
			c->statfs.f_bfree = sv.bfree;
			c->statfs.f_bavail = sv.bavail;
			c->statfs.f_files = sv.files;
			c->statfs.f_ffree = sv.ffree;
			c->statfs.f_favail = sv.favail;
			c->statfs.f_namemax = sv.namemax ? sv.namemax : 255;
			c->have_statfs = 1;
			pthread_mutex_unlock(&c->stat_lock);
		}
		return r == -ENOTSUP ? 0 : r;
	}
	return hs_tr_ping(t, hs_deadline_in_ms(c->cfg.op_timeout_ms));
}

static void global_init(void)
{
	hs_tr_global_init();
}

int hs_cache_open(const struct hs_cache_config *cfg, struct hs_cache **ret,
		  char *err, size_t errlen)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct hs_cache *c;
	struct hs_transport *t;
	int r, online;

	pthread_once(&once, global_init);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->cfg = *cfg;
	c->lockfd = -1;
	if (c->cfg.op_timeout_ms <= 0)
		c->cfg.op_timeout_ms = 10000;
	if (c->cfg.attr_timeout_ms < 0)
		c->cfg.attr_timeout_ms = 20000;
	c->dir = strdup(cfg->dir);
	c->source = strdup(cfg->source ? cfg->source : "");
	if (!c->dir || !c->source || asprintf(&c->datadir, "%s/data", cfg->dir) < 0) {
		free(c->dir);
		free(c->source);
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->db_lock, NULL);
	pthread_mutex_init(&c->files_lock, NULL);
	pthread_mutex_init(&c->flush_lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_cond_init(&c->pool_cond, NULL);
	pthread_cond_init(&c->pool_done, NULL);
	pthread_mutex_init(&c->stat_lock, NULL);
	pthread_mutex_init(&c->kver_lock, NULL);
	hs_cond_init_monotonic(&c->flush_cond);
	hs_cond_init_monotonic(&c->done_cond);
	hs_bg_init(c);
	hs_notify_init(c);
	hs_stream_init(c);
	sem_init(&c->fetch_sem, 0, HS_FETCHERS);
	c->remote_uid = c->remote_gid = (uint32_t)-1;

	r = mkdir_p(c->datadir, 0700);
	if (r < 0) {
		snprintf(err, errlen, "cannot create cache folder '%s': %s", c->dir,
			 strerror(-r));
		goto fail;
	}
	chmod(c->dir, 0700);
	r = take_lock(c, err, errlen);
	if (r < 0)
		goto fail;
	r = check_db_present(c, err, errlen);
	if (r < 0)
		goto fail;
	hs_reserve_check(c); /* a full disk: the database takes its reserve */
	r = hs_meta_open(c, err, errlen);
	if (r == 0)
		r = hs_journal_check_data(c);
	if (r < 0)
		goto fail;
	hs_reserve_refill(c);
	r = hs_link_new(cfg->dial ? cfg->dial : default_dial,
			cfg->dial ? cfg->dial_arg : (void *)cfg->tr,
			cfg->connect_timeout_ms, cfg->retry_min_ms,
			cfg->tr && cfg->tr->keepalive_s > 0 ? cfg->tr->keepalive_s : 15,
			1 + HS_MAX(1, HS_MIN(cfg->flush_connections,
					     HS_FLUSH_CONNECTIONS_MAX)),
			&c->link);
	if (r < 0)
		goto fail;
	hs_link_on_connect(c->link, hs_notify_on_connect, c);
	r = hs_link_connect(c->link, HS_SLOT_FETCH, err, errlen);
	online = r == 0;
	/* a host whose key known_hosts does not vouch for (a mismatch, or
	 * none under StrictHostKeyChecking=yes: -EPERM) is no outage: the mount
	 * fails with that line, populated cache or not (offline it started
	 * without a word, and every redial failed the same way) */
	if (!online && (!cfg->allow_offline || r == -EPERM))
		goto fail;
	hs_link_remote_ids(c->link, &c->remote_uid, &c->remote_gid);
	{
		char err2[256] = "";

		r = ensure_root(c, online, err2, sizeof(err2));
		if (r < 0) {
			if (err2[0])
				snprintf(err, errlen, "%s", err2);
			goto fail;
		}
	}
	if (!online)
		hs_warn("host unreachable (%s); serving the cache offline", err);
	if (online && hs_link_get(c->link, HS_SLOT_FETCH, 0, HS_DEADLINE_NEVER, &t) == 0) {
		hs_link_put(c->link, t, ping(c, t));
	}
	collect_garbage(c);
	r = hs_flusher_start(c);
	if (r == 0)
		r = hs_notify_start(c);
	if (r == 0)
		r = hs_link_start(c->link, ping, c);
	if (r < 0) {
		snprintf(err, errlen, "cannot start threads: %s", strerror(-r));
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	hs_cache_close(c);
	return r;
}

void hs_cache_close(struct hs_cache *c)
{
	size_t i;

	if (!c)
		return;
	hs_notify_stop(c);
	hs_bg_stop(c);
	hs_stream_stop(c);
	hs_flusher_stop(c);
	hs_link_free(c->link);
	hs_notify_destroy(c);
	for (i = 0; i < HS_ARRAY_SIZE(c->files); i++) {
		while (c->files[i]) {
			struct hs_file *f = c->files[i];

			f->refs = 1;
			hs_file_put(c, f);
		}
	}
	while (c->dirs)
		hs_cache_releasedir(c, c->dirs);
	hs_meta_close(c);
	for (i = 0; i < HS_ARRAY_SIZE(c->hchanges); i++)
		free(c->hchanges[i].dir);
	if (c->lockfd >= 0)
		close(c->lockfd);
	sem_destroy(&c->fetch_sem);
	pthread_mutex_destroy(&c->db_lock);
	pthread_mutex_destroy(&c->files_lock);
	pthread_mutex_destroy(&c->flush_lock);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_cond_destroy(&c->pool_cond);
	pthread_cond_destroy(&c->pool_done);
	pthread_mutex_destroy(&c->stat_lock);
	pthread_mutex_destroy(&c->kver_lock);
	pthread_cond_destroy(&c->flush_cond);
	pthread_cond_destroy(&c->done_cond);
	hs_bg_destroy(c);
	hs_stream_destroy(c);
	free(c->dir);
	free(c->datadir);
	free(c->source);
	free(c);
}

/* ---- helpers for the namespace operations ---- */

static int check_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if (n > 255)
		return -ENAMETOOLONG;
	if (!strncmp(name, ".hs-tmp.", 8) || !strncmp(name, ".hs-replaced.", 13) ||
	    !strncmp(name, ".hs-doctor.", 11))
		return -EACCES; /* reserved for our own temporary names */
	return 0;
}

static int getattr_locked(struct hs_cache *c, uint64_t ino, struct stat *st)
{
	struct hs_inode x;
	int r = hs_meta_get_inode(c, ino, &x);

	if (r < 0)
		return r;
	hs_cache_fill_stat(c, &x, st);
	hs_inode_release(&x);
	return 0;
}

/* A folder's link count: 2 + its subfolders (as far as the cache knows
 * them; SFTP does not say). */
static int dir_nlink(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] =
		"SELECT count(*) FROM dentry d JOIN inode i ON d.ino=i.ino"
		" WHERE d.parent=? AND (i.mode & 61440) = 16384";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int n = 0;

	if (!st)
		return 2;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_reset(st);
	return 2 + n;
}

static int finish_stat(struct hs_cache *c, uint64_t ino, struct stat *st)
{
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = getattr_locked(c, ino, st);
	if (r == 0 && S_ISDIR(st->st_mode) && st->st_nlink)
		st->st_nlink = (nlink_t)dir_nlink(c, ino);
	pthread_mutex_unlock(&c->db_lock);
	if (r == 0 && S_ISREG(st->st_mode))
		hs_file_overlay(c, ino, st);
	return r;
}

/* Guest path of @name in @parent, malloc'ed. */
static int child_path(struct hs_cache *c, uint64_t parent, const char *name,
		      char **ret)
{
	char *pp;
	int r = hs_meta_path(c, parent, &pp);

	if (r < 0)
		return r;
	r = asprintf(ret, "%s%s%s", pp, strcmp(pp, "/") ? "/" : "", name) < 0 ?
		    -ENOMEM : 0;
	free(pp);
	return r;
}

static int need_dir(struct hs_cache *c, uint64_t ino)
{
	struct hs_inode x;
	int r = hs_meta_get_inode(c, ino, &x);

	if (r < 0)
		return r;
	r = S_ISDIR(x.mode) ? 0 : -ENOTDIR;
	hs_inode_release(&x);
	return r;
}

/* Sets @ino's ctime, and its mtime too with @mtime_too, to now. */
static int touch(struct hs_cache *c, uint64_t ino, int mtime_too)
{
	static const char both[] = "UPDATE inode SET mtime=?1, ctime=?1 WHERE ino=?2";
	static const char ctime_only[] = "UPDATE inode SET ctime=?1 WHERE ino=?2";
	sqlite3_stmt *st = hs_meta_prepare(c, mtime_too ? both : ctime_only);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, hs_wall_ns());
	sqlite3_bind_int64(st, 2, (int64_t)ino);
	return hs_meta_step(c, st);
}

/* A folder whose entries changed. */
static int touch_dir(struct hs_cache *c, uint64_t dir)
{
	return touch(c, dir, 1);
}

static int set_nlink(struct hs_cache *c, uint64_t ino, uint32_t nlink)
{
	static const char sql[] = "UPDATE inode SET nlink=?, ctime=? WHERE ino=?";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, nlink);
	sqlite3_bind_int64(st, 2, hs_wall_ns());
	sqlite3_bind_int64(st, 3, (int64_t)ino);
	return hs_meta_step(c, st);
}

/* Makes sure the listing of @dir is usable for deciding "no such name". */
static int prepare_dir(struct hs_cache *c, uint64_t dir, hs_deadline_t dl)
{
	return hs_dir_refresh(c, dir, 1, dl);
}

/* ---- lookups and attributes ---- */

int hs_cache_lookup(struct hs_cache *c, uint64_t parent, const char *name,
		    struct stat *ret, hs_deadline_t dl)
{
	uint64_t ino;
	int r;

	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	r = hs_dir_refresh(c, parent, 1, dl);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_lookup(c, parent, name, &ino);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	return finish_stat(c, ino, ret);
}

void hs_cache_ref(struct hs_cache *c, uint64_t ino)
{
	/* Inodes live in the database for as long as they have a name or
	 * pending work; the kernel's lookup count needs no bookkeeping. */
}

void hs_cache_forget(struct hs_cache *c, uint64_t ino, uint64_t nlookup)
{
}

int hs_cache_getattr(struct hs_cache *c, uint64_t ino, struct stat *ret)
{
	return finish_stat(c, ino, ret);
}

int hs_cache_setattr(struct hs_cache *c, uint64_t ino, const struct stat *attr,
		     unsigned to_set, struct hs_handle *h, struct stat *ret,
		     hs_deadline_t dl)
{
	struct hs_jentry e;
	struct hs_inode x;
	struct hs_file *f = NULL;
	int64_t now = hs_wall_ns(), mt = -1, at = -1;
	/* times before 1970 are negative: whether one is set is a flag */
	int set_mt = !!(to_set & (HS_SET_MTIME | HS_SET_MTIME_NOW));
	int set_at = !!(to_set & (HS_SET_ATIME | HS_SET_ATIME_NOW));
	int r, deferred;

	if (to_set & HS_SET_MTIME_NOW)
		mt = now;
	else if (to_set & HS_SET_MTIME)
		mt = attr->st_mtim.tv_sec * HS_NSEC_PER_SEC + attr->st_mtim.tv_nsec;
	if (to_set & HS_SET_ATIME_NOW)
		at = now;
	else if (to_set & HS_SET_ATIME)
		at = attr->st_atim.tv_sec * HS_NSEC_PER_SEC + attr->st_atim.tv_nsec;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &x);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	if ((to_set & HS_SET_SIZE) && S_ISDIR(x.mode)) {
		hs_inode_release(&x);
		return -EISDIR;
	}
	if (S_ISREG(x.mode) && (to_set & (HS_SET_SIZE | HS_SET_MTIME | HS_SET_MTIME_NOW))) {
		f = h ? h->f : hs_file_get(c, ino);
		if (!f) {
			hs_inode_release(&x);
			return -ENOMEM;
		}
		pthread_mutex_lock(&f->lock);
		r = hs_file_load(c, f);
		if (r == 0 && (to_set & HS_SET_SIZE))
			r = hs_file_truncate(c, f, (uint64_t)attr->st_size);
		if (r == 0 && set_mt) {
			f->mtime = mt;
			f->ctime = now;
			f->attr_dirty = 1;
		}
		if (r == 0)
			r = hs_file_persist(c, f);
		pthread_mutex_unlock(&f->lock);
		if (!h)
			hs_file_put(c, f);
		if (r < 0) {
			hs_inode_release(&x);
			return r;
		}
	}
	hs_inode_release(&x);
	/* Through a descriptor, or of a file open for writing (tar sets
	 * owner, mode and times of each file it extracts before closing
	 * it, by path as the kernel sends fchown/fchmod/futimens): made
	 * durable by the file's close, like its data.  Not a truncate by
	 * path: the handle that makes the file "open" may be one already
	 * closed whose release is still on its way (the kernel sends it
	 * after close() returned), and no close would commit it then. */
	deferred = h || (hs_file_writing(c, ino) && !(to_set & HS_SET_SIZE));

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r < 0)
		goto out;
	r = hs_meta_get_inode(c, ino, &x);
	if (r < 0)
		goto out_rollback;
	memset(&e, 0, sizeof(e));
	e.op = HS_J_SETATTR;
	e.ino = ino;
	/* unchanged values send nothing (tar and cp -p set what is there) */
	if ((to_set & HS_SET_MODE) &&
	    (x.mode & 07777) != (uint32_t)(attr->st_mode & 07777)) {
		x.mode = (x.mode & S_IFMT) | (attr->st_mode & 07777);
		e.attr.valid |= HS_ATTR_MODE;
		e.attr.mode = x.mode;
	}
	if ((to_set & HS_SET_UID) && x.uid != attr->st_uid) {
		x.uid = attr->st_uid;
		e.attr.valid |= HS_ATTR_UID;
		e.attr.uid = map_id_out(c, x.uid, c->remote_uid, c->cfg.local_uid);
	}
	if ((to_set & HS_SET_GID) && x.gid != attr->st_gid) {
		x.gid = attr->st_gid;
		e.attr.valid |= HS_ATTR_GID;
		e.attr.gid = map_id_out(c, x.gid, c->remote_gid, c->cfg.local_gid);
	}
	if (set_at) {
		x.atime = at;
		e.attr.valid |= HS_ATTR_ATIME | HS_ATTR_MTIME;
	}
	if (set_mt) {
		if (!S_ISREG(x.mode))
			x.mtime = mt;
		e.attr.valid |= HS_ATTR_ATIME | HS_ATTR_MTIME;
	}
	if (!S_ISREG(x.mode) || !(to_set & (HS_SET_SIZE | HS_SET_MTIME | HS_SET_MTIME_NOW)))
		x.ctime = now;
	r = hs_meta_put_inode(c, &x);
	/* SFTP's setstat follows symlinks: a link's own attributes stay in
	 * the guest */
	if (r == 0 && e.attr.valid && !S_ISLNK(x.mode)) {
		/* times go as a pair; the flusher fills them at replay */
		int skip = hs_journal_has_pending_create(c, ino);

		if (skip == 0 && x.nlink > 0)
			r = hs_meta_path(c, ino, &e.path);
		if (r == 0 && skip == 0 && e.path)
			r = hs_journal_append(c, &e);
		else if (skip < 0)
			r = skip;
	}
	hs_jentry_release(&e);
	hs_inode_release(&x);
	if (r < 0)
		goto out_rollback;
	r = deferred ? hs_meta_commit_deferred(c) : hs_meta_commit(c);
	if (r < 0)
		goto out_rollback;
	pthread_mutex_unlock(&c->db_lock);
	return finish_stat(c, ino, ret);
out_rollback:
	hs_meta_rollback(c);
out:
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

int hs_cache_readlink(struct hs_cache *c, uint64_t ino, char *buf, size_t size,
		      hs_deadline_t dl)
{
	static const char get[] = "SELECT mode, target, hpath FROM inode WHERE ino=?";
	static const char put[] = "UPDATE inode SET target=? WHERE ino=?";
	struct hs_transport *t;
	char *hpath = NULL, target[4096];
	sqlite3_stmt *st;
	int r, rc;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, get);
	if (!st) {
		pthread_mutex_unlock(&c->db_lock);
		return -EIO;
	}
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		pthread_mutex_unlock(&c->db_lock);
		return rc == SQLITE_DONE ? -ENOENT : hs_meta_errno(c, rc);
	}
	if (!S_ISLNK(sqlite3_column_int64(st, 0))) {
		sqlite3_reset(st);
		pthread_mutex_unlock(&c->db_lock);
		return -EINVAL;
	}
	if (sqlite3_column_text(st, 1)) {
		snprintf(buf, size, "%s", sqlite3_column_text(st, 1));
		sqlite3_reset(st);
		pthread_mutex_unlock(&c->db_lock);
		return 0;
	}
	if (sqlite3_column_text(st, 2))
		hpath = strdup((const char *)sqlite3_column_text(st, 2));
	sqlite3_reset(st);
	pthread_mutex_unlock(&c->db_lock);
	if (!hpath)
		return -EIO;
	r = hs_link_get(c->link, HS_SLOT_FETCH, 1, dl, &t);
	if (r == 0) {
		r = hs_tr_readlink(t, hpath, target, sizeof(target), dl);
		hs_link_put(c->link, t, r);
	}
	free(hpath);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, put);
	if (st) {
		sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)ino);
		sqlite3_step(st);
		sqlite3_reset(st);
	}
	pthread_mutex_unlock(&c->db_lock);
	snprintf(buf, size, "%s", target);
	return 0;
}

/* ---- creating names ---- */

/* Creates inode + dentry + journal row for a new object under @parent.
 * Caller holds db_lock inside a transaction. */
static int new_object(struct hs_cache *c, uint64_t parent, const char *name,
		      uint32_t mode, const char *target, int op, uint64_t *ret_ino)
{
	static const char set_target[] = "UPDATE inode SET target=? WHERE ino=?";
	struct hs_inode n;
	struct hs_jentry e;
	sqlite3_stmt *st;
	struct hs_inode pi;
	uint64_t existing;
	int64_t now = hs_wall_ns();
	int r;

	r = hs_meta_get_inode(c, parent, &pi);
	if (r < 0)
		return r;
	hs_inode_release(&pi);
	if (!S_ISDIR(pi.mode))
		return -ENOTDIR;
	r = hs_meta_lookup(c, parent, name, &existing);
	if (r == 0)
		return -EEXIST;
	if (r != -ENOENT)
		return r;
	memset(&n, 0, sizeof(n));
	n.mode = mode;
	n.uid = c->cfg.idmap_user || c->remote_uid == (uint32_t)-1 ?
			c->cfg.local_uid : c->remote_uid;
	n.gid = c->cfg.idmap_user || c->remote_gid == (uint32_t)-1 ?
			c->cfg.local_gid : c->remote_gid;
	if (pi.mode & S_ISGID) {
		/* a setgid folder, as the kernel's own file systems do it (the
		 * kernel leaves this to a FUSE file system): its group for
		 * everything made in it, and its setgid bit for folders */
		n.gid = pi.gid;
		if (S_ISDIR(mode))
			n.mode |= S_ISGID;
	}
	n.nlink = S_ISDIR(mode) ? 2 : 1;
	n.size = target ? strlen(target) : 0;
	n.atime = n.mtime = n.ctime = now;
	n.host_size = n.host_mtime = -1;
	n.listed_at = S_ISDIR(mode) ? -1 : -2;
	r = hs_meta_new_inode(c, &n);
	if (r == 0)
		r = hs_meta_add_dentry(c, parent, name, n.ino);
	if (r == 0 && target && (st = hs_meta_prepare(c, set_target))) {
		sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)n.ino);
		if (sqlite3_step(st) != SQLITE_DONE)
			r = -EIO;
		sqlite3_reset(st);
	}
	if (r < 0)
		return r;
	memset(&e, 0, sizeof(e));
	e.op = op;
	e.ino = n.ino;
	e.attr.mode = n.mode;
	r = child_path(c, parent, name, &e.path);
	if (r == 0 && target) {
		e.path2 = strdup(target);
		if (!e.path2)
			r = -ENOMEM;
	}
	if (r == 0)
		r = hs_journal_append(c, &e);
	hs_jentry_release(&e);
	if (r == 0)
		r = touch_dir(c, parent);
	*ret_ino = n.ino;
	return r;
}

static int create_object(struct hs_cache *c, uint64_t parent, const char *name,
			 uint32_t mode, const char *target, int op,
			 struct stat *ret, hs_deadline_t dl)
{
	uint64_t ino = 0;
	int r = check_name(name);

	if (r < 0)
		return r;
	r = prepare_dir(c, parent, dl);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r == 0) {
		r = new_object(c, parent, name, mode, target, op, &ino);
		/* a new file is made durable by its close, like its data */
		if (r == 0)
			r = op == HS_J_CREATE ? hs_meta_commit_deferred(c) :
						hs_meta_commit(c);
		if (r < 0)
			hs_meta_rollback(c);
	}
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	return finish_stat(c, ino, ret);
}

int hs_cache_mknod(struct hs_cache *c, uint64_t parent, const char *name,
		   mode_t mode, dev_t rdev, struct stat *ret, hs_deadline_t dl)
{
	int r;

	if (!S_ISREG(mode))
		return -EPERM; /* SFTP cannot make devices, fifos or sockets */
	r = create_object(c, parent, name, S_IFREG | (mode & 07777), NULL,
			  HS_J_CREATE, ret, dl);
	if (r == 0) {
		/* no close(2) follows a mknod(2): commit now */
		pthread_mutex_lock(&c->db_lock);
		r = hs_meta_flush(c);
		pthread_mutex_unlock(&c->db_lock);
	}
	return r;
}

int hs_cache_mkdir(struct hs_cache *c, uint64_t parent, const char *name,
		   mode_t mode, struct stat *ret, hs_deadline_t dl)
{
	return create_object(c, parent, name, S_IFDIR | (mode & 07777), NULL,
			     HS_J_MKDIR, ret, dl);
}

int hs_cache_symlink(struct hs_cache *c, uint64_t parent, const char *name,
		     const char *target, struct stat *ret, hs_deadline_t dl)
{
	if (strlen(target) >= 4096)
		return -ENAMETOOLONG;
	return create_object(c, parent, name, S_IFLNK | 0777, target,
			     HS_J_SYMLINK, ret, dl);
}

int hs_cache_create(struct hs_cache *c, uint64_t parent, const char *name,
		    mode_t mode, int flags, struct stat *ret,
		    struct hs_handle **ret_h, hs_deadline_t dl)
{
	uint64_t total = atomic_load(&c->jgen_total);
	int keep, r, made;

	r = create_object(c, parent, name, S_IFREG | (mode & 07777), NULL,
			  HS_J_CREATE, ret, dl);
	made = r == 0;
	if (r == -EEXIST && !(flags & O_EXCL)) {
		r = hs_cache_lookup(c, parent, name, ret, dl);
		if (r == 0 && S_ISDIR(ret->st_mode))
			r = -EISDIR;
	}
	if (r < 0)
		return r;
	r = hs_cache_open_file(c, (uint64_t)ret->st_ino, flags & ~O_CREAT,
			       ret_h, &keep, dl);
	if (r == 0 && made) {
		struct hs_file *f = (*ret_h)->f;
		uint64_t gen = hs_jgen(c, f->ino);

		/* Its CREATE row is pending unless a row went away or
		 * started anywhere since before it was appended: the first
		 * write need not look. */
		pthread_mutex_lock(&f->lock);
		if (atomic_load(&c->jgen_total) == total) {
			f->jpending = 1;
			f->jgen = gen;
		}
		pthread_mutex_unlock(&f->lock);
	}
	return r;
}

int hs_cache_link(struct hs_cache *c, uint64_t ino, uint64_t newparent,
		  const char *newname, struct stat *ret, hs_deadline_t dl)
{
	struct hs_jentry e;
	struct hs_inode x;
	uint64_t existing;
	int r = check_name(newname);

	if (r < 0)
		return r;
	if (!(hs_link_caps(c->link) & HS_TR_CAP_HARDLINK))
		return -EPERM; /* the host side cannot make hard links */
	r = prepare_dir(c, newparent, dl);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r < 0)
		goto out;
	r = hs_meta_get_inode(c, ino, &x);
	if (r < 0)
		goto out_rollback;
	if (S_ISDIR(x.mode))
		r = -EPERM;
	else if (hs_meta_lookup(c, newparent, newname, &existing) == 0)
		r = -EEXIST;
	else
		r = need_dir(c, newparent);
	memset(&e, 0, sizeof(e));
	e.op = HS_J_LINK;
	e.ino = ino;
	if (r == 0)
		r = hs_meta_path(c, ino, &e.path);
	if (r == 0)
		r = child_path(c, newparent, newname, &e.path2);
	if (r == 0)
		r = hs_meta_add_dentry(c, newparent, newname, ino);
	if (r == 0)
		r = set_nlink(c, ino, x.nlink + 1);
	if (r == 0)
		r = hs_journal_append(c, &e);
	if (r == 0)
		r = touch_dir(c, newparent);
	hs_jentry_release(&e);
	hs_inode_release(&x);
	if (r < 0)
		goto out_rollback;
	r = hs_meta_commit(c);
	if (r < 0)
		goto out_rollback;
	pthread_mutex_unlock(&c->db_lock);
	return finish_stat(c, ino, ret);
out_rollback:
	hs_meta_rollback(c);
out:
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

/* ---- removing names ---- */

/* The last name of @x, not a folder, is gone: may its rows be dropped
 * (hs_journal_unlinked())?  When it never reached the host under a name
 * of its own: no host path, or only the temporary file a write-behind
 * staged (that row leaves the temporary file's removal).  db_lock held. */
static int unsent_file(struct hs_cache *c, const struct hs_inode *x)
{
	return !S_ISDIR(x->mode) &&
	       (!x->hpath || hs_journal_has_staged(c, x->ino) > 0);
}

/* Drops one name of @x (dentry already removed by the caller); journals
 * the host removal unless it cancels out.  db_lock held, in a transaction. */
static int drop_name(struct hs_cache *c, struct hs_inode *x, const char *path,
		     int op)
{
	struct hs_jentry e;
	uint32_t nlink = S_ISDIR(x->mode) || x->nlink <= 1 ? 0 : x->nlink - 1;
	int dropped = 0, ndata = 0, r;

	r = set_nlink(c, x->ino, nlink);
	if (r == 0 && nlink == 0 && unsent_file(c, x))
		r = hs_journal_unlinked(c, x->ino, &dropped);
	if (r == 0 && !dropped && nlink == 0 && S_ISREG(x->mode))
		/* its unsent changes go, and so does its cached data once
		 * nothing holds it open (hs_file_reclaim) */
		r = hs_journal_drop_data(c, x->ino, &ndata);
	if (r < 0 || dropped)
		return r;
	memset(&e, 0, sizeof(e));
	e.op = op;
	e.ino = x->ino;
	e.path = (char *)path;
	if (op == HS_J_UNLINK && S_ISREG(x->mode) && x->host_size >= 0 &&
	    x->local == ndata) {
		/* what the guest deleted, when it had no changes of its own
		 * on the way: a newer host version is kept */
		e.flags = HS_JF_VERSIONED;
		e.attr.size = (uint64_t)x->host_size;
		e.attr.mtime_ns = x->host_mtime;
	}
	return hs_journal_append(c, &e);
}

static int remove_name(struct hs_cache *c, uint64_t parent, const char *name,
		       int dir, hs_deadline_t dl)
{
	struct hs_inode x;
	uint64_t ino;
	char *path = NULL;
	int r;

	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	r = prepare_dir(c, parent, dl);
	if (r < 0)
		return r;
	if (dir) {
		/* emptiness needs the child's listing */
		pthread_mutex_lock(&c->db_lock);
		r = hs_meta_lookup(c, parent, name, &ino);
		pthread_mutex_unlock(&c->db_lock);
		if (r == 0)
			r = hs_dir_refresh(c, ino, 1, dl);
		if (r < 0 && r != -ENOTDIR)
			return r;
	}
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r < 0)
		goto out;
	r = hs_meta_lookup(c, parent, name, &ino);
	if (r < 0)
		goto out_rollback;
	r = hs_meta_get_inode(c, ino, &x);
	if (r < 0)
		goto out_rollback;
	if (dir && !S_ISDIR(x.mode))
		r = -ENOTDIR;
	else if (!dir && S_ISDIR(x.mode))
		r = -EISDIR;
	else if (dir && (r = hs_meta_dir_empty(c, ino)) >= 0)
		r = r ? 0 : -ENOTEMPTY;
	if (r == 0)
		r = child_path(c, parent, name, &path);
	if (r == 0)
		r = hs_meta_del_dentry(c, parent, name);
	if (r == 0)
		r = drop_name(c, &x, path, dir ? HS_J_RMDIR : HS_J_UNLINK);
	if (r == 0)
		r = touch_dir(c, parent);
	free(path);
	hs_inode_release(&x);
	if (r < 0)
		goto out_rollback;
	r = hs_meta_commit(c);
	if (r < 0)
		goto out_rollback;
	pthread_mutex_unlock(&c->db_lock);
	if (!dir)
		hs_file_reclaim(c, ino);
	return 0;
out_rollback:
	hs_meta_rollback(c);
out:
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

int hs_cache_unlink(struct hs_cache *c, uint64_t parent, const char *name,
		    hs_deadline_t dl)
{
	return remove_name(c, parent, name, 0, dl);
}

int hs_cache_rmdir(struct hs_cache *c, uint64_t parent, const char *name,
		   hs_deadline_t dl)
{
	return remove_name(c, parent, name, 1, dl);
}

/* 1 if @anc is @ino or one of its ancestors. */
static int is_ancestor(struct hs_cache *c, uint64_t anc, uint64_t ino)
{
	static const char sql[] = "SELECT parent FROM dentry WHERE ino=? LIMIT 1";
	int depth = 0;

	while (depth++ < 4096) {
		sqlite3_stmt *st;

		if (ino == anc)
			return 1;
		if (ino == HS_ROOT_INO)
			return 0;
		st = hs_meta_prepare(c, sql);
		if (!st)
			return -EIO;
		sqlite3_bind_int64(st, 1, (int64_t)ino);
		if (sqlite3_step(st) != SQLITE_ROW) {
			sqlite3_reset(st);
			return 0;
		}
		ino = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	return -ELOOP;
}

int hs_cache_rename(struct hs_cache *c, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, unsigned flags,
		    hs_deadline_t dl)
{
	struct hs_inode x, t;
	struct hs_jentry e;
	uint64_t ino, tino = 0;
	char *from = NULL, *to = NULL;
	int r, have_t = 0, replaced = 0, folded = 0;

	if (flags & ~1u) /* RENAME_NOREPLACE only; RENAME_EXCHANGE etc. not */
		return -EINVAL;
	r = check_name(newname);
	if (r < 0)
		return r;
	r = prepare_dir(c, parent, dl);
	if (r == 0 && newparent != parent)
		r = prepare_dir(c, newparent, dl);
	if (r < 0)
		return r;
	/* a directory target must be known empty */
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_lookup(c, newparent, newname, &tino);
	pthread_mutex_unlock(&c->db_lock);
	if (r == 0) {
		r = hs_dir_refresh(c, tino, 1, dl);
		if (r < 0 && r != -ENOTDIR)
			return r;
	}

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r < 0)
		goto out;
	memset(&x, 0, sizeof(x));
	memset(&t, 0, sizeof(t));
	r = hs_meta_lookup(c, parent, name, &ino);
	if (r == 0)
		r = hs_meta_get_inode(c, ino, &x);
	if (r == 0)
		r = need_dir(c, newparent);
	if (r < 0)
		goto out_rollback;
	if (hs_meta_lookup(c, newparent, newname, &tino) == 0) {
		have_t = 1;
		r = hs_meta_get_inode(c, tino, &t);
		if (r < 0)
			goto out_release;
		if (tino == ino)
			goto out_commit; /* same inode: nothing to do */
		if (flags & 1u) {
			r = -EEXIST;
			goto out_release;
		}
		if (S_ISDIR(x.mode) && !S_ISDIR(t.mode)) {
			r = -ENOTDIR;
			goto out_release;
		}
		if (!S_ISDIR(x.mode) && S_ISDIR(t.mode)) {
			r = -EISDIR;
			goto out_release;
		}
		if (S_ISDIR(t.mode)) {
			r = hs_meta_dir_empty(c, tino);
			if (r <= 0) {
				r = r < 0 ? r : -ENOTEMPTY;
				goto out_release;
			}
		}
	}
	if (S_ISDIR(x.mode)) {
		r = is_ancestor(c, ino, newparent);
		if (r != 0) {
			r = r < 0 ? r : -EINVAL;
			goto out_release;
		}
	}
	r = child_path(c, parent, name, &from);
	if (r == 0)
		r = child_path(c, newparent, newname, &to);
	if (r < 0)
		goto out_release;
	if (have_t) {
		uint32_t nl = S_ISDIR(t.mode) || t.nlink <= 1 ? 0 : t.nlink - 1;
		int dropped = 0;

		r = hs_meta_del_dentry(c, newparent, newname);
		if (r == 0)
			r = set_nlink(c, tino, nl);
		if (r == 0 && nl == 0 && unsent_file(c, &t))
			r = hs_journal_unlinked(c, tino, &dropped);
		replaced = !dropped;
		if (r < 0)
			goto out_release;
	}
	r = hs_meta_del_dentry(c, parent, name);
	if (r == 0)
		r = hs_meta_add_dentry(c, newparent, newname, ino);
	if (r == 0)
		r = touch(c, ino, 0); /* its ctime, as ext4 and tmpfs do */
	if (r == 0 && !S_ISDIR(x.mode) && !x.hpath)
		r = hs_journal_renamed(c, ino, to, replaced, &folded);
	if (r == 0 && !folded) {
		memset(&e, 0, sizeof(e));
		e.op = HS_J_RENAME;
		e.ino = ino;
		e.path = from;
		e.path2 = to;
		e.flags = (replaced ? HS_JF_REPLACED : 0) |
			  ((flags & 1u) ? HS_JF_NOREPLACE : 0);
		r = hs_journal_append(c, &e);
	}
	if (r == 0)
		r = touch_dir(c, parent);
	if (r == 0 && newparent != parent)
		r = touch_dir(c, newparent);
	if (r < 0)
		goto out_release;
out_commit:
	r = hs_meta_commit(c);
out_release:
	hs_inode_release(&x);
	hs_inode_release(&t);
	free(from);
	free(to);
	if (r < 0)
		goto out_rollback;
	pthread_mutex_unlock(&c->db_lock);
	if (have_t && tino != ino && !S_ISDIR(t.mode))
		hs_file_reclaim(c, tino);
	return 0;
out_rollback:
	hs_meta_rollback(c);
out:
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

/* ---- space, status, sync ---- */

int hs_cache_statfs(struct hs_cache *c, struct statvfs *ret)
{
	pthread_mutex_lock(&c->stat_lock);
	if (c->have_statfs) {
		*ret = c->statfs;
	} else {
		/* not known yet (offline start): say "plenty", never "full" */
		memset(ret, 0, sizeof(*ret));
		ret->f_bsize = ret->f_frsize = 4096;
		ret->f_blocks = ret->f_bfree = ret->f_bavail = 1ULL << 30;
		ret->f_files = ret->f_ffree = ret->f_favail = 1ULL << 20;
		ret->f_namemax = 255;
	}
	pthread_mutex_unlock(&c->stat_lock);
	return 0;
}

/* Bytes the cache files take on disk.  Walking them costs a stat per
 * file, so the answer is reused for CACHE_BYTES_TTL (status and the flush
 * progress ask twice a second). */
#define CACHE_BYTES_TTL (5 * HS_NSEC_PER_SEC)

static uint64_t walk_bytes(struct hs_cache *c, int64_t ttl);

uint64_t hs_cache_usage(struct hs_cache *c, int fresh)
{
	uint64_t walked = walk_bytes(c, fresh ? HS_NSEC_PER_SEC / 2 : CACHE_BYTES_TTL);
	int64_t delta = (int64_t)atomic_load(&c->added);

	/* more evicted than the walk saw (it raced an eviction): nothing */
	return delta < 0 && (uint64_t)-delta > walked ? 0 : walked + (uint64_t)delta;
}

void hs_cache_added(struct hs_cache *c, int64_t bytes)
{
	atomic_fetch_add(&c->added, (uint64_t)bytes);
}

static uint64_t cache_bytes(struct hs_cache *c)
{
	return hs_cache_usage(c, 0);
}

static uint64_t walk_bytes(struct hs_cache *c, int64_t ttl)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	char path[4096 + 16];
	uint64_t total = 0;
	struct dirent *de;
	struct stat st;
	unsigned i;
	DIR *d;

	pthread_mutex_lock(&lock);
	if (c->cache_bytes_at && hs_now_ns() - c->cache_bytes_at < ttl) {
		total = c->cache_bytes;
		pthread_mutex_unlock(&lock);
		return total;
	}

	for (i = 0; i < 256; i++) {
		snprintf(path, sizeof(path), "%s/%02x", c->datadir, i);
		d = opendir(path);
		if (!d)
			continue;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.' &&
			    fstatat(dirfd(d), de->d_name, &st, 0) == 0)
				total += (uint64_t)st.st_blocks * 512;
		closedir(d);
	}
	c->cache_bytes = total;
	c->cache_bytes_at = hs_now_ns();
	atomic_store(&c->added, 0);
	pthread_mutex_unlock(&lock);
	return total;
}

/* The flush rate, smoothed over samples at least 0.4 s apart; a rate is
 * only meaningful while something is owed.  flush_lock held. */
static void update_rate(struct hs_cache *c, uint64_t sent, uint64_t pending)
{
	int64_t now = hs_now_ns(), dt = now - c->rate_at;
	double inst;

	if (!c->rate_at || sent < c->rate_sent) {
		c->rate_at = now;
		c->rate_sent = sent;
		return;
	}
	if (dt < 400 * HS_NSEC_PER_MSEC)
		return;
	inst = (double)(sent - c->rate_sent) * 1e9 / (double)dt;
	c->rate = pending == 0 ? 0 : c->rate ? 0.5 * c->rate + 0.5 * inst : inst;
	c->rate_at = now;
	c->rate_sent = sent;
}

static int64_t oldest_pending_ms(struct hs_cache *c)
{
	int64_t age;

	pthread_mutex_lock(&c->db_lock);
	age = hs_journal_oldest_ms(c);
	pthread_mutex_unlock(&c->db_lock);
	return age;
}

int hs_cache_get_status(struct hs_cache *c, struct hs_cache_status *ret)
{
	int r;

	memset(ret, 0, sizeof(*ret));
	snprintf(ret->source, sizeof(ret->source), "%s", c->source);
	snprintf(ret->transport, sizeof(ret->transport), "%s", hs_link_wire(c->link));
	snprintf(ret->cache_dir, sizeof(ret->cache_dir), "%s", c->dir);
	ret->link = hs_link_get_state(c->link, &ret->link_since_ns);
	hs_link_last_error(c->link, ret->last_error, sizeof(ret->last_error));
	pthread_mutex_lock(&c->db_lock);
	r = hs_journal_counts(c, &ret->pending_ops, &ret->pending_bytes,
			      &ret->failed_ops);
	pthread_mutex_unlock(&c->db_lock);
	pthread_mutex_lock(&c->flush_lock);
	ret->flushed_ops = c->flushed_ops;
	ret->flushed_bytes = c->flushed_bytes;
	ret->sent_bytes = atomic_load(&c->sent_bytes);
	/* what the rows being sent have sent already is not owed any more */
	ret->inflight_bytes = atomic_load(&c->inflight_sent);
	ret->pending_bytes -= HS_MIN(ret->pending_bytes, ret->inflight_bytes);
	update_rate(c, ret->sent_bytes, ret->pending_ops);
	ret->rate_bps = (uint64_t)(c->rate + 0.5);
	snprintf(ret->current, sizeof(ret->current), "%s", c->current);
	pthread_mutex_unlock(&c->flush_lock);
	ret->cache_bytes = cache_bytes(c);
	ret->cache_limit = c->cfg.cache_size;
	{
		struct statvfs sv;

		if (statvfs(c->datadir, &sv) == 0) {
			ret->disk_free = (uint64_t)sv.f_bavail * sv.f_frsize;
			ret->disk_min_free = hs_cache_min_free(
				c, (uint64_t)sv.f_blocks * sv.f_frsize);
		}
	}
	ret->conflicts = hs_cache_conflict_count(c);
	ret->oldest_pending_ms = oldest_pending_ms(c);
	return r;
}

void hs_cache_forget_usage(struct hs_cache *c)
{
	c->cache_bytes_at = 0;
}

int hs_cache_sync(struct hs_cache *c, hs_deadline_t dl)
{
	uint64_t failed = 0;
	struct timespec ts;
	int r = 0, busy;

	pthread_mutex_lock(&c->flush_lock);
	c->force++;
	pthread_cond_broadcast(&c->flush_cond);
	pthread_mutex_unlock(&c->flush_lock);
	hs_link_kick(c->link);
	for (;;) {
		pthread_mutex_lock(&c->db_lock);
		busy = hs_journal_busy(c, &failed);
		pthread_mutex_unlock(&c->db_lock);
		if (busy <= 0) {
			r = busy;
			break;
		}
		if (hs_deadline_passed(dl)) {
			r = hs_link_get_state(c->link, NULL) == HS_LINK_CONNECTED ?
				    -ETIMEDOUT : -ENOTCONN;
			break;
		}
		pthread_mutex_lock(&c->flush_lock);
		ts = hs_deadline_ts(HS_MIN(dl, hs_now_ns() + 200 * HS_NSEC_PER_MSEC));
		pthread_cond_clockwait(&c->done_cond, &c->flush_lock,
				       CLOCK_MONOTONIC, &ts);
		pthread_mutex_unlock(&c->flush_lock);
	}
	pthread_mutex_lock(&c->flush_lock);
	c->force--;
	pthread_mutex_unlock(&c->flush_lock);
	if (r == 0 && failed > 0)
		r = -EIO;
	return r;
}

int hs_cache_path(struct hs_cache *c, uint64_t ino, char **ret)
{
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_path(c, ino, ret);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}
