/* SPDX-License-Identifier: MIT
 * cache/blocks.h - the block states of one cached file and the only code
 * that changes them (cache/blocks.c; the table is in docs/architecture.md).
 *
 * Pure bookkeeping: no I/O, no locks of its own.  The caller holds the
 * owning hs_file.lock across every call, and does the cache-file I/O that
 * goes with a transition (hs_blocks_fill() calls it back for each run).
 * Sizes are the file's guest size in bytes; blocks are HS_BLOCK_SIZE.
 */
#ifndef HS_BLOCKS_H
#define HS_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "bitmap.h"

#define HS_BLOCK_SIZE 4096ULL

enum hs_blk_state {
	HS_BLK_ABSENT = 0,   /* a hole in the cache file */
	HS_BLK_CLEAN = 1,    /* same bytes as the host */
	HS_BLK_DIRTY = 2,    /* guest bytes the host has not seen */
	HS_BLK_WRITING = 3,  /* being sent */
	HS_BLK_WRITING2 = 4, /* written again while being sent */
};

struct hs_blocks {
	struct hs_bitmap present, dirty, writing; /* one bit per block */
	uint64_t npresent, ndirty, nwriting; /* bits set in each */
	int64_t cut;    /* the smallest size since the last snapshot (a
			 * truncate not sent yet), -1: none; persisted */
	int64_t send_cut; /* the cut the snapshot in flight carries, -1:
			 * none (not on the host before hs_blocks_sent()) */
	int sending;    /* snapshots taken and not ended */
	int changed;    /* differs from the persisted copy */
};

void hs_blocks_init(struct hs_blocks *b);
void hs_blocks_release(struct hs_blocks *b);

/* ---- persisted form ---- */
/* Takes the persisted bitmaps (ownership of @present and @dirty, left
 * empty) and cut; what lies past @size is dropped.  What was persisted as
 * dirty (dirty|writing) is DIRTY now. */
void hs_blocks_load(struct hs_blocks *b, struct hs_bitmap *present,
		    struct hs_bitmap *dirty, int64_t cut, uint64_t size);
/* What to persist as dirty, in @ret (initialised by the caller): dirty|
 * writing, less the writing blocks the guest cut off since the snapshot
 * (they hold none of its data; after a crash they would look like lost
 * data).  -ENOMEM. */
int hs_blocks_saved_dirty(const struct hs_blocks *b, struct hs_bitmap *ret);
/* The cut to persist: the smaller of the cut and the one the send in
 * flight carries (not on the host before it ends), -1: none. */
int64_t hs_blocks_saved_cut(const struct hs_blocks *b);
/* The persisted copy now matches. */
void hs_blocks_saved(struct hs_blocks *b);

/* ---- queries ---- */
enum hs_blk_state hs_blocks_state(const struct hs_blocks *b, uint64_t blk);
/* First ABSENT (present) block in [from, limit), HS_BITMAP_NONE. */
uint64_t hs_blocks_next_absent(const struct hs_blocks *b, uint64_t from,
			       uint64_t limit);
uint64_t hs_blocks_next_present(const struct hs_blocks *b, uint64_t from,
				uint64_t limit);
/* True while the file holds changes the host has not acknowledged
 * (DIRTY or WRITING blocks, or a cut): its blocks are never dropped
 * whole (hs_blocks_invalidate()). */
int hs_blocks_busy(const struct hs_blocks *b);
/* True if block @blk may be dropped now and read from the host again:
 * CLEAN and below every cut not yet on the host (the per-block evictor's
 * question). */
int hs_blocks_may_drop(const struct hs_blocks *b, uint64_t blk);

/* ---- transitions ---- */
/* Writes host bytes of blocks [from, to) into the cache file: 0 or -errno. */
typedef int (*hs_blocks_fill_fn)(void *arg, uint64_t from, uint64_t to);
/* ABSENT -> CLEAN for each run of blocks in [first, last) still ABSENT
 * (clipped to @size), after @fn wrote it; stops at @fn's error. */
int hs_blocks_fill(struct hs_blocks *b, uint64_t size, uint64_t first,
		   uint64_t last, hs_blocks_fill_fn fn, void *arg);
/* A guest write of [@off, @off+@len) to a file of @size bytes (before it):
 * its blocks -> DIRTY (WRITING -> WRITING2), a gap past the old end ->
 * CLEAN (zeros).  -ENOMEM (nothing changed then but grown storage). */
int hs_blocks_write(struct hs_blocks *b, uint64_t size, uint64_t off,
		    uint64_t len);
/* Size @old -> @size: blocks past the new end -> ABSENT (WRITING bits stay
 * until the send ends, see blocks.c), and the cut is noted; a new part
 * -> CLEAN (zeros, as on the host after the size is sent).  -ENOMEM. */
int hs_blocks_truncate(struct hs_blocks *b, uint64_t old, uint64_t size);
/* The flusher's snapshot: DIRTY -> WRITING; returns the cut the send
 * carries (-1: none).  The flusher reads b->writing without the lock
 * until it ends the snapshot: nothing else changes it meanwhile. */
int64_t hs_blocks_snapshot(struct hs_blocks *b, uint64_t size);
/* The same for the first dirty blocks only, about @max of them (0: all):
 * a write-behind send of a file still being written, so that what it
 * sends is clean, and may be evicted, sooner. */
int64_t hs_blocks_snapshot_first(struct hs_blocks *b, uint64_t size,
				 uint64_t max);
/* The host acknowledged: WRITING -> CLEAN, WRITING2 -> DIRTY. */
void hs_blocks_sent(struct hs_blocks *b, uint64_t size);
/* The send failed: WRITING -> DIRTY but blocks the guest cut off since
 * the snapshot (-> ABSENT); @cut (the snapshot's, maybe lowered by the
 * flusher) is noted again. */
void hs_blocks_send_failed(struct hs_blocks *b, uint64_t size, int64_t cut);
/* The host copy changed, or the whole file is evicted: every block ->
 * ABSENT.  -EBUSY (nothing done) while hs_blocks_busy(); else the number
 * of blocks dropped. */
int64_t hs_blocks_invalidate(struct hs_blocks *b, uint64_t size);
/* Per block: those of [from, to) that hs_blocks_may_drop() -> ABSENT,
 * after @fn (may be NULL) freed each run in the cache file; the number
 * dropped or -errno. */
int64_t hs_blocks_evict(struct hs_blocks *b, uint64_t size, uint64_t from,
			uint64_t to, hs_blocks_fill_fn fn, void *arg);

/* ---- the invariants ---- */
/* 0 if @b obeys every invariant for a file of @size bytes, else -EUCLEAN
 * with the first broken one in @why (may be NULL).  O(file). */
int hs_blocks_check(const struct hs_blocks *b, uint64_t size, char *why,
		    size_t whylen);

#endif
