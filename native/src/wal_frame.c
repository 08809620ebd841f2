/*
 * WAL records framed in C: a batch append's records laid out back to back
 * on the appender's thread, then stamped with their segment by the writer.
 *
 * The record header (docs/wal-format.md, "Record"), little-endian:
 *   0 crc u32 | 4 length u32 | 8 segment u64 | 16 type u8 | 17 flags u8 |
 *   18 reserved 2 | 20 stream id u64 | 28 start offset i64 | 36 end offset i64
 * The CRC covers the payload, then header bytes 4..44. The payload's share
 * is computed when framing and kept in the crc field; stamping, once the
 * writer knows the segment, continues it over the 40 header bytes.
 * The pure twin is native/_pure.py's frame_wal_records and stamp_wal_records.
 */
#include "wal_frame.h"

#include <string.h>

#include "crc32c.h"

#define HEADER_SIZE 44
#define ADDRESS_SIZE 24 /* stream id, start and end offsets: the header's last bytes */
#define MAX_RECORD_LENGTH 0xFFFFFFFFll /* the header's length field is 32 bits */
#define MAX_USER_TYPE 254 /* wal.format.MAX_USER_TYPE: 255 is the seal, 0 invalid */
#define APPEND_FIELDS 8   /* wal.Append */
#define GIL_FREE_BYTES (64 * 1024) /* below this, dropping the GIL costs more than it frees */

typedef struct {
    Py_buffer payload;
    Py_buffer prefix;
    uint8_t type;
    uint64_t stream_id;
    int64_t start_offset;
    int64_t end_offset;
    int has_crc;
    uint32_t payload_crc;
} wal_append;

static void store_le(uint8_t *p, uint64_t value, int size) {
    for (int i = 0; i < size; i++) p[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static int check_long(PyObject *value, const char *name) {
    if (PyLong_Check(value)) return 0;
    PyErr_Format(PyExc_TypeError, "%s must be an int, not %s", name, Py_TYPE(value)->tp_name);
    return -1;
}

static int signed64(PyObject *value, const char *name, int64_t *out) {
    if (check_long(value, name) != 0) return -1;
    int overflow = 0;
    long long parsed = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (parsed == -1 && PyErr_Occurred()) return -1;
    if (overflow) {
        PyErr_Format(PyExc_OverflowError, "%s %S does not fit in a signed 64-bit integer", name,
                     value);
        return -1;
    }
    *out = parsed;
    return 0;
}

/* An int in [0, limit], else OverflowError naming what it must fit in. */
static int unsigned_up_to(PyObject *value, const char *name, unsigned long long limit,
                          const char *fits, uint64_t *out) {
    if (check_long(value, name) != 0) return -1;
    int out_of_range = 0;
    unsigned long long parsed = PyLong_AsUnsignedLongLong(value);
    if (parsed == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear(); /* negative or too large: reported as out of range below */
        out_of_range = 1;
    }
    if (out_of_range || parsed > limit) {
        PyErr_Format(PyExc_OverflowError, "%s %S does not fit in %s", name, value, fits);
        return -1;
    }
    *out = parsed;
    return 0;
}

static void release_appends(wal_append *appends, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        PyBuffer_Release(&appends[i].payload);
        PyBuffer_Release(&appends[i].prefix);
    }
    PyMem_Free(appends);
}

/* Reads one append's fields into *a (its buffers held): 0; 1 if its record
 * is longer than max_length or than the length field holds (*too_long set,
 * no buffer held): a longer one's length would be cut to its low 32 bits,
 * and the stamper would read its payload as records; -1 on error. */
static int read_append(PyObject *item, int64_t max_length, wal_append *a, int64_t *too_long) {
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < APPEND_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "each append must be a tuple of 8 fields (wal.Append)");
        return -1;
    }
    PyObject *record_type = PyTuple_GET_ITEM(item, 4);
    if (check_long(record_type, "record_type") != 0) return -1;
    long type = PyLong_AsLong(record_type);
    if (type == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        type = 0; /* out of range either way */
    }
    if (type < 1 || type > MAX_USER_TYPE) {
        PyErr_Format(PyExc_ValueError, "record_type %S is not in 1..%d", record_type,
                     MAX_USER_TYPE);
        return -1;
    }
    a->type = (uint8_t)type;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 0), &a->payload, PyBUF_SIMPLE) != 0) return -1;
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 6), &a->prefix, PyBUF_SIMPLE) != 0) {
        PyBuffer_Release(&a->payload);
        return -1;
    }
    int64_t length = (int64_t)a->payload.len + (int64_t)a->prefix.len;
    uint64_t crc = 0;
    PyObject *payload_crc = PyTuple_GET_ITEM(item, 7);
    int status = 0;
    if (length > max_length || length > MAX_RECORD_LENGTH) {
        *too_long = length;
        status = 1;
    } else if (unsigned_up_to(PyTuple_GET_ITEM(item, 1), "stream_id", UINT64_MAX,
                              "an unsigned 64-bit integer", &a->stream_id) != 0 ||
               signed64(PyTuple_GET_ITEM(item, 2), "start_offset", &a->start_offset) != 0 ||
               signed64(PyTuple_GET_ITEM(item, 3), "end_offset", &a->end_offset) != 0 ||
               (payload_crc != Py_None &&
                unsigned_up_to(payload_crc, "payload_crc", 0xFFFFFFFFull, "32 bits", &crc) != 0)) {
        status = -1;
    }
    if (status != 0) {
        PyBuffer_Release(&a->payload);
        PyBuffer_Release(&a->prefix);
        return status;
    }
    a->has_crc = payload_crc != Py_None;
    a->payload_crc = (uint32_t)crc;
    return 0;
}

