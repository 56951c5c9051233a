/* OTLP/JSON written straight off wire bytes: agent/exporters/json_wire.py's writer, compiled.
 *
 * `table(types)` takes the plans json_wire builds from the protobuf descriptors
 * (per message type, each field by its tag: number, kind, '"jsonName":',
 * repeated, presence, the plan of a message field, oneof) and keeps them as C
 * arrays. `message(table, type, wire, start, end)` writes the JSON object of
 * the message in wire[start:end]; `messages(...)` that of each length-delimited
 * field in wire[start:end] (a group of spans, say), comma-separated. Both
 * write into one buffer and make one str of it.
 *
 * The text is json_wire's (and so protobuf's printer's) character for
 * character: doubles as repr() writes them, NaN and the infinities quoted,
 * 64-bit integers as quoted strings, ids hex and other bytes base64, strings
 * as json's encode_basestring_ascii escapes them. The layouts taken are
 * json_wire's: fields in number order, a singular field once, one member per
 * oneof, no unknown fields, valid UTF-8, tags and lengths of at most 5 bytes.
 * For anything else both return None, and the caller parses the bytes with
 * protobuf, which merges, drops or refuses what it must.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 32 /* messages within messages, as json_wire counts them */
#define MAX_TYPES 256
#define SMALL_TAGS 256 /* tags below this are found by index, others by a scan of the fields */

/* Field kinds, numbered as json_wire numbers them. */
enum {
    MESSAGE, STRING, BYTES, ID, DOUBLE, FLOAT, FIXED64, SFIXED64, FIXED32, SFIXED32,
    INT64, UINT64, INT32, UINT32, BOOL, SINT64, SINT32, KINDS
};
#define PACKED 100 /* + the element's kind: a packed run of a repeated number field */

typedef struct {
    uint32_t tag, number;
    int kind; /* a kind, or PACKED + a kind */
    int repeated, presence, sub, oneof;
    const char *key; /* '"jsonName":', in the table's key store */
    Py_ssize_t key_len;
} Field;

typedef struct {
    Field *fields;
    int n;
    int16_t by_tag[SMALL_TAGS]; /* index + 1 into fields; 0: no such tag */
} Type;

typedef struct {
    Type *types;
    int n;
    char *keys;
} Table;

typedef struct {
    char *data;
    size_t len, cap;
} Out;

/* Results: 0 written; UNUSUAL a layout left to protobuf (no exception set); -2 an exception set. */
#define UNUSUAL (-1)
#define FAILED (-2)

static const char hex_digits[] = "0123456789abcdef";
static const char base64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- the output buffer ------------------------------------------------ */

static int reserve(Out *o, size_t more) {
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap * 2 : 4096;
    while (cap < o->len + more)
        cap *= 2;
    char *data = PyMem_Realloc(o->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    o->data = data;
    o->cap = cap;
    return 0;
}

static inline int put(Out *o, const char *text, size_t n) {
    if (reserve(o, n) < 0)
        return FAILED;
    memcpy(o->data + o->len, text, n);
    o->len += n;
    return 0;
}

static inline int put_char(Out *o, char c) {
    if (o->len == o->cap && reserve(o, 1) < 0)
        return FAILED;
    o->data[o->len++] = c;
    return 0;
}

/* ---- reading the wire, as json_wire reads it -------------------------- */

/* A varint of at most 10 bytes, its value cut to 64 bits. */
static inline int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    if (*p < end && **p < 0x80) {
        *out = *(*p)++;
        return 0;
    }
    uint64_t value = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (*p >= end)
            return UNUSUAL;
        uint8_t byte = *(*p)++;
        value |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *out = value;
            return 0;
        }
    }
    return UNUSUAL;
}

/* A tag or a length: protobuf refuses either padded beyond 5 bytes, and a tag beyond 32 bits. */
static inline int read_short(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    const uint8_t *start = *p;
    if (read_varint(p, end, out) < 0 || *p - start > 5 || *out > 0xFFFFFFFFu)
        return UNUSUAL;
    return 0;
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian hosts only: see the module's init */
    return v;
}

static inline uint32_t load32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- writing values --------------------------------------------------- */

