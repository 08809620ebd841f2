/* The CRC32C of a buffer of record batches, from the batches' own CRCs. */
#ifndef TIDELOG_BATCH_CRC_H
#define TIDELOG_BATCH_CRC_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* As tl_crc32c(crc, data, len) whenever every v2 batch that data frames
 * carries the right CRC of its bytes from attributes on (validate_batches
 * checked them): the bytes each CRC covers are not read again. Bytes that do
 * not frame as a v2 batch (a short or foreign tail) are read as tl_crc32c
 * reads them. */
uint32_t tl_crc32c_batches(uint32_t crc, const unsigned char *data, size_t len);

PyObject *tl_py_crc32c_batches(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *tl_py_crc32c_combine(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
