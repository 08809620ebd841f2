/*
 * CRC32C: hardware where the CPU has it, slicing-by-8 tables elsewhere.
 *
 * All variants work on the "raw" register (no pre/post inversion); the
 * public function inverts on entry and exit, so a running CRC continues.
 *
 * On x86-64 one crc32 instruction has a latency of 3 cycles but a throughput
 * of 1 per cycle, so large buffers are cut into three equal lanes computed in
 * an interleaved loop, then joined: raw(c, A|B|C) = S(S(raw(c,A)) ^ raw(0,B))
 * ^ raw(0,C), where S shifts a register over LANE zero bytes. S is linear over
 * GF(2), so it is four 256-entry tables built once from 32 basis vectors.
 *
 * There is no carry-less-multiply fold: one on 512-bit registers (VPCLMULQDQ)
 * doubled this loop's rate measured alone, yet made the server slower end
 * to end, and CRC32C is too small a share of a produced MiB's CPU to win
 * back what it cost (docs/design/0100).
 */
#include "crc32c.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define TL_X86 1
#include <nmmintrin.h>
#elif defined(__aarch64__)
#define TL_ARM 1
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#endif

#define POLY 0x82F63B78u /* Castagnoli, bit-reversed */
#define LANE 2048        /* bytes per lane in the 3-way loop for large buffers */
#define SHORT_LANE 256   /* ... and for medium ones, down to 768 bytes */

static uint32_t table[8][256];
static uint32_t shift_lane[4][256];       /* S over LANE zero bytes */
static uint32_t shift_short_lane[4][256]; /* S over SHORT_LANE zero bytes */
typedef uint32_t (*update_fn)(uint32_t, const unsigned char *, size_t);
static update_fn update;
static const char *backend_name = "table";

/* Every implementation this CPU runs, so that tests hold each to the same
 * results (the live one is the last): the tables and at most one of the
 * 3-way loops. */
#define MAX_BACKENDS 2
static struct {
    const char *name;
    update_fn fn;
} backends[MAX_BACKENDS];
static int backend_count;

static void use(const char *name, update_fn fn) {
    update = fn;
    backend_name = name;
    if (backend_count < MAX_BACKENDS) {
        backends[backend_count].name = name;
        backends[backend_count].fn = fn;
        backend_count++;
    }
}