static int put_unsigned(Out *o, uint64_t v, int quoted) {
    char text[24];
    int n = 0;
    do {
        text[sizeof text - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (reserve(o, n + 2) < 0)
        return FAILED;
    if (quoted)
        o->data[o->len++] = '"';
    memcpy(o->data + o->len, text + sizeof text - n, n);
    o->len += n;
    if (quoted)
        o->data[o->len++] = '"';
    return 0;
}

static int put_signed(Out *o, int64_t v, int quoted) {
    if (v >= 0)
        return put_unsigned(o, (uint64_t)v, quoted);
    if (quoted && put_char(o, '"') < 0)
        return FAILED;
    if (put_char(o, '-') < 0 || put_unsigned(o, (uint64_t)0 - (uint64_t)v, 0) < 0)
        return FAILED;
    return quoted ? put_char(o, '"') : 0;
}

/* ---- doubles: the shortest digits ------------------------------------- */

/* repr() of a double is the shortest digit string that reads back as it (the closest such string
 * where there are several), from CPython's dtoa, which works in big integers. Grisu3 (Loitsch,
 * "Printing floating-point numbers quickly and accurately with integers", PLDI 2010) finds the same
 * digits in 64-bit arithmetic for all but about 0.5% of doubles, and says so when it cannot be sure:
 * those still go to CPython's dtoa. */

typedef struct {
    uint64_t f;
    int e;
} DiyFp; /* f * 2^e */

/* 10^d as f * 2^e, f normalized and rounded to nearest, for d = -348, -340, ..., 340. */
static const struct {
    uint64_t f;
    int16_t e, d;
} cached_powers[] = {
    {0xfa8fd5a0081c0288ULL, -1220, -348},
    {0xbaaee17fa23ebf76ULL, -1193, -340},
    {0x8b16fb203055ac76ULL, -1166, -332},
    {0xcf42894a5dce35eaULL, -1140, -324},
    {0x9a6bb0aa55653b2dULL, -1113, -316},
    {0xe61acf033d1a45dfULL, -1087, -308},
    {0xab70fe17c79ac6caULL, -1060, -300},
    {0xff77b1fcbebcdc4fULL, -1034, -292},
    {0xbe5691ef416bd60cULL, -1007, -284},
    {0x8dd01fad907ffc3cULL, -980, -276},
    {0xd3515c2831559a83ULL, -954, -268},
    {0x9d71ac8fada6c9b5ULL, -927, -260},
    {0xea9c227723ee8bcbULL, -901, -252},
    {0xaecc49914078536dULL, -874, -244},
    {0x823c12795db6ce57ULL, -847, -236},
    {0xc21094364dfb5637ULL, -821, -228},
    {0x9096ea6f3848984fULL, -794, -220},
    {0xd77485cb25823ac7ULL, -768, -212},
    {0xa086cfcd97bf97f4ULL, -741, -204},
    {0xef340a98172aace5ULL, -715, -196},
    {0xb23867fb2a35b28eULL, -688, -188},
    {0x84c8d4dfd2c63f3bULL, -661, -180},
    {0xc5dd44271ad3cdbaULL, -635, -172},
    {0x936b9fcebb25c996ULL, -608, -164},
    {0xdbac6c247d62a584ULL, -582, -156},
    {0xa3ab66580d5fdaf6ULL, -555, -148},
    {0xf3e2f893dec3f126ULL, -529, -140},
    {0xb5b5ada8aaff80b8ULL, -502, -132},
    {0x87625f056c7c4a8bULL, -475, -124},
    {0xc9bcff6034c13053ULL, -449, -116},
    {0x964e858c91ba2655ULL, -422, -108},
    {0xdff9772470297ebdULL, -396, -100},
    {0xa6dfbd9fb8e5b88fULL, -369, -92},
    {0xf8a95fcf88747d94ULL, -343, -84},
    {0xb94470938fa89bcfULL, -316, -76},
    {0x8a08f0f8bf0f156bULL, -289, -68},
    {0xcdb02555653131b6ULL, -263, -60},
    {0x993fe2c6d07b7facULL, -236, -52},
    {0xe45c10c42a2b3b06ULL, -210, -44},
    {0xaa242499697392d3ULL, -183, -36},
    {0xfd87b5f28300ca0eULL, -157, -28},
    {0xbce5086492111aebULL, -130, -20},
    {0x8cbccc096f5088ccULL, -103, -12},
    {0xd1b71758e219652cULL, -77, -4},
    {0x9c40000000000000ULL, -50, 4},
    {0xe8d4a51000000000ULL, -24, 12},
    {0xad78ebc5ac620000ULL, 3, 20},
    {0x813f3978f8940984ULL, 30, 28},
    {0xc097ce7bc90715b3ULL, 56, 36},
    {0x8f7e32ce7bea5c70ULL, 83, 44},
    {0xd5d238a4abe98068ULL, 109, 52},
    {0x9f4f2726179a2245ULL, 136, 60},
    {0xed63a231d4c4fb27ULL, 162, 68},
    {0xb0de65388cc8ada8ULL, 189, 76},
    {0x83c7088e1aab65dbULL, 216, 84},
    {0xc45d1df942711d9aULL, 242, 92},
    {0x924d692ca61be758ULL, 269, 100},
    {0xda01ee641a708deaULL, 295, 108},
    {0xa26da3999aef774aULL, 322, 116},
    {0xf209787bb47d6b85ULL, 348, 124},
    {0xb454e4a179dd1877ULL, 375, 132},
    {0x865b86925b9bc5c2ULL, 402, 140},
    {0xc83553c5c8965d3dULL, 428, 148},
    {0x952ab45cfa97a0b3ULL, 455, 156},
    {0xde469fbd99a05fe3ULL, 481, 164},
    {0xa59bc234db398c25ULL, 508, 172},
    {0xf6c69a72a3989f5cULL, 534, 180},
    {0xb7dcbf5354e9beceULL, 561, 188},
    {0x88fcf317f22241e2ULL, 588, 196},
    {0xcc20ce9bd35c78a5ULL, 614, 204},
    {0x98165af37b2153dfULL, 641, 212},
    {0xe2a0b5dc971f303aULL, 667, 220},
    {0xa8d9d1535ce3b396ULL, 694, 228},
    {0xfb9b7cd9a4a7443cULL, 720, 236},
    {0xbb764c4ca7a44410ULL, 747, 244},
    {0x8bab8eefb6409c1aULL, 774, 252},
    {0xd01fef10a657842cULL, 800, 260},
    {0x9b10a4e5e9913129ULL, 827, 268},
    {0xe7109bfba19c0c9dULL, 853, 276},
    {0xac2820d9623bf429ULL, 880, 284},
    {0x80444b5e7aa7cf85ULL, 907, 292},
    {0xbf21e44003acdd2dULL, 933, 300},
    {0x8e679c2f5e44ff8fULL, 960, 308},
    {0xd433179d9c8cb841ULL, 986, 316},
    {0x9e19db92b4e31ba9ULL, 1013, 324},
    {0xeb96bf6ebadf77d9ULL, 1039, 332},
    {0xaf87023b9bf0ee6bULL, 1066, 340},
};
#define CACHED_POWERS_OFFSET 348 /* -the first d */
#define CACHED_POWERS_STEP 8

static inline DiyFp diy_times(DiyFp x, DiyFp y) { /* the product's upper 64 bits, rounded */
    const uint64_t m32 = 0xFFFFFFFFu;
    uint64_t a = x.f >> 32, b = x.f & m32, c = y.f >> 32, d = y.f & m32;
    uint64_t ac = a * c, bc = b * c, ad = a * d, bd = b * d;
    uint64_t tmp = (bd >> 32) + (ad & m32) + (bc & m32) + ((uint64_t)1 << 31);
    DiyFp r = {ac + (ad >> 32) + (bc >> 32) + (tmp >> 32), x.e + y.e + 64};
    return r;
}

static inline DiyFp diy_normalize(DiyFp x) {
    int shift = __builtin_clzll(x.f);
    DiyFp r = {x.f << shift, x.e - shift};
    return r;
}

/* Moves the last digit down while that brings the digits closer to w, then says whether they are surely
 * the closest shortest digits (Grisu3's RoundWeed). */
static int round_weed(char *digits, int length, uint64_t distance_too_high_w, uint64_t unsafe_interval,
                      uint64_t rest, uint64_t ten_kappa, uint64_t unit) {
    uint64_t small_distance = distance_too_high_w - unit, big_distance = distance_too_high_w + unit;
    while (rest < small_distance && unsafe_interval - rest >= ten_kappa &&
           (rest + ten_kappa < small_distance || small_distance - rest >= rest + ten_kappa - small_distance)) {
        digits[length - 1]--;
        rest += ten_kappa;
    }
    if (rest < big_distance && unsafe_interval - rest >= ten_kappa &&
        (rest + ten_kappa < big_distance || big_distance - rest > rest + ten_kappa - big_distance))
        return 0;
    return 2 * unit <= rest && rest <= unsafe_interval - 4 * unit;
}

/* The shortest digits of v > 0 (finite) and the power of ten after them; 0 where Grisu3 is not sure. */
static int grisu3(double v, char *digits, int *length, int *exponent) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    uint64_t significand = bits & 0x000FFFFFFFFFFFFFULL;
    int biased = (int)(bits >> 52 & 0x7FF);
    DiyFp value;
    if (biased == 0) { /* subnormal */
        value.f = significand;
        value.e = -1074;
    } else {
        value.f = significand | 0x0010000000000000ULL;
        value.e = biased - 1075;
    }
    DiyFp w = diy_normalize(value);
    /* The boundaries halfway to the neighbouring doubles; the lower one is closer at a power of two. */
    DiyFp plus = {(value.f << 1) + 1, value.e - 1};
    plus = diy_normalize(plus);
    DiyFp minus;
    if (significand == 0 && biased > 1) {
        minus.f = (value.f << 2) - 1;
        minus.e = value.e - 2;
    } else {
        minus.f = (value.f << 1) - 1;
        minus.e = value.e - 1;
    }
    minus.f <<= minus.e - plus.e;
    minus.e = plus.e;
    /* A cached power of ten c that brings w * c's binary exponent into [-60, -32]. */
    int min_exponent = -60 - (w.e + 64);
    int k = (int)ceil((min_exponent + 63) * 0.30102999566398114);
    int index = (CACHED_POWERS_OFFSET + k - 1) / CACHED_POWERS_STEP + 1;
    DiyFp ten_mk = {cached_powers[index].f, cached_powers[index].e};
    int mk = cached_powers[index].d;
    DiyFp scaled_w = diy_times(w, ten_mk), low = diy_times(minus, ten_mk), high = diy_times(plus, ten_mk);
    /* Digit generation over the interval widened by one unit each way (the products' error). */
    uint64_t unit = 1;
    uint64_t too_low = low.f - unit, too_high = high.f + unit;
    uint64_t unsafe_interval = too_high - too_low;
    int shift = -scaled_w.e;
    uint64_t one = (uint64_t)1 << shift;
    uint32_t integrals = (uint32_t)(too_high >> shift);
    uint64_t fractionals = too_high & (one - 1);
    uint32_t divisor = 1;
    int kappa = 1;
    while (integrals / divisor >= 10) {
        divisor *= 10;
        kappa++;
    }
    *length = 0;
    while (kappa > 0) {
        digits[(*length)++] = (char)('0' + integrals / divisor);
        integrals %= divisor;
        kappa--;
        uint64_t rest = ((uint64_t)integrals << shift) + fractionals;
        if (rest < unsafe_interval) {
            *exponent = -mk + kappa;
            return round_weed(digits, *length, too_high - scaled_w.f, unsafe_interval, rest,
                              (uint64_t)divisor << shift, unit);
        }
        divisor /= 10;
    }
    for (;;) {
        fractionals *= 10;
        unit *= 10;
        unsafe_interval *= 10;
        digits[(*length)++] = (char)('0' + (fractionals >> shift));
        fractionals &= one - 1;
        kappa--;
        if (fractionals < unsafe_interval) {
            *exponent = -mk + kappa;
            return round_weed(digits, *length, (too_high - scaled_w.f) * unit, unsafe_interval, fractionals, one,
                              unit);
        }
    }
}

/* repr() of a finite double, from its shortest digits: CPython's format for 'r' with a ".0" on integers. */
static int put_repr(Out *o, double v) {
    char digits[24];
    int length, exponent;
    if (v == 0)
        return signbit(v) ? put(o, "-0.0", 4) : put(o, "0.0", 3);
    if (!grisu3(fabs(v), digits, &length, &exponent)) {
        char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL)
            return FAILED;
        int rc = put(o, text, strlen(text));
        PyMem_Free(text);
        return rc;
    }
    while (length > 1 && digits[length - 1] == '0') {
        length--;
        exponent++;
    }
    int point = length + exponent; /* where the decimal point falls, counted from the first digit */
    if (reserve(o, 32) < 0)
        return FAILED;
    char *w = o->data + o->len;
    if (v < 0)
        *w++ = '-';
    if (point <= -4 || point > 16) { /* d.ddde+XX */
        *w++ = digits[0];
        if (length > 1) {
            *w++ = '.';
            memcpy(w, digits + 1, length - 1);
            w += length - 1;
        }
        int e = point - 1;
        *w++ = 'e';
        *w++ = e < 0 ? '-' : '+';
        if (e < 0)
            e = -e;
        if (e >= 100)
            *w++ = (char)('0' + e / 100);
        *w++ = (char)('0' + e / 10 % 10);
        *w++ = (char)('0' + e % 10);
    } else if (point <= 0) { /* 0.000ddd */
        *w++ = '0';
        *w++ = '.';
        memset(w, '0', -point);
        w += -point;
        memcpy(w, digits, length);
        w += length;
    } else if (point >= length) { /* ddd000.0 */
        memcpy(w, digits, length);
        w += length;
        memset(w, '0', point - length);
        w += point - length;
        *w++ = '.';
        *w++ = '0';
    } else { /* dd.ddd */
        memcpy(w, digits, point);
        w += point;
        *w++ = '.';
        memcpy(w, digits + point, length - point);
        w += length - point;
    }
    o->len = w - o->data;
    return 0;
}

