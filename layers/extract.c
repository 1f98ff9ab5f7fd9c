/* SPDX-License-Identifier: Apache-2.0 */
/* extract.c: extracting a tar layer into a directory with libarchive, whiteouts applied, escapes refused. */
#include "layers/extract.h"
#include "layers/extract_dir.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "layers/digest.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_BUF_SIZE   (256 * 1024)
#define WHITEOUT        ".wh."
#define WHITEOUT_META   ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"

struct extract {
	const char *root; /* the real path of DIR */
	size_t root_len;
	int rootfd;
	struct kiln_blob_reader *rd;
	struct kiln_sha256 *hash; /* NULL when the reader checks the digest */
	const struct kiln_extract_options *opt;
	struct kiln_extract_stats st;
	struct archive *in;
	struct archive *out;
	unsigned char *buf;
	struct kiln_error *read_err; /* why the read callback failed */
	struct kiln_pathset upper;
	uint64_t expanded; /* the layer's size as a tar so far: 512 bytes and the apparent size per entry */
	uint64_t max_expanded; /* the most it may be */
};

/*
 * Make NAME relative and clean into OUT (strlen(NAME) + 1 bytes): no leading '/', no '.' components,
 * no repeated or trailing '/'. -1 when a component is "..".
 */
static int clean_name(char *out, const char *name)
{
	size_t n = 0;
	const char *p = name;
	while (*p) {
		while (*p == '/')
			p++;
		const char *c = p;
		while (*p && *p != '/')
			p++;
		size_t len = (size_t)(p - c);
		if (len == 0 || (len == 1 && c[0] == '.'))
			continue;
		if (len == 2 && c[0] == '.' && c[1] == '.')
			return -1;
		if (n > 0)
			out[n++] = '/';
		memcpy(out + n, c, len);
		n += len;
	}
	out[n] = '\0';
	return 0;
}

enum { PARENTS_DIRS, PARENTS_MISSING, PARENTS_NOT_DIR };

/*
 * Look at each directory above REL: the existing ones must be directories, never symbolic links
 * (KILN_EINVAL naming ENTRY and the link). Returns PARENTS_DIRS when all exist, PARENTS_MISSING when one
 * does not (those below it do not either), PARENTS_NOT_DIR when one is some other kind of file.
 */
static int check_parents(struct extract *x, const char *entry, char *rel, struct kiln_error **err)
{
	for (char *slash = strchr(rel, '/'); slash; slash = strchr(slash + 1, '/')) {
		struct stat st;
		*slash = '\0';
		int r = fstatat(x->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW);
		int e = errno;
		if (r == 0 && S_ISLNK(st.st_mode)) {
			kiln_error_set(err, KILN_EINVAL, "entry '%s' goes through the symbolic link '%s'",
			               entry, rel);
			*slash = '/';
			return KILN_EINVAL;
		}
		if (r < 0 && e != ENOENT && e != ENOTDIR) {
			int code = kiln_error_errno(err, e, "cannot look at '%s'", rel);
			*slash = '/';
			return code;
		}
		*slash = '/';
		if (r < 0)
			return e == ENOENT ? PARENTS_MISSING : PARENTS_NOT_DIR;
		if (!S_ISDIR(st.st_mode))
			return PARENTS_NOT_DIR;
	}
	return PARENTS_DIRS;
}

/* Open the directory REL (relative, its parents checked; "" is the root), no link followed on the way. */
static int open_dir(struct extract *x, const char *rel)
{
	return kiln_open_beneath(x->rootfd, rel, O_RDONLY | O_DIRECTORY);
}

