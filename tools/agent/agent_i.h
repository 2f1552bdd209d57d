/* SPDX-License-Identifier: MIT
 * tools/agent/agent_i.h - what main.c (options, listeners) and serve.c
 * (one client connection) share inside hostshare-agent.
 */
#ifndef HS_AGENT_I_H
#define HS_AGENT_I_H

#include <stdint.h>

/* Fixed after startup; read by every connection thread. */
struct hs_agent {
	int rootfd;          /* O_PATH|O_DIRECTORY of --root */
	int read_only;       /* --read-only */
	const char *token;   /* NULL: no token asked (vsock, stdio) */
	uint32_t features;   /* what this agent offers */
};

/* Serves one client on @rfd/@wfd (the same socket, or stdin/stdout) until
 * it disconnects or breaks the protocol; closes both.  @label names the
 * client in log lines ("tcp 127.0.0.1:4711"). */
void hs_agent_serve(const struct hs_agent *a, int rfd, int wfd,
		    const char *label, int need_token);

#endif
