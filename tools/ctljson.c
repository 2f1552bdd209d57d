/* SPDX-License-Identifier: MIT
 * tools/ctljson.c - what hostsharectl and its doctor share: a reader of
 * the flat JSON objects the daemon's control socket sends (no nesting, no
 * arrays) and the human form of a byte count.  Pure functions.
 */
#include "ctljson.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return p;
}

/* Reads the string at @p (just after the opening quote) into @out (may be
 * NULL); returns the position after the closing quote, or NULL. */
static const char *read_string(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	char ch;

	for (; *p && *p != '"'; p++) {
		ch = *p;
		if (ch == '\\') {
			p++;
			switch (*p) {
			case 'n': ch = '\n'; break;
			case 't': ch = '\t'; break;
			case 'r': ch = '\r'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'u': {
				unsigned v = 0;
				int i;

				for (i = 1; i <= 4; i++) {
					char h = p[i];

					if (h >= '0' && h <= '9')
						v = v * 16 + (unsigned)(h - '0');
					else if (h >= 'a' && h <= 'f')
						v = v * 16 + (unsigned)(h - 'a' + 10);
					else if (h >= 'A' && h <= 'F')
						v = v * 16 + (unsigned)(h - 'A' + 10);
					else
						return NULL;
				}
				ch = v < 0x80 ? (char)v : '?';
				p += 4;
				break;
			}
			case '\0':
				return NULL;
			default:
				ch = *p; /* \" \\ \/ */
			}
		}
		if (out && n + 1 < outlen)
			out[n++] = ch;
	}
	if (out && outlen)
		out[n] = '\0';
	return *p == '"' ? p + 1 : NULL;
}

/* Finds @key in the flat object @obj; copies its value (strings unescaped,
 * other values as written, null as "") into @out.  1 found, 0 not. */
int jget(const char *obj, const char *key, char *out, size_t outlen)
{
	char k[64];
	const char *p = skip_ws(obj), *v;
	size_t n;

	if (*p++ != '{')
		return 0;
	for (;;) {
		p = skip_ws(p);
		if (*p != '"')
			return 0;
		p = read_string(p + 1, k, sizeof(k));
		if (!p)
			return 0;
		p = skip_ws(p);
		if (*p++ != ':')
			return 0;
		p = skip_ws(p);
		if (*p == '"') {
			if (!strcmp(k, key))
				return read_string(p + 1, out, outlen) != NULL;
			p = read_string(p + 1, NULL, 0);
			if (!p)
				return 0;
		} else {
			v = p;
			while (*p && *p != ',' && *p != '}')
				p++;
			if (!strcmp(k, key)) {
				if (!out || !outlen)
					return 1;
				n = (size_t)(p - v);
				while (n && (v[n - 1] == ' ' || v[n - 1] == '\n'))
					n--;
				if (n == 4 && !strncmp(v, "null", 4))
					n = 0;
				if (n >= outlen)
					n = outlen - 1;
				memcpy(out, v, n);
				out[n] = '\0';
				return 1;
			}
		}
		p = skip_ws(p);
		if (*p++ != ',')
			return 0;
	}
}

uint64_t jget_u64(const char *obj, const char *key)
{
	char v[32];

	if (!jget(obj, key, v, sizeof(v)))
		return 0;
	return strtoull(v, NULL, 10);
}


const char *human_bytes(uint64_t b, char *buf, size_t size)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB",
					    "PiB" };
	double v = (double)b;
	int i = -1;

	if (b < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", b);
		return buf;
	}
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, size, "%.1f %s", v, unit[i]);
	return buf;
}
