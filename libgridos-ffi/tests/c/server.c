/* The FTP server through the C API: configured key by key, started on a free port,
 * a file uploaded and downloaded through it with gridos_copy and compared byte for byte,
 * its stats read as JSON, stopped. Bad keys, values and NULLs. */
#include "mw.h"

#define SIZE (8u << 20)

struct seen {
    int calls;
    uint64_t done, total;
    int backwards;
};

static int on_progress(void *user, uint64_t done, uint64_t total) {
    struct seen *s = user;
    if (done < s->done || (total != 0 && done > total))
        s->backwards = 1;
    s->calls++;
    s->done = done;
    s->total = total;
    return 0;
}

int main(int argc, char **argv) {
    char docroot[4096], src[4096], dst[4096], up[4096], url[4200], stopped_url[4200];
    struct peer peer;
    gridos_ftp_server_config *cfg = NULL;
    gridos_ftp_server *server = NULL;
    gridos_copy_options *opts = NULL;
    struct seen seen = {0, 0, 0, 0};
    char *json = NULL;

    peer_serve_if_asked(argc, argv);
    CHECK_OK(gridos_init());
    in_test_dir(docroot, sizeof docroot, "docroot");
    make_dir(docroot);

    /* Configuration: keys with and without the ftp. prefix; refusals change nothing. */
    CHECK_ERR(gridos_ftp_server_config_new(NULL, &cfg), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_config_new(docroot, NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_config_new("", &cfg), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(cfg == NULL); /* out-parameters are written only on success */
    CHECK_OK(gridos_ftp_server_config_new(docroot, &cfg));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "listen", "127.0.0.1:0"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "anonymous", "yes"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "anonymous_write", "on"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "ftp.threads", "2"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "ftp.io_threads", "2"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "idle_timeout", "60"));
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "ftp.no_such_key", "1"), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "chroot", "1"), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "listen", "nowhere"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "anonymous", "maybe"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "threads", "0"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "pasv_ports", "9-1"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_ftp_server_config_set(NULL, "anonymous", "1"), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, NULL, "1"), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "anonymous", NULL), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_start(NULL, &server), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_start(cfg, NULL), GRIDOS_ERR_NULL);

    CHECK_OK(gridos_ftp_server_start(cfg, &server));
    gridos_ftp_server_config_free(cfg); /* the server keeps its own copy */
    gridos_ftp_server_config_free(NULL);
    CHECK(gridos_ftp_server_port(server) != 0);
    CHECK(gridos_ftp_server_port(NULL) == 0);
    printf("server on port %u\n", (unsigned)gridos_ftp_server_port(server));

    /* A missing docroot is refused at start. */
    {
        gridos_ftp_server_config *c2 = NULL;
        gridos_ftp_server *s2 = NULL;
        char missing[4096];
        in_test_dir(missing, sizeof missing, "no-such-dir");
        CHECK_OK(gridos_ftp_server_config_new(missing, &c2));
        CHECK_ERR(gridos_ftp_server_start(c2, &s2), GRIDOS_ERR_NOT_FOUND);
        CHECK(s2 == NULL);
        gridos_ftp_server_config_free(c2);
    }

    /* The transfers go through this server, or under valgrind through the same server
     * started with the same calls in a child process (see mw.h). */
    if (getenv("GRIDOS_TEST_SERVER_CHILD") != NULL) {
        peer_start(&peer, argv, docroot, 1);
    } else {
        memset(&peer, 0, sizeof peer);
        peer.server = server;
        peer.port = gridos_ftp_server_port(server);
    }

    /* Upload, then download with options and progress; both byte for byte. */
    in_test_dir(src, sizeof src, "src.bin");
    in_test_dir(dst, sizeof dst, "down.bin");
    in_test_dir(up, sizeof up, "docroot/up.bin");
    write_pattern(src, SIZE, 7);
    peer_url(url, sizeof url, &peer, "up.bin");
    CHECK_OK(gridos_copy(src, url, NULL, NULL, NULL));
    check_same(src, up, SIZE);
    printf("uploaded %u bytes to %s, same bytes in the docroot\n", SIZE, url);

    CHECK_OK(gridos_copy_options_new(&opts));
    CHECK_OK(gridos_copy_options_set(opts, "verify", ""));
    CHECK_OK(gridos_copy_options_set(opts, "parallel", "2"));
    CHECK_OK(gridos_copy(url, dst, opts, on_progress, &seen));
    gridos_copy_options_free(opts);
    check_same(src, dst, SIZE);
    CHECK(seen.calls >= 2 && !seen.backwards);
    CHECK(seen.done == SIZE && seen.total == SIZE);
    printf("downloaded and verified (MD5), %d progress calls\n", seen.calls);

    /* The server counted both transfers and the bytes. */
    CHECK(peer_stat(&peer, "transfers_completed") >= 2);
    CHECK(peer_stat(&peer, "bytes_received") == SIZE);
    CHECK(peer_stat(&peer, "bytes_sent") >= SIZE);
    CHECK(peer_stat(&peer, "clients_total") >= 2);
    if (peer.pid != 0)
        peer_stop(&peer);
    CHECK_OK(gridos_ftp_server_stats_json(server, &json));
    printf("stats %s\n", json);
    CHECK(json[0] == '{' && strstr(json, "\"io.path\":\"") != NULL &&
          strstr(json, "\"transfers_failed\":0") != NULL);
    gridos_string_free(json);
    json = NULL;
    CHECK_ERR(gridos_ftp_server_stats_json(NULL, &json), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_ftp_server_stats_json(server, NULL), GRIDOS_ERR_NULL);
    CHECK(json == NULL);

    url_of(stopped_url, sizeof stopped_url, server, "up.bin");
    gridos_ftp_server_stop(server);
    gridos_ftp_server_stop(NULL);

    /* Stopped: nothing listens there any more. */
    CHECK_ERR(gridos_copy(stopped_url, dst, NULL, NULL, NULL), GRIDOS_ERR_NETWORK);
    printf("server ok\n");
    return 0;
}
