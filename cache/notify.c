/* SPDX-License-Identifier: MIT
 * cache/notify.c - acting on the host's change notifications (the agent
 * wire; SFTP has none).
 *
 * The fetch connection subscribes when it is dialed (hs_notify_on_connect).
 * Its reader thread queues each event (hs_notify_push); one thread of the
 * cache takes them in batches (a burst of events is one batch) and brings
 * the cache up to date:
 *   - a name created or removed in a host folder: the folder is listed
 *     again at once, whatever its age, and the guest entries before and
 *     after are compared;
 *   - a move inside the folder: applied to the cache as a rename, so the
 *     inode and its cached data survive it;
 *   - a changed file: checked against the host (one lstat); a new version
 *     drops the cached data;
 *   - an overflow, or a reconnect (events may have been missed): every
 *     listing and every file check is made stale.
 * What changed in the guest's terms (an entry created, removed or moved,
 * a file changed) goes to the owner's on_host_change callback, which the
 * FUSE front end turns into kernel cache invalidations and inotify events.
 *
 * Echoes: the flusher's own changes come back as events too.  The cache
 * already records them, so they compare equal and report nothing; an event
 * that arrives while the flusher is still sending a row near its path
 * waits (RETRY_MS, at most RETRY_MAX times) until the row's outcome is
 * recorded.
 *
 * Lock: nq_lock guards the queue and is a leaf; processing takes db_lock
 * and the link like any other refresh, never with nq_lock held.
 */
#include "cache_i.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/proto.h"

#define NQ_MAX 8192     /* events queued beyond this count as an overflow */
#define BATCH_MS 20     /* a burst of events is taken as one batch */
#define RETRY_MS 100
#define RETRY_MAX 50
#define NQ_RELIST 100   /* internal kind: list folder @path again */

struct hs_nev {
	unsigned kind;
	int tries;
	char *path, *path2;
};

/* ---- the queue ---- */

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

static void nev_free(struct hs_nev *e)
{
	free(e->path);
	free(e->path2);
}

/* Appends one event; nq_lock held. */
static void nq_add(struct hs_cache *c, unsigned kind, int tries,
		   const char *path, const char *path2)
{
	struct hs_nev *e;

	if (c->nq_n && c->nq[c->nq_n - 1].kind == kind && !path2 &&
	    !c->nq[c->nq_n - 1].path2 && !strcmp(c->nq[c->nq_n - 1].path, path))
		return; /* a burst of writes to one file */
	if (c->nq_n >= NQ_MAX) {
		c->nq_overflow = 1;
		return;
	}
	if (c->nq_n == c->nq_cap) {
		size_t cap = c->nq_cap ? c->nq_cap * 2 : 64;

		e = realloc(c->nq, cap * sizeof(*e));
		if (!e) {
			c->nq_overflow = 1;
			return;
		}
		c->nq = e;
		c->nq_cap = cap;
	}
	e = &c->nq[c->nq_n];
	e->kind = kind;
	e->tries = tries;
	e->path = strdup(path);
	e->path2 = path2 ? strdup(path2) : NULL;
	if (!e->path || (path2 && !e->path2)) {
		nev_free(e);
		c->nq_overflow = 1;
		return;
	}
	c->nq_n++;
}

void hs_notify_push(void *arg, unsigned kind, const char *path,
		    const char *path2)
{
	struct hs_cache *c = arg;

	/* a path whose components a folder cannot hold ("..", ".", "",
	 * from a broken or hostile agent) names nothing in the share */
	if (kind != HS_NOTIFY_OVERFLOW &&
	    (!path || !hs_path_ok(path) || (path2 && !hs_path_ok(path2)))) {
		hs_warn("host notification: ignored a change of '%.64s'",
			path ? path : "");
		return;
	}
	/* the cache's own temporary names: an upload renamed into place is
	 * a creation of its real name, the rest is not shown */
	if (kind == HS_NOTIFY_MOVED && path2) {
		int from_tmp = hs_internal_name(base_name(path));
		int to_tmp = hs_internal_name(base_name(path2));

		if (from_tmp && to_tmp)
			return;
		if (from_tmp || to_tmp) {
			kind = from_tmp ? HS_NOTIFY_CREATED : HS_NOTIFY_REMOVED;
			path = from_tmp ? path2 : path;
			path2 = NULL;
		}
	} else if (kind == HS_NOTIFY_MOVED) {
		return;
	} else if (kind != HS_NOTIFY_OVERFLOW && hs_internal_name(base_name(path))) {
		return;
	}
	pthread_mutex_lock(&c->nq_lock);
	if (!c->nq_stop) {
		if (kind == HS_NOTIFY_OVERFLOW)
			c->nq_overflow = 1;
		else if (kind >= HS_NOTIFY_CHANGED && kind <= HS_NOTIFY_MOVED)
			nq_add(c, kind, 0, path, path2);
		pthread_cond_signal(&c->nq_cond);
	}
	pthread_mutex_unlock(&c->nq_lock);
}

