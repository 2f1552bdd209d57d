/* SPDX-License-Identifier: MIT
 * common/json.c - the JSON line writer of common/json.h.
 */
#include "json.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

void hs_json_raw(struct hs_json *j, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (j->full)
		return;
	va_start(ap, fmt);
	r = vsnprintf(j->s + j->n, sizeof(j->s) - j->n, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= sizeof(j->s) - j->n) {
		j->full = 1;
		return;
	}
	j->n += (size_t)r;
}

void hs_json_open(struct hs_json *j)
{
	j->n = 0;
	j->full = 0;
	hs_json_raw(j, "{");
}

static void sep(struct hs_json *j)
{
	hs_json_raw(j, "%s", j->n > 1 ? "," : "");
}

void hs_json_str(struct hs_json *j, const char *key, const char *v)
{
	sep(j);
	hs_json_raw(j, "\"%s\":\"", key);
	for (; *v; v++) {
		unsigned char ch = (unsigned char)*v;

		if (ch == '"' || ch == '\\')
			hs_json_raw(j, "\\%c", ch);
		else if (ch == '\n')
			hs_json_raw(j, "\\n");
		else if (ch == '\t')
			hs_json_raw(j, "\\t");
		else if (ch < 0x20 || ch == 0x7f)
			hs_json_raw(j, "\\u%04x", ch);
		else
			hs_json_raw(j, "%c", ch);
	}
	hs_json_raw(j, "\"");
}

void hs_json_num(struct hs_json *j, const char *key, uint64_t v)
{
	sep(j);
	hs_json_raw(j, "\"%s\":%" PRIu64, key, v);
}

void hs_json_bool(struct hs_json *j, const char *key, int v)
{
	sep(j);
	hs_json_raw(j, "\"%s\":%s", key, v ? "true" : "false");
}

const char *hs_json_end(struct hs_json *j)
{
	if (j->full) { /* keep the line valid JSON */
		hs_json_open(j);
		hs_json_raw(j, "\"error\":\"reply too long\"");
	}
	hs_json_raw(j, "}\n");
	return j->s;
}
