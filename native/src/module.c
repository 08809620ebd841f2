/*
 * native._cnative: the Python bindings of the hot loop.
 *
 * It returns and raises the classes defined in Python (native/records.py,
 * native/errors.py) so both implementations are interchangeable, and calls
 * back into native/compression.py for codecs: compression is a library's job.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "batch.h"
#include "batch_write.h"
#include "batch_crc.h"
#include "buffer.h"
#include "bulk.h"
#include "byte_slice.h"
#include "columns.h"
#include "entries.h"
#include "prefault.h"
#include "crc32c.h"
#include "stamp.h"
#include "wal_frame.h"

#define GIL_FREE_BYTES (64 * 1024) /* below this, dropping the GIL costs more than it frees */

static PyObject *batch_header_type;
static PyObject *record_type;
static PyObject *compress_fn;
static PyObject *decompress_fn;
static PyObject *inflation_limit_type; /* native.compression.InflationLimit */
static PyObject *rejected_records_type;
static PyObject *rejected_timestamps_type;
static int64_t max_inflated_default; /* native.records.MAX_INFLATED */
static PyObject *error_types[TL_KINDS];


static PyObject *fact(int64_t value) {
    if (value == TL_NO_FACT) Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

static PyObject *raise_batch_error(const tl_error *err) {
    PyObject *cls = error_types[err->kind];
    PyObject *args = Py_BuildValue("(s)", err->message);
    PyObject *kwargs = Py_BuildValue("{s:L,s:N,s:N}", "position", (long long)err->position,
                                     "expected", fact(err->expected), "found", fact(err->found));
    if (args && kwargs) {
        PyObject *exc = PyObject_Call(cls, args, kwargs);
        if (exc) {
            PyErr_SetObject(cls, exc);
            Py_DECREF(exc);
        }
    }
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    return NULL;
}

/* A NamedTuple instance built without calling its Python __new__. */
static PyObject *new_named_tuple(PyObject *type, Py_ssize_t size) {
    return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, size);
}

