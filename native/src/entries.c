/*
 * The data region of an s3stream object (docs/object-format.md): each stored
 * batch as an entry (a 16-byte entry header, then its payload), cut into
 * blocks of one stream of at most block_bytes, each block's CRC32C.
 *
 * The result is the list of parts that the stores write as they are: a
 * payload of ENTRY_COPY_BELOW bytes or more is the caller's own object,
 * never copied; the entry headers between such payloads, and the payloads
 * smaller than that, are copied side by side into one bytes object, so that
 * a block of a thousand streams' small batches is a few parts, not two
 * Python objects (and a store's view and iovec each) per batch
 * (docs/design/0124-an-uploads-instructions-per-partition-counted-and-cut.md).
 * Without copy_small no payload is copied (a compaction pass's payloads are
 * views of the objects it read, which it holds anyway: a copy would hold
 * its small batches twice).
 * The walk is in three steps: the runs are checked, each entry header
 * written and the parts planned (their joined runs allocated, not yet
 * filled) while holding the GIL; the copies and the CRCs, the only passes
 * over the payload bytes, run with the GIL released (the payloads' buffers
 * are held, so none can change size, and the joined runs are ours alone);
 * then the Python results are built.
 * A batch that brings its payload's CRC32C (a fourth item: the produce
 * path has it from the checked batches' own CRCs) is not read at all: its
 * CRC is combined into its block's. native/_pure.py's encode_entries gives
 * the same results.
 */
#include "entries.h"

#include <string.h>

#include "crc32c.h"

#define ENTRY_HEADER_SIZE 16
#define GIL_FREE_BYTES (64 * 1024)
/* native/_pure.py's _ENTRY_COPY_BELOW: the same number. */
#define ENTRY_COPY_BELOW 4096

typedef struct {
    int64_t stream_id;
    int64_t start_offset;
    int64_t end_offset;
    int64_t position;
    int64_t size;
    Py_ssize_t first; /* index of its first entry */
    Py_ssize_t count;
    uint32_t crc;
} tl_block;

typedef struct {
    Py_buffer *views;
    uint32_t *crcs; /* a payload's CRC32C, when its batch brings one */
    uint8_t *crc_known;
    uint8_t *headers; /* ENTRY_HEADER_SIZE bytes per entry */
    int64_t *positions;
    PyObject **payloads; /* borrowed from the caller's batches */
    int64_t *bases;
    int64_t *streams;
    tl_block *blocks;
    int64_t *run_streams; /* each run's stream and entry count, as laid out: */
    Py_ssize_t *run_counts; /* the list may change while the GIL is released */
    Py_ssize_t entries, block_count, viewed, runs;
    PyObject *parts;       /* planned: joined runs (not yet filled) and payloads */
    char **joined;         /* each joined run's buffer, in order */
    Py_ssize_t joined_count;
    Py_ssize_t copy_below; /* ENTRY_COPY_BELOW, or 0: no payload copied */
} tl_layout;

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void layout_free(tl_layout *l) {
    for (Py_ssize_t i = 0; i < l->viewed; i++) PyBuffer_Release(&l->views[i]);
    PyMem_Free(l->views);
    PyMem_Free(l->crcs);
    PyMem_Free(l->crc_known);
    PyMem_Free(l->headers);
    PyMem_Free(l->positions);
    PyMem_Free(l->payloads);
    PyMem_Free(l->bases);
    PyMem_Free(l->streams);
    PyMem_Free(l->blocks);
    PyMem_Free(l->run_streams);
    PyMem_Free(l->run_counts);
    PyMem_Free(l->joined);
    Py_XDECREF(l->parts);
}

static int read_int64(PyObject *obj, const char *what, int64_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.200s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    long long value = PyLong_AsLongLong(obj);
    if (value == -1 && PyErr_Occurred()) return -1;
    *out = value;
    return 0;
}

/* A stored batch's optional fourth item: its payload's CRC32C, or None. */
static int read_payload_crc(PyObject *batch, uint32_t *crc, uint8_t *known) {
    *known = 0;
    if (PyTuple_GET_SIZE(batch) < 4 || PyTuple_GET_ITEM(batch, 3) == Py_None) return 0;
    PyObject *obj = PyTuple_GET_ITEM(batch, 3);
    int64_t value;
    if (read_int64(obj, "a stored batch's crc", &value) != 0) return -1;
    if (value < 0 || value > UINT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "crc %lld does not fit in 32 bits", (long long)value);
        return -1;
    }
    *crc = (uint32_t)value;
    *known = 1;
    return 0;
}

