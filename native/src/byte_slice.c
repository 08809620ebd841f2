/*
 * ByteSlice: bytes [start, start + length) of an exact bytes or bytearray,
 * read-only, exporting the buffer protocol, and not tracked by the cyclic
 * collector.
 *
 * The log cache keeps every appended batch until its block is uploaded and
 * evicted. On the produce path a batch's payload was a memoryview slice of
 * the request's bytearray: a memoryview and the managed buffer behind it are
 * both GC-tracked, and a tuple holding them stays tracked, so every young
 * collection promoted three objects a batch and every older collection
 * walked the whole log cache (docs/design/0154). This type leaves the type
 * flag Py_TPFLAGS_HAVE_GC out: sound because the one object it refers to is
 * an exact bytes or bytearray, which refers to no object, so no cycle can
 * pass through it (a subclass of either may have a __dict__, and is refused).
 *
 * It holds a buffer export of its owner for its whole life, as a memoryview
 * does: a bytearray with an export refuses to be resized, so the bytes seen
 * never move or change length under it.
 */
#include "byte_slice.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    Py_buffer owner; /* an export of an exact bytes or bytearray; owner.obj is its reference */
    Py_ssize_t start;
    Py_ssize_t length;
} tl_byte_slice;

static int exact_owner(PyObject *owner) {
    return PyBytes_CheckExact(owner) || PyByteArray_CheckExact(owner);
}

/* A new slice of ``owner`` (an exact bytes or bytearray, checked by the
 * caller), the bounds checked by the caller too. */
static PyObject *new_slice(PyObject *owner, Py_ssize_t start, Py_ssize_t length) {
    tl_byte_slice *slice = PyObject_New(tl_byte_slice, &tl_byte_slice_type);
    if (slice == NULL) return NULL;
    if (PyObject_GetBuffer(owner, &slice->owner, PyBUF_SIMPLE) != 0) {
        slice->owner.obj = NULL;
        Py_DECREF(slice);
        return NULL;
    }
    slice->start = start;
    slice->length = length;
    return (PyObject *)slice;
}

static const char *slice_data(tl_byte_slice *slice) {
    return (const char *)slice->owner.buf + slice->start;
}

static void slice_dealloc(tl_byte_slice *slice) {
    if (slice->owner.obj != NULL) PyBuffer_Release(&slice->owner);
    PyObject_Free(slice);
}

static PyObject *slice_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"owner", "start", "length", NULL};
    PyObject *owner;
    Py_ssize_t start = 0, length = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|nn:ByteSlice", keywords, &owner, &start,
                                     &length))
        return NULL;
    if (!exact_owner(owner)) {
        PyErr_Format(PyExc_TypeError, "a ByteSlice's owner is a bytes or bytearray, not %.200s",
                     Py_TYPE(owner)->tp_name);
        return NULL;
    }
    Py_ssize_t size = Py_SIZE(owner);
    if (start < 0 || start > size) {
        PyErr_Format(PyExc_ValueError, "start %zd is outside the owner's %zd bytes", start, size);
        return NULL;
    }
    if (length == -1) length = size - start;
    if (length < 0 || length > size - start) {
        PyErr_Format(PyExc_ValueError, "length %zd from %zd is outside the owner's %zd bytes",
                     length, start, size);
        return NULL;
    }
    return new_slice(owner, start, length);
}

static int slice_getbuffer(tl_byte_slice *slice, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)slice, (void *)slice_data(slice), slice->length,
                             1, flags);
}

static Py_ssize_t slice_length(tl_byte_slice *slice) { return slice->length; }

