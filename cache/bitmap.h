/* SPDX-License-Identifier: MIT
 * cache/bitmap.h - a growable bit set, one bit per 4 KiB block of a cached
 * file.  Not thread-safe: the owner's lock (hs_file.lock) protects it.
 */
#ifndef HS_BITMAP_H
#define HS_BITMAP_H

#include <stddef.h>
#include <stdint.h>

struct hs_bitmap {
	uint64_t *words;
	uint64_t nbits; /* bits addressable without growing */
};

#define HS_BITMAP_NONE UINT64_MAX

void hs_bitmap_init(struct hs_bitmap *b);
void hs_bitmap_release(struct hs_bitmap *b);
/* Sets bits [from, to).  -ENOMEM if growing fails. */
int hs_bitmap_set(struct hs_bitmap *b, uint64_t from, uint64_t to);
/* Clears bits [from, to); never grows. */
void hs_bitmap_clear(struct hs_bitmap *b, uint64_t from, uint64_t to);
/* Clears every bit at or past @from and shrinks storage. */
void hs_bitmap_truncate(struct hs_bitmap *b, uint64_t from);
int hs_bitmap_test(const struct hs_bitmap *b, uint64_t bit);
/* First set (clear) bit at or after @from, below @limit; HS_BITMAP_NONE. */
uint64_t hs_bitmap_next_set(const struct hs_bitmap *b, uint64_t from,
			    uint64_t limit);
uint64_t hs_bitmap_next_clear(const struct hs_bitmap *b, uint64_t from,
			      uint64_t limit);
uint64_t hs_bitmap_count(const struct hs_bitmap *b);
/* Set bits in [from, to). */
uint64_t hs_bitmap_count_range(const struct hs_bitmap *b, uint64_t from,
			       uint64_t to);
int hs_bitmap_empty(const struct hs_bitmap *b);
/* @dst |= @src.  -ENOMEM. */
int hs_bitmap_or(struct hs_bitmap *dst, const struct hs_bitmap *src);
/* Moves @src into @dst (dst released first); @src is left empty. */
void hs_bitmap_move(struct hs_bitmap *dst, struct hs_bitmap *src);
/* Serialised form: the words, little-endian, trailing zero words dropped.
 * Returns a malloc'ed buffer (NULL and *len 0 when empty). */
void *hs_bitmap_save(const struct hs_bitmap *b, size_t *ret_len);
/* Replaces @b's contents by a saved form; -ENOMEM, -EINVAL. */
int hs_bitmap_load(struct hs_bitmap *b, const void *buf, size_t len);
/* Set bits in a saved form (no copy made). */
uint64_t hs_bitmap_count_saved(const void *buf, size_t len);

#endif
