/* SPDX-License-Identifier: MIT
 * tests/unit/test_cache.c - the cache layer end to end over a local-folder
 * transport (tests/lib/localtr) wrapped in the fault injector, without FUSE
 * or sshd: writes reach the host through the journal, coalescing saves host
 * calls, host changes are seen, the journal survives a close and reopen,
 * a stalled link never blocks cached work, and host change notifications
 * are applied at once (echoes of the guest's own changes report nothing).
 */
#include "cache/cache.h"
#include "cache/cache_i.h" /* hs_notify_push: the events a transport reports */
#include "common/json.h"
#include "common/proto.h"
#include "tests/lib/check.h"
#include "tests/lib/faulty.h"
#include "tests/lib/localtr.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256], hostdir[300], cachedir[300];
static struct hs_transport *wraps[64];
static int nwraps;
static int stall_new, refuse_new, serial_new;
static FILE *log_new; /* where new connections log their calls */
static int test_conns; /* flush_connections of the next cache opened */

static int dial(void *arg, hs_deadline_t dl, struct hs_transport **ret, char *err,
		size_t errlen)
{
	struct hs_transport *in, *w;
	int r;

	if (refuse_new) {
		snprintf(err, errlen, "refused by the test");
		return -ECONNREFUSED;
	}
	r = hs_localtr_dial(arg, dl, &in, err, errlen);
	if (r < 0)
		return r;
	CHECK_OK(hs_faulty_wrap(in, &w));
	if (stall_new)
		hs_faulty_stall(w, 1);
	/* pipelined calls, each change its own (most tests count them) */
	if (serial_new != 2)
		w->caps &= ~(unsigned)HS_TR_CAP_SEQ;
	if (serial_new == 1) /* a wire like SFTP's: one call at a time */
		w->caps &= ~(unsigned)HS_TR_CAP_PIPELINE;
	if (log_new)
		hs_faulty_log(w, log_new);
	CHECK(nwraps < 64);
	wraps[nwraps] = w;
	__atomic_store_n(&nwraps, nwraps + 1, __ATOMIC_RELEASE);
	*ret = w;
	return 0;
}

static long count(const char *slot)
{
	long n = 0;
	int i;

	for (i = 0; i < nwraps; i++)
		n += hs_faulty_count(wraps[i], slot);
	return n;
}

/* Waits until the cache has dialed @n connections (the fetch one at open,
 * the flush ones right after, from the link thread), so faults set on
 * every wrapper reach them all. */
static void wait_connections(int n)
{
	int i;

	for (i = 0; i < 500 && __atomic_load_n(&nwraps, __ATOMIC_ACQUIRE) < n; i++)
		usleep(10000);
	CHECK(__atomic_load_n(&nwraps, __ATOMIC_ACQUIRE) >= n);
}

/* What the cache reported through on_host_change: "C:parent/name;"
 * created, "D:..." removed, "M:ino;" changed, "A:ino;" attributes,
 * "R:parent/name>parent/name;" moved. */
static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static char events[8192];

static void on_host_change(void *arg, const struct hs_host_change *hc)
{
	size_t n;

	(void)arg;
	pthread_mutex_lock(&ev_lock);
	n = strlen(events);
	if (hc->kind == HS_HC_CREATED || hc->kind == HS_HC_REMOVED)
		snprintf(events + n, sizeof(events) - n, "%c:%llu/%s;",
			 hc->kind == HS_HC_CREATED ? 'C' : 'D',
			 (unsigned long long)hc->parent, hc->name);
	else if (hc->kind == HS_HC_MOVED)
		snprintf(events + n, sizeof(events) - n, "R:%llu/%s>%llu/%s;",
			 (unsigned long long)hc->parent, hc->name,
			 (unsigned long long)hc->newparent, hc->newname);
	else
		snprintf(events + n, sizeof(events) - n, "%c:%llu;",
			 hc->kind == HS_HC_CHANGED ? 'M' : 'A',
			 (unsigned long long)hc->ino);
	pthread_mutex_unlock(&ev_lock);
}

static struct hs_cache *open_cache_trusting(int delay_ms, int attr_timeout_ms)
{
	struct hs_cache_config cfg = {
		.dial = dial, .dial_arg = hostdir, .dir = cachedir,
		.source = "test", .op_timeout_ms = 2000,
		.attr_timeout_ms = attr_timeout_ms,
		.writeback_delay_ms = delay_ms, .connect_timeout_ms = 2000,
		.allow_offline = 1, .idmap_user = 1, .local_uid = getuid(),
		.local_gid = getgid(), .force_uid = -1, .force_gid = -1,
		.on_host_change = on_host_change,
		.flush_connections = test_conns,
		.retry_min_ms = 100, /* the tests refuse dials a lot */
	};
	char err[256] = "";
	struct hs_cache *c = NULL;
	int r;

	nwraps = 0; /* the previous cache closed its connections */
	r = hs_cache_open(&cfg, &c, err, sizeof(err));

	if (r < 0)
		CHECK_FAIL("hs_cache_open: %s", err);
	return c;
}

static struct hs_cache *open_cache(int delay_ms)
{
	return open_cache_trusting(delay_ms, 200);
}

static hs_deadline_t dl(void)
{
	return hs_deadline_in_ms(5000);
}

static void host_write(const char *name, const char *data, size_t len)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", hostdir, name);
	f = fopen(p, "w");
	CHECK(f);
	CHECK_EQ(fwrite(data, 1, len, f), len);
	fclose(f);
}

static size_t host_read(const char *name, char *buf, size_t size)
{
	char p[512];
	size_t n;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", hostdir, name);
	f = fopen(p, "r");
	if (!f)
		return (size_t)-1;
	n = fread(buf, 1, size, f);
	fclose(f);
	return n;
}

static int host_exists(const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", hostdir, name);
	return lstat(p, &st) == 0;
}

/* True if @a and @b have the same bits set. */
static int same_bits(const struct hs_bitmap *a, const struct hs_bitmap *b)
{
	uint64_t i = 0, j = 0;

	for (;;) {
		i = hs_bitmap_next_set(a, i, UINT64_MAX);
		j = hs_bitmap_next_set(b, j, UINT64_MAX);
		if (i != j)
			return 0;
		if (i == HS_BITMAP_NONE)
			return 1;
		i++;
		j++;
	}
}

/* The block states of @ino obey the invariants of cache/blocks.c; once
 * persisted, the row holds present and dirty|writing (below the cut). */
static void check_blocks(struct hs_cache *c, uint64_t ino)
{
	struct hs_file *f = hs_file_get(c, ino);
	struct hs_bitmap p, d, want;
	char why[160] = "";
	int64_t cut;

	CHECK(f);
	pthread_mutex_lock(&f->lock);
	CHECK_OK(hs_file_load(c, f));
	if (hs_blocks_check(&f->blk, f->size, why, sizeof(why)) != 0)
		CHECK_FAIL("blocks of inode %d: %s", (int)ino, why);
	if (!f->blk.changed) {
		hs_bitmap_init(&p);
		hs_bitmap_init(&d);
		hs_bitmap_init(&want);
		pthread_mutex_lock(&c->db_lock);
		CHECK_OK(hs_meta_load_maps(c, ino, &p, &d, &cut));
		pthread_mutex_unlock(&c->db_lock);
		CHECK_OK(hs_blocks_saved_dirty(&f->blk, &want));
		CHECK(same_bits(&p, &f->blk.present));
		CHECK(same_bits(&d, &want));
		CHECK_EQ(cut, hs_blocks_saved_cut(&f->blk));
		hs_bitmap_release(&p);
		hs_bitmap_release(&d);
		hs_bitmap_release(&want);
	}
	pthread_mutex_unlock(&f->lock);
	hs_file_put(c, f);
}

