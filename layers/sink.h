/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sink.h: where the tar stream of a layer goes (private to layers/). The sink hashes the uncompressed
 * stream (diff_id), optionally gzips it, hashes and writes the blob, and records the recipe of an
 * uncompressed layer: literal bytes for what libarchive emits, file segments for source file content.
 */
#ifndef KILN_LAYERS_SINK_H
#define KILN_LAYERS_SINK_H

#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

#include "layers/tar.h"

struct kiln_sink {
	enum kiln_compression compression;
	int fd;                        /* -1: the blob goes nowhere */
	struct kiln_sha256 *tar_hash;  /* the uncompressed stream */
	struct kiln_sha256 *blob_hash; /* the compressed stream (gzip only) */
	uint64_t tar_size;
	uint64_t blob_size;

	/* gzip */
	z_stream z;
	bool z_ready;
	unsigned char *zbuf;

	/* small writes to fd are gathered here */
	unsigned char *wbuf;
	size_t wlen;

	/* recipe (uncompressed layers only) */
	bool record;
	bool in_file;       /* bytes now arriving are a source file's content */
	uint64_t file_left; /* content bytes still expected for that file */
	unsigned char *lit; /* literal bytes not yet made a segment */
	size_t lit_len, lit_cap;
	struct kiln_segment *segs;
	size_t nsegs, segs_cap;

	/* a fragment: the stream without its end-of-archive blocks (the last 1024 bytes, held back) */
	bool fragment;
	unsigned char hold[1024];
	size_t hold_len;

	struct kiln_error *err; /* the first failure inside kiln_sink_write */
	int write_errno;        /* errno, when that failure was a write to fd */
	bool discard;           /* drop whatever arrives (the layer failed; libarchive is being closed) */
};

/* Prepare S for a layer written to FD (or nowhere when -1) with COMPRESSION. */
int kiln_sink_init(struct kiln_sink *s, int fd, enum kiln_compression compression, struct kiln_error **err);

/* Take LEN bytes of the tar stream. Returns 0 (also when discarding), or a negative KILN_E* code with
 * s->err set. */
int kiln_sink_write(struct kiln_sink *s, const void *data, size_t len);

/* The next SIZE bytes are the content of the source file of E (recorded as a file segment). */
int kiln_sink_begin_file(struct kiln_sink *s, const struct kiln_tar_entry *e, struct kiln_error **err);
/* The content of the file started by kiln_sink_begin_file is complete (checks that its size arrived). */
int kiln_sink_end_file(struct kiln_sink *s, struct kiln_error **err);

/*
 * End the stream: flush the compressor and the write buffer, and fill out's digest, diff_id, size and,
 * for uncompressed layers, recipe.
 */
int kiln_sink_finish(struct kiln_sink *s, struct kiln_layer_out *out, struct kiln_error **err);

void kiln_sink_release(struct kiln_sink *s);

#endif
