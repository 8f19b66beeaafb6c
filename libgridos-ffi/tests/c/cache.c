/* The cache: a URL on a server started with the C API added by two tags is fetched once
 * (the server's transfers_completed says so), the path holds the bytes, deletes drop
 * references until the file goes; a buffer too small still adds and says the size;
 * the default directory; bad URLs, missing files, NULLs. */
#include "mw.h"

#define SIZE (1u << 20)

int main(int argc, char **argv) {
    char docroot[4096], src[4096], dir[4096], defdir[4096], url[4200], missing_url[4200];
    char path[4096], again[4096], tiny[4];
    struct peer server;
    gridos_cache *cache = NULL, *other = NULL;
    size_t needed = 0;
    unsigned long long t0;

    peer_serve_if_asked(argc, argv);
    CHECK_OK(gridos_init());
    in_test_dir(docroot, sizeof docroot, "docroot");
    make_dir(docroot);
    in_test_dir(src, sizeof src, "docroot/input.bin");
    write_pattern(src, SIZE, 9);
    peer_start(&server, argv, docroot, 0);
    peer_url(url, sizeof url, &server, "input.bin");
    in_test_dir(dir, sizeof dir, "cache");

    CHECK_ERR(gridos_cache_open(dir, NULL), GRIDOS_ERR_NULL);
    CHECK_OK(gridos_cache_open(dir, &cache));
    CHECK(exists(dir));

    /* First add fetches, second (another tag) finds the copy. */
    t0 = peer_stat(&server, "transfers_completed");
    CHECK_OK(gridos_cache_add(cache, url, "job1", path, sizeof path, &needed));
    CHECK(needed == strlen(path) + 1);
    check_same(src, path, SIZE);
    CHECK(peer_stat(&server, "transfers_completed") == t0 + 1);
    CHECK_OK(gridos_cache_add(cache, url, "job2", again, sizeof again, NULL));
    CHECK(strcmp(path, again) == 0);
    CHECK(peer_stat(&server, "transfers_completed") == t0 + 1);
    printf("cached %s at %s, fetched once for two tags\n", url, path);

    /* A buffer too small: untouched, the size said, the entry added all the same (job3
     * holds it: deleting job3 works) and nothing fetched again. */
    memset(tiny, 'x', sizeof tiny);
    needed = 0;
    CHECK_ERR(gridos_cache_add(cache, url, "job3", tiny, sizeof tiny, &needed),
              GRIDOS_ERR_BUFFER_TOO_SMALL);
    CHECK(needed == strlen(path) + 1 && tiny[0] == 'x');
    CHECK(peer_stat(&server, "transfers_completed") == t0 + 1);

    /* A second handle on the same directory sees the same entries. */
    CHECK_OK(gridos_cache_open(dir, &other));
    CHECK_OK(gridos_cache_delete(other, url, "job3"));
    CHECK_ERR(gridos_cache_delete(other, url, "job3"), GRIDOS_ERR_NOT_FOUND);
    gridos_cache_free(other);

    /* Deletes: the file stays while a tag holds it. */
    CHECK_OK(gridos_cache_delete(cache, url, "job1"));
    check_same(src, path, SIZE);
    CHECK_OK(gridos_cache_delete(cache, url, "job2"));
    CHECK(!exists(path));
    CHECK_ERR(gridos_cache_delete(cache, url, "job2"), GRIDOS_ERR_NOT_FOUND);
    CHECK_ERR(gridos_cache_delete(cache, url, "never"), GRIDOS_ERR_NOT_FOUND);

    /* Bad input. */
    peer_url(missing_url, sizeof missing_url, &server, "missing.bin");
    CHECK_ERR(gridos_cache_add(cache, missing_url, "job1", path, sizeof path, NULL),
              GRIDOS_ERR_NOT_FOUND);
    CHECK_ERR(gridos_cache_add(cache, "nosuch://h/x", "job1", path, sizeof path, NULL),
              GRIDOS_ERR_INVALID_URL);
    CHECK_ERR(gridos_cache_add(NULL, url, "job1", path, sizeof path, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_cache_add(cache, NULL, "job1", path, sizeof path, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_cache_add(cache, url, NULL, path, sizeof path, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_cache_add(cache, url, "job1", NULL, 0, &needed), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_cache_delete(NULL, url, "job1"), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_cache_delete(cache, url, NULL), GRIDOS_ERR_NULL);
    CHECK(peer_stat(&server, "transfers_completed") == t0 + 1);
    gridos_cache_free(cache);
    gridos_cache_free(NULL);

    /* NULL: the default directory, here $GRIDOS_CACHE. */
    in_test_dir(defdir, sizeof defdir, "default-cache");
    CHECK(setenv("GRIDOS_CACHE", defdir, 1) == 0);
    cache = NULL;
    CHECK_OK(gridos_cache_open(NULL, &cache));
    CHECK(exists(defdir));
    CHECK_OK(gridos_cache_add(cache, url, "job1", path, sizeof path, NULL));
    CHECK(strncmp(path, defdir, strlen(defdir)) == 0);
    check_same(src, path, SIZE);
    CHECK_OK(gridos_cache_delete(cache, url, "job1"));
    gridos_cache_free(cache);

    peer_stop(&server);
    printf("cache ok\n");
    return 0;
}
