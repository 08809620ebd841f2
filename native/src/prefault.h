/* Faulting in the pages of a fresh request buffer in one call. */
#ifndef TIDELOG_PREFAULT_H
#define TIDELOG_PREFAULT_H

#include <stddef.h>

/* The least a buffer (or the part of it just added) must be for its pages
 * to be faulted in ahead: below it the call costs more than the traps. */
#define TL_PREFAULT_MIN_BYTES (64 * 1024)

/* Makes the whole pages inside [start, start + len) present and writable,
 * those not present yet in one madvise(MADV_POPULATE_WRITE) per run of up to
 * 1 MiB, instead of a page fault each at the first write into them. Best
 * effort: where the kernel lacks the call (before Linux 5.14, or not Linux)
 * nothing is done, and the pages fault in as they are written. */
void tl_prefault(void *start, size_t len);

#endif
