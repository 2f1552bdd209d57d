/* SPDX-License-Identifier: MIT
 * cache/dir.c - directory listings: refreshing the guest namespace from the
 * host, close-to-open checks of single files, and directory snapshots.
 *
 * A directory's listing is trusted for attr_timeout after it was read; a
 * directory the guest created is complete by construction until it reached
 * the host.  A refresh lists the host folder with attributes in one call and
 * merges it under one transaction:
 *   - a host name the guest does not have is added, unless some inode still
 *     sits at that host path or a journal row still removes or moves it
 *     (renamed or deleted in the guest, not yet replayed);
 *   - a guest entry whose inode is the host object at that path and has no
 *     pending journal rows takes the host's attributes; if size or mtime
 *     changed, its cached data is dropped (data version bumped);
 *   - a guest entry that was on the host at that path, is gone there and has
 *     no pending rows is removed;
 *   - everything with pending rows is left alone (guest changes win until
 *     they are replayed).
 * Concurrency: network I/O happens before db_lock is taken; two refreshes
 * of one directory may overlap and merge the same answer twice, harmlessly.
 */
#include "cache_i.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hent {
	char *name;
	struct hs_attr attr;
};

struct hlist {
	struct hent *v;
	size_t n, cap;
};

static int collect(void *arg, const char *name, const struct hs_attr *attr);

/* hs_tr_readdir_fn: an entry of a host listing; a name no folder can hold
 * (from a broken or hostile host, on either wire) is never taken in */
static int collect_listed(void *arg, const char *name, const struct hs_attr *attr)
{
	if (!hs_name_ok(name)) {
		hs_warn("host listing: ignored an entry named '%.64s'", name);
		return 0;
	}
	return collect(arg, name, attr);
}

static int collect(void *arg, const char *name, const struct hs_attr *attr)
{
	struct hlist *l = arg;

	/* our own temporary names are never shown */
	if (hs_internal_name(name))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct hent *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].name = strdup(name);
	if (!l->v[l->n].name)
		return -ENOMEM;
	l->v[l->n].attr = *attr;
	l->n++;
	return 0;
}

static void hlist_release(struct hlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

static int cmp_hent(const void *a, const void *b)
{
	return strcmp(((const struct hent *)a)->name, ((const struct hent *)b)->name);
}

static char *join(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name) < 0)
		return NULL;
	return p;
}

static int fresh(struct hs_cache *c, const struct hs_inode *d)
{
	if (d->listed_at == -1)
		return 1;
	return d->listed_at > 0 &&
	       hs_now_ns() - d->listed_at < c->cfg.attr_timeout_ms * HS_NSEC_PER_MSEC;
}

static int same_version(const struct hs_inode *x, const struct hs_attr *a)
{
	return x->host_size == (int64_t)a->size &&
	       x->host_mtime / HS_NSEC_PER_SEC == a->mtime_ns / HS_NSEC_PER_SEC;
}

/* True if a journal row still has to remove or move away host path @hp. */
static int removal_pending(struct hs_cache *c, const char *hp)
{
	static const char sql[] = "SELECT 1 FROM journal WHERE path=? AND"
				  " op IN (" HS_SQL(HS_J_UNLINK) "," HS_SQL(HS_J_RMDIR) ","
				  HS_SQL(HS_J_RENAME) ")"
				  " AND state<>" HS_SQL(HS_JS_FAILED) " LIMIT 1";
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int found;

	if (!st)
		return 0;
	sqlite3_bind_text(st, 1, hp, -1, SQLITE_STATIC);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	return found;
}

