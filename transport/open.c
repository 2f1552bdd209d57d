/* SPDX-License-Identifier: MIT
 * transport/open.c - hs_tr_open(): picks the wire named by cfg->kind, and
 * the process-wide library setup.
 *
 * Each wire provides one constructor with the hs_tr_open() signature
 * (hs_sftp_open() in sftp.c, hs_agent_open() in agent.c).  The constructor owns all of the connect sequence and fills @err
 * with the single user-facing line; this file only validates and
 * dispatches.
 *
 * Return codes of hs_tr_open(), beyond those listed in transport.h:
 *   -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH, -ENETUNREACH  dialing
 *   -EPROTO    ssh handshake or sftp subsystem start failed
 *   -EPERM     host key refused (unknown under StrictHostKeyChecking=yes,
 *              or different from the one in known_hosts)
 *   -EACCES    no authentication method was accepted
 *   -ENOENT / -ENOTDIR   the remote folder is missing / not a folder
 *   -EINVAL    bad configuration (unknown kind, no host)
 *
 * Thread model: hs_tr_global_init()/exit() once per process, from the main
 * thread, before/after any transport exists; hs_tr_open() from any thread.
 */
#include "transport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh2.h>

#include "agent_i.h"
#include "sftp_i.h"

int hs_tr_open(const struct hs_tr_config *cfg, hs_deadline_t dl,
	       struct hs_transport **ret, char *err, size_t errlen)
{
	char dummy[8];

	*ret = NULL;
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (!cfg) {
		snprintf(err, errlen, "no transport configuration");
		return -EINVAL;
	}
	if (hs_deadline_passed(dl)) {
		snprintf(err, errlen, "connecting timed out");
		return -ETIMEDOUT;
	}
	switch (cfg->kind) {
	case HS_TR_SFTP:
		return hs_sftp_open(cfg, dl, ret, err, errlen);
	case HS_TR_AGENT_TCP:
	case HS_TR_AGENT_UNIX:
	case HS_TR_AGENT_VSOCK:
	case HS_TR_AGENT_SSH:
		return hs_agent_open(cfg, dl, ret, err, errlen);
	}
	snprintf(err, errlen, "unknown transport kind %d", (int)cfg->kind);
	return -EINVAL;
}

int hs_tr_global_init(void)
{
	return libssh2_init(0) == 0 ? 0 : -EIO;
}

void hs_tr_global_exit(void)
{
	libssh2_exit();
}

static int bad_source(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int bad_source(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* "HOST:PORT[/dir]" after "tcp://", "CID:PORT[/dir]" after "vsock://". */
static int parse_agent_net(const char *s, const char *host,
			   struct hs_tr_source *ret, char *err, size_t errlen)
{
	int vsock = ret->kind == HS_TR_AGENT_VSOCK;
	const char *end, *port, *dir;
	char *pend;
	long long n;

	if (*host == '[') {
		end = strchr(host, ']');
		if (!end || end[1] != ':')
			goto bad;
		host++;
		port = end + 2;
	} else {
		end = strchr(host, ':');
		if (!end)
			goto bad;
		port = end + 1;
	}
	if (end == host)
		goto bad;
	dir = strchrnul(port, '/');
	errno = 0;
	n = strtoll(port, &pend, 10);
	if (pend == port || pend != dir || errno || n < (vsock ? 0 : 1) ||
	    n > (vsock ? INT32_MAX : 65535))
		return bad_source(err, errlen, "source '%s' has a bad port", s);
	if (vsock) {
		long long cid;

		errno = 0;
		cid = strtoll(host, &pend, 10);
		if (pend != end || pend == host || errno || cid < 0 ||
		    cid > UINT32_MAX)
			return bad_source(err, errlen,
					  "source '%s' has a bad vsock cid", s);
	}
	ret->host = host;
	ret->host_len = (size_t)(end - host);
	ret->port = (int)n;
	ret->dir = dir;
	return 0;
bad:
	return bad_source(err, errlen, "source '%s' is malformed (expected %s)",
			  s, vsock ? "vsock://CID:PORT/dir" : "tcp://HOST:PORT/dir");
}

int hs_tr_parse_source(const char *s, struct hs_tr_source *ret, char *err,
		       size_t errlen)
{
	const char *at = NULL, *host, *end, *p;

	memset(ret, 0, sizeof(*ret));
	if (!strncmp(s, "tcp://", 6) || !strncmp(s, "vsock://", 8)) {
		ret->kind = s[0] == 't' ? HS_TR_AGENT_TCP : HS_TR_AGENT_VSOCK;
		return parse_agent_net(s, s + (s[0] == 't' ? 6 : 8), ret, err,
				       errlen);
	}
	if (!strncmp(s, "unix:", 5)) {
		/* the last ':' starts the folder: a socket path may hold ':' */
		host = s + 5;
		end = strrchr(host, ':');
		ret->kind = HS_TR_AGENT_UNIX;
		ret->host = host;
		ret->host_len = end ? (size_t)(end - host) : strlen(host);
		ret->dir = end ? end + 1 : "";
		if (!ret->host_len)
			return bad_source(err, errlen, "source '%s' names no socket "
					  "(expected unix:/path/to.sock:/dir)", s);
		return 0;
	}
	ret->kind = HS_TR_SFTP;
	/* A user name never holds ':' or '[', so the last '@' before either
	 * ends it; a '@' in the dir part is left alone. */
	for (p = s; *p && *p != ':' && *p != '['; p++)
		if (*p == '@')
			at = p;
	host = at ? at + 1 : s;
	if (*host == '[') {
		end = strchr(host, ']');
		if (!end)
			return bad_source(err, errlen,
					  "source '%s' has an unclosed '['", s);
		if (end[1] != ':')
			goto no_colon;
		host++;
		ret->dir = end + 2;
	} else {
		end = strchr(host, ':');
		if (!end)
			goto no_colon;
		ret->dir = end + 1;
	}
	if (at && at == s)
		return bad_source(err, errlen,
				  "source '%s' has an empty user name", s);
	if (end == host)
		return bad_source(err, errlen, "source '%s' names no host", s);
	ret->host = host;
	ret->host_len = (size_t)(end - host);
	if (at) {
		ret->user = s;
		ret->user_len = (size_t)(at - s);
	}
	return 0;
no_colon:
	return bad_source(err, errlen,
			  "source '%s' has no ':' (expected [user@]host:[dir])", s);
}
