/* SPDX-License-Identifier: Apache-2.0 */
/* tests/pkg/ignore.c: globs with "**" and .kilnignore / .dockerignore rules with Docker's semantics. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fs.h"
#include "pkg/plan.h"

/* A temporary project directory, removed at the end of each test. */
static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/kiln-ignore-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	kiln_remove_tree(tmpdir, NULL);
}

static void write_text(const char *name, const char *text)
{
	char *path = kiln_path_join(tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "cannot create %s", path);
	cr_assert_eq(kiln_write_all(fd, text, strlen(text)), 0);
	close(fd);
	free(path);
}

/* Load the rules of a project whose .dockerignore holds TEXT. */
static struct kiln_ignore *rules_from(const char *text)
{
	write_text(".dockerignore", text);
	struct kiln_ignore *ig = NULL;
	struct kiln_error *err = NULL;
	int r = kiln_ignore_load(&ig, tmpdir, &err);
	cr_assert_eq(r, 0, "%s", err ? err->message : "");
	return ig;
}

TestSuite(ignore, .init = make_tmpdir, .fini = remove_tmpdir);

Test(ignore, star_stays_within_one_component)
{
	cr_expect(kiln_glob_match("*.bin", "a.bin"));
	cr_expect_not(kiln_glob_match("*.bin", "x/a.bin"));
	cr_expect(kiln_glob_match("*/*.bin", "x/a.bin"));
	cr_expect(kiln_glob_match("models/?.bin", "models/a.bin"));
	cr_expect_not(kiln_glob_match("models/?.bin", "models/ab.bin"));
	cr_expect(kiln_glob_match("*.md", ".hidden.md"), "a leading dot is not special, as in Docker");
	cr_expect_not(kiln_glob_match("models", "models/a.bin"), "a glob matches whole paths");
}

Test(ignore, character_classes_come_from_fnmatch)
{
	cr_expect(kiln_glob_match("[ab].txt", "a.txt"));
	cr_expect_not(kiln_glob_match("[ab].txt", "c.txt"));
	cr_expect(kiln_glob_match("[!a].txt", "c.txt"));
	cr_expect(kiln_glob_match("[^a].txt", "c.txt"));
	cr_expect_not(kiln_glob_match("[!a].txt", "a.txt"));
	cr_expect(kiln_glob_match("shard-[0-9][0-9].bin", "shard-07.bin"));
	cr_expect(kiln_glob_match("a\\*b", "a*b"));
	cr_expect_not(kiln_glob_match("a\\*b", "axb"));
}

Test(ignore, double_star_matches_zero_or_more_directories)
{
	cr_expect(kiln_glob_match("models/**/*.bin", "models/a.bin"));
	cr_expect(kiln_glob_match("models/**/*.bin", "models/x/a.bin"));
	cr_expect(kiln_glob_match("models/**/*.bin", "models/x/y/a.bin"));
	cr_expect_not(kiln_glob_match("models/**/*.bin", "other/a.bin"));
	cr_expect_not(kiln_glob_match("models/**/*.bin", "models/x/a.txt"));
	cr_expect(kiln_glob_match("**/*.onnx", "a.onnx"));
	cr_expect(kiln_glob_match("**/*.onnx", "x/y/z/a.onnx"));
	cr_expect(kiln_glob_match("a/**/b", "a/b"));
	cr_expect(kiln_glob_match("a/**/b", "a/x/y/b"));
	cr_expect_not(kiln_glob_match("a/**/b", "a/x/y/c"));
	cr_expect(kiln_glob_match("**/x/**/*.bin", "p/x/q/r.bin"));
}

Test(ignore, trailing_double_star_matches_everything_under)
{
	cr_expect(kiln_glob_match("models/**", "models/a"));
	cr_expect(kiln_glob_match("models/**", "models/x/y/z"));
	cr_expect_not(kiln_glob_match("models/**", "models"));
	cr_expect(kiln_glob_match("**", "anything/at/all"));
}