static PyObject *make_header(const tl_header *h) {
    PyObject *t = new_named_tuple(batch_header_type, 14);
    if (!t) return NULL;
    PyObject *items[14] = {
        PyLong_FromLongLong(h->position),
        PyLong_FromLongLong(h->base_offset),
        PyLong_FromLong(h->batch_length),
        PyLong_FromLong(h->partition_leader_epoch),
        PyLong_FromLong(h->magic),
        PyLong_FromUnsignedLong(h->crc),
        PyLong_FromLong(h->attributes),
        PyLong_FromLong(h->last_offset_delta),
        PyLong_FromLongLong(h->base_timestamp),
        PyLong_FromLongLong(h->max_timestamp),
        PyLong_FromLongLong(h->producer_id),
        PyLong_FromLong(h->producer_epoch),
        PyLong_FromLong(h->base_sequence),
        PyLong_FromLong(h->record_count),
    };
    int ok = 1;
    for (int i = 0; i < 14; i++) {
        if (!items[i]) ok = 0;
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    if (!ok) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

/* ---- crc32c ---------------------------------------------------------- */

static PyObject *py_crc32c(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "crc32c() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    unsigned long crc = 0;
    if (nargs == 2) {
        crc = PyLong_AsUnsignedLong(args[1]);
        if (crc == (unsigned long)-1 && PyErr_Occurred()) return NULL;
        if (crc > 0xFFFFFFFFul) {
            PyErr_SetString(PyExc_OverflowError, "crc must fit in 32 bits");
            return NULL;
        }
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) return NULL;
    uint32_t result;
    if (view.len >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS result = tl_crc32c((uint32_t)crc, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        result = tl_crc32c((uint32_t)crc, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(result);
}

static PyObject *py_crc32c_backend(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(tl_crc32c_backend());
}

static PyObject *py_crc32c_backends(PyObject *self, PyObject *unused) {
    PyObject *names = PyList_New(0);
    if (names == NULL) return NULL;
    for (int i = 0; tl_crc32c_backend_at(i) != NULL; i++) {
        PyObject *name = PyUnicode_FromString(tl_crc32c_backend_at(i));
        if (name == NULL || PyList_Append(names, name) != 0) {
            Py_XDECREF(name);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(name);
    }
    return names;
}

/* crc32c through a named implementation, for tests holding each to the others. */
static PyObject *py_crc32c_with(PyObject *self, PyObject *args) {
    const char *wanted;
    Py_buffer view;
    PyObject *start = NULL;
    if (!PyArg_ParseTuple(args, "sy*|O", &wanted, &view, &start)) return NULL;
    unsigned long crc = 0;
    if (start != NULL) {
        crc = PyLong_AsUnsignedLong(start);
        if ((crc == (unsigned long)-1 && PyErr_Occurred()) || crc > 0xFFFFFFFFul) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_OverflowError, "crc must fit in 32 bits");
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    for (int i = 0; tl_crc32c_backend_at(i) != NULL; i++) {
        if (strcmp(tl_crc32c_backend_at(i), wanted) == 0) {
            uint32_t result = tl_crc32c_at(i, (uint32_t)crc, view.buf, (size_t)view.len);
            PyBuffer_Release(&view);
            return PyLong_FromUnsignedLong(result);
        }
    }
    PyBuffer_Release(&view);
    PyErr_Format(PyExc_ValueError, "no CRC32C implementation %s on this CPU", wanted);
    return NULL;
}

/* ---- inflate and walk records ------------------------------------ */

/* Decompresses the records area of a compressed batch into a bytes object of
 * at most `limit` bytes; past it, InflationLimitExceeded. */
static PyObject *inflate(PyObject *source, const tl_header *h, int64_t limit) {
    int codec = h->attributes & 0x07;
    if (codec > TL_MAX_CODEC) {
        tl_error err = {TL_CODEC, h->position, TL_NO_FACT, codec, ""};
        snprintf(err.message, sizeof err.message,
                 "batch at %lld: compression codec %d does not exist", (long long)h->position,
                 codec);
        return raise_batch_error(&err);
    }
    PyObject *view = PyMemoryView_FromObject(source);
    if (!view) return NULL;
    PyObject *body = PySequence_GetSlice(view, h->position + TL_HEADER_SIZE,
                                         h->position + tl_batch_size(h));
    Py_DECREF(view);
    if (!body) return NULL;
    PyObject *inflated = PyObject_CallFunction(decompress_fn, "iOL", codec, body, (long long)limit);
    Py_DECREF(body);
    if (inflated || !PyErr_ExceptionMatches(PyExc_ValueError)) return inflated;
    tl_error err = {TL_RECORD, h->position, TL_NO_FACT, TL_NO_FACT, ""};
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && PyObject_IsInstance(value, inflation_limit_type) == 1) {
        PyObject *found = PyObject_GetAttrString(value, "found");
        err.kind = TL_INFLATION;
        err.expected = limit;
        err.found = found ? PyLong_AsLongLong(found) : TL_NO_FACT;
        Py_XDECREF(found);
    }
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *reason = text ? PyUnicode_AsUTF8(text) : NULL;
    PyErr_Clear();
    snprintf(err.message, sizeof err.message, "batch at %lld: %s", (long long)h->position,
             reason ? reason : "cannot decompress");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return raise_batch_error(&err);
}

PyObject *tl_inflate_batch(PyObject *source, const tl_header *h, int64_t limit) {
    return inflate(source, h, limit);
}

PyObject *tl_raise_batch_error(const tl_error *err) { return raise_batch_error(err); }

int64_t tl_max_inflated_default(void) { return max_inflated_default; }

/* Raises RejectedRecords (RejectedTimestamps if a timestamp is among the
 * faults) naming each refused record kept (the first TL_MAX_RECORD_ERRORS),
 * as Kafka's per-record errors, and counting them all. */
static void raise_record_errors(const tl_header *h, const tl_record_errors *errors,
                                const tl_record_rules *rules) {
    PyObject *items = PyTuple_New((Py_ssize_t)errors->count);
    for (size_t i = 0; items && i < errors->count; i++) {
        const tl_record_error *e = &errors->items[i];
        /* Kafka's LogValidator words (the engine adds the topic partition
         * to the first: native.records.NO_KEY_MESSAGE). */
        PyObject *text =
            e->fault == TL_NO_KEY
                ? PyUnicode_FromString("Compacted topic cannot accept message without key")
                : PyUnicode_FromFormat("Timestamp %lld of message with offset %lld is out of "
                                       "range. The timestamp should be within [%lld, %lld]",
                                       (long long)e->timestamp, (long long)e->offset,
                                       (long long)rules->min_timestamp,
                                       (long long)rules->max_timestamp);
        PyObject *pair = text ? Py_BuildValue("(iN)", (int)e->index, text) : NULL;
        if (!pair) {
            Py_CLEAR(items);
            break;
        }
        PyTuple_SET_ITEM(items, (Py_ssize_t)i, pair);
    }
    if (!items) return;
    PyObject *cls = errors->timestamps ? rejected_timestamps_type : rejected_records_type;
    PyObject *first = PyTuple_GET_ITEM(PyTuple_GET_ITEM(items, 0), 1);
    PyObject *args = Py_BuildValue("(N)", PyUnicode_FromFormat("batch at %lld: %lld records refused: %U",
                                                         (long long)h->position,
                                                         (long long)errors->total, first));
    PyObject *kwargs = Py_BuildValue("{s:L,s:O,s:L}", "position", (long long)h->position,
                                     "record_errors", items, "total", (long long)errors->total);
    if (args && kwargs) {
        PyObject *exc = PyObject_Call(cls, args, kwargs);
        if (exc) {
            PyErr_SetObject(cls, exc);
            Py_DECREF(exc);
        }
    }
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_DECREF(items);
}

/* The record walk of one batch from a client: a compressed one always (into
 * a buffer bounded by `limit`, discarded after), an uncompressed one when a
 * rule asks for it (tl_check_batch walked its format already, without the
 * GIL; this second walk finds the records a rule refuses). Returns 0, or -1
 * with an exception set. */
static int walk_batch(PyObject *obj, const uint8_t *buf, tl_header *h,
                      const tl_record_rules *topic_rules, int64_t limit) {
    tl_record_rules rules = *topic_rules;
    tl_record_errors errors = {0};
    tl_error err = {0};
    int64_t largest;
    int rc;
    if ((h->attributes & 0x07) != 0) {
        PyObject *inflated = inflate(obj, h, limit);
        if (!inflated) return -1;
        if (!PyBytes_Check(inflated)) {
            Py_DECREF(inflated);
            PyErr_SetString(PyExc_TypeError, "decompress must return bytes");
            return -1;
        }
        rules.strict_offsets = 1;
        rc = tl_walk_records((const uint8_t *)PyBytes_AS_STRING(inflated),
                             PyBytes_GET_SIZE(inflated), 0, h, &rules, &errors, &largest, &err);
        Py_DECREF(inflated);
        /* Inflated for the walk anyway: its records' largest timestamp
         * costs a compare a record, as the uncompressed one's does. */
        if (rc == 0) tl_keep_records_max(h, largest);
    } else if (rules.require_keys || rules.check_timestamps) {
        rules.strict_offsets = 0;
        rc = tl_walk_records(buf + h->position + TL_HEADER_SIZE,
                             tl_batch_size(h) - TL_HEADER_SIZE, h->position + TL_HEADER_SIZE, h,
                             &rules, &errors, &largest, &err);
    } else {
        return 0;
    }
    if (rc == -1) {
        raise_batch_error(&err);
    } else if (rc == -2) {
        PyErr_NoMemory();
    } else if (errors.count > 0) {
        raise_record_errors(h, &errors, &rules);
        rc = -1;
    }
    tl_record_errors_free(&errors);
    return rc == 0 ? 0 : -1;
}

/* ---- scan / validate ------------------------------------------------- */

/* Frames (and checks) every batch; headers go to a C array first so the
 * GIL can be dropped while CRCs run over a large buffer. */
static PyObject *scan(PyObject *obj, int check, int from_client, const tl_record_rules *rules,
                      int64_t limit, int one_batch) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) return NULL;
    const uint8_t *buf = view.buf;
    int64_t end = view.len;
    /* Before anything in the batch is checked, as Kafka frames the records
     * while it parses the request; what follows the one batch is dropped. */
    if (one_batch) {
        tl_error framing;
        end = tl_produce_batch_size(buf, end, 1, &framing);
        if (end < 0 || tl_check_produce_base_offset(buf, &framing) != 0) {
            PyBuffer_Release(&view);
            return raise_batch_error(&framing);
        }
    }
    size_t count = 0, cap = 8;
    tl_header *headers = PyMem_RawMalloc(cap * sizeof *headers);
    tl_error err = {0};
    int failed = 0, oom = 0;
    if (!headers) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    PyThreadState *state = end >= GIL_FREE_BYTES ? PyEval_SaveThread() : NULL;
    for (int64_t pos = 0; pos < end;) {
        tl_header h;
        if (tl_read_header(buf, pos, end, &h, &err) != 0 || (check && tl_check_batch(buf, &h, from_client, &err) != 0)) {
            failed = 1;
            break;
        }
        if (count == cap) {
            tl_header *grown = PyMem_RawRealloc(headers, 2 * cap * sizeof *headers);
            if (!grown) {
                oom = 1;
                break;
            }
            headers = grown;
            cap *= 2;
        }
        headers[count++] = h;
        pos += tl_batch_size(&h);
    }
    if (state) PyEval_RestoreThread(state);
    /* Records are walked once every batch framed and passed its CRC, so the
     * first fault reported is the same as the pure twin's. */
    int walk_failed = 0;
    for (size_t i = 0; !failed && !oom && check && from_client && i < count; i++) {
        if (walk_batch(obj, buf, &headers[i], rules, limit) != 0) {
            walk_failed = 1;
            break;
        }
    }
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (oom) {
        PyErr_NoMemory();
    } else if (failed) {
        raise_batch_error(&err);
    } else if (walk_failed) {
        /* the exception is set */
    } else if ((result = PyList_New((Py_ssize_t)count)) != NULL) {
        for (size_t i = 0; i < count; i++) {
            PyObject *header = make_header(&headers[i]);
            if (!header) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, (Py_ssize_t)i, header);
        }
    }
    PyMem_RawFree(headers);
    return result;
}

static PyObject *py_scan_batches(PyObject *self, PyObject *obj) {
    return scan(obj, 0, 1, NULL, 0, 0);
}

/* produce_batch_size(data, *, allow_zstd=True) */
static PyObject *py_produce_batch_size(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "allow_zstd", NULL};
    PyObject *obj;
    int allow_zstd = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$p:produce_batch_size", kwlist, &obj,
                                     &allow_zstd))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) return NULL;
    tl_error err;
    int64_t size = tl_produce_batch_size(view.buf, view.len, allow_zstd, &err);
    PyBuffer_Release(&view);
    return size < 0 ? raise_batch_error(&err) : PyLong_FromLongLong(size);
}

