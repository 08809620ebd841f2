/* Kafka record batch v2: framing, header fields, validation, rewrite. */
#ifndef TIDELOG_BATCH_H
#define TIDELOG_BATCH_H

#include <stddef.h>
#include <stdint.h>

#define TL_HEADER_SIZE 61
#define TL_LENGTH_PREFIX 12
/* The least batchLength Kafka's MemoryRecords iterator frames (its
 * LegacyRecord.RECORD_OVERHEAD_V0); below it the iterator throws
 * CorruptRecordException rather than count a batch. */
#define TL_MIN_FRAMED_LENGTH 14
#define TL_CRC_START 21
#define TL_MAX_CODEC 4
#define TL_ZSTD 4
#define TL_CODEC_MASK 0x07
#define TL_ATTRIBUTES_OFFSET 21
#define TL_TIMESTAMP_TYPE_BIT 0x08
#define TL_CONTROL_BIT 0x20

/* Which error class a failure maps to (native/errors.py). */
typedef enum {
    TL_OK = 0,
    TL_TRUNCATED,
    TL_BAD_LENGTH,
    TL_CORRUPT,
    TL_MAGIC,
    TL_COUNT,
    TL_RECORD,
    TL_CODEC,
    TL_INFLATION,
    TL_SECOND_BATCH,
    TL_INVALID_MAGIC,
    TL_NO_BATCH,
    TL_BASE_OFFSET,
    TL_KINDS, /* how many kinds there are, TL_OK included */
} tl_kind;

/* The highest magic Kafka's record iterator frames (RecordBatch.CURRENT_MAGIC_VALUE). */
#define TL_MAX_MAGIC 2
#define TL_MAGIC_OFFSET 16

#define TL_NO_FACT INT64_MIN

/* The error class of each kind, by its name in native/errors.py. */
extern const char *const tl_kind_names[TL_KINDS];

typedef struct {
    tl_kind kind;
    int64_t position;
    int64_t expected; /* TL_NO_FACT when the error has none */
    int64_t found;
    char message[160];
} tl_error;

/* The size of the one batch a Produce partition's records carry, framed
 * and checked as Kafka's ProduceRequest.validateRecords does through its
 * MemoryRecords iterator (ByteBufferLogInputStream.nextBatch): the first
 * frame, its magic 2, then no second frame. Bytes after the batch too few
 * to frame one, or fewer than their frame's length claims, are not counted:
 * Kafka leaves them unread and UnifiedLog.trimInvalidBytes drops them. -1
 * with err set where Kafka refuses the records: a frame its iterator calls
 * corrupt (TL_BAD_LENGTH, TL_INVALID_MAGIC), no first batch (TL_NO_BATCH),
 * a first of magic 0 or 1 (TL_MAGIC), a first compressed with zstd unless
 * allow_zstd (TL_CODEC: Produce below v7 may not carry one, KIP-110), a
 * whole second frame (TL_SECOND_BATCH). */
int64_t tl_produce_batch_size(const uint8_t *buf, int64_t end, int allow_zstd, tl_error *err);

/* A Produce partition's one batch, framed by tl_produce_batch_size (so at
 * least 8 bytes): -1 with err set (TL_BASE_OFFSET) unless its baseOffset is
 * 0, as Kafka's UnifiedLog.analyzeAndValidateRecords requires of a client's
 * v2 batch before it checks anything else in it. */
int tl_check_produce_base_offset(const uint8_t *buf, tl_error *err);

typedef struct {
    int64_t position;
    int64_t base_offset;
    int32_t batch_length;
    int32_t partition_leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t record_count;
} tl_header;

static inline int64_t tl_batch_size(const tl_header *h) {
    return TL_LENGTH_PREFIX + (int64_t)h->batch_length;
}

int64_t tl_get_i64(const uint8_t *p);
int32_t tl_get_i32(const uint8_t *p);
void tl_put_i64(uint8_t *p, int64_t v);
void tl_put_i32(uint8_t *p, int32_t v);

/* Zigzag varint of at most max_bytes (5: int32, 10: int64) at *pos < end.
 * Returns 0 and advances *pos, or -1 if it is cut short or too long. */
int tl_read_varint(const uint8_t *buf, int64_t *pos, int64_t end, int max_bytes, int64_t *out);

