/* FTPS through the C API: a server started with tls=required and the certificate the
 * Rust harness made (GRIDOS_TEST_TLS_CERT/KEY, signed by the CA in GRIDOS_TEST_CA); a
 * file uploaded and downloaded with gridos_copy over ftpes://, ftp:// with tls=1 and
 * gridftp:// (MODE E) with tls.cacert, byte for byte. Without tls.cacert the system's
 * roots (SSL_CERT_FILE: a CA that did not sign the server's certificate) refuse it:
 * GRIDOS_ERR_TLS naming the unknown issuer; tls.insecure=true works; a client
 * certificate (tls.cert, tls.key) logs in through the grid-mapfile. Options and server
 * keys refused, and a server without TLS when TLS is required. */
#include "mw.h"

#define SIZE (1u << 20)

static const char *env_of(const char *name) {
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        FAIL("%s is not set", name);
    return v;
}

/* Whether `text` contains `part`; says what it looked for when not. */
static int mentions(const char *text, const char *part) {
    if (strstr(text, part) != NULL)
        return 1;
    fprintf(stderr, "expected %s in: %s\n", part, text);
    return 0;
}

/* A server on 127.0.0.1 at a free port serving `docroot` to anonymous users who may
 * write. `tls` "required": every login and data connection needs TLS, the harness's
 * certificate, client certificates of its CA log in through its grid-mapfile; "off": no
 * TLS at all. */
static gridos_ftp_server *start_tls_server(const char *docroot, const char *tls) {
    gridos_ftp_server_config *cfg = NULL;
    gridos_ftp_server *server = NULL;
    CHECK_OK(gridos_ftp_server_config_new(docroot, &cfg));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "listen", "127.0.0.1:0"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "anonymous", "true"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "anonymous_write", "true"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "ftp.tls", tls));
    if (strcmp(tls, "off") != 0) {
        CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_cert", env_of("GRIDOS_TEST_TLS_CERT")));
        CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_key", env_of("GRIDOS_TEST_TLS_KEY")));
        CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_client_ca", env_of("GRIDOS_TEST_CA")));
        CHECK_OK(gridos_ftp_server_config_set(cfg, "grid_mapfile",
                                              env_of("GRIDOS_TEST_GRID_MAPFILE")));
        CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_data_reuse", "true"));
        CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_handshake_timeout", "20"));
    }
    CHECK_OK(gridos_ftp_server_start(cfg, &server));
    gridos_ftp_server_config_free(cfg);
    CHECK(gridos_ftp_server_port(server) != 0);
    return server;
}

/* A server of start_tls_server: in this process, or — with GRIDOS_TEST_SERVER_CHILD, as
 * for the valgrind runs (valgrind 3.19 does not know openat2(2)) — in a child running
 * this program with `--serve DOCROOT TLS`, which valgrind does not trace. */
struct tls_peer {
    gridos_ftp_server *server;
    pid_t pid;
    FILE *to, *from;
    unsigned port;
};

/* The child's side: prints the port, serves until its stdin closes. */
static void serve_if_asked(int argc, char **argv) {
    gridos_ftp_server *server;
    char line[64];
    if (argc != 4 || strcmp(argv[1], "--serve") != 0)
        return;
    CHECK_OK(gridos_init());
    server = start_tls_server(argv[2], argv[3]);
    printf("%u\n", (unsigned)gridos_ftp_server_port(server));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
    }
    gridos_ftp_server_stop(server);
    exit(0);
}

