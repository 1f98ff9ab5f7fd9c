/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rootfs.h: root filesystems for the build's steps. A base's root is unpacked once into the store
 * ($KILN_HOME/roots/HEX, complete or absent) from its layers, fetched from its registry first when the
 * store lacks them; steps run in a private copy of it, whose changes become layers (rootfs_diff).
 */
#ifndef KILN_ROOTFS_H
#define KILN_ROOTFS_H

#include <stddef.h>

#include "common/error.h"
#include "layers/tar.h"
#include "pkg/image.h"
#include "pkg/store.h"
#include "registry/client.h"

/* The key of BASE's root: a digest over its config's rootfs.diff_ids (64 hex digits). */
void kiln_rootfs_key(char out[65], const struct kiln_base *base);

/* BASE's root, unpacked in the store (made when it is not there yet); *dir is the caller's to free. */
int kiln_rootfs_base(char **dir, struct kiln_store *s, const struct kiln_base *base,
                     const struct kiln_registry_options *ropt, struct kiln_error **err);

/* A private, writable copy of the root DIR in the store's temporary space; removed by
 * kiln_rootfs_discard (also after a failure). */
int kiln_rootfs_copy(char **out, struct kiln_store *s, const char *dir, struct kiln_error **err);
void kiln_rootfs_discard(const char *dir);

/* A read-only view of the root DIR (one kept in roots/), kept next to it as DIR.view: its directories
 * made anew, its files hard links to DIR's (so it costs no data, and nothing may write through it: mount
 * it read-only). Mount points can be made in its directories, and stay, without touching DIR. Made once
 * (complete or absent); *out is the caller's to free. */
int kiln_rootfs_view(char **out, struct kiln_store *s, const char *dir, struct kiln_error **err);

/* The root that a chain of build steps left, kept in the store as roots/KEY (KEY: the chain's 64-hex
 * key): *dir is NULL when it is not there. kiln_rootfs_keep moves the finished root WORK (made by
 * kiln_rootfs_copy) there; after a failure WORK is left to the caller. Complete or absent. */
int kiln_rootfs_chain(char **dir, struct kiln_store *s, const char *key, struct kiln_error **err);
int kiln_rootfs_keep(char **dir, struct kiln_store *s, const char *work, const char *key,
                     struct kiln_error **err);

/* What a root held before a step: every path with its type, mode, owner, size, inode, mtime and ctime. */
struct kiln_rootfs_snapshot;
int kiln_rootfs_snapshot(struct kiln_rootfs_snapshot **out, const char *root, struct kiln_error **err);
void kiln_rootfs_snapshot_free(struct kiln_rootfs_snapshot *snap);

/*
 * The layer entries for what changed in ROOT since SNAP: added and changed files, links and directories
 * (ownership kept), and an OCI whiteout for each path that is gone. EXCLUDE (NULL-ended, absolute
 * paths in the root; may be NULL) are left out whatever happened to them (secret mount points, /tmp).
 */
int kiln_rootfs_diff(struct kiln_tar_entry **entries, size_t *n, const struct kiln_rootfs_snapshot *snap,
                     const char *root, const char *const *exclude, struct kiln_error **err);

#endif
