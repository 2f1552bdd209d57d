/* SPDX-License-Identifier: MIT
 * fs/opts.c - command line of the mount program: argv -> struct hs_opts,
 * the mountpoint check, and the name of the per-source cache folder.
 *
 * Grammar: hostshare [options] SOURCE MOUNTPOINT, with options allowed
 * anywhere (mount.fuse3 puts "-o ..." after the two positionals) and "--"
 * ending them.  -o takes a comma-separated list; "\," is a literal comma.
 * Option names are case-sensitive and spelled as ssh(1) and FUSE spell
 * them.  Options mount(8) and systemd pass to every helper (_netdev, nofail,
 * x-systemd.*, ...) are accepted and ignored.
 *
 * Threads: main() only, before any thread exists.  Not done here: opening
 * anything, talking to the host, deciding defaults that depend on the
 * cache (those live in main.c).
 */
#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int set_str(char **dst, const char *src, size_t len)
{
	char *s = strndup(src, len);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static const char *home_dir(void)
{
	const char *h = getenv("HOME");
	struct passwd *pw;

	if (h && *h == '/')
		return h;
	pw = getpwuid(getuid());
	return pw && pw->pw_dir ? pw->pw_dir : "/";
}

/* Makes @path absolute (relative to the current folder; "~/" is the home
 * folder) and stores it in *dst.  The daemon changes to "/" later, so every
 * path option must be absolute by then. */
static int set_path(char **dst, const char *path)
{
	char cwd[PATH_MAX];
	char *s;

	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
		if (asprintf(&s, "%s%s", home_dir(), path + 1) < 0)
			return -ENOMEM;
	} else if (path[0] == '/') {
		s = strdup(path);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		if (asprintf(&s, "%s/%s", cwd, path) < 0)
			return -ENOMEM;
	}
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int bad_value(char *err, size_t errlen, const char *name,
		     const char *value)
{
	return fail(err, errlen, "invalid value '%s' for option '%s'", value,
		    name);
}

/* A whole decimal number in [min, max]. */
static int parse_ll(const char *s, long long min, long long max,
		    long long *ret)
{
	char *end;
	long long v;

	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* "123", "64K", "512M", "20G", "1T" (powers of 1024); 0 is "no limit". */
static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*ret = (uint64_t)v << shift;
	return 0;
}

static int parse_int(const char *s, int min, int max, int *ret)
{
	long long v;

	if (parse_ll(s, min, max, &v) < 0)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* Seconds, fractions allowed, into ms in [min_ms, max_ms]. */
static int parse_seconds(const char *s, int min_ms, int max_ms, int *ret_ms,
			 double *ret_s)
{
	char *end;
	double v;

	if (!*s || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < 0 ||
	    v * 1000.0 > (double)max_ms || (long long)(v * 1000.0 + 0.5) < min_ms)
		return -EINVAL;
	*ret_ms = (int)(v * 1000.0 + 0.5); /* no libm */
	if (ret_s)
		*ret_s = v;
	return 0;
}

/* "yes"/"no" as ssh(1) writes them. */
static int parse_bool(const char *s, int *ret)
{
	if (!strcmp(s, "yes") || !strcmp(s, "1") || !strcmp(s, "true"))
		*ret = 1;
	else if (!strcmp(s, "no") || !strcmp(s, "0") || !strcmp(s, "false"))
		*ret = 0;
	else
		return -EINVAL;
	return 0;
}

/* ---- SOURCE ---- */

/* [user@]host:[dir] or an agent source (hs_tr_parse_source()). */
static int parse_source(struct hs_opts *o, const char *s, char *err,
			size_t errlen)
{
	struct hs_tr_source src;
	int r = hs_tr_parse_source(s, &src, err, errlen);

	if (r < 0)
		return r;
	o->kind = src.kind;
	if (src.kind != HS_TR_SFTP) /* ssh's port is an option (22) */
		o->port = src.port;
	if ((r = set_str(&o->source, s, strlen(s))) < 0 ||
	    (r = set_str(&o->host, src.host, src.host_len)) < 0 ||
	    (r = set_str(&o->dir, src.dir, strlen(src.dir))) < 0)
		return r;
	if (src.user && (r = set_str(&o->user, src.user, src.user_len)) < 0)
		return r;
	return 0;
}

/* ---- -o options ---- */

/* Options mount(8), mount.fuse3 and systemd hand to every helper. */
static int ignored_option(const char *name)
{
	static const char *const exact[] = {
		"_netdev", "nofail", "noauto", "auto", "user", "users",
		"nouser", "defaults", "exec", "noexec", "dev", "nodev",
		"suid", "nosuid", "atime", "noatime", "relatime",
		"strictatime", "nodiratime", "sync", "async", "comment",
	};
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(exact); i++)
		if (!strcmp(name, exact[i]))
			return 1;
	return !strncmp(name, "x-systemd.", 10) ||
	       !strncmp(name, "x-gvfs-", 7);
}

static int add_identity(struct hs_opts *o, const char *path)
{
	char **v = realloc(o->identity_files,
			   (o->n_identity_files + 2) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	o->identity_files = v;
	v[o->n_identity_files] = NULL;
	v[o->n_identity_files + 1] = NULL;
	if (set_path(&v[o->n_identity_files], path) < 0)
		return -ENOMEM;
	o->n_identity_files++;
	return 0;
}

enum opt_kind {
	FLAG,  /* takes no value */
	VALUE, /* needs "=value" */
};

/* Applies one "name" or "name=value" option. */
static int apply_option(struct hs_opts *o, const char *opt, char *err,
			size_t errlen)
{
	static const struct {
		const char *name;
		enum opt_kind kind;
	} known[] = {
		{ "port", VALUE }, { "IdentityFile", VALUE },
		{ "UserKnownHostsFile", VALUE },
		{ "StrictHostKeyChecking", VALUE },
		{ "ServerAliveInterval", VALUE }, { "ConnectTimeout", VALUE },
		{ "cache_dir", VALUE }, { "op_timeout", VALUE },
		{ "attr_timeout", VALUE }, { "writeback_delay", VALUE },
		{ "flush_connections", VALUE }, { "cache_size", VALUE },
		{ "min_free", VALUE },
		{ "fsync", VALUE }, { "idmap", VALUE }, { "uid", VALUE },
		{ "gid", VALUE }, { "umask", VALUE }, { "allow_other", FLAG },
		{ "allow_root", FLAG }, { "default_permissions", FLAG },
		{ "no_default_permissions", FLAG },
		{ "ro", FLAG }, { "rw", FLAG }, { "max_threads", VALUE },
		{ "offline", VALUE }, { "loglevel", VALUE },
		{ "fsname", VALUE }, { "subtype", VALUE },
		{ "token_file", VALUE }, { "compression", VALUE },
		{ "agent", FLAG }, { "agent_command", VALUE },
	};
	char name[64];
	const char *eq = strchr(opt, '='), *v = eq ? eq + 1 : NULL;
	size_t n = eq ? (size_t)(eq - opt) : strlen(opt), i;
	long long ll;
	int r = 0;

	if (n == 0 && !eq)
		return 0; /* "-o a,,b" */
	if (n >= sizeof(name))
		return fail(err, errlen, "unknown option '%s'", opt);
	memcpy(name, opt, n);
	name[n] = '\0';
	if (ignored_option(name))
		return 0;
	for (i = 0; i < HS_ARRAY_SIZE(known); i++)
		if (!strcmp(name, known[i].name))
			break;
	if (i == HS_ARRAY_SIZE(known))
		return fail(err, errlen, "unknown option '%s'", name);
	if (known[i].kind == FLAG && v)
		return fail(err, errlen, "option '%s' takes no value", name);
	if (known[i].kind == VALUE && !v)
		return fail(err, errlen, "option '%s' needs a value", name);

	if (!strcmp(name, "port")) {
		r = parse_int(v, 1, 65535, &o->port);
	} else if (!strcmp(name, "IdentityFile")) {
		if (!*v)
			r = -EINVAL;
		else if (add_identity(o, v) < 0)
			return -ENOMEM;
	} else if (!strcmp(name, "UserKnownHostsFile")) {
		if (!*v)
			r = -EINVAL;
		else if (set_path(&o->known_hosts, v) < 0)
			return -ENOMEM;
	} else if (!strcmp(name, "StrictHostKeyChecking")) {
		if (!strcmp(v, "yes"))
			o->hostkey_policy = HS_HOSTKEY_STRICT;
		else if (!strcmp(v, "accept-new"))
			o->hostkey_policy = HS_HOSTKEY_ACCEPT_NEW;
		else if (!strcmp(v, "no") || !strcmp(v, "off"))
			o->hostkey_policy = HS_HOSTKEY_NO;
		else
			r = -EINVAL;
	} else if (!strcmp(name, "ServerAliveInterval")) {
		r = parse_int(v, 0, 86400, &o->keepalive_s);
	} else if (!strcmp(name, "ConnectTimeout")) {
		r = parse_seconds(v, 1, 3600 * 1000, &o->connect_timeout_ms,
				  NULL);
	} else if (!strcmp(name, "cache_dir")) {
		if (!*v)
			r = -EINVAL;
		else if (set_path(&o->cache_root, v) < 0)
			return -ENOMEM;
	} else if (!strcmp(name, "op_timeout")) {
		r = parse_seconds(v, 1, 3600 * 1000, &o->op_timeout_ms, NULL);
	} else if (!strcmp(name, "attr_timeout")) {
		r = parse_seconds(v, 0, 86400 * 1000, &o->attr_timeout_ms,
				  &o->attr_timeout_s);
	} else if (!strcmp(name, "writeback_delay")) {
		r = parse_int(v, 0, 3600 * 1000, &o->writeback_delay_ms);
	} else if (!strcmp(name, "cache_size")) {
		r = parse_size(v, &o->cache_size);
	} else if (!strcmp(name, "min_free")) {
		size_t len = strlen(v);
		int pct;

		o->min_free = 0;
		o->min_free_pct = 0;
		if (len > 1 && v[len - 1] == '%') {
			char num[16];

			r = len - 1 < sizeof(num) ? 0 : -EINVAL;
			if (r == 0) {
				memcpy(num, v, len - 1);
				num[len - 1] = 0;
				r = parse_int(num, 1, 90, &pct);
			}
			if (r == 0)
				o->min_free_pct = (unsigned)pct;
		} else {
			r = parse_size(v, &o->min_free);
		}
	} else if (!strcmp(name, "flush_connections")) {
		r = parse_int(v, 1, HS_FLUSH_CONNECTIONS_MAX, &o->flush_connections);
	} else if (!strcmp(name, "fsync")) {
		if (!strcmp(v, "local"))
			o->fsync_mode = HS_FSYNC_LOCAL;
		else if (!strcmp(v, "host"))
			o->fsync_mode = HS_FSYNC_HOST;
		else
			r = -EINVAL;
	} else if (!strcmp(name, "idmap")) {
		if (!strcmp(v, "user"))
			o->idmap_user = 1;
		else if (!strcmp(v, "none"))
			o->idmap_user = 0;
		else
			r = -EINVAL;
	} else if (!strcmp(name, "uid") || !strcmp(name, "gid")) {
		r = parse_ll(v, 0, (long long)UINT32_MAX - 1, &ll);
		if (!r)
			*(name[0] == 'u' ? &o->uid : &o->gid) = ll;
	} else if (!strcmp(name, "umask")) {
		char *end;
		long m;

		errno = 0;
		m = strtol(v, &end, 8);
		if (!*v || *end || errno || m < 0 || m > 0777)
			r = -EINVAL;
		else
			o->umask = (int)m;
	} else if (!strcmp(name, "allow_other")) {
		o->allow_other = 1;
	} else if (!strcmp(name, "allow_root")) {
		o->allow_root = 1;
	} else if (!strcmp(name, "default_permissions")) {
		o->default_permissions = 1;
		o->no_default_permissions = 0;
	} else if (!strcmp(name, "no_default_permissions")) {
		o->default_permissions = 0;
		o->no_default_permissions = 1;
	} else if (!strcmp(name, "ro")) {
		o->ro = 1;
	} else if (!strcmp(name, "rw")) {
		o->ro = 0;
	} else if (!strcmp(name, "max_threads")) {
		r = parse_int(v, 1, 1024, &o->max_threads);
	} else if (!strcmp(name, "offline")) {
		r = parse_bool(v, &o->allow_offline);
	} else if (!strcmp(name, "loglevel")) {
		static const struct {
			const char *n;
			enum hs_log_level l;
		} lv[] = { { "error", HS_LOG_ERR }, { "warning", HS_LOG_WARNING },
			   { "notice", HS_LOG_NOTICE }, { "info", HS_LOG_INFO },
			   { "debug", HS_LOG_DEBUG } };

		r = -EINVAL;
		for (i = 0; i < HS_ARRAY_SIZE(lv); i++)
			if (!strcmp(v, lv[i].n)) {
				o->loglevel = lv[i].l;
				r = 0;
			}
	} else if (!strcmp(name, "fsname")) {
		if (!*v)
			r = -EINVAL;
		else if (set_str(&o->fsname, v, strlen(v)) < 0)
			return -ENOMEM;
	} else if (!strcmp(name, "token_file")) {
		if (!*v)
			r = -EINVAL;
		else if (set_path(&o->token_file, v) < 0)
			return -ENOMEM;
	} else if (!strcmp(name, "compression")) {
		r = parse_bool(v, &o->compression);
	} else if (!strcmp(name, "agent")) {
		o->agent_ssh = 1;
	} else if (!strcmp(name, "agent_command")) {
		if (!*v)
			r = -EINVAL;
		else if (set_str(&o->agent_command, v, strlen(v)) < 0)
			return -ENOMEM;
	} else if (!strcmp(name, "subtype")) {
		if (!*v)
			r = -EINVAL;
		else if (set_str(&o->subtype, v, strlen(v)) < 0)
			return -ENOMEM;
	}
	if (r < 0)
		return bad_value(err, errlen, name, v);
	return 0;
}

/* Splits "a,b=c\,d" into options and applies each. */
static int apply_option_list(struct hs_opts *o, const char *list, char *err,
			     size_t errlen)
{
	size_t len = strlen(list), n = 0;
	char *opt = malloc(len + 1);
	const char *p;
	int r = 0;

	if (!opt)
		return -ENOMEM;
	for (p = list;; p++) {
		if (*p == '\\' && (p[1] == ',' || p[1] == '\\')) {
			opt[n++] = *++p;
			continue;
		}
		if (*p == ',' || *p == '\0') {
			opt[n] = '\0';
			r = apply_option(o, opt, err, errlen);
			if (r < 0 || *p == '\0')
				break;
			n = 0;
			continue;
		}
		opt[n++] = *p;
	}
	free(opt);
	return r;
}

/* ---- argv ---- */

static void init_defaults(struct hs_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->port = 22;
	o->loglevel = HS_LOG_NOTICE;
	o->hostkey_policy = HS_HOSTKEY_STRICT;
	o->keepalive_s = 15;
	o->connect_timeout_ms = 10 * 1000;
	o->op_timeout_ms = 10 * 1000;
	o->attr_timeout_ms = 20000;
	o->attr_timeout_s = 20.0;
	o->writeback_delay_ms = 500;
	o->flush_connections = 4;
	o->fsync_mode = HS_FSYNC_LOCAL;
	o->allow_offline = 1;
	o->idmap_user = 1;
	o->uid = -1;
	o->gid = -1;
	o->umask = -1;
	o->max_threads = 10;
	o->kind = HS_TR_SFTP;
	o->compression = 1;
}

int hs_opts_parse(int argc, char **argv, struct hs_opts *o, char *err,
		  size_t errlen)
{
	int i, r, only_positional = 0;
	const char *pos[2] = { NULL, NULL };
	int npos = 0;

	init_defaults(o);
	o->loglevel = 0; /* "not given"; the default depends on -d */
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (only_positional || a[0] != '-' || a[1] == '\0') {
			if (npos == 2)
				return fail(err, errlen,
					    "unexpected argument '%s'", a);
			pos[npos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_positional = 1;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			o->show_help = 1;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			o->show_version = 1;
		} else if (!strcmp(a, "-f")) {
			o->foreground = 1;
		} else if (!strcmp(a, "-d")) {
			o->foreground = 1;
			o->debug = 1;
		} else if (!strncmp(a, "-o", 2) || !strncmp(a, "-p", 2)) {
			const char *v = a[2] ? a + 2 : NULL;

			if (!v) {
				if (i + 1 >= argc)
					return fail(err, errlen,
						    "option '%s' needs a value",
						    a);
				v = argv[++i];
			}
			if (a[1] == 'p') {
				if (parse_int(v, 1, 65535, &o->port) < 0)
					return bad_value(err, errlen, "-p", v);
				continue;
			}
			r = apply_option_list(o, v, err, errlen);
			if (r < 0)
				return r;
		} else {
			return fail(err, errlen, "unknown option '%s'", a);
		}
	}
	if (!o->loglevel)
		o->loglevel = o->debug ? HS_LOG_DEBUG : HS_LOG_NOTICE;
	if (o->show_help || o->show_version)
		return 0;
	if (npos < 2)
		return fail(err, errlen, npos == 0 ?
			    "missing SOURCE and MOUNTPOINT (see 'hostshare --help')" :
			    "missing MOUNTPOINT (see 'hostshare --help')");
	r = parse_source(o, pos[0], err, errlen);
	if (r < 0)
		return r;
	r = set_str(&o->mountpoint, pos[1], strlen(pos[1]));
	if (r < 0)
		return r;
	if (o->agent_ssh && o->kind != HS_TR_SFTP)
		return fail(err, errlen, "option 'agent' applies to ssh "
				"sources ([user@]host:dir) only");
	if (o->token_file && (o->kind == HS_TR_SFTP ||
			      o->kind == HS_TR_AGENT_VSOCK))
		return fail(err, errlen, "option 'token_file' applies to "
				"tcp:// and unix: sources only");
	if (o->agent_ssh)
		o->kind = HS_TR_AGENT_SSH;
	/* Other users get in only with the kernel checking permissions
	 * (hostshare checks none itself), unless explicitly turned off. */
	if (o->allow_other && !o->no_default_permissions)
		o->default_permissions = 1;
	if (o->allow_other && o->allow_root)
		return fail(err, errlen,
			    "options 'allow_other' and 'allow_root' exclude each other");
	return 0;
}

int hs_opts_check_mountpoint(const struct hs_opts *o, char *buf, size_t size,
			     char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;

	if (stat(o->mountpoint, &st) < 0) {
		int e = errno;

		if (e == ENOENT)
			fail(err, errlen, "mountpoint '%s' does not exist",
			     o->mountpoint);
		else if (e == ENOTCONN)
			fail(err, errlen,
			     "mountpoint '%s' is a dead mount (run 'fusermount3 -u %s')",
			     o->mountpoint, o->mountpoint);
		else
			fail(err, errlen, "cannot access mountpoint '%s': %s",
			     o->mountpoint, strerror(e));
		return -e;
	}
	if (!S_ISDIR(st.st_mode)) {
		fail(err, errlen, "mountpoint '%s' is not a folder",
		     o->mountpoint);
		return -ENOTDIR;
	}
	if (!realpath(o->mountpoint, real)) {
		int e = errno;

		fail(err, errlen, "cannot resolve mountpoint '%s': %s",
		     o->mountpoint, strerror(e));
		return -e;
	}
	if (strlen(real) >= size) {
		fail(err, errlen, "mountpoint '%s' is too long", o->mountpoint);
		return -ENAMETOOLONG;
	}
	strcpy(buf, real);
	return 0;
}

const char *hs_opts_effective_user(const struct hs_opts *o)
{
	static char name[256];
	struct passwd *pw;
	const char *env;

	if (o->user)
		return o->user;
	if (!name[0]) {
		pw = getpwuid(getuid());
		env = getenv("USER");
		snprintf(name, sizeof(name), "%s",
			 pw && pw->pw_name ? pw->pw_name :
			 env && *env ? env : "user");
	}
	return name;
}

/* mkdir -p with mode 0700 for every folder it creates. */
static int mkdir_parents(const char *path)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path), i;

	if (len >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		tmp[i] = path[i];
	}
	return 0;
}

