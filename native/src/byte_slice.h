/* ByteSlice: a read-only view of part of a bytes or bytearray that the
 * cyclic collector does not track (docs/design/0154). */
#ifndef TIDELOG_BYTE_SLICE_H
#define TIDELOG_BYTE_SLICE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyTypeObject tl_byte_slice_type;

/* Readies the type; 0, or -1 with an exception set. */
int tl_byte_slice_ready(void);

/* native.untracked_view(data), native.untracked_record(cls, *items) and
 * native.untracked_tuple(items):
 * see native/_pure.py. */
PyObject *tl_py_untracked_view(PyObject *self, PyObject *data);
PyObject *tl_py_untracked_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *tl_py_untracked_tuple(PyObject *self, PyObject *items);

#endif
