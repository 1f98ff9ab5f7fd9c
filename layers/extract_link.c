/* SPDX-License-Identifier: Apache-2.0 */
/* extract_link.c: a layer extracted once put into another root by hard links, never reaching outside it. */
#include "common/buf.h"
#include "common/cleanup.h"
#include "layers/extract.h"
#include "layers/extract_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct linker {
	struct kiln_buf rel; /* the path at hand, relative to both trees, for messages */
	struct kiln_extract_stats st;
};

static int link_dir(struct linker *l, int src, int dst, struct kiln_error **err);

/* The symbolic link NAME of SRC copied to NAME of DST. */
static int copy_symlink(struct linker *l, int src, int dst, const char *name, struct kiln_error **err)
{
	char target[PATH_MAX];
	ssize_t n = readlinkat(src, name, target, sizeof(target));
	if (n < 0)
		return kiln_error_errno(err, errno, "cannot read the symbolic link '%s'", l->rel.ptr);
	if ((size_t)n >= sizeof(target))
		return kiln_error_set(err, KILN_EINVAL, "the symbolic link '%s' has too long a target",
		                      l->rel.ptr);
	target[n] = '\0';
	if (symlinkat(target, dst, name) < 0)
		return kiln_error_errno(err, errno, "cannot make '%s'", l->rel.ptr);
	l->st.symlinks++;
	return 0;
}

/* The file NAME of SRC (ST) hard-linked as NAME of DST, its mode made safe first. */
static int link_file(struct linker *l, int src, int dst, const char *name, const struct stat *st,
                     struct kiln_error **err)
{
	mode_t safe = kiln_extract_host_mode(st->st_mode & 07777, false);
	if (S_ISREG(st->st_mode) && safe != (st->st_mode & 07777) && fchmodat(src, name, safe, 0) < 0)
		return kiln_error_errno(err, errno, "cannot change the mode of '%s'", l->rel.ptr);
	if (linkat(src, name, dst, name, 0) < 0)
		return kiln_error_errno(err, errno, "cannot link '%s'", l->rel.ptr);
	l->st.hardlinks++;
	return 0;
}

/* The directory NAME of SRC (ST) put in DST: made unless DST has one, then filled. */
static int link_subdir(struct linker *l, int src, int dst, const char *name, const struct stat *st, bool have,
                       struct kiln_error **err)
{
	if (!have && mkdirat(dst, name, 0700) < 0)
		return kiln_error_errno(err, errno, "cannot make '%s'", l->rel.ptr);
	_cleanup_close_ int from = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (from < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", l->rel.ptr);
	_cleanup_close_ int to = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (to < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", l->rel.ptr);
	int rc = link_dir(l, from, to, err);
	if (rc < 0 || have)
		return rc;
	const struct timespec times[2] = {st->st_atim, st->st_mtim};
	if (fchmod(to, kiln_extract_host_mode(st->st_mode & 07777, true)) < 0 || futimens(to, times) < 0)
		return kiln_error_errno(err, errno, "cannot set the mode and times of '%s'", l->rel.ptr);
	l->st.dirs++;
	return 0;
}

/* Put NAME of the tree's directory SRC (ST) in its place in DST, replacing what is in the way. */
static int link_one(struct linker *l, int src, int dst, const char *name, const struct stat *st,
                    struct kiln_error **err)
{
	struct stat in;
	bool have = fstatat(dst, name, &in, AT_SYMLINK_NOFOLLOW) == 0;
	if (!have && errno != ENOENT)
		return kiln_error_errno(err, errno, "cannot look at '%s'", l->rel.ptr);
	bool dir = S_ISDIR(st->st_mode);
	if (have && !(dir && S_ISDIR(in.st_mode))) {
		int rc = kiln_dir_remove_at(dst, name, &l->rel, err);
		if (rc < 0)
			return rc;
		have = false;
	}
	l->st.entries++;
	if (dir)
		return link_subdir(l, src, dst, name, st, have, err);
	if (S_ISLNK(st->st_mode))
		return copy_symlink(l, src, dst, name, err);
	return link_file(l, src, dst, name, st, err);
}

/* Put everything in the directory SRC into the directory DST, which is held writable meanwhile. */
static int link_dir(struct linker *l, int src, int dst, struct kiln_error **err)
{
	int copy = dup(src);
	DIR *d = copy >= 0 ? fdopendir(copy) : NULL;
	if (d == NULL) {
		int e = errno;
		if (copy >= 0)
			close(copy);
		return kiln_error_errno(err, e, "cannot read '%s'", *l->rel.ptr ? l->rel.ptr : ".");
	}
	struct kiln_held_dir held;
	kiln_dir_hold(&held, dup(dst));
	size_t len = l->rel.len;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((len > 0 && kiln_buf_put(&l->rel, "/", 1) < 0) ||
		    kiln_buf_puts(&l->rel, de->d_name) < 0) {
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
			break;
		}
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			rc = kiln_error_errno(err, errno, "cannot look at '%s'", l->rel.ptr);
		else
			rc = link_one(l, dirfd(d), dst, de->d_name, &st, err);
		l->rel.len = len;
		l->rel.ptr[len] = '\0';
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = kiln_error_errno(err, errno, "cannot read '%s'", *l->rel.ptr ? l->rel.ptr : ".");
	closedir(d);
	kiln_dir_release(&held);
	return rc;
}

int kiln_layer_link(const char *from, const char *dir, struct kiln_extract_stats *st, struct kiln_error **err)
{
	_cleanup_close_ int src = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (src < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", from);
	_cleanup_close_ int dst = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dst < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", dir);
	struct linker l = {.rel = KILN_BUF_INIT};
	if (kiln_buf_puts(&l.rel, "") < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int rc = link_dir(&l, src, dst, err);
	kiln_buf_release(&l.rel);
	if (st)
		kiln_extract_stats_add(st, &l.st);
	return rc;
}
