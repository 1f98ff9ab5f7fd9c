/* SPDX-License-Identifier: Apache-2.0 */
/*
 * plan.h: the build plan: which file of the project goes to which layer, in which order. Files are
 * selected honouring .kilnignore (else .dockerignore; .git never), weights are classified (the
 * manifest's globs, else Cog's rule), each large weight file gets its own uncompressed layer, small
 * weight files are bundled, and the rest is the gzip code layer.
 */
#ifndef KILN_PLAN_H
#define KILN_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "layers/tar.h"
#include "pkg/manifest.h"

enum kiln_layer_kind {
	KILN_LAYER_BASE,
	KILN_LAYER_WEIGHTS,
	KILN_LAYER_DEPS,
	KILN_LAYER_RUNTIME,
	KILN_LAYER_CODE,
};

/* "base", "weights", "dependencies", "runtime", "code" */
const char *kiln_layer_kind_name(enum kiln_layer_kind kind);

struct kiln_plan_layer {
	enum kiln_layer_kind kind;
	enum kiln_compression compression;
	struct kiln_tar_entry *entries; /* files, symlinks and empty directories, sorted by name */
	size_t n;
	char *title;      /* org.opencontainers.image.title: a single weight file's project-relative path;
	                     "weights-1", "weights-2"... for bundles; "code" */
	uint64_t bytes;   /* sum of the file sizes */
	bool fixed_mtime; /* entries get mtime 0 whatever SOURCE_DATE_EPOCH (the runtime layer: one digest for
	                     every image built by the same kiln) */
};

struct kiln_plan_file {
	char *path; /* relative to the project ("models/a.bin") */
	uint64_t size;
	size_t layer; /* index into layers */
};

struct kiln_plan {
	struct kiln_plan_layer *layers; /* weights layers (single files by path, then bundles), then code */
	size_t n;
	struct kiln_plan_file *weights; /* every weight file, sorted by path */
	size_t nweights;
	char **skipped; /* files left out (sockets, fifos, devices), project-relative */
	size_t nskipped;
};

struct kiln_plan_options {
	const char *prefix;            /* directory in the image the project goes to, "src" */
	uint64_t single_threshold;     /* weight files of this size or more get their own layer (64 MiB) */
	uint64_t bundle_max;           /* a bundle of small weight files is at most this large (256 MiB) */
	uint64_t cog_weight_threshold; /* without weights globs: Cog's size rule (10 MB) */
	const char *manifest;          /* the manifest given with -f, carried as the image's kiln.yaml where
	                                * the project's own is another file; NULL: the project's */
};

/* The defaults named above. */
void kiln_plan_options_init(struct kiln_plan_options *opt);

/*
 * Make the plan for the project M->dir. Errors name the file or the manifest position: a weights glob
 * that matches no file ("kiln.yaml:12:5: weights[0]: '*.bin' matches no file"), a symlink that points
 * outside the project, a file that cannot be read.
 */
int kiln_plan_make(struct kiln_plan **out, const struct kiln_manifest *m, const struct kiln_plan_options *opt,
                   struct kiln_error **err);

/* Take layer INDEX out of P (its entries freed); the weights' layer indexes above it move down. */
void kiln_plan_drop_layer(struct kiln_plan *p, size_t index);
void kiln_plan_free(struct kiln_plan *p);

/*
 * The ignore rules of a project directory (.kilnignore, else .dockerignore), with Docker's semantics:
 * patterns relative to the project root, "*", "?", "[...]", "**" for any number of directories, "!" for
 * exceptions, the last matching rule wins, a matched directory excludes what is under it.
 */
struct kiln_ignore;
int kiln_ignore_load(struct kiln_ignore **out, const char *dir, struct kiln_error **err);
/* true when the project-relative PATH is excluded */
bool kiln_ignore_match(const struct kiln_ignore *ig, const char *path, bool is_dir);
/* true when some rule is a "!" exception (an excluded directory may then hold included files) */
bool kiln_ignore_has_exceptions(const struct kiln_ignore *ig);
void kiln_ignore_free(struct kiln_ignore *ig);

/* Match a project-relative path against a glob with "**" support (also used for weights and prefetch). */
bool kiln_glob_match(const char *pattern, const char *path);

/*
 * Clean PATH lexically as Go's filepath.Clean does (Docker's rule for ignore patterns; also used to
 * check where symlinks point): one slash between components, no "." components, ".." resolved where
 * possible, no trailing slash; "" becomes ".". The result is the caller's (NULL when memory runs out).
 */
char *kiln_path_clean(const char *path);

#endif
