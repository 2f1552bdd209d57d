/* SPDX-License-Identifier: MIT
 * tools/doctor.c - `hostsharectl doctor`: the checks a person makes by hand
 * when a shared folder is slow or stuck, each with a verdict and a fix.
 *
 *   hostsharectl doctor [--json] [--timeout S] [--no-write] MOUNTPOINT
 *   hostsharectl doctor [--json] [--timeout S] [--no-write]
 *                       [-p PORT] [-o OPT,...] SOURCE
 *
 * SOURCE is any source the mount program takes: [user@]host:[dir] (SSH,
 * or the agent over ssh with -o agent), tcp://HOST:PORT/dir,
 * unix:/path.sock:/dir or vsock://CID:PORT/dir (hostshare-agent).
 *
 * For a MOUNTPOINT the daemon's control socket gives the status (link,
 * pending work, last error, cache folder) and, through the "doctor"
 * request (fs/ctl_doctor.c), how the mount reaches its host.  For a SOURCE
 * the settings come from the command line, parsed like the mount
 * program's (-p, -o port=, IdentityFile=, UserKnownHostsFile=,
 * StrictHostKeyChecking=, ConnectTimeout=, cache_dir=, token_file=,
 * agent, agent_command=, compression=; other mount options are accepted
 * and ignored so an fstab line can be pasted).
 *
 * Then the doctor opens a connection of its own (libhs's transport API,
 * hs_tr_open() with the wire the mount uses), so what it measures is the
 * link itself, not the mount's queue:
 *   connect   connect time to what the mount dials: host:port (sshd, or
 *             the agent's TCP port), the agent's unix socket, or vsock
 *   hostkey   the host key against known_hosts (always checked strictly:
 *             the doctor never adds a key, even with accept-new); not
 *             applicable (skip) for tcp://, unix: and vsock:// agents
 *   auth      public-key login (SSH), the agent's token (tcp, unix); not
 *             applicable for vsock (the agent checks the peer's CID)
 *   agent     -o agent only: hostshare-agent --stdio runs through ssh
 *   folder    the remote folder exists
 *   rtt       median of 10 round trips
 *   upload / download
 *             throughput of an 8 MiB probe file, written and read back
 *   clock     skew between guest and host clocks, from the mtime the host
 *             gives the probe file against the guest's clock around the
 *             write (resolution 1 s: SFTP v3 carries whole seconds)
 *   host_space
 *             free space on the host's filesystem (statvfs@openssh.com)
 * and local checks: cache_space (the guest disk holding the cache),
 * cache_limit (a mount: pending data against the room the cache may use,
 * cache_size= or its disk less min_free=; a warning past half of it),
 * memory, swap, shared_folders (a hypervisor shared folder — vmhgfs-fuse,
 * vboxsf, 9p, virtiofs — mounted on, over or under the same path, from
 * /proc/self/mountinfo), journal (pending work and the age of its oldest
 * entry, read from the cache database opened read-only) and errors (the
 * daemon's last error and entries the host refused).
 *
 * It changes nothing, with one documented exception: the probe file
 * ".hs-doctor.<guest>.<pid>" in the top of the remote folder, removed
 * before the doctor exits (--no-write skips upload, download and clock;
 * they are skipped on a read-only mount too).
 *
 * Verdicts: ok, warn, fail, skip (not applicable or not measurable
 * because an earlier check failed).  Exit status: 0 no check failed,
 * 1 a check failed (or the mount could not be asked), 2 usage error.
 * --json prints one object: {"target":..., "ok":bool, "failed":[names],
 * "checks":[{"name","verdict","detail","fix", "value"?}...]}.
 *
 * Every network step has a deadline (--timeout, default 10 s; connecting
 * uses the mount's ConnectTimeout).  Single-threaded.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "common/common.h"
#include "common/ctl.h"
#include "transport/dial.h"
#include "transport/transport.h"

#include "ctljson.h"
#include "doctor.h"

#define PROBE_SIZE (8u << 20)      /* bytes moved each way */
#define PROBE_CHUNK (1u << 20)     /* bytes per transport call */
#define RTT_SAMPLES 10
#define LOW_SPACE_PCT 15.0
#define RTT_WARN_MS 20.0
#define SLOW_MIBS 10.0
#define SKEW_WARN_S 2.0
#define SKEW_FAIL_S 60.0
#define JOURNAL_AGE_WARN_S 300
#define MAX_CHECKS 24

enum verdict { V_OK, V_WARN, V_FAIL, V_SKIP };
static const char *const verdict_name[] = { "ok", "warn", "fail", "skip" };

struct check {
	const char *name;
	enum verdict v;
	char detail[512];
	char fix[512];
	int has_value;
	double value; /* the measured number, unit given by the check */
};

struct doctor {
	/* what to check */
	char target[PATH_MAX];  /* as given */
	int is_mount;
	char mountpoint[PATH_MAX];
	char source[600];
	char host[256];
	char user[128];
	char dir[PATH_MAX];
	int port;
	char *identity[16];     /* NULL-terminated */
	size_t n_identity;
	char known_hosts[PATH_MAX];
	enum hs_tr_hostkey_policy policy;
	enum hs_tr_kind kind;   /* the wire, as the mount picks it */
	int agent_flag;         /* -o agent on an ssh source */
	char token_file[PATH_MAX];
	char agent_command[PATH_MAX];
	int no_compression;
	int connect_timeout_ms;
	int timeout_ms;
	int no_write;
	int ro;
	char cache_root[PATH_MAX]; /* SOURCE: cache_dir= or the default */
	char cache_dir[PATH_MAX];  /* the per-source folder ("" unknown) */

	/* status of the mount (MOUNTPOINT only) */
	char st_link[32], st_since[64], st_last_error[512];
	uint64_t pending_ops, pending_bytes, failed_ops;
	uint64_t cache_limit;       /* cache_size=, 0 none */
	uint64_t disk_min_free;     /* the floor the cache keeps on its disk */
	int have_limits;            /* the status gave both */
	int have_status;
	int64_t oldest_age_ms;      /* -1: nothing pending (or unknown) */
	uint64_t earlier_mount_ops;
	char refused[600];

	struct check checks[MAX_CHECKS];
	size_t n;
};

static int json_out;
static const char *tool = "doctor"; /* whose messages: "doctor", "pending" */

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fatal(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hostsharectl: %s: ", tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "hostsharectl: %s: ", tool);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see 'hostsharectl --help')\n", stderr);
	exit(2);
}

