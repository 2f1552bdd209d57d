/* SPDX-License-Identifier: MIT
 * cache/evict.c - the bounded cache: room for new data, by evicting clean
 * data least recently used first, and writers that wait for the flusher
 * when only the guest's own changes are left.
 *
 * Two limits hold at once: the free-space floor of the disk the cache
 * lives on (min_free=, 10 % and at most 2 GiB by default: statvfs says
 * how far off it is) and, when set, cache_size= for the cached data
 * (hs_cache_usage(): a walk of the data folder plus what was added and
 * evicted since).  Before a fetch lands, a stream reads its next chunk or
 * a write takes new blocks, hs_cache_room() checks both, and when short
 * evicts, in this order:
 *   1. clean files nobody has open (least recently checked first), whole;
 *   2. clean blocks of open files, least recently used first, by extents
 *      of EXTENT_BLOCKS blocks (1 MiB): each hs_file keeps the use clock
 *      of each of its extents (hs_evict_touch(): a read or a write sets
 *      it; a fetch landing blocks nobody read yet marks them UNREAD, which
 *      sorts after everything read, so a stream's read-ahead goes last).
 * A block is dropped only where hs_blocks_may_drop() says so (CLEAN, and
 * below any cut not on the host yet); its new state is committed before
 * its hole is punched, so a crash never leaves a block marked present
 * over a hole.  Each pass frees a little more than asked (SLACK), so not
 * every request has to.
 *
 * Writers: when nothing clean is left, or the guest's changes not on the
 * host yet fill half the room (write_may_evict()), a write that needs new
 * blocks waits (hs_cache_wait_room()) while the host keeps taking data: it marks
 * the cache pressed, which makes the flusher send at once what it would
 * otherwise hold back (delays, files still open for writing: write-behind,
 * flusher.c), and whatever the host acknowledged becomes clean and can be
 * evicted.  Only when the host took nothing for op_timeout does the write
 * fail with ENOSPC.
 *
 * Locking: called with no lock held.  Collecting victims takes files_lock
 * and each file's lock in turn (the usual order); each eviction takes one
 * file's lock, then db_lock inside it for the commit.
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define EXTENT_BLOCKS 256ULL
/* A use value above this marks an extent landed but not read yet. */
#define UNREAD (1ULL << 62)
/* How long a writer's wait keeps the cache pressed. */
#define PRESSED_NS HS_NSEC_PER_SEC
/* How long a count of the unacknowledged changes serves. */
#define UNACKED_NS (50 * HS_NSEC_PER_MSEC)
/* How often a waiting writer looks again. */
#define WAIT_STEP_NS (50 * HS_NSEC_PER_MSEC)

/* ---- the use clock of a file's extents ---- */

void hs_evict_touch(struct hs_cache *c, struct hs_file *f, uint64_t first,
		    uint64_t last, int unread)
{
	uint64_t k, k0 = first / EXTENT_BLOCKS, k1, now;

	if (last <= first)
		return;
	k1 = (last - 1) / EXTENT_BLOCKS;
	if (k1 >= f->nuse) {
		uint64_t n = HS_MAX(k1 + 1, f->nuse * 2);
		uint64_t *nu = realloc(f->use, n * sizeof(*nu));

		if (!nu)
			return; /* unknown extents count as the oldest */
		memset(nu + f->nuse, 0, (n - f->nuse) * sizeof(*nu));
		f->use = nu;
		f->nuse = n;
	}
	now = atomic_fetch_add(&c->use_clock, 1) + 1;
	for (k = k0; k <= k1; k++)
		f->use[k] = unread ? HS_MAX(f->use[k], UNREAD + now) : now;
}

/* ---- how far off the limits are ---- */

uint64_t hs_cache_min_free(const struct hs_cache *c, uint64_t total)
{
	if (c->cfg.min_free_pct)
		return total / 100 * HS_MIN(c->cfg.min_free_pct, 100U);
	if (c->cfg.min_free)
		return HS_MIN(c->cfg.min_free, total);
	return HS_MIN(total / 10, (uint64_t)2 << 30);
}

/* Bytes of cached data to drop so that @bytes more stay within both
 * limits (0: there is room); *@room: what the cache may hold at most. */
static uint64_t deficit(struct hs_cache *c, uint64_t bytes, uint64_t *room)
{
	uint64_t limit = c->cfg.cache_size, d = 0, used;
	struct statvfs sv;

	*room = limit ? limit : UINT64_MAX;
	if (statvfs(c->datadir, &sv) == 0) {
		uint64_t total = (uint64_t)sv.f_blocks * sv.f_frsize;
		uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
		uint64_t floor = hs_cache_min_free(c, total);

		*room = HS_MIN(*room, total > floor ? total - floor : 0);
		if (avail < floor + bytes)
			d = floor + bytes - avail;
	}
	if (limit) {
		used = hs_cache_usage(c, d > 0);
		if (used + bytes > limit)
			d = HS_MAX(d, used + bytes - limit);
	}
	return d;
}

