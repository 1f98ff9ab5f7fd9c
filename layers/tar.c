/* SPDX-License-Identifier: Apache-2.0 */
/* tar.c: deterministic tar layers written with libarchive, each source file read once. */
#include "layers/tar.h"
#include "common/cleanup.h"
#include "layers/sink.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (1024 * 1024)

/* One tar entry to write: a caller's entry, or a parent directory that kiln adds (e == NULL). */
struct item {
	const char *name;
	enum kiln_tar_type type;
	mode_t mode;
	const struct kiln_tar_entry *e;
};

/* Everything kiln_layer_write holds, released in one place. */
struct layer_state {
	struct item *items;
	size_t nitems;
	char **added; /* names of the added parent directories */
	size_t nadded;
	unsigned char *buf; /* the read buffer */
	struct archive *a;
	bool opened; /* archive_write_open succeeded */
	struct archive_entry *ae;
	struct kiln_sink sink;
	bool raw; /* KILN_COMPRESS_RAW: the file's bytes straight to the sink, no archive */
};

static int compare_items(const void *x, const void *y)
{
	return strcmp(((const struct item *)x)->name, ((const struct item *)y)->name);
}

/* true when NAME is relative, has no empty, "." or ".." component and no leading or trailing '/'. */
static bool name_valid(const char *name)
{
	if (name == NULL || *name == '\0' || *name == '/')
		return false;
	const char *p = name;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (slash == NULL)
			return true;
		p = slash + 1;
	}
}

/* Check one caller's entry: a valid name, a known type, and what that type needs. */
static int check_entry(const struct kiln_tar_entry *e, struct kiln_error **err)
{
	if (!name_valid(e->name))
		return kiln_error_set(err, KILN_EINVAL, "invalid entry name '%s'", e->name ? e->name : "");
	switch (e->type) {
	case KILN_TAR_FILE:
		if (e->source == NULL && e->size != 0)
			return kiln_error_set(err, KILN_EINVAL, "entry '%s' has no source file", e->name);
		return 0;
	case KILN_TAR_SYMLINK:
		if (e->link_target == NULL || *e->link_target == '\0')
			return kiln_error_set(err, KILN_EINVAL, "symbolic link '%s' has no target", e->name);
		return 0;
	case KILN_TAR_DIR:
		return 0;
	}
	return kiln_error_set(err, KILN_EINVAL, "entry '%s' has an unknown type", e->name);
}

/*
 * Fill st->items with the N entries and their missing parent directories (mode 0755), sorted by name.
 * Fails with KILN_EINVAL on an invalid or duplicate name, or a parent that is not a directory.
 */
static int plan_items(struct layer_state *st, const struct kiln_tar_entry *entries, size_t n,
                      struct kiln_error **err)
{
	struct item *given = calloc(n ? n : 1, sizeof(*given));
	if (given == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	st->items = given;
	for (size_t i = 0; i < n; i++) {
		int r = check_entry(&entries[i], err);
		if (r < 0)
			return r;
		given[i] =
		    (struct item){entries[i].name, entries[i].type, entries[i].mode & 07777, &entries[i]};
	}
	qsort(given, n, sizeof(*given), compare_items);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(given[i - 1].name, given[i].name) == 0)
			return kiln_error_set(err, KILN_EINVAL, "entry '%s' is listed twice", given[i].name);
	}

	size_t cap = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = given[i].name, *prev = i > 0 ? given[i - 1].name : "";
		for (const char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
			size_t len = (size_t)(s - name);
			/* once sorted, entries under one directory are adjacent: already seen */
			if (strncmp(prev, name, len) == 0 && prev[len] == '/')
				continue;
			_cleanup_free_ char *parent = strndup(name, len);
			if (parent == NULL)
				return kiln_error_set(err, KILN_EFAIL, "out of memory");
			struct item key = {.name = parent};
			const struct item *found = bsearch(&key, given, n, sizeof(*given), compare_items);
			if (found && found->type != KILN_TAR_DIR)
				return kiln_error_set(err, KILN_EINVAL,
				                      "'%s' is inside '%s', which is not a directory", name,
				                      parent);
			if (found)
				continue;
			if (st->nadded == cap) {
				cap = cap ? 2 * cap : 16;
				char **p = realloc(st->added, cap * sizeof(*p));
				if (p == NULL)
					return kiln_error_set(err, KILN_EFAIL, "out of memory");
				st->added = p;
			}
			st->added[st->nadded++] = steal_pointer(&parent);
		}
	}

	struct item *all = realloc(given, (n + st->nadded ? n + st->nadded : 1) * sizeof(*all));
	if (all == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	st->items = all;
	for (size_t i = 0; i < st->nadded; i++)
		all[n + i] = (struct item){st->added[i], KILN_TAR_DIR, 0755, NULL};
	st->nitems = n + st->nadded;
	qsort(all, st->nitems, sizeof(*all), compare_items);
	return 0;
}

