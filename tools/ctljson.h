/* SPDX-License-Identifier: MIT
 * tools/ctljson.h - the flat-JSON reader and byte formatting shared by
 * hostsharectl and its doctor (ctljson.c).
 */
#ifndef HS_TOOLS_CTLJSON_H
#define HS_TOOLS_CTLJSON_H

#include <stddef.h>
#include <stdint.h>

/* Finds @key in the flat object @obj; copies its value (strings
 * unescaped, other values as written, null as "") into @out (may be NULL
 * to test for the key).  1 found, 0 not. */
int jget(const char *obj, const char *key, char *out, size_t outlen);
/* The value of @key as an unsigned number, 0 when absent. */
uint64_t jget_u64(const char *obj, const char *key);
/* "512 B", "1.5 MiB", ... in @buf; returns @buf. */
const char *human_bytes(uint64_t b, char *buf, size_t size);

#endif
