/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_deploy.c: `kiln deploy`: Knative, KServe, Kubernetes or systemd manifests from an image's labels. */
#include "cli/cli.h"
#include "cli/predict.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "pkg/deploy.h"
#include "pkg/image.h"
#include "pkg/store.h"
#include "registry/client.h"
#include "registry/reference.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
	OPT_TARGET = 2000,
	OPT_NAME,
	OPT_NAMESPACE,
	OPT_PULL_SECRET,
	OPT_SETUP_TIMEOUT,
	OPT_PORT,
};

struct deploy_args {
	const char *target_name;
	struct kiln_deploy_options o;
	const char *output; /* -o: NULL or "-" for standard output */
};

static int deploy_option(int c, const char *arg, void *ctx)
{
	struct deploy_args *a = ctx;
	switch (c) {
	case OPT_TARGET:
		a->target_name = arg;
		if (kiln_deploy_target_parse(&a->o.target, arg) < 0)
			return cli_usage_error("--target: '%s' is not knative, kserve, kubernetes or systemd",
			                       arg);
		return 0;
	case 'o':
		a->output = arg;
		return 0;
	case OPT_NAME:
		if (!kiln_deploy_name_valid(arg, KILN_DNS_1035))
			return cli_usage_error(
			    "--name: '%s' is not a DNS-1035 label (lowercase letters, digits "
			    "and '-', a letter first, at most 63)",
			    arg);
		a->o.name = arg;
		return 0;
	case OPT_NAMESPACE:
		if (!kiln_deploy_name_valid(arg, KILN_DNS_1123))
			return cli_usage_error("--namespace: '%s' is not a DNS-1123 label", arg);
		a->o.namespace = arg;
		return 0;
	case OPT_PULL_SECRET:
		if (!kiln_deploy_name_valid(arg, KILN_DNS_SUBDOMAIN))
			return cli_usage_error(
			    "--pull-secret: '%s' is not a Secret's name (a DNS-1123 subdomain)", arg);
		a->o.pull_secret = arg;
		return 0;
	case OPT_SETUP_TIMEOUT:
		return cli_parse_number(&a->o.setup_timeout, "--setup-timeout", arg, 1, 86400);
	case OPT_PORT:
		return cli_parse_number(&a->o.port, "--port", arg, 1, 65535);
	}
	return -1;
}

/* The options that do not apply to the target: usage errors, as nothing is ignored. */
static int check_target(const struct deploy_args *a)
{
	if (a->target_name == NULL)
		return cli_usage_error("--target is missing: knative, kserve, kubernetes or systemd");
	bool systemd = a->o.target == KILN_DEPLOY_SYSTEMD;
	if (systemd && a->o.namespace)
		return cli_usage_error("--namespace: a systemd unit has no namespace");
	if (systemd && a->o.pull_secret)
		return cli_usage_error("--pull-secret: a Kubernetes Secret; systemd units pull with kiln "
		                       "login's credentials");
	if (a->o.port >= 0 && (a->o.target == KILN_DEPLOY_KNATIVE || a->o.target == KILN_DEPLOY_KSERVE))
		return cli_usage_error("--port: %s routes to the container's port 5000 itself; only "
		                       "kubernetes (the Service's port) and systemd (ListenStream) take one",
		                       a->target_name);
	return -1;
}

/* Write TEXT to PATH atomically, or to standard output when PATH is NULL or "-". */
static int put(const char *path, const char *text, struct kiln_error **err)
{
	if (path == NULL || strcmp(path, "-") == 0) {
		if (fputs(text, stdout) < 0 || fflush(stdout) != 0)
			return kiln_error_errno(err, errno, "cannot write to standard output");
		return 0;
	}
	if (kiln_write_file_atomic(path, text, strlen(text), err) < 0)
		return kiln_error_wrap(err, "cannot write '%s'", path);
	infof("wrote %s", path);
	return 0;
}

/* systemd's two units: into the directory -o names (each atomically; the first removed again when the
 * second fails and was not there before), else on standard output, one after the other. */
static int put_units(const char *dir, const char *name, const char *sock, const char *svc,
                     struct kiln_error **err)
{
	if (dir == NULL || strcmp(dir, "-") == 0) {
		struct kiln_buf b = KILN_BUF_INIT;
		kiln_buf_printf(&b, "%s\n%s", sock, svc); /* each begins with its "# NAME.socket: ..." line */
		int rc = b.ptr ? put(NULL, b.ptr, err) : kiln_error_set(err, KILN_EFAIL, "out of memory");
		kiln_buf_release(&b);
		return rc;
	}
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return kiln_error_errno(
		    err, errno ? errno : ENOTDIR,
		    "-o '%s': not a directory (the systemd units %s.socket and %s.service "
		    "are written into one)",
		    dir, name, name);
	_cleanup_free_ char *sp = NULL, *vp = NULL;
	if (asprintf(&sp, "%s/%s.socket", dir, name) < 0 || asprintf(&vp, "%s/%s.service", dir, name) < 0)
		return kiln_error_set(err, KILN_EFAIL, "out of memory");
	bool existed = access(sp, F_OK) == 0;
	if (put(sp, sock, err) < 0)
		return -1;
	if (put(vp, svc, err) < 0) {
		if (!existed)
			unlink(sp);
		return -1;
	}
	return 0;
}

