/* SPDX-License-Identifier: Apache-2.0 */
/* main.c: kiln's entry point and command table. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#define PREDICT_USAGE(name)                                                                                  \
	"kiln " name " [DIR | REF] [-i NAME=VALUE | -i NAME=@FILE]... [--json INPUT] [-o PATH]\n"            \
	"             [--input-json FILE|-] [--format json] [-e NAME=VALUE]... [--runtime "                  \
	"auto|native|bwrap]\n"                                                                               \
	"             [--setup-timeout S] [-f FILE]"
#define PREDICT_HELP                                                                                         \
	"  -i, --input NAME=VALUE  an input, typed by the model's schema; NAME=@FILE sends a file; repeat "  \
	"a\n"                                                                                                \
	"                          NAME for a list; a VALUE without NAME= is the first input\n"              \
	"  --json INPUT         the input object, as cog predict takes it: JSON text, @FILE or @- "          \
	"(standard\n"                                                                                        \
	"                       input), no -i with it; prints {status, output, error} as JSON (or to -o)\n"  \
	"  --input-json FILE    the input object from FILE (- for standard input); -i adds to it\n"          \
	"  -o, --output PATH    where the output goes (default: output.EXT for files; output.N.EXT for "     \
	"lists;\n"                                                                                           \
	"                       other outputs printed)\n"                                                    \
	"  --format json        print the whole prediction response as JSON (kiln's own; was --json)\n"      \
	"  -e, --env NAME=VALUE an environment variable for the model (repeatable)\n"                        \
	"  --runtime R          auto (default), native (the image's own layers, this machine's Python)\n"    \
	"                       or bwrap (the whole image under bubblewrap)\n"                               \
	"  --setup-timeout S    fail when setup takes longer than S seconds\n"                               \
	"  -f, --file FILE      the manifest to build DIR with\n" CLI_REGISTRY_HELP

const struct command commands[] = {
    {"build", cmd_build, "build an image from a model project",
     "kiln build [DIR] [-f FILE] [-t REF] [--output oci:DIR | oci-archive:FILE] [--push] [-j N] [--json]\n"
     "           [--secret id=ID,src=FILE|env=NAME]... [--weights image|registry]",
     "  -f, --file FILE      the manifest (default: DIR/kiln.yaml, else DIR/cog.yaml)\n"
     "  -t, --tag REF        the image's reference (default: the manifest's image, else DIR's name)\n"
     "  --output DEST        also write the image to oci:DIR[:TAG] or oci-archive:FILE[:TAG]\n"
     "  --push               push the image to its registry once built\n"
     "  --platform P         the platform of a multi-platform base (default: linux/amd64)\n"
     "  --secret SPEC        a secret for build.run's mounts: id=ID,src=FILE or id=ID,env=NAME\n"
     "  --weights MODE       image (default: weights are layers) or registry (blobs the shim fetches)\n"
     "  -j, --jobs N         layers built (and blobs pushed) at once (default: one per CPU; push: 4)\n"
     "  --json               print the build report as JSON\n" CLI_REGISTRY_HELP},
    {"deploy", cmd_deploy, "write Knative, KServe, Kubernetes or systemd manifests from an image's hints",
     "kiln deploy REF --target knative|kserve|kubernetes|systemd [-o FILE|DIR|-] [--name NAME]\n"
     "            [--namespace NS] [--pull-secret NAME] [--setup-timeout S] [--port N]",
     "  --target T           knative (a Knative Service), kserve (an InferenceService), kubernetes\n"
     "                       (Deployment, Service, HorizontalPodAutoscaler) or systemd (socket and service)\n"
     "  -o, --output FILE    where the manifests go (default: standard output, also -); systemd: a\n"
     "                       directory the units NAME.socket and NAME.service are written into\n"
     "  --name NAME          the resources' name (default: the repository's last component)\n"
     "  --namespace NS       the namespace written into the manifests (default: none)\n"
     "  --pull-secret NAME   a dockerconfigjson Secret: imagePullSecrets, and the registry weights'\n"
     "                       credentials\n"
     "  --setup-timeout S    the startup probe's budget and the shim's COG_SETUP_TIMEOUT (default: the\n"
     "                       image's COG_SETUP_TIMEOUT, else 300)\n"
     "  --port N             kubernetes: the Service's port (default 80); systemd: ListenStream "
     "(5000)\n" CLI_REGISTRY_HELP},
    {"dockerfile", cmd_dockerfile, "print the Dockerfile equivalent to what kiln builds (cog debug)",
     "kiln dockerfile [DIR] [-f FILE] [--runtime-image REF]",
     "  -f, --file FILE      the manifest (default: DIR/kiln.yaml, else DIR/cog.yaml)\n"
     "  --runtime-image REF  the image kiln built that the runtime is copied from (default: the manifest's\n"
     "                       image, else DIR's name:latest, as kiln build tags it)\n"},
    {"doctor", cmd_doctor, "check a project without building it and say what to fix (cog doctor)",
     "kiln doctor [DIR] [-f FILE] [--fix] [--format text|json]",
     "  -f, --file FILE      the manifest (default: DIR/kiln.yaml, else DIR/cog.yaml)\n"
     "  --format json        print the findings as JSON (--json is the same)\n"},
    {"exec", cmd_exec, "run a command in the model's environment (cog exec)",
     "kiln exec [DIR | REF] [-e NAME=VALUE]... [--gpus G] [--runtime auto|native|bwrap] -- COMMAND [ARG...]\n"
     "       kiln exec [-e NAME=VALUE]... [--gpus G] [--runtime R] COMMAND [ARG...]",
     "  -e, --env NAME=VALUE an environment variable for the command (repeatable)\n"
     "  --gpus G             the GPUs the command sees: all (default), a count N, device=I[,J...]\n"
     "  -p, --publish PORT   cog exec's: the command already shares this machine's network (a warning)\n"
     "  --runtime R          auto (default), native (this machine, in DIR, with the image's Env)\n"
     "                       or bwrap (the whole image under bubblewrap, DIR at its "
     "WorkingDir)\n" CLI_REGISTRY_HELP},
    {"help", cmd_help, "show help for kiln or one of its commands", "kiln help [COMMAND]", ""},
    {"init", cmd_init, "write a starting point for a model project", "kiln init [DIR] [--json]",
     "  --json               print the directory and the files written as JSON\n"},
    {"inspect", cmd_inspect, "show an image's layers, labels and hints", "kiln inspect [REF | DIR] [--json]",
     "  --json               print the image description as JSON\n"},
    {"login", cmd_login, "store credentials for a registry",
     "kiln login REGISTRY [-u USER] [--password-stdin]",
     "  -u, --username USER  the user name (asked on the terminal when missing)\n"
     "  --password-stdin     read the password from standard input\n" CLI_REGISTRY_HELP},
    {"logout", cmd_logout, "remove the credentials of a registry", "kiln logout REGISTRY", ""},
    {"playground", cmd_playground, "a web page to try a served model: a form of its schema, its outputs",
     "kiln playground --target URL [--port N] [--host ADDR] [--ref REF] [--webhook-base URL]",
     "  --target URL         the model's Cog API (kiln serve's: http://127.0.0.1:5000); the playground\n"
     "                       passes on that API under /api/ and nothing else\n"
     "  --port N             the port to listen on (default 8080; 0: a free one)\n"
     "  --host ADDR          the IPv4 address to listen on (default 127.0.0.1)\n"
     "  --ref REF            the image (or project) the page's kiln predict lines name\n"
     "  --webhook-base URL   the playground as the target reaches it, for async predictions' webhooks\n"
     "                       (default: where it listens)\n"},
    {"predict", cmd_predict, "run one prediction with an image, as cog predict does",
     PREDICT_USAGE("predict"), PREDICT_HELP},
    {"prune", cmd_prune, "remove from the local store what no tagged image reaches",
     "kiln prune [--all] [--dry-run] [--json]",
     "  --all                also remove every run/ directory (kiln predict unpacks them again)\n"
     "  --dry-run            say what would be removed, remove nothing\n"
     "  --json               print the counts as JSON\n"},
    {"pull", cmd_pull, "fetch an image from a registry into the local store",
     "kiln pull REF [--platform OS/ARCH[/VARIANT]] [--json]",
     "  --platform P         the platform to take from a multi-platform image (default: linux/amd64)\n"
     "  --json               print what was pulled as JSON\n" CLI_REGISTRY_HELP},
    {"push", cmd_push, "push an image to a registry, sending only what it lacks",
     "kiln push [REF] [-C DIR] [-j N] [--json]",
     "  -C, --dir DIR        the project whose manifest's image to push when REF is not given\n"
     "  -j, --jobs N         blobs pushed at once (default: 4)\n"
     "  --json               print what was pushed, blob by blob, as JSON\n" CLI_REGISTRY_HELP},
    {"run", cmd_run,
     "the same as predict (cog run, Cog 0.20's name for predict); with a command, exec (deprecated)",
     PREDICT_USAGE("run") "\nkiln run [options] COMMAND [ARG...]   # deprecated: kiln exec", PREDICT_HELP},
    {"serve", cmd_serve, "serve a project (or an image) over Cog's HTTP API, as its image would",
     "kiln serve [DIR | --project DIR | REF] [-f FILE] [--port N] [--host ADDR] [--upload-url URL] "
     "[--idle-exit S|auto]\n"
     "           [--await-explicit-shutdown [true|false]] [--max-connections N] [--connection-timeout S]\n"
     "           [--request-timeout S] [--keep-bytes N] [--allow-private-urls] [--threads N]\n"
     "           [--playground[=PORT]]",
     "  -p, --port N         the port to listen on (default: $PORT, else 5000)\n"
     "  --host ADDR          the address to listen on (default: 0.0.0.0)\n"
     "  --project DIR        the project (as kiln-shim takes it; the same as DIR)\n"
     "  -f, --file FILE      the manifest to serve DIR with (the shim's KILN_MANIFEST)\n"
     "  --upload-url URL     PUT file outputs under URL and answer with their URLs\n"
     "  --playground[=PORT]  also the web playground for it on 127.0.0.1:PORT (default 8080;\n"
     "                       kiln-playground(1))\n"
     "  --idle-exit S|auto, --await-explicit-shutdown [true|false], --max-connections N,\n"
     "  --connection-timeout S, --request-timeout S, --keep-bytes N, --allow-private-urls, --threads N\n"
     "                       passed to kiln-shim as they are (see kiln-shim(1))\n"},
    {"train", cmd_train, "run one training with an image, as cog train does",
     "kiln train [DIR | REF] [-i NAME=VALUE | -i NAME=@FILE]... [--json INPUT] [-o PATH]\n"
     "           [--input-json FILE|-] [--format json] [-e NAME=VALUE]... [--runtime auto|native|bwrap]\n"
     "           [--setup-timeout S]",
     "  the options of kiln predict, for the trainer (train: in kiln.yaml) and its TrainingInput;\n"
     "  -o, --output PATH    where the output goes (default: weights, its extension added for a file)\n"},
    {"version", cmd_version, "print kiln's version", "kiln version [--json]",
     "  --json               print the versions as JSON\n"},
    {NULL, NULL, NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kiln [--quiet] [--progress auto|tty|plain|quiet] <command> [<args>]\n\n"
	           "Package machine-learning models into OCI images and serve them.\n\ncommands:\n");
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fprintf(f, "\nSee 'kiln help <command>' or 'man kiln-<command>' for a command's options.\n");
}

int cmd_help(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	for (const struct command *c = commands; c->name; c++)
		if (strcmp(c->name, argv[1]) == 0)
			return cli_help(c->name);
	return cli_usage_error("unknown command '%s'", argv[1]);
}

int main(int argc, char **argv)
{
	int i = 1;
	/* Options before the command: kiln --quiet build ... */
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return EXIT_OK;
		}
		if (strcmp(argv[i], "--version") == 0)
			return cmd_version(1, (char *[]){"version", NULL});
		int r;
		if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
			r = cli_common_option(CLI_OPT_QUIET, NULL);
		else if (strcmp(argv[i], "--progress") == 0 && i + 1 < argc)
			r = cli_common_option(CLI_OPT_PROGRESS, argv[++i]);
		else if (strncmp(argv[i], "--progress=", 11) == 0)
			r = cli_common_option(CLI_OPT_PROGRESS, argv[i] + 11);
		else {
			fprintf(stderr, "kiln: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return EXIT_USAGE;
		}
		if (r < 0)
			return CLI_EXIT_STATUS(r);
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[i], "__runtime-layer") == 0) /* hidden: the build of kiln runs it */
		return cmd_runtime_layer(argc - i, argv + i);
	for (const struct command *c = commands; c->name; c++) {
		if (strcmp(c->name, argv[i]) == 0) {
			cli.command = c->name;
			return c->fn(argc - i, argv + i);
		}
	}
	fprintf(stderr, "kiln: '%s' is not a kiln command; see 'kiln --help'\n", argv[i]);
	return EXIT_USAGE;
}
