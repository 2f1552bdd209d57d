/* SPDX-License-Identifier: MIT
 * fs/main.c - the mount program: hostshare [options] SOURCE MOUNTPOINT.
 *
 * Order of events:
 *   1. parse and check the command line (opts.c): bad options, a missing
 *      mountpoint, a source without ':' fail here, in the foreground;
 *   2. unless -f/-d: fork.  The parent only waits on a pipe for the child's
 *      one-line verdict ("OK" or "ERR <message>") and exits 0 or 1 with that
 *      message; so `hostshare ... && ls MOUNTPOINT` works, and a failure is
 *      one line on the caller's stderr.  The fork comes before any thread or
 *      library initialisation;
 *   3. the child (setsid) opens the cache, which connects to the host, then
 *      creates the FUSE session, starts the control socket and mounts;
 *   4. it reports, detaches stdio and runs the multi-threaded FUSE loop
 *      until unmounted or signalled.  A daemon logs to syslog from the
 *      fork on (-f/-d: stderr);
 *   5. shutdown: control socket, unmount, session, cache (pending host work
 *      stays in the journal for the next mount).
 *
 * Signals: SIGINT/SIGTERM/SIGHUP are blocked from the start so every thread
 * the cache and the control socket create inherits the block, and libfuse's
 * handlers (which end the loop) run on the main thread once the loop starts.
 * A signal that arrives while connecting takes effect when the loop starts,
 * i.e. at most ConnectTimeout later.
 *
 * Not done here: anything of the host or the cache beyond filling their
 * configuration structs; fs/ never calls the transport.
 */
#include "fs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ctl.h"
#include "common/version.h"

/* One line for the user; room for a full path plus words. */
#define ERRLEN (PATH_MAX + 1024)

/* ---- readiness pipe ---- */

/* The parent's side: waits for the child's verdict and exits with it. */
static int wait_for_daemon(int fd)
{
	char buf[ERRLEN + 16];
	size_t n = 0;
	ssize_t r;

	while (n + 1 < sizeof(buf)) {
		r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (memchr(buf, '\n', n))
			break;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (!strcmp(buf, "OK"))
		return 0;
	if (!strncmp(buf, "ERR ", 4))
		fprintf(stderr, "hostshare: %s\n", buf + 4);
	else
		fprintf(stderr,
			"hostshare: daemon exited before the mount was ready\n");
	return 1;
}

/* Forks.  Returns in the child only, with the write end of the pipe. */
static int spawn_daemon(int *ret_fd)
{
	int p[2];
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid > 0) {
		close(p[1]);
		exit(wait_for_daemon(p[0]));
	}
	close(p[0]);
	setsid();
	/* The caller's terminal gets the one verdict line and nothing else;
	 * what the cache logs while connecting goes to syslog already. */
	hs_log_set_syslog(1);
	*ret_fd = p[1];
	return 0;
}

/* Tells the waiting parent (or, in the foreground, the terminal) how it
 * went.  @msg NULL means ready.  Closes the pipe. */
static void report(int *fd, const char *msg)
{
	char line[ERRLEN + 16];
	int n;

	if (*fd < 0) {
		if (msg)
			fprintf(stderr, "hostshare: %s\n", msg);
		return;
	}
	n = msg ? snprintf(line, sizeof(line), "ERR %s\n", msg) :
		  snprintf(line, sizeof(line), "OK\n");
	if (n < 0 || (size_t)n >= sizeof(line)) {
		line[sizeof(line) - 2] = '\n';
		n = (int)sizeof(line) - 1;
	}
	if (write(*fd, line, (size_t)n) < 0) {
		/* the parent is gone; nobody to tell */
	}
	close(*fd);
	*fd = -1;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	hs_log_set_syslog(1);
	if (chdir("/") < 0) {
		/* keeps the old folder busy; harmless */
	}
}

/* ---- FUSE arguments ---- */

/* Appends @s to @out with ',' and '\' escaped as fuse_opt expects. */
static void add_escaped(char *out, size_t size, const char *s)
{
	size_t n = strlen(out);

	for (; *s && n + 3 < size; s++) {
		if (*s == ',' || *s == '\\')
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n] = '\0';
}

