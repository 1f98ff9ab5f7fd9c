/* SPDX-License-Identifier: Apache-2.0 */
/* fs.c: stat fingerprints, atomic writes, directories and small files. */
#include "common/fs.h"
#include "common/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void kiln_stat_fp_from(struct kiln_stat_fp *out, const struct stat *st)
{
	out->dev = (uint64_t)st->st_dev;
	out->ino = (uint64_t)st->st_ino;
	out->size = (uint64_t)st->st_size;
	out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	out->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

bool kiln_stat_fp_equal(const struct kiln_stat_fp *a, const struct kiln_stat_fp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
	       a->ctime_ns == b->ctime_ns;
}

int kiln_mkdir_p(const char *path, struct kiln_error **err)
{
	return kiln_mkdir_p_mode(path, 0755, err);
}

int kiln_mkdir_p_mode(const char *path, mode_t mode, struct kiln_error **err)
{
	if (*path == '\0')
		return kiln_error_set(err, KILN_EINVAL, "cannot create a directory with an empty name");
	_cleanup_free_ char *p = strdup(path);
	if (p == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return kiln_error_errno(err, errno, "cannot create directory '%s'", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return kiln_error_errno(err, errno, "cannot create directory '%s'", p);
	return 0;
}

/* kiln_open_beneath without openat2: REL walked one component at a time, none of them a link. */
static int open_beneath_walk(int dirfd, const char *rel, int flags)
{
	if (*rel == '/') {
		errno = EXDEV;
		return -1;
	}
	_cleanup_free_ char *copy = strdup(rel);
	if (copy == NULL)
		return -1;
	int fd = -1;
	char *p = copy;
	for (;;) {
		while (*p == '/')
			p++;
		char *end = p + strcspn(p, "/");
		bool last = *end == '\0' || end[strspn(end, "/")] == '\0';
		*end = '\0';
		if (strcmp(p, "..") == 0) {
			if (fd >= 0)
				close(fd);
			errno = EXDEV;
			return -1;
		}
		int base = fd >= 0 ? fd : dirfd;
		const char *name = *p ? p : ".";
		int next = last ? openat(base, name, flags | O_NOFOLLOW | O_CLOEXEC)
		                : openat(base, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		struct stat st; /* O_NOFOLLOW with O_DIRECTORY says ENOTDIR for a link: openat2 says ELOOP */
		if (next < 0 && e == ENOTDIR && fstatat(base, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(st.st_mode))
			e = ELOOP;
		if (fd >= 0)
			close(fd);
		if (next < 0) {
			errno = e;
			return -1;
		}
		if (last)
			return next;
		fd = next;
		p = end + 1;
	}
}

int kiln_open_beneath(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	long fd = syscall(SYS_openat2, dirfd, *rel ? rel : ".", &how, sizeof(how));
	if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
		return (int)fd;
	return open_beneath_walk(dirfd, rel, flags); /* no openat2 here (before Linux 5.6, or filtered) */
}

int kiln_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int kiln_fsync_parent(const char *path, struct kiln_error **err)
{
	_cleanup_free_ char *copy = strdup(path);
	if (copy == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	const char *dir = dirname(copy);
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return kiln_error_errno(err, errno, "cannot sync directory '%s'", dir);
	return 0;
}

/* kiln_write_file_atomic's work; MODE (mode_t)-1: as open(2) makes it with 0644 and the umask. */
static int write_atomic(const char *path, const void *data, size_t len, mode_t mode, struct kiln_error **err)
{
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.tmp-%d", path, (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create '%s'", tmp);
	if (kiln_write_all(fd, data, len) < 0 || (mode != (mode_t)-1 && fchmod(fd, mode) < 0) ||
	    fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", path);
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", path);
	}
	return kiln_fsync_parent(path, err);
}

int kiln_write_file_atomic(const char *path, const void *data, size_t len, struct kiln_error **err)
{
	return write_atomic(path, data, len, (mode_t)-1, err);
}

int kiln_write_file_atomic_mode(const char *path, const void *data, size_t len, mode_t mode,
                                struct kiln_error **err)
{
	return write_atomic(path, data, len, mode, err);
}

int kiln_read_file(char **out, size_t *len, const char *path, size_t max_len, struct kiln_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", path);
	struct stat st;
	if (fstat(fd, &st) < 0)
		return kiln_error_errno(err, errno, "cannot stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return kiln_error_set(err, KILN_EINVAL, "'%s' is not a regular file", path);
	if ((uint64_t)st.st_size > max_len)
		return kiln_error_set(err, KILN_EINVAL, "'%s' is too large (%lld bytes, at most %zu)", path,
		                      (long long)st.st_size, max_len);
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_error_errno(err, errno, "cannot read '%s'", path);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (len)
		*len = got;
	*out = steal_pointer(&buf);
	return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

bool kiln_tmp_name_stale(const char *name)
{
	char *end = NULL;
	long pid = strtol(name, &end, 10);
	return end != name && *end == '-' && pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int kiln_remove_tree(const char *path, struct kiln_error **err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : kiln_error_errno(err, errno, "cannot remove '%s'", path);
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return kiln_error_errno(err, errno, "cannot remove '%s'", path);
	return 0;
}

char *kiln_path_join(const char *a, const char *b)
{
	char *out = NULL;
	size_t la = strlen(a);
	bool slash = la > 0 && a[la - 1] == '/';
	if (asprintf(&out, "%s%s%s", a, slash ? "" : "/", b) < 0)
		return NULL;
	return out;
}

double kiln_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
