/* Bulk record encoding: many values straight into one v2 batch (bulk.c). */
#ifndef TIDELOG_BULK_H
#define TIDELOG_BULK_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* encode_records(values, keys=None, *, timestamp, start=0, max_bytes=2**31-1,
 * headers=(), compression=0, producer_id=-1, producer_epoch=-1,
 * base_sequence=-1, is_transactional=False) -> (bytearray, end): one batch of
 * the records values[start:end] (keys[i] with values[i]), as many as fit in
 * max_bytes (at least one), each with the timestamp and the headers. */
PyObject *tl_py_encode_records(PyObject *self, PyObject *args, PyObject *kwargs);

#endif
