/* SPDX-License-Identifier: Apache-2.0 */
/*
 * archive.h: whole tar archives other than layers, with libarchive: writing an oci-archive (an OCI layout
 * in one tar, its blobs streamed in) and listing the files of a layer.
 */
#ifndef KILN_ARCHIVE_H
#define KILN_ARCHIVE_H

#include <stdint.h>

#include "common/error.h"
#include "layers/recipe.h"

struct kiln_archive;

/* Start a deterministic tar (pax, uid/gid 0, mtime MTIME) written to FD. */
int kiln_archive_create(struct kiln_archive **out, int fd, int64_t mtime, struct kiln_error **err);

/* Add a directory entry. */
int kiln_archive_add_dir(struct kiln_archive *a, const char *name, struct kiln_error **err);

/* Add a regular file of SIZE bytes whose content PRODUCE writes through the kiln_write_fn it is given.
 * Writing more or fewer than SIZE bytes is an error. */
typedef int (*kiln_produce_fn)(void *ctx, kiln_write_fn write, void *wctx, struct kiln_error **err);
int kiln_archive_add_file(struct kiln_archive *a, const char *name, uint64_t size, kiln_produce_fn produce,
                          void *ctx, struct kiln_error **err);

/* Write the end of the archive. */
int kiln_archive_finish(struct kiln_archive *a, struct kiln_error **err);
void kiln_archive_free(struct kiln_archive *a);

/* Call FN for each entry of the tar (plain or compressed) at PATH. */
int kiln_archive_list(const char *path, void (*fn)(void *ctx, const char *name, char type, uint64_t size),
                      void *ctx, struct kiln_error **err);

#endif
