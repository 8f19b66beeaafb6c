/* GASS files: a URL on a server started with the C API written ("w"), read and sought
 * ("r"), appended to ("a"); data appears at the URL only on close; a write-back the
 * server refuses is reported by close; bad modes, whence values and NULLs. */
#include "mw.h"

#define BODY (1u << 20)

int main(int argc, char **argv) {
    char docroot[4096], url[4200], ro_url[4200], path[4096], local[4096];
    struct peer rw, ro;
    gridos_file *f = NULL;
    unsigned char *body, buf[64];
    size_t n, i, len;
    uint64_t pos = 0;

    peer_serve_if_asked(argc, argv);
    CHECK_OK(gridos_init());
    in_test_dir(docroot, sizeof docroot, "docroot");
    make_dir(docroot);
    peer_start(&rw, argv, docroot, 1);
    peer_start(&ro, argv, docroot, 0); /* the same files, read-only */

    body = malloc(BODY);
    CHECK(body != NULL);
    for (i = 0; i < BODY; i++)
        body[i] = pattern_byte(i, 5);

    /* "w": nothing at the URL until close, then all of it. */
    peer_url(url, sizeof url, &rw, "notes.bin");
    in_test_dir(path, sizeof path, "docroot/notes.bin");
    CHECK_OK(gridos_file_open(url, "w", &f));
    CHECK_OK(gridos_file_write(f, body, 100, &n));
    CHECK(n == 100);
    CHECK_OK(gridos_file_write(f, body + 100, BODY - 100, NULL));
    CHECK_OK(gridos_file_write(f, body, 0, &n)); /* nothing to write is fine */
    CHECK(n == 0);
    CHECK(!exists(path));
    CHECK_ERR(gridos_file_read(f, buf, sizeof buf, &n), GRIDOS_ERR_IO); /* opened to write */
    CHECK_OK(gridos_file_close(f));
    check_content(path, body, BODY);
    printf("wrote %u bytes to %s\n", BODY, url);

    /* "r": read, seek from the start, the current position and the end. */
    CHECK_OK(gridos_file_open(url, "rb", &f));
    CHECK_OK(gridos_file_read(f, buf, 10, &n));
    CHECK(n == 10 && memcmp(buf, body, 10) == 0);
    CHECK_OK(gridos_file_seek(f, 1000, SEEK_SET, &pos));
    CHECK(pos == 1000);
    CHECK_OK(gridos_file_read(f, buf, sizeof buf, &n));
    CHECK(n == sizeof buf && memcmp(buf, body + 1000, sizeof buf) == 0);
    CHECK_OK(gridos_file_seek(f, -64, SEEK_CUR, &pos));
    CHECK(pos == 1000);
    CHECK_OK(gridos_file_seek(f, -5, SEEK_END, NULL));
    CHECK_OK(gridos_file_seek(f, 0, SEEK_CUR, &pos));
    CHECK(pos == BODY - 5);
    CHECK_OK(gridos_file_read(f, buf, sizeof buf, &n)); /* short: the end */
    CHECK(n == 5 && memcmp(buf, body + BODY - 5, 5) == 0);
    CHECK_OK(gridos_file_read(f, buf, sizeof buf, &n));
    CHECK(n == 0);
    CHECK_OK(gridos_file_read(f, NULL, 0, &n));
    CHECK(n == 0);
    pos = 42;
    CHECK_ERR(gridos_file_seek(f, -1, SEEK_SET, &pos), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_file_seek(f, -(int64_t)BODY - 1, SEEK_END, &pos), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_file_seek(f, 0, 42, &pos), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(pos == 42);
    CHECK_ERR(gridos_file_write(f, body, 10, &n), GRIDOS_ERR_IO); /* opened to read */
    CHECK_ERR(gridos_file_read(f, buf, sizeof buf, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_file_read(f, NULL, 1, &n), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_file_read(NULL, buf, 1, &n), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_file_write(NULL, buf, 1, &n), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_file_seek(NULL, 0, SEEK_SET, &pos), GRIDOS_ERR_NULL);
    CHECK_OK(gridos_file_close(f));
    printf("read and sought %s\n", url);

    /* "a": every write at the end, whatever a seek did; appears on close. */
    CHECK_OK(gridos_file_open(url, "a", &f));
    CHECK_OK(gridos_file_seek(f, 0, SEEK_SET, NULL));
    CHECK_OK(gridos_file_write(f, (const uint8_t *)", world", 7, &n));
    check_content(path, body, BODY); /* unchanged until close */
    CHECK_OK(gridos_file_close(f));
    {
        unsigned char *got = read_all(path, &len);
        CHECK(len == BODY + 7 && memcmp(got, body, BODY) == 0 &&
              memcmp(got + BODY, ", world", 7) == 0);
        free(got);
    }
    /* "a" on a missing file creates it. */
    peer_url(url, sizeof url, &rw, "new.txt");
    CHECK_OK(gridos_file_open(url, "a", &f));
    CHECK_OK(gridos_file_write(f, (const uint8_t *)"hello", 5, NULL));
    CHECK_OK(gridos_file_close(f));
    in_test_dir(path, sizeof path, "docroot/new.txt");
    check_content(path, "hello", 5);
    printf("appended\n");

    /* A local path follows the same contract. */
    in_test_dir(local, sizeof local, "local.txt");
    CHECK_OK(gridos_file_open(local, "w", &f));
    CHECK_OK(gridos_file_write(f, (const uint8_t *)"abc", 3, NULL));
    CHECK(!exists(local));
    CHECK_OK(gridos_file_close(f));
    check_content(local, "abc", 3);

    /* Write-back refused: the read-only server takes the open (it may be read), refuses
     * the upload, and close says so; the file keeps its old content. Freed all the same. */
    peer_url(ro_url, sizeof ro_url, &ro, "new.txt");
    CHECK_OK(gridos_file_open(ro_url, "w", &f));
    CHECK_OK(gridos_file_write(f, (const uint8_t *)"overwritten", 11, NULL));
    {
        gridos_result r = gridos_file_close(f);
        /* The message is the refused upload's (our server answers 550 to the STOR). */
        CHECK(r != GRIDOS_OK && strstr(gridos_last_error_message(), "STOR") != NULL);
        printf("  as expected, close failed (%d): %s\n", (int)r, gridos_last_error_message());
    }
    check_content(path, "hello", 5);
    CHECK(entries_in(docroot) == 2); /* notes.bin and new.txt: no temporary left */

    /* Bad modes, URLs, missing files, NULLs. */
    f = NULL;
    CHECK_ERR(gridos_file_open(url, "x", &f), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_file_open(url, "r+", &f), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_file_open(url, "", &f), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_file_open("nosuch://h/x", "r", &f), GRIDOS_ERR_INVALID_URL);
    peer_url(url, sizeof url, &rw, "missing.bin");
    CHECK_ERR(gridos_file_open(url, "r", &f), GRIDOS_ERR_NOT_FOUND);
    peer_url(url, sizeof url, &rw, "no-dir/x.bin");
    CHECK_ERR(gridos_file_open(url, "w", &f), GRIDOS_ERR_NOT_FOUND);
    CHECK_ERR(gridos_file_open(NULL, "r", &f), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_file_open(local, NULL, &f), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_file_open(local, "r", NULL), GRIDOS_ERR_NULL);
    CHECK(f == NULL);
    CHECK_ERR(gridos_file_close(NULL), GRIDOS_ERR_NULL);

    free(body);
    peer_stop(&ro);
    peer_stop(&rw);
    printf("gfile ok\n");
    return 0;
}