static void frame_all(uint8_t *out, const wal_append *appends, Py_ssize_t count) {
    for (Py_ssize_t i = 0; i < count; i++) {
        const wal_append *a = &appends[i];
        size_t prefix_len = (size_t)a->prefix.len, payload_len = (size_t)a->payload.len;
        uint8_t *body = out + HEADER_SIZE;
        /* Copied first and summed from the copy: with the GIL released, a
         * caller's bytearray may change under us, and the record must
         * still carry the CRC of the bytes it holds. */
        memcpy(body, a->prefix.buf, prefix_len);
        memcpy(body + prefix_len, a->payload.buf, payload_len);
        uint32_t prefix_crc = tl_crc32c(0, body, prefix_len);
        uint32_t crc;
        if (!a->has_crc)
            crc = tl_crc32c(prefix_crc, body + prefix_len, payload_len);
        else if (prefix_len)
            crc = tl_crc32c_combine(prefix_crc, a->payload_crc, payload_len);
        else
            crc = a->payload_crc;
        store_le(out, crc, 4);
        store_le(out + 4, prefix_len + payload_len, 4);
        memset(out + 8, 0, 12); /* segment, flags, reserved: the writer's */
        out[16] = a->type;
        store_le(out + 20, a->stream_id, 8);
        store_le(out + 28, (uint64_t)a->start_offset, 8);
        store_le(out + 36, (uint64_t)a->end_offset, 8);
        out = body + prefix_len + payload_len;
    }
}

PyObject *tl_py_frame_wal_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "frame_wal_records() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    int64_t max_length;
    if (signed64(args[1], "max_length", &max_length) != 0) return NULL;
    PyObject *items = PySequence_Fast(args[0], "appends must be iterable");
    if (!items) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(items);
    wal_append *appends = PyMem_Calloc((size_t)(count ? count : 1), sizeof(wal_append));
    if (!appends) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    Py_ssize_t held = 0;
    int64_t too_long = 0, total = 0;
    PyObject *result = NULL;
    for (; held < count; held++) {
        int status = read_append(PySequence_Fast_GET_ITEM(items, held), max_length,
                                 &appends[held], &too_long);
        if (status == 1) result = PyLong_FromLongLong(too_long);
        if (status != 0) goto done;
        total += HEADER_SIZE + appends[held].payload.len + appends[held].prefix.len;
    }
    if (total > PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_OverflowError, "the batch is too large");
        goto done;
    }
    result = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!result) goto done;
    uint8_t *out = (uint8_t *)PyByteArray_AS_STRING(result);
    if (total >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS frame_all(out, appends, count);
        Py_END_ALLOW_THREADS
    } else {
        frame_all(out, appends, count);
    }
done:
    release_appends(appends, held);
    Py_DECREF(items);
    return result;
}

static PyObject *new_position(PyObject *type, uint64_t segment, int64_t offset) {
    PyObject *position = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 2);
    if (!position) return NULL;
    PyObject *fields[2] = {PyLong_FromUnsignedLongLong(segment), PyLong_FromLongLong(offset)};
    if (!fields[0] || !fields[1]) {
        Py_XDECREF(fields[0]);
        Py_XDECREF(fields[1]);
        Py_DECREF(position);
        return NULL;
    }
    PyTuple_SET_ITEM(position, 0, fields[0]);
    PyTuple_SET_ITEM(position, 1, fields[1]);
    return position;
}