static uint32_t load_le32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static uint32_t update_table(uint32_t crc, const unsigned char *p, size_t len) {
    while (len && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint32_t lo = load_le32(p) ^ crc;
        uint32_t hi = load_le32(p + 4);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^
              table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
              table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(TL_X86) || defined(TL_ARM)
/* Only the 3-way loops join lanes: elsewhere (s390x, ppc64le) it would be
 * an unused function, a warning. */
static uint32_t shift(const uint32_t tables[4][256], uint32_t crc) {
    return tables[0][crc & 0xff] ^ tables[1][(crc >> 8) & 0xff] ^ tables[2][(crc >> 16) & 0xff] ^
           tables[3][crc >> 24];
}
#endif

#ifdef TL_X86
/* Three interleaved lanes of `lane` bytes while at least three remain. */
__attribute__((target("sse4.2"))) static uint64_t sse42_3way(uint64_t c0, const unsigned char **pp,
                                                             size_t *len, size_t lane,
                                                             const uint32_t tables[4][256]) {
    const unsigned char *p = *pp;
    while (*len >= 3 * lane) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + lane;
        while (p < end) {
            uint64_t a, b, c;
            memcpy(&a, p, 8);
            memcpy(&b, p + lane, 8);
            memcpy(&c, p + 2 * lane, 8);
            c0 = _mm_crc32_u64(c0, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, c);
            p += 8;
        }
        c0 = shift(tables, shift(tables, (uint32_t)c0) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 2 * lane;
        *len -= 3 * lane;
    }
    *pp = p;
    return c0;
}

__attribute__((target("sse4.2"))) static uint32_t update_sse42(uint32_t crc,
                                                               const unsigned char *p,
                                                               size_t len) {
    uint64_t c0 = crc;
    while (len && ((uintptr_t)p & 7)) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        len--;
    }
    c0 = sse42_3way(c0, &p, &len, LANE, shift_lane);
    c0 = sse42_3way(c0, &p, &len, SHORT_LANE, shift_short_lane);
    while (len >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c0 = _mm_crc32_u64(c0, a);
        p += 8;
        len -= 8;
    }
    while (len--) c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#endif

#ifdef TL_ARM
/* Three interleaved lanes of `lane` bytes while at least three remain. */
static uint32_t armv8_3way(uint32_t crc, const unsigned char **pp, size_t *len, size_t lane,
                           const uint32_t tables[4][256]) {
    const unsigned char *p = *pp;
    while (*len >= 3 * lane) {
        uint32_t c1 = 0, c2 = 0;
        const unsigned char *end = p + lane;
        while (p < end) {
            uint64_t a, b, c;
            memcpy(&a, p, 8);
            memcpy(&b, p + lane, 8);
            memcpy(&c, p + 2 * lane, 8);
            crc = __crc32cd(crc, a);
            c1 = __crc32cd(c1, b);
            c2 = __crc32cd(c2, c);
            p += 8;
        }
        crc = shift(tables, shift(tables, crc) ^ c1) ^ c2;
        p += 2 * lane;
        *len -= 3 * lane;
    }
    *pp = p;
    return crc;
}

static uint32_t update_armv8(uint32_t crc, const unsigned char *p, size_t len) {
    while (len && ((uintptr_t)p & 7)) {
        crc = __crc32cb(crc, *p++);
        len--;
    }
    crc = armv8_3way(crc, &p, &len, LANE, shift_lane);
    crc = armv8_3way(crc, &p, &len, SHORT_LANE, shift_short_lane);
    while (len >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        crc = __crc32cd(crc, a);
        p += 8;
        len -= 8;
    }
    while (len--) crc = __crc32cb(crc, *p++);
    return crc;
}
#endif

/* S(e_i) for the 32 basis registers, then S(b << 8k) as XORs of them. */
static void build_shift_tables(uint32_t tables[4][256], size_t lane) {
    static const unsigned char zeros[LANE];
    uint32_t basis[32];
    for (int i = 0; i < 32; i++) basis[i] = update_table(1u << i, zeros, lane);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int bit = 0; bit < 8; bit++)
                if (b & (1u << bit)) v ^= basis[8 * k + bit];
            tables[k][b] = v;
        }
}

static void build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][n] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t n = 0; n < 256; n++)
            table[t][n] = (table[t - 1][n] >> 8) ^ table[0][table[t - 1][n] & 0xff];

    build_shift_tables(shift_lane, LANE);
    build_shift_tables(shift_short_lane, SHORT_LANE);
}

/* x^(2^n) mod P for n = 0..31, bit-reversed: the powers that carry a CRC
 * over 2^n zero bits (zlib's crc32_combine, for the Castagnoli polynomial). */
static uint32_t x2n_table[32];

/* a * b mod P, both bit-reversed (bit 31 is x^0). */
static uint32_t multmodp(uint32_t a, uint32_t b) {
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

/* x^(n * 2^k) mod P. */
static uint32_t x2nmodp(uint64_t n, unsigned k) {
    uint32_t p = 1u << 31; /* x^0 */
    while (n) {
        if (n & 1) p = multmodp(x2n_table[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

static void build_x2n_table(void) {
    uint32_t p = 1u << 30; /* x^1 */
    x2n_table[0] = p;
    for (int n = 1; n < 32; n++) x2n_table[n] = p = multmodp(p, p);
}

uint32_t tl_crc32c_combine(uint32_t crc1, uint32_t crc2, uint64_t len2) {
    return multmodp(x2nmodp(len2, 3), crc1) ^ crc2;
}

void tl_crc32c_init(void) {
    backend_count = 0; /* an init again lists each once */
    build_tables();
    build_x2n_table();
    use("table", update_table);
#ifdef TL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) use("sse4.2-3way", update_sse42);
#endif
#ifdef TL_ARM
    if (getauxval(AT_HWCAP) & HWCAP_CRC32) use("armv8-crc32c-3way", update_armv8);
#endif
}

uint32_t tl_crc32c(uint32_t crc, const void *data, size_t len) {
    return ~update(~crc, (const unsigned char *)data, len);
}

const char *tl_crc32c_backend(void) { return backend_name; }

const char *tl_crc32c_backend_at(int i) {
    return i >= 0 && i < backend_count ? backends[i].name : NULL;
}

uint32_t tl_crc32c_at(int i, uint32_t crc, const void *data, size_t len) {
    return ~backends[i].fn(~crc, (const unsigned char *)data, len);
}
