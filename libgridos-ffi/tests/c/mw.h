/* Helpers of the middleware C tests (server, copy, gfile, cache): files with known bytes,
 * byte-for-byte comparisons, and an FTP server started with the C API. */
#ifndef GRIDOS_TEST_MW_H
#define GRIDOS_TEST_MW_H

#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

/* The scratch directory the Rust harness made for this run. */
static inline const char *test_dir(void) {
    const char *d = getenv("GRIDOS_TEST_DIR");
    if (d == NULL || d[0] == '\0')
        FAIL("GRIDOS_TEST_DIR is not set");
    return d;
}

/* `out` = test_dir()/name. */
static inline void in_test_dir(char *out, size_t len, const char *name) {
    int n = snprintf(out, len, "%s/%s", test_dir(), name);
    if (n < 0 || (size_t)n >= len)
        FAIL("path too long: %s/%s", test_dir(), name);
}

static inline void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        FAIL("mkdir %s: %s", path, strerror(errno));
}

static inline int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Names in `path` other than . and .. */
static inline int entries_in(const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;
    if (d == NULL)
        FAIL("opendir %s: %s", path, strerror(errno));
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* The byte at `i` of the test pattern of `seed`: every offset has its own value, so a
 * shifted or repeated block is caught. */
static inline unsigned char pattern_byte(uint64_t i, uint32_t seed) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 32 | seed);
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (unsigned char)x;
}

/* Writes `size` bytes of the pattern of `seed` to a new file `path`. */
static inline void write_pattern(const char *path, size_t size, uint32_t seed) {
    unsigned char block[65536];
    size_t done = 0;
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        FAIL("fopen %s: %s", path, strerror(errno));
    while (done < size) {
        size_t n = size - done < sizeof block ? size - done : sizeof block, i;
        for (i = 0; i < n; i++)
            block[i] = pattern_byte(done + i, seed);
        if (fwrite(block, 1, n, f) != n)
            FAIL("write %s: %s", path, strerror(errno));
        done += n;
    }
    if (fclose(f) != 0)
        FAIL("close %s: %s", path, strerror(errno));
}

/* The whole file (malloc'd; free it), its size in *len. */
static inline unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0, k;
    if (f == NULL)
        FAIL("fopen %s: %s", path, strerror(errno));
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (buf == NULL)
                FAIL("out of memory");
        }
        k = fread(buf + n, 1, cap - n, f);
        n += k;
    } while (k > 0);
    if (ferror(f))
        FAIL("read %s", path);
    fclose(f);
    *len = n;
    return buf;
}

/* Files `a` and `b` hold the same bytes, `size` of them. */
static inline void check_same(const char *a, const char *b, size_t size) {
    size_t la, lb, i;
    unsigned char *x = read_all(a, &la), *y = read_all(b, &lb);
    if (la != size || lb != size)
        FAIL("%s has %zu bytes, %s has %zu, expected %zu", a, la, b, lb, size);
    for (i = 0; i < size; i++)
        if (x[i] != y[i])
            FAIL("%s and %s differ at byte %zu", a, b, i);
    free(x);
    free(y);
}

/* File `path` holds exactly the `len` bytes of `want`. */
static inline void check_content(const char *path, const void *want, size_t len) {
    size_t n;
    unsigned char *got = read_all(path, &n);
    if (n != len || memcmp(got, want, len) != 0)
        FAIL("%s does not hold the expected %zu bytes (it has %zu)", path, len, n);
    free(got);
}

/* A server on 127.0.0.1 at a free port serving `docroot` to anonymous users, who may
 * write when `writable`; started and configured through the C API. */
static inline gridos_ftp_server *start_server(const char *docroot, int writable) {
    gridos_ftp_server_config *cfg = NULL;
    gridos_ftp_server *server = NULL;
    CHECK_OK(gridos_ftp_server_config_new(docroot, &cfg));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "listen", "127.0.0.1:0"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "anonymous", "true"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "ftp.anonymous_write", writable ? "1" : "0"));
    CHECK_OK(gridos_ftp_server_start(cfg, &server));
    gridos_ftp_server_config_free(cfg);
    CHECK(gridos_ftp_server_port(server) != 0);
    return server;
}

/* `out` = ftp://127.0.0.1:PORT/name of `server`. */
static inline void url_of(char *out, size_t len, const gridos_ftp_server *server,
                          const char *name) {
    int n = snprintf(out, len, "ftp://127.0.0.1:%u/%s", (unsigned)gridos_ftp_server_port(server),
                     name);
    if (n < 0 || (size_t)n >= len)
        FAIL("URL too long");
}

