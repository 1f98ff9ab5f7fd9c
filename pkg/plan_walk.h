/* SPDX-License-Identifier: Apache-2.0 */
/*
 * plan_walk.h: private to pkg/plan*.c. The walk over the project directory that the plan is made from,
 * and the classification of what it found into weights and code.
 */
#ifndef KILN_PLAN_WALK_H
#define KILN_PLAN_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "pkg/plan.h"

/* One thing found in the project that goes into the image. */
struct plan_item {
	char *rel; /* project-relative path */
	enum kiln_tar_type type;
	struct stat st;
	char *link; /* KILN_TAR_SYMLINK: the target to record */
	bool weight;
	size_t layer;
	char *source; /* the file to read (absolute), where it is not the project's REL; else NULL */
};

/* A walk over the project: what it found, and the files it left out for their type. */
struct plan_walk {
	const struct kiln_ignore *ig;
	const char *root;   /* realpath of the project directory */
	const char *absdir; /* the project directory as given, made absolute and cleaned */
	struct plan_item *v;
	size_t n, cap;
	char **skipped;
	size_t nskipped, capskipped;
};

/* ---- plan_walk.c ---- */

/*
 * Walk the project directory DIRFD (W->root; W->ig and W->absdir are the caller's too) in name order,
 * honouring the ignore rules: W->v gets the files, symlinks and empty directories that go into the image,
 * W->skipped the files left out for their type (sockets, fifos, devices), both sorted by path. Errors name
 * the file: a symlink that points outside the project, a file that cannot be read.
 */
int plan_walk_project(struct plan_walk *w, int dirfd, struct kiln_error **err);

/*
 * Make MANIFEST (the file the project was built with, -f) the manifest the image's runtime reads: unless
 * the walk's kiln.yaml (else cog.yaml) is that file already, W gets a kiln.yaml read from MANIFEST, in
 * place of the project's own.
 */
int plan_walk_set_manifest(struct plan_walk *w, const char *manifest, struct kiln_error **err);

/* Free what W holds (its items and skipped names, unless taken); W itself is the caller's. */
void plan_walk_release(struct plan_walk *w);

/* The directory part of a project-relative path ("" at the top). Returns its length. */
size_t plan_dir_len(const char *rel);

/* ---- plan_weights.c: which files are weights ---- */

/* The manifest's weights globs: mark matching files; each glob must match at least one. */
int plan_classify_globs(struct plan_walk *w, const struct kiln_manifest *m, struct kiln_error **err);

/* Cog's rule for finding weights without being told (see plan_weights.c), with its size THRESHOLD. */
int plan_classify_cog(struct plan_walk *w, uint64_t threshold, struct kiln_error **err);

#endif
