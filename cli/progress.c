/* SPDX-License-Identifier: Apache-2.0 */
/*
 * progress.c: progress on stderr: a line per finished item, and, on a terminal, a live area redrawn at
 * most ten times a second: one bar per item in flight and a total line.
 */
#include "cli/cli.h"
#include "common/fs.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_ITEMS 16
#define BAR_WIDTH 24

struct item {
	const void *key;
	char label[40];
	uint64_t done, total;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct item items[MAX_ITEMS];
static size_t nitems;
static char total_verb[32];
static uint64_t total_done, total_all;
static int drawn; /* lines of the live area on screen */
static double last_draw;

/* With the lock held: erase the live area. */
static void clear_locked(void)
{
	if (drawn > 1)
		fprintf(stderr, "\033[%dA", drawn - 1);
	if (drawn > 0)
		fputs("\r\033[J", stderr);
	drawn = 0;
}

static void bar(char out[BAR_WIDTH + 1], uint64_t done, uint64_t total)
{
	size_t full = total ? (size_t)(done * BAR_WIDTH / total) : BAR_WIDTH;
	for (size_t i = 0; i < BAR_WIDTH; i++)
		out[i] = i < full ? '#' : '.';
	out[BAR_WIDTH] = '\0';
}

/* With the lock held: draw the live area (items, then the total) unless drawn less than 0.1 s ago. */
static void draw_locked(bool force)
{
	double t = kiln_monotonic();
	if (!force && t - last_draw < 0.1)
		return;
	clear_locked();
	char b[BAR_WIDTH + 1], d[32], a[32];
	for (size_t i = 0; i < nitems; i++) {
		bar(b, items[i].done, items[i].total);
		cli_human_size(d, items[i].done);
		cli_human_size(a, items[i].total);
		fprintf(stderr, "%s%-38s [%s] %s / %s", drawn ? "\n" : "", items[i].label, b, d, a);
		drawn++;
	}
	if (total_verb[0]) {
		cli_human_size(d, total_done);
		cli_human_size(a, total_all);
		fprintf(stderr, "%s%s %s of %s (%d%%)", drawn ? "\n" : "", total_verb, d, a,
		        total_all ? (int)(total_done * 100 / total_all) : 100);
		drawn++;
	}
	fflush(stderr);
	last_draw = t;
}

void cli_progress_line(const char *fmt, ...)
{
	if (cli.progress == PROGRESS_QUIET)
		return;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&lock);
	bool live = drawn > 0;
	clear_locked();
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	if (live)
		draw_locked(true);
	pthread_mutex_unlock(&lock);
	va_end(ap);
}

void cli_progress_live(const char *verb, uint64_t done, uint64_t total)
{
	if (cli.progress != PROGRESS_TTY)
		return;
	pthread_mutex_lock(&lock);
	snprintf(total_verb, sizeof(total_verb), "%s", verb);
	total_done = done;
	total_all = total;
	draw_locked(done == total);
	pthread_mutex_unlock(&lock);
}

void cli_progress_item(const void *key, const char *label, uint64_t done, uint64_t total)
{
	if (cli.progress != PROGRESS_TTY)
		return;
	pthread_mutex_lock(&lock);
	size_t i = 0;
	while (i < nitems && items[i].key != key)
		i++;
	if (i == nitems && nitems < MAX_ITEMS) {
		items[nitems].key = key;
		snprintf(items[nitems].label, sizeof(items[nitems].label), "%s", label);
		nitems++;
	}
	if (i < nitems) {
		items[i].done = done;
		items[i].total = total;
	}
	draw_locked(false);
	pthread_mutex_unlock(&lock);
}

void cli_progress_item_end(const void *key)
{
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nitems; i++) {
		if (items[i].key == key) {
			memmove(&items[i], &items[i + 1], (nitems - i - 1) * sizeof(items[0]));
			nitems--;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
}

void cli_progress_clear(void)
{
	pthread_mutex_lock(&lock);
	clear_locked();
	nitems = 0;
	total_verb[0] = '\0';
	pthread_mutex_unlock(&lock);
}
