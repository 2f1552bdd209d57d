/* SPDX-License-Identifier: MIT
 * tools/agent/main.c - hostshare-agent: serves one host folder to hostshare
 * mounts over the agent protocol (docs/protocol.md).
 *
 *   hostshare-agent --root DIR --listen vsock:PORT|tcp:ADDR:PORT|unix:PATH
 *                   [--read-only] [--token-file F] [--allow-cid N]...
 *   hostshare-agent --root DIR --stdio          (one client on stdin/stdout)
 *   hostshare-agent --version
 *
 * TCP and unix listeners need --token-file; vsock listeners accept the
 * peers named by --allow-cid (any peer when none is named).  One thread per
 * client.  Logs go to stderr; the line "listening on ..." is printed once
 * the listener is ready (with the port the kernel chose for tcp port 0).
 */
#include "common/version.h"
#include "agent_i.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/vm_sockets.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <lz4.h>

#include "common/proto.h"

#define MAX_CIDS 64

static struct hs_agent agent;
static unsigned allow_cids[MAX_CIDS];
static int n_allow_cids;

struct client {
	int fd;
	int need_token;
	char label[128];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hostshare-agent --root DIR --listen ADDR [options]\n"
		"       hostshare-agent --root DIR --stdio [--read-only]\n"
		"       hostshare-agent --version\n"
		"ADDR: vsock:PORT | tcp:HOST:PORT | unix:PATH | stdio\n"
		"options:\n"
		"  --read-only       refuse every change (EROFS)\n"
		"  --allow-setid     let clients set the setuid and setgid "
		"bits (stripped by default)\n"
		"  --token-file F    clients must present the token in F "
		"(required for tcp and unix)\n"
		"  --allow-cid N     vsock: accept only this peer CID "
		"(repeatable)\n"
		"  -v, --verbose     log every connection\n");
}

static int read_token(const char *path, char **ret)
{
	char buf[HS_PROTO_MAX_STR + 2];
	struct stat st;
	size_t n;
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "hostshare-agent: cannot read token file "
				"'%s': %s\n", path, strerror(errno));
		return -1;
	}
	/* a token others can read is no secret (issue 16, finding 15) */
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
		fprintf(stderr, "hostshare-agent: token file '%s' is "
				"accessible by group or others (mode %04o): "
				"chmod 600 it\n", path,
			(unsigned)(st.st_mode & 07777));
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && strchr(" \t\r\n", buf[n - 1]))
		buf[--n] = '\0';
	if (!n || n > HS_PROTO_MAX_STR || strlen(buf) != n) {
		fprintf(stderr, "hostshare-agent: token file '%s' is empty, "
				"too long or holds a NUL byte\n", path);
		return -1;
	}
	*ret = strdup(buf);
	return *ret ? 0 : -1;
}

static void *client_main(void *arg)
{
	struct client *cl = arg;

	hs_agent_serve(&agent, cl->fd, cl->fd, cl->label, cl->need_token);
	free(cl);
	return NULL;
}

