/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/webhook.c: prediction webhooks: order, filter, throttling, retries, concurrency, failures
 * logged. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shim/log.h"
#include "shim/shim.h"
#include "tests/fixtures/http/server.h"

static struct test_server server;

/* What webhook.c logged, as shim_log (shim/main.c, not linked here) would: {"level", "msg"} and EXTRA. */
static pthread_mutex_t logged_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *logged;

void shim_log(const char *level, json_t *extra, const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:s, s:s}", "level", level, "msg", msg);
	if (extra)
		json_object_update_missing(o, extra);
	json_decref(extra);
	pthread_mutex_lock(&logged_lock);
	if (!logged)
		logged = json_array();
	json_array_append_new(logged, o);
	pthread_mutex_unlock(&logged_lock);
}

static void setup(void)
{
	test_server_start(&server);
}

static void teardown(void)
{
	test_server_stop(&server);
}

TestSuite(webhook, .init = setup, .fini = teardown, .timeout = 60);

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct shim_webhooks *new_webhooks(void)
{
	struct shim_webhooks *w = NULL;
	struct kiln_error *err = NULL;
	cr_assert_eq(shim_webhooks_new(&w, &err), 0, "%s", err ? err->message : "");
	return w;
}

/* Send a prediction ID in STATUS with STEP (what the receiver checks) for EVENT to PATH. */
static void send(struct shim_webhooks *w, const char *path, const char *event, const json_t *filter,
                 const char *id, const char *status, int step)
{
	char *url = test_server_url(&server, path);
	json_t *p = json_pack("{s:s, s:s, s:i}", "id", id, "status", status, "step", step);
	shim_webhooks_send(w, url, event, filter, p);
	json_decref(p);
	free(url);
}

/* The step of the prediction the Ith recorded request carried. */
static int step_of(json_t *log, size_t i)
{
	json_t *p = json_loads(json_string_value(json_object_get(json_array_get(log, i), "body")), 0, NULL);
	cr_assert(p, "request %zu has no JSON body", i);
	int step = (int)json_integer_value(json_object_get(p, "step"));
	json_decref(p);
	return step;
}

static long status_of(json_t *log, size_t i)
{
	return (long)json_integer_value(json_object_get(json_array_get(log, i), "status"));
}

Test(webhook, all_events_arrive_in_order)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/all", "start", NULL, "p1", "processing", 1);
	usleep(600000);
	send(w, "/hook/all", "output", NULL, "p1", "processing", 2);
	usleep(600000);
	send(w, "/hook/all", "logs", NULL, "p1", "processing", 3);
	usleep(600000);
	send(w, "/hook/all", "completed", NULL, "p1", "succeeded", 4);
	shim_webhooks_free(w, 10);
	json_t *log = test_server_log(&server, "/hook/all");
	cr_assert_eq(json_array_size(log), 4);
	for (size_t i = 0; i < 4; i++) {
		json_t *entry = json_array_get(log, i);
		json_t *headers = json_object_get(entry, "headers");
		cr_assert_str_eq(json_string_value(json_object_get(entry, "method")), "POST");
		cr_assert_str_eq(json_string_value(json_object_get(headers, "content-type")),
		                 "application/json");
		cr_assert_str_eq(json_string_value(json_object_get(headers, "user-agent")), "kiln");
		cr_assert_eq(step_of(log, i), (int)i + 1);
	}
	json_decref(log);
}

Test(webhook, filter_leaves_events_out)
{
	struct shim_webhooks *w = new_webhooks();
	json_t *filter = json_pack("[s]", "completed");
	send(w, "/hook/filter", "start", filter, "p1", "processing", 1);
	send(w, "/hook/filter", "output", filter, "p1", "processing", 2);
	send(w, "/hook/filter", "logs", filter, "p1", "processing", 3);
	send(w, "/hook/filter", "completed", filter, "p1", "succeeded", 4);
	shim_webhooks_free(w, 10);
	json_t *log = test_server_log(&server, "/hook/filter");
	cr_assert_eq(json_array_size(log), 1);
	cr_assert_eq(step_of(log, 0), 4);
	json_decref(log);
	json_decref(filter);
}

Test(webhook, output_is_throttled_and_coalesced)
{
	struct shim_webhooks *w = new_webhooks();
	for (int i = 1; i <= 20; i++) {
		send(w, "/hook/throttle", "output", NULL, "p1", "processing", i);
		usleep(10000);
	}
	usleep(700000); /* the throttle's interval passes: the latest state goes without free()'s help */
	json_t *log = test_server_log(&server, "/hook/throttle");
	shim_webhooks_free(w, 10);
	size_t n = json_array_size(log);
	cr_assert(n >= 2 && n <= 3, "%zu webhooks for 20 outputs", n);
	cr_assert_eq(step_of(log, 0), 1);
	cr_assert_eq(step_of(log, n - 1), 20);
	json_decref(log);
}

