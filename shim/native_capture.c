/* SPDX-License-Identifier: Apache-2.0 */
/* native_capture.c: what a native predictor writes to fds 1 and 2, captured through pipes into log events
 * of the prediction that runs. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "shim/native.h"

/* A log event for TEXT (LEN bytes) written to SOURCE ("stdout", "stderr"), of the prediction that runs when
 * exactly one does, else of no one. Bytes that are not UTF-8 become U+FFFD. */
static void emit_log(struct shim *s, const char *source, const char *text, size_t len)
{
	struct shim_native *n = s->native;
	json_t *id = json_null();
	int running = 0;
	pthread_mutex_lock(&n->lock);
	for (long i = 0; i < 2 * n->nworkers; i++) {
		struct native_worker *w = i < n->nworkers ? &n->workers[i] : &n->direct[i - n->nworkers];
		if (w->job && running++ == 0) {
			json_decref(id);
			id = json_string(w->job->id);
		} else if (w->job) {
			json_decref(id);
			id = json_null();
		}
	}
	pthread_mutex_unlock(&n->lock);
	json_t *str = shim_json_text(text, len);
	native_emit(
	    s, json_pack("{s:s, s:o, s:o, s:s}", "type", "log", "id", id, "text", str, "source", source));
}

/* Read what the pipes hold now and emit each complete line (with its newline); with FLUSH, the unfinished
 * ones too. n->capture_lock held. */
static void pump(struct shim *s, bool flush)
{
	struct shim_native *n = s->native;
	for (int k = 0; k < 2; k++) {
		struct kiln_buf *b = &n->lines[k];
		const char *source = k ? "stderr" : "stdout";
		char chunk[65536];
		for (;;) {
			ssize_t r = n->eof[k] ? 0 : read(n->pipes[k], chunk, sizeof(chunk));
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				n->eof[k] = true;
			if (r <= 0)
				break;
			kiln_buf_put(b, chunk, (size_t)r);
			size_t start = 0;
			for (size_t i = 0; i < b->len; i++) {
				if (b->ptr[i] == '\n' || i - start + 1 >= LINE_MAX_BYTES) {
					emit_log(s, source, b->ptr + start, i - start + 1);
					start = i + 1;
				}
			}
			memmove(b->ptr, b->ptr + start, b->len - start);
			b->len -= start;
		}
		if (flush && b->len) {
			kiln_buf_puts(b, "\n");
			emit_log(s, source, b->ptr, b->len);
			b->len = 0;
		}
	}
}

/* Make sure what the library wrote so far has become log events (before its prediction ends). */
void native_capture_flush(struct shim *s)
{
	/* __fpending takes no lock: the streams' locks are not touched when nothing is buffered */
	if (__fpending(stdout))
		fflush(stdout);
	if (__fpending(stderr))
		fflush(stderr);
	/* Nothing to wait for when the pipes are empty and the capture thread holds nothing: one poll(2)
	 * instead of the lock and two reads. The pipes first: the thread marks itself pumping before it
	 * reads, so bytes gone from a pipe are seen as pumping or partial. */
	struct shim_native *n = s->native;
	struct pollfd pfd[2] = {{.fd = n->eof[0] ? -1 : n->pipes[0], .events = POLLIN},
	                        {.fd = n->eof[1] ? -1 : n->pipes[1], .events = POLLIN}};
	if (poll(pfd, 2, 0) == 0 && !__atomic_load_n(&n->pumping, __ATOMIC_SEQ_CST) &&
	    !__atomic_load_n(&n->partial, __ATOMIC_SEQ_CST))
		return;
	pthread_mutex_lock(&n->capture_lock);
	pump(s, true);
	__atomic_store_n(&n->partial, false, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&n->capture_lock);
}

/* The capture thread: turns lines written to fds 1 and 2 into log events until n->wake is signaled. */
static void *capture_main(void *arg)
{
	struct shim *s = arg;
	struct shim_native *n = s->native;
	for (;;) {
		pthread_mutex_lock(&n->capture_lock);
		struct pollfd pfd[3] = {{.fd = n->eof[0] ? -1 : n->pipes[0], .events = POLLIN},
		                        {.fd = n->eof[1] ? -1 : n->pipes[1], .events = POLLIN},
		                        {.fd = n->wake, .events = POLLIN}};
		pthread_mutex_unlock(&n->capture_lock);
		if (poll(pfd, 3, -1) < 0 && errno != EINTR)
			break;
		bool stop = pfd[2].revents != 0;
		__atomic_store_n(&n->pumping, true, __ATOMIC_SEQ_CST);
		pthread_mutex_lock(&n->capture_lock);
		pump(s, stop);
		__atomic_store_n(&n->partial, n->lines[0].len + n->lines[1].len > 0, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&n->capture_lock);
		__atomic_store_n(&n->pumping, false, __ATOMIC_SEQ_CST);
		if (stop)
			break;
	}
	return NULL;
}

/* Point fds 1 and 2 at pipes that the capture thread reads; the shim's own log keeps the old stderr. */
int native_capture_start(struct shim *s, struct kiln_error **err)
{
	struct shim_native *n = s->native;
	int out[2] = {-1, -1}, er[2] = {-1, -1};
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0 ||
	    (n->wake = eventfd(0, EFD_CLOEXEC)) < 0) {
		int e = errno;
		for (int i = 0; i < 2; i++) {
			if (out[i] >= 0)
				close(out[i]);
			if (er[i] >= 0)
				close(er[i]);
		}
		return kiln_error_errno(err, e, "cannot create the pipes for the predictor's output");
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(er[0], F_SETFL, O_NONBLOCK);
	n->pipes[0] = out[0];
	n->pipes[1] = er[0];
	fflush(stdout);
	fflush(stderr);
	n->saved[0] = fcntl(1, F_DUPFD_CLOEXEC, 10);
	n->saved[1] = fcntl(2, F_DUPFD_CLOEXEC, 10);
	FILE *log = n->saved[1] >= 0 ? fdopen(n->saved[1], "w") : NULL;
	if (n->saved[0] < 0 || !log)
		return kiln_error_errno(err, errno, "cannot keep the shim's stdout and stderr");
	setvbuf(log, NULL, _IOLBF, 0);
	shim_log_file = log;
	dup2(out[1], 1);
	dup2(er[1], 2);
	close(out[1]);
	close(er[1]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pthread_create(&n->capture, NULL, capture_main, s) != 0)
		return kiln_error_set(err, KILN_EFAIL, "cannot start the output capture thread");
	return 0;
}

/* Give fds 1 and 2 back to the shim and stop the capture thread after it read what is left. */
void native_capture_stop(struct shim *s)
{
	struct shim_native *n = s->native;
	fflush(stdout);
	fflush(stderr);
	dup2(n->saved[0], 1);
	dup2(n->saved[1], 2);
	uint64_t one = 1;
	if (write(n->wake, &one, sizeof(one)) < 0)
		shim_log("warning", NULL, "cannot stop the output capture thread: %s", strerror(errno));
	pthread_join(n->capture, NULL);
	for (int k = 0; k < 2; k++) {
		close(n->pipes[k]);
		kiln_buf_release(&n->lines[k]);
	}
	close(n->saved[0]);
	close(n->wake);
}
