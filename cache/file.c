/* SPDX-License-Identifier: MIT
 * cache/file.c - file data: cache files, block states, reads with fetch
 * and readahead, writes, close/fsync durability.
 *
 * Each regular file with cached data has a sparse cache file
 * <cache>/data/<xx>/<ino> whose size is always the guest size, and an
 * in-memory struct hs_file while it is open or being flushed, whose block
 * states only blocks.c changes (this file does the cache-file I/O of each
 * transition).  The bitmaps are persisted to the inode row on close,
 * fsync, and after the flusher's sends.
 *
 * Durability: write() puts the bytes in the cache file (page cache) and, on
 * the first change since the last send, a journal row in sqlite (WAL,
 * synchronous=NORMAL); close() persists size, times and bitmaps, so closed
 * files survive a kill of the daemon.  fsync() adds fdatasync of the cache
 * file and a synchronous WAL commit, so they also survive a power cut.
 *
 * Fetches: a sequential read of ABSENT blocks (from the start, or where the
 * last fetch ended) starts a stream (stream.c) that reads the host copy
 * ahead of the readers on one remote handle; readers wait for it.  Any
 * other miss fetches a run of at least the request (growing to 8 MiB while
 * reads stay sequential) on the fetch connection, with the caller's
 * deadline.  At most HS_FETCHERS workers wait on the host at once (for a
 * fetch or a stream), so cached requests always find a free FUSE worker.
 * Fetched bytes land only in blocks still ABSENT and only if the file's
 * data version did not change meanwhile, so they never overwrite guest
 * writes.
 *
 * Locking: c->files_lock guards the table and refs; hs_file.lock guards the
 * rest; db_lock is taken inside hs_file.lock, never the other way round.
 * No lock is held during transport I/O.
 *
 * Not handled here: conflict detection against concurrent host edits (the
 * invalidation keeps guest changes and skips files that have any).
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RA_MIN (1ULL << 20)
#define RA_MAX (8ULL << 20)

static unsigned bucket(uint64_t ino)
{
	return (unsigned)(ino % HS_ARRAY_SIZE(((struct hs_cache *)0)->files));
}

char *hs_file_data_path(struct hs_cache *c, uint64_t ino)
{
	char *p;

	if (asprintf(&p, "%s/%02x/%llu", c->datadir, (unsigned)(ino & 0xff),
		     (unsigned long long)ino) < 0)
		return NULL;
	return p;
}

void hs_file_remove_data(struct hs_cache *c, uint64_t ino)
{
	char *p = hs_file_data_path(c, ino);

	if (p)
		unlink(p);
	free(p);
}

struct hs_file *hs_file_get(struct hs_cache *c, uint64_t ino)
{
	struct hs_file *f;
	unsigned b = bucket(ino);

	pthread_mutex_lock(&c->files_lock);
	for (f = c->files[b]; f; f = f->next)
		if (f->ino == ino)
			break;
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f) {
			pthread_mutex_unlock(&c->files_lock);
			return NULL;
		}
		f->ino = ino;
		f->fd = -1;
		pthread_mutex_init(&f->lock, NULL);
		hs_cond_init_monotonic(&f->fetched);
		hs_cond_init_monotonic(&f->st_more);
		hs_blocks_init(&f->blk);
		f->next = c->files[b];
		c->files[b] = f;
	}
	f->refs++;
	pthread_mutex_unlock(&c->files_lock);
	return f;
}

static size_t kver_slot(uint64_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ULL) >> 52) % 4096;
}

/* What the kernel's page cache holds of @ino, or -1 when unknown. */
static uint64_t kver_get(struct hs_cache *c, uint64_t ino)
{
	size_t i = kver_slot(ino);
	uint64_t v = (uint64_t)-1;

	pthread_mutex_lock(&c->kver_lock);
	if (c->kver[i].ino == ino)
		v = c->kver[i].dver;
	pthread_mutex_unlock(&c->kver_lock);
	return v;
}

static void kver_set(struct hs_cache *c, uint64_t ino, uint64_t dver)
{
	size_t i = kver_slot(ino);

	pthread_mutex_lock(&c->kver_lock);
	c->kver[i].ino = dver == (uint64_t)-1 ? 0 : ino;
	c->kver[i].dver = dver;
	pthread_mutex_unlock(&c->kver_lock);
}

/* The cached data of a file the guest deleted that no row needs any more
 * (its removal is still to be sent, or a rename replaced it; a staged
 * create of it only removes its temporary file): 1 when its
 * maps were cleared, so that the caller removes the cache file.  db_lock
 * held; nothing holds the file open (its last put, or no put at all). */