static struct check *add(struct doctor *d, const char *name, enum verdict v,
			 const char *fix, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static struct check *add(struct doctor *d, const char *name, enum verdict v,
			 const char *fix, const char *fmt, ...)
{
	struct check *c;
	va_list ap;

	if (d->n >= MAX_CHECKS)
		return NULL;
	c = &d->checks[d->n++];
	memset(c, 0, sizeof(*c));
	c->name = name;
	c->v = v;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	snprintf(c->fix, sizeof(c->fix), "%s", fix && v != V_OK ? fix : "");
	return c;
}

static void set_value(struct check *c, double v)
{
	if (c) {
		c->has_value = 1;
		c->value = v;
	}
}

static double ms_since(int64_t t0)
{
	return (double)(hs_now_ns() - t0) / 1e6;
}

/* ---- the control socket ---- */

/* Sends @req to the daemon of @mp and reads its first answer line into
 * @out.  0, or -errno with a line in @err. */
static int ask_daemon(const char *mp, const char *req, char *out,
		      size_t outlen, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uid_t uids[2] = { geteuid(), 0 };
	char path[PATH_MAX];
	size_t n = 0;
	int i, fd = -1, r = -ENOENT;
	ssize_t got;

	for (i = 0; i < (uids[0] == 0 ? 1 : 2) && fd < 0; i++) {
		r = hs_ctl_socket_path(mp, uids[i], path, sizeof(path));
		if (r < 0 || strlen(path) >= sizeof(sa.sun_path))
			continue;
		strcpy(sa.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			r = -errno;
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0) {
		snprintf(err, errlen,
			 r == -EACCES || r == -EPERM ?
			 "permission denied: '%s' is a mount of another user" :
			 "'%s' is not a hostshare mount (no control socket)",
			 mp);
		return r < 0 ? r : -ENOENT;
	}
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0) {
		r = -errno;
		goto fail;
	}
	while (n + 1 < outlen) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		r = poll(&p, 1, 10000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			r = r == 0 ? -ETIMEDOUT : -errno;
			goto fail;
		}
		got = read(fd, out + n, outlen - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
		if (memchr(out, '\n', n))
			break;
	}
	close(fd);
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	if (!n) {
		snprintf(err, errlen, "the daemon of '%s' sent no answer", mp);
		return -EPROTO;
	}
	return 0;

fail:
	close(fd);
	snprintf(err, errlen, "cannot talk to the daemon of '%s': %s", mp,
		 strerror(-r));
	return r;
}

static void from_mount(struct doctor *d)
{
	char line[16384], err[PATH_MAX + 128], v[PATH_MAX], k[32];
	uint64_t i, nid;

	if (ask_daemon(d->target, "status\n", line, sizeof(line), err,
		       sizeof(err)) < 0)
		fatal("%s", err);
	if (jget(line, "error", v, sizeof(v)))
		fatal("%s", v);
	d->have_status = 1;
	jget(line, "mountpoint", d->mountpoint, sizeof(d->mountpoint));
	jget(line, "source", d->source, sizeof(d->source));
	jget(line, "link", d->st_link, sizeof(d->st_link));
	jget(line, "link_since", d->st_since, sizeof(d->st_since));
	jget(line, "last_error", d->st_last_error, sizeof(d->st_last_error));
	jget(line, "cache_dir", d->cache_dir, sizeof(d->cache_dir));
	d->pending_ops = jget_u64(line, "pending_ops");
	d->pending_bytes = jget_u64(line, "pending_bytes");
	d->failed_ops = jget_u64(line, "failed_ops");
	d->cache_limit = jget_u64(line, "cache_limit");
	d->disk_min_free = jget_u64(line, "disk_min_free");
	d->have_limits = jget(line, "cache_limit", NULL, 0) &&
			 jget(line, "disk_min_free", NULL, 0);

	if (ask_daemon(d->target, "doctor\n", line, sizeof(line), err,
		       sizeof(err)) < 0)
		fatal("%s", err);
	if (jget(line, "error", v, sizeof(v)))
		fatal("the daemon of '%s' does not know the doctor request (%s); is it an older hostshare?",
		      d->target, v);
	jget(line, "host", d->host, sizeof(d->host));
	jget(line, "user", d->user, sizeof(d->user));
	jget(line, "dir", d->dir, sizeof(d->dir));
	jget(line, "known_hosts", d->known_hosts, sizeof(d->known_hosts));
	d->port = (int)jget_u64(line, "port");
	d->connect_timeout_ms = (int)jget_u64(line, "connect_timeout_ms");
	jget(line, "hostkey_policy", v, sizeof(v));
	d->policy = !strcmp(v, "no") ? HS_HOSTKEY_NO :
		    !strcmp(v, "accept-new") ? HS_HOSTKEY_ACCEPT_NEW :
					       HS_HOSTKEY_STRICT;
	d->oldest_age_ms = -1;
	if (jget(line, "oldest_pending_age_ms", v, sizeof(v)))
		d->oldest_age_ms = strtoll(v, NULL, 10);
	d->earlier_mount_ops = jget_u64(line, "earlier_mount_ops");
	jget(line, "refused", d->refused, sizeof(d->refused));
	jget(line, "ro", v, sizeof(v));
	d->ro = !strcmp(v, "true");
	d->kind = HS_TR_SFTP;
	if (jget(line, "kind", v, sizeof(v)))
		d->kind = !strcmp(v, "agent-tcp") ? HS_TR_AGENT_TCP :
			  !strcmp(v, "agent-unix") ? HS_TR_AGENT_UNIX :
			  !strcmp(v, "agent-vsock") ? HS_TR_AGENT_VSOCK :
			  !strcmp(v, "agent-ssh") ? HS_TR_AGENT_SSH :
						    HS_TR_SFTP;
	jget(line, "token_file", d->token_file, sizeof(d->token_file));
	jget(line, "agent_command", d->agent_command,
	     sizeof(d->agent_command));
	if (jget(line, "compression", v, sizeof(v)))
		d->no_compression = !strcmp(v, "false");
	nid = jget_u64(line, "identity_files");
	for (i = 1; i <= nid && d->n_identity + 1 < HS_ARRAY_SIZE(d->identity);
	     i++) {
		snprintf(k, sizeof(k), "identity_file_%" PRIu64, i);
		if (jget(line, k, v, sizeof(v)) && v[0])
			d->identity[d->n_identity++] = strdup(v);
	}
}

/* ---- SOURCE on the command line ---- */

static const char *home_dir(void);

static void set_opt(struct doctor *d, const char *name, const char *val)
{
	char *end;
	long n;

	if (!strcmp(name, "port") || !strcmp(name, "ConnectTimeout")) {
		errno = 0;
		n = val ? strtol(val, &end, 10) : 0;
		if (!val || errno || *end || n <= 0 || n > 65535)
			usage_error("invalid value '%s' for option '%s'",
				    val ? val : "", name);
		if (!strcmp(name, "port"))
			d->port = (int)n;
		else
			d->connect_timeout_ms = (int)n * 1000;
	} else if (!strcmp(name, "IdentityFile") && val) {
		if (d->n_identity + 1 < HS_ARRAY_SIZE(d->identity))
			d->identity[d->n_identity++] = strdup(val);
	} else if (!strcmp(name, "UserKnownHostsFile") && val) {
		snprintf(d->known_hosts, sizeof(d->known_hosts), "%s", val);
	} else if (!strcmp(name, "cache_dir") && val) {
		snprintf(d->cache_root, sizeof(d->cache_root), "%s", val);
	} else if (!strcmp(name, "StrictHostKeyChecking") && val) {
		if (!strcmp(val, "yes"))
			d->policy = HS_HOSTKEY_STRICT;
		else if (!strcmp(val, "accept-new"))
			d->policy = HS_HOSTKEY_ACCEPT_NEW;
		else if (!strcmp(val, "no"))
			d->policy = HS_HOSTKEY_NO;
		else
			usage_error("invalid value '%s' for option '%s'", val,
				    name);
	} else if (!strcmp(name, "ro")) {
		d->ro = 1;
	} else if (!strcmp(name, "token_file") && val) {
		snprintf(d->token_file, sizeof(d->token_file), "%s%s",
			 val[0] == '~' && (val[1] == '/' || !val[1]) ?
			 home_dir() : "", val[0] == '~' ? val + 1 : val);
	} else if (!strcmp(name, "agent")) {
		d->agent_flag = 1;
	} else if (!strcmp(name, "agent_command") && val) {
		snprintf(d->agent_command, sizeof(d->agent_command), "%s", val);
	} else if (!strcmp(name, "compression") && val) {
		d->no_compression = !strcmp(val, "no");
	}
	/* every other mount option: accepted and ignored */
}

/* -o list: "a=b,c" with "\," a literal comma. */
static void parse_o(struct doctor *d, const char *list)
{
	char buf[PATH_MAX * 2], *eq;
	size_t n;
	const char *p = list;

	while (*p) {
		for (n = 0; *p && *p != ','; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (n + 1 < sizeof(buf))
				buf[n++] = *p;
		}
		buf[n] = '\0';
		if (*p == ',')
			p++;
		if (!buf[0])
			continue;
		eq = strchr(buf, '=');
		if (eq)
			*eq++ = '\0';
		set_opt(d, buf, eq);
	}
}

/* [user@]host:[dir] or an agent source, as the mount program reads it
 * (hs_tr_parse_source()). */
static void parse_source(struct doctor *d, const char *s)
{
	struct hs_tr_source src;
	char err[512];

	if (hs_tr_parse_source(s, &src, err, sizeof(err)) < 0) {
		if (src.kind == HS_TR_SFTP && !strchr(s, ':'))
			usage_error("'%s' is neither a mountpoint nor a source "
				    "([user@]host:[dir])", s);
		usage_error("%s", err);
	}
	d->kind = src.kind;
	if (src.kind != HS_TR_SFTP)
		d->port = src.port;
	snprintf(d->source, sizeof(d->source), "%s", s);
	snprintf(d->host, sizeof(d->host), "%.*s", (int)src.host_len, src.host);
	snprintf(d->dir, sizeof(d->dir), "%s", src.dir);
	if (src.user)
		snprintf(d->user, sizeof(d->user), "%.*s", (int)src.user_len,
			 src.user);
}

static const char *home_dir(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h && h[0] == '/')
		return h;
	pw = getpwuid(geteuid());
	return pw && pw->pw_dir ? pw->pw_dir : "/";
}

