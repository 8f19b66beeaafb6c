/* gridos_copy: options set and refused, progress calls, cancelling from the progress
 * callback (before and while data moves) leaves no destination file, bad URLs and missing
 * sources. A server started with the C API is the peer. */
#include "mw.h"

#define SMALL (4u << 20)
/* Sparse on the server's side (ftruncate, a few written blocks): costs no disk there. */
#define BIG (256ull << 20)

struct seen {
    int calls, backwards;
    uint64_t done, total;
    /* 0: never cancel; 1: cancel on the first call; 2: on the first with 0 < done < total. */
    int cancel;
    int cancelled_at_call;
    uint64_t cancelled_at;
};

static int on_progress(void *user, uint64_t done, uint64_t total) {
    struct seen *s = user;
    if (s->cancelled_at_call != 0)
        s->backwards = 1; /* no call may follow a cancel */
    if (done < s->done || (total != 0 && done > total))
        s->backwards = 1;
    s->calls++;
    s->done = done;
    s->total = total;
    if (s->cancel == 1 || (s->cancel == 2 && done > 0 && done < total)) {
        s->cancelled_at_call = s->calls;
        s->cancelled_at = done;
        return 1;
    }
    return 0;
}

/* A file of `size` bytes that is mostly a hole, with pattern blocks at a few offsets. */
static void make_sparse(const char *path, uint64_t size) {
    unsigned char block[4096];
    uint64_t at;
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644), i;
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0)
        FAIL("creating %s: %s", path, strerror(errno));
    for (at = 0; at < size; at += size / 8) {
        for (i = 0; i < (int)sizeof block; i++)
            block[i] = pattern_byte(at + (uint64_t)i, 3);
        if (pwrite(fd, block, sizeof block, (off_t)at) != (ssize_t)sizeof block)
            FAIL("writing %s: %s", path, strerror(errno));
    }
    close(fd);
}

