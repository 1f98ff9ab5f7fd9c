/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shim.h: the modules of the predictor shim (kiln-shim) that stand alone (the kilnshim library): input
 * validation against the OpenAPI schema (validate*.c), the GPU probe, weight prefetch, file inputs and
 * outputs, webhooks. See shim/PROTOCOL.md for the worker protocol.
 */
#ifndef KILN_SHIM_H
#define KILN_SHIM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ---- validate.c (and validate_*.c): Cog's input validation, in C ---- */

/* The value at the JSON pointer REF ("#/components/schemas/x", "~0"/"~1" escapes) in ROOT, or NULL. */
const json_t *shim_schema_resolve(const json_t *root, const char *ref);
/*
 * The keyword KEY of SCHEMA, looking through what it refers to: the schema itself first, then its "$ref",
 * then each "allOf" member (Cog puts choices behind allOf: [{"$ref": ...}]). NULL when absent.
 */
const json_t *shim_schema_get(const json_t *root, const json_t *schema, const char *key);

/*
 * Validate INPUT (a JSON object) against SCHEMA's components.schemas.Input (Cog's OpenAPI shape, see
 * shim/PROTOCOL.md) as Cog 0.22's server does (shim/validate.c): required names, JSON Schema's types taken
 * strictly (string, integer, number, boolean, array with items, object; "format": "uri" strings for
 * Path/File), minimum/maximum, minLength/maxLength, pattern (POSIX extended regex via regcomp), choices (enum,
 * also behind allOf/$ref), unions (anyOf), nullable (Optional). Unknown names are left out (see
 * shim_validate_unknown). On success *normalized is a new object with the defaults filled in and 0 is
 * returned. On failure *detail is Cog's 422 "detail" array, [{"loc": ["body", "input", NAME], "msg": "...",
 * "type": "..."}] in coglet's words ("Field required" / "value_error.missing", `0 is less than the minimum
 * of 1` / "value_error", ...), one entry per field that fails, and -1 is returned.
 */
int shim_validate_input(const json_t *schema, const json_t *input, json_t **normalized, json_t **detail);

/*
 * The names in INPUT (an object) that SCHEMA's Input does not have, as one string "'a', 'b'" (newly made),
 * or NULL when there are none (or SCHEMA has no Input, so that every name is passed on).
 */
char *shim_validate_unknown(const json_t *schema, const json_t *input);

/*
 * The document DOC as a training's input sees it: the same, but for components.schemas.Input, which is its
 * TrainingInput, so that shim_validate_input and shim_files_fetch_inputs check a training's input. A new
 * reference, or NULL when DOC has no TrainingInput (the model has no trainer).
 */
json_t *shim_schema_for_training(const json_t *doc);

/* ---- gpu.c: NVIDIA GPUs through NVML, loaded with dlopen (no build-time dependency) ---- */

struct shim_gpu {
	char name[96];
	char uuid[96];
	uint64_t memory_total; /* bytes */
	uint64_t memory_used;
};

struct shim_gpu_info {
	bool nvml;       /* NVML could be loaded and initialized */
	char driver[80]; /* driver version */
	char cuda[32];   /* CUDA driver version "12.4", or "" */
	struct shim_gpu gpus[16];
	size_t count;
	char error[160]; /* why NVML could not be used ("libnvidia-ml.so.1: cannot open ...") */
};

/*
 * Probe GPUs: dlopen $KILN_NVML_LIBRARY, else "libnvidia-ml.so.1"; nvmlInit_v2, nvmlSystemGetDriverVersion,
 * nvmlSystemGetCudaDriverVersion_v2, nvmlDeviceGetCount_v2, and per device GetHandleByIndex_v2, GetName,
 * GetUUID, GetMemoryInfo; nvmlShutdown; dlclose. Never fails: what went wrong is in out->error.
 */
void shim_gpu_probe(struct shim_gpu_info *out);

/* The probe as JSON for /health-check and the start log: {"driver", "cuda", "count", "gpus": [{"name",
 * "uuid", "memory_total", "memory_used"}]} or {"count": 0, "error": "..."}. */
json_t *shim_gpu_json(const struct shim_gpu_info *info);

/* ---- prefetch.c: warm the page cache for the weight files while setup() runs ---- */

struct shim_prefetch;

/*
 * Start warming FILES (N paths, in that order: the caller sorts them by the manifest's prefetch order,
 * else largest first) with THREADS threads (0: 4), reading each file with posix_fadvise(WILLNEED) and
 * sequential reads of 1 MiB into a reused buffer (readahead), without keeping anything. Missing files are
 * counted and skipped. Returns at once; the work happens in the background.
 */
int shim_prefetch_start(struct shim_prefetch **out, char *const *files, size_t n, int threads,
                        struct kiln_error **err);

/* Progress as JSON: {"files", "files_done", "bytes", "bytes_done", "done": bool, "seconds", "missing"}. */
json_t *shim_prefetch_json(struct shim_prefetch *p);

/* Wait for the end (or stop early when CANCEL), then free. */
void shim_prefetch_free(struct shim_prefetch *p, bool cancel);