static void build_mount_opts(const struct hs_opts *o, char *buf, size_t size)
{
	snprintf(buf, size, "fsname=");
	add_escaped(buf, size, o->fsname ? o->fsname : o->source);
	strncat(buf, ",subtype=", size - strlen(buf) - 1);
	add_escaped(buf, size, o->subtype ? o->subtype : "hostshare");
	if (o->allow_other)
		strncat(buf, ",allow_other", size - strlen(buf) - 1);
	if (o->allow_root)
		strncat(buf, ",allow_root", size - strlen(buf) - 1);
	if (o->default_permissions)
		strncat(buf, ",default_permissions", size - strlen(buf) - 1);
	if (o->ro)
		strncat(buf, ",ro", size - strlen(buf) - 1);
}

/* ---- the daemon ---- */

static int run(const struct hs_opts *o, struct hs_fs *fs,
	       const char *cache_dir, int report_fd)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct hs_cache_config cc;
	struct hs_tr_config tr;
	struct fuse_loop_config *loop_cfg;
	struct fuse_session *se;
	char err[ERRLEN], mount_opts[2048];
	sigset_t sigs;
	int r, ret = 1;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&tr, 0, sizeof(tr));
	tr.kind = o->kind;
	tr.host = o->host;
	tr.port = o->port;
	tr.user = o->user;
	tr.root = o->dir;
	tr.identity_files = (const char *const *)o->identity_files;
	tr.known_hosts = o->known_hosts;
	tr.hostkey_policy = o->hostkey_policy;
	tr.connect_timeout_ms = o->connect_timeout_ms;
	tr.keepalive_s = o->keepalive_s;
	tr.use_agent = 1;
	tr.token_file = o->token_file;
	tr.agent_command = o->agent_command;
	tr.no_compression = !o->compression;

	memset(&cc, 0, sizeof(cc));
	cc.dial = NULL;
	cc.dir = cache_dir;
	cc.source = o->source;
	cc.tr = &tr;
	cc.op_timeout_ms = o->op_timeout_ms;
	cc.attr_timeout_ms = o->attr_timeout_ms;
	cc.writeback_delay_ms = o->writeback_delay_ms;
	cc.cache_size = o->cache_size;
	cc.min_free = o->min_free;
	cc.min_free_pct = o->min_free_pct;
	cc.flush_connections = o->flush_connections;
	cc.connect_timeout_ms = o->connect_timeout_ms;
	cc.allow_offline = o->allow_offline;
	cc.fsync_mode = o->fsync_mode;
	cc.idmap_user = o->idmap_user;
	cc.local_uid = (uint32_t)getuid();
	cc.local_gid = (uint32_t)getgid();
	cc.force_uid = -1;
	cc.force_gid = -1;
	fs->hostev = hs_hostev_new(fs);
	if (fs->hostev) {
		cc.on_host_change = hs_hostev_push;
		cc.on_host_change_arg = fs->hostev;
	}
	if (o->idmap_user) {
		/* uid=/gid= name the local owner of the login user's files */
		if (o->uid >= 0)
			cc.local_uid = (uint32_t)o->uid;
		if (o->gid >= 0)
			cc.local_gid = (uint32_t)o->gid;
	} else {
		/* no mapping: uid=/gid= own every file */
		cc.force_uid = o->uid;
		cc.force_gid = o->gid;
	}

	fs->opts = o;
	fs->op_timeout_ms = o->op_timeout_ms;
	fs->umask = o->umask >= 0 ? (mode_t)o->umask : 0;

	err[0] = '\0';
	r = hs_cache_open(&cc, &fs->cache, err, sizeof(err));
	if (r < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "cannot open the cache: %s",
				 strerror(-r));
		report(&report_fd, err);
		return 1;
	}

	build_mount_opts(o, mount_opts, sizeof(mount_opts));
	if (fuse_opt_add_arg(&args, "hostshare") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, mount_opts) < 0 ||
	    (o->debug && fuse_opt_add_arg(&args, "-d") < 0)) {
		report(&report_fd, "out of memory");
		goto out_cache;
	}
	se = fuse_session_new(&args, &hs_fs_ops, sizeof(hs_fs_ops), fs);
	if (!se) {
		report(&report_fd, "cannot create the FUSE session");
		goto out_args;
	}
	fs->se = se;
	if (fuse_set_signal_handlers(se) < 0) {
		report(&report_fd, "cannot install signal handlers");
		goto out_session;
	}
	r = hs_ctl_start(fs, err, sizeof(err));
	if (r < 0) {
		report(&report_fd, err);
		goto out_signals;
	}
	if (fuse_session_mount(se, fs->mountpoint) < 0) {
		snprintf(err, sizeof(err), "cannot mount on '%s'%s",
			 fs->mountpoint,
			 o->allow_other && getuid() != 0 ?
			 " (allow_other needs user_allow_other in /etc/fuse.conf)" :
			 "");
		report(&report_fd, err);
		goto out_ctl;
	}

	if (report_fd >= 0) {
		report(&report_fd, NULL);
		detach_stdio();
	}
	hs_notice("mounted %s on %s (cache %s)", o->source, fs->mountpoint,
		  cache_dir);
	if (fs->hostev && hs_hostev_start(fs->hostev) < 0)
		hs_warn("host changes will not reach inotify watchers: "
			"cannot start a thread");

	loop_cfg = fuse_loop_cfg_create();
	if (!loop_cfg) {
		hs_err("cannot create the FUSE loop configuration");
		goto out_unmount;
	}
	fuse_loop_cfg_set_max_threads(loop_cfg, (unsigned)o->max_threads);
	fuse_loop_cfg_set_clone_fd(loop_cfg, 0);
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
	r = fuse_session_loop_mt(se, loop_cfg);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	fuse_loop_cfg_destroy(loop_cfg);
	if (r < 0)
		hs_err("FUSE loop failed: %s", strerror(-r));
	else
		ret = 0;
	hs_notice("unmounting %s", fs->mountpoint);