/* An optional int64 keyword (None leaves *out as it is); 1 if given. */
static int optional_timestamp(PyObject *value, const char *name, int64_t *out) {
    if (value == Py_None) return 0;
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int or None", name);
        return -1;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 1;
}

/* validate_batches(data, *, from_client=True, max_inflated=MAX_INFLATED,
 * min_timestamp=None, max_timestamp=None, require_keys=False, one_batch=False),
 * parsed by hand:
 * it is on the produce path, and the generic keyword parser costs more than a
 * small batch. */
static PyObject *py_validate_batches(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "validate_batches() takes 1 positional argument but %zd were given", nargs);
        return NULL;
    }
    int from_client = 1, one_batch = 0;
    int64_t limit = max_inflated_default;
    tl_record_rules rules = {0, 0, 0, INT64_MIN, INT64_MAX};
    Py_ssize_t keywords = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < keywords; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *value = args[nargs + i];
        int given;
        if (!PyUnicode_Check(name)) {
            given = -2;
        } else if (PyUnicode_CompareWithASCIIString(name, "from_client") == 0) {
            given = (from_client = PyObject_IsTrue(value)) < 0 ? -1 : 0;
        } else if (PyUnicode_CompareWithASCIIString(name, "one_batch") == 0) {
            given = (one_batch = PyObject_IsTrue(value)) < 0 ? -1 : 0;
        } else if (PyUnicode_CompareWithASCIIString(name, "require_keys") == 0) {
            given = (rules.require_keys = PyObject_IsTrue(value)) < 0 ? -1 : 0;
        } else if (PyUnicode_CompareWithASCIIString(name, "min_timestamp") == 0) {
            given = optional_timestamp(value, "min_timestamp", &rules.min_timestamp);
            if (given == 1) rules.check_timestamps = 1;
        } else if (PyUnicode_CompareWithASCIIString(name, "max_timestamp") == 0) {
            given = optional_timestamp(value, "max_timestamp", &rules.max_timestamp);
            if (given == 1) rules.check_timestamps = 1;
        } else if (PyUnicode_CompareWithASCIIString(name, "max_inflated") == 0) {
            limit = PyLong_AsLongLong(value);
            given = limit == -1 && PyErr_Occurred() ? -1 : 0;
            if (given == 0 && limit < 0) {
                PyErr_SetString(PyExc_ValueError, "max_inflated must not be negative");
                given = -1;
            }
        } else {
            given = -2;
        }
        if (given == -2) {
            PyErr_Format(PyExc_TypeError,
                         "validate_batches() got an unexpected keyword argument %R", name);
            return NULL;
        }
        if (given < 0) return NULL;
    }
    return scan(args[0], 1, from_client, &rules, limit, one_batch);
}

/* ---- rewrite --------------------------------------------------------- */