static struct hs_handle *create(struct hs_cache *c, uint64_t dir, const char *name,
				const char *data, uint64_t *ret_ino)
{
	struct hs_handle *h;
	struct stat st;

	CHECK_OK(hs_cache_create(c, dir, name, 0644, O_WRONLY | O_CREAT, &st, &h, dl()));
	if (data)
		CHECK_EQ(hs_cache_write(c, h, data, strlen(data), 0, dl()),
			 (ssize_t)strlen(data));
	if (ret_ino)
		*ret_ino = st.st_ino;
	return h;
}

static void test_write_and_sync(void)
{
	struct hs_cache *c = open_cache(60000);
	struct hs_handle *h;
	struct stat st;
	char buf[64];
	uint64_t d, a;

	h = create(c, 1, "a.txt", "hello", &a);
	check_blocks(c, a);
	CHECK_OK(hs_cache_flush(c, h));
	check_blocks(c, a);
	hs_cache_release(c, h);
	check_blocks(c, a);
	CHECK(!host_exists("a.txt")); /* writeback delay: not yet */
	CHECK_OK(hs_cache_mkdir(c, 1, "dir", 0755, &st, dl()));
	d = st.st_ino;
	h = create(c, d, "b", "bbb", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_sync(c, dl()));
	check_blocks(c, a);
	CHECK_EQ(host_read("a.txt", buf, sizeof(buf)), 5);
	CHECK(!memcmp(buf, "hello", 5));
	CHECK_EQ(host_read("dir/b", buf, sizeof(buf)), 3);
	/* one upload each: open of the temp name, then rename into place */
	CHECK_EQ(count("open"), 2);
	CHECK_EQ(count("rename"), 2);
	hs_cache_close(c);
}

static void test_coalesce(void)
{
	struct hs_cache *c = open_cache(60000);
	struct hs_handle *h;
	char buf[64];
	long opens = count("open"), renames = count("rename");

	/* created and deleted before the flush: the host sees nothing */
	h = create(c, 1, "gone", "xxx", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_unlink(c, 1, "gone", dl()));
	/* the editor's save: write a temp file, rename it over the original */
	h = create(c, 1, ".a.txt.swp", "new content", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_rename(c, 1, ".a.txt.swp", 1, "a.txt", 0, dl()));
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK(!host_exists("gone"));
	CHECK(!host_exists(".a.txt.swp"));
	CHECK_EQ(host_read("a.txt", buf, sizeof(buf)), 11);
	CHECK(!memcmp(buf, "new content", 11));
	CHECK_EQ(count("open") - opens, 1);
	CHECK_EQ(count("rename") - renames, 1);
	hs_cache_close(c);
}

/* Bytes of cache files in the data folder (what the cache holds on disk). */
static long long cache_data_bytes(void)
{
	char cmd[600], out[64] = "";
	FILE *p;

	snprintf(cmd, sizeof(cmd), "find '%s/data' -type f -printf '%%s\\n' |"
		 " awk '{ s += $1 } END { print s + 0 }'", cachedir);
	p = popen(cmd, "r");
	CHECK(p);
	CHECK(fgets(out, sizeof(out), p));
	pclose(p);
	return atoll(out);
}

/* A deleted file's cached data goes at once, even while its removal (and
 * changes made before it) are still to be sent: the unsent changes are
 * dropped, never sent to a file about to go, and a host edit made since
 * the guest's version is still kept (the removal is versioned). */
static void test_delete_gives_data_back(void)
{
	static char big[1 << 20];
	struct hs_cache *c = open_cache(60000);
	struct hs_handle *h;
	struct stat st;
	uint64_t ino;
	long writes;
	char buf[16];
	int i;

	for (i = 0; i < 2; i++) {
		const char *name = i ? "edited-on-host" : "deleted";

		memset(big, 'a' + i, sizeof(big));
		CHECK_OK(hs_cache_create(c, 1, name, 0644, O_WRONLY | O_CREAT, &st, &h, dl()));
		ino = st.st_ino;
		CHECK_EQ(hs_cache_write(c, h, big, sizeof(big), 0, dl()), (ssize_t)sizeof(big));
		hs_cache_release(c, h);
		CHECK_OK(hs_cache_sync(c, dl()));
		CHECK_EQ(host_read(name, buf, 1), 1);
		/* a change the host is still owed, then the delete */
		CHECK_OK(hs_cache_open_file(c, ino, O_RDWR, &h, &(int){ 0 }, dl()));
		CHECK_EQ(hs_cache_write(c, h, "zz", 2, 4096, dl()), 2);
		hs_cache_release(c, h);
		CHECK(cache_data_bytes() >= (long long)sizeof(big));
		if (i)
			host_write(name, "host edit", 9);
		writes = count("pwrite");
		CHECK_OK(hs_cache_unlink(c, 1, name, dl()));
		if (cache_data_bytes() >= 4096)
			CHECK_FAIL("%s: %lld bytes still cached", name, cache_data_bytes());
		CHECK_OK(hs_cache_sync(c, dl()));
		CHECK_EQ(count("pwrite"), writes); /* the change was not sent */
		if (i) {
			CHECK_EQ(host_read(name, buf, sizeof(buf)), 9);
			CHECK(!memcmp(buf, "host edit", 9));
		} else {
			CHECK(!host_exists(name));
		}
	}
	hs_cache_close(c);
}