out_unmount:
	hs_ctl_stop(fs); /* no more status calls into the cache */
	fuse_session_unmount(se);
	hs_hostev_stop(fs->hostev, fuse_session_fd(se));
out_ctl:
	hs_ctl_stop(fs); /* no-op when already stopped */
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	fs->se = NULL;
out_args:
	fuse_opt_free_args(&args);
out_cache:
	hs_hostev_stop(fs->hostev, -1);
	hs_cache_close(fs->cache);
	fs->cache = NULL;
	hs_hostev_free(fs->hostev);
	fs->hostev = NULL;
	return ret;
}

int main(int argc, char **argv)
{
	static struct hs_fs fs; /* large (two PATH_MAX buffers) */
	char err[ERRLEN], cache_dir[PATH_MAX];
	struct hs_opts o;
	int report_fd = -1, r;

	r = hs_opts_parse(argc, argv, &o, err, sizeof(err));
	if (r < 0) {
		if (r == -ENOMEM)
			snprintf(err, sizeof(err), "out of memory");
		fprintf(stderr, "hostshare: %s\n", err);
		hs_opts_release(&o);
		return 1;
	}
	if (o.show_help || o.show_version) {
		if (o.show_help)
			hs_opts_print_help(stdout);
		else
			hs_print_versions(stdout, "hostshare",
					  fuse_pkgversion());
		hs_opts_release(&o);
		return 0;
	}
	hs_log_set_level(o.loglevel);

	if (hs_opts_check_mountpoint(&o, fs.mountpoint, sizeof(fs.mountpoint),
				     err, sizeof(err)) < 0 ||
	    hs_opts_cache_folder(&o, cache_dir, sizeof(cache_dir), err,
				 sizeof(err)) < 0)
		goto fail;
	/* Name the control socket now: once mounted, realpath() of the
	 * mountpoint would ask this very process. */
	r = hs_ctl_socket_path(fs.mountpoint, geteuid(), fs.ctl_path,
			       sizeof(fs.ctl_path));
	if (r < 0) {
		snprintf(err, sizeof(err),
			 "cannot name the control socket of '%s': %s",
			 fs.mountpoint, strerror(-r));
		goto fail;
	}

	if (!o.foreground) {
		r = spawn_daemon(&report_fd);
		if (r < 0) {
			snprintf(err, sizeof(err), "cannot fork: %s",
				 strerror(-r));
			goto fail;
		}
	}
	r = run(&o, &fs, cache_dir, report_fd);
	hs_opts_release(&o);
	return r;

fail:
	fprintf(stderr, "hostshare: %s\n", err);
	hs_opts_release(&o);
	return 1;
}