/* As json_wire's _double: repr() of a finite double, NaN and the infinities as quoted names. */
static int put_double(Out *o, double v) {
    if (isnan(v))
        return put(o, "\"NaN\"", 5);
    if (isinf(v))
        return v > 0 ? put(o, "\"Infinity\"", 10) : put(o, "\"-Infinity\"", 11);
    return put_repr(o, v);
}

/* As json_wire's _single: the shortest %g text that reads back as the same float, then its repr(). */
static int put_float(Out *o, float f) {
    double original = f;
    if (!isfinite(original))
        return put_double(o, original);
    double rounded = original;
    for (int precision = 6; precision <= 17; precision++) {
        char *text = PyOS_double_to_string(original, 'g', precision, 0, NULL);
        if (text == NULL)
            return FAILED;
        rounded = PyOS_string_to_double(text, NULL, NULL);
        PyMem_Free(text);
        if (rounded == -1.0 && PyErr_Occurred())
            return FAILED;
        if ((double)(float)rounded == original)
            break;
    }
    return put_double(o, rounded);
}

/* A string field's text, as json.encoder.encode_basestring_ascii writes the decoded str; UNUSUAL where
 * the bytes are not UTF-8 as Python's strict decoder reads it (no surrogates, nothing overlong). */
static int put_string(Out *o, const uint8_t *p, const uint8_t *end) {
    if (reserve(o, 6 * (size_t)(end - p) + 2) < 0)
        return FAILED;
    char *w = o->data + o->len;
    *w++ = '"';
    while (p < end) {
        uint8_t c = *p;
        if (c < 0x80) {
            p++;
            if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
                *w++ = (char)c;
                continue;
            }
            *w++ = '\\';
            switch (c) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case '\b': *w++ = 'b'; break;
            case '\f': *w++ = 'f'; break;
            case '\n': *w++ = 'n'; break;
            case '\r': *w++ = 'r'; break;
            case '\t': *w++ = 't'; break;
            default:
                *w++ = 'u';
                *w++ = '0';
                *w++ = '0';
                *w++ = hex_digits[c >> 4];
                *w++ = hex_digits[c & 15];
            }
            continue;
        }
        int more;
        uint8_t low = 0x80, high = 0xBF;
        uint32_t code;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
            code = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            code = c & 0x0F;
            if (c == 0xE0)
                low = 0xA0; /* overlong */
            else if (c == 0xED)
                high = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            code = c & 0x07;
            if (c == 0xF0)
                low = 0x90; /* overlong */
            else if (c == 0xF4)
                high = 0x8F; /* beyond U+10FFFF */
        } else
            return UNUSUAL;
        if (end - p <= more || p[1] < low || p[1] > high)
            return UNUSUAL;
        for (int i = 1; i <= more; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return UNUSUAL;
            code = code << 6 | (p[i] & 0x3F);
        }
        p += more + 1;
        if (code >= 0x10000) { /* a UTF-16 surrogate pair, as json writes it */
            uint32_t v = code - 0x10000;
            uint32_t hi = 0xD800 | (v >> 10), lo = 0xDC00 | (v & 0x3FF);
            *w++ = '\\';
            *w++ = 'u';
            for (int s = 12; s >= 0; s -= 4)
                *w++ = hex_digits[(hi >> s) & 15];
            code = lo;
        }
        *w++ = '\\';
        *w++ = 'u';
        for (int s = 12; s >= 0; s -= 4)
            *w++ = hex_digits[(code >> s) & 15];
    }
    *w++ = '"';
    o->len = w - o->data;
    return 0;
}

