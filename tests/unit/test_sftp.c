/* SPDX-License-Identifier: MIT
 * tests/unit/test_sftp.c - the SFTP transport against a real sshd.
 *
 * Needs, from the harness (a missing variable is a failure, never a skip):
 *   HS_TEST_SSH_HOST, HS_TEST_SSH_PORT, HS_TEST_SSH_USER,
 *   HS_TEST_SSH_KEY (private key), HS_TEST_SSH_KNOWN_HOSTS,
 *   HS_TEST_HOST_DIR (a writable folder on the host; the test works in a
 *   fresh subfolder of it and removes it at the end).
 * The host is reached on loopback, so the test also looks at HOST_DIR
 * directly where that proves a point (symlink direction, file content).
 *
 * Covers every slot and its errors, the rename emulation, host key
 * policies, authentication failure, refused and stalled connects, the
 * lock deadline, a deadline inside a request (broken -> -ENOTCONN), and
 * prints the 64 MiB pwrite/pread throughput.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/check.h"
#include "../../transport/transport.h"
#include "../../transport/sftp_i.h" /* hs_sftp_aside_name */

static const char *host, *user, *key, *known_hosts, *host_dir;
static int port;
static char work[4096];    /* HOST_DIR/hs-test-sftp.<pid>: our root */
static char tmpdir[4096];  /* local scratch (known_hosts copies, keys) */

#define DL_MS 10000

static hs_deadline_t dl(void)
{
	return hs_deadline_in_ms(DL_MS);
}

static const char *need_env(const char *name)
{
	const char *v = getenv(name);

	if (!v || !*v) {
		fprintf(stderr, "test_sftp: %s is not set (the harness must "
				"start sshd and export HS_TEST_SSH_*)\n", name);
		exit(1);
	}
	return v;
}

static struct hs_tr_config cfg_for(const char *root)
{
	static const char *ids[2];
	struct hs_tr_config c = {
		.kind = HS_TR_SFTP,
		.host = host,
		.port = port,
		.user = user,
		.root = root,
		.known_hosts = known_hosts,
		.hostkey_policy = HS_HOSTKEY_STRICT,
		.connect_timeout_ms = 5000,
		.keepalive_s = 15,
		.use_agent = 0,
	};

	ids[0] = key;
	ids[1] = NULL;
	c.identity_files = ids;
	return c;
}

static struct hs_transport *open_ok(const char *root)
{
	struct hs_tr_config c = cfg_for(root);
	struct hs_transport *t = NULL;
	char err[256];
	int r = hs_tr_open(&c, dl(), &t, err, sizeof(err));

	if (r < 0)
		CHECK_FAIL("hs_tr_open(%s): %d: %s", root ? root : "", r, err);
	CHECK(t != NULL);
	return t;
}

static int open_fail(struct hs_tr_config *c, hs_deadline_t d, char *err,
		     size_t errlen)
{
	struct hs_transport *t = NULL;
	int r = hs_tr_open(c, d, &t, err, errlen);

	CHECK(r < 0);
	CHECK(t == NULL);
	CHECK(err[0] != '\0');
	CHECK(strchr(err, '\n') == NULL);
	printf("  refused as expected: %s\n", err);
	return r;
}

static void put_file(struct hs_transport *t, const char *path,
		     const char *data)
{
	struct hs_tr_file *f;

	CHECK_OK(hs_tr_fopen(t, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &f,
			     dl()));
	CHECK_EQ(hs_tr_pwrite(t, f, data, strlen(data), 0, dl()),
		 (ssize_t)strlen(data));
	CHECK_OK(hs_tr_fclose(t, f, dl()));
}

static void get_file(struct hs_transport *t, const char *path, char *buf,
		     size_t size)
{
	struct hs_tr_file *f;
	ssize_t n;

	CHECK_OK(hs_tr_fopen(t, path, O_RDONLY, 0, &f, dl()));
	n = hs_tr_pread(t, f, buf, size - 1, 0, dl());
	CHECK_OK(n);
	buf[n] = '\0';
	CHECK_OK(hs_tr_fclose(t, f, dl()));
}

/* ---- readdir helpers ---- */

struct listing {
	char names[32][64];
	struct hs_attr attrs[32];
	int n;
	int stop_after; /* 0: never */
};

static int collect(void *arg, const char *name, const struct hs_attr *a)
{
	struct listing *l = arg;

	CHECK(strcmp(name, ".") && strcmp(name, ".."));
	if (l->n < 32) {
		snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
		l->attrs[l->n] = *a;
	}
	l->n++;
	if (l->stop_after && l->n >= l->stop_after)
		return 42;
	return 0;
}

static const struct hs_attr *find(const struct listing *l, const char *name)
{
	int i;

	for (i = 0; i < l->n && i < 32; i++)
		if (!strcmp(l->names[i], name))
			return &l->attrs[i];
	return NULL;
}

static int count_aside(struct hs_transport *t, const char *dir)
{
	struct listing l = { 0 };
	int i, n = 0;

	CHECK_OK(hs_tr_readdir(t, dir, collect, &l, dl()));
	for (i = 0; i < l.n && i < 32; i++)
		if (!strncmp(l.names[i], ".hs-replaced.", 13))
			n++;
	return n;
}

