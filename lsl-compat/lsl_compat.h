/* Forced include for building the liblsl 1.13 that lsl-sys bundles.
 * Its boost tests `#if PTHREAD_STACK_MIN > 0`; glibc >= 2.34 defines
 * PTHREAD_STACK_MIN as a sysconf() call, which the preprocessor cannot
 * evaluate. Pin it to the historical constant before boost sees it. */
#ifdef __cplusplus
#include <limits.h>
#include <pthread.h>
#undef PTHREAD_STACK_MIN
#define PTHREAD_STACK_MIN 16384
#endif
