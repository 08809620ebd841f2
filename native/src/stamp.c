/*
 * Provenance stamp in C: the records of one validated batch re-encoded, each
 * with the stamp's headers appended and its own headers of a reserved name
 * dropped.
 *
 * The stamped stream is walked twice: once to size it, once to write it into
 * a buffer of exactly that size, so the output is bounded before anything is
 * allocated (and a batch that would pass max_size is refused unwritten when
 * uncompressed). Codecs are native/compression.py's, called once per batch.
 */
#include "stamp.h"

#include <string.h>

#include "batch.h"
#include "buffer.h"
#include "crc32c.h"
#include "varint.h"

typedef struct {
    const uint8_t *reserved; /* the reserved names, each a varint length then its bytes */
    int64_t reserved_len;
    const uint8_t *fields; /* the stamp's headers, encoded */
    int64_t fields_len;
    int64_t extra; /* how many headers fields holds */
} tl_stamp;

/* Skips a varint-length byte string (-1: null); 0, or -1 if malformed. */
static int skip_bytes(const uint8_t *area, int64_t *pos, int64_t end) {
    int64_t length;
    if (tl_read_varint(area, pos, end, 5, &length) != 0) return -1;
    if (length == -1) return 0;
    if (length < 0 || length > end - *pos) return -1;
    *pos += length;
    return 0;
}

/* Whether name[0, length) is one of the reserved names (compared bytewise). */
static int is_reserved(const tl_stamp *s, const uint8_t *name, int64_t length) {
    int64_t pos = 0, reserved_length;
    while (pos < s->reserved_len) {
        /* encode_names wrote this buffer, so this never fails; if it did,
         * stopping keeps the walk finite */
        if (tl_read_varint(s->reserved, &pos, s->reserved_len, 10, &reserved_length) != 0)
            return 0;
        if (reserved_length == length && memcmp(s->reserved + pos, name, (size_t)length) == 0)
            return 1;
        pos += reserved_length;
    }
    return 0;
}

/* The `count` headers at *pos: those of no reserved name are counted into
 * *kept and *kept_bytes and, when out is not NULL, copied to *out. */
static int walk_headers(const uint8_t *area, int64_t *pos, int64_t end, int64_t count,
                        const tl_stamp *s, int64_t *kept, int64_t *kept_bytes, uint8_t **out) {
    for (int64_t i = 0; i < count; i++) {
        int64_t start = *pos, name_length;
        if (tl_read_varint(area, pos, end, 5, &name_length) != 0 || name_length < 0 ||
            name_length > end - *pos)
            return -1;
        int reserved = is_reserved(s, area + *pos, name_length);
        *pos += name_length;
        if (skip_bytes(area, pos, end) != 0) return -1;
        if (reserved) continue;
        *kept += 1;
        *kept_bytes += *pos - start;
        if (out) {
            memcpy(*out, area + start, (size_t)(*pos - start));
            *out += *pos - start;
        }
    }
    return 0;
}

/* The `count` records of area[0, end) stamped: their size with out NULL,
 * else written to out (which holds that size). -1 if malformed. */