static int put_hex(Out *o, const uint8_t *p, const uint8_t *end) {
    if (reserve(o, 2 * (size_t)(end - p) + 2) < 0)
        return FAILED;
    char *w = o->data + o->len;
    *w++ = '"';
    for (; p < end; p++) {
        *w++ = hex_digits[*p >> 4];
        *w++ = hex_digits[*p & 15];
    }
    *w++ = '"';
    o->len = w - o->data;
    return 0;
}

static int put_base64(Out *o, const uint8_t *p, const uint8_t *end) {
    size_t n = (size_t)(end - p);
    if (reserve(o, (n + 2) / 3 * 4 + 2) < 0)
        return FAILED;
    char *w = o->data + o->len;
    *w++ = '"';
    for (; end - p >= 3; p += 3) {
        uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
        *w++ = base64_digits[v >> 18];
        *w++ = base64_digits[(v >> 12) & 63];
        *w++ = base64_digits[(v >> 6) & 63];
        *w++ = base64_digits[v & 63];
    }
    if (end - p == 1) {
        uint32_t v = (uint32_t)p[0] << 16;
        *w++ = base64_digits[v >> 18];
        *w++ = base64_digits[(v >> 12) & 63];
        *w++ = '=';
        *w++ = '=';
    } else if (end - p == 2) {
        uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8;
        *w++ = base64_digits[v >> 18];
        *w++ = base64_digits[(v >> 12) & 63];
        *w++ = base64_digits[(v >> 6) & 63];
        *w++ = '=';
    }
    *w++ = '"';
    o->len = w - o->data;
    return 0;
}