static int drop_unneeded(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] =
		"UPDATE inode SET present=NULL, dirty=NULL, trunc_min=-1"
		" WHERE ino=? AND nlink=0 AND present IS NOT NULL AND NOT EXISTS"
		" (SELECT 1 FROM dentry WHERE ino=?1) AND NOT EXISTS"
		" (SELECT 1 FROM journal WHERE ino=?1 AND"
		" op IN (" HS_SQL(HS_J_CREATE) "," HS_SQL(HS_J_DATA) ") AND NOT"
		" (op=" HS_SQL(HS_J_CREATE) " AND (flags & " HS_SQL(HS_JF_STAGED) ")))";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int gone = 0;

	if (!st)
		return 0;
	sqlite3_bind_int64(st, 1, (int64_t)ino);
	if (sqlite3_step(st) == SQLITE_DONE)
		gone = sqlite3_changes(c->db) > 0;
	sqlite3_reset(st);
	return gone;
}

/* Deletes the inode row and data of an unlinked inode nobody needs. */
static void reclaim(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] = "DELETE FROM inode WHERE ino=? AND nlink=0"
				  " AND local=0 AND NOT EXISTS"
				  " (SELECT 1 FROM dentry WHERE ino=?)";
	sqlite3_stmt *st;
	int gone = 0;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (st) {
		sqlite3_bind_int64(st, 1, (int64_t)ino);
		sqlite3_bind_int64(st, 2, (int64_t)ino);
		if (sqlite3_step(st) == SQLITE_DONE)
			gone = sqlite3_changes(c->db) > 0;
		sqlite3_reset(st);
	}
	if (!gone)
		gone = drop_unneeded(c, ino);
	pthread_mutex_unlock(&c->db_lock);
	if (gone)
		hs_file_remove_data(c, ino);
}

void hs_file_put(struct hs_cache *c, struct hs_file *f)
{
	struct hs_file **pp;
	uint64_t ino = f->ino;

	pthread_mutex_lock(&c->files_lock);
	if (--f->refs > 0) {
		pthread_mutex_unlock(&c->files_lock);
		return;
	}
	pthread_mutex_lock(&f->lock);
	if (f->loaded) {
		hs_file_persist(c, f);
		kver_set(c, f->ino, f->kernel_dver);
	}
	pthread_mutex_unlock(&f->lock);
	for (pp = &c->files[bucket(f->ino)]; *pp; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->files_lock);
	if (f->fd >= 0)
		close(f->fd);
	hs_blocks_release(&f->blk);
	free(f->use);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->fetched);
	pthread_cond_destroy(&f->st_more);
	free(f);
	reclaim(c, ino);
}

void hs_file_reclaim(struct hs_cache *c, uint64_t ino)
{
	/* the last put of an unlinked inode deletes it */
	struct hs_file *f = hs_file_get(c, ino);

	if (f)
		hs_file_put(c, f);
}

int hs_file_load(struct hs_cache *c, struct hs_file *f)
{
	struct hs_bitmap present, dirty;
	struct hs_inode in;
	int64_t cut = -1;
	int r;

	if (f->loaded)
		return 0;
	hs_bitmap_init(&present);
	hs_bitmap_init(&dirty);
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, f->ino, &in);
	if (r == 0) {
		r = hs_meta_load_maps(c, f->ino, &present, &dirty, &cut);
		if (r < 0)
			hs_inode_release(&in);
	}
	pthread_mutex_unlock(&c->db_lock);
	if (r == 0)
		hs_blocks_load(&f->blk, &present, &dirty, cut, in.size);
	hs_bitmap_release(&present);
	hs_bitmap_release(&dirty);
	if (r < 0)
		return r;
	f->size = in.size;
	f->mtime = in.mtime;
	f->ctime = in.ctime;
	f->dver = in.dver;
	f->kernel_dver = kver_get(c, f->ino);
	f->ra_size = RA_MIN;
	f->loaded = 1;
	hs_inode_release(&in);
	return 0;
}

int hs_file_open_fd(struct hs_cache *c, struct hs_file *f)
{
	char *p, *slash;
	struct stat st;
	int fd;

	if (f->fd >= 0)
		return 0;
	p = hs_file_data_path(c, f->ino);
	if (!p)
		return -ENOMEM;
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		slash = strrchr(p, '/');
		*slash = 0;
		mkdir(p, 0700);
		*slash = '/';
		fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		int e = errno;

		hs_err("cannot open cache file '%s': %s", p, strerror(e));
		free(p);
		return -e;
	}
	free(p);
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size != f->size &&
	    ftruncate(fd, (off_t)f->size) < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	f->fd = fd;
	return 0;
}

