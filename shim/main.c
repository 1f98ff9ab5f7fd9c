/* SPDX-License-Identifier: Apache-2.0 */
/* main.c: kiln-shim's front end: options, configuration, signals, start and orderly stop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "kiln_version.h"
#include "shim/http.h"
#include "shim/weights.h"

#define DEFAULT_BODY_LIMIT      (64u * 1024 * 1024)
#define DEFAULT_MAX_CONNECTIONS 1000
#define DEFAULT_IDLE_TIMEOUT    30.0 /* seconds */
#define DEFAULT_REQUEST_TIMEOUT 60.0 /* seconds */
#define DEFAULT_KEEP_BYTES      (64u * 1024 * 1024)

static const char USAGE[] =
    "usage: kiln-shim [--port N] [--host ADDR] [--project DIR] [--await-explicit-shutdown]\n"
    "                 [--idle-exit S|auto] [--upload-url URL] [--max-connections N]\n"
    "                 [--connection-timeout S] [--request-timeout S] [--keep-bytes N]\n"
    "                 [--allow-private-urls]\n";

/* The limits an option, else its environment variable, sets (text as given; NULL: the default). */
struct limits {
	const char *max_connections, *connection_timeout, *request_timeout, *keep_bytes;
};

/* Seconds since the last request (s->last_request_ns). */
static double idle_since(struct shim *s)
{
	long long ns = __atomic_load_n(&s->last_request_ns, __ATOMIC_RELAXED);
	struct timespec t = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
	return shim_since(&t);
}

/* Die with a message on stderr (before the server runs). */
static int fail(const char *what, struct kiln_error *err)
{
	shim_log("error", NULL, "%s%s%s", what, err ? ": " : "", err ? err->message : "");
	kiln_error_free(err);
	return 1;
}

/* The directory that holds kiln_runner.py: $KILN_PYTHON_DIR, beside our bin/, an installed share/, or
 * the source tree. NULL when none has it. */
static char *find_python_dir(void)
{
	const char *env = getenv("KILN_PYTHON_DIR");
	if (env && *env)
		return strdup(env);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *candidates[3] = {NULL, NULL, KILN_SOURCE_PYTHON_DIR};
	char a[PATH_MAX + 32], b[PATH_MAX + 32];
	if (n > 0) {
		exe[n] = '\0';
		char *dir = dirname(exe);
		snprintf(a, sizeof(a), "%s/../python", dir);
		snprintf(b, sizeof(b), "%s/../share/kiln/python", dir);
		candidates[0] = a;
		candidates[1] = b;
	}
	for (size_t i = 0; i < 3; i++) {
		if (!candidates[i])
			continue;
		char probe[PATH_MAX + 64];
		snprintf(probe, sizeof(probe), "%s/kiln_runner.py", candidates[i]);
		if (access(probe, R_OK) == 0)
			return realpath(candidates[i], NULL);
	}
	return NULL;
}

