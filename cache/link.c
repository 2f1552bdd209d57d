/* SPDX-License-Identifier: MIT
 * cache/link.c - the connections of one mount to its host, and the thread
 * that keeps them alive.
 *
 * There is one connection per slot (enum hs_slot), so a long upload by the
 * flusher never queues the FUSE workers' lookups and cold reads behind it.
 * A connection is lent with hs_link_get() and given back with
 * hs_link_put(), which also reports how the last call went: a link-class
 * error (hs_tr_err_is_link) marks the connection broken.  A broken
 * connection is closed once nobody holds it, and the link thread dials a
 * new one with exponential backoff (1 s doubling to 30 s).
 *
 * The link thread also probes idle connections every keepalive interval
 * with one round trip (the on_ping callback, which the cache uses to
 * refresh its free-space answer), so a dead link is found even when nothing
 * is being sent.
 *
 * State: CONNECTED while the fetch slot has a healthy connection;
 * RECONNECTING when it broke and no new dial failed yet (callers that need
 * the host may wait for the reconnect, up to their deadline); OFFLINE once
 * a dial failed (callers that need the host fail at once).
 *
 * Locking: link->lock protects everything in struct hs_link; it is a leaf
 * lock and is never held while dialing, probing or closing.
 */
#include "cache_i.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 1000 /* unless hs_link_new() is given another */
#define BACKOFF_MAX_MS 30000

struct slot {
	struct hs_transport *t; /* NULL while down */
	int users;              /* hs_link_get() without hs_link_put() */
	int backoff_ms;
	int64_t next_try;       /* monotonic ns */
	int64_t last_probe;     /* monotonic ns */
};

struct hs_link {
	hs_dial_fn dial;
	void *dial_arg;
	int connect_timeout_ms;
	int keepalive_s;
	int backoff_min_ms;

	pthread_mutex_t lock;
	pthread_cond_t cond; /* a slot changed, or the thread has work */
	struct slot s[HS_NSLOTS];
	int nslots;          /* slots in use: [0, nslots) */
	enum hs_link_state state;
	int64_t since;       /* wall ns */
	int dial_failed;
	int64_t last_kick;      /* monotonic ns of the last hs_link_kick() */
	char last_error[256];
	uint32_t ruid, rgid;
	unsigned caps;
	const char *wire; /* ops->name of the first connection */
	int have_ids;

	pthread_t thr;
	int started, stop;
	int (*on_ping)(void *arg, struct hs_transport *t);
	void *ping_arg;
	hs_link_connect_fn on_connect; /* set before the first dial */
	void *connect_arg;
};

static void set_state(struct hs_link *l)
{
	struct slot *f = &l->s[HS_SLOT_FETCH];
	enum hs_link_state st;

	if (f->t && !f->t->broken)
		st = HS_LINK_CONNECTED;
	else if (l->dial_failed)
		st = HS_LINK_OFFLINE;
	else
		st = HS_LINK_RECONNECTING;
	if (st != l->state) {
		if (st == HS_LINK_CONNECTED)
			hs_notice("link: connected");
		else if (l->state == HS_LINK_CONNECTED)
			hs_warn("link: lost (%s), reconnecting",
				l->last_error[0] ? l->last_error : "connection broken");
		l->state = st;
		l->since = hs_wall_ns();
	}
}

int hs_link_new(hs_dial_fn dial, void *dial_arg, int connect_timeout_ms,
		int retry_min_ms, int keepalive_s, int nslots,
		struct hs_link **ret)
{
	struct hs_link *l = calloc(1, sizeof(*l));
	int i;

	if (!l)
		return -ENOMEM;
	l->dial = dial;
	l->dial_arg = dial_arg;
	l->connect_timeout_ms = connect_timeout_ms > 0 ? connect_timeout_ms : 10000;
	l->keepalive_s = keepalive_s;
	l->backoff_min_ms = retry_min_ms > 0 ? HS_MIN(retry_min_ms, BACKOFF_MAX_MS) :
					       BACKOFF_MIN_MS;
	l->nslots = nslots < 1 ? 1 : nslots > HS_NSLOTS ? HS_NSLOTS : nslots;
	pthread_mutex_init(&l->lock, NULL);
	hs_cond_init_monotonic(&l->cond);
	l->state = HS_LINK_OFFLINE;
	l->since = hs_wall_ns();
	l->ruid = l->rgid = (uint32_t)-1;
	for (i = 0; i < HS_NSLOTS; i++)
		l->s[i].backoff_ms = l->backoff_min_ms;
	*ret = l;
	return 0;
}

