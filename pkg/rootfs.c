/* SPDX-License-Identifier: Apache-2.0 */
/* rootfs.c: a base's root unpacked once in the store, private copies of it, and what a step changed. */
#include "pkg/rootfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "layers/digest.h"
#include "layers/extract.h"
#include "pkg/pull.h"
#include "pkg/unpack.h"

extern char **environ;

void kiln_rootfs_key(char out[65], const struct kiln_base *base)
{
	struct kiln_sha256 *h = NULL;
	char d[KILN_DIGEST_LEN];
	if (kiln_sha256_new(&h, NULL) < 0) {
		memset(out, '0', 64);
		out[64] = '\0';
		return;
	}
	kiln_sha256_update(h, "kiln-rootfs-v1\n", 15);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(json_object_get(base->config, "rootfs"), "diff_ids"), i, v)
	{
		const char *id = json_string_value(v);
		if (id) {
			kiln_sha256_update(h, id, strlen(id));
			kiln_sha256_update(h, "\n", 1);
		}
	}
	kiln_sha256_final(h, d);
	kiln_sha256_free(h);
	memcpy(out, kiln_digest_hex(d), 64);
	out[64] = '\0';
}

int kiln_rootfs_base(char **dir, struct kiln_store *s, const struct kiln_base *base,
                     const struct kiln_registry_options *ropt, struct kiln_error **err)
{
	*dir = NULL;
	char key[65];
	kiln_rootfs_key(key, base);
	_cleanup_free_ char *parent = NULL, *path = NULL, *tmp = NULL;
	if (kiln_store_private_dir(&parent, s, "roots", err) < 0)
		return KILN_EFAIL;
	if (asprintf(&path, "%s/%s", parent, key) < 0 ||
	    asprintf(&tmp, "%s/.%s.%d", parent, key, (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (stat(path, &st) == 0) {
		*dir = steal_pointer(&path);
		return 0;
	}
	size_t i;
	json_t *l;
	json_array_foreach(base->layers, i, l)
	{
		const char *digest = json_string_value(json_object_get(l, "digest"));
		if (!digest || kiln_store_blob_exists(s, digest))
			continue;
		uint64_t got = 0;
		if (kiln_fetch_blob(s, digest, (uint64_t)json_integer_value(json_object_get(l, "size")), ropt,
		                    &got, err) < 0)
			return kiln_error_wrap(err, "cannot fetch the layer %s of base '%s'", digest,
			                       base->name);
	}
	kiln_extract_remove(tmp, NULL); /* left by a dead process that had this pid */
	int rc = mkdir(tmp, 0755) < 0 ? kiln_error_errno(err, errno, "cannot make '%s'", tmp) : 0;
	json_array_foreach(base->layers, i, l)
	{
		if (rc < 0)
			break;
		rc = kiln_unpack_layer(s, json_string_value(json_object_get(l, "digest")),
		                       json_string_value(json_object_get(l, "mediaType")), tmp, NULL, NULL,
		                       err);
		if (rc < 0)
			kiln_error_wrap(err, "cannot unpack the root of base '%s'", base->name);
	}
	if (rc == 0 && rename(tmp, path) < 0 && stat(path, &st) < 0) /* another kiln may have made it */
		rc = kiln_error_errno(err, errno, "cannot make '%s'", path);
	if (access(tmp, F_OK) == 0)
		kiln_extract_remove(tmp, NULL);
	if (rc == 0)
		*dir = steal_pointer(&path);
	return rc;
}

/* Copy the root DIR into a new directory under the store's tmp/ with cp's OPTION ("-a" or "-al"). */
static int copy_with(char **out, struct kiln_store *s, const char *dir, const char *option, const char *what,
                     struct kiln_error **err)
{
	*out = NULL;
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_private_dir(&tmp, s, "tmp", err) < 0)
		return KILN_EFAIL;
	_cleanup_free_ char *path = NULL, *src = NULL;
	if (asprintf(&path, "%s/%d-%s-XXXXXX", tmp, (int)getpid(), what) < 0 ||
	    asprintf(&src, "%s/.", dir) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	if (mkdtemp(path) == NULL)
		return kiln_error_errno(err, errno, "cannot make a directory in '%s'", tmp);
	char *const copy[] = {"cp", (char *)option, "--reflink=auto", src, path, NULL};
	char *const link[] = {"cp", (char *)option, src, path, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, "cp", &fa, NULL, strcmp(option, "-a") == 0 ? copy : link, environ);
	posix_spawn_file_actions_destroy(&fa);
	int status = -1;
	if (rc == 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		kiln_rootfs_discard(path);
		return rc != 0
		           ? kiln_error_errno(err, rc, "cannot start 'cp'")
		           : kiln_error_set(err, KILN_EIO, "cannot copy the root '%s' to '%s'", dir, path);
	}
	/* the copy's top directory is the root's own */
	struct stat st;
	if (stat(dir, &st) == 0)
		chmod(path, st.st_mode & 07777);
	*out = steal_pointer(&path);
	return 0;
}

int kiln_rootfs_copy(char **out, struct kiln_store *s, const char *dir, struct kiln_error **err)
{
	return copy_with(out, s, dir, "-a", "root", err);
}

int kiln_rootfs_view(char **out, struct kiln_store *s, const char *dir, struct kiln_error **err)
{
	*out = NULL;
	_cleanup_free_ char *path = NULL, *tmp = NULL;
	if (asprintf(&path, "%s.view", dir) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		*out = steal_pointer(&path);
		return 0;
	}
	if (copy_with(&tmp, s, dir, "-al", "view", err) < 0)
		return KILN_EFAIL;
	if (rename(tmp, path) < 0) {
		int e = errno;
		kiln_rootfs_discard(tmp);
		if (stat(path, &st) < 0) /* not made by another kiln meanwhile */
			return kiln_error_errno(err, e, "cannot keep the view '%s'", path);
	}
	*out = steal_pointer(&path);
	return 0;
}

/* roots/KEY. */
static int chain_path(char **path, struct kiln_store *s, const char *key, struct kiln_error **err)
{
	_cleanup_free_ char *parent = NULL;
	if (kiln_store_private_dir(&parent, s, "roots", err) < 0)
		return KILN_EFAIL;
	if (asprintf(path, "%s/%s", parent, key) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	return 0;
}

int kiln_rootfs_chain(char **dir, struct kiln_store *s, const char *key, struct kiln_error **err)
{
	*dir = NULL;
	_cleanup_free_ char *path = NULL;
	if (chain_path(&path, s, key, err) < 0)
		return KILN_EFAIL;
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		*dir = steal_pointer(&path);
	return 0;
}

int kiln_rootfs_keep(char **dir, struct kiln_store *s, const char *work, const char *key,
                     struct kiln_error **err)
{
	*dir = NULL;
	_cleanup_free_ char *path = NULL;
	if (chain_path(&path, s, key, err) < 0)
		return KILN_EFAIL;
	struct stat st;
	if (rename(work, path) < 0) {
		if (stat(path, &st) < 0) /* another kiln may have kept the same root */
			return kiln_error_errno(err, errno, "cannot keep the root '%s' as '%s'", work, path);
		kiln_rootfs_discard(work);
	}
	*dir = steal_pointer(&path);
	return 0;
}

void kiln_rootfs_discard(const char *dir)
{
	if (dir)
		kiln_extract_remove(dir, NULL);
}

/* ---- snapshots and diffs ---- */

struct node {
	char *path; /* relative to the root, no leading '/' */
	struct stat st;
	char *target; /* symbolic links */
};

struct kiln_rootfs_snapshot {
	struct node *v;
	size_t n, cap;
};

static int compare_nodes(const void *a, const void *b)
{
	return strcmp(((const struct node *)a)->path, ((const struct node *)b)->path);
}

static void nodes_free(struct kiln_rootfs_snapshot *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].path);
		free(s->v[i].target);
	}
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

/* true when the root-relative PATH is one of EXCLUDE (absolute) or under one. */
static bool excluded(const char *path, const char *const *exclude)
{
	for (const char *const *e = exclude; e && *e; e++) {
		const char *x = **e == '/' ? *e + 1 : *e;
		size_t len = strlen(x);
		if (strncmp(path, x, len) == 0 && (path[len] == '\0' || path[len] == '/'))
			return true;
	}
	return false;
}

/* Add every path under the directory FD (REL its root-relative path, "" for the root) to S. */
static int walk(struct kiln_rootfs_snapshot *s, int fd, const char *rel, const char *const *exclude,
                struct kiln_error **err)
{
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return kiln_error_errno(err, errno, "cannot read '/%s'", rel);
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct node nd = {0};
		if (asprintf(&nd.path, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0)
			return closedir(d), kiln_error_set(err, KILN_EFAIL, "out of memory");
		if (excluded(nd.path, exclude)) {
			free(nd.path);
			continue;
		}
		if (fstatat(dirfd(d), de->d_name, &nd.st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = kiln_error_errno(err, errno, "cannot stat '/%s'", nd.path);
			free(nd.path);
			break;
		}
		if (S_ISLNK(nd.st.st_mode)) {
			char buf[4096];
			ssize_t n = readlinkat(dirfd(d), de->d_name, buf, sizeof(buf) - 1);
			if (n < 0) {
				rc = kiln_error_errno(err, errno, "cannot read the link '/%s'", nd.path);
				free(nd.path);
				break;
			}
			buf[n] = '\0';
			nd.target = strdup(buf);
		}
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 4096;
			struct node *v = realloc(s->v, cap * sizeof(*v));
			if (v == NULL) {
				free(nd.path);
				free(nd.target);
				rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
				break;
			}
			s->v = v;
			s->cap = cap;
		}
		s->v[s->n++] = nd;
		if (S_ISDIR(nd.st.st_mode)) {
			int sub =
			    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				rc = kiln_error_errno(err, errno, "cannot open '/%s'", nd.path);
				break;
			}
			rc = walk(s, sub, s->v[s->n - 1].path, exclude, err);
		}
	}
	if (rc == 0 && errno != 0)
		rc = kiln_error_errno(err, errno, "cannot read '/%s'", rel);
	closedir(d);
	return rc;
}

/* Every path in ROOT (but EXCLUDE's) into S, sorted. */
static int scan(struct kiln_rootfs_snapshot *s, const char *root, const char *const *exclude,
                struct kiln_error **err)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot open '%s'", root);
	int rc = walk(s, fd, "", exclude, err);
	if (rc < 0) {
		nodes_free(s);
		return kiln_error_wrap(err, "cannot read the root '%s'", root);
	}
	qsort(s->v, s->n, sizeof(*s->v), compare_nodes);
	return 0;
}

