/* Long double arithmetic for INCRBYFLOAT / HINCRBYFLOAT.
 *
 * Redis does these increments in C `long double` (x87 80-bit on x86_64)
 * and prints the result with "%.17Lf" minus trailing zeros. Doing the same
 * through the platform's libc is the only way to produce byte-identical
 * results, so this tiny file exists instead of an emulation in Rust. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

/* Parse like Redis's string2ld: whole string, no leading space, not NaN.
 * Returns 1 on success. */
static int parse_ld(const char *s, size_t len, long double *out) {
    char buf[5121];
    char *eptr;
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (memchr(s, '\0', len) != NULL) return 0;
    errno = 0;
    long double v = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || (size_t)(eptr - buf) != len ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || fpclassify(v) == FP_ZERO)) ||
        isnan(v))
        return 0;
    *out = v;
    return 1;
}

/* Format like Redis's ld2string(..., LD_STR_HUMAN). Returns length or -1. */
static int format_ld(long double v, char *buf, size_t cap) {
    if (isinf(v)) return -1;
    int l = snprintf(buf, cap, "%.17Lf", v);
    if (l < 0 || (size_t)l + 1 > cap) return -1;
    if (strchr(buf, '.') != NULL) {
        char *p = buf + l - 1;
        while (*p == '0') { p--; l--; }
        if (*p == '.') l--;
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') { buf[0] = '0'; l = 1; }
    buf[l] = '\0';
    return l;
}

/* cur (may be NULL for "0") + incr, written to out.
 * Returns: length of the result, -1 if cur is not a float, -2 if incr is
 * not a float, -3 if the result is NaN or infinite. */
int ferrite_ld_incr(const char *cur, size_t cur_len, const char *incr, size_t incr_len, char *out, size_t cap) {
    long double a = 0, b = 0;
    if (cur != NULL && !parse_ld(cur, cur_len, &a)) return -1;
    if (!parse_ld(incr, incr_len, &b)) return -2;
    long double r = a + b;
    if (isnan(r) || isinf(r)) return -3;
    int l = format_ld(r, out, cap);
    return l < 0 ? -3 : l;
}

/* Validate/normalise a long double string (used by HINCRBYFLOAT checks). */
int ferrite_ld_parse_ok(const char *s, size_t len) {
    long double v;
    return parse_ld(s, len, &v);
}
