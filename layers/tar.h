/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tar.h: deterministic tar layers written with libarchive. Entries sorted by name, mtime fixed (the
 * build's SOURCE_DATE_EPOCH, else 0), uid/gid as given (0 unless a caller keeps a root's owners), no user
 * or group names, normalized modes, PAX headers
 * for long names. One pass over each source file computes everything (the blob digest, the
 * uncompressed digest, and the recipe of an uncompressed layer).
 */
#ifndef KILN_TAR_H
#define KILN_TAR_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "common/fs.h"
#include "layers/digest.h"
#include "layers/recipe.h"

enum kiln_tar_type {
	KILN_TAR_FILE,
	KILN_TAR_DIR,
	KILN_TAR_SYMLINK,
};

struct kiln_tar_entry {
	char *name; /* path inside the image, relative, no leading '/', no trailing '/' ("src/a.bin") */
	enum kiln_tar_type type;
	mode_t mode;            /* permission bits only, already normalized by the caller */
	char *source;           /* KILN_TAR_FILE: the file to read (absolute path); NULL: an empty file
	                         * (size 0: an OCI whiteout) */
	uint64_t size;          /* KILN_TAR_FILE: the size seen when the plan was made */
	struct kiln_stat_fp fp; /* KILN_TAR_FILE: the fingerprint seen when the plan was made */
	char *link_target;      /* KILN_TAR_SYMLINK */
	uid_t uid;              /* owner (0 for every layer but a build step's) */
	gid_t gid;
};

enum kiln_compression {
	KILN_COMPRESS_NONE,
	KILN_COMPRESS_GZIP,
	KILN_COMPRESS_RAW, /* no tar: the one regular file's bytes alone (a weight blob kept out of the
	                    * image's layers); digest and diff_id are the file's, recorded as a recipe */
};

struct kiln_layer_out {
	char digest[KILN_DIGEST_LEN];  /* digest of the blob (compressed if compressed) */
	char diff_id[KILN_DIGEST_LEN]; /* digest of the uncompressed tar */
	uint64_t size;                 /* size of the blob */
	uint64_t bytes_read;           /* bytes read from source files */
	struct kiln_recipe *recipe;    /* uncompressed layers: how to produce the blob again (owned) */
};

struct kiln_layer_options {
	int64_t mtime; /* mtime of every entry (seconds since the epoch) */
	int fd;        /* where the blob's bytes go; -1: nowhere (uncompressed layers only) */
	enum kiln_compression compression;
	/* Called after each chunk read from a source file with the bytes just read (may be NULL). */
	void (*progress)(void *ctx, uint64_t bytes);
	void *progress_ctx;
	volatile sig_atomic_t *cancel; /* when non-NULL and set, stop with KILN_EINTR */
	/* gzip only: write a fragment, the tar stream without its two end-of-archive blocks, as one gzip
	 * member; kiln_layer_join makes a layer of such fragments (out->diff_id is the fragment's) */
	bool fragment;
};

/*
 * Write the tar layer made of the N ENTRIES (any order; they are sorted by name, and missing parent
 * directories are added with mode 0755). Each source file is opened, checked against its recorded
 * fingerprint (KILN_ECHANGED: "'path' changed since it was listed"), read once in fixed-size chunks, and
 * checked again after reading (KILN_ECHANGED: "'path' changed while being read"). For uncompressed
 * layers out->recipe is set. On failure nothing in *out is valid, and bytes already written to opt->fd
 * are the caller's to discard.
 */
int kiln_layer_write(struct kiln_layer_out *out, const struct kiln_tar_entry *entries, size_t n,
                     const struct kiln_layer_options *opt, struct kiln_error **err);

void kiln_layer_out_release(struct kiln_layer_out *out);

/* Free the strings of one entry (not the entry itself). */
void kiln_tar_entry_release(struct kiln_tar_entry *e);

#endif
