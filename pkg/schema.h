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

/*
 * Run `$KILN_PYTHON (else python3) PYTHON_DIR/kiln_schema.py PREDICT` in DIR and parse what it prints.
 * KILN_ENOTFOUND when no Python interpreter is there; KILN_EINVAL with the generator's own message
 * ("predict.py:12: ...") when the predictor cannot be described.
 */
int kiln_schema_generate(json_t **out, const char *python_dir, const char *dir, const char *predict,
                         struct kiln_error **err);

#endif
