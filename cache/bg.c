/* SPDX-License-Identifier: MIT
 * cache/bg.c - refreshes the cache can do without, run off the caller's
 * thread.
 *
 * A listing older than attr_timeout, or a file's attributes checked at
 * open (close-to-open), are worth refreshing, but what the cache holds
 * answers correctly enough if the host is slow: DESIGN.md's "never hang"
 * wants a cached operation to answer at once whatever the link does.  So
 * such a refresh runs on a short-lived thread of its own and the caller
 * waits for it at most HS_BG_WAIT_MS: on a healthy link (a listing takes a
 * millisecond or two) the answer is fresh; on a stalled one the caller
 * answers from the cache and the refresh finishes, or gives up at its own
 * deadline, behind its back.
 *
 * At most one refresh per (inode, kind) runs at a time and at most
 * HS_BG_MAX at once (beyond that the cache answers as it is); a request
 * that finds its refresh already running does not wait for it.  All state
 * is under bg_lock, a leaf lock.  hs_bg_stop() (cache close) waits for the
 * running ones, each bounded by op_timeout.
 */
#include "cache_i.h"

#include <errno.h>
#include <stdlib.h>

#define HS_BG_WAIT_MS 30

struct bg_job {
	struct hs_cache *c;
	uint64_t ino;
	int kind;
};

static void *bg_main(void *arg)
{
	struct bg_job *j = arg;
	struct hs_cache *c = j->c;
	hs_deadline_t dl = hs_deadline_in_ms(c->cfg.op_timeout_ms);
	int changed, i;

	if (j->kind == HS_BG_LIST)
		hs_dir_refresh_now(c, j->ino, 0, dl);
	else
		hs_cache_revalidate(c, j->ino, &changed, dl);

	pthread_mutex_lock(&c->bg_lock);
	for (i = 0; i < HS_BG_MAX; i++)
		if (c->bg[i].ino == j->ino && c->bg[i].kind == j->kind)
			c->bg[i].ino = 0;
	c->bg_running--;
	pthread_cond_broadcast(&c->bg_cond);
	pthread_mutex_unlock(&c->bg_lock);
	free(j);
	return NULL;
}

/* The slot running (@ino, @kind), or -1; bg_lock held. */
static int find(struct hs_cache *c, uint64_t ino, int kind)
{
	int i;

	for (i = 0; i < HS_BG_MAX; i++)
		if (c->bg[i].ino == ino && c->bg[i].kind == kind)
			return i;
	return -1;
}

void hs_bg_refresh(struct hs_cache *c, uint64_t ino, int kind)
{
	struct timespec ts = hs_deadline_ts(hs_deadline_in_ms(HS_BG_WAIT_MS));
	struct bg_job *j;
	pthread_attr_t attr;
	pthread_t t;
	int i, slot = -1;

	pthread_mutex_lock(&c->bg_lock);
	if (c->bg_stop) {
		pthread_mutex_unlock(&c->bg_lock);
		return;
	}
	if (find(c, ino, kind) >= 0) {
		/* one is running: the cache answers now; only the request
		 * that started it waits for it */
		pthread_mutex_unlock(&c->bg_lock);
		return;
	}
	{
		for (i = 0; i < HS_BG_MAX && slot < 0; i++)
			if (!c->bg[i].ino)
				slot = i;
		if (slot < 0 || !(j = malloc(sizeof(*j)))) {
			pthread_mutex_unlock(&c->bg_lock);
			return; /* too many at once: the cache answers */
		}
		j->c = c;
		j->ino = ino;
		j->kind = kind;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, bg_main, j) != 0) {
			pthread_attr_destroy(&attr);
			pthread_mutex_unlock(&c->bg_lock);
			free(j);
			return;
		}
		pthread_attr_destroy(&attr);
		c->bg[slot].ino = ino;
		c->bg[slot].kind = kind;
		c->bg_running++;
	}
	while (find(c, ino, kind) >= 0 &&
	       pthread_cond_clockwait(&c->bg_cond, &c->bg_lock, CLOCK_MONOTONIC,
				      &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&c->bg_lock);
}

void hs_bg_init(struct hs_cache *c)
{
	pthread_mutex_init(&c->bg_lock, NULL);
	hs_cond_init_monotonic(&c->bg_cond);
}

void hs_bg_stop(struct hs_cache *c)
{
	pthread_mutex_lock(&c->bg_lock);
	c->bg_stop = 1;
	while (c->bg_running > 0)
		pthread_cond_wait(&c->bg_cond, &c->bg_lock);
	pthread_mutex_unlock(&c->bg_lock);
}

void hs_bg_destroy(struct hs_cache *c)
{
	pthread_mutex_destroy(&c->bg_lock);
	pthread_cond_destroy(&c->bg_cond);
}
