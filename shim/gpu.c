/* SPDX-License-Identifier: Apache-2.0 */
/* gpu.c: probe NVIDIA GPUs through NVML, loaded with dlopen so that kiln-shim starts without a driver. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim/shim.h"

/* NVML's ABI, as nvml.h declares it: nvmlReturn_t is an int-sized enum, nvmlDevice_t an opaque pointer. */
#define NVML_SUCCESS 0

struct nvml_memory {
	unsigned long long total;
	unsigned long long free;
	unsigned long long used;
};

/* The entry points the probe uses; any of them may be NULL when the library lacks it. */
struct nvml {
	void *lib;
	const char *path;
	int (*init)(void);
	int (*shutdown)(void);
	const char *(*error_string)(int);
	int (*driver_version)(char *version, unsigned int length);
	int (*cuda_version)(int *version);
	int (*device_count)(unsigned int *count);
	int (*handle_by_index)(unsigned int index, void **device);
	int (*name)(void *device, char *name, unsigned int length);
	int (*uuid)(void *device, char *uuid, unsigned int length);
	int (*memory)(void *device, struct nvml_memory *memory);
};

/* Look NAME up in the library, else FALLBACK (an older version of the call), else NULL. */
static void *symbol(void *lib, const char *name, const char *fallback)
{
	void *p = dlsym(lib, name);
	if (!p && fallback)
		p = dlsym(lib, fallback);
	return p;
}

#define LOAD(n, field, name, fallback) ((n)->field = (__typeof__((n)->field))symbol((n)->lib, name, fallback))

/* NVML's words for RC, or "NVML error RC" when the library has no nvmlErrorString. */
static const char *nvml_strerror(const struct nvml *n, int rc, char *buf, size_t size)
{
	const char *s = n->error_string ? n->error_string(rc) : NULL;
	if (s)
		return s;
	snprintf(buf, size, "NVML error %d", rc);
	return buf;
}

/* Copy the NUL-terminated S into the fixed array DST of SIZE bytes, cutting it if needed. */
static void copy_text(char *dst, size_t size, const char *s)
{
	snprintf(dst, size, "%s", s);
}

/* Fill OUT->gpus from an initialized NVML; the first per-device failure goes to OUT->error. */
static void probe_devices(const struct nvml *n, struct shim_gpu_info *out)
{
	char tmp[48];
	unsigned int count = 0;
	int rc = n->device_count(&count);
	if (rc != NVML_SUCCESS) {
		snprintf(out->error, sizeof(out->error), "cannot count GPUs: %s",
		         nvml_strerror(n, rc, tmp, sizeof(tmp)));
		return;
	}
	size_t max = sizeof(out->gpus) / sizeof(out->gpus[0]);
	for (unsigned int i = 0; i < count && out->count < max; i++) {
		void *dev = NULL;
		if (!n->handle_by_index || (rc = n->handle_by_index(i, &dev)) != NVML_SUCCESS) {
			if (!out->error[0])
				snprintf(out->error, sizeof(out->error), "cannot open GPU %u: %s", i,
				         n->handle_by_index ? nvml_strerror(n, rc, tmp, sizeof(tmp))
				                            : "no nvmlDeviceGetHandleByIndex_v2");
			continue;
		}
		struct shim_gpu *g = &out->gpus[out->count++];
		memset(g, 0, sizeof(*g));
		if (n->name && n->name(dev, g->name, sizeof(g->name)) != NVML_SUCCESS)
			g->name[0] = '\0';
		if (n->uuid && n->uuid(dev, g->uuid, sizeof(g->uuid)) != NVML_SUCCESS)
			g->uuid[0] = '\0';
		g->name[sizeof(g->name) - 1] = '\0';
		g->uuid[sizeof(g->uuid) - 1] = '\0';
		struct nvml_memory mem = {0, 0, 0};
		if (n->memory && n->memory(dev, &mem) == NVML_SUCCESS) {
			g->memory_total = mem.total;
			g->memory_used = mem.used;
		}
	}
}

/* The image's Entrypoint runs kiln-shim through the bundled loader with --library-path, which makes the
 * loader ignore LD_LIBRARY_PATH. Platforms that mount the driver's libraries in a directory named only by
 * LD_LIBRARY_PATH (/usr/local/nvidia/lib64 on GKE, for one) would then hide NVML from dlopen: look in
 * those directories, then in the usual places of the driver's libraries, by full path. On success *PATH is
 * the path opened (static storage). */
