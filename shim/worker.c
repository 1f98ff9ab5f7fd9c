/* SPDX-License-Identifier: Apache-2.0 */
/* worker.c: the Python worker process: spawn, requests on stdin, events on fd 3, logs from stdout/stderr.
 * A native predictor (native.c) takes its place when 'run' is 'native:PATH'. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "shim/worker.h"

extern char **environ;

#define WARMUP_ID      "kiln-warmup"
#define WORKER_CRASHED "Worker crashed" /* Cog 0.22's error for the predictions a dead worker ran */
#define LINE_MAX_MIB   64
#define LINE_MAX_BYTES ((size_t)LINE_MAX_MIB * 1024 * 1024)
#define STRINGIFY_(x)  #x
#define STRINGIFY(x)   STRINGIFY_(x)

/* One pipe from the worker that its reader thread follows, with the bytes of its unfinished line. */
struct shim_stream {
	int fd;
	const char *name; /* "events", "stdout", "stderr" */
	struct kiln_buf line;
	bool too_long; /* the line passed LINE_MAX_BYTES: the rest of it is dropped */
};

/* The Python worker process (s->pyworker). */
struct shim_pyworker {
	pid_t pid;
	int in;               /* its stdin, or -1 */
	pthread_mutex_t lock; /* one writer on in at a time */
	pthread_t reader;
	struct shim_stream streams[3]; /* events (fd 3), stdout, stderr */
	bool reader_started;
};

/* Mark setup finished with STATUS and the health that goes with it (see worker.h). */
void shim_setup_done(struct shim *s, const char *status, enum shim_health health, const char *error)
{
	if (s->setup_status)
		return;
	if (error) {
		if (s->setup_logs.len && s->setup_logs.ptr[s->setup_logs.len - 1] != '\n')
			kiln_buf_puts(&s->setup_logs, "\n");
		kiln_buf_printf(&s->setup_logs, "%s\n", error);
	}
	s->setup_status = status;
	shim_now(s->setup_completed);
	s->health = health;
	shim_log(health == SHIM_READY ? "info" : "error",
	         json_pack("{s:f}", "setup_time", shim_since(&s->setup_start_mono)), "setup %s%s%s", status,
	         error ? ": " : "", error ? error : "");
	if (s->job_changed)
		s->job_changed(s, NULL);
	pthread_cond_broadcast(&s->cond);
}

/* After the runner's "ready": run serve.warmup when there is one, else become READY. */
static void on_ready(struct shim *s)
{
	json_t *warmup = s->manifest ? s->manifest->serve.warmup : NULL;
	if (!warmup || !s->schema) {
		shim_setup_done(s, "succeeded", SHIM_READY, NULL);
		return;
	}
	json_t *input = NULL, *detail = NULL;
	char *unknown = shim_validate_unknown(s->schema, warmup);
	if (unknown) {
		/* the manifest's own input: a name the model does not have is a mistake to name, not to drop
		 */
		char msg[512];
		snprintf(msg, sizeof(msg), "invalid serve.warmup input: %s %s not an input of this model",
		         unknown, strchr(unknown, ',') ? "are" : "is");
		free(unknown);
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, msg);
		return;
	}
	if (shim_validate_input(s->schema, warmup, &input, &detail) < 0) {
		char *d = kiln_json_dumps(detail, JSON_COMPACT);
		char msg[512];
		snprintf(msg, sizeof(msg), "invalid serve.warmup input: %s", d ? d : "");
		free(d);
		json_decref(detail);
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, msg);
		return;
	}
	s->warming = true;
	shim_log("info", NULL, "running the warmup prediction");
	json_t *msg = json_pack("{s:s, s:s, s:o}", "type", "predict", "id", WARMUP_ID, "input", input);
	pthread_mutex_unlock(&s->lock);
	shim_worker_send(s, msg);
	pthread_mutex_lock(&s->lock);
	json_decref(msg);
}

