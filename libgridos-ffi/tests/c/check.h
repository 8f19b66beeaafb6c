/* Helpers of the C tests: every call's result is checked, and a failure must leave a
 * message. Each test program prints what it checks and exits non-zero on the first
 * surprise. */
#ifndef GRIDOS_TEST_CHECK_H
#define GRIDOS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gridos.h"

#define FAIL(...)                                                                  \
    do {                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                            \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                     \
        exit(1);                                                                   \
    } while (0)

/* The call must succeed. */
#define CHECK_OK(call)                                                             \
    do {                                                                           \
        gridos_result r_ = (call);                                                 \
        if (r_ != GRIDOS_OK)                                                       \
            FAIL("%s -> %d: %s", #call, (int)r_, gridos_last_error_message());    \
    } while (0)

/* The call must fail with `code` and leave a non-empty message. */
#define CHECK_ERR(call, code)                                                      \
    do {                                                                           \
        gridos_result r_ = (call);                                                 \
        if (r_ != (code))                                                          \
            FAIL("%s -> %d, expected %s (%d): %s", #call, (int)r_, #code,          \
                 (int)(code), gridos_last_error_message());                        \
        if (gridos_last_error_message()[0] == '\0')                                \
            FAIL("%s failed with no message", #call);                              \
        printf("  as expected, %s: %s\n", #code, gridos_last_error_message());    \
    } while (0)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond))                                                               \
            FAIL("check failed: %s", #cond);                                       \
    } while (0)

#endif
