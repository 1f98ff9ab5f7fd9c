/* SPDX-License-Identifier: Apache-2.0 */
/* predict.h: what `kiln predict` (cmd_predict.c) shares with its runtimes (predict_runtime.c) and its HTTP
 * client (predict_http.c). */
#ifndef KILN_CLI_PREDICT_H
#define KILN_CLI_PREDICT_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "common/error.h"
#include "pkg/store.h"

enum predict_runtime_kind {
	RUNTIME_AUTO,
	RUNTIME_NATIVE,
	RUNTIME_BWRAP,
};

/* A shim started for one image: its process, its URL and where its log goes. */
struct predict_runtime {
	enum predict_runtime_kind kind; /* what runs: never AUTO once started */
	pid_t pid;
	char url[64];  /* http://127.0.0.1:PORT */
	char *log;     /* the shim's standard error, a file */
	char *root;    /* the image's files (native: the layers above the base; bwrap: the whole root) */
	char *weights; /* serve.weights: registry: the weights cache, mounted at /var/lib/kiln/weights */
};

/* ---- cmd_predict.c ---- */

/* The image: built from the directory TARGET (with the manifest FILE when not NULL, -f), or the reference
 * TARGET from the store (pulled when it is not there; FILE must then be NULL). Its manifest digest into
 * DIGEST and its config into *config. */
struct kiln_registry_options;
int predict_resolve_image(struct kiln_store *s, const char *target, const char *file,
                          struct kiln_registry_options *ropt, char digest[KILN_DIGEST_LEN], json_t **config,
                          struct kiln_error **err);

/* ---- predict_runtime.c ---- */

/* --runtime ARG (auto, native or bwrap) into *out: 0, or a usage error's exit status. */
int predict_runtime_option(enum predict_runtime_kind *out, const char *arg);

/*
 * Make the image MANIFEST_DIGEST (its config CONFIG) ready to run with KIND: its files unpacked for it into
 * a cache directory of the store (RT->root), RT->kind what runs (AUTO resolved as predict_runtime_start
 * says). bwrap needs the base's layers: those the store lacks are fetched from the base's registry (ROPT).
 */
int predict_runtime_prepare(struct predict_runtime *rt, struct kiln_store *s, const char *manifest_digest,
                            const json_t *config, enum predict_runtime_kind kind,
                            const struct kiln_registry_options *ropt, struct kiln_error **err);

/* The image's WorkingDir (borrowed), else /src. */
const char *predict_runtime_workdir(const json_t *config);

/* A command line ready for posix_spawn: its words, its environment and where it runs (NULL: bubblewrap
 * says it), all owned. */
struct predict_command {
	char **argv;
	char **envp;
	char *cwd;
};

/*
 * How to run CMD (NULL-terminated) in RT's image (prepared): native: on this machine, in PROJECT or else
 * the image's WorkingDir under RT->root, with this machine's environment and the image's Env (its absolute
 * paths moved under the root, PATH and HOME this machine's); bwrap: under bubblewrap in the image's root
 * (read-only, a fresh /tmp) with the image's Env only, in its WorkingDir, where PROJECT (when not NULL) is
 * bound read-write. ENVS (N "NAME=VALUE") added to either. bubblewrap dies with kiln unless ATTACHED (the
 * command shares kiln's terminal: Ctrl-C kills bubblewrap's monitor, not the command, which its caller
 * then reaps as a subreaper). Free *out with predict_command_release.
 */
int predict_runtime_command(struct predict_command *out, const struct predict_runtime *rt,
                            const json_t *config, const char *project, bool attached, char *const *envs,
                            size_t n, char *const *cmd, struct kiln_error **err);
void predict_command_release(struct predict_command *c);

/* The command that runs the image's shim (its Entrypoint) on its code, with --host HOST and --port PORT
 * (each when not NULL) and ARGS after them; otherwise as predict_runtime_command. */
int predict_runtime_shim_command(struct predict_command *out, const struct predict_runtime *rt,
                                 const json_t *config, const char *host, const char *port, bool attached,
                                 char *const *envs, size_t n, char *const *args, size_t nargs,
                                 struct kiln_error **err);

/* exec_overlay.c: a writable layer over an image's root for one command, thrown away after it. */
struct exec_overlay {
	char *dir;                   /* the store's tmp/PID-exec-XXXXXX, holding the three below */
	char *upper, *work, *merged; /* overlayfs' upper and work directories, and where it is mounted */
	const char *lower;           /* the image's unpacked root */
};
/* Make O's directories for LOWER under the store S's tmp/; 0, or an error (nothing left behind). */
int exec_overlay_prepare(struct exec_overlay *o, struct kiln_store *s, const char *lower,
                         struct kiln_error **err);
