/* SPDX-License-Identifier: Apache-2.0 */
/*
 * join.h: a gzip layer made of tar fragments, each a gzip member written with kiln_layer_options.fragment
 * (RFC 1952 lets members follow one another, and every gzip reader takes them as one stream, as eStargz
 * layers rely on), followed by a member holding the end of the archive. A fragment already in a blob is
 * copied as it is, not compressed again: changing one part of a layer compresses only that part.
 */
#ifndef KILN_JOIN_H
#define KILN_JOIN_H

#include <signal.h>
#include <stdint.h>

#include "common/error.h"
#include "layers/tar.h"

struct kiln_layer_part {
	int fd;          /* a file holding the fragment */
	uint64_t offset; /* where its gzip member(s) start */
	uint64_t length; /* and how many bytes they take */
};

/*
 * Write the layer made of the N PARTS, in order, and the end of the archive to FD; OUT gets its digest,
 * diff_id (the parts decompressed, checked to be whole gzip members) and size. A part that is not gzip,
 * or ends inside a member, is an error (KILN_EIO); on failure what was written to FD is the caller's to
 * discard.
 */
int kiln_layer_join(struct kiln_layer_out *out, int fd, const struct kiln_layer_part *parts, size_t n,
                    volatile sig_atomic_t *cancel, struct kiln_error **err);

#endif