/* ---- tests ---- */

static void test_open_root(void)
{
	struct hs_tr_config c;
	char err[256], path[4200];

	printf("root resolution\n");
	c = cfg_for("/nonexistent-hs-folder");
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "remote folder '/nonexistent-hs-folder' does not exist"));

	snprintf(path, sizeof(path), "%s/plain-file", work);
	{
		struct hs_transport *t = open_ok(work);

		put_file(t, "/plain-file", "x");
		hs_tr_close(t);
	}
	c = cfg_for(path);
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -ENOTDIR);
	CHECK(strstr(err, "is not a folder"));

	/* a root given with trailing slashes works like without */
	snprintf(path, sizeof(path), "%s///", work);
	{
		struct hs_transport *t = open_ok(path);
		struct hs_attr a;

		CHECK_OK(hs_tr_lstat(t, "/plain-file", &a, dl()));
		CHECK_OK(hs_tr_unlink(t, "/plain-file", dl()));
		hs_tr_close(t);
	}
	/* login folder (empty root) */
	{
		struct hs_transport *t = open_ok("");
		struct hs_attr a;

		CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
		CHECK(S_ISDIR(a.mode));
		hs_tr_close(t);
	}
}

static void test_basics(struct hs_transport *t)
{
	struct passwd *pw = getpwnam(user);
	struct hs_attr a;
	struct hs_tr_file *f;
	char buf[256];

	printf("basics\n");
	CHECK_STR_EQ(t->ops->name, "sftp");
	CHECK(t->caps & HS_TR_CAP_FSYNC);
	CHECK(t->caps & HS_TR_CAP_STATVFS);
	CHECK(!(t->caps & HS_TR_CAP_POSIX_RENAME));
	CHECK(t->ops->link == NULL);
	if (pw) {
		CHECK_EQ(t->remote_uid, pw->pw_uid);
		CHECK_EQ(t->remote_gid, pw->pw_gid);
	}
	CHECK_OK(hs_tr_ping(t, dl()));
	CHECK_EQ(hs_tr_link(t, "/a", "/b", dl()), -ENOTSUP);

	CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
	CHECK(S_ISDIR(a.mode));
	CHECK_EQ(hs_tr_lstat(t, "/missing", &a, dl()), -ENOENT);
	CHECK_EQ(hs_tr_lstat(t, "/missing/deeper", &a, dl()), -ENOENT);
	CHECK_EQ(hs_tr_lstat(t, "/../etc", &a, dl()), -EINVAL);
	CHECK_EQ(hs_tr_lstat(t, "relative", &a, dl()), -EINVAL);

	/* mkdir */
	CHECK_OK(hs_tr_mkdir(t, "/d", 0755, dl()));
	CHECK_EQ(hs_tr_mkdir(t, "/d", 0755, dl()), -EEXIST);
	CHECK_EQ(hs_tr_mkdir(t, "/nope/x", 0755, dl()), -ENOENT);
	CHECK_OK(hs_tr_lstat(t, "/d/", &a, dl()));
	CHECK(S_ISDIR(a.mode));

	/* open / create */
	CHECK_OK(hs_tr_fopen(t, "/d/f", O_WRONLY | O_CREAT | O_EXCL, 0644, &f,
			     dl()));
	CHECK_EQ(hs_tr_pwrite(t, f, "hello", 5, 0, dl()), 5);
	CHECK_EQ(hs_tr_pwrite(t, f, "HE", 2, 0, dl()), 2);
	CHECK_OK(hs_tr_fsync(t, f, dl()));
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	get_file(t, "/d/f", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "HEllo");
	CHECK_EQ(hs_tr_fopen(t, "/d/f", O_WRONLY | O_CREAT | O_EXCL, 0644, &f,
			     dl()), -EEXIST);
	CHECK_EQ(hs_tr_fopen(t, "/d/missing", O_RDONLY, 0, &f, dl()), -ENOENT);
	CHECK_EQ(hs_tr_fopen(t, "/d", O_WRONLY, 0, &f, dl()), -EISDIR);
	CHECK_EQ(hs_tr_fopen(t, "/nodir/f", O_WRONLY | O_CREAT, 0644, &f, dl()),
		 -ENOENT);
	/* O_TRUNC and O_APPEND */
	CHECK_OK(hs_tr_fopen(t, "/d/f", O_WRONLY | O_TRUNC, 0, &f, dl()));
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl()));
	CHECK_EQ(a.size, 0);
	put_file(t, "/d/f", "hello");

	/* removal errors */
	CHECK_EQ(hs_tr_rmdir(t, "/d", dl()), -ENOTEMPTY);
	CHECK_EQ(hs_tr_rmdir(t, "/d/f", dl()), -ENOTDIR);
	CHECK_EQ(hs_tr_unlink(t, "/d", dl()), -EISDIR);
	CHECK_EQ(hs_tr_unlink(t, "/d/missing", dl()), -ENOENT);
	CHECK_EQ(hs_tr_rmdir(t, "/missing", dl()), -ENOENT);
	CHECK_EQ(hs_tr_rmdir(t, "/", dl()), -EBUSY);
	CHECK_OK(hs_tr_mkdir(t, "/empty", 0755, dl()));
	CHECK_OK(hs_tr_rmdir(t, "/empty", dl()));
	CHECK_EQ(hs_tr_lstat(t, "/empty", &a, dl()), -ENOENT);
}