/* A varint field's value, as json_wire's _varint_text writes it. */
static int put_varint(Out *o, int kind, uint64_t v) {
    switch (kind) {
    case INT64: return put_signed(o, (int64_t)v, 1);
    case UINT64: return put_unsigned(o, v, 1);
    case BOOL: return v ? put(o, "true", 4) : put(o, "false", 5);
    case SINT64: return put_signed(o, (int64_t)(v >> 1) ^ -(int64_t)(v & 1), 1);
    case INT32: return put_signed(o, (int32_t)(uint32_t)v, 0);
    case UINT32: return put_unsigned(o, (uint32_t)v, 0);
    default: { /* SINT32: 32-bit fields keep the low bits, as protobuf reads them */
        uint32_t n = (uint32_t)v;
        return put_signed(o, (int32_t)(n >> 1) ^ -(int32_t)(n & 1), 0);
    }
    }
}

/* The value a varint field is at its default for: 32-bit kinds are judged on the bits protobuf keeps. */
static inline int varint_is_zero(int kind, uint64_t v) {
    return (kind == INT32 || kind == UINT32 || kind == SINT32) ? (uint32_t)v == 0 : v == 0;
}

static inline int fixed_size(int kind) {
    return (kind == DOUBLE || kind == FIXED64 || kind == SFIXED64) ? 8
           : (kind == FLOAT || kind == FIXED32 || kind == SFIXED32) ? 4 : 0;
}