/* The per-source cache folder the mount program would use (the same
 * naming as fs/opts.c: hs_opts_cache_folder()); nothing is created. */
static void source_cache_dir(struct doctor *d)
{
	char label[96], key[PATH_MAX + 600];
	const char *xdg;
	size_t i, n;

	if (!d->user[0]) {
		struct passwd *pw = getpwuid(geteuid());

		snprintf(d->user, sizeof(d->user), "%s",
			 pw ? pw->pw_name : "root");
	}
	if (!d->cache_root[0]) {
		if (geteuid() == 0)
			snprintf(d->cache_root, sizeof(d->cache_root),
				 "/var/cache/hostshare");
		else if ((xdg = getenv("XDG_CACHE_HOME")) && xdg[0] == '/')
			snprintf(d->cache_root, sizeof(d->cache_root),
				 "%s/hostshare", xdg);
		else
			snprintf(d->cache_root, sizeof(d->cache_root),
				 "%s/.cache/hostshare", home_dir());
	}
	n = strlen(d->cache_root);
	while (n > 1 && d->cache_root[n - 1] == '/')
		d->cache_root[--n] = '\0';
	snprintf(label, sizeof(label), "%.40s@%.40s-%d", d->user, d->host,
		 d->port);
	for (i = 0; label[i]; i++) {
		unsigned char ch = (unsigned char)label[i];

		if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_' &&
		    ch != '@')
			label[i] = '_';
	}
	snprintf(key, sizeof(key), "%s@%s:%d:%s", d->user, d->host, d->port,
		 d->dir);
	snprintf(d->cache_dir, sizeof(d->cache_dir), "%.3800s/%.100s-%016" PRIx64,
		 d->cache_root, label, hs_fnv1a64(key));
}

/* 1 if @dir holds a cache database. */
static int has_db(const char *dir)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/meta.db", dir);
	return access(path, F_OK) == 0;
}

/* The port was not given (a mount made with -p whose daemon died leaves
 * only its source in the mount table): of the folders in the cache root
 * whose name is this source's for the port the name carries, the one
 * with the newest database (the latest mount).  1 found (d->cache_dir
 * set), 0 not. */
static int folder_of_any_port(struct doctor *d)
{
	char want[PATH_MAX * 2 + 8], name[PATH_MAX + 8], db[PATH_MAX + 16];
	DIR *dir = opendir(d->cache_root);
	struct dirent *de;
	struct stat st;
	const char *dash;
	char *end;
	long port, best = 0;
	int64_t newest = -1;

	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		/* LABEL-HASH, LABEL = user@host-PORT, HASH 16 hex digits */
		size_t n = strlen(de->d_name);

		if (n < 19 || de->d_name[n - 17] != '-')
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(n - 17), de->d_name);
		dash = strrchr(name, '-');
		if (!dash)
			continue;
		errno = 0;
		port = strtol(dash + 1, &end, 10);
		if (errno || *end || port <= 0 || port > 65535)
			continue;
		d->port = (int)port;
		source_cache_dir(d);
		snprintf(want, sizeof(want), "%s/%s", d->cache_root, de->d_name);
		snprintf(db, sizeof(db), "%s/meta.db", d->cache_dir);
		if (strcmp(want, d->cache_dir) || stat(db, &st) < 0 ||
		    (int64_t)st.st_mtime <= newest)
			continue;
		newest = (int64_t)st.st_mtime;
		best = port;
	}
	closedir(dir);
	if (!best)
		return 0;
	d->port = (int)best;
	source_cache_dir(d);
	return 1;
}

int hs_doctor_cache_folder(const char *source, const char *opts, char *buf,
			   size_t size)
{
	struct doctor *d = calloc(1, sizeof(*d));
	size_t k;

	if (!d)
		return -ENOMEM;
	tool = "pending";
	if (opts)
		parse_o(d, opts);
	parse_source(d, source);
	if (d->kind == HS_TR_SFTP && !d->port) {
		d->port = 22;
		source_cache_dir(d);
		if (!has_db(d->cache_dir) && !folder_of_any_port(d)) {
			d->port = 22;
			source_cache_dir(d);
		}
	} else {
		source_cache_dir(d); /* as hs_doctor_main() does */
	}
	snprintf(buf, size, "%s", d->cache_dir);
	for (k = 0; k < d->n_identity; k++)
		free(d->identity[k]);
	free(d);
	return 0;
}

/* ---- link checks (own connection) ---- */

/* A tcp://, unix: or vsock:// agent: no SSH in between. */
static int agent_net(const struct doctor *d)
{
	return d->kind == HS_TR_AGENT_TCP || d->kind == HS_TR_AGENT_UNIX ||
	       d->kind == HS_TR_AGENT_VSOCK;
}

/* Where the doctor dials, for messages: "host:port", the socket path,
 * "vsock CID:PORT". */
static void dial_where(const struct doctor *d, char *buf, size_t size)
{
	if (d->kind == HS_TR_AGENT_UNIX)
		snprintf(buf, size, "%s", d->host);
	else if (d->kind == HS_TR_AGENT_VSOCK)
		snprintf(buf, size, "vsock %s:%d", d->host, d->port);
	else
		hs_dial_hostport(buf, size, d->host, d->port);
}

/* The --listen argument of an agent that would answer this source. */
static void listen_spec(const struct doctor *d, char *buf, size_t size)
{
	char hp[300];

	hs_dial_hostport(hp, sizeof(hp), d->host, d->port);
	if (d->kind == HS_TR_AGENT_UNIX)
		snprintf(buf, size, "unix:%s", d->host);
	else if (d->kind == HS_TR_AGENT_VSOCK)
		snprintf(buf, size, "vsock:%d", d->port);
	else
		snprintf(buf, size, "tcp:%s", hp);
}

/* The fix when nothing accepts the connection at all. */
static void dial_fix(const struct doctor *d, int r, char *fix, size_t size)
{
	char spec[PATH_MAX + 16], where[PATH_MAX + 32];

	if (!agent_net(d)) {
		snprintf(fix, size, "%s", r == -ECONNREFUSED ?
			 "start sshd on the host, or fix the host and port (-p / -o port=)" :
			 "check that the host is up and reachable from the guest (address, firewall, the VM's network)");
		return;
	}
	listen_spec(d, spec, sizeof(spec));
	dial_where(d, where, sizeof(where));
	if (r == -ECONNREFUSED || r == -ENOENT || r == -ECONNRESET)
		snprintf(fix, size,
			 "no hostshare-agent is listening at %.200s: start it on the host (hostshare-agent --root DIR --listen %.200s%s), or fix the address in the source",
			 where, spec,
			 d->kind == HS_TR_AGENT_VSOCK ? " --allow-cid <this guest's CID>" : "");
	else if (d->kind == HS_TR_AGENT_UNIX)
		snprintf(fix, size,
			 "check the socket path and that this user may connect to it (permissions of the socket and its folder)");
	else if (d->kind == HS_TR_AGENT_VSOCK)
		snprintf(fix, size,
			 "is hostshare-agent --listen %.200s running on the host (with this guest's CID in its --allow-cid)? check the CID (the host is 2) and port, and that the VM has a vsock device",
			 spec);
	else
		snprintf(fix, size,
			 "check that the host is up and reachable from the guest (address, firewall, the VM's network)");
}

/* The fix when the connection is made but the agent does not answer. */
static void agent_fix(const struct doctor *d, char *fix, size_t size)
{
	char spec[PATH_MAX + 16], where[PATH_MAX + 32], buf[1024];
	size_t n;

	listen_spec(d, spec, sizeof(spec));
	dial_where(d, where, sizeof(where));
	snprintf(buf, sizeof(buf),
		 "hostshare-agent does not answer at %.150s: is it running there (hostshare-agent --listen %.150s)%s? or the link stalls",
		 where, spec,
		 d->kind == HS_TR_AGENT_VSOCK ? ", with this guest's CID in its --allow-cid (it drops other peers)" : "");
	n = strlen(buf);
	if (n >= size)
		n = size - 1; /* cut: the fix is one line */
	memcpy(fix, buf, n);
	fix[n] = '\0';
}