static int64_t stamp_stream(const uint8_t *area, int64_t end, int32_t count, const tl_stamp *s,
                            uint8_t *out) {
    int64_t pos = 0, total = 0;
    for (int32_t i = 0; i < count; i++) {
        int64_t length, ignored, header_count;
        if (tl_read_varint(area, &pos, end, 5, &length) != 0 || length < 1 || length > end - pos)
            return -1;
        int64_t start = pos, record_end = pos + length;
        pos += 1; /* attributes */
        if (tl_read_varint(area, &pos, record_end, 10, &ignored) != 0 ||
            tl_read_varint(area, &pos, record_end, 5, &ignored) != 0 ||
            skip_bytes(area, &pos, record_end) != 0 || skip_bytes(area, &pos, record_end) != 0)
            return -1;
        int64_t head_end = pos;
        if (tl_read_varint(area, &pos, record_end, 5, &header_count) != 0 || header_count < 0)
            return -1;
        int64_t headers_start = pos, kept = 0, kept_bytes = 0;
        if (walk_headers(area, &pos, record_end, header_count, s, &kept, &kept_bytes, NULL) != 0 ||
            pos != record_end)
            return -1;
        int64_t body = (head_end - start) + tl_varint_size(kept + s->extra) + kept_bytes +
                       s->fields_len;
        total += tl_varint_size(body) + body;
        if (out) {
            out = tl_put_varint(out, body);
            memcpy(out, area + start, (size_t)(head_end - start));
            out = tl_put_varint(out + (head_end - start), kept + s->extra);
            int64_t again = headers_start, unused = 0, unused_bytes = 0;
            walk_headers(area, &again, record_end, header_count, s, &unused, &unused_bytes, &out);
            memcpy(out, s->fields, (size_t)s->fields_len);
            out += s->fields_len;
        }
    }
    return pos == end ? total : -1;
}

/* ---- errors: native/errors.py's classes, with their facts ------------------ */

static PyObject *import_attr(const char *module_name, const char *attr) {
    PyObject *module = PyImport_ImportModule(module_name);
    if (!module) return NULL;
    PyObject *value = PyObject_GetAttrString(module, attr);
    Py_DECREF(module);
    return value;
}

static PyObject *fact(int64_t value) {
    if (value == TL_NO_FACT) Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

static PyObject *raise_named(const char *name, PyObject *message, int64_t position,
                             int64_t expected, int64_t found) {
    PyObject *cls = message ? import_attr("native.errors", name) : NULL;
    PyObject *args = cls ? Py_BuildValue("(O)", message) : NULL;
    PyObject *kwargs = args ? Py_BuildValue("{s:L,s:N,s:N}", "position", (long long)position,
                                            "expected", fact(expected), "found", fact(found))
                            : NULL;
    PyObject *exc = kwargs ? PyObject_Call(cls, args, kwargs) : NULL;
    if (exc) PyErr_SetObject(cls, exc);
    Py_XDECREF(exc);
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(cls);
    Py_XDECREF(message);
    return NULL;
}


static PyObject *unstampable(void) {
    return raise_named("InvalidRecord", PyUnicode_FromString("batch at 0: its records are malformed"),
                       0, TL_NO_FACT, TL_NO_FACT);
}

/* ---- codecs ---------------------------------------------------------------- */

/* The records area inflated (at most limit bytes), as the pure twin's _records_area. */
static PyObject *inflate(const uint8_t *buf, const tl_header *h, int64_t limit) {
    int codec = h->attributes & 0x07;
    if (codec > TL_MAX_CODEC)
        return raise_named("UnsupportedCompression",
                           PyUnicode_FromFormat("batch at 0: compression codec %d does not exist",
                                                codec),
                           0, TL_NO_FACT, codec);
    PyObject *decompress = import_attr("native.compression", "decompress");
    if (!decompress) return NULL;
    PyObject *body = PyMemoryView_FromMemory((char *)buf + TL_HEADER_SIZE,
                                             tl_batch_size(h) - TL_HEADER_SIZE, PyBUF_READ);
    PyObject *inflated =
        body ? PyObject_CallFunction(decompress, "iOL", codec, body, (long long)limit) : NULL;
    Py_XDECREF(body);
    Py_DECREF(decompress);
    if (inflated || !PyErr_ExceptionMatches(PyExc_ValueError)) return inflated;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *limit_type = import_attr("native.compression", "InflationLimit");
    int over = limit_type && value && PyObject_IsInstance(value, limit_type) == 1;
    int64_t found = TL_NO_FACT;
    if (over) {
        PyObject *found_obj = PyObject_GetAttrString(value, "found");
        found = found_obj ? PyLong_AsLongLong(found_obj) : TL_NO_FACT;
        Py_XDECREF(found_obj);
    }
    PyErr_Clear();
    PyObject *message = value ? PyUnicode_FromFormat("batch at 0: %S", value) : NULL;
    Py_XDECREF(limit_type);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (over) return raise_named("InflationLimitExceeded", message, 0, limit, found);
    return raise_named("InvalidRecord", message, 0, TL_NO_FACT, TL_NO_FACT);
}

/* ---- the stamp's headers --------------------------------------------------- */

int tl_put_py_bytes(tl_buf *b, PyObject *obj) {
    if (obj == Py_None) return tl_buf_put_varint(b, -1) == 0 ? 0 : (PyErr_NoMemory(), -1);
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) return -1;
    int rc = tl_buf_put_varint(b, view.len) || tl_buf_put(b, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (rc) PyErr_NoMemory();
    return rc ? -1 : 0;
}

/* Appends a header name (a str: TypeError not_str otherwise) as a varint
 * length and its UTF-8 bytes; 0, or -1 with a Python error set. */
static int put_name(tl_buf *b, PyObject *name, const char *not_str) {
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, not_str);
        return -1;
    }
    Py_ssize_t name_len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(name, &name_len);
    if (!utf8) return -1;
    if (tl_buf_put_varint(b, name_len) || tl_buf_put(b, utf8, (size_t)name_len)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Encodes the (name, value) pairs as record headers; their count, or -1. */
static Py_ssize_t encode_fields(PyObject *headers, tl_buf *b) {
    PyObject *seq = PySequence_Fast(headers, "stamp headers must be a sequence of pairs");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) && !PyList_Check(pair)) goto not_pair;
        if (PySequence_Fast_GET_SIZE(pair) != 2) goto not_pair;
        if (put_name(b, PySequence_Fast_GET_ITEM(pair, 0), "a stamp header name must be a str") !=
            0)
            goto fail;
        if (tl_put_py_bytes(b, PySequence_Fast_GET_ITEM(pair, 1)) != 0) goto fail;
    }
    Py_DECREF(seq);
    return n;