Test(ignore, leading_dot_slash_or_slash_is_ignored)
{
	cr_expect(kiln_glob_match("./models/*.bin", "models/a.bin"));
	cr_expect(kiln_glob_match("/models/*.bin", "models/a.bin"));
	cr_expect(kiln_glob_match("models//*.bin", "models/a.bin"));
	cr_expect(kiln_glob_match("models/", "models"));
	cr_expect_not(kiln_glob_match("", "models"));
}

Test(ignore, path_clean_follows_go)
{
	static const char *const cases[][2] = {
	    {"", "."},
	    {".", "."},
	    {"./foo", "foo"},
	    {"foo/", "foo"},
	    {"/foo/", "/foo"},
	    {"a//b", "a/b"},
	    {"a/./b", "a/b"},
	    {"a/b/..", "a"},
	    {"a/../..", ".."},
	    {"../../a", "../../a"},
	    {"/..", "/"},
	    {"/../a", "/a"},
	    {"a/../../b", "../b"},
	    {"/", "/"},
	    {"x/y/../../z", "z"},
	    {"../a/../b", "../b"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *c = kiln_path_clean(cases[i][0]);
		cr_expect_str_eq(c, cases[i][1], "clean('%s')", cases[i][0]);
		free(c);
	}
}

Test(ignore, exception_brings_a_file_back)
{
	struct kiln_ignore *ig = rules_from("*.md\n!README.md\n");
	cr_expect(kiln_ignore_match(ig, "CHANGES.md", false));
	cr_expect_not(kiln_ignore_match(ig, "README.md", false));
	cr_expect_not(kiln_ignore_match(ig, "predict.py", false));
	kiln_ignore_free(ig);
}

Test(ignore, knows_whether_it_has_exceptions)
{
	struct kiln_ignore *ig = rules_from("a\nb\n");
	cr_expect_not(kiln_ignore_has_exceptions(ig));
	kiln_ignore_free(ig);
	ig = rules_from("a\n!a/b\n");
	cr_expect(kiln_ignore_has_exceptions(ig));
	kiln_ignore_free(ig);
}

Test(ignore, last_matching_line_wins)
{
	/* the two examples of Docker's documentation */
	struct kiln_ignore *ig = rules_from("*.md\n!README*.md\nREADME-secret.md\n");
	cr_expect(kiln_ignore_match(ig, "README-secret.md", false));
	cr_expect_not(kiln_ignore_match(ig, "README-public.md", false));
	cr_expect(kiln_ignore_match(ig, "NOTES.md", false));
	kiln_ignore_free(ig);

	ig = rules_from("*.md\nREADME-secret.md\n!README*.md\n");
	cr_expect_not(kiln_ignore_match(ig, "README-secret.md", false));
	cr_expect(kiln_ignore_match(ig, "NOTES.md", false));
	kiln_ignore_free(ig);
}

Test(ignore, matched_directory_excludes_what_is_under_it)
{
	struct kiln_ignore *ig = rules_from("data\n*/cache\n");
	cr_expect(kiln_ignore_match(ig, "data", true));
	cr_expect(kiln_ignore_match(ig, "data/a.bin", false));
	cr_expect(kiln_ignore_match(ig, "data/x/y/z.bin", false));
	cr_expect_not(kiln_ignore_match(ig, "database.py", false));
	cr_expect_not(kiln_ignore_match(ig, "sub/data", true), "patterns are anchored at the root");
	cr_expect(kiln_ignore_match(ig, "sub/cache/f", false));
	cr_expect_not(kiln_ignore_match(ig, "cache/f", false));
	kiln_ignore_free(ig);
}

Test(ignore, exception_inside_an_excluded_directory)
{
	struct kiln_ignore *ig = rules_from("data\n!data/keep.txt\n");
	cr_expect(kiln_ignore_match(ig, "data/drop.txt", false));
	cr_expect_not(kiln_ignore_match(ig, "data/keep.txt", false));
	kiln_ignore_free(ig);
}

Test(ignore, comments_blank_lines_and_cleaning)
{
	struct kiln_ignore *ig = rules_from("\xEF\xBB\xBF# a comment\n"
	                                    "\n"
	                                    "   \n"
	                                    "  /logs/  \r\n"
	                                    "./tmp//x\n"
	                                    "a/b/../c\n"
	                                    " #notacomment\n"
	                                    "!   keep.log\n"
	                                    "*.log");
	cr_expect_not(kiln_ignore_match(ig, "# a comment", false));
	cr_expect(kiln_ignore_match(ig, "logs/today.txt", false));
	cr_expect(kiln_ignore_match(ig, "tmp/x", false));
	cr_expect(kiln_ignore_match(ig, "a/c", false));
	cr_expect_not(kiln_ignore_match(ig, "a/b", false));
	cr_expect(kiln_ignore_match(ig, "#notacomment", false), "only '#' in column 1 starts a comment");
	cr_expect(kiln_ignore_match(ig, "keep.log", false), "the later *.log wins over the exception");
	kiln_ignore_free(ig);
}

Test(ignore, double_star_in_rules)
{
	struct kiln_ignore *ig = rules_from("**/*.pyc\n**/__pycache__\n");
	cr_expect(kiln_ignore_match(ig, "a.pyc", false));
	cr_expect(kiln_ignore_match(ig, "x/y/a.pyc", false));
	cr_expect(kiln_ignore_match(ig, "x/__pycache__/m.cpython-311.pyc", false));
	cr_expect(kiln_ignore_match(ig, "__pycache__/m.txt", false));
	cr_expect_not(kiln_ignore_match(ig, "a.py", false));
	kiln_ignore_free(ig);
}

Test(ignore, git_is_always_excluded)
{
	struct kiln_ignore *ig = rules_from("!.git\n!.git/config\n");
	cr_expect(kiln_ignore_match(ig, ".git", true));
	cr_expect(kiln_ignore_match(ig, ".git/config", false));
	cr_expect(kiln_ignore_match(ig, "vendor/lib/.git", true));
	cr_expect(kiln_ignore_match(ig, "vendor/lib/.git/HEAD", false));
	cr_expect_not(kiln_ignore_match(ig, ".gitignore", false));
	cr_expect_not(kiln_ignore_match(ig, ".github/workflows/ci.yml", false));
	kiln_ignore_free(ig);
	cr_expect(kiln_ignore_match(NULL, ".git/HEAD", false));
}

Test(ignore, kilnignore_is_preferred_over_dockerignore)
{
	write_text(".kilnignore", "from-kiln\n");
	struct kiln_ignore *ig = rules_from("from-docker\n");
	cr_expect(kiln_ignore_match(ig, "from-kiln", false));
	cr_expect_not(kiln_ignore_match(ig, "from-docker", false));
	kiln_ignore_free(ig);
}

Test(ignore, no_ignore_file_excludes_only_git)
{
	struct kiln_ignore *ig = NULL;
	cr_assert_eq(kiln_ignore_load(&ig, tmpdir, NULL), 0);
	cr_expect_not(kiln_ignore_match(ig, "anything", false));
	cr_expect(kiln_ignore_match(ig, ".git/HEAD", false));
	kiln_ignore_free(ig);
}

Test(ignore, the_ignore_file_itself_is_just_a_file)
{
	struct kiln_ignore *ig = rules_from("*.tmp\n");
	cr_expect_not(kiln_ignore_match(ig, ".dockerignore", false));
	kiln_ignore_free(ig);
}

Test(ignore, bad_lines_are_reported_with_file_and_line)
{
	write_text(".dockerignore", "ok\n# fine\n!\n");
	struct kiln_ignore *ig = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(kiln_ignore_load(&ig, tmpdir, &err), KILN_EINVAL);
	cr_expect_not_null(strstr(err->message, ".dockerignore:3: illegal exclusion pattern '!'"), "%s",
	                   err->message);
	kiln_error_free(err);
	err = NULL;

	write_text(".dockerignore", "[abc\n");
	cr_assert_eq(kiln_ignore_load(&ig, tmpdir, &err), KILN_EINVAL);
	cr_expect_not_null(strstr(err->message, ".dockerignore:1: bad pattern '[abc'"), "%s", err->message);
	kiln_error_free(err);
}
