/* SPDX-License-Identifier: MIT
 * tests/unit/test_blocks.c - the block states of cache/blocks.c: each
 * transition of the table, the checker after every step, and the checker
 * catching states broken by hand (so it can fail).
 */
#include "cache/blocks.h"
#include "tests/lib/check.h"

#define B HS_BLOCK_SIZE

static uint64_t size; /* the file's size the steps keep */

/* The checker passes, with the reason printed if not. */
static void ok(const struct hs_blocks *b)
{
	char why[160] = "";

	if (hs_blocks_check(b, size, why, sizeof(why)) != 0)
		CHECK_FAIL("hs_blocks_check: %s", why);
}

/* The checker fails with a reason containing @part. */
static void broken(const struct hs_blocks *b, const char *part)
{
	char why[160] = "";

	CHECK_EQ(hs_blocks_check(b, size, why, sizeof(why)), -EUCLEAN);
	if (!strstr(why, part))
		CHECK_FAIL("reason \"%s\" lacks \"%s\"", why, part);
}

static void states(const struct hs_blocks *b, const char *want)
{
	uint64_t i;

	for (i = 0; want[i]; i++) {
		static const char map[] = "acdwW"; /* ABSENT CLEAN DIRTY WRITING WRITING2 */

		if (map[hs_blocks_state(b, i)] != want[i])
			CHECK_FAIL("block %d is '%c', want \"%s\"", (int)i,
				   map[hs_blocks_state(b, i)], want);
	}
}

/* The persisted dirty set equals dirty|writing below the cut. */
static void saved_is(const struct hs_blocks *b, const char *want)
{
	struct hs_bitmap d;
	uint64_t i;

	hs_bitmap_init(&d);
	CHECK_OK(hs_blocks_saved_dirty(b, &d));
	for (i = 0; want[i]; i++)
		CHECK_EQ(hs_bitmap_test(&d, i), want[i] == '1');
	CHECK_EQ(hs_bitmap_next_set(&d, i, UINT64_MAX), HS_BITMAP_NONE);
	hs_bitmap_release(&d);
}

static int filled_runs;

static int fill_fn(void *arg, uint64_t from, uint64_t to)
{
	(void)arg;
	CHECK(from < to);
	filled_runs++;
	return 0;
}

static int fail_fn(void *arg, uint64_t from, uint64_t to)
{
	return -EIO;
}

