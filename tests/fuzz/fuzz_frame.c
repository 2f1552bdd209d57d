/* SPDX-License-Identifier: MIT
 * tests/fuzz/fuzz_frame.c - libFuzzer target: a byte stream as a peer would
 * send it, cut into frames by the header decoder, each payload decoded
 * (copied or lz4-decompressed) into a buffer of exactly raw_len bytes.
 * A reply payload is then read as a listing (u32 count, str, attr...), the
 * shape of the longest reply parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_listing(const uint8_t *p, size_t n)
{
	char name[HS_PROTO_MAX_STR + 1];
	struct hs_attr a;
	struct hs_prd r;
	uint32_t count;

	hs_prd_init(&r, p, n);
	while (!r.err && r.pos < r.len) {
		count = hs_prd_u32(&r);
		while (count-- && !r.err) {
			hs_prd_str(&r, name, sizeof(name));
			hs_prd_attr(&r, &a);
		}
	}
	(void)hs_prd_end(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hs_proto_hdr h;
	const char *why;
	uint8_t *raw;

	while (size >= HS_PROTO_HDR_SIZE) {
		if (hs_proto_hdr_decode(data, &h, &why) < 0)
			return 0;
		data += HS_PROTO_HDR_SIZE;
		size -= HS_PROTO_HDR_SIZE;
		if (h.len > size)
			return 0;
		raw = malloc(h.raw_len ? h.raw_len : 1);
		if (!raw)
			return 0;
		if (hs_proto_payload_decode(&h, data, raw, &why) == 0)
			read_listing(raw, h.raw_len);
		free(raw);
		data += h.len;
		size -= h.len;
	}
	return 0;
}