static void test_readdir(struct hs_transport *t)
{
	struct listing l = { 0 };
	const struct hs_attr *a;

	printf("readdir\n");
	CHECK_OK(hs_tr_mkdir(t, "/d/sub", 0700, dl()));
	CHECK_OK(hs_tr_symlink(t, "f", "/d/ln", dl()));
	CHECK_OK(hs_tr_readdir(t, "/d", collect, &l, dl()));
	CHECK_EQ(l.n, 3);
	a = find(&l, "f");
	CHECK(a && S_ISREG(a->mode) && a->size == 5);
	CHECK(a->valid & HS_ATTR_SIZE);
	CHECK(a->valid & HS_ATTR_MTIME);
	CHECK(a->mtime_ns > 0);
	a = find(&l, "sub");
	CHECK(a && S_ISDIR(a->mode) && (a->mode & 07777) == 0700);
	a = find(&l, "ln");
	CHECK(a && S_ISLNK(a->mode)); /* lstat semantics */

	memset(&l, 0, sizeof(l));
	l.stop_after = 1;
	CHECK_EQ(hs_tr_readdir(t, "/d", collect, &l, dl()), 42);
	CHECK_EQ(l.n, 1);

	memset(&l, 0, sizeof(l));
	CHECK_EQ(hs_tr_readdir(t, "/missing", collect, &l, dl()), -ENOENT);
	CHECK_EQ(hs_tr_readdir(t, "/d/f", collect, &l, dl()), -ENOTDIR);
	CHECK_EQ(l.n, 0);
	memset(&l, 0, sizeof(l));
	CHECK_OK(hs_tr_readdir(t, "/", collect, &l, dl()));
	CHECK(find(&l, "d") != NULL);
	CHECK_OK(hs_tr_unlink(t, "/d/ln", dl()));
	CHECK_OK(hs_tr_rmdir(t, "/d/sub", dl()));
}

/* The callback may call back into the transport (no lock held). */
static int nested_cb(void *arg, const char *name, const struct hs_attr *a)
{
	struct hs_transport *t = arg;
	struct hs_attr b;
	char p[300];

	snprintf(p, sizeof(p), "/d/%s", name);
	CHECK_OK(hs_tr_lstat(t, p, &b, hs_deadline_in_ms(2000)));
	CHECK_EQ(b.mode, a->mode);
	return 0;
}

static void test_symlink(struct hs_transport *t)
{
	struct hs_attr a;
	char buf[64], local[4200], ltarget[64];
	ssize_t n;

	printf("symlink\n");
	CHECK_OK(hs_tr_symlink(t, "target/x", "/l", dl()));
	CHECK_OK(hs_tr_lstat(t, "/l", &a, dl()));
	CHECK(S_ISLNK(a.mode));
	CHECK_EQ(hs_tr_readlink(t, "/l", buf, sizeof(buf), dl()), 8);
	CHECK_STR_EQ(buf, "target/x");
	/* on the host itself: /l is the link, pointing to target/x */
	snprintf(local, sizeof(local), "%s/l", work);
	n = readlink(local, ltarget, sizeof(ltarget) - 1);
	CHECK_EQ(n, 8);
	ltarget[n] = '\0';
	CHECK_STR_EQ(ltarget, "target/x");
	/* truncation keeps the full length as the result */
	CHECK_EQ(hs_tr_readlink(t, "/l", buf, 4, dl()), 8);
	CHECK_STR_EQ(buf, "tar");
	CHECK_EQ(hs_tr_symlink(t, "other", "/l", dl()), -EEXIST);
	CHECK_EQ(hs_tr_readlink(t, "/d/f", buf, sizeof(buf), dl()), -EINVAL);
	CHECK_EQ(hs_tr_readlink(t, "/missing", buf, sizeof(buf), dl()), -ENOENT);
	/* an absolute target is not joined with the root */
	CHECK_OK(hs_tr_symlink(t, "/etc/hostname", "/abs", dl()));
	CHECK_EQ(hs_tr_readlink(t, "/abs", buf, sizeof(buf), dl()), 13);
	CHECK_STR_EQ(buf, "/etc/hostname");
	CHECK_OK(hs_tr_unlink(t, "/abs", dl()));
	CHECK_OK(hs_tr_unlink(t, "/l", dl()));
}