int kiln_rootfs_snapshot(struct kiln_rootfs_snapshot **out, const char *root, struct kiln_error **err)
{
	*out = NULL;
	struct kiln_rootfs_snapshot *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int rc = scan(s, root, NULL, err);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void kiln_rootfs_snapshot_free(struct kiln_rootfs_snapshot *snap)
{
	if (snap == NULL)
		return;
	nodes_free(snap);
	free(snap);
}

static const struct node *find(const struct kiln_rootfs_snapshot *s, const char *path)
{
	struct node key = {.path = (char *)path};
	return s->n ? bsearch(&key, s->v, s->n, sizeof(*s->v), compare_nodes) : NULL;
}

/* A directory counts as changed by its own metadata alone: what it holds comes with its entries. */
static bool changed(const struct node *a, const struct node *b)
{
	if (S_ISDIR(a->st.st_mode) && S_ISDIR(b->st.st_mode))
		return a->st.st_ino != b->st.st_ino || a->st.st_mode != b->st.st_mode ||
		       a->st.st_uid != b->st.st_uid || a->st.st_gid != b->st.st_gid;
	return a->st.st_ino != b->st.st_ino || a->st.st_dev != b->st.st_dev ||
	       a->st.st_mode != b->st.st_mode || a->st.st_uid != b->st.st_uid ||
	       a->st.st_gid != b->st.st_gid || a->st.st_size != b->st.st_size ||
	       a->st.st_ctim.tv_sec != b->st.st_ctim.tv_sec ||
	       a->st.st_ctim.tv_nsec != b->st.st_ctim.tv_nsec ||
	       (a->target && b->target && strcmp(a->target, b->target) != 0);
}

/* The owner as the layer records it: as an ordinary user the namespace's root is this user. */
static uid_t layer_uid(uid_t u)
{
	return geteuid() != 0 && u == geteuid() ? 0 : u;
}
static gid_t layer_gid(gid_t g)
{
	return geteuid() != 0 && g == getegid() ? 0 : g;
}

struct entries {
	struct kiln_tar_entry *v;
	size_t n, cap;
};

static struct kiln_tar_entry *entry_new(struct entries *e, struct kiln_error **err)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 256;
		struct kiln_tar_entry *v = realloc(e->v, cap * sizeof(*v));
		if (v == NULL) {
			kiln_error_set(err, KILN_EFAIL, "out of memory");
			return NULL;
		}
		e->v = v;
		e->cap = cap;
	}
	struct kiln_tar_entry *t = &e->v[e->n++];
	*t = (struct kiln_tar_entry){0};
	return t;
}