/* tcp://, unix:, vsock:// agents have no host key: not applicable. */
static void hostkey_na(struct doctor *d)
{
	if (agent_net(d))
		add(d, "hostkey", V_SKIP, NULL,
		    "not applicable: the agent protocol (%s) has no host key",
		    d->kind == HS_TR_AGENT_TCP ? "tcp://" :
		    d->kind == HS_TR_AGENT_UNIX ? "unix:" : "vsock://");
}

static void token_fail(struct doctor *d, const char *err)
{
	add(d, "auth", V_FAIL,
	    d->token_file[0] ?
	    "the token file must hold the token the agent was started with (the file of hostshare-agent --token-file): copy it, or fix -o token_file=" :
	    "the agent wants a token: copy its token file (hostshare-agent --token-file) to the guest and name it with -o token_file=",
	    "%s", err);
}

/* The transport configuration the mount would use (transport/open.c),
 * except that the doctor never adds a host key. */
static void fill_cfg(const struct doctor *d, struct hs_tr_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->kind = d->kind;
	cfg->host = d->host;
	cfg->port = d->port;
	cfg->user = d->user[0] ? d->user : NULL;
	cfg->root = d->dir;
	cfg->identity_files = d->n_identity ? (const char *const *)d->identity :
					     NULL;
	cfg->known_hosts = d->known_hosts[0] ? d->known_hosts : NULL;
	/* never add a key: accept-new is checked as strict */
	cfg->hostkey_policy = d->policy == HS_HOSTKEY_NO ? HS_HOSTKEY_NO :
							  HS_HOSTKEY_STRICT;
	cfg->connect_timeout_ms = d->connect_timeout_ms;
	cfg->keepalive_s = 0;
	cfg->use_agent = 1;
	cfg->token_file = d->token_file[0] ? d->token_file : NULL;
	cfg->agent_command = d->agent_command[0] ? d->agent_command : NULL;
	cfg->no_compression = d->no_compression;
}

/* -o agent failed after the SSH login: is the remote folder there?  Asks
 * over SFTP on a connection of its own.  1 it is, 0 it is not (@err
 * says why), -1 cannot tell (no SFTP on the host, a dropped link). */
static int folder_over_sftp(const struct doctor *d, char *err, size_t errlen)
{
	struct hs_tr_config cfg;
	struct hs_transport *t = NULL;
	int r;

	fill_cfg(d, &cfg);
	cfg.kind = HS_TR_SFTP;
	r = hs_tr_open(&cfg, hs_deadline_in_ms(d->connect_timeout_ms), &t, err,
		       errlen);
	if (r == 0) {
		hs_tr_close(t);
		return 1;
	}
	return strstr(err, "remote folder") ? 0 : -1;
}

/* Turns the one-line error of hs_tr_open() into the check that failed
 * (the checks before it passed).  0 when it names none of them: then the
 * SSH layer or the agent's handshake itself failed (a timeout, a dropped
 * connection). */
