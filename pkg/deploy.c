/* SPDX-License-Identifier: Apache-2.0 */
/* deploy.c: an image's serving hints, and the Knative, KServe and Kubernetes documents made from them. */
#include "pkg/deploy.h"
#include "pkg/image.h"
#include "pkg/weights_registry.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const TARGETS[] = {"knative", "kserve", "kubernetes", "systemd"};

int kiln_deploy_target_parse(enum kiln_deploy_target *out, const char *name)
{
	for (size_t i = 0; i < sizeof(TARGETS) / sizeof(TARGETS[0]); i++)
		if (strcmp(name, TARGETS[i]) == 0) {
			*out = (enum kiln_deploy_target)i;
			return 0;
		}
	return -1;
}

bool kiln_deploy_name_valid(const char *name, enum kiln_dns_kind kind)
{
	size_t n = strlen(name), label = 0;
	if (n == 0 || n > (kind == KILN_DNS_SUBDOMAIN ? 253 : 63))
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = name[i];
		if (c == '\0' || (c == '.' && kind == KILN_DNS_SUBDOMAIN)) {
			/* a label: not empty, no '-' at its ends, a letter first for DNS-1035 */
			if (label == 0 || name[i - 1] == '-' || name[i - label] == '-' ||
			    (kind == KILN_DNS_1035 && !islower((unsigned char)name[i - label])))
				return false;
			label = 0;
		} else if (islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-') {
			label++;
		} else {
			return false;
		}
	}
	return true;
}

char *kiln_deploy_name_from(const char *repository)
{
	const char *last = strrchr(repository, '/');
	last = last ? last + 1 : repository;
	while (*last && !isalpha((unsigned char)*last)) /* a label starts with a letter */
		last++;
	char name[64];
	size_t n = 0;
	for (; *last && n < sizeof(name) - 1; last++) {
		char c = (char)tolower((unsigned char)*last);
		if (!islower((unsigned char)c) && !isdigit((unsigned char)c))
			c = '-';
		if (c == '-' && (n == 0 || name[n - 1] == '-'))
			continue; /* "a__b" is "a-b" */
		name[n++] = c;
	}
	while (n > 0 && name[n - 1] == '-')
		n--;
	name[n] = '\0';
	return strdup(n ? name : "model");
}

/* The count KEY of the serve label SERVE into *out (-1 when absent). */
static int hint_count(long *out, const json_t *serve, const char *key, struct kiln_error **err)
{
	json_t *v = json_object_get(serve, key);
	*out = -1;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
		char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
		kiln_error_set(err, KILN_EINVAL, "label %s: %s is not a count (%s)", KILN_LABEL_SERVE, key,
		               text ? text : "?");
		free(text);
		return KILN_EINVAL;
	}
	*out = (long)json_integer_value(v);
	return 0;
}

/* COG_SETUP_TIMEOUT=S of the image's Env into *out, whole seconds rounded up (-1 when absent or empty). */
static int env_setup_timeout(long *out, const json_t *env, struct kiln_error **err)
{
	size_t i;
	json_t *e;
	*out = -1;
	json_array_foreach(env, i, e)
	{
		const char *kv = json_string_value(e);
		if (kv == NULL || strncmp(kv, "COG_SETUP_TIMEOUT=", 18) != 0 || kv[18] == '\0')
			continue;
		char *end = NULL;
		errno = 0;
		double s = strtod(kv + 18, &end);
		if (errno || *end || !(s > 0) || s > 1e7)
			return kiln_error_set(
			    err, KILN_EINVAL,
			    "the image's Env: COG_SETUP_TIMEOUT='%s' is not a number of seconds", kv + 18);
		*out = (long)s + ((double)(long)s < s); /* rounded up */
	}
	return 0;
}