/* The warnings of the hints: a plain image, an image without Cog's label. */
static void warn_labels(const char *ref, const struct kiln_deploy_hints *h)
{
	if (!h->serve_label)
		warnf("'%s' has no %s label (not built by kiln): defaults used: min_instances 0, no "
		      "max_instances, concurrency 1, port %d",
		      ref, KILN_LABEL_SERVE, KILN_DEPLOY_PORT);
	if (!h->cog_label)
		warnf("'%s' has no run.cog.config label: build.gpu unknown, no nvidia.com/gpu requested",
		      ref);
}

/* Make the manifests of A for REF (the image CONFIG, pinned as IMAGE) and write them. */
static int deploy(struct deploy_args *a, const char *ref, const json_t *config, struct kiln_store *store,
                  struct kiln_error **err)
{
	struct kiln_deploy_hints h;
	if (kiln_deploy_hints_read(&h, config, err) < 0)
		return -1;
	warn_labels(ref, &h);
	json_auto_t *warnings = json_array();
	/* the text first, so that its warnings come before anything is written */
	char self[PATH_MAX], home[PATH_MAX];
	_cleanup_free_ char *sock = NULL, *svc = NULL;
	json_auto_t *docs = NULL;
	struct kiln_buf yaml = KILN_BUF_INIT;
	int rc;
	if (a->o.target == KILN_DEPLOY_SYSTEMD) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0)
			return kiln_error_errno(err, errno, "cannot find kiln's own path (/proc/self/exe)");
		self[n] = '\0';
		if (realpath(kiln_store_home(store), home) == NULL)
			return kiln_error_errno(err, errno, "cannot resolve the store '%s'",
			                        kiln_store_home(store));
		a->o.kiln = self;
		a->o.home = home;
		rc = kiln_deploy_systemd(&sock, &svc, &h, &a->o, warnings, err);
	} else {
		docs = kiln_deploy_documents(&h, &a->o, warnings);
		rc = docs ? kiln_deploy_yaml(&yaml, docs, err)
		          : kiln_error_set(err, KILN_EFAIL, "out of memory");
	}
	if (rc == 0) {
		for (size_t i = 0; i < json_array_size(warnings); i++)
			warnf("%s", json_string_value(json_array_get(warnings, i)));
		rc = sock ? put_units(a->output, a->o.name, sock, svc, err)
		          : put(a->output, yaml.ptr ? yaml.ptr : "", err);
	}
	kiln_buf_release(&yaml);
	return rc;
}

int cmd_deploy(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"name", required_argument, NULL, OPT_NAME},
	    {"namespace", required_argument, NULL, OPT_NAMESPACE},
	    {"output", required_argument, NULL, 'o'},
	    {"port", required_argument, NULL, OPT_PORT},
	    {"pull-secret", required_argument, NULL, OPT_PULL_SECRET},
	    {"setup-timeout", required_argument, NULL, OPT_SETUP_TIMEOUT},
	    {"target", required_argument, NULL, OPT_TARGET},
	    CLI_REGISTRY_LONG,
	    CLI_COMMON_LONG,
	    {NULL, 0, NULL, 0},
	};
	struct deploy_args a = {.o = {.setup_timeout = -1, .port = -1}};
	struct kiln_registry_options ropt;
	kiln_registry_options_init(&ropt);
	int first, status = cli_parse(argc, argv, ":o:" CLI_COMMON_SHORT, longopts, &ropt, deploy_option, &a,
	                              1, 1, &first);
	if (status >= 0)
		return status;
	if ((status = check_target(&a)) >= 0)
		return status;
	const char *target = argv[first];
	struct stat st;
	if (stat(target, &st) == 0 && S_ISDIR(st.st_mode))
		return cli_usage_error(
		    "'%s' is a directory: kiln deploy takes an image reference (kiln build "
		    "--push it first)",
		    target);

	_cleanup_error_ struct kiln_error *err = NULL;
	struct kiln_reference *ref = NULL;
	if (kiln_reference_parse(&ref, target, &err) < 0)
		return cli_fail(err);
	_cleanup_free_ char *name = a.o.name ? NULL : kiln_deploy_name_from(ref->repository);
	if (!a.o.name)
		a.o.name = name;
	struct kiln_store *store = NULL;
	json_t *config = NULL;
	char digest[KILN_DIGEST_LEN];
	_cleanup_free_ char *image = NULL;
	status = EXIT_OK;
	if (kiln_store_open(&store, NULL, &err) < 0 ||
	    predict_resolve_image(store, target, NULL, &ropt, digest, &config, &err) < 0 ||
	    asprintf(&image, "%s/%s@%s", ref->registry, ref->repository, digest) < 0) {
		status = EXIT_FAIL;
	} else {
		a.o.image = image;
		if (!ref->named_registry)
			warnf("'%s' names no registry: the manifests pull '%s'; the cluster must be able to "
			      "pull "
			      "it (kiln push it to a registry the cluster reaches and deploy that reference)",
			      target, image);
		if (deploy(&a, target, config, store, &err) < 0)
			status = EXIT_FAIL;
	}
	if (status != EXIT_OK) {
		kiln_error_wrap(&err, "cannot deploy '%s'", target);
		status = cli_fail(err);
	}
	json_decref(config);
	kiln_store_free(store);
	kiln_reference_free(ref);
	return status;
}