/* libarchive's client write callback: everything it emits goes to the sink, unchanged and unblocked. */
static la_ssize_t sink_callback(struct archive *a, void *ctx, const void *buf, size_t len)
{
	struct kiln_sink *sink = ctx;
	return kiln_sink_write(sink, buf, len) < 0 ? -1 : (la_ssize_t)len;
}

/*
 * Report a failed libarchive call while writing the entry NAME (NULL: the end of the archive): the
 * write's errno when writing to fd failed (so a full disk says "No space left on device"), another
 * failure of the sink, else libarchive's message.
 */
static int archive_failure(struct layer_state *st, const char *name, struct kiln_error **err)
{
	int errnum = st->sink.write_errno;
	if (errnum && name)
		return kiln_error_errno(err, errnum, "cannot write '%s' to the layer", name);
	if (errnum)
		return kiln_error_errno(err, errnum, "cannot write the end of the layer");
	if (st->sink.err) {
		int code = st->sink.err->code;
		if (err) {
			kiln_error_free(*err);
			*err = steal_pointer(&st->sink.err);
		}
		return code;
	}
	const char *msg = archive_error_string(st->a);
	if (msg == NULL)
		msg = "unknown libarchive error";
	if (name)
		return kiln_error_set(err, KILN_EFAIL, "cannot write '%s' to the layer: %s", name, msg);
	return kiln_error_set(err, KILN_EFAIL, "cannot write the end of the layer: %s", msg);
}