Test(webhook, predictions_are_throttled_separately)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/two", "output", NULL, "p1", "processing", 1);
	send(w, "/hook/two", "output", NULL, "p2", "processing", 2);
	usleep(300000);
	json_t *log = test_server_log(&server, "/hook/two");
	shim_webhooks_free(w, 10);
	cr_assert_eq(json_array_size(log), 2);
	json_decref(log);
}

Test(webhook, completed_is_retried_after_server_errors)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/retry?fail=2&status=500", "completed", NULL, "p1", "succeeded", 4);
	shim_webhooks_free(w, 10);
	json_t *log = test_server_log(&server, "/hook/retry");
	cr_assert_eq(json_array_size(log), 3);
	cr_assert_eq(status_of(log, 0), 500);
	cr_assert_eq(status_of(log, 1), 500);
	cr_assert_eq(status_of(log, 2), 200);
	cr_assert_eq(step_of(log, 2), 4);
	json_decref(log);
}

Test(webhook, retry_after_is_honoured)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/429?fail=1&status=429&retry_after=1", "completed", NULL, "p1", "succeeded", 4);
	shim_webhooks_free(w, 10);
	json_t *log = test_server_log(&server, "/hook/429");
	cr_assert_eq(json_array_size(log), 2);
	cr_assert_eq(status_of(log, 1), 200);
	double gap = json_real_value(json_object_get(json_array_get(log, 1), "time")) -
	             json_real_value(json_object_get(json_array_get(log, 0), "time"));
	cr_assert_geq(gap, 0.9, "retried after %.2f s", gap);
	json_decref(log);
}

Test(webhook, client_errors_are_not_retried)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/gone?fail=5&status=404", "completed", NULL, "p1", "succeeded", 4);
	shim_webhooks_free(w, 10);
	json_t *log = test_server_log(&server, "/hook/gone");
	cr_assert_eq(json_array_size(log), 1);
	json_decref(log);
}

Test(webhook, free_waits_for_delivery)
{
	struct shim_webhooks *w = new_webhooks();
	double start = now_seconds();
	send(w, "/hook/slow?delay=0.5", "completed", NULL, "p1", "succeeded", 4);
	shim_webhooks_free(w, 10);
	cr_assert_geq(now_seconds() - start, 0.45);
	json_t *log = test_server_log(&server, "/hook/slow");
	cr_assert_eq(json_array_size(log), 1);
	json_decref(log);
}

Test(webhook, free_gives_up_at_its_timeout)
{
	struct shim_webhooks *w = new_webhooks();
	double start = now_seconds();
	send(w, "/hook/down?fail=1000&status=503", "completed", NULL, "p1", "succeeded", 4);
	send(w, "/hook/stuck?delay=30", "completed", NULL, "p2", "succeeded", 4);
	shim_webhooks_free(w, 1);
	double took = now_seconds() - start;
	cr_assert(took >= 0.9 && took < 3, "free took %.2f s", took);
	json_t *log = test_server_log(&server, "/hook/down");
	cr_assert_geq(json_array_size(log), 1);
	json_decref(log);
	for (int i = 1; i <= 2; i++) {
		char id[8];
		snprintf(id, sizeof(id), "p%d", i);
		json_t *last = NULL, *e;
		size_t k;
		json_array_foreach(logged, k, e)
		{
			if (strcmp(json_string_value(json_object_get(e, "prediction_id")), id) == 0)
				last = e;
		}
		cr_assert(last, "nothing logged for %s", id);
		cr_assert_str_eq(json_string_value(json_object_get(last, "level")), "error", "%s is lost",
		                 id);
	}
}

/* When the first request to PATH was answered (the server's clock), or -1 when there was none. */
static double answered_at(const char *path)
{
	json_t *log = test_server_log(&server, path);
	double t =
	    json_array_size(log) ? json_real_value(json_object_get(json_array_get(log, 0), "time")) : -1;
	json_decref(log);
	return t;
}

