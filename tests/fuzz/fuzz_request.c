/* SPDX-License-Identifier: MIT
 * tests/fuzz/fuzz_request.c - libFuzzer target: the agent's request
 * decoder.  The first byte is the op, the rest the payload.  A request that
 * decodes must encode back to the very same bytes (the layout has one
 * spelling) and decode again to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct hs_proto_req q, q2;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hs_pbuf b;
	const char *why;

	if (size < 1)
		return 0;
	if (hs_proto_req_decode(data[0], data + 1, size - 1, &q, &why) < 0) {
		if (!why)
			abort(); /* every refusal names its reason */
		return 0;
	}
	hs_pbuf_init(&b);
	if (hs_proto_req_encode(&q, &b) < 0)
		abort();
	if (b.len != size - 1 || (b.len && memcmp(b.p, data + 1, b.len)))
		abort();
	if (hs_proto_req_decode(data[0], b.p, b.len, &q2, &why) < 0 ||
	    strcmp(q.path, q2.path) || strcmp(q.path2, q2.path2) ||
	    q.flags != q2.flags || q.fh != q2.fh || q.off != q2.off ||
	    q.data_len != q2.data_len)
		abort();
	hs_pbuf_release(&b);
	return 0;
}