int kiln_deploy_hints_read(struct kiln_deploy_hints *out, const json_t *config, struct kiln_error **err)
{
	const json_t *c = json_object_get(config, "config");
	const json_t *labels = json_object_get(c, "Labels");
	*out = (struct kiln_deploy_hints){0};
	const char *text = json_string_value(json_object_get(labels, KILN_LABEL_SERVE));
	json_auto_t *serve = text ? json_loads(text, 0, NULL) : NULL;
	if (text && !json_is_object(serve))
		return kiln_error_set(err, KILN_EINVAL, "label %s is not a JSON object", KILN_LABEL_SERVE);
	out->serve_label = serve != NULL;
	if (hint_count(&out->min_instances, serve, "min_instances", err) < 0 ||
	    hint_count(&out->max_instances, serve, "max_instances", err) < 0 ||
	    hint_count(&out->scaledown_window, serve, "scaledown_window", err) < 0 ||
	    hint_count(&out->target_concurrency, serve, "target_concurrency", err) < 0 ||
	    hint_count(&out->concurrency_max, serve, "concurrency_max", err) < 0)
		return KILN_EINVAL;
	if (out->min_instances >= 0 && out->max_instances >= 0 && out->min_instances > out->max_instances)
		return kiln_error_set(err, KILN_EINVAL,
		                      "label %s: min_instances (%ld) is greater than max_instances (%ld)",
		                      KILN_LABEL_SERVE, out->min_instances, out->max_instances);
	if (out->max_instances == 0)
		return kiln_error_set(err, KILN_EINVAL,
		                      "label %s: max_instances is 0: no instance could serve",
		                      KILN_LABEL_SERVE);
	text = json_string_value(json_object_get(labels, "run.cog.config"));
	json_auto_t *cog = text ? json_loads(text, 0, NULL) : NULL;
	if (text && !json_is_object(cog))
		return kiln_error_set(err, KILN_EINVAL, "label run.cog.config is not a JSON object");
	out->cog_label = cog != NULL;
	out->gpu = json_is_true(json_object_get(json_object_get(cog, "build"), "gpu"));
	const char *mode = json_string_value(json_object_get(labels, KILN_LABEL_WEIGHTS_MODE));
	out->registry_weights = mode && strcmp(mode, "registry") == 0;
	return env_setup_timeout(&out->setup_timeout, json_object_get(c, "Env"), err);
}

void kiln_deploy_warn(json_t *warnings, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_array_append_new(warnings, json_vsprintf(fmt, ap));
	va_end(ap);
}

/* The startup probe's budget in seconds: --setup-timeout, else the image's COG_SETUP_TIMEOUT, else 300. */
static long setup_budget(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o)
{
	return o->setup_timeout >= 0   ? o->setup_timeout
	       : h->setup_timeout >= 0 ? h->setup_timeout
	                               : KILN_DEPLOY_SETUP_TIMEOUT;
}

/* An HTTP GET probe of PATH every PERIOD seconds, FAILURES failures allowed; on the shim's port unless
 * Knative (which probes the port it serves and refuses another). */
static json_t *probe(const char *path, bool port, long period, long failures)
{
	json_t *get = json_pack("{s:s}", "path", path);
	if (port)
		json_object_set_new(get, "port", json_integer(KILN_DEPLOY_PORT));
	return json_pack("{s:o,s:I,s:I}", "httpGet", get, "periodSeconds", (json_int_t)period,
	                 "failureThreshold", (json_int_t)failures);
}

/*
 * The model's container, NAME: the pinned image, its port, the weights cache and the registry credentials
 * (registry weights), GPU and CPU resources, and the probes: /readyz for readiness and for start (a budget
 * of the setup timeout), /livez for liveness.
 */