/* Apply the whiteout REL (its last component starts with ".wh."), entry ENTRY of the layer. */
static int apply_whiteout(struct extract *x, const char *entry, char *rel, struct kiln_error **err)
{
	char *base = strrchr(rel, '/');
	base = base ? base + 1 : rel;
	bool opaque = strcmp(base, WHITEOUT_OPAQUE) == 0;
	if (!opaque && strncmp(base, WHITEOUT_META, strlen(WHITEOUT_META)) == 0)
		return 0; /* aufs metadata */
	const char *name = base + strlen(WHITEOUT);
	if (!opaque && (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0))
		return kiln_error_set(err, KILN_EINVAL, "entry '%s' is not a valid whiteout", entry);
	int rc = check_parents(x, entry, rel, err);
	if (rc < 0)
		return rc;
	x->st.whiteouts++;
	if (rc != PARENTS_DIRS)
		return 0; /* nothing below to hide */

	_cleanup_buf_ struct kiln_buf path = KILN_BUF_INIT;
	if (kiln_buf_put(&path, rel, (size_t)(base - rel)) < 0 || (!opaque && kiln_buf_puts(&path, name) < 0))
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (!opaque && kiln_pathset_has(&x->upper, path.ptr, path.len))
		return 0; /* the layer's own: a whiteout hides lower layers only */
	if (path.len > 0 && path.ptr[path.len - 1] == '/')
		path.ptr[--path.len] = '\0';
	if (!opaque) {
		_cleanup_free_ char *parent = strndup(rel, base > rel ? (size_t)(base - rel - 1) : 0);
		int fd = parent ? open_dir(x, parent) : -1;
		if (fd < 0)
			return kiln_error_errno(err, errno, "cannot open the directory of '%s'", entry);
		struct kiln_held_dir held;
		kiln_dir_hold(&held, fd);
		rc = kiln_dir_remove_at(held.fd, name, &path, err);
		kiln_dir_release(&held);
		return rc;
	}
	int fd = open_dir(x, path.ptr);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open the directory of '%s'", entry);
	return kiln_dir_clear(fd, &x->upper, &path, err);
}

/* The failure of the layer's reading: the reader's own error, else libarchive's. */
static int read_failed(struct extract *x, struct kiln_error **err)
{
	if (x->read_err) {
		int code = x->read_err->code;
		if (err) {
			kiln_error_free(*err);
			*err = steal_pointer(&x->read_err);
		}
		return code;
	}
	return kiln_error_set(err, KILN_EIO, "cannot read the layer: %s", archive_error_string(x->in));
}

static int cancelled(struct extract *x, struct kiln_error **err)
{
	return x->opt->cancel && *x->opt->cancel ? kiln_error_set(err, KILN_EINTR, "interrupted") : 0;
}

/* libarchive could not write ENTRY: a refusal (KILN_EINVAL), or the disk's failure (errno's code). */
static int write_failed(struct extract *x, const char *entry, struct kiln_error **err)
{
	int e = archive_errno(x->out);
	int code = e == ENOSPC               ? KILN_ENOSPC
	           : e == EINTR              ? KILN_EINTR
	           : e == EIO || e == EDQUOT ? KILN_EIO
	                                     : KILN_EINVAL;
	return kiln_error_set(err, code, "cannot extract entry '%s': %s", entry,
	                      archive_error_string(x->out));
}

static int copy_data(struct extract *x, const char *entry, struct kiln_error **err)
{
	for (;;) {
		const void *buf;
		size_t size;
		la_int64_t offset;
		int r = archive_read_data_block(x->in, &buf, &size, &offset);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return read_failed(x, err);
		if (archive_write_data_block(x->out, buf, size, offset) < ARCHIVE_WARN)
			return write_failed(x, entry, err);
		x->st.bytes += size;
		if (cancelled(x, err) < 0)
			return KILN_EINTR;
	}
}