PyObject *tl_py_stamp_wal_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "stamp_wal_records() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    int64_t start, room, offset;
    uint64_t segment, first_flags;
    PyObject *position_type = args[6];
    if (signed64(args[1], "start", &start) != 0 || signed64(args[2], "room", &room) != 0 ||
        unsigned_up_to(args[3], "segment", UINT64_MAX, "an unsigned 64-bit integer",
                       &segment) != 0 ||
        signed64(args[4], "offset", &offset) != 0 ||
        unsigned_up_to(args[5], "first_flags", 0xFF, "8 bits", &first_flags) != 0)
        return NULL;
    if (!PyType_Check(position_type) ||
        !PyType_IsSubtype((PyTypeObject *)position_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "position_type must be a NamedTuple of two fields");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) != 0) return NULL;
    uint8_t *frame = view.buf;
    int64_t size = view.len, pos = start;
    PyObject *positions = PyList_New(0);
    if (!positions) goto fail;
    if (start < 0 || start > size) {
        PyErr_Format(PyExc_ValueError, "start %lld is outside the frame", (long long)start);
        goto fail;
    }
    if (offset > INT64_MAX - size) { /* every position must fit in a signed 64-bit offset */
        PyErr_Format(PyExc_OverflowError, "offset %lld and the frame pass 64 bits",
                     (long long)offset);
        goto fail;
    }
    while (pos < size) {
        if (size - pos < HEADER_SIZE) {
            PyErr_Format(PyExc_ValueError, "the record header at %lld runs past the frame",
                         (long long)pos);
            goto fail;
        }
        uint8_t *header = frame + pos;
        int64_t record = HEADER_SIZE + (int64_t)load_le32(header + 4);
        if (record > size - pos) {
            PyErr_Format(PyExc_ValueError, "the record at %lld runs past the frame",
                         (long long)pos);
            goto fail;
        }
        if (record > room - (pos - start)) break;
        store_le(header + 8, segment, 8);
        header[17] = pos == start ? (uint8_t)first_flags : 0;
        store_le(header, tl_crc32c(load_le32(header), header + 4, HEADER_SIZE - 4), 4);
        PyObject *position = new_position(position_type, segment, offset + (pos - start));
        if (!position || PyList_Append(positions, position) != 0) {
            Py_XDECREF(position);
            goto fail;
        }
        Py_DECREF(position);
        pos += record;
    }
    PyBuffer_Release(&view);
    PyObject *end = PyLong_FromLongLong(pos);
    if (!end) {
        Py_DECREF(positions);
        return NULL;
    }
    return Py_BuildValue("(NN)", end, positions);
fail:
    Py_XDECREF(positions);
    PyBuffer_Release(&view);
    return NULL;
}

PyObject *tl_py_place_wal_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "place_wal_record() takes 6 arguments (%zd given)", nargs);
        return NULL;
    }
    uint64_t segment, record_type, length, payload_crc, flags;
    if (!PyBytes_Check(args[0]) || PyBytes_GET_SIZE(args[0]) != ADDRESS_SIZE) {
        PyErr_Format(PyExc_ValueError, "address must be %d bytes", ADDRESS_SIZE);
        return NULL;
    }
    if (unsigned_up_to(args[1], "segment", UINT64_MAX, "an unsigned 64-bit integer",
                       &segment) != 0 ||
        unsigned_up_to(args[2], "record_type", 0xFF, "8 bits", &record_type) != 0 ||
        unsigned_up_to(args[3], "length", MAX_RECORD_LENGTH, "32 bits", &length) != 0 ||
        unsigned_up_to(args[4], "payload_crc", 0xFFFFFFFFull, "32 bits", &payload_crc) != 0 ||
        unsigned_up_to(args[5], "flags", 0xFF, "8 bits", &flags) != 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE);
    if (!out) return NULL;
    uint8_t *header = (uint8_t *)PyBytes_AS_STRING(out);
    store_le(header + 4, length, 4);
    store_le(header + 8, segment, 8);
    header[16] = (uint8_t)record_type;
    header[17] = (uint8_t)flags;
    header[18] = header[19] = 0;
    memcpy(header + 20, PyBytes_AS_STRING(args[0]), ADDRESS_SIZE);
    store_le(header, tl_crc32c((uint32_t)payload_crc, header + 4, HEADER_SIZE - 4), 4);
    return out;
}