static void tls_peer_start(struct tls_peer *p, char **argv, const char *docroot,
                           const char *tls) {
    int in[2], out[2];
    memset(p, 0, sizeof *p);
    if (getenv("GRIDOS_TEST_SERVER_CHILD") == NULL) {
        p->server = start_tls_server(docroot, tls);
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
        args[3] = (char *)tls;
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
    if (p->to == NULL || p->from == NULL || fscanf(p->from, "%u", &p->port) != 1 ||
        p->port == 0)
        FAIL("the server child did not start");
    printf("server child %d (tls %s) on port %u\n", (int)p->pid, tls, p->port);
}

static void tls_peer_stop(struct tls_peer *p) {
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

/* `out` = SCHEME://[USERINFO@]127.0.0.1:PORT/name. */
static void url_at(char *out, size_t len, const char *scheme, const char *userinfo,
                   const struct tls_peer *p, const char *name) {
    int n = snprintf(out, len, "%s://%s%s127.0.0.1:%u/%s", scheme, userinfo ? userinfo : "",
                     userinfo ? "@" : "", p->port, name);
    if (n < 0 || (size_t)n >= len)
        FAIL("URL too long");
}

/* New options with `key`=`value` pairs (a NULL key ends them). */
static gridos_copy_options *options(const char *const *kv) {
    gridos_copy_options *o = NULL;
    CHECK_OK(gridos_copy_options_new(&o));
    for (; kv[0] != NULL; kv += 2)
        CHECK_OK(gridos_copy_options_set(o, kv[0], kv[1]));
    return o;
}

int main(int argc, char **argv) {
    char docroot[4096], src[4096], up[4096], dst[4096], bogus[4096], missing[4096],
        url[4300];
    const char *ca, *client_cert, *client_key;
    struct tls_peer tls, plain;
    gridos_copy_options *opts = NULL;
    gridos_ftp_server_config *cfg = NULL;
    gridos_ftp_server *none = NULL;
    gridos_file *f = NULL;

    serve_if_asked(argc, argv);
    CHECK_OK(gridos_init());
    ca = env_of("GRIDOS_TEST_CA");
    client_cert = env_of("GRIDOS_TEST_CLIENT_CERT");
    client_key = env_of("GRIDOS_TEST_CLIENT_KEY");
    in_test_dir(docroot, sizeof docroot, "docroot");
    make_dir(docroot);
    in_test_dir(bogus, sizeof bogus, "not-a-certificate.pem");
    write_pattern(bogus, 100, 1);
    in_test_dir(missing, sizeof missing, "no-such-ca.pem");

    /* Copy options: the TLS keys, their values, and refusals. */
    CHECK_OK(gridos_copy_options_new(&opts));
    CHECK_OK(gridos_copy_options_set(opts, "tls", "yes"));
    CHECK_OK(gridos_copy_options_set(opts, "tls", "0"));
    CHECK_OK(gridos_copy_options_set(opts, "tls.insecure", "false"));
    CHECK_OK(gridos_copy_options_set(opts, "tls.cacert", ca));
    CHECK_OK(gridos_copy_options_set(opts, "tls.cacert", ""));
    CHECK_OK(gridos_copy_options_set(opts, "tls.cert", client_cert));
    CHECK_OK(gridos_copy_options_set(opts, "tls.key", client_key));
    CHECK_ERR(gridos_copy_options_set(opts, "tls", "maybe"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "tls.insecure", "very"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_copy_options_set(opts, "tls.bogus", "1"), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_copy_options_set(opts, "cacert", ca), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK(mentions(gridos_last_error_message(), "tls.cacert"));
    gridos_copy_options_free(opts);

    /* Server keys: a policy that needs a certificate, files that are not usable. */
    CHECK_OK(gridos_ftp_server_config_new(docroot, &cfg));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "listen", "127.0.0.1:0"));
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "tls", "sometimes"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_ftp_server_config_set(cfg, "implicit_tls", "port 990"),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_OK(gridos_ftp_server_config_set(cfg, "tls", "required"));
    CHECK_ERR(gridos_ftp_server_start(cfg, &none), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), "no certificate"));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_cert", bogus));
    CHECK_ERR(gridos_ftp_server_start(cfg, &none), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_key", env_of("GRIDOS_TEST_TLS_KEY")));
    CHECK_ERR(gridos_ftp_server_start(cfg, &none), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), bogus));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_cert", env_of("GRIDOS_TEST_TLS_CERT")));
    CHECK_OK(gridos_ftp_server_config_set(cfg, "tls_client_ca", missing));
    CHECK_ERR(gridos_ftp_server_start(cfg, &none), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), missing));
    CHECK(none == NULL);
    gridos_ftp_server_config_free(cfg);

    tls_peer_start(&tls, argv, docroot, "required");
    tls_peer_start(&plain, argv, docroot, "off");

    /* Up and down over explicit FTPS, the server's certificate checked against the CA. */
    in_test_dir(src, sizeof src, "src.bin");
    write_pattern(src, SIZE, 7);
    in_test_dir(up, sizeof up, "docroot/up.bin");
    {
        const char *kv[] = {"tls.cacert", ca, NULL};
        opts = options(kv);
    }
    url_at(url, sizeof url, "ftpes", NULL, &tls, "up.bin");
    CHECK_OK(gridos_copy(src, url, opts, NULL, NULL));
    check_same(src, up, SIZE);
    in_test_dir(dst, sizeof dst, "down.bin");
    CHECK_OK(gridos_copy(url, dst, opts, NULL, NULL));
    check_same(src, dst, SIZE);
    CHECK(remove(dst) == 0);
    printf("ftpes:// up and down, %u bytes each way, certificate checked against the CA\n",
           SIZE);

    /* `tls` on an ftp:// URL upgrades with AUTH TLS; gridftp:// with MODE E streams. */
    CHECK_OK(gridos_copy_options_set(opts, "tls", "true"));
    url_at(url, sizeof url, "ftp", NULL, &tls, "up.bin");
    CHECK_OK(gridos_copy(url, dst, opts, NULL, NULL));
    check_same(src, dst, SIZE);
    CHECK(remove(dst) == 0);
    CHECK_OK(gridos_copy_options_set(opts, "parallel", "3"));
    url_at(url, sizeof url, "gridftp", NULL, &tls, "up.bin");
    CHECK_OK(gridos_copy(url, dst, opts, NULL, NULL));
    check_same(src, dst, SIZE);
    CHECK(remove(dst) == 0);
    printf("ftp:// with tls=true and gridftp:// with 3 streams under TLS: identical\n");

    /* `tls` against a server without TLS: an error, never a clear connection. */
    url_at(url, sizeof url, "ftp", NULL, &plain, "up.bin");
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_TLS);
    CHECK(mentions(gridos_last_error_message(), "does not offer TLS"));
    CHECK(!exists(dst));
    gridos_copy_options_free(opts);

    /* The system's roots do not know the test CA: refused, and the message says why; a
     * file handle gets the same code. */
    url_at(url, sizeof url, "ftpes", NULL, &tls, "up.bin");
    CHECK_ERR(gridos_copy(url, dst, NULL, NULL, NULL), GRIDOS_ERR_TLS);
    CHECK(mentions(gridos_last_error_message(), "unknown issuer"));
    CHECK(!exists(dst));
    CHECK_ERR(gridos_file_open(url, "r", &f), GRIDOS_ERR_TLS);
    CHECK(mentions(gridos_last_error_message(), "unknown issuer"));
    CHECK(f == NULL);

    /* tls.insecure: the certificate is not checked, the bytes still come (encrypted). */
    {
        const char *kv[] = {"tls.insecure", "true", NULL};
        opts = options(kv);
    }
    CHECK_OK(gridos_copy(url, dst, opts, NULL, NULL));
    check_same(src, dst, SIZE);
    CHECK(remove(dst) == 0);
    /* ... and it does not go with tls.cacert. */
    CHECK_OK(gridos_copy_options_set(opts, "tls.cacert", ca));
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), "insecure"));
    gridos_copy_options_free(opts);
    printf("tls.insecure=true: identical\n");

    /* Files the copy cannot use are named. */
    {
        const char *kv[] = {"tls.cacert", missing, NULL};
        opts = options(kv);
    }
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), missing));
    CHECK_OK(gridos_copy_options_set(opts, "tls.cacert", bogus));
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), bogus));
    CHECK(!exists(dst));
    gridos_copy_options_free(opts);

    /* A client certificate logs in as the grid-mapfile's user (USER :globus-mapping:);
     * without one that login is refused. tls.cert and tls.key go together. */
    url_at(url, sizeof url, "ftpes", "%3Aglobus-mapping%3A:x", &tls, "up.bin");
    {
        const char *kv[] = {"tls.cacert", ca, NULL};
        opts = options(kv);
    }
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_PERMISSION);
    CHECK(!exists(dst));
    CHECK_OK(gridos_copy_options_set(opts, "tls.cert", client_cert));
    CHECK_ERR(gridos_copy(url, dst, opts, NULL, NULL), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK(mentions(gridos_last_error_message(), "tls.key"));
    CHECK_OK(gridos_copy_options_set(opts, "tls.key", client_key));
    CHECK_OK(gridos_copy(url, dst, opts, NULL, NULL));
    check_same(src, dst, SIZE);
    CHECK(remove(dst) == 0);
    gridos_copy_options_free(opts);
    printf("client certificate login through the grid-mapfile: identical\n");

    tls_peer_stop(&plain);
    tls_peer_stop(&tls);
    printf("tls ok\n");
    return 0;
}
