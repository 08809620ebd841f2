/*
 * decode_columns: the records of v2 batches as column buffers, laid out as
 * Apache Arrow lays out its arrays (little-endian int64 values and offsets,
 * LSB-first validity bitmaps), so a caller builds Arrow arrays over them
 * without a Python object per record. The same records, skips and errors as
 * decode_records (module.c); native/_pure.py's twin derives its result from
 * decode_records itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "batch.h"
#include "buffer.h"
#include "columns.h"

#define GIL_FREE_BYTES (64 * 1024) /* below this, dropping the GIL costs more than it frees */

/* Takes the GIL back if it was released (state is then NULL). */
#define HOLD_GIL(state)                   \
    do {                                  \
        if (state) {                      \
            PyEval_RestoreThread(state);  \
            (state) = NULL;               \
        }                                 \
    } while (0)

/* A binary column: offsets (n + 1 int64, from 0), the bytes, and a validity
 * bitmap with its null count (NULL entries are empty in the offsets). */
typedef struct {
    tl_buf offsets;
    tl_buf data;
    tl_buf validity;
    int64_t count;
    int64_t nulls;
} binary_column;

typedef struct {
    int64_t count;
    tl_buf offsets;    /* int64 per record */
    tl_buf timestamps; /* int64 per record */
    tl_buf types;      /* uint8 per record: its batch's timestamp type */
    binary_column keys;
    binary_column values;
    tl_buf header_ends; /* int64, n + 1 from 0: where each record's headers end */
    binary_column header_keys;
    binary_column header_values;
} columns;

static int put_i64(tl_buf *b, int64_t value) {
    uint8_t raw[8];
    for (int i = 0; i < 8; i++) raw[i] = (uint8_t)((uint64_t)value >> (8 * i));
    return tl_buf_put(b, raw, 8);
}

static int column_init(binary_column *c) { return put_i64(&c->offsets, 0); }

/* Appends one entry (NULL data: a null). 0, or -1 when memory runs out. */
static int column_put(binary_column *c, const uint8_t *data, int64_t length) {
    if (c->count % 8 == 0 && tl_buf_put(&c->validity, "\0", 1) != 0) return -1;
    if (data) {
        c->validity.data[c->count / 8] |= (uint8_t)(1u << (c->count % 8));
        if (tl_buf_put(&c->data, data, (size_t)length) != 0) return -1;
    } else {
        c->nulls++;
    }
    c->count++;
    return put_i64(&c->offsets, (int64_t)c->data.len);
}

static void column_free(binary_column *c) {
    tl_buf_free(&c->offsets);
    tl_buf_free(&c->data);
    tl_buf_free(&c->validity);
}

static void columns_free(columns *cols) {
    tl_buf_free(&cols->offsets);
    tl_buf_free(&cols->timestamps);
    tl_buf_free(&cols->types);
    column_free(&cols->keys);
    column_free(&cols->values);
    tl_buf_free(&cols->header_ends);
    column_free(&cols->header_keys);
    column_free(&cols->header_values);
}

/* A varint length and its bytes at *pos: *data is NULL for -1.
 * 0, or -1 if malformed. */
static int read_slice(const uint8_t *buf, int64_t *pos, int64_t end, const uint8_t **data,
                      int64_t *length) {
    if (tl_read_varint(buf, pos, end, 5, length) != 0) return -1;
    if (*length == -1) {
        *data = NULL;
        return 0;
    }
    if (*length < 0 || *length > end - *pos) return -1;
    *data = buf + *pos;
    *pos += *length;
    return 0;
}

/* One record at *pos, appended to cols unless below min_offset.
 * 0, -1 if malformed, -2 when memory runs out (no Python object touched). */
