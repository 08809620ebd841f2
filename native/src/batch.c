/*
 * Record batch v2 framing and validation, in the same order and with the same
 * facts as native/_pure.py. Every length comes off the wire and is hostile:
 * arithmetic is in int64 and each read is checked against its end.
 */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

int64_t tl_get_i64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return (int64_t)v;
}

int32_t tl_get_i32(const uint8_t *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}

static int16_t get_i16(const uint8_t *p) { return (int16_t)(((uint16_t)p[0] << 8) | p[1]); }

void tl_put_i64(uint8_t *p, int64_t v) {
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--, u >>= 8) p[i] = (uint8_t)u;
}

void tl_put_i32(uint8_t *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    for (int i = 3; i >= 0; i--, u >>= 8) p[i] = (uint8_t)u;
}

static int fail(tl_error *err, tl_kind kind, int64_t position, int64_t expected, int64_t found,
                const char *message) {
    err->kind = kind;
    err->position = position;
    err->expected = expected;
    err->found = found;
    snprintf(err->message, sizeof err->message, "%s", message);
    return -1;
}

int tl_read_varint(const uint8_t *buf, int64_t *pos, int64_t end, int max_bytes, int64_t *out) {
    uint64_t raw = 0;
    int shift = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (*pos + i >= end) return -1;
        uint8_t byte = buf[*pos + i];
        raw |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            if (max_bytes == 5) raw &= 0xFFFFFFFFu;
            *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
            *pos += i + 1;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

/* tl_read_varint with the one- and two-byte varints (a record's fields,
 * its length up to 8 KiB) read inline: the record walk is on the produce
 * path. */
static inline int read_varint(const uint8_t *buf, int64_t *pos, int64_t end, int max_bytes,
                              int64_t *out) {
    int64_t at = *pos;
    if (at + 1 < end) { /* two bytes there, the usual case: one bounds check */
        uint64_t first = buf[at];
        if (first < 0x80) {
            *out = (int64_t)(first >> 1) ^ -(int64_t)(first & 1);
            *pos = at + 1;
            return 0;
        }
        uint64_t second = buf[at + 1];
        if (second < 0x80) {
            uint64_t raw = (first & 0x7F) | second << 7;
            *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
            *pos = at + 2;
            return 0;
        }
    } else if (at < end && buf[at] < 0x80) {
        uint64_t raw = buf[at];
        *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
        *pos = at + 1;
        return 0;
    }
    /* Through locals, so that the caller's position and value never have
     * their address taken and stay in registers. */
    int64_t next = at, value = 0;
    if (tl_read_varint(buf, &next, end, max_bytes, &value) != 0) return -1;
    *pos = next;
    *out = value;
    return 0;
}

const char *const tl_kind_names[TL_KINDS] = {
    [TL_TRUNCATED] = "TruncatedBatch",     [TL_BAD_LENGTH] = "InvalidBatchLength",
    [TL_CORRUPT] = "CorruptBatch",         [TL_MAGIC] = "UnsupportedMagic",
    [TL_COUNT] = "InvalidRecordCount",     [TL_RECORD] = "InvalidRecord",
    [TL_CODEC] = "UnsupportedCompression", [TL_INFLATION] = "InflationLimitExceeded",
    [TL_SECOND_BATCH] = "SecondBatch",    [TL_INVALID_MAGIC] = "InvalidMagic",
    [TL_NO_BATCH] = "NoBatch",             [TL_BASE_OFFSET] = "NonZeroBaseOffset",
};

/* The frame at pos as Kafka's ByteBufferLogInputStream frames it, in its
 * order: its size; 0 where that iterator frames nothing (fewer than 12
 * bytes left, fewer than the 17 up to the magic, or fewer than the length
 * claims), or -1 with err set where it throws CorruptRecordException (a
 * length below TL_MIN_FRAMED_LENGTH, then a magic outside 0 to TL_MAX_MAGIC). */
static int64_t kafka_frame(const uint8_t *buf, int64_t pos, int64_t end, tl_error *err) {
    char msg[160];
    int64_t left = end - pos;
    if (left < TL_LENGTH_PREFIX) return 0;
    int32_t length = tl_get_i32(buf + pos + 8);
    if (length < TL_MIN_FRAMED_LENGTH) {
        snprintf(msg, sizeof msg, "batch at %lld: batchLength %d is below the least frame, %d",
                 (long long)pos, length, TL_MIN_FRAMED_LENGTH);
        return fail(err, TL_BAD_LENGTH, pos, TL_MIN_FRAMED_LENGTH, length, msg);
    }
    if (left <= TL_MAGIC_OFFSET) return 0;
    int8_t magic = (int8_t)buf[pos + TL_MAGIC_OFFSET];
    if (magic < 0 || magic > TL_MAX_MAGIC) {
        snprintf(msg, sizeof msg, "batch at %lld: magic %d, no record format has it",
                 (long long)pos, (int)magic);
        return fail(err, TL_INVALID_MAGIC, pos, 2, magic, msg);
    }
    int64_t size = TL_LENGTH_PREFIX + (int64_t)length;
    return size <= left ? size : 0;
}

int64_t tl_produce_batch_size(const uint8_t *buf, int64_t end, int allow_zstd, tl_error *err) {
    char msg[160];
    int64_t first = kafka_frame(buf, 0, end, err);
    if (first < 0) return -1;
    if (first == 0) {
        snprintf(msg, sizeof msg, "no record batch in %lld bytes: a Produce carries one per partition",
                 (long long)end);
        return fail(err, TL_NO_BATCH, 0, TL_NO_FACT, end, msg);
    }
    int8_t magic = (int8_t)buf[TL_MAGIC_OFFSET];
    if (magic != 2) {
        snprintf(msg, sizeof msg, "batch at 0: magic %d, only magic 2 is accepted", (int)magic);
        return fail(err, TL_MAGIC, 0, 2, magic, msg);
    }
    /* A frame holds at least TL_LENGTH_PREFIX + TL_MIN_FRAMED_LENGTH bytes:
     * the attributes (bytes 21 and 22) are in it. */
    if (!allow_zstd && (get_i16(buf + TL_ATTRIBUTES_OFFSET) & TL_CODEC_MASK) == TL_ZSTD) {
        return fail(err, TL_CODEC, 0, TL_NO_FACT, TL_ZSTD,
                    "batch at 0: zstd compression, which this Produce version may not carry");
    }
    int64_t second = kafka_frame(buf, first, end, err);
    if (second < 0) return -1;
    if (second > 0) {
        snprintf(msg, sizeof msg, "batch at %lld: a second batch, where one is allowed",
                 (long long)first);
        return fail(err, TL_SECOND_BATCH, first, TL_NO_FACT, TL_NO_FACT, msg);
    }
    return first;
}

int tl_check_produce_base_offset(const uint8_t *buf, tl_error *err) {
    char msg[160];
    int64_t base_offset = tl_get_i64(buf);
    if (base_offset == 0) return 0;
    snprintf(msg, sizeof msg, "batch at 0: baseOffset %lld, a client's batch starts at 0",
             (long long)base_offset);
    return fail(err, TL_BASE_OFFSET, 0, 0, base_offset, msg);
}

int tl_read_header(const uint8_t *buf, int64_t pos, int64_t end, tl_header *h, tl_error *err) {
    char msg[160];
    if (end - pos < TL_LENGTH_PREFIX) {
        snprintf(msg, sizeof msg, "batch at %lld: %lld bytes left, a batch needs %d to frame",
                 (long long)pos, (long long)(end - pos), TL_LENGTH_PREFIX);
        return fail(err, TL_TRUNCATED, pos, TL_LENGTH_PREFIX, end - pos, msg);
    }
    const uint8_t *p = buf + pos;
    int32_t batch_length = tl_get_i32(p + 8);
    if (batch_length < TL_HEADER_SIZE - TL_LENGTH_PREFIX) {
        snprintf(msg, sizeof msg, "batch at %lld: batchLength %d is shorter than a v2 header",
                 (long long)pos, batch_length);
        return fail(err, TL_BAD_LENGTH, pos, TL_HEADER_SIZE - TL_LENGTH_PREFIX, batch_length, msg);
    }
    int64_t size = TL_LENGTH_PREFIX + (int64_t)batch_length;
    if (size > end - pos) {
        snprintf(msg, sizeof msg, "batch at %lld: needs %lld bytes, the buffer has %lld",
                 (long long)pos, (long long)size, (long long)(end - pos));
        return fail(err, TL_TRUNCATED, pos, size, end - pos, msg);
    }
    int8_t magic = (int8_t)p[TL_MAGIC_OFFSET];
    if (magic != 2) {
        snprintf(msg, sizeof msg, "batch at %lld: magic %d, only magic 2 is accepted",
                 (long long)pos, (int)magic);
        /* Kafka's iterator refuses a magic no format has as corrupt. */
        tl_kind kind = magic < 0 || magic > TL_MAX_MAGIC ? TL_INVALID_MAGIC : TL_MAGIC;
        return fail(err, kind, pos, 2, magic, msg);
    }
    h->position = pos;
    h->base_offset = tl_get_i64(p);
    h->batch_length = batch_length;
    h->partition_leader_epoch = tl_get_i32(p + 12);
    h->magic = (int8_t)p[16];
    h->crc = (uint32_t)tl_get_i32(p + 17);
    h->attributes = get_i16(p + 21);
    h->last_offset_delta = tl_get_i32(p + 23);
    h->base_timestamp = tl_get_i64(p + 27);
    h->max_timestamp = tl_get_i64(p + 35);
    h->producer_id = tl_get_i64(p + 43);
    h->producer_epoch = get_i16(p + 51);
    h->base_sequence = tl_get_i32(p + 53);
    h->record_count = tl_get_i32(p + 57);
    return 0;
}

/* A stored batch's record, its body at buf[pos, end): its offsetDelta must be
 * above the previous record's and within lastOffsetDelta. */
static int check_offset_delta(const uint8_t *buf, int64_t start, int64_t pos, int64_t end,
                              int64_t *previous, const tl_header *h, tl_error *err) {
    char msg[160];
    int64_t timestamp_delta, offset_delta;
    pos += 1; /* the record's attributes byte */
    if (pos > end || tl_read_varint(buf, &pos, end, 10, &timestamp_delta) != 0 ||
        tl_read_varint(buf, &pos, end, 5, &offset_delta) != 0) {
        snprintf(msg, sizeof msg, "record at %lld: no offsetDelta within its length",
                 (long long)start);
        return fail(err, TL_RECORD, start, TL_NO_FACT, TL_NO_FACT, msg);
    }
    if (offset_delta <= *previous) {
        snprintf(msg, sizeof msg,
                 "record at %lld: offsetDelta %lld does not follow the previous record's %lld",
                 (long long)start, (long long)offset_delta, (long long)*previous);
        return fail(err, TL_RECORD, start, *previous + 1, offset_delta, msg);
    }
    if (offset_delta > h->last_offset_delta) {
        snprintf(msg, sizeof msg, "record at %lld: offsetDelta %lld is past lastOffsetDelta %d",
                 (long long)start, (long long)offset_delta, h->last_offset_delta);
        return fail(err, TL_RECORD, start, h->last_offset_delta, offset_delta, msg);
    }
    *previous = offset_delta;
    return 0;
}

/* A stored batch may have gaps in its offsets, so its recordCount no longer
 * pins them: each record's offsetDelta is checked against the range instead.
 * Only the length varints and offsetDeltas are read: the records' other
 * fields were walked when the batch was produced, or written by the cleaner. */
static int walk_stored_records(const uint8_t *buf, const tl_header *h, tl_error *err) {
    char msg[160];
    int64_t pos = h->position + TL_HEADER_SIZE;
    int64_t end = h->position + tl_batch_size(h);
    int64_t previous = -1;
    for (int32_t i = 0; i < h->record_count; i++) {
        int64_t start = pos, length;
        if (tl_read_varint(buf, &pos, end, 5, &length) != 0) {
            snprintf(msg, sizeof msg, "record at %lld: bad length varint", (long long)start);
            return fail(err, TL_RECORD, start, TL_NO_FACT, TL_NO_FACT, msg);
        }
        if (length < 0 || length > end - pos) {
            snprintf(msg, sizeof msg, "record at %lld: length %lld runs past the batch end %lld",
                     (long long)start, (long long)length, (long long)end);
            return fail(err, TL_RECORD, start, TL_NO_FACT, length, msg);
        }
        if (check_offset_delta(buf, start, pos, pos + length, &previous, h, err) != 0) return -1;
        pos += length;
    }
    if (pos != end) {
        snprintf(msg, sizeof msg, "batch at %lld: records end at %lld, the batch at %lld",
                 (long long)h->position, (long long)pos, (long long)end);
        return fail(err, TL_RECORD, pos, end, pos, msg);
    }
    return 0;
}

/* A client's uncompressed batch: every record framed as Kafka's
 * DefaultRecord.readFrom reads it (lengths, varints, key, value, headers,
 * the count and no bytes left over), with no rule applied. */
static int walk_client_records(const uint8_t *buf, tl_header *h, tl_error *err) {
    static const tl_record_rules format_only = {0, 0, 0, INT64_MIN, INT64_MAX};
    tl_record_errors unused = {0}; /* no rule, so no record is ever added */
    int64_t start = h->position + TL_HEADER_SIZE, largest;
    if (tl_walk_records(buf + start, tl_batch_size(h) - TL_HEADER_SIZE, start, h, &format_only,
                        &unused, &largest, err) != 0)
        return -1;
    tl_keep_records_max(h, largest);
    return 0;
}

void tl_keep_records_max(tl_header *h, int64_t largest) {
    /* Kafka's LogValidator stores a CreateTime batch with the largest of
     * its records' timestamps (setMaxTimestamp), whatever the producer
     * claimed; a batch marked LogAppendTime keeps its own, which each of
     * its records reads. */
    if (!(h->attributes & TL_TIMESTAMP_TYPE_BIT)) h->max_timestamp = largest;
}

int tl_check_batch(const uint8_t *buf, tl_header *h, int from_client, tl_error *err) {
    char msg[160];
    int64_t pos = h->position;
    uint32_t computed =
        tl_crc32c(0, buf + pos + TL_CRC_START, (size_t)(tl_batch_size(h) - TL_CRC_START));
    if (computed != h->crc) {
        snprintf(msg, sizeof msg, "batch at %lld: CRC32C %#010x, header says %#010x",
                 (long long)pos, computed, h->crc);
        return fail(err, TL_CORRUPT, pos, h->crc, computed, msg);
    }
    int codec = h->attributes & 0x07;
    if (codec > TL_MAX_CODEC) {
        snprintf(msg, sizeof msg, "batch at %lld: compression codec %d does not exist",
                 (long long)pos, codec);
        return fail(err, TL_CODEC, pos, TL_NO_FACT, codec, msg);
    }
    int64_t expected_count = (int64_t)h->last_offset_delta + 1;
    if (from_client) {
        if (h->record_count <= 0 || h->record_count != expected_count) {
            snprintf(msg, sizeof msg, "batch at %lld: recordCount %d, lastOffsetDelta implies %lld",
                     (long long)pos, h->record_count, (long long)expected_count);
            return fail(err, TL_COUNT, pos, expected_count, h->record_count, msg);
        }
    } else if (h->record_count <= 0 || h->record_count > expected_count) {
        snprintf(msg, sizeof msg, "batch at %lld: recordCount %d, lastOffsetDelta allows 1 to %lld",
                 (long long)pos, h->record_count, (long long)expected_count);
        return fail(err, TL_COUNT, pos, expected_count, h->record_count, msg);
    }
    if (codec != 0) return 0;
    return from_client ? walk_client_records(buf, h, err) : walk_stored_records(buf, h, err);
}

void tl_rewrite(uint8_t *batch, const tl_header *h, int64_t base_offset, const int32_t *leader_epoch,
                const int64_t *log_append_time, int create_time, const int64_t *max_timestamp) {
    tl_put_i64(batch, base_offset);
    if (leader_epoch) tl_put_i32(batch + 12, *leader_epoch);
    uint16_t attributes = (uint16_t)h->attributes;
    int64_t largest = max_timestamp ? *max_timestamp : h->max_timestamp;
    if (log_append_time) {
        attributes |= TL_TIMESTAMP_TYPE_BIT;
        largest = *log_append_time;
    } else if (create_time && (attributes & TL_TIMESTAMP_TYPE_BIT)) {
        /* Kafka's setMaxTimestamp(CREATE_TIME, max): every record of a
         * batch marked LogAppendTime reads maxTimestamp, so the max of
         * them is that, or NO_TIMESTAMP where it is below (the max's start). */
        attributes &= (uint16_t)~TL_TIMESTAMP_TYPE_BIT;
        if (largest < TL_NO_TIMESTAMP) largest = TL_NO_TIMESTAMP;
    }
    /* The CRC covers both: rewritten only when the header changed, which
     * a well-behaved producer's batch on a CreateTime topic never does. */
    if (attributes == (uint16_t)h->attributes && largest == h->max_timestamp) return;
    batch[21] = (uint8_t)(attributes >> 8);
    batch[22] = (uint8_t)attributes;
    tl_put_i64(batch + 35, largest);
    uint32_t crc = tl_crc32c(0, batch + TL_CRC_START, (size_t)(tl_batch_size(h) - TL_CRC_START));
    tl_put_i32(batch + 17, (int32_t)crc);
}

/* ---- record walk (compressed batches from clients, topic rules) ------- */

/* Strict UTF-8 as Python's decoder reads it: no overlongs, no surrogates,
 * nothing above U+10FFFF (Unicode's table 3-7). */
static int valid_utf8(const uint8_t *s, int64_t n) {
    int64_t i = 0;
    /* Header keys are mostly ASCII: eight bytes at a time while they are. */
    for (uint64_t word; i + 8 <= n; i += 8) {
        memcpy(&word, s + i, sizeof word);
        if (word & 0x8080808080808080u) break;
    }
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int more;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i - 1 < more) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (int k = 2; k <= more; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
        i += 1 + more;
    }
    return 1;
}

