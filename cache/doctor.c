/* SPDX-License-Identifier: MIT
 * cache/doctor.c - read-only facts about the journal for `hostsharectl
 * doctor`: how much is pending, how old the oldest pending entry is, how
 * many pending entries an earlier mount left, and the last entries the
 * host refused.  One call serves both doctors: the daemon's answer to the
 * control socket's "doctor" request (fs/ctl_doctor.c) passes its open
 * cache; tools/doctor.c, for a source that is not mounted, passes the
 * cache folder, whose meta.db is opened read-only here.  The queries
 * themselves are journal.c's (hs_journal_info()).
 *
 * A mounted folder cannot be read from outside: the daemon holds its
 * database in exclusive locking mode, so the read-only open finds it
 * locked (-EBUSY).
 *
 * Locking: takes db_lock of an open cache for the queries; no network, no
 * writes.
 */
#include "cache_i.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* "file:" URI of @path opened read-only (a URI, so that a path with '?'
 * or '#' is not misread). */
static void ro_uri(const char *path, char *uri, size_t size)
{
	size_t i, n = (size_t)snprintf(uri, size, "file:");

	for (i = 0; path[i] && n + 4 < size; i++) {
		unsigned char ch = (unsigned char)path[i];

		if (isalnum(ch) || strchr("/-_.~@", ch))
			uri[n++] = (char)ch;
		else
			n += (size_t)snprintf(uri + n, size - n, "%%%02X", ch);
	}
	snprintf(uri + n, size - n, "?mode=ro");
}

static int info_of_folder(const char *dir, struct hs_cache_journal_info *ret,
			  char *err, size_t errlen)
{
	char path[PATH_MAX + 32], uri[PATH_MAX * 3 + 64];
	sqlite3 *db = NULL;
	struct stat sb;
	int r;

	snprintf(path, sizeof(path), "%s/meta.db", dir);
	if (!dir[0] || stat(path, &sb) < 0) {
		snprintf(err, errlen, "no cache database in '%s'", dir);
		return -ENOENT;
	}
	ro_uri(path, uri, sizeof(uri));
	if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s",
			 db ? sqlite3_errmsg(db) : "out of memory");
		r = -EIO;
	} else {
		r = hs_journal_info(db, ret, err, errlen);
	}
	if (r < 0 && strstr(err, "locked")) {
		snprintf(err, errlen, "the cache is in use by a running "
			 "hostshare: run the doctor on its mountpoint");
		r = -EBUSY;
	}
	sqlite3_close(db);
	return r;
}

int hs_cache_journal_info(struct hs_cache *c, const char *dir,
			  struct hs_cache_journal_info *ret, char *err,
			  size_t errlen)
{
	int r;

	if (!c)
		return info_of_folder(dir, ret, err, errlen);
	pthread_mutex_lock(&c->db_lock);
	r = hs_journal_info(c->db, ret, err, errlen);
	pthread_mutex_unlock(&c->db_lock);
	return r;
}