/* Parse the command line into S. Returns -1 to go on, else the exit status. */
static int parse_options(struct shim *s, int argc, char **argv, const char **idle, struct limits *l)
{
	enum {
		OPT_HOST = 1000,
		OPT_PROJECT,
		OPT_AWAIT,
		OPT_IDLE,
		OPT_UPLOAD,
		OPT_THREADS,
		OPT_VERSION,
		OPT_MAX_CONNECTIONS,
		OPT_CONNECTION_TIMEOUT,
		OPT_REQUEST_TIMEOUT,
		OPT_KEEP_BYTES,
		OPT_ALLOW_PRIVATE,
	};
	static const struct option longopts[] = {
	    {"allow-private-urls", no_argument, NULL, OPT_ALLOW_PRIVATE},
	    {"await-explicit-shutdown", optional_argument, NULL, OPT_AWAIT},
	    {"connection-timeout", required_argument, NULL, OPT_CONNECTION_TIMEOUT},
	    {"help", no_argument, NULL, 'h'},
	    {"host", required_argument, NULL, OPT_HOST},
	    {"idle-exit", required_argument, NULL, OPT_IDLE},
	    {"keep-bytes", required_argument, NULL, OPT_KEEP_BYTES},
	    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
	    {"port", required_argument, NULL, 'p'},
	    {"project", required_argument, NULL, OPT_PROJECT},
	    {"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
	    {"threads", required_argument, NULL, OPT_THREADS},
	    {"upload-url", required_argument, NULL, OPT_UPLOAD},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "hp:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(USAGE, stdout);
			return 0;
		case OPT_VERSION:
			printf("kiln-shim %s\n", KILN_VERSION);
			return 0;
		case 'p': {
			char *end;
			long port = strtol(optarg, &end, 10);
			if (!*optarg || *end || port < 0 || port > 65535) {
				fprintf(stderr, "kiln-shim: --port: '%s' is not a port number\n", optarg);
				return 2;
			}
			s->port = (int)port;
			break;
		}
		case OPT_HOST:
			s->host = optarg;
			break;
		case OPT_PROJECT:
			s->project = optarg;
			break;
		case OPT_AWAIT:
			/* Cog takes a value ("--await-explicit-shutdown true"); a bare flag means true. */
			if (!optarg && optind < argc &&
			    (!strcmp(argv[optind], "true") || !strcmp(argv[optind], "false")))
				optarg = argv[optind++];
			s->await_explicit_shutdown = !optarg || strcmp(optarg, "false") != 0;
			break;
		case OPT_IDLE:
			*idle = optarg;
			break;
		case OPT_UPLOAD:
			s->upload_url = optarg;
			break;
		case OPT_THREADS:
			break; /* Cog's; the manifest's concurrency.max decides */
		case OPT_MAX_CONNECTIONS:
			l->max_connections = optarg;
			break;
		case OPT_CONNECTION_TIMEOUT:
			l->connection_timeout = optarg;
			break;
		case OPT_REQUEST_TIMEOUT:
			l->request_timeout = optarg;
			break;
		case OPT_KEEP_BYTES:
			l->keep_bytes = optarg;
			break;
		case OPT_ALLOW_PRIVATE:
			setenv("KILN_ALLOW_PRIVATE_URLS", "1", 1); /* files_http.c reads it */
			break;
		default:
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kiln-shim: unexpected argument '%s'\n%s", argv[optind], USAGE);
		return 2;
	}
	return -1;
}

/* TEXT (from WHAT, an option or variable) as a positive number, an integer when INTEGER, into *out; DEF
 * when TEXT is NULL or empty. 0, or -1 after saying why on stderr. */
static int positive(const char *what, const char *text, bool integer, double def, double *out)
{
	*out = def;
	if (!text || !*text)
		return 0;
	char *end;
	errno = 0;
	double v = integer ? (double)strtoll(text, &end, 10) : strtod(text, &end);
	if (*end || errno || !(v > 0) || v > 1e15) {
		fprintf(stderr, "kiln-shim: %s: '%s' is not a positive %s\n", what, text,
		        integer ? "integer" : "number of seconds");
		return -1;
	}
	*out = v;
	return 0;
}

/* The connection and memory limits into S: each option, else its variable, else the default. 0, or -1
 * after saying why. */
static int set_limits(struct shim *s, const struct limits *l)
{
	double v[4];
	const struct {
		const char *option, *env, *text;
		bool integer;
		double def;
	} rows[4] = {
	    {"--max-connections", "KILN_SHIM_MAX_CONNECTIONS", l->max_connections, true,
	     DEFAULT_MAX_CONNECTIONS},
	    {"--connection-timeout", "KILN_SHIM_CONNECTION_TIMEOUT", l->connection_timeout, false,
	     DEFAULT_IDLE_TIMEOUT},
	    {"--request-timeout", "KILN_SHIM_REQUEST_TIMEOUT", l->request_timeout, false,
	     DEFAULT_REQUEST_TIMEOUT},
	    {"--keep-bytes", "KILN_SHIM_KEEP_BYTES", l->keep_bytes, true, DEFAULT_KEEP_BYTES},
	};
	for (size_t i = 0; i < 4; i++) {
		const char *env = getenv(rows[i].env);
		bool opt = rows[i].text != NULL;
		if (positive(opt ? rows[i].option : rows[i].env, opt ? rows[i].text : env, rows[i].integer,
		             rows[i].def, &v[i]) < 0)
			return -1;
	}
	s->max_connections = (long)v[0];
	s->idle_timeout = v[1];
	s->request_timeout = v[2];
	s->keep_bytes = (size_t)v[3];
	return 0;
}

/* Read the manifest and the environment into S. Returns 0, or -1 after logging why. */
static int configure(struct shim *s, const char *idle)
{
	struct kiln_error *err = NULL;
	const char *file = getenv("KILN_MANIFEST"); /* kiln serve -f: another manifest than the project's */
	if (kiln_manifest_load(&s->manifest, s->project, file && *file ? file : NULL, &err) < 0)
		return fail("cannot read the project's manifest", err), -1;
	const char *run = s->manifest->predict;
	if (!run)
		return fail("the manifest has no 'run' (or 'predict'): nothing to serve", NULL), -1;
	bool native = strncmp(run, "native:", 7) == 0;
	if (!native && !strstr(run, ".py:"))
		return fail("'run' must be 'file.py:Class' or 'native:PATH'", NULL), -1;
	s->predictor = strdup(run);
	if (s->manifest->train && native)
		shim_log("warning", NULL, "train: needs a Python predictor: no /trainings with 'native:'");
	else if (s->manifest->train)
		s->trainer = strdup(s->manifest->train);
	s->concurrency = s->manifest->concurrency_max > 0 ? s->manifest->concurrency_max : 1;
	for (size_t i = 0; i < s->manifest->environment.n; i++) {
		char *kv = strdup(s->manifest->environment.v[i]);
		char *eq = strchr(kv, '=');
		if (eq) {
			*eq = '\0';
			setenv(kv, eq + 1, 0); /* the environment of the container wins */
		}
		free(kv);
	}
	if (idle) {
		char *end;
		if (strcmp(idle, "auto") == 0)
			s->idle_exit =
			    s->manifest->serve.scaledown_window > 0 ? s->manifest->serve.scaledown_window : 0;
		else if ((s->idle_exit = strtod(idle, &end)) <= 0 || *end)
			return fail("--idle-exit: expected seconds or 'auto'", NULL), -1;
	}
	const char *timeout = getenv("COG_SETUP_TIMEOUT");
	if (timeout && *timeout)
		s->setup_timeout = strtod(timeout, NULL);
	s->stream_history = SHIM_STREAM_HISTORY;
	const char *history = getenv("COG_STREAM_HISTORY_CAPACITY");
	if (history && *history) {
		char *end;
		errno = 0;
		long v = strtol(history, &end, 10);
		if (*end || errno || v < 0 || end == history)
			shim_log("warning", json_pack("{s:i}", "default", (json_int_t)SHIM_STREAM_HISTORY),
			         "COG_STREAM_HISTORY_CAPACITY='%.64s' is not a number of events: using the "
			         "default",
			         history);
		else
			s->stream_history = v;
	}
	const char *python = getenv("KILN_PYTHON");
	s->python = python && *python ? python : "python3";
	s->python_dir = find_python_dir();
	if (!s->python_dir && !native)
		return fail("cannot find kiln_runner.py: set KILN_PYTHON_DIR", NULL), -1;
	return 0;
}

/* Start warming the weight files named in $KILN_PREFETCH_FILES (one per line) unless KILN_PREFETCH=0. */
static void start_prefetch(struct shim *s)
{
	const char *off = getenv("KILN_PREFETCH");
	const char *list = getenv("KILN_PREFETCH_FILES");
	if ((off && strcmp(off, "0") == 0) || !list || !*list)
		return;
	_cleanup_free_ char *copy = strdup(list);
	size_t n = 0, cap = 16;
	char **files = malloc(cap * sizeof(*files));
	for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (n == cap)
			files = realloc(files, (cap *= 2) * sizeof(*files));
		files[n++] = line;
	}
	struct kiln_error *err = NULL;
	if (shim_prefetch_start(&s->prefetch, files, n, 0, &err) < 0) {
		shim_log("warning", NULL, "cannot prefetch the weights: %s", err->message);
		kiln_error_free(err);
	}
	free(files);
}