static void test_rename(struct hs_transport *t)
{
	struct hs_attr a;
	char buf[64];

	printf("rename\n");
	/* plain */
	CHECK_OK(hs_tr_rename(t, "/d/f", "/d/g", 0, dl()));
	CHECK_EQ(hs_tr_lstat(t, "/d/f", &a, dl()), -ENOENT);
	get_file(t, "/d/g", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "hello");
	CHECK_EQ(hs_tr_rename(t, "/d/missing", "/d/x", 0, dl()), -ENOENT);
	/* same name: nothing happens */
	CHECK_OK(hs_tr_rename(t, "/d/g", "/d/g", 0, dl()));
	get_file(t, "/d/g", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "hello");

	/* over an existing file */
	put_file(t, "/d/h", "other");
	CHECK_EQ(hs_tr_rename(t, "/d/g", "/d/h", HS_RENAME_NOREPLACE, dl()),
		 -EEXIST);
	get_file(t, "/d/h", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "other");
	CHECK_OK(hs_tr_rename(t, "/d/g", "/d/h", 0, dl()));
	get_file(t, "/d/h", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "hello");
	CHECK_EQ(hs_tr_lstat(t, "/d/g", &a, dl()), -ENOENT);
	CHECK_EQ(count_aside(t, "/d"), 0);
	/* over an existing file where a cut try of the same rename left
	 * its aside name: that goes, the rename is done */
	{
		char aside[256];

		CHECK_OK(hs_sftp_aside_name("/d/h", "/d/k", aside, sizeof(aside)));
		CHECK(!strncmp(aside, "/d/.hs-replaced.", 16));
		CHECK_EQ(strlen(aside), 16 + 16);
		put_file(t, aside, "left by a cut try");
		put_file(t, "/d/k", "old k");
		CHECK_EQ(count_aside(t, "/d"), 1);
		CHECK_OK(hs_tr_rename(t, "/d/h", "/d/k", 0, dl()));
		get_file(t, "/d/k", buf, sizeof(buf));
		CHECK_STR_EQ(buf, "hello");
		CHECK_EQ(count_aside(t, "/d"), 0);
		/* the same for a folder left there */
		CHECK_OK(hs_tr_mkdir(t, aside, 0755, dl()));
		put_file(t, "/d/h", "hello");
		CHECK_OK(hs_tr_rename(t, "/d/h", "/d/k", 0, dl()));
		CHECK_EQ(count_aside(t, "/d"), 0);
		/* a folder the host filled there stays; the rename is done */
		CHECK_OK(hs_tr_mkdir(t, aside, 0755, dl()));
		strcat(aside, "/kept");
		put_file(t, aside, "the host's");
		put_file(t, "/d/h", "hello");
		CHECK_OK(hs_tr_rename(t, "/d/h", "/d/k", 0, dl()));
		get_file(t, "/d/k", buf, sizeof(buf));
		CHECK_STR_EQ(buf, "hello");
		CHECK_EQ(hs_tr_lstat(t, "/d/h", &a, dl()), -ENOENT);
		get_file(t, aside, buf, sizeof(buf));
		CHECK_STR_EQ(buf, "the host's");
		CHECK_EQ(count_aside(t, "/d"), 1);
		CHECK_OK(hs_tr_unlink(t, aside, dl()));
		*strrchr(aside, '/') = 0;
		CHECK_OK(hs_tr_rmdir(t, aside, dl()));
		/* cut between steps 3 and 4: the name is missing and the old
		 * target is aside; a first rename there leaves that alone (no
		 * call spent on it), the resent one clears it */
		CHECK_OK(hs_sftp_aside_name("/d/k", "/d/m", aside, sizeof(aside)));
		put_file(t, aside, "old m");
		CHECK_OK(hs_tr_rename(t, "/d/k", "/d/m", 0, dl()));
		CHECK_EQ(count_aside(t, "/d"), 1);
		CHECK_OK(hs_tr_rename(t, "/d/m", "/d/k", 0, dl()));
		CHECK_OK(hs_tr_rename(t, "/d/k", "/d/m", HS_RENAME_RESEND, dl()));
		get_file(t, "/d/m", buf, sizeof(buf));
		CHECK_STR_EQ(buf, "hello");
		CHECK_EQ(count_aside(t, "/d"), 0);
		/* a resend with nothing left over is a plain rename */
		CHECK_OK(hs_tr_rename(t, "/d/m", "/d/h", HS_RENAME_RESEND, dl()));
		get_file(t, "/d/h", buf, sizeof(buf));
		CHECK_STR_EQ(buf, "hello");
	}
	/* NOREPLACE to a free name */
	CHECK_OK(hs_tr_rename(t, "/d/h", "/d/f", HS_RENAME_NOREPLACE, dl()));

	/* a symlink over a file */
	CHECK_OK(hs_tr_symlink(t, "f", "/d/sl", dl()));
	put_file(t, "/d/victim", "v");
	CHECK_OK(hs_tr_rename(t, "/d/sl", "/d/victim", 0, dl()));
	CHECK_OK(hs_tr_lstat(t, "/d/victim", &a, dl()));
	CHECK(S_ISLNK(a.mode));
	CHECK_OK(hs_tr_unlink(t, "/d/victim", dl()));

	/* directory over an empty directory */
	CHECK_OK(hs_tr_mkdir(t, "/e1", 0755, dl()));
	put_file(t, "/e1/inside", "in");
	CHECK_OK(hs_tr_mkdir(t, "/e2", 0755, dl()));
	CHECK_EQ(hs_tr_rename(t, "/e1", "/e2", HS_RENAME_NOREPLACE, dl()),
		 -EEXIST);
	CHECK_OK(hs_tr_rename(t, "/e1", "/e2", 0, dl()));
	get_file(t, "/e2/inside", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "in");
	CHECK_EQ(hs_tr_lstat(t, "/e1", &a, dl()), -ENOENT);
	CHECK_EQ(count_aside(t, "/"), 0);

	/* directory over a non-empty directory: nothing changes */
	CHECK_OK(hs_tr_mkdir(t, "/e3", 0755, dl()));
	CHECK_EQ(hs_tr_rename(t, "/e3", "/e2", 0, dl()), -ENOTEMPTY);
	CHECK_OK(hs_tr_lstat(t, "/e3", &a, dl()));
	get_file(t, "/e2/inside", buf, sizeof(buf));
	CHECK_STR_EQ(buf, "in");
	/* type mismatches */
	CHECK_EQ(hs_tr_rename(t, "/d/f", "/e3", 0, dl()), -EISDIR);
	CHECK_EQ(hs_tr_rename(t, "/e3", "/d/f", 0, dl()), -ENOTDIR);
	CHECK_OK(hs_tr_lstat(t, "/d/f", &a, dl()));
	CHECK(S_ISREG(a.mode));
	CHECK_EQ(count_aside(t, "/"), 0);
	CHECK_EQ(count_aside(t, "/d"), 0);
	CHECK_OK(hs_tr_rmdir(t, "/e3", dl()));
	CHECK_OK(hs_tr_unlink(t, "/e2/inside", dl()));
	CHECK_OK(hs_tr_rmdir(t, "/e2", dl()));
}