static int decode_record(const uint8_t *buf, int64_t *pos, int64_t end, const tl_header *h,
                         int64_t min_offset, columns *cols) {
    int64_t length, timestamp_delta, offset_delta, header_count, key_len, value_len;
    const uint8_t *key, *value;
    if (tl_read_varint(buf, pos, end, 5, &length) != 0 || length < 1 || length > end - *pos)
        return -1;
    int64_t record_end = *pos + length;
    *pos += 1; /* the record's attributes byte: unused by every Kafka version */
    if (tl_read_varint(buf, pos, record_end, 10, &timestamp_delta) != 0 ||
        tl_read_varint(buf, pos, record_end, 5, &offset_delta) != 0 ||
        read_slice(buf, pos, record_end, &key, &key_len) != 0 ||
        read_slice(buf, pos, record_end, &value, &value_len) != 0 ||
        tl_read_varint(buf, pos, record_end, 5, &header_count) != 0 || header_count < 0 ||
        header_count > (record_end - *pos) / 2) /* each header takes at least two bytes */
        return -1;
    int64_t offset = (int64_t)((uint64_t)h->base_offset + (uint64_t)offset_delta);
    int keep = offset >= min_offset;
    for (int64_t i = 0; i < header_count; i++) {
        const uint8_t *name, *header_value;
        int64_t name_len, header_value_len;
        if (read_slice(buf, pos, record_end, &name, &name_len) != 0 || !name ||
            read_slice(buf, pos, record_end, &header_value, &header_value_len) != 0)
            return -1;
        if (!tl_valid_utf8(name, name_len)) return -1; /* as decode_records refuses it */
        if (keep && (column_put(&cols->header_keys, name, name_len) != 0 ||
                     column_put(&cols->header_values, header_value, header_value_len) != 0))
            return -2;
    }
    if (*pos != record_end) return -1;
    if (!keep) return 0;
    int64_t timestamp = (h->attributes & TL_TIMESTAMP_TYPE_BIT)
                            ? h->max_timestamp
                            : (int64_t)((uint64_t)h->base_timestamp + (uint64_t)timestamp_delta);
    uint8_t type = (h->attributes & TL_TIMESTAMP_TYPE_BIT) ? 1 : 0;
    if (put_i64(&cols->offsets, offset) != 0 || put_i64(&cols->timestamps, timestamp) != 0 ||
        tl_buf_put(&cols->types, &type, 1) != 0 || column_put(&cols->keys, key, key_len) != 0 ||
        column_put(&cols->values, value, value_len) != 0 ||
        put_i64(&cols->header_ends, cols->header_keys.count) != 0)
        return -2;
    cols->count++;
    return 0;
}

/* The records area of one batch into cols: 0, -1 if malformed (err says
 * how), -2 when memory runs out. Touches no Python object: it runs with the
 * GIL released. */
static int decode_area(const uint8_t *area, int64_t end, const tl_header *h, int64_t min_offset,
                       columns *cols, tl_error *err) {
    int64_t pos = 0;
    for (int32_t i = 0; i < h->record_count; i++) {
        int64_t start = pos;
        int rc = decode_record(area, &pos, end, h, min_offset, cols);
        if (rc == -2) return -2;
        if (rc != 0) {
            *err = (tl_error){TL_RECORD, start, TL_NO_FACT, TL_NO_FACT, ""};
            snprintf(err->message, sizeof err->message,
                     "batch at %lld: malformed record %lld bytes into its records",
                     (long long)h->position, (long long)start);
            return -1;
        }
    }
    if (pos != end) {
        *err = (tl_error){TL_RECORD, pos, end, pos, ""};
        snprintf(err->message, sizeof err->message,
                 "batch at %lld: %lld bytes after its last record", (long long)h->position,
                 (long long)(end - pos));
        return -1;
    }
    return 0;
}

/* decode_area's outcome as decode_columns reports it (with the GIL held):
 * 0, or -1 with the exception set. */
static int raise_for(int rc, const tl_error *err) {
    if (rc == -2) PyErr_NoMemory();
    if (rc == -1) tl_raise_batch_error(err);
    return rc == 0 ? 0 : -1;
}

static PyObject *as_bytes(const tl_buf *b) {
    return PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->len);
}

