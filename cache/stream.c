/* SPDX-License-Identifier: MIT
 * cache/stream.c - sequential reads of a host copy, ahead of the readers.
 *
 * A cold sequential read (cat, cp, a video player) would otherwise fetch
 * one window at a time: open the remote file, read the window, close it,
 * and only then let the next request ask for the next one, so the link
 * idles while the kernel consumes each window.  A stream instead runs on
 * a thread of its own for as long as readers keep up: it opens the host
 * copy once and reads it in calls of CHUNK bytes on one handle (libssh2
 * keeps 4x that in flight between calls, so the link never idles), lands
 * each chunk in the cache file (hs_file_land: only blocks still ABSENT,
 * only while the data version is unchanged) and wakes the readers waiting
 * for it (f->fetched).  Readers move its goal (f->st_until) ahead of where
 * they read; once it reached the goal and no reader moved it for IDLE_MS,
 * or at the end of the file, on an error, when the host copy changed, or
 * when the cache closes, or when the cache has no room left for what it
 * reads (hs_cache_room(): all it holds is the guest's changes), it closes the handle, gives the connection back
 * and ends.  Readers whose blocks a failed stream did not bring fetch them
 * themselves (hs_file_fetch), which reports the error or waits for a
 * reconnect as any cold read does; a stream never waits for one.
 *
 * It reads on the fetch connection: calls of other requests (lookups,
 * listings) take turns with its chunks.  At most MAX_STREAMS run at once;
 * beyond that readers fetch for themselves (file.c).  Each transport call
 * has op_timeout, so a stalled link ends the stream, and the readers
 * waiting for it give up at their own deadlines.
 *
 * Locking: f->lock guards the st_* fields; stream_lock (a leaf) the count.
 * No lock is held during transport I/O.
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK (1U << 20)
#define CHUNK_BLOCKS (CHUNK / HS_BLOCK)
#define IDLE_MS 200
#define MAX_STREAMS 4

struct stream {
	struct hs_cache *c;
	struct hs_file *f;
	char *hpath;
	uint64_t dver;
};

/* Reads @len bytes at @off of @rf into @buf; what lies past the host's end
 * of file reads as zeros (the guest size says the file goes on, as in
 * hs_file_fetch).  0 or -errno. */
static int read_range(struct hs_cache *c, struct hs_transport *t,
		      struct hs_tr_file *rf, char *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = hs_tr_pread(t, rf, buf + got, len - got, off + got,
				hs_deadline_in_ms(c->cfg.op_timeout_ms));
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got < len)
		memset(buf + got, 0, len - got);
	return 0;
}

static int stopping(struct hs_cache *c)
{
	int s;

	pthread_mutex_lock(&c->stream_lock);
	s = c->stream_stop;
	pthread_mutex_unlock(&c->stream_lock);
	return s;
}

