/* SPDX-License-Identifier: MIT
 * fs/ctl_doctor.c - the "doctor" request of the control socket: tells
 * `hostsharectl doctor` how this mount reaches its host, so that the
 * doctor can open a connection of its own with the same settings and
 * measure the link without disturbing the mount's connections.
 *
 * Answer: one flat JSON object
 *   {"host":..., "port":N, "user":..., "dir":..., "identity_files":N,
 *    "identity_file_1":..., ..., "known_hosts":..., "hostkey_policy":
 *    "yes"|"accept-new"|"no", "connect_timeout_ms":N, "op_timeout_ms":N,
 *    "ro":bool, "uid":N, "oldest_pending_age_ms":N (-1: none),
 *    "earlier_mount_ops":N, "refused":"'path': error; ...",
 *    "kind":"sftp"|"agent-tcp"|"agent-unix"|"agent-vsock"|"agent-ssh",
 *    "token_file":..., "agent_command":..., "compression":bool}
 * (known_hosts "" = the default ~/.ssh/known_hosts; no identity files =
 * the agent and ~/.ssh defaults; for agent-unix "host" is the socket
 * path, for agent-vsock the CID; token_file "" = none).  No secrets are
 * sent: paths only, never the token itself.
 *
 * Thread model: a control client thread; reads the options (read-only
 * after start) and the journal facts of hs_cache_journal_info().  Never
 * touches the network.
 */
#include "ctl_doctor.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct dbuf {
	char s[8192];
	size_t n;
	int full;
};

static void put(struct dbuf *b, const char *s, size_t len)
{
	if (b->full || b->n + len + 3 > sizeof(b->s)) {
		b->full = 1;
		return;
	}
	memcpy(b->s + b->n, s, len);
	b->n += len;
}

static void key(struct dbuf *b, const char *k)
{
	put(b, b->n > 1 ? ",\"" : "\"", b->n > 1 ? 2 : 1);
	put(b, k, strlen(k));
	put(b, "\":", 2);
}

static void str(struct dbuf *b, const char *k, const char *v)
{
	char esc[8];

	key(b, k);
	put(b, "\"", 1);
	for (; v && *v; v++) {
		unsigned char ch = (unsigned char)*v;

		if (ch == '"' || ch == '\\') {
			esc[0] = '\\';
			esc[1] = (char)ch;
			put(b, esc, 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", ch);
			put(b, esc, 6);
		} else {
			put(b, (const char *)&ch, 1);
		}
	}
	put(b, "\"", 1);
}

static void num(struct dbuf *b, const char *k, int64_t v)
{
	char s[32];

	key(b, k);
	snprintf(s, sizeof(s), "%" PRId64, v);
	put(b, s, strlen(s));
}

static const char *policy_name(enum hs_tr_hostkey_policy p)
{
	switch (p) {
	case HS_HOSTKEY_ACCEPT_NEW: return "accept-new";
	case HS_HOSTKEY_NO: return "no";
	default: return "yes";
	}
}

static const char *kind_name(enum hs_tr_kind k)
{
	switch (k) {
	case HS_TR_AGENT_TCP: return "agent-tcp";
	case HS_TR_AGENT_UNIX: return "agent-unix";
	case HS_TR_AGENT_VSOCK: return "agent-vsock";
	case HS_TR_AGENT_SSH: return "agent-ssh";
	default: return "sftp";
	}
}

void hs_ctl_doctor(struct hs_fs *fs, int fd)
{
	const struct hs_opts *o = fs->opts;
	struct hs_cache_journal_info ji;
	char err[256];
	struct dbuf b = { .n = 0 };
	char k[48];
	size_t i, off = 0;
	ssize_t w;

	put(&b, "{", 1);
	str(&b, "host", o->host);
	num(&b, "port", o->port);
	str(&b, "user", hs_opts_effective_user(o));
	str(&b, "dir", o->dir ? o->dir : "");
	num(&b, "identity_files", (int64_t)o->n_identity_files);
	for (i = 0; i < o->n_identity_files; i++) {
		snprintf(k, sizeof(k), "identity_file_%zu", i + 1);
		str(&b, k, o->identity_files[i]);
	}
	str(&b, "known_hosts", o->known_hosts ? o->known_hosts : "");
	str(&b, "hostkey_policy", policy_name(o->hostkey_policy));
	num(&b, "connect_timeout_ms", o->connect_timeout_ms);
	num(&b, "op_timeout_ms", o->op_timeout_ms);
	key(&b, "ro");
	put(&b, o->ro ? "true" : "false", o->ro ? 4 : 5);
	num(&b, "uid", (int64_t)geteuid());
	str(&b, "kind", kind_name(o->kind));
	str(&b, "token_file", o->token_file ? o->token_file : "");
	str(&b, "agent_command", o->agent_command ? o->agent_command : "");
	key(&b, "compression");
	put(&b, o->compression ? "true" : "false", o->compression ? 4 : 5);
	if (hs_cache_journal_info(fs->cache, NULL, &ji, err,
				  sizeof(err)) == 0) {
		num(&b, "oldest_pending_age_ms", ji.oldest_age_ms);
		num(&b, "earlier_mount_ops", (int64_t)ji.earlier_mount_ops);
		str(&b, "refused", ji.refused);
	}
	if (b.full) {
		b.n = 0;
		b.full = 0;
		put(&b, "{\"error\":\"reply too long\"", 25);
	}
	put(&b, "}\n", 2);
	while (off < b.n) {
		w = send(fd, b.s + off, b.n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return; /* the client went away */
		off += (size_t)w;
	}
}
