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

#include <stdio.h>

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