int hs_file_persist(struct hs_cache *c, struct hs_file *f)
{
	static const char sql[] = "UPDATE inode SET size=?, mtime=?, ctime=MAX(ctime, ?) WHERE ino=?";
	struct hs_bitmap all;
	sqlite3_stmt *st;
	int r = 0;

	if (!f->attr_dirty && !f->blk.changed)
		return 0;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r == 0 && f->attr_dirty) {
		st = hs_meta_prepare(c, sql);
		if (!st) {
			r = -EIO;
		} else {
			sqlite3_bind_int64(st, 1, (int64_t)f->size);
			sqlite3_bind_int64(st, 2, f->mtime);
			sqlite3_bind_int64(st, 3, f->ctime);
			sqlite3_bind_int64(st, 4, (int64_t)f->ino);
			if (sqlite3_step(st) != SQLITE_DONE)
				r = hs_meta_errno(c, sqlite3_errcode(c->db));
			sqlite3_reset(st);
		}
	}
	if (r == 0 && f->blk.changed) {
		/* "dirty" on disk is dirty|writing: a crash mid-send resends
		 * (hs_blocks_saved_dirty()) */
		hs_bitmap_init(&all);
		r = hs_blocks_saved_dirty(&f->blk, &all);
		if (r == 0)
			r = hs_meta_save_maps(c, f->ino, &f->blk.present, &all,
					      hs_blocks_saved_cut(&f->blk));
		hs_bitmap_release(&all);
	}
	/* callers that promise durability (close, fsync) flush the group */
	if (r == 0)
		r = hs_meta_commit_deferred(c);
	if (r < 0)
		hs_meta_rollback(c);
	pthread_mutex_unlock(&c->db_lock);
	if (r == 0) {
		f->attr_dirty = 0;
		hs_blocks_saved(&f->blk);
	}
	return r;
}

int hs_file_note_dirty(struct hs_cache *c, struct hs_file *f)
{
	uint64_t gen = hs_jgen(c, f->ino);
	struct hs_inode in;
	struct hs_jentry e;
	int r;

	if (f->jpending && f->jgen == gen)
		return 0;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r < 0)
		goto out;
	r = hs_meta_get_inode(c, f->ino, &in);
	if (r < 0)
		goto out_rollback;
	r = hs_journal_has_data(c, f->ino);
	if (r == 0 && hs_journal_has_pending_create(c, f->ino) > 0)
		r = 1;
	if (r == 0 && !(in.nlink == 0 && !in.hpath)) {
		memset(&e, 0, sizeof(e));
		e.op = HS_J_DATA;
		e.ino = f->ino;
		e.path = in.hpath;
		r = hs_journal_append(c, &e);
	}
	hs_inode_release(&in);
	if (r < 0)
		goto out_rollback;
	r = hs_meta_commit_deferred(c); /* durable at close, with the data */
	if (r < 0)
		goto out_rollback;
	f->jpending = 1;
	f->jgen = gen;
	pthread_mutex_unlock(&c->db_lock);
	return 0;
out_rollback:
	hs_meta_rollback(c);
out:
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

int hs_file_truncate(struct hs_cache *c, struct hs_file *f, uint64_t size)
{
	uint64_t old = f->size;
	int r;

	r = hs_file_open_fd(c, f);
	if (r < 0)
		return r;
	if (ftruncate(f->fd, (off_t)size) < 0)
		return -errno;
	/* a new part reads as zeros, in the cache file as on the host
	 * after the final size is sent */
	r = hs_blocks_truncate(&f->blk, old, size);
	if (r < 0)
		return r;
	f->size = size;
	f->mtime = f->ctime = hs_wall_ns();
	f->attr_dirty = 1;
	f->last_write_ns = hs_now_ns();
	atomic_store(&c->last_change_ns, f->last_write_ns);
	if (size != old || size == 0)
		return hs_file_note_dirty(c, f);
	return 0;
}

/* The in-memory state of @ino if some handle or the flusher has it loaded,
 * else NULL; files_lock held. */
static struct hs_file *loaded_file(struct hs_cache *c, uint64_t ino)
{
	struct hs_file *f;

	for (f = c->files[bucket(ino)]; f; f = f->next)
		if (f->ino == ino)
			return f;
	return NULL;
}

struct stored {
	struct { uint64_t ino, blocks; } *v;
	size_t n, cap;
};

static void add_stored(void *arg, uint64_t ino, uint64_t blocks)
{
	struct stored *s = arg;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		void *nv = realloc(s->v, cap * sizeof(*s->v));

		if (!nv)
			return; /* counted short: a write may evict a little more */
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n].ino = ino;
	s->v[s->n++].blocks = blocks;
}

uint64_t hs_file_unacked(struct hs_cache *c)
{
	struct stored s = { NULL, 0, 0 };
	uint64_t blocks = 0;
	struct hs_file *f;
	size_t i;
	unsigned b;

	/* the database first (db_lock is taken inside file locks, never
	 * around them), then the loaded files, whose blocks are newer.  A
	 * count cut short (a failed query, no memory) only lets a writer
	 * evict a little more clean data: nothing unsent is ever dropped */
	pthread_mutex_lock(&c->db_lock);
	hs_meta_each_dirty(c, add_stored, &s);
	pthread_mutex_unlock(&c->db_lock);
	pthread_mutex_lock(&c->files_lock);
	for (i = 0; i < s.n; i++) {
		f = loaded_file(c, s.v[i].ino);
		if (!f) {
			blocks += s.v[i].blocks;
			continue;
		}
		pthread_mutex_lock(&f->lock);
		if (!f->loaded)
			blocks += s.v[i].blocks;
		pthread_mutex_unlock(&f->lock);
	}
	for (b = 0; b < HS_ARRAY_SIZE(c->files); b++) {
		for (f = c->files[b]; f; f = f->next) {
			pthread_mutex_lock(&f->lock);
			if (f->loaded)
				blocks += f->blk.ndirty + f->blk.nwriting;
			pthread_mutex_unlock(&f->lock);
		}
	}
	pthread_mutex_unlock(&c->files_lock);
	free(s.v);
	return blocks * HS_BLOCK;
}

