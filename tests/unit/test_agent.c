/* SPDX-License-Identifier: MIT
 * tests/unit/test_agent.c - hostshare-agent and the agent transport,
 * against real agents this test starts (HS_AGENT_BIN, set by meson).
 *
 * Covers: every transport slot over a unix socket and over TCP, listings
 * spanning many frames, big compressible and incompressible transfers,
 * host refusals that leave the link usable, escape attempts (`..`,
 * symlinks out of the root, with openat2 and with the component walk),
 * tokens (wrong, missing), read-only agents, malformed / oversized /
 * lying frames (the agent drops that client, logs why, and keeps serving
 * others), many clients and many threads on one connection, a stalled
 * agent (deadline -> broken -> -ENOTCONN), and vsock when the machine has a
 * vsock loopback (skipped with a printed reason otherwise).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lz4.h>

#include "../lib/check.h"
#include "../../common/proto.h"
#include "../../transport/transport.h"
#include "../../transport/agent_i.h"

static char tmp[256], root[300], outside[300], token_file[300];

#define DL_MS 10000

static hs_deadline_t dl(void)
{
	return hs_deadline_in_ms(DL_MS);
}

struct agent {
	pid_t pid;
	char sock[300];
	char log[300];
	int port; /* tcp */
};

/* every agent started, so that a failed check does not leave them */
static pid_t started[16];
static int n_started;

static void stop_all(void)
{
	int i;

	for (i = 0; i < n_started; i++)
		if (started[i] > 0 && kill(started[i], SIGKILL) == 0)
			waitpid(started[i], NULL, 0);
}

static int rm_cb(const char *p, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(p);
}

/* Starts an agent with @listen ("unix" or "tcp" or "vsock:PORT") and
 * extra args; waits for its "listening" line. */