/* Merges one host entry; appends to @inval inodes whose data went stale. */
static int merge_one(struct hs_cache *c, uint64_t dir, const char *dhpath,
		     const struct hent *h, uint64_t *inval, size_t *ninval)
{
	struct hs_inode x, n;
	uint64_t ino;
	char *hp = join(dhpath, h->name);
	int r;

	if (!hp)
		return -ENOMEM;
	r = hs_meta_lookup(c, dir, h->name, &ino);
	if (r == 0) {
		r = hs_meta_get_inode(c, ino, &x);
		if (r < 0)
			goto out;
		if (x.hpath && !strcmp(x.hpath, hp) && x.local == 0 &&
		    (x.mode & S_IFMT) == (h->attr.mode & S_IFMT)) {
			n = x;
			hs_cache_attr_in(c, &h->attr, &n);
			if (S_ISREG(x.mode) && !same_version(&x, &h->attr)) {
				n.dver = x.dver + 1;
				inval[(*ninval)++] = ino;
			} else if (S_ISREG(x.mode)) {
				/* same version: keep the guest's finer times */
				n.mtime = x.mtime;
				n.atime = x.atime;
				n.ctime = x.ctime;
			}
			n.host_size = (int64_t)h->attr.size;
			n.host_mtime = h->attr.mtime_ns;
			r = hs_meta_put_inode(c, &n);
		}
		hs_inode_release(&x);
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	r = 0;
	if (hs_meta_by_hpath(c, hp) || removal_pending(c, hp))
		goto out; /* moved or deleted in the guest, not replayed yet */
	memset(&n, 0, sizeof(n));
	hs_cache_attr_in(c, &h->attr, &n);
	n.hpath = hp;
	n.host_size = (int64_t)h->attr.size;
	n.host_mtime = h->attr.mtime_ns;
	n.listed_at = -2;
	r = hs_meta_new_inode(c, &n);
	if (r == 0)
		r = hs_meta_add_dentry(c, dir, h->name, n.ino);
	if (r == 0)
		hs_dir_changed(c, dir);
out:
	free(hp);
	return r;
}

/* Removes guest entries of @dir that the host no longer has.  A listing
 * can be older than the guest's own changes to the host, so an entry is
 * only removed once an lstat of its host path confirmed it is gone
 * (@confirmed, hpaths); the others are returned in @ret_check for the
 * caller to confirm.  Caller holds db_lock, in a transaction. */
static int merge_gone(struct hs_cache *c, uint64_t dir, const char *dhpath,
		      struct hlist *l, struct hlist *confirmed,
		      struct hlist *ret_check)
{
	static const char sql[] =
		"SELECT d.name, d.ino, i.hpath, i.mode FROM dentry d JOIN inode i"
		" ON d.ino=i.ino WHERE d.parent=? AND i.local=0 AND i.hpath IS NOT NULL";
	static const char drop[] =
		"UPDATE inode SET nlink=0, hpath=NULL WHERE ino=?";
	static const char drop_below[] =
		"UPDATE inode SET hpath=NULL WHERE hpath >= ?1 || '/' AND hpath < ?1 || '0'";
	struct { char *name; uint64_t ino; char *hpath; } *gone = NULL;
	size_t ngone = 0, cap = 0, i, k;
	sqlite3_stmt *st = hs_meta_prepare(c, sql);
	int r = 0;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, (int64_t)dir);
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct hent key = { .name = (char *)sqlite3_column_text(st, 0) };
		char *hp = join(dhpath, key.name);
		int ok = 0;

		if (!hp) {
			r = -ENOMEM;
			break;
		}
		if (strcmp(hp, (const char *)sqlite3_column_text(st, 2)) ||
		    (l->n && bsearch(&key, l->v, l->n, sizeof(*l->v), cmp_hent))) {
			free(hp);
			continue;
		}
		for (k = 0; k < confirmed->n && !ok; k++)
			ok = !strcmp(confirmed->v[k].name, hp);
		if (!ok) {
			r = collect(ret_check, hp, &(struct hs_attr){ 0 });
			free(hp);
			if (r < 0)
				break;
			continue;
		}
		if (ngone == cap) {
			void *v;

			cap = cap ? cap * 2 : 16;
			v = realloc(gone, cap * sizeof(*gone));
			if (!v) {
				free(hp);
				r = -ENOMEM;
				break;
			}
			gone = v;
		}
		gone[ngone].name = strdup(key.name);
		gone[ngone].ino = (uint64_t)sqlite3_column_int64(st, 1);
		gone[ngone].hpath = hp;
		ngone++;
	}
	sqlite3_reset(st);
	for (i = 0; i < ngone; i++) {
		if (r == 0 && gone[i].name)
			r = hs_meta_del_dentry(c, dir, gone[i].name);
		if (r == 0)
			hs_dir_changed(c, dir);
		if (r == 0 && (st = hs_meta_prepare(c, drop_below))) {
			sqlite3_bind_text(st, 1, gone[i].hpath, -1, SQLITE_STATIC);
			sqlite3_step(st);
			sqlite3_reset(st);
		}
		if (r == 0 && (st = hs_meta_prepare(c, drop))) {
			sqlite3_bind_int64(st, 1, (int64_t)gone[i].ino);
			sqlite3_step(st);
			sqlite3_reset(st);
		}
		free(gone[i].name);
		free(gone[i].hpath);
	}
	free(gone);
	return r;
}

