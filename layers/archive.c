/* SPDX-License-Identifier: Apache-2.0 */
/* archive.c: writing oci-archive tars and listing layer tars, with libarchive. */
#include "layers/archive.h"
#include "common/fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct kiln_archive {
	struct archive *a;
	int fd;
	int64_t mtime;
	int write_errno; /* errno of the last failed write to fd */
};

static la_ssize_t write_cb(struct archive *ar, void *ctx, const void *buf, size_t len)
{
	struct kiln_archive *a = ctx;
	if (kiln_write_all(a->fd, buf, len) < 0) {
		a->write_errno = errno;
		archive_set_error(ar, errno, "%s", strerror(errno));
		return -1;
	}
	return (la_ssize_t)len;
}

static int fail(struct kiln_archive *a, struct kiln_error **err, const char *what)
{
	if (a->write_errno)
		return kiln_error_errno(err, a->write_errno, "%s", what);
	return kiln_error_set(err, KILN_EIO, "%s: %s", what, archive_error_string(a->a));
}

int kiln_archive_create(struct kiln_archive **out, int fd, int64_t mtime, struct kiln_error **err)
{
	struct kiln_archive *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	a->fd = fd;
	a->mtime = mtime;
	a->a = archive_write_new();
	if (a->a == NULL || archive_write_set_format_pax_restricted(a->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a->a, 0) != ARCHIVE_OK ||
	    archive_write_open(a->a, a, NULL, write_cb, NULL) != ARCHIVE_OK) {
		int rc = kiln_error_set(err, KILN_EFAIL, "cannot start an archive: %s",
		                        a->a ? archive_error_string(a->a) : "out of memory");
		kiln_archive_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

static struct archive_entry *entry(struct kiln_archive *a, const char *name, mode_t type, mode_t perm,
                                   uint64_t size)
{
	struct archive_entry *e = archive_entry_new();
	if (e == NULL)
		return NULL;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, (time_t)a->mtime, 0);
	archive_entry_set_uid(e, 0);
	archive_entry_set_gid(e, 0);
	return e;
}

int kiln_archive_add_dir(struct kiln_archive *a, const char *name, struct kiln_error **err)
{
	struct archive_entry *e = entry(a, name, AE_IFDIR, 0755, 0);
	if (e == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int r = archive_write_header(a->a, e);
	archive_entry_free(e);
	return r == ARCHIVE_OK ? 0 : fail(a, err, "cannot write archive entry");
}

struct produce_state {
	struct kiln_archive *a;
	uint64_t left;
};

static int produce_write(void *ctx, const void *data, size_t len, struct kiln_error **err)
{
	struct produce_state *ps = ctx;
	if (len > ps->left)
		return kiln_error_set(err, KILN_EIO, "archive entry is larger than announced");
	const char *p = data;
	while (len > 0) {
		la_ssize_t n = archive_write_data(ps->a->a, p, len);
		if (n <= 0)
			return fail(ps->a, err, "cannot write archive data");
		p += n;
		len -= (size_t)n;
		ps->left -= (uint64_t)n;
	}
	return 0;
}

int kiln_archive_add_file(struct kiln_archive *a, const char *name, uint64_t size, kiln_produce_fn produce,
                          void *ctx, struct kiln_error **err)
{
	struct archive_entry *e = entry(a, name, AE_IFREG, 0644, size);
	if (e == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int r = archive_write_header(a->a, e);
	archive_entry_free(e);
	if (r != ARCHIVE_OK)
		return fail(a, err, "cannot write archive entry");
	struct produce_state ps = {a, size};
	if (produce(ctx, produce_write, &ps, err) < 0)
		return -1;
	if (ps.left != 0)
		return kiln_error_set(err, KILN_EIO, "archive entry '%s' is shorter than announced", name);
	return archive_write_finish_entry(a->a) == ARCHIVE_OK ? 0
	                                                      : fail(a, err, "cannot write archive entry");
}

int kiln_archive_finish(struct kiln_archive *a, struct kiln_error **err)
{
	return archive_write_close(a->a) == ARCHIVE_OK ? 0 : fail(a, err, "cannot finish the archive");
}

void kiln_archive_free(struct kiln_archive *a)
{
	if (a == NULL)
		return;
	if (a->a)
		archive_write_free(a->a);
	free(a);
}

int kiln_archive_list(const char *path, void (*fn)(void *ctx, const char *name, char type, uint64_t size),
                      void *ctx, struct kiln_error **err)
{
	struct archive *a = archive_read_new();
	if (a == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	int rc = 0;
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		rc = kiln_error_set(err, KILN_EIO, "cannot read '%s': %s", path, archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int r;
	/* ARCHIVE_WARN: a name not in this locale's charset (a UTF-8 one under "C"), still listed */
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		mode_t t = archive_entry_filetype(e);
		char type = t == AE_IFDIR ? 'd' : t == AE_IFLNK ? 'l' : t == AE_IFREG ? 'f' : '?';
		const char *name = archive_entry_pathname(e);
		if (name == NULL)
			name = archive_entry_pathname_utf8(e);
		if (name)
			fn(ctx, name, type, (uint64_t)archive_entry_size(e));
	}
	if (r != ARCHIVE_EOF)
		rc = kiln_error_set(err, KILN_EIO, "cannot read '%s': %s", path, archive_error_string(a));
out:
	archive_read_free(a);
	return rc;
}
