/* SPDX-License-Identifier: MIT
 * common/log.c - the one place log lines are written.  Lines go to stderr
 * (foreground, tests) or syslog (daemonised).  Thread model: any thread;
 * each line is written with one write(2)/syslog(3) call so lines from
 * several threads never interleave.
 */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static int use_syslog;
static enum hs_log_level max_level = HS_LOG_NOTICE;

void hs_log_set_syslog(int on)
{
	use_syslog = on;
	if (on)
		openlog("hostshare", LOG_PID, LOG_DAEMON);
}

void hs_log_set_level(enum hs_log_level level)
{
	max_level = level;
}

enum hs_log_level hs_log_get_level(void)
{
	return max_level;
}

void hs_log(enum hs_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {
		[HS_LOG_ERR] = "error", [HS_LOG_WARNING] = "warning",
		[HS_LOG_NOTICE] = "notice", [HS_LOG_INFO] = "info",
		[HS_LOG_DEBUG] = "debug",
	};
	char line[1024];
	va_list ap;
	int n;

	if (level > max_level)
		return;
	va_start(ap, fmt);
	if (use_syslog) {
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog((int)level, "%s", line);
	} else {
		n = snprintf(line, sizeof(line), "hostshare: %s: ", names[level]);
		if (n < 0)
			n = 0;
		vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
		n = (int)strlen(line);
		line[n++] = '\n';
		if (write(STDERR_FILENO, line, (size_t)n) < 0) {
			/* nothing sensible to do */
		}
	}
	va_end(ap);
}

uint64_t hs_fnv1a64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}