/* Asks the host about each path of @check: the ones it does not have go to
 * @confirmed.  Returns 1 if one still exists (the listing was stale). */
static int confirm_gone(struct hs_cache *c, struct hlist *check,
			struct hlist *confirmed, hs_deadline_t dl)
{
	struct hs_transport *t;
	struct hs_attr a;
	size_t i;
	int r, stale = 0;

	r = hs_link_get(c->link, HS_SLOT_FETCH, 0, dl, &t);
	if (r < 0)
		return 1; /* cannot tell: keep the entries */
	for (i = 0; i < check->n && !stale; i++) {
		r = hs_tr_lstat(t, check->v[i].name, &a, dl);
		if (r == -ENOENT || r == -ENOTDIR)
			r = collect(confirmed, check->v[i].name, &a);
		else
			stale = 1; /* there after all, or no answer */
	}
	hs_link_put(c->link, t, r < 0 && r != -ENOENT && r != -ENOTDIR ? r : 0);
	return stale;
}

static int refresh_once(struct hs_cache *c, uint64_t dir, int need,
			hs_deadline_t dl, int *ret_raced);

static size_t dirgen_slot(uint64_t dir)
{
	return (size_t)((dir * 0x9E3779B97F4A7C15ULL) >> 54) % 1024;
}

void hs_dir_changed(struct hs_cache *c, uint64_t dir)
{
	if (dir)
		atomic_fetch_add(&c->dirgen[dirgen_slot(dir)], 1);
	else
		atomic_fetch_add(&c->dirgen_all, 1);
}

/* The version of @dir's entries as the kernel must see it. */
static uint32_t dirgen(struct hs_cache *c, uint64_t dir)
{
	return (uint32_t)(atomic_load(&c->dirgen[dirgen_slot(dir)]) +
			  atomic_load(&c->dirgen_all));
}

/* What is left of the trust in a listing taken at @listed_at (monotonic
 * ns; -1: complete by construction, -2/0: none) of a folder that is on
 * the host (@on_host), in ms. */
static int64_t ttl_left(struct hs_cache *c, int64_t listed_at, int on_host)
{
	int64_t a = c->cfg.attr_timeout_ms, left;

	if (listed_at == -1 || !on_host)
		return a;
	if (listed_at <= 0)
		return 0;
	left = a - (hs_now_ns() - listed_at) / HS_NSEC_PER_MSEC;
	return HS_MAX(0, HS_MIN(left, a));
}

/* The trust left (ttl_left) of the folder row @sql selects for @id (listed,
 * listed_at, hpath IS NOT NULL), or @dflt when there is none. */
static int64_t ttl_of(struct hs_cache *c, const char *sql, uint64_t id,
		      int64_t dflt)
{
	sqlite3_stmt *st;
	int64_t ttl = dflt;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (st) {
		sqlite3_bind_int64(st, 1, (int64_t)id);
		if (sqlite3_step(st) == SQLITE_ROW)
			ttl = ttl_left(c, sqlite3_column_int64(st, 0) ?
					  sqlite3_column_int64(st, 1) : -2,
				       sqlite3_column_int(st, 2));
		sqlite3_reset(st);
	}
	pthread_mutex_unlock(&c->db_lock);
	return ttl;
}

int64_t hs_cache_dir_ttl_ms(struct hs_cache *c, uint64_t dir)
{
	static const char sql[] = "SELECT listed, listed_at, hpath IS NOT NULL"
				  " FROM inode WHERE ino=?";

	return ttl_of(c, sql, dir, 0);
}

int64_t hs_cache_attr_ttl_ms(struct hs_cache *c, uint64_t ino)
{
	static const char sql[] =
		"SELECT i.listed, i.listed_at, i.hpath IS NOT NULL FROM dentry d"
		" JOIN inode i ON i.ino=d.parent WHERE d.ino=? LIMIT 1";

	/* the root, and unlinked files, have no folder: all of attr_timeout */
	if (ino == HS_ROOT_INO)
		return c->cfg.attr_timeout_ms;
	return ttl_of(c, sql, ino, c->cfg.attr_timeout_ms);
}