static void *stream_main(void *arg)
{
	struct stream *s = arg;
	struct hs_cache *c = s->c;
	struct hs_file *f = s->f;
	struct hs_transport *t = NULL;
	struct hs_tr_file *rf = NULL;
	char *buf = malloc(CHUNK);
	int r;

	r = buf ? 0 : -ENOMEM;
	if (r == 0)
		r = hs_link_get(c->link, HS_SLOT_FETCH, 0, HS_DEADLINE_NEVER, &t);
	if (r == 0)
		r = hs_tr_fopen(t, s->hpath, O_RDONLY, 0, &rf,
				hs_deadline_in_ms(c->cfg.op_timeout_ms));
	pthread_mutex_lock(&f->lock);
	while (r == 0) {
		uint64_t nb = (f->size + HS_BLOCK - 1) / HS_BLOCK;
		uint64_t until = HS_MIN(f->st_until, nb), b, e;

		if (f->dver != s->dver)
			break; /* the host copy changed: the handle reads the old one */
		b = hs_blocks_next_absent(&f->blk, HS_MIN(f->st_next, until),
					 until);
		if (b == HS_BITMAP_NONE) {
			struct timespec ts = hs_deadline_ts(hs_deadline_in_ms(IDLE_MS));

			f->st_next = until;
			/* the last chunk may have reached past the goal */
			if (until >= nb || hs_blocks_next_absent(&f->blk, until,
							       nb) == HS_BITMAP_NONE)
				break; /* the whole file is here */
			pthread_mutex_unlock(&f->lock);
			if (stopping(c)) {
				pthread_mutex_lock(&f->lock);
				break;
			}
			pthread_mutex_lock(&f->lock);
			if (f->st_until <= until &&
			    pthread_cond_clockwait(&f->st_more, &f->lock,
						   CLOCK_MONOTONIC, &ts) == ETIMEDOUT &&
			    f->st_until <= until)
				break; /* nobody reads on: done */
			continue;
		}
		e = hs_blocks_next_present(&f->blk, b, HS_MIN(b + CHUNK_BLOCKS, nb));
		if (e == HS_BITMAP_NONE)
			e = HS_MIN(b + CHUNK_BLOCKS, nb);
		f->st_next = b; /* in flight: readers of [b, e) wait for it */
		pthread_mutex_unlock(&f->lock);
		/* room first (evict.c); none: the readers read through */
		r = stopping(c) ? -ECANCELED :
		    hs_cache_room(c, f->ino, (e - b) * HS_BLOCK, 0) < 0 ? -ENOSPC :
		    read_range(c, t, rf, buf, (size_t)((e - b) * HS_BLOCK),
			       b * HS_BLOCK);
		pthread_mutex_lock(&f->lock);
		if (r == 0)
			r = hs_file_land(c, f, s->dver, buf, b, e);
		if (r == 0)
			f->st_next = e;
		pthread_cond_broadcast(&f->fetched);
	}
	f->streaming = 0;
	f->st_err = r == -ECANCELED ? -EIO : r;
	f->ra_next = f->st_next * HS_BLOCK;
	pthread_cond_broadcast(&f->fetched);
	pthread_mutex_unlock(&f->lock);
	if (rf)
		hs_tr_fclose(t, rf, hs_deadline_in_ms(c->cfg.op_timeout_ms));
	if (t)
		hs_link_put(c->link, t, r);
	free(buf);
	free(s->hpath);
	hs_file_put(c, f);
	free(s);
	pthread_mutex_lock(&c->stream_lock);
	c->nstreams--;
	pthread_cond_broadcast(&c->stream_cond);
	pthread_mutex_unlock(&c->stream_lock);
	return NULL;
}

int hs_stream_start(struct hs_cache *c, struct hs_file *f, uint64_t from,
		    uint64_t until)
{
	struct stream *s;
	struct hs_inode in;
	pthread_attr_t attr;
	pthread_t thr;
	int r;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, f->ino, &in);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return -EAGAIN;
	if (!in.hpath || in.host_size <= 0) {
		/* nothing to read from the host: file.c knows what to do */
		hs_inode_release(&in);
		return -EAGAIN;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		hs_inode_release(&in);
		return -EAGAIN;
	}
	s->c = c;
	s->hpath = in.hpath;
	pthread_mutex_lock(&c->stream_lock);
	r = c->stream_stop || c->nstreams >= MAX_STREAMS ? -EAGAIN : 0;
	if (r == 0)
		c->nstreams++;
	pthread_mutex_unlock(&c->stream_lock);
	if (r < 0) {
		free(s->hpath);
		free(s);
		return r;
	}
	/* the stream's own reference: the handle's may go first */
	pthread_mutex_lock(&c->files_lock);
	f->refs++;
	pthread_mutex_unlock(&c->files_lock);
	s->f = f;

	pthread_mutex_lock(&f->lock);
	if (f->streaming) {
		r = 0; /* another reader started one meanwhile */
		goto undo;
	}
	s->dver = f->dver;
	f->streaming = 1;
	f->st_gen++;
	f->st_err = 0;
	f->st_next = from;
	f->st_until = until;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = -pthread_create(&thr, &attr, stream_main, s);
	pthread_attr_destroy(&attr);
	if (r == 0) {
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	f->streaming = 0;
	pthread_cond_broadcast(&f->fetched);
	r = -EAGAIN;
undo:
	pthread_mutex_unlock(&f->lock);
	hs_file_put(c, f);
	pthread_mutex_lock(&c->stream_lock);
	c->nstreams--;
	pthread_cond_broadcast(&c->stream_cond);
	pthread_mutex_unlock(&c->stream_lock);
	free(s->hpath);
	free(s);
	return r;
}

void hs_stream_init(struct hs_cache *c)
{
	pthread_mutex_init(&c->stream_lock, NULL);
	pthread_cond_init(&c->stream_cond, NULL);
}

void hs_stream_stop(struct hs_cache *c)
{
	pthread_mutex_lock(&c->stream_lock);
	c->stream_stop = 1;
	while (c->nstreams > 0)
		pthread_cond_wait(&c->stream_cond, &c->stream_lock);
	pthread_mutex_unlock(&c->stream_lock);
}

void hs_stream_destroy(struct hs_cache *c)
{
	pthread_mutex_destroy(&c->stream_lock);
	pthread_cond_destroy(&c->stream_cond);
}
