/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reader.h: reading a blob piece by piece from any offset, whether it is stored whole (a file) or
 * produced from a recipe. Uploads pull their bytes through it, and resume from where a registry stopped.
 */
#ifndef KILN_READER_H
#define KILN_READER_H

#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "layers/recipe.h"

struct kiln_blob_reader;

/* A reader over a file holding the whole blob (PATH), or over recipe R (borrowed: it must outlive the
 * reader). Exactly one of PATH and R is non-NULL. */
int kiln_blob_reader_open(struct kiln_blob_reader **out, const char *path, const struct kiln_recipe *r,
                          struct kiln_error **err);

/* Continue at OFFSET (0 ≤ OFFSET ≤ size). */
int kiln_blob_reader_seek(struct kiln_blob_reader *rd, uint64_t offset, struct kiln_error **err);

/*
 * Read up to LEN bytes: the count, 0 at the end, or a negative KILN_E* code. A recipe's source file is
 * checked against its fingerprint when opened and when done (KILN_ECHANGED naming it); a read that went
 * from offset 0 to the end checks the digest of everything read (KILN_ECHANGED when it differs).
 */
ssize_t kiln_blob_reader_read(struct kiln_blob_reader *rd, void *buf, size_t len, struct kiln_error **err);

/* Read to the end into WRITE through a fixed 1 MiB buffer (whatever the blob's size). */
int kiln_blob_reader_pump(struct kiln_blob_reader *rd, kiln_write_fn write, void *ctx,
                          struct kiln_error **err);

uint64_t kiln_blob_reader_size(const struct kiln_blob_reader *rd);
void kiln_blob_reader_free(struct kiln_blob_reader *rd);

#endif