static int classify_open_error(struct doctor *d, const char *err)
{
	int hostkey = strstr(err, "host key") || strstr(err, "known_hosts");
	int auth = strstr(err, "authentication failed") != NULL;
	int folder = strstr(err, "remote folder") != NULL;
	const char *kh = d->known_hosts[0] ? d->known_hosts :
					     "~/.ssh/known_hosts";
	int agent_stage = d->kind == HS_TR_AGENT_SSH &&
			  (strstr(err, "agent") || strstr(err, "cannot start '"));

	if (agent_net(d)) {
		/* hostkey was added as not applicable */
		if (strstr(err, "token")) {
			token_fail(d, err);
			return 2;
		}
		if (!folder)
			return 0;
		if (d->kind == HS_TR_AGENT_VSOCK)
			add(d, "auth", V_SKIP, NULL,
			    "not applicable: a vsock agent checks the peer's CID (--allow-cid), not a token");
		else
			add(d, "auth", V_OK, NULL, "%s",
			    d->token_file[0] ? "the agent accepted the token" :
					       "the agent asked for no token");
		add(d, "folder", V_FAIL,
		    "create the folder below the agent's --root on the host, or fix the dir part of the source",
		    "%s", err);
		return 3;
	}
	if (hostkey) {
		int unknown = strstr(err, "is not in known_hosts") != NULL;

		if (unknown && d->policy == HS_HOSTKEY_ACCEPT_NEW) {
			add(d, "hostkey", V_WARN,
			    "connect once with ssh to check and record the key; the mount adds it on its next connect (accept-new)",
			    "%s; the doctor does not add keys", err);
			return 1;
		}
		add(d, "hostkey", V_FAIL,
		    unknown ? "check the key with the host's admin, then record it: ssh -o StrictHostKeyChecking=accept-new HOST true" :
			      "if the host was reinstalled, remove the old key (ssh-keygen -R HOST) and record the new one; otherwise do not connect",
		    "%s", err);
		return 1;
	}
	if (!auth && !folder && !agent_stage)
		return 0;
	add(d, "hostkey", V_OK, NULL, "matches %s", kh);
	if (auth) {
		add(d, "auth", V_FAIL,
		    "put the public key in the host's ~/.ssh/authorized_keys, or name the key with -o IdentityFile=",
		    "%s", err);
		return 2;
	}
	add(d, "auth", V_OK, NULL, "logged in as %s", d->user);
	if (d->kind == HS_TR_AGENT_SSH && !folder) {
		char ferr[1024];
		int there = folder_over_sftp(d, ferr, sizeof(ferr));

		if (there == 0) {
			/* the agent stops at once on a missing --root */
			add(d, "agent", V_SKIP, NULL,
			    "not measurable: the remote folder is missing (%s)",
			    err);
			add(d, "folder", V_FAIL,
			    "create the folder on the host, or fix the dir part of the source",
			    "%s", ferr);
			return 3;
		}
		add(d, "agent", V_FAIL,
		    there == 1 ?
		    "install hostshare-agent on the host in the login user's PATH, or name it with -o agent_command= (the remote folder exists: SFTP sees it)" :
		    "install hostshare-agent on the host in the login user's PATH, or name it with -o agent_command=; it also stops at once when the remote folder does not exist",
		    "%s", err);
		return 4;
	}
	if (d->kind == HS_TR_AGENT_SSH)
		add(d, "agent", V_OK, NULL, "'%s --stdio' runs on the host",
		    d->agent_command[0] ? d->agent_command : "hostshare-agent");
	add(d, "folder", V_FAIL,
	    "create the folder on the host, or fix the dir part of the source",
	    "%s", err);
	return 3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Writes, reads back and removes the probe file; measures the clock skew
 * from the mtime the host gives the file. */
static void probe_data(struct doctor *d, struct hs_transport *t)
{
	char name[128], guest[64], b1[32];
	unsigned char *buf = NULL, *back = NULL;
	struct hs_tr_file *f = NULL;
	struct hs_attr a = { .valid = 0 };
	hs_deadline_t dl;
	int64_t t0, w0, w1;
	double secs, mibs, skew, half;
	uint64_t off;
	ssize_t r = 0;
	int created = 0, i;

	if (gethostname(guest, sizeof(guest)) < 0 || !guest[0])
		snprintf(guest, sizeof(guest), "guest");
	guest[sizeof(guest) - 1] = '\0';
	for (i = 0; guest[i]; i++)
		if (!isalnum((unsigned char)guest[i]) && guest[i] != '-')
			guest[i] = '_';
	snprintf(name, sizeof(name), "/.hs-doctor.%.40s.%d", guest,
		 (int)getpid());
	buf = malloc(PROBE_CHUNK);
	back = malloc(PROBE_CHUNK);
	if (!buf || !back)
		fatal("out of memory");
	for (off = 0; off < PROBE_CHUNK; off++)
		buf[off] = (unsigned char)(off * 2654435761u >> 13);

	/* upload */
	dl = hs_deadline_in_ms(d->timeout_ms);
	t0 = hs_now_ns();
	r = hs_tr_fopen(t, name, O_WRONLY | O_CREAT | O_EXCL, 0600, &f, dl);
	if (r == 0) {
		created = 1;
		for (off = 0; off < PROBE_SIZE && r >= 0; off += PROBE_CHUNK)
			r = hs_tr_pwrite(t, f, buf, PROBE_CHUNK, off, dl);
		i = hs_tr_fclose(t, f, dl);
		f = NULL;
		if (r >= 0 && i < 0)
			r = i;
	}
	secs = ms_since(t0) / 1000.0;
	if (r < 0) {
		add(d, "upload", V_FAIL,
		    r == -EACCES || r == -EROFS ? "the remote folder is not writable for the login user (use --no-write to skip)" :
		    r == -ENOSPC || r == -EDQUOT ? "free space on the host" :
						   "the link is too slow or stalled: check the network between guest and host",
		    "writing %s to the host failed: %s",
		    human_bytes(PROBE_SIZE, b1, sizeof(b1)), strerror((int)-r));
		add(d, "download", V_SKIP, NULL, "no probe file");
		add(d, "clock", V_SKIP, NULL, "no probe file");
		goto out_remove;
	}
	mibs = (double)PROBE_SIZE / 1048576.0 / (secs > 0 ? secs : 1e-9);
	set_value(add(d, "upload", mibs < SLOW_MIBS ? V_WARN : V_OK,
		      "the link is slow: check the network between guest and host (or the host's disk)",
		      "%.1f MiB/s (%s in %.2f s)", mibs,
		      human_bytes(PROBE_SIZE, b1, sizeof(b1)), secs), mibs);

	/* download, compared byte for byte */
	dl = hs_deadline_in_ms(d->timeout_ms);
	t0 = hs_now_ns();
	r = hs_tr_fopen(t, name, O_RDONLY, 0, &f, dl);
	for (off = 0; r >= 0 && off < PROBE_SIZE;) {
		r = hs_tr_pread(t, f, back, PROBE_CHUNK -
				(size_t)(off % PROBE_CHUNK), off, dl);
		if (r == 0)
			r = -EIO; /* shorter than written */
		if (r > 0) {
			if (memcmp(back, buf + off % PROBE_CHUNK, (size_t)r)) {
				r = -EBADMSG;
				break;
			}
			off += (uint64_t)r;
		}
	}
	if (f)
		hs_tr_fclose(t, f, dl);
	f = NULL;
	secs = ms_since(t0) / 1000.0;
	if (r < 0) {
		add(d, "download", V_FAIL,
		    r == -EBADMSG ? "the host returned other bytes than were written: check the host's disk and filesystem" :
				    "the link is too slow or stalled: check the network between guest and host",
		    "reading the probe file back failed: %s",
		    r == -EBADMSG ? "content differs" : strerror((int)-r));
	} else {
		mibs = (double)PROBE_SIZE / 1048576.0 /
		       (secs > 0 ? secs : 1e-9);
		set_value(add(d, "download", mibs < SLOW_MIBS ? V_WARN : V_OK,
			      "the link is slow: check the network between guest and host",
			      "%.1f MiB/s (%s in %.2f s, content verified)",
			      mibs, human_bytes(PROBE_SIZE, b1, sizeof(b1)),
			      secs), mibs);
	}

	/* clock: one small write; the host stamps the mtime in between */
	dl = hs_deadline_in_ms(d->timeout_ms);
	w0 = hs_wall_ns();
	r = hs_tr_fopen(t, name, O_WRONLY, 0, &f, dl);
	if (r == 0) {
		r = hs_tr_pwrite(t, f, buf, 1, 0, dl);
		i = hs_tr_fclose(t, f, dl);
		if (r >= 0 && i < 0)
			r = i;
	}
	f = NULL;
	w1 = hs_wall_ns();
	if (r >= 0)
		r = hs_tr_lstat(t, name, &a, dl);
	if (r < 0 || !(a.valid & HS_ATTR_MTIME)) {
		add(d, "clock", V_SKIP, NULL, "cannot read the probe file's mtime: %s",
		    r < 0 ? strerror((int)-r) : "not sent");
	} else {
		/* host time H of the write, guest time T in [w0, w1];
		 * whole-second mtimes: H in [mtime, mtime + 1 s) */
		double res = (t->caps & HS_TR_CAP_NS_TIMES) ? 0.0 : 1.0;
		double lo = (double)(a.mtime_ns - w1) / 1e9;
		double hi = (double)(a.mtime_ns - w0) / 1e9 + res;

		const char *fix = "synchronise both clocks (chrony or systemd-timesyncd in the guest, the hypervisor's time sync): host changes are recognised by mtime";
		enum verdict v;

		skew = (lo + hi) / 2;
		half = (hi - lo) / 2;
		/* judged by the part of the skew that is certain */
		v = fabs(skew) - half >= SKEW_FAIL_S ? V_FAIL :
		    fabs(skew) - half >= SKEW_WARN_S ? V_WARN : V_OK;
		if (fabs(skew) <= half)
			set_value(add(d, "clock", v, fix,
				      "guest and host clocks agree (within %.1f s)",
				      half), skew);
		else
			set_value(add(d, "clock", v, fix,
				      "host clock %s the guest's by %.1f s (within %.1f s)",
				      skew > 0 ? "ahead of" : "behind",
				      fabs(skew), half), skew);
	}

out_remove:
	if (created) {
		dl = hs_deadline_in_ms(d->timeout_ms);
		r = hs_tr_unlink(t, name, dl);
		if (r < 0 && r != -ENOENT)
			add(d, "cleanup", V_WARN,
			    "remove the probe file on the host by hand",
			    "cannot remove the probe file '%s' in the remote folder: %s",
			    name + 1, strerror((int)-r));
	}
	free(buf);
	free(back);
}

static void space_check(struct doctor *d, const char *name, uint64_t avail,
			uint64_t total, const char *where, const char *fix)
{
	char b1[32], b2[32];
	double pct = total ? 100.0 * (double)avail / (double)total : 0;
	enum verdict v = avail == 0 ? V_FAIL :
			 pct < LOW_SPACE_PCT ? V_WARN : V_OK;

	set_value(add(d, name, v, fix, "%s free of %s (%.0f %%) %s",
		      human_bytes(avail, b1, sizeof(b1)),
		      human_bytes(total, b2, sizeof(b2)), pct, where), pct);
}

static void link_checks(struct doctor *d)
{
	struct hs_tr_config cfg;
	struct hs_transport *t = NULL;
	struct hs_statvfs vfs;
	struct check *conn = NULL;
	char err[1024], where[PATH_MAX + 32], fix[600];
	double rtt[RTT_SAMPLES], t_ms;
	hs_deadline_t dl;
	int64_t t0;
	int fd, r, i, n = 0;
	const char *skip_why = "no connection";

	/* dial what the mount dials (transport/agent.c, sftp.c) */
	dial_where(d, where, sizeof(where));
	dl = hs_deadline_in_ms(d->connect_timeout_ms);
	t0 = hs_now_ns();
	if (d->kind == HS_TR_AGENT_UNIX) {
		fd = hs_dial_unix(d->host, dl, err, sizeof(err));
	} else if (d->kind == HS_TR_AGENT_VSOCK) {
		char *end;
		unsigned long cid = strtoul(d->host, &end, 10);

		if (!d->host[0] || *end || cid > UINT32_MAX) {
			snprintf(err, sizeof(err), "invalid vsock cid '%s'",
				 d->host);
			fd = -EINVAL;
		} else {
			fd = hs_dial_vsock((unsigned)cid, (unsigned)d->port, dl,
					   err, sizeof(err));
		}
	} else {
		fd = hs_dial_tcp(d->host, d->port, dl, err, sizeof(err));
	}
	if (fd < 0) {
		dial_fix(d, fd, fix, sizeof(fix));
		conn = add(d, "connect", V_FAIL, fix, "%s", err);
		hostkey_na(d);
		goto skip_all;
	}
	t_ms = ms_since(t0);
	close(fd);
	/* the socket answered; turned into a failure below if SSH or the
	 * agent does not */
	conn = add(d, "connect", V_OK, NULL, "%s answered in %.1f ms", where,
		   t_ms);
	set_value(conn, t_ms);
	hostkey_na(d);

	fill_cfg(d, &cfg);

	dl = hs_deadline_in_ms(d->connect_timeout_ms);
	err[0] = '\0';
	r = hs_tr_open(&cfg, dl, &t, err, sizeof(err));
	if (r < 0) {
		/* TCP worked: the SSH layer failed */
		int stage = classify_open_error(d, err);

		if (stage == 0 && conn) {
			conn->v = V_FAIL;
			snprintf(conn->detail, sizeof(conn->detail),
				 "%s answered in %.1f ms, but: %s",
				 d->kind == HS_TR_AGENT_UNIX ? "the socket" :
				 d->kind == HS_TR_AGENT_VSOCK ? "vsock" : "TCP",
				 t_ms, err);
			if (agent_net(d)) {
				agent_fix(d, conn->fix, sizeof(conn->fix));
				skip_why = "no agent session";
			} else {
				snprintf(conn->fix, sizeof(conn->fix),
					 "the host accepts TCP but SSH does not answer in time: check sshd on the host, or a stalled link");
				skip_why = "no SSH session";
			}
		}
		goto skip_all;
	}
	if (agent_net(d)) {
		if (d->kind == HS_TR_AGENT_VSOCK)
			add(d, "auth", V_SKIP, NULL,
			    "not applicable: a vsock agent checks the peer's CID (--allow-cid), not a token");
		else if (d->token_file[0])
			add(d, "auth", V_OK, NULL,
			    "the agent accepted the token in %s", d->token_file);
		else
			add(d, "auth", V_OK, NULL, "the agent asked for no token");
		goto folder_ok;
	}
	if (d->policy == HS_HOSTKEY_NO)
		add(d, "hostkey", V_WARN,
		    "use StrictHostKeyChecking=yes or accept-new: without it anyone on the path can pose as the host",
		    "not checked (StrictHostKeyChecking=no)");
	else
		add(d, "hostkey", V_OK, NULL, "matches %s",
		    d->known_hosts[0] ? d->known_hosts : "~/.ssh/known_hosts");
	add(d, "auth", V_OK, NULL, "logged in as %s",
	    d->user[0] ? d->user : "the local user");
	if (d->kind == HS_TR_AGENT_SSH)
		add(d, "agent", V_OK, NULL, "'%s --stdio' runs on the host",
		    d->agent_command[0] ? d->agent_command : "hostshare-agent");
folder_ok:
	add(d, "folder", V_OK, NULL, "'%s' exists",
	    d->dir[0] ? d->dir : "(login folder)");

	for (i = 0; i < RTT_SAMPLES; i++) {
		dl = hs_deadline_in_ms(d->timeout_ms);
		t0 = hs_now_ns();
		r = hs_tr_ping(t, dl);
		if (r < 0)
			break;
		rtt[n++] = ms_since(t0);
	}
	if (r < 0) {
		add(d, "rtt", V_FAIL,
		    "the link stalls: check the network between guest and host",
		    "round trip %d of %d failed: %s", n + 1, RTT_SAMPLES,
		    strerror(-r));
		skip_why = "the link failed";
		goto skip_rest;
	}
	qsort(rtt, (size_t)n, sizeof(rtt[0]), cmp_double);
	set_value(add(d, "rtt", rtt[n / 2] > RTT_WARN_MS ? V_WARN : V_OK,
		      "a VM link should answer in under a millisecond: check for a slow route or an overloaded host",
		      "%.2f ms median of %d round trips (max %.2f ms)",
		      rtt[n / 2], n, rtt[n - 1]), rtt[n / 2]);

	if (d->no_write || d->ro) {
		const char *why = d->ro ? "read-only mount" : "--no-write";

		add(d, "upload", V_SKIP, NULL, "%s", why);
		add(d, "download", V_SKIP, NULL, "%s", why);
		add(d, "clock", V_SKIP, NULL, "%s", why);
	} else {
		probe_data(d, t);
	}

	dl = hs_deadline_in_ms(d->timeout_ms);
	r = hs_tr_statvfs(t, "/", &vfs, dl);
	if (r == -ENOTSUP || r == -EOPNOTSUPP)
		add(d, "host_space", V_SKIP, NULL,
		    "the host's server does not report free space");
	else if (r < 0)
		add(d, "host_space", V_WARN, "check the link", "cannot ask: %s",
		    strerror(-r));
	else
		space_check(d, "host_space", vfs.bavail * vfs.frsize,
			    vfs.blocks * vfs.frsize, "on the host",
			    "free space in the host folder: the flusher stops with ENOSPC when it is full");
	hs_tr_close(t);
	return;

skip_all:
	for (i = 0; i < 5; i++) {
		static const char *const names[] = { "hostkey", "auth", "agent",
						     "folder", "rtt" };
		size_t k;
		int seen = 0;

		for (k = 0; k < d->n; k++)
			if (!strcmp(d->checks[k].name, names[i]))
				seen = 1;
		if (!strcmp(names[i], "agent") && d->kind != HS_TR_AGENT_SSH)
			seen = 1; /* only -o agent has this check */
		if (!seen)
			add(d, names[i], V_SKIP, NULL, "%s", skip_why);
	}
skip_rest:
	add(d, "upload", V_SKIP, NULL, "%s", skip_why);
	add(d, "download", V_SKIP, NULL, "%s", skip_why);
	add(d, "clock", V_SKIP, NULL, "%s", skip_why);
	add(d, "host_space", V_SKIP, NULL, "%s", skip_why);
	hs_tr_close(t);
}

/* ---- local checks ---- */

static void cache_space(struct doctor *d)
{
	char path[PATH_MAX], *slash;
	struct statvfs sv;

	snprintf(path, sizeof(path), "%s", d->cache_dir[0] ? d->cache_dir :
			 d->cache_root);
	/* the nearest folder that exists: a source never mounted has none */
	while (statvfs(path, &sv) < 0) {
		slash = strrchr(path, '/');
		if (!slash || slash == path) {
			snprintf(path, sizeof(path), "/");
			if (statvfs(path, &sv) < 0) {
				add(d, "cache_space", V_SKIP, NULL,
				    "cannot find the cache folder");
				return;
			}
			break;
		}
		*slash = '\0';
	}
	space_check(d, "cache_space", (uint64_t)sv.f_bavail * sv.f_frsize,
		    (uint64_t)sv.f_blocks * sv.f_frsize, path,
		    "free space on the guest disk holding the cache (or move it with -o cache_dir=)");
}

/* A mount only: what is pending against the room the cache may use
 * (cache_size= when set, and never more than the cache disk's size less
 * the floor it keeps free, min_free=).  Pending data stays in the cache
 * until the host has it, so once it fills that room writers are held
 * back: more than half of it pending is a warning. */
static void cache_limit(struct doctor *d)
{
	char b1[32], b2[32], b3[32], b4[32], why[160];
	uint64_t total, room;
	struct statvfs sv;

	if (!d->is_mount)
		return;
	if (!d->have_limits || !d->cache_dir[0] || statvfs(d->cache_dir, &sv) < 0) {
		add(d, "cache_limit", V_SKIP, NULL,
		    "the mount does not say its cache limits");
		return;
	}
	total = (uint64_t)sv.f_blocks * sv.f_frsize;
	room = total > d->disk_min_free ? total - d->disk_min_free : 0;
	if (d->cache_limit && d->cache_limit < room) {
		room = d->cache_limit;
		snprintf(why, sizeof(why), "cache_size=%s",
			 human_bytes(d->cache_limit, b3, sizeof(b3)));
	} else {
		snprintf(why, sizeof(why), "the cache disk's %s less the %s it keeps free",
			 human_bytes(total, b3, sizeof(b3)),
			 human_bytes(d->disk_min_free, b4, sizeof(b4)));
	}
	set_value(add(d, "cache_limit",
		      d->pending_bytes > room / 2 ? V_WARN : V_OK,
		      "changes not on the host stay in the cache, and writers wait once they fill it: raise -o cache_size= or lower -o min_free=, or put cache_dir= on a bigger disk",
		      "%s pending of the %s the cache may use (%s)%s",
		      human_bytes(d->pending_bytes, b1, sizeof(b1)),
		      human_bytes(room, b2, sizeof(b2)), why,
		      d->pending_bytes > room / 2 ? ": more than half of it" : ""),
		  room ? 100.0 * (double)d->pending_bytes / (double)room : 100.0);
}

static void memory(struct doctor *d)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256], b1[32], b2[32];
	uint64_t total = 0, avail = 0, stotal = 0, sfree = 0, v;
	double pct;

	if (!f) {
		add(d, "memory", V_SKIP, NULL, "cannot read /proc/meminfo");
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %" SCNu64, &v) == 1)
			total = v * 1024;
		else if (sscanf(line, "MemAvailable: %" SCNu64, &v) == 1)
			avail = v * 1024;
		else if (sscanf(line, "SwapTotal: %" SCNu64, &v) == 1)
			stotal = v * 1024;
		else if (sscanf(line, "SwapFree: %" SCNu64, &v) == 1)
			sfree = v * 1024;
	}
	fclose(f);
	pct = total ? 100.0 * (double)avail / (double)total : 0;
	set_value(add(d, "memory", pct < LOW_SPACE_PCT ? V_WARN : V_OK,
		      "the guest is short of memory: give the VM more, or stop what uses it (the cache itself lives on disk)",
		      "%s available of %s (%.0f %%)",
		      human_bytes(avail, b1, sizeof(b1)),
		      human_bytes(total, b2, sizeof(b2)), pct), pct);
	if (!stotal) {
		add(d, "swap", V_OK, NULL, "no swap configured");
		return;
	}
	pct = 100.0 * (double)(stotal - sfree) / (double)stotal;
	set_value(add(d, "swap", pct > 50 ? V_WARN : V_OK,
		      "the guest is swapping: everything slows down; give the VM more memory",
		      "%s of %s in use (%.0f %%)",
		      human_bytes(stotal - sfree, b1, sizeof(b1)),
		      human_bytes(stotal, b2, sizeof(b2)), pct), pct);
}