static void test_read_and_coherence(void)
{
	struct hs_cache *c;
	struct hs_handle *h;
	struct stat st;
	char *big = malloc(3 << 20), *got = malloc(3 << 20);
	int keep;
	size_t i;

	for (i = 0; i < (3u << 20); i++)
		big[i] = (char)(i * 7 + i / 4096);
	host_write("big", big, 3 << 20);
	c = open_cache(0);
	CHECK_OK(hs_cache_lookup(c, 1, "big", &st, dl()));
	CHECK_EQ(st.st_size, 3 << 20);
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDONLY, &h, &keep, dl()));
	for (i = 0; i < (3u << 20); i += 131072)
		CHECK_EQ(hs_cache_read(c, h, got + i, 131072, (off_t)i, dl()), 131072);
	CHECK(!memcmp(big, got, 3 << 20));
	CHECK_EQ(hs_cache_read(c, h, got, 100, 3 << 20, dl()), 0);
	hs_cache_release(c, h);

	/* a host edit is seen once attr_timeout passed */
	host_write("big", "changed", 7);
	usleep(300000);
	CHECK_OK(hs_cache_lookup(c, 1, "big", &st, dl()));
	CHECK_EQ(st.st_size, 7);
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDONLY, &h, &keep, dl()));
	CHECK_EQ(keep, 0);
	CHECK_EQ(hs_cache_read(c, h, got, 100, 0, dl()), 7);
	CHECK(!memcmp(got, "changed", 7));
	hs_cache_release(c, h);

	/* a file deleted on the host disappears from the guest too (after
	 * attr_timeout, once the host confirms it is gone) */
	host_write("doomed", "x", 1);
	usleep(300000);
	CHECK_OK(hs_cache_lookup(c, 1, "doomed", &st, dl()));
	{
		char p[512];

		snprintf(p, sizeof(p), "%s/doomed", hostdir);
		CHECK_OK(unlink(p));
	}
	usleep(300000);
	CHECK_EQ(hs_cache_lookup(c, 1, "doomed", &st, dl()), -ENOENT);

	/* partial overwrite of host data: aligned blocks go up, rest kept */
	host_write("big", big, 3 << 20);
	usleep(300000);
	CHECK_OK(hs_cache_lookup(c, 1, "big", &st, dl()));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDWR, &h, &keep, dl()));
	CHECK_EQ(hs_cache_write(c, h, "XYZ", 3, 10000, dl()), 3);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_sync(c, dl()));
	memcpy(big + 10000, "XYZ", 3);
	CHECK_EQ(host_read("big", got, 3 << 20), 3 << 20);
	CHECK(!memcmp(big, got, 3 << 20));
	hs_cache_close(c);
	free(big);
	free(got);
}

/* A stream whose last chunk reached past its goal ends with the file, not
 * IDLE_MS later: right after a whole read, the file is no longer busy
 * (seen as 'kept' by an evict over the agent in CI). */
static void test_stream_ends_at_eof(void)
{
	size_t len = (7u << 19) + 5000, i; /* 3.5 MiB and a bit */
	char *big = malloc(len), *got = malloc(len);
	struct hs_evict_result res;
	struct hs_cache *c;
	struct hs_handle *h;
	struct stat st;
	int keep, round;

	for (i = 0; i < len; i++)
		big[i] = (char)(i * 13 + i / 4096);
	host_write("streamed", big, len);
	c = open_cache(0);
	for (round = 0; round < 8; round++) {
		CHECK_OK(hs_cache_lookup(c, 1, "streamed", &st, dl()));
		CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDONLY, &h, &keep,
					    dl()));
		for (i = 0; i < len; i += 131072) {
			size_t n = HS_MIN(131072, len - i);

			CHECK_EQ(hs_cache_read(c, h, got + i, n, (off_t)i, dl()),
				 (ssize_t)n);
		}
		CHECK(!memcmp(big, got, len));
		hs_cache_release(c, h);
		CHECK_OK(hs_cache_evict(c, "/streamed", &res));
		CHECK_EQ(res.kept, 0);
		CHECK_EQ(res.files, 1);
	}
	hs_cache_close(c);
	free(big);
	free(got);
}

static void test_replay_after_close(void)
{
	struct hs_cache *c = open_cache(600000);
	struct hs_handle *h;
	char buf[64];

	h = create(c, 1, "later", "survives", NULL);
	hs_cache_release(c, h);
	hs_cache_close(c); /* nothing sent yet */
	CHECK(!host_exists("later"));
	c = open_cache(0);
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK_EQ(host_read("later", buf, sizeof(buf)), 8);
	hs_cache_close(c);
}

/* The doctor's journal facts (hs_cache_journal_info()), from the open
 * cache and from the folder once closed: the real age of the oldest
 * pending entry, and the entries an earlier mount left. */
static void test_journal_info(void)
{
	struct hs_cache_journal_info ji;
	struct hs_cache *c = open_cache(600000);
	struct hs_handle *h;
	char err[256];
	int64_t t0 = hs_now_ns(), took_ms;

	h = create(c, 1, "info-a", "aaa", NULL);
	hs_cache_release(c, h);
	h = create(c, 1, "info-b", "bbb", NULL);
	hs_cache_release(c, h);
	usleep(300 * 1000);
	CHECK_OK(hs_cache_journal_info(c, NULL, &ji, err, sizeof(err)));
	took_ms = (hs_now_ns() - t0) / HS_NSEC_PER_MSEC;
	CHECK_EQ(ji.pending_ops, 2);
	CHECK_EQ(ji.failed_ops, 0);
	CHECK(ji.oldest_age_ms >= 300 && ji.oldest_age_ms <= took_ms);
	CHECK_EQ(ji.earlier_mount_ops, 0);  /* written by this mount */
	/* the daemon holds the database: no one else reads it meanwhile */
	CHECK_EQ(hs_cache_journal_info(NULL, cachedir, &ji, err, sizeof(err)),
		 -EBUSY);
	CHECK(strstr(err, "in use"));
	hs_cache_close(c);

	/* not mounted: read from the folder, read-only */
	CHECK_OK(hs_cache_journal_info(NULL, cachedir, &ji, err, sizeof(err)));
	CHECK_EQ(ji.pending_ops, 2);
	CHECK(ji.oldest_age_ms >= 300);
	CHECK_EQ(ji.earlier_mount_ops, 0); /* the latest mount wrote them */

	c = open_cache(600000);
	h = create(c, 1, "info-c", "ccc", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_journal_info(c, NULL, &ji, err, sizeof(err)));
	CHECK_EQ(ji.pending_ops, 3);
	CHECK_EQ(ji.earlier_mount_ops, 2);
	CHECK(ji.oldest_age_ms >= 300);
	hs_cache_close(c);
	CHECK_OK(hs_cache_journal_info(NULL, cachedir, &ji, err, sizeof(err)));
	CHECK_EQ(ji.pending_ops, 3);
	CHECK_EQ(ji.earlier_mount_ops, 2);

	c = open_cache(0);
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK_OK(hs_cache_journal_info(c, NULL, &ji, err, sizeof(err)));
	CHECK_EQ(ji.pending_ops, 0);
	CHECK_EQ(ji.oldest_age_ms, -1);
	CHECK_EQ(ji.earlier_mount_ops, 0);
	CHECK(host_exists("info-a") && host_exists("info-c"));
	hs_cache_close(c);
	CHECK_EQ(hs_cache_journal_info(NULL, "/nonexistent-hs", &ji, err,
				       sizeof(err)), -ENOENT);
}

/* Rows of a listing as their JSON objects without the age (which moves):
 * hs_pending_json() is the one encoding both listings use. */
struct rows {
	char text[8192];
	int n;
};

static int collect_row(void *arg, const struct hs_pending *p)
{
	struct rows *r = arg;
	struct hs_pending q = *p;
	struct hs_json j;
	size_t n = strlen(r->text);

	q.age_ms = 0;
	hs_pending_json(&q, &j);
	snprintf(r->text + n, sizeof(r->text) - n, "%s", hs_json_end(&j));
	r->n++;
	return 0;
}

/* `hostsharectl pending` of a folder whose mount is not running
 * (hs_cache_folder_pending()) lists what the open cache lists, and the
 * note of a move-aside message counts the same rows. */