/* 1 if the n bytes at s are strict UTF-8 as Python's decoder reads them. */
int tl_valid_utf8(const uint8_t *s, int64_t n);

/* Frames the batch at pos and reads its header. */
int tl_read_header(const uint8_t *buf, int64_t pos, int64_t end, tl_header *h, tl_error *err);

/* CRC, codec, record count and (uncompressed) records. A batch from a
 * client must have recordCount == lastOffsetDelta + 1, as Kafka's
 * LogValidator requires, and its uncompressed records are walked as
 * tl_walk_records walks them with no rule (as Kafka's record iterator reads
 * them), then its max_timestamp set by tl_keep_records_max; a stored one
 * (from_client 0, e.g. the log cleaner's output) may
 * have gaps: 1 <= recordCount <= lastOffsetDelta + 1, its uncompressed
 * records' lengths tile it and their offsetDeltas increase within
 * lastOffsetDelta. */
int tl_check_batch(const uint8_t *buf, tl_header *h, int from_client, tl_error *err);

/* After a client's batch's records were walked (largest: the walk's): a
 * batch marked CreateTime takes the largest of its records' timestamps as
 * its max_timestamp, the one it is stored with (Kafka's LogValidator sets
 * it so on every path); one marked LogAppendTime keeps its own. */
void tl_keep_records_max(tl_header *h, int64_t largest);

/* What a record walk checks beyond the format. A compressed batch from a
 * client must number its records 0..n-1 (strict_offsets); a topic may ask
 * for keys (compaction) and for timestamps within bounds. */
typedef struct {
    int strict_offsets;
    int require_keys;
    int check_timestamps;
    int64_t min_timestamp;
    int64_t max_timestamp;
} tl_record_rules;

typedef enum { TL_NO_KEY = 1, TL_BAD_TIMESTAMP } tl_record_fault;

/* A record timestamp of -1: none given (Kafka's RecordBatch.NO_TIMESTAMP). */
#define TL_NO_TIMESTAMP (-1)

/* One record that breaks a rule: Kafka's per-record error (KIP-467). */
typedef struct {
    int32_t index;
    tl_record_fault fault;
    int64_t timestamp;
    int64_t offset; /* baseOffset + offsetDelta, as Kafka's message names it */
} tl_record_error;

/* The refused records named one by one: a batch can refuse millions of tiny
 * records, and each name costs far more than the record's bytes. The rest
 * are counted. native.records.MAX_RECORD_ERRORS is the same number. */
#define TL_MAX_RECORD_ERRORS 1000

typedef struct {
    tl_record_error *items; /* the first TL_MAX_RECORD_ERRORS */
    size_t count, cap;
    int64_t total;  /* every refused record */
    int timestamps; /* whether any was refused for its timestamp */
} tl_record_errors;

/* Walks the recordCount records of h in area[0, end), whose first byte is at
 * `base` in what the caller reports positions against: each record must
 * decode (lengths, varints, key, value, headers with UTF-8 keys) and end
 * exactly where its length says, and the records must fill the area. A
 * format fault fails (-1, err); a rule fault is added to errors (-2 if that
 * runs out of memory). On 0, *largest is the largest of the records'
 * timestamps, or TL_NO_TIMESTAMP if none is above it (Kafka's
 * maxBatchTimestamp). */
int tl_walk_records(const uint8_t *area, int64_t end, int64_t base, const tl_header *h,
                    const tl_record_rules *rules, tl_record_errors *errors, int64_t *largest,
                    tl_error *err);

void tl_record_errors_free(tl_record_errors *errors);

/* Sets baseOffset, and optionally partitionLeaderEpoch; stamps the batch
 * LogAppendTime with log_append_time (its maxTimestamp), or else stores it
 * with max_timestamp (validate's: a client's CreateTime batch's records'
 * largest; NULL keeps the header's) and, with create_time, marks a batch
 * marked LogAppendTime CreateTime (a CreateTime topic's answer to it), its
 * maxTimestamp at least TL_NO_TIMESTAMP. The CRC is rewritten when the
 * attributes or maxTimestamp changed. */
void tl_rewrite(uint8_t *batch, const tl_header *h, int64_t base_offset, const int32_t *leader_epoch,
                const int64_t *log_append_time, int create_time, const int64_t *max_timestamp);

#endif
