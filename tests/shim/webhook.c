/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/webhook.c: prediction webhooks: order, filter, throttling, retries, waiting at free. */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shim/shim.h"
#include "tests/fixtures/http/server.h"

static struct test_server server;

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
}
