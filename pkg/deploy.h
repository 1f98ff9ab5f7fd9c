/* SPDX-License-Identifier: Apache-2.0 */
/*
 * deploy.h: deployment manifests made from an image's labels (kiln deploy): a Knative Service, a KServe
 * InferenceService, a Kubernetes Deployment + Service + HorizontalPodAutoscaler, or a pair of systemd units
 * (socket activation, idle exit), with the image pinned by digest and the serving hints mapped to each
 * engine's own fields.
 */
#ifndef KILN_DEPLOY_H
#define KILN_DEPLOY_H

#include <jansson.h>
#include <stdbool.h>

#include "common/buf.h"
#include "common/error.h"

enum kiln_deploy_target {
	KILN_DEPLOY_KNATIVE,
	KILN_DEPLOY_KSERVE,
	KILN_DEPLOY_KUBERNETES,
	KILN_DEPLOY_SYSTEMD,
};

/* The port the shim listens on in every image (Cog's). */
#define KILN_DEPLOY_PORT 5000
/* The startup probe's budget when neither --setup-timeout nor the image's COG_SETUP_TIMEOUT says one. */
#define KILN_DEPLOY_SETUP_TIMEOUT 300
/* The idle window of a systemd service when the image has no scaledown_window. */
#define KILN_DEPLOY_IDLE_EXIT 300
/* maxReplicas of a HorizontalPodAutoscaler when the image has no max_instances. */
#define KILN_DEPLOY_MAX_REPLICAS 10
/* Knative's longest scale-down-delay, in seconds. */
#define KILN_DEPLOY_KNATIVE_MAX_DELAY 3600
/* Where a pull secret's config.json is mounted for the shim's registry client (DOCKER_CONFIG). */
#define KILN_DEPLOY_DOCKER_CONFIG "/var/run/kiln/docker"

/* What an image says about how to serve it; -1 where it says nothing. */
struct kiln_deploy_hints {
	long min_instances;
	long max_instances;
	long scaledown_window; /* seconds */
	long target_concurrency;
	long concurrency_max;
	long setup_timeout; /* COG_SETUP_TIMEOUT of the image's Env, seconds */
	bool gpu;           /* run.cog.config's build.gpu */
	bool registry_weights;
	bool serve_label; /* the image has dev.kiln.serve */
	bool cog_label;   /* the image has run.cog.config */
};

struct kiln_deploy_options {
	enum kiln_deploy_target target;
	const char *image;       /* pinned: "host/repository@sha256:..." */
	const char *name;        /* a DNS-1035 label */
	const char *namespace;   /* NULL: none written */
	const char *pull_secret; /* a dockerconfigjson Secret's name, or NULL */
	long setup_timeout;      /* seconds (--setup-timeout), -1: the image's, else the default */
	long port;               /* kubernetes: the Service's (80); systemd: ListenStream (5000); -1: those */
	const char *kiln;        /* systemd: kiln's absolute path */
	const char *home;        /* systemd: the store (KILN_HOME) */
};

/* The target named NAME ("knative", ...) into *out: 0, or -1 when there is none of that name. */
int kiln_deploy_target_parse(enum kiln_deploy_target *out, const char *name);

/* What kiln_deploy_name_valid checks NAME for: a DNS-1035 label (a Service's name:
 * [a-z]([-a-z0-9]*[a-z0-9])?, at most 63 characters), a DNS-1123 label (a namespace: it may start with a
 * digit) or a DNS-1123 subdomain (a Secret: labels joined by dots, at most 253 characters). */
enum kiln_dns_kind {
	KILN_DNS_1035,
	KILN_DNS_1123,
	KILN_DNS_SUBDOMAIN,
};
bool kiln_deploy_name_valid(const char *name, enum kiln_dns_kind kind);

/* Append the message FMT to WARNINGS (a JSON array of strings). */
void kiln_deploy_warn(json_t *warnings, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A DNS-1035 label made from the last path component of REPOSITORY ("org/My_Model" is "my-model"); the
 * caller frees it. "model" when nothing of it is left. */
char *kiln_deploy_name_from(const char *repository);

/*
 * Read the hints of the image config CONFIG (its labels dev.kiln.serve, run.cog.config and
 * dev.kiln.weights.mode, and COG_SETUP_TIMEOUT in its Env) into *out. A hint of the wrong type, or
 * min_instances above max_instances, is KILN_EINVAL naming the label, the fields and their values.
 */
int kiln_deploy_hints_read(struct kiln_deploy_hints *out, const json_t *config, struct kiln_error **err);

/*
 * The Kubernetes documents of target O->target (not systemd) for an image with hints H, as a new JSON
 * array of objects, their keys in the order they are to be written. What is defaulted, clamped or needs
 * the cluster's attention is appended to WARNINGS (strings, each naming the hint or field).
 */
json_t *kiln_deploy_documents(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o,
                              json_t *warnings);

/* The systemd units NAME.socket and NAME.service into *socket_out and *service_out (the caller frees
 * both); warnings as kiln_deploy_documents. */
int kiln_deploy_systemd(char **socket_out, char **service_out, const struct kiln_deploy_hints *h,
                        const struct kiln_deploy_options *o, json_t *warnings, struct kiln_error **err);

/*
 * DOCS (an array of JSON values) as a YAML stream appended to OUT through libyaml's emitter: one document
 * each, separated by "---", block style, keys in their order; strings YAML would read as anything else
 * ("1", "true", "") double-quoted. Same input, same bytes.
 */
int kiln_deploy_yaml(struct kiln_buf *out, const json_t *docs, struct kiln_error **err);

#endif
