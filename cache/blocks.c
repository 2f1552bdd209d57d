/* SPDX-License-Identifier: MIT
 * cache/blocks.c - the one owner of the block states of a cached file.
 *
 * Every change of the present/dirty/writing bits happens here; file.c,
 * stream.c and flusher.c call these transitions with hs_file.lock held and
 * do the cache-file I/O that goes with them.
 *
 *   state      present dirty writing
 *   ABSENT        0      0      0     a hole in the cache file
 *   CLEAN         1      0      0     same bytes as the host
 *   DIRTY         1      1      0     guest bytes the host has not seen
 *   WRITING       1      0      1     being sent
 *   WRITING2      1      1      1     written again while being sent
 *
 *   ABSENT -> CLEAN     hs_blocks_fill() (a fetch lands, only into blocks
 *                       still ABSENT), hs_blocks_write()/_truncate() for
 *                       a gap or new part past the old end (zeros)
 *   any -> DIRTY        hs_blocks_write() (WRITING -> WRITING2)
 *   DIRTY -> WRITING    hs_blocks_snapshot(), _snapshot_first() (the
 *                       first dirty blocks only)
 *   WRITING -> CLEAN    hs_blocks_sent() (WRITING2 -> DIRTY)
 *   WRITING -> DIRTY    hs_blocks_send_failed(), but blocks cut off since
 *                       the snapshot -> ABSENT
 *   past the end -> ABSENT  hs_blocks_truncate()
 *   CLEAN -> ABSENT     hs_blocks_invalidate() (all, only when nothing is
 *                       busy), hs_blocks_evict() (per block)
 *
 * Invariants (hs_blocks_check(); debug builds, i.e. without NDEBUG, run it
 * from assert() after each transition: in full after those that walk the
 * whole file anyway (load, snapshot, end of a send, invalidate); after a
 * fill, write, truncate or evict on the blocks it changed, with the O(1)
 * invariants, so a write costs what it did):
 *   1. dirty is a subset of present;
 *   2. writing is a subset of present below the cut: a truncate during a
 *      send leaves the WRITING bits past the new end (the flusher reads
 *      the writing set without the lock while it sends), and the cut
 *      (<= the new size) says which they are;
 *   3. nothing present or dirty at or past the size rounded up to blocks;
 *   4. the counts npresent/ndirty/nwriting are the bits set;
 *   5. writing is empty unless a snapshot is out (sending > 0);
 *   6. cut, send_cut >= -1, sending >= 0;
 *   7. what is persisted as dirty (hs_blocks_saved_dirty()) is dirty|
 *      writing below the cut: a crash mid-send resends it, and never
 *      claims blocks the guest cut off as data; the persisted cut is the
 *      smaller of the cut and the send's (hs_blocks_saved_cut()).
 *
 * The evictor (evict.c) asks hs_blocks_may_drop() whether a block's bytes
 * are on the host now and drops runs with hs_blocks_evict(), whose
 * callback punches the hole; its use clock per 1 MiB extent hangs off
 * struct hs_file, touched where fill and write are called.  Not handled
 * here: the data version (file.c drops a fetch that belongs to an older
 * host copy before it reaches hs_blocks_fill()).
 */
#include "blocks.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>

#include "common/common.h"

static uint64_t nblocks_of(uint64_t size)
{
	return (size + HS_BLOCK_SIZE - 1) / HS_BLOCK_SIZE;
}

/* The blocks below this hold no cut-off WRITING bits. */
static uint64_t cut_block(int64_t cut)
{
	return cut < 0 ? UINT64_MAX : nblocks_of((uint64_t)cut);
}