static void test_setattr(struct hs_transport *t)
{
	struct hs_attr a, s;

	printf("setattr\n");
	put_file(t, "/sa", "0123456789");
	memset(&s, 0, sizeof(s));
	s.valid = HS_ATTR_SIZE;
	s.size = 4;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.size, 4);
	s.size = 100000;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.size, 100000);

	s.valid = HS_ATTR_MODE;
	s.mode = S_IFREG | 0604;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.mode & 07777, 0604);
	CHECK(S_ISREG(a.mode));

	/* times, each alone: the other one must stay */
	s.valid = HS_ATTR_ATIME | HS_ATTR_MTIME;
	s.atime_ns = 1000000000LL * HS_NSEC_PER_SEC;
	s.mtime_ns = 1100000000LL * HS_NSEC_PER_SEC + 999;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.atime_ns, 1000000000LL * HS_NSEC_PER_SEC);
	CHECK_EQ(a.mtime_ns, 1100000000LL * HS_NSEC_PER_SEC);
	s.valid = HS_ATTR_MTIME;
	s.mtime_ns = 1200000000LL * HS_NSEC_PER_SEC;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.atime_ns, 1000000000LL * HS_NSEC_PER_SEC);
	CHECK_EQ(a.mtime_ns, 1200000000LL * HS_NSEC_PER_SEC);
	s.valid = HS_ATTR_ATIME;
	s.atime_ns = 1300000000LL * HS_NSEC_PER_SEC;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.atime_ns, 1300000000LL * HS_NSEC_PER_SEC);
	CHECK_EQ(a.mtime_ns, 1200000000LL * HS_NSEC_PER_SEC);

	/* owner: as root on the host we can give it away, else only keep */
	if (t->remote_uid == 0) {
		s.valid = HS_ATTR_UID | HS_ATTR_GID;
		s.uid = 4242;
		s.gid = 4343;
		CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
		s.valid = HS_ATTR_UID;
		s.uid = 4444;
		CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
		CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
		CHECK_EQ(a.uid, 4444);
		CHECK_EQ(a.gid, 4343);
		s.valid = HS_ATTR_GID;
		s.gid = 4545;
		CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
		CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
		CHECK_EQ(a.uid, 4444);
		CHECK_EQ(a.gid, 4545);
	} else {
		CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
		s.valid = HS_ATTR_GID;
		s.gid = a.gid;
		CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	}
	/* all at once */
	s.valid = HS_ATTR_SIZE | HS_ATTR_MODE | HS_ATTR_MTIME;
	s.size = 7;
	s.mode = 0640;
	s.mtime_ns = 1400000000LL * HS_NSEC_PER_SEC;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_lstat(t, "/sa", &a, dl()));
	CHECK_EQ(a.size, 7);
	CHECK_EQ(a.mode & 07777, 0640);
	CHECK_EQ(a.mtime_ns, 1400000000LL * HS_NSEC_PER_SEC);
	s.valid = HS_ATTR_SIZE;
	CHECK_EQ(hs_tr_setattr(t, "/missing", &s, dl()), -ENOENT);
	s.valid = 0;
	CHECK_OK(hs_tr_setattr(t, "/sa", &s, dl()));
	CHECK_OK(hs_tr_unlink(t, "/sa", dl()));
}

static void test_statvfs(struct hs_transport *t)
{
	struct hs_statvfs v;

	printf("statvfs\n");
	CHECK_OK(hs_tr_statvfs(t, "/", &v, dl()));
	CHECK(v.bsize > 0);
	CHECK(v.frsize > 0);
	CHECK(v.blocks > 0);
	CHECK(v.bavail <= v.blocks);
	CHECK(v.namemax >= 255);
	CHECK_EQ(hs_tr_statvfs(t, "/missing", &v, dl()), -ENOENT);
}

static void fill(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;
	size_t i;

	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
}

