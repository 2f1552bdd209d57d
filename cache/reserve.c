/* SPDX-License-Identifier: MIT
 * cache/reserve.c - room on the cache disk kept for the database alone.
 *
 * The journal is the record of what the host is still owed, so a full
 * cache disk must never fail its commits nor stop the next mount from
 * opening it (DESIGN.md, contract 7).  File data already stops short of the
 * disk's free-space floor (file.c), but another program may fill the disk
 * to the last block.  So the cache folder holds a preallocated file,
 * `reserve` (RESERVE_MAX, or a sixteenth of a small disk), that nothing
 * but this file touches:
 *
 *   - given back (truncated to 0) when a commit fails for want of space,
 *     and the commit tried again (meta.c, hs_meta_flush());
 *   - given back before the database is opened when the disk has less
 *     free space than the reserve's size, so a mount on a full disk opens
 *     its database, serves what is cached and sends what is pending;
 *   - made again (fallocate) once the disk has the room: at open and at
 *     every keepalive of the link (cache.c ping()).
 *
 * States of the file: absent or empty (given back) -> full size (held).
 * Only the size matters; its bytes are never read.
 *
 * Locking: reserve_lock (a leaf) serialises give-back and refill; the
 * database's callers hold db_lock around a give-back, the link thread
 * refills without it.  No transport I/O here.
 */
#include "cache_i.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define RESERVE_MAX (8ULL << 20)

static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;

/* The reserve's size on a disk of @total bytes: RESERVE_MAX, a sixteenth
 * of a disk too small for it, 4 KiB aligned. */
static uint64_t reserve_size(uint64_t total)
{
	return HS_MIN(RESERVE_MAX, total / 16) / HS_BLOCK * HS_BLOCK;
}

static int path_of(const struct hs_cache *c, char *buf, size_t len)
{
	return snprintf(buf, len, "%s/reserve", c->dir) < (int)len ? 0 : -ENAMETOOLONG;
}

/* Bytes the reserve holds now (0 if absent). */
static uint64_t held(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

int hs_reserve_release(struct hs_cache *c)
{
	char path[4096 + 16];
	uint64_t had;
	int r = 0;

	if (path_of(c, path, sizeof(path)) < 0)
		return 0;
	pthread_mutex_lock(&reserve_lock);
	had = held(path);
	if (had && truncate(path, 0) == 0) {
		hs_warn("cache disk of '%s' is full: gave the database its "
			"reserve of %llu KiB; free space on that disk", c->dir,
			(unsigned long long)(had >> 10));
		r = 1;
	}
	pthread_mutex_unlock(&reserve_lock);
	return r;
}

void hs_reserve_check(struct hs_cache *c)
{
	char path[4096 + 16];
	struct statvfs sv;
	uint64_t avail, want;

	if (path_of(c, path, sizeof(path)) < 0 || statvfs(c->dir, &sv) < 0)
		return;
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	want = reserve_size((uint64_t)sv.f_blocks * sv.f_frsize);
	if (avail < want)
		hs_reserve_release(c);
}

void hs_reserve_refill(struct hs_cache *c)
{
	char path[4096 + 16];
	struct statvfs sv;
	uint64_t total, avail, want, have;
	int fd;

	if (path_of(c, path, sizeof(path)) < 0 || statvfs(c->dir, &sv) < 0)
		return;
	total = (uint64_t)sv.f_blocks * sv.f_frsize;
	avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	want = reserve_size(total);
	pthread_mutex_lock(&reserve_lock);
	have = held(path);
	/* only out of room the data would leave free anyway: the floor */
	if (want > have && avail >= want - have + hs_cache_min_free(c, total)) {
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			if (posix_fallocate(fd, 0, (off_t)want) != 0)
				(void)ftruncate(fd, 0); /* all or nothing */
			close(fd);
		}
	}
	pthread_mutex_unlock(&reserve_lock);
}
