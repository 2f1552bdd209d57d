/* SPDX-License-Identifier: MIT
 * tests/unit/test_localtr.c - unit test of the test transports: localtr
 * (tests/lib/localtr.c) through the hs_tr_*() wrappers, every slot with its
 * success and error answers, and the faulty wrapper (tests/lib/faulty.c):
 * transient and persistent failures, stall to the deadline, break, counters
 * and the call log.
 *
 * Works in a fresh mkdtemp() folder under /tmp, removed at the end.  Thread
 * model: single-threaded except the stall and concurrency cases, which start
 * their own threads and join them.  Exit 0: pass; a failed check exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/check.h"
#include "../lib/faulty.h"
#include "../lib/localtr.h"

static char root[64];

/* Generous deadline for calls expected to complete. */
static hs_deadline_t dl_ok(void)
{
	return hs_deadline_in_ms(10000);
}

static int64_t ms_since(int64_t start_ns)
{
	return (hs_now_ns() - start_ns) / HS_NSEC_PER_MSEC;
}

/* Local path of request path @p, for checking from the outside. */
static const char *host_path(const char *p)
{
	static char buf[4096];

	snprintf(buf, sizeof(buf), "%s%s", root, p);
	return buf;
}

static void put_file(struct hs_transport *t, const char *p, const char *data)
{
	struct hs_tr_file *f;
	size_t len = strlen(data);

	CHECK_OK(hs_tr_fopen(t, p, O_WRONLY | O_CREAT | O_TRUNC, 0644, &f,
			     dl_ok()));
	CHECK_EQ(hs_tr_pwrite(t, f, data, len, 0, dl_ok()), len);
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), 0);
}

static int rm_one(const char *p, const struct stat *st, int type,
		  struct FTW *ftw)
{
	return remove(p);
}

/* Open fds of this process, to catch a file or directory left open. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	CHECK(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- localtr ---- */

static void test_open_errors(void)
{
	struct hs_transport *t = NULL;
	char err[256], path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/missing", root);
	CHECK_EQ(hs_localtr_open(path, &t, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "does not exist") != NULL);
	CHECK(strchr(err, '\n') == NULL);

	snprintf(path, sizeof(path), "%s/plainfile", root);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK_EQ(hs_localtr_open(path, &t, err, sizeof(err)), -ENOTDIR);
	CHECK(strstr(err, "not a directory") != NULL);
	CHECK_EQ(unlink(path), 0);

	CHECK_EQ(hs_localtr_dial(root, hs_now_ns() - 1, &t, err, sizeof(err)),
		 -ETIMEDOUT);
	CHECK_OK(hs_localtr_dial(root, dl_ok(), &t, err, sizeof(err)));
	CHECK_STR_EQ(t->ops->name, "local");
	CHECK_EQ(t->caps, HS_TR_CAP_POSIX_RENAME | HS_TR_CAP_HARDLINK |
				  HS_TR_CAP_FSYNC | HS_TR_CAP_STATVFS |
				  HS_TR_CAP_NS_TIMES | HS_TR_CAP_PIPELINE |
				  HS_TR_CAP_SEQ);
	CHECK_EQ(t->remote_uid, getuid());
	CHECK_EQ(t->remote_gid, getgid());
	CHECK_EQ(hs_tr_broken(t), 0);
	hs_tr_close(t);
}

