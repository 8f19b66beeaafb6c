/* One upload and one download through libgridos's gridos_copy, timed: the C half of
 * benches/capi/run.sh, which runs `gridos cp` the same way against the same server.
 *
 *   copy_bench LOCAL_FILE URL_OF_REMOTE_FILE LOCAL_DOWNLOAD
 *
 * Prints "upload SECONDS" and "download SECONDS". */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
#include "gridos.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double t0;
    if (argc != 4 || gridos_init() != GRIDOS_OK) return 2;
    t0 = now();
    if (gridos_copy(argv[1], argv[2], NULL, NULL, NULL) != GRIDOS_OK) goto fail;
    printf("upload %.6f\n", now() - t0);
    t0 = now();
    if (gridos_copy(argv[2], argv[3], NULL, NULL, NULL) != GRIDOS_OK) goto fail;
    printf("download %.6f\n", now() - t0);
    return 0;
fail:
    fprintf(stderr, "copy_bench: %s\n", gridos_last_error_message());
    return 1;
}