/* A fixed-size number at p (size bytes, checked by the caller). */
static int put_fixed(Out *o, int kind, const uint8_t *p) {
    switch (kind) {
    case DOUBLE: {
        double v;
        memcpy(&v, p, 8);
        return put_double(o, v);
    }
    case FLOAT: {
        float v;
        memcpy(&v, p, 4);
        return put_float(o, v);
    }
    case FIXED64: return put_unsigned(o, load64(p), 1);
    case SFIXED64: return put_signed(o, (int64_t)load64(p), 1);
    case FIXED32: return put_unsigned(o, load32(p), 0);
    default: return put_signed(o, (int32_t)load32(p), 0); /* SFIXED32 */
    }
}

/* ---- messages ---------------------------------------------------------- */

static inline const Field *find(const Type *t, uint64_t tag) {
    if (tag < SMALL_TAGS) {
        int i = t->by_tag[tag];
        return i ? &t->fields[i - 1] : NULL;
    }
    for (int i = 0; i < t->n; i++)
        if (t->fields[i].tag == tag)
            return &t->fields[i];
    return NULL;
}

typedef struct {
    const Table *table;
    Out out;
} Writer;

static int write_message(Writer *w, int type, const uint8_t *p, const uint8_t *end, int depth);

/* The JSON object of the message in [p, end) of `type`: json_wire's _message. */
static int write_message(Writer *w, int type, const uint8_t *p, const uint8_t *end, int depth) {
    if (depth > MAX_DEPTH)
        return UNUSUAL; /* protobuf refuses 100 levels; before that, let it judge */
    const Type *t = &w->table->types[type];
    Out *o = &w->out;
    uint32_t last = 0;
    int members = 0, run_open = 0, run_items = 0;
    uint64_t oneofs = 0; /* a bit per oneof already set */
    if (put_char(o, '{') < 0)
        return FAILED;
    while (p < end) {
        uint64_t tag;
        if (read_short(&p, end, &tag) < 0)
            return UNUSUAL;
        const Field *f = find(t, tag);
        if (f == NULL)
            return UNUSUAL;
        if (f->number != last) {
            if (f->number < last)
                return UNUSUAL; /* fields out of order */
            if (run_open && put_char(o, ']') < 0)
                return FAILED;
            run_open = 0;
            last = f->number;
            if (f->repeated) { /* a run has at least one element: its key is written now */
                if ((members++ && put_char(o, ',') < 0) || put(o, f->key, f->key_len) < 0 || put_char(o, '[') < 0)
                    return FAILED;
                run_open = 1;
                run_items = 0;
            }
        } else if (!f->repeated)
            return UNUSUAL; /* a singular field twice */
        if (f->oneof >= 0) {
            if (oneofs >> f->oneof & 1)
                return UNUSUAL; /* two members of a oneof */
            oneofs |= (uint64_t)1 << f->oneof;
        }
        int kind = f->kind;
        const uint8_t *value = p;
        uint64_t number = 0;
        int size = 0;
        if (kind <= ID || kind >= PACKED) {
            uint64_t length;
            if (read_short(&p, end, &length) < 0 || length > (uint64_t)(end - p))
                return UNUSUAL;
            value = p;
            p += length;
            if (kind >= PACKED) { /* every element of the run */
                int element = kind - PACKED;
                size = fixed_size(element);
                if (length == 0 || (size && length % size))
                    return UNUSUAL; /* a packed run empty or of the wrong length */
                while (value < p) {
                    if (run_items++ && put_char(o, ',') < 0)
                        return FAILED;
                    int rc;
                    if (size) {
                        rc = put_fixed(o, element, value);
                        value += size;
                    } else {
                        if (read_varint(&value, p, &number) < 0)
                            return UNUSUAL;
                        rc = put_varint(o, element, number);
                    }
                    if (rc < 0)
                        return rc;
                }
                continue;
            }
            if (kind != MESSAGE && length == 0 && !f->presence && !f->repeated)
                continue; /* a string or bytes field at its default is left out */
        } else {
            size = fixed_size(kind);
            if (size) {
                if (end - p < size)
                    return UNUSUAL;
                p += size;
                if (!f->presence && !f->repeated && (size == 8 ? load64(value) == 0 : load32(value) == 0))
                    continue; /* +0.0 only: -0.0 is not the default */
            } else {
                if (read_varint(&p, end, &number) < 0)
                    return UNUSUAL;
                if (!f->presence && !f->repeated && varint_is_zero(kind, number))
                    continue;
            }
        }
        /* The member (or the run's next element), then its value. */
        if (f->repeated) {
            if (run_items++ && put_char(o, ',') < 0)
                return FAILED;
        } else if ((members++ && put_char(o, ',') < 0) || put(o, f->key, f->key_len) < 0)
            return FAILED;
        int rc;
        switch (kind) {
        case MESSAGE: rc = write_message(w, f->sub, value, p, depth + 1); break;
        case STRING: rc = put_string(o, value, p); break;
        case ID: rc = put_hex(o, value, p); break;
        case BYTES: rc = put_base64(o, value, p); break;
        default: rc = size ? put_fixed(o, kind, value) : put_varint(o, kind, number);
        }
        if (rc < 0)
            return rc;
    }
    if (run_open && put_char(o, ']') < 0)
        return FAILED;
    return put_char(o, '}');
}