static void agent_start(struct agent *a, const char *listen, const char *x1,
			const char *x2, int no_openat2)
{
	static int n;
	char spec[400], line[512];
	const char *bin = getenv("HS_AGENT_BIN");
	int i;

	CHECK(bin != NULL);
	n++;
	snprintf(a->log, sizeof(a->log), "%s/agent%d.log", tmp, n);
	snprintf(a->sock, sizeof(a->sock), "%s/agent%d.sock", tmp, n);
	if (!strcmp(listen, "unix"))
		snprintf(spec, sizeof(spec), "unix:%s", a->sock);
	else if (!strcmp(listen, "tcp"))
		snprintf(spec, sizeof(spec), "tcp:127.0.0.1:0");
	else
		snprintf(spec, sizeof(spec), "%s", listen);
	a->pid = fork();
	CHECK(a->pid >= 0);
	if (a->pid == 0) {
		int fd = open(a->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(fd, 2);
		if (no_openat2)
			setenv("HS_AGENT_NO_OPENAT2", "1", 1);
		execl(bin, bin, "--root", root, "--listen", spec,
		      "--token-file", token_file, "-v", x1, x2, (char *)NULL);
		_exit(127);
	}
	started[n_started++] = a->pid;
	a->port = 0;
	for (i = 0; i < 500; i++) {
		FILE *f = fopen(a->log, "r");
		int found = 0;

		while (f && fgets(line, sizeof(line), f)) {
			char *p = strstr(line, "listening on ");

			if (p) {
				found = 1;
				p = strrchr(line, ':');
				a->port = atoi(p + 1);
			}
		}
		if (f)
			fclose(f);
		if (found)
			return;
		if (waitpid(a->pid, NULL, WNOHANG) == a->pid) {
			a->pid = 0;
			return; /* it failed to start */
		}
		usleep(10000);
	}
	CHECK_FAIL("agent %s did not start", spec);
}

static void agent_stop(struct agent *a)
{
	int i;

	if (a->pid > 0) {
		kill(a->pid, SIGTERM);
		waitpid(a->pid, NULL, 0);
	}
	for (i = 0; i < n_started; i++)
		if (started[i] == a->pid)
			started[i] = 0;
	a->pid = 0;
}

static int log_has(const struct agent *a, const char *what)
{
	char line[4096];
	FILE *f = fopen(a->log, "r");
	int found = 0;

	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	if (f)
		fclose(f);
	return found;
}

static struct hs_tr_config cfg_unix(const struct agent *a, const char *dir)
{
	struct hs_tr_config c = {
		.kind = HS_TR_AGENT_UNIX,
		.host = a->sock,
		.root = dir,
		.token_file = token_file,
		.connect_timeout_ms = 5000,
	};
	return c;
}

static struct hs_transport *open_ok(const struct hs_tr_config *c)
{
	struct hs_transport *t = NULL;
	char err[256];
	int r = hs_tr_open(c, dl(), &t, err, sizeof(err));

	if (r < 0)
		CHECK_FAIL("hs_tr_open: %d %s", r, err);
	return t;
}

/* ---- every slot ---- */

static int count_cb(void *arg, const char *name, const struct hs_attr *a)
{
	(*(int *)arg)++;
	CHECK(name[0] && strcmp(name, ".") && strcmp(name, ".."));
	CHECK(a->valid & HS_ATTR_MODE);
	return 0;
}

static int stop_cb(void *arg, const char *name, const struct hs_attr *a)
{
	(void)arg; (void)name; (void)a;
	return 42;
}

static void test_slots(struct hs_transport *t)
{
	struct hs_tr_file *f;
	struct hs_attr a;
	struct hs_statvfs sv;
	size_t big = 3 * 1024 * 1024 + 17, i;
	uint8_t *buf = malloc(big), *back = malloc(big);
	char lnk[64], name[64];
	int n, fd;

	CHECK(buf && back);
	CHECK_EQ(strcmp(t->ops->name, "agent"), 0);
	CHECK(t->caps & HS_TR_CAP_POSIX_RENAME);
	CHECK_EQ(t->remote_uid, getuid());
	CHECK_OK(hs_tr_ping(t, dl()));
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
	CHECK(S_ISDIR(a.mode));
	CHECK_EQ(hs_tr_lstat(t, "/nope", &a, dl()), -ENOENT);
	CHECK_OK(hs_tr_mkdir(t, "/d", 0750, dl()));
	CHECK_EQ(hs_tr_mkdir(t, "/d", 0750, dl()), -EEXIST);
	CHECK_EQ(hs_tr_mkdir(t, "/no/such", 0750, dl()), -ENOENT);
	CHECK_OK(hs_tr_lstat(t, "/d", &a, dl()));
	CHECK_EQ(a.mode & 07777, 0750);

	/* a big compressible file, then an incompressible one */
	for (i = 0; i < big; i++)
		buf[i] = (uint8_t)("abcdefgh"[i % 8] + (i / 4096) % 3);
	CHECK_OK(hs_tr_fopen(t, "/d/big", O_WRONLY | O_CREAT | O_EXCL, 0640,
			     &f, dl()));
	CHECK_EQ(hs_tr_pwrite(t, f, buf, big, 0, dl()), (ssize_t)big);
	CHECK_OK(hs_tr_fsync(t, f, dl()));
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	CHECK_EQ(hs_tr_fopen(t, "/d/big", O_WRONLY | O_CREAT | O_EXCL, 0640,
			     &f, dl()), -EEXIST);
	CHECK_OK(hs_tr_fopen(t, "/d/big", O_RDONLY, 0, &f, dl()));
	CHECK_EQ(hs_tr_pread(t, f, back, big, 0, dl()), (ssize_t)big);
	CHECK(memcmp(buf, back, big) == 0);
	CHECK_EQ(hs_tr_pread(t, f, back, 100, big - 10, dl()), 10);
	CHECK_EQ(hs_tr_pread(t, f, back, 100, big, dl()), 0);
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	srand(7);
	for (i = 0; i < big; i++)
		buf[i] = (uint8_t)rand();
	CHECK_OK(hs_tr_fopen(t, "/d/rnd", O_RDWR | O_CREAT | O_TRUNC, 0600, &f,
			     dl()));
	CHECK_EQ(hs_tr_pwrite(t, f, buf, big, 5, dl()), (ssize_t)big);
	CHECK_EQ(hs_tr_pread(t, f, back, big, 5, dl()), (ssize_t)big);
	CHECK(memcmp(buf, back, big) == 0);
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	{
		char p[400];
		struct stat st;

		snprintf(p, sizeof(p), "%s/d/rnd", root);
		CHECK_OK(stat(p, &st));
		CHECK_EQ(st.st_size, (off_t)big + 5);
	}

	/* setattr */
	a = (struct hs_attr){ .valid = HS_ATTR_SIZE | HS_ATTR_MODE |
				       HS_ATTR_MTIME | HS_ATTR_ATIME,
			      .size = 10, .mode = 0604,
			      .mtime_ns = 1000000000LL * 1700000000 + 123,
			      .atime_ns = 5 };
	CHECK_OK(hs_tr_setattr(t, "/d/rnd", &a, dl()));
	CHECK_OK(hs_tr_lstat(t, "/d/rnd", &a, dl()));
	CHECK_EQ(a.size, 10);
	CHECK_EQ(a.mode & 07777, 0604);
	CHECK_EQ(a.mtime_ns, 1000000000LL * 1700000000 + 123);
	CHECK_EQ(a.atime_ns, 5);
	CHECK_EQ(hs_tr_setattr(t, "/d/none", &a, dl()), -ENOENT);

	/* no setuid / setgid planting (issue 16, finding 1): the bits are
	 * stripped on setattr, create, mkdir and put_file by default */
	a = (struct hs_attr){ .valid = HS_ATTR_MODE, .mode = 06755 };
	CHECK_OK(hs_tr_setattr(t, "/d/rnd", &a, dl()));
	CHECK_OK(hs_tr_lstat(t, "/d/rnd", &a, dl()));
	CHECK_EQ(a.mode & 07777, 0755);
	CHECK_OK(hs_tr_put_file(t, "/d/suid", 04755, 0, 0, 0, "x", 1, &a,
				dl()));
	CHECK_EQ(a.mode & 07777, 0755);
	CHECK_OK(hs_tr_fopen(t, "/d/suid2", O_WRONLY | O_CREAT, 04700, &f,
			     dl()));
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	CHECK_OK(hs_tr_lstat(t, "/d/suid2", &a, dl()));
	CHECK_EQ(a.mode & 06000, 0);
	CHECK_OK(hs_tr_unlink(t, "/d/suid", dl()));
	CHECK_OK(hs_tr_unlink(t, "/d/suid2", dl()));
	a = (struct hs_attr){ .valid = HS_ATTR_SIZE | HS_ATTR_MODE |
				       HS_ATTR_MTIME | HS_ATTR_ATIME,
			      .size = 10, .mode = 0604,
			      .mtime_ns = 1000000000LL * 1700000000 + 123,
			      .atime_ns = 5 };
	CHECK_OK(hs_tr_setattr(t, "/d/rnd", &a, dl()));

	/* a FIFO is refused at once, never blocks a worker (finding 14) */
	{
		char p[400];

		snprintf(p, sizeof(p), "%s/d/fifo", root);
		CHECK_OK(mkfifo(p, 0600));
		CHECK_EQ(hs_tr_fopen(t, "/d/fifo", O_RDONLY, 0, &f,
				     hs_deadline_in_ms(3000)), -ENXIO);
		CHECK_EQ(hs_tr_fopen(t, "/d/fifo", O_WRONLY, 0, &f,
				     hs_deadline_in_ms(3000)), -ENXIO);
		CHECK(!hs_tr_broken(t));
		CHECK_OK(hs_tr_unlink(t, "/d/fifo", dl()));
	}

	/* rename */
	CHECK_EQ(hs_tr_rename(t, "/d/rnd", "/d/big", HS_RENAME_NOREPLACE,
			      dl()), -EEXIST);
	CHECK_OK(hs_tr_rename(t, "/d/rnd", "/d/big", 0, dl()));
	CHECK_EQ(hs_tr_lstat(t, "/d/rnd", &a, dl()), -ENOENT);
	CHECK_OK(hs_tr_lstat(t, "/d/big", &a, dl()));
	CHECK_EQ(a.size, 10);
	CHECK_EQ(hs_tr_rename(t, "/d/none", "/d/x", 0, dl()), -ENOENT);

	/* symlink, readlink, link */
	CHECK_OK(hs_tr_symlink(t, "big", "/d/lnk", dl()));
	CHECK_EQ(hs_tr_readlink(t, "/d/lnk", lnk, sizeof(lnk), dl()), 3);
	CHECK_STR_EQ(lnk, "big");
	CHECK_EQ(hs_tr_readlink(t, "/d/lnk", lnk, 2, dl()), 3);
	CHECK_STR_EQ(lnk, "b");
	CHECK_EQ(hs_tr_readlink(t, "/d/big", lnk, sizeof(lnk), dl()), -EINVAL);
	CHECK_OK(hs_tr_lstat(t, "/d/lnk", &a, dl()));
	CHECK(S_ISLNK(a.mode));
	CHECK_EQ(hs_tr_symlink(t, "x", "/d/lnk", dl()), -EEXIST);
	CHECK_OK(hs_tr_link(t, "/d/big", "/d/hard", dl()));
	CHECK_OK(hs_tr_lstat(t, "/d/hard", &a, dl()));
	CHECK_EQ(a.nlink, 2);

	/* statvfs */
	CHECK_OK(hs_tr_statvfs(t, "/", &sv, dl()));
	CHECK(sv.bsize > 0 && sv.blocks > 0);

	/* put_file */
	CHECK_OK(hs_tr_put_file(t, "/d/put", 0640, 1000, 2000000000, 0,
				"hello", 5, &a, dl()));
	CHECK_EQ(a.size, 5);
	CHECK_EQ(a.mtime_ns, 2000000000);
	CHECK_EQ(a.mode & 07777, 0640);
	CHECK_EQ(hs_tr_put_file(t, "/d/put", 0640, 0, 0, HS_RENAME_NOREPLACE,
				"x", 1, NULL, dl()), -EEXIST);
	CHECK_OK(hs_tr_put_file(t, "/d/put", 0600, 0, 0, 0, "bye", 3, &a,
				dl()));
	CHECK_EQ(a.size, 3);
	CHECK_EQ(hs_tr_put_file(t, "/nodir/put", 0600, 0, 0, 0, "x", 1, NULL,
				dl()), -ENOENT);

	/* a listing over many frames */
	for (n = 0; n < 3000; n++) {
		char p[400];

		snprintf(p, sizeof(p), "%s/d/file-with-a-longish-name-%05d",
			 root, n);
		fd = open(p, O_WRONLY | O_CREAT, 0600);
		CHECK(fd >= 0);
		close(fd);
	}
	n = 0;
	CHECK_OK(hs_tr_readdir(t, "/d", count_cb, &n, dl()));
	CHECK_EQ(n, 3000 + 4); /* big lnk hard put + the files; no temp */
	CHECK_EQ(hs_tr_readdir(t, "/d", stop_cb, NULL, dl()), 42);
	CHECK_EQ(hs_tr_readdir(t, "/d/big", count_cb, &n, dl()), -ENOTDIR);

	/* unlink, rmdir */
	CHECK_EQ(hs_tr_rmdir(t, "/d", dl()), -ENOTEMPTY);
	CHECK_EQ(hs_tr_unlink(t, "/d", dl()), -EISDIR);
	for (n = 0; n < 3000; n++) {
		snprintf(name, sizeof(name), "/d/file-with-a-longish-name-%05d",
			 n);
		CHECK_OK(hs_tr_unlink(t, name, dl()));
	}
	CHECK_OK(hs_tr_unlink(t, "/d/big", dl()));
	CHECK_OK(hs_tr_unlink(t, "/d/hard", dl()));
	CHECK_OK(hs_tr_unlink(t, "/d/lnk", dl()));
	CHECK_OK(hs_tr_unlink(t, "/d/put", dl()));
	CHECK_EQ(hs_tr_unlink(t, "/d/put", dl()), -ENOENT);
	CHECK_OK(hs_tr_rmdir(t, "/d", dl()));
	CHECK(!hs_tr_broken(t));
	free(buf);
	free(back);
}

/* ---- ordered batches ---- */

/* Folders and files in one exchange, in order (files inside a folder the
 * same batch makes), a refused change in the middle that stops nothing,
 * and the bytes, modes and times that arrived. */
static void test_batch(struct hs_transport *t)
{
	static char big[200000];
	struct hs_tr_op o[8];
	struct stat st;
	char p[400], buf[16];
	size_t i;
	int fd;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 23);
	CHECK(t->caps & HS_TR_CAP_SEQ);
	memset(o, 0, sizeof(o));
	o[0] = (struct hs_tr_op){ .kind = HS_TROP_MKDIR, .path = "/bt",
				  .mode = 0750 };
	o[1] = (struct hs_tr_op){ .kind = HS_TROP_PUT, .path = "/bt/a",
				  .mode = 0640, .atime_ns = 1000000000LL,
				  .mtime_ns = 1500000000123456789LL,
				  .data = "hello", .len = 5 };
	o[2] = (struct hs_tr_op){ .kind = HS_TROP_MKDIR, .path = "/bt/sub",
				  .mode = 0700 };
	o[3] = (struct hs_tr_op){ .kind = HS_TROP_PUT, .path = "/bt/sub/big",
				  .mode = 0600, .data = big, .len = sizeof(big) };
	o[4] = (struct hs_tr_op){ .kind = HS_TROP_PUT, .path = "/../escaped",
				  .mode = 0600, .data = "x", .len = 1 };
	o[5] = (struct hs_tr_op){ .kind = HS_TROP_MKDIR, .path = "/bt",
				  .mode = 0700 };
	o[6] = (struct hs_tr_op){ .kind = HS_TROP_PUT, .path = "/nodir/f",
				  .mode = 0600, .data = "x", .len = 1 };
	o[7] = (struct hs_tr_op){ .kind = HS_TROP_PUT, .path = "/bt/empty",
				  .mode = 0644 };
	for (i = 0; i < 8; i++)
		o[i].r = 12345;
	CHECK_OK(hs_tr_batch(t, o, 8, dl()));
	CHECK_OK(o[0].r);
	CHECK_OK(o[1].r);
	CHECK_OK(o[2].r);
	CHECK_OK(o[3].r);
	CHECK_EQ(o[4].r, -EACCES);
	CHECK_EQ(o[5].r, -EEXIST);
	CHECK_EQ(o[6].r, -ENOENT);
	CHECK_OK(o[7].r);
	snprintf(p, sizeof(p), "%s/bt", root);
	CHECK_OK(stat(p, &st));
	CHECK_EQ(st.st_mode & 07777, 0750);
	snprintf(p, sizeof(p), "%s/bt/a", root);
	CHECK_OK(stat(p, &st));
	CHECK_EQ(st.st_mode & 07777, 0640);
	CHECK_EQ(st.st_size, 5);
	CHECK_EQ(st.st_mtim.tv_sec, 1500000000);
	CHECK_EQ(st.st_mtim.tv_nsec, 123456789);
	fd = open(p, O_RDONLY);
	CHECK_EQ(read(fd, buf, sizeof(buf)), 5);
	CHECK(!memcmp(buf, "hello", 5));
	close(fd);
	snprintf(p, sizeof(p), "%s/bt/sub/big", root);
	CHECK_OK(stat(p, &st));
	CHECK_EQ(st.st_size, (off_t)sizeof(big));
	{
		char *back = malloc(sizeof(big));

		fd = open(p, O_RDONLY);
		CHECK_EQ(read(fd, back, sizeof(big)), (ssize_t)sizeof(big));
		CHECK(!memcmp(back, big, sizeof(big)));
		close(fd);
		free(back);
	}
	snprintf(p, sizeof(p), "%s/bt/empty", root);
	CHECK_OK(stat(p, &st));
	CHECK_EQ(st.st_size, 0);
	snprintf(p, sizeof(p), "%s/escaped", tmp);
	CHECK(access(p, F_OK) < 0);
	/* more than one exchange may carry is refused whole, nothing made */
	CHECK_EQ(hs_tr_batch(t, o, HS_PROTO_MAX_BATCH + 1, dl()), -EINVAL);
	CHECK(!hs_tr_broken(t));
	snprintf(p, sizeof(p), "rm -rf '%s/bt'", root);
	CHECK_OK(system(p));
}