static int64_t min_cut(int64_t a, int64_t b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

static int check_words(const struct hs_blocks *b, uint64_t size, uint64_t w0,
		       uint64_t w1, char *why, size_t whylen);
static int check_global(const struct hs_blocks *b, uint64_t size, char *why,
			size_t whylen);

#ifndef NDEBUG
/* After a transition of blocks [from, to) (to = UINT64_MAX: of all): the
 * checker on those blocks, the O(1) invariants, and the whole check only
 * for transitions that walk the whole file anyway, so a write costs what
 * it did. */
static int checked(const struct hs_blocks *b, uint64_t size, uint64_t from,
		   uint64_t to)
{
	char why[160];
	int r;

	if (to == UINT64_MAX)
		r = hs_blocks_check(b, size, why, sizeof(why));
	else
		r = check_words(b, size, from / 64, (to + 63) / 64, why, sizeof(why));
	if (r == 0)
		r = check_global(b, size, why, sizeof(why));
	if (r == 0)
		return 1;
	hs_err("block states broken: %s", why);
	return 0;
}
#define CHECKED(b, size) assert(checked((b), (size), 0, UINT64_MAX))
#define CHECKED_RANGE(b, size, from, to) assert(checked((b), (size), (from), (to)))
#else
#define CHECKED(b, size) ((void)(b), (void)(size))
#define CHECKED_RANGE(b, size, from, to) \
	((void)(b), (void)(size), (void)(from), (void)(to))
#endif

void hs_blocks_init(struct hs_blocks *b)
{
	hs_bitmap_init(&b->present);
	hs_bitmap_init(&b->dirty);
	hs_bitmap_init(&b->writing);
	b->npresent = b->ndirty = b->nwriting = 0;
	b->cut = b->send_cut = -1;
	b->sending = 0;
	b->changed = 0;
}

void hs_blocks_release(struct hs_blocks *b)
{
	hs_bitmap_release(&b->present);
	hs_bitmap_release(&b->dirty);
	hs_bitmap_release(&b->writing);
	hs_blocks_init(b);
}

/* Sets [from, to) in @m, keeping its count @n. */
static int set_bits(struct hs_bitmap *m, uint64_t *n, uint64_t from, uint64_t to)
{
	uint64_t had;
	int r;

	if (from >= to)
		return 0;
	had = hs_bitmap_count_range(m, from, to);
	r = hs_bitmap_set(m, from, to);
	if (r == 0)
		*n += (to - from) - had;
	return r;
}

/* Clears every bit of @m at or past @from, keeping its count @n. */
static void clear_from(struct hs_bitmap *m, uint64_t *n, uint64_t from)
{
	*n -= hs_bitmap_count_range(m, from, m->nbits);
	hs_bitmap_truncate(m, from);
}

/* Moves the bits of @src into @dst (@dst |= @src, @src emptied) without
 * allocating: the smaller goes into the bigger. */
static void merge(struct hs_bitmap *dst, struct hs_bitmap *src)
{
	if (src->nbits <= dst->nbits) {
		hs_bitmap_or(dst, src); /* no growth: cannot fail */
		hs_bitmap_release(src);
	} else {
		hs_bitmap_or(src, dst);
		hs_bitmap_move(dst, src);
	}
}

void hs_blocks_load(struct hs_blocks *b, struct hs_bitmap *present,
		    struct hs_bitmap *dirty, int64_t cut, uint64_t size)
{
	uint64_t nb = nblocks_of(size);

	hs_blocks_release(b);
	hs_bitmap_move(&b->present, present);
	hs_bitmap_move(&b->dirty, dirty);
	/* a listing may have changed the row's size of a file whose maps
	 * it did not touch; bits past the end mean nothing */
	hs_bitmap_truncate(&b->present, nb);
	hs_bitmap_truncate(&b->dirty, nb);
	b->npresent = hs_bitmap_count(&b->present);
	b->ndirty = hs_bitmap_count(&b->dirty);
	b->cut = cut < -1 ? -1 : cut;
	CHECKED(b, size);
}

int hs_blocks_saved_dirty(const struct hs_blocks *b, struct hs_bitmap *ret)
{
	int r = hs_bitmap_or(ret, &b->writing);

	if (r == 0 && b->cut >= 0)
		hs_bitmap_truncate(ret, cut_block(b->cut));
	if (r == 0)
		r = hs_bitmap_or(ret, &b->dirty);
	return r;
}

int64_t hs_blocks_saved_cut(const struct hs_blocks *b)
{
	return min_cut(b->cut, b->send_cut);
}

void hs_blocks_saved(struct hs_blocks *b)
{
	b->changed = 0;
}

enum hs_blk_state hs_blocks_state(const struct hs_blocks *b, uint64_t blk)
{
	int p = hs_bitmap_test(&b->present, blk);
	int d = hs_bitmap_test(&b->dirty, blk);
	int w = hs_bitmap_test(&b->writing, blk);

	if (!p)
		return HS_BLK_ABSENT;
	if (w)
		return d ? HS_BLK_WRITING2 : HS_BLK_WRITING;
	return d ? HS_BLK_DIRTY : HS_BLK_CLEAN;
}

uint64_t hs_blocks_next_absent(const struct hs_blocks *b, uint64_t from,
			       uint64_t limit)
{
	return hs_bitmap_next_clear(&b->present, from, limit);
}

uint64_t hs_blocks_next_present(const struct hs_blocks *b, uint64_t from,
				uint64_t limit)
{
	return hs_bitmap_next_set(&b->present, from, limit);
}

int hs_blocks_busy(const struct hs_blocks *b)
{
	return b->ndirty > 0 || b->nwriting > 0 || b->cut >= 0;
}

int hs_blocks_may_drop(const struct hs_blocks *b, uint64_t blk)
{
	int64_t cut = min_cut(b->cut, b->send_cut);

	if (hs_blocks_state(b, blk) != HS_BLK_CLEAN)
		return 0;
	/* past a cut not on the host the host still has the old bytes */
	return cut < 0 || blk < (uint64_t)cut / HS_BLOCK_SIZE;
}

int hs_blocks_fill(struct hs_blocks *b, uint64_t size, uint64_t first,
		   uint64_t last, hs_blocks_fill_fn fn, void *arg)
{
	uint64_t nb = nblocks_of(size), e, from = first;
	int r = 0;

	if (last > nb)
		last = nb;
	while (first < last) {
		first = hs_bitmap_next_clear(&b->present, first, last);
		if (first == HS_BITMAP_NONE)
			break;
		e = hs_bitmap_next_set(&b->present, first, last);
		if (e == HS_BITMAP_NONE)
			e = last;
		r = fn(arg, first, e);
		if (r == 0)
			r = set_bits(&b->present, &b->npresent, first, e);
		if (r < 0)
			break;
		b->changed = 1;
		first = e;
	}
	CHECKED_RANGE(b, size, from, last);
	return r;
}

int hs_blocks_write(struct hs_blocks *b, uint64_t size, uint64_t off,
		    uint64_t len)
{
	uint64_t end = off + len, first = off / HS_BLOCK_SIZE;
	uint64_t last = nblocks_of(end);
	int r = 0;

	if (len == 0)
		return 0;
	if (end > size) /* a gap between the old end and @off reads as zeros */
		r = set_bits(&b->present, &b->npresent, nblocks_of(size), first);
	if (r == 0)
		r = set_bits(&b->present, &b->npresent, first, last);
	if (r == 0)
		r = set_bits(&b->dirty, &b->ndirty, first, last);
	b->changed = 1;
	CHECKED_RANGE(b, end > size ? end : size, HS_MIN(first, nblocks_of(size)), last);
	return r;
}

int hs_blocks_truncate(struct hs_blocks *b, uint64_t old, uint64_t size)
{
	int r = 0;

	if (size < old) {
		uint64_t keep = nblocks_of(size);

		clear_from(&b->present, &b->npresent, keep);
		clear_from(&b->dirty, &b->ndirty, keep);
		b->cut = min_cut(b->cut, (int64_t)size);
	} else if (size > old) {
		r = set_bits(&b->present, &b->npresent, nblocks_of(old),
			     nblocks_of(size));
	}
	b->changed = 1;
	/* the blocks at both ends, and the end's word (check_global()) */
	CHECKED_RANGE(b, size, HS_MIN(nblocks_of(old), nblocks_of(size)) -
				       (old > 0 && size > 0),
		      HS_MAX(nblocks_of(old), nblocks_of(size)) + 1);
	return r;
}

int64_t hs_blocks_snapshot(struct hs_blocks *b, uint64_t size)
{
	int64_t cut = b->cut;

	merge(&b->writing, &b->dirty);
	b->nwriting = hs_bitmap_count(&b->writing);
	b->ndirty = 0;
	b->cut = -1;
	b->send_cut = cut;
	b->sending++;
	/* the persisted maps stay dirty|writing until the send ends */
	CHECKED(b, size);
	return cut;
}

int64_t hs_blocks_snapshot_first(struct hs_blocks *b, uint64_t size,
				 uint64_t max)
{
	uint64_t from = 0, to, n, left = max;
	int64_t cut = b->cut;

	if (max == 0 || b->ndirty <= max)
		return hs_blocks_snapshot(b, size);
	/* the writing set grows to the last block it takes first, so that
	 * no set below can fail half-way */
	while (left > 0 &&
	       (from = hs_bitmap_next_set(&b->dirty, from, HS_BITMAP_NONE)) !=
		       HS_BITMAP_NONE) {
		to = hs_bitmap_next_clear(&b->dirty, from, HS_BITMAP_NONE);
		if (to == HS_BITMAP_NONE)
			to = b->dirty.nbits;
		n = HS_MIN(to - from, left);
		left -= n;
		from += n;
	}
	if (from == 0 || hs_bitmap_set(&b->writing, from - 1, from) < 0)
		return hs_blocks_snapshot(b, size);
	to = from; /* everything dirty below @to goes */
	for (from = 0; (from = hs_bitmap_next_set(&b->dirty, from, to)) !=
		       HS_BITMAP_NONE; from = n) {
		n = hs_bitmap_next_clear(&b->dirty, from, to);
		if (n == HS_BITMAP_NONE)
			n = to;
		hs_bitmap_set(&b->writing, from, n); /* (no growth) */
		hs_bitmap_clear(&b->dirty, from, n);
	}
	b->nwriting = hs_bitmap_count(&b->writing);
	b->ndirty = hs_bitmap_count(&b->dirty);
	b->cut = -1;
	b->send_cut = cut;
	b->sending++;
	CHECKED(b, size);
	return cut;
}

static void end_send(struct hs_blocks *b)
{
	hs_bitmap_release(&b->writing);
	b->nwriting = 0;
	if (b->sending > 0)
		b->sending--;
	b->send_cut = -1;
	b->changed = 1;
}

void hs_blocks_sent(struct hs_blocks *b, uint64_t size)
{
	end_send(b);
	CHECKED(b, size);
}

void hs_blocks_send_failed(struct hs_blocks *b, uint64_t size, int64_t cut)
{
	/* what the guest cut off meanwhile holds none of the send's data */
	if (b->cut >= 0)
		hs_bitmap_truncate(&b->writing, cut_block(b->cut));
	merge(&b->dirty, &b->writing);
	b->ndirty = hs_bitmap_count(&b->dirty);
	b->cut = min_cut(b->cut, cut);
	end_send(b);
	CHECKED(b, size);
}

int64_t hs_blocks_invalidate(struct hs_blocks *b, uint64_t size)
{
	int64_t n = (int64_t)b->npresent;

	if (hs_blocks_busy(b))
		return -EBUSY; /* guest changes win; never dropped */
	hs_bitmap_release(&b->present);
	b->npresent = 0;
	b->changed = 1;
	CHECKED(b, size);
	return n;
}

int64_t hs_blocks_evict(struct hs_blocks *b, uint64_t size, uint64_t from,
			uint64_t to, hs_blocks_fill_fn fn, void *arg)
{
	uint64_t e, start = from;
	int64_t n = 0;
	int r;

	if (to > b->present.nbits)
		to = b->present.nbits;
	while (from < to) {
		while (from < to && !hs_blocks_may_drop(b, from))
			from++;
		for (e = from; e < to && hs_blocks_may_drop(b, e); e++)
			;
		if (from >= e)
			break;
		r = fn ? fn(arg, from, e) : 0;
		if (r < 0)
			return r;
		b->npresent -= e - from;
		hs_bitmap_clear(&b->present, from, e);
		b->changed = 1;
		n += (int64_t)(e - from);
		from = e;
	}
	CHECKED_RANGE(b, size, start, to);
	return n;
}

/* Fails the check with a reason. */
#define BROKEN(...)                                                   \
	do {                                                          \
		if (why)                                              \
			snprintf(why, whylen, __VA_ARGS__);           \
		return -EUCLEAN;                                      \
	} while (0)

/* Invariants 1 and 2 on words [w0, w1) of the maps. */
static int check_words(const struct hs_blocks *b, uint64_t size, uint64_t w0,
		       uint64_t w1, char *why, size_t whylen)
{
	uint64_t cb = cut_block(b->cut), i;

	(void)size;
	for (i = w0; i < w1; i++) {
		uint64_t p = i < b->present.nbits / 64 ? b->present.words[i] : 0;
		uint64_t d = i < b->dirty.nbits / 64 ? b->dirty.words[i] : 0;
		uint64_t w = i < b->writing.nbits / 64 ? b->writing.words[i] : 0;
		uint64_t below_cut = cb >= (i + 1) * 64 ? ~0ULL :
				     cb <= i * 64 ? 0 : ~0ULL >> (64 - (cb - i * 64));

		if (i >= b->present.nbits / 64 && i >= b->dirty.nbits / 64 &&
		    i >= b->writing.nbits / 64)
			break;
		if (d & ~p)
			BROKEN("block %llu is dirty but not present",
			       (unsigned long long)(i * 64 + (uint64_t)__builtin_ctzll(d & ~p)));
		if (w & ~p & below_cut)
			BROKEN("block %llu is being sent but not present",
			       (unsigned long long)(i * 64 + (uint64_t)__builtin_ctzll(w & ~p & below_cut)));
	}
	return 0;
}

/* The invariants that cost O(1): 5, 6 and bounds of the counts; the word
 * at the end of the file for 3. */
static int check_global(const struct hs_blocks *b, uint64_t size, char *why,
			size_t whylen)
{
	uint64_t nb = nblocks_of(size), i;

	if (b->cut < -1 || b->send_cut < -1 || b->sending < 0)
		BROKEN("cut %lld, send_cut %lld, sending %d",
		       (long long)b->cut, (long long)b->send_cut, b->sending);
	if (b->nwriting > 0 && b->sending == 0)
		BROKEN("%llu blocks are being sent but no snapshot is out",
		       (unsigned long long)b->nwriting);
	for (i = nb; i < (nb | 63) + 1; i++)
		if (hs_bitmap_test(&b->present, i) || hs_bitmap_test(&b->dirty, i))
			BROKEN("block %llu is present past the end (%llu blocks)",
			       (unsigned long long)i, (unsigned long long)nb);
	if (b->ndirty > b->npresent || b->npresent > nb)
		BROKEN("counts present %llu dirty %llu for %llu blocks",
		       (unsigned long long)b->npresent, (unsigned long long)b->ndirty,
		       (unsigned long long)nb);
	return 0;
}

int hs_blocks_check(const struct hs_blocks *b, uint64_t size, char *why,
		    size_t whylen)
{
	uint64_t nb = nblocks_of(size), i, np, nd, nw;
	uint64_t words = HS_MAX(HS_MAX(b->present.nbits, b->dirty.nbits),
				b->writing.nbits) / 64;
	int r = check_words(b, size, 0, words, why, whylen);

	if (r == 0)
		r = check_global(b, size, why, whylen);
	if (r < 0)
		return r;
	i = hs_bitmap_next_set(&b->present, nb, UINT64_MAX);
	if (i != HS_BITMAP_NONE)
		BROKEN("block %llu is present past the end (%llu blocks)",
		       (unsigned long long)i, (unsigned long long)nb);
	i = hs_bitmap_next_set(&b->dirty, nb, UINT64_MAX);
	if (i != HS_BITMAP_NONE)
		BROKEN("block %llu is dirty past the end (%llu blocks)",
		       (unsigned long long)i, (unsigned long long)nb);
	np = hs_bitmap_count(&b->present);
	nd = hs_bitmap_count(&b->dirty);
	nw = hs_bitmap_count(&b->writing);
	if (np != b->npresent || nd != b->ndirty || nw != b->nwriting)
		BROKEN("counts present %llu dirty %llu writing %llu, bits %llu %llu %llu",
		       (unsigned long long)b->npresent, (unsigned long long)b->ndirty,
		       (unsigned long long)b->nwriting, (unsigned long long)np,
		       (unsigned long long)nd, (unsigned long long)nw);
	return 0;
}
