/* SPDX-License-Identifier: Apache-2.0 */
/* cli.h: what the commands share: the command table, messages, options common to every command. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

/* Exit statuses (DESIGN.md). */
#define EXIT_OK    0
#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define EXIT_INTR  130

enum progress_mode {
	PROGRESS_AUTO,
	PROGRESS_TTY,
	PROGRESS_PLAIN,
	PROGRESS_QUIET,
};

struct cli_state {
	bool quiet;
	enum progress_mode progress; /* resolved: never AUTO after option parsing */
	const char *command;         /* the command running ("build") */
};
extern struct cli_state cli;
extern volatile sig_atomic_t cli_interrupted;

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
	const char *usage; /* the synopsis, as in the man page */
	const char *help;  /* the options, one per line */
};

extern const struct command commands[];

/* Messages on stderr. errorf always prints; warnf and infof respect --quiet. */
void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warnf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void infof(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The warnings of a manifest (struct kiln_manifest.warnings): "kiln: warning: FILE:LINE:COLUMN: ..." each. */
struct kiln_strv;
void cli_manifest_warnings(const struct kiln_strv *w);

/* Report ERR (prefixed by nothing: its message already says what failed) and return the exit status:
 * EXIT_INTR for an interruption, else EXIT_FAIL. */
int cli_fail(struct kiln_error *err);

/* A usage error: print the message, the synopsis and a hint, and return EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print the help of the current command to stdout and return EXIT_OK. */
int cli_help(const char *name);

/* Handle an option every command takes (--quiet, --progress, --help). Returns 1 when it was one of
 * them, 0 when not, or -(status + 1) when the command must exit with that status now (after --help,
 * or a bad value); CLI_EXIT_STATUS(r) gives the status back. */
#define CLI_EXIT_STATUS(r) (-(r)-1)
int cli_common_option(int opt, const char *arg);
/* After option parsing: resolve --progress auto. */
void cli_options_done(void);

/* Install SIGINT/SIGTERM handlers that set cli_interrupted. */
void cli_catch_signals(void);

/* Progress on stderr (thread-safe): a line per finished item unless quiet; on a terminal one live line
 * "VERB DONE of TOTAL (N%)", redrawn at most ten times a second; clearing the live line. */
void cli_progress_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_progress_live(const char *verb, uint64_t done, uint64_t total);
void cli_progress_clear(void);
/* One item in flight (a blob being pushed): its bar in the live area, until cli_progress_item_end. */
void cli_progress_item(const void *key, const char *label, uint64_t done, uint64_t total);
void cli_progress_item_end(const void *key);

/* "512.0 MiB" */
void cli_human_size(char out[32], uint64_t bytes);

/* getopt_long entries of the common options, and their codes. */
#define CLI_OPT_QUIET    'q'
#define CLI_OPT_PROGRESS 1000
#define CLI_OPT_HELP     'h'
#define CLI_COMMON_LONG                                                                                      \
	{"quiet", no_argument, NULL, CLI_OPT_QUIET},                                                         \
	    {"progress", required_argument, NULL, CLI_OPT_PROGRESS},                                         \
	{                                                                                                    \
		"help", no_argument, NULL, CLI_OPT_HELP                                                      \
	}
#define CLI_COMMON_SHORT "qh"

/* Registry options every command that talks to a registry takes: --ca-file FILE, --insecure-registry HOST
 * (repeatable). cli_registry_option returns 1 when OPT was one of them, 0 when not, or -(status + 1). */
struct kiln_registry_options;
#define CLI_OPT_CA_FILE  1001
#define CLI_OPT_INSECURE 1002
#define CLI_REGISTRY_LONG                                                                                    \
	{"ca-file", required_argument, NULL, CLI_OPT_CA_FILE},                                               \
	{                                                                                                    \
		"insecure-registry", required_argument, NULL, CLI_OPT_INSECURE                               \
	}
int cli_registry_option(struct kiln_registry_options *ropt, int opt, const char *arg);
#define CLI_REGISTRY_HELP                                                                                    \
	"  --ca-file FILE       trust the CA certificates in FILE (default: SSL_CERT_FILE, else the "        \
	"system's)\n"                                                                                        \
	"  --insecure-registry HOST\n"                                                                       \
	"                       allow plain HTTP to HOST (localhost and 127.0.0.0/8 always are)\n"

/*
 * Parse the current command's options with getopt_long. The common options, and the registry options
 * when ROPT is not NULL, are handled here; every other option goes to HANDLE, which returns 0, -1 for an
 * option it does not know, or an exit status to stop with. Unknown options, missing values and a count of
 * arguments outside [MIN_ARGS, MAX_ARGS] are usage errors. On success *FIRST is the index of the first
 * argument and -1 is returned (the command goes on); otherwise the exit status to return.
 */
struct option;
int cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts,
              struct kiln_registry_options *ropt, int (*handle)(int opt, const char *arg, void *ctx),
              void *ctx, int min_args, int max_args, int *first);

