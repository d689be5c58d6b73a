/*
 * Fuzz target for the NICs' DEVICE_STATE text (net/nic_spec.c), which a
 * destination reads off the network in the precheck and at switchover.
 * The first byte picks the version (0-3), the rest is the text. Whatever
 * is accepted must be within the limits and exactly what the writer
 * writes for what was parsed: one form only. Whatever is refused must say
 * why. Broken promises trap.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/nic.h"

#define fuzz_assert(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nic_state st;
	char err[NIC_ERR_LEN];
	uint8_t *out;
	size_t len;
	int ret;

	if (!size)
		return 0;
	memset(err, 'x', sizeof(err));
	ret = nic_state_parse(data[0] & 3, data + 1, size - 1, &st, err, sizeof(err));
	if (ret) {
		fuzz_assert(ret == -EBADMSG);
		fuzz_assert(memchr(err, '\0', sizeof(err)) && err[0] != '\0');
		return 0;
	}
	fuzz_assert((data[0] & 3) >= 1 && (data[0] & 3) <= NIC_STATE_VERSION);
	fuzz_assert(st.n >= 1 && st.n <= GABI_NET_MAX_NICS);
	fuzz_assert(st.nframes <= NIC_CARRY_MAX);
	fuzz_assert(st.nseen <= NIC_SEEN_MAX);
	fuzz_assert((!st.nframes && !st.nseen) || (data[0] & 3) >= 2);
	for (unsigned s = 0; s < st.nseen; s++)
		fuzz_assert(st.seen[s].nic < st.n);
	for (unsigned f = 0; f < st.nframes; f++)
		fuzz_assert(st.frames[f].nic < st.n && st.frames[f].len >= 14 &&
			    st.frames[f].len <= GABI_NET_MAX_FRAME);
	for (unsigned i = 0; i < st.n; i++) {
		size_t bl = strnlen(st.nics[i].bridge, sizeof(st.nics[i].bridge));

		fuzz_assert(bl >= 1 && bl < sizeof(st.nics[i].bridge));
		fuzz_assert(!strpbrk(st.nics[i].bridge, " \n/,:"));
		fuzz_assert(!(st.nics[i].mac[0] & 1) && st.nics[i].mac_set);
	}
	ret = nic_state_format(&st, &out, &len);
	fuzz_assert(!ret);
	fuzz_assert(len == size - 1 && !memcmp(out, data + 1, len));
	free(out);
	return 0;
}