/* ---- files.c: file inputs and outputs ---- */

/*
 * Replace each file input of INPUT (a property whose schema has "format": "uri", or an array of them) given
 * as an http(s) URL or a data: URI by a file downloaded (libcurl) or decoded under DIR, keeping the URL's
 * file name; the value becomes the local path. file:// URLs, other schemes and bare local paths are refused
 * (KILN_EINVAL naming the input: "input 'image': file:// URLs are not allowed"). Downloads follow redirects,
 * are limited in size ($KILN_MAX_INPUT_BYTES, default 1 GiB) and time.
 */
int shim_files_fetch_inputs(const json_t *schema, json_t *input, const char *dir, struct kiln_error **err);

/*
 * Replace the file outputs inside *VALUE, and nothing else, by data: URIs (MIME type from the extension), or,
 * when UPLOAD_URL is set, by the URL the upload answered with (PUT UPLOAD_URL/<basename>; its Location
 * header, else the PUT URL). FILES (NULL: none) says where they are, out of band, so that no output data can
 * pass for a file: an array of positions, each an array of object keys and array indices leading from
 * *VALUE to a string, the file's absolute path ([] for *VALUE itself). Only regular files are read, not
 * through a symbolic link, not the kernel's (/proc, /sys); a data: URI holds a file of at most
 * $KILN_MAX_OUTPUT_BYTES (default 100 MiB). A position that leads to no string fails with KILN_EINVAL.
 */
int shim_files_encode_output(json_t **value, const json_t *files, const char *upload_url,
                             struct kiln_error **err);
/*
 * The file outputs as a native predictor marks them (include/kiln/predictor.h: one-key {"$path": P}
 * objects): each replaced by its P inside *VALUE, their positions returned (an array for
 * shim_files_encode_output; NULL when memory runs out).
 */
json_t *shim_files_take_path_markers(json_t **value);

/* A data: URI with the contents of the file PATH (base64; the MIME type from its extension) into *out. */
int shim_files_data_uri(char **out, const char *path, struct kiln_error **err);
/* The extension (".png") of the MIME type of the data: URI URI, or "" when unknown or not a data: URI. */
const char *shim_files_data_uri_extension(const char *uri);
/* Decode the data: URI URI into the file PATH (0644), replaced whole once written (never half written). */
int shim_files_save_data_uri(const char *uri, const char *path, struct kiln_error **err);

/* ---- inputs.c: inputs from the command line (kiln predict), typed by the schema ---- */

/*
 * The input object (*out, a new reference) for ARGS, N strings "NAME=VALUE" (or "VALUE": the first input
 * by x-order, as `cog predict -i` takes it), each VALUE typed by SCHEMA's components.schemas.Input
 * property NAME as `cog predict` types it: "integer" and "number" parsed, "boolean" as Go's ParseBool
 * (true/false, 1/0, t/f...), "@PATH" for a file input (format "uri", or an input of no type) read into a
 * data: URI, anything else a string; an array input gathers its NAME's values, in order, into a list.
 * BASE (may be NULL: --input-json's object) gives the other members; ARGS replace its NAMEs. An unknown
 * NAME, a value that does not parse, a scalar NAME given twice or an unreadable file: KILN_EINVAL
 * naming the input.
 */
int shim_inputs_from_args(json_t **out, const json_t *schema, const json_t *base, char *const *args, size_t n,
                          struct kiln_error **err);
/* The name that -i ARG sets (newly made): NAME of NAME=VALUE (an '=' before any '@'), *VALUE then what
 * follows the '='; else SCHEMA's first input by x-order, *VALUE then ARG. NULL with errno ENOENT when ARG
 * names none and the schema has no input, ENOMEM when memory runs out. */
char *shim_inputs_arg_name(const char *arg, const json_t *schema, const char **value);

/* ---- webhook.c: prediction webhooks, sent by a few background threads, in order per prediction ---- */

struct shim_webhooks;
int shim_webhooks_new(struct shim_webhooks **out, struct kiln_error **err);

/*
 * Send PREDICTION (the whole response object, copied) to URL with POST for EVENT ("start", "output",
 * "logs", "completed") unless FILTER (a JSON array of event names; NULL: Cog's default, all four) leaves
 * it out. "output" and "logs" are throttled per prediction (at most one per 500 ms; the latest state is
 * what goes); "completed" always goes after the others, retried with exponential backoff on connection
 * errors, 429 and 5xx (a few attempts within ~30 s). Never blocks the caller.
 */
void shim_webhooks_send(struct shim_webhooks *w, const char *url, const char *event, const json_t *filter,
                        const json_t *prediction);

/* NULL when URL may be a webhook (an absolute http or https URL with a host), else why not, in pydantic's
 * words ("URL scheme not permitted"). */
const char *shim_webhook_url_problem(const char *url);

/* Wait (at most TIMEOUT seconds) for queued "completed" webhooks, then stop and free. */
void shim_webhooks_free(struct shim_webhooks *w, double timeout);

#endif