void hs_dir_host_changed(struct hs_cache *c, const char *path)
{
	uint64_t gen = atomic_fetch_add(&c->hgen, 1) + 1;
	size_t slot = gen % HS_ARRAY_SIZE(c->hchanges);
	const char *slash;

	free(c->hchanges[slot].dir);
	c->hchanges[slot].dir = NULL;
	c->hchanges[slot].gen = gen;
	if (!path || !(slash = strrchr(path, '/')))
		return;
	c->hchanges[slot].dir = slash == path ? strdup("/") :
						strndup(path, (size_t)(slash - path));
}

int hs_dir_host_begin(struct hs_cache *c, const char *p1, const char *p2)
{
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(c->hbusy); i++) {
		if (c->hbusy[i].used)
			continue;
		c->hbusy[i].used = 1;
		c->hbusy[i].path[0] = p1 ? strdup(p1) : NULL;
		c->hbusy[i].path[1] = p2 ? strdup(p2) : NULL;
		return (int)i;
	}
	return -1; /* cannot happen: one per row of a batch at most */
}

void hs_dir_host_end(struct hs_cache *c, int mark)
{
	if (mark < 0 || (size_t)mark >= HS_ARRAY_SIZE(c->hbusy))
		return;
	free(c->hbusy[mark].path[0]);
	free(c->hbusy[mark].path[1]);
	memset(&c->hbusy[mark], 0, sizeof(c->hbusy[mark]));
}

/* True if host path @p, being changed, may change the listing of host
 * folder @dir: @p is in it, is it, or is above it (a folder moving). */
static int near(const char *p, const char *dir)
{
	const char *slash = strrchr(p, '/');
	size_t n = strlen(p);

	if (slash == p && !strcmp(dir, "/"))
		return 1; /* in the top folder */
	if (slash && slash != p && strlen(dir) == (size_t)(slash - p) &&
	    !strncmp(p, dir, (size_t)(slash - p)))
		return 1; /* in @dir */
	return !strncmp(dir, p, n) && (dir[n] == 0 || dir[n] == '/');
}

/* True if the flusher changed host folder @hpath after generation @gen (or
 * if the record of changes no longer reaches back that far), or is
 * changing it now; db_lock held. */
static int changed_since(struct hs_cache *c, const char *hpath, uint64_t gen)
{
	uint64_t now = atomic_load(&c->hgen), g;
	size_t i, k;

	for (i = 0; i < HS_ARRAY_SIZE(c->hbusy); i++)
		for (k = 0; c->hbusy[i].used && k < 2; k++)
			if (c->hbusy[i].path[k] && near(c->hbusy[i].path[k], hpath))
				return 1;

	if (now - gen >= HS_ARRAY_SIZE(c->hchanges))
		return 1;
	for (g = gen + 1; g <= now; g++) {
		size_t slot = g % HS_ARRAY_SIZE(c->hchanges);

		if (c->hchanges[slot].gen == g &&
		    (!c->hchanges[slot].dir || !strcmp(c->hchanges[slot].dir, hpath)))
			return 1;
	}
	return 0;
}

int hs_dir_refresh(struct hs_cache *c, uint64_t dir, int need, hs_deadline_t dl)
{
	struct hs_inode d;
	int r, stale_copy;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, dir, &d);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	if (!S_ISDIR(d.mode)) {
		hs_inode_release(&d);
		return -ENOTDIR;
	}
	if (fresh(c, &d) || !d.hpath) {
		hs_inode_release(&d);
		return 0; /* the common case: nothing to ask the host */
	}
	stale_copy = d.listed_at != -2;
	hs_inode_release(&d);
	if (!stale_copy)
		return hs_dir_refresh_now(c, dir, need, dl);
	/* the listing the cache holds will do if the host is slow */
	hs_bg_refresh(c, dir, HS_BG_LIST);
	return 0;
}

/* Sets the listing time of @dir to @at if it has a listing of the host's
 * (listed_at >= 0, or -1 once it is on the host). */
static int set_listed(struct hs_cache *c, uint64_t dir, int64_t at)
{
	static const char sql[] = "UPDATE inode SET listed_at=? WHERE ino=?"
				  " AND (listed_at>=0 OR (listed_at=-1 AND"
				  " hpath IS NOT NULL))";
	sqlite3_stmt *st;
	int r = 0;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r == 0 && !(st = hs_meta_prepare(c, sql)))
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, at);
		sqlite3_bind_int64(st, 2, (int64_t)dir);
		r = hs_meta_step(c, st);
	}
	if (r == 0)
		r = hs_meta_commit_deferred(c);
	else
		hs_meta_rollback(c);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