/* One run's (stream_id, batches): the batches as a fast sequence (new ref). */
static PyObject *run_batches(PyObject *run, int64_t *stream_id) {
    if (!PyTuple_Check(run) || PyTuple_GET_SIZE(run) != 2) {
        PyErr_SetString(PyExc_TypeError, "a run is a (stream_id, batches) tuple");
        return NULL;
    }
    if (read_int64(PyTuple_GET_ITEM(run, 0), "a run's stream id", stream_id) != 0) return NULL;
    return PySequence_Fast(PyTuple_GET_ITEM(run, 1), "a run's batches must be a sequence");
}

/* Step 1, with the GIL: checks every run, holds every payload's buffer,
 * writes the entry headers and cuts the blocks. */
static int lay_out(PyObject *runs, int64_t block_bytes, tl_layout *l, int64_t *total) {
    /* The list is read again on each step: converting a run's batches
     * (a custom sequence) may run code that changes it. */
    Py_ssize_t entries = 0;
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(runs); r++) {
        int64_t stream_id;
        PyObject *batches = run_batches(PyList_GET_ITEM(runs, r), &stream_id);
        if (!batches) return -1;
        entries += PySequence_Fast_GET_SIZE(batches);
        Py_DECREF(batches);
    }
    Py_ssize_t run_count = PyList_GET_SIZE(runs);
    size_t n = entries ? (size_t)entries : 1;
    l->run_streams = PyMem_New(int64_t, run_count ? (size_t)run_count : 1);
    l->run_counts = PyMem_New(Py_ssize_t, run_count ? (size_t)run_count : 1);
    if (!l->run_streams || !l->run_counts) {
        PyErr_NoMemory();
        return -1;
    }
    l->views = PyMem_New(Py_buffer, n);
    l->crcs = PyMem_New(uint32_t, n);
    l->crc_known = PyMem_New(uint8_t, n);
    l->headers = PyMem_Malloc(n * ENTRY_HEADER_SIZE);
    l->positions = PyMem_New(int64_t, n);
    l->payloads = PyMem_New(PyObject *, n);
    l->bases = PyMem_New(int64_t, n);
    l->streams = PyMem_New(int64_t, n);
    l->blocks = PyMem_New(tl_block, n);
    if (!l->views || !l->crcs || !l->crc_known || !l->headers || !l->positions || !l->payloads || !l->bases || !l->streams ||
        !l->blocks) {
        PyErr_NoMemory();
        return -1;
    }
    int64_t size = 0;
    Py_ssize_t e = 0;
    for (Py_ssize_t r = 0; r < run_count; r++) {
        int64_t stream_id;
        if (r >= PyList_GET_SIZE(runs)) {
            PyErr_SetString(PyExc_RuntimeError, "runs changed while they were laid out");
            return -1;
        }
        PyObject *batches = run_batches(PyList_GET_ITEM(runs, r), &stream_id);
        if (!batches) return -1;
        Py_ssize_t count = PySequence_Fast_GET_SIZE(batches);
        if (e + count > entries) {
            PyErr_SetString(PyExc_RuntimeError, "runs changed while they were laid out");
            goto fail;
        }
        l->run_streams[r] = stream_id;
        l->run_counts[r] = count;
        l->runs = r + 1;
        tl_block *block = NULL;
        int64_t expected = 0;
        for (Py_ssize_t i = 0; i < count; i++, e++) {
            PyObject *batch = PySequence_Fast_GET_ITEM(batches, i);
            if (!PyTuple_Check(batch) ||
                (PyTuple_GET_SIZE(batch) != 3 && PyTuple_GET_SIZE(batch) != 4)) {
                PyErr_SetString(PyExc_TypeError, "a stored batch is a (base_offset, end_offset, "
                                                 "payload[, crc]) tuple");
                goto fail;
            }
            int64_t base, end;
            if (read_int64(PyTuple_GET_ITEM(batch, 0), "base_offset", &base) != 0 ||
                read_int64(PyTuple_GET_ITEM(batch, 1), "end_offset", &end) != 0 ||
                read_payload_crc(batch, &l->crcs[e], &l->crc_known[e]) != 0)
                goto fail;
            if (i == 0) expected = base;
            if (base != expected || end <= base) {
                PyErr_Format(PyExc_ValueError,
                             "stream %lld: batch [%lld, %lld) does not follow offset %lld",
                             (long long)stream_id, (long long)base, (long long)end,
                             (long long)expected);
                goto fail;
            }
            if (end - base > UINT32_MAX) {
                PyErr_Format(PyExc_ValueError, "stream %lld: batch [%lld, %lld) spans too many offsets",
                             (long long)stream_id, (long long)base, (long long)end);
                goto fail;
            }
            PyObject *payload = PyTuple_GET_ITEM(batch, 2);
            if (PyObject_GetBuffer(payload, &l->views[e], PyBUF_SIMPLE) != 0) goto fail;
            l->viewed = e + 1;
            Py_ssize_t length = l->views[e].len;
            if ((uint64_t)length > UINT32_MAX) {
                PyErr_SetString(PyExc_ValueError, "a stored batch is larger than 4 GiB");
                goto fail;
            }
            int64_t entry_size = ENTRY_HEADER_SIZE + (int64_t)length;
            if (block && size > block->position && size - block->position + entry_size > block_bytes)
                block = NULL;
            if (!block) {
                block = &l->blocks[l->block_count++];
                block->stream_id = stream_id;
                block->start_offset = base;
                block->position = size;
                block->first = e;
                block->count = 0;
                block->crc = 0;
            }
            uint8_t *header = l->headers + (size_t)e * ENTRY_HEADER_SIZE;
            put_le64(header, (uint64_t)base);
            put_le32(header + 8, (uint32_t)(end - base));
            put_le32(header + 12, (uint32_t)length);
            l->positions[e] = size;
            l->payloads[e] = payload;
            l->bases[e] = base;
            l->streams[e] = stream_id;
            size += entry_size;
            block->end_offset = end;
            block->size = size - block->position;
            block->count++;
            expected = end;
        }
        Py_DECREF(batches);
        continue;
    fail:
        Py_DECREF(batches);
        return -1;
    }
    l->entries = e;
    *total = size;
    return 0;
}

