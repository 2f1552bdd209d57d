/* SPDX-License-Identifier: MIT
 * common/json.h - the writer of the control protocol's JSON lines (one
 * flat object per line, docs/control.md): the daemon's control socket
 * (fs/ctl.c) and the cache's own listings for hostsharectl (cache/doctor.c)
 * build their objects with it, so a row reads the same whoever wrote it.
 *
 * A line is built in a fixed buffer; on overflow it is cut and `full` set
 * (hs_json_end() then makes it an error object, so it stays valid JSON).
 * Strings are escaped; bytes >= 0x80 pass as they are (UTF-8).
 * No I/O, no allocation; one writer per thread.
 */
#ifndef HS_COMMON_JSON_H
#define HS_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

struct hs_json {
	char s[16384]; /* the line so far */
	size_t n;      /* bytes of s used */
	int full;      /* a field did not fit: the line is cut */
};

/* Starts an object: "{". */
void hs_json_open(struct hs_json *j);
/* Appends printf output as is (no separator, no escaping). */
void hs_json_raw(struct hs_json *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends "key":"value" (escaped), "key":number, "key":true|false. */
void hs_json_str(struct hs_json *j, const char *key, const char *v);
void hs_json_num(struct hs_json *j, const char *key, uint64_t v);
void hs_json_bool(struct hs_json *j, const char *key, int v);
/* Closes the object and ends the line ("}\n"); a cut line becomes
 * {"error":"reply too long"}.  Returns the line, j->n its length. */
const char *hs_json_end(struct hs_json *j);

#endif
