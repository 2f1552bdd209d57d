/* SPDX-License-Identifier: MIT
 * cache/doctor.c - read-only facts about the journal for `hostsharectl
 * doctor` (through the control socket): how old the oldest pending entry
 * is, how many entries predate this mount, and the last entries the host
 * refused.  The daemon holds the database in exclusive locking mode, so
 * no other process can read it while the folder is mounted.
 *
 * Locking: takes db_lock for the two queries; no network, no writes.
 */
#include "cache_i.h"

#include <stdio.h>
#include <string.h>

int hs_cache_journal_info(struct hs_cache *c,
			  struct hs_cache_journal_info *ret)
{
	static const char age_sql[] =
		"SELECT min(CASE WHEN created > 0 THEN created END),"
		" coalesce(sum(created = 0), 0) FROM journal WHERE state <> 2";
	static const char refused_sql[] =
		"SELECT coalesce(path, ''), coalesce(error, '') FROM journal"
		" WHERE state = 2 ORDER BY seq DESC LIMIT 3";
	sqlite3_stmt *st;
	int64_t now = hs_now_ns(), oldest;
	size_t n;
	int rc, r = 0;

	memset(ret, 0, sizeof(*ret));
	ret->oldest_age_ms = -1;
	pthread_mutex_lock(&c->db_lock);
	st = hs_meta_prepare(c, age_sql);
	if (!st) {
		r = -EIO;
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		oldest = sqlite3_column_int64(st, 0);
		/* created is CLOCK_MONOTONIC at append, 0 for rows of an
		 * earlier mount */
		if (sqlite3_column_type(st, 0) != SQLITE_NULL && oldest > 0 &&
		    oldest <= now)
			ret->oldest_age_ms = (now - oldest) / HS_NSEC_PER_MSEC;
		ret->earlier_mount_ops = (uint64_t)sqlite3_column_int64(st, 1);
	} else {
		r = hs_meta_errno(c, rc);
	}
	sqlite3_reset(st);
	if (r < 0)
		goto out;
	st = hs_meta_prepare(c, refused_sql);
	if (!st)
		goto out;
	while (sqlite3_step(st) == SQLITE_ROW) {
		n = strlen(ret->refused);
		snprintf(ret->refused + n, sizeof(ret->refused) - n,
			 "%s'%.150s': %.150s", n ? "; " : "",
			 (const char *)sqlite3_column_text(st, 0),
			 (const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
out:
	pthread_mutex_unlock(&c->db_lock);
	return r;
}