not_pair:
    PyErr_SetString(PyExc_TypeError, "a stamp header is a (name, value) pair");
fail:
    Py_DECREF(seq);
    return -1;
}

/* Encodes the reserved names (str each), a varint length then the UTF-8
 * bytes of each, as is_reserved reads them; 0, or -1 with a Python error set. */
static int encode_names(PyObject *names, tl_buf *b) {
    const char *not_names = "reserved_names must be a sequence of str";
    if (PyUnicode_Check(names)) { /* a str is a sequence, of one-letter names */
        PyErr_SetString(PyExc_TypeError, not_names);
        return -1;
    }
    PyObject *seq = PySequence_Fast(names, not_names);
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (put_name(b, PySequence_Fast_GET_ITEM(seq, i), "a reserved header name must be a str") !=
            0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* ---- stamp_batch ----------------------------------------------------------- */

static PyObject *stamp(const uint8_t *buf, int64_t len, PyObject *headers, PyObject *reserved_names,
                       int64_t max_size, int64_t limit) {
    tl_header h;
    tl_error err = {0};
    if (tl_read_header(buf, 0, len, &h, &err) != 0)
        return raise_named(tl_kind_names[err.kind], PyUnicode_FromString(err.message), err.position,
                           err.expected, err.found);
    if (tl_batch_size(&h) != len)
        return raise_named("InvalidBatchLength",
                           PyUnicode_FromFormat("stamp_batch takes one whole batch: %lld bytes "
                                                "for a batch of %lld",
                                                (long long)len, (long long)tl_batch_size(&h)),
                           0, tl_batch_size(&h), len);
    tl_buf fields = {0}, reserved = {0};
    PyObject *inflated = NULL, *stream = NULL, *records = NULL, *result = NULL;
    Py_ssize_t extra = encode_fields(headers, &fields);
    if (extra < 0 || encode_names(reserved_names, &reserved) != 0) goto done;
    tl_stamp s = {reserved.data, (int64_t)reserved.len, fields.data, (int64_t)fields.len, extra};
    int codec = h.attributes & 0x07;
    const uint8_t *area = buf + TL_HEADER_SIZE;
    int64_t area_len = len - TL_HEADER_SIZE;
    if (codec) {
        if (!(inflated = inflate(buf, &h, limit))) goto done;
        if (!PyBytes_Check(inflated)) {
            PyErr_SetString(PyExc_TypeError, "decompress must return bytes");
            goto done;
        }
        area = (const uint8_t *)PyBytes_AS_STRING(inflated);
        area_len = PyBytes_GET_SIZE(inflated);
    }
    int64_t size = stamp_stream(area, area_len, h.record_count, &s, NULL);
    if (size < 0) {
        unstampable();
        goto done;
    }
    if (!codec && TL_HEADER_SIZE + size > max_size) goto too_large;
    if (!(stream = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size))) goto done;
    stamp_stream(area, area_len, h.record_count, &s, (uint8_t *)PyBytes_AS_STRING(stream));
    if (codec) {
        PyObject *compress = import_attr("native.compression", "compress");
        records = compress ? PyObject_CallFunction(compress, "iO", codec, stream) : NULL;
        Py_XDECREF(compress);
        if (!records) goto done;
        if (!PyBytes_Check(records)) {
            PyErr_SetString(PyExc_TypeError, "compress must return bytes");
            goto done;
        }
    } else {
        records = Py_NewRef(stream);
    }
    size = PyBytes_GET_SIZE(records);
    if (TL_HEADER_SIZE + size > max_size) goto too_large;
    if (TL_HEADER_SIZE + size - TL_LENGTH_PREFIX > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "the batch would exceed 2 GiB");
        goto done;
    }
    if (!(result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(TL_HEADER_SIZE + size)))) goto done;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(result);
    memcpy(p, buf, TL_HEADER_SIZE);
    memcpy(p + TL_HEADER_SIZE, PyBytes_AS_STRING(records), (size_t)size);
    tl_put_i32(p + 8, (int32_t)(TL_HEADER_SIZE + size - TL_LENGTH_PREFIX));
    tl_put_i32(p + 17, (int32_t)tl_crc32c(0, p + TL_CRC_START,
                                          (size_t)(TL_HEADER_SIZE + size - TL_CRC_START)));
    goto done;
