/* SPDX-License-Identifier: Apache-2.0 */
/*
 * files.c: which inputs are files and what becomes of them (refusals, local names, MIME types), and which
 * outputs are; the bytes travel in files_http.c (downloads, uploads) and files_data.c (data: URIs).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "shim/files.h"
#include "shim/shim.h"

#define DEFAULT_MAX_INPUT_BYTES  (1024LL * 1024 * 1024)
#define DEFAULT_MAX_OUTPUT_BYTES (100LL * 1024 * 1024)
#define MAX_NAME                 128 /* bytes of a file name kept from a URL */
#define MAX_SCHEMA_DEPTH         8

/* The environment variable NAME as a positive number of bytes, else (unset, empty, not that) DEFAULT_BYTES.
 */
static long long env_bytes(const char *name, long long default_bytes)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return default_bytes;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	return errno || *end || v <= 0 ? default_bytes : v;
}

long long files_max_input_bytes(void)
{
	return env_bytes("KILN_MAX_INPUT_BYTES", DEFAULT_MAX_INPUT_BYTES);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

char files_next_byte(const char *s, size_t len, size_t *i)
{
	char c = s[*i];
	if (c == '%' && *i + 2 < len && hexval(s[*i + 1]) >= 0 && hexval(s[*i + 2]) >= 0) {
		c = (char)(hexval(s[*i + 1]) * 16 + hexval(s[*i + 2]));
		*i += 2;
	}
	return c;
}

/* ---- names and MIME types ---- */

static const struct {
	const char *ext; /* with its dot */
	const char *mime;
} mime_types[] = {
    {".bin", "application/octet-stream"},
    {".bmp", "image/bmp"},
    {".csv", "text/csv"},
    {".flac", "audio/flac"},
    {".gif", "image/gif"},
    {".html", "text/html"},
    {".jpg", "image/jpeg"}, /* before .jpeg: the extension given to image/jpeg data */
    {".jpeg", "image/jpeg"},
    {".json", "application/json"},
    {".md", "text/markdown"},
    {".mp3", "audio/mpeg"},
    {".mp4", "video/mp4"},
    {".npy", "application/octet-stream"},
    {".ogg", "audio/ogg"},
    {".pdf", "application/pdf"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".tar", "application/x-tar"},
    {".tif", "image/tiff"},
    {".tiff", "image/tiff"},
    {".txt", "text/plain"},
    {".wav", "audio/wav"},
    {".webm", "video/webm"},
    {".webp", "image/webp"},
    {".zip", "application/zip"},
};
#define N_MIME_TYPES (sizeof(mime_types) / sizeof(mime_types[0]))

const char *files_mime_for_path(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	if (dot && dot != base)
		for (size_t i = 0; i < N_MIME_TYPES; i++)
			if (strcasecmp(dot, mime_types[i].ext) == 0)
				return mime_types[i].mime;
	return "application/octet-stream";
}

/* The extension (with its dot) for the MIME type MIME[0..LEN), or "" when unknown or generic. */
static const char *ext_for_mime(const char *mime, size_t len)
{
	for (size_t i = 0; i < N_MIME_TYPES; i++) {
		const char *m = mime_types[i].mime;
		if (strlen(m) == len && strncasecmp(mime, m, len) == 0 &&
		    strcmp(m, "application/octet-stream"))
			return mime_types[i].ext;
	}
	return "";
}

/*
 * A safe file name from S[0..LEN) (percent-escapes decoded): letters, digits, '.', '-' and '_' kept,
 * anything else '_', leading dots dropped, at most MAX_NAME bytes (the end, with the extension, kept).
 * Returns "" when nothing is left. Caller frees; NULL when memory runs out.
 */
static char *sanitize_name(const char *s, size_t len)
{
	_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)files_next_byte(s, len, &i);
		if (c == '.' && b.len == 0)
			continue;
		if (!isalnum(c) && c != '.' && c != '-' && c != '_')
			c = '_';
		if (kiln_buf_put(&b, &c, 1) < 0)
			return NULL;
	}
	size_t skip = b.len > MAX_NAME ? b.len - MAX_NAME : 0;
	return strdup(b.ptr ? b.ptr + skip : "");
}

/* The last component of URL's path, sanitized (see sanitize_name). Caller frees. */
static char *name_from_url(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	p += strcspn(p, "/?#"); /* skip the authority */
	size_t len = strcspn(p, "?#");
	const char *end = p + len;
	while (end > p && end[-1] == '/')
		end--;
	const char *start = end;
	while (start > p && start[-1] != '/')
		start--;
	return sanitize_name(start, (size_t)(end - start));
}

/*
 * Create a new file in DIR named NAME, or NAME with "-1", "-2", ... before its extension when taken.
 * *path gets its path (caller frees); returns the open descriptor, or a negative code with *err set (the
 * message names the input INPUT).
 */
