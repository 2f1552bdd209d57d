/* SPDX-License-Identifier: MIT
 * transport/dial.h - connect a stream socket before a deadline.
 *
 * Every dialer returns a connected, non-blocking, close-on-exec socket, or
 * -errno with one lowercase line for the user in @err:
 *   "cannot resolve host 'nas': name or service not known"
 *   "cannot connect to '10.0.0.2:22': connection refused"
 *   "cannot connect to '10.0.0.2:22': connection timed out"
 * Errors: -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH (also for a name that
 * does not resolve: the link class, so the owner retries with backoff),
 * -ENETUNREACH, -ENOMEM, -EINVAL.
 *
 * TCP, unix sockets and vsock (the agent's wires) share the connect-and-
 * poll step in dial.c.  A unix socket file that does not exist gives
 * -ECONNREFUSED (nobody listens), like a closed port.
 *
 * Thread model: any thread; no shared state.  A name lookup runs on a
 * short-lived helper thread so that a slow resolver cannot hold the caller
 * past @dl (the helper finishes on its own and frees its state).
 */
#ifndef HS_DIAL_H
#define HS_DIAL_H

#include <stddef.h>

#include "../common/common.h"

/* Connects to @host (name or address literal) port @port.  Each address
 * the name resolves to is tried in turn, sharing the time left fairly.
 * The socket has TCP_NODELAY and SO_KEEPALIVE set. */
int hs_dial_tcp(const char *host, int port, hs_deadline_t dl, char *err,
		size_t errlen);

/* Connects to the unix socket at @path. */
int hs_dial_unix(const char *path, hs_deadline_t dl, char *err,
		 size_t errlen);

/* Connects to vsock @cid:@port (-ENODEV/-EAFNOSUPPORT without vsock). */
int hs_dial_vsock(unsigned cid, unsigned port, hs_deadline_t dl, char *err,
		  size_t errlen);

/* Formats "host:port", or "[v6addr]:port" for a host containing ':', into
 * @buf; used by dialers and transports for messages. */
void hs_dial_hostport(char *buf, size_t size, const char *host, int port);

#endif