/* ---- escapes ---- */

static void test_escapes(struct hs_transport *t)
{
	struct hs_tr_file *f;
	struct hs_attr a;
	char p[400], q[400];
	int n = 0;

	snprintf(p, sizeof(p), "%s/secret", outside);
	CHECK_OK(close(open(p, O_WRONLY | O_CREAT, 0600)));
	snprintf(p, sizeof(p), "%s/out", root);
	CHECK_OK(symlink(outside, p));
	snprintf(p, sizeof(p), "%s/rel", root);
	CHECK_OK(symlink("../outside", p));
	snprintf(p, sizeof(p), "%s/in", root);
	CHECK_OK(mkdir(p, 0700));
	snprintf(q, sizeof(q), "%s/in/up", root);
	CHECK_OK(symlink("..", q));

	CHECK_EQ(hs_tr_lstat(t, "/../outside/secret", &a, dl()), -EACCES);
	CHECK_EQ(hs_tr_lstat(t, "/in/../../outside", &a, dl()), -EACCES);
	CHECK_EQ(hs_tr_lstat(t, "/out/secret", &a, dl()), -EACCES);
	CHECK_EQ(hs_tr_lstat(t, "/rel/secret", &a, dl()), -EACCES);
	CHECK_EQ(hs_tr_fopen(t, "/out/secret", O_RDONLY, 0, &f, dl()),
		 -EACCES);
	CHECK_EQ(hs_tr_fopen(t, "/out", O_RDONLY, 0, &f, dl()), -EACCES);
	CHECK_EQ(hs_tr_fopen(t, "/out/new", O_WRONLY | O_CREAT, 0600, &f,
			     dl()), -EACCES);
	CHECK_EQ(hs_tr_readdir(t, "/out", count_cb, &n, dl()), -EACCES);
	CHECK_EQ(hs_tr_mkdir(t, "/out/x", 0700, dl()), -EACCES);
	CHECK_EQ(hs_tr_unlink(t, "/out/secret", dl()), -EACCES);
	CHECK_EQ(hs_tr_rename(t, "/out/secret", "/stolen", 0, dl()), -EACCES);
	CHECK_EQ(hs_tr_link(t, "/out/secret", "/stolen", dl()), -EACCES);
	CHECK_EQ(hs_tr_put_file(t, "/out/planted", 0600, 0, 0, 0, "x", 1, NULL,
				dl()), -EACCES);
	a = (struct hs_attr){ .valid = HS_ATTR_SIZE, .size = 0 };
	CHECK_EQ(hs_tr_setattr(t, "/out/secret", &a, dl()), -EACCES);
	/* a final symlink out of the root is never followed by setattr */
	a = (struct hs_attr){ .valid = HS_ATTR_MODE, .mode = 0777 };
	CHECK(hs_tr_setattr(t, "/out", &a, dl()) < 0);
	/* "in/up" points at the root itself: fine to go through when it stays
	 * beneath (openat2) or refused (walk); never outside */
	n = hs_tr_lstat(t, "/in/up/out", &a, dl());
	CHECK(n == 0 || n == -EACCES);
	/* the links themselves are visible and removable */
	CHECK_OK(hs_tr_lstat(t, "/out", &a, dl()));
	CHECK(S_ISLNK(a.mode));
	snprintf(p, sizeof(p), "%s/secret", outside);
	{
		struct stat st;

		CHECK_OK(stat(p, &st));
		CHECK_EQ(st.st_size, 0);
		CHECK_EQ(st.st_mode & 07777, 0600);
	}
	snprintf(p, sizeof(p), "%s/stolen", root);
	CHECK(access(p, F_OK) < 0);
	CHECK_OK(hs_tr_unlink(t, "/out", dl()));
	CHECK_OK(hs_tr_unlink(t, "/rel", dl()));
	CHECK_OK(hs_tr_unlink(t, "/in/up", dl()));
	CHECK_OK(hs_tr_rmdir(t, "/in", dl()));
	snprintf(p, sizeof(p), "%s/secret", outside);
	unlink(p);
	CHECK(!hs_tr_broken(t));
}

