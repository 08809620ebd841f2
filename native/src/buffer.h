/* A growable byte buffer for encoding. */
#ifndef TIDELOG_BUFFER_H
#define TIDELOG_BUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} tl_buf;

/* Each returns 0, or -1 when memory runs out (the buffer is left valid). */
int tl_buf_reserve(tl_buf *b, size_t extra);
int tl_buf_put(tl_buf *b, const void *data, size_t len);
int tl_buf_put_varint(tl_buf *b, int64_t value);
void tl_buf_free(tl_buf *b);

#endif