static PyObject *slice_subscript(tl_byte_slice *slice, PyObject *key) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0) i += slice->length;
        if (i < 0 || i >= slice->length) {
            PyErr_SetString(PyExc_IndexError, "index out of bounds on dimension 1");
            return NULL;
        }
        return PyLong_FromLong((unsigned char)slice_data(slice)[i]);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "ByteSlice: invalid slice key %.200s",
                     Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) != 0) return NULL;
    Py_ssize_t length = PySlice_AdjustIndices(slice->length, &start, &stop, step);
    if (step != 1) {
        /* Strided: a memoryview's, as the pure twin's slice of its memoryview. */
        PyObject *view = PyMemoryView_FromObject((PyObject *)slice);
        if (view == NULL) return NULL;
        PyObject *strided = PyObject_GetItem(view, key);
        Py_DECREF(view);
        return strided;
    }
    return new_slice(slice->owner.obj, slice->start + start, length);
}

static PyObject *slice_richcompare(tl_byte_slice *slice, PyObject *other, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    Py_buffer theirs;
    if (PyObject_GetBuffer(other, &theirs, PyBUF_FULL_RO) != 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    /* Equal as a memoryview of format "B" is: the same bytes, where the
     * other is one-dimensional bytes too; anything else (a zero-dimensional
     * byte among them, which is not a one-byte sequence) is compared by a
     * memoryview of this one, which knows formats and shapes. */
    int plain = theirs.ndim == 1 && theirs.itemsize == 1 &&
                (theirs.format == NULL || strcmp(theirs.format, "B") == 0) &&
                PyBuffer_IsContiguous(&theirs, 'C');
    int equal = 0;
    if (plain) {
        equal = theirs.len == slice->length &&
                (slice->length == 0 || memcmp(theirs.buf, slice_data(slice), slice->length) == 0);
        PyBuffer_Release(&theirs);
        return PyBool_FromLong(op == Py_EQ ? equal : !equal);
    }
    PyBuffer_Release(&theirs);
    PyObject *view = PyMemoryView_FromObject((PyObject *)slice);
    if (view == NULL) return NULL;
    PyObject *result = PyObject_RichCompare(view, other, op);
    Py_DECREF(view);
    return result;
}

static Py_hash_t slice_hash(tl_byte_slice *slice) {
    /* A read-only memoryview's hash: that of bytes of the same value, and
     * only where its owner is hashable too (memoryview's memory_hash): the
     * bytes of a bytearray may still be written through it, and a hash that
     * changes with them would lose the slice in a set or a dict. */
    if (PyObject_Hash(slice->owner.obj) == -1) return -1;
    PyObject *copy = PyBytes_FromStringAndSize(slice_data(slice), slice->length);
    if (copy == NULL) return -1;
    Py_hash_t hash = PyObject_Hash(copy);
    Py_DECREF(copy);
    return hash;
}

static PyObject *slice_repr(tl_byte_slice *slice) {
    return PyUnicode_FromFormat("<ByteSlice of %zd bytes at %zd of a %s>", slice->length,
                                slice->start, Py_TYPE(slice->owner.obj)->tp_name);
}

static PyObject *slice_tobytes(tl_byte_slice *slice, PyObject *unused) {
    return PyBytes_FromStringAndSize(slice_data(slice), slice->length);
}

static PyObject *slice_hex(tl_byte_slice *slice, PyObject *unused) {
    PyObject *copy = slice_tobytes(slice, NULL);
    if (copy == NULL) return NULL;
    PyObject *hex = PyObject_CallMethod(copy, "hex", NULL);
    Py_DECREF(copy);
    return hex;
}

static PyObject *slice_nbytes(tl_byte_slice *slice, void *closure) {
    return PyLong_FromSsize_t(slice->length);
}

static PyObject *slice_readonly(tl_byte_slice *slice, void *closure) { Py_RETURN_TRUE; }

static PyObject *slice_owner(tl_byte_slice *slice, void *closure) {
    return Py_NewRef(slice->owner.obj);
}

static PyObject *slice_start(tl_byte_slice *slice, void *closure) {
    return PyLong_FromSsize_t(slice->start);
}

static PyMethodDef slice_methods[] = {
    {"tobytes", (PyCFunction)slice_tobytes, METH_NOARGS, "The bytes, copied."},
    {"hex", (PyCFunction)slice_hex, METH_NOARGS, "The bytes in hexadecimal."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef slice_getset[] = {
    {"nbytes", (getter)slice_nbytes, NULL, "Its size in bytes (its len()).", NULL},
    {"readonly", (getter)slice_readonly, NULL, "Always True.", NULL},
    {"obj", (getter)slice_owner, NULL, "The bytes or bytearray it is a part of.", NULL},
    {"start", (getter)slice_start, NULL, "Where in obj its bytes start.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyBufferProcs slice_as_buffer = {(getbufferproc)slice_getbuffer, NULL};
static PySequenceMethods slice_as_sequence = {.sq_length = (lenfunc)slice_length};
static PyMappingMethods slice_as_mapping = {
    .mp_length = (lenfunc)slice_length,
    .mp_subscript = (binaryfunc)slice_subscript,
};

PyTypeObject tl_byte_slice_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "native._cnative.ByteSlice",
    .tp_basicsize = sizeof(tl_byte_slice),
    .tp_dealloc = (destructor)slice_dealloc,
    .tp_repr = (reprfunc)slice_repr,
    .tp_as_sequence = &slice_as_sequence,
    .tp_as_mapping = &slice_as_mapping,
    .tp_hash = (hashfunc)slice_hash,
    .tp_as_buffer = &slice_as_buffer,
    /* No Py_TPFLAGS_HAVE_GC (see the top of this file), nor BASETYPE: a
     * subclass's instances could hold anything. */
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ByteSlice(owner, start=0, length=-1): bytes [start, start + length) of an exact "
              "bytes or bytearray, read-only, which the cyclic collector does not track.",
    .tp_richcompare = (richcmpfunc)slice_richcompare,
    .tp_methods = slice_methods,
    .tp_getset = slice_getset,
    .tp_new = slice_new,
};

int tl_byte_slice_ready(void) { return PyType_Ready(&tl_byte_slice_type); }

/* untracked_view's work, without the call's own reference juggling. */
static PyObject *untracked(PyObject *data);

PyObject *tl_py_untracked_view(PyObject *self, PyObject *data) { return untracked(data); }

/* A tuple or a tuple subclass whose instances refer to nothing but their
 * items and their class: no __dict__ (a NamedTuple's __slots__ is empty)
 * and no slot of its own past the tuple's (a C subclass's; Python refuses
 * a nonempty __slots__ on a tuple subclass), so an untracked one holds
 * only what it was made with, and a tuple is never tracked again once
 * untracked. An untracked record of
 * such a class is as final as an exact tuple CPython untracked: a record
 * holding one (the manifest's range holding its untracked links,
 * docs/design/0158) can be untracked too. */
static int bare_tuple_type(PyTypeObject *type) {
    return PyType_IsSubtype(type, &PyTuple_Type) && type->tp_dictoffset == 0 &&
           type->tp_basicsize == PyTuple_Type.tp_basicsize;
}

/* CPython's own test (_PyObject_GC_MAY_BE_TRACKED), widened to an untracked
 * record of a bare tuple type: an untracked dict may be tracked again once
 * it holds a list, so only an object the collector cannot track, or a tuple
 * (exact or bare) that is untracked, is one that never will be. */
static int may_be_tracked_item(PyObject *item) {
    return PyObject_IS_GC(item) && (!PyTuple_Check(item) || !bare_tuple_type(Py_TYPE(item)) ||
                                    PyObject_GC_IsTracked(item));
}

PyObject *tl_py_untracked_tuple(PyObject *self, PyObject *items) {
    /* An exact tuple of untracked records: CPython's collector never
     * untracks it (its test takes any tuple subclass's item for one that
     * may be tracked), so an object's tuple of untracked ranges would stay
     * tracked and visit every range at each collection (docs/design/0158). */
    PyObject *tuple = PySequence_Tuple(items);
    if (tuple == NULL) return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(tuple);
    for (Py_ssize_t i = 0; i < count; i++)
        if (may_be_tracked_item(PyTuple_GET_ITEM(tuple, i))) return tuple;
    if (PyObject_GC_IsTracked(tuple)) PyObject_GC_UnTrack(tuple);
    return tuple;
}

PyObject *tl_py_untracked_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "untracked_record takes a class and its items");
        return NULL;
    }
    PyObject *cls = args[0];
    /* A tuple subclass whose instances have no __dict__ (a NamedTuple's
     * __slots__ is empty, and a tuple subclass may have no other): its items
     * are all that it refers to but its class. */
    if (!PyType_Check(cls) || !bare_tuple_type((PyTypeObject *)cls)) {
        PyErr_SetString(PyExc_TypeError,
                        "untracked_record's class is a tuple subclass without a __dict__ or slots");
        return NULL;
    }
    Py_ssize_t count = nargs - 1;
    /* Every field given, as a NamedTuple's own __new__ asks: a record short
     * of one fails where it is read, far from where it was made. And only a
     * class that has _fields: a C tuple subclass such as a struct sequence
     * (os.stat_result) keeps hidden items past its visible ones, which its
     * dealloc reads beyond what tp_alloc gave here. */
    static PyObject *fields_name = NULL;
    if (fields_name == NULL && (fields_name = PyUnicode_InternFromString("_fields")) == NULL)
        return NULL;
    /* Looked up in the class's MRO through the type cache, as a class
     * attribute is found, without a metaclass's __getattr__: once a
     * Produce, a full attribute read cost a tenth of this call. */
    PyObject *fields = _PyType_Lookup((PyTypeObject *)cls, fields_name); /* borrowed */
    Py_ssize_t wanted = fields != NULL && PyTuple_Check(fields) ? PyTuple_GET_SIZE(fields) : -1;
    if (wanted != count) {
        PyErr_Format(PyExc_TypeError,
                     "untracked_record takes a NamedTuple class and all its fields: %zd given, "
                     "%.200s has %zd",
                     count, ((PyTypeObject *)cls)->tp_name, wanted);
        return NULL;
    }
    PyObject *record = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, count);
    if (record == NULL) return NULL;
    int may_be_tracked = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = untracked(args[i + 1]);
        if (item == NULL) {
            Py_DECREF(record);
            return NULL;
        }
        may_be_tracked |= may_be_tracked_item(item);
        PyTuple_SET_ITEM(record, i, item);
    }
    /* What CPython's collector does to an exact tuple of untracked items at
     * its first collection (a subclass's it never does): nothing it holds
     * can refer back to it, so no cycle passes through it. Its class is
     * referred to too, and is kept alive by its module whatever the
     * collector sees. */
    if (!may_be_tracked && PyObject_GC_IsTracked(record)) PyObject_GC_UnTrack(record);
    return record;
}

static PyObject *untracked(PyObject *data) {
    if (!PyMemoryView_Check(data)) return Py_NewRef(data);
    /* A released view is given back, to fail where it is read as it would
     * have; a cast one too, its len() not its size in bytes. */
    if (((PyMemoryViewObject *)data)->flags & _Py_MEMORYVIEW_RELEASED) return Py_NewRef(data);
    const Py_buffer *view = PyMemoryView_GET_BUFFER(data);
    PyObject *owner = view->obj;
    if (owner == NULL || !exact_owner(owner) || view->ndim != 1 || view->itemsize != 1 ||
        (view->format != NULL && strcmp(view->format, "B") != 0) ||
        !PyBuffer_IsContiguous(view, 'C'))
        return Py_NewRef(data);
    const char *base = PyBytes_CheckExact(owner) ? PyBytes_AS_STRING(owner)
                                                 : PyByteArray_AS_STRING(owner);
    Py_ssize_t start = (const char *)view->buf - base;
    if (start < 0 || view->len > Py_SIZE(owner) - start) {
        PyErr_SetString(PyExc_SystemError, "a memoryview's bytes lie outside its owner");
        return NULL;
    }
    return new_slice(owner, start, view->len);
}