int hs_opts_cache_folder(const struct hs_opts *o, char *buf, size_t size,
			 char *err, size_t errlen)
{
	char root[PATH_MAX], label[96], *key;
	const char *user = hs_opts_effective_user(o), *xdg;
	struct stat st;
	size_t i;
	int n, r;

	if (o->cache_root)
		n = snprintf(root, sizeof(root), "%s", o->cache_root);
	else if (geteuid() == 0)
		n = snprintf(root, sizeof(root), "/var/cache/hostshare");
	else if ((xdg = getenv("XDG_CACHE_HOME")) && xdg[0] == '/')
		n = snprintf(root, sizeof(root), "%s/hostshare", xdg);
	else
		n = snprintf(root, sizeof(root), "%s/.cache/hostshare",
			     home_dir());
	if (n < 0 || (size_t)n >= sizeof(root))
		return fail(err, errlen, "cache folder name is too long");
	while (n > 1 && root[n - 1] == '/')
		root[--n] = '\0';

	r = mkdir_parents(root);
	if (r < 0) {
		fail(err, errlen, "cannot create cache folder '%s': %s", root,
		     strerror(-r));
		return r;
	}
	if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fail(err, errlen, "cache folder '%s' is not a folder", root);
		return -ENOTDIR;
	}

	/* A readable label plus a hash of everything that names the source,
	 * so the same source finds the same folder on every mount. */
	snprintf(label, sizeof(label), "%.40s@%.40s-%d", user, o->host,
		 o->port);
	for (i = 0; label[i]; i++) {
		unsigned char ch = (unsigned char)label[i];

		if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_' &&
		    ch != '@')
			label[i] = '_';
	}
	if (asprintf(&key, "%s@%s:%d:%s", user, o->host, o->port,
		     o->dir ? o->dir : "") < 0)
		return -ENOMEM;
	n = snprintf(buf, size, "%s/%s-%016" PRIx64, root, label,
		     hs_fnv1a64(key));
	free(key);
	if (n < 0 || (size_t)n >= size)
		return fail(err, errlen, "cache folder name is too long");
	return 0;
}