/* The entry for ND, found in ROOT now (a file, directory or link; other kinds give no entry). */
static int add_node(struct entries *e, const struct node *nd, const char *root, struct kiln_error **err)
{
	mode_t m = nd->st.st_mode;
	if (!S_ISREG(m) && !S_ISDIR(m) && !S_ISLNK(m))
		return 0; /* device nodes, fifos, sockets: nothing a layer should carry */
	struct kiln_tar_entry *t = entry_new(e, err);
	if (t == NULL)
		return KILN_EFAIL;
	t->type = S_ISREG(m) ? KILN_TAR_FILE : S_ISDIR(m) ? KILN_TAR_DIR : KILN_TAR_SYMLINK;
	t->mode = m & 07777;
	t->uid = layer_uid(nd->st.st_uid);
	t->gid = layer_gid(nd->st.st_gid);
	t->name = strdup(nd->path);
	bool ok = t->name != NULL;
	if (t->type == KILN_TAR_FILE) {
		t->size = (uint64_t)nd->st.st_size;
		kiln_stat_fp_from(&t->fp, &nd->st);
		ok = ok && asprintf(&t->source, "%s/%s", root, nd->path) >= 0;
	} else if (t->type == KILN_TAR_SYMLINK) {
		ok = ok && (t->link_target = strdup(nd->target ? nd->target : "")) != NULL;
	}
	return ok ? 0 : kiln_error_set(err, KILN_EFAIL, "out of memory");
}