static void test_transitions(void)
{
	struct hs_blocks b;
	struct hs_bitmap p, d;
	int64_t cut;

	hs_blocks_init(&b);
	size = 8 * B;
	ok(&b);
	states(&b, "aaaaaaaa");
	/* ABSENT -> CLEAN: a fetch lands, in the runs still absent only */
	CHECK_OK(hs_blocks_fill(&b, size, 2, 4, fill_fn, NULL));
	states(&b, "aaccaaaa");
	ok(&b);
	filled_runs = 0;
	CHECK_OK(hs_blocks_fill(&b, size, 0, 100, fill_fn, NULL));
	CHECK_EQ(filled_runs, 2); /* [0,2) and [4,8): not past the end */
	states(&b, "cccccccc");
	CHECK_EQ(b.npresent, 8);
	ok(&b);
	CHECK(!hs_blocks_busy(&b));
	CHECK(hs_blocks_may_drop(&b, 3));

	/* -> DIRTY by a write; growing past the end: the gap is CLEAN */
	CHECK_OK(hs_blocks_write(&b, size, 1 * B, 2 * B));
	states(&b, "cddccccc");
	ok(&b);
	CHECK_OK(hs_blocks_write(&b, size, 10 * B + 5, 100));
	size = 10 * B + 105;
	states(&b, "cddcccccccd");
	ok(&b);
	CHECK(hs_blocks_busy(&b));
	CHECK(!hs_blocks_may_drop(&b, 1));
	CHECK_EQ(hs_blocks_invalidate(&b, size), -EBUSY);
	saved_is(&b, "01100000001");

	/* DIRTY -> WRITING; a write meanwhile: WRITING2 */
	cut = hs_blocks_snapshot(&b, size);
	CHECK_EQ(cut, -1);
	states(&b, "cwwcccccccw");
	ok(&b);
	saved_is(&b, "01100000001"); /* a crash mid-send resends */
	CHECK_OK(hs_blocks_write(&b, size, 2 * B, B));
	states(&b, "cwWcccccccw");
	ok(&b);
	CHECK(!hs_blocks_may_drop(&b, 1));
	/* WRITING -> CLEAN, WRITING2 -> DIRTY */
	hs_blocks_sent(&b, size);
	states(&b, "ccdcccccccc");
	ok(&b);
	saved_is(&b, "001");

	/* a failed send: WRITING -> DIRTY */
	cut = hs_blocks_snapshot(&b, size);
	states(&b, "ccwcccccccc");
	hs_blocks_send_failed(&b, size, cut);
	states(&b, "ccdcccccccc");
	ok(&b);

	/* a truncate during the send: the blocks cut off become holes, their
	 * WRITING bits go at its end, and their persisted copy never says
	 * dirty */
	CHECK_OK(hs_blocks_write(&b, size, 6 * B, 2 * B));
	cut = hs_blocks_snapshot(&b, size);
	states(&b, "ccwcccwwccc");
	CHECK_OK(hs_blocks_truncate(&b, size, 5 * B + 10));
	size = 5 * B + 10;
	states(&b, "ccwccca");
	CHECK_EQ(b.cut, (int64_t)size);
	CHECK_EQ(hs_blocks_saved_cut(&b), (int64_t)size);
	ok(&b);
	saved_is(&b, "001");
	CHECK(!hs_blocks_may_drop(&b, 5)); /* past the cut the host has old bytes */
	CHECK(hs_blocks_may_drop(&b, 4));
	/* growing again: the new part is CLEAN (zeros) */
	CHECK_OK(hs_blocks_truncate(&b, size, 9 * B));
	size = 9 * B;
	ok(&b);
	hs_blocks_send_failed(&b, size, cut);
	states(&b, "ccdcccccc");
	ok(&b);
	saved_is(&b, "001");

	/* the persisted form round trip: dirty|writing comes back DIRTY */
	cut = hs_blocks_snapshot(&b, size);
	CHECK_EQ(cut, 5 * B + 10);
	CHECK_EQ(b.send_cut, 5 * B + 10);
	CHECK(!hs_blocks_may_drop(&b, 7)); /* the send's cut is not on the host */
	CHECK_EQ(hs_blocks_saved_cut(&b), 5 * B + 10); /* nor in a crash */
	hs_bitmap_init(&p);
	hs_bitmap_init(&d);
	CHECK_OK(hs_bitmap_or(&p, &b.present));
	CHECK_OK(hs_blocks_saved_dirty(&b, &d));
	hs_blocks_sent(&b, size);
	CHECK(!hs_blocks_busy(&b));
	hs_blocks_saved(&b);
	CHECK(!b.changed);
	/* a row whose size shrank meanwhile: what lies past it goes */
	hs_blocks_load(&b, &p, &d, -1, 4 * B);
	size = 4 * B;
	states(&b, "ccdca");
	CHECK_EQ(b.npresent, 4);
	CHECK_EQ(b.ndirty, 1);
	ok(&b);

	/* CLEAN -> ABSENT: per block (the dirty one stays), then whole */
	CHECK_EQ(hs_blocks_evict(&b, size, 0, 100, fill_fn, NULL), 3);
	states(&b, "aada");
	ok(&b);
	CHECK_EQ(hs_blocks_evict(&b, size, 0, 100, fail_fn, NULL), 0);
	cut = hs_blocks_snapshot(&b, size);
	hs_blocks_sent(&b, size);
	CHECK_EQ(hs_blocks_evict(&b, size, 0, 100, fail_fn, NULL), -EIO);
	CHECK_EQ(hs_blocks_invalidate(&b, size), 1);
	states(&b, "aaaa");
	ok(&b);
	/* a fill stops at the first failed run */
	CHECK_EQ(hs_blocks_fill(&b, size, 0, 4, fail_fn, NULL), -EIO);
	states(&b, "aaaa");
	ok(&b);
	hs_blocks_release(&b);
}

/* A write-behind snapshot takes the first dirty blocks only, across runs;
 * the rest stays DIRTY and goes with the next one. */