static json_t *container(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o,
                         const char *name)
{
	bool knative = o->target == KILN_DEPLOY_KNATIVE;
	json_t *port = json_pack("{s:I}", "containerPort", (json_int_t)KILN_DEPLOY_PORT);
	json_object_set_new(port, "name", json_string(knative ? "http1" : "http"));
	if (!knative)
		json_object_set_new(port, "protocol", json_string("TCP"));
	json_t *c = json_pack("{s:s,s:s,s:[o]}", "name", name, "image", o->image, "ports", port);
	json_t *env = json_array(), *mounts = json_array();
	if (h->registry_weights) {
		json_array_append_new(
		    env, json_pack("{s:s,s:s}", "name", "KILN_WEIGHTS_DIR", "value", KILN_WEIGHTS_IMAGE_DIR));
		json_array_append_new(mounts, json_pack("{s:s,s:s}", "name", "kiln-weights", "mountPath",
		                                        KILN_WEIGHTS_IMAGE_DIR));
		if (o->pull_secret) {
			json_array_append_new(env, json_pack("{s:s,s:s}", "name", "DOCKER_CONFIG", "value",
			                                     KILN_DEPLOY_DOCKER_CONFIG));
			json_array_append_new(mounts, json_pack("{s:s,s:s,s:b}", "name", "kiln-registry-auth",
			                                        "mountPath", KILN_DEPLOY_DOCKER_CONFIG,
			                                        "readOnly", 1));
		}
	}
	if (o->setup_timeout >= 0) /* the shim gives up on setup when the probe does */
		json_array_append_new(env, json_pack("{s:s,s:o}", "name", "COG_SETUP_TIMEOUT", "value",
		                                     json_sprintf("%ld", o->setup_timeout)));
	if (json_array_size(env))
		json_object_set_new(c, "env", env);
	else
		json_decref(env);
	json_t *res = json_object();
	if (h->gpu)
		json_object_set_new(res, "limits", json_pack("{s:i}", "nvidia.com/gpu", 1));
	if (o->target == KILN_DEPLOY_KUBERNETES) /* what the HorizontalPodAutoscaler's CPU target is of */
		json_object_set_new(res, "requests", json_pack("{s:s}", "cpu", "1"));
	if (json_object_size(res))
		json_object_set_new(c, "resources", res);
	else
		json_decref(res);
	if (json_array_size(mounts))
		json_object_set_new(c, "volumeMounts", mounts);
	else
		json_decref(mounts);
	long budget = setup_budget(h, o);
	json_object_set_new(c, "readinessProbe", probe("/readyz", !knative, 5, 3));
	json_object_set_new(c, "livenessProbe", probe("/livez", !knative, 10, 3));
	json_object_set_new(c, "startupProbe",
	                    probe("/readyz", !knative, 5, budget > 5 ? (budget + 4) / 5 : 1));
	return c;
}

/* The pod spec's imagePullSecrets, containers and volumes into POD, in that order. */
static void pod_spec(json_t *pod, const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o,
                     const char *container_name, json_t *warnings)
{
	if (o->pull_secret)
		json_object_set_new(pod, "imagePullSecrets", json_pack("[{s:s}]", "name", o->pull_secret));
	json_object_set_new(pod, "containers", json_pack("[o]", container(h, o, container_name)));
	if (!h->registry_weights)
		return;
	json_t *volumes = json_pack("[{s:s,s:{s:s,s:s}}]", "name", "kiln-weights", "hostPath", "path",
	                            KILN_WEIGHTS_IMAGE_DIR, "type", "DirectoryOrCreate");
	if (o->pull_secret)
		json_array_append_new(volumes,
		                      json_pack("{s:s,s:{s:s,s:[{s:s,s:s}]}}", "name", "kiln-registry-auth",
		                                "secret", "secretName", o->pull_secret, "items", "key",
		                                ".dockerconfigjson", "path", "config.json"));
	else
		kiln_deploy_warn(warnings,
		                 "%s: the shim fetches the weights from the registry anonymously; give "
		                 "--pull-secret for a "
		                 "private repository",
		                 KILN_LABEL_WEIGHTS_MODE);
	json_object_set_new(pod, "volumes", volumes);
	if (o->target != KILN_DEPLOY_KUBERNETES)
		kiln_deploy_warn(warnings,
		                 "%s: the weights cache is a hostPath volume (%s): Knative accepts it only "
		                 "with the feature "
		                 "flag kubernetes.podspec-volumes-hostpath enabled in config-features",
		                 KILN_LABEL_WEIGHTS_MODE, KILN_WEIGHTS_IMAGE_DIR);
}