static void test_folder_pending(void)
{
	struct rows live = { "", 0 }, folder = { "", 0 };
	struct hs_cache *c = open_cache(600000);
	struct hs_handle *h;
	struct stat st;
	char err[256], note[512], want[600];

	CHECK_OK(hs_cache_mkdir(c, 1, "fp-dir", 0755, &st, dl()));
	h = create(c, 1, "fp-a", "0123456789", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_symlink(c, 1, "fp-link", "fp-a", &st, dl()));
	CHECK_OK(hs_cache_pending(c, collect_row, &live));
	CHECK_EQ(live.n, 3);
	CHECK(strstr(live.text, "\"op\":\"create\",\"state\":\"pending\","
		     "\"path\":\"/fp-a\",\"bytes\":10,"));
	CHECK_EQ(hs_cache_folder_pending(cachedir, collect_row, &folder, err,
					 sizeof(err)), -EBUSY);
	CHECK(strstr(err, "'hostsharectl pending' on its mountpoint"));
	hs_cache_close(c);

	CHECK_OK(hs_cache_folder_pending(cachedir, collect_row, &folder, err,
					 sizeof(err)));
	CHECK_EQ(folder.n, 3);
	CHECK_STR_EQ(folder.text, live.text);
	hs_cache_owed_note(cachedir, note, sizeof(note));
	snprintf(want, sizeof(want), "the folder still holds 3 changes not on "
		 "the host (see 'hostsharectl pending %s')", cachedir);
	CHECK_STR_EQ(note, want);

	CHECK_EQ(hs_cache_folder_pending("/nonexistent-hs", collect_row, &folder,
					 err, sizeof(err)), -ENOENT);
	hs_cache_owed_note("/nonexistent-hs", note, sizeof(note));
	CHECK(strstr(note, "may hold changes the host has not got"));

	c = open_cache(0);
	CHECK_OK(hs_cache_sync(c, dl()));
	hs_cache_close(c);
	hs_cache_owed_note(cachedir, note, sizeof(note));
	CHECK_STR_EQ(note, "the folder holds no change the host has not got");
}

/* Names in the host folder that contain @part. */
static int host_names_with(const char *part)
{
	DIR *d = opendir(hostdir);
	struct dirent *de;
	int n = 0;

	CHECK(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, part))
			n++;
	closedir(d);
	return n;
}

/* Conflict copies ("NAME.conflict-...") in the host folder. */
static int host_conflict_copies(void)
{
	return host_names_with(".conflict-");
}

/* A send of a file's changes that the link cut part-way (after @cut host
 * calls) may already have changed the host copy: the truncate, some data,
 * but not the final times.  Sending it again, in the same run or after a
 * restart (@reopen; what a kill of the daemon leaves), finishes the update:
 * that is no change by someone else, so no conflict copy.  With
 * @host_edit, someone does change the host copy before the retry: that one
 * is a conflict, and the host's version stays. */
static void cut_send(int cut, int shrink, int reopen, int host_edit)
{
	static const char base[] = "0123456789 the version on the host";
	static const char edit[] = "edited on the host";
	struct hs_cache *c = open_cache(60000);
	struct hs_handle *h;
	struct stat st;
	uint64_t ino;
	char name[32], *want = malloc(20000), *got = malloc(20000);
	size_t size = sizeof(base) - 1;
	int keep, i;

	snprintf(name, sizeof(name), "cut%d-%d%d%d", cut, shrink, reopen, host_edit);
	hs_cache_release(c, create(c, 1, name, base, &ino));
	CHECK_OK(hs_cache_sync(c, dl()));
	memcpy(want, base, size);

	/* the guest's change: a truncate (or not), then data that grows it */
	CHECK_OK(hs_cache_open_file(c, ino, O_RDWR, &h, &keep, dl()));
	if (shrink) {
		memset(&st, 0, sizeof(st));
		st.st_size = 4;
		CHECK_OK(hs_cache_setattr(c, ino, &st, HS_SET_SIZE, h, &st, dl()));
		size = 4;
		check_blocks(c, ino);
	}
	for (i = 0; i < 9000; i++)
		got[i] = (char)('a' + i % 23);
	CHECK_EQ(hs_cache_write(c, h, got, 9000, 6000, dl()), 9000);
	memset(want + size, 0, 6000 - size);
	memcpy(want + 6000, got, 9000);
	size = 15000;
	check_blocks(c, ino);
	hs_cache_release(c, h);
	check_blocks(c, ino);

	for (i = 0; i < nwraps; i++)
		hs_faulty_fail_after(wraps[i], cut, -ECONNRESET, 0);
	if (reopen || host_edit) {
		/* the retry waits (new connections stall) until the restart */
		stall_new = 1;
		i = hs_cache_sync(c, hs_deadline_in_ms(700));
		/* the send makes 6 calls (the check, size, open, data, close,
		 * times), 7 with the truncate: a cut after the last is none */
		CHECK_EQ(i < 0, cut < (shrink ? 7 : 6));
		check_blocks(c, ino);
		hs_cache_close(c);
		stall_new = 0;
		if (host_edit)
			host_write(name, edit, sizeof(edit) - 1);
		c = open_cache(60000);
	}
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	check_blocks(c, ino);
	if (host_edit) {
		CHECK_EQ(host_read(name, got, 20000), sizeof(edit) - 1);
		CHECK(!memcmp(got, edit, sizeof(edit) - 1));
		CHECK_EQ(host_conflict_copies(), 1);
	} else {
		CHECK_EQ(host_read(name, got, 20000), size);
		CHECK(!memcmp(got, want, size));
		CHECK_EQ(host_conflict_copies(), 0);
	}
	hs_cache_close(c);
	free(want);
	free(got);
	{
		char cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -f '%s'/*.conflict-*", hostdir);
		CHECK_EQ(system(cmd), 0);
	}
}

static void test_cut_send_is_no_conflict(void)
{
	int cut;

	/* every point of the send: the check, truncate, size, open, data,
	 * close, times */
	for (cut = 0; cut < 8; cut++) {
		cut_send(cut, 0, 0, 0);
		cut_send(cut, 1, 0, 0);
	}
	/* ... and after a restart */
	for (cut = 2; cut < 8; cut += 2)
		cut_send(cut, cut & 2, 1, 0);
	cut_send(6, 0, 1, 0); /* a cut after the last call: the send is done */
	/* a real change on the host after a cut is still a conflict */
	cut_send(3, 0, 0, 1);
	cut_send(5, 1, 0, 1);
}

/* The upload of a new file loses its answer at call @lose (from the rename
 * on, the file is on the host under its name), and before it is sent again
 * the guest deletes the file, or renames it (@rename): the host ends as
 * the guest, with no leftover under the old name or a temporary one. */
static void lost_create(int lose, int rename)
{
	struct hs_cache *c = open_cache(60000);
	char name[32], to[40], buf[64];
	int i;

	snprintf(name, sizeof(name), "lost%d-%d", lose, rename);
	snprintf(to, sizeof(to), "%s-moved", name);
	hs_cache_release(c, create(c, 1, name, "new file", NULL));
	wait_connections(2);
	for (i = 0; i < nwraps; i++) /* (the broken one goes: not used after) */
		hs_faulty_lose_answer_after(wraps[i], lose, 0);
	refuse_new = 1; /* nothing is sent again until the guest's change */
	CHECK(hs_cache_sync(c, hs_deadline_in_ms(500)) < 0);
	if (rename)
		CHECK_OK(hs_cache_rename(c, 1, name, 1, to, 0, dl()));
	else
		CHECK_OK(hs_cache_unlink(c, 1, name, dl()));
	refuse_new = 0;
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	CHECK(!host_exists(name));
	if (rename) {
		CHECK_EQ(host_read(to, buf, sizeof(buf)), 8);
		CHECK(!memcmp(buf, "new file", 8));
	} else {
		CHECK(!host_exists(to));
	}
	CHECK_EQ(host_names_with(".hs-tmp."), 0);
	hs_cache_close(c);
}

/* Lines of @log naming a rename onto @to: how many, and how many of them
 * were sent as resends. */
static void renames_onto(const char *log, const char *to, int *n, int *resent)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), " %s", to);
	*n = *resent = 0;
	for (p = log; (p = strstr(p, "rename ")); p++) {
		const char *eol = strchr(p, '\n'), *hit = strstr(p, pat);

		if (!eol || !hit || hit > eol)
			continue;
		(*n)++;
		if (strstr(p, " resend ->") && strstr(p, " resend ->") < eol)
			(*resent)++;
	}
}