static void test_snapshot_first(void)
{
	struct hs_blocks b;
	int64_t cut;

	hs_blocks_init(&b);
	size = 0;
	CHECK_OK(hs_blocks_write(&b, size, 0, 10 * B));
	size = 10 * B;
	hs_blocks_snapshot(&b, size);
	hs_blocks_sent(&b, size);
	CHECK_OK(hs_blocks_write(&b, size, 1 * B, 2 * B));
	CHECK_OK(hs_blocks_write(&b, size, 5 * B, 3 * B));
	CHECK_OK(hs_blocks_truncate(&b, size, 9 * B));
	size = 9 * B;
	states(&b, "cddccdddc");
	cut = hs_blocks_snapshot_first(&b, size, 3);
	CHECK_EQ(cut, 9 * B);            /* the first send carries the cut */
	states(&b, "cwwccwddc");
	CHECK_EQ(b.nwriting, 3);
	CHECK_EQ(b.ndirty, 2);
	ok(&b);
	saved_is(&b, "011001110");
	/* written again meanwhile: WRITING2, and DIRTY past the first */
	CHECK_OK(hs_blocks_write(&b, size, 2 * B, 1));
	states(&b, "cwWccwddc");
	hs_blocks_sent(&b, size);
	states(&b, "ccdcccddc");
	ok(&b);
	/* @max at or past what is dirty, or 0: all of it */
	cut = hs_blocks_snapshot_first(&b, size, 3);
	CHECK_EQ(cut, -1);
	states(&b, "ccwcccwwc");
	hs_blocks_send_failed(&b, size, cut);
	states(&b, "ccdcccddc");
	cut = hs_blocks_snapshot_first(&b, size, 0);
	states(&b, "ccwcccwwc");
	hs_blocks_sent(&b, size);
	CHECK(!hs_blocks_busy(&b));
	ok(&b);
	/* a big file: the first 1,000 of 5,000 dirty blocks, in one run */
	CHECK_OK(hs_blocks_write(&b, size, 0, 5000 * B));
	size = 5000 * B;
	hs_blocks_snapshot_first(&b, size, 1000);
	CHECK_EQ(b.nwriting, 1000);
	CHECK_EQ(hs_blocks_state(&b, 999), HS_BLK_WRITING);
	CHECK_EQ(hs_blocks_state(&b, 1000), HS_BLK_DIRTY);
	ok(&b);
	hs_blocks_sent(&b, size);
	CHECK_EQ(b.ndirty, 4000);
	ok(&b);
	hs_blocks_release(&b);
}

/* Each invariant broken by hand is caught. */
static void test_checker_fails(void)
{
	struct hs_blocks b;

	size = 8 * B;
	hs_blocks_init(&b);
	CHECK_OK(hs_blocks_write(&b, size, 0, 4 * B));
	ok(&b);
	hs_bitmap_clear(&b.present, 2, 3);
	b.npresent--;
	broken(&b, "block 2 is dirty but not present");
	hs_bitmap_set(&b.present, 2, 3);
	b.npresent++;
	ok(&b);

	hs_blocks_snapshot(&b, size);
	hs_bitmap_clear(&b.present, 1, 2);
	b.npresent--;
	broken(&b, "block 1 is being sent but not present");
	b.cut = 0; /* ... unless the guest cut it off */
	ok(&b);
	b.cut = -1;
	hs_bitmap_set(&b.present, 1, 2);
	b.npresent++;
	ok(&b);

	size = 2 * B;
	broken(&b, "present past the end");
	size = 8 * B;
	b.npresent++;
	broken(&b, "counts");
	b.npresent--;
	b.sending = 0;
	broken(&b, "no snapshot is out");
	b.sending = 1;
	b.cut = -2;
	broken(&b, "cut -2");
	b.cut = -1;
	hs_bitmap_set(&b.dirty, 9, 10);
	hs_bitmap_set(&b.present, 9, 10);
	b.ndirty++;
	b.npresent++;
	size = 9 * B;
	broken(&b, "present past the end");
	hs_bitmap_clear(&b.present, 9, 10);
	b.npresent--;
	broken(&b, "dirty but not present");
	hs_blocks_release(&b);
}

int main(void)
{
	test_transitions();
	test_snapshot_first();
	test_checker_fails();
	return 0;
}