static int create_unique(char **path, const char *dir, const char *name, const char *input,
                         struct kiln_error **err)
{
	const char *dot = strrchr(name, '.');
	size_t stem = dot && dot != name ? (size_t)(dot - name) : strlen(name);
	for (int n = 0; n < 10000; n++) {
		_cleanup_buf_ struct kiln_buf b = KILN_BUF_INIT;
		int rc = n == 0 ? kiln_buf_printf(&b, "%s/%s", dir, name)
		                : kiln_buf_printf(&b, "%s/%.*s-%d%s", dir, (int)stem, name, n, name + stem);
		if (rc < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
		int fd = open(b.ptr, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd >= 0) {
			*path = kiln_buf_detach(&b);
			return fd;
		}
		if (errno != EEXIST)
			return kiln_error_errno(err, errno, "input '%s': cannot create '%s'", input, b.ptr);
	}
	return kiln_error_set(err, KILN_EIO, "input '%s': cannot create a file named after '%s' in '%s'",
	                      input, name, dir);
}

/* ---- inputs ---- */

/*
 * Turn the file input VALUE of input NAME into a new file under DIR; *path gets its path (caller frees).
 * http(s) URLs are downloaded, data: URIs decoded; anything else is refused with KILN_EINVAL.
 */
static int fetch_one(char **path, const char *value, const char *name, const char *dir,
                     struct kiln_error **err)
{
	size_t scheme = strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	bool has_scheme = scheme > 0 && value[scheme] == ':' && isalpha((unsigned char)value[0]);
	bool is_data = has_scheme && scheme == 4 && strncasecmp(value, "data", 4) == 0;
	bool is_http = has_scheme && ((scheme == 4 && strncasecmp(value, "http", 4) == 0) ||
	                              (scheme == 5 && strncasecmp(value, "https", 5) == 0));
	if (has_scheme && scheme == 4 && strncasecmp(value, "file", 4) == 0)
		return kiln_error_set(err, KILN_EINVAL, "input '%s': file:// URLs are not allowed", name);
	if (!has_scheme)
		return kiln_error_set(
		    err, KILN_EINVAL,
		    "input '%s': local paths are not allowed ('%s'); give an http(s) or data: URL", name,
		    value);
	if (!is_data && !is_http)
		return kiln_error_set(err, KILN_EINVAL,
		                      "input '%s': %.*s: URLs are not allowed (only http, https, data)", name,
		                      (int)scheme, value);

	_cleanup_free_ char *file = NULL;
	const char *comma = NULL;
	if (is_data) {
		comma = strchr(value, ',');
		if (!comma)
			return kiln_error_set(err, KILN_EINVAL, "input '%s': malformed data: URI (no ',')",
			                      name);
		const char *mime = value + 5;
		size_t mime_len = strcspn(mime, ";,");
		_cleanup_free_ char *stem = sanitize_name(name, strlen(name));
		if (!stem ||
		    asprintf(&file, "%s%s", *stem ? stem : "input", ext_for_mime(mime, mime_len)) < 0)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	} else {
		file = name_from_url(value);
		if (file && !*file) {
			free(file);
			file = sanitize_name(name, strlen(name));
		}
		if (!file)
			return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}