/* ---- raw frames ---- */

static int raw_connect(const struct agent *a)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 5 };

	CHECK(strlen(a->sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, a->sock, strlen(a->sock) + 1);
	CHECK_OK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void raw_send(int fd, const struct hs_proto_hdr *h, const void *p,
		     size_t n)
{
	uint8_t hb[HS_PROTO_HDR_SIZE];

	hs_proto_hdr_encode(h, hb);
	CHECK_EQ(write(fd, hb, sizeof(hb)), (ssize_t)sizeof(hb));
	if (n)
		CHECK_EQ(write(fd, p, n), (ssize_t)n);
}

/* Reads one reply header (and skips its payload); -1 at EOF. */
static int raw_reply(int fd, struct hs_proto_hdr *h)
{
	uint8_t hb[HS_PROTO_HDR_SIZE], skip[4096];
	const char *why;
	size_t got = 0, left;
	ssize_t r;

	while (got < sizeof(hb)) {
		r = read(fd, hb + got, sizeof(hb) - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	CHECK_OK(hs_proto_hdr_decode(hb, h, &why));
	for (left = h->len; left; left -= (size_t)r) {
		r = read(fd, skip, HS_MIN(left, sizeof(skip)));
		CHECK(r > 0);
	}
	return 0;
}

static void raw_hello(int fd, const char *token, int lz4)
{
	struct hs_proto_req q = { .op = HS_OP_HELLO };
	struct hs_proto_hdr h = { .id = 1, .op = HS_OP_HELLO };
	struct hs_pbuf b;

	q.magic = HS_PROTO_MAGIC;
	q.version = q.min_version = 1;
	q.features = lz4 ? HS_FEAT_LZ4 : 0;
	snprintf(q.token, sizeof(q.token), "%s", token);
	hs_pbuf_init(&b);
	CHECK_OK(hs_proto_req_encode(&q, &b));
	h.len = h.raw_len = (uint32_t)b.len;
	raw_send(fd, &h, b.p, b.len);
	hs_pbuf_release(&b);
}

static int closed_by_peer(int fd)
{
	struct hs_proto_hdr h;

	return raw_reply(fd, &h) < 0;
}

static void test_malformed(const struct agent *ag)
{
	struct hs_proto_hdr h, r;
	uint8_t junk[256], z[512];
	int fd, zn;

	/* wrong token: EACCES, then closed */
	fd = raw_connect(ag);
	raw_hello(fd, "wrong", 0);
	CHECK_OK(raw_reply(fd, &r));
	CHECK_EQ(r.status, EACCES);
	CHECK(closed_by_peer(fd));
	close(fd);

	/* a request before hello */
	fd = raw_connect(ag);
	h = (struct hs_proto_hdr){ .id = 1, .op = HS_OP_PING };
	raw_send(fd, &h, NULL, 0);
	CHECK(closed_by_peer(fd));
	close(fd);

	/* a frame longer than the limit */
	fd = raw_connect(ag);
	raw_hello(fd, "tok-123", 1);
	CHECK_OK(raw_reply(fd, &r));
	CHECK_EQ(r.status, 0);
	h = (struct hs_proto_hdr){ .id = 2, .op = HS_OP_PING,
				   .len = HS_PROTO_MAX_PAYLOAD + 1,
				   .raw_len = HS_PROTO_MAX_PAYLOAD + 1 };
	raw_send(fd, &h, NULL, 0);
	CHECK(closed_by_peer(fd));
	close(fd);

	/* a compressed payload whose size lies */
	memset(junk, 'q', sizeof(junk));
	junk[0] = 0;
	junk[1] = 10;
	zn = LZ4_compress_default((const char *)junk, (char *)z,
				  (int)sizeof(junk), (int)sizeof(z));
	CHECK(zn > 0);
	fd = raw_connect(ag);
	raw_hello(fd, "tok-123", 1);
	CHECK_OK(raw_reply(fd, &r));
	h = (struct hs_proto_hdr){ .id = 2, .op = HS_OP_LSTAT,
				   .flags = HS_PF_LZ4, .len = (uint32_t)zn,
				   .raw_len = sizeof(junk) + 1000 };
	raw_send(fd, &h, z, (size_t)zn);
	CHECK(closed_by_peer(fd));
	close(fd);

	/* a payload that does not parse (string beyond the payload) */
	fd = raw_connect(ag);
	raw_hello(fd, "tok-123", 0);
	CHECK_OK(raw_reply(fd, &r));
	h = (struct hs_proto_hdr){ .id = 2, .op = HS_OP_LSTAT, .len = 4,
				   .raw_len = 4 };
	raw_send(fd, &h, "\x50\x00/a", 4);
	CHECK(closed_by_peer(fd));
	close(fd);

	/* a batch holding an op that has no place in one (an open) */
	fd = raw_connect(ag);
	raw_hello(fd, "tok-123", 0);
	CHECK_OK(raw_reply(fd, &r));
	{
		/* little-endian: n = 1, op, len 11, "/", flags 1, mode 0 */
		static const uint8_t bad[] = { 1, 0, 0, 0, HS_OP_OPEN, 11, 0, 0, 0,
					       1, 0, '/', 1, 0, 0, 0, 0, 0, 0, 0 };

		h = (struct hs_proto_hdr){ .id = 2, .op = HS_OP_BATCH,
					   .len = sizeof(bad),
					   .raw_len = sizeof(bad) };
		raw_send(fd, &h, bad, sizeof(bad));
	}
	CHECK(closed_by_peer(fd));
	close(fd);

	/* pipelined requests on a raw connection all get answered */
	fd = raw_connect(ag);
	raw_hello(fd, "tok-123", 0);
	CHECK_OK(raw_reply(fd, &r));
	{
		uint32_t seen = 0;
		int i;

		for (i = 0; i < 20; i++) {
			h = (struct hs_proto_hdr){ .id = 100 + (uint32_t)i,
						   .op = HS_OP_PING };
			raw_send(fd, &h, NULL, 0);
		}
		for (i = 0; i < 20; i++) {
			CHECK_OK(raw_reply(fd, &r));
			CHECK(r.flags & HS_PF_REPLY);
			CHECK(r.id >= 100 && r.id < 120);
			seen |= 1u << (r.id - 100);
		}
		CHECK_EQ(seen, (1u << 20) - 1);
	}
	close(fd);

	CHECK(log_has(ag, "wrong token"));
	CHECK(log_has(ag, "request before hello"));
	CHECK(log_has(ag, "longer than the limit"));
	CHECK(log_has(ag, "decompressed size differs") ||
	      log_has(ag, "corrupt compressed"));
	CHECK(log_has(ag, "string beyond the payload"));
	CHECK(log_has(ag, "op not allowed in a batch"));
}

/* ---- concurrency ---- */

struct worker {
	struct hs_transport *t; /* shared, or NULL: own connection */
	const struct agent *ag;
	int idx;
	int fails;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct hs_tr_config c = cfg_unix(w->ag, "");
	struct hs_transport *t = w->t ? w->t : open_ok(&c);
	char path[64], data[5000], back[5000];
	struct hs_tr_file *f;
	struct hs_attr a;
	int i;

	for (i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "/w%d-%d", w->idx, i);
		memset(data, 'a' + (w->idx + i) % 26, sizeof(data));
		if (hs_tr_fopen(t, path, O_RDWR | O_CREAT | O_TRUNC, 0600, &f,
				dl()) < 0) {
			w->fails++;
			continue;
		}
		if (hs_tr_pwrite(t, f, data, sizeof(data), 0, dl()) !=
			    (ssize_t)sizeof(data) ||
		    hs_tr_pread(t, f, back, sizeof(back), 0, dl()) !=
			    (ssize_t)sizeof(back) ||
		    memcmp(data, back, sizeof(data)))
			w->fails++;
		if (hs_tr_fclose(t, f, dl()) < 0 ||
		    hs_tr_lstat(t, path, &a, dl()) < 0 ||
		    a.size != sizeof(data) || hs_tr_unlink(t, path, dl()) < 0)
			w->fails++;
	}
	if (!w->t)
		hs_tr_close(t);
	return NULL;
}

static void test_concurrency(const struct agent *ag)
{
	struct hs_tr_config c = cfg_unix(ag, "");
	struct hs_transport *shared = open_ok(&c);
	struct worker w[16];
	pthread_t th[16];
	int i;

	for (i = 0; i < 16; i++) {
		w[i] = (struct worker){ .t = i < 8 ? shared : NULL, .ag = ag,
					.idx = i };
		CHECK_OK(-pthread_create(&th[i], NULL, worker_main, &w[i]));
	}
	for (i = 0; i < 16; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(w[i].fails, 0);
	}
	CHECK(!hs_tr_broken(shared));
	hs_tr_close(shared);
}

/* ---- connecting ---- */

static void test_connect(const struct agent *ag, const struct agent *tcp,
			 const struct agent *ro)
{
	struct hs_tr_config c = cfg_unix(ag, "sub");
	struct hs_transport *t = NULL;
	struct hs_attr a;
	char err[256], bad[300], p[400];
	FILE *f;
	int r;

	/* a missing remote folder, then one that exists */
	r = hs_tr_open(&c, dl(), &t, err, sizeof(err));
	CHECK_EQ(r, -ENOENT);
	CHECK(strstr(err, "does not exist"));
	snprintf(p, sizeof(p), "%s/sub", root);
	CHECK_OK(mkdir(p, 0700));
	snprintf(p, sizeof(p), "%s/sub/f", root);
	CHECK_OK(close(open(p, O_WRONLY | O_CREAT, 0600)));
	t = open_ok(&c);
	CHECK_OK(hs_tr_lstat(t, "/f", &a, dl()));
	CHECK_EQ(hs_tr_lstat(t, "/sub", &a, dl()), -ENOENT);
	hs_tr_close(t);
	unlink(p);
	snprintf(p, sizeof(p), "%s/sub", root);
	rmdir(p);

	/* a wrong token */
	snprintf(bad, sizeof(bad), "%s/bad-token", tmp);
	f = fopen(bad, "w");
	fputs("nope\n", f);
	fclose(f);
	c = cfg_unix(ag, "");
	c.token_file = bad;
	r = hs_tr_open(&c, dl(), &t, err, sizeof(err));
	CHECK_EQ(r, -EACCES);
	CHECK(strstr(err, "token"));
	c.token_file = NULL;
	CHECK_EQ(hs_tr_open(&c, dl(), &t, err, sizeof(err)), -EACCES);

	/* nobody listening */
	c = cfg_unix(ag, "");
	snprintf(bad, sizeof(bad), "%s/none.sock", tmp);
	c.host = bad;
	r = hs_tr_open(&c, dl(), &t, err, sizeof(err));
	CHECK_EQ(r, -ECONNREFUSED);
	CHECK(strstr(err, "cannot connect"));

	/* tcp, with and without compression: same results, fewer bytes */
	{
		struct hs_tr_config tc = {
			.kind = HS_TR_AGENT_TCP, .host = "127.0.0.1",
			.port = tcp->port, .token_file = token_file,
			.connect_timeout_ms = 5000,
		};
		static char zeros[1 << 20];
		uint64_t out_z, in_z, out_p, in_p;
		struct hs_tr_file *fh;

		t = open_ok(&tc);
		CHECK_OK(hs_tr_fopen(t, "/z", O_WRONLY | O_CREAT, 0600, &fh,
				     dl()));
		CHECK_EQ(hs_tr_pwrite(t, fh, zeros, sizeof(zeros), 0, dl()),
			 (ssize_t)sizeof(zeros));
		CHECK_OK(hs_tr_fclose(t, fh, dl()));
		CHECK_OK(hs_agent_bytes(t, &out_z, &in_z));
		hs_tr_close(t);
		tc.no_compression = 1;
		t = open_ok(&tc);
		CHECK_OK(hs_tr_fopen(t, "/z", O_WRONLY, 0600, &fh, dl()));
		CHECK_EQ(hs_tr_pwrite(t, fh, zeros, sizeof(zeros), 0, dl()),
			 (ssize_t)sizeof(zeros));
		CHECK_OK(hs_tr_fclose(t, fh, dl()));
		CHECK_OK(hs_agent_bytes(t, &out_p, &in_p));
		CHECK_OK(hs_tr_unlink(t, "/z", dl()));
		hs_tr_close(t);
		printf("1 MiB of zeros: %llu bytes sent with lz4, %llu without\n",
		       (unsigned long long)out_z, (unsigned long long)out_p);
		CHECK(out_p > sizeof(zeros));
		CHECK(out_z < sizeof(zeros) / 50);
	}

	/* read-only */
	c = cfg_unix(ro, "");
	t = open_ok(&c);
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
	CHECK_EQ(hs_tr_mkdir(t, "/x", 0700, dl()), -EROFS);
	{
		struct hs_tr_op o = { .kind = HS_TROP_MKDIR, .path = "/x",
				      .mode = 0700 };

		CHECK(t->caps & HS_TR_CAP_SEQ);
		CHECK_OK(hs_tr_batch(t, &o, 1, dl()));
		CHECK_EQ(o.r, -EROFS);
	}
	{
		struct hs_tr_file *fh;

		CHECK_EQ(hs_tr_fopen(t, "/x", O_WRONLY | O_CREAT, 0600, &fh,
				     dl()), -EROFS);
	}
	CHECK(!hs_tr_broken(t));
	hs_tr_close(t);
}

/* SIGSTOP is delivered asynchronously: waits until @pid shows as stopped. */
static void wait_stopped(pid_t pid)
{
	char path[64], buf[512], *p;
	int i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && (p[2] == 'T' || p[2] == 't'))
			return;
		usleep(2000);
	}
	CHECK_FAIL("agent %d did not stop", (int)pid);
}