uint64_t hs_cache_ahead_max(struct hs_cache *c)
{
	uint64_t room;

	deficit(c, 0, &room);
	return room / 4;
}

/* ---- 1. whole clean files nobody has open ---- */

/* Evicts clean files that are not open, least recently checked first,
 * until @want bytes are freed or none is left; returns the bytes freed. */
static uint64_t evict_closed(struct hs_cache *c, uint64_t want, uint64_t skip_ino)
{
	static const char sql[] =
		"SELECT ino FROM inode WHERE (mode & 61440) = 32768 AND"
		" present IS NOT NULL AND local=0 AND ino<>?1"
		" ORDER BY checked_at, ino LIMIT 64 OFFSET ?2";
	uint64_t freed = 0, v[64], bytes;
	int64_t offset = 0;
	size_t n, k;
	sqlite3_stmt *st;

	while (freed < want) {
		n = 0;
		pthread_mutex_lock(&c->db_lock);
		st = hs_meta_prepare(c, sql);
		if (st) {
			sqlite3_bind_int64(st, 1, (int64_t)skip_ino);
			sqlite3_bind_int64(st, 2, offset);
			while (n < HS_ARRAY_SIZE(v) && sqlite3_step(st) == SQLITE_ROW)
				v[n++] = (uint64_t)sqlite3_column_int64(st, 0);
			sqlite3_reset(st);
		}
		pthread_mutex_unlock(&c->db_lock);
		if (n == 0)
			break;
		for (k = 0; k < n && freed < want; k++) {
			if (!hs_file_is_open(c, v[k]) &&
			    hs_file_evict(c, v[k], &bytes) == 0 && bytes)
				freed += bytes;
			else
				offset++; /* still there next time: skip it */
		}
	}
	if (freed)
		hs_cache_forget_usage(c);
	return freed;
}

/* ---- 2. clean blocks of open files, by extent ---- */

struct victim {
	uint64_t use;
	struct hs_file *f;      /* a reference held */
	uint64_t ext;
};

static int by_use(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	return x->use < y->use ? -1 : x->use > y->use;
}

/* The extents of loaded files that hold blocks other than the guest's
 * changes, each with a reference on its file; *@ret (free() it). */
static size_t collect(struct hs_cache *c, struct victim **ret)
{
	struct victim *v = NULL;
	size_t n = 0, cap = 0;
	struct hs_file *f;
	unsigned b;

	pthread_mutex_lock(&c->files_lock);
	for (b = 0; b < HS_ARRAY_SIZE(c->files); b++) {
		for (f = c->files[b]; f; f = f->next) {
			uint64_t nb, k, first = n;

			pthread_mutex_lock(&f->lock);
			if (!f->loaded || f->fd < 0 ||
			    f->blk.npresent <= f->blk.ndirty + f->blk.nwriting) {
				pthread_mutex_unlock(&f->lock);
				continue;
			}
			nb = (f->size + HS_BLOCK - 1) / HS_BLOCK;
			for (k = 0; k * EXTENT_BLOCKS < nb; k++) {
				uint64_t e = HS_MIN(nb, (k + 1) * EXTENT_BLOCKS);

				if (hs_blocks_next_present(&f->blk, k * EXTENT_BLOCKS,
							   e) == HS_BITMAP_NONE)
					continue;
				if (n == cap) {
					struct victim *nv;

					cap = cap ? cap * 2 : 256;
					nv = realloc(v, cap * sizeof(*v));
					if (!nv)
						break;
					v = nv;
				}
				v[n++] = (struct victim){
					k < f->nuse ? f->use[k] : 0, f, k };
			}
			pthread_mutex_unlock(&f->lock);
			if (n > first)
				f->refs += (int)(n - first);
		}
	}
	pthread_mutex_unlock(&c->files_lock);
	*ret = v;
	return n;
}

/* Drops what may go of @f's extents @ext[0..n): the new maps committed,
 * then the holes punched.  Returns the bytes freed. */
static uint64_t evict_extents(struct hs_cache *c, struct hs_file *f,
			      const uint64_t *ext, size_t n)
{
	uint64_t nb, dropped = 0, k;
	size_t i;
	int64_t got;

	pthread_mutex_lock(&f->lock);
	nb = (f->size + HS_BLOCK - 1) / HS_BLOCK;
	for (i = 0; i < n && f->fd >= 0; i++) {
		uint64_t from = ext[i] * EXTENT_BLOCKS;

		if (from >= nb)
			continue;
		got = hs_blocks_evict(&f->blk, f->size, from,
				      HS_MIN(nb, from + EXTENT_BLOCKS), NULL, NULL);
		if (got > 0)
			dropped += (uint64_t)got;
	}
	if (dropped == 0) {
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	/* committed first: a block marked present is never a hole */
	if (hs_file_persist(c, f) == 0) {
		pthread_mutex_lock(&c->db_lock);
		hs_meta_flush(c);
		pthread_mutex_unlock(&c->db_lock);
	}
	for (i = 0; i < n; i++) {
		uint64_t from = ext[i] * EXTENT_BLOCKS, to = HS_MIN(nb, from + EXTENT_BLOCKS);

		for (k = from; k < to;) {
			uint64_t h = hs_blocks_next_absent(&f->blk, k, to), e;

			if (h == HS_BITMAP_NONE)
				break;
			e = hs_blocks_next_present(&f->blk, h, to);
			if (e == HS_BITMAP_NONE)
				e = to;
			if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)(h * HS_BLOCK),
				      (off_t)((e - h) * HS_BLOCK)) < 0 &&
			    !c->punch_warned) {
				c->punch_warned = 1;
				hs_warn("cannot free cached blocks of a file in '%s': %s",
					c->datadir, strerror(errno));
			}
			k = e;
		}
	}
	pthread_mutex_unlock(&f->lock);
	if (c->cfg.cache_size)
		hs_cache_added(c, -(int64_t)(dropped * HS_BLOCK));
	return dropped * HS_BLOCK;
}

