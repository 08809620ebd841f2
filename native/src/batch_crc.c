/* The CRC32C of stored record batches without a second pass over them.
 *
 * A v2 record batch carries the CRC32C of its bytes from attributes
 * (offset 21) to its end; validate_batches has checked it, and rewriting a
 * batch's covered fields recomputes it. A checksum over a whole buffer of
 * such batches (the WAL's, over each append) is then the CRC of each
 * batch's first 21 bytes, combined with the batch's own CRC over the rest
 * (tl_crc32c_combine, a few hundred operations), instead of a read of
 * every byte. Small batches are read: their bytes cost less than a combine.
 * See docs/record-batch.md for the layout. */
#include "batch_crc.h"

#include "batch.h"
#include "crc32c.h"

#define MAGIC_OFFSET 16
#define CRC_OFFSET 17
#define LENGTH_OFFSET 8
#define COMBINE_MIN_BYTES 4096 /* native.records.CRC_COMBINE_MIN_BYTES: reading less is cheaper */

static uint32_t load_be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

uint32_t tl_crc32c_batches(uint32_t crc, const unsigned char *data, size_t len) {
    size_t position = 0;
    while (len - position >= TL_HEADER_SIZE) {
        const unsigned char *batch = data + position;
        uint32_t length = load_be32(batch + LENGTH_OFFSET);
        size_t size = (size_t)length + TL_LENGTH_PREFIX;
        if (batch[MAGIC_OFFSET] != 2 || length > len - position - TL_LENGTH_PREFIX ||
            size < TL_HEADER_SIZE)
            break; /* not a whole v2 batch: read the rest */
        size_t covered = size - TL_CRC_START;
        crc = tl_crc32c(crc, batch, TL_CRC_START);
        if (covered >= COMBINE_MIN_BYTES)
            crc = tl_crc32c_combine(crc, load_be32(batch + CRC_OFFSET), covered);
        else
            crc = tl_crc32c(crc, batch + TL_CRC_START, covered);
        position += size;
    }
    return tl_crc32c(crc, data + position, len - position);
}

static int crc_argument(PyObject *value, uint32_t *crc) {
    unsigned long parsed = PyLong_AsUnsignedLong(value);
    if (parsed == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (parsed > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_OverflowError, "crc must fit in 32 bits");
        return -1;
    }
    *crc = (uint32_t)parsed;
    return 0;
}

PyObject *tl_py_crc32c_batches(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "crc32c_batches() takes 1 or 2 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    uint32_t crc = 0;
    if (nargs == 2 && crc_argument(args[1], &crc) != 0) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) return NULL;
    uint32_t result = tl_crc32c_batches(crc, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(result);
}

PyObject *tl_py_crc32c_combine(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "crc32c_combine() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    uint32_t first, second;
    if (crc_argument(args[0], &first) != 0 || crc_argument(args[1], &second) != 0) return NULL;
    long long length = PyLong_AsLongLong(args[2]);
    if (length == -1 && PyErr_Occurred()) return NULL;
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "length must not be negative");
        return NULL;
    }
    return PyLong_FromUnsignedLong(tl_crc32c_combine(first, second, (uint64_t)length));
}
