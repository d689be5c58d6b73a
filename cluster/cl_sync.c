/* State transfer after a membership change: see cl_sync.h. */
#include <stdlib.h>
#include <string.h>

#include "cl_sync.h"

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void cl_sync_view(struct cl_sync *s, const uint32_t *members, size_t n)
{
	memset(s, 0, sizeof(*s));
	if (n > CL_MAX_NODES)
		n = CL_MAX_NODES;
	memcpy(s->members, members, n * sizeof(*members));
	qsort(s->members, n, sizeof(*s->members), cmp_u32);
	s->n_members = n;
}

bool cl_sync_same_view(const struct cl_sync *s, const uint32_t *members, size_t n)
{
	uint32_t sorted[CL_MAX_NODES];

	if (n != s->n_members)
		return false;
	memcpy(sorted, members, n * sizeof(*members));
	qsort(sorted, n, sizeof(*sorted), cmp_u32);
	return !memcmp(sorted, s->members, n * sizeof(*sorted));
}

static int member_index(const struct cl_sync *s, uint32_t nodeid)
{
	for (size_t i = 0; i < s->n_members; i++)
		if (s->members[i] == nodeid)
			return (int)i;
	return -1;
}

enum cl_sync_verdict cl_sync_hello(struct cl_sync *s, uint32_t me,
				   const Ferry__Cluster__SyncHello *h)
{
	uint64_t newest = 0;
	bool all_equal = true;
	int i = member_index(s, h->nodeid);

	if (s->synced || i < 0 || !cl_sync_same_view(s, h->members, h->n_members))
		return CL_SYNC_WAIT;
	s->have[i] = true;
	s->seq[i] = h->seq;
	for (size_t k = 0; k < s->n_members; k++) {
		if (!s->have[k])
			return CL_SYNC_WAIT;
		if (s->seq[k] > newest)
			newest = s->seq[k];
	}
	/* members[] is sorted, so the first with the newest seq is the donor. */
	s->donor = 0;
	for (size_t k = 0; k < s->n_members; k++) {
		if (s->seq[k] != newest)
			all_equal = false;
		else if (!s->donor)
			s->donor = s->members[k];
	}
	if (all_equal) {
		s->synced = true;
		return CL_SYNC_DONE;
	}
	return s->donor == me ? CL_SYNC_SEND_STATE : CL_SYNC_WAIT;
}

bool cl_sync_state(struct cl_sync *s, const Ferry__Cluster__SyncState *m)
{
	if (s->synced || !s->donor || m->nodeid != s->donor ||
	    !cl_sync_same_view(s, m->members, m->n_members))
		return false;
	s->synced = true;
	return true;
}