/* The flusher keeps changing folder @dir on the host (its listings keep
 * racing with it): the listing the cache holds, which has every change of
 * the guest's, is trusted for another attr_timeout, so lookups do not
 * keep asking.  A folder never listed stays unlisted. */
static int keep_listing(struct hs_cache *c, uint64_t dir)
{
	return set_listed(c, dir, hs_now_ns());
}

int hs_dir_relist(struct hs_cache *c, uint64_t dir, hs_deadline_t dl,
		  int *ret_raced)
{
	int r, tries;

	*ret_raced = 0;
	r = set_listed(c, dir, 0);
	for (tries = 0; r == 0 && tries < 3; tries++) {
		r = refresh_once(c, dir, 0, dl, ret_raced);
		if (!*ret_raced)
			break;
	}
	return r;
}

int hs_dir_refresh_now(struct hs_cache *c, uint64_t dir, int need,
		       hs_deadline_t dl)
{
	int r, raced = 0, tries;

	/* A listing that raced with the flusher's changes to the host is
	 * dropped and taken again: merging it could undo what the flusher
	 * just recorded. */
	for (tries = 0; tries < 3; tries++) {
		r = refresh_once(c, dir, need, dl, &raced);
		if (r < 0 || !raced)
			break;
	}
	if (r == 0 && raced)
		r = keep_listing(c, dir);
	return r;
}

static int refresh_once(struct hs_cache *c, uint64_t dir, int need,
			hs_deadline_t dl, int *ret_raced)
{
	struct hlist check = { 0 }, confirmed = { 0 };
	uint64_t gen;
	struct hlist l = { 0 };
	struct hs_transport *t;
	struct hs_inode d;
	uint64_t *inval = NULL;
	size_t ninval = 0, i;
	char *hpath;
	int r, listed;

	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, dir, &d);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	if (!S_ISDIR(d.mode)) {
		hs_inode_release(&d);
		return -ENOTDIR;
	}
	listed = d.listed_at != -2;
	if (fresh(c, &d) || !d.hpath) {
		hs_inode_release(&d);
		return 0;
	}
	hpath = d.hpath;
	d.hpath = NULL;
	*ret_raced = 0;
	if (listed)
		dl = hs_refresh_deadline(c, dl);
	gen = atomic_load(&c->hgen);
	r = hs_link_get(c->link, HS_SLOT_FETCH, need && !listed, dl, &t);
	if (r < 0) {
		free(hpath);
		return listed ? 0 : r;
	}
	r = hs_tr_readdir(t, hpath, collect_listed, &l, dl);
	hs_link_put(c->link, t, r);
	if (r < 0) {
		hlist_release(&l);
		free(hpath);
		if (r == -ENOENT || r == -ENOTDIR || listed)
			return listed ? 0 : -ENOENT;
		return r;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_hent);
	inval = calloc(l.n + 1, sizeof(*inval));
	if (!inval) {
		hlist_release(&l);
		free(hpath);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->db_lock);
merge:
	r = hs_meta_begin(c);
	if (r == 0) {
		struct hs_inode now;

		/* the folder may have moved on the host while we listed */
		r = hs_meta_get_inode(c, dir, &now);
		if (r == 0 && changed_since(c, hpath, gen)) {
			*ret_raced = 1;
			hs_inode_release(&now);
			hs_meta_rollback(c);
			goto unlock;
		}
		if (r == 0 && (!now.hpath || strcmp(now.hpath, hpath))) {
			hs_inode_release(&now);
			hs_meta_rollback(c);
			goto unlock;
		}
		for (i = 0; r == 0 && i < l.n; i++)
			r = merge_one(c, dir, hpath, &l.v[i], inval, &ninval);
		if (r == 0)
			r = merge_gone(c, dir, hpath, &l, &confirmed, &check);
		if (r == 0 && check.n) {
			/* some entries look gone: confirm before removing */
			hs_inode_release(&now);
			hs_meta_rollback(c);
			pthread_mutex_unlock(&c->db_lock);
			ninval = 0;
			if (confirm_gone(c, &check, &confirmed, dl)) {
				*ret_raced = 1;
				r = 0;
				goto done;
			}
			hlist_release(&check);
			memset(&check, 0, sizeof(check));
			pthread_mutex_lock(&c->db_lock);
			goto merge;
		}
		if (r == 0) {
			now.listed_at = hs_now_ns();
			r = hs_meta_put_inode(c, &now);
		}
		hs_inode_release(&now);
		if (r == 0)
			r = hs_meta_commit_deferred(c); /* host state: can be listed again */
		if (r < 0)
			hs_meta_rollback(c);
	}