static void test_bulk(struct hs_transport *t, size_t size, int report)
{
	unsigned char *src = malloc(size), *dst = malloc(size);
	struct hs_tr_file *f;
	size_t off;
	int64_t t0, t1;
	ssize_t n;

	printf("bulk %zu MiB\n", size >> 20);
	CHECK(src && dst);
	fill(src, size, size);
	CHECK_OK(hs_tr_fopen(t, "/big", O_WRONLY | O_CREAT | O_TRUNC, 0644, &f,
			     dl()));
	t0 = hs_now_ns();
	CHECK_EQ(hs_tr_pwrite(t, f, src, size, 0, hs_deadline_in_ms(60000)),
		 (ssize_t)size);
	t1 = hs_now_ns();
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	if (report)
		printf("  pwrite %zu MiB in one call: %.1f MiB/s\n", size >> 20,
		       (double)size / (1 << 20) / ((double)(t1 - t0) / 1e9));

	memset(dst, 0, size);
	CHECK_OK(hs_tr_fopen(t, "/big", O_RDONLY, 0, &f, dl()));
	t0 = hs_now_ns();
	if (report) { /* one call */
		for (off = 0; off < size; off += (size_t)n) {
			n = hs_tr_pread(t, f, dst + off, size - off, off,
					hs_deadline_in_ms(60000));
			CHECK(n > 0);
		}
	} else { /* 1 MiB calls, as the cache does */
		for (off = 0; off < size; off += (size_t)n) {
			n = hs_tr_pread(t, f, dst + off,
					HS_MIN(size - off, (size_t)1 << 20), off,
					dl());
			CHECK(n > 0);
		}
	}
	t1 = hs_now_ns();
	CHECK_EQ(hs_tr_pread(t, f, dst, 4096, size, dl()), 0); /* EOF */
	CHECK(memcmp(src, dst, size) == 0);
	if (report)
		printf("  pread %zu MiB: %.1f MiB/s\n", size >> 20,
		       (double)size / (1 << 20) / ((double)(t1 - t0) / 1e9));

	/* random-offset reads break the read-ahead: must still be right */
	for (off = size / 3; off > 4096; off /= 2) {
		n = hs_tr_pread(t, f, dst, 4096, off - 4096 + 17, dl());
		CHECK_EQ(n, 4096);
		CHECK(memcmp(dst, src + off - 4096 + 17, 4096) == 0);
	}
	/* a short read across EOF */
	n = hs_tr_pread(t, f, dst, 8192, size - 100, dl());
	CHECK_EQ(n, 100);
	CHECK(memcmp(dst, src + size - 100, 100) == 0);
	CHECK_OK(hs_tr_fclose(t, f, dl()));
	CHECK_OK(hs_tr_unlink(t, "/big", dl()));
	free(src);
	free(dst);
}

/* ---- concurrency and deadlines ---- */

struct hog {
	struct hs_transport *t;
	struct hs_tr_file *f;
	unsigned char *buf;
	size_t size;
	ssize_t r;
};

static void *hog_thread(void *arg)
{
	struct hog *h = arg;

	h->r = hs_tr_pwrite(h->t, h->f, h->buf, h->size, 0,
			    hs_deadline_in_ms(60000));
	return NULL;
}

static void *lstat_thread(void *arg)
{
	struct hs_transport *t = arg;
	struct hs_attr a;
	int i;

	for (i = 0; i < 50; i++)
		CHECK_OK(hs_tr_lstat(t, "/", &a, dl()));
	return NULL;
}

static void test_threads(struct hs_transport *t)
{
	struct hog h = { .t = t, .size = 64u << 20 };
	pthread_t th[4];
	struct hs_attr a;
	int64_t t0;
	int i, r;

	printf("threads and the lock deadline\n");
	for (i = 0; i < 4; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, lstat_thread, t), 0);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);

	h.buf = calloc(1, h.size);
	CHECK(h.buf);
	CHECK_OK(hs_tr_fopen(t, "/hog", O_WRONLY | O_CREAT | O_TRUNC, 0644,
			     &h.f, dl()));
	CHECK_EQ(pthread_create(&th[0], NULL, hog_thread, &h), 0);
	usleep(20000);
	t0 = hs_now_ns();
	r = hs_tr_lstat(t, "/", &a, hs_deadline_in_ms(5));
	if (r == 0) {
		printf("  (the 64 MiB write finished before the probe)\n");
	} else {
		CHECK_EQ(r, -ETIMEDOUT);
		CHECK(hs_now_ns() - t0 < 200 * HS_NSEC_PER_MSEC);
		CHECK(!hs_tr_broken(t)); /* waiting for the lock breaks nothing */
	}
	pthread_join(th[0], NULL);
	CHECK_EQ(h.r, (ssize_t)h.size);
	CHECK(!hs_tr_broken(t));
	CHECK_OK(hs_tr_fclose(t, h.f, dl()));
	CHECK_OK(hs_tr_lstat(t, "/hog", &a, dl()));
	CHECK_EQ(a.size, h.size);
	free(h.buf);
}