/* The whiteout for the gone path PATH ("dir/.wh.name"). */
static int add_whiteout(struct entries *e, const char *path, struct kiln_error **err)
{
	struct kiln_tar_entry *t = entry_new(e, err);
	if (t == NULL)
		return KILN_EFAIL;
	const char *slash = strrchr(path, '/');
	int n = slash ? asprintf(&t->name, "%.*s/.wh.%s", (int)(slash - path), path, slash + 1)
	              : asprintf(&t->name, ".wh.%s", path);
	if (n < 0) {
		t->name = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	t->type = KILN_TAR_FILE;
	t->mode = 0644;
	return 0;
}

/* The parent directory of PATH ("" for a top-level one) into BUF. */
static const char *parent_of(char *buf, size_t size, const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 0;
	if (len >= size)
		len = size - 1;
	memcpy(buf, path, len);
	buf[len] = '\0';
	return buf;
}

int kiln_rootfs_diff(struct kiln_tar_entry **entries, size_t *n, const struct kiln_rootfs_snapshot *snap,
                     const char *root, const char *const *exclude, struct kiln_error **err)
{
	*entries = NULL;
	*n = 0;
	struct kiln_rootfs_snapshot now = {0};
	int rc = scan(&now, root, exclude, err);
	if (rc < 0)
		return rc;
	struct entries e = {0};
	bool *emitted = calloc(now.n ? now.n : 1, sizeof(*emitted));
	if (emitted == NULL)
		rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
	/* added and changed paths */
	for (size_t i = 0; rc == 0 && i < now.n; i++) {
		const struct node *was = find(snap, now.v[i].path);
		if (was && !changed(was, &now.v[i]))
			continue;
		emitted[i] = true;
		rc = add_node(&e, &now.v[i], root, err);
	}
	/* gone paths whose parent is still a directory (a removed directory is one whiteout) */
	char buf[4096];
	for (size_t i = 0; rc == 0 && i < snap->n; i++) {
		const char *p = snap->v[i].path;
		if (excluded(p, exclude) || find(&now, p))
			continue;
		const char *parent = parent_of(buf, sizeof(buf), p);
		const struct node *up = *parent ? find(&now, parent) : NULL;
		if (*parent && (!up || !S_ISDIR(up->st.st_mode)))
			continue;
		rc = add_whiteout(&e, p, err);
	}
	/* every directory above an entry, with its own mode and owner (the writer would add 0755 root) */
	size_t listed = e.n;
	for (size_t i = 0; rc == 0 && i < listed; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s", e.v[i].name);
		for (char *s = strrchr(path, '/'); rc == 0 && s; s = strrchr(path, '/')) {
			*s = '\0';
			const struct node *up = find(&now, path);
			if (!up || emitted[up - now.v])
				break;
			emitted[up - now.v] = true;
			rc = add_node(&e, up, root, err);
		}
	}
	free(emitted);
	nodes_free(&now);
	if (rc < 0) {
		for (size_t i = 0; i < e.n; i++)
			kiln_tar_entry_release(&e.v[i]);
		free(e.v);
		return kiln_error_wrap(err, "cannot list what changed in '%s'", root);
	}
	*entries = e.v;
	*n = e.n;
	return 0;
}