int hs_file_writing(struct hs_cache *c, uint64_t ino)
{
	struct hs_file *f;
	int w = 0;

	pthread_mutex_lock(&c->files_lock);
	f = loaded_file(c, ino);
	if (f) {
		pthread_mutex_lock(&f->lock);
		w = f->writers > 0;
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&c->files_lock);
	return w;
}

int hs_file_is_open(struct hs_cache *c, uint64_t ino)
{
	int open;

	pthread_mutex_lock(&c->files_lock);
	open = loaded_file(c, ino) != NULL;
	pthread_mutex_unlock(&c->files_lock);
	return open;
}

void hs_file_overlay(struct hs_cache *c, uint64_t ino, struct stat *st)
{
	struct hs_file *f;

	pthread_mutex_lock(&c->files_lock);
	f = loaded_file(c, ino);
	if (f) {
		pthread_mutex_lock(&f->lock);
		if (f->loaded) {
			st->st_size = (off_t)f->size;
			st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
			st->st_mtim.tv_sec = f->mtime / HS_NSEC_PER_SEC;
			st->st_mtim.tv_nsec = f->mtime % HS_NSEC_PER_SEC;
			/* the later of the two: a change by path (chmod,
			 * rename, link) sets the inode row's, a write or a
			 * truncate the open file's */
			if (f->ctime > (int64_t)st->st_ctim.tv_sec * HS_NSEC_PER_SEC +
					       st->st_ctim.tv_nsec) {
				st->st_ctim.tv_sec = f->ctime / HS_NSEC_PER_SEC;
				st->st_ctim.tv_nsec = f->ctime % HS_NSEC_PER_SEC;
			}
		}
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&c->files_lock);
}

/* Forgets every cached block of @f (none is busy, hs_blocks_busy()): the
 * cache file becomes a hole of the file's size.  f->lock held. */
static int drop_data(struct hs_cache *c, struct hs_file *f)
{
	int r = 0;

	if (hs_blocks_invalidate(&f->blk, f->size) < 0)
		return -EBUSY;
	f->ra_next = 0;
	if (f->fd >= 0) {
		if (ftruncate(f->fd, 0) < 0 || ftruncate(f->fd, (off_t)f->size) < 0)
			r = -errno;
	} else {
		hs_file_remove_data(c, f->ino);
	}
	hs_file_persist(c, f);
	return r;
}

int hs_file_invalidate(struct hs_cache *c, uint64_t ino)
{
	struct hs_file *f = hs_file_get(c, ino);
	struct hs_inode in;
	int r;

	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	r = hs_file_load(c, f);
	if (r < 0)
		goto out;
	if (hs_blocks_busy(&f->blk) || f->attr_dirty)
		goto out; /* guest changes win; never dropped */
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &in);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		goto out;
	f->size = in.size;
	f->mtime = in.mtime;
	f->ctime = in.ctime;
	f->dver = in.dver;
	hs_inode_release(&in);
	r = drop_data(c, f);
out:
	pthread_mutex_unlock(&f->lock);
	hs_file_put(c, f);
	return r;
}

/* Reads [off, off+len) of the host copy at @path into @buf; returns the
 * bytes read (short at the host's end of file) or -errno. */
