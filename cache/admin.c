/* SPDX-License-Identifier: MIT
 * cache/admin.c - what hostsharectl asks of a mount besides its status:
 * the conflicts found, the journal rows still owed to the host, and
 * dropping clean cached data on request (the limits are evict.c's).
 *
 * Locking: the listings hold db_lock while they step through their query
 * and call the caller's function for each row, so that function must not
 * call back into the cache.  Eviction takes the inode list under db_lock,
 * then evicts one file at a time (files_lock -> hs_file.lock -> db_lock,
 * the usual order).
 */
#include "cache_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int hs_cache_conflicts(struct hs_cache *c, hs_conflict_fn fn, void *arg)
{
	static const char sql[] =
		"SELECT id, at, path, copy, reason FROM conflict ORDER BY id";
	sqlite3_stmt *st;
	int rc, r = 0;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (!st) {
		pthread_mutex_unlock(&c->db_lock);
		return -EIO;
	}
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct hs_conflict k = {
			.id = sqlite3_column_int64(st, 0),
			.at_ns = sqlite3_column_int64(st, 1),
			.path = (const char *)sqlite3_column_text(st, 2),
			.copy = (const char *)sqlite3_column_text(st, 3),
			.reason = (const char *)sqlite3_column_text(st, 4),
		};
		r = fn(arg, &k);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = hs_meta_errno(c, rc);
	sqlite3_reset(st);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

int hs_cache_conflicts_clear(struct hs_cache *c, uint64_t *ret_n)
{
	static const char sql[] = "DELETE FROM conflict";
	sqlite3_stmt *st;
	int r;

	*ret_n = 0;
	pthread_mutex_lock(&c->db_lock);
	r = hs_meta_begin(c);
	if (r == 0 && !(st = hs_meta_prepare(c, sql)))
		r = -EIO;
	if (r == 0)
		r = hs_meta_step(c, st);
	if (r == 0)
		*ret_n = (uint64_t)sqlite3_changes(c->db);
	if (r == 0)
		r = hs_meta_commit(c);
	else
		hs_meta_rollback(c);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}

uint64_t hs_cache_conflict_count(struct hs_cache *c)
{
	static const char sql[] = "SELECT count(*) FROM conflict";
	sqlite3_stmt *st;
	uint64_t n = 0;

	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, sql);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		n = (uint64_t)sqlite3_column_int64(st, 0);
	if (st)
		sqlite3_reset(st);
	pthread_mutex_unlock(&c->db_lock);
	return n;
}

int hs_cache_pending(struct hs_cache *c, hs_pending_fn fn, void *arg)
{
	char err[256];
	int r;

	/* the same listing as of a folder not mounted (cache/doctor.c) */
	pthread_mutex_lock(&c->db_lock);
	r = hs_journal_pending(c->db, fn, arg, err, sizeof(err));
	pthread_mutex_unlock(&c->db_lock);
	if (r == -EIO)
		hs_log(HS_LOG_WARNING, "cache: cannot list the journal: %s", err);
	return r;
}

/* Inode of guest path @path ("/" or "/a/b"); db_lock held. */
static int resolve(struct hs_cache *c, const char *path, uint64_t *ret)
{
	char *copy = strdup(path), *save = NULL, *name;
	uint64_t ino = HS_ROOT_INO;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	for (name = strtok_r(copy, "/", &save); name && r == 0;
	     name = strtok_r(NULL, "/", &save)) {
		if (!strcmp(name, "."))
			continue;
		if (!strcmp(name, "..")) {
			r = -EINVAL;
			break;
		}
		r = hs_meta_lookup(c, ino, name, &ino);
	}
	free(copy);
	if (r == 0)
		*ret = ino;
	return r;
}

int hs_cache_evict(struct hs_cache *c, const char *path,
		   struct hs_evict_result *ret)
{
	/* the regular files at or below @top whose data is all on the host */
	static const char sql[] =
		"WITH RECURSIVE t(ino) AS (SELECT ?1 UNION"
		" SELECT d.ino FROM dentry d JOIN t ON d.parent=t.ino)"
		" SELECT i.ino FROM t JOIN inode i ON i.ino=t.ino"
		" WHERE (i.mode & 61440) = 32768 AND i.present IS NOT NULL";
	uint64_t top, *v = NULL, n = 0, cap = 0, k, bytes;
	sqlite3_stmt *st;
	int r, rc;

	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&c->db_lock);
	r = resolve(c, path && *path ? path : "/", &top);
	if (r == 0 && !(st = hs_meta_prepare(c, sql)))
		r = -EIO;
	if (r == 0) {
		sqlite3_bind_int64(st, 1, (int64_t)top);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (n == cap) {
				uint64_t *nv;

				cap = cap ? cap * 2 : 64;
				nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					r = -ENOMEM;
					break;
				}
				v = nv;
			}
			v[n++] = (uint64_t)sqlite3_column_int64(st, 0);
		}
		if (r == 0 && rc != SQLITE_DONE)
			r = hs_meta_errno(c, rc);
		sqlite3_reset(st);
	}
	pthread_mutex_unlock(&c->db_lock);
	for (k = 0; r == 0 && k < n; k++) {
		int e = hs_file_evict(c, v[k], &bytes);

		if (e == 0 && bytes) {
			ret->files++;
			ret->bytes += bytes;
		} else if (e == -EBUSY) {
			ret->kept++;
		}
	}
	free(v);
	if (r == 0)
		hs_cache_forget_usage(c);
	return r;
}