static PyObject *py_rewrite_batch(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", "position", "base_offset", "partition_leader_epoch",
                             "log_append_time", "create_time", "max_timestamp", NULL};
    PyObject *obj, *epoch_obj = Py_None, *time_obj = Py_None, *max_obj = Py_None;
    Py_ssize_t position;
    long long base_offset;
    int create_time = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnL|OOpO:rewrite_batch", kwlist, &obj,
                                     &position, &base_offset, &epoch_obj, &time_obj, &create_time,
                                     &max_obj))
        return NULL;
    if (create_time && time_obj != Py_None) {
        PyErr_SetString(PyExc_ValueError, "a batch is stamped LogAppendTime or marked CreateTime");
        return NULL;
    }
    int32_t epoch = 0;
    int64_t append_time = 0;
    if (epoch_obj != Py_None) {
        long value = PyLong_AsLong(epoch_obj);
        if (value == -1 && PyErr_Occurred()) return NULL;
        if (value < INT32_MIN || value > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "partition_leader_epoch does not fit int32");
            return NULL;
        }
        epoch = (int32_t)value;
    }
    if (time_obj != Py_None) {
        append_time = PyLong_AsLongLong(time_obj);
        if (append_time == -1 && PyErr_Occurred()) return NULL;
    }
    int64_t largest = 0;
    if (optional_timestamp(max_obj, "max_timestamp", &largest) < 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_WRITABLE) != 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "rewrite_batch needs a writable buffer");
        return NULL;
    }
    if (position < 0 || position > view.len) {
        PyErr_Format(PyExc_ValueError, "position %zd is outside the buffer of %zd bytes", position,
                     view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    tl_header h;
    tl_error err = {0};
    if (tl_read_header(view.buf, position, view.len, &h, &err) != 0) {
        PyBuffer_Release(&view);
        return raise_batch_error(&err);
    }
    tl_rewrite((uint8_t *)view.buf + position, &h, base_offset,
               epoch_obj != Py_None ? &epoch : NULL, time_obj != Py_None ? &append_time : NULL,
               create_time, max_obj != Py_None ? &largest : NULL);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* ---- decode ---------------------------------------------------------- */

/* Reads a varint length and that many bytes (None for -1). 0, or -1 if malformed. */
static int read_bytes(const uint8_t *buf, int64_t *pos, int64_t end, PyObject **out, int as_text) {
    int64_t length;
    if (tl_read_varint(buf, pos, end, 5, &length) != 0) return -1;
    if (length == -1) {
        *out = Py_NewRef(Py_None);
        return 0;
    }
    if (length < 0 || length > end - *pos) return -1;
    const char *start = (const char *)buf + *pos;
    *out = as_text ? PyUnicode_DecodeUTF8(start, (Py_ssize_t)length, "strict")
                   : PyBytes_FromStringAndSize(start, (Py_ssize_t)length);
    if (!*out) {
        if (!as_text || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return -2;
        PyErr_Clear();
        return -1;
    }
    *pos += length;
    return 0;
}

/* The shape of decoded records: native's Record, or a caller's tuple type of
   the prefix's items, the record's five fields and its batch's timestamp
   type (a consumer's record, built here rather than by a Python loop). */
typedef struct {
    PyObject *type;     /* a tuple subclass */
    PyObject *prefix;   /* a tuple, or NULL for native's Record */
    int64_t min_offset; /* records below it are skipped */
} record_shape;

/* One record at *pos into *out (NULL if below the shape's min_offset).
   Returns 0, -1 if malformed, -2 on a Python error. */
static int decode_record(const uint8_t *buf, int64_t *pos, int64_t end, const tl_header *h,
                         const record_shape *shape, PyObject **out) {
    int64_t length, timestamp_delta, offset_delta, header_count;
    PyObject *key = NULL, *value = NULL, *headers = NULL;
    int rc = -1;
    if (tl_read_varint(buf, pos, end, 5, &length) != 0 || length < 1 || length > end - *pos)
        return -1;
    int64_t record_end = *pos + length;
    *pos += 1; /* the record's attributes byte: unused by every Kafka version */
    if (tl_read_varint(buf, pos, record_end, 10, &timestamp_delta) != 0 ||
        tl_read_varint(buf, pos, record_end, 5, &offset_delta) != 0)
        return -1;
    if ((rc = read_bytes(buf, pos, record_end, &key, 0)) != 0) goto done;
    if ((rc = read_bytes(buf, pos, record_end, &value, 0)) != 0) goto done;
    rc = -1;
    if (tl_read_varint(buf, pos, record_end, 5, &header_count) != 0 || header_count < 0) goto done;
    /* Each header takes at least two bytes, so this bounds the allocation. */
    if (header_count > (record_end - *pos) / 2) goto done;
    if (!(headers = PyTuple_New((Py_ssize_t)header_count))) {
        rc = -2;
        goto done;
    }
    for (int64_t i = 0; i < header_count; i++) {
        PyObject *name = NULL, *header_value = NULL;
        if ((rc = read_bytes(buf, pos, record_end, &name, 1)) != 0) goto done;
        if (name == Py_None) {
            Py_DECREF(name);
            rc = -1;
            goto done;
        }
        if ((rc = read_bytes(buf, pos, record_end, &header_value, 0)) != 0) {
            Py_DECREF(name);
            goto done;
        }
        PyObject *pair = PyTuple_Pack(2, name, header_value);
        Py_DECREF(name);
        Py_DECREF(header_value);
        if (!pair) {
            rc = -2;
            goto done;
        }
        PyTuple_SET_ITEM(headers, (Py_ssize_t)i, pair);
    }
    rc = -1;
    if (*pos != record_end) goto done;
    int64_t timestamp = (h->attributes & TL_TIMESTAMP_TYPE_BIT)
                            ? h->max_timestamp
                            : (int64_t)((uint64_t)h->base_timestamp + (uint64_t)timestamp_delta);
    int64_t offset = (int64_t)((uint64_t)h->base_offset + (uint64_t)offset_delta);
    if (offset < shape->min_offset) {
        *out = NULL;
        *pos = record_end;
        rc = 0;
        goto done;
    }
    Py_ssize_t first = shape->prefix ? PyTuple_GET_SIZE(shape->prefix) : 0;
    Py_ssize_t size = first + 5 + (shape->prefix ? 1 : 0);
    PyObject *record = new_named_tuple(shape->type, size);
    PyObject *offset_obj = PyLong_FromLongLong(offset);
    PyObject *timestamp_obj = PyLong_FromLongLong(timestamp);
    PyObject *type_obj = shape->prefix
                             ? PyLong_FromLong((h->attributes & TL_TIMESTAMP_TYPE_BIT) ? 1 : 0)
                             : NULL;
    if (!record || !offset_obj || !timestamp_obj || (shape->prefix && !type_obj)) {
        Py_XDECREF(record);
        Py_XDECREF(offset_obj);
        Py_XDECREF(timestamp_obj);
        Py_XDECREF(type_obj);
        rc = -2;
        goto done;
    }
    for (Py_ssize_t i = 0; i < first; i++) {
        PyObject *item = PyTuple_GET_ITEM(shape->prefix, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(record, i, item);
    }
    PyTuple_SET_ITEM(record, first + 0, offset_obj);
    PyTuple_SET_ITEM(record, first + 1, timestamp_obj);
    PyTuple_SET_ITEM(record, first + 2, key);
    PyTuple_SET_ITEM(record, first + 3, value);
    PyTuple_SET_ITEM(record, first + 4, headers);
    if (type_obj) PyTuple_SET_ITEM(record, first + 5, type_obj);
    *out = record;
    *pos = record_end;
    return 0;
done:
    Py_XDECREF(key);
    Py_XDECREF(value);
    Py_XDECREF(headers);
    return rc;
}

static int decode_stream(const uint8_t *area, int64_t end, const tl_header *h,
                         const record_shape *shape, PyObject *out) {
    char msg[160];
    int64_t pos = 0;
    for (int32_t i = 0; i < h->record_count; i++) {
        int64_t start = pos;
        PyObject *record;
        int rc = decode_record(area, &pos, end, h, shape, &record);
        if (rc == -2) return -1;
        if (rc != 0) {
            tl_error err = {TL_RECORD, start, TL_NO_FACT, TL_NO_FACT, ""};
            snprintf(err.message, sizeof err.message,
                     "batch at %lld: malformed record %lld bytes into its records",
                     (long long)h->position, (long long)start);
            raise_batch_error(&err);
            return -1;
        }
        if (!record) continue; /* below min_offset */
        int appended = PyList_Append(out, record);
        Py_DECREF(record);
        if (appended != 0) return -1;
    }
    if (pos != end) {
        snprintf(msg, sizeof msg, "batch at %lld: %lld bytes after its last record",
                 (long long)h->position, (long long)(end - pos));
        tl_error err = {TL_RECORD, pos, end, pos, ""};
        memcpy(err.message, msg, sizeof msg);
        raise_batch_error(&err);
        return -1;
    }
    return 0;
}

static PyObject *py_decode_records(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data",         "record_type",  "prefix", "min_offset",
                             "skip_control", "max_inflated", NULL};
    PyObject *obj, *type_arg = Py_None, *prefix = NULL;
    long long min_offset = LLONG_MIN, limit = max_inflated_default;
    int skip_control = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OO!LpL:decode_records", kwlist, &obj,
                                     &type_arg, &PyTuple_Type, &prefix, &min_offset,
                                     &skip_control, &limit))
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "max_inflated must not be negative");
        return NULL;
    }
    record_shape shape = {record_type, NULL, (int64_t)min_offset};
    if (type_arg != Py_None) {
        if (!PyType_Check(type_arg) ||
            !PyType_IsSubtype((PyTypeObject *)type_arg, &PyTuple_Type)) {
            PyErr_SetString(PyExc_TypeError, "record_type must be a tuple subclass");
            return NULL;
        }
        shape.type = type_arg;
    } else if (prefix && PyTuple_GET_SIZE(prefix) > 0) {
        PyErr_SetString(PyExc_TypeError, "prefix needs a record_type");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0) return NULL;
    PyObject *empty = NULL;
    if (type_arg != Py_None) {
        if (!prefix && !(prefix = empty = PyTuple_New(0))) {
            PyBuffer_Release(&view);
            return NULL;
        }
        shape.prefix = prefix;
    }
    PyObject *out = PyList_New(0);
    const uint8_t *buf = view.buf;
    int64_t end = view.len;
    for (int64_t pos = 0; out && pos < end;) {
        tl_header h;
        tl_error err = {0};
        if (tl_read_header(buf, pos, end, &h, &err) != 0) {
            raise_batch_error(&err);
            Py_CLEAR(out);
            break;
        }
        int64_t last_offset = (int64_t)((uint64_t)h.base_offset + (uint64_t)h.last_offset_delta);
        if ((skip_control && (h.attributes & TL_CONTROL_BIT)) || last_offset < shape.min_offset) {
            pos += tl_batch_size(&h); /* not decoded at all */
            continue;
        }
        int rc;
        if ((h.attributes & 0x07) == 0) {
            rc = decode_stream(buf + pos + TL_HEADER_SIZE, tl_batch_size(&h) - TL_HEADER_SIZE, &h,
                               &shape, out);
        } else {
            PyObject *inflated = inflate(obj, &h, limit);
            if (!inflated) {
                rc = -1;
            } else if (!PyBytes_Check(inflated)) {
                PyErr_SetString(PyExc_TypeError, "decompress must return bytes");
                rc = -1;
            } else {
                rc = decode_stream((const uint8_t *)PyBytes_AS_STRING(inflated),
                                   PyBytes_GET_SIZE(inflated), &h, &shape, out);
            }
            Py_XDECREF(inflated);
        }
        if (rc != 0) Py_CLEAR(out);
        pos += tl_batch_size(&h);
    }
    Py_XDECREF(empty);
    PyBuffer_Release(&view);
    return out;
}