/* Events of the warmup prediction: logs go to the setup logs, its end ends setup. */
static void on_warmup_event(struct shim *s, const char *type, json_t *ev)
{
	if (strcmp(type, "log") == 0) {
		json_t *text = json_object_get(ev, "text");
		kiln_buf_put(&s->setup_logs, json_string_value(text) ?: "", json_string_length(text));
	} else if (strcmp(type, "done") == 0 || strcmp(type, "failed") == 0 ||
	           strcmp(type, "canceled") == 0) {
		s->warming = false;
		if (strcmp(type, "done") == 0) {
			shim_setup_done(s, "succeeded", SHIM_READY, NULL);
		} else {
			char msg[512];
			const char *e = json_string_value(json_object_get(ev, "error"));
			snprintf(msg, sizeof(msg), "warmup prediction %s: %s", type, e ? e : "canceled");
			shim_setup_done(s, "failed", SHIM_SETUP_FAILED, msg);
		}
	}
}

/* Handle one event of the worker, TYPE its "type" (s->lock held). */
static void handle_event(struct shim *s, const char *type, json_t *ev)
{
	const char *id = json_string_value(json_object_get(ev, "id"));
	if (strcmp(type, "schema") == 0) {
		json_decref(s->schema);
		json_decref(s->train_schema);
		s->schema = json_incref(json_object_get(ev, "schema"));
		s->train_schema = s->trainer ? shim_schema_for_training(s->schema) : NULL;
	} else if (strcmp(type, "versions") == 0) {
		const char *cog = json_string_value(json_object_get(ev, "cog"));
		const char *python = json_string_value(json_object_get(ev, "python"));
		free(s->cog_version);
		free(s->python_version);
		s->cog_version = cog ? strdup(cog) : NULL;
		s->python_version = python ? strdup(python) : NULL;
	} else if (strcmp(type, "ready") == 0) {
		s->has_healthcheck = json_is_true(json_object_get(ev, "healthcheck"));
		s->streaming = json_is_true(json_object_get(ev, "streaming"));
		if (!s->setup_status)
			on_ready(s);
	} else if (strcmp(type, "healthcheck_result") == 0) {
		json_int_t n = json_integer_value(json_object_get(ev, "id"));
		if (n > s->hc_answered) {
			const char *e = json_string_value(json_object_get(ev, "error"));
			s->hc_answered = n;
			free(s->hc_error);
			s->hc_error = e ? strdup(e) : NULL;
			pthread_cond_broadcast(&s->cond);
		}
	} else if (strcmp(type, "setup_failed") == 0) {
		const char *e = json_string_value(json_object_get(ev, "error"));
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, e ? e : "setup failed");
	} else if (id && strcmp(id, WARMUP_ID) == 0) {
		on_warmup_event(s, type, ev);
	} else if (strcmp(type, "log") == 0 && !id) {
		json_t *text = json_object_get(ev, "text");
		size_t len = json_string_length(text);
		if (!s->setup_status)
			kiln_buf_put(&s->setup_logs, json_string_value(text) ?: "", len);
		else
			shim_log_text("info", json_pack("{s:s}", "source", "worker"),
			              json_string_value(text) ?: "", len);
	} else {
		s->job_ops->event(s, type, ev);
	}
}

/* The id that the event line LINE (LEN bytes) that is not a valid event names: the JSON string after its
 * first "id" key (the runner writes "type" and "id" first). NULL when there is none; caller frees. */
static char *id_in_line(const char *line, size_t len)
{
	const char *key = memmem(line, len, "\"id\"", 4);
	if (!key)
		return NULL;
	size_t i = (size_t)(key - line) + 4;
	while (i < len && (line[i] == ' ' || line[i] == ':'))
		i++;
	json_t *v =
	    json_loadb(line + i, len - i, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, NULL);
	char *id = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
	json_decref(v);
	return id;
}

/*
 * An event line that cannot be understood (WHY): it may have been a prediction's end, so the prediction it
 * names ends, failed with WHY; without a name, the one prediction that runs, if only one does (else there
 * is no telling whose it was and it is only logged). The warmup's ends setup. s->lock held.
 */
static void on_bad_event(struct shim *s, const char *line, size_t len, const char *why)
{
	_cleanup_free_ char *id = id_in_line(line, len);
	const char *job = s->job_ops->which(s, id);
	char msg[512];
	snprintf(msg, sizeof(msg), "the worker sent an event that cannot be read: %s", why);
	shim_log(
	    "warning",
	    json_pack("{s:s%, s:s?}", "line", line, len < 1024 ? len : 1024, "prediction_id", job ? job : id),
	    "%s", msg);
	if (id && strcmp(id, WARMUP_ID) == 0 && s->warming) {
		s->warming = false;
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, msg);
	} else if (job) {
		s->job_ops->fail(s, job, msg);
	}
}

