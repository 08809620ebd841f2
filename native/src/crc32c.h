/* CRC32C (Castagnoli), with the fastest instruction set the CPU has. */
#ifndef TIDELOG_CRC32C_H
#define TIDELOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Prepares the tables and picks the implementation; call once at import. */
void tl_crc32c_init(void);

/* The CRC32C of data, continuing from crc (0 to start). */
uint32_t tl_crc32c(uint32_t crc, const void *data, size_t len);

/* The CRC32C of A followed by B, from crc1 (of A, from 0 or any start) and
 * crc2 (of B alone, from 0) and B's length, without reading B: O(log len2). */
uint32_t tl_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2);

/* The name of the live implementation, e.g. "sse4.2-3way". */
const char *tl_crc32c_backend(void);

/* The name of the i-th implementation this CPU runs (0: the tables; the
 * live one last), NULL past the last. */
const char *tl_crc32c_backend_at(int i);

/* tl_crc32c through the i-th implementation (i valid, as above). */
uint32_t tl_crc32c_at(int i, uint32_t crc, const void *data, size_t len);

#endif
