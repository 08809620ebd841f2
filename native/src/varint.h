/* Zigzag varints written into memory the caller sized (record encoding in
 * stamp.c and bulk.c measures each record first, then writes it). The
 * reader with bounds checks is tl_read_varint in batch.h; tl_buf_put_varint
 * (buffer.h) appends to a growing buffer. */
#ifndef TIDELOG_VARINT_H
#define TIDELOG_VARINT_H

#include <stdint.h>

/* How many bytes value takes as a zigzag varint (1 to 10). */
static inline int tl_varint_size(int64_t value) {
    uint64_t raw = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    int n = 1;
    while (raw >= 0x80) {
        raw >>= 7;
        n++;
    }
    return n;
}

/* Writes value at p as a zigzag varint; the byte after it. */
static inline uint8_t *tl_put_varint(uint8_t *p, int64_t value) {
    uint64_t raw = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    while (raw >= 0x80) {
        *p++ = (uint8_t)(raw | 0x80);
        raw >>= 7;
    }
    *p++ = (uint8_t)raw;
    return p;
}

#endif
