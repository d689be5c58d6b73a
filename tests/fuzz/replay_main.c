/*
 * Replay driver for fuzz targets built without libFuzzer (any compiler):
 * runs LLVMFuzzerTestOneInput once on every regular file of each corpus
 * directory (or file) named on the command line, in name order.
 *
 * A target's verdict on an input is not ours to judge: only a crash or a
 * sanitizer report fails the run. An unreadable corpus does fail it, so a
 * wrong path cannot pass as "0 inputs, all fine".
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay_file(const char *path, unsigned long *runs)
{
	struct stat st;
	uint8_t *data;
	FILE *f;
	int ret = -1;

	f = fopen(path, "rb");
	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		goto out_close;
	}
	/* Exactly size bytes, so ASan sees any read past the input. */
	data = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!data) {
		fprintf(stderr, "replay: %s: out of memory\n", path);
		goto out_close;
	}
	if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		fprintf(stderr, "replay: %s: short read\n", path);
		goto out_free;
	}
	LLVMFuzzerTestOneInput(data, (size_t)st.st_size);
	++*runs;
	ret = 0;
out_free:
	free(data);
out_close:
	if (f)
		fclose(f);
	return ret;
}

static int replay_dir(const char *dir, unsigned long *runs)
{
	struct dirent **ents;
	char path[4096];
	struct stat st;
	int i, n, ret = 0;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
		if (!ret && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			ret = replay_file(path, runs);
		free(ents[i]);
	}
	free(ents);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned long runs = 0;
	struct stat st;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
				strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode) ? replay_dir(argv[i], &runs)
					: replay_file(argv[i], &runs))
			return 1;
	}
	printf("replay: %lu inputs ran\n", runs);
	return 0;
}
