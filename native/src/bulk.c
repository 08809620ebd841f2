/*
 * Bulk record encoding: many values (and keys) straight into one v2 batch.
 *
 * The embedded producer's send_many hands over the caller's own lists; no
 * record spec, tuple or int is made per record. The records from `start` are
 * walked twice: once to size the batch (stopping before max_bytes), once to
 * write them into a bytearray of exactly that size, so the batch is never
 * copied once built. Every record shares one timestamp and one set of
 * headers (encoded once). See docs/record-batch.md and native/_pure.py's
 * encode_records, which gives the same bytes.
 */
#include "bulk.h"

#include <string.h>

#include "batch.h"
#include "batch_write.h"
#include "buffer.h"
#include "varint.h"
#include "stamp.h"

/* The bytes of a key or value: a bytes object (the common case, read in
 * place), a str (its UTF-8), any other buffer, or None (data NULL). */
typedef struct {
    const uint8_t *data;
    Py_ssize_t len;
    Py_buffer view;
    int has_view;
} tl_field;

static int field_open(PyObject *obj, tl_field *f) {
    f->has_view = 0;
    if (obj == Py_None) {
        f->data = NULL;
        f->len = -1;
        return 0;
    }
    if (PyBytes_CheckExact(obj)) {
        f->data = (const uint8_t *)PyBytes_AS_STRING(obj);
        f->len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyUnicode_Check(obj)) {
        f->data = (const uint8_t *)PyUnicode_AsUTF8AndSize(obj, &f->len);
        return f->data ? 0 : -1;
    }
    if (PyObject_GetBuffer(obj, &f->view, PyBUF_SIMPLE) != 0) return -1;
    f->has_view = 1;
    f->data = f->view.buf;
    f->len = f->view.len;
    return 0;
}

static void field_close(tl_field *f) {
    if (f->has_view) PyBuffer_Release(&f->view);
    f->has_view = 0;
}

static int64_t field_size(const tl_field *f) {
    return f->len < 0 ? 1 : tl_varint_size(f->len) + f->len;
}

static uint8_t *put_field(uint8_t *p, const tl_field *f) {
    p = tl_put_varint(p, f->len);
    if (f->len > 0) memcpy(p, f->data, (size_t)f->len);
    return p + (f->len > 0 ? f->len : 0);
}

/* The headers every record carries, encoded once: count, then the pairs. */
static int encode_headers(PyObject *headers, tl_buf *b) {
    PyObject *seq = PySequence_Fast(headers, "record headers must be a sequence of pairs");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = tl_buf_put_varint(b, n) == 0 ? 0 : (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        if ((!PyTuple_Check(pair) && !PyList_Check(pair)) || PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a record header is a (name, value) pair");
            rc = -1;
            break;
        }
        PyObject *name = PySequence_Fast_GET_ITEM(pair, 0);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "a record header name must be a str");
            rc = -1;
            break;
        }
        Py_ssize_t name_len;
        const char *utf8 = PyUnicode_AsUTF8AndSize(name, &name_len);
        if (!utf8) {
            rc = -1;
        } else if (tl_buf_put_varint(b, name_len) || tl_buf_put(b, utf8, (size_t)name_len)) {
            PyErr_NoMemory();
            rc = -1;
        } else {
            rc = tl_put_py_bytes(b, PySequence_Fast_GET_ITEM(pair, 1));
        }
    }
    Py_DECREF(seq);
    return rc;
}

/* One record's bytes, its length prefix included; -1 with an error set. */
static int64_t record_size(PyObject *value, PyObject *key, int32_t offset_delta,
                           int64_t headers_len) {
    tl_field v, k;
    if (field_open(value, &v) != 0) return -1;
    if (field_open(key, &k) != 0) {
        field_close(&v);
        return -1;
    }
    /* attributes, timestampDelta 0 (one byte each), offsetDelta, key, value, headers */
    int64_t body = 2 + tl_varint_size(offset_delta) + field_size(&k) + field_size(&v) + headers_len;
    field_close(&k);
    field_close(&v);
    return tl_varint_size(body) + body;
}

static uint8_t *put_record(uint8_t *p, PyObject *value, PyObject *key, int32_t offset_delta,
                           const tl_buf *headers) {
    tl_field v, k;
    /* Both opened successfully when sizing, under the same GIL hold. */
    if (field_open(value, &v) != 0) return NULL;
    if (field_open(key, &k) != 0) {
        field_close(&v);
        return NULL;
    }
    int64_t body = 2 + tl_varint_size(offset_delta) + field_size(&k) + field_size(&v) +
                   (int64_t)headers->len;
    p = tl_put_varint(p, body);
    *p++ = 0; /* attributes */
    *p++ = 0; /* timestampDelta: every record has the batch's timestamp */
    p = tl_put_varint(p, offset_delta);
    p = put_field(p, &k);
    p = put_field(p, &v);
    memcpy(p, headers->data, headers->len);
    field_close(&k);
    field_close(&v);
    return p + headers->len;
}

