/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_worker.c: libFuzzer target for the shim's side of the runner's JSON-lines protocol (shim/PROTOCOL.md):
 * what the worker writes on fd 3, fed through shim_worker_feed as the reader thread feeds it, into a shim
 * with a table of jobs (shim/predictions.c) holding three predictions (one finished), and a warmup that runs.
 * Every event type, bad lines, lines naming no job, ids of jobs that finished. Afterwards the shim's state
 * must hold together: each job's response serializes, finished jobs have their slots back, a finished setup
 * has a status.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/table.h"

static const char *const ids[] = {"p1", "p2", "p3"}; /* p3 has finished */
#define NJOBS (sizeof(ids) / sizeof(ids[0]))

/*
 * The first byte sets the scene: bit 0, setup is over (else it runs); bit 1, the warmup prediction runs
 * (setup not over); bit 2, the project has a trainer (a "schema" event makes the training schema too);
 * bit 3, stdout and stderr get the rest too (else only the events).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t scene = data[0];
	const char *rest = (const char *)data + 1;
	size_t len = size - 1;

	struct shim s = {0};
	pthread_mutex_init(&s.lock, NULL);
	pthread_cond_init(&s.cond, NULL);
	s.predictor = "predict.py:Predictor";
	s.trainer = (scene & 4) ? "train.py:train" : NULL;
	s.concurrency = 4;
	s.keep_bytes = 1 << 20;
	s.stream_history = 16;
	s.health = SHIM_STARTING;
	clock_gettime(CLOCK_MONOTONIC, &s.setup_start_mono);
	if (scene & 1) {
		s.setup_status = "succeeded";
		s.health = SHIM_READY;
	} else if (scene & 2) {
		s.warming = true;
	}
	shim_table_attach(&s);

	json_t *body = json_pack("{s:{s:s}}", "input", "text", "hello");
	json_t *input = json_object_get(body, "input");
	struct shim_job *jobs[NJOBS];
	pthread_mutex_lock(&s.lock);
	for (size_t i = 0; i < NJOBS; i++) {
		jobs[i] = shim_job_new(&s, SHIM_JOB_PREDICTION, ids[i], body, input);
		jobs[i]->status = JOB_PROCESSING;
		jobs[i]->dispatched = true;
	}
	shim_job_finish(&s, jobs[2], JOB_SUCCEEDED, NULL);
	pthread_mutex_unlock(&s.lock);

	shim_worker_feed(&s, "events", rest, len);
	if (scene & 8) {
		shim_worker_feed(&s, "stdout", rest, len);
		shim_worker_feed(&s, "stderr", rest, len);
	}

	pthread_mutex_lock(&s.lock);
	long unfinished = 0;
	for (size_t i = 0; i < NJOBS; i++) {
		struct shim_job *p = jobs[i];
		json_t *j = shim_job_json(p);
		if (!j || !json_is_string(json_object_get(j, "status")))
			abort(); /* every job has a response with a status */
		char *text = json_dumps(j, JSON_ALLOW_NUL);
		if (!text)
			abort();
		free(text);
		json_decref(j);
		if (p->status == JOB_STARTING || p->status == JOB_PROCESSING)
			unfinished++;
		else if (p->counted)
			abort(); /* a finished job gave its slot back */
	}
	if (s.busy != unfinished)
		abort();
	if ((scene & 1) && !s.setup_status)
		abort(); /* a setup that was over cannot start again */
	for (size_t i = 0; i < NJOBS; i++)
		shim_job_release(&s, jobs[i]);
	shim_job_free_all(&s);
	pthread_mutex_unlock(&s.lock);

	json_decref(body);
	json_decref(s.schema);
	json_decref(s.train_schema);
	free(s.cog_version);
	free(s.python_version);
	free(s.hc_error);
	kiln_buf_release(&s.setup_logs);
	pthread_cond_destroy(&s.cond);
	pthread_mutex_destroy(&s.lock);
	return 0;
}
