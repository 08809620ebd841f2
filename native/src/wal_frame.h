/* A batch of WAL records framed in one call (docs/wal-format.md, "Record"). */
#ifndef TIDELOG_WAL_FRAME_H
#define TIDELOG_WAL_FRAME_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* frame_wal_records(appends, max_length): one bytearray holding, for each
 * append (a tuple: payload, stream_id, start_offset, end_offset,
 * record_type, tag, prefix, payload_crc), a record header then its prefix
 * and payload; each header's crc field holds the payload's CRC32C and its
 * segment and flags are 0 until stamp_wal_records fills them. The length
 * of the first record longer than max_length, or than the header's 32-bit
 * length field holds, instead (nothing framed). */
PyObject *tl_py_frame_wal_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* stamp_wal_records(frame, start, room, segment, offset, first_flags,
 * position_type): fills in, from byte start of a frame, the segment, the
 * flags (first_flags on the first record, 0 on the rest) and the final CRC
 * of as many whole records as fit in room bytes; returns the byte just past
 * the last one stamped and a position_type(segment, offset + its distance
 * from start) per record. */
PyObject *tl_py_stamp_wal_records(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* place_wal_record(address, segment, record_type, length, payload_crc,
 * flags): one record's 44-byte header, from its packed 24-byte address
 * (wal.format.encode_record_address) and what only the writer knows; its
 * crc continues payload_crc (the CRC32C of the record's payload) over
 * header bytes 4..44. The writer makes one per single append. */
PyObject *tl_py_place_wal_record(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