/* ---- the table --------------------------------------------------------- */

static void free_table(PyObject *capsule) {
    Table *table = PyCapsule_GetPointer(capsule, "agent._otlpjson.Table");
    if (table == NULL)
        return;
    for (int i = 0; i < table->n; i++)
        PyMem_Free(table->types[i].fields);
    PyMem_Free(table->types);
    PyMem_Free(table->keys);
    PyMem_Free(table);
}

static int valid_kind(int kind) {
    return (kind >= 0 && kind < KINDS) || (kind >= PACKED + DOUBLE && kind < PACKED + KINDS);
}

/* table(types): types[i] lists (tag, number, kind, key, repeated, presence, sub, oneof) of type i. */
static PyObject *make_table(PyObject *module, PyObject *types) {
    if (!PyList_Check(types) || PyList_GET_SIZE(types) == 0 || PyList_GET_SIZE(types) > MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "table: a list of 1 to 256 message types");
        return NULL;
    }
    Table *table = PyMem_Calloc(1, sizeof(Table));
    if (table == NULL)
        return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(table, "agent._otlpjson.Table", free_table);
    if (capsule == NULL) {
        PyMem_Free(table);
        return NULL;
    }
    int n_types = (int)PyList_GET_SIZE(types);
    table->types = PyMem_Calloc(n_types, sizeof(Type));
    if (table->types == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    size_t key_bytes = 0;
    for (int i = 0; i < n_types; i++) { /* the keys' room first: fields point into one store */
        PyObject *fields = PyList_GET_ITEM(types, i);
        if (!PyList_Check(fields))
            goto bad;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(fields); j++) {
            PyObject *entry = PyList_GET_ITEM(fields, j);
            if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 8 || !PyBytes_Check(PyTuple_GET_ITEM(entry, 3)))
                goto bad;
            key_bytes += PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 3));
        }
    }
    table->keys = PyMem_Malloc(key_bytes + 1);
    if (table->keys == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    char *keys = table->keys;
    for (int i = 0; i < n_types; i++) {
        PyObject *fields = PyList_GET_ITEM(types, i);
        Type *t = &table->types[i];
        Py_ssize_t n = PyList_GET_SIZE(fields);
        if (n > 32767)
            goto bad;
        t->fields = PyMem_Calloc(n ? n : 1, sizeof(Field));
        if (t->fields == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        table->n = i + 1;
        for (Py_ssize_t j = 0; j < n; j++) {
            Field *f = &t->fields[j];
            unsigned long long tag;
            unsigned int number;
            const char *key;
            Py_ssize_t key_len;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, j), "KIiy#ppii", &tag, &number, &f->kind, &key, &key_len,
                                  &f->repeated, &f->presence, &f->sub, &f->oneof))
                goto fail;
            if (tag > 0xFFFFFFFFu || tag >> 3 != number || number == 0 || !valid_kind(f->kind) ||
                (f->kind == MESSAGE && (f->sub < 0 || f->sub >= n_types)) || f->oneof < -1 || f->oneof > 63 ||
                (f->kind >= PACKED && !f->repeated) || find(t, tag) != NULL)
                goto bad;
            f->tag = (uint32_t)tag;
            f->number = number;
            memcpy(keys, key, key_len);
            f->key = keys;
            f->key_len = key_len;
            keys += key_len;
            t->n = (int)j + 1;
            if (tag < SMALL_TAGS)
                t->by_tag[tag] = (int16_t)(j + 1);
        }
    }
    return capsule;