/* Hand LEN bytes of file content to libarchive, looping over short writes. */
static int write_data(struct layer_state *st, const unsigned char *p, size_t len, const char *name,
                      struct kiln_error **err)
{
	if (st->raw)
		return kiln_sink_write(&st->sink, p, len) < 0 ? archive_failure(st, name, err) : 0;
	while (len > 0) {
		la_ssize_t w = archive_write_data(st->a, p, len);
		if (w <= 0)
			return archive_failure(st, name, err);
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int check_cancel(const struct kiln_layer_options *opt, struct kiln_error **err)
{
	if (opt->cancel && *opt->cancel)
		return kiln_error_set(err, KILN_EINTR, "interrupted");
	return 0;
}

/*
 * Write the header and content of a regular file entry: open its source, check the fingerprint, stream
 * exactly e->size bytes in 1 MiB chunks, and check that nothing changed while reading.
 */
static int write_file(struct layer_state *st, const struct item *it, const struct kiln_layer_options *opt,
                      uint64_t *bytes_read, struct kiln_error **err)
{
	const struct kiln_tar_entry *e = it->e;
	if (e->source == NULL) { /* an empty file of no source: a whiteout */
		archive_entry_set_filetype(st->ae, AE_IFREG);
		archive_entry_set_size(st->ae, 0);
		if (archive_write_header(st->a, st->ae) < ARCHIVE_WARN)
			return archive_failure(st, it->name, err);
		if (archive_write_finish_entry(st->a) != ARCHIVE_OK)
			return archive_failure(st, it->name, err);
		return 0;
	}
	_cleanup_close_ int fd = open(e->source, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", e->source);
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return kiln_error_errno(err, errno, "cannot stat '%s'", e->source);
	struct kiln_stat_fp fp;
	kiln_stat_fp_from(&fp, &sb);
	if (!S_ISREG(sb.st_mode) || !kiln_stat_fp_equal(&fp, &e->fp) || fp.size != e->size)
		return kiln_error_set(err, KILN_ECHANGED, "'%s' changed since it was listed", e->source);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	if (!st->raw) {
		archive_entry_set_filetype(st->ae, AE_IFREG);
		archive_entry_set_size(st->ae, (la_int64_t)e->size);
		if (archive_write_header(st->a, st->ae) < ARCHIVE_WARN)
			return archive_failure(st, it->name, err);
	}
	int r = kiln_sink_begin_file(&st->sink, e, err);
	if (r < 0)
		return r;
	for (uint64_t left = e->size; left > 0;) {
		ssize_t n = read(fd, st->buf, left < READ_CHUNK ? (size_t)left : READ_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kiln_error_errno(err, errno, "cannot read '%s'", e->source);
		if (n == 0)
			return kiln_error_set(err, KILN_ECHANGED, "'%s' changed while being read", e->source);
		if ((r = write_data(st, st->buf, (size_t)n, it->name, err)) < 0)
			return r;
		left -= (uint64_t)n;
		*bytes_read += (uint64_t)n;
		if (opt->progress)
			opt->progress(opt->progress_ctx, (uint64_t)n);
		if ((r = check_cancel(opt, err)) < 0)
			return r;
	}
	/* the file must end where it ended when listed, and be the same file as before */
	ssize_t extra;
	do
		extra = read(fd, st->buf, 1);
	while (extra < 0 && errno == EINTR);
	if (extra < 0)
		return kiln_error_errno(err, errno, "cannot read '%s'", e->source);
	if (fstat(fd, &sb) < 0)
		return kiln_error_errno(err, errno, "cannot stat '%s'", e->source);
	kiln_stat_fp_from(&fp, &sb);
	if (extra > 0 || !kiln_stat_fp_equal(&fp, &e->fp))
		return kiln_error_set(err, KILN_ECHANGED, "'%s' changed while being read", e->source);
	if ((r = kiln_sink_end_file(&st->sink, err)) < 0)
		return r;
	if (!st->raw && archive_write_finish_entry(st->a) != ARCHIVE_OK)
		return archive_failure(st, it->name, err);
	return 0;
}

/* Write one entry (header, and content for a regular file) with the layer's fixed metadata. */
static int write_item(struct layer_state *st, const struct item *it, const struct kiln_layer_options *opt,
                      uint64_t *bytes_read, struct kiln_error **err)
{
	archive_entry_clear(st->ae);
	archive_entry_set_pathname(st->ae, it->name);
	archive_entry_set_perm(st->ae, it->mode);
	archive_entry_set_mtime(st->ae, (time_t)opt->mtime, 0);
	archive_entry_set_uid(st->ae, it->e ? (la_int64_t)it->e->uid : 0);
	archive_entry_set_gid(st->ae, it->e ? (la_int64_t)it->e->gid : 0);
	if (it->type == KILN_TAR_FILE)
		return write_file(st, it, opt, bytes_read, err);
	archive_entry_set_size(st->ae, 0);
	if (it->type == KILN_TAR_DIR) {
		archive_entry_set_filetype(st->ae, AE_IFDIR);
	} else {
		archive_entry_set_filetype(st->ae, AE_IFLNK);
		archive_entry_set_symlink(st->ae, it->e->link_target);
	}
	if (archive_write_header(st->a, st->ae) < ARCHIVE_WARN)
		return archive_failure(st, it->name, err);
	if (archive_write_finish_entry(st->a) != ARCHIVE_OK)
		return archive_failure(st, it->name, err);
	return 0;
}

/*
 * Release everything ST holds. After a failure the archive is marked failed, so that libarchive does not
 * pad out the entry being written (zeros for the rest of a possibly huge file), and then closed with the
 * sink discarding what still arrives: libarchive 3.6 frees its output state only when closing
 * (libarchive issue #1568), and newer versions ignore a close after a failure.
 */
static void layer_state_release(struct layer_state *st, bool failed)
{
	if (st->a) {
		if (failed && st->opened) {
			st->sink.discard = true;
			archive_write_fail(st->a);
			archive_write_close(st->a);
		}
		archive_write_free(st->a);
	}
	if (st->ae)
		archive_entry_free(st->ae);
	for (size_t i = 0; i < st->nadded; i++)
		free(st->added[i]);
	free(st->added);
	free(st->items);
	free(st->buf);
	kiln_sink_release(&st->sink);
}

/* Open the pax (restricted) writer on the sink, unblocked so every byte reaches it as emitted. */
static int open_archive(struct layer_state *st, struct kiln_error **err)
{
	st->a = archive_write_new();
	st->ae = archive_entry_new();
	if (st->a == NULL || st->ae == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (archive_write_set_format_pax_restricted(st->a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(st->a, 0) != ARCHIVE_OK ||
	    archive_write_open(st->a, &st->sink, NULL, sink_callback, NULL) != ARCHIVE_OK) {
		const char *msg = archive_error_string(st->a);
		return kiln_error_set(err, KILN_EFAIL, "cannot start a tar layer: %s",
		                      msg ? msg : "unknown libarchive error");
	}
	st->opened = true;
	return 0;
}

/* Write the layer into the prepared state: every entry, then the end of the archive. */
static int write_layer(struct layer_state *st, struct kiln_layer_out *out,
                       const struct kiln_tar_entry *entries, size_t n, const struct kiln_layer_options *opt,
                       struct kiln_error **err)
{
	int r;
	if (opt->compression == KILN_COMPRESS_RAW) {
		if (n != 1 || entries[0].type != KILN_TAR_FILE || entries[0].source == NULL)
			return kiln_error_set(err, KILN_EINVAL, "a raw blob is one regular file");
		st->raw = true;
		if ((r = kiln_sink_init(&st->sink, opt->fd, opt->compression, err)) < 0)
			return r;
		if ((st->buf = malloc(READ_CHUNK)) == NULL)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		struct item it = {.name = entries[0].name, .type = KILN_TAR_FILE, .e = &entries[0]};
		if ((r = write_file(st, &it, opt, &out->bytes_read, err)) < 0)
			return r;
		return kiln_sink_finish(&st->sink, out, err);
	}
	if ((r = plan_items(st, entries, n, err)) < 0)
		return r;
	if ((r = kiln_sink_init(&st->sink, opt->fd, opt->compression, err)) < 0)
		return r;
	st->sink.fragment = opt->fragment;
	if ((st->buf = malloc(READ_CHUNK)) == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if ((r = open_archive(st, err)) < 0)
		return r;
	for (size_t i = 0; i < st->nitems; i++) {
		if ((r = check_cancel(opt, err)) < 0)
			return r;
		if ((r = write_item(st, &st->items[i], opt, &out->bytes_read, err)) < 0)
			return r;
	}
	if (archive_write_close(st->a) != ARCHIVE_OK)
		return archive_failure(st, NULL, err);
	return kiln_sink_finish(&st->sink, out, err);
}

int kiln_layer_write(struct kiln_layer_out *out, const struct kiln_tar_entry *entries, size_t n,
                     const struct kiln_layer_options *opt, struct kiln_error **err)
{
	memset(out, 0, sizeof(*out));
	if (opt == NULL || (n > 0 && entries == NULL))
		return kiln_error_set(err, KILN_EINVAL, "no layer options or entries");
	if (opt->compression != KILN_COMPRESS_NONE && opt->compression != KILN_COMPRESS_GZIP &&
	    opt->compression != KILN_COMPRESS_RAW)
		return kiln_error_set(err, KILN_EINVAL, "unknown layer compression %d",
		                      (int)opt->compression);
	if (opt->compression == KILN_COMPRESS_GZIP && opt->fd < 0)
		return kiln_error_set(err, KILN_EINVAL, "a compressed layer needs a file to write to");
	if (opt->fragment && opt->compression != KILN_COMPRESS_GZIP)
		return kiln_error_set(err, KILN_EINVAL, "a layer fragment is gzip-compressed");

	/*
	 * libarchive converts names from the locale's character set to UTF-8 for pax headers. Under a
	 * UTF-8 locale names pass unchanged (and a name that is not UTF-8 is stored as binary), whatever
	 * the caller's locale: the same entries give the same bytes on any machine.
	 */
	locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	locale_t saved = utf8 ? uselocale(utf8) : (locale_t)0;
	struct layer_state st = {.sink.fd = -1};
	int r = write_layer(&st, out, entries, n, opt, err);
	layer_state_release(&st, r < 0);
	if (utf8) {
		uselocale(saved);
		freelocale(utf8);
	}
	if (r < 0)
		kiln_layer_out_release(out);
	return r;
}

void kiln_layer_out_release(struct kiln_layer_out *out)
{
	if (out == NULL)
		return;
	kiln_recipe_free(out->recipe);
	memset(out, 0, sizeof(*out));
}