static void unescape_mountinfo(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static int hypervisor_fs(const char *type)
{
	static const char *const types[] = {
		"vmhgfs", "fuse.vmhgfs-fuse", "vboxsf", "9p", "virtiofs",
		"prl_fs", "fuse.vmware-vmblock",
	};
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(types); i++)
		if (!strcmp(type, types[i]))
			return 1;
	return 0;
}

/* 1 if @a is @b or a folder below it. */
static int path_within(const char *a, const char *b)
{
	size_t n = strlen(b);

	if (!strcmp(b, "/"))
		return 1;
	return !strncmp(a, b, n) && (a[n] == '\0' || a[n] == '/');
}

/* Appends "TYPE on PATH" to the comma-separated @list if it fits. */
static void append_item(char *list, size_t size, const char *type,
			const char *mp)
{
	size_t n = strlen(list), t = strlen(type), m = strlen(mp);

	if (n + t + m + 7 >= size)
		return;
	if (n) {
		memcpy(list + n, ", ", 2);
		n += 2;
	}
	memcpy(list + n, type, t);
	memcpy(list + n + t, " on ", 4);
	memcpy(list + n + t + 4, mp, m + 1);
}

static void shared_folders(struct doctor *d)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], list[400] = "", top_type[64] = "";
	enum verdict v = V_OK;
	const char *fix = NULL;
	int found = 0;

	if (!f) {
		add(d, "shared_folders", V_SKIP, NULL,
		    "cannot read /proc/self/mountinfo");
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char *fld[12], *p, *save = NULL, *type = NULL;
		size_t nf = 0, i;
		char mp[PATH_MAX];

		for (p = strtok_r(line, " \n", &save); p && nf < 12;
		     p = strtok_r(NULL, " \n", &save))
			fld[nf++] = p;
		if (nf < 7)
			continue;
		for (i = 6; i + 1 < nf; i++)
			if (!strcmp(fld[i], "-")) {
				type = fld[i + 1];
				break;
			}
		if (!type)
			continue;
		snprintf(mp, sizeof(mp), "%s", fld[4]);
		unescape_mountinfo(mp);
		if (d->is_mount && !strcmp(mp, d->mountpoint))
			snprintf(top_type, sizeof(top_type), "%s", type);
		if (!hypervisor_fs(type))
			continue;
		found++;
		append_item(list, sizeof(list), type, mp);
		if (!d->is_mount)
			continue;
		if (!strcmp(mp, d->mountpoint)) {
			v = V_FAIL;
			fix = "unmount the hypervisor's shared folder from this path (and remove it from fstab): two filesystems on one path hide each other";
		} else if ((path_within(mp, d->mountpoint) ||
			    path_within(d->mountpoint, mp)) && v != V_FAIL) {
			v = V_WARN;
			fix = "mount the hypervisor's shared folder elsewhere, or not at all: nested shared folders confuse tools and users";
		}
	}
	fclose(f);
	if (d->is_mount && top_type[0] && hypervisor_fs(top_type)) {
		v = V_FAIL;
		fix = "unmount the hypervisor's shared folder from this path: it is mounted over hostshare and hides it";
	}
	if (!found)
		add(d, "shared_folders", V_OK, NULL,
		    "no hypervisor shared folder (vmhgfs, vboxsf, 9p, virtiofs) is mounted");
	else if (v == V_OK)
		add(d, "shared_folders", V_OK, NULL, "%s (not over this mount)",
		    list);
	else
		add(d, "shared_folders", v, fix, "%s%s", list,
		    v == V_FAIL ? " (on the same path)" : " (nested with this mount)");
}