/* A deadline inside a request breaks the connection for good. */
static void test_broken(void)
{
	struct hs_transport *t = open_ok(work);
	struct hs_tr_file *f, *g;
	size_t size = 64u << 20;
	unsigned char *buf = malloc(size);
	struct hs_attr a;
	ssize_t n;

	printf("deadline inside a request\n");
	CHECK(buf);
	CHECK_OK(hs_tr_fopen(t, "/hog", O_RDONLY, 0, &g, dl()));
	/* 64 MiB cannot leave in 2 ms: the SSH window fills and the wait
	 * for the host hits the deadline in the middle of the request */
	memset(buf, 'h', size);
	CHECK_OK(hs_tr_fopen(t, "/hog2", O_WRONLY | O_CREAT, 0644, &f, dl()));
	n = hs_tr_pwrite(t, f, buf, size, 0, hs_deadline_in_ms(2));
	if (n != -ETIMEDOUT)
		CHECK_FAIL("pwrite with a 2 ms deadline returned %zd", n);
	CHECK(hs_tr_broken(t));
	CHECK(t->last_error[0] != '\0');
	printf("  last_error: %s\n", t->last_error);
	CHECK_EQ(hs_tr_lstat(t, "/", &a, dl()), -ENOTCONN);
	CHECK_EQ(hs_tr_pread(t, g, buf, 10, 0, dl()), -ENOTCONN);
	CHECK(hs_tr_fclose(t, f, dl()) != 0);
	/* g is left open: close must free it */
	hs_tr_close(t);
	free(buf);

	t = open_ok(work);
	CHECK_OK(hs_tr_unlink(t, "/hog", dl()));
	CHECK_OK(hs_tr_unlink(t, "/hog2", dl()));
	/* close with an open file on a healthy link */
	CHECK_OK(hs_tr_fopen(t, "/d/f", O_RDONLY, 0, &f, dl()));
	hs_tr_close(t);
}

/* ---- connecting ---- */

static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "r");
	static char buf[65536];
	size_t n;

	CHECK(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void b64(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*out++ = tab[in[i] >> 2];
		*out++ = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*out++ = tab[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		*out++ = tab[in[i + 2] & 63];
	}
	if (n - i == 1) {
		*out++ = tab[in[i] >> 2];
		*out++ = tab[(in[i] & 3) << 4];
		*out++ = '=';
		*out++ = '=';
	} else if (n - i == 2) {
		*out++ = tab[in[i] >> 2];
		*out++ = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*out++ = tab[(in[i + 1] & 15) << 2];
		*out++ = '=';
	}
	*out = '\0';
}

static void test_hostkeys(void)
{
	unsigned char blob[4 + 11 + 4 + 32];
	char kh[4200], line[512], b[128], err[256], *text;
	struct hs_tr_config c;
	struct hs_transport *t;
	FILE *fp;

	printf("host keys\n");
	/* a well-formed ed25519 key that is not the server's */
	memcpy(blob, "\0\0\0\x0bssh-ed25519\0\0\0\x20", 19);
	fill(blob + 19, 32, 77);
	b64(blob, sizeof(blob), b);
	snprintf(kh, sizeof(kh), "%s/kh-mismatch", tmpdir);
	fp = fopen(kh, "w");
	CHECK(fp);
	fprintf(fp, "# comment line\n@cert-authority *.example ssh-ed25519 %s\n",
		b);
	if (port == 22)
		fprintf(fp, "%s ssh-ed25519 %s\n", host, b);
	else
		fprintf(fp, "[%s]:%d ssh-ed25519 %s\n", host, port, b);
	fclose(fp);
	c = cfg_for(work);
	c.known_hosts = kh;
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "does not match known_hosts"));
	c.hostkey_policy = HS_HOSTKEY_ACCEPT_NEW; /* still refused */
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "does not match known_hosts"));
	c.hostkey_policy = HS_HOSTKEY_NO; /* told to accept anything */
	CHECK_OK(hs_tr_open(&c, dl(), &t, err, sizeof(err)));
	hs_tr_close(t);

	/* unknown host, strict */
	snprintf(kh, sizeof(kh), "%s/kh-empty", tmpdir);
	fp = fopen(kh, "w");
	CHECK(fp);
	fputs("# nothing known", fp); /* no final newline on purpose */
	fclose(fp);
	c = cfg_for(work);
	c.known_hosts = kh;
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "is not in known_hosts"));
	/* unknown host, accept-new: added, then known under strict */
	c.hostkey_policy = HS_HOSTKEY_ACCEPT_NEW;
	CHECK_OK(hs_tr_open(&c, dl(), &t, err, sizeof(err)));
	hs_tr_close(t);
	text = read_text(kh);
	if (port == 22)
		snprintf(line, sizeof(line), "\n%s ssh-", host);
	else
		snprintf(line, sizeof(line), "\n[%s]:%d ssh-", host, port);
	if (!strstr(text, line))
		CHECK_FAIL("known_hosts lacks '%s':\n%s", line + 1, text);
	c.hostkey_policy = HS_HOSTKEY_STRICT;
	CHECK_OK(hs_tr_open(&c, dl(), &t, err, sizeof(err)));
	hs_tr_close(t);
	/* accept-new into a file that does not exist yet */
	snprintf(kh, sizeof(kh), "%s/newdir/known_hosts", tmpdir);
	c.known_hosts = kh;
	c.hostkey_policy = HS_HOSTKEY_ACCEPT_NEW;
	CHECK_OK(hs_tr_open(&c, dl(), &t, err, sizeof(err)));
	hs_tr_close(t);
	CHECK(strstr(read_text(kh), "ssh-") != NULL);
}

