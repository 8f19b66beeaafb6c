/* Configuration keys: read, set, read back; bad keys, values and buffers. */
#include "check.h"

int main(void) {
    char buf[64];
    size_t needed = 0;
    CHECK_OK(gridos_init());
    CHECK_OK(gridos_config_set("io.max_streams", "12"));
    CHECK_OK(gridos_config_get("io.max_streams", buf, sizeof buf, &needed));
    CHECK(strcmp(buf, "12") == 0 && needed == 3);
    CHECK_OK(gridos_config_get("max_streams", buf, sizeof buf, NULL)); /* prefix optional */
    CHECK(strcmp(buf, "12") == 0);
    CHECK_OK(gridos_config_set("io.auto_tune", "off"));
    CHECK_OK(gridos_config_get("io.auto_tune", buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "false") == 0);

    /* A buffer too small is untouched and says how much is needed. */
    memset(buf, 'x', sizeof buf);
    CHECK_ERR(gridos_config_get("io.max_streams", buf, 2, &needed), GRIDOS_ERR_BUFFER_TOO_SMALL);
    CHECK(needed == 3 && buf[0] == 'x');

    CHECK_ERR(gridos_config_get("io.no_such_key", buf, sizeof buf, NULL), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_config_set("ftp.docroot", "/"), GRIDOS_ERR_UNKNOWN_KEY);
    CHECK_ERR(gridos_config_set("io.max_streams", "many"), GRIDOS_ERR_INVALID_ARGUMENT);
    CHECK_ERR(gridos_config_set(NULL, "1"), GRIDOS_ERR_NULL);
    CHECK_ERR(gridos_config_get("io.threads", NULL, 0, NULL), GRIDOS_ERR_NULL);
    {
        const char bad[] = {'i', 'o', '.', (char)0xff, 0};
        CHECK_ERR(gridos_config_set(bad, "1"), GRIDOS_ERR_INVALID_UTF8);
    }
    /* Unchanged after the refusals. */
    CHECK_OK(gridos_config_get("io.max_streams", buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "12") == 0);
    /* The data path: forced by io.path, else the probe's choice. */
    CHECK_OK(gridos_config_set("io.path", "read-write"));
    CHECK_OK(gridos_io_path(buf, sizeof buf, NULL));
    CHECK(strcmp(buf, "read-write") == 0);
    CHECK_OK(gridos_config_set("io.path", "auto"));
    CHECK_OK(gridos_io_path(buf, sizeof buf, NULL));
    CHECK(strlen(buf) > 0);
    CHECK_ERR(gridos_io_path(buf, 1, &needed), GRIDOS_ERR_BUFFER_TOO_SMALL);
    printf("config ok (data path %s)\n", buf);
    return 0;
}