/* Reads the journal facts of an unmounted source's cache database,
 * opened read-only (hs_cache_journal_info(), the call the daemon answers
 * with too).  1 read, 0 no database, -1 could not (message in @err). */
static int read_db(struct doctor *d, char *err, size_t errlen)
{
	struct hs_cache_journal_info ji;
	int r = hs_cache_journal_info(NULL, d->cache_dir, &ji, err, errlen);

	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return -1;
	d->pending_ops = ji.pending_ops;
	d->failed_ops = ji.failed_ops;
	d->oldest_age_ms = ji.oldest_age_ms;
	d->earlier_mount_ops = ji.earlier_mount_ops;
	snprintf(d->refused, sizeof(d->refused), "%s", ji.refused);
	return 1;
}

/* Pending work and refused entries: from the daemon for a mountpoint,
 * from the cache database for a source that is not mounted. */
static void journal(struct doctor *d)
{
	char err[512], age[96], b1[32];
	enum verdict v = V_OK;
	struct check *c;
	int64_t age_s;
	int r = 1;

	if (!d->is_mount) {
		r = read_db(d, err, sizeof(err));
		if (r == 0) {
			add(d, "journal", V_OK, NULL,
			    "no cache of this source on this guest");
			add(d, "errors", V_OK, NULL, "none recorded");
			return;
		}
		if (r < 0 && strstr(err, "in use")) {
			add(d, "journal", V_SKIP, NULL, "%s", err);
			add(d, "errors", V_SKIP, NULL, "%s", err);
			return;
		}
		if (r < 0) {
			add(d, "journal", V_WARN,
			    "run as the user who mounted the source (or root)",
			    "cannot read '%s/meta.db': %s", d->cache_dir, err);
			add(d, "errors", V_SKIP, NULL, "journal not readable");
			return;
		}
	}
	age_s = d->oldest_age_ms >= 0 ? d->oldest_age_ms / 1000 : -1;
	if (age_s >= 0)
		snprintf(age, sizeof(age), ", the oldest %" PRId64 " s old",
			 age_s);
	else
		age[0] = '\0';
	if (d->earlier_mount_ops)
		snprintf(age + strlen(age), sizeof(age) - strlen(age),
			 ", %" PRIu64 " from an earlier mount",
			 d->earlier_mount_ops);
	if (d->pending_ops &&
	    (age_s >= JOURNAL_AGE_WARN_S || d->earlier_mount_ops))
		v = V_WARN;
	c = add(d, "journal", v,
		      d->is_mount ?
		      "changes are not reaching the host: see the checks above, then 'hostsharectl flush --wait'" :
		      "mount the source: pending changes are sent by its next mount",
		      "%" PRIu64 " operations pending%s%s%s", d->pending_ops,
		      d->have_status ? ", " : "",
		      d->have_status ? human_bytes(d->pending_bytes, b1,
						   sizeof(b1)) : "",
		      age);
	if (age_s >= 0)
		set_value(c, (double)age_s);

	if (d->failed_ops)
		add(d, "errors", V_WARN,
		    "see the log (journalctl -t hostshare) and fix the cause on the host; refused operations stay in the journal",
		    "%" PRIu64 " operations the host refused%s%s%s%s",
		    d->failed_ops, d->refused[0] ? ": " : "", d->refused,
		    d->st_last_error[0] ? "; last error: " : "",
		    d->st_last_error);
	else if (d->st_last_error[0])
		add(d, "errors", strcmp(d->st_link, "connected") ? V_WARN : V_OK,
		    "see the log (journalctl -t hostshare)",
		    "last error: %s", d->st_last_error);
	else
		add(d, "errors", V_OK, NULL, "none");
}

