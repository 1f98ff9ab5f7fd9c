/* SPDX-License-Identifier: Apache-2.0 */
/* json.h: JSON text laid out as jansson lays it out, with floats as Python prints them (shortest form). */
#ifndef KILN_JSON_H
#define KILN_JSON_H

#include <jansson.h>
#include <stdio.h>

#include "common/buf.h"

/* The shortest text that reads back as D, as Python's repr() writes it ("0.95", "1e-05", "1e+16", "3.0"),
 * into OUT (at least KILN_JSON_REAL_MAX bytes). Returns its length. */
#define KILN_JSON_REAL_MAX 32
int kiln_json_real(char *out, double d);

/* V's JSON text (any value, not only an object or array) appended to B, as json_dumpb() would write it with
 * FLAGS (JSON_INDENT, JSON_COMPACT, JSON_SORT_KEYS, JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH), except reals,
 * which are written by kiln_json_real(). Returns 0, or -1 when memory runs out (B is then left as it was). */
int kiln_json_dumpb(struct kiln_buf *b, const json_t *v, size_t flags);
/* The same as a string the caller frees, or NULL when memory runs out. */
char *kiln_json_dumps(const json_t *v, size_t flags);
/* The same written to F. Returns 0, or -1 when memory runs out or the write fails. */
int kiln_json_dumpf(const json_t *v, FILE *f, size_t flags);

#endif
