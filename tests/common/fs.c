/* SPDX-License-Identifier: Apache-2.0 */
/* tests/common/fs.c: mkdir -p, atomic writes, small-file reads, rm -rf and stat fingerprints. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fs.h"

static char *tmp;

static void make_tmp(void)
{
	tmp = strdup("/tmp/kiln-fs-XXXXXX");
	cr_assert(mkdtemp(tmp) != NULL);
}

static void remove_tmp(void)
{
	kiln_remove_tree(tmp, NULL);
	free(tmp);
}

TestSuite(fs, .init = make_tmp, .fini = remove_tmp);

/* A path under the test's directory, in a static buffer (valid until the next call with the same slot). */
static const char *in_tmp(int slot, const char *name)
{
	static char bufs[4][4096];
	snprintf(bufs[slot], sizeof(bufs[slot]), "%s/%s", tmp, name);
	return bufs[slot];
}

/* The number of entries (other than . and ..) in DIR. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "cannot open %s", dir);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static mode_t current_umask(void)
{
	mode_t m = umask(022);
	umask(m);
	return m;
}

static void fp_of(struct kiln_stat_fp *fp, const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	kiln_stat_fp_from(fp, &st);
}

Test(fs, mkdir_p_creates_nested_directories_and_accepts_existing)
{
	const char *deep = in_tmp(0, "a/b/c/d");
	cr_assert_eq(kiln_mkdir_p(deep, NULL), 0);
	struct stat st;
	cr_assert_eq(stat(deep, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0755 & ~current_umask());
	cr_assert_eq(kiln_mkdir_p(deep, NULL), 0, "an existing directory is fine");
	cr_assert_eq(kiln_mkdir_p(in_tmp(1, "a/b/"), NULL), 0, "a trailing slash is fine");
}

Test(fs, mkdir_p_through_a_file_fails_naming_the_path)
{
	cr_assert_eq(kiln_write_file_atomic(in_tmp(0, "file"), "x", 1, NULL), 0);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_mkdir_p(in_tmp(1, "file/sub"), &err), 0);
	cr_assert_not_null(err);
	cr_assert_not_null(strstr(err->message, "file/sub"), "message: %s", err->message);
	cr_assert_not_null(strstr(err->message, strerror(ENOTDIR)), "message: %s", err->message);
	kiln_error_free(err);
}

Test(fs, mkdir_p_of_empty_path_fails_without_reading_past_it)
{
	/* run under valgrind to see the over-read this guards against */
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_mkdir_p("", &err), 0);
	cr_assert_not_null(err);
	kiln_error_free(err);
}

Test(fs, write_file_atomic_writes_content_and_leaves_no_temporary_file)
{
	const char *path = in_tmp(0, "out.json");
	cr_assert_eq(kiln_write_file_atomic(path, "{\"a\":1}", 7, NULL), 0);
	char *data = NULL;
	size_t len = 0;
	cr_assert_eq(kiln_read_file(&data, &len, path, 1024, NULL), 0);
	cr_assert_eq(len, 7);
	cr_assert_str_eq(data, "{\"a\":1}");
	free(data);
	cr_assert_eq(count_entries(tmp), 1, "only the file itself is in the directory");
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644 & ~current_umask());
}

Test(fs, write_file_atomic_mode_gives_the_mode_whatever_the_umask)
{
	const char *path = in_tmp(0, "run.py");
	mode_t old = umask(077);
	int rc = kiln_write_file_atomic_mode(path, "x = 1\n", 6, 0755, NULL);
	umask(old);
	cr_assert_eq(rc, 0);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0755);
	cr_assert_eq(st.st_size, 6);
	cr_assert_eq(count_entries(tmp), 1, "only the file itself is in the directory");
}

Test(fs, write_file_atomic_replaces_existing_content)
{
	const char *path = in_tmp(0, "out");
	cr_assert_eq(kiln_write_file_atomic(path, "a much longer first version", 27, NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(path, "v2", 2, NULL), 0);
	char *data = NULL;
	size_t len = 0;
	cr_assert_eq(kiln_read_file(&data, &len, path, 1024, NULL), 0);
	cr_assert_eq(len, 2);
	cr_assert_str_eq(data, "v2");
	free(data);
	cr_assert_eq(count_entries(tmp), 1);
}

Test(fs, write_file_atomic_into_missing_directory_fails_and_leaves_nothing)
{
	const char *path = in_tmp(0, "missing/out");
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_write_file_atomic(path, "x", 1, &err), 0);
	cr_assert_not_null(err);
	cr_assert_eq(err->code, KILN_ENOTFOUND);
	cr_assert_not_null(strstr(err->message, "missing/out"), "message: %s", err->message);
	kiln_error_free(err);
	cr_assert_eq(count_entries(tmp), 0);
	cr_assert_eq(access(in_tmp(1, "missing"), F_OK), -1);
}