/* Handle one line from fd 3 (s->lock held). */
static void on_event(struct shim *s, const char *line, size_t len)
{
	json_error_t jerr;
	/* JSON strings may hold \u0000: outputs and logs carry it through */
	json_t *ev = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
	const char *type = json_string_value(json_object_get(ev, "type"));
	if (!ev) {
		char why[256];
		snprintf(why, sizeof(why), "%s (column %d)", jerr.text, jerr.column);
		on_bad_event(s, line, len, why);
	} else if (!type) {
		on_bad_event(s, line, len, "no \"type\"");
	} else {
		handle_event(s, type, ev);
	}
	json_decref(ev);
}

void shim_worker_event(struct shim *s, json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	pthread_mutex_lock(&s->lock);
	if (type)
		handle_event(s, type, ev);
	pthread_mutex_unlock(&s->lock);
}

/* A line the worker wrote to stdout or stderr: the logs of setup, of the one running prediction, or ours.
 * Kept as written (a C library's or a subprocess's bytes may not be UTF-8: shim_json_text, which every JSON
 * writer of them uses, makes them so). */
static void on_output(struct shim *s, struct shim_stream *st, const char *line, size_t len)
{
	if (!s->setup_status || s->warming) {
		kiln_buf_put(&s->setup_logs, line, len);
		kiln_buf_puts(&s->setup_logs, "\n");
		return;
	}
	const char *only = s->job_ops->which(s, NULL);
	if (only) {
		s->job_ops->log(s, only, st->name, line, len);
		s->job_ops->log(s, only, st->name, "\n", 1);
	} else {
		shim_log_text("info", json_pack("{s:s}", "source", st->name), line, len);
	}
}

/* Handle each complete line of ST's buffer after CHUNK[0..N) is added to it; at EOF, what is left. A line
 * longer than LINE_MAX_BYTES is handled at that length and the rest of it dropped. */
static void feed(struct shim *s, struct shim_stream *st, const char *chunk, size_t n, bool eof)
{
	size_t skip = 0;
	if (n > 0 && st->too_long) {
		const char *nl = memchr(chunk, '\n', n);
		if (!nl)
			return;
		skip = (size_t)(nl + 1 - chunk);
		st->too_long = false;
	}
	if (n > 0)
		kiln_buf_put(&st->line, chunk + skip, n - skip);
	bool events = strcmp(st->name, "events") == 0;
	pthread_mutex_lock(&s->lock);
	size_t start = 0;
	for (size_t i = 0; i < st->line.len; i++) {
		if (st->line.ptr[i] != '\n')
			continue;
		if (events)
			on_event(s, st->line.ptr + start, i - start);
		else
			on_output(s, st, st->line.ptr + start, i - start);
		start = i + 1;
	}
	if (!eof && st->line.len - start > LINE_MAX_BYTES) {
		if (events)
			on_bad_event(s, st->line.ptr + start, st->line.len - start,
			             "longer than " STRINGIFY(LINE_MAX_MIB) " MiB");
		else
			on_output(s, st, st->line.ptr + start, LINE_MAX_BYTES);
		start = st->line.len;
		st->too_long = true;
	}
	if (eof && start < st->line.len) {
		if (!events)
			on_output(s, st, st->line.ptr + start, st->line.len - start);
		start = st->line.len;
	}
	pthread_mutex_unlock(&s->lock);
	if (start) {
		memmove(st->line.ptr, st->line.ptr + start, st->line.len - start);
		st->line.len -= start;
		st->line.ptr[st->line.len] = '\0';
	}
}

/* Read what is there on ST and handle it (feed). Returns 0 at EOF. */
static int pump(struct shim *s, struct shim_stream *st)
{
	char chunk[65536];
	ssize_t n = read(st->fd, chunk, sizeof(chunk));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 1;
	bool eof = n <= 0;
	feed(s, st, chunk, n > 0 ? (size_t)n : 0, eof);
	return eof ? 0 : 1;
}

void shim_worker_feed(struct shim *s, const char *stream, const char *data, size_t len)
{
	struct shim_stream st = {.fd = -1, .name = stream, .line = KILN_BUF_INIT};
	feed(s, &st, data, len, false);
	feed(s, &st, NULL, 0, true);
	kiln_buf_release(&st.line);
}

