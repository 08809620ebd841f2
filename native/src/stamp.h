/* Provenance stamp: a validated batch re-encoded with the broker's headers
 * appended to every record (docs/record-batch.md, "`stamp_batch`"). */
#ifndef TIDELOG_STAMP_H
#define TIDELOG_STAMP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "buffer.h"

/* stamp_batch(data, headers, *, reserved_names, max_size, max_inflated=MAX_INFLATED):
 * the batch with each (name, value) of headers appended to every record and
 * each record's own headers whose name is one of reserved_names dropped;
 * every batch field kept, the CRC recomputed. */
PyObject *tl_py_stamp_batch(PyObject *self, PyObject *args, PyObject *kwargs);

/* Appends a varint length and the bytes of obj (any buffer; None: length -1),
 * as a record's key, value and header values are written; 0, or -1 with a
 * Python error set. Shared with encode_batch (module.c). */
int tl_put_py_bytes(tl_buf *b, PyObject *obj);

#endif
