/* The paper's I/O API on descriptors this program owns: reads and writes on a socketpair,
 * buffer options on a loopback TCP connection, an 8 MiB zero-copy send_file/recv_file
 * over loopback TCP (receiver in a thread) checked by checksum, positional file reads and
 * writes, whole-file copies; and the bad-input cases of every call. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "check.h"

/* Valgrind (3.19) holds its scheduler lock while a thread waits in io_uring_enter, so the
 * peer thread of a transfer barely runs and an 8 MiB io_uring transfer takes minutes
 * (liburing issue 657). Under valgrind the transfers take the splice path instead. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

#define BIG ((uint64_t)8 << 20)
#define CHUNK ((size_t)1 << 20)

static const char *dir;

static void path_in(char *out, size_t len, const char *name) {
    CHECK((size_t)snprintf(out, len, "%s/%s", dir, name) < len);
}

/* FNV-1a, 64 bits, continued from `h`. */
static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
#define FNV_START 14695981039346656037ULL

static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Checksum of `len` bytes of `fd` from `offset`, read with gridos_io_file_read. */
static uint64_t file_sum(int fd, uint64_t offset, uint64_t len) {
    uint8_t *buf = malloc(CHUNK);
    uint64_t h = FNV_START, done = 0;
    CHECK(buf != NULL);
    while (done < len) {
        size_t want = len - done < CHUNK ? (size_t)(len - done) : CHUNK, got = 0;
        CHECK_OK(gridos_io_file_read(fd, offset + done, buf, want, &got));
        CHECK(got == want);
        h = fnv(h, buf, got);
        done += got;
    }
    free(buf);
    return h;
}