/* The send's call @lose reaches the host but its answer is lost; once
 * that send has failed, the link comes back and the row goes again. */
static void lose_then_resend(struct hs_cache *c, int lose)
{
	int i;

	wait_connections(2);
	for (i = 0; i < nwraps; i++)
		hs_faulty_lose_answer_after(wraps[i], lose, 0);
	refuse_new = 1;
	CHECK(hs_cache_sync(c, hs_deadline_in_ms(500)) < 0);
	refuse_new = 0;
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
}

/* A row whose send was cut (its rename's answer lost: the host did it)
 * is sent again with HS_RENAME_RESEND on its renames, so a wire that
 * replaces names in steps (SFTP) clears what the cut try left there
 * (test_sftp); a first send carries no such flag.  For a new file (its
 * temporary name over the final one) and for the guest's own rename. */
static void test_resend_says_so(void)
{
	struct hs_cache *c;
	char *text = NULL, buf[64];
	size_t len = 0;
	int n, resent;

	log_new = open_memstream(&text, &len);
	CHECK(log_new);
	c = open_cache(60000);
	hs_cache_release(c, create(c, 1, "resend-new", "new file", NULL));
	lose_then_resend(c, 4); /* open, write, close, times, rename */
	CHECK_EQ(host_read("resend-new", buf, sizeof(buf)), 8);
	CHECK(!memcmp(buf, "new file", 8));
	CHECK_EQ(host_names_with(".hs-tmp."), 0);
	hs_cache_close(c);

	/* the guest's rename over a name, its answer lost */
	c = open_cache(60000);
	hs_cache_release(c, create(c, 1, "resend-from", "moved", NULL));
	hs_cache_release(c, create(c, 1, "resend-to", "replaced", NULL));
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	CHECK_OK(hs_cache_rename(c, 1, "resend-from", 1, "resend-to", 0, dl()));
	lose_then_resend(c, 0);
	CHECK_EQ(host_read("resend-to", buf, sizeof(buf)), 5);
	CHECK(!memcmp(buf, "moved", 5));
	CHECK(!host_exists("resend-from"));
	hs_cache_close(c); /* every connection closed: the log is complete */

	fclose(log_new);
	log_new = NULL;
	renames_onto(text, "/resend-new", &n, &resent);
	CHECK_EQ(n, 2);
	CHECK_EQ(resent, 1);
	renames_onto(text, "/resend-to", &n, &resent);
	CHECK_EQ(n, 3); /* its upload, the guest's rename and its resend */
	CHECK_EQ(resent, 1);
	free(text);
}

static void test_lost_create_answer(void)
{
	int lose;

	/* open, write, close, times, rename of the temporary name */
	for (lose = 0; lose < 5; lose++) {
		lost_create(lose, 0);
		lost_create(lose, 1);
	}
}

/* Forty new files go up in batches: with @serial 2 as ordered exchanges
 * of many changes (the local wire's batch, like the agent's), with 0 all
 * in flight at once on one connection (pipelined calls), with 1 one after
 * another (as on SFTP).  One name has become a folder
 * on the host (refused), and the connection loses an answer in the middle
 * of a batch: every other file arrives once and whole, no temporary name
 * is left, and only the refused one stays. */
static void batch_of_new_files(int serial)
{
	char name[32], data[32], buf[64], p[1024];
	int i, lose;

	for (lose = 3; lose <= 23; lose += 10) {
		struct hs_cache *c;

		serial_new = serial;
		c = open_cache(60000);
		for (i = 0; i < 40; i++) {
			snprintf(name, sizeof(name), "b%d-%02d", lose, i);
			snprintf(data, sizeof(data), "file %d of %d", i, lose);
			hs_cache_release(c, create(c, 1, name, data, NULL));
		}
		/* folders, each with a file and a folder in it, then their
		 * modes (a tree copy): in batches, where the batch is not
		 * made in order never below a folder it makes */
		for (i = 0; i < 6; i++) {
			struct stat st;
			uint64_t d, sub;

			snprintf(name, sizeof(name), "bd%d-%d", lose, i);
			CHECK_OK(hs_cache_mkdir(c, 1, name, 0755, &st, dl()));
			d = st.st_ino;
			hs_cache_release(c, create(c, d, "f", name, NULL));
			CHECK_OK(hs_cache_mkdir(c, d, "sub", 0755, &st, dl()));
			sub = st.st_ino;
			hs_cache_release(c, create(c, sub, "g", name, NULL));
			st.st_mode = 0700;
			CHECK_OK(hs_cache_setattr(c, sub, &st, HS_SET_MODE, NULL, &st, dl()));
			st.st_mode = 0750;
			CHECK_OK(hs_cache_setattr(c, d, &st, HS_SET_MODE, NULL, &st, dl()));
		}
		snprintf(p, sizeof(p), "%s/b%d-17", hostdir, lose);
		CHECK_OK(mkdir(p, 0755) < 0 ? -errno : 0);
		wait_connections(2);
		for (i = 0; i < nwraps; i++)
			hs_faulty_lose_answer_after(wraps[i], lose, 0);
		CHECK_EQ(hs_cache_sync(c, hs_deadline_in_ms(10000)), -EIO);
		for (i = 0; i < 40; i++) {
			struct stat st;

			snprintf(name, sizeof(name), "b%d-%02d", lose, i);
			snprintf(p, sizeof(p), "%s/%s", hostdir, name);
			CHECK_OK(lstat(p, &st) < 0 ? -errno : 0);
			if (i == 17) {
				CHECK(S_ISDIR(st.st_mode));
				continue;
			}
			snprintf(data, sizeof(data), "file %d of %d", i, lose);
			CHECK_EQ(host_read(name, buf, sizeof(buf)), strlen(data));
			CHECK(!memcmp(buf, data, strlen(data)));
		}
		for (i = 0; i < 6; i++) {
			struct stat st;

			snprintf(name, sizeof(name), "bd%d-%d", lose, i);
			snprintf(p, sizeof(p), "%s/%s", hostdir, name);
			CHECK_OK(lstat(p, &st) < 0 ? -errno : 0);
			CHECK_EQ(st.st_mode & 07777, 0750);
			snprintf(p, sizeof(p), "%s/%s/sub", hostdir, name);
			CHECK_OK(lstat(p, &st) < 0 ? -errno : 0);
			CHECK_EQ(st.st_mode & 07777, 0700);
			snprintf(p, sizeof(p), "%s/sub/g", name);
			CHECK_EQ(host_read(p, buf, sizeof(buf)), strlen(name));
			CHECK(!memcmp(buf, name, strlen(name)));
			snprintf(p, sizeof(p), "%s/f", name);
			CHECK_EQ(host_read(p, buf, sizeof(buf)), strlen(name));
		}
		CHECK_EQ(host_names_with(".hs-tmp."), 0);
		hs_cache_close(c);
		/* the refused row stays in the journal for the user: the
		 * next tests start from an empty cache */
		snprintf(p, sizeof(p), "rm -rf '%s'/* '%s'/b*", cachedir, hostdir);
		CHECK_OK(system(p));
	}
}

