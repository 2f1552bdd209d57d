/* SPDX-License-Identifier: MIT
 * cache/bitmap.c - bit sets for block state (see bitmap.h).  Storage grows
 * in whole 64-bit words as bits are set; clearing never allocates.  Bits at
 * or past nbits read as 0.
 */
#include "bitmap.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void hs_bitmap_init(struct hs_bitmap *b)
{
	b->words = NULL;
	b->nbits = 0;
}

void hs_bitmap_release(struct hs_bitmap *b)
{
	free(b->words);
	hs_bitmap_init(b);
}

static int grow(struct hs_bitmap *b, uint64_t nbits)
{
	uint64_t oldw = b->nbits / 64, neww;
	uint64_t *w;

	if (nbits <= b->nbits)
		return 0;
	neww = (nbits + 63) / 64;
	if (neww < oldw * 2)
		neww = oldw * 2;
	w = realloc(b->words, neww * sizeof(*w));
	if (!w)
		return -ENOMEM;
	memset(w + oldw, 0, (neww - oldw) * sizeof(*w));
	b->words = w;
	b->nbits = neww * 64;
	return 0;
}

int hs_bitmap_set(struct hs_bitmap *b, uint64_t from, uint64_t to)
{
	int r;

	if (from >= to)
		return 0;
	r = grow(b, to);
	if (r < 0)
		return r;
	while (from < to && (from & 63)) {
		b->words[from / 64] |= 1ULL << (from & 63);
		from++;
	}
	while (from + 64 <= to) {
		b->words[from / 64] = ~0ULL;
		from += 64;
	}
	while (from < to) {
		b->words[from / 64] |= 1ULL << (from & 63);
		from++;
	}
	return 0;
}

void hs_bitmap_clear(struct hs_bitmap *b, uint64_t from, uint64_t to)
{
	if (to > b->nbits)
		to = b->nbits;
	while (from < to && (from & 63)) {
		b->words[from / 64] &= ~(1ULL << (from & 63));
		from++;
	}
	while (from + 64 <= to) {
		b->words[from / 64] = 0;
		from += 64;
	}
	while (from < to) {
		b->words[from / 64] &= ~(1ULL << (from & 63));
		from++;
	}
}

void hs_bitmap_truncate(struct hs_bitmap *b, uint64_t from)
{
	uint64_t keep;
	uint64_t *w;

	if (from >= b->nbits)
		return;
	hs_bitmap_clear(b, from, b->nbits);
	keep = (from + 63) / 64;
	if (keep == 0) {
		hs_bitmap_release(b);
		return;
	}
	w = realloc(b->words, keep * sizeof(*w));
	if (w)
		b->words = w;
	b->nbits = keep * 64;
}

int hs_bitmap_test(const struct hs_bitmap *b, uint64_t bit)
{
	if (bit >= b->nbits)
		return 0;
	return (b->words[bit / 64] >> (bit & 63)) & 1;
}

static uint64_t next_bit(const struct hs_bitmap *b, uint64_t from,
			 uint64_t limit, int want)
{
	uint64_t w;

	while (from < limit) {
		if (from >= b->nbits)
			return want ? HS_BITMAP_NONE : from;
		w = b->words[from / 64];
		if (!want)
			w = ~w;
		w &= ~0ULL << (from & 63);
		if (w) {
			from = (from & ~63ULL) + (uint64_t)__builtin_ctzll(w);
			return from < limit ? from : HS_BITMAP_NONE;
		}
		from = (from & ~63ULL) + 64;
	}
	return HS_BITMAP_NONE;
}

uint64_t hs_bitmap_next_set(const struct hs_bitmap *b, uint64_t from,
			    uint64_t limit)
{
	return next_bit(b, from, limit, 1);
}

uint64_t hs_bitmap_next_clear(const struct hs_bitmap *b, uint64_t from,
			      uint64_t limit)
{
	return next_bit(b, from, limit, 0);
}

uint64_t hs_bitmap_count(const struct hs_bitmap *b)
{
	uint64_t n = 0, i;

	for (i = 0; i < b->nbits / 64; i++)
		n += (uint64_t)__builtin_popcountll(b->words[i]);
	return n;
}

uint64_t hs_bitmap_count_range(const struct hs_bitmap *b, uint64_t from,
			       uint64_t to)
{
	uint64_t n = 0, w;

	if (to > b->nbits)
		to = b->nbits;
	while (from < to && (from & 63))
		n += (uint64_t)hs_bitmap_test(b, from++);
	while (from + 64 <= to) {
		w = b->words[from / 64];
		n += (uint64_t)__builtin_popcountll(w);
		from += 64;
	}
	while (from < to)
		n += (uint64_t)hs_bitmap_test(b, from++);
	return n;
}

int hs_bitmap_empty(const struct hs_bitmap *b)
{
	uint64_t i;

	for (i = 0; i < b->nbits / 64; i++)
		if (b->words[i])
			return 0;
	return 1;
}

int hs_bitmap_or(struct hs_bitmap *dst, const struct hs_bitmap *src)
{
	uint64_t i;
	int r = grow(dst, src->nbits);

	if (r < 0)
		return r;
	for (i = 0; i < src->nbits / 64; i++)
		dst->words[i] |= src->words[i];
	return 0;
}

void hs_bitmap_move(struct hs_bitmap *dst, struct hs_bitmap *src)
{
	hs_bitmap_release(dst);
	*dst = *src;
	hs_bitmap_init(src);
}

void *hs_bitmap_save(const struct hs_bitmap *b, size_t *ret_len)
{
	uint64_t n = b->nbits / 64, i;
	uint64_t *out;

	while (n > 0 && b->words[n - 1] == 0)
		n--;
	*ret_len = 0;
	if (n == 0)
		return NULL;
	out = malloc(n * sizeof(*out));
	if (!out)
		return NULL;
	for (i = 0; i < n; i++)
		out[i] = htole64(b->words[i]);
	*ret_len = n * sizeof(*out);
	return out;
}

uint64_t hs_bitmap_count_saved(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t n = 0, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		n += (uint64_t)__builtin_popcountll(w); /* (any byte order) */
	}
	return n;
}

int hs_bitmap_load(struct hs_bitmap *b, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t n = len / 8, i, w;

	if (len % 8)
		return -EINVAL;
	hs_bitmap_release(b);
	if (n == 0)
		return 0;
	b->words = malloc(n * sizeof(uint64_t));
	if (!b->words)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		memcpy(&w, p + i * 8, 8);
		b->words[i] = le64toh(w);
	}
	b->nbits = n * 64;
	return 0;
}