/* ---- encode ---------------------------------------------------------- */

static int put_headers(tl_buf *b, PyObject *headers) {
    PyObject *seq = PySequence_Fast(headers, "record headers must be a sequence of pairs");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int rc = tl_buf_put_varint(b, n) == 0 ? 0 : (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *pair = PySequence_Fast(PySequence_Fast_GET_ITEM(seq, i),
                                         "a record header is a (name, value) pair");
        if (!pair) {
            rc = -1;
            break;
        }
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a record header is a (name, value) pair");
            rc = -1;
        } else {
            PyObject *name = PySequence_Fast_GET_ITEM(pair, 0);
            Py_ssize_t name_len;
            const char *utf8 = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &name_len)
                                                     : NULL;
            if (!utf8) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_TypeError, "a record header name must be a str");
                rc = -1;
            } else if (tl_buf_put_varint(b, name_len) || tl_buf_put(b, utf8, (size_t)name_len)) {
                PyErr_NoMemory();
                rc = -1;
            } else {
                rc = tl_put_py_bytes(b, PySequence_Fast_GET_ITEM(pair, 1));
            }
        }
        Py_DECREF(pair);
    }
    Py_DECREF(seq);
    return rc;
}

static int spec_timestamp(PyObject *spec, int64_t *out) {
    long long value = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(spec, 0));
    if (value == -1 && PyErr_Occurred()) return -1;
    *out = value;
    return 0;
}

