/* SPDX-License-Identifier: Apache-2.0 */
/*
 * validate.h: private to shim/validate*.c. What the input check (validate.c) shares with pydantic's
 * coercions (validate_coerce.c), the constraint checks (validate_constraints.c) and the 422 detail entries
 * in pydantic's words (validate_detail.c).
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

/* ---- validate_coerce.c: pydantic v1's int_validator, float_validator, bool_validator, str_validator ---- */

/* VALUE as an integer the way pydantic v1's int_validator takes it: a new JSON integer, or NULL. */
json_t *vcoerce_int(const json_t *value);
/* VALUE as a float the way pydantic v1's float_validator takes it: a new JSON real, or NULL. */
json_t *vcoerce_float(const json_t *value);
/* VALUE as a boolean the way pydantic v1's bool_validator takes it: a new JSON boolean, or NULL. */
json_t *vcoerce_bool(const json_t *value);
/* VALUE as a string the way pydantic v1's str_validator takes it (numbers become str() of them), or NULL. */
json_t *vcoerce_str(const json_t *value);

/* ---- validate_constraints.c: choices, bounds, lengths and patterns ---- */

/* Whether VALUE is one of ENUM's members; numbers compare by value (1 == 1.0, as in Python). */
bool venum_has(const json_t *members, const json_t *value);

/* minimum/maximum (ge/le) and exclusiveMinimum/exclusiveMaximum (gt/lt), in pydantic's order. */
bool vcheck_bounds(struct vctx *v, const json_t *schema, double x, const json_t *loc);
/* minLength, maxLength, then pattern (constr's order), on string S. */
bool vcheck_string(struct vctx *v, const json_t *schema, const char *s, const json_t *loc);

/* ---- validate_detail.c: Python's text for values, and the entries of the detail array ---- */

/* Python's str() of a JSON scalar (repr() for strings when REPR), appended to B. */
void vpy_text(struct kiln_buf *b, const json_t *v, bool repr);

/* LOC with INDEX appended (a new array; LOC itself is kept). */
json_t *vloc_with_index(const json_t *loc, size_t index);
/* Add {"loc", "msg", "type"[, "ctx"]} to the detail array; CTX (may be NULL) is taken over. */
void vadd_error(struct vctx *v, const json_t *loc, const char *msg, const char *type, json_t *ctx);
/* A number-bound error: "ensure this value is WORDS LIMIT", type value_error.number.CODE, ctx limit_value. */
void vadd_bound_error(struct vctx *v, const json_t *loc, const char *words, const char *code,
                      const json_t *limit);
/* A length error: "ensure this value has at WORDS LIMIT NOUN", type TYPE, ctx limit_value. */
void vadd_length_error(struct vctx *v, const json_t *loc, const char *words, const json_t *limit,
                       const char *noun, const char *type);
/* The EnumMemberError: "value is not a valid enumeration member; permitted: 'a', 'b'", ctx enum_values. */
void vadd_enum_error(struct vctx *v, const json_t *loc, const json_t *members);

#endif