/* Sixty-four scattered blocks of a host file changed in the guest go up
 * over all four flush connections at once (@serial: each with its handle
 * of its own; else all in flight on one), the bytes on the host exactly
 * the guest's; again with an answer lost in the middle, after which the
 * whole change goes again. */
static void scattered_changes(int serial)
{
	static char want[1 << 20], got[(1 << 20) + 1];
	struct hs_cache *c;
	struct hs_handle *h;
	struct stat st;
	int keep, k, round, i;

	for (i = 0; i < (int)sizeof(want); i++)
		want[i] = (char)('A' + i % 26);
	host_write("sc", want, sizeof(want));
	serial_new = serial;
	test_conns = 4;
	c = open_cache(60000);
	wait_connections(serial ? 5 : 2);
	CHECK_OK(hs_cache_lookup(c, 1, "sc", &st, dl()));
	for (round = 0; round < 2; round++) {
		long opens = count("open"), writes = count("pwrite");

		CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDWR, &h, &keep, dl()));
		for (k = 0; k < 64; k++) {
			char blk[4096];

			memset(blk, 'a' + round * 3 + k % 3, sizeof(blk));
			memcpy(want + k * 16384 + 8192, blk, sizeof(blk));
			CHECK_EQ(hs_cache_write(c, h, blk, sizeof(blk),
						k * 16384 + 8192, dl()),
				 (ssize_t)sizeof(blk));
		}
		hs_cache_release(c, h);
		if (round == 1)
			for (i = 0; i < nwraps; i++)
				hs_faulty_lose_answer_after(wraps[i], 20, 0);
		CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
		CHECK_EQ(host_read("sc", got, sizeof(got)), sizeof(want));
		CHECK(!memcmp(got, want, sizeof(want)));
		if (round == 0) {
			CHECK_EQ(count("pwrite") - writes, 64);
			if (serial)
				CHECK(count("open") - opens >= 2);
		}
	}
	hs_cache_close(c);
	serial_new = 0;
	test_conns = 0;
}

/* Lets the flusher start sending what @c holds and hangs every
 * connection (those dialed later too) so that the send never ends. */
static void hang_sends(struct hs_cache *c)
{
	int i;

	wait_connections(2);
	for (i = 0; i < nwraps; i++)
		hs_faulty_stall(wraps[i], 1);
	stall_new = 1;
	CHECK(hs_cache_sync(c, hs_deadline_in_ms(300)) < 0);
}

/* A changed host file is deleted in the guest while its change is being
 * sent (the link hangs), and the daemon stops before the send ends (as in
 * a kill): on the next start the cut send must not count as data a crash
 * lost (the cache file went with the file, and nothing of it is owed to
 * the host any more); the deletion reaches the host. */
static void deleted_while_sent(void)
{
	struct hs_cache *c = open_cache_trusting(60000, 3600000);
	struct hs_handle *h;
	struct stat st;
	int keep;

	host_write("dg", "host version", 12);
	CHECK_OK(hs_cache_lookup(c, 1, "dg", &st, dl()));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDWR, &h, &keep, dl()));
	CHECK_EQ(hs_cache_write(c, h, "guest", 5, 0, dl()), 5);
	hs_cache_release(c, h);
	hang_sends(c);
	CHECK_OK(hs_cache_unlink(c, 1, "dg", dl()));
	hs_cache_close(c); /* the hung send times out: the row stays */
	stall_new = 0;
	c = open_cache(60000);
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	CHECK(!host_exists("dg"));
	hs_cache_close(c);
}

/* A host file's change is being sent (the link hangs) when the guest
 * cuts the file to nothing and writes one byte far into it (the blocks
 * before it holes now), and the daemon stops before the send ends: on the
 * next start the blocks of the cut send must not count as data a crash
 * lost; the host ends with the guest's file. */
static void cut_while_sent(void)
{
	struct hs_cache *c = open_cache_trusting(60000, 3600000);
	static char big[5 * 4096], want[3 * 4096 + 11], got[sizeof(want) + 1];
	struct hs_handle *h;
	struct stat st;
	int keep;

	memset(big, 'h', sizeof(big));
	host_write("cw", big, sizeof(big));
	CHECK_OK(hs_cache_lookup(c, 1, "cw", &st, dl()));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDWR, &h, &keep, dl()));
	memset(big, 'g', sizeof(big));
	CHECK_EQ(hs_cache_write(c, h, big, sizeof(big), 0, dl()),
		 (ssize_t)sizeof(big));
	hs_cache_release(c, h);
	hang_sends(c);
	st.st_size = 0;
	CHECK_OK(hs_cache_setattr(c, st.st_ino, &st, HS_SET_SIZE, NULL, &st, dl()));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDWR, &h, &keep, dl()));
	CHECK_EQ(hs_cache_write(c, h, "x", 1, 3 * 4096 + 10, dl()), 1);
	hs_cache_release(c, h);
	hs_cache_close(c); /* the hung send times out: the rows stay */
	stall_new = 0;
	c = open_cache(60000);
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	memset(want, 0, sizeof(want));
	want[sizeof(want) - 1] = 'x';
	CHECK_EQ(host_read("cw", got, sizeof(got)), sizeof(want));
	CHECK(!memcmp(got, want, sizeof(want)));
	hs_cache_close(c);
}

static void test_send_cut_then_restart(void)
{
	cut_while_sent();
	deleted_while_sent();
}

static void test_scattered_changes(void)
{
	scattered_changes(1);
	scattered_changes(0);
}

/* Where the wire makes changes in order in one exchange, new files go
 * that way, not one upload each. */
static void seq_batches_used(void)
{
	struct hs_cache *c;
	char name[32];
	int i;

	serial_new = 2;
	c = open_cache(60000);
	for (i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "sq-%d", i);
		hs_cache_release(c, create(c, 1, name, name, NULL));
	}
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	CHECK(count("batch") > 0);
	CHECK_EQ(count("open"), 0);
	CHECK_EQ(host_read("sq-4", name, sizeof(name)), 4);
	hs_cache_close(c);
	serial_new = 0;
}

static void test_batch_of_new_files(void)
{
	seq_batches_used();
	batch_of_new_files(0);
	batch_of_new_files(1);
	batch_of_new_files(2);
	serial_new = 0;
}