/* Wait for the worker to exit (up to 5 s, then SIGKILL) and describe how it ended. */
static void reap(struct shim_pyworker *w, char *why, size_t size)
{
	int status = 0;
	for (int i = 0; i < 100; i++) {
		pid_t r = waitpid(w->pid, &status, WNOHANG);
		if (r == w->pid || (r < 0 && errno != EINTR))
			goto done;
		usleep(50000);
	}
	kill(w->pid, SIGKILL);
	waitpid(w->pid, &status, 0);
done:
	if (WIFSIGNALED(status))
		snprintf(why, size, "the worker was killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(why, size, "the worker exited with status %d", WEXITSTATUS(status));
}

/* The reader thread: follows the three pipes until the events pipe ends, then reaps the worker. */
static void *reader_main(void *arg)
{
	struct shim *s = arg;
	struct shim_stream *st = s->pyworker->streams;
	int open_streams = 3;
	bool events_open = true;
	while (open_streams > 0) {
		struct pollfd pfd[3];
		int n = 0;
		for (int i = 0; i < 3; i++)
			if (st[i].fd >= 0)
				pfd[n++] = (struct pollfd){.fd = st[i].fd, .events = POLLIN};
		int r = poll(pfd, n, events_open ? -1 : 500);
		if (r == 0)
			break; /* the events pipe ended and the others stay quiet: a child of the worker holds
			          them */
		if (r < 0 && errno != EINTR)
			break;
		for (int k = 0; k < n && r > 0; k++) {
			if (!pfd[k].revents)
				continue;
			for (int i = 0; i < 3; i++) {
				if (st[i].fd != pfd[k].fd || pump(s, &st[i]))
					continue;
				close(st[i].fd);
				st[i].fd = -1;
				open_streams--;
				if (i == 0)
					events_open = false;
			}
		}
	}
	char why[160];
	reap(s->pyworker, why, sizeof(why));
	pthread_mutex_lock(&s->lock);
	s->worker_exited = true;
	if (!s->setup_status) {
		shim_setup_done(s, "failed", SHIM_SETUP_FAILED, why);
	} else if (!s->draining && s->health == SHIM_READY) {
		s->health = SHIM_DEFUNCT;
		shim_log("error", NULL, "%s: the shim is DEFUNCT", why);
		if (s->job_changed)
			s->job_changed(s, NULL);
	}
	s->job_ops->fail_all(s, WORKER_CRASHED, why);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Move FD above 3 when it is one of the numbers the child gets (dup2 onto itself keeps FD_CLOEXEC). */
static int high_fd(int fd)
{
	if (fd > 3)
		return fd;
	int moved = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	close(fd);
	return moved;
}

int shim_worker_start(struct shim *s, struct kiln_error **err)
{
	if (strncmp(s->predictor, "native:", 7) == 0)
		return shim_native_start(s, s->predictor + 7, err);
	int in[2], ev[2], out[2], er[2];
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(ev, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
	    pipe2(er, O_CLOEXEC) < 0)
		return kiln_error_errno(err, errno, "cannot create the worker's pipes");
	int child[4] = {high_fd(in[0]), high_fd(out[1]), high_fd(er[1]), high_fd(ev[1])};
	struct shim_pyworker *w = calloc(1, sizeof(*w));
	if (!w)
		abort();
	w->in = -1;
	pthread_mutex_init(&w->lock, NULL);
	s->pyworker = w;
	_cleanup_free_ char *runner = kiln_path_join(s->python_dir, "kiln_runner.py");
	char conc[24];
	snprintf(conc, sizeof(conc), "%ld", s->concurrency);
	char *argv[] = {(char *)s->python, "-u", runner, "--predictor", s->predictor,
	                "--concurrency",   conc, NULL,   NULL,          NULL};
	if (s->trainer) {
		argv[7] = "--trainer";
		argv[8] = s->trainer;
	}

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	for (int i = 0; i < 4; i++)
		posix_spawn_file_actions_adddup2(&fa, child[i], i);
	posix_spawn_file_actions_addchdir_np(&fa, s->project);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none, defaults;
	sigemptyset(&none);
	sigfillset(&defaults);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr,
	                         POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	setenv("KILN_RUNNER_FD", "3", 1);
	int rc = posix_spawnp(&w->pid, s->python, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	for (int i = 0; i < 4; i++)
		close(child[i]);
	if (rc != 0) {
		close(in[1]);
		close(ev[0]);
		close(out[0]);
		close(er[0]);
		return kiln_error_errno(err, rc, "cannot start '%s'", s->python);
	}
	w->in = in[1];
	w->streams[0] = (struct shim_stream){.fd = ev[0], .name = "events"};
	w->streams[1] = (struct shim_stream){.fd = out[0], .name = "stdout"};
	w->streams[2] = (struct shim_stream){.fd = er[0], .name = "stderr"};
	shim_log("info", json_pack("{s:i, s:s}", "pid", (int)w->pid, "predictor", s->predictor),
	         "worker started");
	if (pthread_create(&w->reader, NULL, reader_main, s) != 0)
		return kiln_error_set(err, KILN_EFAIL, "cannot start the worker's reader thread");
	w->reader_started = true;
	return 0;
}

int shim_worker_send(struct shim *s, json_t *msg)
{
	if (s->native)
		return shim_native_send(s, msg);
	struct shim_pyworker *w = s->pyworker;
	char *line = w ? kiln_json_dumps(msg, JSON_COMPACT) : NULL;
	if (!line)
		return -1;
	pthread_mutex_lock(&w->lock);
	int rc = -1;
	if (w->in >= 0) {
		size_t len = strlen(line);
		line[len] = '\n';
		rc = kiln_write_all(w->in, line, len + 1) < 0 ? -1 : 0;
	}
	pthread_mutex_unlock(&w->lock);
	free(line);
	return rc;
}

int shim_worker_run_direct(struct shim *s, const char *id, json_t *input)
{
	return s->native ? shim_native_predict_direct(s, id, input) : 1;
}

char *shim_worker_healthcheck(struct shim *s)
{
	if (!s->has_healthcheck || s->health != SHIM_READY || s->busy >= s->concurrency)
		return NULL;
	long long n = ++s->hc_sent;
	json_t *msg = json_pack("{s:s, s:I}", "type", "healthcheck", "id", (json_int_t)n);
	pthread_mutex_unlock(&s->lock);
	int rc = shim_worker_send(s, msg);
	json_decref(msg);
	pthread_mutex_lock(&s->lock);
	if (rc < 0)
		return strdup("Healthcheck failed: the worker has exited");
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += 7;
	while (s->hc_answered < n && !s->worker_exited)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &end) == ETIMEDOUT)
			break;
	if (s->hc_answered < n)
		return strdup(
		    s->worker_exited
		        ? "Healthcheck failed: the worker has exited"
		        : "Healthcheck failed: user-defined healthcheck timed out after 5.0 seconds");
	return s->hc_error ? strdup(s->hc_error) : NULL;
}

void shim_worker_kill(struct shim *s)
{
	if (s->native) {
		shim_native_kill(s);
		return;
	}
	if (s->pyworker && s->pyworker->pid > 0 && !s->worker_exited)
		kill(s->pyworker->pid, SIGKILL);
}

void shim_worker_stop(struct shim *s, double timeout)
{
	if (s->native) {
		shim_native_stop(s, timeout);
		return;
	}
	struct shim_pyworker *w = s->pyworker;
	if (!w)
		return;
	if (!w->reader_started)
		goto out;
	json_t *msg = json_pack("{s:s}", "type", "shutdown");
	shim_worker_send(s, msg);
	json_decref(msg);
	pthread_mutex_lock(&w->lock);
	close(w->in);
	w->in = -1;
	pthread_mutex_unlock(&w->lock);
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += (time_t)timeout;
	pthread_mutex_lock(&s->lock);
	while (!s->worker_exited)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &end) == ETIMEDOUT)
			break;
	bool exited = s->worker_exited;
	pthread_mutex_unlock(&s->lock);
	if (!exited)
		kill(w->pid, SIGKILL);
	pthread_join(w->reader, NULL);
	for (int i = 0; i < 3; i++) {
		if (w->streams[i].fd >= 0)
			close(w->streams[i].fd);
		kiln_buf_release(&w->streams[i].line);
	}
out:
	if (w->in >= 0)
		close(w->in);
	pthread_mutex_destroy(&w->lock);
	s->pyworker = NULL;
	free(w);
}