static int put_record(tl_buf *stream, tl_buf *body, PyObject *spec, int32_t offset_delta,
                      int64_t base_timestamp) {
    int64_t timestamp;
    if (spec_timestamp(spec, &timestamp) != 0) return -1;
    body->len = 0;
    uint8_t attributes = 0;
    if (tl_buf_put(body, &attributes, 1) ||
        tl_buf_put_varint(body, (int64_t)((uint64_t)timestamp - (uint64_t)base_timestamp)) ||
        tl_buf_put_varint(body, offset_delta)) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *headers = PySequence_Fast_GET_SIZE(spec) == 4 ? PySequence_Fast_GET_ITEM(spec, 3)
                                                            : NULL;
    if (tl_put_py_bytes(body, PySequence_Fast_GET_ITEM(spec, 1)) != 0 ||
        tl_put_py_bytes(body, PySequence_Fast_GET_ITEM(spec, 2)) != 0)
        return -1;
    if (headers ? put_headers(body, headers) != 0 : tl_buf_put_varint(body, 0) != 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    if (tl_buf_put_varint(stream, (int64_t)body->len) || tl_buf_put(stream, body->data, body->len)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Encodes the record stream of specs (a list of 3- or 4-item sequences), record i
 * with offset_deltas[i]. *base_timestamp is the first record's unless has_base;
 * *max_timestamp the largest record's from TL_NO_TIMESTAMP up, as Kafka's
 * MemoryRecordsBuilder keeps it and validate_batches stores it: a batch the
 * cleaner or masking re-encodes claims the max its records were stored with. */
static PyObject *encode_stream(PyObject *specs, const int32_t *offset_deltas, int has_base,
                               int64_t *base_timestamp, int64_t *max_timestamp) {
    Py_ssize_t n = PyList_GET_SIZE(specs);
    tl_buf stream = {0}, body = {0};
    PyObject *result = NULL;
    int64_t first;
    if (spec_timestamp(PyList_GET_ITEM(specs, 0), &first) != 0) return NULL;
    if (!has_base) *base_timestamp = first;
    *max_timestamp = TL_NO_TIMESTAMP;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *spec = PyList_GET_ITEM(specs, i);
        int64_t timestamp;
        if (spec_timestamp(spec, &timestamp) != 0 ||
            put_record(&stream, &body, spec, offset_deltas[i], *base_timestamp) != 0)
            goto done;
        if (timestamp > *max_timestamp) *max_timestamp = timestamp;
    }
    result = PyBytes_FromStringAndSize((const char *)stream.data, (Py_ssize_t)stream.len);
done:
    tl_buf_free(&stream);
    tl_buf_free(&body);
    return result;
}

static PyObject *specs_as_list(PyObject *records) {
    PyObject *iter = PyObject_GetIter(records);
    if (!iter) return NULL;
    PyObject *specs = PyList_New(0), *item;
    while (specs && (item = PyIter_Next(iter)) != NULL) {
        PyObject *spec = PySequence_Fast(item, "a record spec is (timestamp, key, value[, headers])");
        Py_DECREF(item);
        if (spec && PySequence_Fast_GET_SIZE(spec) != 3 && PySequence_Fast_GET_SIZE(spec) != 4) {
            PyErr_SetString(PyExc_TypeError, "a record spec is (timestamp, key, value[, headers])");
            Py_CLEAR(spec);
        }
        if (!spec || PyList_Append(specs, spec) != 0) Py_CLEAR(specs);
        Py_XDECREF(spec);
    }
    Py_DECREF(iter);
    if (specs && PyErr_Occurred()) Py_CLEAR(specs);
    return specs;
}

#define TL_I32_MAX_TEXT "2147483647"

/* One offsetDelta per record (record i gets i when obj is None): non-negative
 * int32s, strictly increasing. A PyMem array, or NULL with an error set. */
static int32_t *read_offset_deltas(PyObject *obj, Py_ssize_t count) {
    int32_t *deltas = PyMem_New(int32_t, (size_t)count);
    if (!deltas) return (int32_t *)PyErr_NoMemory();
    if (obj == Py_None) {
        for (Py_ssize_t i = 0; i < count; i++) deltas[i] = (int32_t)i;
        return deltas;
    }
    PyObject *seq = PySequence_Fast(obj, "offset_deltas must be a sequence of ints");
    if (!seq) goto fail;
    if (PySequence_Fast_GET_SIZE(seq) != count) {
        PyErr_Format(PyExc_ValueError, "offset_deltas has %zd items for %zd records",
                     PySequence_Fast_GET_SIZE(seq), count);
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "offset_deltas[%zd] must be an int, not %.200s", i,
                         Py_TYPE(item)->tp_name);
            goto fail;
        }
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (value == -1 && PyErr_Occurred()) goto fail;
        if (overflow || value < 0 || value > INT32_MAX) {
            PyErr_Format(PyExc_ValueError,
                         "offset_deltas[%zd] is %R; an offsetDelta is between 0 and " TL_I32_MAX_TEXT,
                         i, item);
            goto fail;
        }
        if (i > 0 && value <= deltas[i - 1]) {
            PyErr_Format(PyExc_ValueError,
                         "offset_deltas[%zd] is %R, not above offset_deltas[%zd] (%d): "
                         "offsetDeltas must increase",
                         i, item, i - 1, (int)deltas[i - 1]);
            goto fail;
        }
        deltas[i] = (int32_t)value;
    }
    Py_DECREF(seq);
    return deltas;
fail:
    Py_XDECREF(seq);
    PyMem_Free(deltas);
    return NULL;
}

/* The header's lastOffsetDelta: the last record's, or obj (an int) if at least that. */
static int read_last_offset_delta(PyObject *obj, int32_t last_record_delta, int32_t *out) {
    if (obj == Py_None) {
        *out = last_record_delta;
        return 0;
    }
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (overflow || value < last_record_delta || value > INT32_MAX) {
        PyErr_Format(PyExc_ValueError,
                     "last_offset_delta %R must be between the last record's offsetDelta (%d) "
                     "and " TL_I32_MAX_TEXT,
                     obj, (int)last_record_delta);
        return -1;
    }
    *out = (int32_t)value;
    return 0;
}