/* A new file is renamed while its upload hangs (the row is being sent,
 * so nothing coalesces), then it goes from the guest: renamed on and
 * deleted (@chain), or deleted where it is.  With @old_b the name it
 * replaced holds an older file on the host.  After a restart the upload is
 * skipped (the file is gone) and the renames find no source: they must
 * neither fail nor leave the replaced name behind. */
static void rename_of_unsent(int chain, int old_b)
{
	struct hs_cache *c = open_cache_trusting(60000, 3600000);
	struct stat st;
	char a[32], b[32], y[32];
	int i;

	snprintf(a, sizeof(a), "ru%d%d-a", chain, old_b);
	snprintf(b, sizeof(b), "ru%d%d-b", chain, old_b);
	snprintf(y, sizeof(y), "ru%d%d-y", chain, old_b);
	if (old_b) {
		host_write(b, "older b", 7);
		CHECK_OK(hs_cache_lookup(c, 1, b, &st, dl()));
	}
	hs_cache_release(c, create(c, 1, a, "new a", NULL));
	for (i = 0; i < nwraps; i++)
		hs_faulty_stall(wraps[i], 1);
	stall_new = 1;
	CHECK(hs_cache_sync(c, hs_deadline_in_ms(300)) < 0);
	CHECK_OK(hs_cache_rename(c, 1, a, 1, b, 0, dl()));
	if (chain) {
		CHECK_OK(hs_cache_rename(c, 1, b, 1, y, 0, dl()));
		CHECK_OK(hs_cache_unlink(c, 1, y, dl()));
	} else {
		CHECK_OK(hs_cache_unlink(c, 1, b, dl()));
	}
	hs_cache_close(c); /* the hung upload times out: it stays unsent */
	stall_new = 0;
	c = open_cache(60000);
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	CHECK(!host_exists(a));
	CHECK(!host_exists(b));
	CHECK(!host_exists(y));
	CHECK_EQ(host_names_with(".hs-tmp."), 0);
	hs_cache_close(c);
}

static void test_rename_of_unsent_file(void)
{
	rename_of_unsent(0, 0);
	rename_of_unsent(1, 0);
	rename_of_unsent(0, 1);
	rename_of_unsent(1, 1);
}

/* A new file is renamed (over an older file, with @old_b) while its
 * upload is being sent, the upload then fails with the link, and the
 * file is renamed again: the upload now moves to the last name and the
 * first rename must go with it (it would find no source on the host), the
 * name it replaced still removed. */
static void rename_during_upload(int old_b)
{
	struct hs_cache *c = open_cache_trusting(60000, 3600000);
	struct stat st;
	char a[32], b[32], z[32], buf[32];
	int i;

	snprintf(a, sizeof(a), "rd%d-a", old_b);
	snprintf(b, sizeof(b), "rd%d-b", old_b);
	snprintf(z, sizeof(z), "rd%d-z", old_b);
	if (old_b) {
		host_write(b, "older b", 7);
		CHECK_OK(hs_cache_lookup(c, 1, b, &st, dl()));
	}
	hs_cache_release(c, create(c, 1, a, "new a", NULL));
	wait_connections(2);
	for (i = 0; i < nwraps; i++)
		hs_faulty_stall(wraps[i], 1);
	refuse_new = 1;
	CHECK(hs_cache_sync(c, hs_deadline_in_ms(300)) < 0);
	CHECK_OK(hs_cache_rename(c, 1, a, 1, b, 0, dl()));
	/* the hung upload times out (op_timeout 2 s): back to waiting, and
	 * no new connection comes */
	usleep(2600000);
	CHECK_OK(hs_cache_rename(c, 1, b, 1, z, 0, dl()));
	refuse_new = 0;
	CHECK_OK(hs_cache_sync(c, hs_deadline_in_ms(10000)));
	CHECK(!host_exists(a));
	CHECK(!host_exists(b));
	CHECK_EQ(host_read(z, buf, sizeof(buf)), 5);
	CHECK(!memcmp(buf, "new a", 5));
	CHECK_EQ(host_names_with(".hs-tmp."), 0);
	hs_cache_close(c);
}

static void test_rename_during_upload(void)
{
	rename_during_upload(0);
	rename_during_upload(1);
}

static void test_namespace_errors(void)
{
	struct hs_cache *c = open_cache(0);
	struct stat st;
	uint64_t d;

	CHECK_OK(hs_cache_mkdir(c, 1, "ns", 0755, &st, dl()));
	d = st.st_ino;
	CHECK_EQ(hs_cache_mkdir(c, 1, "ns", 0755, &st, dl()), -EEXIST);
	hs_cache_release(c, create(c, d, "f", "1", NULL));
	CHECK_EQ(hs_cache_rmdir(c, 1, "ns", dl()), -ENOTEMPTY);
	CHECK_EQ(hs_cache_unlink(c, 1, "ns", dl()), -EISDIR);
	CHECK_EQ(hs_cache_rmdir(c, d, "f", dl()), -ENOTDIR);
	CHECK_EQ(hs_cache_lookup(c, d, "nope", &st, dl()), -ENOENT);
	CHECK_EQ(hs_cache_rename(c, 1, "ns", d, "sub", 0, dl()), -EINVAL);
	CHECK_EQ(hs_cache_rename(c, d, "f", 1, "ns", 0, dl()), -EISDIR);
	CHECK_OK(hs_cache_rename(c, 1, "ns", 1, "ns2", 0, dl()));
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK(host_exists("ns2/f"));
	CHECK(!host_exists("ns"));
	CHECK_OK(hs_cache_unlink(c, d, "f", dl()));
	CHECK_OK(hs_cache_rmdir(c, 1, "ns2", dl()));
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK(!host_exists("ns2"));
	hs_cache_close(c);
}

static void test_stall_never_blocks_cached(void)
{
	struct hs_cache *c = open_cache(0);
	struct hs_handle *h;
	struct stat st;
	char buf[16];
	int64_t t0;
	int keep, i;

	h = create(c, 1, "cached", "data", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK_OK(hs_cache_lookup(c, 1, "cached", &st, dl()));
	for (i = 0; i < nwraps; i++)
		hs_faulty_stall(wraps[i], 1);
	stall_new = 1;
	t0 = hs_now_ns();
	CHECK_OK(hs_cache_getattr(c, st.st_ino, &st));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDWR, &h, &keep, hs_deadline_in_ms(300)));
	CHECK_EQ(hs_cache_read(c, h, buf, sizeof(buf), 0, dl()), 4);
	CHECK_EQ(hs_cache_write(c, h, "more", 4, 4, dl()), 4);
	hs_cache_release(c, h);
	CHECK((hs_now_ns() - t0) / HS_NSEC_PER_MSEC < 1000);
	/* a sync cannot finish while the link is stalled: it says so */
	CHECK(hs_cache_sync(c, hs_deadline_in_ms(500)) < 0);
	hs_cache_close(c);
	stall_new = 0;
	c = open_cache(0);
	CHECK_OK(hs_cache_sync(c, dl()));
	CHECK_EQ(host_read("cached", buf, sizeof(buf)), 8);
	CHECK(!memcmp(buf, "datamore", 8));
	hs_cache_close(c);
}