bad:
    PyErr_SetString(PyExc_ValueError, "table: a field this table cannot hold");
fail:
    Py_DECREF(capsule);
    return NULL;
}

/* ---- entry points ------------------------------------------------------ */

typedef int (*Walk)(Writer *w, int type, const uint8_t *p, const uint8_t *end);

static int one_message(Writer *w, int type, const uint8_t *p, const uint8_t *end) {
    return write_message(w, type, p, end, 0);
}

/* Each field in [p, end) is length-delimited and holds a message of `type`; their texts comma-separated. */
static int each_field(Writer *w, int type, const uint8_t *p, const uint8_t *end) {
    for (int first = 1; p < end; first = 0) {
        uint64_t tag, length;
        if (read_short(&p, end, &tag) < 0 || (tag & 7) != 2 || read_short(&p, end, &length) < 0 ||
            length > (uint64_t)(end - p))
            return UNUSUAL;
        if (!first && put_char(&w->out, ',') < 0)
            return FAILED;
        int rc = write_message(w, type, p, p + length, 0);
        if (rc < 0)
            return rc;
        p += length;
    }
    return 0;
}

static PyObject *run(PyObject *args, Walk walk) {
    PyObject *capsule;
    int type;
    Py_buffer wire;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "Oiy*nn", &capsule, &type, &wire, &start, &end))
        return NULL;
    PyObject *result = NULL;
    Writer w = {PyCapsule_GetPointer(capsule, "agent._otlpjson.Table"), {NULL, 0, 0}};
    if (w.table == NULL)
        goto done;
    if (type < 0 || type >= w.table->n || start < 0 || start > end || end > wire.len) {
        PyErr_SetString(PyExc_ValueError, "no such message type, or a range outside the bytes");
        goto done;
    }
    const uint8_t *bytes = wire.buf;
    int rc = reserve(&w.out, 2 * (size_t)(end - start) + 64); /* JSON is about twice the wire */
    if (rc == 0)
        rc = walk(&w, type, bytes + start, bytes + end);
    if (rc == UNUSUAL)
        result = Py_NewRef(Py_None);
    else if (rc == 0) {
        result = PyUnicode_New((Py_ssize_t)w.out.len, 127); /* nothing but ASCII is written */
        if (result != NULL)
            memcpy(PyUnicode_DATA(result), w.out.data, w.out.len);
    }
done:
    PyMem_Free(w.out.data);
    PyBuffer_Release(&wire);
    return result;
}

static PyObject *message(PyObject *module, PyObject *args) {
    return run(args, one_message);
}

static PyObject *messages(PyObject *module, PyObject *args) {
    return run(args, each_field);
}

static PyMethodDef methods[] = {
    {"table", make_table, METH_O,
     "table(types) -> a table for `message`: types[i] lists (tag, number, kind, key, repeated, presence, "
     "sub, oneof) of message type i, as agent/exporters/json_wire.py plans it."},
    {"message", message, METH_VARARGS,
     "message(table, type, wire, start, end) -> str | None: the OTLP/JSON of the message of `type` in "
     "wire[start:end]; None for a layout left to protobuf."},
    {"messages", messages, METH_VARARGS,
     "messages(table, type, wire, start, end) -> str | None: the OTLP/JSON of the message of `type` in each "
     "length-delimited field in wire[start:end], comma-separated; None for a layout left to protobuf."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "agent._otlpjson", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__otlpjson(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "agent._otlpjson reads fixed-size numbers as little-endian");
        return NULL;
    }
    return PyModule_Create(&module_def);
}