unlock:
	pthread_mutex_unlock(&c->db_lock);
	for (i = 0; r == 0 && i < ninval; i++)
		hs_file_invalidate(c, inval[i]);
done:
	hlist_release(&check);
	hlist_release(&confirmed);
	free(inval);
	hlist_release(&l);
	free(hpath);
	return r;
}

static int file_changed_since(struct hs_cache *c, const char *hpath, uint64_t gen)
{
	const char *slash = strrchr(hpath, '/');
	char *dir = slash == hpath ? strdup("/") : strndup(hpath, (size_t)(slash - hpath));
	int r = !dir || changed_since(c, dir, gen);

	free(dir);
	return r;
}

int hs_cache_revalidate(struct hs_cache *c, uint64_t ino, int *ret_changed,
			hs_deadline_t dl)
{
	struct hs_transport *t;
	struct hs_inode x;
	struct hs_attr a;
	uint64_t gen;
	char *hpath;
	int r;

	*ret_changed = 0;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_get_inode(c, ino, &x);
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0)
		return r;
	hpath = x.hpath;
	x.hpath = NULL;
	hs_inode_release(&x);
	if (!hpath)
		return 0;
	dl = hs_refresh_deadline(c, dl);
	gen = atomic_load(&c->hgen);
	r = hs_link_get(c->link, HS_SLOT_FETCH, 0, dl, &t);
	if (r < 0) {
		free(hpath);
		return r;
	}
	r = hs_tr_lstat(t, hpath, &a, dl);
	hs_link_put(c->link, t, r);
	if (r < 0) {
		free(hpath);
		return r;
	}
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r == 0)
		r = hs_meta_get_inode(c, ino, &x);
	if (r == 0) {
		if (x.hpath && !strcmp(x.hpath, hpath) && x.local == 0 &&
		    !file_changed_since(c, hpath, gen) &&
		    (x.mode & S_IFMT) == (a.mode & S_IFMT)) {
			struct hs_inode n = x;

			hs_cache_attr_in(c, &a, &n);
			if (!same_version(&x, &a)) {
				n.dver = x.dver + 1;
				*ret_changed = 1;
			} else {
				n.mtime = x.mtime;
				n.atime = x.atime;
				n.ctime = x.ctime;
			}
			n.host_size = (int64_t)a.size;
			n.host_mtime = a.mtime_ns;
			n.checked_at = hs_now_ns();
			r = hs_meta_put_inode(c, &n);
		}
		hs_inode_release(&x);
	}
	if (r == 0)
		r = hs_meta_commit_deferred(c); /* host state: can be listed again */
	else
		hs_meta_rollback(c);
	pthread_mutex_unlock(&c->db_lock);
	free(hpath);
	if (r == 0 && *ret_changed)
		r = hs_file_invalidate(c, ino);
	return r;
}

/* ---- snapshots for readdir ---- */

struct hs_dir {
	uint64_t ino;
	struct hs_dir_entry *v;
	size_t n;
	pthread_mutex_t lock; /* serialises hs_cache_dir_load() */
	int loaded;        /* the entries were read (hs_cache_dir_load) */
	int64_t ttl_ms;    /* hs_cache_dir_ttl_ms() at open */
	int keep_cache;    /* the kernel's readdir copy is still good */
	/* on c->dirs: the kernel may not release every handle of an
	 * unmounted filesystem, so the cache frees what is left at close */
	struct hs_dir *prev, *next;
};

size_t hs_dir_count(const struct hs_dir *d)
{
	return d->n;
}

const struct hs_dir_entry *hs_dir_entry(const struct hs_dir *d, size_t i)
{
	return &d->v[i];
}

int64_t hs_dir_ttl_ms(const struct hs_dir *d)
{
	return d->ttl_ms;
}

int hs_dir_keep_cache(const struct hs_dir *d)
{
	return d->keep_cache;
}