int tl_valid_utf8(const uint8_t *s, int64_t n) { return valid_utf8(s, n); }

static int add_record_error(tl_record_errors *errors, int32_t index, tl_record_fault fault,
                            int64_t timestamp, int64_t offset) {
    errors->total++;
    if (fault == TL_BAD_TIMESTAMP) errors->timestamps = 1;
    if (errors->count == TL_MAX_RECORD_ERRORS) return 0;
    if (errors->count == errors->cap) {
        size_t cap = errors->cap ? 2 * errors->cap : 16;
        tl_record_error *grown = realloc(errors->items, cap * sizeof *grown);
        if (!grown) return -1;
        errors->items = grown;
        errors->cap = cap;
    }
    errors->items[errors->count++] = (tl_record_error){index, fault, timestamp, offset};
    return 0;
}

void tl_record_errors_free(tl_record_errors *errors) {
    free(errors->items);
    errors->items = NULL;
    errors->count = errors->cap = 0;
    errors->total = 0;
    errors->timestamps = 0;
}

static int malformed(tl_error *err, const tl_header *h, int32_t index, int64_t position,
                     const char *field) {
    char msg[160];
    snprintf(msg, sizeof msg, "batch at %lld: record %d is malformed (its %s)",
             (long long)h->position, index, field);
    return fail(err, TL_RECORD, position, TL_NO_FACT, TL_NO_FACT, msg);
}

