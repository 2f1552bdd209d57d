/* SPDX-License-Identifier: MIT
 * tests/unit/test_opts.c - the mount program's command line: SOURCE
 * forms, -o options and their defaults, options mount(8) passes, and the
 * one-line errors for bad input.
 */
#include "fs/opts.h"
#include "tests/lib/check.h"

#include <stdarg.h>

static int parse(struct hs_opts *o, char *err, size_t errlen, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"hostshare";
	va_start(ap, errlen);
	while (argc < 31 && (argv[argc] = va_arg(ap, char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = 0;
	return hs_opts_parse(argc, argv, o, err, errlen);
}

#define PARSE(o, ...) parse(o, err, sizeof(err), __VA_ARGS__, (char *)NULL)

int main(void)
{
	struct hs_opts o;
	char err[256];

	CHECK_OK(PARSE(&o, "me@host:/srv/share", "/mnt"));
	CHECK_STR_EQ(o.user, "me");
	CHECK_STR_EQ(o.host, "host");
	CHECK_STR_EQ(o.dir, "/srv/share");
	CHECK_EQ(o.port, 22);
	CHECK_EQ(o.op_timeout_ms, 10000);
	CHECK_EQ(o.attr_timeout_ms, 20000);
	CHECK_EQ(o.writeback_delay_ms, 500);
	CHECK_EQ(o.hostkey_policy, HS_HOSTKEY_STRICT);
	CHECK_EQ(o.idmap_user, 1);
	CHECK_EQ(o.fsync_mode, HS_FSYNC_LOCAL);
	hs_opts_release(&o);

	CHECK_OK(PARSE(&o, "[::1]:", "/mnt", "-p", "2222", "-f"));
	CHECK(o.user == NULL);
	CHECK_STR_EQ(o.host, "::1");
	CHECK_STR_EQ(o.dir, "");
	CHECK_EQ(o.port, 2222);
	CHECK_EQ(o.foreground, 1);
	hs_opts_release(&o);

	/* mount.fuse3 puts -o last, and fstab carries mount(8)'s options */
	CHECK_OK(PARSE(&o, "h:d", "/mnt", "-o",
		       "rw,_netdev,nofail,x-systemd.automount,noauto,user,"
		       "op_timeout=3,attr_timeout=0.5,writeback_delay=0,"
		       "StrictHostKeyChecking=accept-new,fsync=host,idmap=none,"
		       "uid=1000,gid=1000,allow_other"));
	CHECK_EQ(o.op_timeout_ms, 3000);
	CHECK_EQ(o.attr_timeout_ms, 500);
	CHECK_EQ(o.writeback_delay_ms, 0);
	CHECK_EQ(o.hostkey_policy, HS_HOSTKEY_ACCEPT_NEW);
	CHECK_EQ(o.fsync_mode, HS_FSYNC_HOST);
	CHECK_EQ(o.idmap_user, 0);
	CHECK_EQ(o.uid, 1000);
	CHECK_EQ(o.allow_other, 1);
	CHECK_EQ(o.default_permissions, 1);
	hs_opts_release(&o);

	/* agent sources */
	CHECK_OK(PARSE(&o, "tcp://127.0.0.1:7000/srv/x", "/mnt", "-o",
		       "token_file=/etc/tok,compression=no"));
	CHECK_EQ(o.kind, HS_TR_AGENT_TCP);
	CHECK_STR_EQ(o.host, "127.0.0.1");
	CHECK_EQ(o.port, 7000);
	CHECK_STR_EQ(o.dir, "/srv/x");
	CHECK_STR_EQ(o.token_file, "/etc/tok");
	CHECK_EQ(o.compression, 0);
	hs_opts_release(&o);
	CHECK_OK(PARSE(&o, "tcp://[::1]:7000", "/mnt"));
	CHECK_STR_EQ(o.host, "::1");
	CHECK_STR_EQ(o.dir, "");
	CHECK_EQ(o.compression, 1);
	hs_opts_release(&o);
	CHECK_OK(PARSE(&o, "unix:/run/a.sock:/d", "/mnt"));
	CHECK_EQ(o.kind, HS_TR_AGENT_UNIX);
	CHECK_STR_EQ(o.host, "/run/a.sock");
	CHECK_STR_EQ(o.dir, "/d");
	hs_opts_release(&o);
	CHECK_OK(PARSE(&o, "vsock://2:5000/data", "/mnt"));
	CHECK_EQ(o.kind, HS_TR_AGENT_VSOCK);
	CHECK_STR_EQ(o.host, "2");
	CHECK_EQ(o.port, 5000);
	hs_opts_release(&o);
	CHECK_OK(PARSE(&o, "me@h:d", "/mnt", "-o", "agent,agent_command=/x/a"));
	CHECK_EQ(o.kind, HS_TR_AGENT_SSH);
	CHECK_EQ(o.agent_ssh, 1);
	CHECK_STR_EQ(o.agent_command, "/x/a");
	hs_opts_release(&o);
	CHECK(PARSE(&o, "tcp://h/x", "/mnt") < 0);
	CHECK(strstr(err, "tcp://HOST:PORT/dir"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "tcp://h:99999/x", "/mnt") < 0);
	CHECK(strstr(err, "port"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "vsock://x:1/", "/mnt") < 0);
	CHECK(strstr(err, "cid"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "unix::/d", "/mnt") < 0);
	hs_opts_release(&o);
	CHECK(PARSE(&o, "tcp://h:1/", "/mnt", "-o", "agent") < 0);
	CHECK(strstr(err, "agent"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:d", "/mnt", "-o", "token_file=/t") < 0);
	hs_opts_release(&o);

	/* the cache disk's floor: a size or a share of the disk */
	CHECK_OK(PARSE(&o, "h:", "/mnt"));
	CHECK_EQ(o.min_free, 0);
	CHECK_EQ(o.min_free_pct, 0);
	hs_opts_release(&o);
	CHECK_OK(PARSE(&o, "h:", "/mnt", "-o", "min_free=256M"));
	CHECK_EQ(o.min_free, 256ULL << 20);
	CHECK_EQ(o.min_free_pct, 0);
	hs_opts_release(&o);
	CHECK_OK(PARSE(&o, "h:", "/mnt", "-o", "min_free=1G,min_free=5%"));
	CHECK_EQ(o.min_free, 0);
	CHECK_EQ(o.min_free_pct, 5);
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:", "/mnt", "-o", "min_free=95%") < 0);
	CHECK(strstr(err, "min_free"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:", "/mnt", "-o", "min_free=%") < 0);
	hs_opts_release(&o);

	/* bad input: an error line, never a crash */
	CHECK(PARSE(&o, "nocolon", "/mnt") < 0);
	CHECK(strstr(err, "nocolon"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:", "/mnt", "-o", "bogus=1") < 0);
	CHECK(strstr(err, "unknown option 'bogus"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:", "/mnt", "-o", "op_timeout=abc") < 0);
	CHECK(strstr(err, "op_timeout"));
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:", "/mnt", "-o", "StrictHostKeyChecking=maybe") < 0);
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:", "/mnt", "-p", "99999") < 0);
	hs_opts_release(&o);
	CHECK(PARSE(&o, "h:") < 0);
	hs_opts_release(&o);
	printf("test_opts: ok\n");
	return 0;
}