/* Evicts extents of open files, least recently used first, until @want
 * bytes are freed or nothing may go; returns the bytes freed. */
static uint64_t evict_open(struct hs_cache *c, uint64_t want)
{
	struct victim *v;
	size_t n = collect(c, &v), i, j, k;
	uint64_t freed = 0, ext[32];

	if (n > 1)
		qsort(v, n, sizeof(*v), by_use);
	for (i = 0; i < n; i = j) {
		/* a run of the same file's extents, at most 32 MiB worth */
		for (j = i, k = 0; j < n && v[j].f == v[i].f && k < HS_ARRAY_SIZE(ext) &&
		     freed + k * EXTENT_BLOCKS * HS_BLOCK < want; j++)
			ext[k++] = v[j].ext;
		if (k == 0)
			break;
		freed += evict_extents(c, v[i].f, ext, k);
	}
	for (i = 0; i < n; i++)
		hs_file_put(c, v[i].f);
	free(v);
	return freed;
}

/* ---- the entry points ---- */

/* May a write evict clean data to make room?  Not while the guest's
 * changes the host has not taken fill half of it (the kernel's dirty
 * ratio): the writer waits for the flusher instead.  When the link stalls
 * under a copy, the copy stops there, and what was cached for reading
 * stays readable.  Counted at most every UNACKED_NS. */
static int write_may_evict(struct hs_cache *c, uint64_t room)
{
	int64_t now = hs_now_ns(), at = atomic_load(&c->unacked_at);
	uint64_t u;

	if (now - at < UNACKED_NS) {
		u = atomic_load(&c->unacked);
	} else {
		u = hs_file_unacked(c);
		atomic_store(&c->unacked, u);
		atomic_store(&c->unacked_at, now);
	}
	return u < room / 2;
}

int hs_cache_room(struct hs_cache *c, uint64_t ino, uint64_t bytes, int write)
{
	uint64_t room, want = deficit(c, bytes, &room), freed;

	if (!want)
		return 0;
	if (write && !write_may_evict(c, room))
		return -ENOSPC;
	/* a little more, so that not every request has to */
	want += HS_MAX(HS_MIN(room / 16, (uint64_t)16 << 20), (uint64_t)1 << 20);
	freed = evict_closed(c, want, ino);
	if (freed < want)
		evict_open(c, want - freed);
	return deficit(c, bytes, &room) ? -ENOSPC : 0;
}

void hs_cache_trim(struct hs_cache *c)
{
	uint64_t limit = c->cfg.cache_size, used;

	if (!limit || (used = hs_cache_usage(c, 0)) <= limit)
		return;
	/* down to 90 %, clean files first */
	if (evict_closed(c, used - limit / 10 * 9, 0) < used - limit / 10 * 9)
		evict_open(c, used - limit / 10 * 9);
}

int hs_cache_pressed(struct hs_cache *c)
{
	int64_t at = atomic_load(&c->pressed_at);

	return at && hs_now_ns() - at < PRESSED_NS;
}

void hs_cache_progress(struct hs_cache *c)
{
	/* no wake-up: room comes only at the end of a send, whose
	 * done_cond broadcast wakes the writers */
	atomic_store(&c->progress_at, hs_now_ns());
}

void hs_cache_acked(struct hs_cache *c)
{
	atomic_store(&c->unacked_at, 0); /* the next write counts again */
}

int hs_cache_wait_room(struct hs_cache *c, int64_t since)
{
	int64_t now = hs_now_ns();
	int64_t last = HS_MAX(since, (int64_t)atomic_load(&c->progress_at));
	struct timespec ts;

	if (now - last > (int64_t)c->cfg.op_timeout_ms * HS_NSEC_PER_MSEC)
		return -ENOSPC; /* the host took nothing for op_timeout */
	atomic_store(&c->pressed_at, now);
	hs_journal_wake(c);
	ts = hs_deadline_ts(now + WAIT_STEP_NS);
	pthread_mutex_lock(&c->flush_lock);
	pthread_cond_clockwait(&c->done_cond, &c->flush_lock, CLOCK_MONOTONIC, &ts);
	pthread_mutex_unlock(&c->flush_lock);
	return 0;
}
