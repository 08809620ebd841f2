/* The data region of an s3stream object: entries and blocks (entries.c). */
#ifndef TIDELOG_ENTRIES_H
#define TIDELOG_ENTRIES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* encode_entries(runs, block_bytes, *, with_spans=False) ->
 * (parts, size, blocks, ranges, spans): runs is a list of (stream_id,
 * batches), each batch a (base_offset, end_offset, payload) tuple. See
 * native/_pure.py's encode_entries for what each result holds. */
PyObject *tl_py_encode_entries(PyObject *self, PyObject *args, PyObject *kwargs);

/* join_parts(parts) -> bytes: the buffers' bytes in one bytes object,
 * copied with the GIL released (b"".join holds it for the whole copy). */
PyObject *tl_py_join_parts(PyObject *self, PyObject *parts);

#endif
