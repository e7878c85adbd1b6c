/* semctl(IPC_RMID) and semop from atexit handlers, which glibc runs after
 * destroying thread-local storage.
 *
 * usage: atexit_rmid KEY
 * Creates set KEY (1 semaphore) and a private set, stops at
 * "ready set ID" until a line arrives on stdin, then returns from main;
 * the handlers remove both sets and report on stdout with write(). */
#include "common.h"
#include <pthread.h>

static int keyed = -1, private_set = -1;

static void say(const char *what, int r)
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s %d %s\n", what, r, errname(r < 0 ? errno : 0));
    if (write(1, buf, n) != n)
        _exit(98);
}

/* Registered first, so it runs last: after anything registered later,
 * including whatever the preloaded library may have registered. */
static void remove_keyed(void)
{
    struct sembuf v = {0, 1, 0};
    say("atexit semop", semop(keyed, &v, 1));
    say("atexit getval", semctl(keyed, 0, GETVAL));
    say("atexit rmid", semctl(keyed, 0, IPC_RMID));
    say("atexit getval after rmid", semctl(keyed, 0, GETVAL));
}

static void remove_private(void)
{
    say("atexit rmid private", semctl(private_set, 0, IPC_RMID));
}

static void *worker(void *arg)
{
    (void)arg;
    struct sembuf v = {0, 1, SEM_UNDO};
    CHECK(semop(private_set, &v, 1) == 0);
    return NULL;
}

int main(int argc, char **argv)
{
    key_t key = key_arg(argc, argv);
    alarm(60);
    CHECK(atexit(remove_keyed) == 0);
    keyed = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(keyed >= 0);
    private_set = semget(IPC_PRIVATE, 1, 0600);
    CHECK(private_set >= 0);
    CHECK(atexit(remove_private) == 0);
    /* A thread uses the library and ends before exit. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(semctl(private_set, 0, GETVAL) == 1);
    handshake("set", keyed);
    return 0;
}