static void test_stall(const struct agent *ag)
{
	struct hs_tr_config c = cfg_unix(ag, "");
	struct hs_transport *t = open_ok(&c);
	struct hs_attr a;
	int64_t t0;

	CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
	kill(ag->pid, SIGSTOP);
	wait_stopped(ag->pid);
	t0 = hs_now_ns();
	CHECK_EQ(hs_tr_lstat(t, "/", &a, hs_deadline_in_ms(300)), -ETIMEDOUT);
	CHECK(hs_now_ns() - t0 < 2 * HS_NSEC_PER_SEC);
	CHECK(hs_tr_broken(t));
	CHECK_EQ(hs_tr_lstat(t, "/", &a, dl()), -ENOTCONN);
	kill(ag->pid, SIGCONT);
	hs_tr_close(t);
	/* the agent serves the next client as before */
	t = open_ok(&c);
	CHECK_OK(hs_tr_ping(t, dl()));
	hs_tr_close(t);
}

/* ---- over ssh ---- */

static void test_ssh(void)
{
	static const char *ids[2];
	const char *host = getenv("HS_TEST_SSH_HOST");
	struct hs_tr_config c = {
		.kind = HS_TR_AGENT_SSH,
		.host = host,
		.port = atoi(getenv("HS_TEST_SSH_PORT") ?
				     getenv("HS_TEST_SSH_PORT") : "0"),
		.user = getenv("HS_TEST_SSH_USER"),
		.root = root,
		.known_hosts = getenv("HS_TEST_SSH_KNOWN_HOSTS"),
		.hostkey_policy = HS_HOSTKEY_STRICT,
		.connect_timeout_ms = 10000,
		.agent_command = getenv("HS_AGENT_BIN"),
		.identity_files = ids,
	};
	struct hs_transport *t;
	struct hs_attr a;
	char err[256], p[400];
	struct stat st;
	int r;

	ids[0] = getenv("HS_TEST_SSH_KEY");
	if (!host || !ids[0] || !c.known_hosts || !c.port) {
		fprintf(stderr, "test_agent: HS_TEST_SSH_* are not set (the "
				"harness must start sshd)\n");
		exit(1);
	}
	t = open_ok(&c);
	CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
	CHECK(S_ISDIR(a.mode));
	CHECK_OK(hs_tr_put_file(t, "/via-ssh", 0640, 0, 1000000000, 0, "ssh!",
				4, &a, dl()));
	snprintf(p, sizeof(p), "%s/via-ssh", root);
	CHECK_OK(stat(p, &st));
	CHECK_EQ(st.st_size, 4);
	CHECK_EQ(hs_tr_lstat(t, "/../outside", &a, dl()), -EACCES);
	CHECK_OK(hs_tr_unlink(t, "/via-ssh", dl()));
	hs_tr_close(t);

	/* an agent program that is not there: the stream ends at once */
	c.agent_command = "/nonexistent/hostshare-agent";
	r = hs_tr_open(&c, dl(), &t, err, sizeof(err));
	CHECK(r < 0);
	CHECK(strstr(err, "handshake"));
}

