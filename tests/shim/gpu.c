/* SPDX-License-Identifier: Apache-2.0 */
/* tests/shim/gpu.c: the NVML probe against a fake libnvidia-ml: devices, driver, failures, no library. */
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "shim/shim.h"

/* Each test starts from the fake library with its default two GPUs. */
static void use_fake(void)
{
	setenv("KILN_NVML_LIBRARY", FAKE_NVML, 1);
	unsetenv("FAKE_NVML_GPUS");
	unsetenv("FAKE_NVML_FAIL_INIT");
}

TestSuite(gpu, .init = use_fake);

Test(gpu, fake_library_reports_two_h100s_with_driver_and_cuda)
{
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	cr_assert(info.nvml, "error: %s", info.error);
	cr_assert_str_empty(info.error);
	cr_assert_str_eq(info.driver, "550.54.15");
	cr_assert_str_eq(info.cuda, "12.4");
	cr_assert_eq(info.count, 2);
	for (size_t i = 0; i < 2; i++) {
		cr_assert_str_eq(info.gpus[i].name, "NVIDIA H100 80GB HBM3");
		cr_assert_eq(info.gpus[i].memory_total, 85520809984ULL);
		cr_assert_eq(info.gpus[i].memory_used, (i + 1) * 512ULL * 1024 * 1024);
	}
	cr_assert_str_eq(info.gpus[0].uuid, "GPU-5ec7a1e2-7d1c-4b3a-9f0e-000000000000");
	cr_assert_str_eq(info.gpus[1].uuid, "GPU-5ec7a1e2-7d1c-4b3a-9f0e-000000000001");
}

Test(gpu, json_lists_every_gpu)
{
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	json_t *j = shim_gpu_json(&info);
	cr_assert_not_null(j);
	cr_assert_str_eq(json_string_value(json_object_get(j, "driver")), "550.54.15");
	cr_assert_str_eq(json_string_value(json_object_get(j, "cuda")), "12.4");
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 2);
	cr_assert_null(json_object_get(j, "error"));
	json_t *gpus = json_object_get(j, "gpus");
	cr_assert_eq(json_array_size(gpus), 2);
	json_t *g = json_array_get(gpus, 1);
	cr_assert_str_eq(json_string_value(json_object_get(g, "name")), "NVIDIA H100 80GB HBM3");
	cr_assert_str_eq(json_string_value(json_object_get(g, "uuid")),
	                 "GPU-5ec7a1e2-7d1c-4b3a-9f0e-000000000001");
	cr_assert_eq(json_integer_value(json_object_get(g, "memory_total")), 85520809984LL);
	cr_assert_eq(json_integer_value(json_object_get(g, "memory_used")), 1073741824LL);
	json_decref(j);
}

Test(gpu, zero_gpus_is_nvml_without_devices)
{
	setenv("FAKE_NVML_GPUS", "0", 1);
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	cr_assert(info.nvml);
	cr_assert_eq(info.count, 0);
	cr_assert_str_eq(info.driver, "550.54.15");
	json_t *j = shim_gpu_json(&info);
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 0);
	cr_assert_eq(json_array_size(json_object_get(j, "gpus")), 0);
	json_decref(j);
}

Test(gpu, more_gpus_than_the_table_holds_are_cut_at_sixteen)
{
	setenv("FAKE_NVML_GPUS", "20", 1);
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	cr_assert(info.nvml);
	cr_assert_eq(info.count, 16);
	cr_assert_str_eq(info.gpus[15].uuid, "GPU-5ec7a1e2-7d1c-4b3a-9f0e-00000000000f");
}

Test(gpu, init_failure_gives_nvml_words)
{
	setenv("FAKE_NVML_FAIL_INIT", "1", 1);
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	cr_assert_not(info.nvml);
	cr_assert_eq(info.count, 0);
	cr_assert_str_eq(info.error, "cannot initialize NVML: Driver Not Loaded");
	json_t *j = shim_gpu_json(&info);
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 0);
	cr_assert_str_eq(json_string_value(json_object_get(j, "error")),
	                 "cannot initialize NVML: Driver Not Loaded");
	cr_assert_null(json_object_get(j, "gpus"));
	json_decref(j);
}

Test(gpu, missing_library_names_it)
{
	setenv("KILN_NVML_LIBRARY", "/nonexistent", 1);
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	cr_assert_not(info.nvml);
	cr_assert_eq(info.count, 0);
	cr_assert_not_null(strstr(info.error, "/nonexistent"), "error: %s", info.error);
	json_t *j = shim_gpu_json(&info);
	cr_assert_not_null(strstr(json_string_value(json_object_get(j, "error")), "/nonexistent"));
	json_decref(j);
}

Test(gpu, library_without_nvml_symbols_is_refused_not_called)
{
	setenv("KILN_NVML_LIBRARY", "libc.so.6", 1);
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	cr_assert_not(info.nvml);
	cr_assert_eq(info.count, 0);
	cr_assert_str_eq(info.error, "'libc.so.6' has no nvmlInit_v2");
}

Test(gpu, default_library_is_libnvidia_ml)
{
	unsetenv("KILN_NVML_LIBRARY");
	struct shim_gpu_info info;
	shim_gpu_probe(&info);
	/* On a machine with the driver it loads; elsewhere the error says what was looked for. */
	cr_assert(info.nvml || strstr(info.error, "libnvidia-ml.so.1"), "error: %s", info.error);
}

/* The fake answers as the real library does, so the probe is tested against realistic behaviour. */
Test(gpu, fake_library_returns_nvml_error_codes)
{
	void *lib = dlopen(FAKE_NVML, RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(lib, "%s", dlerror());
	int (*init)(void) = (int (*)(void))dlsym(lib, "nvmlInit_v2");
	int (*shutdown)(void) = (int (*)(void))dlsym(lib, "nvmlShutdown");
	int (*count)(unsigned int *) = (int (*)(unsigned int *))dlsym(lib, "nvmlDeviceGetCount_v2");
	int (*handle)(unsigned int, void **) =
	    (int (*)(unsigned int, void **))dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
	int (*name)(void *, char *, unsigned int) =
	    (int (*)(void *, char *, unsigned int))dlsym(lib, "nvmlDeviceGetName");
	const char *(*errstr)(int) = (const char *(*)(int))dlsym(lib, "nvmlErrorString");
	cr_assert(init && shutdown && count && handle && name && errstr);

	unsigned int n = 0;
	cr_assert_eq(count(&n), 1, "NVML_ERROR_UNINITIALIZED before init");
	cr_assert_eq(shutdown(), 1);
	cr_assert_eq(init(), 0);
	cr_assert_eq(count(NULL), 2, "NVML_ERROR_INVALID_ARGUMENT for NULL");
	cr_assert_eq(count(&n), 0);
	cr_assert_eq(n, 2);
	void *dev = NULL;
	cr_assert_eq(handle(2, &dev), 2, "NVML_ERROR_INVALID_ARGUMENT for a bad index");
	cr_assert_eq(handle(0, &dev), 0);
	char small[8], big[96];
	cr_assert_eq(name(dev, small, sizeof(small)), 7, "NVML_ERROR_INSUFFICIENT_SIZE");
	cr_assert_eq(name(dev, big, sizeof(big)), 0);
	cr_assert_str_eq(big, "NVIDIA H100 80GB HBM3");
	cr_assert_eq(name(NULL, big, sizeof(big)), 2);
	cr_assert_str_eq(errstr(9), "Driver Not Loaded");
	cr_assert_eq(shutdown(), 0);
	cr_assert_eq(count(&n), 1);
	dlclose(lib);
}