/* Setup, once the weights are there: prefetch them, check the GPU, start the worker (or say why not). */
static void start_setup(struct shim *s)
{
	const char *why = NULL;
	if (s->weights && shim_weights_state(s->weights, &why) == SHIM_WEIGHTS_FAILED) {
		shim_log("error", json_pack("{s:o}", "weights", shim_weights_json(s->weights)),
		         "cannot fetch the weights");
		pthread_mutex_lock(&s->lock);
		if (!s->setup_status)
			shim_setup_done(s, "failed", SHIM_SETUP_FAILED, why);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	if (s->weights) {
		json_t *j = shim_weights_json(s->weights);
		char line[512];
		snprintf(line, sizeof(line),
		         "weights: %lld files, %lld bytes fetched from %s in %.2fs (%lld cached)\n",
		         (long long)json_integer_value(json_object_get(j, "files")),
		         (long long)json_integer_value(json_object_get(j, "bytes_fetched")),
		         json_string_value(json_object_get(j, "source")),
		         json_real_value(json_object_get(j, "seconds")),
		         (long long)json_integer_value(json_object_get(j, "cached")));
		shim_log("info", j, "weights ready");
		pthread_mutex_lock(&s->lock);
		kiln_buf_puts(&s->setup_logs, line);
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	bool over = s->setup_status != NULL; /* timed out while the weights came */
	pthread_mutex_unlock(&s->lock);
	if (over)
		return;
	start_prefetch(s);
	struct kiln_error *err = NULL;
	const char *allow_cpu = getenv("KILN_ALLOW_CPU");
	if (s->manifest->gpu && s->gpu.count == 0 && !(allow_cpu && strcmp(allow_cpu, "1") == 0)) {
		char msg[1024];
		snprintf(
		    msg, sizeof(msg),
		    "the manifest has build.gpu: true but no GPU was found (%s); set KILN_ALLOW_CPU=1 to run "
		    "on the CPU",
		    *s->gpu.error ? s->gpu.error : "no device");
		pthread_mutex_lock(&s->lock);
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, msg);
		pthread_mutex_unlock(&s->lock);
	} else if (shim_worker_start(s, &err) < 0) {
		pthread_mutex_lock(&s->lock);
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, err->message);
		pthread_mutex_unlock(&s->lock);
		kiln_error_free(err);
	}
}

