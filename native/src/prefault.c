/*
 * Faulting in a fresh request buffer's pages in one system call.
 *
 * A produce request is read from the socket into a buffer of its own, which
 * the log cache keeps until upload; while the cache grows, each such buffer
 * is memory the process has never touched, and the socket's copy into it
 * traps once per 4 KiB page. On a virtual machine a trap costs about a
 * microsecond beyond the page itself: reading 1 MB into fresh memory cost
 * 7-8 times a read into memory already present, and one
 * MADV_POPULATE_WRITE over the buffer first cut that to about a third
 * (docs/design/0030-event-loop-cpu-per-request.md). Memory the allocator
 * hands back again is present already: mincore() says so for about a
 * microsecond per MiB, and then nothing is populated (populating present
 * pages walks them for about 7 microseconds per MiB).
 */
#define _DEFAULT_SOURCE /* mincore and madvise in <sys/mman.h> */
#include "prefault.h"

#include <stdint.h>

#ifdef __linux__
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; older headers lack the name */
#endif

#define RUN_PAGES 256 /* pages asked about, and populated, per call */

static int unsupported; /* the kernel refused the advice once: never ask again */

static int all_present(unsigned char *start, size_t len, size_t page) {
    unsigned char present[RUN_PAGES];
    if (mincore(start, len, present) != 0) return 0;
    for (size_t i = 0; i < len / page; i++) {
        if (!(present[i] & 1)) return 0;
    }
    return 1;
}

void tl_prefault(void *start, size_t len) {
    if (unsupported || len < TL_PREFAULT_MIN_BYTES) return;
    long page_size = sysconf(_SC_PAGESIZE);
    if (page_size <= 0) return;
    size_t page = (size_t)page_size;
    uintptr_t first = ((uintptr_t)start + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t end = ((uintptr_t)start + len) & ~(uintptr_t)(page - 1);
    for (uintptr_t at = first; at < end; at += RUN_PAGES * page) {
        size_t run = end - at < RUN_PAGES * page ? end - at : RUN_PAGES * page;
        if (all_present((unsigned char *)at, run, page)) continue;
        if (madvise((void *)at, run, MADV_POPULATE_WRITE) != 0) {
            if (errno == EINVAL || errno == ENOSYS) unsupported = 1;
            return; /* EFAULT, ENOMEM...: the first write faults as ever */
        }
    }
}
#else
void tl_prefault(void *start, size_t len) {
    (void)start;
    (void)len;
}
#endif
