/* SPDX-License-Identifier: Apache-2.0 */
/*
 * schema.h: the predictor's OpenAPI schema (Cog's shape) at build time, computed statically from its source
 * by the runner's kiln_schema.py (Python's ast: the user's dependencies are never imported). It becomes the
 * run.cog.openapi_schema label.
 */
#ifndef KILN_SCHEMA_H
#define KILN_SCHEMA_H

#include <jansson.h>

#include "common/error.h"
#include "pkg/store.h"

/*
 * Run `$KILN_PYTHON (else python3) PYTHON_DIR/kiln_schema.py PREDICT [--train TRAIN]` in DIR and parse what
 * it prints: the predictor's document, with the trainer TRAIN's /trainings when TRAIN is not NULL.
 * KILN_ENOTFOUND when no Python interpreter is there; KILN_EINVAL with the generator's own message
 * ("predict.py:12: ...") when the predictor cannot be described.
 */
int kiln_schema_generate(json_t **out, const char *python_dir, const char *dir, const char *predict,
                         const char *train, json_t **warnings, struct kiln_error **err);

/*
 * The schema of PREDICT ("predict.py:Predictor", relative to DIR) and of the trainer TRAIN (or NULL), from a
 * cache when the content of the predictor's and the trainer's files and of every file of the generator
 * (PYTHON_DIR/kiln_schema*.py) is what it was: the store S's cache, else the user's,
 * ${XDG_CACHE_HOME:-$HOME/.cache}/kiln-schema/ (so that a fresh store runs no Python for a predictor
 * described before); else kiln_schema_generate, kept in both. A cache that cannot be written is no error.
 */
int kiln_schema_describe(json_t **out, struct kiln_store *s, const char *python_dir, const char *dir,
                         const char *predict, const char *train, json_t **warnings, struct kiln_error **err);

#endif