/*
 * The socket systemd passed (LISTEN_PID/LISTEN_FDS: fd 3), or the one kiln serve REF hands on into the
 * sandbox (KILN_LISTEN_FD=N: the shim's pid there is not known to it), or -1 (an N that is not a socket:
 * -2, an error).
 */
static int activation_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS"), *kfd = getenv("KILN_LISTEN_FD");
	int from = 3;
	if (kfd && *kfd) {
		char *end;
		long n = strtol(kfd, &end, 10);
		struct stat st;
		if (*end || n < 3 || n > 1024 || fstat((int)n, &st) < 0 || !S_ISSOCK(st.st_mode)) {
			shim_log("error", NULL, "KILN_LISTEN_FD: '%s' is not a socket this process has", kfd);
			return -2;
		}
		from = (int)n;
	} else if (!pid || !fds || atol(pid) != (long)getpid() || atoi(fds) < 1) {
		return -1;
	}
	unsetenv("KILN_LISTEN_FD");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	int fd = fcntl(from, F_DUPFD_CLOEXEC, 10); /* fd 3 is the worker's events pipe in the child */
	close(from);
	return fd;
}

/* Wait for signals and the conditions that end the server; returns when it is time to stop. */
static void serve(struct shim *s, const sigset_t *sigs)
{
	struct timespec tick = {0, 200 * 1000 * 1000};
	bool settled = false;
	for (;;) {
		siginfo_t si;
		int sig = sigtimedwait(sigs, &si, &tick);
		shim_server_tick(s);
		if (s->setup_pending && shim_weights_state(s->weights, NULL) != SHIM_WEIGHTS_FETCHING) {
			s->setup_pending = false;
			start_setup(s);
		}
		if (sig == SIGTERM && s->await_explicit_shutdown) {
			shim_log("info", NULL,
			         "ignoring SIGTERM (--await-explicit-shutdown): POST /shutdown to stop");
		} else if (sig > 0) {
			shim_log("info", json_pack("{s:s}", "signal", sigabbrev_np(sig)),
			         "stopping on a signal");
			return;
		}
		pthread_mutex_lock(&s->lock);
		bool stop = s->shutdown_requested;
		if (s->health == SHIM_STARTING && s->setup_timeout > 0 &&
		    shim_since(&s->setup_start_mono) > s->setup_timeout) {
			char msg[128];
			snprintf(msg, sizeof(msg), "setup timed out after %g seconds (COG_SETUP_TIMEOUT)",
			         s->setup_timeout);
			shim_setup_done(s, "failed", SHIM_SETUP_FAILED, msg);
			shim_worker_kill(s);
		}
		if (!settled && s->health != SHIM_STARTING) {
			/* --idle-exit counts from the end of setup: a slow setup is not idle time */
			settled = true;
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
			if (__atomic_load_n(&s->last_request_ns, __ATOMIC_RELAXED) < ns)
				__atomic_store_n(&s->last_request_ns, ns, __ATOMIC_RELAXED);
		}
		if (s->idle_exit > 0 && s->health != SHIM_STARTING && s->busy == 0 &&
		    __atomic_load_n(&s->requests, __ATOMIC_ACQUIRE) == 0 && idle_since(s) > s->idle_exit) {
			shim_log("info", json_pack("{s:f}", "idle_exit", s->idle_exit), "idle: exiting");
			stop = true;
		}
		pthread_mutex_unlock(&s->lock);
		if (stop)
			return;
	}
}

