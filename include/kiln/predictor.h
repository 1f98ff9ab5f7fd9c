/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kiln/predictor.h: the C ABI of native predictors, shared libraries that kiln-shim loads with dlopen.
 *
 * A project selects one in kiln.yaml with `run: native:lib/predictor.so` (a path inside the project). The
 * shim loads it in its own process (RTLD_NOW | RTLD_LOCAL), calls setup() once in a thread of its own
 * (/health-check answers STARTING meanwhile), then predict() once per request, and teardown() when it
 * stops. The library needs nothing from kiln at run time: this header is the whole contract.
 *
 * Symbols (exported with default visibility; KILN_PREDICTOR_EXPORT does that):
 *   required  kiln_predictor_abi_version, kiln_predictor_predict
 *   optional  kiln_predictor_schema, kiln_predictor_setup, kiln_predictor_teardown, kiln_predictor_free
 *
 * Data: every string is UTF-8 JSON text or a UTF-8 message. Strings the predictor returns through an
 * output parameter (`*output_json`, `*error`) are allocated by the predictor and handed to kiln, which
 * releases each one with kiln_predictor_free() (free() when the library does not export it).
 *
 * Threads: schema(), setup() and teardown() are called once each, from one thread, never at the same time
 * as any other call. predict() may be called from several threads at once when the manifest's
 * concurrency.max is above 1 (up to that many calls), so it must then be thread-safe; with concurrency.max
 * 1 (the default) calls never overlap, though successive ones may come from different threads.
 *
 * Logs: what the library writes to file descriptors 1 and 2 (printf, fprintf(stderr), its child
 * processes) is captured line by line: the logs of setup, of the prediction when exactly one runs, else
 * the shim's own log. stdout is made line-buffered; call fflush(stdout) after partial lines.
 *
 * The working directory is the project directory (/src in an image), as for Python predictors.
 *
 * Limits of version 1:
 *   - no cancellation: POST /predictions/ID/cancel cannot interrupt native code; the prediction runs to its
 *     end and is then reported as canceled (its output dropped).
 *   - a crash (SIGSEGV, abort(), exit()) in the library ends the whole shim; the container restarts it.
 *   - COG_SETUP_TIMEOUT marks setup failed but cannot stop a setup() that hangs.
 *   - one output value per prediction (no iterators); a file output is {"$path": "/abs/file"}, which the
 *     shim turns into a data: URI or an upload, as for Python predictors. Any one-key object of that shape
 *     in the output is taken for a file: do not pass such objects through from a request. Only regular
 *     files are read (not through a symbolic link, not in /proc or /sys), and a data: URI holds at most
 *     $KILN_MAX_OUTPUT_BYTES (100 MiB by default); else the prediction fails.
 *
 * Example (a complete predictor; build with `cc -shared -fPIC -o libecho.so echo.c`):
 *
 *   #include <kiln/predictor.h>
 *   #include <stdio.h>
 *   #include <stdlib.h>
 *   #include <string.h>
 *
 *   KILN_PREDICTOR_EXPORT int kiln_predictor_abi_version(void) { return KILN_PREDICTOR_ABI_VERSION; }
 *
 *   KILN_PREDICTOR_EXPORT const char *kiln_predictor_schema(void)
 *   {
 *           return "{\"Input\": {\"type\": \"object\", \"required\": [\"text\"], \"properties\": {"
 *                  "\"text\": {\"type\": \"string\", \"title\": \"Text\", \"x-order\": 0}}},"
 *                  " \"Output\": {\"type\": \"string\", \"title\": \"Output\"}}";
 *   }
 *
 *   KILN_PREDICTOR_EXPORT int kiln_predictor_predict(const char *input_json, char **output_json,
 *                                                    char **error)
 *   {
 *           printf("got %s\n", input_json);        // a line of this prediction's logs
 *           *output_json = strdup("\"done\"");      // any JSON value; freed by kiln_predictor_free
 *           return *output_json ? 0 : (*error = strdup("out of memory"), -1);
 *   }
 *
 *   KILN_PREDICTOR_EXPORT void kiln_predictor_free(void *p) { free(p); }
 */
#ifndef KILN_PREDICTOR_H
#define KILN_PREDICTOR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this ABI; a library built against another version is refused at load time. */
#define KILN_PREDICTOR_ABI_VERSION 1

#define KILN_PREDICTOR_EXPORT __attribute__((visibility("default")))

/* Required. Return KILN_PREDICTOR_ABI_VERSION (the version the library was built against). */
KILN_PREDICTOR_EXPORT int kiln_predictor_abi_version(void);

/*
 * Optional. The predictor's types as a JSON object of OpenAPI schemas in Cog's shape (see the shim's
 * PROTOCOL.md), keyed by name:
 *   "Input"   an object schema: "properties" (each with "type", "title", and as wanted "default",
 *             "description", "minimum"/"maximum", "minLength"/"maxLength", "pattern", "format": "uri" for a
 *             file (its value reaches predict() as a local path), "x-order"), and "required";
 *   "Output"  the output's schema (default: {"title": "Output"}, anything);
 *   any other name: schemas that Input refers to with {"$ref": "#/components/schemas/NAME"} (choices).
 * The shim builds the whole OpenAPI document (/openapi.json) around them and validates every request's
 * input against Input (422 on a mismatch) before predict() sees it. NULL, or no such symbol: no inputs,
 * any output. The string stays the library's; it must stay valid until teardown().
 */
KILN_PREDICTOR_EXPORT const char *kiln_predictor_schema(void);

/*
 * Optional. Load the model, once, before any predict(). PROJECT_DIR is the project directory (absolute;
 * the weights named in kiln.yaml are under it). Return 0, or non-zero with *ERROR set to a message (or
 * left NULL): the shim then reports SETUP_FAILED with that message and never calls predict().
 */
KILN_PREDICTOR_EXPORT int kiln_predictor_setup(const char *project_dir, char **error);

/*
 * Required. Run one prediction. INPUT_JSON is a JSON object, validated against the Input schema, with
 * defaults filled in. Return 0 with *OUTPUT_JSON set to the output as JSON text (NULL means null), or
 * non-zero with *ERROR set to a message (the prediction fails with it; NULL: "prediction failed").
 */
KILN_PREDICTOR_EXPORT int kiln_predictor_predict(const char *input_json, char **output_json, char **error);

/* Optional. Release what setup() took; called once at shutdown after the last predict() returned. */
KILN_PREDICTOR_EXPORT void kiln_predictor_teardown(void);

/* Optional. Free a string the library returned through *output_json or *error (default: free()). */
KILN_PREDICTOR_EXPORT void kiln_predictor_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
