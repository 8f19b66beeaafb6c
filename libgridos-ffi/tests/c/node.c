/* Processes and resources through a node daemon. The harness (tests/c_programs.rs) runs two
 * daemons: the one at $GRIDOS_NODE, and its peer $GRIDOS_TEST_TARGET, which the harness stops
 * as soon as a process `sleep 31` runs there (the NODE_LOST case at the end). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <unistd.h>
#include "check.h"

/* One thread waits while another kills: a handle serves several threads at once. */
struct waiter {
    const gridos_node *node;
    const char *gpid;
    gridos_result result;
    gridos_exit exit;
};

static void *wait_in_thread(void *arg) {
    struct waiter *w = arg;
    w->result = gridos_wait(w->node, w->gpid, &w->exit);
    return NULL;
}

/* Spawns argv on target (NULL: the connected node), waits, returns the record. */
static gridos_exit run(const gridos_node *node, const char *target, const char *const *argv,
                       char *gpid) {
    size_t needed = 0;
    gridos_exit ex;
    CHECK_OK(gridos_spawn(node, target, argv, gpid, GRIDOS_GPID_MAX, &needed));
    CHECK(needed == strlen(gpid) + 1);
    CHECK_OK(gridos_wait(node, gpid, &ex));
    printf("  %s %s: code %d signal %d cpu %.3fs max_rss %llu\n", argv[0],
           argv[1] ? argv[1] : "", ex.code, ex.signal, ex.cpu_seconds,
           (unsigned long long)ex.max_rss_bytes);
    return ex;
}

/* Whether the resources JSON of the connected node mentions `what`. */
static int resources_mention(const gridos_node *node, const char *what) {
    char *json = NULL;
    int found;
    CHECK_OK(gridos_resources_json(node, &json));
    found = strstr(json, what) != NULL;
    gridos_string_free(json);
    return found;
}