/* A connected loopback TCP pair. */
static void tcp_pair(int *client, int *server) {
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(l >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
    *client = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(*client >= 0);
    CHECK(connect(*client, (struct sockaddr *)&a, sizeof a) == 0);
    *server = accept(l, NULL, NULL);
    CHECK(*server >= 0);
    close(l);
}

/* A descriptor number that is not open. */
static int closed_fd(void) {
    int fd = dup(2);
    CHECK(fd >= 0);
    close(fd);
    return fd;
}

/* ---- reads and writes on a socketpair ---- */

struct reader {
    const gridos_socket *sock;
    size_t want;
    uint64_t sum;
};

static void *sync_reader(void *arg) {
    struct reader *r = arg;
    uint8_t buf[65536];
    size_t total = 0;
    r->sum = FNV_START;
    while (total < r->want) {
        size_t got = 0;
        CHECK_OK(gridos_io_sync_read(r->sock, buf, sizeof buf, &got));
        CHECK(got > 0);
        r->sum = fnv(r->sum, buf, got);
        total += got;
    }
    CHECK(total == r->want);
    return NULL;
}

static void socket_calls(void) {
    int sv[2], fd, udp;
    gridos_socket *a = NULL, *b = NULL, *untouched = (gridos_socket *)&sv;
    uint8_t buf[64];
    size_t got = 12345, w = 0;
    char path[4096];

    printf("socket handles\n");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK_ERR(gridos_socket_from_fd(-1, &a), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_socket_from_fd(closed_fd(), &a), GRIDOS_ERR_INVALID_ARGUMENT);
    path_in(path, sizeof path, "plain");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_ERR(gridos_socket_from_fd(fd, &untouched), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(untouched == (gridos_socket *)&sv); /* out-parameter untouched on failure */
    close(fd);
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(udp >= 0);
    CHECK_ERR(gridos_socket_from_fd(udp, &a), GRIDOS_ERR_INVALID_ARGUMENT);
    close(udp);
    CHECK_ERR(gridos_socket_from_fd(sv[0], NULL), GRIDOS_ERR_NULL);
    gridos_socket_free(NULL);

    CHECK_OK(gridos_socket_from_fd(sv[0], &a));
    CHECK_OK(gridos_socket_from_fd(sv[1], &b));
    CHECK(a != NULL && b != NULL);

    printf("async read: nothing there, then data\n");
    CHECK_ERR(gridos_io_async_read(a, buf, sizeof buf, &got), GRIDOS_ERR_WOULD_BLOCK);
    CHECK(got == 12345);
    CHECK_OK(gridos_io_write(b, (const uint8_t *)"hello, grid", 11, &w));
    CHECK(w == 11);
    CHECK_OK(gridos_io_async_read(a, buf, sizeof buf, &got));
    CHECK(got == 11 && memcmp(buf, "hello, grid", 11) == 0);

    printf("sync read\n");
    CHECK_OK(gridos_io_write(a, (const uint8_t *)"pong", 4, &w));
    CHECK(w == 4);
    CHECK_OK(gridos_io_sync_read(b, buf, 2, &got));
    CHECK(got == 2 && memcmp(buf, "po", 2) == 0);
    CHECK_OK(gridos_io_sync_read(b, buf, sizeof buf, &got));
    CHECK(got == 2 && memcmp(buf, "ng", 2) == 0);

    printf("4 MiB through a socketpair: write blocks until a reader thread drains it\n");
    {
        size_t n = (size_t)4 << 20;
        uint8_t *data = malloc(n);
        uint64_t seed = 42;
        struct reader r;
        pthread_t t;
        CHECK(data != NULL);
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)next_random(&seed);
        r.sock = a;
        r.want = n;
        CHECK(pthread_create(&t, NULL, sync_reader, &r) == 0);
        CHECK_OK(gridos_io_write(b, data, n, &w));
        CHECK(w == n);
        CHECK(pthread_join(t, NULL) == 0);
        CHECK(r.sum == fnv(FNV_START, data, n));
        free(data);
    }

    printf("bad arguments of the read and write calls\n");
    got = 777;
    CHECK_ERR(gridos_io_sync_read(NULL, buf, sizeof buf, &got), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_sync_read(a, NULL, sizeof buf, &got), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_sync_read(a, buf, 0, &got), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_sync_read(a, buf, sizeof buf, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_async_read(NULL, buf, sizeof buf, &got), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_async_read(a, NULL, sizeof buf, &got), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_async_read(a, buf, 0, &got), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_async_read(a, buf, sizeof buf, NULL), GRIDOS_ERR_NULL);
    CHECK(got == 777);
    w = 777;
    CHECK_ERR(gridos_io_write(NULL, buf, 1, &w), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_write(b, NULL, 1, &w), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_write(b, buf, 1, NULL), GRIDOS_ERR_NULL);
    CHECK(w == 777);
    /* None of the refused calls moved a byte. */
    CHECK_ERR(gridos_io_async_read(a, buf, sizeof buf, &got), GRIDOS_ERR_WOULD_BLOCK);

    printf("free leaves the descriptor open; then the peer closes\n");
    gridos_socket_free(b);
    CHECK(fcntl(sv[1], F_GETFD) != -1);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK_OK(gridos_io_sync_read(a, buf, sizeof buf, &got));
    CHECK(got == 1 && buf[0] == 'x');
    close(sv[1]);
    CHECK_OK(gridos_io_sync_read(a, buf, sizeof buf, &got));
    CHECK(got == 0);
    CHECK_OK(gridos_io_async_read(a, buf, sizeof buf, &got));
    CHECK(got == 0);
    /* Writing to a peer that went away is an error, not SIGPIPE. */
    CHECK_ERR(gridos_io_write(a, (const uint8_t *)"lost", 4, &w), GRIDOS_ERR_NETWORK);
    gridos_socket_free(a);
    close(sv[0]);
}

/* ---- buffer options ---- */

static int net_admin(int drop) {
    struct __user_cap_header_struct h;
    struct __user_cap_data_struct d[2];
    unsigned word = CAP_NET_ADMIN / 32, bit = 1u << (CAP_NET_ADMIN % 32);
    memset(&h, 0, sizeof h);
    memset(d, 0, sizeof d);
    h.version = _LINUX_CAPABILITY_VERSION_3;
    CHECK(syscall(SYS_capget, &h, d) == 0);
    if (drop) {
        d[word].effective &= ~bit;
        CHECK(syscall(SYS_capset, &h, d) == 0);
    }
    return (d[word].effective & bit) != 0;
}

struct forced {
    const gridos_socket *sock;
    size_t request;
};

/* Without CAP_NET_ADMIN (dropped for this thread only) a forced buffer is refused. */
static void *unprivileged_setopt(void *arg) {
    struct forced *f = arg;
    CHECK(!net_admin(1));
    CHECK_ERR(gridos_io_buffer_setopt(f->sock, GRIDOS_BUFFER_SEND, f->request),
              GRIDOS_ERR_PERMISSION);
    return NULL;
}

static size_t wmem_max(void) {
    FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");
    unsigned long v = 0;
    if (f) {
        if (fscanf(f, "%lu", &v) != 1)
            v = 0;
        fclose(f);
    }
    if (v == 0) { /* a network namespace without the file: measure */
        int s = socket(AF_INET, SOCK_STREAM, 0), huge = 1 << 30, got = 0;
        socklen_t len = sizeof got;
        CHECK(s >= 0);
        CHECK(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &huge, sizeof huge) == 0);
        CHECK(getsockopt(s, SOL_SOCKET, SO_SNDBUF, &got, &len) == 0);
        close(s);
        v = (unsigned long)got / 2;
    }
    return v;
}

static void buffer_options(void) {
    int c, s;
    gridos_socket *sock;
    size_t v = 0, max = 0, limit;
    char cfg[64];

    printf("buffer options on a loopback TCP connection\n");
    tcp_pair(&c, &s);
    CHECK_OK(gridos_socket_from_fd(c, &sock));
    CHECK_OK(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_SEND, 65536));
    CHECK_OK(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_SEND, &v));
    CHECK(v == 131072); /* the kernel doubles the request */
    CHECK_OK(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_RECV, 100000));
    CHECK_OK(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_RECV, &v));
    CHECK(v == 200000);

    /* The max buffer starts at io.max_buffer and bounds what may be set. */
    CHECK_OK(gridos_config_get("io.max_buffer", cfg, sizeof cfg, NULL));
    CHECK_OK(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_MAX, &max));
    CHECK(max == (size_t)strtoull(cfg, NULL, 10));
    CHECK_OK(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_MAX, 1 << 20));
    CHECK_OK(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_MAX, &v));
    CHECK(v == 1 << 20);
    CHECK_ERR(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_SEND, 1 << 20),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_OK(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_SEND, &v));
    CHECK(v == 131072); /* unchanged */
    CHECK_ERR(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_MAX, 1000), GRIDOS_ERR_INVALID_ARGUMENT);

    v = 4242;
    CHECK_ERR(gridos_io_buffer_setopt(sock, 99, 1), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_buffer_getopt(sock, 0, &v), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_buffer_setopt(NULL, GRIDOS_BUFFER_SEND, 65536), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_buffer_getopt(NULL, GRIDOS_BUFFER_SEND, &v), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_SEND, NULL), GRIDOS_ERR_NULL);
    CHECK(v == 4242);

    /* Past net.core.wmem_max a buffer is forced, which needs CAP_NET_ADMIN. */
    limit = wmem_max();
    if (limit > ((size_t)256 << 20)) {
        printf("  skipped forcing: net.core.wmem_max is %zu\n", limit);
    } else {
        struct forced f;
        pthread_t t;
        f.sock = sock;
        f.request = limit + 65536;
        CHECK_OK(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_MAX, 4 * f.request));
        if (net_admin(0)) {
            CHECK_OK(gridos_io_buffer_setopt(sock, GRIDOS_BUFFER_SEND, f.request));
            CHECK_OK(gridos_io_buffer_getopt(sock, GRIDOS_BUFFER_SEND, &v));
            CHECK(v == 2 * f.request);
            printf("  forced SO_SNDBUF to %zu past wmem_max %zu\n", v, limit);
        }
        CHECK(pthread_create(&t, NULL, unprivileged_setopt, &f) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    gridos_socket_free(sock);
    close(c);
    close(s);
}