/* An optional int argument, None or a Python int that fits int64. */
static int optional_int64(PyObject *obj, const char *name, int64_t *out) {
    if (obj == Py_None) return 0;
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) return -1;
    if (overflow) {
        PyErr_Format(PyExc_OverflowError, "%s %R does not fit in a signed 64-bit integer", name,
                     obj);
        return -1;
    }
    *out = value;
    return 0;
}

static PyObject *py_encode_batch(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"records",          "base_offset",    "compression",
                             "producer_id",      "producer_epoch", "base_sequence",
                             "is_transactional", "is_control",     "partition_leader_epoch",
                             "timestamp_type",   "base_timestamp", "offset_deltas",
                             "last_offset_delta", NULL};
    PyObject *records, *base_timestamp_obj = Py_None, *deltas_obj = Py_None,
                       *last_delta_obj = Py_None;
    long long base_offset = 0, producer_id = -1;
    int codec = 0, base_sequence = -1, transactional = 0, control = 0, leader_epoch = -1;
    int timestamp_type = 0;
    short producer_epoch = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$LiLhippiiOOO:encode_batch", kwlist,
                                     &records, &base_offset, &codec, &producer_id, &producer_epoch,
                                     &base_sequence, &transactional, &control, &leader_epoch,
                                     &timestamp_type, &base_timestamp_obj, &deltas_obj,
                                     &last_delta_obj))
        return NULL;
    int64_t base_timestamp = 0, max_timestamp;
    if (optional_int64(base_timestamp_obj, "base_timestamp", &base_timestamp) != 0) return NULL;
    if (last_delta_obj != Py_None && !PyLong_Check(last_delta_obj)) {
        PyErr_Format(PyExc_TypeError, "last_offset_delta must be an int, not %.200s",
                     Py_TYPE(last_delta_obj)->tp_name);
        return NULL;
    }
    PyObject *specs = specs_as_list(records);
    if (!specs) return NULL;
    PyObject *stream = NULL, *area = NULL, *batch = NULL;
    int32_t *offset_deltas = NULL, last_offset_delta;
    if (PyList_GET_SIZE(specs) == 0) {
        PyErr_SetString(PyExc_ValueError, "a record batch holds at least one record");
        goto done;
    }
    if (codec < 0 || codec > TL_MAX_CODEC) {
        PyErr_Format(PyExc_ValueError, "no such compression codec: %d", codec);
        goto done;
    }
    Py_ssize_t count = PyList_GET_SIZE(specs);
    if (!(offset_deltas = read_offset_deltas(deltas_obj, count)) ||
        read_last_offset_delta(last_delta_obj, offset_deltas[count - 1], &last_offset_delta) != 0)
        goto done;
    if (!(stream = encode_stream(specs, offset_deltas, base_timestamp_obj != Py_None,
                                 &base_timestamp, &max_timestamp)))
        goto done;
    area = codec ? PyObject_CallFunction(compress_fn, "iO", codec, stream) : Py_NewRef(stream);
    if (!area) goto done;
    if (!PyBytes_Check(area)) {
        PyErr_SetString(PyExc_TypeError, "compress must return bytes");
        goto done;
    }
    Py_ssize_t area_len = PyBytes_GET_SIZE(area);
    if (area_len > INT32_MAX - (TL_HEADER_SIZE - TL_LENGTH_PREFIX)) {
        PyErr_SetString(PyExc_OverflowError, "the batch would exceed 2 GiB");
        goto done;
    }
    if (!(batch = PyBytes_FromStringAndSize(NULL, TL_HEADER_SIZE + area_len))) goto done;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(batch);
    tl_header fields = {
        .base_offset = base_offset,
        .partition_leader_epoch = leader_epoch,
        .attributes = (int16_t)(codec | (timestamp_type ? 0x08 : 0) | (transactional ? 0x10 : 0) |
                                (control ? 0x20 : 0)),
        .last_offset_delta = last_offset_delta,
        .base_timestamp = base_timestamp,
        .max_timestamp = max_timestamp,
        .producer_id = producer_id,
        .producer_epoch = producer_epoch,
        .base_sequence = base_sequence,
        .record_count = (int32_t)count,
    };
    tl_put_batch_header(p, area_len, &fields);
    memcpy(p + TL_HEADER_SIZE, PyBytes_AS_STRING(area), (size_t)area_len);
    tl_seal_batch(p, area_len);
done:
    PyMem_Free(offset_deltas);
    Py_DECREF(specs);
    Py_XDECREF(stream);
    Py_XDECREF(area);
    return batch;
}

/* ---- module ---------------------------------------------------------- */

/* A bytearray of size bytes left as the allocator gives them, where
 * bytearray(size) zero-fills them first: for a buffer every byte of which is
 * written before anything reads it (a request read from a socket). Its pages
 * are made present in one call (prefault.c), since all of them are about to
 * be written. */
static PyObject *py_unfilled_bytearray(PyObject *self, PyObject *arg) {
    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "size must be an int, not %.200s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred()) return NULL;
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "size %zd is negative", size);
        return NULL;
    }
    PyObject *buffer = PyByteArray_FromStringAndSize(NULL, size);
    if (buffer != NULL) tl_prefault(PyByteArray_AS_STRING(buffer), (size_t)size);
    return buffer;
}

/* Grows a bytearray by added bytes left as the allocator gives them, where
 * extend(bytes(added)) zero-fills a temporary and copies it in: for a buffer
 * that is then written to its end before anything reads it (the added pages
 * made present in one call, as above). */