Test(fs, write_file_atomic_over_a_directory_fails_and_removes_temporary_file)
{
	const char *path = in_tmp(0, "dir");
	cr_assert_eq(kiln_mkdir_p(path, NULL), 0);
	cr_assert_eq(kiln_mkdir_p(in_tmp(1, "dir/inner"), NULL), 0);
	struct kiln_error *err = NULL;
	cr_assert_lt(kiln_write_file_atomic(path, "x", 1, &err), 0);
	kiln_error_free(err);
	cr_assert_eq(count_entries(tmp), 1, "the rename failed and the temporary file is gone");
}

Test(fs, read_file_reads_whole_file_nul_terminated)
{
	const char *path = in_tmp(0, "f");
	cr_assert_eq(kiln_write_file_atomic(path, "a\0bc", 4, NULL), 0);
	char *data = NULL;
	size_t len = 0;
	cr_assert_eq(kiln_read_file(&data, &len, path, 4, NULL), 0, "exactly max_len is allowed");
	cr_assert_eq(len, 4);
	cr_assert_eq(memcmp(data, "a\0bc", 5), 0);
	free(data);
	data = NULL;
	cr_assert_eq(kiln_read_file(&data, NULL, path, 100, NULL), 0, "len may be NULL");
	free(data);
}

Test(fs, read_file_of_empty_file_gives_empty_string)
{
	const char *path = in_tmp(0, "empty");
	cr_assert_eq(kiln_write_file_atomic(path, "", 0, NULL), 0);
	char *data = NULL;
	size_t len = 99;
	cr_assert_eq(kiln_read_file(&data, &len, path, 0, NULL), 0);
	cr_assert_eq(len, 0);
	cr_assert_str_eq(data, "");
	free(data);
}

Test(fs, read_file_larger_than_max_len_is_refused)
{
	const char *path = in_tmp(0, "big");
	cr_assert_eq(kiln_write_file_atomic(path, "0123456789", 10, NULL), 0);
	char *data = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_read_file(&data, NULL, path, 9, &err), KILN_EINVAL);
	cr_assert_null(data);
	cr_assert_not_null(strstr(err->message, path), "message: %s", err->message);
	cr_assert_not_null(strstr(err->message, "too large"), "message: %s", err->message);
	kiln_error_free(err);
}

Test(fs, read_file_of_directory_is_not_a_regular_file)
{
	char *data = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_read_file(&data, NULL, tmp, 1 << 20, &err), KILN_EINVAL);
	cr_assert_null(data);
	cr_assert_not_null(strstr(err->message, "not a regular file"), "message: %s", err->message);
	kiln_error_free(err);
}

Test(fs, read_file_of_missing_file_is_not_found)
{
	char *data = NULL;
	struct kiln_error *err = NULL;
	const char *path = in_tmp(0, "nope");
	cr_assert_eq(kiln_read_file(&data, NULL, path, 1 << 20, &err), KILN_ENOTFOUND);
	cr_assert_not_null(strstr(err->message, path));
	kiln_error_free(err);
}

Test(fs, remove_tree_removes_nested_tree_but_not_symlink_targets)
{
	cr_assert_eq(kiln_mkdir_p(in_tmp(0, "tree/a/b"), NULL), 0);
	cr_assert_eq(kiln_mkdir_p(in_tmp(0, "outside"), NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_tmp(0, "tree/a/b/f"), "x", 1, NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_tmp(0, "tree/g"), "y", 1, NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_tmp(0, "outside/keep"), "z", 1, NULL), 0);
	cr_assert_eq(symlink(in_tmp(0, "outside"), in_tmp(1, "tree/link")), 0);
	cr_assert_eq(kiln_remove_tree(in_tmp(0, "tree"), NULL), 0);
	cr_assert_eq(access(in_tmp(0, "tree"), F_OK), -1);
	cr_assert_eq(access(in_tmp(0, "outside/keep"), F_OK), 0, "a symlink's target is left alone");
}

Test(fs, remove_tree_of_missing_path_or_single_file_succeeds)
{
	cr_assert_eq(kiln_remove_tree(in_tmp(0, "never-existed"), NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_tmp(0, "one"), "1", 1, NULL), 0);
	cr_assert_eq(kiln_remove_tree(in_tmp(0, "one"), NULL), 0);
	cr_assert_eq(count_entries(tmp), 0);
}

Test(fs, stat_fingerprint_is_stable_for_an_untouched_file)
{
	const char *path = in_tmp(0, "w.bin");
	cr_assert_eq(kiln_write_file_atomic(path, "weights", 7, NULL), 0);
	struct kiln_stat_fp a, b;
	fp_of(&a, path);
	fp_of(&b, path);
	cr_assert(kiln_stat_fp_equal(&a, &b));
	cr_assert_eq(a.size, 7);
}