/* In the command's process, before it becomes bubblewrap: a mount namespace of its own (and a user
 * namespace for a user who is not root) with O mounted at O->merged; 0, or -1 with why in WHY. */
int exec_overlay_enter(const struct exec_overlay *o, char *why, size_t size);
/* Remove O's directories (the layer and all the command wrote there). */
void exec_overlay_release(struct exec_overlay *o);

/*
 * Unpack the image MANIFEST_DIGEST (its config CONFIG) for KIND into a cache directory of the store, and
 * start its shim on a free loopback port with ENVS (N "NAME=VALUE" strings, -e) added to the image's Env,
 * and COG_SETUP_TIMEOUT when SETUP_TIMEOUT is set. bwrap needs the base's layers: those the store lacks
 * are fetched from the base's registry (ROPT). AUTO: bwrap when the image has a base, bubblewrap works and
 * the base's layers can be had, else native; the choice and why is said on stderr.
 */
int predict_runtime_start(struct predict_runtime *rt, struct kiln_store *s, const char *manifest_digest,
                          const json_t *config, enum predict_runtime_kind kind, char *const *envs, size_t n,
                          const char *setup_timeout, const struct kiln_registry_options *ropt,
                          struct kiln_error **err);
/* Whether the shim still runs. */
bool predict_runtime_alive(struct predict_runtime *rt);
/* Stop the shim (SIGTERM, then SIGKILL after 10 s) and free RT's strings; its log file is removed unless
 * KEEP_LOG. */
void predict_runtime_stop(struct predict_runtime *rt, bool keep_log);

/* ---- predict_http.c ---- */

/*
 * Poll URL/health-check until READY (0), printing the setup logs to stderr as they grow (unless QUIET);
 * SETUP_FAILED, DEFUNCT or a shim that exits: KILN_EFAIL with the setup logs' last line; an interrupt:
 * KILN_EINTR.
 */
int predict_wait_ready(struct predict_runtime *rt, bool quiet, struct kiln_error **err);
/* GET URL/PATH as JSON into *out. */
int predict_get_json(const char *url, const char *path, json_t **out, struct kiln_error **err);
/*
 * Run one job: POST URL/PATH (/predictions, /trainings) {"id": ID, "input": INPUT} as an event stream of
 * any model (X-Kiln-Stream: always), its logs printed to stderr as they come (unless QUIET); *response gets
 * the completed job. An interrupt cancels it (POST PATH/ID/cancel) and returns
 * KILN_EINTR.
 */
int predict_send(const char *url, const char *path, const char *id, const json_t *input, bool quiet,
                 json_t **response, struct kiln_error **err);

/* ---- predict_inputs.c: the input object, made and checked as `cog predict` does ---- */

/* Whether ARG is what `cog predict --json` takes: JSON text (an object; other JSON is refused by
 * predict_json_read, as Cog refuses it), @FILE, @- or -. A word is not (kiln's old --json flag, with
 * something else after it). */
bool predict_json_arg_ok(const char *arg);
/*
 * --json's ARG (checked by predict_json_arg_ok) as a JSON object into *out: the text itself, the file
 * FILE for @FILE, standard input for @- or -. Cog's messages: "Failed to read JSON from file \"F\": ...",
 * "Failed to read JSON from stdin: ...", "Failed to parse JSON: ..." (not JSON, or not an object).
 */
int predict_json_read(json_t **out, const char *arg, struct kiln_error **err);
/*
 * The prediction's input object (*out, new) from BASE (--json's or --input-json's object, may be NULL) and
 * the -i ARGS (N, see shim_inputs_from_args; a value in double quotes loses them, as in Cog), checked
 * against SCHEMA before anything runs, with Cog's words: every name BASE and ARGS give must be an input
 * ("unknown input \"x\"; valid inputs are: a, b", before any file is read), then BASE_FILES: BASE's
 * "@PATH" strings become the files as data: URIs ("Failed to read file \"PATH\": ..."); then no input may
 * be null and the schema's rules must hold ("missing required input \"x\"", "invalid input \"x\":
 * expected integer, got string", "...: must be one of: a, b"; several: "input validation failed:" and one
 * "- " line each). BASE may be changed.
 */
int predict_inputs_prepare(json_t **out, const json_t *schema, json_t *base, bool base_files,
                           char *const *args, size_t n, struct kiln_error **err);

#endif