/* The number `key` of the server's stats JSON. */
static inline unsigned long long stat_of(const gridos_ftp_server *server, const char *key) {
    char *json = NULL, needle[300], *at, *end;
    unsigned long long v;
    CHECK_OK(gridos_ftp_server_stats_json(server, &json));
    snprintf(needle, sizeof needle, "\"%s\":", key);
    at = strstr(json, needle);
    if (at == NULL)
        FAIL("no %s in the stats %s", key, json);
    v = strtoull(at + strlen(needle), &end, 10);
    if (end == at + strlen(needle))
        FAIL("%s is not a number in %s", key, json);
    gridos_string_free(json);
    return v;
}

/* The FTP server a test talks to, started with the C API: in this process, or — when
 * GRIDOS_TEST_SERVER_CHILD is set, as for the valgrind runs — in a child process running
 * this same program with `--serve`, which valgrind does not trace: valgrind 3.19 does not
 * know openat2(2), with which the server resolves every path. */
struct peer {
    gridos_ftp_server *server; /* in this process, or NULL */
    pid_t pid;                 /* the child, or 0 */
    FILE *to, *from;           /* its stdin and stdout */
    uint16_t port;
};

/* The child's side: `PROG --serve DOCROOT WRITABLE` prints the port, then answers
 * `stat KEY` lines with the number until its stdin closes, and stops the server. Call it
 * first in main; it returns only when the program was not started this way. */
static inline void peer_serve_if_asked(int argc, char **argv) {
    gridos_ftp_server *server;
    char line[256];
    if (argc != 4 || strcmp(argv[1], "--serve") != 0)
        return;
    CHECK_OK(gridos_init());
    server = start_server(argv[2], atoi(argv[3]));
    printf("%u\n", (unsigned)gridos_ftp_server_port(server));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "stat ", 5) != 0)
            FAIL("serve: unknown request %s", line);
        printf("%llu\n", stat_of(server, line + 5));
        fflush(stdout);
    }
    gridos_ftp_server_stop(server);
    exit(0);
}

static inline void peer_start(struct peer *p, char **argv, const char *docroot, int writable) {
    int in[2], out[2];
    unsigned port = 0;
    memset(p, 0, sizeof *p);
    if (getenv("GRIDOS_TEST_SERVER_CHILD") == NULL) {
        p->server = start_server(docroot, writable);
        p->port = gridos_ftp_server_port(p->server);
        return;
    }
    if (pipe(in) != 0 || pipe(out) != 0)
        FAIL("pipe: %s", strerror(errno));
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0)
        FAIL("fork: %s", strerror(errno));
    if (p->pid == 0) {
        char *args[5];
        args[0] = argv[0];
        args[1] = "--serve";
        args[2] = (char *)docroot;
        args[3] = writable ? "1" : "0";
        args[4] = NULL;
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(argv[0], args);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->to = fdopen(in[1], "w");
    p->from = fdopen(out[0], "r");
    if (p->to == NULL || p->from == NULL || fscanf(p->from, "%u", &port) != 1 || port == 0)
        FAIL("the server child did not start");
    p->port = (uint16_t)port;
    printf("server child %d on port %u\n", (int)p->pid, port);
}

/* `out` = ftp://127.0.0.1:PORT/name of the peer. */
static inline void peer_url(char *out, size_t len, const struct peer *p, const char *name) {
    int n = snprintf(out, len, "ftp://127.0.0.1:%u/%s", (unsigned)p->port, name);
    if (n < 0 || (size_t)n >= len)
        FAIL("URL too long");
}

/* The number `key` of the peer's stats. */
static inline unsigned long long peer_stat(struct peer *p, const char *key) {
    unsigned long long v;
    if (p->server != NULL)
        return stat_of(p->server, key);
    if (fprintf(p->to, "stat %s\n", key) < 0 || fflush(p->to) != 0 ||
        fscanf(p->from, "%llu", &v) != 1)
        FAIL("no %s from the server child", key);
    return v;
}

static inline void peer_stop(struct peer *p) {
    int status = 0;
    if (p->server != NULL) {
        gridos_ftp_server_stop(p->server);
    } else {
        fclose(p->to);
        if (waitpid(p->pid, &status, 0) != p->pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            FAIL("the server child failed (status %d)", status);
        fclose(p->from);
    }
    memset(p, 0, sizeof *p);
}

#endif