static int copied(const tl_layout *l, Py_ssize_t e) { return l->views[e].len < l->copy_below; }

/* Step 1 still, with the GIL: the parts list, each run of entry headers
 * and small payloads as one bytes object of its size (filled in step 2),
 * each larger payload as itself. */
static int plan_parts(tl_layout *l) {
    Py_ssize_t count = 0, joined = 0;
    int open = 0;
    for (Py_ssize_t e = 0; e < l->entries; e++) {
        if (!open) joined++, count++, open = 1;
        if (!copied(l, e)) count++, open = 0;
    }
    l->joined = PyMem_New(char *, joined ? (size_t)joined : 1);
    if (!l->joined) {
        PyErr_NoMemory();
        return -1;
    }
    if (!(l->parts = PyList_New(count))) return -1;
    Py_ssize_t p = 0, size = 0;
    open = 0;
    for (Py_ssize_t e = 0; e <= l->entries; e++) {
        int last = e == l->entries;
        if (open && (last || !copied(l, e - 1))) { /* the joined run ends before entry e */
            PyObject *run = PyBytes_FromStringAndSize(NULL, size);
            if (!run) return -1;
            l->joined[l->joined_count++] = PyBytes_AS_STRING(run);
            PyList_SET_ITEM(l->parts, p++, run);
            if (!copied(l, e - 1)) PyList_SET_ITEM(l->parts, p++, Py_NewRef(l->payloads[e - 1]));
            open = 0;
        }
        if (last) break;
        if (!open) open = 1, size = 0;
        size += ENTRY_HEADER_SIZE + (copied(l, e) ? l->views[e].len : 0);
    }
    return 0;
}

/* Step 2, without the GIL when there is enough to do: the joined runs
 * filled, as plan_parts cut them. */
static void fill_parts(tl_layout *l) {
    Py_ssize_t r = 0;
    char *out = NULL;
    for (Py_ssize_t e = 0; e < l->entries; e++) {
        if (!out) out = l->joined[r++];
        memcpy(out, l->headers + (size_t)e * ENTRY_HEADER_SIZE, ENTRY_HEADER_SIZE);
        out += ENTRY_HEADER_SIZE;
        if (copied(l, e)) {
            memcpy(out, l->views[e].buf, (size_t)l->views[e].len);
            out += l->views[e].len;
        } else {
            out = NULL;
        }
    }
}

/* Step 2 as well: each block's CRC32C
 * (a payload whose CRC is known is combined in, not read). */
static void checksum_blocks(tl_layout *l) {
    for (Py_ssize_t b = 0; b < l->block_count; b++) {
        tl_block *block = &l->blocks[b];
        uint32_t crc = 0;
        for (Py_ssize_t e = block->first; e < block->first + block->count; e++) {
            crc = tl_crc32c(crc, l->headers + (size_t)e * ENTRY_HEADER_SIZE, ENTRY_HEADER_SIZE);
            if (l->crc_known[e])
                crc = tl_crc32c_combine(crc, l->crcs[e], (uint64_t)l->views[e].len);
            else
                crc = tl_crc32c(crc, l->views[e].buf, (size_t)l->views[e].len);
        }
        block->crc = crc;
    }
}