int main(void) {
    const char *sock = getenv("GRIDOS_NODE");
    const char *target = getenv("GRIDOS_TEST_TARGET");
    const char *dir = getenv("GRIDOS_TEST_DIR");
    gridos_node *node = NULL, *other = NULL;
    char gpid[GRIDOS_GPID_MAX], gpid2[GRIDOS_GPID_MAX], bad[2 * GRIDOS_GPID_MAX];
    char id[128];
    size_t needed = 0;
    gridos_exit ex;
    char *json = NULL;
    char node_id[65];
    unsigned long long inc = 0;
    unsigned pid = 0;
    CHECK(sock && target && dir);
    CHECK_OK(gridos_init());

    /* Connect; NULL means $GRIDOS_NODE, as for the gridos commands. */
    CHECK_OK(gridos_node_connect(sock, &node));
    CHECK_OK(gridos_node_connect(NULL, &other));
    gridos_node_free(other);
    gridos_node_free(NULL);

    /* An exit code, twice: the record stays queryable after the exit. */
    {
        const char *const argv[] = {"/bin/sh", "-c", "exit 3", NULL};
        ex = run(node, NULL, argv, gpid);
        CHECK(ex.signal == 0 && ex.code == 3 && !ex.core_dumped && !ex.oom_killed);
        memset(&ex, 0, sizeof ex);
        CHECK_OK(gridos_wait(node, gpid, &ex));
        CHECK(ex.signal == 0 && ex.code == 3);
        CHECK(sscanf(gpid, "%64[^.].%llu.%u", node_id, &inc, &pid) == 3);
        CHECK(pid > 0 && inc > 0);
    }

    /* Kill: the signal is reported, and the process is gone for a second kill. */
    {
        const char *const argv[] = {"sleep", "30", NULL};
        CHECK_OK(gridos_spawn(node, NULL, argv, gpid, sizeof gpid, NULL));
        CHECK_OK(gridos_kill(node, gpid, 15));
        CHECK_OK(gridos_wait(node, gpid, &ex));
        CHECK(ex.signal == 15 && ex.code == -1);
        printf("  killed %s: signal %d\n", gpid, ex.signal);
        CHECK_ERR(gridos_kill(node, gpid, 15), GRIDOS_ERR_NO_SUCH_PROCESS);
    }

    /* The same with the wait in another thread, on the same handle. */
    {
        const char *const argv[] = {"sleep", "30", NULL};
        struct waiter w;
        pthread_t t;
        CHECK_OK(gridos_spawn(node, NULL, argv, gpid, sizeof gpid, NULL));
        w.node = node;
        w.gpid = gpid;
        CHECK(pthread_create(&t, NULL, wait_in_thread, &w) == 0);
        CHECK_OK(gridos_kill(node, gpid, 15));
        CHECK(pthread_join(t, NULL) == 0);
        CHECK(w.result == GRIDOS_OK && w.exit.signal == 15);
    }

    /* CPU and memory accounting of a busy shell. */
    {
        const char *const argv[] = {
            "/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done", NULL};
        ex = run(node, NULL, argv, gpid);
        CHECK(ex.signal == 0 && ex.code == 0);
        CHECK(ex.cpu_seconds > 0 && ex.max_rss_bytes > 0);
        CHECK(ex.cpu_seconds >= ex.user_cpu_seconds && ex.wall_seconds > 0);
    }

    /* A local process starts in the caller's working directory. */
    {
        const char *const argv[] = {"/bin/sh", "-c", "test -f gridos-marker", NULL};
        FILE *f;
        CHECK(chdir(dir) == 0);
        f = fopen("gridos-marker", "w");
        CHECK(f != NULL);
        fclose(f);
        ex = run(node, NULL, argv, gpid);
        CHECK(ex.signal == 0 && ex.code == 0);
    }

    /* On the peer node, routed by the connected one; wait and kill go by the GPID. */
    {
        const char *const argv[] = {"/bin/sh", "-c", "exit 5", NULL};
        ex = run(node, target, argv, gpid);
        CHECK(ex.signal == 0 && ex.code == 5);
        CHECK(strncmp(gpid, target, strlen(target)) == 0 && gpid[strlen(target)] == '.');
    }

    /* Resources. */
    CHECK_OK(gridos_resources_json(node, &json));
    CHECK(json[0] == '{' && strstr(json, "\"cpus\"") && strstr(json, "\"reservations\":[]"));
    printf("  resources: %.80s...\n", json);
    gridos_string_free(json);

    /* Reservations: granted, listed, released; refused; malformed; buffer too small. */
    CHECK_OK(gridos_reserve(node, NULL, 0.5, 16u << 20, 0, 60, id, sizeof id, &needed));
    CHECK(strchr(id, '@') && needed == strlen(id) + 1);
    printf("  reserved %s\n", id);
    CHECK(resources_mention(node, id));
    CHECK_OK(gridos_release(node, id));
    CHECK(!resources_mention(node, id));
    CHECK_ERR(gridos_release(node, id), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_reserve(node, NULL, 1e6, 0, 0, 60, id, sizeof id, NULL),
              GRIDOS_ERR_RESERVATION);
    CHECK_ERR(gridos_reserve(node, NULL, 1, 0, 0, 0, id, sizeof id, NULL),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_reserve(node, NULL, -1, 0, 0, 60, id, sizeof id, NULL),
              GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_reserve(node, NULL, 0, 0, 0, 60, id, sizeof id, NULL),
              GRIDOS_ERR_INVALID_ARGUMENT);
    {
        char small[4] = {'x', 'x', 'x', 'x'};
        needed = 0;
        CHECK_ERR(gridos_reserve(node, NULL, 0.5, 0, 0, 60, small, sizeof small, &needed),
                  GRIDOS_ERR_BUFFER_TOO_SMALL);
        CHECK(needed > sizeof small && needed <= sizeof id && small[0] == 'x');
        /* Released again: nothing is held. */
        CHECK(resources_mention(node, "\"reservations\":[]"));
        CHECK_OK(gridos_reserve(node, NULL, 0.5, 0, 0, 60, id, needed, NULL));
        CHECK(strlen(id) + 1 == needed);
        CHECK_OK(gridos_release(node, id));
    }
    CHECK_OK(gridos_reserve(node, target, 0.25, 8u << 20, 0, 60, id, sizeof id, NULL));
    CHECK(strcmp(strchr(id, '@') + 1, target) == 0);
    CHECK_OK(gridos_release(node, id));

    /* Bad input. */
    {
        const char *const empty[] = {NULL};
        const char *const sh[] = {"/bin/sh", "-c", "exit 0", NULL};
        const char *const missing[] = {"/nonexistent/gridos-test-program", NULL};
        const char nonutf8[] = {'s', 'h', (char)0xff, 0};
        const char *const bad_utf8[] = {nonutf8, NULL};
        char small[8];
        CHECK_ERR(gridos_spawn(node, NULL, NULL, gpid, sizeof gpid, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_spawn(node, NULL, empty, gpid, sizeof gpid, NULL),
                  GRIDOS_ERR_INVALID_ARGUMENT);
        CHECK_ERR(gridos_spawn(node, NULL, bad_utf8, gpid, sizeof gpid, NULL),
                  GRIDOS_ERR_INVALID_UTF8);
        CHECK_ERR(gridos_spawn(NULL, NULL, sh, gpid, sizeof gpid, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_spawn(node, NULL, sh, NULL, 0, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_spawn(node, NULL, missing, gpid, sizeof gpid, NULL), GRIDOS_ERR_IO);
        CHECK_ERR(gridos_spawn(node, "no-such-node", sh, gpid, sizeof gpid, NULL),
                  GRIDOS_ERR_INVALID_ARGUMENT);
        CHECK_ERR(gridos_spawn(node, "bad.node", sh, gpid, sizeof gpid, NULL),
                  GRIDOS_ERR_INVALID_ARGUMENT);
        /* Too small for any GPID: refused before anything runs, *needed says how much. */
        memset(small, 'x', sizeof small);
        needed = 0;
        CHECK_ERR(gridos_spawn(node, NULL, sh, small, sizeof small, &needed),
                  GRIDOS_ERR_BUFFER_TOO_SMALL);
        CHECK(needed == GRIDOS_GPID_MAX && small[0] == 'x');

        /* GPIDs: unknown pid, malformed text, unknown node, an earlier incarnation. */
        snprintf(bad, sizeof bad, "%s.%llu.4294967295", node_id, inc);
        CHECK_ERR(gridos_wait(node, bad, &ex), GRIDOS_ERR_NO_SUCH_PROCESS);
        CHECK_ERR(gridos_kill(node, bad, 15), GRIDOS_ERR_NO_SUCH_PROCESS);
        CHECK_ERR(gridos_wait(node, "n1.x.3", &ex), GRIDOS_ERR_INVALID_ARGUMENT);
        CHECK_ERR(gridos_wait(node, "n1.3", &ex), GRIDOS_ERR_INVALID_ARGUMENT);
        CHECK_ERR(gridos_kill(node, "not a gpid", 15), GRIDOS_ERR_INVALID_ARGUMENT);
        CHECK_ERR(gridos_wait(node, "no-such-node.1.1", &ex), GRIDOS_ERR_INVALID_ARGUMENT);
        snprintf(bad, sizeof bad, "%s.%llu.%u", node_id, inc - 1, pid);
        CHECK_ERR(gridos_wait(node, bad, &ex), GRIDOS_ERR_NODE_LOST);
        CHECK_ERR(gridos_wait(node, NULL, &ex), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_wait(node, gpid, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_kill(node, gpid, 12345), GRIDOS_ERR_INVALID_ARGUMENT);
        CHECK_ERR(gridos_resources_json(node, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_reserve(node, NULL, 1, 0, 0, 60, NULL, 0, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_release(node, NULL), GRIDOS_ERR_NULL);
        CHECK_ERR(gridos_node_connect(sock, NULL), GRIDOS_ERR_NULL);
    }

    /* No daemon behind the socket: an error, a message, no handle. */
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/no-such-node.sock", dir);
        other = NULL;
        CHECK_ERR(gridos_node_connect(path, &other), GRIDOS_ERR_NETWORK);
        CHECK(other == NULL);
    }

    /* The target node goes away while a process runs there: NODE_LOST, not an exit code;
     * then everything about that node says so. */
    {
        const char *const argv[] = {"sleep", "31", NULL};
        CHECK_OK(gridos_spawn(node, target, argv, gpid2, sizeof gpid2, NULL));
        memset(&ex, 0x5a, sizeof ex);
        CHECK_ERR(gridos_wait(node, gpid2, &ex), GRIDOS_ERR_NODE_LOST);
        CHECK(ex.code == 0x5a5a5a5a); /* untouched */
        CHECK_ERR(gridos_kill(node, gpid2, 9), GRIDOS_ERR_NODE_LOST);
        CHECK_ERR(gridos_spawn(node, target, argv, gpid2, sizeof gpid2, NULL),
                  GRIDOS_ERR_NODE_LOST);
        /* The connected node still serves. */
        {
            const char *const sh[] = {"/bin/sh", "-c", "exit 4", NULL};
            ex = run(node, NULL, sh, gpid);
            CHECK(ex.code == 4);
        }
    }

    gridos_node_free(node);
    printf("node ok\n");
    return 0;
}
