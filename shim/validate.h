/* SPDX-License-Identifier: Apache-2.0 */
/*
 * validate.h: private to shim/validate*.c. What the input check (validate.c) shares with the constraint
 * checks (validate_constraints.c) and the 422 detail entries in coglet's words (validate_detail.c).
 */
#ifndef KILN_SHIM_VALIDATE_H
#define KILN_SHIM_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>

#include "common/buf.h"
#include "shim/shim.h"

struct vctx {
	const json_t *root; /* the whole OpenAPI document, where "$ref"s point */
	json_t *detail;     /* the 422 "detail" array being filled */
};

/* ---- validate_constraints.c: choices, bounds, lengths and patterns ---- */

/* Whether VALUE is one of ENUM's members; numbers compare by value (1 == 1.0, as in Python). */
bool venum_has(const json_t *members, const json_t *value);

/* exclusiveMinimum, minimum, exclusiveMaximum, maximum on number VALUE. */
bool vcheck_bounds(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc);
/* minLength, maxLength, then pattern, on string VALUE. */
bool vcheck_string(struct vctx *v, const json_t *schema, const json_t *value, const json_t *loc);

/* ---- validate_detail.c: the entries of the detail array, in jsonschema-rs's words ---- */

/* VALUE as serde_json's Display writes it (compact, keys sorted, shortest floats), appended to B. */
void vjson_text(struct kiln_buf *b, const json_t *v);

/* LOC naming item INDEX of the array it names (a new array; LOC itself is kept): "name/INDEX". */
json_t *vloc_with_index(const json_t *loc, size_t index);
/* Add {"loc", "msg", "type"} to the detail array. */
void vadd_error(struct vctx *v, const json_t *loc, const char *msg, const char *type);
/* "VALUE is not of type \"TYPE\"". */
void vadd_type_error(struct vctx *v, const json_t *loc, const json_t *value, const char *type);
/* "VALUE is WORDS LIMIT" ("less than the minimum of", ...). */
void vadd_bound_error(struct vctx *v, const json_t *loc, const json_t *value, const char *words,
                      const json_t *limit);
/* "VALUE WORDS LIMIT NOUN[s]" ("is shorter than" 3 "character", "has less than" 1 "item"). */
void vadd_count_error(struct vctx *v, const json_t *loc, const json_t *value, const char *words,
                      json_int_t limit, const char *noun);
/* "VALUE is not one of [MEMBERS]". */
void vadd_enum_error(struct vctx *v, const json_t *loc, const json_t *value, const json_t *members);
/* "VALUE" followed by TEXT. */
void vadd_text_error(struct vctx *v, const json_t *loc, const json_t *value, const char *text);

#endif