/* ---- notifications ---- */

struct events {
	pthread_mutex_t lock;
	char seen[4096]; /* "kind:path;" */
};

static void on_event(void *arg, unsigned kind, const char *path,
		     const char *path2)
{
	struct events *ev = arg;
	size_t n;

	pthread_mutex_lock(&ev->lock);
	n = strlen(ev->seen);
	snprintf(ev->seen + n, sizeof(ev->seen) - n, "%u:%s%s%s;", kind, path,
		 path2 ? ">" : "", path2 ? path2 : "");
	pthread_mutex_unlock(&ev->lock);
}

static int saw(struct events *ev, const char *what)
{
	int i, found = 0;

	for (i = 0; i < 300 && !found; i++) {
		pthread_mutex_lock(&ev->lock);
		found = strstr(ev->seen, what) != NULL;
		pthread_mutex_unlock(&ev->lock);
		if (!found)
			usleep(10000);
	}
	return found;
}

static void test_notify(const struct agent *ag)
{
	static struct events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct hs_tr_config c = cfg_unix(ag, "n");
	struct hs_transport *t;
	char p[400], p2[400];
	int fd;

	snprintf(p, sizeof(p), "%s/n", root);
	CHECK_OK(mkdir(p, 0700));
	t = open_ok(&c);
	CHECK_OK(hs_tr_subscribe(t, on_event, &ev, dl()));
	/* changes made on the host, not through the agent */
	snprintf(p, sizeof(p), "%s/n/made-on-host", root);
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(saw(&ev, "2:/made-on-host;"));
	CHECK_EQ(write(fd, "x", 1), 1);
	close(fd);
	CHECK(saw(&ev, "1:/made-on-host;"));
	/* a new folder is watched too */
	snprintf(p, sizeof(p), "%s/n/sub", root);
	CHECK_OK(mkdir(p, 0700));
	CHECK(saw(&ev, "2:/sub;"));
	snprintf(p, sizeof(p), "%s/n/sub/deep", root);
	CHECK_OK(close(open(p, O_WRONLY | O_CREAT, 0600)));
	CHECK(saw(&ev, "2:/sub/deep;"));
	/* a move inside the folder is one event, into or out of it a
	 * creation or a removal */
	snprintf(p2, sizeof(p2), "%s/n/moved", root);
	CHECK_OK(rename(p, p2));
	CHECK(saw(&ev, "5:/sub/deep>/moved;"));
	snprintf(p, sizeof(p), "%s/outside", root);
	CHECK_OK(rename(p2, p));
	CHECK(saw(&ev, "3:/moved;"));
	CHECK_OK(rename(p, p2));
	CHECK(saw(&ev, "2:/moved;"));
	pthread_mutex_lock(&ev.lock);
	ev.seen[0] = '\0';
	pthread_mutex_unlock(&ev.lock);
	CHECK_OK(unlink(p2));
	CHECK(saw(&ev, "3:/moved;"));
	snprintf(p, sizeof(p), "%s/n/sub/deep", root);
	/* outside the mounted folder: not delivered */
	snprintf(p, sizeof(p), "%s/elsewhere", root);
	CHECK_OK(close(open(p, O_WRONLY | O_CREAT, 0600)));
	CHECK_OK(unlink(p));
	CHECK(hs_tr_ping(t, dl()) == 0);
	CHECK(!strstr(ev.seen, "elsewhere"));
	hs_tr_close(t);
	snprintf(p, sizeof(p), "%s/n/made-on-host", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/n/sub", root);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/n", root);
	rmdir(p);
}