PyObject *tl_py_encode_records(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"values",      "keys",           "timestamp",     "start",
                             "max_bytes",   "headers",        "compression",   "producer_id",
                             "producer_epoch", "base_sequence", "is_transactional", NULL};
    PyObject *values, *keys = Py_None, *headers = NULL, *timestamp_obj = NULL;
    long long timestamp, max_bytes = INT32_MAX, producer_id = -1;
    Py_ssize_t start = 0;
    int codec = 0, base_sequence = -1, transactional = 0;
    short producer_epoch = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$OnLOiLhip:encode_records", kwlist,
                                     &values, &keys, &timestamp_obj, &start, &max_bytes, &headers,
                                     &codec, &producer_id, &producer_epoch, &base_sequence,
                                     &transactional))
        return NULL;
    if (!timestamp_obj) {
        PyErr_SetString(PyExc_TypeError, "encode_records needs a timestamp");
        return NULL;
    }
    if (!PyLong_Check(timestamp_obj)) {
        PyErr_Format(PyExc_TypeError, "timestamp must be an int, not %.200s",
                     Py_TYPE(timestamp_obj)->tp_name);
        return NULL;
    }
    timestamp = PyLong_AsLongLong(timestamp_obj);
    if (timestamp == -1 && PyErr_Occurred()) return NULL;
    if (!PyList_Check(values) && !PyTuple_Check(values)) {
        PyErr_SetString(PyExc_TypeError, "values must be a list or a tuple");
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(values);
    if (keys != Py_None) {
        if (!PyList_Check(keys) && !PyTuple_Check(keys)) {
            PyErr_SetString(PyExc_TypeError, "keys must be a list, a tuple or None");
            return NULL;
        }
        if (PySequence_Fast_GET_SIZE(keys) != n) {
            PyErr_Format(PyExc_ValueError, "keys has %zd items for %zd values",
                         PySequence_Fast_GET_SIZE(keys), n);
            return NULL;
        }
    }
    if (start < 0 || start >= n) {
        PyErr_Format(PyExc_ValueError, "start %zd is not the index of one of the %zd values",
                     start, n);
        return NULL;
    }
    if (codec < 0 || codec > TL_MAX_CODEC) {
        PyErr_Format(PyExc_ValueError, "no such compression codec: %d", codec);
        return NULL;
    }
    tl_buf hdr = {0}, stream = {0};
    PyObject *area = NULL, *batch = NULL, *result = NULL;
    if (headers ? encode_headers(headers, &hdr) != 0 : tl_buf_put_varint(&hdr, 0) != 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    /* Sizing: the records that fit in max_bytes, at least one. */
    int64_t area_len = 0;
    Py_ssize_t end = start;
    while (end < n && end - start < INT32_MAX) {
        int64_t size = record_size(PySequence_Fast_GET_ITEM(values, end),
                                   keys == Py_None ? Py_None : PySequence_Fast_GET_ITEM(keys, end),
                                   (int32_t)(end - start), (int64_t)hdr.len);
        if (size < 0) goto done;
        if (end > start && TL_HEADER_SIZE + area_len + size > max_bytes) break;
        if (area_len + size > INT32_MAX - TL_HEADER_SIZE) {
            if (end > start) break;
            PyErr_SetString(PyExc_OverflowError, "the batch would exceed 2 GiB");
            goto done;
        }
        area_len += size;
        end++;
    }
    int32_t count = (int32_t)(end - start);
    /* Writing: in place after the header, or into a stream to compress. */
    uint8_t *p;
    if (codec == 0) {
        if (!(batch = PyByteArray_FromStringAndSize(NULL, TL_HEADER_SIZE + area_len))) goto done;
        p = (uint8_t *)PyByteArray_AS_STRING(batch) + TL_HEADER_SIZE;
    } else {
        if (tl_buf_reserve(&stream, (size_t)area_len) != 0) {
            PyErr_NoMemory();
            goto done;
        }
        p = stream.data;
    }
    for (Py_ssize_t i = start; i < end; i++) {
        p = put_record(p, PySequence_Fast_GET_ITEM(values, i),
                       keys == Py_None ? Py_None : PySequence_Fast_GET_ITEM(keys, i),
                       (int32_t)(i - start), &hdr);
        if (!p) goto done;
    }
    if (codec != 0) {
        PyObject *raw = PyBytes_FromStringAndSize((const char *)stream.data, area_len);
        PyObject *compress = raw ? PyImport_ImportModule("native.compression") : NULL;
        area = compress ? PyObject_CallMethod(compress, "compress", "iO", codec, raw) : NULL;
        Py_XDECREF(compress);
        Py_XDECREF(raw);
        if (!area) goto done;
        if (!PyBytes_Check(area)) {
            PyErr_SetString(PyExc_TypeError, "compress must return bytes");
            goto done;
        }
        area_len = PyBytes_GET_SIZE(area);
        if (area_len > INT32_MAX - TL_HEADER_SIZE) {
            PyErr_SetString(PyExc_OverflowError, "the batch would exceed 2 GiB");
            goto done;
        }
        if (!(batch = PyByteArray_FromStringAndSize(NULL, TL_HEADER_SIZE + area_len))) goto done;
        memcpy(PyByteArray_AS_STRING(batch) + TL_HEADER_SIZE, PyBytes_AS_STRING(area),
               (size_t)area_len);
    }
    uint8_t *b = (uint8_t *)PyByteArray_AS_STRING(batch);
    tl_header fields = {
        .base_offset = 0,
        .partition_leader_epoch = -1,
        .attributes = (int16_t)(codec | (transactional ? 0x10 : 0)),
        .last_offset_delta = count - 1,
        .base_timestamp = timestamp,
        /* encode_batch's max, from TL_NO_TIMESTAMP up (Kafka's builder's). */
        .max_timestamp = timestamp > TL_NO_TIMESTAMP ? timestamp : TL_NO_TIMESTAMP,
        .producer_id = producer_id,
        .producer_epoch = producer_epoch,
        .base_sequence = base_sequence,
        .record_count = count,
    };
    tl_put_batch_header(b, (int64_t)area_len, &fields);
    tl_seal_batch(b, (int64_t)area_len);
    result = Py_BuildValue("(On)", batch, end);
done:
    tl_buf_free(&hdr);
    tl_buf_free(&stream);
    Py_XDECREF(area);
    Py_XDECREF(batch);
    return result;
}
