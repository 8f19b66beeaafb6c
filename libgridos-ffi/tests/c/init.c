/* gridos_init is idempotent, the version is a string, messages are empty after success. */
#include "check.h"

int main(void) {
    CHECK_OK(gridos_init());
    CHECK_OK(gridos_init());
    CHECK(strlen(gridos_version()) > 0);
    CHECK(gridos_last_error_message()[0] == '\0');
    gridos_string_free(NULL);
    printf("init ok: libgridos %s\n", gridos_version());
    return 0;
}
