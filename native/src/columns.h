/* decode_columns (columns.c), and what it takes from module.c. */
#ifndef TIDELOG_COLUMNS_H
#define TIDELOG_COLUMNS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "batch.h"

PyObject *tl_py_decode_columns(PyObject *self, PyObject *args, PyObject *kwargs);

/* module.c: the records area of a compressed batch, inflated to at most limit
 * bytes (a bytes object, or NULL with the batch error set); a batch error
 * raised as its class in native/errors.py (returns NULL); decode_records'
 * default inflation limit. */
PyObject *tl_inflate_batch(PyObject *source, const tl_header *h, int64_t limit);
PyObject *tl_raise_batch_error(const tl_error *err);
int64_t tl_max_inflated_default(void);

#endif