static ssize_t host_read(struct hs_cache *c, const char *path, char *buf,
			 size_t len, uint64_t off, hs_deadline_t dl)
{
	struct hs_transport *t;
	struct hs_tr_file *rf = NULL;
	size_t got = 0;
	ssize_t n = 0;
	int r;

	r = hs_link_get(c->link, HS_SLOT_FETCH, 1, dl, &t);
	if (r < 0)
		return r;
	r = hs_tr_fopen(t, path, O_RDONLY, 0, &rf, dl);
	if (r == 0) {
		while (got < len) {
			n = hs_tr_pread(t, rf, buf + got, len - got, off + got, dl);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		hs_tr_fclose(t, rf, dl);
		if (n < 0)
			r = (int)n;
	}
	hs_link_put(c->link, t, r);
	return r < 0 ? r : (ssize_t)got;
}

/* @len bytes at @off of @in's host copy into @buf, as one of the workers
 * that may wait on the host (fetch_sem): the bytes read (the rest of @buf
 * is left as it is), 0 for a file the host does not have yet (its
 * unwritten blocks are zeros), or -errno. */
static ssize_t read_host_copy(struct hs_cache *c, const struct hs_inode *in,
			      char *buf, size_t len, uint64_t off, hs_deadline_t dl)
{
	struct timespec ts = hs_deadline_ts(dl);
	ssize_t got;

	if (!in->hpath)
		/* the host copy this data came from is gone (unlinked while
		 * open, or deleted on the host): say so rather than invent
		 * zeros */
		return in->host_size > 0 ? -EIO : 0;
	if (in->host_size == 0)
		return 0;
	if (sem_clockwait(&c->fetch_sem, CLOCK_MONOTONIC, &ts) < 0)
		return -ETIMEDOUT;
	got = host_read(c, in->hpath, buf, len, off, dl);
	sem_post(&c->fetch_sem);
	return got;
}

int hs_file_fetch(struct hs_cache *c, struct hs_file *f, uint64_t first,
		  uint64_t last, hs_deadline_t dl)
{
	struct hs_inode in;
	uint64_t dver, len, size;
	ssize_t got;
	char *buf;
	int r;

	pthread_mutex_lock(&f->lock);
	dver = f->dver;
	size = f->size;
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, f->ino, &in);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	if (last * HS_BLOCK > size)
		last = (size + HS_BLOCK - 1) / HS_BLOCK;
	if (first >= last) {
		hs_inode_release(&in);
		return 0;
	}
	len = (last - first) * HS_BLOCK;
	buf = calloc(1, len);
	if (!buf) {
		hs_inode_release(&in);
		return -ENOMEM;
	}
	/* room for it first (evicting clean data); none: the reader gets
	 * the bytes without caching them (read_through()) */
	got = hs_cache_room(c, f->ino, len, 0) < 0 ? -ENOSPC :
		read_host_copy(c, &in, buf, len, first * HS_BLOCK, dl);
	hs_inode_release(&in);
	if (got < 0) {
		free(buf);
		return (int)got;
	}
	pthread_mutex_lock(&f->lock);
	r = hs_file_land(c, f, dver, buf, first, last);
	pthread_mutex_unlock(&f->lock);
	free(buf);
	return r;
}

struct land_arg {
	struct hs_cache *c;
	struct hs_file *f;
	const char *buf;        /* the host bytes of blocks from @first */
	uint64_t first;
};

/* hs_blocks_fill_fn: one run of blocks still ABSENT, one pwrite */
static int land_run(void *arg, uint64_t from, uint64_t to)
{
	struct land_arg *a = arg;
	uint64_t boff = from * HS_BLOCK;
	uint64_t blen = HS_MIN(to * HS_BLOCK, a->f->size) - boff;

	if (pwrite(a->f->fd, a->buf + (boff - a->first * HS_BLOCK), blen,
		   (off_t)boff) != (ssize_t)blen)
		return -errno;
	if (a->c->cfg.cache_size)
		hs_cache_added(a->c, blen);
	return 0;
}

int hs_file_land(struct hs_cache *c, struct hs_file *f, uint64_t dver,
		 const char *buf, uint64_t first, uint64_t last)
{
	struct land_arg a = { c, f, buf, first };

	if (f->dver != dver || hs_file_open_fd(c, f) < 0)
		return 0; /* the host copy changed meanwhile: not these bytes */
	hs_evict_touch(c, f, first, last, 1);
	return hs_blocks_fill(&f->blk, f->size, first, last, land_run, &a);
}

/* ---- the public data path ---- */

