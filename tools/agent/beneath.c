/* SPDX-License-Identifier: MIT
 * tools/agent/beneath.c - path resolution beneath the root; see beneath.h.
 */
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int no_openat2 = -1; /* -1 unknown, 0 works, 1 missing */

int hs_bn_rel(const char *path, char *rel, size_t size)
{
	const char *p = path, *e;
	size_t n = 0, len;

	if (path[0] != '/')
		return -EINVAL;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		e = strchrnul(p, '/');
		len = (size_t)(e - p);
		if (len == 1 && p[0] == '.') {
			p = e;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return -EACCES;
		if (n + len + 2 > size)
			return -ENAMETOOLONG;
		if (n)
			rel[n++] = '/';
		memcpy(rel + n, p, len);
		n += len;
		p = e;
	}
	if (!n) {
		if (size < 2)
			return -ENAMETOOLONG;
		rel[n++] = '.';
	}
	rel[n] = '\0';
	return 0;
}

static int want_fallback(void)
{
	if (no_openat2 < 0) {
		const char *e = getenv("HS_AGENT_NO_OPENAT2");

		no_openat2 = e && *e == '1';
	}
	return no_openat2;
}

/* Walks @rel component by component from @rootfd, refusing symlinks.
 * The last component is opened with @flags | O_NOFOLLOW. */
static int walk(int rootfd, const char *rel, int flags, unsigned mode)
{
	char comp[256];
	const char *p = rel, *e;
	int fd = rootfd, nfd, err;
	size_t len;

	for (;;) {
		e = strchrnul(p, '/');
		len = (size_t)(e - p);
		if (len >= sizeof(comp)) {
			err = -ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		if (!*e) {
			nfd = openat(fd, comp, flags | O_NOFOLLOW | O_CLOEXEC,
				     mode);
			err = nfd < 0 ? -errno : 0;
			if (err == -ELOOP || err == -ENOTDIR) {
				struct stat st;

				/* a symlink at the end: not followed */
				if (fstatat(fd, comp, &st,
					    AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(st.st_mode))
					err = -EACCES;
			}
			if (fd != rootfd)
				close(fd);
			return err ? err : nfd;
		}
		nfd = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW |
					       O_CLOEXEC);
		if (nfd < 0) {
			struct stat st;

			err = -errno;
			if (err == -ENOTDIR &&
			    fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				err = -EACCES;
			goto fail;
		}
		if (fd != rootfd)
			close(fd);
		fd = nfd;
		p = e + 1;
	}
fail:
	if (fd != rootfd)
		close(fd);
	return err;
}

int hs_bn_open(int rootfd, const char *rel, int flags, unsigned mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	long fd;

	if (!want_fallback()) {
		fd = syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno == EXDEV)
			return -EACCES;
		if (errno != ENOSYS)
			return -errno;
		no_openat2 = 1;
	}
	if (!strcmp(rel, "."))
		return openat(rootfd, ".", flags | O_CLOEXEC, mode);
	return walk(rootfd, rel, flags, mode);
}

int hs_bn_parent(int rootfd, char *rel, const char **ret_name)
{
	char *slash = strrchr(rel, '/');
	int fd;

	if (!slash) {
		*ret_name = rel;
		fd = dup(rootfd);
		return fd < 0 ? -errno : fd;
	}
	*slash = '\0';
	fd = hs_bn_open(rootfd, rel, O_PATH | O_DIRECTORY, 0);
	*slash = '/';
	*ret_name = slash + 1;
	return fd;
}