Test(fs, stat_fingerprint_changes_when_file_is_rewritten)
{
	const char *path = in_tmp(0, "w.bin");
	cr_assert_eq(kiln_write_file_atomic(path, "weights", 7, NULL), 0);
	struct kiln_stat_fp before, after_atomic, after_inplace;
	fp_of(&before, path);

	/* an atomic rewrite with the same bytes: a new inode */
	cr_assert_eq(kiln_write_file_atomic(path, "weights", 7, NULL), 0);
	fp_of(&after_atomic, path);
	cr_assert_not(kiln_stat_fp_equal(&before, &after_atomic));

	/* an in-place rewrite of the same size: same inode, new mtime and ctime */
	nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(kiln_write_all(fd, "WEIGHTS", 7), 0);
	close(fd);
	fp_of(&after_inplace, path);
	cr_assert_eq(after_inplace.ino, after_atomic.ino);
	cr_assert_eq(after_inplace.size, after_atomic.size);
	cr_assert_not(kiln_stat_fp_equal(&after_atomic, &after_inplace));
}

Test(fs, path_join_puts_exactly_one_slash)
{
	char *a = kiln_path_join("/x/y", "z");
	char *b = kiln_path_join("/x/y/", "z");
	cr_assert_str_eq(a, "/x/y/z");
	cr_assert_str_eq(b, "/x/y/z");
	free(a);
	free(b);
}

/* What kiln_open_beneath must do, with openat2 or without: 0 when all holds, else the failed check. */
static int open_beneath_checks(void)
{
	int root = open(tmp, O_RDONLY | O_DIRECTORY);
	int fd;
	struct {
		const char *rel;
		int flags, want_errno; /* 0: opens */
	} cases[] = {
	    {"", O_RDONLY | O_DIRECTORY, 0},   {"a/b/f", O_RDONLY, 0},
	    {"a//b/./f", O_RDONLY, 0},         {"a/b/", O_RDONLY | O_DIRECTORY, 0},
	    {"../x", O_RDONLY, EXDEV},         {"a/../../x", O_RDONLY, EXDEV},
	    {"/etc/passwd", O_RDONLY, EXDEV},  {"up/f", O_RDONLY, ELOOP},
	    {"abs/passwd", O_RDONLY, ELOOP},   {"a/link", O_RDONLY, ELOOP},
	    {"a/missing/f", O_RDONLY, ENOENT}, {"a/b/f/g", O_RDONLY, ENOTDIR},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		errno = 0;
		fd = kiln_open_beneath(root, cases[i].rel, cases[i].flags);
		if (fd >= 0)
			close(fd);
		if (cases[i].want_errno == 0 ? fd < 0 : fd >= 0 || errno != cases[i].want_errno)
			return (int)i + 1;
	}
	close(root);
	return 0;
}

static void make_beneath_tree(void)
{
	cr_assert_eq(kiln_mkdir_p(in_tmp(0, "a/b"), NULL), 0);
	cr_assert_eq(kiln_write_file_atomic(in_tmp(0, "a/b/f"), "f", 1, NULL), 0);
	cr_assert_eq(symlink("a/b", in_tmp(0, "up")), 0);
	cr_assert_eq(symlink("/etc", in_tmp(0, "abs")), 0);
	cr_assert_eq(symlink("b/f", in_tmp(0, "a/link")), 0);
}

Test(fs, open_beneath_stays_under_its_directory_and_follows_no_link)
{
	make_beneath_tree();
	int failed = open_beneath_checks();
	cr_assert_eq(failed, 0, "case %d", failed);
}

/* The same without openat2, as on a kernel before 5.6: a child where it fails with ENOSYS. */
Test(fs, open_beneath_without_openat2_walks_the_path_alike)
{
	make_beneath_tree();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sock_filter f[] = {
		    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
			_exit(100);
		_exit(open_beneath_checks());
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "case %d (100: no seccomp here)", WEXITSTATUS(status));
}

Test(fs, mkdir_p_mode_gives_its_mode_to_the_directories_it_makes)
{
	cr_assert_eq(mkdir(in_tmp(0, "old"), 0755), 0);
	cr_assert_eq(kiln_mkdir_p_mode(in_tmp(0, "old/new/deeper"), 0700, NULL), 0);
	struct stat st;
	cr_assert_eq(stat(in_tmp(0, "old"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0755 & ~current_umask(), "an existing directory changed");
	cr_assert_eq(stat(in_tmp(0, "old/new"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
	cr_assert_eq(stat(in_tmp(0, "old/new/deeper"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0700);
}
