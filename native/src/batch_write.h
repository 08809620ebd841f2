/* Writing a Kafka record batch v2 header (docs/record-batch.md) in front of
 * a records area already sized: encode_batch (module.c) and encode_records
 * (bulk.c) fill the fields they choose, then seal the batch with its CRC
 * once the area is in place. The reader is tl_read_header in batch.h. */
#ifndef TIDELOG_BATCH_WRITE_H
#define TIDELOG_BATCH_WRITE_H

#include <stdint.h>

#include "batch.h"
#include "crc32c.h"

/* Writes the TL_HEADER_SIZE bytes at p for a records area of area_len bytes
 * from the fields of f a writer chooses; the batch length follows from
 * area_len, the magic is 2, and the CRC is left 0 until tl_seal_batch (f's
 * position, batch_length, magic and crc are not read). */
static inline void tl_put_batch_header(uint8_t *p, int64_t area_len, const tl_header *f) {
    tl_put_i64(p, f->base_offset);
    tl_put_i32(p + 8, (int32_t)(TL_HEADER_SIZE - TL_LENGTH_PREFIX + area_len));
    tl_put_i32(p + 12, f->partition_leader_epoch);
    p[16] = 2;
    tl_put_i32(p + 17, 0);
    p[21] = (uint8_t)((uint16_t)f->attributes >> 8);
    p[22] = (uint8_t)f->attributes;
    tl_put_i32(p + 23, f->last_offset_delta);
    tl_put_i64(p + 27, f->base_timestamp);
    tl_put_i64(p + 35, f->max_timestamp);
    tl_put_i64(p + 43, f->producer_id);
    p[51] = (uint8_t)((uint16_t)f->producer_epoch >> 8);
    p[52] = (uint8_t)f->producer_epoch;
    tl_put_i32(p + 53, f->base_sequence);
    tl_put_i32(p + 57, f->record_count);
}

/* Stores the CRC32C of everything after the CRC field, header and area. */
static inline void tl_seal_batch(uint8_t *p, int64_t area_len) {
    tl_put_i32(p + 17, (int32_t)tl_crc32c(0, p + TL_CRC_START,
                                          (size_t)(TL_HEADER_SIZE + area_len - TL_CRC_START)));
}

#endif