static void *open_from_driver_dirs(const char **path)
{
	static char found[4096];
	static const char *const usual[] = {"/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu",
	                                    "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/wsl/lib"};
	const char *llp = getenv("LD_LIBRARY_PATH");
	char dirs[4096];
	snprintf(dirs, sizeof(dirs), "%s", llp ? llp : "");
	size_t nusual = sizeof(usual) / sizeof(usual[0]);
	char *save = NULL, *dir = strtok_r(dirs, ":", &save);
	for (size_t i = 0; dir || i < nusual;) {
		const char *d = dir ? dir : usual[i++];
		if (dir)
			dir = strtok_r(NULL, ":", &save);
		if (*d != '/' ||
		    (size_t)snprintf(found, sizeof(found), "%s/libnvidia-ml.so.1", d) >= sizeof(found))
			continue;
		void *lib = dlopen(found, RTLD_NOW | RTLD_LOCAL);
		if (lib) {
			*path = found;
			return lib;
		}
	}
	return NULL;
}

void shim_gpu_probe(struct shim_gpu_info *out)
{
	memset(out, 0, sizeof(*out));
	struct nvml n = {0};
	const char *env = getenv("KILN_NVML_LIBRARY");
	n.path = env && *env ? env : "libnvidia-ml.so.1";

	dlerror();
	n.lib = dlopen(n.path, RTLD_NOW | RTLD_LOCAL);
	if (!n.lib) {
		const char *why = dlerror();
		if (why)
			copy_text(out->error, sizeof(out->error), why);
		else
			snprintf(out->error, sizeof(out->error), "cannot load '%s'", n.path);
		if (env && *env)
			return;
		n.lib = open_from_driver_dirs(&n.path);
		if (!n.lib)
			return;
		out->error[0] = '\0';
	}
	LOAD(&n, init, "nvmlInit_v2", "nvmlInit");
	LOAD(&n, shutdown, "nvmlShutdown", NULL);
	LOAD(&n, error_string, "nvmlErrorString", NULL);
	LOAD(&n, driver_version, "nvmlSystemGetDriverVersion", NULL);
	LOAD(&n, cuda_version, "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion");
	LOAD(&n, device_count, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
	LOAD(&n, handle_by_index, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
	LOAD(&n, name, "nvmlDeviceGetName", NULL);
	LOAD(&n, uuid, "nvmlDeviceGetUUID", NULL);
	LOAD(&n, memory, "nvmlDeviceGetMemoryInfo", NULL);

	char tmp[48];
	int rc;
	if (!n.init || !n.device_count) {
		snprintf(out->error, sizeof(out->error), "'%s' has no %s", n.path,
		         !n.init ? "nvmlInit_v2" : "nvmlDeviceGetCount_v2");
	} else if ((rc = n.init()) != NVML_SUCCESS) {
		snprintf(out->error, sizeof(out->error), "cannot initialize NVML: %s",
		         nvml_strerror(&n, rc, tmp, sizeof(tmp)));
	} else {
		out->nvml = true;
		if (n.driver_version && n.driver_version(out->driver, sizeof(out->driver)) != NVML_SUCCESS)
			out->driver[0] = '\0';
		out->driver[sizeof(out->driver) - 1] = '\0';
		int cuda = 0;
		if (n.cuda_version && n.cuda_version(&cuda) == NVML_SUCCESS && cuda > 0)
			snprintf(out->cuda, sizeof(out->cuda), "%d.%d", cuda / 1000, cuda % 1000 / 10);
		probe_devices(&n, out);
		if (n.shutdown)
			n.shutdown();
	}
	dlclose(n.lib);
}

/* S as a JSON string; text that is not UTF-8 (a driver's garbage, a path's bytes) is cut before it. */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	for (size_t len = strlen(s); !j && len > 0; len--)
		j = json_stringn(s, len - 1);
	return j ? j : json_string("");
}

json_t *shim_gpu_json(const struct shim_gpu_info *info)
{
	if (!info->nvml)
		return json_pack("{s:i,s:o}", "count", 0, "error",
		                 text(info->error[0] ? info->error : "not probed"));
	json_t *gpus = json_array();
	for (size_t i = 0; i < info->count; i++) {
		const struct shim_gpu *g = &info->gpus[i];
		json_array_append_new(gpus,
		                      json_pack("{s:o,s:o,s:I,s:I}", "name", text(g->name), "uuid",
		                                text(g->uuid), "memory_total", (json_int_t)g->memory_total,
		                                "memory_used", (json_int_t)g->memory_used));
	}
	json_t *j = json_pack("{s:o,s:o,s:I,s:o}", "driver", text(info->driver), "cuda", text(info->cuda),
	                      "count", (json_int_t)info->count, "gpus", gpus);
	if (j && info->error[0])
		json_object_set_new(j, "error", text(info->error));
	return j;
}
