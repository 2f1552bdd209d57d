/* SPDX-License-Identifier: MIT
 * tests/unit/test_bitmap.c - block bit sets: ranges across word edges,
 * searches, truncation, and the saved form round trip, checked against a
 * plain byte-per-bit model with random operations.
 */
#include "cache/bitmap.h"
#include "tests/lib/check.h"

#define N 5000

static unsigned char model[N];

static void check_model(const struct hs_bitmap *b)
{
	uint64_t i, cnt = 0;

	for (i = 0; i < N; i++) {
		CHECK_EQ(hs_bitmap_test(b, i), model[i]);
		cnt += model[i];
	}
	CHECK_EQ(hs_bitmap_count(b), cnt);
	for (i = 0; i < N; i += 37) {
		uint64_t j = i;

		while (j < N && !model[j])
			j++;
		CHECK_EQ(hs_bitmap_next_set(b, i, N), j < N ? j : HS_BITMAP_NONE);
		j = i;
		while (j < N && model[j])
			j++;
		CHECK_EQ(hs_bitmap_next_clear(b, i, N), j < N ? j : HS_BITMAP_NONE);
	}
}

int main(void)
{
	struct hs_bitmap b, c;
	void *saved;
	size_t len;
	int round;

	hs_bitmap_init(&b);
	hs_bitmap_init(&c);
	CHECK(hs_bitmap_empty(&b));
	CHECK_EQ(hs_bitmap_next_set(&b, 0, 100), HS_BITMAP_NONE);
	CHECK_EQ(hs_bitmap_next_clear(&b, 5, 100), 5);
	srand(7);
	for (round = 0; round < 2000; round++) {
		uint64_t from = (uint64_t)rand() % N, to = (uint64_t)rand() % N, i;

		if (from > to) {
			uint64_t t = from;
			from = to;
			to = t;
		}
		if (rand() % 3) {
			CHECK_OK(hs_bitmap_set(&b, from, to));
			for (i = from; i < to; i++)
				model[i] = 1;
		} else {
			hs_bitmap_clear(&b, from, to);
			for (i = from; i < to; i++)
				model[i] = 0;
		}
		if (round % 200 == 0)
			check_model(&b);
	}
	check_model(&b);
	saved = hs_bitmap_save(&b, &len);
	CHECK_OK(hs_bitmap_load(&c, saved, len));
	check_model(&c);
	free(saved);
	CHECK_OK(hs_bitmap_or(&c, &b));
	check_model(&c);
	hs_bitmap_truncate(&b, 100);
	for (uint64_t i = 100; i < N; i++)
		model[i] = 0;
	check_model(&b);
	hs_bitmap_truncate(&b, 0);
	CHECK(hs_bitmap_empty(&b));
	CHECK_EQ(hs_bitmap_load(&c, "abc", 3), -EINVAL);
	hs_bitmap_release(&b);
	hs_bitmap_release(&c);
	return 0;
}