/* Stop accepting, let in-flight predictions finish and their answers go, then stop everything. */
static void drain(struct shim *s, const sigset_t *sigs)
{
	pthread_mutex_lock(&s->lock);
	s->draining = true;
	pthread_mutex_unlock(&s->lock);
	shim_server_quiesce(s);
	struct timespec tick = {0, 100 * 1000 * 1000};
	for (double waited = 0;; waited += 0.1) {
		pthread_mutex_lock(&s->lock);
		bool idle =
		    s->busy == 0 && (__atomic_load_n(&s->requests, __ATOMIC_ACQUIRE) == 0 || waited > 10);
		pthread_mutex_unlock(&s->lock);
		if (idle)
			break;
		siginfo_t si;
		if (sigtimedwait(sigs, &si, &tick) == SIGINT) {
			shim_log("warning", NULL, "second interrupt: not waiting for predictions");
			break;
		}
	}
	shim_server_stop(s);
	shim_worker_stop(s, 5);
}

int main(int argc, char **argv)
{
	static struct shim shim = {
	    .project = ".",
	    .host = "0.0.0.0",
	    .port = 5000,
	    .listen_fd = -1,
	    .body_limit = DEFAULT_BODY_LIMIT,
	    .lock = PTHREAD_MUTEX_INITIALIZER,
	    .cond = PTHREAD_COND_INITIALIZER,
	};
	struct shim *s = &shim;
	const char *port = getenv("PORT");
	if (port && *port) {
		char *end = NULL;
		long n = strtol(port, &end, 10);
		if (*end || n < 0 || n > 65535) {
			shim_log("error", NULL, "PORT: '%s' is not a port number", port);
			return 2;
		}
		s->port = (int)n;
	}
	const char *idle = NULL;
	struct limits limits = {0};
	int rc = parse_options(s, argc, argv, &idle, &limits);
	if (rc >= 0)
		return rc;
	if (set_limits(s, &limits) < 0)
		return 2;
	if ((s->listen_fd = activation_socket()) == -2)
		return 2;
	s->activated = s->listen_fd >= 0;
	if (configure(s, idle) < 0) {
		kiln_manifest_free(s->manifest);
		free(s->predictor);
		free(s->trainer);
		free(s->trainer);
		free(s->python_dir);
		return 1;
	}

	/* Signals are taken by sigtimedwait in this thread; every thread started from here blocks them. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct kiln_error *err = NULL;
	shim_table_attach(s);
	if (shim_webhooks_new(&s->webhooks, &err) < 0)
		return fail("cannot start the webhook sender", err);
	shim_now(s->setup_started);
	clock_gettime(CLOCK_MONOTONIC, &s->setup_start_mono);
	s->last_request_ns =
	    (long long)s->setup_start_mono.tv_sec * 1000000000LL + s->setup_start_mono.tv_nsec;
	if (shim_weights_start(&s->weights, &err) < 0)
		return fail("the image's weights from the registry", err);
	s->setup_pending = s->weights && shim_weights_state(s->weights, NULL) == SHIM_WEIGHTS_FETCHING;
	shim_gpu_probe(&s->gpu);
	if (shim_server_start(s, &err) < 0)
		return fail("cannot start the HTTP server", err);
	shim_log("info",
	         json_pack("{s:s, s:i, s:s, s:i, s:s, s:o}", "host",
	                   s->listen_fd >= 0 ? "(socket activation)" : s->host, "port", s->port, "predictor",
	                   s->predictor, "concurrency", (int)s->concurrency, "version", KILN_VERSION, "gpu",
	                   shim_gpu_json(&s->gpu)),
	         "kiln-shim listening");

	if (s->setup_pending)
		shim_log("info", json_pack("{s:o}", "weights", shim_weights_json(s->weights)),
		         "fetching the weights before setup");
	else
		start_setup(s);

	serve(s, &sigs);
	drain(s, &sigs);
	if (s->webhooks)
		shim_webhooks_free(s->webhooks, 10);
	if (s->prefetch)
		shim_prefetch_free(s->prefetch, true);
	shim_weights_free(s->weights);
	shim_log("info", NULL, "kiln-shim stopped");
	shim_job_free_all(s);
	json_decref(s->schema);
	json_decref(s->train_schema);
	free(s->hc_error);
	free(s->cog_version);
	free(s->python_version);
	kiln_buf_release(&s->setup_logs);
	kiln_manifest_free(s->manifest);
	free(s->predictor);
	free(s->trainer);
	free(s->python_dir);
	return 0;
}