Test(webhook, a_slow_receiver_does_not_delay_other_predictions)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/slow-a?delay=2", "start", NULL, "a", "processing", 1);
	send(w, "/hook/slow-a?delay=2", "completed", NULL, "a", "succeeded", 2);
	usleep(100000); /* a's start is on its way */
	send(w, "/hook/fast-b", "start", NULL, "b", "processing", 1);
	send(w, "/hook/fast-b", "completed", NULL, "b", "succeeded", 2);
	double deadline = now_seconds() + 1.5;
	json_t *log = NULL;
	while (now_seconds() < deadline) {
		json_decref(log);
		log = test_server_log(&server, "/hook/fast-b");
		if (json_array_size(log) == 2)
			break;
		usleep(50000);
	}
	cr_assert_eq(json_array_size(log), 2, "b's webhooks waited behind a's slow receiver");
	cr_assert_eq(step_of(log, 0), 1);
	cr_assert_eq(step_of(log, 1), 2);
	json_decref(log);
	cr_assert_eq(answered_at("/hook/slow-a"), -1, "a's receiver answered already");
	shim_webhooks_free(w, 10);
	log = test_server_log(&server, "/hook/slow-a");
	cr_assert_eq(json_array_size(log), 2, "a's webhooks after free()");
	cr_assert_eq(step_of(log, 0), 1);
	cr_assert_eq(step_of(log, 1), 2);
	json_decref(log);
}

Test(webhook, each_prediction_keeps_its_order_with_many_at_once)
{
	struct shim_webhooks *w = new_webhooks();
	char ids[12][8];
	for (int round = 1; round <= 3; round++) {
		for (int i = 0; i < 12; i++) {
			snprintf(ids[i], sizeof(ids[i]), "p%d", i);
			send(w, "/hook/many?delay=0.05", round == 1 ? "start" : "logs", NULL, ids[i],
			     "processing", round);
		}
		usleep(200000);
	}
	for (int i = 0; i < 12; i++)
		send(w, "/hook/many?delay=0.05", "completed", NULL, ids[i], "succeeded", 4);
	shim_webhooks_free(w, 20);
	json_t *log = test_server_log(&server, "/hook/many");
	for (int i = 0; i < 12; i++) {
		int last = 0;
		size_t count = 0;
		for (size_t k = 0; k < json_array_size(log); k++) {
			json_t *p = json_loads(
			    json_string_value(json_object_get(json_array_get(log, k), "body")), 0, NULL);
			if (strcmp(json_string_value(json_object_get(p, "id")), ids[i]) == 0) {
				int step = (int)json_integer_value(json_object_get(p, "step"));
				cr_assert_gt(step, last, "%s: step %d after %d", ids[i], step, last);
				last = step;
				count++;
			}
			json_decref(p);
		}
		cr_assert_eq(last, 4, "%s: the completed webhook came last", ids[i]);
		cr_assert_geq(count, 2, "%s: start and completed at least", ids[i]);
	}
	json_decref(log);
}

Test(webhook, failures_are_logged_with_the_prediction_and_without_the_url)
{
	struct shim_webhooks *w = new_webhooks();
	send(w, "/hook/secret-404?fail=5&status=404&token=s3cret", "completed", NULL, "p1", "succeeded", 4);
	send(w, "/hook/secret-500?fail=1&status=500&token=s3cret", "completed", NULL, "p2", "succeeded", 4);
	send(w, "/hook/secret-out?fail=1&status=503&token=s3cret", "output", NULL, "p3", "processing", 1);
	shim_webhooks_free(w, 10);
	cr_assert(logged, "nothing was logged");
	char *text = json_dumps(logged, JSON_COMPACT | JSON_SORT_KEYS);
	cr_assert_null(strstr(text, "s3cret"), "the URL's query is in the log: %s", text);
	cr_assert_null(strstr(text, "/hook/"), "the URL's path is in the log: %s", text);
	free(text);
	cr_assert_eq(json_array_size(logged), 3);
	const char *want[][4] = {
	    {"p1", "completed", "error", "404"},
	    {"p2", "completed", "warning", "500"},
	    {"p3", "output", "warning", "503"},
	};
	for (size_t k = 0; k < 3; k++) {
		bool found = false;
		size_t i;
		json_t *e;
		json_array_foreach(logged, i, e)
		{
			if (strcmp(json_string_value(json_object_get(e, "prediction_id")), want[k][0]) != 0)
				continue;
			found = true;
			cr_assert_str_eq(json_string_value(json_object_get(e, "event")), want[k][1]);
			cr_assert_str_eq(json_string_value(json_object_get(e, "level")), want[k][2]);
			cr_assert_eq(json_integer_value(json_object_get(e, "status")), atoi(want[k][3]));
			cr_assert_not_null(strstr(json_string_value(json_object_get(e, "msg")), want[k][3]));
		}
		cr_assert(found, "nothing logged for %s", want[k][0]);
	}
}
