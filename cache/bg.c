/* SPDX-License-Identifier: MIT
 * cache/bg.c - refreshes the cache can do without, run off the caller's
 * thread.
 *
 * A listing older than attr_timeout, or a file's attributes checked at
 * open (close-to-open), are worth refreshing, but what the cache holds
 * answers correctly enough if the host is slow: DESIGN.md's "never hang"
 * wants a cached operation to answer at once whatever the link does.  So
 * such a refresh is queued for a small pool of worker threads and the
 * caller waits for it at most HS_BG_WAIT_MS: on a healthy link (a listing
 * takes a millisecond or two) the answer is fresh; on a stalled one the
 * caller answers from the cache and the refresh finishes, or gives up at
 * its own deadline, behind its back.
 *
 * At most one refresh per (inode, kind) is queued or running at a time,
 * and at most HS_BG_MAX in all (beyond that the cache answers as it is); a
 * request that finds its refresh already queued does not wait for it.
 * All state is under bg_lock, a leaf lock.  hs_bg_stop() (cache close)
 * drops what is queued and joins the workers, each bounded by op_timeout.
 */
#include "cache_i.h"

#include <errno.h>
#include <stdlib.h>

#define HS_BG_WAIT_MS 30

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_RUNNING };

static void *bg_worker(void *arg)
{
	struct hs_cache *c = arg;
	int i, changed;

	pthread_mutex_lock(&c->bg_lock);
	for (;;) {
		int slot = -1;

		for (i = 0; i < HS_BG_MAX && slot < 0; i++)
			if (c->bg[i].state == SLOT_QUEUED)
				slot = i;
		if (slot < 0) {
			if (c->bg_stop)
				break;
			pthread_cond_wait(&c->bg_work, &c->bg_lock);
			continue;
		}
		c->bg[slot].state = SLOT_RUNNING;
		pthread_mutex_unlock(&c->bg_lock);
		if (c->bg[slot].kind == HS_BG_LIST)
			hs_dir_refresh_now(c, c->bg[slot].ino, 0,
					   hs_deadline_in_ms(c->cfg.op_timeout_ms));
		else
			hs_cache_revalidate(c, c->bg[slot].ino, &changed,
					    hs_deadline_in_ms(c->cfg.op_timeout_ms));
		pthread_mutex_lock(&c->bg_lock);
		c->bg[slot].state = SLOT_FREE;
		c->bg[slot].ino = 0;
		pthread_cond_broadcast(&c->bg_cond);
	}
	pthread_mutex_unlock(&c->bg_lock);
	return NULL;
}

/* The slot queued or running (@ino, @kind), or -1; bg_lock held. */
static int find(struct hs_cache *c, uint64_t ino, int kind)
{
	int i;

	for (i = 0; i < HS_BG_MAX; i++)
		if (c->bg[i].state != SLOT_FREE && c->bg[i].ino == ino &&
		    c->bg[i].kind == kind)
			return i;
	return -1;
}

void hs_bg_refresh(struct hs_cache *c, uint64_t ino, int kind)
{
	struct timespec ts = hs_deadline_ts(hs_deadline_in_ms(HS_BG_WAIT_MS));
	int i, slot = -1;

	pthread_mutex_lock(&c->bg_lock);
	if (c->bg_stop || !c->bg_nworkers || find(c, ino, kind) >= 0) {
		/* one is on its way: the cache answers now; only the request
		 * that asked for it waits for it */
		pthread_mutex_unlock(&c->bg_lock);
		return;
	}
	for (i = 0; i < HS_BG_MAX && slot < 0; i++)
		if (c->bg[i].state == SLOT_FREE)
			slot = i;
	if (slot < 0) {
		pthread_mutex_unlock(&c->bg_lock);
		return; /* too many at once: the cache answers */
	}
	c->bg[slot].ino = ino;
	c->bg[slot].kind = kind;
	c->bg[slot].state = SLOT_QUEUED;
	pthread_cond_signal(&c->bg_work);
	while (c->bg[slot].state != SLOT_FREE &&
	       c->bg[slot].ino == ino && c->bg[slot].kind == kind &&
	       pthread_cond_clockwait(&c->bg_cond, &c->bg_lock, CLOCK_MONOTONIC,
				      &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&c->bg_lock);
}

void hs_bg_init(struct hs_cache *c)
{
	int i;

	pthread_mutex_init(&c->bg_lock, NULL);
	hs_cond_init_monotonic(&c->bg_cond);
	pthread_cond_init(&c->bg_work, NULL);
	for (i = 0; i < HS_BG_WORKERS; i++)
		if (pthread_create(&c->bg_thread[c->bg_nworkers], NULL, bg_worker,
				   c) == 0)
			c->bg_nworkers++;
}

void hs_bg_stop(struct hs_cache *c)
{
	int i, n;

	pthread_mutex_lock(&c->bg_lock);
	c->bg_stop = 1;
	for (i = 0; i < HS_BG_MAX; i++)
		if (c->bg[i].state == SLOT_QUEUED)
			c->bg[i].state = SLOT_FREE;
	pthread_cond_broadcast(&c->bg_work);
	n = c->bg_nworkers;
	c->bg_nworkers = 0;
	pthread_mutex_unlock(&c->bg_lock);
	for (i = 0; i < n; i++)
		pthread_join(c->bg_thread[i], NULL);
}

void hs_bg_destroy(struct hs_cache *c)
{
	pthread_mutex_destroy(&c->bg_lock);
	pthread_cond_destroy(&c->bg_cond);
	pthread_cond_destroy(&c->bg_work);
}
