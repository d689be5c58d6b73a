/*
 * xxHash for the stream's checksums, the verify digest and the NICs'
 * frame hashes (net/nic_carry.c).
 *
 * Debian builds libxxhash for baseline x86-64 (SSE2). Its plain entry
 * points hash 4 KiB pages at about 5 GB/s here, compute-bound, and the
 * page path hashes every page on both sides. The same library exports
 * _dispatch entry points that pick AVX2 or AVX-512 at run time (about
 * 13 GB/s here, from cold RAM too) and give the same values, so the
 * stream's format does not change. tests/unit/test_stream.c checks that
 * the two agree.
 */
#ifndef FERRY_CORE_HASH_H
#define FERRY_CORE_HASH_H

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <xxh_x86dispatch.h>   /* XXH3_* become XXH3_*_dispatch */

#endif
