/* SPDX-License-Identifier: MIT
 * tests/lib/faulty.h - a fault-injecting transport wrapper for unit tests.
 *
 * hs_faulty_wrap() returns a struct hs_transport that passes every call to
 * an inner transport (usually localtr) unless told to fail it: fail the Nth
 * call once or from then on, stall every call until its deadline (a hung
 * wire), or break the connection now.  It counts calls per slot and can log
 * one line per call.  Network-level faults (a TCP proxy dropping bytes) are
 * out of its scope.
 *
 * A "call" is one invocation of a slot of the wrapper.  Calls the hs_tr_*()
 * wrappers refuse before reaching the slot (deadline already passed,
 * connection broken, see transport.h) are not seen, so not counted.
 *
 * What a wire failure does, as transport.h says of real transports: a stall
 * that reaches its deadline, an injected link-class error
 * (hs_tr_err_is_link(), e.g. -ECONNRESET, -ETIMEDOUT) and hs_faulty_break()
 * mark the wrapper broken for good; later calls get -ENOTCONN.  Host-side
 * errors (-EIO, -ENOSPC, -ENOENT, ...) leave it usable.  fclose always
 * releases the file, whatever is injected.
 *
 * Thread model: the wrapper and its controls may be used from any thread at
 * once; one mutex guards the counters and fault settings and is never held
 * across a call to the inner transport.  hs_tr_close() only once no other
 * thread uses it.
 */
#ifndef HS_TESTS_FAULTY_H
#define HS_TESTS_FAULTY_H

#include <stdio.h>

#include "../../transport/transport.h"

/* Wraps @inner, taking ownership of it: closing the wrapper closes @inner.
 * Copies caps and remote ids from @inner.  Returns 0 or -ENOMEM (then
 * @inner is closed too). */
int hs_faulty_wrap(struct hs_transport *inner, struct hs_transport **ret);

/* The wrapped transport (still owned by the wrapper), e.g. to set the
 * localtr delay. */
struct hs_transport *hs_faulty_inner(struct hs_transport *t);

/* The (@n+1)-th call from now fails with @err (e.g. -EIO, -ENOSPC; a
 * positive value is negated, 0 means -EIO) without reaching the inner
 * transport.  With @persistent, every call after it fails too, until
 * hs_faulty_reset().  Replaces any earlier fail_after setting. */
void hs_faulty_fail_after(struct hs_transport *t, int n, int err,
			  int persistent);

/* The (@n+1)-th call from now reaches the inner transport (what it does on
 * the host is done) but its answer is lost: it returns @err (0 means
 * -ECONNRESET; a link-class error breaks the wrapper), as when the wire
 * fails after the host acted.  With calls from several threads at once,
 * the answer lost is the next one to come back.  Replaces any earlier
 * fail_after setting. */
void hs_faulty_lose_answer_after(struct hs_transport *t, int n, int err);

/* Clears pending and persistent failures and turns the stall off (waking
 * stalled calls).  Counters and the broken flag are unchanged. */
void hs_faulty_reset(struct hs_transport *t);

/* While on, every call waits until its deadline, then marks the wrapper
 * broken and returns -ETIMEDOUT, as a stalled wire would.  A call with
 * HS_DEADLINE_NEVER waits until the stall is turned off (then goes on
 * normally) or the wrapper is broken (then -ENOTCONN). */
void hs_faulty_stall(struct hs_transport *t, int on);

/* Marks the wrapper broken now: later calls get -ENOTCONN. */
void hs_faulty_break(struct hs_transport *t);

/* Total calls seen since the wrap. */
long hs_faulty_calls(struct hs_transport *t);

/* Calls seen of the slot named @slot ("lstat", "open", "pwrite", "rename",
 * ... as in struct hs_transport_ops); -1 for an unknown name. */
long hs_faulty_count(struct hs_transport *t, const char *slot);

/* Writes one line per call to @f (borrowed; NULL stops), after the call:
 * "rename /a /b -> 0", "pwrite 4096@8192 -> 4096", "lstat /x -> -ENOENT".
 * Lines are flushed as written. */
void hs_faulty_log(struct hs_transport *t, FILE *f);

#endif
