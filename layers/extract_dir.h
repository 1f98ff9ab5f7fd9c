/* SPDX-License-Identifier: Apache-2.0 */
/*
 * extract_dir.h: the directory work of layer extraction (private to layers/): the set of paths a layer
 * wrote, directories held writable while an entry changes them, and removal that never follows a link.
 */
#ifndef KILN_LAYERS_EXTRACT_DIR_H
#define KILN_LAYERS_EXTRACT_DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "common/buf.h"
#include "common/error.h"

/* A set of relative paths (open addressing): what the layer being extracted wrote, and their parents. */
struct kiln_pathset {
	char **slot;
	size_t cap; /* a power of two, or 0 */
	size_t n;
};

/* Add REL and every directory above it (0, or -1 when memory runs out). */
int kiln_pathset_add(struct kiln_pathset *p, const char *rel);
/* true when the LEN bytes of S are in the set. */
bool kiln_pathset_has(const struct kiln_pathset *p, const char *s, size_t len);
void kiln_pathset_release(struct kiln_pathset *p);

/*
 * A directory about to change under a layer's entry. It is made writable by its owner for the change (a
 * lower layer may have made it read-only, and only root writes there regardless), and gets its mode and
 * times back afterwards: a layer changes a lower directory's times only with an entry of its own, as with
 * umoci.
 */
struct kiln_held_dir {
	int fd; /* -1: none */
	struct stat st;
	bool relaxed;
};

/* The permission bits PERM of an entry (a directory when DIR), as they are given on this machine. */
mode_t kiln_extract_host_mode(mode_t perm, bool dir);

/* Hold the directory FD (which this takes; -1 is allowed). */
void kiln_dir_hold(struct kiln_held_dir *h, int fd);
/* Put the held directory's mode and times back, and close it. */
void kiln_dir_release(struct kiln_held_dir *h);

/* Remove NAME of the directory DIRFD, whatever it is (a directory with all it holds), never following a
 * link. REL names it in messages (its path relative to the root). */
int kiln_dir_remove_at(int dirfd, const char *name, struct kiln_buf *rel, struct kiln_error **err);

/*
 * Empty the directory FD (which this takes), keeping what KEEP holds (NULL: nothing) and the directories
 * that lead to it; REL is FD's path relative to the root ("" for the root itself), for KEEP and messages.
 * Read-only directories are emptied too; those kept get their mode and times back.
 */
int kiln_dir_clear(int fd, const struct kiln_pathset *keep, struct kiln_buf *rel, struct kiln_error **err);

#endif
