/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_init.c: `kiln init`: write a new model project (cli/init_templates.c), never over an existing file. */
#include "cli/cli.h"
#include "cli/init_templates.h"
#include "common/cleanup.h"
#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The directories kiln init made, in the order it made them, so that a failed init removes them again. */
struct made_dirs {
	char **paths;
	size_t n;
};

static void made_dirs_release(struct made_dirs *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->paths[i]);
	free(d->paths);
	d->paths = NULL;
	d->n = 0;
}

/*
 * mkdir -p PATH (mode 0777 less the umask), recording in D every directory it makes. An existing directory
 * is fine; anything else in the way is an error.
 */
static int make_dirs(struct made_dirs *d, const char *path, struct kiln_error **err)
{
	_cleanup_free_ char *p = strdup(path);
	if (p == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	size_t len = strlen(p);
	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char saved = p[i];
		p[i] = '\0';
		if (mkdir(p, 0777) == 0) {
			char **grown = realloc(d->paths, (d->n + 1) * sizeof(*grown));
			char *copy = grown ? strdup(p) : NULL;
			if (grown)
				d->paths = grown;
			if (copy == NULL)
				return kiln_error_set(err, KILN_EFAIL, "out of memory");
			d->paths[d->n++] = copy;
		} else if (errno != EEXIST) {
			return kiln_error_errno(err, errno, "cannot create directory '%s'", p);
		}
		p[i] = saved;
	}
	return 0;
}

/*
 * Move TMP to PATH unless PATH exists (then errno is EEXIST and TMP stays). renameat2 does it in one step;
 * on a filesystem without RENAME_NOREPLACE, a hard link and the removal of TMP do.
 */
static int place_new(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (link(tmp, path) < 0)
		return -1;
	unlink(tmp);
	return 0;
}

/*
 * Write TEXT to the new file PATH atomically: a temporary file beside it, fsync, then a rename that never
 * replaces a file. On failure nothing is left at PATH nor at the temporary name, and a file that appeared at
 * PATH meanwhile is left as it is.
 */
static int write_new(const char *path, const char *text, struct kiln_error **err)
{
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%.*s.%s.tmp-%d", dir_len, path, path + dir_len, (int)getpid()) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0)
		return kiln_error_errno(err, errno, "cannot create '%s'", tmp);
	if (kiln_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return kiln_error_errno(err, e, "cannot write '%s'", path);
	}
	if (close(fd) < 0 || place_new(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		if (e == EEXIST)
			return kiln_error_set(err, KILN_EFAIL,
			                      "'%s' appeared while kiln init ran: left as it is", path);
		return kiln_error_errno(err, e, "cannot write '%s'", path);
	}
	return kiln_fsync_parent(path, err);
}

/*
 * Whether the template REL can be written in DIR: 0 when nothing is in its way, 1 when the file, or a file
 * where one of its directories should be, is there already (reported on stderr), or a negative code with
 * *ERR set when that cannot be told.
 */
static int check_free(const char *dir, const char *rel, struct kiln_error **err)
{
	_cleanup_free_ char *path = kiln_path_join(dir, rel);
	if (path == NULL)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	struct stat st;
	size_t base = strlen(path) - strlen(rel);
	for (char *s = strchr(path + base, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		int r = stat(path, &st);
		if (r < 0 && errno == ENOENT)
			return 0;
		if (r < 0)
			return kiln_error_errno(err, errno, "cannot check '%s'", path);
		if (!S_ISDIR(st.st_mode)) {
			errorf("'%s' exists in '%s' and is not a directory", path + base, dir);
			return 1;
		}
		*s = '/';
	}
	if (lstat(path, &st) == 0) {
		errorf("'%s' exists in '%s'", rel, dir);
		return 1;
	}
	if (errno != ENOENT)
		return kiln_error_errno(err, errno, "cannot check '%s'", path);
	return 0;
}

/* Remove the first N files of the templates from DIR, then the directories in MADE, newest first. */
static void roll_back(const char *dir, size_t n, struct made_dirs *made)
{
	for (size_t i = n; i-- > 0;) {
		_cleanup_free_ char *path = kiln_path_join(dir, init_templates[i].path);
		if (path && unlink(path) < 0 && errno != ENOENT)
			warnf("cannot remove '%s': %s", path, strerror(errno));
	}
	for (size_t i = made->n; i-- > 0;)
		rmdir(made->paths[i]);
}

/* Write every template into DIR, making what directories they need. On failure, or when interrupted, what
 * was written and made is removed again. */
static int write_all(const char *dir, struct kiln_error **err)
{
	struct made_dirs made = {NULL, 0};
	size_t n = 0;
	int rc = make_dirs(&made, dir, err);
	for (; rc == 0 && init_templates[n].path; n++) {
		if (cli_interrupted) {
			rc = kiln_error_set(err, KILN_EINTR, "interrupted");
			break;
		}
		_cleanup_free_ char *path = kiln_path_join(dir, init_templates[n].path);
		if (path == NULL) {
			rc = kiln_error_set(err, KILN_EFAIL, "out of memory");
			break;
		}
		char *slash = strrchr(path, '/');
		*slash = '\0';
		rc = make_dirs(&made, path, err);
		*slash = '/';
		if (rc == 0)
			rc = write_new(path, init_templates[n].text, err);
		if (rc < 0)
			break;
	}
	if (rc == 0 && cli_interrupted)
		rc = kiln_error_set(err, KILN_EINTR, "interrupted");
	if (rc < 0)
		roll_back(dir, n, &made);
	made_dirs_release(&made);
	return rc;
}

static void print_result(const char *dir, bool json)
{
	if (json) {
		json_t *files = json_array();
		for (const struct init_template *t = init_templates; t->path; t++)
			json_array_append_new(files, json_string(t->path));
		json_t *j = json_pack("{s:s,s:o}", "dir", dir, "files", files);
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
		return;
	}
	if (cli.quiet)
		return;
	bool here = strcmp(dir, ".") == 0;
	for (const struct init_template *t = init_templates; t->path; t++) {
		if (here) {
			puts(t->path);
		} else {
			_cleanup_free_ char *path = kiln_path_join(dir, t->path);
			puts(path ? path : t->path);
		}
	}
}

int cmd_init(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, CLI_OPT_JSON},
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	bool json = false;
	int first, status = cli_parse(argc, argv, ":" CLI_COMMON_SHORT, longopts, NULL, cli_json_option,
	                              &json, 0, 1, &first);
	if (status >= 0)
		return status;
	const char *dir = first < argc ? argv[first] : ".";
	if (*dir == '\0')
		return cli_usage_error("the directory name is empty");
	_cleanup_error_ struct kiln_error *err = NULL;

	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			errorf("cannot init '%s': not a directory", dir);
			return EXIT_FAIL;
		}
		int taken = 0;
		for (const struct init_template *t = init_templates; t->path; t++) {
			int r = check_free(dir, t->path, &err);
			if (r < 0)
				return cli_fail(err);
			taken += r;
		}
		if (taken) {
			errorf("nothing written: kiln init does not overwrite files");
			return EXIT_FAIL;
		}
	} else if (errno != ENOENT) {
		kiln_error_errno(&err, errno, "cannot init '%s'", dir);
		return cli_fail(err);
	}

	cli_catch_signals();
	if (write_all(dir, &err) < 0) {
		if (err->code != KILN_EINTR)
			kiln_error_wrap(&err, "cannot init '%s'", dir);
		return cli_fail(err);
	}
	print_result(dir, json);
	infof("next: edit predict.py, try it with 'kiln serve %s', build its image with 'kiln build %s'", dir,
	      dir);
	return EXIT_OK;
}