static void install(struct hs_link *l, int slot, struct hs_transport *t)
{
	l->s[slot].t = t;
	l->s[slot].backoff_ms = l->backoff_min_ms;
	l->s[slot].next_try = 0;
	l->s[slot].last_probe = hs_now_ns();
	l->dial_failed = 0;
	if (!l->have_ids) {
		l->ruid = t->remote_uid;
		l->rgid = t->remote_gid;
		l->caps = t->caps;
		l->wire = t->ops->name;
		l->have_ids = 1;
	}
	set_state(l);
	pthread_cond_broadcast(&l->cond);
}

void hs_link_on_connect(struct hs_link *l, hs_link_connect_fn fn, void *arg)
{
	l->on_connect = fn;
	l->connect_arg = arg;
}

/* Dials one connection for @slot and lets the owner set it up. */
static int dial(struct hs_link *l, int slot, struct hs_transport **ret,
		char *err, size_t errlen)
{
	hs_deadline_t dl = hs_deadline_in_ms(l->connect_timeout_ms);
	int r = l->dial(l->dial_arg, dl, ret, err, errlen);

	if (r == 0 && l->on_connect)
		l->on_connect(l->connect_arg, slot, *ret, dl);
	return r;
}

int hs_link_connect(struct hs_link *l, int slot, char *err, size_t errlen)
{
	struct hs_transport *t = NULL;
	int r;

	r = dial(l, slot, &t, err, errlen);
	pthread_mutex_lock(&l->lock);
	if (r < 0) {
		snprintf(l->last_error, sizeof(l->last_error), "%s", err);
		l->dial_failed = 1;
		set_state(l);
	} else {
		install(l, slot, t);
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* Closes broken connections nobody holds; returns 1 if one was closed. */
static int reap(struct hs_link *l)
{
	struct hs_transport *dead = NULL;
	int i;

	pthread_mutex_lock(&l->lock);
	for (i = 0; i < HS_NSLOTS && !dead; i++) {
		struct slot *s = &l->s[i];

		if (s->t && s->t->broken && s->users == 0) {
			dead = s->t;
			s->t = NULL;
			s->next_try = 0;
			if (dead->last_error[0])
				snprintf(l->last_error, sizeof(l->last_error), "%s",
					 dead->last_error);
			set_state(l);
		}
	}
	pthread_mutex_unlock(&l->lock);
	hs_tr_close(dead);
	return dead != NULL;
}

static void *link_thread(void *arg)
{
	struct hs_link *l = arg;
	char err[256];
	int i;

	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		int64_t now = hs_now_ns(), wake = now + HS_NSEC_PER_SEC;
		struct timespec ts;

		pthread_mutex_unlock(&l->lock);
		while (reap(l))
			;
		pthread_mutex_lock(&l->lock);
		for (i = 0; i < l->nslots && !l->stop; i++) {
			struct slot *s = &l->s[i];
			struct hs_transport *t = NULL;
			int r;

			now = hs_now_ns();
			/* a wire that pipelines sends every batch on the first
			 * flush connection: the others would stay idle */
			if (i > HS_SLOT_FLUSH && l->s[HS_SLOT_FETCH].t &&
			    (l->s[HS_SLOT_FETCH].t->caps & HS_TR_CAP_PIPELINE))
				continue;
			if (!s->t && now >= s->next_try) {
				pthread_mutex_unlock(&l->lock);
				err[0] = 0;
				r = dial(l, i, &t, err, sizeof(err));
				pthread_mutex_lock(&l->lock);
				if (r == 0 && l->stop) {
					pthread_mutex_unlock(&l->lock);
					hs_tr_close(t);
					pthread_mutex_lock(&l->lock);
				} else if (r == 0) {
					install(l, i, t);
				} else {
					if (strcmp(l->last_error, err) != 0)
						hs_warn("link: %s (retrying in %g s)", err,
							s->backoff_ms / 1000.0);
					snprintf(l->last_error, sizeof(l->last_error),
						 "%s", err);
					l->dial_failed = 1;
					pthread_cond_broadcast(&l->cond);
					s->next_try = hs_now_ns() +
						      s->backoff_ms * HS_NSEC_PER_MSEC;
					s->backoff_ms = HS_MIN(s->backoff_ms * 2,
							       BACKOFF_MAX_MS);
					set_state(l);
				}
			} else if (s->t && !s->t->broken && l->keepalive_s > 0 &&
				   now - s->last_probe >=
					   l->keepalive_s * HS_NSEC_PER_SEC &&
				   s->users == 0 && l->on_ping) {
				t = s->t;
				s->users++;
				s->last_probe = now;
				pthread_mutex_unlock(&l->lock);
				r = l->on_ping(l->ping_arg, t);
				hs_link_put(l, t, r);
				pthread_mutex_lock(&l->lock);
			}
			if (!s->t && s->next_try < wake)
				wake = HS_MAX(s->next_try, now + 50 * HS_NSEC_PER_MSEC);
		}
		if (l->stop)
			break;
		ts = hs_deadline_ts(wake);
		pthread_cond_clockwait(&l->cond, &l->lock, CLOCK_MONOTONIC, &ts);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

void hs_link_kick(struct hs_link *l)
{
	int64_t now = hs_now_ns();
	int i;

	pthread_mutex_lock(&l->lock);
	if (now - l->last_kick >= 2 * HS_NSEC_PER_SEC) {
		l->last_kick = now;
		for (i = 0; i < l->nslots; i++)
			if (!l->s[i].t && l->s[i].next_try > now)
				l->s[i].next_try = now;
		pthread_cond_broadcast(&l->cond);
	}
	pthread_mutex_unlock(&l->lock);
}

int hs_link_start(struct hs_link *l, int (*on_ping)(void *arg, struct hs_transport *t),
		  void *arg)
{
	int r;

	l->on_ping = on_ping;
	l->ping_arg = arg;
	r = -pthread_create(&l->thr, NULL, link_thread, l);
	if (r == 0)
		l->started = 1;
	return r;
}

void hs_link_free(struct hs_link *l)
{
	int i;

	if (!l)
		return;
	if (l->started) {
		pthread_mutex_lock(&l->lock);
		l->stop = 1;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->thr, NULL);
	}
	for (i = 0; i < HS_NSLOTS; i++)
		hs_tr_close(l->s[i].t);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l);
}

int hs_link_get(struct hs_link *l, int slot, int wait, hs_deadline_t dl,
		struct hs_transport **ret)
{
	struct slot *s = &l->s[slot];
	struct timespec ts = hs_deadline_ts(dl);
	int r = 0;

	if (slot >= l->nslots)
		return -ENOTCONN;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		if (s->t && !s->t->broken) {
			s->users++;
			*ret = s->t;
			break;
		}
		/* Wait out a blip, not an outage: once a dial failed, an
		 * operation that needs the host fails at once (the kernel
		 * retries a failed read, and each retry would wait again). */
		if (!wait || l->stop || l->dial_failed) {
			r = -ENOTCONN;
			break;
		}
		if (pthread_cond_clockwait(&l->cond, &l->lock, CLOCK_MONOTONIC,
					   &ts) == ETIMEDOUT) {
			r = -ENOTCONN;
			break;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

void hs_link_put(struct hs_link *l, struct hs_transport *t, int result)
{
	int i;

	pthread_mutex_lock(&l->lock);
	for (i = 0; i < HS_NSLOTS; i++) {
		struct slot *s = &l->s[i];

		if (s->t != t)
			continue;
		s->users--;
		s->last_probe = hs_now_ns();
		if (hs_tr_err_is_link(result) && result != -ETIMEDOUT)
			t->broken = 1;
		if (t->broken) {
			if (t->last_error[0])
				snprintf(l->last_error, sizeof(l->last_error),
					 "%s", t->last_error);
			set_state(l);
			pthread_cond_broadcast(&l->cond);
		}
		break;
	}
	pthread_mutex_unlock(&l->lock);
}

enum hs_link_state hs_link_get_state(struct hs_link *l, int64_t *ret_since)
{
	enum hs_link_state st;

	pthread_mutex_lock(&l->lock);
	set_state(l);
	st = l->state;
	if (ret_since)
		*ret_since = l->since;
	pthread_mutex_unlock(&l->lock);
	return st;
}

void hs_link_last_error(struct hs_link *l, char *buf, size_t size)
{
	pthread_mutex_lock(&l->lock);
	snprintf(buf, size, "%s", l->state == HS_LINK_CONNECTED ? "" : l->last_error);
	pthread_mutex_unlock(&l->lock);
}

void hs_link_remote_ids(struct hs_link *l, uint32_t *uid, uint32_t *gid)
{
	pthread_mutex_lock(&l->lock);
	*uid = l->ruid;
	*gid = l->rgid;
	pthread_mutex_unlock(&l->lock);
}

unsigned hs_link_caps(struct hs_link *l)
{
	unsigned caps;

	pthread_mutex_lock(&l->lock);
	caps = l->caps;
	pthread_mutex_unlock(&l->lock);
	return caps;
}

const char *hs_link_wire(struct hs_link *l)
{
	const char *w;

	pthread_mutex_lock(&l->lock);
	w = l->wire ? l->wire : "?";
	pthread_mutex_unlock(&l->lock);
	return w;
}
