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
 * Where the CPU has VPCLMULQDQ on 512-bit registers (AVX-512), a buffer of
 * FOLD_MIN bytes or more is folded instead: carry-less multiplication by
 * x^k mod P moves 128-bit blocks forward by k bits, 16 blocks at a time,
 * down to one block whose crc32 instructions finish the CRC (Intel's "Fast
 * CRC Computation for Generic Polynomials Using PCLMULQDQ", for the
 * bit-reversed polynomial). It reads 256 bytes per step in under a third
 * of the 3-way loop's instructions: a produced MiB's CRC is the largest
 * single step of the event loop's own work (docs/design/0092).
 */
#include "crc32c.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define TL_X86 1
#include <immintrin.h>
#include <nmmintrin.h>
#if !defined(TL_NO_FOLD) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8))
/* compilers that know VPCLMULQDQ's intrinsics and target name; setup.py
 * defines TL_NO_FOLD where the assembler cannot encode them */
#define TL_FOLD 1
#endif
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
 * results (the live one is the last). */
#define MAX_BACKENDS 4
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

#ifdef TL_FOLD
/* Folding constants, built at init (tl_crc32c_init) from x^n mod P: a
 * 128-bit block b, its first 64 bits L and last 64 bits H (bit-reversed:
 * the first bit read is the highest power), is congruent k bits further on
 * to L * (x^(64+k) mod P) + H * (x^k mod P), of degree below 96, which fits
 * the block k bits on. A carry-less multiply of bit-reversed operands
 * yields the product times x, so each constant is x^(n-1) mod P; as a
 * 64-bit operand its 32 coefficients sit in the upper half. */
typedef struct {
    uint64_t low, high;
} fold_k;

static fold_k fold_256, fold_192, fold_128, fold_64, fold_48, fold_32, fold_16;

#define FOLD_MIN 1024 /* below this the 3-way loop is as fast */

static uint32_t xpow_mod(uint64_t n); /* x^n mod P, bit-reversed (below) */

static fold_k fold_by(uint64_t bytes) {
    uint64_t bits = 8 * bytes;
    fold_k k = {(uint64_t)xpow_mod(64 + bits - 1) << 32, (uint64_t)xpow_mod(bits - 1) << 32};
    return k;
}

__attribute__((target("avx512f,vpclmulqdq"))) static inline __m512i fold512(__m512i acc, __m512i k,
                                                                             __m512i next) {
    __m512i low = _mm512_clmulepi64_epi128(acc, k, 0x00);
    __m512i high = _mm512_clmulepi64_epi128(acc, k, 0x11);
    return _mm512_ternarylogic_epi64(low, high, next, 0x96); /* low ^ high ^ next */
}

__attribute__((target("pclmul,sse4.2"))) static inline __m128i fold128(__m128i acc, fold_k k,
                                                                       __m128i next) {
    __m128i ks = _mm_set_epi64x((long long)k.high, (long long)k.low);
    __m128i low = _mm_clmulepi64_si128(acc, ks, 0x00);
    __m128i high = _mm_clmulepi64_si128(acc, ks, 0x11);
    return _mm_xor_si128(_mm_xor_si128(low, high), next);
}

__attribute__((target("avx512f"))) static inline __m512i broadcast_k(fold_k k) {
    return _mm512_set_epi64((long long)k.high, (long long)k.low, (long long)k.high,
                            (long long)k.low, (long long)k.high, (long long)k.low,
                            (long long)k.high, (long long)k.low);
}

__attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2"))) static uint32_t
update_vpclmul(uint32_t crc, const unsigned char *p, size_t len) {
    if (len < FOLD_MIN) return update_sse42(crc, p, len);
    /* The running register enters as the first 32 bits of the message. */
    __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)p),
                                  _mm512_castsi128_si512(_mm_cvtsi32_si128((int)crc)));
    __m512i a1 = _mm512_loadu_si512((const void *)(p + 64));
    __m512i a2 = _mm512_loadu_si512((const void *)(p + 128));
    __m512i a3 = _mm512_loadu_si512((const void *)(p + 192));
    p += 256;
    len -= 256;
    const __m512i k256 = broadcast_k(fold_256);
    while (len >= 256) {
        a0 = fold512(a0, k256, _mm512_loadu_si512((const void *)p));
        a1 = fold512(a1, k256, _mm512_loadu_si512((const void *)(p + 64)));
        a2 = fold512(a2, k256, _mm512_loadu_si512((const void *)(p + 128)));
        a3 = fold512(a3, k256, _mm512_loadu_si512((const void *)(p + 192)));
        p += 256;
        len -= 256;
    }
    /* Four registers into one: each moved on to the last one's place. */
    __m512i a = fold512(a0, broadcast_k(fold_192), a3);
    a = fold512(a1, broadcast_k(fold_128), a);
    a = fold512(a2, broadcast_k(fold_64), a);
    /* Its four blocks into one, likewise. */
    __m128i b = _mm512_extracti32x4_epi32(a, 3);
    b = fold128(_mm512_extracti32x4_epi32(a, 0), fold_48, b);
    b = fold128(_mm512_extracti32x4_epi32(a, 1), fold_32, b);
    b = fold128(_mm512_extracti32x4_epi32(a, 2), fold_16, b);
    while (len >= 16) {
        b = fold128(b, fold_16, _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
    /* What is left is the block's 128 bits and the last bytes: a CRC of them. */
    uint64_t c0 = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(b));
    c0 = _mm_crc32_u64(c0, (uint64_t)_mm_extract_epi64(b, 1));
    while (len--) c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return (uint32_t)c0;
}
#endif /* TL_FOLD */
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

#ifdef TL_FOLD
static uint32_t xpow_mod(uint64_t n) { return x2nmodp(n, 0); }
#endif

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
#ifdef TL_FOLD
    fold_256 = fold_by(256);
    fold_192 = fold_by(192);
    fold_128 = fold_by(128);
    fold_64 = fold_by(64);
    fold_48 = fold_by(48);
    fold_32 = fold_by(32);
    fold_16 = fold_by(16);
    /* The compiler's "avx512f" holds only where XGETBV shows the OS saves
     * the opmask and ZMM registers (XCR0 bits 5 to 7) as well as the CPU
     * has them (libgcc's and compiler-rt's checks both; on macOS, whose
     * kernel turns that state on at first use, the CPU's bit alone): a
     * kernel or hypervisor that keeps AVX-512 off is never handed the fold. */
    if (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul") &&
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq"))
        use("avx512-vpclmulqdq", update_vpclmul);
#endif
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