static void test_auth(void)
{
	char badkey[4200], cmd[8400], err[256];
	const char *ids[3];
	struct hs_tr_config c;
	struct hs_transport *t;

	printf("authentication\n");
	snprintf(badkey, sizeof(badkey), "%s/bad_ed25519", tmpdir);
	snprintf(cmd, sizeof(cmd),
		 "ssh-keygen -q -t ed25519 -N '' -f '%s' </dev/null >/dev/null",
		 badkey);
	CHECK_EQ(system(cmd), 0);
	c = cfg_for(work);
	ids[0] = badkey;
	ids[1] = NULL;
	c.identity_files = ids;
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "authentication failed for '"));
	CHECK(strstr(err, badkey));
	/* a missing file is tried and reported too */
	ids[0] = "/nonexistent/id_ed25519";
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -EACCES);
	/* the bad key first, then the good one */
	ids[0] = badkey;
	ids[1] = key;
	ids[2] = NULL;
	CHECK_OK(hs_tr_open(&c, dl(), &t, err, sizeof(err)));
	hs_tr_close(t);
}

static int free_port(int *ret_fd, int do_listen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	CHECK(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	if (do_listen)
		CHECK_EQ(listen(fd, 8), 0);
	*ret_fd = fd;
	return ntohs(sa.sin_port);
}

static void test_connect_failures(void)
{
	struct hs_tr_config c = cfg_for(work);
	char err[256];
	int64_t t0, took;
	int fd;

	printf("connect failures\n");
	c.host = "127.0.0.1";
	c.port = free_port(&fd, 0);
	close(fd); /* nobody listens there now */
	t0 = hs_now_ns();
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -ECONNREFUSED);
	CHECK(hs_now_ns() - t0 < 1000 * HS_NSEC_PER_MSEC);
	CHECK(strstr(err, "cannot connect to '127.0.0.1:"));
	CHECK(strstr(err, "connection refused"));

	/* a listener that never says a word: the handshake must give up at
	 * the deadline, not hang */
	c.port = free_port(&fd, 1);
	c.connect_timeout_ms = 20000;
	t0 = hs_now_ns();
	CHECK_EQ(open_fail(&c, hs_deadline_in_ms(700), err, sizeof(err)),
		 -ETIMEDOUT);
	took = hs_now_ns() - t0;
	printf("  stalled handshake gave up after %lld ms\n",
	       (long long)(took / HS_NSEC_PER_MSEC));
	CHECK(took >= 650 * HS_NSEC_PER_MSEC);
	CHECK(took < 1000 * HS_NSEC_PER_MSEC);
	/* connect_timeout_ms bounds it too */
	c.connect_timeout_ms = 300;
	t0 = hs_now_ns();
	CHECK_EQ(open_fail(&c, dl(), err, sizeof(err)), -ETIMEDOUT);
	took = hs_now_ns() - t0;
	CHECK(took < 600 * HS_NSEC_PER_MSEC);
	close(fd);

	c = cfg_for(work);
	c.host = "host.invalid";
	CHECK(open_fail(&c, dl(), err, sizeof(err)) < 0);
	CHECK(strstr(err, "cannot resolve host 'host.invalid'"));
}

static int rm_entry(const char *p, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	return remove(p) < 0 ? 0 : 0;
}

int main(void)
{
	struct hs_transport *top, *t;
	struct listing l = { 0 };
	char name[64];

	host = need_env("HS_TEST_SSH_HOST");
	port = atoi(need_env("HS_TEST_SSH_PORT"));
	user = need_env("HS_TEST_SSH_USER");
	key = need_env("HS_TEST_SSH_KEY");
	known_hosts = need_env("HS_TEST_SSH_KNOWN_HOSTS");
	host_dir = need_env("HS_TEST_HOST_DIR");
	CHECK(port > 0);
	CHECK_OK(hs_tr_global_init());

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hs-test-sftp.XXXXXX");
	CHECK(mkdtemp(tmpdir) != NULL);

	/* our own folder below HOST_DIR, made through the transport */
	snprintf(name, sizeof(name), "/hs-test-sftp.%d", (int)getpid());
	top = open_ok(host_dir);
	CHECK_OK(hs_tr_mkdir(top, name, 0755, dl()));
	snprintf(work, sizeof(work), "%s%s", host_dir, name);

	test_open_root();
	t = open_ok(work);
	test_basics(t);
	test_readdir(t);
	CHECK_OK(hs_tr_readdir(t, "/d", nested_cb, t, dl()));
	test_symlink(t);
	test_rename(t);
	test_setattr(t);
	test_statvfs(t);
	test_bulk(t, 8u << 20, 0);
	test_bulk(t, 64u << 20, 1);
	test_threads(t);
	hs_tr_close(t);
	test_broken();
	test_hostkeys();
	test_auth();
	test_connect_failures();

	/* clean up through the transport where possible */
	t = open_ok(work);
	CHECK_OK(hs_tr_readdir(t, "/", collect, &l, dl()));
	hs_tr_close(t);
	hs_tr_close(top);
	nftw(work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	hs_tr_global_exit();
	printf("test_sftp: ok\n");
	return 0;
}