/* Check and resolve the hard link target of E (entry ENTRY) to its path under the root. */
static int resolve_hardlink(struct extract *x, struct archive_entry *e, const char *entry,
                            struct kiln_error **err)
{
	const char *target = archive_entry_hardlink(e);
	_cleanup_free_ char *rel = malloc(strlen(target) + 1);
	_cleanup_free_ char *full = NULL;
	if (rel == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (clean_name(rel, target) < 0)
		return kiln_error_set(err, KILN_EINVAL,
		                      "entry '%s' is a hard link to '%s', outside the image", entry, target);
	int rc = check_parents(x, entry, rel, err);
	if (rc < 0)
		return rc;
	struct stat st;
	if (*rel == '\0' || rc != PARENTS_DIRS || fstatat(x->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    S_ISDIR(st.st_mode))
		return kiln_error_set(err, KILN_EINVAL,
		                      "entry '%s' is a hard link to '%s', which is not a file of the image",
		                      entry, target);
	if (asprintf(&full, "%s/%s", x->root, rel) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	archive_entry_set_hardlink(e, full);
	return 0;
}

/* The deepest existing directory above REL (whose parents were checked), opened; -1 when none is. */
static int deepest_dir(struct extract *x, const char *rel)
{
	_cleanup_free_ char *p = strdup(rel);
	if (p == NULL)
		return -1;
	for (;;) {
		char *slash = strrchr(p, '/');
		if (slash == NULL)
			return open_dir(x, "");
		*slash = '\0';
		int fd = open_dir(x, p);
		if (fd >= 0 || errno != ENOENT)
			return fd;
	}
}

/* Put the entry E (named ENTRY, REL once cleaned) in its place, its parents checked and writable. */
static int put_entry(struct extract *x, struct archive_entry *e, const char *entry, const char *rel, bool dir,
                     struct kiln_error **err)
{
	/* A directory in the entry's place goes (libarchive replaces all but a directory). */
	struct stat st;
	int rc;
	const char *base = strrchr(rel, '/');
	_cleanup_free_ char *up = strndup(rel, base ? (size_t)(base - rel) : 0);
	if (up == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_close_ int upfd = dir ? -1 : open_dir(x, up);
	base = base ? base + 1 : rel;
	if (upfd >= 0 && fstatat(upfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		_cleanup_buf_ struct kiln_buf shown = KILN_BUF_INIT;
		if (kiln_buf_puts(&shown, rel) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		if ((rc = kiln_dir_remove_at(upfd, base, &shown, err)) < 0)
			return rc;
	}
	_cleanup_free_ char *full = NULL;
	if (asprintf(&full, "%s/%s", x->root, rel) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	archive_entry_set_pathname(e, full);
	if (archive_write_header(x->out, e) < ARCHIVE_WARN)
		return write_failed(x, entry, err);
	if (archive_entry_size(e) > 0 && (rc = copy_data(x, entry, err)) < 0)
		return rc;
	if (archive_write_finish_entry(x->out) < ARCHIVE_WARN)
		return write_failed(x, entry, err);
	return 0;
}

/* Write the entry E named ENTRY, REL once cleaned, under the root. */
static int write_entry(struct extract *x, struct archive_entry *e, const char *entry, char *rel,
                       struct kiln_error **err)
{
	mode_t type = archive_entry_filetype(e);
	bool hardlink = archive_entry_hardlink(e) != NULL;
	if (!hardlink && (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK)) {
		x->st.skipped++;
		return 0;
	}
	/* Data in a hard link entry (pax allows it) would be written into the file linked to, which may be
	 * shared with kiln's cache of weight layers (kiln predict links those into the roots it makes). */
	if (hardlink && archive_entry_size(e) > 0)
		return kiln_error_set(err, KILN_EINVAL, "entry '%s' is a hard link that carries data", entry);
	int rc = check_parents(x, entry, rel, err);
	if (rc < 0)
		return rc;
	if (hardlink && (rc = resolve_hardlink(x, e, entry, err)) < 0)
		return rc;
	bool dir = !hardlink && type == AE_IFDIR;
	if (!hardlink && type != AE_IFLNK)
		archive_entry_set_perm(e, kiln_extract_host_mode(archive_entry_perm(e), dir));
	struct kiln_held_dir parent;
	kiln_dir_hold(&parent, deepest_dir(x, rel));
	rc = put_entry(x, e, entry, rel, dir, err);
	kiln_dir_release(&parent);
	if (rc < 0)
		return rc;
	if (kiln_pathset_add(&x->upper, rel) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (hardlink)
		x->st.hardlinks++;
	else if (type == AE_IFREG)
		x->st.files++;
	else if (dir)
		x->st.dirs++;
	else if (type == AE_IFLNK)
		x->st.symlinks++;
	else
		x->st.others++;
	return 0;
}

/* Read, check and apply one entry E. */
static int extract_entry(struct extract *x, struct archive_entry *e, struct kiln_error **err)
{
	const char *name = archive_entry_pathname(e);
	if (name == NULL)
		name = archive_entry_pathname_utf8(e);
	if (name == NULL)
		return kiln_error_set(err, KILN_EINVAL, "entry %llu has no readable name",
		                      (unsigned long long)x->st.entries);
	/* A copy: E's own name changes when it is given its place under the root. */
	_cleanup_free_ char *entry = strdup(name);
	if (entry == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_free_ char *rel = malloc(strlen(entry) + 1);
	if (rel == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (clean_name(rel, entry) < 0)
		return kiln_error_set(err, KILN_EINVAL, "entry '%s' has a '..' component", entry);
	if (*rel == '\0')
		return 0; /* the root itself: DIR keeps its own mode */
	if (x->root_len + 1 + strlen(rel) >= PATH_MAX)
		return kiln_error_set(err, KILN_EINVAL, "entry '%.80s...' has too long a name", entry);
	/* Counted before anything of the entry is written: a sparse file counts with its apparent size. */
	la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	x->expanded += 512 + (uint64_t)(size > 0 ? size : 0);
	if (x->expanded > x->max_expanded)
		return kiln_error_set(err, KILN_EINVAL,
		                      "entry '%s' makes the layer expand to more than %llu bytes (%d times "
		                      "its %llu bytes, plus %d MiB)",
		                      entry, (unsigned long long)x->max_expanded, KILN_EXTRACT_RATIO,
		                      (unsigned long long)kiln_blob_reader_size(x->rd),
		                      (int)(KILN_EXTRACT_FLOOR >> 20));
	/* A whiteout is a last component: one higher up would make a ".wh." directory. */
	for (const char *c = rel; c != NULL;) {
		const char *next = strchr(c, '/');
		if (strncmp(c, WHITEOUT, strlen(WHITEOUT)) == 0)
			return next ? kiln_error_set(err, KILN_EINVAL, "entry '%s' is inside a whiteout",
			                             entry)
			            : apply_whiteout(x, entry, rel, err);
		c = next ? next + 1 : NULL;
	}
	return write_entry(x, e, entry, rel, err);
}

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **out)
{
	struct extract *x = ctx;
	if (cancelled(x, &x->read_err) < 0) {
		archive_set_error(a, EINTR, "interrupted");
		return -1;
	}
	ssize_t n = kiln_blob_reader_read(x->rd, x->buf, READ_BUF_SIZE, &x->read_err);
	if (n < 0) {
		if (x->read_err == NULL)
			kiln_error_set(&x->read_err, (int)n, "cannot read the layer");
		archive_set_error(a, EIO, "%s", x->read_err->message);
		return -1;
	}
	if (x->hash)
		kiln_sha256_update(x->hash, x->buf, (size_t)n);
	x->st.blob_bytes += (uint64_t)n;
	if (n > 0 && x->opt->progress)
		x->opt->progress(x->opt->progress_ctx, (uint64_t)n);
	*out = x->buf;
	return n;
}

static int open_archive(struct extract *x, struct kiln_error **err)
{
	x->in = archive_read_new();
	x->out = archive_write_disk_new();
	if (x->in == NULL || x->out == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	archive_read_support_format_tar(x->in);
	if (x->opt->filter == KILN_EXTRACT_GZIP)
		archive_read_support_filter_gzip(x->in);
	else if (x->opt->filter == KILN_EXTRACT_ZSTD && archive_read_support_filter_zstd(x->in) != ARCHIVE_OK)
		return kiln_error_set(err, KILN_EINVAL, "zstd layers are not supported: %s",
		                      archive_error_string(x->in));
	/* Names are made absolute under the root by us, after our own checks: libarchive checks again for
	 * '..' and for links on the way (the root's real path has none). Ownership is never restored: see
	 * extract.h. */
	archive_write_disk_set_options(x->out, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
	                                           ARCHIVE_EXTRACT_SECURE_NODOTDOT |
	                                           ARCHIVE_EXTRACT_SECURE_SYMLINKS);
	if (archive_read_open(x->in, x, NULL, read_cb, NULL) != ARCHIVE_OK)
		return read_failed(x, err);
	return 0;
}

/* Read what libarchive left of the blob (padding after the end of the tar) and check the digest. */
static int finish_blob(struct extract *x, const char *digest, struct kiln_error **err)
{
	ssize_t n;
	while ((n = kiln_blob_reader_read(x->rd, x->buf, READ_BUF_SIZE, err)) > 0) {
		if (x->hash)
			kiln_sha256_update(x->hash, x->buf, (size_t)n);
		x->st.blob_bytes += (uint64_t)n;
		if (x->opt->progress)
			x->opt->progress(x->opt->progress_ctx, (uint64_t)n);
	}
	if (n < 0)
		return (int)n;
	if (x->hash == NULL)
		return 0;
	char got[KILN_DIGEST_LEN];
	kiln_sha256_final(x->hash, got);
	if (strcmp(got, digest) != 0)
		return kiln_error_set(err, KILN_EIO, "the blob's content has digest %s, not %s", got, digest);
	return 0;
}

static int extract_all(struct extract *x, const char *digest, struct kiln_error **err)
{
	int rc = open_archive(x, err);
	struct archive_entry *e;
	while (rc == 0 && (rc = cancelled(x, err)) == 0) {
		int r = archive_read_next_header(x->in, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return read_failed(x, err);
		x->st.entries++;
		rc = extract_entry(x, e, err);
	}
	if (rc < 0)
		return rc;
	if (archive_write_close(x->out) < ARCHIVE_WARN)
		return kiln_error_set(err, KILN_EIO, "cannot finish the extraction: %s",
		                      archive_error_string(x->out));
	return finish_blob(x, digest, err);
}

int kiln_layer_extract(struct kiln_blob_reader *rd, const char *digest, const char *dir,
                       const struct kiln_extract_options *opt, struct kiln_extract_stats *st,
                       struct kiln_error **err)
{
	static const struct kiln_extract_options defaults = {.filter = KILN_EXTRACT_GZIP};
	struct extract x = {.rd = rd, .opt = opt ? opt : &defaults, .rootfd = -1};
	_cleanup_free_ char *root = realpath(dir, NULL);
	if (root == NULL)
		return kiln_error_errno(err, errno, "cannot open '%s'", dir);
	x.root = root;
	x.root_len = strlen(root);
	uint64_t blob = kiln_blob_reader_size(rd);
	x.max_expanded = x.opt->max_expanded ? x.opt->max_expanded
	                 : blob > (UINT64_MAX - KILN_EXTRACT_FLOOR) / KILN_EXTRACT_RATIO
	                     ? UINT64_MAX
	                     : KILN_EXTRACT_FLOOR + KILN_EXTRACT_RATIO * blob;
	x.rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (x.rootfd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", dir);
	int rc = 0;
	x.buf = malloc(READ_BUF_SIZE);
	if (x.buf == NULL)
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (rc == 0 && digest)
		rc = kiln_sha256_new(&x.hash, err);
	if (rc == 0)
		rc = extract_all(&x, digest, err);
	if (x.in)
		archive_read_free(x.in);
	if (x.out)
		archive_write_free(x.out); /* also sets the modes and times of the directories made */
	kiln_sha256_free(x.hash);
	kiln_error_free(x.read_err);
	kiln_pathset_release(&x.upper);
	free(x.buf);
	close(x.rootfd);
	if (st)
		kiln_extract_stats_add(st, &x.st);
	return rc;
}

mode_t kiln_extract_host_mode(mode_t perm, bool dir)
{
	perm &= (mode_t) ~(S_ISUID | S_ISGID | S_IWOTH);
	if (!dir || !(perm & S_IWGRP))
		perm &= (mode_t)~S_ISVTX; /* it restricts removal only in a directory others may write */
	return perm;
}

void kiln_extract_stats_add(struct kiln_extract_stats *a, const struct kiln_extract_stats *b)
{
	a->entries += b->entries;
	a->files += b->files;
	a->dirs += b->dirs;
	a->symlinks += b->symlinks;
	a->hardlinks += b->hardlinks;
	a->others += b->others;
	a->whiteouts += b->whiteouts;
	a->skipped += b->skipped;
	a->bytes += b->bytes;
	a->blob_bytes += b->blob_bytes;
}