static void test_files(struct hs_transport *t)
{
	static char big[3 << 20], back[3 << 20];
	struct hs_tr_file *f, *g;
	struct hs_attr a;
	struct stat st;
	char buf[64];
	size_t i, got;
	ssize_t n;

	CHECK_OK(hs_tr_mkdir(t, "/d", 0755, dl_ok()));
	CHECK_EQ(hs_tr_mkdir(t, "/d", 0755, dl_ok()), -EEXIST);
	CHECK_EQ(hs_tr_mkdir(t, "/nope/x", 0755, dl_ok()), -ENOENT);

	/* create, exclusive create, write, read back */
	CHECK_OK(hs_tr_fopen(t, "/d/f", O_RDWR | O_CREAT | O_EXCL, 0640, &f,
			     dl_ok()));
	CHECK_EQ(hs_tr_fopen(t, "/d/f", O_RDWR | O_CREAT | O_EXCL, 0640, &g,
			     dl_ok()),
		 -EEXIST);
	CHECK_EQ(hs_tr_pwrite(t, f, "hello world", 11, 0, dl_ok()), 11);
	CHECK_EQ(hs_tr_pwrite(t, f, "W", 1, 6, dl_ok()), 1);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(hs_tr_pread(t, f, buf, sizeof(buf), 0, dl_ok()), 11);
	CHECK_STR_EQ(buf, "hello World");
	CHECK_EQ(hs_tr_pread(t, f, buf, sizeof(buf), 11, dl_ok()), 0);
	CHECK_EQ(hs_tr_pread(t, f, buf, 3, 100, dl_ok()), 0);
	CHECK_EQ(hs_tr_fsync(t, f, dl_ok()), 0);
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), 0);

	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl_ok()));
	CHECK_EQ(stat(host_path("/d/f"), &st), 0);
	CHECK_EQ(a.valid, HS_ATTR_SIZE | HS_ATTR_MODE | HS_ATTR_UID |
				  HS_ATTR_GID | HS_ATTR_ATIME | HS_ATTR_MTIME);
	CHECK_EQ(a.mode, S_IFREG | 0640);
	CHECK_EQ(a.size, 11);
	CHECK_EQ(a.nlink, 1);
	CHECK_EQ(a.uid, getuid());
	CHECK_EQ(a.gid, st.st_gid);
	CHECK_EQ(a.mtime_ns,
		 st.st_mtim.tv_sec * HS_NSEC_PER_SEC + st.st_mtim.tv_nsec);
	CHECK_EQ(a.atime_ns,
		 st.st_atim.tv_sec * HS_NSEC_PER_SEC + st.st_atim.tv_nsec);

	CHECK_OK(hs_tr_lstat(t, "/d", &a, dl_ok()));
	CHECK_EQ(a.mode, S_IFDIR | 0755);
	CHECK_EQ(a.nlink, 2);
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK(S_ISDIR(a.mode));
	CHECK_EQ(hs_tr_lstat(t, "/d/none", &a, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_lstat(t, "/d/f/x", &a, dl_ok()), -ENOTDIR);

	/* O_TRUNC, O_APPEND, open errors */
	CHECK_OK(hs_tr_fopen(t, "/d/f", O_WRONLY | O_TRUNC, 0, &f, dl_ok()));
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), 0);
	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl_ok()));
	CHECK_EQ(a.size, 0);
	CHECK_EQ(hs_tr_fopen(t, "/d/none", O_RDONLY, 0, &f, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_fopen(t, "/d", O_WRONLY, 0, &f, dl_ok()), -EISDIR);
	CHECK_EQ(hs_tr_fopen(t, "/d/f/x", O_RDONLY, 0, &f, dl_ok()), -ENOTDIR);

	/* a large write is written whole and reads back */
	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + i / 4096);
	CHECK_OK(hs_tr_fopen(t, "/d/big", O_RDWR | O_CREAT, 0600, &f, dl_ok()));
	CHECK_EQ(hs_tr_pwrite(t, f, big, sizeof(big), 4096, dl_ok()),
		 sizeof(big));
	for (got = 0; got < sizeof(back); got += (size_t)n) {
		n = hs_tr_pread(t, f, back + got, sizeof(back) - got,
				4096 + got, dl_ok());
		CHECK(n > 0);
	}
	CHECK(memcmp(big, back, sizeof(big)) == 0);
	CHECK_EQ(hs_tr_pread(t, f, buf, 8, 0, dl_ok()), 8);
	CHECK_EQ(buf[0] | buf[7], 0); /* the hole reads as zeros */
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), 0);
	CHECK_OK(hs_tr_lstat(t, "/d/big", &a, dl_ok()));
	CHECK_EQ(a.size, 4096 + sizeof(big));
	CHECK_OK(hs_tr_unlink(t, "/d/big", dl_ok()));

	CHECK_OK(hs_tr_fopen(t, "/d/f", O_WRONLY | O_APPEND, 0, &f, dl_ok()));
	CHECK_EQ(hs_tr_pwrite(t, f, "ab", 2, 0, dl_ok()), 2);
	CHECK_EQ(hs_tr_pwrite(t, f, "cd", 2, 0, dl_ok()), 2);
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), 0);
	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl_ok()));
	CHECK_EQ(a.size, 4);
}