static PyObject *column_tuple(const binary_column *c) {
    return Py_BuildValue("(NNNL)", as_bytes(&c->offsets), as_bytes(&c->data),
                         as_bytes(&c->validity), (long long)c->nulls);
}

static PyObject *columns_tuple(const columns *cols) {
    return Py_BuildValue("(LNNNNNNNN)", (long long)cols->count, as_bytes(&cols->offsets),
                         as_bytes(&cols->timestamps), as_bytes(&cols->types),
                         column_tuple(&cols->keys), column_tuple(&cols->values),
                         as_bytes(&cols->header_ends), column_tuple(&cols->header_keys),
                         column_tuple(&cols->header_values));
}

PyObject *tl_py_decode_columns(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "min_offset", "skip_control", "max_inflated", NULL};
    PyObject *obj;
    long long min_offset = LLONG_MIN, limit = tl_max_inflated_default();
    int skip_control = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$LpL:decode_columns", kwlist, &obj,
                                     &min_offset, &skip_control, &limit))
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "max_inflated must not be negative");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) return NULL;
    columns cols = {0};
    int failed = put_i64(&cols.header_ends, 0) != 0 || column_init(&cols.keys) != 0 ||
                 column_init(&cols.values) != 0 || column_init(&cols.header_keys) != 0 ||
                 column_init(&cols.header_values) != 0;
    const uint8_t *buf = view.buf;
    int64_t end = view.len;
    /* Values are most of an uncompressed batch's bytes: room for all of them
     * at once rather than by doubling (bounded by the bytes given). */
    failed = failed || tl_buf_reserve(&cols.values.data, (size_t)end) != 0;
    if (failed) PyErr_NoMemory();
    /* Uncompressed batches are decoded without the GIL (the buffer is held
     * by the view): a table writer's decode does not stall the event loop.
     * It is taken back for a compressed batch (its codec is Python's) and
     * for an error. */
    PyThreadState *state = !failed && end >= GIL_FREE_BYTES ? PyEval_SaveThread() : NULL;
    for (int64_t pos = 0; !failed && pos < end;) {
        tl_header h;
        tl_error err = {0};
        if (tl_read_header(buf, pos, end, &h, &err) != 0) {
            HOLD_GIL(state);
            tl_raise_batch_error(&err);
            failed = 1;
            break;
        }
        int64_t last_offset = (int64_t)((uint64_t)h.base_offset + (uint64_t)h.last_offset_delta);
        if ((skip_control && (h.attributes & TL_CONTROL_BIT)) || last_offset < min_offset) {
            pos += tl_batch_size(&h); /* not decoded at all */
            continue;
        }
        if ((h.attributes & 0x07) == 0) {
            int rc = decode_area(buf + pos + TL_HEADER_SIZE, tl_batch_size(&h) - TL_HEADER_SIZE,
                                 &h, min_offset, &cols, &err);
            if (rc != 0) HOLD_GIL(state);
            failed = raise_for(rc, &err) != 0;
        } else {
            HOLD_GIL(state);
            PyObject *inflated = tl_inflate_batch(obj, &h, limit);
            if (!inflated) {
                failed = 1;
            } else if (!PyBytes_Check(inflated)) {
                PyErr_SetString(PyExc_TypeError, "decompress must return bytes");
                failed = 1;
            } else {
                int rc = decode_area((const uint8_t *)PyBytes_AS_STRING(inflated),
                                     PyBytes_GET_SIZE(inflated), &h, min_offset, &cols, &err);
                failed = raise_for(rc, &err) != 0;
            }
            Py_XDECREF(inflated);
            if (!failed && end - pos - tl_batch_size(&h) >= GIL_FREE_BYTES)
                state = PyEval_SaveThread();
        }
        pos += tl_batch_size(&h);
    }
    HOLD_GIL(state);
    PyBuffer_Release(&view);
    PyObject *out = failed ? NULL : columns_tuple(&cols);
    columns_free(&cols);
    return out;
}