int hs_cache_open_file(struct hs_cache *c, uint64_t ino, int flags,
		       struct hs_handle **ret_h, int *ret_keep_cache,
		       hs_deadline_t dl)
{
	struct hs_handle *h;
	struct hs_inode in;
	struct hs_file *f;
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &in);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	if (S_ISDIR(in.mode)) {
		hs_inode_release(&in);
		return -EISDIR;
	}
	if (!S_ISREG(in.mode)) {
		hs_inode_release(&in);
		return -EACCES;
	}
	/* Close-to-open: a file the guest has not changed is checked against
	 * the host when its attributes are older than attr_timeout. */
	if (in.hpath && in.local == 0 &&
	    hs_now_ns() - in.checked_at > c->cfg.attr_timeout_ms * HS_NSEC_PER_MSEC)
		hs_bg_refresh(c, ino, HS_BG_REVALIDATE); /* briefly: never hang */
	hs_inode_release(&in);

	h = calloc(1, sizeof(*h));
	f = hs_file_get(c, ino);
	if (!h || !f) {
		free(h);
		if (f)
			hs_file_put(c, f);
		return -ENOMEM;
	}
	pthread_mutex_lock(&f->lock);
	r = hs_file_load(c, f);
	if (r == 0 && (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
		r = hs_file_truncate(c, f, 0);
	if (r == 0) {
		if ((flags & O_ACCMODE) != O_RDONLY)
			f->writers++;
		*ret_keep_cache = f->kernel_dver == f->dver;
		f->kernel_dver = f->dver;
	}
	pthread_mutex_unlock(&f->lock);
	if (r < 0) {
		hs_file_put(c, f);
		free(h);
		return r;
	}
	h->f = f;
	h->flags = flags;
	*ret_h = h;
	return 0;
}

/* A read the cache has no room for (what it holds is the guest's changes,
 * not on the host yet): the bytes go from the host copy to @buf without
 * being cached, with the file's cached blocks in the range (its changes
 * among them) laid over them.  Returns the bytes read or -errno. */
static ssize_t read_through(struct hs_cache *c, struct hs_file *f, char *buf,
			    size_t size, uint64_t off, hs_deadline_t dl)
{
	uint64_t b, e, first = off / HS_BLOCK, last = (off + size + HS_BLOCK - 1) / HS_BLOCK;
	struct hs_inode in;
	ssize_t got;
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, f->ino, &in);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	got = read_host_copy(c, &in, buf, size, off, dl);
	hs_inode_release(&in);
	if (got < 0)
		return got;
	memset(buf + got, 0, size - (size_t)got); /* past the host's end */
	pthread_mutex_lock(&f->lock);
	for (b = first; b < last; b = e) {
		uint64_t from, to;

		b = hs_blocks_next_present(&f->blk, b, last);
		if (b == HS_BITMAP_NONE)
			break;
		e = hs_blocks_next_absent(&f->blk, b, last);
		if (e == HS_BITMAP_NONE)
			e = last;
		from = HS_MAX(b * HS_BLOCK, off);
		to = HS_MIN(e * HS_BLOCK, off + size);
		if (pread(f->fd, buf + (from - off), to - from, (off_t)from) < 0) {
			pthread_mutex_unlock(&f->lock);
			return -errno;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return (ssize_t)size;
}

/* A stream (stream.c) reads ahead while reads stay sequential: readers
 * move its goal this far beyond what they ask for, the distance doubling
 * from the readahead window up to STREAM_AHEAD; a miss further from it
 * than STREAM_GAP is fetched on its own. */
#define STREAM_AHEAD (64ULL << 20)
#define STREAM_GAP (RA_MAX / HS_BLOCK)

ssize_t hs_cache_read(struct hs_cache *c, struct hs_handle *h, void *buf,
		      size_t size, off_t off, hs_deadline_t dl)
{
	struct hs_file *f = h->f;
	uint64_t first, last, miss, end, nblocks, uoff = (uint64_t)off;
	int tries, r, have_sem = 0;
	ssize_t n = 0;

	for (tries = 0; tries < 4;) {
		pthread_mutex_lock(&f->lock);
		r = hs_file_load(c, f);
		if (r == 0)
			r = hs_file_open_fd(c, f);
		if (r < 0) {
			pthread_mutex_unlock(&f->lock);
			goto out;
		}
		if (uoff >= f->size) {
			pthread_mutex_unlock(&f->lock);
			r = 0;
			goto out;
		}
		if (size > f->size - uoff)
			size = (size_t)(f->size - uoff);
		first = uoff / HS_BLOCK;
		last = (uoff + size + HS_BLOCK - 1) / HS_BLOCK;
		nblocks = (f->size + HS_BLOCK - 1) / HS_BLOCK;
		miss = hs_blocks_next_absent(&f->blk, first, last);
		if (miss == HS_BITMAP_NONE) {
			hs_evict_touch(c, f, first, last, 0);
			n = pread(f->fd, buf, size, off);
			pthread_mutex_unlock(&f->lock);
			r = n < 0 ? -errno : 0;
			goto out;
		}
		/* A stream is on its way to these blocks: move its goal
		 * ahead and wait for it. */
		if (f->streaming && miss >= f->st_next &&
		    miss < f->st_until + STREAM_GAP) {
			struct timespec ts = hs_deadline_ts(dl);
			uint64_t gen = f->st_gen;
			uint64_t goal = HS_MIN(nblocks, last + f->ra_size / HS_BLOCK);

			if (goal > f->st_until) {
				f->st_until = goal;
				/* at most a quarter of what the cache may
				 * hold ahead of the readers */
				f->ra_size = HS_MIN(f->ra_size * 2,
						    HS_MAX(HS_MIN(STREAM_AHEAD,
								  hs_cache_ahead_max(c)),
							   RA_MIN));
				pthread_cond_signal(&f->st_more);
			}
			if (!have_sem) {
				/* waiting on the host: counted as such, so
				 * cached requests always find a worker */
				pthread_mutex_unlock(&f->lock);
				if (sem_clockwait(&c->fetch_sem, CLOCK_MONOTONIC,
						  &ts) < 0)
					return -ETIMEDOUT;
				have_sem = 1;
				continue;
			}
			if (pthread_cond_clockwait(&f->fetched, &f->lock,
						   CLOCK_MONOTONIC, &ts) == ETIMEDOUT) {
				pthread_mutex_unlock(&f->lock);
				r = -ETIMEDOUT;
				goto out;
			}
			/* the stream that was to bring it failed: fetch it
			 * here, which reports the error or waits for a
			 * reconnect as any cold read does */
			if (!f->streaming && f->st_gen == gen && f->st_err < 0)
				f->st_fail_at = hs_now_ns();
			pthread_mutex_unlock(&f->lock);
			continue;
		}
		/* A sequential read of a host copy starts a stream. */
		if (!f->streaming && (miss == 0 || miss * HS_BLOCK == f->ra_next) &&
		    hs_now_ns() - f->st_fail_at > HS_NSEC_PER_SEC) {
			uint64_t goal = HS_MIN(nblocks, last + f->ra_size / HS_BLOCK);

			pthread_mutex_unlock(&f->lock);
			if (hs_stream_start(c, f, miss, goal) < 0) {
				pthread_mutex_lock(&f->lock);
				f->st_fail_at = hs_now_ns();
				pthread_mutex_unlock(&f->lock);
			}
			continue;
		}
		if (have_sem) {
			/* hs_file_fetch() takes its own */
			sem_post(&c->fetch_sem);
			have_sem = 0;
		}
		/* One fetch per file at a time: the kernel's parallel
		 * readahead requests wait for the window being fetched
		 * instead of fetching it again. */
		if (f->fetching) {
			struct timespec ts = hs_deadline_ts(dl);

			if (pthread_cond_clockwait(&f->fetched, &f->lock,
						   CLOCK_MONOTONIC, &ts) == ETIMEDOUT) {
				pthread_mutex_unlock(&f->lock);
				return -ETIMEDOUT;
			}
			pthread_mutex_unlock(&f->lock);
			continue;
		}
		tries++;
		/* Readahead: grow the window while reads stay sequential. */
		if (miss * HS_BLOCK == f->ra_next)
			f->ra_size = HS_MIN(f->ra_size * 2, RA_MAX);
		else
			f->ra_size = RA_MIN;
		end = HS_MAX(last, miss + f->ra_size / HS_BLOCK);
		if (end > nblocks)
			end = nblocks;
		/* stop the window at cached data past the request */
		if (end > last) {
			uint64_t p = hs_blocks_next_present(&f->blk, last, end);

			if (p != HS_BITMAP_NONE)
				end = p;
		}
		f->ra_next = end * HS_BLOCK;
		f->fetching = 1;
		pthread_mutex_unlock(&f->lock);
		r = hs_file_fetch(c, f, miss, end, dl);
		pthread_mutex_lock(&f->lock);
		f->fetching = 0;
		pthread_cond_broadcast(&f->fetched);
		pthread_mutex_unlock(&f->lock);
		if (r == -ENOSPC) {
			n = read_through(c, f, (char *)buf, size, uoff, dl);
			r = n < 0 ? (int)n : 0;
			goto out;
		}
		if (r < 0)
			goto out;
	}
	r = -EIO;
out:
	if (have_sem)
		sem_post(&c->fetch_sem);
	return r < 0 ? r : n;
}

/* True if a write of [@off, @off+@len) needs blocks the cache does not
 * hold yet (past the end, or holes).  Takes f->lock. */
static int needs_blocks(struct hs_cache *c, struct hs_file *f, uint64_t off,
			uint64_t len)
{
	int needs = 1;

	pthread_mutex_lock(&f->lock);
	if (hs_file_load(c, f) == 0)
		needs = off + len > f->size ||
			hs_blocks_next_absent(&f->blk, off / HS_BLOCK,
					      (off + len + HS_BLOCK - 1) / HS_BLOCK) !=
				HS_BITMAP_NONE;
	pthread_mutex_unlock(&f->lock);
	return needs;
}

/* Room for a write that needs new blocks: evicts clean data, and when only
 * the guest's changes are left waits for the flusher to send some (counted
 * among the workers waiting on the host, so cached requests always find a
 * free one) for as long as the host takes data; -ENOSPC once it took
 * nothing for op_timeout.  No lock held. */
static int room_for_write(struct hs_cache *c, struct hs_file *f, uint64_t off,
			  uint64_t len)
{
	int64_t since = 0;
	int r = 0, have_sem = 0;

	while (hs_cache_room(c, f->ino, len, 1) < 0 && needs_blocks(c, f, off, len)) {
		if (!since) {
			struct timespec ts = hs_deadline_ts(
				hs_deadline_in_ms(c->cfg.op_timeout_ms));

			since = hs_now_ns();
			if (sem_clockwait(&c->fetch_sem, CLOCK_MONOTONIC, &ts) < 0) {
				r = -ENOSPC;
				break;
			}
			have_sem = 1;
		}
		r = hs_cache_wait_room(c, since);
		if (r < 0)
			break;
	}
	if (have_sem)
		sem_post(&c->fetch_sem);
	return r;
}

/* Makes block @b present before a partial overwrite; caller holds f->lock,
 * which is dropped during the fetch.  Returns 1 if the lock was dropped. */
static int need_block(struct hs_cache *c, struct hs_file *f, uint64_t b,
		      hs_deadline_t dl, int *ret)
{
	if (hs_blocks_state(&f->blk, b) != HS_BLK_ABSENT || b * HS_BLOCK >= f->size)
		return 0;
	pthread_mutex_unlock(&f->lock);
	*ret = hs_file_fetch(c, f, b, b + 1, dl);
	pthread_mutex_lock(&f->lock);
	return 1;
}

ssize_t hs_cache_write(struct hs_cache *c, struct hs_handle *h,
		       const void *buf, size_t size, off_t off,
		       hs_deadline_t dl)
{
	struct hs_file *f = h->f;
	uint64_t uoff = (uint64_t)off, end = uoff + size, old, dirty_before;
	int r = 0, tries;
	size_t done;
	ssize_t n;

	if (size == 0)
		return 0;
	/* cache_size and the disk's free-space floor (evict.c), which the
	 * cache never fills; the database has a reserve below it
	 * (reserve.c), so a full disk fails a write, never the commit of
	 * changes already acknowledged.  Room is made before the file is
	 * locked (evicting takes other files' locks). */
	r = room_for_write(c, f, uoff, size);
	if (r < 0)
		return r;
	pthread_mutex_lock(&f->lock);
	r = hs_file_load(c, f);
	if (r == 0)
		r = hs_file_open_fd(c, f);
	for (tries = 0; r == 0 && tries < 4; tries++) {
		int dropped = 0;

		if (uoff % HS_BLOCK)
			dropped |= need_block(c, f, uoff / HS_BLOCK, dl, &r);
		if (r == 0 && end % HS_BLOCK && end < f->size)
			dropped |= need_block(c, f, end / HS_BLOCK, dl, &r);
		if (!dropped)
			break;
	}
	if (r < 0)
		goto out;
	for (done = 0; done < size; done += (size_t)n) {
		n = pwrite(f->fd, (const char *)buf + done, size - done,
			   off + (off_t)done);
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			goto out;
		}
	}
	old = f->size;
	dirty_before = f->blk.ndirty * HS_BLOCK;
	r = hs_blocks_write(&f->blk, old, uoff, size);
	if (end > old)
		f->size = end;
	if (r < 0)
		goto out;
	hs_evict_touch(c, f, uoff / HS_BLOCK, (end + HS_BLOCK - 1) / HS_BLOCK, 0);
	/* enough to send while it is written (write-behind, flusher.c) */
	if (dirty_before < HS_WB_BYTES && f->blk.ndirty * HS_BLOCK >= HS_WB_BYTES)
		hs_journal_wake_for(c, f->ino);
	f->mtime = f->ctime = hs_wall_ns();
	f->attr_dirty = 1;
	f->last_write_ns = hs_now_ns();
	atomic_store(&c->last_change_ns, f->last_write_ns);
	r = hs_file_note_dirty(c, f);
	if (c->cfg.cache_size)
		hs_cache_added(c, size); /* at most this much is new */
out:
	pthread_mutex_unlock(&f->lock);
	return r < 0 ? r : (ssize_t)size;
}

int hs_cache_flush(struct hs_cache *c, struct hs_handle *h)
{
	int r;

	pthread_mutex_lock(&h->f->lock);
	r = hs_file_persist(c, h->f);
	pthread_mutex_unlock(&h->f->lock);
	pthread_mutex_lock(&c->db_lock);
	if (r == 0)
		r = hs_meta_flush(c);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

int hs_cache_fsync(struct hs_cache *c, struct hs_handle *h, int datasync,
		   hs_deadline_t dl)
{
	struct hs_file *f = h->f;
	int r = 0;

	pthread_mutex_lock(&f->lock);
	if (f->fd >= 0 && (datasync ? fdatasync(f->fd) : fsync(f->fd)) < 0)
		r = -errno;
	if (r == 0)
		r = hs_file_persist(c, f);
	pthread_mutex_unlock(&f->lock);
	if (r == 0) {
		pthread_mutex_lock(&c->db_lock);
		r = hs_meta_sync(c);
		pthread_mutex_unlock(&c->db_lock);
	}
	if (r == 0 && c->cfg.fsync_mode == HS_FSYNC_HOST)
		r = hs_cache_sync(c, dl);
	return r;
}

void hs_cache_release(struct hs_cache *c, struct hs_handle *h)
{
	struct hs_file *f = h->f;

	pthread_mutex_lock(&f->lock);
	if ((h->flags & O_ACCMODE) != O_RDONLY && f->writers > 0)
		f->writers--;
	hs_file_persist(c, f);
	pthread_mutex_unlock(&f->lock);
	hs_journal_wake_for(c, f->ino);
	hs_file_put(c, f);
	free(h);
}

int hs_file_evict(struct hs_cache *c, uint64_t ino, uint64_t *ret_bytes)
{
	struct hs_file *f = hs_file_get(c, ino);
	uint64_t n;
	int r;

	*ret_bytes = 0;
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	r = hs_file_load(c, f);
	if (r < 0)
		goto out;
	if (hs_blocks_busy(&f->blk) || f->fetching || f->streaming) {
		r = -EBUSY; /* the guest's changes, or a read filling it */
		goto out;
	}
	n = f->blk.npresent;
	if (n == 0)
		goto out;
	r = drop_data(c, f);
	if (r == 0)
		*ret_bytes = n * HS_BLOCK;
out:
	pthread_mutex_unlock(&f->lock);
	hs_file_put(c, f);
	return r;
}