void hs_notify_on_connect(void *arg, int slot, struct hs_transport *t,
			  hs_deadline_t dl)
{
	struct hs_cache *c = arg;
	int r;

	if (slot != HS_SLOT_FETCH)
		return;
	r = hs_tr_subscribe(t, hs_notify_push, c, dl);
	if (r == -ENOTSUP)
		return;
	if (r < 0) {
		hs_warn("host change notifications unavailable: %s", strerror(-r));
		return;
	}
	pthread_mutex_lock(&c->nq_lock);
	if (c->nq_subscribed)
		c->nq_overflow = 1; /* what changed while the link was down */
	c->nq_subscribed = 1;
	pthread_cond_signal(&c->nq_cond);
	pthread_mutex_unlock(&c->nq_lock);
	atomic_store(&c->notify_live, 1);
}

/* ---- applying a batch ---- */

struct strset {
	char **v;
	size_t n, cap;
};

static int strset_has(const struct strset *s, const char *p)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], p))
			return 1;
	return 0;
}

static void strset_add(struct strset *s, const char *p)
{
	char **v;

	if (!p || strset_has(s, p))
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;

		v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return;
		s->v = v;
		s->cap = cap;
	}
	if ((s->v[s->n] = strdup(p)))
		s->n++;
}

static void strset_free(struct strset *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* The host folder of host path @p ("/" for "/a"), malloc'ed. */
static char *dir_of(const char *p)
{
	const char *s = strrchr(p, '/');

	if (!s || s == p)
		return strdup("/");
	return strndup(p, (size_t)(s - p));
}

static void emit(struct hs_cache *c, const struct hs_host_change *hc)
{
	if (c->cfg.on_host_change)
		c->cfg.on_host_change(c->cfg.on_host_change_arg, hc);
}

/* @a is @b or below it. */
static int at_or_below(const char *a, const char *b)
{
	size_t n = strlen(b);

	if (!strcmp(b, "/"))
		return 1;
	return !strncmp(a, b, n) && (a[n] == 0 || a[n] == '/');
}

/* True while the flusher sends a row about @p or a folder above it (what
 * the cache records at @p may be about to change); rows about paths below
 * @p do not change that.  db_lock held. */
static int busy_near(struct hs_cache *c, const char *p)
{
	size_t i, k;

	for (i = 0; i < HS_ARRAY_SIZE(c->hbusy); i++)
		for (k = 0; c->hbusy[i].used && k < 2; k++) {
			const char *q = c->hbusy[i].path[k];

			if (q && at_or_below(p, q))
				return 1;
		}
	return 0;
}

/* Makes every listing and every file check stale: events were lost. */
static void resync_all(struct hs_cache *c)
{
	pthread_mutex_lock(&c->db_lock);
	if (hs_meta_begin(c) == 0) {
		if (hs_meta_exec(c, "UPDATE inode SET listed_at=0 WHERE listed_at>0"
				    " OR (listed_at=-1 AND hpath IS NOT NULL);"
				    "UPDATE inode SET checked_at=0;") == 0)
			hs_meta_commit_deferred(c);
		else
			hs_meta_rollback(c);
	}
	pthread_mutex_unlock(&c->db_lock);
	hs_dir_changed(c, 0);
	hs_info("host change notifications: events were lost; "
		"everything cached is checked again");
}

/* The inode the cache has at host path @p: its number and row (released
 * by the caller), or -ENOENT. */
static int inode_at(struct hs_cache *c, const char *p, uint64_t *ret_ino,
		    struct hs_inode *ret)
{
	int r;

	pthread_mutex_lock(&c->db_lock);
	*ret_ino = hs_meta_by_hpath(c, p);
	r = *ret_ino ? hs_meta_get_inode(c, *ret_ino, ret) : -ENOENT;
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

/* One guest entry of a folder, for comparing before and after a listing. */
struct gent {
	char *name;
	uint64_t ino;
	uint32_t mode;
	int64_t local;
	uint64_t dver;
};

struct glist {
	struct gent *v;
	size_t n;
};

static void glist_free(struct glist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* The entries of guest folder @dir, by name (byte order). */
static int glist_read(struct hs_cache *c, uint64_t dir, struct glist *l)
{
	static const char sql[] =
		"SELECT d.name, d.ino, i.mode, i.local, i.dver FROM dentry d"
		" JOIN inode i ON d.ino=i.ino WHERE d.parent=? ORDER BY d.name";
	sqlite3_stmt *st;
	size_t cap = 0;
	int r = 0;

	memset(l, 0, sizeof(*l));
	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (!st)
		r = -EIO;
	else
		sqlite3_bind_int64(st, 1, (int64_t)dir);
	while (r == 0 && sqlite3_step(st) == SQLITE_ROW) {
		struct gent *g;

		if (l->n == cap) {
			cap = cap ? cap * 2 : 64;
			g = realloc(l->v, cap * sizeof(*g));
			if (!g) {
				r = -ENOMEM;
				break;
			}
			l->v = g;
		}
		g = &l->v[l->n];
		g->name = strdup((const char *)sqlite3_column_text(st, 0));
		if (!g->name) {
			r = -ENOMEM;
			break;
		}
		g->ino = (uint64_t)sqlite3_column_int64(st, 1);
		g->mode = (uint32_t)sqlite3_column_int64(st, 2);
		g->local = sqlite3_column_int64(st, 3);
		g->dver = (uint64_t)sqlite3_column_int64(st, 4);
		l->n++;
	}
	if (st)
		sqlite3_reset(st);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		glist_free(l);
	return r;
}

static void emit_entry(struct hs_cache *c, int kind, uint64_t dir,
		       const struct gent *g)
{
	struct hs_host_change hc = {
		.kind = kind, .parent = dir, .name = g->name, .ino = g->ino,
		.mode = g->mode,
	};

	emit(c, &hc);
}

/* The key of inode @ino in the sets below. */
static void ino_key(char key[32], uint64_t ino)
{
	snprintf(key, 32, "%llu", (unsigned long long)ino);
}

/* Lists host folder @hdir again and reports how its guest entries changed;
 * the inodes reported created go to @created, changed ones to @seen.
 * Returns 1 when the listing raced the flusher (try again later). */
static int relist(struct hs_cache *c, const char *hdir, struct strset *created,
		  struct strset *seen)
{
	struct glist a, b;
	struct hs_inode d;
	uint64_t dir;
	size_t i = 0, k = 0;
	int r, raced = 0;

	if (inode_at(c, hdir, &dir, &d) < 0)
		return 0; /* a folder the guest has not seen */
	r = S_ISDIR(d.mode) && d.listed_at != -2;
	hs_inode_release(&d);
	if (!r || glist_read(c, dir, &a) < 0)
		return 0;
	r = hs_dir_relist(c, dir, hs_deadline_in_ms(c->cfg.op_timeout_ms),
			  &raced);
	if (r < 0 || raced || glist_read(c, dir, &b) < 0) {
		glist_free(&a);
		return raced;
	}
	while (i < a.n || k < b.n) {
		int cmp = i == a.n ? 1 : k == b.n ? -1 :
			  strcmp(a.v[i].name, b.v[k].name);
		char key[32];

		if (cmp < 0 || (cmp == 0 && a.v[i].ino != b.v[k].ino))
			emit_entry(c, HS_HC_REMOVED, dir, &a.v[i]);
		if ((cmp > 0 || (cmp == 0 && a.v[i].ino != b.v[k].ino)) &&
		    b.v[k].local == 0) {
			emit_entry(c, HS_HC_CREATED, dir, &b.v[k]);
			ino_key(key, b.v[k].ino);
			strset_add(created, key);
		} else if (cmp == 0 && a.v[i].dver != b.v[k].dver) {
			emit_entry(c, HS_HC_CHANGED, dir, &b.v[k]);
			ino_key(key, b.v[k].ino);
			strset_add(seen, key);
		}
		if (cmp <= 0)
			i++;
		if (cmp >= 0)
			k++;
	}
	glist_free(&a);
	glist_free(&b);
	return 0;
}

/* 1 if a journal row not yet on the host names @p or a path below it, or
 * an inode at or below host path @p holds guest changes; db_lock held. */
static int guest_pending(struct hs_cache *c, const char *p)
{
	static const char rows[] =
		"SELECT 1 FROM journal WHERE state<>" HS_SQL(HS_JS_FAILED) " AND"
		" (path=?1 OR path2=?1 OR (path>=?1||'/' AND path<?1||'0') OR"
		" (path2>=?1||'/' AND path2<?1||'0')) LIMIT 1";
	static const char inodes[] =
		"SELECT 1 FROM inode WHERE local>0 AND"
		" (hpath=?1 OR (hpath>=?1||'/' AND hpath<?1||'0')) LIMIT 1";
	const char *sql[2] = { rows, inodes };
	int i, found = 0;

	for (i = 0; i < 2 && !found; i++) {
		sqlite3_stmt *st = hs_meta_prepare(c, sql[i]);

		if (!st)
			return 1;
		sqlite3_bind_text(st, 1, p, -1, SQLITE_STATIC);
		found = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_reset(st);
	}
	return found;
}

/* The host as it is now, asked on the fetch connection: 1 if @from is gone
 * and @to is the object the cache knew at @from (type, and for a file its
 * size and mtime), else 0. */
static int host_shows_move(struct hs_cache *c, const char *from, const char *to,
			   const struct hs_inode *x)
{
	hs_deadline_t dl = hs_deadline_in_ms(c->cfg.op_timeout_ms);
	struct hs_transport *t;
	struct hs_attr a;
	int r, ok = 0;

	if (hs_link_get(c->link, HS_SLOT_FETCH, 0, dl, &t) < 0)
		return 0;
	r = hs_tr_lstat(t, from, &a, dl);
	if (r == -ENOENT) {
		r = hs_tr_lstat(t, to, &a, dl);
		ok = r == 0 && (a.mode & S_IFMT) == (x->mode & S_IFMT) &&
		     (!S_ISREG(x->mode) ||
		      (x->host_size == (int64_t)a.size &&
		       x->host_mtime / HS_NSEC_PER_SEC == a.mtime_ns / HS_NSEC_PER_SEC));
	}
	hs_link_put(c->link, t, r < 0 && r != -ENOENT ? r : 0);
	return ok;
}

/* Where a move would go in the cache, and whether the cache may apply it:
 * no guest change pending on either name, the names as the event says.
 * 0 and the fields filled, -1 when the folders must be listed instead;
 * db_lock held. */
struct move {
	uint64_t fino, op, nparent, tino;
	struct hs_inode x;
};

static int plan_move(struct hs_cache *c, const char *from, const char *to,
		     const char *fdir, const char *tdir, struct move *mv)
{
	const char *fname = base_name(from), *tname = base_name(to);
	struct hs_inode np, t;
	uint64_t at;
	int r = -1;

	memset(mv, 0, sizeof(*mv));
	mv->fino = hs_meta_by_hpath(c, from);
	mv->op = hs_meta_by_hpath(c, fdir);
	mv->nparent = hs_meta_by_hpath(c, tdir);
	if (!mv->fino || !mv->op || !mv->nparent ||
	    busy_near(c, from) || busy_near(c, to) ||
	    hs_meta_get_inode(c, mv->fino, &mv->x) < 0)
		return -1;
	if (hs_meta_get_inode(c, mv->nparent, &np) < 0)
		goto out;
	at = np.listed_at;
	hs_inode_release(&np);
	if (mv->x.local || at == (uint64_t)-2 || guest_pending(c, from) ||
	    guest_pending(c, to) || hs_meta_lookup(c, mv->op, fname, &at) < 0 ||
	    at != mv->fino)
		goto out;
	if (hs_meta_lookup(c, mv->nparent, tname, &mv->tino) == 0) {
		if (mv->tino == mv->fino || hs_meta_get_inode(c, mv->tino, &t) < 0)
			goto out;
		r = t.local || (S_ISDIR(t.mode) &&
				hs_meta_dir_empty(c, mv->tino) != 1) ? -1 : 0;
		hs_inode_release(&t);
		if (r < 0)
			goto out;
	} else {
		mv->tino = 0;
	}
	return 0;
out:
	hs_inode_release(&mv->x);
	return -1;
}

/* Applies a host rename of @from to @to to the cache.  Returns 1 when done
 * (and reported), 0 when the cache already shows it (an echo of the
 * flusher's), -1 when the folders must be listed instead.  An event can
 * be older than the cache's state (the guest may have made a new @from
 * since), so the move is applied only if the host shows it now and
 * nothing changed in the cache while we asked. */
static int apply_move(struct hs_cache *c, const char *from, const char *to)
{
	static const char unlinked[] = "UPDATE inode SET nlink=0, hpath=NULL WHERE ino=?";
	static const char unlinked_below[] =
		"UPDATE inode SET hpath=NULL WHERE hpath >= ?1 || '/' AND hpath < ?1 || '0'";
	char *fdir = dir_of(from), *tdir = dir_of(to);
	const char *fname = base_name(from), *tname = base_name(to);
	struct hs_host_change hc = { 0 };
	struct move mv, mv2;
	sqlite3_stmt *st;
	uint64_t gen;
	int r = -1;

	if (!fdir || !tdir)
		goto out_free;
	pthread_mutex_lock(&c->db_lock);
	if (!hs_meta_by_hpath(c, from)) {
		r = hs_meta_by_hpath(c, to) ? 0 : -1;
		pthread_mutex_unlock(&c->db_lock);
		goto out_free;
	}
	r = plan_move(c, from, to, fdir, tdir, &mv);
	gen = atomic_load(&c->hgen);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		goto out_free;
	r = -1;
	if (!host_shows_move(c, from, to, &mv.x))
		goto out_x;

	pthread_mutex_lock(&c->db_lock);
	if (atomic_load(&c->hgen) != gen || plan_move(c, from, to, fdir, tdir, &mv2) < 0)
		goto out_unlock;
	hs_inode_release(&mv2.x);
	if (mv2.fino != mv.fino || mv2.op != mv.op || mv2.nparent != mv.nparent ||
	    mv2.tino != mv.tino || hs_meta_begin(c) < 0)
		goto out_unlock;
	/* listings of either folder taken before this are not merged */
	hs_dir_host_changed(c, from);
	hs_dir_host_changed(c, to);
	r = hs_meta_del_dentry(c, mv.op, fname);
	if (r == 0 && mv.tino) {
		r = hs_meta_del_dentry(c, mv.nparent, tname);
		if (r == 0 && (st = hs_meta_prepare(c, unlinked_below))) {
			sqlite3_bind_text(st, 1, to, -1, SQLITE_STATIC);
			r = hs_meta_step(c, st);
		}
		if (r == 0 && (st = hs_meta_prepare(c, unlinked))) {
			sqlite3_bind_int64(st, 1, (int64_t)mv.tino);
			r = hs_meta_step(c, st);
		}
	}
	if (r == 0)
		r = hs_meta_add_dentry(c, mv.nparent, tname, mv.fino);
	if (r == 0)
		r = hs_meta_move_hpaths(c, from, to);
	if (r == 0)
		r = hs_meta_commit_deferred(c);
	if (r < 0) {
		hs_meta_rollback(c);
		r = -1;
	} else {
		r = 1;
		hs_dir_changed(c, mv.op);
		hs_dir_changed(c, mv.nparent);
		hc.kind = HS_HC_MOVED;
		hc.parent = mv.op;
		hc.name = fname;
		hc.ino = mv.fino;
		hc.mode = mv.x.mode;
		hc.newparent = mv.nparent;
		hc.newname = tname;
		hc.replaced = mv.tino;
	}
out_unlock:
	pthread_mutex_unlock(&c->db_lock);
	if (r == 1)
		emit(c, &hc);
out_x:
	hs_inode_release(&mv.x);
out_free:
	free(fdir);
	free(tdir);
	return r;
}

/* A host file reported changed: checked against the host; a new version
 * is reported as changed, new attributes alone as such.  A file this
 * batch reported created (in @created) was written too if it has bytes. */
static void check_file(struct hs_cache *c, const char *p,
		       const struct strset *created, struct strset *seen)
{
	struct hs_host_change hc = { .kind = HS_HC_CHANGED };
	struct hs_inode x, y;
	char key[32];
	uint64_t ino;
	int r, changed = 0;

	if (inode_at(c, p, &ino, &x) < 0)
		return;
	hc.ino = ino;
	hc.mode = x.mode;
	ino_key(key, ino);
	if (strset_has(created, key) && !strset_has(seen, key)) {
		if (S_ISREG(x.mode) && x.size > 0) {
			strset_add(seen, key);
			emit(c, &hc);
		}
		goto out;
	}
	if ((!S_ISREG(x.mode) && !S_ISLNK(x.mode)) || strset_has(seen, key) ||
	    hs_cache_revalidate(c, ino, &changed,
				hs_deadline_in_ms(c->cfg.op_timeout_ms)) < 0)
		goto out;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &y);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		goto out;
	hc.mode = y.mode;
	if (!changed && (x.mode != y.mode || x.uid != y.uid || x.gid != y.gid ||
			 x.mtime != y.mtime || x.atime != y.atime))
		hc.kind = HS_HC_ATTRIB;
	else if (!changed)
		hc.kind = 0;
	hs_inode_release(&y);
	if (hc.kind) {
		strset_add(seen, key);
		emit(c, &hc);
	}
out:
	hs_inode_release(&x);
}

/* Applies one batch of events; the ones that must wait go to @retry. */
static void apply_batch(struct hs_cache *c, struct hs_nev *ev, size_t n,
			int overflow, struct hs_nev **retry, size_t *nretry)
{
	struct strset dirs = { 0 }, changed = { 0 }, created = { 0 }, seen = { 0 };
	size_t i, nr = 0;
	int r;

	*retry = NULL;
	*nretry = 0;
	if (overflow)
		resync_all(c);
	for (i = 0; i < n; i++) {
		struct hs_nev *e = &ev[i];
		uint64_t known = 0;
		int busy;

		pthread_mutex_lock(&c->db_lock);
		busy = busy_near(c, e->path) || (e->path2 && busy_near(c, e->path2));
		if (!busy && e->kind != HS_NOTIFY_MOVED)
			known = hs_meta_by_hpath(c, e->path);
		pthread_mutex_unlock(&c->db_lock);
		if (busy && e->tries < RETRY_MAX) {
			struct hs_nev *v = realloc(*retry, (nr + 1) * sizeof(*v));

			if (v) {
				*retry = v;
				v[nr] = *e;
				v[nr].tries++;
				nr++;
				e->path = e->path2 = NULL;
				continue;
			}
		}
		switch (e->kind) {
		case HS_NOTIFY_CREATED:
		case HS_NOTIFY_REMOVED:
			/* a creation the cache has (an echo), or a removal of
			 * nothing it has, changes nothing */
			if ((e->kind == HS_NOTIFY_CREATED) == (known != 0))
				break;
			{
				char *d = dir_of(e->path);

				strset_add(&dirs, d);
				free(d);
			}
			break;
		case NQ_RELIST:
			strset_add(&dirs, e->path);
			break;
		case HS_NOTIFY_CHANGED:
			strset_add(&changed, e->path);
			break;
		case HS_NOTIFY_MOVED:
			r = apply_move(c, e->path, e->path2);
			if (r < 0) {
				char *d1 = dir_of(e->path), *d2 = dir_of(e->path2);

				strset_add(&dirs, d1);
				strset_add(&dirs, d2);
				strset_add(&changed, e->path2);
				free(d1);
				free(d2);
			}
			break;
		}
	}
	for (i = 0; i < dirs.n; i++) {
		if (relist(c, dirs.v[i], &created, &seen)) {
			struct hs_nev *v = realloc(*retry, (nr + 1) * sizeof(*v));

			if (v) {
				*retry = v;
				v[nr].kind = NQ_RELIST;
				v[nr].tries = 1;
				v[nr].path = strdup(dirs.v[i]);
				v[nr].path2 = NULL;
				if (v[nr].path)
					nr++;
			}
		}
	}
	for (i = 0; i < changed.n; i++)
		check_file(c, changed.v[i], &created, &seen);
	hs_debug("host changes: %zu events, %zu folders listed again, %zu "
		 "files checked, %zu waiting", n, dirs.n, changed.n, nr);
	strset_free(&dirs);
	strset_free(&changed);
	strset_free(&created);
	strset_free(&seen);
	*nretry = nr;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	while (nanosleep(&ts, &ts) < 0)
		;
}

static void *notify_main(void *arg)
{
	struct hs_cache *c = arg;
	struct hs_nev *retry = NULL;
	size_t nretry = 0;

	pthread_mutex_lock(&c->nq_lock);
	while (!c->nq_stop) {
		struct hs_nev *ev, *next;
		size_t n, i, nnext;
		int overflow;

		if (!c->nq_n && !c->nq_overflow) {
			if (!nretry) {
				pthread_cond_wait(&c->nq_cond, &c->nq_lock);
				continue;
			}
			pthread_mutex_unlock(&c->nq_lock);
			sleep_ms(RETRY_MS);
			pthread_mutex_lock(&c->nq_lock);
		} else {
			pthread_mutex_unlock(&c->nq_lock);
			sleep_ms(BATCH_MS);
			pthread_mutex_lock(&c->nq_lock);
		}
		if (c->nq_stop)
			break;
		ev = c->nq;
		n = c->nq_n;
		overflow = c->nq_overflow;
		c->nq = NULL;
		c->nq_n = c->nq_cap = 0;
		c->nq_overflow = 0;
		pthread_mutex_unlock(&c->nq_lock);
		if (nretry) {
			/* the retries first: they are older */
			struct hs_nev *all = realloc(retry, (nretry + n) * sizeof(*all));

			if (all) {
				if (n)
					memcpy(all + nretry, ev, n * sizeof(*ev));
				free(ev);
				ev = all;
				n += nretry;
			} else {
				for (i = 0; i < nretry; i++)
					nev_free(&retry[i]);
				free(retry);
			}
			retry = NULL;
			nretry = 0;
		}
		apply_batch(c, ev, n, overflow, &next, &nnext);
		for (i = 0; i < n; i++)
			nev_free(&ev[i]);
		free(ev);
		retry = next;
		nretry = nnext;
		pthread_mutex_lock(&c->nq_lock);
	}
	pthread_mutex_unlock(&c->nq_lock);
	while (nretry)
		nev_free(&retry[--nretry]);
	free(retry);
	return NULL;
}

void hs_notify_init(struct hs_cache *c)
{
	pthread_mutex_init(&c->nq_lock, NULL);
	pthread_cond_init(&c->nq_cond, NULL);
}

int hs_notify_start(struct hs_cache *c)
{
	int r = pthread_create(&c->nq_thread, NULL, notify_main, c);

	if (r)
		return -r;
	c->nq_started = 1;
	return 0;
}

void hs_notify_stop(struct hs_cache *c)
{
	pthread_mutex_lock(&c->nq_lock);
	c->nq_stop = 1;
	pthread_cond_broadcast(&c->nq_cond);
	pthread_mutex_unlock(&c->nq_lock);
	if (c->nq_started)
		pthread_join(c->nq_thread, NULL);
	c->nq_started = 0;
}

void hs_notify_destroy(struct hs_cache *c)
{
	size_t i;

	for (i = 0; i < c->nq_n; i++)
		nev_free(&c->nq[i]);
	free(c->nq);
	c->nq = NULL;
	c->nq_n = c->nq_cap = 0;
	pthread_mutex_destroy(&c->nq_lock);
	pthread_cond_destroy(&c->nq_cond);
}
