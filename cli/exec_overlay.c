/* SPDX-License-Identifier: Apache-2.0 */
/*
 * exec_overlay.c: the writable layer kiln exec puts over an image's root, as a Docker container has one: an
 * overlayfs with the unpacked root (shared by every run, never written) below and a directory of the
 * store's tmp/ above, mounted in a mount namespace of the command's own (and a user namespace, for a user
 * who is not root) and thrown away when the command ends. bubblewrap 0.8 (Debian 12's) has no overlay of
 * its own, so the mount is made before it runs, in the process that then becomes bubblewrap.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/predict.h"
#include "common/cleanup.h"
#include "common/fs.h"

int exec_overlay_prepare(struct exec_overlay *o, struct kiln_store *s, const char *lower,
                         struct kiln_error **err)
{
	*o = (struct exec_overlay){0};
	/* overlayfs' options are split at ',' and lowerdir at ':' */
	if (strpbrk(lower, ",:\\"))
		return kiln_error_set(err, KILN_EINVAL, "the store's path '%s' has ',', ':' or '\\'", lower);
	_cleanup_free_ char *tmp = NULL;
	if (kiln_store_private_dir(&tmp, s, "tmp", err) < 0)
		return KILN_EFAIL;
	if (asprintf(&o->dir, "%s/%d-exec-XXXXXX", tmp, (int)getpid()) < 0) {
		o->dir = NULL;
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	if (!mkdtemp(o->dir)) {
		int e = errno;
		free(o->dir);
		o->dir = NULL;
		return kiln_error_errno(err, e, "cannot make a directory in '%s'", tmp);
	}
	if (asprintf(&o->upper, "%s/upper", o->dir) < 0 || asprintf(&o->work, "%s/work", o->dir) < 0 ||
	    asprintf(&o->merged, "%s/root", o->dir) < 0 || !(o->lower = strdup(lower))) {
		exec_overlay_release(o);
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	if (mkdir(o->upper, 0755) < 0 || mkdir(o->work, 0700) < 0 || mkdir(o->merged, 0755) < 0) {
		int e = errno;
		exec_overlay_release(o);
		return kiln_error_errno(err, e, "cannot make the command's writable layer");
	}
	return 0;
}

/* Write TEXT to the file PATH (a /proc/self map); 0 or -1 with errno. */
static int put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	int e = errno;
	close(fd);
	errno = n == (ssize_t)strlen(text) ? 0 : (n < 0 ? e : EIO);
	return errno ? -1 : 0;
}

int exec_overlay_enter(const struct exec_overlay *o, char *why, size_t size)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	const char *step = "unshare";
	char map[64];
	if (uid == 0) {
		/* root needs no user namespace: its overlay keeps trusted xattrs as Docker's does */
		if (unshare(CLONE_NEWNS) < 0)
			goto fail;
	} else {
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
			goto fail;
		step = "the user namespace's maps";
		snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)uid);
		if (put("/proc/self/setgroups", "deny") < 0 || put("/proc/self/uid_map", map) < 0)
			goto fail;
		snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)gid);
		if (put("/proc/self/gid_map", map) < 0)
			goto fail;
	}
	step = "a private mount namespace";
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		goto fail;
	step = "overlayfs";
	char opts[3 * PATH_MAX + 64];
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s%s", o->lower, o->upper, o->work,
	         uid == 0 ? "" : ",userxattr");
	if (mount("overlay", o->merged, "overlay", 0, opts) < 0)
		goto fail;
	return 0;
fail:
	snprintf(why, size, "%s: %s", step, strerror(errno));
	return -1;
}

void exec_overlay_release(struct exec_overlay *o)
{
	if (o->dir) {
		/* overlayfs leaves work/work without permissions: made searchable again to be removed */
		_cleanup_free_ char *inner = NULL;
		if (asprintf(&inner, "%s/work/work", o->dir) >= 0)
			chmod(inner, 0700);
		_cleanup_error_ struct kiln_error *err = NULL;
		if (kiln_remove_tree(o->dir, &err) < 0)
			warnf("cannot remove the command's writable layer '%s': %s", o->dir, err->message);
	}
	free(o->dir);
	free(o->upper);
	free(o->work);
	free(o->merged);
	free((char *)o->lower);
	*o = (struct exec_overlay){0};
}