static json_t *metadata(const struct kiln_deploy_options *o)
{
	json_t *m = json_pack("{s:s}", "name", o->name);
	if (o->namespace)
		json_object_set_new(m, "namespace", json_string(o->namespace));
	json_object_set_new(m, "labels",
	                    json_pack("{s:s,s:s}", "app.kubernetes.io/name", o->name,
	                              "app.kubernetes.io/managed-by", "kiln"));
	return m;
}

static void annotate(json_t *ann, const char *key, long value)
{
	char name[96], text[32];
	snprintf(name, sizeof(name), "autoscaling.knative.dev/%s", key);
	snprintf(text, sizeof(text), "%ld", value);
	json_object_set_new(ann, name, json_string(text));
}

/* scaledown_window in seconds, at most an hour: the longest LONGEST (what it becomes, named in the
 * warning) may be. */
static long scaledown_window(const struct kiln_deploy_hints *h, const char *longest, json_t *warnings)
{
	long s = h->scaledown_window;
	if (s > KILN_DEPLOY_KNATIVE_MAX_DELAY) {
		kiln_deploy_warn(warnings, "scaledown_window %ld s is longer than %s: %d s", s, longest,
		                 KILN_DEPLOY_KNATIVE_MAX_DELAY);
		s = KILN_DEPLOY_KNATIVE_MAX_DELAY;
	}
	return s;
}

/* scale-down-delay from scaledown_window ("Ns"), clamped to Knative's hour. */
static void scale_down_delay(json_t *ann, const struct kiln_deploy_hints *h, json_t *warnings)
{
	if (h->scaledown_window <= 0)
		return;
	long s = scaledown_window(h, "Knative's longest scale-down-delay", warnings);
	json_object_set_new(ann, "autoscaling.knative.dev/scale-down-delay", json_sprintf("%lds", s));
}

static long concurrency(const struct kiln_deploy_hints *h)
{
	return h->concurrency_max > 0 ? h->concurrency_max : 1; /* Cog's: one prediction at a time */
}

static json_t *knative(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o, json_t *w)
{
	long min = h->min_instances > 0 ? h->min_instances : 0;
	json_t *ann = json_object();
	annotate(ann, "min-scale", min);
	if (h->max_instances > 0)
		annotate(ann, "max-scale", h->max_instances);
	annotate(ann, "initial-scale", min > 1 ? min : 1);
	scale_down_delay(ann, h, w);
	if (h->target_concurrency > 0)
		annotate(ann, "target", h->target_concurrency);
	json_t *pod = json_pack("{s:I}", "containerConcurrency", (json_int_t)concurrency(h));
	pod_spec(pod, h, o, "model", w);
	return json_pack("{s:s,s:s,s:o,s:{s:{s:{s:o},s:o}}}", "apiVersion", "serving.knative.dev/v1", "kind",
	                 "Service", "metadata", metadata(o), "spec", "template", "metadata", "annotations",
	                 ann, "spec", pod);
}

static json_t *kserve(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o, json_t *w)
{
	json_t *meta = metadata(o), *ann = json_object();
	scale_down_delay(ann, h, w); /* KServe passes its annotations on to the Knative revision */
	if (json_object_size(ann))
		json_object_set_new(meta, "annotations", ann);
	else
		json_decref(ann);
	json_t *pred =
	    json_pack("{s:I}", "minReplicas", (json_int_t)(h->min_instances > 0 ? h->min_instances : 0));
	if (h->max_instances > 0)
		json_object_set_new(pred, "maxReplicas", json_integer(h->max_instances));
	json_object_set_new(pred, "scaleMetric", json_string("concurrency"));
	if (h->target_concurrency > 0)
		json_object_set_new(pred, "scaleTarget", json_integer(h->target_concurrency));
	json_object_set_new(pred, "containerConcurrency", json_integer(concurrency(h)));
	pod_spec(pred, h, o, "kserve-container", w);
	return json_pack("{s:s,s:s,s:o,s:{s:o}}", "apiVersion", "serving.kserve.io/v1beta1", "kind",
	                 "InferenceService", "metadata", meta, "spec", "predictor", pred);
}

