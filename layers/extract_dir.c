/* SPDX-License-Identifier: Apache-2.0 */
/* extract_dir.c: the path set, held directories and link-safe removal of layer extraction. */
#include "layers/extract_dir.h"
#include "layers/extract.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t path_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static char **pathset_find(const struct kiln_pathset *p, const char *s, size_t len)
{
	size_t i = (size_t)path_hash(s, len) & (p->cap - 1);
	while (p->slot[i] && !(strncmp(p->slot[i], s, len) == 0 && p->slot[i][len] == '\0'))
		i = (i + 1) & (p->cap - 1);
	return &p->slot[i];
}

bool kiln_pathset_has(const struct kiln_pathset *p, const char *s, size_t len)
{
	return p->cap > 0 && *pathset_find(p, s, len) != NULL;
}

static int pathset_grow(struct kiln_pathset *p)
{
	struct kiln_pathset q = {.cap = p->cap ? p->cap * 2 : 256, .n = p->n};
	q.slot = calloc(q.cap, sizeof(*q.slot));
	if (q.slot == NULL)
		return -1;
	for (size_t i = 0; i < p->cap; i++)
		if (p->slot[i])
			*pathset_find(&q, p->slot[i], strlen(p->slot[i])) = p->slot[i];
	free(p->slot);
	*p = q;
	return 0;
}

/* Add REL and every directory above it (0, or -1 when memory runs out). */
int kiln_pathset_add(struct kiln_pathset *p, const char *rel)
{
	size_t len = strlen(rel);
	while (len > 0 && !kiln_pathset_has(p, rel, len)) {
		if ((p->n + 1) * 10 > p->cap * 7 && pathset_grow(p) < 0)
			return -1;
		char **at = pathset_find(p, rel, len);
		if ((*at = strndup(rel, len)) == NULL)
			return -1;
		p->n++;
		while (len > 0 && rel[len - 1] != '/')
			len--;
		if (len > 0)
			len--; /* the '/' */
	}
	return 0;
}

void kiln_pathset_release(struct kiln_pathset *p)
{
	for (size_t i = 0; i < p->cap; i++)
		free(p->slot[i]);
	free(p->slot);
	memset(p, 0, sizeof(*p));
}

/* Hold the directory FD (which this takes; -1 is allowed). */
void kiln_dir_hold(struct kiln_held_dir *h, int fd)
{
	h->fd = fd;
	h->relaxed = false;
	if (fd >= 0 && fstat(fd, &h->st) < 0) {
		close(fd);
		h->fd = -1;
	}
	if (h->fd >= 0 && (h->st.st_mode & S_IRWXU) != S_IRWXU)
		h->relaxed = fchmod(fd, (h->st.st_mode & 07777) | S_IRWXU) == 0;
}

/* Put the held directory's mode and times back, and close it. */
void kiln_dir_release(struct kiln_held_dir *h)
{
	if (h->fd < 0)
		return;
	if (h->relaxed)
		(void)fchmod(h->fd, h->st.st_mode & 07777);
	const struct timespec times[2] = {h->st.st_atim, h->st.st_mtim};
	(void)futimens(h->fd, times);
	close(h->fd);
	h->fd = -1;
}

/* Remove NAME of the directory DIRFD, whatever it is, without following links. REL names it. */
int kiln_dir_remove_at(int dirfd, const char *name, struct kiln_buf *rel, struct kiln_error **err)
{
	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return kiln_error_errno(err, errno, "cannot remove '%s'", rel->ptr);
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", rel->ptr);
	int rc = kiln_dir_clear(fd, NULL, rel, err);
	if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = kiln_error_errno(err, errno, "cannot remove '%s'", rel->ptr);
	return rc;
}

int kiln_dir_clear(int fd, const struct kiln_pathset *keep, struct kiln_buf *rel, struct kiln_error **err)
{
	struct kiln_held_dir held;
	kiln_dir_hold(&held, fd);
	int copy = held.fd >= 0 ? dup(held.fd) : -1;
	DIR *d = copy >= 0 ? fdopendir(copy) : NULL;
	if (d == NULL) {
		int e = errno;
		if (copy >= 0)
			close(copy);
		kiln_dir_release(&held);
		return kiln_error_errno(err, e, "cannot read '%s'", rel->ptr);
	}
	size_t len = rel->len;
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((len > 0 && kiln_buf_put(rel, "/", 1) < 0) || kiln_buf_puts(rel, de->d_name) < 0) {
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
			break;
		}
		if (keep == NULL || !kiln_pathset_has(keep, rel->ptr, rel->len)) {
			rc = kiln_dir_remove_at(dirfd(d), de->d_name, rel, err);
		} else {
			struct stat st;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISDIR(st.st_mode)) {
				int sub = openat(dirfd(d), de->d_name,
				                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
				rc = sub < 0 ? kiln_error_errno(err, errno, "cannot open '%s'", rel->ptr)
				             : kiln_dir_clear(sub, keep, rel, err);
			}
		}
		rel->len = len;
		rel->ptr[len] = '\0';
	}
	if (rc == 0 && errno != 0)
		rc = kiln_error_errno(err, errno, "cannot read '%s'", rel->ptr);
	closedir(d);
	if (keep)
		kiln_dir_release(&held);
	else
		close(held.fd); /* it goes */
	return rc;
}

int kiln_extract_remove(const char *path, struct kiln_error **err)
{
	_cleanup_buf_ struct kiln_buf rel = KILN_BUF_INIT;
	if (kiln_buf_puts(&rel, path) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return kiln_dir_remove_at(AT_FDCWD, path, &rel, err);
}