static void test_setattr(struct hs_transport *t)
{
	struct hs_attr a, set;
	struct stat st;

	put_file(t, "/d/s", "0123456789");

	memset(&set, 0, sizeof(set));
	set.valid = HS_ATTR_SIZE;
	set.size = 4;
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.size, 4);
	set.size = 100000;
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.size, 100000);

	set.valid = HS_ATTR_MODE;
	set.mode = S_IFREG | 0604; /* type bits are ignored */
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.mode, S_IFREG | 0604);

	/* chown to ourselves is always allowed */
	set.valid = HS_ATTR_UID | HS_ATTR_GID;
	set.uid = getuid();
	set.gid = getgid();
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.uid, getuid());
	CHECK_EQ(a.gid, getgid());

	/* ns times, each alone and both */
	set.valid = HS_ATTR_MTIME;
	set.mtime_ns = 1234567890123456789LL;
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	set.valid = HS_ATTR_ATIME;
	set.atime_ns = 1500000000LL * HS_NSEC_PER_SEC + 1;
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.mtime_ns, 1234567890123456789LL);
	CHECK_EQ(a.atime_ns, 1500000000LL * HS_NSEC_PER_SEC + 1);

	/* size and times together: the times win over truncate's mtime */
	set.valid = HS_ATTR_SIZE | HS_ATTR_MTIME | HS_ATTR_ATIME;
	set.size = 3;
	set.mtime_ns = 999999999;
	set.atime_ns = 5;
	CHECK_OK(hs_tr_setattr(t, "/d/s", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.size, 3);
	CHECK_EQ(a.mtime_ns, 999999999);
	CHECK_EQ(a.atime_ns, 5);

	/* times of a symlink itself, not its target */
	CHECK_OK(hs_tr_symlink(t, "s", "/d/sl", dl_ok()));
	set.valid = HS_ATTR_MTIME;
	set.mtime_ns = 42LL * HS_NSEC_PER_SEC + 7;
	CHECK_OK(hs_tr_setattr(t, "/d/sl", &set, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/sl", &a, dl_ok()));
	CHECK_EQ(a.mtime_ns, 42LL * HS_NSEC_PER_SEC + 7);
	CHECK_OK(hs_tr_lstat(t, "/d/s", &a, dl_ok()));
	CHECK_EQ(a.mtime_ns, 999999999);
	set.valid = HS_ATTR_MODE;
	set.mode = 0600;
	CHECK_EQ(hs_tr_setattr(t, "/d/sl", &set, dl_ok()), -EOPNOTSUPP);
	CHECK_EQ(lstat(host_path("/d/s"), &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0604);
	CHECK_OK(hs_tr_unlink(t, "/d/sl", dl_ok()));

	set.valid = HS_ATTR_SIZE;
	set.size = 0;
	CHECK_EQ(hs_tr_setattr(t, "/d/none", &set, dl_ok()), -ENOENT);
	set.valid = HS_ATTR_MODE;
	CHECK_EQ(hs_tr_setattr(t, "/d/none", &set, dl_ok()), -ENOENT);
	set.valid = HS_ATTR_MTIME;
	CHECK_EQ(hs_tr_setattr(t, "/d/none", &set, dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_unlink(t, "/d/s", dl_ok()));
}

struct listing {
	struct hs_transport *t;
	int n;
	int seen_f, seen_l, seen_sub;
	int stop_after; /* return 7 at this entry, 0: never */
};

static int on_entry(void *arg, const char *name, const struct hs_attr *a)
{
	struct listing *l = arg;
	struct hs_attr want;
	char p[256];

	CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
	snprintf(p, sizeof(p), "/r/%s", name);
	CHECK_OK(hs_tr_lstat(l->t, p, &want, dl_ok()));
	CHECK_EQ(a->mode, want.mode);
	CHECK_EQ(a->size, want.size);
	CHECK_EQ(a->nlink, want.nlink);
	CHECK_EQ(a->mtime_ns, want.mtime_ns);
	CHECK_EQ(a->valid, want.valid);
	if (!strcmp(name, "f"))
		l->seen_f++;
	else if (!strcmp(name, "l"))
		l->seen_l++;
	else if (!strcmp(name, "sub"))
		l->seen_sub++;
	l->n++;
	return l->stop_after && l->n == l->stop_after ? 7 : 0;
}

static void test_readdir(struct hs_transport *t)
{
	struct listing l = { .t = t };

	CHECK_OK(hs_tr_mkdir(t, "/r", 0700, dl_ok()));
	put_file(t, "/r/f", "xyz");
	CHECK_OK(hs_tr_symlink(t, "f", "/r/l", dl_ok()));
	CHECK_OK(hs_tr_mkdir(t, "/r/sub", 0700, dl_ok()));

	CHECK_EQ(hs_tr_readdir(t, "/r", on_entry, &l, dl_ok()), 0);
	CHECK_EQ(l.n, 3);
	CHECK_EQ(l.seen_f + l.seen_l + l.seen_sub, 3);
	CHECK(l.seen_f == 1 && l.seen_l == 1 && l.seen_sub == 1);

	memset(&l, 0, sizeof(l));
	l.t = t;
	l.stop_after = 2;
	CHECK_EQ(hs_tr_readdir(t, "/r", on_entry, &l, dl_ok()), 7);
	CHECK_EQ(l.n, 2);

	memset(&l, 0, sizeof(l));
	l.t = t;
	CHECK_EQ(hs_tr_readdir(t, "/r/sub", on_entry, &l, dl_ok()), 0);
	CHECK_EQ(l.n, 0);
	CHECK_EQ(hs_tr_readdir(t, "/r/none", on_entry, &l, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_readdir(t, "/r/f", on_entry, &l, dl_ok()), -ENOTDIR);
}

static void test_links(struct hs_transport *t)
{
	const char *target = "some/long/../target";
	char buf[64];
	struct hs_attr a;

	CHECK_OK(hs_tr_symlink(t, target, "/d/ln", dl_ok()));
	CHECK_EQ(hs_tr_symlink(t, "x", "/d/ln", dl_ok()), -EEXIST);
	CHECK_EQ(hs_tr_symlink(t, "x", "/none/ln", dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_lstat(t, "/d/ln", &a, dl_ok()));
	CHECK(S_ISLNK(a.mode));
	CHECK_EQ(a.size, strlen(target));

	memset(buf, 'X', sizeof(buf));
	CHECK_EQ(hs_tr_readlink(t, "/d/ln", buf, sizeof(buf), dl_ok()),
		 strlen(target));
	CHECK_STR_EQ(buf, target);
	memset(buf, 'X', sizeof(buf));
	CHECK_EQ(hs_tr_readlink(t, "/d/ln", buf, 5, dl_ok()), strlen(target));
	CHECK_STR_EQ(buf, "some");
	CHECK_EQ(buf[5], 'X');
	CHECK_EQ(hs_tr_readlink(t, "/d/ln", buf, 1, dl_ok()), strlen(target));
	CHECK_EQ(buf[0], '\0');
	CHECK_EQ(hs_tr_readlink(t, "/d/f", buf, sizeof(buf), dl_ok()),
		 -EINVAL);
	CHECK_EQ(hs_tr_readlink(t, "/d/none", buf, sizeof(buf), dl_ok()),
		 -ENOENT);

	CHECK_OK(hs_tr_link(t, "/d/f", "/d/hard", dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl_ok()));
	CHECK_EQ(a.nlink, 2);
	CHECK_EQ(hs_tr_link(t, "/d/f", "/d/hard", dl_ok()), -EEXIST);
	CHECK_EQ(hs_tr_link(t, "/d/none", "/d/h2", dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_unlink(t, "/d/hard", dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl_ok()));
	CHECK_EQ(a.nlink, 1);
	CHECK_OK(hs_tr_unlink(t, "/d/ln", dl_ok()));
}

static void test_rename(struct hs_transport *t)
{
	char buf[16];
	struct hs_tr_file *f;
	struct hs_attr a;

	put_file(t, "/d/a", "A");
	put_file(t, "/d/b", "B");
	CHECK_EQ(hs_tr_rename(t, "/d/a", "/d/b", HS_RENAME_NOREPLACE, dl_ok()),
		 -EEXIST);
	CHECK_OK(hs_tr_lstat(t, "/d/a", &a, dl_ok()));
	CHECK_OK(hs_tr_rename(t, "/d/a", "/d/b", 0, dl_ok()));
	CHECK_EQ(hs_tr_lstat(t, "/d/a", &a, dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_fopen(t, "/d/b", O_RDONLY, 0, &f, dl_ok()));
	CHECK_EQ(hs_tr_pread(t, f, buf, sizeof(buf), 0, dl_ok()), 1);
	CHECK_EQ(buf[0], 'A');
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), 0);
	CHECK_OK(hs_tr_rename(t, "/d/b", "/d/c", HS_RENAME_NOREPLACE, dl_ok()));
	CHECK_EQ(hs_tr_rename(t, "/d/b", "/d/x", 0, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_rename(t, "/d/c", "/none/x", 0, dl_ok()), -ENOENT);

	/* directories */
	CHECK_OK(hs_tr_mkdir(t, "/e1", 0755, dl_ok()));
	CHECK_OK(hs_tr_mkdir(t, "/e2", 0755, dl_ok()));
	put_file(t, "/e2/x", "x");
	CHECK_EQ(hs_tr_rename(t, "/e1", "/e2", 0, dl_ok()), -ENOTEMPTY);
	CHECK_EQ(hs_tr_rename(t, "/d/c", "/e1", 0, dl_ok()), -EISDIR);
	CHECK_EQ(hs_tr_rename(t, "/e1", "/d/c", 0, dl_ok()), -ENOTDIR);
	CHECK_OK(hs_tr_rename(t, "/e2", "/e1", 0, dl_ok())); /* empty target */
	CHECK_OK(hs_tr_lstat(t, "/e1/x", &a, dl_ok()));
	CHECK_EQ(hs_tr_lstat(t, "/e2", &a, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_rename(t, "/d/c", "/d/c", 0, dl_ok()), 0);
	CHECK_EQ(hs_tr_rename(t, "/d/c", "/d/c2", 0x80, dl_ok()), -EINVAL);

	/* unlink and rmdir errors */
	CHECK_EQ(hs_tr_unlink(t, "/d/none", dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_unlink(t, "/e1", dl_ok()), -EISDIR);
	CHECK_EQ(hs_tr_rmdir(t, "/e1", dl_ok()), -ENOTEMPTY);
	CHECK_EQ(hs_tr_rmdir(t, "/e1/x", dl_ok()), -ENOTDIR);
	CHECK_EQ(hs_tr_rmdir(t, "/e9", dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_unlink(t, "/e1/x", dl_ok()));
	CHECK_OK(hs_tr_rmdir(t, "/e1", dl_ok()));
	CHECK_EQ(hs_tr_lstat(t, "/e1", &a, dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_unlink(t, "/d/c", dl_ok()));
}

static void test_misc(struct hs_transport *t)
{
	struct hs_statvfs sv;
	struct hs_attr a;
	int64_t start;
	int r;

	CHECK_OK(hs_tr_statvfs(t, "/", &sv, dl_ok()));
	CHECK(sv.bsize > 0 && sv.frsize > 0 && sv.blocks > 0);
	CHECK(sv.bavail <= sv.bfree && sv.bfree <= sv.blocks);
	CHECK(sv.namemax >= 255);
	CHECK_OK(hs_tr_statvfs(t, "/d/f", &sv, dl_ok()));
	CHECK_EQ(hs_tr_statvfs(t, "/none", &sv, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_ping(t, dl_ok()), 0);

	/* a deadline already passed: the wrapper and the slot itself */
	CHECK_EQ(hs_tr_lstat(t, "/", &a, hs_now_ns() - 1), -ETIMEDOUT);
	CHECK_EQ(hs_tr_ping(t, hs_now_ns() - 1), -ETIMEDOUT);
	CHECK_EQ(t->ops->lstat(t, "/", &a, hs_now_ns() - 1), -ETIMEDOUT);
	CHECK_EQ(t->ops->mkdir(t, "/late", 0755, hs_now_ns() - 1), -ETIMEDOUT);
	CHECK_EQ(hs_tr_lstat(t, "/late", &a, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_broken(t), 0);

	/* the delay knob: slow but in time, then past the deadline */
	hs_localtr_set_delay(t, 30000);
	start = hs_now_ns();
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK(ms_since(start) >= 30);
	start = hs_now_ns();
	r = hs_tr_mkdir(t, "/slow", 0755, start + 10 * HS_NSEC_PER_MSEC);
	CHECK_EQ(r, -ETIMEDOUT);
	CHECK(ms_since(start) >= 10);
	CHECK(ms_since(start) < 10 + 50);
	CHECK_EQ(hs_tr_broken(t), 0);
	hs_localtr_set_delay(t, 0);
	CHECK_EQ(hs_tr_lstat(t, "/slow", &a, dl_ok()), -ENOENT);
	start = hs_now_ns();
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK(ms_since(start) < 30);
}

/* Several threads, each writing and reading its own file at once. */
struct worker {
	struct hs_transport *t;
	int id;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct hs_tr_file *f;
	char p[32], buf[4096], back[4096];
	int i;

	snprintf(p, sizeof(p), "/w%d", w->id);
	memset(buf, 'a' + w->id, sizeof(buf));
	CHECK_OK(hs_tr_fopen(w->t, p, O_RDWR | O_CREAT | O_TRUNC, 0644, &f,
			     dl_ok()));
	for (i = 0; i < 64; i++)
		CHECK_EQ(hs_tr_pwrite(w->t, f, buf, sizeof(buf),
				      (uint64_t)i * sizeof(buf), dl_ok()),
			 sizeof(buf));
	for (i = 0; i < 64; i++) {
		CHECK_EQ(hs_tr_pread(w->t, f, back, sizeof(back),
				     (uint64_t)i * sizeof(back), dl_ok()),
			 sizeof(back));
		CHECK(memcmp(buf, back, sizeof(buf)) == 0);
	}
	CHECK_EQ(hs_tr_fclose(w->t, f, dl_ok()), 0);
	CHECK_OK(hs_tr_unlink(w->t, p, dl_ok()));
	return NULL;
}

static void test_threads(struct hs_transport *t)
{
	struct worker w[4];
	pthread_t th[4];
	int i;

	for (i = 0; i < 4; i++) {
		w[i].t = t;
		w[i].id = i;
		CHECK_EQ(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < 4; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
}

/* ---- faulty ---- */

static struct hs_transport *new_faulty(void)
{
	struct hs_transport *inner, *t;
	char err[256];

	CHECK_OK(hs_localtr_open(root, &inner, err, sizeof(err)));
	CHECK_OK(hs_faulty_wrap(inner, &t));
	CHECK(hs_faulty_inner(t) == inner);
	return t;
}

static void test_faulty_failures(void)
{
	struct hs_transport *t = new_faulty();
	struct hs_tr_file *f;
	struct hs_attr a;

	CHECK_STR_EQ(t->ops->name, "faulty");
	CHECK_EQ(t->caps, hs_faulty_inner(t)->caps);
	CHECK_EQ(t->remote_uid, getuid());
	CHECK_EQ(t->remote_gid, getgid());

	/* transient: the third call fails, the fourth passes */
	hs_faulty_fail_after(t, 2, -EIO, 0);
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK_EQ(hs_tr_lstat(t, "/", &a, dl_ok()), -EIO);
	CHECK(strstr(t->last_error, "injected") != NULL);
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK_EQ(hs_tr_broken(t), 0);
	CHECK_EQ(hs_faulty_calls(t), 4);
	CHECK_EQ(hs_faulty_count(t, "lstat"), 4);
	CHECK_EQ(hs_faulty_count(t, "rename"), 0);
	CHECK_EQ(hs_faulty_count(t, "nosuchslot"), -1);

	/* a real host error passes through, with no injection */
	CHECK_EQ(hs_tr_lstat(t, "/fz-none", &a, dl_ok()), -ENOENT);

	/* persistent: every call from the first fails until reset */
	CHECK_OK(hs_tr_fopen(t, "/fz", O_RDWR | O_CREAT, 0644, &f, dl_ok()));
	hs_faulty_fail_after(t, 0, -ENOSPC, 1);
	CHECK_EQ(hs_tr_pwrite(t, f, "x", 1, 0, dl_ok()), -ENOSPC);
	CHECK_EQ(hs_tr_pwrite(t, f, "x", 1, 0, dl_ok()), -ENOSPC);
	CHECK_EQ(hs_tr_mkdir(t, "/fzd", 0755, dl_ok()), -ENOSPC);
	CHECK_EQ(hs_tr_lstat(t, "/fzd", &a, dl_ok()), -ENOSPC);
	hs_faulty_reset(t);
	CHECK_EQ(hs_tr_lstat(t, "/fzd", &a, dl_ok()), -ENOENT);
	CHECK_EQ(hs_tr_pwrite(t, f, "x", 1, 0, dl_ok()), 1);
	CHECK_EQ(hs_faulty_count(t, "pwrite"), 3);
	CHECK_EQ(hs_faulty_count(t, "mkdir"), 1);

	/* an injected fclose failure still releases the file (ASan/LSan) */
	hs_faulty_fail_after(t, 0, EIO, 0); /* positive: negated */
	CHECK_EQ(hs_tr_fclose(t, f, dl_ok()), -EIO);
	CHECK_EQ(hs_faulty_count(t, "fclose"), 1);
	CHECK_OK(hs_tr_unlink(t, "/fz", dl_ok()));
	CHECK_EQ(hs_tr_broken(t), 0);

	/* a lost answer: the second call is done on the host, but answers
	 * a host error (the connection stays) */
	hs_faulty_lose_answer_after(t, 1, -EIO);
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl_ok()));
	CHECK_EQ(hs_tr_mkdir(t, "/fzl", 0755, dl_ok()), -EIO);
	CHECK(strstr(t->last_error, "answer lost") != NULL);
	CHECK_OK(hs_tr_lstat(t, "/fzl", &a, dl_ok()));
	CHECK_EQ(hs_tr_broken(t), 0);
	/* ... or a link-class error, which breaks the connection */
	hs_faulty_lose_answer_after(t, 0, 0);
	CHECK_EQ(hs_tr_rmdir(t, "/fzl", dl_ok()), -ECONNRESET);
	CHECK_EQ(hs_tr_broken(t), 1);
	CHECK_EQ(hs_tr_lstat(hs_faulty_inner(t), "/fzl", &a, dl_ok()), -ENOENT);

	/* an injected link-class error breaks the connection */
	hs_tr_close(t);
	t = new_faulty();
	hs_faulty_fail_after(t, 0, -ECONNRESET, 0);
	CHECK_EQ(hs_tr_ping(t, dl_ok()), -ECONNRESET);
	CHECK_EQ(hs_tr_broken(t), 1);
	CHECK_EQ(hs_tr_ping(t, dl_ok()), -ENOTCONN);
	hs_tr_close(t);
}

struct staller {
	struct hs_transport *t;
	hs_deadline_t dl;
	int r;
	int done; /* atomic */
};

static void *stall_main(void *arg)
{
	struct staller *s = arg;
	struct hs_attr a;

	s->r = hs_tr_lstat(s->t, "/", &a, s->dl);
	__atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_faulty_stall(void)
{
	struct hs_transport *t = new_faulty();
	struct staller s = { .t = t, .dl = HS_DEADLINE_NEVER };
	struct hs_tr_file *f;
	struct hs_attr a;
	pthread_t th;
	int64_t start;

	/* a finite deadline: -ETIMEDOUT at the deadline, then broken */
	hs_faulty_stall(t, 1);
	start = hs_now_ns();
	CHECK_EQ(hs_tr_lstat(t, "/", &a, start + 100 * HS_NSEC_PER_MSEC),
		 -ETIMEDOUT);
	CHECK(ms_since(start) >= 100);
	CHECK(ms_since(start) < 100 + 50);
	CHECK_EQ(hs_tr_broken(t), 1);
	CHECK(t->last_error[0] != '\0');
	CHECK_EQ(hs_tr_lstat(t, "/", &a, dl_ok()), -ENOTCONN);
	hs_tr_close(t);

	/* HS_DEADLINE_NEVER waits until the stall is lifted */
	t = new_faulty();
	s.t = t;
	hs_faulty_stall(t, 1);
	CHECK_EQ(pthread_create(&th, NULL, stall_main, &s), 0);
	usleep(50000);
	CHECK_EQ(__atomic_load_n(&s.done, __ATOMIC_ACQUIRE), 0);
	hs_faulty_stall(t, 0);
	CHECK_EQ(pthread_join(th, NULL), 0);
	CHECK_EQ(s.r, 0);
	CHECK_EQ(hs_tr_broken(t), 0);

	/* ... or until the connection is broken */
	s.done = 0;
	hs_faulty_stall(t, 1);
	CHECK_EQ(pthread_create(&th, NULL, stall_main, &s), 0);
	usleep(20000);
	CHECK_EQ(__atomic_load_n(&s.done, __ATOMIC_ACQUIRE), 0);
	hs_faulty_break(t);
	CHECK_EQ(pthread_join(th, NULL), 0);
	CHECK_EQ(s.r, -ENOTCONN);
	hs_tr_close(t);

	/* fclose on a stalled link times out but releases the file */
	t = new_faulty();
	CHECK_OK(hs_tr_fopen(t, "/st", O_WRONLY | O_CREAT, 0644, &f, dl_ok()));
	hs_faulty_stall(t, 1);
	start = hs_now_ns();
	CHECK_EQ(hs_tr_fclose(t, f, start + 20 * HS_NSEC_PER_MSEC),
		 -ETIMEDOUT);
	CHECK(ms_since(start) < 20 + 50);
	CHECK_EQ(hs_tr_broken(t), 1);
	hs_tr_close(t);
	CHECK_EQ(unlink(host_path("/st")), 0);

	/* the delay of the inner localtr shows through the wrapper */
	t = new_faulty();
	hs_localtr_set_delay(hs_faulty_inner(t), 200000);
	start = hs_now_ns();
	CHECK_EQ(hs_tr_lstat(t, "/", &a, start + 20 * HS_NSEC_PER_MSEC),
		 -ETIMEDOUT);
	CHECK(ms_since(start) < 20 + 50);
	hs_tr_close(t);
}

static void test_faulty_break_and_log(void)
{
	struct hs_transport *t = new_faulty();
	struct hs_attr a;
	char *text = NULL;
	size_t len = 0;
	FILE *log;
	long calls;

	log = open_memstream(&text, &len);
	CHECK(log != NULL);
	hs_faulty_log(t, log);
	put_file(t, "/la", "1");
	CHECK_OK(hs_tr_rename(t, "/la", "/lb", 0, dl_ok()));
	CHECK_EQ(hs_tr_lstat(t, "/la", &a, dl_ok()), -ENOENT);
	CHECK_OK(hs_tr_unlink(t, "/lb", dl_ok()));
	hs_faulty_log(t, NULL);
	CHECK_OK(hs_tr_ping(t, dl_ok())); /* not logged */
	fclose(log);
	CHECK(strstr(text, "open /la ") != NULL);
	CHECK(strstr(text, "pwrite 1@0 -> 1\n") != NULL);
	CHECK(strstr(text, "fclose -> 0\n") != NULL);
	CHECK(strstr(text, "rename /la /lb -> 0\n") != NULL);
	CHECK(strstr(text, "lstat /la -> -ENOENT\n") != NULL);
	CHECK(strstr(text, "unlink /lb -> 0\n") != NULL);
	CHECK(strstr(text, "ping") == NULL);
	free(text);

	calls = hs_faulty_calls(t);
	CHECK_EQ(calls, 7);
	hs_faulty_break(t);
	CHECK_EQ(hs_tr_broken(t), 1);
	CHECK_EQ(hs_tr_lstat(t, "/", &a, dl_ok()), -ENOTCONN);
	CHECK_EQ(hs_tr_ping(t, dl_ok()), -ENOTCONN);
	/* refused by the hs_tr_*() wrapper, so never seen by the slot ... */
	CHECK_EQ(hs_faulty_calls(t), calls);
	/* ... and the slot refuses too */
	CHECK_EQ(t->ops->lstat(t, "/", &a, dl_ok()), -ENOTCONN);
	CHECK_EQ(hs_faulty_calls(t), calls + 1);
	CHECK(strstr(t->last_error, "broken") != NULL);
	hs_tr_close(t);
}

int main(void)
{
	struct hs_transport *t;
	char err[256];
	int fds = count_fds();

	umask(022);
	snprintf(root, sizeof(root), "/tmp/hs-localtr-XXXXXX");
	CHECK(mkdtemp(root) != NULL);

	test_open_errors();
	CHECK_OK(hs_localtr_open(root, &t, err, sizeof(err)));
	test_files(t);
	test_setattr(t);
	test_readdir(t);
	test_links(t);
	test_rename(t);
	test_misc(t);
	test_threads(t);
	hs_tr_close(t);

	test_faulty_failures();
	test_faulty_stall();
	test_faulty_break_and_log();

	CHECK_EQ(count_fds(), fds);
	CHECK_EQ(nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
	printf("test_localtr: ok\n");
	return 0;
}