/* Step 3, with the GIL: the parts, blocks, ranges and spans. */
static PyObject *build_results(tl_layout *l, int64_t total, int with_spans) {
    PyObject *parts = Py_NewRef(l->parts);
    PyObject *blocks = PyList_New(l->block_count);
    PyObject *ranges = PyList_New(0);
    PyObject *spans = with_spans ? PyDict_New() : Py_NewRef(Py_None);
    PyObject *result = NULL;
    if (!parts || !blocks || !ranges || !spans) goto done;
    for (Py_ssize_t e = 0; with_spans && e < l->entries; e++) {
        PyObject *key = Py_BuildValue("(LL)", (long long)l->streams[e], (long long)l->bases[e]);
        PyObject *value = key ? Py_BuildValue("(Ly#O)", (long long)l->positions[e],
                                              (const char *)l->headers + (size_t)e * ENTRY_HEADER_SIZE,
                                              (Py_ssize_t)ENTRY_HEADER_SIZE, l->payloads[e])
                              : NULL;
        int rc = value ? PyDict_SetItem(spans, key, value) : -1;
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (rc != 0) goto done;
    }
    for (Py_ssize_t b = 0; b < l->block_count; b++) {
        tl_block *block = &l->blocks[b];
        PyObject *info = Py_BuildValue("(LLLLLk)", (long long)block->stream_id,
                                       (long long)block->start_offset, (long long)block->end_offset,
                                       (long long)block->position, (long long)block->size,
                                       (unsigned long)block->crc);
        if (!info) goto done;
        PyList_SET_ITEM(blocks, b, info);
    }
    /* One range per run: its stream, offsets and bytes. */
    Py_ssize_t b = 0;
    for (Py_ssize_t r = 0; r < l->runs; r++) {
        int64_t stream_id = l->run_streams[r];
        Py_ssize_t count = l->run_counts[r];
        if (count == 0) continue;
        int64_t start = l->blocks[b].start_offset, position = l->blocks[b].position;
        Py_ssize_t seen = 0;
        while (seen < count) seen += l->blocks[b++].count;
        tl_block *last = &l->blocks[b - 1];
        PyObject *range = Py_BuildValue("(LLLL)", (long long)stream_id, (long long)start,
                                        (long long)last->end_offset,
                                        (long long)(last->position + last->size - position));
        if (!range || PyList_Append(ranges, range) != 0) {
            Py_XDECREF(range);
            goto done;
        }
        Py_DECREF(range);
    }
    result = Py_BuildValue("(OLOOO)", parts, (long long)total, blocks, ranges, spans);
done:
    Py_XDECREF(parts);
    Py_XDECREF(blocks);
    Py_XDECREF(ranges);
    Py_XDECREF(spans);
    return result;
}

PyObject *tl_py_encode_entries(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"runs", "block_bytes", "with_spans", "copy_small", NULL};
    PyObject *runs;
    long long block_bytes;
    int with_spans = 0, copy_small = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!L|$pp:encode_entries", kwlist, &PyList_Type,
                                     &runs, &block_bytes, &with_spans, &copy_small))
        return NULL;
    tl_layout layout = {0};
    layout.copy_below = copy_small ? ENTRY_COPY_BELOW : 0;
    int64_t total = 0;
    PyObject *result = NULL;
    if (lay_out(runs, block_bytes, &layout, &total) == 0 && plan_parts(&layout) == 0) {
        if (total >= GIL_FREE_BYTES) {
            Py_BEGIN_ALLOW_THREADS fill_parts(&layout);
            checksum_blocks(&layout);
            Py_END_ALLOW_THREADS
        } else {
            fill_parts(&layout);
            checksum_blocks(&layout);
        }
        result = build_results(&layout, total, with_spans);
    }
    layout_free(&layout);
    return result;
}

PyObject *tl_py_join_parts(PyObject *self, PyObject *parts_obj) {
    PyObject *parts = PySequence_Fast(parts_obj, "parts must be a sequence of buffers");
    if (!parts) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(parts);
    Py_buffer *views = PyMem_New(Py_buffer, n ? (size_t)n : 1);
    PyObject *result = NULL;
    Py_ssize_t viewed = 0, total = 0;
    if (!views) {
        PyErr_NoMemory();
        goto done;
    }
    for (; viewed < n; viewed++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(parts, viewed), &views[viewed],
                               PyBUF_SIMPLE) != 0)
            goto done;
        if (views[viewed].len > PY_SSIZE_T_MAX - total) {
            viewed++;
            PyErr_SetString(PyExc_OverflowError, "the parts are too large to join");
            goto done;
        }
        total += views[viewed].len;
    }
    if (!(result = PyBytes_FromStringAndSize(NULL, total))) goto done;
    char *out = PyBytes_AS_STRING(result);
    /* The views are held: no part can change size while the copy runs. */
    if (total >= GIL_FREE_BYTES) {
        Py_BEGIN_ALLOW_THREADS for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(out, views[i].buf, (size_t)views[i].len);
            out += views[i].len;
        }
        Py_END_ALLOW_THREADS
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(out, views[i].buf, (size_t)views[i].len);
            out += views[i].len;
        }
    }
done:
    for (Py_ssize_t i = 0; i < viewed; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    Py_DECREF(parts);
    return result;
}