	_cleanup_free_ char *p = NULL;
	_cleanup_close_ int fd = create_unique(&p, dir, *file ? file : "input", name, err);
	if (fd < 0)
		return fd;
	int rc;
	if (is_data) {
		size_t meta = (size_t)(comma - value);
		bool b64 = meta >= 7 && strncasecmp(comma - 7, ";base64", 7) == 0;
		rc = files_decode_data(fd, p, comma + 1, strlen(comma + 1), b64, name, err);
	} else {
		rc = files_download(fd, p, value, name, err);
	}
	if (rc == 0 && close(kiln_steal_fd(&fd)) < 0)
		rc = kiln_error_errno(err, errno, "input '%s': cannot write '%s'", name, p);
	if (rc < 0) {
		unlink(p);
		return rc;
	}
	*path = steal_pointer(&p);
	return 0;
}

enum { NOT_FILE, FILE_ONE, FILE_LIST };

/* Whether SCHEMA (looking through $ref, allOf and anyOf) is a file ("format": "uri") or a list of them. */
static int file_kind(const json_t *root, const json_t *schema, int depth)
{
	if (!json_is_object(schema) || depth > MAX_SCHEMA_DEPTH)
		return NOT_FILE;
	const char *type = json_string_value(json_object_get(schema, "type"));
	const char *format = json_string_value(json_object_get(schema, "format"));
	if (format && strcmp(format, "uri") == 0 && (!type || strcmp(type, "string") == 0))
		return FILE_ONE;
	if (type && strcmp(type, "array") == 0)
		return file_kind(root, json_object_get(schema, "items"), depth + 1) == FILE_ONE ? FILE_LIST
		                                                                                : NOT_FILE;
	const char *ref = json_string_value(json_object_get(schema, "$ref"));
	if (ref)
		return file_kind(root, shim_schema_resolve(root, ref), depth + 1);
	static const char *const lists[] = {"allOf", "anyOf"};
	for (size_t l = 0; l < 2; l++) {
		size_t i;
		const json_t *member;
		json_array_foreach(json_object_get(schema, lists[l]), i, member)
		{
			int kind = file_kind(root, member, depth + 1);
			if (kind != NOT_FILE)
				return kind;
		}
	}
	return NOT_FILE;
}

int shim_files_fetch_inputs(const json_t *schema, json_t *input, const char *dir, struct kiln_error **err)
{
	const json_t *props = json_object_get(
	    json_object_get(json_object_get(json_object_get(schema, "components"), "schemas"), "Input"),
	    "properties");
	const char *name;
	json_t *value;
	json_object_foreach(input, name, value)
	{
		int kind = file_kind(schema, json_object_get(props, name), 0);
		if (kind == FILE_ONE && json_is_string(value)) {
			char *path;
			int rc = fetch_one(&path, json_string_value(value), name, dir, err);
			if (rc < 0)
				return rc;
			json_object_set_new(input, name, json_string(path));
			free(path);
		} else if (kind == FILE_LIST && json_is_array(value)) {
			size_t i;
			json_t *item;
			json_array_foreach(value, i, item)
			{
				char *path;
				if (!json_is_string(item))
					continue;
				int rc = fetch_one(&path, json_string_value(item), name, dir, err);
				if (rc < 0)
					return rc;
				json_array_set_new(value, i, json_string(path));
				free(path);
			}
		}
	}
	return 0;
}

/* ---- outputs ---- */

long long files_max_output_bytes(void)
{
	return env_bytes("KILN_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT_BYTES);
}

/* Whether the file system of FD holds the kernel's pseudo-files (/proc, /sys ...), which fstat calls regular.
 */
static bool on_pseudo_fs(int fd)
{
	static const unsigned long kinds[] = {PROC_SUPER_MAGIC,    SYSFS_MAGIC,      DEBUGFS_MAGIC,
	                                      TRACEFS_MAGIC,       SECURITYFS_MAGIC, CGROUP_SUPER_MAGIC,
	                                      CGROUP2_SUPER_MAGIC, BPF_FS_MAGIC};
	struct statfs fs;
	if (fstatfs(fd, &fs) < 0)
		return true;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if ((unsigned long)fs.f_type == kinds[i])
			return true;
	return false;
}

int files_open_output(const char *path, struct stat *st, struct kiln_error **err)
{
	if (path[0] != '/')
		return kiln_error_set(err, KILN_EINVAL, "file output '%s' is not an absolute path", path);
	/* O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 && errno == ELOOP)
		return kiln_error_set(err, KILN_EINVAL, "file output '%s' is a symbolic link", path);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open file output '%s'", path);
	if (fstat(fd, st) < 0)
		return kiln_error_errno(err, errno, "cannot open file output '%s'", path);
	if (!S_ISREG(st->st_mode))
		return kiln_error_set(err, KILN_EINVAL, "file output '%s' is not a regular file", path);
	if (on_pseudo_fs(fd))
		return kiln_error_set(err, KILN_EINVAL, "file output '%s' is a kernel pseudo-file", path);
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return kiln_error_errno(err, errno, "cannot open file output '%s'", path);
	return kiln_steal_fd(&fd);
}

/* The file output PATH as a data: URI (when UPLOAD_URL is NULL or empty) or uploaded, into *out. */
static int encode_file(char **out, const char *path, const char *upload_url, struct kiln_error **err)
{
	if (upload_url && *upload_url)
		return files_upload(out, path, upload_url, err);
	struct stat st;
	_cleanup_close_ int fd = files_open_output(path, &st, err);
	if (fd < 0)
		return fd;
	long long max = files_max_output_bytes();
	if (st.st_size > max)
		return kiln_error_set(err, KILN_EINVAL,
		                      "file output '%s' has %lld bytes, more than the %lld a data: URI may "
		                      "hold (KILN_MAX_OUTPUT_BYTES; or give an upload URL)",
		                      path, (long long)st.st_size, max);
	/* never more than the size it had when checked: a file that grows meanwhile is cut there */
	return files_encode_data_uri(out, fd, path, (long long)st.st_size, err);
}

/*
 * Encode the file output at POSITION (a JSON array of object keys and array indices) inside *value: the
 * string found there, a path, is replaced by what encode_file makes of it.
 */
static int encode_at(json_t **value, const json_t *position, const char *upload_url, struct kiln_error **err)
{
	if (!json_is_array(position))
		return kiln_error_set(err, KILN_EINVAL, "a file position is not an array");
	json_t *parent = NULL, *cur = *value;
	const char *key = NULL;
	size_t index = 0, i;
	const json_t *step;
	json_array_foreach(position, i, step)
	{
		parent = cur;
		if (json_is_string(step) && json_is_object(cur)) {
			key = json_string_value(step);
			cur = json_object_get(cur, key);
		} else if (json_is_integer(step) && json_is_array(cur) && json_integer_value(step) >= 0) {
			key = NULL;
			index = (size_t)json_integer_value(step);
			cur = json_array_get(cur, index);
		} else {
			cur = NULL;
		}
		if (!cur)
			break;
	}
	if (!json_is_string(cur))
		return kiln_error_set(err, KILN_EINVAL, "a file position names no string in the output");
	char *s;
	int rc = encode_file(&s, json_string_value(cur), upload_url, err);
	if (rc < 0)
		return rc;
	json_t *r = json_string(s);
	free(s);
	if (!r)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (!parent) {
		json_decref(*value);
		*value = r;
		return 0;
	}
	return (key ? json_object_set_new(parent, key, r) : json_array_set_new(parent, index, r)) < 0
	           ? kiln_error_set(err, KILN_EFAIL, "out of memory")
	           : 0;
}

int shim_files_encode_output(json_t **value, const json_t *files, const char *upload_url,
                             struct kiln_error **err)
{
	if (files && !json_is_array(files))
		return kiln_error_set(err, KILN_EINVAL, "output: the file positions are not an array");
	size_t i;
	const json_t *position;
	json_array_foreach(files, i, position)
	{
		int rc = encode_at(value, position, upload_url, err);
		if (rc < 0)
			return kiln_error_wrap(err, "output");
	}
	return 0;
}

/* Walk V for one-key {"$path": P} objects at POSITION (its path from the top, extended and shortened in
 * place): each is replaced by P in its parent (*replacement for V itself) and its position added to FILES. */
static int take_markers(json_t *v, json_t **replacement, json_t *position, json_t *files)
{
	*replacement = NULL;
	if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(json_object_get(v, "$path"))) {
		*replacement = json_incref(json_object_get(v, "$path"));
		return json_array_append_new(files, json_deep_copy(position));
	}
	const char *key;
	json_t *member;
	size_t i;
	if (json_is_object(v)) {
		json_object_foreach(v, key, member)
		{
			json_t *r;
			if (json_array_append_new(position, json_string(key)) < 0 ||
			    take_markers(member, &r, position, files) < 0)
				return -1;
			json_array_remove(position, json_array_size(position) - 1);
			if (r)
				json_object_set_new(v, key, r);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, member)
		{
			json_t *r;
			if (json_array_append_new(position, json_integer((json_int_t)i)) < 0 ||
			    take_markers(member, &r, position, files) < 0)
				return -1;
			json_array_remove(position, json_array_size(position) - 1);
			if (r)
				json_array_set_new(v, i, r);
		}
	}
	return 0;
}

json_t *shim_files_take_path_markers(json_t **value)
{
	json_t *files = json_array(), *position = json_array(), *r = NULL;
	int rc = files && position ? take_markers(*value, &r, position, files) : -1;
	json_decref(position);
	if (rc < 0) {
		json_decref(r);
		json_decref(files);
		return NULL;
	}
	if (r) {
		json_decref(*value);
		*value = r;
	}
	return files;
}

int shim_files_data_uri(char **out, const char *path, struct kiln_error **err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", path);
	return files_encode_data_uri(out, fd, path, -1, err);
}

const char *shim_files_data_uri_extension(const char *uri)
{
	if (strncasecmp(uri, "data:", 5) != 0)
		return "";
	return ext_for_mime(uri + 5, strcspn(uri + 5, ";,"));
}

int shim_files_save_data_uri(const char *uri, const char *path, struct kiln_error **err)
{
	const char *comma = strncasecmp(uri, "data:", 5) == 0 ? strchr(uri, ',') : NULL;
	if (!comma)
		return kiln_error_set(err, KILN_EINVAL, "not a data: URI");
	size_t meta = (size_t)(comma - uri);
	bool b64 = meta >= 7 && strncasecmp(comma - 7, ";base64", 7) == 0;
	/* a temporary file beside PATH, renamed over it once whole: never half a file at PATH */
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create '%s'", tmp);
	int rc = files_decode_data(fd, tmp, comma + 1, strlen(comma + 1), b64, path, err);
	if (rc == 0 && fchmod(fd, 0644) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", tmp);
	if (rc == 0 && close(kiln_steal_fd(&fd)) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", tmp);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = kiln_error_errno(err, errno, "cannot write '%s'", path);
	if (rc < 0)
		unlink(tmp);
	return rc;
}