static int listen_tcp(const char *spec)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
				  .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai;
	const char *colon = strrchr(spec, ':');
	char host[256], name[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, one = 1, r, port;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host) ||
	    !colon[1]) {
		fprintf(stderr, "hostshare-agent: bad tcp address '%s' "
				"(expected tcp:HOST:PORT)\n", spec);
		return -1;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	r = getaddrinfo(host, colon + 1, &hints, &ai);
	if (r) {
		fprintf(stderr, "hostshare-agent: cannot resolve '%s': %s\n",
			spec, gai_strerror(r));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		fprintf(stderr, "hostshare-agent: cannot listen on tcp:%s: "
				"%s\n", spec, strerror(errno));
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(ai);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, name, sizeof(name));
		port = ntohs(s6->sin6_port);
		fprintf(stderr, "hostshare-agent: listening on tcp:[%s]:%d\n",
			name, port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, name, sizeof(name));
		port = ntohs(s4->sin_port);
		fprintf(stderr, "hostshare-agent: listening on tcp:%s:%d\n",
			name, port);
	}
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path) || !*path) {
		fprintf(stderr, "hostshare-agent: bad unix socket path '%s'\n",
			path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	/* a stale socket of an earlier run; never remove anything else */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		fprintf(stderr, "hostshare-agent: cannot listen on unix:%s: "
				"%s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(stderr, "hostshare-agent: listening on unix:%s\n", path);
	return fd;
}

static int listen_vsock(const char *spec)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK,
				  .svm_cid = VMADDR_CID_ANY };
	char *end;
	unsigned long port = strtoul(spec, &end, 10);
	int fd;

	if (!*spec || *end || port > UINT32_MAX) {
		fprintf(stderr, "hostshare-agent: bad vsock port '%s'\n", spec);
		return -1;
	}
	sa.svm_port = (unsigned)port;
	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 64) < 0) {
		fprintf(stderr, "hostshare-agent: cannot listen on vsock:%s: "
				"%s\n", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(stderr, "hostshare-agent: listening on vsock:%s\n", spec);
	return fd;
}

static int cid_allowed(unsigned cid)
{
	int i;

	if (!n_allow_cids)
		return 1;
	for (i = 0; i < n_allow_cids; i++)
		if (allow_cids[i] == cid)
			return 1;
	return 0;
}

static void accept_loop(int lfd, int family)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	pthread_attr_t pa;
	pthread_t th;
	int fd;

	pthread_attr_init(&pa);
	pthread_attr_setdetachstate(&pa, PTHREAD_CREATE_DETACHED);
	for (;;) {
		struct client *cl;
		char addr[INET6_ADDRSTRLEN];

		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED ||
			    errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				if (errno != EINTR && errno != ECONNABORTED)
					usleep(100000);
				continue;
			}
			hs_err("accept failed: %s", strerror(errno));
			exit(1);
		}
		cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->need_token = family != AF_VSOCK;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
			snprintf(cl->label, sizeof(cl->label), "tcp %s:%d",
				 addr, ntohs(s4->sin_port));
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
			snprintf(cl->label, sizeof(cl->label), "tcp [%s]:%d",
				 addr, ntohs(s6->sin6_port));
		} else if (ss.ss_family == AF_VSOCK) {
			struct sockaddr_vm *vm = (struct sockaddr_vm *)&ss;

			snprintf(cl->label, sizeof(cl->label), "vsock cid %u",
				 vm->svm_cid);
			if (!cid_allowed(vm->svm_cid)) {
				hs_warn("%s: refused: cid not allowed",
					cl->label);
				close(fd);
				free(cl);
				continue;
			}
		} else {
			snprintf(cl->label, sizeof(cl->label), "unix fd %d", fd);
		}
		if (family == AF_INET || family == AF_INET6) {
			int one = 1;

			setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one,
				   sizeof(one));
		}
		if (pthread_create(&th, &pa, client_main, cl)) {
			hs_warn("%s: cannot start a thread", cl->label);
			close(fd);
			free(cl);
		}
	}
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "listen", required_argument, NULL, 'l' },
		{ "stdio", no_argument, NULL, 's' },
		{ "read-only", no_argument, NULL, 'R' },
		{ "allow-setid", no_argument, NULL, 'S' },
		{ "token-file", required_argument, NULL, 't' },
		{ "allow-cid", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root = NULL, *listen_spec = NULL, *token_file = NULL;
	char *token = NULL;
	int o, lfd = -1, family = 0;
	struct stat st;

	while ((o = getopt_long(argc, argv, "hvV", lopts, NULL)) != -1) {
		switch (o) {
		case 'r': root = optarg; break;
		case 'l': listen_spec = optarg; break;
		case 's': listen_spec = "stdio"; break;
		case 'R': agent.read_only = 1; break;
		case 'S': agent.allow_setid = 1; break;
		case 't': token_file = optarg; break;
		case 'v': hs_log_set_level(HS_LOG_INFO); break;
		case 'c': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (!*optarg || *end || v > UINT32_MAX ||
			    n_allow_cids >= MAX_CIDS) {
				fprintf(stderr, "hostshare-agent: bad "
						"--allow-cid '%s'\n", optarg);
				return 2;
			}
			allow_cids[n_allow_cids++] = (unsigned)v;
			break;
		}
		case 'V':
			hs_print_versions(stdout, "hostshare-agent", NULL);
			printf("agent protocol %d\n", HS_PROTO_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hostshare-agent: unexpected argument '%s'\n",
			argv[optind]);
		return 2;
	}
	if (!root || !listen_spec) {
		fprintf(stderr, "hostshare-agent: --root and --listen (or "
				"--stdio) are required\n");
		return 2;
	}
	agent.rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (agent.rootfd < 0 || fstat(agent.rootfd, &st) < 0) {
		fprintf(stderr, "hostshare-agent: cannot open root '%s': %s\n",
			root, strerror(errno));
		return 1;
	}
	agent.features = HS_FEAT_LZ4 | HS_FEAT_BATCH | HS_FEAT_SEQ;
	if (hs_agent_watch_init(root) == 0)
		agent.features |= HS_FEAT_NOTIFY;
	if (token_file && read_token(token_file, &token) < 0)
		return 1;
	agent.token = token;
	signal(SIGPIPE, SIG_IGN);

	if (!strcmp(listen_spec, "stdio")) {
		hs_agent_serve(&agent, 0, 1, "stdio", 0);
		return 0;
	}
	if (!token && (!strncmp(listen_spec, "tcp:", 4) ||
		       !strncmp(listen_spec, "unix:", 5))) {
		fprintf(stderr, "hostshare-agent: --token-file is required "
				"for tcp and unix listeners\n");
		return 2;
	}
	if (!strncmp(listen_spec, "tcp:", 4)) {
		family = AF_INET;
		lfd = listen_tcp(listen_spec + 4);
	} else if (!strncmp(listen_spec, "unix:", 5)) {
		family = AF_UNIX;
		lfd = listen_unix(listen_spec + 5);
	} else if (!strncmp(listen_spec, "vsock:", 6)) {
		family = AF_VSOCK;
		lfd = listen_vsock(listen_spec + 6);
	} else {
		fprintf(stderr, "hostshare-agent: unknown listen address '%s' "
				"(vsock:PORT, tcp:HOST:PORT, unix:PATH or "
				"stdio)\n", listen_spec);
		return 2;
	}
	if (lfd < 0)
		return 1;
	accept_loop(lfd, family);
	return 0;
}