int hs_cache_opendir(struct hs_cache *c, uint64_t ino, struct hs_dir **ret,
		     hs_deadline_t dl)
{
	struct hs_dir *d;
	size_t k = dirgen_slot(ino);
	uint32_t gen;
	int r;

	r = hs_dir_refresh(c, ino, 1, dl); /* -ENOTDIR for a non-folder */
	if (r < 0)
		return r;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	d->ino = ino;
	d->ttl_ms = hs_cache_dir_ttl_ms(c, ino);
	/* the version is taken before the entries are read: a change in
	 * between makes the next open drop the kernel's copy, never keep a
	 * stale one */
	gen = dirgen(c, ino);
	pthread_mutex_lock(&c->kver_lock);
	d->keep_cache = c->kdir[k].ino == ino && c->kdir[k].gen == gen;
	c->kdir[k].ino = ino;
	c->kdir[k].gen = gen;
	pthread_mutex_unlock(&c->kver_lock);
	pthread_mutex_lock(&c->stat_lock);
	d->next = c->dirs;
	if (d->next)
		d->next->prev = d;
	c->dirs = d;
	pthread_mutex_unlock(&c->stat_lock);
	*ret = d;
	return 0;
}

int hs_cache_dir_load(struct hs_cache *c, struct hs_dir *d)
{
	static const char sql[] =
		"SELECT d.name, i.ino, i.mode, i.uid, i.gid, CASE WHEN"
		" (i.mode & 61440) = 16384 THEN 2 + (SELECT count(*) FROM dentry d2"
		" JOIN inode i2 ON d2.ino=i2.ino WHERE d2.parent=i.ino AND"
		" (i2.mode & 61440) = 16384) ELSE i.nlink END, i.size,"
		" i.atime, i.mtime, i.ctime FROM dentry d JOIN inode i"
		" ON d.ino=i.ino WHERE d.parent=?";
	sqlite3_stmt *st;
	size_t cap = 0, k;
	int r;

	pthread_mutex_lock(&d->lock);
	if (d->loaded) {
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (!st) {
		r = -EIO;
		goto out;
	}
	sqlite3_bind_int64(st, 1, (int64_t)d->ino);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct hs_inode x = { 0 };
		struct hs_dir_entry *e;

		if (d->n == cap) {
			void *v;

			cap = cap ? cap * 2 : 32;
			v = realloc(d->v, cap * sizeof(*d->v));
			if (!v) {
				r = -ENOMEM;
				break;
			}
			d->v = v;
		}
		e = &d->v[d->n];
		e->name = strdup((const char *)sqlite3_column_text(st, 0));
		if (!e->name) {
			r = -ENOMEM;
			break;
		}
		x.ino = (uint64_t)sqlite3_column_int64(st, 1);
		x.mode = (uint32_t)sqlite3_column_int64(st, 2);
		x.uid = (uint32_t)sqlite3_column_int64(st, 3);
		x.gid = (uint32_t)sqlite3_column_int64(st, 4);
		x.nlink = (uint32_t)sqlite3_column_int64(st, 5);
		x.size = (uint64_t)sqlite3_column_int64(st, 6);
		x.atime = sqlite3_column_int64(st, 7);
		x.mtime = sqlite3_column_int64(st, 8);
		x.ctime = sqlite3_column_int64(st, 9);
		hs_cache_fill_stat(c, &x, &e->st);
		d->n++;
	}
	sqlite3_reset(st);
	r = r == SQLITE_DONE ? 0 : r < 0 ? r : hs_meta_errno(c, r);
out:
	pthread_mutex_unlock(&c->db_lock);
	if (r < 0) {
		for (k = 0; k < d->n; k++)
			free((char *)d->v[k].name);
		free(d->v);
		d->v = NULL;
		d->n = 0;
		pthread_mutex_unlock(&d->lock);
		return r;
	}
	for (k = 0; k < d->n; k++)
		if (S_ISREG(d->v[k].st.st_mode))
			hs_file_overlay(c, d->v[k].st.st_ino, &d->v[k].st);
	d->loaded = 1;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void hs_cache_releasedir(struct hs_cache *c, struct hs_dir *d)
{
	size_t i;

	if (!d)
		return;
	pthread_mutex_lock(&c->stat_lock);
	if (d->prev)
		d->prev->next = d->next;
	else if (c->dirs == d)
		c->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&c->stat_lock);
	for (i = 0; i < d->n; i++)
		free((char *)d->v[i].name);
	free(d->v);
	pthread_mutex_destroy(&d->lock);
	free(d);
}