/* ---- zero-copy transfers ---- */

struct receiver {
    int sock, file;
    uint64_t offset, received;
};

static void *receive(void *arg) {
    struct receiver *r = arg;
    CHECK_OK(gridos_io_recv_file(r->sock, r->file, r->offset, &r->received));
    return NULL;
}

/* Sends `len` bytes of `in` at `in_off` to `out` at `out_off` over a fresh loopback TCP
 * connection, receiver in a thread. */
static void transfer(int in, uint64_t in_off, uint64_t len, int out, uint64_t out_off) {
    int c, s;
    uint64_t sent = 0;
    struct receiver r;
    pthread_t t;
    tcp_pair(&c, &s);
    r.sock = s;
    r.file = out;
    r.offset = out_off;
    r.received = 0;
    CHECK(pthread_create(&t, NULL, receive, &r) == 0);
    CHECK_OK(gridos_io_send_file(in, in_off, len, c, &sent));
    CHECK(shutdown(c, SHUT_WR) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(sent == len && r.received == len);
    close(c);
    close(s);
}

static void zero_copy(void) {
    char in_path[4096], out_path[4096], part_path[4096], copy_path[4096];
    int in, out, part, c, s, sv[2];
    uint8_t *chunk = malloc(CHUNK), z[777];
    uint64_t seed = 0x9e3779b97f4a7c15ULL, sum = FNV_START, sent = 31337, received = 31337;
    struct stat st;

    CHECK(chunk != NULL);
    if (UNDER_VALGRIND()) {
        printf("under valgrind: io.path = splice\n");
        CHECK_OK(gridos_config_set("io.path", "splice"));
    }
    printf("an 8 MiB file written with gridos_io_file_write\n");
    path_in(in_path, sizeof in_path, "in.bin");
    in = open(in_path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    CHECK(in >= 0);
    for (uint64_t off = 0; off < BIG; off += CHUNK) {
        size_t w = 0;
        for (size_t i = 0; i < CHUNK; i += 8) {
            uint64_t x = next_random(&seed);
            memcpy(chunk + i, &x, 8);
        }
        CHECK_OK(gridos_io_file_write(in, off, chunk, CHUNK, &w));
        CHECK(w == CHUNK);
        sum = fnv(sum, chunk, CHUNK);
    }
    CHECK(fstat(in, &st) == 0 && (uint64_t)st.st_size == BIG);
    CHECK(lseek(in, 0, SEEK_CUR) == 0); /* positional: the file offset did not move */
    CHECK(file_sum(in, 0, BIG) == sum);

    printf("send_file -> recv_file over loopback TCP, 8 MiB\n");
    path_in(out_path, sizeof out_path, "out.bin");
    out = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(out >= 0);
    transfer(in, 0, BIG, out, 0);
    CHECK(fstat(out, &st) == 0 && (uint64_t)st.st_size == BIG);
    CHECK(file_sum(out, 0, BIG) == sum);

    printf("a range: 1 MiB from offset 12345 into offset 777 of another file\n");
    path_in(part_path, sizeof part_path, "part.bin");
    part = open(part_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(part >= 0);
    {
        size_t w = 0, got = 0;
        memset(z, 'z', sizeof z);
        CHECK_OK(gridos_io_file_write(part, 0, z, sizeof z, &w));
        transfer(in, 12345, CHUNK, part, sizeof z);
        CHECK(file_sum(part, sizeof z, CHUNK) == file_sum(in, 12345, CHUNK));
        memset(z, 0, sizeof z);
        CHECK_OK(gridos_io_file_read(part, 0, z, sizeof z, &got));
        CHECK(got == sizeof z && z[0] == 'z' && z[sizeof z - 1] == 'z'); /* untouched */
        CHECK(fstat(part, &st) == 0 && (uint64_t)st.st_size == sizeof z + CHUNK);
    }

    printf("bad arguments of send_file and recv_file\n");
    tcp_pair(&c, &s);
    CHECK_ERR(gridos_io_send_file(-1, 0, 1, c, &sent), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_send_file(closed_fd(), 0, 1, c, &sent), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_send_file(in, 0, 1, -1, &sent), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_send_file(in, 0, 1, closed_fd(), &sent), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_send_file(c, 0, 1, in, &sent), GRIDOS_ERR_INVALID_ARGUMENT); /* swapped */
    CHECK_ERR(gridos_io_send_file(in, BIG - 10, 11, c, &sent), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_send_file(in, UINT64_MAX, 2, c, &sent), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_send_file(in, 0, 1, c, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_recv_file(s, out, 0, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_recv_file(-1, out, 0, &received), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_recv_file(closed_fd(), out, 0, &received), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_recv_file(out, s, 0, &received), GRIDOS_ERR_INVALID_ARGUMENT); /* swapped */
    CHECK_ERR(gridos_io_recv_file(s, -1, 0, &received), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_recv_file(s, closed_fd(), 0, &received), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_recv_file(s, out, UINT64_MAX, &received), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(sent == 31337 && received == 31337);
    {
        /* Nothing went over the connection in all that. */
        uint8_t b;
        CHECK(recv(s, &b, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN);
    }
    close(c);
    close(s);

    printf("send_file to a peer that went away: an error, not SIGPIPE\n");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    CHECK_ERR(gridos_io_send_file(in, 0, BIG, sv[0], &sent), GRIDOS_ERR_NETWORK);
    close(sv[0]);

    printf("gridos_file_copy of the 8 MiB file\n");
    path_in(copy_path, sizeof copy_path, "copy.bin");
    {
        uint64_t bytes = 0;
        int cp;
        CHECK_OK(gridos_file_copy(in_path, copy_path, &bytes));
        CHECK(bytes == BIG);
        cp = open(copy_path, O_RDONLY);
        CHECK(cp >= 0);
        CHECK(fstat(cp, &st) == 0 && (uint64_t)st.st_size == BIG);
        CHECK((st.st_mode & 0777) == 0640); /* permission bits kept */
        CHECK(file_sum(cp, 0, BIG) == sum);
        close(cp);
    }
    {
        char missing[4096], nodir[4096];
        const char bad[] = {'/', 't', 'm', 'p', '/', (char)0xff, 0};
        uint64_t bytes = 99;
        path_in(missing, sizeof missing, "no-such-file");
        path_in(nodir, sizeof nodir, "no-such-dir/copy.bin");
        CHECK_ERR(gridos_file_copy(missing, copy_path, &bytes), GRIDOS_ERR_NOT_FOUND);
        {
            int cp = open(copy_path, O_RDONLY);
            CHECK(cp >= 0);
            CHECK(file_sum(cp, 0, BIG) == sum); /* the earlier copy is intact */
            close(cp);
        }
        CHECK_ERR(gridos_file_copy(in_path, missing, NULL), GRIDOS_ERR_NULL);
        CHECK(stat(missing, &st) != 0); /* nothing made */
        CHECK_ERR(gridos_file_copy(in_path, nodir, &bytes), GRIDOS_ERR_NOT_FOUND);
        CHECK_ERR(gridos_file_copy(dir, copy_path, &bytes), GRIDOS_ERR_IO); /* a directory */
        CHECK_ERR(gridos_file_copy(NULL, copy_path, &bytes), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_file_copy(in_path, NULL, &bytes), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_file_copy(bad, copy_path, &bytes), GRIDOS_ERR_INVALID_UTF8);
        CHECK(bytes == 99);
    }
    free(chunk);
    close(in);
    close(out);
    close(part);
}

/* ---- positional file reads and writes ---- */

static void file_calls(void) {
    char path[4096];
    int fd, ro, wo, d;
    uint8_t buf[256];
    size_t got = 0, w = 0;

    printf("file_read / file_write at offsets\n");
    path_in(path, sizeof path, "rw.bin");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_OK(gridos_io_file_write(fd, 100, (const uint8_t *)"abcdef", 6, &w));
    CHECK(w == 6);
    memset(buf, 'x', sizeof buf);
    CHECK_OK(gridos_io_file_read(fd, 0, buf, sizeof buf, &got));
    CHECK(got == 106); /* short only at the end of the file */
    CHECK(buf[0] == 0 && buf[99] == 0 && memcmp(buf + 100, "abcdef", 6) == 0 && buf[106] == 'x');
    CHECK_OK(gridos_io_file_read(fd, 106, buf, sizeof buf, &got));
    CHECK(got == 0);
    CHECK_OK(gridos_io_file_read(fd, 102, buf, 3, &got));
    CHECK(got == 3 && memcmp(buf, "cde", 3) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0);

    printf("bad arguments of file_read and file_write\n");
    ro = open(path, O_RDONLY);
    wo = open(path, O_WRONLY);
    d = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(ro >= 0 && wo >= 0 && d >= 0);
    got = 555;
    w = 555;
    CHECK_ERR(gridos_io_file_read(-1, 0, buf, sizeof buf, &got), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_file_read(closed_fd(), 0, buf, sizeof buf, &got),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_file_read(fd, 0, NULL, sizeof buf, &got), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_file_read(fd, 0, buf, sizeof buf, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_file_read(fd, UINT64_MAX - 1, buf, sizeof buf, &got),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_file_read(wo, 0, buf, sizeof buf, &got), GRIDOS_ERR_IO);
    CHECK_ERR(gridos_io_file_read(d, 0, buf, sizeof buf, &got), GRIDOS_ERR_IS_A_DIRECTORY);
    CHECK_ERR(gridos_io_file_write(-1, 0, buf, 1, &w), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_file_write(closed_fd(), 0, buf, 1, &w), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_file_write(fd, 0, NULL, 1, &w), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_file_write(fd, 0, buf, 1, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_io_file_write(fd, (uint64_t)INT64_MAX, buf, 1, &w),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_io_file_write(ro, 0, buf, 1, &w), GRIDOS_ERR_IO);
    CHECK(got == 555 && w == 555);
    CHECK_OK(gridos_io_file_read(fd, 0, buf, sizeof buf, &got));
    CHECK(got == 106 && memcmp(buf + 100, "abcdef", 6) == 0); /* unchanged */
    close(ro);
    close(wo);
    close(d);
    close(fd);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress stays in order with stderr */
    dir = getenv("GRIDOS_TEST_DIR");
    CHECK(dir != NULL);
    CHECK_OK(gridos_init());
    socket_calls();
    buffer_options();
    file_calls();
    zero_copy();
    printf("io ok\n");
    return 0;
}