/* A Deployment, its Service (port → the shim's) and a HorizontalPodAutoscaler on CPU. */
static json_t *kubernetes(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o, json_t *w)
{
	long min = h->min_instances > 1 ? h->min_instances : 1;
	if (h->min_instances <= 0)
		kiln_deploy_warn(w,
		                 "min_instances %ld: a HorizontalPodAutoscaler cannot scale to zero; "
		                 "minReplicas is 1 (use "
		                 "--target knative or kserve to scale to zero)",
		                 h->min_instances > 0 ? h->min_instances : 0);
	long max = h->max_instances;
	if (max < 0) {
		max = min > KILN_DEPLOY_MAX_REPLICAS ? min : KILN_DEPLOY_MAX_REPLICAS;
		kiln_deploy_warn(w, "no max_instances: the HorizontalPodAutoscaler's maxReplicas is %ld",
		                 max);
	}
	if (h->target_concurrency > 0)
		kiln_deploy_warn(w,
		                 "target_concurrency %ld: a HorizontalPodAutoscaler scales on CPU "
		                 "utilization here (80%% of "
		                 "the request); concurrency needs a metrics adapter",
		                 h->target_concurrency);
	json_t *selector = json_pack("{s:s}", "app.kubernetes.io/name", o->name);
	json_t *pod = json_object();
	pod_spec(pod, h, o, "model", w);
	json_t *deployment =
	    json_pack("{s:s,s:s,s:o,s:{s:I,s:{s:O},s:{s:{s:O},s:o}}}", "apiVersion", "apps/v1", "kind",
	              "Deployment", "metadata", metadata(o), "spec", "replicas", (json_int_t)min, "selector",
	              "matchLabels", selector, "template", "metadata", "labels", selector, "spec", pod);
	long port = o->port >= 0 ? o->port : 80;
	json_t *service = json_pack("{s:s,s:s,s:o,s:{s:s,s:O,s:[{s:s,s:I,s:s,s:s}]}}", "apiVersion", "v1",
	                            "kind", "Service", "metadata", metadata(o), "spec", "type", "ClusterIP",
	                            "selector", selector, "ports", "name", "http", "port", (json_int_t)port,
	                            "targetPort", "http", "protocol", "TCP");
	json_t *hpa = json_pack("{s:s,s:s,s:o,s:{s:{s:s,s:s,s:s},s:I,s:I,s:[{s:s,s:{s:s,s:{s:s,s:i}}}]}}",
	                        "apiVersion", "autoscaling/v2", "kind", "HorizontalPodAutoscaler", "metadata",
	                        metadata(o), "spec", "scaleTargetRef", "apiVersion", "apps/v1", "kind",
	                        "Deployment", "name", o->name, "minReplicas", (json_int_t)min, "maxReplicas",
	                        (json_int_t)max, "metrics", "type", "Resource", "resource", "name", "cpu",
	                        "target", "type", "Utilization", "averageUtilization", 80);
	if (h->scaledown_window >= 0) {
		long s = scaledown_window(h, "a HorizontalPodAutoscaler's longest stabilization window", w);
		json_object_set_new(
		    json_object_get(hpa, "spec"), "behavior",
		    json_pack("{s:{s:I}}", "scaleDown", "stabilizationWindowSeconds", (json_int_t)s));
	}
	json_decref(selector);
	return json_pack("[o,o,o]", deployment, service, hpa);
}

json_t *kiln_deploy_documents(const struct kiln_deploy_hints *h, const struct kiln_deploy_options *o,
                              json_t *warnings)
{
	switch (o->target) {
	case KILN_DEPLOY_KNATIVE:
		return json_pack("[o]", knative(h, o, warnings));
	case KILN_DEPLOY_KSERVE:
		return json_pack("[o]", kserve(h, o, warnings));
	case KILN_DEPLOY_KUBERNETES:
		return kubernetes(h, o, warnings);
	case KILN_DEPLOY_SYSTEMD:
		break;
	}
	return NULL;
}