/* ---- output ---- */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static int report(const struct doctor *d)
{
	size_t i;
	int failed = 0, first = 1;

	for (i = 0; i < d->n; i++)
		failed |= d->checks[i].v == V_FAIL;
	if (json_out) {
		printf("{\"target\":");
		json_str(d->is_mount ? d->mountpoint : d->target);
		printf(",\"source\":");
		json_str(d->source);
		printf(",\"ok\":%s,\"failed\":[", failed ? "false" : "true");
		for (i = 0; i < d->n; i++) {
			if (d->checks[i].v != V_FAIL)
				continue;
			printf("%s", first ? "" : ",");
			json_str(d->checks[i].name);
			first = 0;
		}
		printf("],\"checks\":[");
		for (i = 0; i < d->n; i++) {
			const struct check *c = &d->checks[i];

			printf("%s{\"name\":", i ? "," : "");
			json_str(c->name);
			printf(",\"verdict\":\"%s\",\"detail\":",
			       verdict_name[c->v]);
			json_str(c->detail);
			printf(",\"fix\":");
			json_str(c->fix);
			if (c->has_value && isfinite(c->value))
				printf(",\"value\":%.3f", c->value);
			printf("}");
		}
		printf("]}\n");
		return failed;
	}
	if (d->is_mount)
		printf("%s: %s", d->mountpoint, d->source);
	else
		printf("%s", d->source);
	if (d->kind == HS_TR_SFTP || d->kind == HS_TR_AGENT_SSH)
		printf(" (port %d%s)\n", d->port,
		       d->kind == HS_TR_AGENT_SSH ? ", hostshare-agent over ssh" : "");
	else
		printf(" (hostshare-agent)\n");
	for (i = 0; i < d->n; i++) {
		const struct check *c = &d->checks[i];

		printf("%-5s %-15s %s\n", c->v == V_FAIL ? "FAIL" :
		       c->v == V_WARN ? "warn" : verdict_name[c->v], c->name,
		       c->detail);
		if (c->fix[0])
			printf("%-21s fix: %s\n", "", c->fix);
	}
	return failed;
}

/* ---- entry ---- */

void hs_doctor_usage(FILE *f)
{
	fputs(" hostsharectl doctor [--json] [--timeout SECONDS] [--no-write] MOUNTPOINT\n"
	      "       hostsharectl doctor [--json] [--timeout SECONDS] [--no-write]\n"
	      "                           [-p PORT] [-o OPTIONS] SOURCE\n"
	      "  SOURCE: [user@]host:[dir] (-o agent: hostshare-agent over ssh),\n"
	      "          tcp://HOST:PORT/dir, unix:/path.sock:/dir, vsock://CID:PORT/dir\n"
	      "\n"
	      "Checks the link to the host the way the mount dials it, the host key\n"
	      "and login (SSH) or the token (agent), round-trip time,\n"
	      "throughput both ways, clock skew, free space on host and guest, memory,\n"
	      "hypervisor shared folders on the same path, pending work and errors;\n"
	      "a verdict and a fix each.  Writes one probe file (.hs-doctor.*) in the\n"
	      "remote folder and removes it (--no-write: none).  Exit 1 if a check\n"
	      "failed.  See hostsharectl(1).\n",
	      f);
}

int hs_doctor_main(int argc, char **argv)
{
	static struct doctor d; /* large */
	const char *target = NULL;
	struct stat st;
	double secs;
	char *end;
	int i, r;
	size_t k;

	d.port = 22;
	d.kind = HS_TR_SFTP;
	d.connect_timeout_ms = 10000;
	d.timeout_ms = 10000;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs("usage:", stdout);
			hs_doctor_usage(stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			json_out = 1;
		} else if (!strcmp(a, "--no-write")) {
			d.no_write = 1;
		} else if (!strcmp(a, "--timeout") || !strcmp(a, "-p") ||
			   !strcmp(a, "-o")) {
			if (++i >= argc)
				usage_error("option '%s' needs a value", a);
			if (!strcmp(a, "-o")) {
				parse_o(&d, argv[i]);
			} else if (!strcmp(a, "-p")) {
				set_opt(&d, "port", argv[i]);
			} else {
				errno = 0;
				secs = strtod(argv[i], &end);
				if (!argv[i][0] || *end || errno ||
				    !isfinite(secs) || secs <= 0 || secs > 3600)
					usage_error("invalid value '%s' for option '--timeout'",
						    argv[i]);
				d.timeout_ms = (int)(secs * 1000 + 0.5);
			}
		} else if (!strncmp(a, "-o", 2)) {
			parse_o(&d, a + 2);
		} else if (a[0] == '-' && a[1]) {
			usage_error("unknown option '%s'", a);
		} else if (!target) {
			target = a;
		} else {
			usage_error("unexpected argument '%s'", a);
		}
	}
	if (!target)
		usage_error("missing MOUNTPOINT or SOURCE");
	snprintf(d.target, sizeof(d.target), "%s", target);
	signal(SIGPIPE, SIG_IGN);

	/* a folder is a mountpoint; anything with ':' that is not a folder
	 * is a source */
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode)) {
		d.is_mount = 1;
		from_mount(&d);
		if (!d.mountpoint[0] && !realpath(target, d.mountpoint))
			snprintf(d.mountpoint, sizeof(d.mountpoint), "%s",
				 target);
	} else if (strchr(target, ':')) {
		/* [user@]host:[dir], or an agent source (tcp://, unix:,
		 * vsock://) */
		parse_source(&d, target);
		source_cache_dir(&d);
	} else {
		fatal("'%s' does not exist", target);
	}
	if (d.connect_timeout_ms <= 0)
		d.connect_timeout_ms = 10000;
	if (!d.is_mount && d.agent_flag) {
		if (d.kind != HS_TR_SFTP)
			usage_error("option 'agent' applies to ssh sources only");
		d.kind = HS_TR_AGENT_SSH;
	}
	if (!d.is_mount && d.token_file[0] &&
	    d.kind != HS_TR_AGENT_TCP && d.kind != HS_TR_AGENT_UNIX)
		usage_error("option 'token_file' applies to tcp:// and unix: sources only");
	if (d.port <= 0 && (d.kind == HS_TR_SFTP || d.kind == HS_TR_AGENT_SSH))
		d.port = 22;

	r = hs_tr_global_init();
	if (r < 0)
		fatal("cannot initialise libssh2");
	if (d.is_mount) {
		const char *link = d.st_link[0] ? d.st_link : "unknown";

		add(&d, "link", strcmp(link, "connected") ? V_FAIL : V_OK,
		    "the mount cannot reach its host: the checks below say why; it keeps working from its cache and catches up once the host is back",
		    "%s%s%s%s%s", link, d.st_since[0] ? " since " : "",
		    d.st_since,
		    strcmp(link, "connected") && d.st_last_error[0] ? ": " : "",
		    strcmp(link, "connected") ? d.st_last_error : "");
	}
	link_checks(&d);
	cache_space(&d);
	cache_limit(&d);
	memory(&d);
	shared_folders(&d);
	journal(&d);
	hs_tr_global_exit();

	r = report(&d);
	for (k = 0; k < d.n_identity; k++)
		free(d.identity[k]);
	fflush(stdout);
	return r ? 1 : 0;
}