static void test_vsock(void)
{
	struct agent v;
	struct hs_tr_config c = { .kind = HS_TR_AGENT_VSOCK, .host = "1",
				  .port = 0, .connect_timeout_ms = 2000 };
	struct hs_transport *t = NULL;
	char err[256];
	int port = 20000 + getpid() % 20000, fd, r;

	fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (fd < 0) {
		printf("vsock: skipped: no AF_VSOCK (%s)\n", strerror(errno));
		return;
	}
	close(fd);
	snprintf(err, sizeof(err), "vsock:%d", port);
	agent_start(&v, err, "--allow-cid", "1", 0);
	if (!v.pid) {
		printf("vsock: skipped: cannot listen on vsock\n");
		return;
	}
	c.port = port;
	r = hs_tr_open(&c, dl(), &t, err, sizeof(err));
	if (r == -ETIMEDOUT || r == -ENODEV || r == -EADDRNOTAVAIL ||
	    r == -ENETUNREACH || r == -EHOSTUNREACH || r == -ECONNRESET) {
		printf("vsock: skipped: no vsock loopback (%s)\n", err);
		agent_stop(&v);
		return;
	}
	if (r < 0)
		CHECK_FAIL("vsock open: %s", err);
	CHECK_OK(hs_tr_ping(t, dl()));
	hs_tr_close(t);
	agent_stop(&v);
	printf("vsock: ok\n");
}

