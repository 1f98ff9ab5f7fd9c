/* SPDX-License-Identifier: Apache-2.0 */
/* source.h: what git knows about the project (libgit2): the revision, a dirty marker, the source URL. */
#ifndef KILN_SOURCE_H
#define KILN_SOURCE_H

#include "common/error.h"

struct kiln_source {
	char *revision; /* "<40 hex>" or "<40 hex>-dirty"; NULL outside a git repository */
	char *url;      /* the "origin" remote without credentials, or NULL */
};

/*
 * Describe the git repository that holds DIR (searching upwards). Dirty means a tracked file under DIR
 * differs from HEAD (untracked files do not count, as with `git describe --dirty`). Not being in a
 * repository is not an error: both fields stay NULL.
 */
int kiln_source_describe(struct kiln_source *out, const char *dir, struct kiln_error **err);
void kiln_source_release(struct kiln_source *src);

#endif
