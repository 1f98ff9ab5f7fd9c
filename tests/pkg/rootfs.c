/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/rootfs.c: what a step changed in a root, as layer entries with OCI whiteouts. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fs.h"
#include "pkg/rootfs.h"

static char *root;

static void make_root(void)
{
	root = strdup("/tmp/kiln-rootfs-XXXXXX");
	cr_assert(mkdtemp(root) != NULL);
}

static void remove_root(void)
{
	kiln_remove_tree(root, NULL);
	free(root);
}

TestSuite(rootfs, .init = make_root, .fini = remove_root);

static const char *at(const char *rel)
{
	static char buf[4][4096];
	static int slot;
	slot = (slot + 1) % 4;
	snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", root, rel);
	return buf[slot];
}

static void put(const char *rel, const char *text)
{
	cr_assert_eq(kiln_write_file_atomic(at(rel), text, strlen(text), NULL), 0, "cannot write %s", rel);
}

/* The names of the entries, sorted, joined by spaces ("d/ l@ f"): '/' a directory, '@' a link. */
static char *names(struct kiln_tar_entry *e, size_t n)
{
	char **v = calloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = e[i].name;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			char *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	struct kiln_buf out = KILN_BUF_INIT;
	kiln_buf_puts(&out, "");
	for (size_t i = 0; i < n; i++) {
		const struct kiln_tar_entry *x = NULL;
		for (size_t k = 0; k < n; k++)
			if (e[k].name == v[i])
				x = &e[k];
		kiln_buf_printf(&out, "%s%s%s", i ? " " : "", v[i],
		                x->type == KILN_TAR_DIR       ? "/"
		                : x->type == KILN_TAR_SYMLINK ? "@"
		                                              : "");
	}
	free(v);
	kiln_buf_put(&out, "", 1);
	return kiln_buf_detach(&out);
}

static char *diff(struct kiln_rootfs_snapshot *snap, const char *const *exclude, struct kiln_tar_entry **e,
                  size_t *n)
{
	struct kiln_error *err = NULL;
	int rc = kiln_rootfs_diff(e, n, snap, root, exclude, &err);
	cr_assert_eq(rc, 0, "diff: %s", err ? err->message : "");
	return names(*e, *n);
}

static void release(struct kiln_tar_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		kiln_tar_entry_release(&e[i]);
	free(e);
}

Test(rootfs, nothing_changed_gives_no_entries)
{
	mkdir(at("etc"), 0755);
	put("etc/a", "a");
	struct kiln_rootfs_snapshot *snap = NULL;
	cr_assert_eq(kiln_rootfs_snapshot(&snap, root, NULL), 0);
	struct kiln_tar_entry *e;
	size_t n;
	char *got = diff(snap, NULL, &e, &n);
	cr_expect_str_eq(got, "");
	free(got);
	release(e, n);
	kiln_rootfs_snapshot_free(snap);
}

Test(rootfs, additions_changes_and_deletions_become_entries_and_whiteouts)
{
	mkdir(at("etc"), 0755);
	mkdir(at("usr"), 0755);
	mkdir(at("usr/share"), 0755);
	mkdir(at("usr/share/doc"), 0755);
	mkdir(at("var"), 0755);
	mkdir(at("var/tmp"), 01777);
	chmod(at("var/tmp"), 01777);
	put("etc/keep", "k");
	put("etc/gone", "g");
	put("etc/edit", "old");
	put("usr/share/doc/a", "a");
	put("usr/share/doc/b", "b");
	cr_assert_eq(symlink("keep", at("etc/link")), 0);
	struct kiln_rootfs_snapshot *snap = NULL;
	cr_assert_eq(kiln_rootfs_snapshot(&snap, root, NULL), 0);

	unlink(at("etc/gone"));
	put("etc/edit", "new text");
	unlink(at("etc/link"));
	cr_assert_eq(symlink("edit", at("etc/link")), 0);
	kiln_remove_tree(at("usr/share/doc"), NULL);
	put("var/tmp/new", "n");
	mkdir(at("opt"), 0700);
	put("opt/tool", "t");

	struct kiln_tar_entry *e;
	size_t n;
	char *got = diff(snap, NULL, &e, &n);
	cr_expect_str_eq(got, "etc/ etc/.wh.gone etc/edit etc/link@ opt/ opt/tool usr/ usr/share/ "
	                      "usr/share/.wh.doc var/ var/tmp/ var/tmp/new");
	for (size_t i = 0; i < n; i++) {
		if (strcmp(e[i].name, "var/tmp") == 0)
			cr_expect_eq(e[i].mode, 01777, "a parent keeps its own mode");
		if (strcmp(e[i].name, "opt") == 0)
			cr_expect_eq(e[i].mode, 0700);
		if (strstr(e[i].name, ".wh.")) {
			cr_expect_eq(e[i].type, KILN_TAR_FILE);
			cr_expect_null(e[i].source, "a whiteout is an empty file of no source");
			cr_expect_eq(e[i].size, 0);
		}
		if (strcmp(e[i].name, "etc/link") == 0)
			cr_expect_str_eq(e[i].link_target, "edit");
		if (strcmp(e[i].name, "etc/edit") == 0)
			cr_expect_eq(e[i].size, 8);
	}
	free(got);
	release(e, n);
	kiln_rootfs_snapshot_free(snap);
}

Test(rootfs, excluded_paths_never_land_in_the_entries)
{
	mkdir(at("run"), 0755);
	struct kiln_rootfs_snapshot *snap = NULL;
	cr_assert_eq(kiln_rootfs_snapshot(&snap, root, NULL), 0);
	mkdir(at("tmp"), 01777);
	put("tmp/scratch", "s");
	mkdir(at("run/secrets"), 0755);
	put("run/secrets/token", "");
	put("run/kept", "k");
	const char *const exclude[] = {"/tmp", "/run/secrets", NULL};
	struct kiln_tar_entry *e;
	size_t n;
	char *got = diff(snap, exclude, &e, &n);
	cr_expect_str_eq(got, "run/ run/kept");
	free(got);
	release(e, n);
	kiln_rootfs_snapshot_free(snap);
}

Test(rootfs, a_directory_replaced_by_a_file_needs_no_whiteouts_below_it)
{
	mkdir(at("d"), 0755);
	put("d/x", "x");
	struct kiln_rootfs_snapshot *snap = NULL;
	cr_assert_eq(kiln_rootfs_snapshot(&snap, root, NULL), 0);
	kiln_remove_tree(at("d"), NULL);
	put("d", "now a file");
	struct kiln_tar_entry *e;
	size_t n;
	char *got = diff(snap, NULL, &e, &n);
	cr_expect_str_eq(got, "d");
	free(got);
	release(e, n);
	kiln_rootfs_snapshot_free(snap);
}