void hs_opts_print_help(FILE *f)
{
	fputs(
"usage: hostshare [options] SOURCE MOUNTPOINT\n"
"\n"
"Mounts a folder of a host over SSH/SFTP or the hostshare agent protocol.\n"
"Every operation is answered from a local cache; changes reach the host in\n"
"the background.\n"
"\n"
"SOURCE:\n"
"  [user@]host:[dir]        SFTP over SSH\n"
"  tcp://HOST:PORT/dir      a hostshare-agent listening on TCP\n"
"  unix:/path/to.sock:/dir  a hostshare-agent listening on a unix socket\n"
"  vsock://CID:PORT/dir     a hostshare-agent listening on vsock\n"
"\n"
"options:\n"
"  -h, --help               show this help and exit\n"
"  -V, --version            show versions and exit\n"
"  -f                       stay in the foreground\n"
"  -d                       foreground, with a debug log of every request\n"
"  -p PORT                  SSH port (same as -o port=PORT)\n"
"  -o OPT[,OPT...]          mount options:\n"
"\n"
"  port=N                   SSH port (22)\n"
"  IdentityFile=PATH        private key to try (repeatable; default: agent\n"
"                           and ~/.ssh keys)\n"
"  UserKnownHostsFile=PATH  known_hosts file (~/.ssh/known_hosts)\n"
"  StrictHostKeyChecking=yes|accept-new|no\n"
"                           host key policy (yes)\n"
"  ServerAliveInterval=S    keepalive interval in seconds, 0: off (15)\n"
"  ConnectTimeout=S         connect + login timeout in seconds (10)\n"
"  cache_dir=PATH           root of the cache folders (~/.cache/hostshare,\n"
"                           /var/cache/hostshare for root)\n"
"  op_timeout=S             give up on the host after S seconds: EIO (10)\n"
"  attr_timeout=S           trust host attributes and listings for S\n"
"                           seconds (20)\n"
"  writeback_delay=MS       age of a change before it is sent (500)\n"
"  cache_size=SIZE          most the cached data may take, e.g. 20G; clean\n"
"                           data is dropped to stay below (0: no limit)\n"
"  min_free=SIZE|N%         what the cache leaves free on its disk; clean\n"
"                           data is dropped to keep it (10%, at most 2G)\n"
"  flush_connections=N      SSH connections that send new files and a\n"
"                           file's pieces in parallel; more helps on a link\n"
"                           with latency (4)\n"
"  fsync=local|host         fsync waits for the guest disk or the host (local)\n"
"  idmap=user|none          show the login user's files as yours (user)\n"
"  uid=N, gid=N             idmap=user: the local owner to show;\n"
"                           idmap=none: owner of every file\n"
"  umask=OCTAL              mask applied to reported permissions\n"
"  allow_other              let other users in (implies default_permissions\n"
"                           unless no_default_permissions is given)\n"
"  allow_root               let root in\n"
"  default_permissions      let the kernel check permissions\n"
"  no_default_permissions   do not: every user may do what the mounting\n"
"                           user may\n"
"  ro, rw                   read-only or read-write mount (rw)\n"
"  max_threads=N            FUSE worker threads (10)\n"
"  offline=yes|no           start offline when the host is unreachable and\n"
"                           the cache holds the folder (yes)\n"
"  loglevel=LEVEL           error|warning|notice|info|debug (notice)\n"
"  agent                    ssh sources: run hostshare-agent on the host\n"
"                           through ssh instead of using SFTP\n"
"  agent_command=PATH       the agent program on the host (hostshare-agent)\n"
"  token_file=PATH          agent token (tcp:// and unix: sources)\n"
"  compression=yes|no       lz4 on the agent protocol (yes)\n"
"  fsname=NAME, subtype=NAME\n"
"                           names shown by mount and df (SOURCE, hostshare)\n"
"\n"
"Options mount(8) and systemd pass (_netdev, nofail, noauto, defaults,\n"
"x-systemd.*, ...) are accepted and ignored.\n", f);
}

void hs_opts_release(struct hs_opts *o)
{
	size_t i;

	free(o->source);
	free(o->mountpoint);
	free(o->user);
	free(o->host);
	free(o->dir);
	for (i = 0; i < o->n_identity_files; i++)
		free(o->identity_files[i]);
	free(o->identity_files);
	free(o->known_hosts);
	free(o->cache_root);
	free(o->fsname);
	free(o->subtype);
	free(o->token_file);
	free(o->agent_command);
	memset(o, 0, sizeof(*o));
}
