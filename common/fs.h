/* SPDX-License-Identifier: Apache-2.0 */
/* fs.h: small filesystem helpers: stat fingerprints, atomic writes, directories, whole small files. */
#ifndef KILN_FS_H
#define KILN_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common/error.h"

/*
 * What identifies a file's content without reading it: if any of these differ, the file may have
 * changed. Used by the stat cache and to verify that a weight file is still what was hashed.
 */
struct kiln_stat_fp {
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
};

void kiln_stat_fp_from(struct kiln_stat_fp *out, const struct stat *st);
bool kiln_stat_fp_equal(const struct kiln_stat_fp *a, const struct kiln_stat_fp *b);

/* mkdir -p with mode 0755; existing directories are fine. */
int kiln_mkdir_p(const char *path, struct kiln_error **err);

/* mkdir -p giving MODE (less the umask) to each directory it makes; existing directories keep theirs. */
int kiln_mkdir_p_mode(const char *path, mode_t mode, struct kiln_error **err);

/*
 * Open REL, a path relative to the directory DIRFD ("" is DIRFD itself), confined to it: no ".."
 * component, no absolute path (both EXDEV) and no symbolic link on the way or at the end (ELOOP), so
 * whatever links a tree holds, nothing outside DIRFD is reached. FLAGS as open(2)'s, without O_CREAT;
 * O_CLOEXEC is added. openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, or
 * one component at a time with O_NOFOLLOW where the kernel has no openat2. A descriptor, or -1 and errno.
 */
int kiln_open_beneath(int dirfd, const char *rel, int flags);

/*
 * Write DATA to PATH atomically: a temporary file beside it, fsync, rename, fsync of the directory.
 * On failure PATH is untouched and the temporary file is removed.
 */
int kiln_write_file_atomic(const char *path, const void *data, size_t len, struct kiln_error **err);
/* The same, the file's permission bits MODE (not the umask's). */
int kiln_write_file_atomic_mode(const char *path, const void *data, size_t len, mode_t mode,
                                struct kiln_error **err);

/* Read a whole (small) file; *out is NUL-terminated and owned by the caller. At most max_len bytes. */
int kiln_read_file(char **out, size_t *len, const char *path, size_t max_len, struct kiln_error **err);

/* Write all of LEN bytes to fd, retrying short writes and EINTR; sets errno and returns -1 on failure. */
int kiln_write_all(int fd, const void *data, size_t len);

/* fsync the directory that holds PATH. */
int kiln_fsync_parent(const char *path, struct kiln_error **err);

/* true when NAME is a temporary file's "<pid>-..." and that process is gone (the file is stale). */
bool kiln_tmp_name_stale(const char *name);

/* rm -rf PATH; a missing PATH is fine. */
int kiln_remove_tree(const char *path, struct kiln_error **err);

/* Seconds on the monotonic clock (for durations). */
double kiln_monotonic(void);

/* Join two path parts with one '/'; the result is owned by the caller (NULL when memory runs out). */
char *kiln_path_join(const char *a, const char *b);

#endif