int main(int argc, char **argv) {
    char docroot[4096], src[4096], dst[4096], out_dir[4096], url[4200], big_url[4200],
        missing_url[4200];
    struct peer server;
    gridos_copy_options *opts = NULL;
    struct seen seen;

    peer_serve_if_asked(argc, argv);
    CHECK_OK(gridos_init());
    in_test_dir(docroot, sizeof docroot, "docroot");
    make_dir(docroot);
    in_test_dir(out_dir, sizeof out_dir, "out");
    make_dir(out_dir);
    peer_start(&server, argv, docroot, 0);

    /* Options: every key of gridos cp, values in the CLI's forms. */
    CHECK_ERR(gridos_copy_options_new(NULL), GRIDOS_ERR_NULL);
    CHECK_OK(gridos_copy_options_new(&opts));
    CHECK_OK(gridos_copy_options_set(opts, "recursive", "yes"));
    CHECK_OK(gridos_copy_options_set(opts, "recursive", "off"));
    CHECK_OK(gridos_copy_options_set(opts, "resume", "0"));
    CHECK_OK(gridos_copy_options_set(opts, "verify", "SHA256"));
    CHECK_OK(gridos_copy_options_set(opts, "verify", "none"));
    CHECK_OK(gridos_copy_options_set(opts, "verify", ""));
    CHECK_OK(gridos_copy_options_set(opts, "parallel", "4"));
    CHECK_OK(gridos_copy_options_set(opts, "tcp-bs", "4MiB"));
    CHECK_OK(gridos_copy_options_set(opts, "tcp_bs", "auto"));
    CHECK_OK(gridos_copy_options_set(opts, "block-size", "256k"));
    CHECK_OK(gridos_copy_options_set(opts, "compress", "false"));
    CHECK_OK(gridos_copy_options_set(opts, "pipeline", "true"));
    CHECK_OK(gridos_copy_options_set(opts, "no-pipeline", "TRUE"));
    CHECK_OK(gridos_copy_options_set(opts, "active", "no"));
    CHECK_OK(gridos_copy_options_set(opts, "preserve", "1"));
    CHECK_OK(gridos_copy_options_set(opts, "no-relay", "on"));
    CHECK_OK(gridos_copy_options_set(opts, "host-memory", "off"));
    CHECK_OK(gridos_copy_options_set(opts, "host_memory", "/tmp/gridos-c-hosts.json"));
    CHECK_OK(gridos_copy_options_set(opts, "host-memory", "default"));
    CHECK_ERR(gridos_copy_options_set(opts, "host-memory", ""), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "bogus", "1"), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_copy_options_set(opts, "progress", "1"), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_copy_options_set(opts, "recursive", "maybe"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "parallel", "0"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "parallel", "65"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "tcp-bs", "12 parsecs"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "block-size", "0"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "verify", "CRC99"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(NULL, "resume", "1"), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_copy_options_set(opts, NULL, "1"), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_copy_options_set(opts, "resume", NULL), GRIDOS_ERR_NULL);
    gridos_copy_options_free(opts);
    gridos_copy_options_free(NULL);

    /* Progress: a start call with the total, the end with every byte. */
    in_test_dir(src, sizeof src, "docroot/small.bin");
    write_pattern(src, SMALL, 11);
    peer_url(url, sizeof url, &server, "small.bin");
    in_test_dir(dst, sizeof dst, "out/small.bin");
    memset(&seen, 0, sizeof seen);
    CHECK_OK(gridos_copy(url, dst, NULL, on_progress, &seen));
    check_same(src, dst, SMALL);
    CHECK(seen.calls >= 2 && !seen.backwards);
    CHECK(seen.done == SMALL && seen.total == SMALL);
    printf("downloaded %u bytes, %d progress calls\n", SMALL, seen.calls);
    CHECK(remove(dst) == 0);

    /* Options reach the copy: offset and length copy one part, and go together. */
    CHECK_OK(gridos_copy_options_new(&opts));
    CHECK_OK(gridos_copy_options_set(opts, "offset", "1k"));
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_OK(gridos_copy_options_set(opts, "length", "4096"));
    CHECK_OK(gridos_copy(url, dst, opts, NULL, NULL));
    gridos_copy_options_free(opts);
    {
        size_t n, i;
        unsigned char *part = read_all(dst, &n);
        CHECK(n == 1024 + 4096); /* the part lands at its own offset */
        for (i = 1024; i < n; i++)
            CHECK(part[i] == pattern_byte(i, 11));
        free(part);
    }
    CHECK(remove(dst) == 0);

    /* Cancelled on the first call (before any data moves): no file appears. */
    in_test_dir(src, sizeof src, "docroot/big.bin");
    make_sparse(src, BIG);
    peer_url(big_url, sizeof big_url, &server, "big.bin");
    in_test_dir(dst, sizeof dst, "out/big.bin");
    memset(&seen, 0, sizeof seen);
    seen.cancel = 1;
    CHECK_ERR(gridos_copy(big_url, dst, NULL, on_progress, &seen), GRIDOS_ERR_CANCELLED);
    CHECK(seen.calls == 1 && seen.total == BIG && !seen.backwards);
    CHECK(!exists(dst) && entries_in(out_dir) == 0);

    /* Cancelled while data moves (small TCP buffers and one stream keep it going for
     * longer than a progress tick): the partial download is not left as the file. */
    CHECK_OK(gridos_copy_options_new(&opts));
    CHECK_OK(gridos_copy_options_set(opts, "tcp-bs", "16k"));
    CHECK_OK(gridos_copy_options_set(opts, "parallel", "1"));
    memset(&seen, 0, sizeof seen);
    seen.cancel = 2;
    CHECK_ERR(gridos_copy(big_url, dst, opts, on_progress, &seen), GRIDOS_ERR_CANCELLED);
    gridos_copy_options_free(opts);
    CHECK(seen.cancelled_at > 0 && seen.cancelled_at < BIG && !seen.backwards);
    CHECK(!exists(dst) && entries_in(out_dir) == 0);
    printf("cancelled at %llu of %llu bytes: no file at %s\n",
           (unsigned long long)seen.cancelled_at, (unsigned long long)BIG, dst);

    /* Bad URLs, missing sources, NULLs. */
    CHECK_ERR(gridos_copy("nosuch://host/x", dst, NULL, NULL, NULL), GRIDOS_ERR_INVALID_URL);
    CHECK_ERR(gridos_copy(url, "ftp://", NULL, NULL, NULL), GRIDOS_ERR_INVALID_URL);
    CHECK_ERR(gridos_copy("", dst, NULL, NULL, NULL), GRIDOS_ERR_INVALID_URL);
    peer_url(missing_url, sizeof missing_url, &server, "missing.bin");
    CHECK_ERR(gridos_copy(missing_url, dst, NULL, NULL, NULL), GRIDOS_ERR_NOT_FOUND);
    in_test_dir(src, sizeof src, "no-such-file");
    CHECK_ERR(gridos_copy(src, dst, NULL, NULL, NULL), GRIDOS_ERR_NOT_FOUND);
    CHECK_ERR(gridos_copy(NULL, dst, NULL, NULL, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_copy(url, NULL, NULL, NULL, NULL), GRIDOS_ERR_NULL);
    CHECK(!exists(dst) && entries_in(out_dir) == 0);

    peer_stop(&server);
    printf("copy ok\n");
    return 0;
}