/* A HANDLE for commands whose only own option is --json (CLI_OPT_JSON): sets *(bool *)ctx. */
#define CLI_OPT_JSON 1003
int cli_json_option(int opt, const char *arg, void *ctx);

/* --format ARG (text or json): *json set, 0; else a usage error (its exit status is returned). */
int cli_format_option(bool *json, const char *arg);
/* Whether DIR is a model project: a directory with kiln.yaml or cog.yaml. */
bool cli_is_project(const char *dir);
/* A command's project directory: GIVEN when not NULL; else, with a manifest FILE (-f), the current
 * directory; else the current directory or, where it is no project, the nearest directory above it that is
 * one, as Cog finds cog.yaml from a subdirectory ("." when there is none). */
const char *cli_project_dir(const char *given, const char *file);

/* ARG of option OPT, a whole number from MIN to MAX, into *out; else a usage error naming OPT (its exit
 * status is returned). */
int cli_parse_number(long *out, const char *opt, const char *arg, long min, long max);

/* -j N: a number from 1 to MAX into *out, else a usage error (its exit status is returned). */
int cli_parse_jobs(const char *arg, int max, int *out);

/* `kiln __runtime-layer DIR`: not for users; the build of kiln runs it (CMakeLists.txt, pkg/runtime.h). */
int cmd_runtime_layer(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_deploy(int argc, char **argv);
int cmd_dockerfile(int argc, char **argv);
int cmd_playground(int argc, char **argv);
int cmd_doctor(int argc, char **argv);

/* doctor_fix.c: kiln doctor --fix's migration of the starter project's predict interface (predict:
 * predict.py:Predictor in MANIFEST, BasePredictor, predict()) in DIR to run.py:Runner, as cog doctor --fix
 * does. 1 when migrated (*done says what), 0 when the project is not of that shape, -1 when it is but cannot
 * be migrated (*why says why); the caller frees both. */
int doctor_fix_predict_to_run(const char *dir, const char *manifest, char **done, char **why);
/* What Cog 0.17 removed from cog.types: `from cog.types import ExperimentalFeatureWarning` fails at start. */
#define DOCTOR_REMOVED_NAME "ExperimentalFeatureWarning"
/* The line of PATH's `from cog.types import ExperimentalFeatureWarning`, or 0. */
int doctor_deprecated_import_line(const char *path);
/* kiln doctor --fix: that import removed from PATH with the top-level statements that use the name and the
 * imports only they used, as cog doctor --fix does. 1 when removed, 0 when there is none, -1 when the name
 * is used elsewhere or PATH cannot be written (*why says why; the caller frees it). */
int doctor_fix_deprecated_import(const char *path, char **why);
int cmd_exec(int argc, char **argv);
int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_help(int argc, char **argv);

#endif