/* A key, value or header value length: -1 (null) or within the record. */
static int skip_bytes(const uint8_t *area, int64_t *pos, int64_t end, int64_t *length) {
    if (read_varint(area, pos, end, 5, length) != 0) return -1;
    if (*length == -1) return 0;
    if (*length < 0 || *length > end - *pos) return -1;
    *pos += *length;
    return 0;
}

int tl_walk_records(const uint8_t *area, int64_t end, int64_t base, const tl_header *h,
                    const tl_record_rules *rules, tl_record_errors *errors, int64_t *largest,
                    tl_error *err) {
    char msg[160];
    int64_t pos = 0;
    /* Kafka's maxBatchTimestamp: from NO_TIMESTAMP up, over every record's
     * CreateTime; a batch marked LogAppendTime's records all read its
     * maxTimestamp instead, settled after the loop, so that the loop has no
     * branch for it (an add, a compare and a move a record). */
    int64_t most = TL_NO_TIMESTAMP;
    const uint64_t base_timestamp = (uint64_t)h->base_timestamp;
    const int log_append_time = (h->attributes & TL_TIMESTAMP_TYPE_BIT) != 0;
    /* Read once: nothing the loop writes can change them. */
    const int32_t count = h->record_count;
    const int strict_offsets = rules->strict_offsets;
    const int ruled = rules->require_keys || rules->check_timestamps;
    for (int32_t i = 0; i < count; i++) {
        int64_t start = base + pos, length, timestamp_delta, offset_delta, key_length, skipped,
                header_count;
        if (pos >= end) {
            snprintf(msg, sizeof msg, "batch at %lld: recordCount %d, its records hold %d",
                     (long long)h->position, h->record_count, i);
            return fail(err, TL_COUNT, h->position, h->record_count, i, msg);
        }
        if (read_varint(area, &pos, end, 5, &length) != 0)
            return malformed(err, h, i, start, "length");
        if (length < 1 || length > end - pos) {
            snprintf(msg, sizeof msg, "batch at %lld: record %d: length %lld runs past the records' end",
                     (long long)h->position, i, (long long)length);
            return fail(err, TL_RECORD, start, TL_NO_FACT, length, msg);
        }
        int64_t record_end = pos + length;
        pos += 1; /* the record's attributes byte */
        if (read_varint(area, &pos, record_end, 10, &timestamp_delta) != 0)
            return malformed(err, h, i, start, "timestampDelta");
        if (read_varint(area, &pos, record_end, 5, &offset_delta) != 0)
            return malformed(err, h, i, start, "offsetDelta");
        if (strict_offsets && offset_delta != i) {
            snprintf(msg, sizeof msg, "batch at %lld: record %d has offsetDelta %lld",
                     (long long)h->position, i, (long long)offset_delta);
            return fail(err, TL_RECORD, start, i, offset_delta, msg);
        }
        if (skip_bytes(area, &pos, record_end, &key_length) != 0)
            return malformed(err, h, i, start, "key");
        if (skip_bytes(area, &pos, record_end, &skipped) != 0)
            return malformed(err, h, i, start, "value");
        /* Each header takes at least two bytes: the count cannot exceed that. */
        if (read_varint(area, &pos, record_end, 5, &header_count) != 0 || header_count < 0 ||
            header_count > (record_end - pos) / 2)
            return malformed(err, h, i, start, "header count");
        for (int64_t k = 0; k < header_count; k++) {
            int64_t name_length;
            if (skip_bytes(area, &pos, record_end, &name_length) != 0 || name_length < 0 ||
                !valid_utf8(area + pos - name_length, name_length))
                return malformed(err, h, i, start, "header key");
            if (skip_bytes(area, &pos, record_end, &skipped) != 0)
                return malformed(err, h, i, start, "header value");
        }
        if (pos != record_end) return malformed(err, h, i, start, "length");
        int64_t created = (int64_t)(base_timestamp + (uint64_t)timestamp_delta);
        if (created > most) most = created;
        if (!ruled) continue; /* the format's checks only: nothing below applies */
        int64_t timestamp = log_append_time ? h->max_timestamp : created;
        /* As Kafka's LogValidator: a missing key first, then the timestamp;
         * a record without one (-1, NO_TIMESTAMP) is not held to the bounds. */
        int64_t offset = (int64_t)((uint64_t)h->base_offset + (uint64_t)offset_delta);
        int rc = 0;
        if (rules->require_keys && key_length == -1) {
            rc = add_record_error(errors, i, TL_NO_KEY, timestamp, offset);
        } else if (rules->check_timestamps && timestamp != TL_NO_TIMESTAMP &&
                   (timestamp < rules->min_timestamp || timestamp > rules->max_timestamp)) {
            rc = add_record_error(errors, i, TL_BAD_TIMESTAMP, timestamp, offset);
        }
        if (rc != 0) return -2;
    }
    if (pos != end) {
        snprintf(msg, sizeof msg, "batch at %lld: %lld bytes after its last record",
                 (long long)h->position, (long long)(end - pos));
        return fail(err, TL_RECORD, base + pos, base + end, base + pos, msg);
    }
    if (log_append_time)
        most = h->max_timestamp > TL_NO_TIMESTAMP ? h->max_timestamp : TL_NO_TIMESTAMP;
    *largest = most;
    return 0;
}
