/* SPDX-License-Identifier: MIT
 * tools/agent/agent_i.h - what main.c (options, listeners) and serve.c
 * (one client connection) share inside hostshare-agent.
 */
#ifndef HS_TOOLS_AGENT_I_H
#define HS_TOOLS_AGENT_I_H

#include <stddef.h>
#include <stdint.h>

/* Fixed after startup; read by every connection thread. */
struct hs_agent {
	int rootfd;          /* O_PATH|O_DIRECTORY of --root */
	int read_only;       /* --read-only */
	int allow_setid;     /* --allow-setid: modes keep S_ISUID/S_ISGID */
	const char *token;   /* NULL: no token asked (vsock, stdio) */
	uint32_t features;   /* what this agent offers */
};

/* Where watch.c sends NOTIFY payloads of one subscribed connection;
 * send() frames and writes them under the connection's write lock. */
struct hs_agent_sink {
	void (*send)(struct hs_agent_sink *sink, const uint8_t *payload,
		     size_t len);
};

/* watch.c: remembers the root's path (before any subscription). */
int hs_agent_watch_init(const char *root);
/* Adds @sink to the subscribers of the changes at and below folder @rel
 * (relative to the root, no leading '/'; "" for the root), starting the
 * watcher on first use. */
int hs_agent_subscribe(struct hs_agent_sink *sink, const char *rel);
/* Removes @sink; once this returns, send() is not called on it again. */
void hs_agent_unsubscribe(struct hs_agent_sink *sink);

/* Serves one client on @rfd/@wfd (the same socket, or stdin/stdout) until
 * it disconnects or breaks the protocol; closes both.  @label names the
 * client in log lines ("tcp 127.0.0.1:4711"). */
void hs_agent_serve(const struct hs_agent *a, int rfd, int wfd,
		    const char *label, int need_token);

#endif