too_large:
    raise_named("StampedBatchTooLarge",
                PyUnicode_FromFormat("batch at 0: %lld bytes once stamped, above the limit of %lld",
                                     (long long)(TL_HEADER_SIZE + size), (long long)max_size),
                0, max_size, TL_HEADER_SIZE + size);
done:
    tl_buf_free(&fields);
    tl_buf_free(&reserved);
    Py_XDECREF(inflated);
    Py_XDECREF(stream);
    Py_XDECREF(records);
    return result;
}

PyObject *tl_py_stamp_batch(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "headers", "reserved_names", "max_size", "max_inflated",
                             NULL};
    PyObject *data, *headers, *reserved_names = NULL, *limit_obj = NULL;
    long long max_size = LLONG_MIN;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$OLO:stamp_batch", kwlist, &data, &headers,
                                     &reserved_names, &max_size, &limit_obj))
        return NULL;
    if (!reserved_names || max_size == LLONG_MIN) {
        PyErr_SetString(PyExc_TypeError,
                        "stamp_batch() needs the keyword arguments reserved_names and max_size");
        return NULL;
    }
    int64_t limit;
    if (limit_obj) {
        limit = PyLong_AsLongLong(limit_obj);
        if (limit == -1 && PyErr_Occurred()) return NULL;
    } else {
        PyObject *default_limit = import_attr("native.records", "MAX_INFLATED");
        if (!default_limit) return NULL;
        limit = PyLong_AsLongLong(default_limit);
        Py_DECREF(default_limit);
        if (limit == -1 && PyErr_Occurred()) return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return NULL;
    PyObject *result = stamp(view.buf, view.len, headers, reserved_names, max_size, limit);
    PyBuffer_Release(&view);
    return result;
}
