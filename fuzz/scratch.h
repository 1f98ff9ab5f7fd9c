/* SPDX-License-Identifier: Apache-2.0 */
/* scratch.h: the fuzz targets' scratch directory, made once per process and removed at exit. */
#ifndef KILN_FUZZ_SCRATCH_H
#define KILN_FUZZ_SCRATCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The scratch directory ($TMPDIR/kiln-fuzz-XXXXXX), made on the first call; aborts when it cannot be. */
const char *fuzz_scratch(void);

/* SUB joined to the scratch directory (a static buffer, overwritten by the next call). */
const char *fuzz_scratch_path(const char *sub);

/* Write DATA (LEN bytes) to PATH, replacing it; aborts on failure (a fuzz input must never fail this). */
void fuzz_write_file(const char *path, const uint8_t *data, size_t len);

/* A NUL-terminated copy of DATA (caller frees); aborts when memory runs out. */
char *fuzz_strndup(const uint8_t *data, size_t len);

/* The unit tests' input schemas (tests/fixtures/schemas): fuzz_schemas[fuzz_schema_count], loaded on the
 * first call (aborts when one cannot be), freed at exit. */
#define FUZZ_SCHEMAS 4
json_t *const *fuzz_schemas(void);

#endif