int main(void)
{
	struct agent ag, ag2, tcp, ro;
	struct hs_tr_config c;
	struct hs_transport *t;
	FILE *f;

	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK_OK(hs_tr_global_init());
	snprintf(tmp, sizeof(tmp), "/tmp/hs-test-agent.%d", getpid());
	CHECK_OK(mkdir(tmp, 0700));
	atexit(stop_all);
	snprintf(root, sizeof(root), "%s/root", tmp);
	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	snprintf(token_file, sizeof(token_file), "%s/token", tmp);
	CHECK_OK(mkdir(root, 0700));
	CHECK_OK(mkdir(outside, 0700));
	f = fopen(token_file, "w");
	fputs("tok-123\n", f);
	fclose(f);
	/* a token file others may read is refused (issue 16, finding 15) */
	CHECK_OK(chmod(token_file, 0644));
	agent_start(&ag, "unix", NULL, NULL, 0);
	CHECK_EQ(ag.pid, 0);
	CHECK(log_has(&ag, "accessible by group or others"));
	CHECK_OK(chmod(token_file, 0600));

	agent_start(&ag, "unix", NULL, NULL, 0);
	CHECK(ag.pid > 0);
	agent_start(&ag2, "unix", NULL, NULL, 1);
	CHECK(ag2.pid > 0);
	agent_start(&tcp, "tcp", NULL, NULL, 0);
	CHECK(tcp.pid > 0 && tcp.port > 0);
	agent_start(&ro, "unix", "--read-only", NULL, 0);
	CHECK(ro.pid > 0);

	c = cfg_unix(&ag, "");
	t = open_ok(&c);
	test_slots(t);
	test_batch(t);
	test_escapes(t);
	hs_tr_close(t);
	printf("slots and escapes (openat2): ok\n");
	c = cfg_unix(&ag2, "");
	t = open_ok(&c);
	test_escapes(t);
	hs_tr_close(t);
	printf("escapes (component walk): ok\n");
	test_malformed(&ag);
	printf("malformed frames: ok\n");
	test_concurrency(&ag);
	printf("concurrency: ok\n");
	test_connect(&ag, &tcp, &ro);
	printf("connect: ok\n");
	test_notify(&ag);
	printf("notify: ok\n");
	test_ssh();
	printf("ssh exec: ok\n");
	test_stall(&ag);
	printf("stall: ok\n");
	test_vsock();

	agent_stop(&ag);
	agent_stop(&ag2);
	agent_stop(&tcp);
	agent_stop(&ro);
	/* a sanitizer report in any agent's log is a failure */
	{
		const struct agent *all[] = { &ag, &ag2, &tcp, &ro };
		size_t i;

		for (i = 0; i < HS_ARRAY_SIZE(all); i++)
			if (log_has(all[i], "Sanitizer") ||
			    log_has(all[i], "runtime error"))
				CHECK_FAIL("sanitizer report in %s", all[i]->log);
	}
	nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	hs_tr_global_exit();
	printf("test_agent: ok\n");
	return 0;
}