/* Waits up to @ms for @what among the reported events; clears them. */
static int reported_within(const char *what, int ms)
{
	int i, found = 0;

	for (i = 0; i < ms / 10 && !found; i++) {
		pthread_mutex_lock(&ev_lock);
		found = strstr(events, what) != NULL;
		pthread_mutex_unlock(&ev_lock);
		if (!found)
			usleep(10000);
	}
	pthread_mutex_lock(&ev_lock);
	events[0] = '\0';
	pthread_mutex_unlock(&ev_lock);
	return found;
}

static int reported(const char *what)
{
	return reported_within(what, 2000);
}

static void host_rename(const char *from, const char *to)
{
	char p[512], q[512];

	snprintf(p, sizeof(p), "%s/%s", hostdir, from);
	snprintf(q, sizeof(q), "%s/%s", hostdir, to);
	CHECK_OK(rename(p, q));
}

static void test_host_notifications(void)
{
	struct hs_cache *c;
	struct hs_handle *h;
	struct hs_dir *d;
	struct stat st, st2;
	char buf[64];
	int keep;

	mkdir(hostdir, 0755);
	host_write("n1", "one", 3);
	/* listings are trusted for a minute: only the events can tell */
	c = open_cache_trusting(0, 60000);
	CHECK_OK(hs_cache_opendir(c, 1, &d, dl()));
	hs_cache_releasedir(c, d);
	CHECK_OK(hs_cache_lookup(c, 1, "n1", &st, dl()));
	events[0] = '\0';

	host_write("new", "fresh", 5);
	CHECK_EQ(hs_cache_lookup(c, 1, "new", &st2, dl()), -ENOENT);
	hs_notify_push(c, HS_NOTIFY_CREATED, "/new", NULL);
	CHECK(reported("C:1/new;"));
	CHECK_OK(hs_cache_lookup(c, 1, "new", &st2, dl()));

	host_write("n1", "one, longer", 11);
	hs_notify_push(c, HS_NOTIFY_CHANGED, "/n1", NULL);
	snprintf(buf, sizeof(buf), "M:%llu;", (unsigned long long)st.st_ino);
	CHECK(reported(buf));
	CHECK_OK(hs_cache_getattr(c, st.st_ino, &st));
	CHECK_EQ(st.st_size, 11);
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDONLY, &h, &keep, dl()));
	CHECK_EQ(keep, 0);
	CHECK_EQ(hs_cache_read(c, h, buf, sizeof(buf), 0, dl()), 11);
	hs_cache_release(c, h);

	/* a move keeps the inode (and its cached data) */
	host_rename("new", "moved");
	hs_notify_push(c, HS_NOTIFY_MOVED, "/new", "/moved");
	CHECK(reported("R:1/new>1/moved;"));
	CHECK_EQ(hs_cache_lookup(c, 1, "new", &st, dl()), -ENOENT);
	CHECK_OK(hs_cache_lookup(c, 1, "moved", &st, dl()));
	CHECK_EQ(st.st_ino, st2.st_ino);

	{
		char p[512];

		snprintf(p, sizeof(p), "%s/moved", hostdir);
		CHECK_OK(unlink(p));
	}
	hs_notify_push(c, HS_NOTIFY_REMOVED, "/moved", NULL);
	CHECK(reported("D:1/moved;"));
	CHECK_EQ(hs_cache_lookup(c, 1, "moved", &st, dl()), -ENOENT);

	/* echoes of the guest's own changes report nothing */
	h = create(c, 1, "g", "guest", NULL);
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_sync(c, dl()));
	hs_notify_push(c, HS_NOTIFY_MOVED, "/.hs-tmp.g.1", "/g");
	hs_notify_push(c, HS_NOTIFY_CREATED, "/g", NULL);
	hs_notify_push(c, HS_NOTIFY_CHANGED, "/g", NULL);
	CHECK(!reported_within("/g", 400));

	/* names no folder can hold, from a broken or hostile agent: ignored,
	 * never a dentry named ".." (whose replay would reach the folder
	 * above the mountpoint) nor one that breaks the listing */
	hs_notify_push(c, HS_NOTIFY_MOVED, "/g", "/..");
	hs_notify_push(c, HS_NOTIFY_CREATED, "/a/../../etc", NULL);
	hs_notify_push(c, HS_NOTIFY_CREATED, "/.", NULL);
	hs_notify_push(c, HS_NOTIFY_CREATED, "//x", NULL);
	CHECK(!reported_within("..", 300));
	CHECK(!reported_within("1/.;", 10));
	CHECK_EQ(hs_cache_lookup(c, 1, "..", &st, dl()), -ENOENT);
	CHECK_OK(hs_cache_lookup(c, 1, "g", &st, dl()));

	/* a late move event: the host moved f to e and made a new f since;
	 * the cache must not move its f (the new one) onto e */
	host_write("f", "F1", 2);
	hs_notify_push(c, HS_NOTIFY_CREATED, "/f", NULL);
	CHECK(reported("C:1/f;"));
	host_rename("f", "e");
	host_write("f", "F2, the new one", 15);
	hs_notify_push(c, HS_NOTIFY_MOVED, "/f", "/e");
	CHECK(reported("C:1/e;"));
	CHECK_OK(hs_cache_lookup(c, 1, "e", &st, dl()));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDONLY, &h, &keep, dl()));
	CHECK_EQ(hs_cache_read(c, h, buf, sizeof(buf), 0, dl()), 2);
	CHECK(!memcmp(buf, "F1", 2));
	hs_cache_release(c, h);
	CHECK_OK(hs_cache_lookup(c, 1, "f", &st, dl()));
	CHECK_OK(hs_cache_open_file(c, st.st_ino, O_RDONLY, &h, &keep, dl()));
	CHECK_EQ(hs_cache_read(c, h, buf, sizeof(buf), 0, dl()), 15);
	hs_cache_release(c, h);

	/* lost events: everything is checked again */
	host_write("late", "l", 1);
	hs_notify_push(c, HS_NOTIFY_OVERFLOW, "/", NULL);
	usleep(100000);
	CHECK_OK(hs_cache_lookup(c, 1, "late", &st, dl()));
	hs_cache_close(c);
}

int main(void)
{
	char cmd[600];

	snprintf(root, sizeof(root), "/tmp/hs-test-cache-XXXXXX");
	CHECK(mkdtemp(root));
	snprintf(hostdir, sizeof(hostdir), "%s/host", root);
	snprintf(cachedir, sizeof(cachedir), "%s/cache", root);
	CHECK_OK(mkdir(hostdir, 0755));
	test_write_and_sync();
	test_coalesce();
	test_delete_gives_data_back();
	test_read_and_coherence();
	test_stream_ends_at_eof();
	test_replay_after_close();
	test_journal_info();
	test_folder_pending();
	test_cut_send_is_no_conflict();
	test_lost_create_answer();
	test_resend_says_so();
	test_batch_of_new_files();
	test_scattered_changes();
	test_send_cut_then_restart();
	test_rename_of_unsent_file();
	test_rename_during_upload();
	test_namespace_errors();
	test_stall_never_blocks_cached();
	test_host_notifications();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	CHECK_EQ(system(cmd), 0);
	printf("test_cache: ok\n");
	return 0;
}