static PyObject *py_extend_unfilled(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "extend_unfilled takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *buffer = args[0], *arg = args[1];
    if (!PyByteArray_Check(buffer)) {
        PyErr_Format(PyExc_TypeError, "buffer must be a bytearray, not %.200s",
                     Py_TYPE(buffer)->tp_name);
        return NULL;
    }
    if (!PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "added must be an int, not %.200s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    Py_ssize_t added = PyLong_AsSsize_t(arg);
    if (added == -1 && PyErr_Occurred()) return NULL;
    if (added < 0) {
        PyErr_Format(PyExc_ValueError, "added %zd is negative", added);
        return NULL;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(buffer);
    if (added > PY_SSIZE_T_MAX - size) {
        PyErr_SetString(PyExc_OverflowError, "the buffer would be too large");
        return NULL;
    }
    if (PyByteArray_Resize(buffer, size + added) != 0) return NULL;
    tl_prefault(PyByteArray_AS_STRING(buffer) + size, (size_t)added);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"crc32c", (PyCFunction)(void (*)(void))py_crc32c, METH_FASTCALL, "CRC32C of a buffer, continuing from crc."},
    {"crc32c_backend", py_crc32c_backend, METH_NOARGS, "The live CRC32C implementation."},
    {"crc32c_backends", py_crc32c_backends, METH_NOARGS,
     "Every CRC32C implementation this CPU runs, the live one last."},
    {"crc32c_with", py_crc32c_with, METH_VARARGS, "CRC32C through a named implementation."},
    {"crc32c_batches", (PyCFunction)(void (*)(void))tl_py_crc32c_batches, METH_FASTCALL,
     "CRC32C of a buffer of checked v2 batches, from their own CRCs."},
    {"crc32c_combine", (PyCFunction)(void (*)(void))tl_py_crc32c_combine, METH_FASTCALL,
     "CRC32C of A then B from their CRCs and B's length."},
    {"scan_batches", py_scan_batches, METH_O, "Frame v2 batches and read their headers."},
    {"produce_batch_size", (PyCFunction)(void (*)(void))py_produce_batch_size,
     METH_VARARGS | METH_KEYWORDS,
     "The size of the one batch a Produce partition's records carry, as Kafka frames it."},
    {"validate_batches", (PyCFunction)(void (*)(void))py_validate_batches,
     METH_FASTCALL | METH_KEYWORDS, "Frame and validate v2 batches."},
    {"rewrite_batch", (PyCFunction)(void (*)(void))py_rewrite_batch, METH_VARARGS | METH_KEYWORDS,
     "Set baseOffset, partitionLeaderEpoch, LogAppendTime and maxTimestamp in place."},
    {"decode_records", (PyCFunction)(void (*)(void))py_decode_records,
     METH_VARARGS | METH_KEYWORDS, "Decode the records of v2 batches."},
    {"decode_columns", (PyCFunction)(void (*)(void))tl_py_decode_columns,
     METH_VARARGS | METH_KEYWORDS, "Decode the records of v2 batches into column buffers."},
    {"encode_batch", (PyCFunction)(void (*)(void))py_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "Build one v2 batch from record specs."},
    {"encode_records", (PyCFunction)(void (*)(void))tl_py_encode_records,
     METH_VARARGS | METH_KEYWORDS, "Build one v2 batch from lists of values and keys."},
    {"encode_entries", (PyCFunction)(void (*)(void))tl_py_encode_entries,
     METH_VARARGS | METH_KEYWORDS, "Lay out an object's entries and blocks."},
    {"untracked_view", tl_py_untracked_view, METH_O,
     "The same bytes as an object the cyclic collector does not track, where one can be."},
    {"untracked_record", (PyCFunction)(void (*)(void))tl_py_untracked_record, METH_FASTCALL,
     "A NamedTuple of its items (memoryviews as ByteSlices), untracked when they all are."},
    {"untracked_tuple", tl_py_untracked_tuple, METH_O,
     "A tuple of the items, untracked when none of them can be tracked."},
    {"join_parts", tl_py_join_parts, METH_O, "Join buffers into one bytes, the GIL released."},
    {"extend_unfilled", (PyCFunction)(void (*)(void))py_extend_unfilled, METH_FASTCALL,
     "Grow a bytearray by bytes that are not zero-filled, for a buffer written before it is read."},
    {"unfilled_bytearray", py_unfilled_bytearray, METH_O,
     "A bytearray whose bytes are not zero-filled, for a buffer written whole before it is read."},
    {"stamp_batch", (PyCFunction)(void (*)(void))tl_py_stamp_batch, METH_VARARGS | METH_KEYWORDS,
     "Append provenance headers to every record of one batch."},
    {"frame_wal_records", (PyCFunction)(void (*)(void))tl_py_frame_wal_records, METH_FASTCALL,
     "Lay out a batch of WAL records back to back, their segment left to stamp."},
    {"stamp_wal_records", (PyCFunction)(void (*)(void))tl_py_stamp_wal_records, METH_FASTCALL,
     "Stamp framed WAL records with their segment and final CRC."},
    {"place_wal_record", (PyCFunction)(void (*)(void))tl_py_place_wal_record, METH_FASTCALL,
     "One WAL record header from its packed address and its placement."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_cnative",
                                        "The C implementation of the native API.", -1, methods,
                                        NULL, NULL, NULL, NULL};

static PyObject *import_attr(const char *module_name, const char *attr) {
    PyObject *module = PyImport_ImportModule(module_name);
    if (!module) return NULL;
    PyObject *value = PyObject_GetAttrString(module, attr);
    Py_DECREF(module);
    return value;
}

PyMODINIT_FUNC PyInit__cnative(void) {
    tl_crc32c_init();
    if (!(batch_header_type = import_attr("native.records", "BatchHeader")) ||
        !(record_type = import_attr("native.records", "Record")) ||
        !(compress_fn = import_attr("native.compression", "compress")) ||
        !(decompress_fn = import_attr("native.compression", "decompress")) ||
        !(inflation_limit_type = import_attr("native.compression", "InflationLimit")) ||
        !(rejected_records_type = import_attr("native.errors", "RejectedRecords")) ||
        !(rejected_timestamps_type = import_attr("native.errors", "RejectedTimestamps")))
        return NULL;
    PyObject *limit = import_attr("native.records", "MAX_INFLATED");
    if (!limit) return NULL;
    max_inflated_default = PyLong_AsLongLong(limit);
    Py_DECREF(limit);
    if (max_inflated_default == -1 && PyErr_Occurred()) return NULL;
    for (int kind = TL_TRUNCATED; kind < TL_KINDS; kind++)
        if (!(error_types[kind] = import_attr("native.errors", tl_kind_names[kind]))) return NULL;
    if (tl_byte_slice_ready() != 0) return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "ByteSlice", (PyObject *)&tl_byte_slice_type) != 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
