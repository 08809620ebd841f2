#include "buffer.h"

#include <stdlib.h>
#include <string.h>

int tl_buf_reserve(tl_buf *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    uint8_t *data = realloc(b->data, cap);
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

int tl_buf_put(tl_buf *b, const void *data, size_t len) {
    if (tl_buf_reserve(b, len) != 0) return -1;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int tl_buf_put_varint(tl_buf *b, int64_t value) {
    uint64_t raw = ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
    if (tl_buf_reserve(b, 10) != 0) return -1;
    while (raw >= 0x80) {
        b->data[b->len++] = (uint8_t)(raw | 0x80);
        raw >>= 7;
    }
    b->data[b->len++] = (uint8_t)raw;
    return 0;
}

void tl_buf_free(tl_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
