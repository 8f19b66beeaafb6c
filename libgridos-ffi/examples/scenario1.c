/* The paper's Scenario 1 in C: start a gridos FTP server, transport a file to it and back
 * through the zero-copy path, and print the throughput and the I/O path.
 *
 *   cc -O2 scenario1.c $(pkg-config --cflags --libs gridos) -o scenario1
 *   ./scenario1 [SIZE_MIB] [DIR]     # default 256 MiB in /tmp
 *
 * Exit status 0 only when both copies arrived byte for byte. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gridos.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int fail(const char *what) {
    fprintf(stderr, "scenario1: %s: %s\n", what, gridos_last_error_message());
    return 1;
}

/* size bytes of a cheap pseudo-random pattern. */
static int make_file(const char *path, unsigned long long size) {
    FILE *f = fopen(path, "wb");
    unsigned long long x = 0x9E3779B97F4A7C15ull, i;
    static unsigned long long block[1 << 17];
    if (!f) return -1;
    while (size > 0) {
        size_t n = size < sizeof block ? (size_t)size : sizeof block;
        for (i = 0; i < n / 8 + 1 && i < sizeof block / 8; i++) {
            x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
            block[i] = x * 0x2545F4914F6CDD1Dull;
        }
        if (fwrite(block, 1, n, f) != n) { fclose(f); return -1; }
        size -= n;
    }
    return fclose(f);
}

static int same(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    static char ba[1 << 16], bb[1 << 16];
    int ok = fa && fb;
    while (ok) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        if (na != nb || memcmp(ba, bb, na) != 0) ok = 0;
        if (na == 0) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return ok;
}

int main(int argc, char **argv) {
    unsigned long long mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 256;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    char docroot[512], original[512], back[512], url[600], path[64];
    gridos_ftp_server_config *cfg = NULL;
    gridos_ftp_server *srv = NULL;
    double t0, up, down, mb = (double)mib * 1048576.0 / 1e6;

    if (gridos_init() != GRIDOS_OK) return fail("init");
    snprintf(docroot, sizeof docroot, "%s/scenario1-docroot", dir);
    snprintf(original, sizeof original, "%s/scenario1-original", dir);
    snprintf(back, sizeof back, "%s/scenario1-back", dir);
    {
        char mk[600];
        snprintf(mk, sizeof mk, "mkdir -p '%s'", docroot);
        if (system(mk) != 0) return 1;
    }
    if (make_file(original, mib * 1048576ull) != 0) { perror(original); return 1; }

    if (gridos_ftp_server_config_new(docroot, &cfg) != GRIDOS_OK) return fail("server config");
    if (gridos_ftp_server_config_set(cfg, "listen", "127.0.0.1:0") != GRIDOS_OK ||
        gridos_ftp_server_config_set(cfg, "anonymous", "true") != GRIDOS_OK ||
        gridos_ftp_server_config_set(cfg, "anonymous_write", "true") != GRIDOS_OK)
        return fail("server config");
    if (gridos_ftp_server_start(cfg, &srv) != GRIDOS_OK) return fail("server start");
    gridos_ftp_server_config_free(cfg);
    snprintf(url, sizeof url, "ftp://127.0.0.1:%u/scenario1.bin", gridos_ftp_server_port(srv));

    t0 = now();
    if (gridos_copy(original, url, NULL, NULL, NULL) != GRIDOS_OK) return fail("upload");
    up = now() - t0;
    t0 = now();
    if (gridos_copy(url, back, NULL, NULL, NULL) != GRIDOS_OK) return fail("download");
    down = now() - t0;
    gridos_ftp_server_stop(srv);

    if (gridos_io_path(path, sizeof path, NULL) != GRIDOS_OK) return fail("io path");
    printf("upload   %llu MiB in %.3f s: %.1f MB/s (%s)\n", mib, up, mb / up, path);
    printf("download %llu MiB in %.3f s: %.1f MB/s (%s)\n", mib, down, mb / down, path);
    if (!same(original, back)) {
        fprintf(stderr, "scenario1: the file that came back differs\n");
        return 1;
    }
    printf("verified: identical\n");
    remove(original);
    remove(back);
    return 0;
}
