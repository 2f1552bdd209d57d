/* SPDX-License-Identifier: MIT
 * transport/agent_i.h - private interface of the agent wire, shared by
 * open.c (the dispatcher) and agent.c.
 */
#ifndef HS_TRANSPORT_AGENT_I_H
#define HS_TRANSPORT_AGENT_I_H

#include "transport.h"

/* hs_tr_open() for the HS_TR_AGENT_* kinds (see transport.h). */
int hs_agent_open(const struct hs_tr_config *cfg, hs_deadline_t dl,
		  struct hs_transport **ret, char *err, size_t errlen);

/* Bytes sent and received on the wire so far (headers included), for
 * measurements.  -EINVAL if @t is not an agent transport. */
int hs_agent_bytes(struct hs_transport *t, uint64_t *ret_out,
		   uint64_t *ret_in);

#endif
